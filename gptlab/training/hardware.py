"""What the machine can do and how to run fast on it: jemalloc, TF32, torch.compile on CUDA, flash attention; the
CPU's name and fp32 peak, the dense bf16 peaks of GPUs, one device's peak FLOP/s.

    python -m gptlab.train                                # re-executes itself under jemalloc when it is installed
    GPTLAB_JEMALLOC=0 python -m gptlab.train              # glibc malloc (the allocator torch gets by default)
    GPTLAB_JEMALLOC=/opt/lib/libjemalloc.so.2 python -m gptlab.bench model=30m   # a jemalloc elsewhere
    python -c "from gptlab.training.hardware import jemalloc, allocator; print(jemalloc(), allocator())"
    python -c "from gptlab.training.hardware import cpu_name, cpu_peak_flops; print(cpu_name(), cpu_peak_flops())"
    python -c "from gptlab.training.hardware import gpu_bf16_peak; print(gpu_bf16_peak('NVIDIA H200'))"  # 9.89e14

On CPUs the glibc allocator maps and unmaps every big tensor (logit chunks, activations), so each step page-faults
its memory in again; jemalloc (Debian/Ubuntu: apt-get install libjemalloc2) keeps freed pages for reuse, but only when
told never to purge them: its default decay hands big blocks back to the OS as fast as glibc (measured: no gain), so
MALLOC_CONF defaults to JEMALLOC_CONF (a MALLOC_CONF of your own wins). LD_PRELOAD only works from process start, so
the entry points call reexec_with_jemalloc() first; without the library everything runs as before. Imports no torch
at module level (the re-exec comes before it).
"""
from __future__ import annotations

import glob
import os
import sys

JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"  # keep freed pages: the resident set stays at the step's peak
JEMALLOC_GLOBS = ("/usr/lib/*-linux-gnu/libjemalloc.so.2", "/usr/lib64/libjemalloc.so.2",
                  "/usr/local/lib/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2")


def jemalloc() -> str | None:
    """Path of libjemalloc to preload: $GPTLAB_JEMALLOC (a path, or 0 for none), else the first installed one."""
    setting = os.environ.get("GPTLAB_JEMALLOC", "")
    if setting.lower() in ("0", "false", "no", "off"):
        return None
    if setting:
        return setting if os.path.isfile(setting) else None
    return next((p for pattern in JEMALLOC_GLOBS for p in sorted(glob.glob(pattern))), None)


def allocator() -> str:
    """'jemalloc' when it is loaded into this process, else 'default'."""
    try:
        with open("/proc/self/maps") as f:
            return "jemalloc" if "libjemalloc" in f.read() else "default"
    except OSError:
        return "default"


def reexec_with_jemalloc() -> None:
    """Re-run this command (same interpreter, argv and environment) with jemalloc preloaded, once; a no-op when
    jemalloc is missing, refused by GPTLAB_JEMALLOC=0, or already loaded."""
    lib = jemalloc()
    if not lib or not sys.platform.startswith("linux") or os.environ.get("_GPTLAB_REEXEC") or allocator() == "jemalloc":
        return
    env = dict(os.environ, _GPTLAB_REEXEC="1")  # never twice, even if the loader ignored the preload
    env["LD_PRELOAD"] = ":".join(filter(None, [lib, env.get("LD_PRELOAD")]))
    env.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def use_cuda(accelerator: str) -> bool:
    """Whether trainer.accelerator resolves to a CUDA GPU here."""
    import torch
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def use_compile(setting, accelerator: str) -> bool:
    """trainer.compile: true, false, or auto = on a CUDA GPU (on these CPUs compiling gains nothing steady-state)."""
    return use_cuda(accelerator) if setting == "auto" else bool(setting)


def cuda_fast_math() -> None:
    """TF32 tensor cores for the fp32 matmuls and convolutions left outside bf16 autocast (and for 32-true runs)."""
    import torch
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True


def flash_attention_ok(device, dtype) -> bool:
    """Whether scaled_dot_product_attention runs the flash kernel for causal attention here (CUDA, bf16/fp16)."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    if torch.device(device).type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return False
    q = torch.randn(1, 2, 16, 64, device=device, dtype=dtype)
    try:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            F.scaled_dot_product_attention(q, q, q, is_causal=True)
        return True
    except RuntimeError:
        return False


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


def peak_flops(device, precision: str) -> float | None:
    """Dense peak FLOP/s of one device for this precision: our bf16 table, Lightning's GPU table, or the CPU
    estimate."""
    if device.type == "cpu":
        return cpu_peak_flops()
    half = "bf16" in precision or precision.startswith("16")
    import torch
    if half and device.type == "cuda" and (peak := gpu_bf16_peak(torch.cuda.get_device_name(device))):
        return peak
    import torch
    from lightning.fabric.utilities.throughput import get_available_flops
    dtype = torch.bfloat16 if "bf16" in precision else torch.float16 if precision.startswith("16") else torch.float32
    return get_available_flops(device, dtype)
