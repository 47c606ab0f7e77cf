"""The one source of every training setting: each key's default, type, one-line comment and range check, here and
nowhere else. Hydra takes these dataclasses as the schema of conf/train.yaml (gptlab/config/store.py), so the preset
files in conf/ only override them; --help reads the comments from this file. Imports no torch.

    python -c "from gptlab.config import GPTConfig; print(GPTConfig(n_layer=6, n_head=6, n_embd=384))"
    python -m gptlab.train --help          # every key below, with the value a run would use and its comment

Components (the optimizer, the schedule, the loggers, the callbacks) are not here: each is a `_target_` with its
arguments, in one YAML file of its group (conf/optim/adamw.yaml), checked against what it builds (components.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import MISSING

from gptlab.config.checks import ConfigError, is_int, is_number, must

PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
GELUS = ("tanh", "none")
POSITIONS, NORMS, MLPS = ("learned", "rope"), ("layernorm", "rmsnorm"), ("gelu", "relu2", "swiglu")
DECAY_SHAPES = ("linear", "1-sqrt")
HEAD_DTYPES = ("auto", "exact", "bf16")  # output layer weights while decoding (gptlab.model.sampling)


# Each model key names its role in its field's metadata, and every list of keys (the options, the architecture, the
# standard parametrisation, what the speed bench tries) is derived from it by GPTConfig's class methods: adding an
# option touches its field here and the block that computes it (gptlab/model/blocks.py, gpt.py), nothing else.
def model_key(role: str, default, **meta):
    """A GPTConfig field whose metadata holds its role (and an option's bench values)."""
    return field(default=default, metadata={"role": role, **meta})


def gpt2(default):
    """A key GPT-2 itself has, so every checkpoint records it: the weights' shapes and the function."""
    return model_key("gpt2", default)


def regularisation(default):
    """A key that changes training only, not the weights' shapes or the function they compute (dropout)."""
    return model_key("regularisation", default)


def mup(default=None):
    """A parametrisation key: how the rates and multipliers scale (muP); null is GPT-2's standard one."""
    return model_key("parametrisation", default)


def option(default=None, tried=(), function: bool = True):
    """A modern option: GPT-2's choice as its default; `tried`, the value (or list of values) python -m gptlab.bench
    options=[all] tries it at, none for a width like mlp_hidden; function=False: it changes only the weights (their
    initialisation or tying), not the function they compute, so any transformers architecture has it."""
    tried = tuple(tried) if isinstance(tried, (list, tuple)) else (tried,)
    return model_key("option", default, tried=tried, function=function)


def setting(default):
    """A setting of an option that changes nothing alone (rope_base, read only under pos=rope)."""
    return model_key("setting", default)


class Schema:
    """A config dataclass whose check() runs whenever it is built: a bad value fails naming its key."""

    WHOLE = ()  # keys that take a count or a word (batch_size: 8 or auto): 1e1 typed for a count is the count, 10

    def __post_init__(self):
        for key in self.WHOLE:
            v = getattr(self, key)
            if isinstance(v, float) and v.is_integer():
                setattr(self, key, int(v))
        self.check()

    def check(self) -> None:
        pass


@dataclass
class GPTConfig(Schema):
    n_layer: int = gpt2(12)  # transformer blocks
    n_head: int = gpt2(12)  # attention heads per block
    n_embd: int = gpt2(768)  # residual stream width; the 50k-token head costs 6 x 50304 x n_embd FLOPs a token
    block_size: int = gpt2(1024)  # maximum context length (position embeddings)
    vocab_size: int = gpt2(50304)  # GPT-2's 50257 padded up to a multiple of 64 for speed
    bias: bool = gpt2(True)  # biases in Linear and LayerNorm, as GPT-2 has
    dropout: float = regularisation(0.0)  # 0 for pretraining, try 0.1 for fine-tuning
    gelu: str = gpt2("tanh")  # tanh (GPT-2's approximation, exact parity) or none (erf)
    mup_base_width: int | None = mup()  # muP relative to this width: a rate tuned there holds at any n_embd; null: off
    mup_base_depth: int | None = mup()  # depth-muP relative to this n_layer: branches x sqrt(base / n_layer); null: off
    pos: str = option(  # learned (GPT-2's wpe) | rope (rotary: q and k rotated by position, Su et al. 2021)
        "learned", tried="rope")
    rope_base: float = setting(10000.0)  # rope's base: frequencies base^(-2i / head_dim)
    qk_norm: bool = option(  # RMSNorm on each head's queries and keys before attention (Qwen3, modded-nanogpt)
        False, tried=True)
    norm: str = option("layernorm", tried="rmsnorm")  # layernorm (GPT-2) | rmsnorm (a gain, no mean, no bias: Llama)
    mlp: str = option(  # gelu (GPT-2) | relu2 (ReLU squared: Primer, modded-nanogpt) | swiglu (SiLU-gated: Llama)
        "gelu", tried=["relu2", "swiglu"])
    mlp_hidden: int | None = option()  # MLP width; null = 4 x n_embd, or 8/3 x n_embd for swiglu (the same parameters)
    tie_embeddings: bool = option(  # the output layer shares wte's matrix (GPT-2); false: a head of its own
        True, tried=False, function=False)
    logit_softcap: float | None = option(  # null: none; c: logits c tanh(z / c) (Gemma 2, modded-nanogpt: 30)
        None, tried=30.0)
    zero_init: bool = option(  # zero-initialised output projections (attn and mlp c_proj, an untied head)
        False, tried=True, function=False)

    def check(self):
        must(is_int(self.n_layer) and self.n_layer >= 0, "n_layer", "an integer >= 0", self.n_layer)  # 0: a bigram
        for key in ("n_head", "n_embd", "block_size", "vocab_size"):
            must(is_int(getattr(self, key)) and getattr(self, key) >= 1, key, "an integer >= 1", getattr(self, key))
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head} (e.g. n_embd="
                              f"{self.n_head * max(1, round(self.n_embd / self.n_head))})")
        must(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)", self.dropout)
        must(self.gelu in GELUS, "gelu", f"one of {', '.join(GELUS)}", self.gelu)
        for key in ("mup_base_width", "mup_base_depth"):
            base = getattr(self, key)
            must(base is None or (is_int(base) and base >= 1), key, "null (off) or a positive integer", base)
        for key, allowed in (("pos", POSITIONS), ("norm", NORMS), ("mlp", MLPS)):
            must(getattr(self, key) in allowed, key, f"one of {', '.join(allowed)}", getattr(self, key))
        must(self.pos != "rope" or (self.n_embd // self.n_head) % 2 == 0, "pos",
             "learned when the head size n_embd / n_head is odd (rope rotates channel pairs)", self.pos)
        must(is_number(self.rope_base) and self.rope_base > 1, "rope_base", "a number > 1", self.rope_base)
        must(self.mlp_hidden is None or (is_int(self.mlp_hidden) and self.mlp_hidden >= 1), "mlp_hidden",
             "an integer >= 1 or null", self.mlp_hidden)
        must(self.logit_softcap is None or (is_number(self.logit_softcap) and self.logit_softcap > 0),
             "logit_softcap", "null (off) or a number > 0", self.logit_softcap)
        modern = self.modern()
        if modern and (self.mup_base_width or self.mup_base_depth):
            raise ConfigError(f"mup_base_width / mup_base_depth with {', '.join(modern)}: muP's multipliers are "
                              "stated and checked for GPT-2's block only; drop the muP key or those options")

    def modern(self, function: bool = False) -> list[str]:
        """The options set away from GPT-2's block, as key=value (empty for GPT-2); function=True: only those that
        change the function the weights compute (not zero_init or tie_embeddings, which change only the weights)."""
        defaults = {f.name: f.default for f in fields(self)}
        return [f"{k}={getattr(self, k)}" for k in self.options(function) if getattr(self, k) != defaults[k]]

    @classmethod
    def role_keys(cls, *roles: str) -> tuple[str, ...]:
        """The keys whose field has one of these roles (gpt2, regularisation, parametrisation, option, setting), in
        field order: every list of model keys is one of these, so none is written out anywhere else."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("role") in roles)

    @classmethod
    def options(cls, function: bool = False) -> tuple[str, ...]:
        """The modern options' keys (function=True: only those that change the function the weights compute)."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("role") == "option"
                     and (f.metadata["function"] or not function))

    @classmethod
    def architecture_keys(cls) -> tuple[str, ...]:
        """Every key that fixes the weights' shapes or the function they compute: all but dropout's role."""
        return cls.role_keys("gpt2", "parametrisation", "option", "setting")

    @classmethod
    def standard(cls) -> dict[str, Any]:
        """What weights saved without the keys GPT-2 lacks were: those keys' defaults (the standard parametrisation,
        GPT-2's block), for a GPT-2 checkpoint or a run from before muP and the options."""
        beyond_gpt2 = cls.role_keys("parametrisation", "option", "setting")
        return {f.name: f.default for f in fields(cls) if f.name in beyond_gpt2}

    @classmethod
    def tried(cls) -> dict[str, tuple]:
        """option -> the values the speed bench tries it at, each alone (and the first of each all together)."""
        return {f.name: f.metadata["tried"] for f in fields(cls) if f.metadata.get("tried")}


