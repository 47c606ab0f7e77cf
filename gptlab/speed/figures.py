"""The bench's figures: tokens/s ratios round by round, FLOP/s and MFU against the device's peak, the table.

    python -m gptlab.bench model=tiny rounds=2 steps=5      # prints this module's table, writes its JSON
"""
from __future__ import annotations

import os
import resource
import statistics
from typing import TYPE_CHECKING

from gptlab.units import human

if TYPE_CHECKING:
    from gptlab.speed.timing import Rounds, Setup


def device_name(s: Setup) -> str:
    import torch
    if s.cuda:
        return torch.cuda.get_device_name(s.device)
    from gptlab.training.hardware import cpu_name
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


def peak(s: Setup, cfg) -> tuple[float | None, str, str]:
    """(peak FLOP/s, the key that set it or 'derived', how it was found): `peak_flops=` (the bench's own key), else
    trainer.peak_flops, else gptlab.training.hardware.device_peak (a CPU's derivation from /proc/cpuinfo)."""
    from gptlab.training.hardware import device_peak
    for key, given in (("peak_flops", getattr(cfg, "peak_flops", None)),
                       ("trainer.peak_flops", cfg.trainer.peak_flops)):
        if given:
            return float(given), key, f"{key}={float(given):.4g} (given)"
    value, how = device_peak(s.device, s.precision)
    return value, "derived", how


def mfu(achieved: float, peak_value: float | None, how: str, key="peak_flops") -> tuple[float | None, str | None]:
    """(MFU, None), or (None, why) where achieved FLOP/s exceed the peak: an MFU above 100% says the peak is wrong
    (a faster clock, wider units), so it is refused, never printed as a figure."""
    if not peak_value:
        return None, None
    if achieved <= peak_value:
        return achieved / peak_value, None
    from gptlab.training.hardware import mfu_refusal
    return None, mfu_refusal(achieved, peak_value, how, key)


def ratio(a: list[float], b: list[float], a_cpu: list[float], b_cpu: list[float]) -> dict:
    """Tokens/s a/b round by round (rounds alternate, so neighbours saw the same machine), and of the medians;
    by_cpu_time: the same from CPU seconds per round (b's over a's), which other processes' load hardly moves."""
    per_round, by_cpu = [x / y for x, y in zip(a, b)], [y / x for x, y in zip(a_cpu, b_cpu)]
    return {"median": statistics.median(per_round), "best": max(per_round), "of_medians":
            statistics.median(a) / statistics.median(b), "rounds": per_round,
            "by_cpu_time": {"median": statistics.median(by_cpu), "rounds": by_cpu}}


