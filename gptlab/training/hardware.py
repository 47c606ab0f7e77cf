"""What the machine can do and how to run fast on it: jemalloc, TF32, torch.compile on CUDA, flash attention; the
CPU's name and its fp32 peak derived from /proc/cpuinfo (cpu_peak: cores, clock, vector width, FMA units), the dense
bf16 peaks of GPUs, one device's peak FLOP/s and how it was found, the sentence refusing an MFU above 100%.

    python -m gptlab.train                                # re-executes itself under jemalloc when it is installed
    GPTLAB_JEMALLOC=0 python -m gptlab.train              # glibc malloc (the allocator torch gets by default)
    GPTLAB_JEMALLOC=/opt/lib/libjemalloc.so.2 python -m gptlab.bench model=30m   # a jemalloc elsewhere
    python -c "from gptlab.training.hardware import jemalloc, allocator; print(jemalloc(), allocator())"
    python -c "from gptlab.training.hardware import cpu_name, this_cpu_peak; print(cpu_name(), this_cpu_peak().how)"
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
import re
import sys
from dataclasses import dataclass
from pathlib import Path

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


# glibc's mallopt parameters (malloc.h): blocks up to 32 MiB (the most it allows) come from the heap instead of
# their own mmap, and the heap keeps up to 1 GiB of freed memory instead of handing it back at once
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
GLIBC_TUNING = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20))


def cpu_fast_math() -> bool:
    """Under glibc malloc (no jemalloc loaded), keep big freed blocks for reuse, as jemalloc does: by default glibc
    maps every block over its mmap threshold afresh and unmaps it on free, so each step page-faults its activations
    in again, and the modern options' extra elementwise temporaries pay it most (RMSNorm's composite backward over
    8 x 512 x 384 floats ran 21 ms, and 7 ms with this; docs/speed.md). Blocks over 32 MiB (the fused loss's logit
    chunks) are still mapped. No effect on any number computed; GPTLAB_MALLOPT=0 keeps glibc's defaults. True when
    applied."""
    import ctypes
    import ctypes.util
    if os.environ.get("GPTLAB_MALLOPT", "1").lower() in ("0", "false", "no", "off") or allocator() == "jemalloc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return all(libc.mallopt(param, value) == 1 for param, value in GLIBC_TUNING)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False


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


def _cpuinfo(field: str) -> list[str]:
    """The values of one /proc/cpuinfo field, one per logical CPU; empty where there is no such file."""
    try:
        with open("/proc/cpuinfo") as f:
            return [line.split(":", 1)[1].strip() for line in f if line.split(":")[0].strip() == field]
    except OSError:
        return []


def cpu_name() -> str:
    return next(iter(_cpuinfo("model name")), "CPU")


@dataclass(frozen=True)
class CpuPeak:
    """A CPU's fp32 peak and its derivation: flops = cores x ghz x flop_per_cycle, flop_per_cycle = lanes x
    fma_units x 2 (an FMA is a multiply and an add); without FMA, fma_units counts the multiply and add ports and
    each does 1 FLOP a lane. `how` says it in one line, assumptions named."""
    flops: float
    cores: int
    ghz: float
    lanes: int
    fma_units: int
    flop_per_cycle: int
    isa: str
    how: str


def _blocks(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as one {field: value} per logical CPU."""
    out = []
    for chunk in re.split(r"\n[ \t]*\n", text.strip()):
        fields = dict(line.split(":", 1) for line in chunk.splitlines() if ":" in line)
        if fields := {k.strip(): v.strip() for k, v in fields.items()}:
            out.append(fields)
    return out


def _int(value: str | None) -> int:
    try:
        return int(value or "0")
    except ValueError:
        return 0


def _xeon_avx512_units(name: str) -> tuple[int, str]:
    """AVX-512 FMA units per core of an Intel part, from its model name: a name table, as no cpuinfo field says it.
    Xeon Scalable numbers read tier, generation, SKU (Gold 6148: tier 6, gen 1 = Skylake). Bronze 3xxx, Silver 4xxx
    and Gold 5xxx of Skylake (gen 1) and Cascade Lake (gen 2) have one FMA unit (port 0+1 fused), except Gold
    5122/5222; Platinum 8xxx, Gold 6xxx and every Ice Lake or later Xeon Scalable have two (port 5 too). KVM names
    the model only ('Intel Xeon Processor (Cascadelake)'): Ice Lake and later are all two; a cloud's Skylake or
    Cascade Lake host is a Platinum/Gold 8/6, so two, assumed. Client AVX-512 parts (Ice Lake client, Tiger Lake,
    Rocket Lake) have one. Anything else: two, assumed (the larger, so that MFU is a lower bound)."""
    low = name.lower()
    if m := re.search(r"(platinum|gold|silver|bronze) ([3-9])(\d)(\d\d)", low):
        sku = "".join(m.group(2, 3, 4))
        one = m.group(2) in "345" and m.group(3) in "12" and sku not in ("5122", "5222")
        return (1, f"Xeon {m.group(1).title()} {sku}: 1 FMA unit") if one else (2, "")
    if re.search(r"xeon processor \((icelake|sapphirerapids|emeraldrapids|graniterapids)", low):
        return 2, ""
    if re.search(r"xeon processor \((skylake|cascadelake)", low):
        return 2, "FMA units assumed: KVM hides the SKU; cloud hosts are Xeon Platinum/Gold"
    if "11th gen" in low or re.search(r"core\(tm\) i\d-10\d\dg\d", low):
        return 1, "client AVX-512: 1 FMA unit"
    return 2, f"FMA units assumed: {name or 'this CPU'} is not in the name table"


