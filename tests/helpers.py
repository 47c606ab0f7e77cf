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


def run_train(args, data_root, runs, env=None, check=True, timeout=600, extra=True):
    """python -m gptlab.train on the tiny corpus; returns the CompletedProcess. extra=False: the args alone, as a
    user types `python -m gptlab.train resume=<run>`."""
    env = {**os.environ, "GPTLAB_DATA": str(data_root), "GPTLAB_RUNS": str(runs), "WANDB_SILENT": "true",
           **(env or {})}
    env = {k: v for k, v in env.items() if v is not None}  # None removes a variable
    flags = [a for a in args if a in ("-m", "--multirun")]  # Hydra takes its flags before the overrides
    args = [a for a in args if a not in flags]
    mine = {a.split("=")[0] for a in args}  # a key given in args replaces TINY's (a sweep must not also fix it)
    base = ["data=text", "data.name=tiny", *[t for t in TINY if t.split("=")[0] not in mine]] if extra else []
    cmd = [sys.executable, "-m", "gptlab.train", *flags, *base, *args]
    require_slow("run_train")
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
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
    run, threads = compose_run(cfg)[0], torch.get_num_threads()
    try:
        return run, fit(run)
    finally:
        torch.set_num_threads(threads)  # fit sets trainer.threads for the process: the tests after it keep theirs