def summarize(cfg, s: Setup, preset, rounds: Rounds, held: dict, flops_per_token: int, extra: dict) -> dict:
    peak_value, peak_source, peak_how = peak(s, cfg)
    setting = "trainer.peak_flops" if peak_source == "trainer.peak_flops" else "peak_flops"
    train = {}
    for name in rounds.log:
        tps, log = rounds.tokens_per_s(name), rounds.log[name]
        med = statistics.median(tps)
        fraction, refused = mfu(med * flops_per_token, peak_value, peak_how, setting)
        train[name] = {
            "tokens_per_s": med, "tokens_per_s_best": max(tps), "rounds_tokens_per_s": tps,
            "step_s": statistics.median(r["seconds"] for r in log) / cfg.steps,
            "cpu_s_per_step": statistics.median(r["cpu_s"] for r in log) / cfg.steps,
            "achieved_flops": med * flops_per_token, "mfu": fraction, "mfu_refused": refused,
            "loader_share": sum(r["loader_s"] for r in log) / sum(r["seconds"] for r in log),
            "peak_memory_gb": (held[name] + max(r["transient_bytes"] for r in log)) / 1e9 if s.cuda else None}
    out = {"model": preset, "params": extra.pop("params"), "micro_batch": s.batch, "block_size": s.block,
           "tokens_per_step": s.batch * s.block, "device": s.device.type, "device_name": device_name(s),
           "precision": s.precision, "compile": s.compile, "allocator": extra.pop("allocator"),
           "malloc_conf": extra.pop("malloc_conf"),
           "torch": extra.pop("torch"), "flash_sdpa": extra.pop("flash_sdpa"),
           "flops_per_token": flops_per_token, "peak_flops": peak_value, "peak_flops_source": peak_source,
           "peak_flops_how": peak_how,
           "warmup": cfg.warmup, "steps": cfg.steps, "rounds": cfg.rounds, "train": train}
    for a, b in (("lightning", "bare"), ("lightning", "nanogpt"), ("bare", "nanogpt")):
        if a in train and b in train:
            out[f"{a}_vs_{b}"] = ratio(train[a]["rounds_tokens_per_s"], train[b]["rounds_tokens_per_s"],
                                       [r["cpu_s"] for r in rounds.log[a]], [r["cpu_s"] for r in rounds.log[b]])
    main = train.get("lightning") or next(iter(train.values()))
    out["projection"] = {"tokens": cfg.project_tokens, "tokens_per_s": main["tokens_per_s"],
                         "hours": cfg.project_tokens / main["tokens_per_s"] / 3600}
    out["max_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    out["load_avg"] = {"start": extra.pop("load_start"), "end": os.getloadavg()}  # other processes on a shared machine
    return {**out, **extra}


def table(r: dict) -> str:
    """The human-readable report."""
    gb = lambda v: "n/a" if v is None else f"{v:.2f} GB"
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"
    lines = [f"gptlab bench: model={r['model']} ({human(r['params'])} params), micro batch {r['micro_batch']} x "
             f"{r['block_size']}, {r['device_name']}, {r['precision']}, compile {'on' if r['compile'] else 'off'}, "
             f"allocator {r['allocator']}{' (' + r['malloc_conf'] + ')' if r['malloc_conf'] else ''}, "
             f"{r['rounds']} rounds x {r['steps']} steps per path",
             "", "| path | tokens/s (median) | best | step (s) | CPU s/step | TFLOP/s | MFU | loader share "
             "| peak memory |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    refusals = []
    for name, t in r["train"].items():
        refused = t.get("mfu_refused")
        if not refused and (t["mfu"] or 0) > 1:  # a JSON written before MFUs above 100% were refused
            refused = mfu(t["achieved_flops"], r["peak_flops"], r.get("peak_flops_how") or r["peak_flops_source"])[1]
        if refused:
            refusals.append(f"{name}: {refused}")
        lines.append(f"| {name} | {t['tokens_per_s']:,.0f} | {t['tokens_per_s_best']:,.0f} | {t['step_s']:.3f} | "
                     f"{t['cpu_s_per_step']:.2f} | "
                     f"{t['achieved_flops'] / 1e12:.3f} | {'refused' if refused else pct(t['mfu'])} | "
                     f"{pct(t['loader_share'])} | {gb(t['peak_memory_gb'])} |")
    lines += [""] + refusals
    for key in ("lightning_vs_bare", "lightning_vs_nanogpt", "bare_vs_nanogpt"):
        if key in r:
            q = r[key]
            lines.append(f"{key.replace('_vs_', ' / ')} tokens/s: {q['median']:.3f} median, {q['best']:.3f} best "
                         f"(rounds: {', '.join(f'{x:.3f}' for x in q['rounds'])}); by CPU time "
                         f"{q['by_cpu_time']['median']:.3f} median")
    lines.append(f"peak {r['peak_flops'] or 0:,.4g} FLOP/s: {r.get('peak_flops_how') or r['peak_flops_source']}")
    lines.append(f"{r['flops_per_token']:,} FLOPs per training token; max RSS {r['max_rss_gb']:.2f} GB")
    lines.append(f"load average (1, 5, 15 min) at start {', '.join(f'{x:.1f}' for x in r['load_avg']['start'])}, "
                 f"at end {', '.join(f'{x:.1f}' for x in r['load_avg']['end'])} on {os.cpu_count()} CPUs")
    if e := r.get("eval"):
        lines.append(f"scoring val tokens: validation path {e['validation_tokens_per_s']:,.0f} tokens/s, gptlab.eval "
                     f"{e['eval_tokens_per_s']:,.0f} tokens/s ({e['eval_vs_validation']:.2f}x)")
    if g := r.get("generate"):
        lines.append(f"generation, {g['new_tokens']} new tokens: KV cache {g['cached_tokens_per_s']:,.1f} tokens/s, "
                     f"no cache {g['uncached_tokens_per_s']:,.1f} tokens/s, speedup {g['kv_cache_speedup']:.2f}x")
    if r.get("syncs") is not None:
        lines.append(f"host-device syncs in Lightning's timed steps: {r['syncs']} "
                     f"({r['syncs'] / (r['rounds'] * r['steps']):.2f} per step)")
    p = r["projection"]
    lines.append(f"projected wall time for {human(p['tokens'])} training tokens at {p['tokens_per_s']:,.0f} tokens/s: "
                 f"{p['hours']:.2f} h ({p['hours'] / 24:.2f} days)")
    return "\n".join(lines)
