"""Effective-compute multipliers: the tokens an arm needs to reach the baseline's final val loss, over the tokens
the baseline trained, with a 95% interval over seeds (OLMo's "effective data multiplier").

    python -m gptlab.report runs/multirun/<sweep>          # report.md: "Tokens to the baseline's loss"

For each seed, the arm's val curve (at its chosen rate) is read where it first reaches the baseline's final loss,
interpolated linearly between the two evaluations around the crossing; the ratio to the baseline's tokens is that
seed's multiplier. Which val curve: where the arm or the baseline chose its rate among several on val half a
(gptlab/analysis/arms.py), half a is spent on that choice, so both are read on val half b (the arm's `curve_b`
against the baseline's final half-b loss), as the final-loss verdicts are; a run without a half-b curve then leaves
the multiplier unmeasured, with the reason, rather than read on the half that chose the rate. Where neither chose,
all of val is read: no rate was selected on it, and the whole set is less noisy than a half. Each result says
which (`half`: "b" or "full"). Arms sharing the baseline's seeds are paired (each seed against the same seed's
baseline), others use the baseline's mean loss and tokens (on the half read). The interval and the test are the t
distribution's on the log ratios (a multiplier is a ratio: 0.5x and 2x are equally far from 1x), against log 1 = 0.
A curve read mid-run, under a decaying schedule, lies above what a cooldown at that budget would reach, so the
multiplier is conservative: the arm is at least that much better (docs/comparisons.md says when to use cooldown
budgets instead).
"""
from __future__ import annotations

import math

import numpy as np

from gptlab.analysis.stats import LEVEL, holm


def tokens_to(curve: list[tuple[float, float]], loss: float) -> float | None:
    """The tokens at which a val curve [(tokens, loss)] first reaches `loss`, interpolated; None if it never does."""
    for (t0, l0), (t1, l1) in zip([(None, None), *curve], curve):
        if l1 > loss:
            continue
        if t0 is None or l0 == l1:
            return t1
        return t0 + (l0 - loss) / (l0 - l1) * (t1 - t0)
    return None


def seed_runs(arm: dict) -> dict:
    """seed -> the arm's run at its chosen rate (all its runs when it has one rate)."""
    runs = arm["by_lr"][arm["selection"]["chosen"]] if arm.get("selection") else arm["runs"]
    return {r.get("seed"): r for r in runs}


def read_on(arm: dict, base: dict) -> str:
    """'b' where the arm or the baseline chose its rate on val half a: the half that chose a rate flatters the curve
    read at it (and a baseline's final loss there), so only half b is held out from the choice. 'full' where neither
    chose (one rate each): nothing was selected on any val token, and all of val is the less noisy curve."""
    return "b" if arm.get("selection") or base.get("selection") else "full"