@dataclass
class DataConfig(Schema):
    WHOLE = ("batch_size",)
    name: str = MISSING  # folder <paths.data_dir>/<name>; each data preset names one
    source: str = MISSING  # document source: shakespeare | text | chat | hf | openwebtext (gptlab/data/sources.py)
    source_args: dict = field(default_factory=dict)  # the source's own arguments (conf/data/<source>.yaml)
    shard_tokens: int = 100_000_000  # tokens per .bin shard (200 MB)
    batch_size: Any = 8  # micro batch: sequences per device per step; auto = the model preset's tuned one
    val_tokens: int = 65536  # val tokens scored per eval: the split's first ones, the same for every run
    num_workers: int = 0  # DataLoader workers; reads from a memmap need none
    block_size: int | None = None  # context trained on; null = model.block_size
    global_batch: int | None = None  # sequences per optimizer step; null = one micro batch per device
    global_batch_tokens: int | None = None  # or tokens per optimizer step (a multiple of the block size)
    loss_mask: bool = False  # train and score only the tokens the mask marks (chat: the assistant's)

    def check(self):
        must(is_int(self.shard_tokens) and self.shard_tokens >= 1, "shard_tokens", "an integer >= 1",
             self.shard_tokens)
        must(self.batch_size == "auto" or (is_int(self.batch_size) and self.batch_size >= 1), "batch_size",
             "an integer >= 1 or auto (micro batch)", self.batch_size)
        must(is_int(self.num_workers) and self.num_workers >= 0, "num_workers", "an integer >= 0", self.num_workers)
        for key in ("block_size", "global_batch", "global_batch_tokens"):
            v = getattr(self, key)
            must(v is None or v >= 1, key, "an integer >= 1 or null", v)
        if self.global_batch and self.global_batch_tokens:
            raise ConfigError("global_batch: set only one of data.global_batch (sequences) and "
                              "data.global_batch_tokens")


