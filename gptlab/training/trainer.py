"""One training run from a typed RunConfig: data, module and Lightning Trainer built, trained, summarised.

    python -m gptlab.train model=30m sched=cosine      # the command line over this module (gptlab/train.py)

The run folder gets config.yaml (resolved), metrics.csv, checkpoints/{last,best}.ckpt, summary.json and wandb/.
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from omegaconf import OmegaConf

from gptlab.config import RunConfig
from gptlab.data.datamodule import TokenDataModule
from gptlab.fs import atomic_symlink, atomic_write_bytes, atomic_write_json, atomic_write_text
from gptlab.machine import facts, note
from gptlab.model.checkpoint import checkpoint_step, read_checkpoint
from gptlab.run.folder import MACHINE, METRICS, read_machine, resume_paths
from gptlab.run.launch import Launch
from gptlab.run.lock import launcher_rank
from gptlab.run.records import AppendingCSVLogger, write_summary
from gptlab.run.requeue import cluster_plugins
from gptlab.training.callbacks import (
    Clocks,
    KeptCheckpoints,
    LastCheckpoint,
    Progress,
    TargetLoss,
    Throughput,
)
from gptlab.training.components import safe_instantiate
from gptlab.training.guards import AtomicCheckpointIO, FiniteLossGuard, RNGState
from gptlab.training.hardware import cpu_fast_math, cuda_fast_math, use_compile
from gptlab.training.loggers import wandb_finish, wandb_update_summary
from gptlab.training.module import GPTModule
from gptlab.training.sharding import strategy
from gptlab.units import human

log = logging.getLogger("gptlab")


def cpu_threads(run: RunConfig, launcher_jobs: int | None = None) -> int:
    """trainer.threads, else this process's cores shared between the jobs a joblib launcher runs at once."""
    if run.trainer.threads:
        return run.trainer.threads
    cores = len(os.sched_getaffinity(0))
    return max(1, cores // launcher_jobs) if launcher_jobs and launcher_jobs > 0 else cores


def precision(setting: str, device: str) -> str:
    """trainer.precision, auto resolved: bf16-mixed on a GPU with bf16, 32-true elsewhere."""
    if setting != "auto":
        return setting
    gpu = device == "cuda" and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


def step_callbacks(tokens_per_step: int, flops_per_token: int, peak, prec: str, ckpt_dir=None) -> list:
    """What every training step runs through, here and in the bench's Lightning path (so it times the same work):
    tokens/s and MFU, the progress bar, the non-finite loss stop, the RNG state in checkpoints."""
    return [Throughput(tokens_per_step, flops_per_token, peak, prec), Progress(), FiniteLossGuard(ckpt_dir), RNGState()]


def datamodule(run: RunConfig) -> TokenDataModule:
    d = run.data
    dm = TokenDataModule(str(Path(run.paths.data_dir) / d.name), run.derived.block_size, run.derived.micro_batch,
                         d.val_tokens, d.num_workers, run.seed, vocab_size=50257, loss_mask=d.loss_mask,
                         accumulation=run.derived.accumulation)
    dm.check()  # missing or damaged data fails here, before the model is built
    return dm


def build_module(run: RunConfig) -> GPTModule:
    """The LightningModule, starting from init='s weights when fine-tuning (the architecture already matches them)."""
    module = GPTModule(model=asdict(run.model), optim=dict(run.optim), sched=dict(run.sched),
                       max_steps=run.trainer.max_steps, tokens_per_step=run.derived.tokens_per_step,
                       compile=use_compile(run.trainer.compile, run.trainer.accelerator))
    if run.init and not run.resume:
        from gptlab.model.load import load_model
        module.model.load_state_dict(load_model(run.init)[0].state_dict())
    return module


def build_trainer(run: RunConfig, module: GPTModule, run_dir: Path, loggers: list, prec: str) -> L.Trainer:
    t, der = run.trainer, run.derived
    callbacks = safe_instantiate(run.callbacks) + step_callbacks(
        der.tokens_per_step, module.model.flops_per_token(der.block_size), t.peak_flops, prec,
        run_dir / "checkpoints") + [LastCheckpoint(run_dir / "checkpoints" / "last.ckpt", t.eval_interval,
                                                   t.stop_after, t.ckpt_every_minutes), Clocks()]
    if der.keep_steps:
        callbacks.append(KeptCheckpoints(run_dir / "checkpoints", der.keep_steps))
    if t.target_val_loss is not None:
        callbacks.append(TargetLoss(t.target_val_loss))
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=strategy(t.strategy),
        precision=prec,
        max_steps=t.max_steps, accumulate_grad_batches=der.accumulation, gradient_clip_val=t.grad_clip or None,
        val_check_interval=t.eval_interval * der.accumulation, check_val_every_n_epoch=None,
        log_every_n_steps=t.log_every_n_steps, logger=loggers, callbacks=callbacks, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, use_distributed_sampler=False,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO(), *cluster_plugins()])  # whole checkpoints: a kill keeps the old


