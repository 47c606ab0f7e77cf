"""Which device a command runs on, decided before torch is imported: device=auto|cpu|cuda everywhere.

    python -m gptlab.eval model=hf:gpt2 device=cuda     # refused at once on a machine without a CUDA GPU
    python -c "from gptlab.devices import visible_gpus; print(visible_gpus())"

The NVIDIA driver lists its GPUs under /proc/driver/nvidia/gpus; CUDA_VISIBLE_DEVICES narrows them, as CUDA does.
Once torch is imported, `torch_device` checks again (a CPU-only torch build on a GPU machine) with the same message.
"""
from __future__ import annotations

import glob
import os

from gptlab.errors import Refused

DEVICES = ("auto", "cpu", "cuda")
ACCELERATORS = DEVICES + ("gpu",)  # Lightning's name for cuda, accepted in trainer.accelerator


def visible_gpus() -> int:
    """CUDA GPUs this process may use, counted without importing torch."""
    found = len(glob.glob("/proc/driver/nvidia/gpus/*")) or len(glob.glob("/dev/nvidia[0-9]*"))
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is None:
        return found
    ids = [d for d in mask.split(",") if d.strip() and not d.strip().startswith("-")]
    return min(found, len(ids))


def resolve_device(name, key: str = "device") -> str:
    """'cpu' or 'cuda' for auto|cpu|cuda (and gpu); Refused, naming `key`, for anything else or a missing GPU."""
    if name not in ACCELERATORS:
        raise Refused(f"{key}={name!r} is not one of {', '.join(DEVICES)}")
    if name == "cpu":
        return "cpu"
    if visible_gpus() == 0:
        if name == "auto":
            return "cpu"
        raise Refused(f"{key}={name}: no CUDA GPU is visible on this machine; use {key}=cpu (or {key}=auto)")
    return "cuda"


def torch_device(name, key: str = "device"):
    """The torch.device for auto|cpu|cuda, checked against torch's own view of CUDA."""
    import torch
    kind = resolve_device(name, key)
    if kind == "cuda" and not torch.cuda.is_available():
        if name == "auto":
            return torch.device("cpu")
        raise Refused(f"{key}={name}: this torch ({torch.__version__}) cannot use the GPU (a CPU-only build, or no "
                      f"working driver); use {key}=cpu")
    return torch.device(kind)
