"""Train a GPT: Hydra composes the config, Lightning runs it, the run folder keeps everything.

    python -m gptlab.train                                   # tiny model, Shakespeare, CPU: a few minutes
    python -m gptlab.train model=30m sched=cosine            # the reference study's model
    python -m gptlab.train experiment=study_30m_owt          # the reference study, exactly
    python -m gptlab.train resume=runs/2026-11-27/21-00-00   # continue a run where its 'last' checkpoint left off
    python -m gptlab.train -m model.n_layer=2,4 model.n_embd=128,256   # a sweep: one run folder per job
    python -m gptlab.train logger=none                       # no W&B (metrics.csv is always written)
    python -m gptlab.train experiment=finetune init=hf:gpt2 data=text data.name=mine   # fine-tune GPT-2

A run folder holds config.yaml (resolved), metrics.csv, checkpoints/{last,best}.ckpt, summary.json and wandb/.
Heavy imports (torch, lightning) come after validation, so a bad config fails in well under a second.
Exit status 2: refused before training (a config error, a run folder in use or already used); 1: stopped with a
one-line error (damaged data or checkpoint, non-finite loss, a failed checkpoint write). See gptlab/guards.py.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
import uuid
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from gptlab.assets import atomic_write_bytes
from gptlab.config import ConfigError, accumulation, human, resolve_micro_batch, validate
from gptlab.perf import cuda_fast_math, reexec_with_jemalloc, use_compile, use_cuda
from gptlab.runlock import RunFolderError, claim


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        point_at_resumed_run(cfg)
        if cfg.data.get("batch_size") == "auto":  # looks at the device (imports torch) only when asked
            resolve_micro_batch(cfg, model_preset(), use_cuda(cfg.trainer.accelerator))
        cfg = validate(cfg)
        check_init(cfg)
        cfg.sweep_name = sweep_name()
        check_launch(cfg)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(2)
    try:  # one writer per run folder; a fresh run never lands on an old one (gptlab/runlock.py)
        lock = claim(resume_paths(cfg)[0], resuming=bool(cfg.resume))
    except RunFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        return fit(cfg)
    except Exception as e:
        if not isinstance(e, user_errors()):
            raise
        print(f"error: {e}", file=sys.stderr)
        if cfg.sweep_name:  # under -m, Hydra records the job as failed and the sweep goes on
            raise
        sys.exit(1)
    finally:
        if lock is not None:
            lock.release()


def user_errors() -> tuple[type[Exception], ...]:
    """Failures whose message says what to fix: printed as one line, without a traceback."""
    from gptlab.guards import CheckpointWriteError, NonFiniteLoss
    from gptlab.load import LoadError
    from gptlab.shards import ShardError
    return ShardError, LoadError, NonFiniteLoss, CheckpointWriteError


def point_at_resumed_run(cfg: DictConfig) -> None:
    """With resume=, paths.run_dir becomes the resumed run's folder before anything resolves it, so its checkpoints
    and records keep going there (not into the new folder Hydra made for this command)."""
    if isinstance(cfg.get("resume"), str) and cfg.resume:
        cfg.paths.run_dir = str(resume_paths(cfg)[0])


def check_init(cfg: DictConfig) -> None:
    """Keys a chosen preset requires (???) are set, and init= names something that exists; ConfigError otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from gptlab.config import unset_mandatory
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    problems = [p for p in unset_mandatory(cfg, choices, Path(__file__).resolve().parents[1] / "conf")
                if not (cfg.get("resume") and p.startswith("init "))]  # a resume takes its weights from the run
    if problems:
        hint = ": a run folder, a .ckpt or hf:gpt2 ... hf:gpt2-xl (the weights to start from)"
        raise ConfigError(problems[0] + (hint if problems[0].startswith("init ") else ""))
    init = cfg.get("init")
    if init and not cfg.get("resume") and not str(init).startswith("hf:") and not Path(init).exists():
        raise ConfigError(f"init={init}: no such run folder or .ckpt file (or write hf:<name> for Hugging Face)")


def model_preset() -> str | None:
    """The model preset chosen on the command line or by the config (conf/model/<preset>.yaml)."""
    from hydra.core.hydra_config import HydraConfig
    return HydraConfig.get().runtime.choices.get("model") if HydraConfig.initialized() else None


