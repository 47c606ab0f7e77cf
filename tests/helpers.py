"""Helpers the tests share (fixtures live in conftest.py): the repo root, a tiny training config, a composed train
config, and `python -m gptlab.train` on the tiny corpus.

    from helpers import ROOT, TINY, composed, run_train
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def composed(*overrides):
    """The train config as the command line composes it (Hydra's node dropped, the presets recorded in `choices`
    as a run records them); gptlab.config.run_config(cfg) makes the typed RunConfig of it."""
    from omegaconf import OmegaConf, open_dict

    from gptlab import cli
    cfg = cli.compose("train", list(overrides))  # a bad key or type: Refused, with the command line's message
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.choices = choices
    OmegaConf.update(cfg, "paths.run_dir", "/tmp/unused")  # ${hydra:...} only resolves inside a real run
    return cfg


def validated(cfg, cuda: bool = False):
    """What train checks before torch: the typed RunConfig (typed) and its components (types, targets, rates)."""
    from gptlab.training.components import check_offline
    run = typed(cfg, cuda)
    check_offline(run)
    return run


def typed(cfg, cuda: bool = False):
    """The RunConfig of a composed config, derived as on a CPU (or a CUDA GPU, for data.batch_size=auto)."""
    from unittest import mock

    from gptlab.config import run_config
    with mock.patch("gptlab.config.derive.resolve_device", lambda name, key: "cuda" if cuda else "cpu"):
        return run_config(cfg)


# A tiny model and corpus: every training test runs in seconds on 2 CPU cores.
TINY = ["model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=32", "data.batch_size=4",
        "data.val_tokens=1024", "trainer.eval_interval=5", "trainer.log_every_n_steps=1", "sched.warmup_steps=2",
        "optim.lr=3e-3", "trainer.threads=1", "logger=none", "sample.max_new_tokens=8"]


def tiny_corpus_docs(n_docs=24):
    """Short, highly regular English documents: a tiny model's loss falls fast on them."""
    animals = ["cat", "dog", "bird", "fox", "horse", "cow"]
    places = ["mat", "log", "hill", "barn", "road", "field"]
    return ["\n".join(f"The {animals[(d + i) % 6]} sat on the {places[(d * i) % 6]}. It was a good day."
                      for i in range(40)) for d in range(n_docs)]


def run_train(args, data_root, runs, env=None, check=True, timeout=600, extra=True, process=False):
    """`python -m gptlab.train` on the tiny corpus; returns a CompletedProcess (its returncode, stdout, stderr).
    extra=False: the args alone, as a user types `python -m gptlab.train resume=<run>`. It runs in this process
    (the entry point's own path: compose, check, Hydra's app, fit) unless it needs a process of its own: process=True
    (signals, exit codes before torch is imported), more than one device or rank, or a launcher that starts processes.
    """
    env = {"GPTLAB_DATA": str(data_root), "GPTLAB_RUNS": str(runs), "WANDB_SILENT": "true", **(env or {})}
    flags = [a for a in args if a in ("-m", "--multirun")]  # Hydra takes its flags before the overrides
    args = [a for a in args if a not in flags]
    mine = {a.split("=")[0] for a in args}  # a key given in args replaces TINY's (a sweep must not also fix it)
    base = ["data=text", "data.name=tiny", *[t for t in TINY if t.split("=")[0] not in mine]] if extra else []
    argv = [*flags, *base, *args]
    require_slow("run_train")
    if process or needs_a_process(argv, env):
        return train_process(argv, env, check, timeout)
    return in_process("train", argv, env, check)


PROCESSES = ("trainer=ddp", "trainer=fsdp", "trainer.devices=2", "trainer.devices=[", "hydra/launcher=",
             "trainer.num_nodes=", "trainer.strategy=ddp", "trainer.strategy=fsdp")  # start more than this process


def needs_a_process(argv: list[str], env: dict) -> bool:
    """Whether a command starts other processes (ranks, launcher jobs) or is one a launcher started; a resume of a
    run that did (its config.yaml says where it ran)."""
    ranks = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_PROCID")
    if any(a.startswith(PROCESSES) for a in argv) or any(env.get(k) is not None for k in ranks):
        return True
    for a in argv:
        key, _, path = a.partition("=")
        folder = Path(path) if key in ("resume", "branch") else None
        saved = folder and next((f / "config.yaml" for f in (folder, folder.parent.parent)
                                 if (f / "config.yaml").is_file()), None)
        if saved:
            import yaml
            t = (yaml.safe_load(saved.read_text()) or {}).get("trainer") or {}
            if t.get("devices") not in (1, None) or t.get("num_nodes", 1) != 1 or t.get("strategy") not in ("auto",):
                return True
    return False


