"""Train a GPT: Hydra composes the config, Lightning runs it, the run folder keeps everything.

    python -m gptlab.train                                   # tiny model, Shakespeare, CPU: a few minutes
    python -m gptlab.train model=30m sched=cosine            # the reference study's model (the header names the recipe)
    python -m gptlab.train experiment=study_30m_owt          # the reference study, exactly
    python -m gptlab.train resume=runs/2026-11-27/21-00-00   # continue a run where its 'last' checkpoint left off
    python -m gptlab.train -m model.n_layer=2,4 model.n_embd=128,256   # a sweep: one run folder per job
    python -m gptlab.train logger=none                       # no W&B (metrics.csv is always written)
    python -m gptlab.train experiment=finetune init=hf:gpt2 data=text data.name=mine   # fine-tune GPT-2
    python -m gptlab.train --help                            # every key, with its comment

A run folder holds config.yaml (resolved), metrics.csv, checkpoints/{last,best}.ckpt, summary.json and wandb/.
Torch is imported only after the config passed its checks. Exit 2: refused before training (a config error, a run
folder in use or already used, a missing init model); 1: stopped with a one-line error (damaged data or
checkpoint, a non-finite loss, a failed checkpoint write); see gptlab/cli.py.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from gptlab import cli
from gptlab.config import ConfigError, RunConfig, resolve_micro_batch, run_config
from gptlab.devices import resolve_device
from gptlab.model.spec import architecture, check_reachable
from gptlab.runfolder import read_summary


def hydra_state() -> tuple[dict, str | None, int | None]:
    """(Hydra's group choices, the sweep folder's name under -m, the joblib launcher's n_jobs)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    if not HydraConfig.initialized():
        return {}, None, None
    hc = HydraConfig.get()
    sweep = Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    return choices, sweep, hc.launcher.get("n_jobs")


def job_name() -> str | None:
    """Under -m, what this job varies, as its W&B name and the report's legend write it: 'n_layer=4 n_embd=128'.
    The swept keys are a study's grid (hydra.sweeper.params) and the command line's a,b values."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    from gptlab.runfolder import label
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc, parser = HydraConfig.get(), OverridesParser.create()
    swept = set((hc.sweeper.get("params") or {}).keys())
    try:
        swept |= {o.key_or_group for o in parser.parse_overrides([a for a in sys.argv[1:] if "=" in a])
                  if o.is_sweep_override()}
    except Exception:  # a launcher's own argv (submitit, joblib): the study's grid alone
        pass
    mine = [o for o in hc.overrides.task if o.split("=", 1)[0].lstrip("+~") in swept]
    return label(mine) or None


def in_sweep() -> bool:
    return hydra_state()[1] is not None


def recipe(cfg, choices: dict) -> str:
    """The presets in force, and a warning when the recipe was tuned for another model than the chosen one."""
    r = cfg.get("recipe") or {}
    model = choices.get("model")
    if not choices:  # a run saved before its presets were recorded
        return "the run's own config.yaml"
    text = f"experiment={choices.get('experiment')}, model={model}"
    if r.get("model") and model and r["model"] != model:
        text += f" (the recipe was tuned for model={r['model']}; {r.get('hint', 'tune optim.lr and data.batch_size')})"
    return text


def check(cfg) -> tuple[RunConfig, object]:
    """Everything that can be refused, refused before torch is imported; returns the typed run and its lock."""
    from omegaconf import open_dict

    from gptlab.config.presets import prepare_command
    from gptlab.data.shards import check_dataset
    from gptlab.runfolder import resume_paths
    from gptlab.training.runlock import claim
    choices, sweep, _ = hydra_state()
    point_at_resumed_run(cfg)
    changes, branch_step = [], None
    if cfg.get("resume"):
        cfg, changes = resume_config(cfg)
    elif cfg.get("branch"):
        cfg, changes, branch_step = branch_source(cfg)
    if cfg.get("resume") or cfg.get("branch"):
        choices = dict(cfg.get("choices") or {})  # the presets the run was composed from, not this command's
    else:
        with open_dict(cfg):
            cfg.choices = choices  # config.yaml records them
    if cfg.get("init") and not cfg.get("resume"):
        check_reachable(cfg.init)
        cfg.model.update(architecture(cfg.init, keep=("dropout",), into=cfg.model))  # the weights set the shape
    key = "device" if cfg.trainer.get("accelerator") == cfg.get("device") else "trainer.accelerator"
    accelerator = resolve_device(cfg.trainer.get("accelerator", "auto"), key)
    resolve_micro_batch(cfg, choices.get("model"), accelerator == "cuda")
    run = run_config(cfg, recipe=recipe(cfg, choices), sweep=sweep)
    run.changes, run.name, run.resume_step = changes, job_name(), branch_step  # a branch's checkpoint is read once
    if run.sweep and run.name and not run.logger.job_type:  # W&B groups an arm's seeds by their job type
        run.logger.job_type = arm_name(run.name)
    check_launch(run)
    run_dir, ckpt = resume_paths(run.resume, run.paths.run_dir)
    lock = claim(run_dir, resuming=bool(run.resume))  # a second writer is refused before torch is imported
    try:
        check_dataset(Path(run.paths.data_dir) / run.data.name, prepare_command(run.resolved["data"]))
        if ckpt is not None:  # read (weights_only) before anything runs: a damaged or unsafe file is refused here
            from gptlab.training.guards import checkpoint_step
            run.resume_step = checkpoint_step(ckpt)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return run, lock


def resume_config(cfg):
    """The resumed run's own config.yaml with the command line's safe changes (gptlab/config/resume.py); a bare
    checkpoint without its run folder's config keeps the config as composed."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from gptlab.config.resume import given_keys, resumed_config
    from gptlab.runfolder import CONFIG
    saved = Path(cfg.paths.run_dir) / CONFIG
    if not saved.is_file():
        print(f"note: {saved} not found: resuming with the config as composed from the command line")
        return cfg, []
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    keys = given_keys(task, lambda k: (cli.CONF / k).is_dir())
    return resumed_config(cfg, OmegaConf.load(saved), keys)


def arm_name(name: str) -> str:
    """A job's name without its seed: the arm it belongs to (W&B caps job types at 64 characters)."""
    return (" ".join(w for w in name.split() if not w.startswith("seed=")) or "all")[:64]


def branch_source(cfg):
    """branch=<kept checkpoint>: (its run's own config.yaml as a cooldown branch into this command's new folder, what
    the command line changed, the step the checkpoint holds). The command line may set cooldown.* and logger.*, and
    what a resume may change; nothing else."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from gptlab.config.cooldown import branch_config
    from gptlab.config.resume import given_keys, resumed_config
    from gptlab.runfolder import CONFIG
    from gptlab.training.guards import checkpoint_step
    ckpt = Path(cfg.branch)
    saved = ckpt.parent.parent / CONFIG
    if not ckpt.is_file() or not saved.is_file():
        raise ConfigError(f"branch={cfg.branch}: {'no such checkpoint' if not ckpt.is_file() else f'no {saved}'}; "
                          "give a kept checkpoint in its run folder, <run>/checkpoints/step-000400.ckpt "
                          "(trainer.keep_tokens keeps them)")
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    given = given_keys(task, lambda k: (cli.CONF / k).is_dir())
    if "trainer.max_steps" in given:
        raise ConfigError("trainer.max_steps cannot be given with branch=: a branch ends where its cooldown does "
                          "(its step / (1 - cooldown.fraction)); change cooldown.fraction instead")
    keys = [k for k in given if k.split(".")[0] not in ("branch", "cooldown", "logger")]
    source, changes = resumed_config(cfg, OmegaConf.load(saved), keys)
    if any(k.split(".")[0] == "logger" for k in given):
        source.logger = cfg.logger
    step = checkpoint_step(ckpt)
    out = branch_config(source, str(ckpt), step, OmegaConf.to_container(cfg.cooldown, resolve=True),
                        cfg.paths.run_dir, cfg.trainer.stop_after if "trainer.stop_after" in given else None)
    return out, changes, step


def point_at_resumed_run(cfg) -> None:
    """With resume=, paths.run_dir becomes the resumed run's folder before anything resolves it, so its checkpoints
    and records keep going there (not into the new folder Hydra made for this command)."""
    from gptlab.runfolder import resume_paths
    if isinstance(cfg.get("resume"), str) and cfg.resume:
        cfg.paths.run_dir = str(resume_paths(cfg.resume, "")[0])


def check_launch(run: RunConfig) -> None:
    """Lightning's ddp and fsdp start the other ranks by relaunching this script, which a local -m sweep cannot do
    (under SLURM, srun starts them instead)."""
    t = run.trainer
    multi = run.derived.devices != 1 or t.num_nodes > 1
    if run.sweep and multi and t.strategy in ("auto", "ddp", "fsdp") and "SLURM_NTASKS" not in os.environ:
        raise ConfigError(f"trainer.strategy={t.strategy} on {t.devices} devices starts its other ranks by relaunching "
                          "this script, which a local -m sweep cannot do; use trainer.strategy=ddp_spawn, "
                          "hydra/launcher=slurm (srun starts the ranks) or trainer.devices=1")


def work(checked) -> float | None:
    """Train (or find the run finished), then its cooldown branches; the best val loss, which an Optuna sweep
    minimises. A Ctrl-C stops at the next step boundary with last.ckpt written, then exits 130."""
    from gptlab.training.fit import fit
    run, lock = checked
    try:
        if run.resume_step is not None and run.resume_step >= run.trainer.max_steps:
            summary, stopped = finished(run), None
        else:
            outcome = fit(run, launcher_jobs=hydra_state()[2])
            summary, stopped = outcome.summary or {}, outcome.stopped
        if run.cooldown.branches and read_summary(run.paths.run_dir).get("finished", True) and not stopped:
            from gptlab.training.branches import run_branches
            run_branches(run, launcher_jobs=hydra_state()[2])
    finally:
        if lock is not None:
            lock.release()
    if stopped == "SIGINT":
        sys.exit(130)
    return summary.get("best_val_loss")


def finished(run: RunConfig) -> dict:
    """A resume of a run that reached its max_steps changes nothing, and says how to extend it; its summary."""
    print(f"{run.paths.run_dir} finished at step {run.resume_step} (trainer.max_steps={run.trainer.max_steps}); "
          f"nothing to do. Extend it: python -m gptlab.train resume={run.paths.run_dir} "
          f"trainer.max_steps={run.trainer.max_steps * 2}")
    return read_summary(run.paths.run_dir)


def resume_argv(argv: list[str]) -> list[str]:
    """A resume writes into the run's own folder, not into a new one Hydra would make (nor its .hydra/ there)."""
    if any(a in ("-m", "--multirun") or a.startswith("hydra.run.dir=") for a in argv):
        return argv
    resume = next((a.split("=", 1)[1] for a in argv if a.startswith("resume=")), None)
    if not resume:
        return argv
    p = Path(resume).resolve() if Path(resume).is_symlink() else Path(resume)  # runs/last: the run it names now
    if not p.exists():  # refused by the checks, which name it
        return argv
    folder = p if p.is_dir() else p.parent.parent
    return argv + [f"hydra.run.dir={cli.hydra_quote(str(folder))}", "hydra.output_subdir=null"]


ENTRY = cli.Entry("train", check, work)

if __name__ == "__main__":
    from gptlab.training.perf import reexec_with_jemalloc
    reexec_with_jemalloc()  # CPU steps spend much of their time in glibc malloc; jemalloc when installed
    cli.run_app(ENTRY, resume_argv(sys.argv[1:]), in_sweep=in_sweep)