def _vector(b: dict[str, str]) -> tuple[str, int, int, bool, str]:
    """(ISA, fp32 lanes per operation, FMA units per core, FMA?, note) of one cpuinfo block."""
    flags, name = set(b.get("flags", "").split()), b.get("model name", "")
    amd, family, model = b.get("vendor_id") in ("AuthenticAMD", "HygonGenuine"), _int(b.get("cpu family")), _int(
        b.get("model"))
    if "avx512f" in flags:
        if amd and family == 0x19:  # Zen 4: two 256-bit FMA pipes, a 512-bit op takes both halves in turn
            return "AVX-512 on Zen 4", 8, 2, True, "512-bit ops double-pumped on 256-bit pipes"
        if amd and family >= 0x1A and "ryzen ai" in name.lower():  # Zen 5 mobile kept the 256-bit datapath
            return "AVX-512 on Zen 5 mobile", 8, 2, True, "512-bit ops double-pumped on 256-bit pipes"
        if amd and family >= 0x1A:  # Zen 5 (Turin, Ryzen 9000): two full 512-bit FMA pipes
            return "AVX-512 on Zen 5", 16, 2, True, ""
        units, note = _xeon_avx512_units(name)
        return "AVX-512", 16, units, True, note
    if "avx2" in flags and "fma" in flags:
        if amd and family in (0x17, 0x18) and model < 0x30:  # Zen 1/Zen+ (and Hygon): 256-bit ops on 128-bit pipes
            return "AVX2 on Zen 1", 4, 2, True, "256-bit ops split over 128-bit pipes"
        return "AVX2", 8, 2, True, ""  # Haswell and later, Zen 2/3: two 256-bit FMA units
    if "avx" in flags:  # Sandy/Ivy Bridge, no FMA: one 256-bit multiply port and one add port
        return "AVX", 8, 2, False, ""
    if {"sse", "sse2"} & flags:  # 128-bit multiply and add ports
        return "SSE", 4, 2, False, ""
    if "asimd" in b.get("Features", "").split():  # Arm: 128-bit NEON; Neoverse V1/V2 and Apple cores have 4 pipes
        return "NEON", 4, 4, True, "FMA units assumed (4 pipes of 128 bits, the most an Arm core has)"
    return "ISA unknown", 8, 2, True, "assumed AVX2-like"