# MFU a run reaches, for the projected wall time printed before training: ~60% was measured for 30m on 2 Zen 3 cores
# and 32-42% on an H200 (README, Speed); narrow models run their small matmuls slower, hence the rounder figures.
ASSUMED_MFU = {"cpu": 0.4, "cuda": 0.35}


def projected_seconds(run: RunConfig, flops_per_token: int, device: torch.device, prec: str) -> tuple[float, str]:
    """(seconds, how) for the run's remaining tokens at an assumed MFU of the device's peak FLOP/s."""
    from gptlab.training.hardware import peak_flops
    peak = (run.trainer.peak_flops or peak_flops(device, prec) or 0.0) * run.derived.world_size
    mfu = ASSUMED_MFU.get(device.type, 0.35)
    tokens = run.derived.tokens_per_step * run.trainer.max_steps
    return (tokens * flops_per_token / (peak * mfu) if peak else float("nan"),
            f"at an assumed {mfu:.0%} MFU of {peak:.3g} FLOP/s; the progress bar's ETA measures it")


def duration(seconds: float) -> str:
    if seconds != seconds:
        return "unknown (no peak FLOP/s for this device: set trainer.peak_flops)"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{max(minutes, 1)} min"


def header(run: RunConfig, launch: Launch, trainer: L.Trainer, n_params: int, prec: str, run_dir: Path,
           flops_per_token: int) -> str:
    """The start-up lines: the model, device and run folder; the recipe in force and its projected wall time; the
    batch arithmetic."""
    from gptlab.optim.schedule import Schedule
    from gptlab.training.compose import recipe
    der, device, t = run.derived, trainer.strategy.root_device.type, run.trainer
    threads = f" ({torch.get_num_threads()} threads)" if device == "cpu" else ""
    seconds, how = projected_seconds(run, flops_per_token, trainer.strategy.root_device, prec)
    schedule = Schedule.of(run.sched)
    optimizer = run.optim["_target_"].rsplit(".", 1)[-1]
    return (f"gptlab: {human(n_params)} parameters ({n_params:,}), device {device}{threads} x {der.world_size}, "
            f"precision {prec}, run folder {run_dir}\n"
            f"recipe: {recipe(run)}: {optimizer} lr {run.optim['lr']:g}, {schedule.describe(t.max_steps)}, warmup "
            f"{schedule.warmup_steps}, {t.max_steps:,} steps, eval every {t.eval_interval}; projected "
            f"{duration(seconds)} ({how})\n"
            f"tokens per iteration: {der.tokens_per_step:,} = {der.accumulation} accumulation x {der.micro_batch} "
            f"micro batch x {der.block_size} block x {der.world_size} device(s); {t.max_steps:,} steps = "
            f"{human(der.tokens_per_step * t.max_steps)} tokens"
            + (f"\nresumed at step {launch.resume_step}; changed: {', '.join(launch.changes)}" if launch.changes else
               f"\nresumed at step {launch.resume_step}, the run's own config unchanged" if run.resume else "")
            + (f"\ncooldown branch of {run.branch}: the rate decays ({schedule.decay}) from step "
               f"{schedule.decay_start(t.max_steps)} to {t.max_steps}" if run.branch else ""))


