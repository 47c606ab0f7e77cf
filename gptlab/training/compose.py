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

from omegaconf import DictConfig, open_dict

from gptlab.config.checks import ConfigError
from gptlab.config.derive import run_config
from gptlab.config.schema import RunConfig
from gptlab.run.launch import Launch


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

    from gptlab.run.folder import label
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


def compose_run(cfg: DictConfig) -> tuple[RunConfig, Launch]:
    """(the run this command line runs, what this invocation adds: 'key: saved -> given' for each key a resume or
    branch changed, the step a branch's checkpoint holds). Refuses with ConfigError before anything is written."""
    from gptlab.run.branch import branch_source, check_branches
    from gptlab.run.folder import resume_paths
    from gptlab.run.resume import resume_config
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
    check_branches(run)
    check_launch(run)
    return run, Launch(resume_step=branch_step, changes=tuple(changes))


def check_launch(run: RunConfig) -> None:
    """Lightning's ddp and fsdp start the other ranks by relaunching this script, which a local -m sweep cannot do
    (under SLURM, srun starts them instead)."""
    t = run.trainer
    if started_apart() and run.sweep is None and not folder_given():
        raise ConfigError(f"this is rank {os.environ.get('RANK', '?')} of {os.environ['WORLD_SIZE']} processes a "
                          "launcher started (torchrun): give them all one run folder, hydra.run.dir=<a folder every "
                          "node sees> (under SLURM's sbatch the job id names it)")
    multi = run.derived.devices != 1 or t.num_nodes > 1
    if run.sweep and multi and t.strategy in ("auto", "ddp", "fsdp") and "SLURM_NTASKS" not in os.environ:
        raise ConfigError(f"trainer.strategy={t.strategy} on {t.devices} devices starts its other ranks by relaunching "
                          "this script, which a local -m sweep cannot do; use trainer.strategy=ddp_spawn, "
                          "hydra/launcher=slurm (srun starts the ranks) or trainer.devices=1")


def started_apart() -> bool:
    """Whether torchrun (or a launcher like it) started this process as one of several, outside a SLURM batch job
    (whose tasks share runs/slurm-<job id>): each would name its own timestamped folder."""
    from gptlab.config.folders import slurm_batch_job
    return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1 and slurm_batch_job() is None


def folder_given() -> bool:
    """Whether the command line set hydra.run.dir (Lightning's relaunched ranks and a resume set it too)."""
    from hydra.core.hydra_config import HydraConfig
    return HydraConfig.initialized() and any(o.startswith("hydra.run.dir=")
                                             for o in HydraConfig.get().overrides.hydra)


def recipe_data(experiment: str | None) -> str | None:
    """The data preset an experiment's recipe was tuned on (its `override /data:`, or that of the experiment it
    builds on); None when it names none (finetune: any data)."""
    from gptlab.config.presets import preset
    for d in (preset("experiment", str(experiment)).get("defaults") or []) if experiment else []:
        if isinstance(d, dict) and "override /data" in d:
            return d["override /data"]
        if isinstance(d, str) and d != "_self_" and (found := recipe_data(d)):
            return found
    return None


def recipe(run: RunConfig) -> str:
    """The presets in force, and a warning when the recipe was tuned for another model than the chosen one. On
    other data than the recipe's, the line says whose recipe runs on what (shakespeare_tiny's recipe on data=text)."""
    model = run.choices.get("model")
    if not run.choices:  # a run saved before its presets were recorded
        return "the run's own config.yaml"
    from gptlab.config.presets import preset
    experiment, data = run.choices.get("experiment"), run.choices.get("data")
    tuned_on = recipe_data(experiment)
    if tuned_on and (data != tuned_on or run.data.name != preset("data", tuned_on).get("name", tuned_on)):
        named = f" data.name={run.data.name}" if run.data.name != data else ""
        text = f"{experiment}'s recipe (tuned on data={tuned_on}) on data={data}{named}, model={model}"
    else:
        text = f"experiment={experiment}, model={model}"
    tuned = run.recipe.get("model")
    if tuned and model and tuned != model:
        hint = run.recipe.get("hint", "tune optim.lr and data.batch_size")
        text += f" (the recipe was tuned for model={tuned}; {hint})"
    return text