def cpu_peak(text: str, cpus=None, max_mhz: float | None = None) -> CpuPeak:
    """fp32 peak of the logical CPUs `cpus` (ids; None = all) described by a /proc/cpuinfo text.

    Cores: the distinct (physical id, core id) pairs among them (SMT siblings share a core's vector units), else
    one per logical CPU. Clock: the highest of the blocks' 'cpu MHz', `max_mhz` (cpufreq's cpuinfo_max_freq where
    the kernel has it) and the '@ 2.50GHz' in the model name: on bare metal 'cpu MHz' is the current clock (idle
    cores read low), in a VM it is the nominal clock, and boost clocks run faster than all of them, so a measured
    figure above the peak means a faster clock than any the machine shows; give peak_flops= then. With no clock at
    all, 2.5 GHz is assumed. Vector width and FMA units: _vector (unknowns assume the larger, so MFU is a lower
    bound)."""
    blocks = _blocks(text)
    mine = [b for b in blocks if cpus is None or _int(b.get("processor", "-1")) in set(cpus)] or blocks
    keys = {(b["physical id"], b["core id"]) if "physical id" in b and "core id" in b else b.get("processor")
            for b in mine}
    cores = len(keys) if mine else len(cpus or ()) or os.cpu_count() or 1
    first = mine[0] if mine else {}
    isa, lanes, units, fma, note = _vector(first)
    clocks = [(float(b["cpu MHz"]), "cpu MHz") for b in mine if re.fullmatch(r"[\d.]+", b.get("cpu MHz", ""))]
    clocks = [max(clocks)] if clocks else []
    if max_mhz:
        clocks.append((float(max_mhz), "cpufreq max"))
    if m := re.search(r"@\s*([\d.]+)\s*GHz", first.get("model name", "")):
        clocks.append((float(m.group(1)) * 1000, "the model name's nominal clock"))
    mhz, source = max(clocks) if clocks else (2500.0, "")
    clock = f"clock from {source}" if source else "clock unknown, assumed 2.5 GHz"
    if source == "cpu MHz" and "hypervisor" in first.get("flags", "").split():
        clock += " (a VM shows the nominal clock)"
    fpc = lanes * units * (2 if fma else 1)
    per = f"{lanes} fp32 lanes x {units} FMA units x 2" if fma else f"{lanes} fp32 lanes x {units} ports (mul, add)"
    logical = f" ({len(mine)} logical CPUs)" if len(mine) != cores and mine else ""
    how = (f"{cores} core{'s' * (cores != 1)}{logical} x {mhz / 1000:.2f} GHz x {fpc} FLOP/cycle "
           f"({isa}: {per}{'; ' + note if note else ''}); {clock}")
    return CpuPeak(cores * mhz * 1e6 * fpc, cores, mhz / 1000, lanes, units, fpc, isa, how)


def _cpufreq_max_mhz(cpus) -> float | None:
    """The highest cpuinfo_max_freq (kHz in sysfs) among `cpus`, None where the kernel exposes no cpufreq."""
    found = []
    for c in cpus:
        try:
            found.append(int(Path(f"/sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq").read_text()) / 1000)
        except (OSError, ValueError):
            pass
    return max(found, default=None)


def this_cpu_peak() -> CpuPeak:
    """cpu_peak of this machine's /proc/cpuinfo, for the CPUs this process may use."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return cpu_peak(text, cpus, _cpufreq_max_mhz(cpus))


def cpu_peak_flops() -> float:
    """fp32 peak FLOP/s of the cores this process may use (this_cpu_peak().how says how it was derived)."""
    return this_cpu_peak().flops


def mfu_refusal(achieved: float, peak: float, how: str, setting: str = "peak_flops") -> str:
    """The sentence printed instead of an MFU above 100%: the peak it was measured against is wrong."""
    tflops = lambda x: f"{x / 1e12:.3f}" if x >= 1e9 else f"{x / 1e12:.2g}"  # 0.229; 1e-06 for a tiny peak
    return (f"MFU refused: {tflops(achieved)} TFLOP/s measured exceeds the assumed peak {tflops(peak)} TFLOP/s "
            f"({how}); give the machine's peak with {setting}=")


# Dense (not 2:4 sparse) bf16/fp16 tensor-core peaks, first matching name fragment wins. Lightning's table lacks the
# plain "NVIDIA H200" name and lists sparse figures for H200 and H100 NVL; these come from NVIDIA's datasheets.
GPU_BF16_PEAK = (("h200 nvl", 835e12), ("h200", 989e12), ("h100 nvl", 835e12), ("h100 pcie", 756e12),
                 ("h100 80gb hbm2e", 756e12), ("h100", 989e12), ("b200", 2250e12), ("a100", 312e12),
                 ("l40s", 362e12), ("l40", 181e12), ("l4", 121e12))


def gpu_bf16_peak(name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a GPU named like torch.cuda.get_device_name(), None if not in the table."""
    name = name.lower()
    return next((peak for key, peak in GPU_BF16_PEAK if key in name), None)


def device_peak(device, precision: str) -> tuple[float | None, str]:
    """(dense peak FLOP/s of one device for this precision, how it was found): our bf16 table, Lightning's GPU
    table, or the CPU's derivation (cpu_peak)."""
    if device.type == "cpu":
        cpu = this_cpu_peak()
        return cpu.flops, cpu.how
    import torch
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    half = "bf16" in precision or precision.startswith("16")
    if half and device.type == "cuda" and (peak := gpu_bf16_peak(name)):
        return peak, f"dense bf16 table for {name}"
    from lightning.fabric.utilities.throughput import get_available_flops
    dtype = torch.bfloat16 if "bf16" in precision else torch.float16 if precision.startswith("16") else torch.float32
    peak = get_available_flops(device, dtype)
    return peak, f"Lightning's table for {name}, {dtype}" if peak else f"unknown device {name}"


def peak_flops(device, precision: str) -> float | None:
    """Dense peak FLOP/s of one device for this precision (device_peak without the how)."""
    return device_peak(device, precision)[0]