def fit(run: RunConfig, launch: Launch = Launch(), launcher_jobs: int | None = None) -> Outcome:
    """Train the run (to trainer.max_steps, or until it is stopped) as this invocation launches it; its Outcome."""
    quiet_lightning()
    run_dir, ckpt = resume_paths(run.resume, run.paths.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if ckpt is None and run.branch:  # a cooldown branch: the source's records up to its step, then its own
        ckpt = Path(run.branch)
        source_metrics = ckpt.parent.parent / METRICS
        if source_metrics.is_file() and not (run_dir / METRICS).is_file():
            atomic_write_bytes(run_dir / METRICS, source_metrics.read_bytes())  # the logger drops rows after the step
    resumed_step = launch.resume_step if launch.resume_step is not None or ckpt is None else checkpoint_step(ckpt)
    dm = datamodule(run)
    if run.trainer.threads or run.derived.device == "cpu":
        torch.set_num_threads(cpu_threads(run, launcher_jobs))
    cpu_fast_math()  # glibc malloc keeps freed activations for reuse (a GPU run's host code too)
    if run.derived.device == "cuda":
        cuda_fast_math()  # TF32 for fp32 matmuls; bf16 autocast comes from the precision
    L.seed_everything(run.seed, verbose=False)
    module, prec = build_module(run), precision(run.trainer.precision, run.derived.device)
    machine = facts()  # after the thread count is set: it is one of them
    if launcher_rank() == 0:  # the other ranks a launcher started (torchrun, SLURM) write nothing into the folder
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(run.record()))
        record_machine(run_dir, machine, resumed=ckpt is not None)
    loggers = make_loggers(run, run_dir, None if ckpt is None else resumed_step * run.derived.tokens_per_step)
    n_params = module.model.num_params()
    trainer = build_trainer(run, module, run_dir, loggers, prec)
    if trainer.is_global_zero:
        log.info(header(run, launch, trainer, n_params, prec, run_dir,
                        module.model.flops_per_token(run.derived.block_size)))
        point_last_at(run, run_dir)
    validate_before(run, trainer, module, dm, ckpt)
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    stop = next(c for c in trainer.callbacks if isinstance(c, LastCheckpoint)).stopped  # None under ddp_spawn's parent
    for logger in loggers:
        logger.finalize("success")
    clocks = next(c for c in trainer.callbacks if isinstance(c, Clocks)).read()
    summary = None
    if trainer.is_global_zero:
        summary = finish(run, trainer, module, dm, run_dir, n_params, clocks, stop, machine)
    if any(isinstance(lg, WandbLogger) for lg in loggers):
        wandb_finish(summary)
    return Outcome(summary, stop)


def record_machine(run_dir: Path, machine: dict, resumed: bool) -> None:
    """machine.json on a run's first invocation; on a resume, one line if this machine differs from that one."""
    recorded = read_machine(run_dir) if resumed else None
    if recorded is None:
        if not (run_dir / MACHINE).is_file():
            atomic_write_json(run_dir / MACHINE, machine)
        return
    if line := note(recorded, "the machine this run started on", machine):
        log.warning(line)