@dataclass
class TrainerConfig(Schema):
    WHOLE = ("devices",)
    accelerator: str = "${device}"  # auto | cpu | cuda (gpu, Lightning's name): follows the top-level device=
    devices: Any = 1  # devices per node: a count, -1 or auto (every visible GPU), or a list of ids
    num_nodes: int = 1  # machines; each runs `devices` ranks
    strategy: str = "auto"  # auto | ddp | ddp_spawn (inside a -m sweep) | fsdp (FSDP2, gptlab/training/sharding.py)
    precision: str = "auto"  # auto = bf16-mixed on a GPU with bf16, 32-true elsewhere (bf16 is slow on CPUs)
    max_steps: int = 1500  # optimizer steps
    stop_after: int | None = None  # end this invocation after this many optimizer steps (resume= continues)
    ckpt_every_minutes: float | None = 10.0  # also write last.ckpt this often between evals; null = at evals only
    eval_interval: int = 100  # optimizer steps between validations (and the last step always validates)
    eval_at_start: bool = True  # score val before step 0: the 'before' perplexity, the curve's first point
    log_every_n_steps: int = 10  # optimizer steps between train/loss, tokens/s, MFU rows (each is a device sync)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables (under optim=muon it clips before Muon's update)
    compile: Any = "auto"  # torch.compile the model: true, false, auto = on a CUDA GPU
    peak_flops: float | None = None  # peak FLOP/s for MFU; null = a GPU table or derived from cpuinfo (docs/speed.md)
    threads: int | None = None  # CPU threads for torch; null = all cores this process may use
    keep_tokens: list = field(default_factory=list)  # token budgets whose checkpoints are kept (50K, 100K)
    target_val_loss: float | None = None  # stop once a validation reaches this loss; summary.json: tokens, time to it

    def check(self):
        must(self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}", self.precision)
        must(self.compile in (True, False, "auto"), "compile", "true, false or auto (on a CUDA GPU)", self.compile)
        d = self.devices
        must((is_int(d) and (d >= 1 or d == -1)) or d == "auto" or (isinstance(d, list) and len(d) > 0 and all(
            is_int(i) and i >= 0 for i in d)), "devices", "a count >= 1, -1 or auto (all), or a list of device ids", d)
        for key in ("num_nodes", "max_steps", "eval_interval", "log_every_n_steps"):
            must(is_int(getattr(self, key)) and getattr(self, key) >= 1, key, "an integer >= 1", getattr(self, key))
        for key in ("stop_after", "threads"):
            v = getattr(self, key)
            must(v is None or (is_int(v) and v >= 1), key, "an integer >= 1 or null", v)
        must(self.ckpt_every_minutes is None or self.ckpt_every_minutes > 0, "ckpt_every_minutes",
             "a number > 0 (minutes) or null", self.ckpt_every_minutes)
        must(is_number(self.grad_clip) and self.grad_clip >= 0, "grad_clip", "a number >= 0 (0 disables)",
             self.grad_clip)
        must(self.target_val_loss is None or (is_number(self.target_val_loss) and self.target_val_loss > 0),
             "target_val_loss", "null or a loss > 0", self.target_val_loss)


