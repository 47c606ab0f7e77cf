"""The CPU's fp32 peak comes from what the processor has (gptlab.training.hardware.cpu_peak), derived here from
recorded /proc/cpuinfo texts (tests/fixtures/cpuinfo/README.md says whose), and an MFU above 100% is refused, never
printed as a figure, naming the peak it exceeds; `peak_flops=` replaces the derivation and is named.

    .venv/bin/python -m pytest tests/test_hardware.py -q -p no:cacheprovider
"""
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from gptlab.training.hardware import cpu_peak, cpu_peak_flops, peak_flops, this_cpu_peak

FIXTURES = Path(__file__).parent / "fixtures" / "cpuinfo"
ZEN3 = (FIXTURES / "amd_ryzen_zen3_avx2.txt").read_text()
XEON = (FIXTURES / "intel_xeon_platinum_8259cl_avx512.txt").read_text()
ZEN4 = (FIXTURES / "amd_epyc_zen4_genoa_kvm.txt").read_text()


def test_avx2_zen3_two_cores():
    p = cpu_peak(ZEN3, [0, 1])
    assert (p.isa, p.lanes, p.fma_units, p.flop_per_cycle) == ("AVX2", 8, 2, 32)  # 8 lanes x 2 FMA x 2
    assert p.cores == 2 and p.ghz == pytest.approx(2.12439)  # the higher of the two 'cpu MHz' readings
    assert p.flops == pytest.approx(2 * 2124.390e6 * 32)
    assert p.how.startswith("2 cores x 2.12 GHz x 32 FLOP/cycle (AVX2: 8 fp32 lanes x 2 FMA units x 2)")
    assert "assumed" not in p.how
    assert cpu_peak(ZEN3, [1]).flops == pytest.approx(1 * 2124.390e6 * 32)  # only the CPUs this process may use


def test_avx512_xeon_platinum_smt_siblings_are_one_core():
    p = cpu_peak(XEON, [0, 1])
    assert (p.isa, p.lanes, p.fma_units, p.flop_per_cycle) == ("AVX-512", 16, 2, 64)  # 16 lanes x 2 FMA x 2
    assert p.cores == 1  # both vCPUs are physical id 0, core id 0: hyperthreads share the core's FMA units
    assert p.ghz == pytest.approx(2.5)  # '@ 2.50GHz' in the name beats 'cpu MHz: 2499.994'
    assert p.flops == pytest.approx(1 * 2500e6 * 64) == 1.6e11
    assert p.how.startswith("1 core (2 logical CPUs) x 2.50 GHz x 64 FLOP/cycle (AVX-512: 16 fp32 lanes x 2 FMA")
    assert "assumed" not in p.how


def test_zen4_runs_avx512_on_256_bit_pipes():
    p = cpu_peak(ZEN4, [0, 1])
    assert (p.lanes, p.fma_units, p.flop_per_cycle) == (8, 2, 32)  # not 64: 512-bit ops are double-pumped
    assert p.cores == 2 and p.ghz == pytest.approx(2.59614)
    assert p.flops == pytest.approx(2 * 2596.140e6 * 32)
    assert "Zen 4" in p.how and "a VM shows the nominal clock" in p.how


@pytest.mark.parametrize("name, flop_per_cycle, assumed", [
    ("Intel(R) Xeon(R) Gold 5218 CPU @ 2.30GHz", 32, False),  # Cascade Lake Gold 5xxx: 1 FMA unit
    ("Intel(R) Xeon(R) Silver 4114 CPU @ 2.20GHz", 32, False),  # Skylake Silver: 1
    ("Intel(R) Xeon(R) Gold 5122 CPU @ 3.60GHz", 64, False),  # the Gold 5 exception: 2
    ("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", 64, False),
    ("Intel(R) Xeon(R) Silver 4314 CPU @ 2.40GHz", 64, False),  # Ice Lake: every SKU has 2
    ("INTEL(R) XEON(R) PLATINUM 8573C", 64, False),
    ("Intel Xeon Processor (Icelake)", 64, False),
    ("Intel Xeon Processor (Cascadelake)", 64, True),  # KVM hides the SKU
    ("Intel(R) Xeon(R) W-2155 CPU @ 3.30GHz", 64, True),  # not in the table: the larger count, said
])
def test_intel_avx512_fma_units_by_name(name, flop_per_cycle, assumed):
    text = XEON.replace("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", name)
    p = cpu_peak(text, [0, 1])
    assert p.flop_per_cycle == flop_per_cycle and ("assumed" in p.how) == assumed


