"""gptlab: an open lab for training, evaluating and comparing GPT language models.

    python -c "import gptlab; print(gptlab.__version__)"
    python -c "from gptlab import GPT, GPTConfig; print(GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64)).num_params())"
    python -c "from gptlab import load_model; m, info = load_model('runs/2026-11-27/21-00-00'); print(info)"

The public API is GPT, GPTConfig and load_model; they load lazily, so `import gptlab.config` stays free of torch.
"""
from __future__ import annotations

import sys

__version__ = "0.2.0"
__all__ = ["GPT", "GPTConfig", "load_model", "__version__"]

DEPENDENCIES = ("omegaconf", "hydra", "torch", "lightning", "tiktoken", "numpy")  # what the entry points import


def _dependencies_or_exit() -> None:
    """`python -m gptlab.<entry>` run by a Python without gptlab's dependencies (the virtualenv not active): one line
    that says how to activate or make it, exit 2 (gptlab/cli.py's codes), instead of an import traceback."""
    from importlib.util import find_spec
    missing = [name for name in DEPENDENCIES if find_spec(name) is None]  # found, not imported: milliseconds
    if missing:
        print(f"error: this Python ({sys.executable}) cannot import {missing[0]}, which gptlab needs: activate the "
              "project's virtualenv (source .venv/bin/activate, or run .venv/bin/python -m ...), or set it up first "
              "with make setup (make train also prepares Shakespeare and trains)", file=sys.stderr)
        sys.exit(2)


if sys.argv[:1] == ["-m"]:  # python -m gptlab.<entry>: Python sets argv[0] to '-m' while it imports the package
    _dependencies_or_exit()


def __getattr__(name: str):
    if name == "GPT":
        from gptlab.model.gpt import GPT
        return GPT
    if name == "GPTConfig":
        from gptlab.config.schema import GPTConfig
        return GPTConfig
    if name == "load_model":
        from gptlab.model.load import load_model
        return load_model
    raise AttributeError(f"module 'gptlab' has no attribute {name!r}")