def quiet_lightning() -> None:
    """Lightning's INFO lines off (our header says what they would), and lines that go somewhere outside Hydra."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # not ours to act on; a resume or a branch writes into its own checkpoints/ folder on purpose
    for text in (r".*isinstance\(treespec, LeafSpec\).*", ".*does not have many workers.*",
                 ".*exists and is not empty.*", ".*when logging on epoch level in distributed setting.*",
                 ".*torch.distributed.nn.functional.all_gather is deprecated.*"):
        warnings.filterwarnings("ignore", message=text)
    if not logging.getLogger().handlers:  # called outside Hydra's job logging (a test, a notebook)
        logging.basicConfig(level=logging.INFO, format="%(message)s")


def make_loggers(run: RunConfig, run_dir: Path, resume_tokens: int | None) -> list:
    """metrics.csv always, then every logger.* component (conf/logger/*.yaml), each given the whole run config."""
    from gptlab.training.components import loggers
    built = loggers(run.logger)
    for lg in built:
        lg.log_hyperparams(run.record())  # W&B's config, TensorBoard's hparams: the whole run, not only the module's
    return [AppendingCSVLogger(run_dir, resume_tokens)] + built


def point_last_at(run: RunConfig, run_dir: Path) -> None:
    """runs/last -> a fresh run's folder, runs/multirun/last -> a fresh sweep's folder (inside paths.log_dir): then
    `model=runs/last`, `resume=runs/last` and `report runs/multirun/last` name the latest (a resume resolves the link
    once, so a newer run cannot redirect it)."""
    log_dir, run_dir = Path(run.paths.log_dir).resolve(), run_dir.resolve()
    if run.resume or run.branch or log_dir not in run_dir.parents:
        return
    if run.sweep is None:
        atomic_symlink(log_dir / "last", run_dir)
    elif run_dir.parent.name == run.sweep:  # runs/multirun/<sweep>/<job>
        atomic_symlink(run_dir.parent.parent / "last", run_dir.parent)


def validate_before(run: RunConfig, trainer: L.Trainer, module, dm, ckpt) -> float | None:
    """The val loss before step 0 (a fresh run with trainer.eval_at_start): the curve's first point."""
    if not run.trainer.eval_at_start or ckpt is not None:
        return None
    before = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/loss"]
    if trainer.is_global_zero:
        log.info(f"val before training: loss {before:.4f}, ppl {math.exp(before):.1f}")
    return before


@dataclass
class Outcome:
    """What one invocation of fit leaves: the summary it wrote (rank 0; None elsewhere) and, when it stopped before
    trainer.max_steps, why ('SIGTERM', 'trainer.stop_after=N', ...)."""
    summary: dict | None
    stopped: str | None = None


def finish(run: RunConfig, trainer, module, dm, run_dir: Path, n_params: int, clocks: dict, stop,
           machine: dict) -> dict:
    """summary.json, the closing line and (for a finished run) the end-of-run sample; returns the summary."""
    extra = {"cooldown": branch_record(run)} if run.branch else {}
    steps = trainer.global_step
    last = run_dir / "checkpoints" / "last.ckpt"  # ddp_spawn's parent never stepped: its workers' checkpoint did,
    if not steps and last.is_file():  # and it says why they stopped (LastCheckpoint.on_save_checkpoint)
        ckpt = read_checkpoint(last)
        steps, stop = ckpt.get("global_step") or 0, stop or ckpt.get("stopped")
        clocks = saved_clocks(ckpt) or clocks  # the workers' clocks, as of their last checkpoint
    finished = steps >= run.trainer.max_steps or reached(trainer, run.trainer.target_val_loss)
    summary = write_summary(run_dir, params=n_params, tokens_per_step=run.derived.tokens_per_step, steps=steps,
                            clocks=clocks, model=asdict(run.model), target=run.trainer.target_val_loss,
                            finished=finished, stopped=None if finished else stop or "stopped before trainer.max_steps",
                            machine=machine,  # this invocation's; machine.json holds the first one's
                            **extra)
    log.info(closing_line(summary, run_dir))
    if summary["finished"]:
        print_sample(module, run, dm, run_dir)
    return summary


def saved_clocks(ckpt: dict) -> dict | None:
    """The Clocks callback's figures in a checkpoint (Lightning keys callback states by class name)."""
    state = next((v for k, v in (ckpt.get("callbacks") or {}).items() if str(k).startswith("Clocks")), None)
    return dict(state["clocks"]) if state and "clocks" in state else None


def reached(trainer, target: float | None) -> bool:
    """Whether the run stopped because its last validation reached trainer.target_val_loss."""
    loss = trainer.callback_metrics.get("val/loss")
    return target is not None and loss is not None and float(loss) <= target


def closing_line(summary: dict, run_dir: Path) -> str:
    """The run's last word: its final validation, or where it stopped, what was last measured and how to go on."""
    where = f"summary {run_dir / 'summary.json'}"
    loss, step = summary["final_val_loss"], summary["final_val_step"]
    last = "no validation yet" if loss is None else f"last validation at step {step}: loss {loss:.4f}"
    if not summary["finished"]:
        return (f"stopped at step {summary['steps']} ({summary['stopped']}); {last}; resume with: "
                f"python -m gptlab.train resume={run_dir}")
    if loss is None:  # eval_at_start=false and a run whose only validation failed to log: nothing to report
        return f"no validation ran; {where}"
    t = summary.get("target") or {}
    seconds = f", {t['train_s']:.1f} s of training" if t.get("train_s") is not None else ""
    hit = (f"; reached trainer.target_val_loss={t['loss']:g} after {t['tokens']:,.0f} tokens{seconds}"
           if t.get("reached") else "")
    return (f"val after training (step {step}): loss {loss:.4f}, ppl {summary['final_val_ppl']:.1f} (best "
            f"{summary['best_val_loss']:.4f} at step {summary['best_val_step']}){hit}; {where}")


def branch_record(run: RunConfig) -> dict:
    """What a cooldown branch's summary.json says of it: where it started and how it decayed."""
    from gptlab.optim.schedule import Schedule
    s, total = Schedule.of(run.sched), run.trainer.max_steps
    steps = total - s.decay_start(total)
    return {"from": run.branch, "from_step": total - steps, "steps": steps, "fraction": steps / total,
            "shape": s.decay, "min_lr_ratio": s.min_lr_ratio}


def print_sample(module, run: RunConfig, dm, run_dir: Path) -> None:
    """A short sample from the trained model: from sample.prompt, or (null) from the first sample.prompt_tokens tokens
    of the val split, so the prompt fits whatever data the run trained on."""
    from gptlab.data.tokenizer import get_tokenizer
    enc, s = get_tokenizer(), run.sample
    if not s.max_new_tokens:
        return
    model = module.model.eval()
    if getattr(module, "_device_mesh", None) is not None:  # sharded: the other ranks are done, so sample the
        from gptlab.model.checkpoint import load_checkpoint  # consolidated checkpoint, which holds the last step
        model = load_checkpoint(run_dir / "checkpoints" / "last.ckpt", module.device)[0].eval()
    ids = dm.val_start(s.prompt_tokens) if s.prompt is None else enc.encode_ordinary(s.prompt)
    idx = torch.tensor([ids or [enc.eot_token]], device=module.device)
    gen = torch.Generator(device=module.device).manual_seed(run.seed)
    out = model.generate(idx, s.max_new_tokens, temperature=0 if s.greedy else s.temperature, top_k=s.top_k,
                         generator=gen)
    tokens = [t for t in out[0].tolist() if t < enc.n_vocab]
    log.info("sample:\n" + enc.decode(tokens).split("<|endoftext|>")[0])


def fit_branches(run: RunConfig, launcher_jobs: int | None = None) -> list[dict]:
    """The run's cooldown branches (gptlab/run/branch.py), each fitted here; their losses go into the source's
    summary.json and W&B summary."""
    from gptlab.run.branch import run_branches
    results = run_branches(run, lambda branch, launch: fit(branch, launch, launcher_jobs))
    losses = {f"cooldown/loss@{r['tokens']}": r["final_val_loss"] for r in results}
    wandb_update_summary(run.logger.get("wandb"), Path(run.paths.run_dir), losses)
    return results