@dataclass
class SampleConfig(Schema):
    prompt: str | None = "The future of AI is"  # text to continue; "" starts from <|endoftext|>; - reads stdin
    prompt_file: str | None = None  # read the prompt from this file instead (one trailing newline dropped)
    prompt_tokens: int = 8  # train's end-of-run sample with prompt null: the val split's first this many tokens
    num_samples: int = 1  # samples, printed one after another
    max_new_tokens: int = 256  # per sample; fewer when it stops at <|endoftext|>
    temperature: float = 0.8  # > 0; lower is more conservative (greedy=true for argmax decoding)
    greedy: bool = False  # always the most likely token (temperature, top_k, top_p unused)
    top_k: int | None = 200  # sample among the k most likely tokens; null = all
    top_p: float | None = None  # nucleus: the smallest set of tokens whose probability reaches top_p, in (0, 1]
    stop_at_eot: bool = True  # end a sample at <|endoftext|>; false prints it and goes on
    use_cache: bool = True  # KV cache; false recomputes the whole context every token (nanoGPT)
    head_dtype: str = "auto"  # output layer while decoding: auto = bf16 weights on a CPU, exact, bf16

    def check(self):
        for key in ("prompt_tokens", "num_samples"):
            must(is_int(getattr(self, key)) and getattr(self, key) >= 1, key, "an integer >= 1", getattr(self, key))
        for key in ("greedy", "stop_at_eot", "use_cache"):
            must(isinstance(getattr(self, key), bool), key, "true or false", getattr(self, key))
        must(is_int(self.max_new_tokens) and self.max_new_tokens >= 0, "max_new_tokens", "an integer >= 0",
             self.max_new_tokens)
        must(self.top_k is None or (is_int(self.top_k) and self.top_k >= 1), "top_k",
             "an integer >= 1, or null for no top-k filter", self.top_k)
        must(self.top_p is None or (is_number(self.top_p) and 0 < self.top_p <= 1), "top_p",
             "in (0, 1], or null for no nucleus filter", self.top_p)
        t = self.temperature
        if not (is_number(t) and (self.greedy or t > 0)):
            raise ConfigError(f"temperature must be > 0, got {t!r}; for greedy (argmax) decoding use greedy=true")
        must(self.head_dtype in HEAD_DTYPES, "head_dtype", f"one of {', '.join(HEAD_DTYPES)}", self.head_dtype)