def sweep_name() -> str | None:
    """Under -m, the sweep folder's name (every job's W&B group); None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    hc = HydraConfig.get()
    return Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None


def check_launch(cfg: DictConfig) -> None:
    """Lightning's ddp and fsdp start the other ranks by relaunching this script, which a local -m sweep cannot do
    (under SLURM, srun starts them instead)."""
    multi = str(cfg.trainer.devices) != "1" or cfg.trainer.num_nodes > 1
    if cfg.sweep_name and multi and cfg.trainer.strategy in ("auto", "ddp", "fsdp") and "SLURM_NTASKS" not in os.environ:
        raise ConfigError(f"trainer.strategy={cfg.trainer.strategy} on {cfg.trainer.devices} devices starts its other "
                          "ranks by relaunching this script, which a local -m sweep cannot do; use "
                          "trainer.strategy=ddp_spawn, hydra/launcher=slurm (srun starts the ranks) or trainer.devices=1")


def world_size(cfg) -> int:
    """Ranks in the run: devices per node (-1 or auto: every visible GPU, at least 1) x nodes."""
    import torch
    devices = str(cfg.trainer.devices)
    n = int(devices) if devices.isdigit() and int(devices) > 0 else max(torch.cuda.device_count(), 1)
    return n * int(cfg.trainer.num_nodes)


def cpu_threads(cfg) -> int:
    """trainer.threads, else this process's cores shared between the jobs a joblib launcher runs at once."""
    if cfg.trainer.threads:
        return cfg.trainer.threads
    from hydra.core.hydra_config import HydraConfig
    jobs = HydraConfig.get().launcher.get("n_jobs") if HydraConfig.initialized() else None
    cores = len(os.sched_getaffinity(0))
    return max(1, cores // jobs) if jobs and jobs > 0 else cores


def resume_paths(cfg) -> tuple[Path, Path | None]:
    """(run folder to write into, checkpoint to resume from). Resuming a run folder continues in that folder."""
    if not cfg.resume:
        return Path(cfg.paths.run_dir), None
    p = Path(cfg.resume)
    ckpt = p / "checkpoints" / "last.ckpt" if p.is_dir() else p
    if not ckpt.is_file():
        raise ConfigError(f"resume={cfg.resume}: no checkpoint at {ckpt} (give a run folder or a .ckpt file)")
    run_dir = p if p.is_dir() else ckpt.parent.parent
    return run_dir, ckpt


ALLOWED_ROOTS = ("gptlab", "torch", "lightning")  # packages whose classes a config's _target_ may name


def safe_instantiate(node) -> list:
    """Instantiate every callbacks.* entry with a _target_, after checking every _target_ in it (nested ones too):
    each must name a class defined in gptlab, torch or lightning (where it is defined, so torch.save or a module's
    re-export of os.system do not pass), and each entry must be a Lightning Callback. Refuses with SystemExit."""
    from hydra.utils import instantiate
    specs = {key: spec for key, spec in (node or {}).items() if isinstance(spec, DictConfig) and "_target_" in spec}
    for key, spec in specs.items():
        for where, target in find_targets(spec, f"callbacks.{key}"):
            check_target(where, target, callback=where == f"callbacks.{key}")
    return [instantiate(spec) for spec in specs.values()]


def find_targets(node, where: str):
    """(dotted key, value) of every _target_ in a config subtree."""
    from omegaconf import ListConfig
    if isinstance(node, DictConfig):
        for k, v in node.items():
            if k == "_target_":
                yield where, v
            else:
                yield from find_targets(v, f"{where}.{k}")
    elif isinstance(node, ListConfig):
        for i, v in enumerate(node):
            yield from find_targets(v, f"{where}[{i}]")


def check_target(where: str, target, callback: bool) -> None:
    """SystemExit unless `target` names a class defined under ALLOWED_ROOTS (a Lightning Callback if `callback`)."""
    import inspect
    from hydra.utils import get_object
    from lightning.pytorch import Callback
    allowed = ", ".join(f"{r}.*" for r in ALLOWED_ROOTS)
    if not isinstance(target, str) or target.split(".")[0] not in ALLOWED_ROOTS:  # checked before importing anything
        raise SystemExit(f"{where}._target_={target!r}: only classes from {allowed} may be instantiated")
    try:
        obj = get_object(target)
    except Exception as e:
        raise SystemExit(f"{where}._target_={target!r} cannot be found: {str(e).splitlines()[0]}") from None
    home = getattr(obj, "__module__", None) or ""
    if not inspect.isclass(obj) or home.split(".")[0] not in ALLOWED_ROOTS:
        what = f"a class from {home}" if inspect.isclass(obj) else "not a class"
        raise SystemExit(f"{where}._target_={target!r} is {what}; only classes defined in {allowed} may be instantiated")
    if callback and not issubclass(obj, Callback):
        raise SystemExit(f"{where}._target_={target!r} is not a Lightning Callback; callbacks.* entries must be")


def precision(cfg) -> str:
    import torch
    if cfg.trainer.precision != "auto":
        return cfg.trainer.precision
    gpu = cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` puts it); no network, no prompt."""
    import netrc
    from urllib.parse import urlparse
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_logger(cfg, run_dir: Path):
    """W&B online when logged in, offline otherwise; never `offline=True`, which sets WANDB_MODE process-wide."""
    if not cfg.get("logger") or "project" not in cfg.logger:
        return None
    import wandb
    from lightning.pytorch.loggers import WandbLogger
    mode = cfg.logger.mode
    if mode == "auto":
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
    id_file = run_dir / "wandb_id.txt"  # the same W&B run continues after a resume
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
    atomic_write_bytes(id_file, run_id.encode())
    sweep = cfg.get("sweep_name")
    return WandbLogger(project=cfg.logger.project, group=cfg.logger.group or sweep, name=cfg.logger.name or run_dir.name,
                       save_dir=str(run_dir), id=run_id, resume="allow", mode=mode, tags=list(cfg.logger.tags),
                       settings=wandb.Settings(init_timeout=60, silent=True))


def initial_weights(cfg):
    """The model named by init= (None without one); cfg.model takes its architecture, keeping the configured dropout."""
    if not cfg.get("init") or cfg.resume:
        return None
    from dataclasses import asdict
    from gptlab.config import validate_model
    from gptlab.load import load_model
    model, _ = load_model(cfg.init)
    arch = {k: v for k, v in asdict(model.config).items() if k != "dropout"}
    if arch != {k: cfg.model[k] for k in arch}:
        print(f"init={cfg.init}: model architecture taken from the weights: {arch}")
    cfg.model.update(arch)
    validate_model(cfg.model)
    block = cfg.data.block_size or cfg.model.block_size
    if block > cfg.model.block_size:
        raise SystemExit(f"data.block_size={block} exceeds the context of init={cfg.init} ({cfg.model.block_size})")
    return model


def fit(cfg: DictConfig) -> float | None:
    import torch
    import lightning as L
    from gptlab.callbacks import StopAfter
    from gptlab.data import TokenDataModule
    from gptlab.guards import AtomicCheckpointIO, checkpoint_step
    from gptlab.logs import AppendingCSVLogger, write_summary
    from gptlab.module import GPTModule

    t0 = time.time()
    for name in ("lightning.pytorch", "lightning.fabric"):  # our own first line says what these INFO lines would
        logging.getLogger(name).setLevel(logging.WARNING)
    run_dir, ckpt = resume_paths(cfg)
    resumed_step = None if ckpt is None else checkpoint_step(ckpt)  # weights_only=True; a damaged file fails here
    run_dir.mkdir(parents=True, exist_ok=True)
    block = cfg.data.block_size or cfg.model.block_size
    dm = TokenDataModule(str(Path(cfg.paths.data_dir) / cfg.data.name), block, cfg.data.batch_size,
                         cfg.data.val_tokens, cfg.data.num_workers, cfg.seed, vocab_size=50257,
                         loss_mask=bool(cfg.data.get("loss_mask", False)))
    dm.check()  # missing or damaged data fails here, before the model is built
    if cfg.trainer.threads or cfg.trainer.accelerator == "cpu" or not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(cfg))
    if use_cuda(cfg.trainer.accelerator):
        cuda_fast_math()  # TF32 for fp32 matmuls; bf16 autocast comes from the precision
    L.seed_everything(cfg.seed, verbose=False)

    init = initial_weights(cfg)  # fine-tuning: the architecture comes from the weights, dropout from the config
    world = world_size(cfg)
    accum = accumulation(cfg, world)
    tokens_per_step = accum * cfg.data.batch_size * block * world
    prec = precision(cfg)
    module = GPTModule(model=OmegaConf.to_container(cfg.model), optim=OmegaConf.to_container(cfg.optim),
                       sched=OmegaConf.to_container(cfg.sched), max_steps=cfg.trainer.max_steps,
                       tokens_per_step=tokens_per_step, compile=use_compile(cfg.trainer.compile, cfg.trainer.accelerator))
    if init is not None:
        module.model.load_state_dict(init.state_dict())
    atomic_write_bytes(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True).encode())

    csv = AppendingCSVLogger(run_dir, None if ckpt is None else resumed_step * tokens_per_step)
    loggers = [csv] + [w for w in [wandb_logger(cfg, run_dir)] if w is not None]
    n_params = module.model.num_params()
    callbacks = safe_instantiate(cfg.get("callbacks")) + step_callbacks(
        tokens_per_step, module.model.flops_per_token(block), cfg.trainer.peak_flops, prec, run_dir / "checkpoints") + (
        [StopAfter(cfg.trainer.stop_after)] if cfg.trainer.get("stop_after") else [])
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy, precision=prec, max_steps=cfg.trainer.max_steps,
        accumulate_grad_batches=accum, gradient_clip_val=cfg.optim.grad_clip or None,
        val_check_interval=cfg.trainer.eval_interval * accum, check_val_every_n_epoch=None,
        log_every_n_steps=cfg.trainer.log_every_n_steps, logger=loggers, callbacks=callbacks,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        use_distributed_sampler=False, default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()])  # checkpoint files are replaced whole: a kill leaves the previous one
    if trainer.is_global_zero:
        device = trainer.strategy.root_device.type
        threads = f" ({torch.get_num_threads()} threads)" if device == "cpu" else ""
        print(f"gptlab: {human(n_params)} parameters ({n_params:,}), device {device}{threads} x {world}, "
              f"precision {prec}, run folder {run_dir}")
        print(f"tokens per iteration: {tokens_per_step:,} = {accum} accumulation x {cfg.data.batch_size} micro batch "
              f"x {block} block x {world} device(s); {cfg.trainer.max_steps:,} steps = "
              f"{human(tokens_per_step * cfg.trainer.max_steps)} tokens")

    before = None
    if cfg.trainer.eval_at_start and ckpt is None:
        before = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/loss"]
        if trainer.is_global_zero:
            print(f"val before training: loss {before:.4f}, ppl {math.exp(before):.1f}")
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # full state for resume; loads use weights_only=True
    for logger in loggers:
        logger.finalize("success")

    best = None
    if trainer.is_global_zero:
        summary = write_summary(run_dir, params=n_params, tokens_per_step=tokens_per_step, steps=trainer.global_step,
                                wall_time_s=time.time() - t0, val_before=before, model=cfg.model)
        best = summary.get("best_val_loss")
        if summary["final_val_loss"] is None:  # no validation within max_steps (eval_interval longer, no eval_at_start)
            print(f"no validation ran (trainer.eval_interval > trainer.max_steps); summary {run_dir / 'summary.json'}")
        else:
            print(f"val after training: loss {summary['final_val_loss']:.4f}, ppl {summary['final_val_ppl']:.1f} "
                  f"(best {summary['best_val_loss']:.4f}); summary {run_dir / 'summary.json'}")
        print_sample(module, cfg)
    if len(loggers) > 1:
        import wandb
        wandb.finish()
    return best


def step_callbacks(tokens_per_step: int, flops_per_token: int, peak, prec: str, ckpt_dir=None) -> list:
    """What every training step runs through, here and in the bench's Lightning path (so it times the same work):
    tokens/s and MFU, the progress bar, the non-finite loss stop, the RNG state in checkpoints."""
    from gptlab.callbacks import Progress, Throughput
    from gptlab.guards import FiniteLossGuard, RNGState
    return [Throughput(tokens_per_step, flops_per_token, peak, prec), Progress(), FiniteLossGuard(ckpt_dir), RNGState()]


def print_sample(module, cfg) -> None:
    import torch
    from gptlab.tokenizer import get_tokenizer
    enc, s = get_tokenizer(), cfg.sample
    model = module.model.eval()
    idx = torch.tensor([enc.encode_ordinary(s.prompt) or [enc.eot_token]], device=module.device)
    gen = torch.Generator(device=module.device).manual_seed(cfg.seed)
    out = model.generate(idx, s.max_new_tokens, temperature=s.temperature, top_k=s.top_k, generator=gen)
    tokens = [t for t in out[0].tolist() if t < enc.n_vocab]
    print("sample:\n" + enc.decode(tokens).split("<|endoftext|>")[0])


if __name__ == "__main__":
    reexec_with_jemalloc()  # CPU steps spend much of their time in glibc malloc; jemalloc when installed
    main()