def test_other_instruction_sets():
    zen5 = cpu_peak(ZEN4.replace("cpu family\t: 25", "cpu family\t: 26"), [0, 1])
    assert zen5.flop_per_cycle == 64 and zen5.flops == pytest.approx(2 * 2596.140e6 * 64)  # full 512-bit pipes
    zen1 = cpu_peak(ZEN3.replace("cpu family\t: 25\nmodel\t\t: 33", "cpu family\t: 23\nmodel\t\t: 1"), [0, 1])
    assert zen1.flop_per_cycle == 16  # 256-bit ops on 128-bit pipes
    avx = cpu_peak(ZEN3.replace(" fma ", " ").replace(" avx2 ", " "), [0, 1])
    assert (avx.isa, avx.flop_per_cycle) == ("AVX", 16)  # a multiply port and an add port, 8 lanes, no FMA


def test_clock_sources_and_fallbacks():
    assert cpu_peak(ZEN3, [0, 1], max_mhz=4900.0).flops == pytest.approx(2 * 4900e6 * 32)  # cpufreq's max
    assert "cpufreq max" in cpu_peak(ZEN3, [0, 1], max_mhz=4900.0).how
    no_clock = "\n".join(line for line in ZEN3.splitlines() if not line.startswith("cpu MHz"))
    p = cpu_peak(no_clock, [0, 1])
    assert p.flops == pytest.approx(2 * 2500e6 * 32) and "clock unknown, assumed 2.5 GHz" in p.how
    bare = cpu_peak("", [0, 1, 2])  # no cpuinfo at all: one core per usable CPU, everything assumed
    assert bare.cores == 3 and "assumed" in bare.how and bare.flops > 0


def test_this_machine():
    p = this_cpu_peak()
    assert cpu_peak_flops() == p.flops > 0
    assert peak_flops(SimpleNamespace(type="cpu"), "32-true") == p.flops


def result(train: dict, peak_value=1.6615e11, how="2 cores x 2.60 GHz x 32 FLOP/cycle (AVX-512 on Zen 4)") -> dict:
    """The least a bench result holds for figures.table."""
    return {"model": "30m", "params": 30_000_000, "micro_batch": 8, "block_size": 512, "device_name": "CPU",
            "precision": "32-true", "compile": False, "allocator": "default", "malloc_conf": None, "rounds": 1,
            "steps": 1, "train": train, "peak_flops": peak_value, "peak_flops_source": "derived",
            "peak_flops_how": how, "flops_per_token": 180_000_000, "max_rss_gb": 1.0,
            "load_avg": {"start": (0.0, 0.0, 0.0), "end": (0.0, 0.0, 0.0)},
            "projection": {"tokens": 1e6, "tokens_per_s": 1000.0, "hours": 0.3}}


def path(achieved: float, fraction, refused=None) -> dict:
    return {"tokens_per_s": 1000.0, "tokens_per_s_best": 1000.0, "step_s": 1.0, "cpu_s_per_step": 2.0,
            "achieved_flops": achieved, "mfu": fraction, "mfu_refused": refused, "loader_share": 0.01,
            "peak_memory_gb": None}