@dataclass
class StudyConfig(Schema):
    seeds: int = 1  # replicates per arm under -m: seeds 1..n (a study's hydra.sweeper.params.seed: ${seeds:...})
    baseline: str | None = None  # the arm the others are compared with, as its overrides ("sched=cosine"); null: first

    def check(self):
        must(is_int(self.seeds) and self.seeds >= 1, "seeds", "a count >= 1", self.seeds)


@dataclass
class CooldownConfig(Schema):
    fraction: float = 0.2  # share of a branch's steps spent decaying (about 20% matches a full schedule)
    shape: str = "1-sqrt"  # 1-sqrt | linear: how the rate falls (Hägele et al. 2024)
    min_lr_ratio: float = 0.0  # the rate a cooldown ends at, as a fraction of optim.lr
    branches: bool = False  # when the run ends, branch from every trainer.keep_tokens checkpoint into <run>/cooldowns/

    def check(self):
        must(0 < self.fraction < 1, "fraction", "in (0, 1) (0.2 decays the last 20%)", self.fraction)
        must(self.shape in DECAY_SHAPES, "shape", f"one of {', '.join(DECAY_SHAPES)}", self.shape)
        must(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]", self.min_lr_ratio)


@dataclass
class PathsConfig(Schema):
    data_dir: str = "${oc.env:GPTLAB_DATA,data}"  # prepared datasets: <data_dir>/<data.name>/
    log_dir: str = "${oc.env:GPTLAB_RUNS,runs}"  # run folders are created under here (runs/last: the latest)
    run_dir: str | None = None  # this run's folder (train: Hydra's job folder, conf/train.yaml)


@dataclass
class Derived:
    """Values that follow from the others, computed once at start (gptlab/config/derive.py) and recorded in
    config.yaml, so every reader takes them from the record."""
    device: str = "cpu"  # cpu | cuda: what trainer.accelerator resolves to here
    block_size: int = 1024  # tokens per training sequence
    devices: int = 1  # devices per node
    world_size: int = 1  # ranks: devices x nodes
    micro_batch: int = 8  # sequences per device per forward pass
    accumulation: int = 1  # micro batches per optimizer step
    tokens_per_step: int = 8192  # accumulation x micro batch x block x world size
    keep_steps: list = field(default_factory=list)  # trainer.keep_tokens as eval steps: checkpoints kept


