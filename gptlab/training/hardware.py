"""What the hardware can do: the CPU's name and fp32 peak, the dense bf16 peaks of GPUs, one device's peak FLOP/s.

    python -c "from gptlab.training.hardware import cpu_name, cpu_peak_flops; print(cpu_name(), cpu_peak_flops())"
    python -c "from gptlab.training.hardware import gpu_bf16_peak; print(gpu_bf16_peak('NVIDIA H200'))"  # 9.89e14
"""
from __future__ import annotations

import os

import torch

# Dense (not 2:4 sparse) bf16/fp16 tensor-core peaks, first matching name fragment wins. Lightning's table lacks the
# plain "NVIDIA H200" name and lists sparse figures for H200 and H100 NVL; these come from NVIDIA's datasheets.
GPU_BF16_PEAK = (("h200 nvl", 835e12), ("h200", 989e12), ("h100 nvl", 835e12), ("h100 pcie", 756e12),
                 ("h100 80gb hbm2e", 756e12), ("h100", 989e12), ("b200", 2250e12), ("a100", 312e12),
                 ("l40s", 362e12), ("l40", 181e12), ("l4", 121e12))
FLOP_PER_CYCLE = 32  # fp32 per core: two 256-bit FMA units (AVX2, as on Zen 3)


def _cpuinfo(field: str) -> list[str]:
    """The values of one /proc/cpuinfo field, one per logical CPU; empty where there is no such file."""
    try:
        with open("/proc/cpuinfo") as f:
            return [line.split(":", 1)[1].strip() for line in f if line.split(":")[0].strip() == field]
    except OSError:
        return []


def cpu_name() -> str:
    return next(iter(_cpuinfo("model name")), "CPU")


def cpu_peak_flops() -> float:
    """fp32 peak of the cores this process may use: cores x clock x 32 FLOP/cycle."""
    try:
        mhz = max(float(v) for v in _cpuinfo("cpu MHz"))
    except ValueError:
        mhz = 2500.0
    return len(os.sched_getaffinity(0)) * mhz * 1e6 * FLOP_PER_CYCLE


def gpu_bf16_peak(name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a GPU named like torch.cuda.get_device_name(), None if not in the table."""
    name = name.lower()
    return next((peak for key, peak in GPU_BF16_PEAK if key in name), None)


def peak_flops(device: torch.device, precision: str) -> float | None:
    """Dense peak FLOP/s of one device for this precision: our bf16 table, Lightning's GPU table, or the CPU
    estimate."""
    if device.type == "cpu":
        return cpu_peak_flops()
    half = "bf16" in precision or precision.startswith("16")
    if half and device.type == "cuda" and (peak := gpu_bf16_peak(torch.cuda.get_device_name(device))):
        return peak
    from lightning.fabric.utilities.throughput import get_available_flops
    dtype = torch.bfloat16 if "bf16" in precision else torch.float16 if precision.startswith("16") else torch.float32
    return get_available_flops(device, dtype)