def test_an_mfu_above_one_is_refused_naming_the_peak():
    from gptlab.speed.figures import mfu, table
    how = "2 cores x 2.60 GHz x 32 FLOP/cycle (AVX-512 on Zen 4)"
    fraction, refused = mfu(2.29e11, 1.6615e11, how)
    assert fraction is None
    assert refused == ("MFU refused: 0.229 TFLOP/s measured exceeds the assumed peak 0.166 TFLOP/s "
                       f"({how}); give the machine's peak with peak_flops=")
    assert mfu(0.5e11, 1e11, how) == (0.5, None)
    text = table(result({"lightning": path(2.29e11, fraction, refused), "bare": path(0.8e11, 0.8e11 / 1.6615e11),
                         "nanogpt": path(2.26e11, 1.36)}))  # nanogpt: a figure from before refusals, refused too
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[6] for line in text.splitlines()
            if line.startswith("| ") and "tokens/s" not in line}
    assert rows == {"lightning": "refused", "bare": "48.15%", "nanogpt": "refused"}
    assert f"lightning: {refused}" in text and "nanogpt: MFU refused: 0.226 TFLOP/s measured" in text
    assert f"peak 1.662e+11 FLOP/s: {how}" in text and "136" not in text and "137" not in text


def test_peak_flops_given_is_used_and_named():
    from gptlab.config import ConfigError
    from gptlab.config.commands import BenchCommand
    from gptlab.speed.figures import peak, table
    s = SimpleNamespace(device=SimpleNamespace(type="cpu"), precision="32-true", cuda=False)
    cfg = SimpleNamespace(peak_flops=2.5e11, trainer=SimpleNamespace(peak_flops=1e11))
    assert peak(s, cfg) == (2.5e11, "peak_flops", "peak_flops=2.5e+11 (given)")
    cfg.peak_flops = None
    assert peak(s, cfg) == (1e11, "trainer.peak_flops", "trainer.peak_flops=1e+11 (given)")
    cfg.trainer.peak_flops = None
    assert peak(s, cfg) == (this_cpu_peak().flops, "derived", this_cpu_peak().how)
    text = table(result({"lightning": path(2.29e11, 2.29e11 / 2.5e11)}, 2.5e11, "peak_flops=2.5e+11 (given)"))
    assert "peak 2.5e+11 FLOP/s: peak_flops=2.5e+11 (given)" in text and "| 91.60% |" in text
    assert BenchCommand(peak_flops=2.5e11).peak_flops == 2.5e11
    with pytest.raises(ConfigError, match="peak_flops must be"):
        BenchCommand(peak_flops=-1.0)


def test_throughput_logs_no_mfu_above_one_and_warns_once(caplog):
    from gptlab.training.callbacks import Throughput
    logged = []
    module = SimpleNamespace(device=SimpleNamespace(type="cpu"), log=lambda key, value: logged.append((key, value)))
    trainer = SimpleNamespace(global_step=0, log_every_n_steps=10, world_size=1, is_global_zero=True)
    cb = Throughput(tokens_per_step=1000, flops_per_token=1_000_000, peak=1e9)
    cb.on_train_start(trainer, module)
    with caplog.at_level(logging.WARNING, logger="gptlab"):
        for step in (10, 20):  # 10 steps x 1000 tokens in ~1 s: ~1e10 FLOP/s against a 1e9 peak
            cb.last_time -= 1.0
            trainer.global_step = step
            cb.on_train_batch_end(trainer, module, None, None, 0)
    assert [k for k, _ in logged] == ["tokens_per_s", "tokens_per_s"]  # no mfu row
    warnings = [r.getMessage() for r in caplog.records if r.name == "gptlab"]
    assert len(warnings) == 1 and warnings[0].startswith("MFU refused: 0.010 TFLOP/s measured exceeds the assumed "
                                                          "peak 0.001 TFLOP/s (trainer.peak_flops=1e+09 (given))")
    cb = Throughput(tokens_per_step=1000, flops_per_token=1_000_000, peak=1e12)
    cb.on_train_start(trainer, module)
    cb.last_time -= 1.0
    trainer.global_step = 30
    cb.on_train_batch_end(trainer, module, None, None, 0)
    assert logged[-1][0] == "mfu" and logged[-1][1] == pytest.approx(0.01, rel=0.05)