def multiplier(arm: dict, base: dict) -> dict:
    """{label, half, n, paired, ratios, multiplier, low, high, p, reached, reason}: the arm's tokens to the baseline's
    final loss over the baseline's tokens, per seed, and their geometric mean with a t-interval, both read on the val
    curve that read_on names. reason says why a multiplier is missing when the curve to read is not recorded."""
    from scipy import stats
    half = read_on(arm, base)
    key = "curve_b" if half == "b" else "curve"
    a, b = seed_runs(arm), seed_runs(base)
    paired = set(a) == set(b) and len(a) >= 2
    out = {"label": arm["label"], "half": half, "n": len(a), "paired": paired, "reached": 0, "ratios": [None] * len(a),
           "multiplier": None, "low": None, "high": None, "p": math.nan, "reason": None}
    missing = [r["dir"] for r in [*a.values(), *b.values()] if not r.get(key)]
    if missing:  # no fallback to the full curve: it holds half a, on which the rate was chosen
        out["reason"] = f"no val/loss_b curve ({len(missing)} run{'s' if len(missing) != 1 else ''}: {missing[0]}" + \
            (", ..." if len(missing) > 1 else "") + ")"
        return out
    if paired:
        pairs = [(a[s][key], b[s][key][-1]) for s in sorted(a, key=str)]
    else:
        end = (float(np.mean([r[key][-1][0] for r in b.values()])),
               float(np.mean([r[key][-1][1] for r in b.values()])))
        pairs = [(r[key], end) for r in a.values()]
    hit = [tokens_to(curve, loss) for curve, (_, loss) in pairs]
    out.update(n=len(pairs), reached=sum(h is not None for h in hit),
               ratios=[None if h is None else h / tokens for h, (_, (tokens, _)) in zip(hit, pairs)])
    if None in hit or not pairs:
        return out
    logs = np.log(out["ratios"])
    out["multiplier"] = float(np.exp(logs.mean()))
    if len(logs) >= 2 and logs.std(ddof=1) > 0:
        half = stats.t.ppf(0.5 + LEVEL / 2, len(logs) - 1) * logs.std(ddof=1) / math.sqrt(len(logs))
        out.update(low=float(np.exp(logs.mean() - half)), high=float(np.exp(logs.mean() + half)),
                   p=float(stats.ttest_1samp(logs, 0.0).pvalue))
    return out


def multipliers(result: dict) -> list[dict]:
    """Every arm's multiplier against the baseline of compare_arms' result, p-values Holm-adjusted over them."""
    arms = result["arms"]
    base = next(a for a in arms if a["label"] == result["baseline"])
    out = [multiplier(a, base) for a in arms if a is not base]
    for m, p in zip(out, holm([m["p"] for m in out])):
        m["p_holm"] = p
    return out


ON = {"b": "on val half b", "full": "on all of val"}


def sentence(m: dict) -> str:
    """'rope reaches the baseline's loss on val half b with 0.62x [0.55, 0.70] of its tokens (3 seeds, paired; ...)'."""
    how = f"{m['n']} seed{'s' if m['n'] != 1 else ''}{', paired' if m['paired'] else ''}"
    on = ON[m.get("half", "full")]  # records from before halves were read on the full curve
    if m.get("reason"):
        return (f"{m['label']}: no multiplier {on}: {m['reason']}; a rate was chosen on half a, so the full curve "
                f"would flatter it ({how}).")
    if m["multiplier"] is None:
        return (f"{m['label']} does not reach the baseline's final loss {on} within its budget in "
                f"{m['n'] - m['reached']} of {m['n']} seeds: a multiplier above 1x, not measured here ({how}).")
    if m["low"] is None:
        return (f"{m['label']} reaches the baseline's loss {on} with {m['multiplier']:.2f}x of its tokens ({how}; no "
                "interval).")
    return (f"{m['label']} reaches the baseline's loss {on} with {m['multiplier']:.2f}x [{m['low']:.2f}, "
            f"{m['high']:.2f}] of its tokens ({how}; t on log ratios, p = {m['p_holm']:.3g} Holm-adjusted).")


def section(result: dict, found: list[dict]) -> str:
    """The report's 'Tokens to the baseline's loss' section."""
    lines = [f"## Tokens to the baseline's loss ({result['baseline']})", "",
             "Each arm's val curve, at its chosen rate, read where it first reaches the baseline's final val loss; "
             f"the multiplier is those tokens over the baseline's, the geometric mean over seeds with a {LEVEL:.0%} "
             "t-interval on the log ratios. Below 1x: the arm needs fewer tokens. Where the arm or the baseline chose "
             "its rate on val half a, both are read on val half b (the arm's half-b curve against the baseline's "
             "final half-b loss), so the choice does not flatter the multiplier; where neither chose, on all of val "
             "(less noisy, and nothing was selected on it). Each line says which. Read mid-run under a decaying "
             "schedule, so conservative (gptlab/analysis/multipliers.py).", ""]
    return "\n".join(lines + [f"- {sentence(m)}" for m in found])
