"""compose_run: the command line's composed config as the RunConfig it runs, for a fresh run, a resume and a cooldown
branch alike. Imports no torch until a resumed or branched checkpoint is read for its step.

    python -m gptlab.train resume=runs/last                 # the run's own config.yaml, safe changes only
    python -m gptlab.train branch=runs/last/checkpoints/step-000200.ckpt   # its config as a decaying branch
    python -m gptlab.train -m model.n_layer=2,4             # each job named by what it varies (its W&B name)

Hydra's runtime (the group presets chosen, the sweep, the job's overrides) is read here once and recorded in the
config (choices, sweep, name, arm), so what comes after reads the record.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from gptlab.config.checks import ConfigError
from gptlab.config.derive import run_config
from gptlab.config.presets import CONF
from gptlab.config.schema import RunConfig


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


def arm_name(name: str) -> str:
    """A job's name without its seed: the arm it belongs to (W&B caps job types at 64 characters)."""
    return (" ".join(w for w in name.split() if not w.startswith("seed=")) or "all")[:64]


def task_keys() -> list[str]:
    """The config keys this command line's overrides touch ('sched' for sched=constant)."""
    from hydra.core.hydra_config import HydraConfig

    from gptlab.config.resume import given_keys
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return given_keys(task, lambda k: (CONF / k).is_dir())


def compose_run(cfg: DictConfig) -> tuple[RunConfig, list[str], int | None]:
    """(the run this command line runs, 'key: saved -> given' for each key a resume or branch changed, the step a
    branch's checkpoint holds). Refuses with ConfigError before anything is written."""
    from gptlab.runfolder import resume_paths
    choices, sweep, _ = hydra_state()
    changes, branch_step = [], None
    if isinstance(cfg.get("resume"), str) and cfg.resume:  # the resumed run's folder, not a new one Hydra made
        cfg.paths.run_dir = str(resume_paths(cfg.resume, "")[0])
        cfg, changes = resume_config(cfg)
    elif cfg.get("branch"):
        cfg, changes, branch_step = branch_source(cfg)
    with open_dict(cfg):
        if not (cfg.get("resume") or cfg.get("branch")):
            cfg.choices = choices  # config.yaml records them; a resume names the run's own presets
        if sweep:
            cfg.sweep, cfg.name = sweep, job_name()
            cfg.arm = arm_name(cfg.name) if cfg.name else None
    if cfg.get("init") and not cfg.get("resume"):
        from gptlab.model.spec import architecture, check_reachable
        check_reachable(cfg.init)
        cfg.model.update(architecture(cfg.init, keep=("dropout",), into=cfg.model))  # the weights set the shape
    run = run_config(cfg)
    check_launch(run)
    return run, changes, branch_step


def resume_config(cfg: DictConfig) -> tuple[DictConfig, list[str]]:
    """The resumed run's own config.yaml with the command line's safe changes (gptlab/config/resume.py); a bare
    checkpoint without its run folder's config keeps the config as composed."""
    from gptlab.config.resume import resumed_config
    from gptlab.runfolder import CONFIG, upgraded
    saved = Path(cfg.paths.run_dir) / CONFIG
    if not saved.is_file():
        print(f"note: {saved} not found: resuming with the config as composed from the command line")
        return cfg, []
    return resumed_config(cfg, upgraded(OmegaConf.load(saved)), task_keys())


def branch_source(cfg: DictConfig) -> tuple[DictConfig, list[str], int]:
    """branch=<kept checkpoint>: (its run's own config.yaml as a cooldown branch into this command's new folder, what
    the command line changed, the step the checkpoint holds). The command line may set cooldown.* and logger.*, and
    what a resume may change; nothing else."""
    from gptlab.config.cooldown import branch_config
    from gptlab.config.resume import resumed_config
    from gptlab.runfolder import CONFIG, upgraded
    from gptlab.training.guards import checkpoint_step
    ckpt = Path(cfg.branch)
    saved = ckpt.parent.parent / CONFIG
    if not ckpt.is_file() or not saved.is_file():
        raise ConfigError(f"branch={cfg.branch}: {'no such checkpoint' if not ckpt.is_file() else f'no {saved}'}; "
                          "give a kept checkpoint in its run folder, <run>/checkpoints/step-000400.ckpt "
                          "(trainer.keep_tokens keeps them)")
    given = task_keys()
    if "trainer.max_steps" in given:
        raise ConfigError("trainer.max_steps cannot be given with branch=: a branch ends where its cooldown does "
                          "(its step / (1 - cooldown.fraction)); change cooldown.fraction instead")
    keys = [k for k in given if k.split(".")[0] not in ("branch", "cooldown", "logger")]
    source, changes = resumed_config(cfg, upgraded(OmegaConf.load(saved)), keys)
    if any(k.split(".")[0] == "logger" for k in given):
        source.logger = cfg.logger
    step = checkpoint_step(ckpt)
    out = branch_config(source, str(ckpt), step, OmegaConf.to_container(cfg.cooldown, resolve=True),
                        cfg.paths.run_dir, cfg.trainer.stop_after if "trainer.stop_after" in given else None)
    return out, changes, step


def check_launch(run: RunConfig) -> None:
    """Lightning's ddp and fsdp start the other ranks by relaunching this script, which a local -m sweep cannot do
    (under SLURM, srun starts them instead)."""
    t = run.trainer
    multi = run.derived.devices != 1 or t.num_nodes > 1
    if run.sweep and multi and t.strategy in ("auto", "ddp", "fsdp") and "SLURM_NTASKS" not in os.environ:
        raise ConfigError(f"trainer.strategy={t.strategy} on {t.devices} devices starts its other ranks by relaunching "
                          "this script, which a local -m sweep cannot do; use trainer.strategy=ddp_spawn, "
                          "hydra/launcher=slurm (srun starts the ranks) or trainer.devices=1")


def recipe(run: RunConfig) -> str:
    """The presets in force, and a warning when the recipe was tuned for another model than the chosen one."""
    model = run.choices.get("model")
    if not run.choices:  # a run saved before its presets were recorded
        return "the run's own config.yaml"
    text = f"experiment={run.choices.get('experiment')}, model={model}"
    tuned = run.recipe.get("model")
    if tuned and model and tuned != model:
        hint = run.recipe.get("hint", "tune optim.lr and data.batch_size")
        text += f" (the recipe was tuned for model={tuned}; {hint})"
    return text
