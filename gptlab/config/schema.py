"""The typed run config: one dataclass per concern, one RunConfig for the whole run. Imports no torch.

    python -c "from gptlab.config import GPTConfig; print(GPTConfig(n_layer=6, n_head=6, n_embd=384))"

Each dataclass mirrors a conf/ group (conf/model, conf/data, ...); its comments are the knobs' meanings. Values
that follow from others (block size, world size, micro batch, accumulation) live in Derived, computed once by
gptlab.config.validate.run_config.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEDULES = ("cosine", "linear", "constant", "wsd")
DECAY_SHAPES = ("linear", "1-sqrt")
GELUS = ("tanh", "none")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true")


@dataclass
class GPTConfig:
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # residual stream width
    block_size: int = 1024  # maximum context length (position embeddings)
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for speed
    bias: bool = True  # biases in Linear and LayerNorm, as GPT-2 has
    dropout: float = 0.0  # 0 for pretraining, try 0.1 for fine-tuning
    gelu: str = "tanh"  # "tanh" (GPT-2's approximation, exact parity) or "none" (erf)
    mup_base_width: int | None = None  # muP relative to this width (gptlab.model.mup); None: standard GPT-2
    mup_base_depth: int | None = None  # depth-muP relative to this many layers: branches x sqrt(base/n_layer)


@dataclass
class OptimConfig:
    lr: float = 6e-4  # peak learning rate
    weight_decay: float = 0.1  # on 2-D weights only
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    fused: bool | None = None  # fused AdamW; None = on CUDA and CPU


@dataclass
class SchedConfig:
    name: str = "cosine"  # cosine | linear | constant | wsd
    warmup_steps: int = 100  # linear warmup from 0 to optim.lr
    min_lr_ratio: float = 0.1  # final lr = min_lr_ratio * optim.lr
    decay_fraction: float = 0.2  # wsd only: the last fraction of steps decays
    decay_shape: str = "linear"  # wsd only: linear | 1-sqrt (Hägele et al. 2024's cooldown shape)


@dataclass
class DataConfig:
    name: str = "shakespeare"  # folder <paths.data_dir>/<name>
    source: str = "shakespeare"  # document source (gptlab/data/sources.py)
    source_args: dict = field(default_factory=dict)  # the source's own arguments
    shard_tokens: int = 100_000_000  # tokens per .bin shard
    batch_size: Any = 8  # micro batch: sequences per device per step; auto = the preset's tuned one
    val_tokens: int = 65536  # val tokens scored per eval: the split's first ones
    num_workers: int = 0  # DataLoader workers
    block_size: int | None = None  # context trained on; None = model.block_size
    global_batch: int | None = None  # sequences per optimizer step; None = one micro batch per device
    global_batch_tokens: int | None = None  # or tokens per optimizer step
    loss_mask: bool = False  # train and score only the tokens the mask marks (chat: the assistant's)


@dataclass
class TrainerConfig:
    accelerator: str = "auto"  # auto | cpu | cuda (gpu): follows the top-level device=
    devices: Any = 1  # devices per node: a count, -1 or auto (every visible GPU), or a list of ids
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | ddp_spawn | fsdp
    precision: str = "auto"  # auto = bf16-mixed on a GPU with bf16, 32-true elsewhere
    max_steps: int = 1500  # optimizer steps
    stop_after: int | None = None  # end this invocation after this many optimizer steps
    ckpt_every_minutes: float | None = 10  # last.ckpt at least this often between evals; None = at evals only
    eval_interval: int = 100  # optimizer steps between validations
    eval_at_start: bool = True  # score val before step 0
    log_every_n_steps: int = 10  # optimizer steps between metrics rows
    compile: Any = "auto"  # torch.compile: true, false, auto = on a CUDA GPU
    peak_flops: float | None = None  # device peak FLOP/s for MFU; None = looked up
    threads: int | None = None  # CPU threads for torch; None = all cores this process may use
    keep_tokens: list = field(default_factory=list)  # budgets whose checkpoint is kept (the eval step nearest each)


@dataclass
class LoggerConfig:
    project: str | None = None  # W&B project; None (logger=none) = no W&B
    group: str | None = None  # W&B group; None = the sweep's folder name under -m
    name: str | None = None  # run name; None = the run folder's name
    mode: str = "auto"  # auto | online | offline
    tags: list = field(default_factory=list)
    job_type: str | None = None  # W&B job type: the arm a run belongs to, so W&B groups its seeds
    init_timeout: float = 30.0  # seconds an online W&B start-up may take before the run goes offline
    tensorboard: bool = False  # also write TensorBoard event files under <run>/tensorboard


@dataclass
class SampleConfig:
    prompt: str | None = "The future of AI is"  # text to continue; "" starts from <|endoftext|>; - reads stdin
    prompt_file: str | None = None  # read the prompt from this file instead
    prompt_tokens: int = 8  # train's end-of-run sample with prompt null: the val split's first this many tokens
    num_samples: int = 1  # samples, printed one after another
    max_new_tokens: int = 256  # per sample; fewer when it stops at <|endoftext|>
    temperature: float = 0.8  # > 0; lower is more conservative
    greedy: bool = False  # always the most likely token
    top_k: int | None = 200  # sample among the k most likely tokens; None = all
    top_p: float | None = None  # nucleus: the smallest set whose probability reaches top_p
    stop_at_eot: bool = True  # end a sample at <|endoftext|>
    use_cache: bool = True  # KV cache; false recomputes the whole context every token
    head_dtype: str = "auto"  # output layer while decoding: auto | exact | bf16


@dataclass
class StudyConfig:
    seeds: int = 1  # replicates per arm under -m: seeds 1..n (a study's hydra.sweeper.params.seed)
    baseline: str | None = None  # the arm the report compares the others with ("sched=cosine"); None = the first


@dataclass
class CooldownConfig:
    fraction: float = 0.2  # share of a branch's steps that decay the rate (Hägele et al. 2024: about 20%)
    shape: str = "1-sqrt"  # 1-sqrt | linear: how the rate falls from optim.lr
    min_lr_ratio: float = 0.0  # the rate a cooldown ends at, a fraction of optim.lr
    branches: bool = False  # when the run ends, branch from every kept checkpoint into <run>/cooldowns/


@dataclass
class PathsConfig:
    data_dir: str = "data"  # prepared datasets: <data_dir>/<data.name>/
    log_dir: str = "runs"  # run folders are created under here
    run_dir: str = "runs/run"  # this run's folder


@dataclass
class Derived:
    """Values that follow from the others, computed once."""
    device: str = "cpu"  # cpu | cuda: what trainer.accelerator resolves to here
    block_size: int = 1024  # tokens per training sequence
    devices: int = 1  # devices per node
    world_size: int = 1  # ranks: devices x nodes
    micro_batch: int = 8  # sequences per device per forward pass
    accumulation: int = 1  # micro batches per optimizer step
    tokens_per_step: int = 8192  # accumulation x micro batch x block x world size
    keep_steps: list = field(default_factory=list)  # trainer.keep_tokens as eval steps: checkpoints kept


@dataclass
class RunConfig:
    model: GPTConfig
    optim: OptimConfig
    sched: SchedConfig
    data: DataConfig
    trainer: TrainerConfig
    logger: LoggerConfig
    sample: SampleConfig
    paths: PathsConfig
    derived: Derived
    seed: int = 1337
    resume: str | None = None  # a run folder or .ckpt to continue
    resume_step: int | None = None  # the optimizer step its checkpoint holds (read by the train entry's checks)
    init: str | None = None  # weights to start from (fine-tuning)
    branch: str | None = None  # a kept checkpoint a cooldown branch continues from, into its own run folder
    study: StudyConfig = field(default_factory=StudyConfig)
    cooldown: CooldownConfig = field(default_factory=CooldownConfig)
    callbacks: dict = field(default_factory=dict)  # callbacks.* specs with _target_ (gptlab/training/targets.py)
    sweep: str | None = None  # under -m: the sweep folder's name (every job's W&B group)
    name: str | None = None  # under -m: what this job varies, 'n_layer=4 n_embd=128' (its W&B name)
    recipe: str = ""  # the presets in force, as the header names them
    resolved: dict = field(default_factory=dict)  # the whole resolved config, as config.yaml records it
    changes: list = field(default_factory=list)  # on a resume: 'key: saved -> given' for each key changed
