"""The schemas of the entry points besides train: every key's default, type, one-line comment and range check, as
schema.py has them for training. conf/<name>.yaml names `<name>_schema` first and adds only presets. Imports no torch.

    python -m gptlab.eval --help           # the keys below, with the values a command line would use
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from gptlab.config.checks import ConfigError, is_int, is_number, must
from gptlab.config.presets import options
from gptlab.config.schema import DataConfig, PathsConfig, RunConfig, SampleConfig, Schema

DEVICE = "auto"  # auto | cpu | cuda: auto = cuda if available, else cpu


@dataclass
class EvalCommand(Schema):
    spec: str = MISSING  # the model: run folder, .ckpt, hf:gpt2 or a Hugging Face folder; `model=` sets it
    data: DataConfig = field(default_factory=DataConfig)  # the prepared dataset scored (a run's: its own)
    paths: PathsConfig = field(default_factory=PathsConfig)  # where prepared data lives
    ctx: int | None = None  # window (context) length; null = the model's block_size (a run's: its own)
    stride: int | None = None  # tokens scored per window after the first; null = ctx (non-overlapping windows)
    max_tokens: int = 65536  # val tokens scored: the split's first ones (a run's: its data.val_tokens); 0 = none
    split: str = "val"  # split of the prepared dataset
    loss_mask: bool = False  # score only the targets the dataset's loss mask marks (chat data: the assistant's)
    run_dir: str | None = None  # set by eval itself for model=<run>: its data, tokens, ctx, mask and batch
    tasks: Any = field(default_factory=list)  # conf/task/ names: lambada, wikitext, hellaswag (a list or a,b)
    task_path: dict = field(default_factory=lambda: dict.fromkeys(options("task")))  # task -> a local .jsonl/.json
    # in the hub's record format, read instead of the hub (one key per conf/task/ file)
    limit: int | None = None  # score only each task's first N examples
    batch_size: int = 8  # windows (or task requests) per forward pass
    device: str = DEVICE  # auto | cpu | cuda
    out: str | None = None  # results JSON, written atomically; null = print only

    def check(self):
        must(self.ctx is None or (is_int(self.ctx) and self.ctx >= 1), "ctx", "an integer >= 1 or null", self.ctx)
        must(self.stride is None or (is_int(self.stride) and self.stride >= 1), "stride",
             "an integer >= 1 or null (tokens scored per window; null = ctx)", self.stride)
        if self.ctx and self.stride and self.stride > self.ctx:
            raise ConfigError(f"stride={self.stride} must be <= ctx={self.ctx}")
        must(is_int(self.max_tokens) and self.max_tokens >= 0, "max_tokens", "an integer >= 0 (0 = no perplexity)",
             self.max_tokens)
        must(is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        must(self.limit is None or (is_int(self.limit) and self.limit >= 1), "limit", "an integer >= 1 or null",
             self.limit)


@dataclass
class SampleCommand(SampleConfig):
    spec: str = MISSING  # the model: run folder, .ckpt, hf:gpt2 or a Hugging Face folder; `model=` sets it
    seed: int = 1337  # same seed, same text (on the same device type and torch version)
    device: str = DEVICE  # auto | cpu | cuda

    def check(self):
        super().check()
        must(self.max_new_tokens >= 1, "max_new_tokens", "an integer >= 1", self.max_new_tokens)


@dataclass
class PrepareCommand(Schema):
    data: DataConfig = field(default_factory=DataConfig)  # what to prepare: conf/data/<source>.yaml
    paths: PathsConfig = field(default_factory=PathsConfig)  # where prepared data lives
    workers: int | None = None  # tokenizer threads; null = os.cpu_count()
    force: bool = False  # true: re-prepare even if the manifest verifies

    def check(self):
        must(self.workers is None or (is_int(self.workers) and self.workers >= 1), "workers",
             "an integer >= 1 or null", self.workers)


@dataclass
class GenerationsCommand(Schema):
    models: Any = MISSING  # run folders, .ckpt files or hf:<name>, each sampled alike: [runs/a,hf:gpt2]
    prompts: str = "builtin"  # builtin (8 prompts) | file:<path> (one a line) | val:<data folder>
    n_prompts: int = 16  # at most this many prompts (val: spread evenly over the split)
    prompt_tokens: int = 32  # val prompts: the first tokens of each document (or line) as the prompt
    n_samples: int = 4  # samples per prompt and model (self-BLEU needs 2 or more)
    max_new_tokens: int = 64  # per sample; fewer when it ends at <|endoftext|>; val prompts: the reference's too
    temperature: float = 0.8  # > 0; the same for every model
    greedy: bool = False  # always the likeliest token (temperature, top_k, top_p unused; one sample suffices)
    top_k: int | None = 200  # sample among the k most likely tokens; null = all
    top_p: float | None = None  # nucleus, in (0, 1]; null = none
    seed: int = 1337  # each sample's generator is seeded from (seed, prompt, sample): same seed, same samples
    batch_size: int = 16  # samples decoded together (prompts of one length), with the KV cache
    ref: str | None = None  # the model whose perplexity scores every continuation; null = the last of models
    device: str = DEVICE  # auto | cpu | cuda
    out: str = "generations"  # folder for generations.md, .json and .png (written atomically)

    def check(self):
        for key in ("n_prompts", "prompt_tokens", "n_samples", "batch_size"):
            must(is_int(getattr(self, key)) and getattr(self, key) >= 1, key, "an integer >= 1", getattr(self, key))
        SampleConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, greedy=self.greedy,
                     top_k=self.top_k, top_p=self.top_p)  # the sampling options' own checks


@dataclass
class ReportCommand(Schema):
    runs: Any = MISSING  # run folders and/or sweep folders (bare paths on the command line fill it)
    out: str | None = None  # report folder; null = <path>/report for one path, else ./report
    log_x: bool = False  # log-scale tokens axis in val_curves.png
    compare: Any = field(default_factory=list)  # models scored live on the runs' val tokens, e.g. hf:gpt2
    baseline: str | None = None  # the arm the verdicts compare the others with ("sched=cosine"); null: the study's
    generations: str | None = None  # a folder (or its generations.json) from gptlab.generations: a section
    predict: Any = field(default_factory=list)  # sizes whose loss the fits predict: 124M, 1.5B, gpt2, 124M@1B
    data_dir: str | None = None  # prepared datasets for compare; null = each run's paths.data_dir
    batch_size: int = 8  # windows per forward pass for compare
    device: str = DEVICE  # for compare: auto | cpu | cuda

    def check(self):
        must(is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)


@dataclass
class HfCommand(Schema):
    action: str = MISSING  # export (a gptlab model -> a transformers folder) or import (hf:<name> -> a .ckpt)
    spec: str = MISSING  # the model: run folder, .ckpt or hf:gpt2; `model=` (or the second bare word) sets it
    out: str = MISSING  # export: the folder to write; import: the .ckpt file to write
    overwrite: bool = False  # export: replace `out` if it exists (the old folder goes once the new one is whole)
    tokenizer: bool = True  # export: also write vocab.json, merges.txt and tokenizer.json


BENCH_PATHS = ("lightning", "bare", "nanogpt")  # gptlab/speed/timing.py


@dataclass
class GenerateBench(Schema):
    new_tokens: int = 256  # tokens generated per run from a 1-token prompt (cache reuse needs < model.block_size)
    repeats: int = 2  # runs with and without the KV cache each, alternating; 0 skips generation


@dataclass
class BenchCommand(RunConfig):
    measure: list = field(default_factory=lambda: list(BENCH_PATHS))  # training paths timed (nanogpt: full logits)
    warmup: int = 2  # untimed steps per path first (allocator, optimizer state, torch.compile)
    steps: int = 3  # timed steps per path per round
    rounds: int = 3  # rounds; the paths alternate round by round, so machine noise hits all alike
    eval_batches: int = 4  # val batches of the micro batch timed for eval tokens/s; 0 skips
    generate: GenerateBench = field(default_factory=GenerateBench)  # generation speed, KV cache or not
    synthetic: bool = False  # true: random tokens in a temporary dataset instead of data.name (no prepare)
    project_tokens: int = 655_360_000  # training tokens whose wall time is projected (the study: 20k x 64 x 512)
    sync_debug: bool = False  # CUDA: count host-device syncs in Lightning's timed steps (a separate check)
    out: str | None = None  # JSON file; null = bench.json in the run folder
    peak_flops: float | None = None  # known peak FLOP/s for MFU; null = trainer.peak_flops or derived (docs/speed.md)
    options: list = field(default_factory=list)  # options timed against the block: [all], [together], [pos=rope]

    def check(self):
        super().check()
        m = list(self.measure)
        must(m and len(set(m)) == len(m) and set(m) <= set(BENCH_PATHS), "measure",
             f"distinct names out of {list(BENCH_PATHS)}", m)
        for key, low in (("warmup", 1), ("steps", 1), ("rounds", 1), ("eval_batches", 0), ("project_tokens", 0)):
            must(is_int(getattr(self, key)) and getattr(self, key) >= low, key, f"an integer >= {low}",
                 getattr(self, key))
        must(is_int(self.generate.new_tokens) and self.generate.new_tokens >= 1, "generate.new_tokens",
             "an integer >= 1", self.generate.new_tokens)
        must(is_int(self.generate.repeats) and self.generate.repeats >= 0, "generate.repeats", "an integer >= 0",
             self.generate.repeats)
        must(self.peak_flops is None or (is_number(self.peak_flops) and self.peak_flops > 0), "peak_flops",
             "a FLOP/s figure > 0 (e.g. 2.5e11) or null", self.peak_flops)
