"""The Hugging Face hub, asked once whether it can be reached, so nothing downloads into a 25-second retry loop.

    python -c "from gptlab.hub import reachable; print(reachable())"
    HF_HUB_OFFLINE=1 python -m gptlab.eval model=hf:gpt2     # from the local cache only; refused at once if missing

When the hub cannot be reached, the hub libraries are switched to their offline mode before they are imported
(HF_HUB_OFFLINE, HF_DATASETS_OFFLINE, TRANSFORMERS_OFFLINE), so what is cached loads and what is not fails at once.
"""
from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

from gptlab.errors import Refused

TIMEOUT_S = 3.0  # a reachable hub answers a TCP connect in well under this
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


ASKED_OFFLINE = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")  # by the user, at start


class HubUnreachable(Refused):
    """What was asked for needs the hub, which cannot be reached, and is not cached: refused (exit 2)."""


def _host() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


@functools.cache
def reachable() -> bool:
    """False when told to stay offline (HF_HUB_OFFLINE=1), or when the hub does not accept a connection in 3 s."""
    if ASKED_OFFLINE:
        return False
    try:
        socket.create_connection(_host(), timeout=TIMEOUT_S).close()
        return True
    except OSError:
        return False


def offline_unless_reachable() -> bool:
    """Whether the hub is reachable; if not, the hub libraries are put in offline mode (call before importing them)."""
    ok = reachable()
    if not ok:
        for var in OFFLINE_VARS:
            os.environ[var] = "1"
    return ok


def unreachable_message(what: str, fix: str) -> str:
    host, _ = _host()
    why = "HF_HUB_OFFLINE=1 is set" if ASKED_OFFLINE else f"{host} cannot be reached"
    return f"{what} is not in the local cache and {why}; {fix}"
