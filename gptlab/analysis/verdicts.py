"""The report's arms, learning-rate selection and verdicts, as markdown and as plain data for report.json.

    python -m gptlab.report runs/multirun/<sweep>                  # report.md's "Arms and verdicts" section
    python -c "import json; print(json.load(open('runs/multirun/<sweep>/report/report.json'))['verdicts'])"

One sentence per comparison: which arm is lower, by how much with its 95% interval, how many seeds, the test and
its (Holm-adjusted) p-value; or that nothing was detected, with the smallest difference this n could detect.
"""
from __future__ import annotations

import math

from gptlab.analysis.stats import LEVEL, POWER
from gptlab.analysis.tables import markdown_table, num

ALPHA = 1 - LEVEL
METRICS = {"final_val_loss": "final val loss (all val tokens)",
           "final_val_loss_b": "final val loss on val half b (each arm at the rate it chose on half a)"}


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _seeds(d) -> str:
    return f"{d.n_a} seed{'s' if d.n_a != 1 else ''} each" if d.n_a == d.n_b else f"{d.n_a} and {d.n_b} seeds"


def verdict(test: dict, m: int) -> str:
    """The comparison's sentence; m is how many comparisons the report makes (Holm over m)."""
    d, arm, base = test["difference"], test["arm"], test["baseline"]
    if not math.isfinite(d.p):
        return (f"{arm} against {base}: {d.diff:+.3f} nats from {_seeds(d)}: no interval or test is possible with "
                "one seed an arm; run the study with study.seeds=3 (or more) to test it.")
    p = test["p_holm"]
    how = f"{_seeds(d)}, {d.test}, {_p(p)}" + (f" Holm-adjusted over {m} comparisons" if m > 1 else "")
    if p < ALPHA:
        side = "lower" if d.diff < 0 else "higher"
        return f"{arm} is {side} than {base} by {abs(d.diff):.3f} ± {d.half:.3f} nats ({how})."
    return (f"No difference detected between {arm} and {base}: {d.diff:+.3f} ± {d.half:.3f} nats ({how}); with "
            f"this n the smallest difference detectable at power {POWER:g} is about {d.detectable:.3f} nats.")


def arms_table(result: dict) -> str:
    rows = []
    for a in result["arms"]:
        s, sel = a["summary"], a.get("selection")
        rate = f"{sel['chosen']:g}" + (" (edge of the grid: widen it)" if sel["edge"] else "") if sel else \
            num(next(iter(a["by_lr"])), "g")
        interval = f"[{s.low:.4f}, {s.high:.4f}]" if math.isfinite(s.low) else "n = 1: none"
        walls = [r["train_s"] for r in a["runs"] if r.get("train_s") is not None]  # the training clock only
        rows.append((a["label"], rate, s.n, ", ".join(str(k) for k in a["values"]), f"{s.mean:.4f}",
                     num(s.sd if math.isfinite(s.sd) else None, ".4f"), interval,
                     num(sum(walls) / len(walls) if walls else None, ".0f")))
    return markdown_table(("arm", "lr", "n", "seeds", "mean", "sd", f"{LEVEL:.0%} t-interval", "training s (mean run)"),
                          rows)


def selection_section(result: dict) -> list[str]:
    tuned = [a for a in result["arms"] if a.get("selection")]
    if not tuned:
        return []
    rows = [(a["label"], ", ".join(f"{lr:g}" for lr in a["selection"]["grid"]), f"{a['selection']['chosen']:g}",
             f"{a['selection']['loss_a']:.4f}", f"{a['selection']['loss_b']:.4f}",
             f"{a['selection']['chosen_on_b']:g}", f"{a['selection']['flattery']:+.4f}") for a in tuned]
    edge = [a["label"] for a in tuned if a["selection"]["edge"]]
    moved = max(a["selection"]["flattery"] for a in tuned)
    return ["### Learning rate, chosen per arm", "",
            "Each arm's rate is the one with the lowest mean over seeds on val half a; its numbers above are on val "
            "half b. Choosing on half b itself would have flattered an arm by the last column (its half-b loss at "
            "the rate chosen on a, minus the best half-b loss of any rate): at most "
            f"{moved:.4f} nats here.", "",
            markdown_table(("arm", "grid", "chosen on half a", "mean loss a", "mean loss b", "best on half b",
                            "selection moved b by"), rows), ""] + \
        ([f"At the edge of its grid (widen it): {', '.join(edge)}.", ""] if edge else [])


def arms_section(result: dict) -> str:
    if not result["arms"]:
        return "## Arms and verdicts\n\nNo measured runs to compare."
    m = sum(math.isfinite(t["difference"].p) for t in result["comparisons"])  # tested ones: Holm is over these
    parts = ["## Arms and verdicts", "",
             f"Runs that differ only by seed (and learning rate) form an arm. Compared: {METRICS[result['metric']]}; "
             f"baseline: **{result['baseline']}**. Arms with the same seeds share initial weights and data order, "
             "so they are compared per seed (paired t); others with Welch's t. "
             + (f"The {m} p-values are Holm-adjusted." if m > 1 else ""), "", arms_table(result), ""]
    parts += selection_section(result)
    parts += ["### Verdicts", ""] + [f"- {verdict(t, m)}" for t in result["comparisons"]]
    parts += [f"- Note: {n}" for n in result.get("notes", [])]
    if not result["comparisons"]:
        parts.append("- One arm only: nothing to compare.")
    return "\n".join(parts)


def selection_json(sel: dict | None) -> dict | None:
    """The rate selection as plain data: the mean losses by rate keyed by the rate as text (JSON keys are text)."""
    if not sel:
        return None
    return {k: ({f"{lr:g}": x for lr, x in v.items()} if k.startswith("by_lr") else v) for k, v in sel.items()}


def arms_json(result: dict) -> dict:
    """Plain data for report.json: every arm's numbers and every verdict with its statistics."""
    m = len(result["comparisons"])
    arms = [{"label": a["label"], "overrides": list(a["overrides"]),
             "values": {str(k): v for k, v in a["values"].items()},
             **a["summary"].as_dict(),
             "selection": selection_json(a.get("selection")),
             "runs": [r["dir"] for r in a["runs"]]} for a in result["arms"]]
    verdicts = [{"arm": t["arm"], "baseline": t["baseline"], **t["difference"].as_dict(),
                 "p_holm": t["p_holm"] if math.isfinite(t["p_holm"]) else None,
                 "significant": bool(math.isfinite(t["p_holm"]) and t["p_holm"] < ALPHA),
                 "sentence": verdict(t, m)} for t in result["comparisons"]]
    return {"metric": result["metric"], "baseline": result["baseline"], "arms": arms, "verdicts": verdicts,
            "notes": result.get("notes", [])}
