"""The facts a run's numbers depend on: the CPU and its instruction set, cores and threads, the GPU and its driver,
the library versions, the BLAS and the deterministic flags. A run records them (machine.json when it starts,
summary.json's `machine` when it ends); a resume or `eval` on a machine that differs says what differs in one line.

    python -c "from gptlab.machine import facts; print(facts())"

Results are bit for bit only where every fact here matches: another CPU model takes other kernels (MKL picks its
code path by vendor and instruction set), another thread count splits reductions in another order, another torch or
BLAS computes differently. Imports torch only inside facts().
"""
from __future__ import annotations

import os
import platform

# The facts compared between machines, in the order a difference is named (cores alone does not change a result:
# the thread count, which it usually sets, does).
COMPARED = ("cpu", "cpu_family_model", "isa", "threads", "gpu", "gpu_driver", "torch", "blas", "lightning",
            "flush_denormal", "deterministic")


def _first_cpu() -> dict[str, str]:
    """/proc/cpuinfo's first logical CPU as {field: value}, read once; {} where there is no such file."""
    try:
        with open("/proc/cpuinfo") as f:
            block = f.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in block.splitlines()) if _}


def _blas(torch) -> str:
    """The BLAS torch was built with, as its build information names it ('Intel(R) oneAPI Math Kernel Library
    Version 2024.2 ...' is shortened to 'MKL 2024.2')."""
    for line in torch.__config__.show().splitlines():
        if "Math Kernel Library Version" in line:
            return "MKL " + line.split("Version", 1)[1].split()[0]
        if "BLAS_INFO=" in line:
            return line.split("BLAS_INFO=", 1)[1].split(",")[0]
    return "unknown"


def _gpu(torch) -> tuple[str | None, str | None]:
    """(the first CUDA device's name, the driver version), (None, None) without one."""
    if not torch.cuda.is_available():
        return None, None
    driver = None
    try:
        with open("/proc/driver/nvidia/version") as f:  # 'NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.86 ...'
            words = f.readline().split()
        driver = next((w for w in words if w[:1].isdigit() and "." in w), None)
    except OSError:
        pass
    return torch.cuda.get_device_name(0), driver or f"CUDA {torch.version.cuda}"


def flushes_subnormals(torch) -> bool:
    """Whether this thread's CPU flushes subnormal floats to zero (torch.set_flush_denormal has no getter: a
    subnormal times 1 reads 0 when it does)."""
    return (torch.tensor([1e-40], dtype=torch.float32) * 1.0).item() == 0.0


def facts() -> dict:
    """This process's machine facts (plain types: JSON and weights_only loading take them)."""
    import lightning
    import torch
    gpu, driver = _gpu(torch)
    info = _first_cpu()
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_vendor": info.get("vendor_id"),
        "cpu_family_model": "/".join(filter(None, (info.get("cpu family"), info.get("model")))) or None,
        "isa": torch.backends.cpu.get_cpu_capability(),  # the kernels torch chose: AVX512, AVX2, ...
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": torch.get_num_threads(),  # intra-op threads this process computes with
        "gpu": gpu,
        "gpu_driver": driver,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "blas": _blas(torch),
        "flush_denormal": flushes_subnormals(torch),  # torch.set_flush_denormal: off unless the user's code sets it
        "deterministic": {"algorithms": torch.are_deterministic_algorithms_enabled(),
                          "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
                          "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                          "matmul_precision": torch.get_float32_matmul_precision()},
    }


def differences(recorded: dict, now: dict) -> list[str]:
    """'threads 1 -> 2', one per compared fact that differs (a fact the record lacks is not compared)."""
    return [f"{k} {recorded[k]} -> {now.get(k)}" for k in COMPARED if k in recorded and recorded[k] != now.get(k)]


def same(recorded: dict, now: dict | None = None) -> bool:
    """Whether every compared fact matches: the condition for a bit-for-bit result."""
    now = facts() if now is None else now
    return all(k in recorded for k in COMPARED) and not differences(recorded, now)


def note(recorded: dict | None, what: str, now: dict | None = None) -> str | None:
    """One line when this machine differs from the one a record was made on (`what` names that one: 'the machine
    this run started on'), else None."""
    if not recorded:
        return None
    diff = differences(recorded, facts() if now is None else now)
    if not diff:
        return None
    return (f"this machine differs from {what} ({'; '.join(diff)}): numbers agree to rounding, not bit for bit "
            "(docs/crash_safety.md)")
