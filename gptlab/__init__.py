"""gptlab: an open lab for training, evaluating and comparing GPT language models.

    python -c "import gptlab; print(gptlab.__version__)"
    python -c "from gptlab import GPT, GPTConfig; print(GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64)).num_params())"
    python -c "from gptlab import load_model; m, info = load_model('runs/2026-11-27/21-00-00'); print(info)"

The public API is GPT, GPTConfig and load_model; they load lazily, so `import gptlab.config` stays free of torch.
"""
from __future__ import annotations

__version__ = "0.2.0"
__all__ = ["GPT", "GPTConfig", "load_model", "__version__"]


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
