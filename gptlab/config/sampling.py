"""Checks of the sampling options (train's end-of-run sample and python -m gptlab.sample). Imports no torch.

    python -m gptlab.sample model=runs/x temperature=0      # -> temperature must be > 0, ...; use greedy=true
"""
from __future__ import annotations

import math

from gptlab.config.checks import ConfigError, is_int, is_number, to_object
from gptlab.config.schema import SampleConfig

HEAD_DTYPES = ("auto", "exact", "bf16")  # output layer weights while decoding (gptlab.model.sampling)


def check_sample(s: SampleConfig, prefix: str = "") -> SampleConfig:
    """Refuse out-of-range options, naming the key (with `prefix`, e.g. 'sample.'); returns s."""
    for key in ("num_samples", "max_new_tokens"):
        v = getattr(s, key)
        if not is_int(v) or v < 1:
            raise ConfigError(f"{prefix}{key} must be an integer >= 1, got {v!r}")
    for key in ("greedy", "stop_at_eot", "use_cache"):
        if not isinstance(getattr(s, key), bool):
            raise ConfigError(f"{prefix}{key} must be true or false, got {getattr(s, key)!r}")
    if s.top_k is not None and (not is_int(s.top_k) or s.top_k < 1):
        raise ConfigError(f"{prefix}top_k must be an integer >= 1, or null for no top-k filter; got {s.top_k!r}")
    if s.top_p is not None and (not is_number(s.top_p) or not 0 < s.top_p <= 1):
        raise ConfigError(f"{prefix}top_p must be in (0, 1], or null for no nucleus filter; got {s.top_p!r}")
    t = s.temperature
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not (s.greedy or t > 0) or math.isnan(t):
        raise ConfigError(f"{prefix}temperature must be > 0, got {t!r}; for greedy (argmax) decoding use "
                          f"{prefix}greedy=true")
    if s.head_dtype not in HEAD_DTYPES:
        raise ConfigError(f"{prefix}head_dtype={s.head_dtype!r} is not one of {', '.join(HEAD_DTYPES)}")
    return s


def sample_config(node, prefix: str = "") -> SampleConfig:
    """The typed, checked SampleConfig of a config node holding (some of) its keys."""
    keys = {f for f in SampleConfig.__dataclass_fields__}
    return check_sample(to_object({k: node[k] for k in keys if k in node}, SampleConfig, prefix.rstrip(".")
                                  or "sample"), prefix)
