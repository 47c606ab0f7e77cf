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
    out, changes = resumed_config(cfg, upgraded(OmegaConf.load(saved)), task_keys())
    return keep_global_batch(out, changes)


WHERE = ("trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.accelerator", "device")


def keep_global_batch(out: DictConfig, changes: list[str]) -> tuple[DictConfig, list[str]]:
    """A resume on another number of ranks keeps the run's global batch (its accumulation adjusts): a run that left
    it implicit (one micro batch per device) gets it written out, from what its config.yaml recorded."""
    d = out.get("derived") or {}
    moved = any(c.split(":")[0] in WHERE for c in changes)
    if moved and d and not (out.data.get("global_batch") or out.data.get("global_batch_tokens")):
        seqs = d["micro_batch"] * d["accumulation"] * d["world_size"]
        out.data.global_batch = seqs
        changes = changes + [f"data.global_batch: None -> {seqs} (the run's global batch, kept)"]
    return out, changes


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
    (under SLURM, srun starts them instead); Muon cannot run on FSDP's shards."""
    t = run.trainer
    if started_apart() and run.sweep is None and not folder_given():
        raise ConfigError(f"this is rank {os.environ.get('RANK', '?')} of {os.environ['WORLD_SIZE']} processes a "
                          "launcher started (torchrun): give them all one run folder, hydra.run.dir=<a folder every "
                          "node sees> (under SLURM's sbatch the job id names it)")
    if t.strategy == "fsdp" and "muon" in run.optim["_target_"].lower():
        raise ConfigError("optim=muon orthogonalises each whole weight matrix, and trainer.strategy=fsdp shards them; "
                          "use trainer=ddp with Muon, or optim=adamw with FSDP")
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


NOT_THE_RUN = ("resume", "choices", "sweep", "name", "arm", "derived", "paths.run_dir")  # bookkeeping, not the run


def differences(saved: dict, given: dict) -> list[str]:
    """'key: saved -> given' for every key that differs, but for bookkeeping and what a resume may change."""
    from gptlab.config.checks import within
    from gptlab.config.resume import may_change
    from gptlab.runfolder import flat
    a, b = flat(saved), flat(given)
    keep = lambda k: not within(k, NOT_THE_RUN) and not may_change(k)  # noqa: E731
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if keep(k) and a.get(k) != b.get(k)]


def requeued(cfg: DictConfig, run: RunConfig) -> tuple[RunConfig, list[str], int | None] | None:
    """A job's own command run again into its own folder (Lightning's SLURM auto-requeue, submitit's checkpoint on
    timeout): the same run, continued from its last.ckpt, when the saved config equals this command's. None when the
    folder holds no run; ConfigError when it holds another run, or one with no checkpoint to continue."""
    from gptlab.runfolder import CONFIG, upgraded
    from gptlab.training.runlock import launcher_rank, previous_run
    run_dir = Path(run.paths.run_dir)
    if run.resume or run.branch or not previous_run(run_dir):
        return None
    if launcher_rank() > 0 and not (run_dir / "checkpoints" / "last.ckpt").is_file():
        return None  # a rank Lightning started after rank 0 wrote config.yaml: rank 0 checked the folder
    if not (run_dir / CONFIG).is_file() or not (run_dir / "checkpoints" / "last.ckpt").is_file():
        raise ConfigError(f"run folder {run_dir} already holds a run with no config.yaml and last.ckpt to continue "
                          "from; start the new run elsewhere (hydra.run.dir=<new folder>, or delete the old one)")
    changed = differences(OmegaConf.to_container(upgraded(OmegaConf.load(run_dir / CONFIG))), run.record())
    if changed:
        raise ConfigError(f"run folder {run_dir} already holds a run with another config ({changed[0]}"
                          f"{f' and {len(changed) - 1} more' if len(changed) > 1 else ''}); continue it as it was "
                          f"with resume={run_dir}, or start the new run elsewhere (hydra.run.dir=<new folder>)")
    print(f"{run_dir} holds this command's own run (the same config): continuing it from its last.ckpt")
    with open_dict(cfg):
        cfg.resume = str(run_dir)
    return compose_run(cfg)


def job_argv(argv: list[str]) -> list[str]:
    """A resume writes into the run's own folder, not into a new one Hydra would make (nor its .hydra/ there); a rank
    a launcher started (torchrun, SLURM, a second node) leaves Hydra's .hydra/ and train.log to rank 0."""
    from gptlab.cli import hydra_quote
    from gptlab.training.runlock import launcher_rank
    if launcher_rank() > 0 and not any(a in ("-m", "--multirun") for a in argv):
        if not any(a.startswith("hydra.output_subdir=") for a in argv):
            argv = argv + ["hydra.output_subdir=null"]
        argv = argv + ["hydra.job_logging.root.handlers=[console]"]  # train.log is rank 0's
    if any(a in ("-m", "--multirun") or a.startswith("hydra.run.dir=") for a in argv):
        return argv
    resume = next((a.split("=", 1)[1] for a in argv if a.startswith("resume=")), None)
    p = Path(resume or "")
    p = p.resolve() if p.is_symlink() else p  # runs/last: the run it names now
    if not resume or not p.exists():  # none, or refused by the checks, which name it
        return argv
    folder = p if p.is_dir() else p.parent.parent
    return argv + [f"hydra.run.dir={hydra_quote(str(folder))}", "hydra.output_subdir=null"]