@dataclass
class RunConfig(Schema):
    """One training run: conf/train.yaml's schema, and what gptlab.training.trainer takes."""
    model: GPTConfig = field(default_factory=GPTConfig)  # the GPT's shape: conf/model/<preset>.yaml
    data: DataConfig = field(default_factory=DataConfig)  # the prepared corpus and the batch: conf/data/<name>.yaml
    optim: dict = field(default_factory=dict)  # the optimizer: conf/optim/<name>.yaml (_target_ and its arguments)
    sched: dict = field(default_factory=dict)  # the learning-rate schedule: conf/sched/<name>.yaml
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # devices, precision, steps: conf/trainer/*.yaml
    logger: dict = field(default_factory=dict)  # loggers besides metrics.csv: conf/logger/<name>.yaml, one per key
    callbacks: dict = field(default_factory=dict)  # Lightning callbacks: conf/callbacks/<name>.yaml, one per key
    sample: SampleConfig = field(default_factory=SampleConfig)  # the end-of-run sample (train.yaml's preset)
    paths: PathsConfig = field(default_factory=PathsConfig)  # where data and runs live
    study: StudyConfig = field(default_factory=StudyConfig)  # what a named study's report needs (experiments/)
    cooldown: CooldownConfig = field(default_factory=CooldownConfig)  # rate decays branched from kept checkpoints
    device: str = "auto"  # auto | cpu | cuda: where it runs (trainer.accelerator follows it)
    seed: int = 1337  # model init and the training stream
    resume: str | None = None  # a run folder or .ckpt: continue its step, schedule, optimizer, RNG and data stream
    init: str | None = None  # start from these weights (run folder, .ckpt or hf:gpt2...), fresh optimizer: fine-tuning
    branch: str | None = None  # a kept checkpoint (<run>/checkpoints/step-000400.ckpt): a cooldown branch from it
    required: dict = field(default_factory=dict)  # key: why, for keys a preset needs set (experiment=finetune: init)
    recipe: dict = field(default_factory=dict)  # the model a preset's rates were tuned for: {model: tiny, hint: ...}
    choices: dict = field(default_factory=dict)  # set at start: the group presets this run was composed from
    sweep: str | None = None  # set at start under -m: the sweep folder's name (every job's W&B group)
    name: str | None = None  # set at start under -m: what this job varies, 'n_layer=4 n_embd=128' (its W&B name)
    arm: str | None = None  # set at start under -m: the job's name without its seed (its W&B job type)
    derived: Derived = field(default_factory=Derived)  # set at start: block size, batch arithmetic, world size

    def record(self) -> dict:
        """What config.yaml keeps of the run: all of it (an invocation's own additions: gptlab/run/launch.py)."""
        from dataclasses import asdict
        return asdict(self)

    def check(self):
        must(is_int(self.seed) and 0 <= self.seed <= 2**32 - 1, "seed", "an integer >= 0 and <= 4294967295",
             self.seed)  # seed_everything and numpy take uint32 only
        must(self.model.vocab_size >= 50257, "model.vocab_size", ">= 50257 (GPT-2 BPE)", self.model.vocab_size)
        must(self.model.n_layer >= 1, "model.n_layer", "an integer >= 1", self.model.n_layer)
        block = self.model.block_size if self.data.block_size is None else self.data.block_size
        if not 1 <= block <= self.model.block_size:
            raise ConfigError(f"data.block_size={block} must be between 1 and model.block_size="
                              f"{self.model.block_size}")
        must(is_int(self.data.val_tokens) and self.data.val_tokens >= block, "data.val_tokens",
             f"an integer >= {block} (at least one window of the block size)", self.data.val_tokens)
        for key in ("resume", "init", "branch"):
            v = getattr(self, key)
            must(v is None or (isinstance(v, str) and v.strip() != ""), key,
                 f"a path (run folder or .ckpt){' or hf:<name>' if key == 'init' else ''}", v)
        for key, value in (("sample.temperature", self.sample.temperature), ("trainer.grad_clip",
                                                                            self.trainer.grad_clip)):
            must(math.isfinite(value), key, "a finite number", value)