def train_process(argv, env, check=True, timeout=600):
    """The command in a fresh `python -m gptlab.train` process."""
    env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}  # None removes a variable
    cmd = [sys.executable, "-m", "gptlab.train", *argv]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


LAST_START = [0.0]  # a run folder is named by the second it starts in: two in-process runs never share one


def in_process(name, argv, env=None, check=True):
    """`python -m gptlab.<name> <argv>` run through the entry point's own code in this process, with what a command
    changes in a process (the environment, threads, signal handlers, logging, the working directory, sys.argv) put
    back afterwards; a CompletedProcess of its exit code and what it printed."""
    import contextlib
    import importlib
    import io
    import logging
    import signal
    import time
    import warnings

    import torch

    from gptlab import cli
    module = importlib.import_module(f"gptlab.{name}")
    env = env or {}
    while int(time.time()) == int(LAST_START[0]):
        time.sleep(0.05)
    LAST_START[0] = time.time()
    saved_env, saved_argv, threads, cwd = dict(os.environ), list(sys.argv), torch.get_num_threads(), os.getcwd()
    signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)}
    root = logging.getLogger()
    logs = (list(root.handlers), root.level)
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True) for _ in range(2))  # a stream
    code = 0
    os.environ.update({k: v for k, v in env.items() if v is not None})
    for k in [k for k, v in env.items() if v is None]:
        os.environ.pop(k, None)
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("default")  # as a fresh process shows them (pytest's capture would take them)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            formatting = warnings.formatwarning
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
                warnings.formatwarning(message, category, filename, lineno, line))  # to this run's stderr
            try:
                if name == "train":  # the entry points with Hydra's app: what their __main__ does
                    from gptlab.run.resume import job_argv
                    cli.run_app(module.ENTRY, job_argv(list(argv)), in_sweep=module.in_sweep)
                elif name == "bench":
                    cli.run_app(module.ENTRY, list(argv))
                else:
                    cli.run(module.ENTRY, list(argv))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception:  # what a process would print as a traceback and exit 1 with
                import traceback
                traceback.print_exc()
                code = 1
            finally:
                warnings.formatwarning = formatting
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        torch.set_num_threads(threads)
        for s, handler in signals.items():
            signal.signal(s, handler)
        for h in root.handlers:
            if h not in logs[0]:
                h.close()
        root.handlers[:], _ = logs[0], root.setLevel(logs[1])
    p = subprocess.CompletedProcess(["python", "-m", f"gptlab.{name}", *argv], code,
                                    *(s.buffer.getvalue().decode("utf-8", "replace") for s in (out, err)))
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(p.args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


CURRENT = {}  # the running test item, set by conftest.pytest_runtest_call


def require_slow(what: str) -> None:
    """Training through a subprocess belongs to tests marked slow (make test-fast must train nothing)."""
    item = CURRENT.get("item")
    if item is not None and item.get_closest_marker("slow") is None:
        raise AssertionError(f"{item.nodeid} calls {what} (trains through a subprocess): mark it @pytest.mark.slow")


def run_entry(entry, argv: list[str]) -> int:
    """An entry point (gptlab.cli.Entry) run in this process on argv, as `python -m gptlab.<name>` would; its exit
    code."""
    from gptlab import cli
    try:
        cli.run(entry, list(argv))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


def train_here(args, data_root, run_dir):
    """A fresh run of the tiny config trained in this process through the library's own fit (no subprocess, no
    second compose): (its RunConfig, the fit's Outcome). For tests of records, clocks and reports."""
    from omegaconf import OmegaConf

    from gptlab.training.compose import compose_run
    from gptlab.training.trainer import fit
    mine = {a.split("=")[0] for a in args}
    cfg = composed("data=text", "data.name=tiny", *[t for t in TINY if t.split("=")[0] not in mine], *args)
    OmegaConf.update(cfg, "paths.data_dir", str(data_root))
    OmegaConf.update(cfg, "paths.log_dir", str(Path(run_dir).parent))
    OmegaConf.update(cfg, "paths.run_dir", str(run_dir))
    import torch
    run, threads = compose_run(cfg)[0], torch.get_num_threads()  # a fresh run: its Launch is the default
    try:
        return run, fit(run)
    finally:
        torch.set_num_threads(threads)  # fit sets trainer.threads for the process: the tests after it keep theirs
