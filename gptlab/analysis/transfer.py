"""Learning-rate transfer across width (muP's claim, Yang et al. 2022 Figure 1): within a family of arms that differ
only by model.n_embd, each width's best rate (chosen on val half a), how many grid steps it lies from the narrowest
width's (the proxy's), and what the proxy's rate costs each width on val half b, paired by seed.

    python -m gptlab.train -m experiment=mup_transfer && python -m gptlab.report runs/multirun/<sweep>
    python -c "import json; print(json.load(open('runs/multirun/<sweep>/report/report.json'))['transfer'])"

The verdict follows the issue's test: a rate transfers when the widest model's best rate lies within one grid step of
the proxy's. A best rate on the grid's edge only bounds the distance (">= k steps").
"""
from __future__ import annotations

import math

from gptlab.analysis.stats import difference, holm
from gptlab.analysis.tables import markdown_table

WIDTH = "model.n_embd"
NAMES = {"model.mup_base_width": lambda v: "standard (SP)" if v is None else f"muP, base width {v}"}


def _rest(arm: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in arm["config"].items() if k != WIDTH))


def _label(config: dict, differ: list[str]) -> str:
    return ", ".join(NAMES[k](config.get(k)) if k in NAMES else f"{k}={config.get(k)}" for k in differ) or "all arms"


def _by_seed(arm: dict, lr: float, key: str) -> dict:
    return {r.get("seed"): r.get(key) for r in arm["by_lr"].get(lr, [])}


def width_row(arm: dict, proxy_lr: float, grid: list[float]) -> dict:
    """One width: its chosen rate, its distance from the proxy's in grid steps, the proxy rate's cost on half b."""
    sel = arm["selection"]
    own, at_proxy = _by_seed(arm, sel["chosen"], "final_val_loss_b"), _by_seed(arm, proxy_lr, "final_val_loss_b")
    seeds = sorted(set(own) & set(at_proxy), key=str)
    cost = difference([at_proxy[s] for s in seeds], [own[s] for s in seeds], paired=True)
    seed_best = {s: min(grid, key=lambda lr: _by_seed(arm, lr, "final_val_loss_a").get(s, math.inf))
                 for s in sorted({r.get("seed") for r in arm["runs"]}, key=str)}
    return {"width": arm["config"].get(WIDTH), "arm": arm["label"], "chosen": sel["chosen"], "edge": sel["edge"],
            "steps": grid.index(sel["chosen"]) - grid.index(proxy_lr), "cost": cost, "seed_best": seed_best,
            "mean_by_lr": {lr: sum(v) / len(v) for lr in grid
                           if (v := [x for x in _by_seed(arm, lr, "final_val_loss").values() if x is not None])}}


def family(members: list[dict], label: str) -> dict | None:
    """One family's rows (narrowest first), each seed's distance between the widest's and the proxy's best rates,
    and the widest-minus-proxy gap at every rate; None without a shared grid of two rates."""
    grid = sorted(set.intersection(*(set(a["selection"]["grid"]) for a in members)))
    if len(grid) < 2 or members[0]["selection"]["chosen"] not in grid:
        return None
    proxy_lr = members[0]["selection"]["chosen"]
    rows = [width_row(a, proxy_lr, grid) for a in members if a["selection"]["chosen"] in grid]
    proxy, wide = rows[0]["seed_best"], rows[-1]["seed_best"]
    steps = {s: grid.index(wide[s]) - grid.index(proxy[s]) for s in wide if s in proxy}
    gaps = []
    for lr in grid:  # the widest against the proxy at one rate, paired by seed (half b: what the report reports)
        w, p = _by_seed(members[-1], lr, "final_val_loss_b"), _by_seed(members[0], lr, "final_val_loss_b")
        seeds = sorted(set(w) & set(p), key=str)
        gaps.append({"lr": lr, "gap": difference([w[s] for s in seeds], [p[s] for s in seeds], paired=True)})
    return {"label": label, "grid": grid, "proxy_lr": proxy_lr, "rows": rows, "seed_steps": steps, "gaps": gaps}


def lr_transfer(arms: list[dict]) -> dict:
    """{families: [{label, grid, rows, transfers, seed_steps, gaps}]} for every group of tuned arms that differ only
    in width (two widths or more, a shared grid of two rates or more); empty when the study varies no width."""
    groups: dict[tuple, list[dict]] = {}
    for a in arms:
        if a.get("selection") and a["config"].get(WIDTH) is not None:
            groups.setdefault(_rest(a), []).append(a)
    groups = {k: sorted(v, key=lambda a: a["config"][WIDTH]) for k, v in groups.items()
              if len({a["config"][WIDTH] for a in v}) > 1}
    configs = [v[0]["config"] for v in groups.values()]
    differ = sorted({k for c in configs for k in c if k != WIDTH and len({repr(d.get(k)) for d in configs}) > 1})
    families = [f for v in groups.values() if (f := family(v, _label(v[0]["config"], differ))) is not None]
    tests = [r for f in families for r in f["rows"][1:]]
    for r, p in zip(tests, holm([r["cost"].p for r in tests])):
        r["p_holm"] = p
    for f in families:
        f["transfers"] = transfers(f["rows"][0], f["rows"][-1])
        for g, p in zip(f["gaps"], holm([g["gap"].p for g in f["gaps"]])):
            g["p_holm"] = p
    return {"families": families, "tests": len(tests)}


def transfers(proxy: dict, wide: dict) -> str:
    """'yes' (within one grid step, neither best rate on an edge), 'no' (two steps or more: an edge can only widen
    that, the true best lying further out), else 'undetermined'."""
    if abs(wide["steps"]) >= 2:
        return "no"
    return "undetermined" if proxy["edge"] or wide["edge"] else "yes"


def _cost(row: dict, m: int) -> str:
    d = row["cost"]
    if row["steps"] == 0:
        return "0 (its best rate is the proxy's)"
    if not math.isfinite(d.p):
        return f"{d.diff:+.3f} (one seed: no test)"
    return f"{d.diff:+.3f} ± {d.half:.3f} ({d.n_a} seeds, paired t, p = {row['p_holm']:.3f}" + \
        (f" Holm over {m})" if m > 1 else ")")


def sentence(f: dict) -> str:
    proxy, wide = f["rows"][0], f["rows"][-1]
    steps = abs(wide["steps"])
    where = f"{steps} grid step{'s' if steps != 1 else ''}" + (" or more" if wide["edge"] and steps else "")
    head = {"yes": "transfers", "no": "does not transfer", "undetermined": "transfer undetermined"}[f["transfers"]]
    why = " (a best rate on the grid's edge: widen the grid)" if f["transfers"] == "undetermined" else ""
    cost = "it is the proxy's rate" if wide["steps"] == 0 else \
        f"at the proxy's rate it loses {_cost(wide, 1).split(' (')[0]} nats on val half b"
    per_seed = ", ".join(f"{v:+d}" for v in f["seed_steps"].values())
    return (f"**{f['label']}: {head}{why}.** The widest model's ({wide['width']}) best rate {wide['chosen']:g} lies "
            f"{where} from the {proxy['width']}-wide proxy's {proxy['chosen']:g}; {cost}. Chosen per seed, the "
            f"widest's best rate lies {per_seed} grid steps from the proxy's ({len(f['seed_steps'])} seeds).")


def transfer_section(result: dict) -> str:
    """The report's "Learning-rate transfer across width" section: a verdict per family and its table."""
    m = result["tests"]
    parts = ["## Learning-rate transfer across width", "",
             "Each width's rate is chosen on val half a; the cost of using the proxy's (narrowest width's) rate "
             "instead is measured on val half b, paired by seed, ± the 95% t-interval, Holm-adjusted over the "
             f"{m} widths tested. A rate transfers when the widest model's best rate lies within one grid step "
             "(a factor of the grid's spacing) of the proxy's.", ""]
    for f in result["families"]:
        rows = [(r["width"], f"{r['chosen']:g}" + (" (edge)" if r["edge"] else ""), f"{r['steps']:+d}",
                 ", ".join(f"{lr:g}" for lr in r["seed_best"].values()), _cost(r, m)) for r in f["rows"]]
        parts += [sentence(f), "", markdown_table(
            ("width", "best rate (half a)", "grid steps from the proxy's", "each seed's best rate (half a)",
             "loss at the proxy's rate − at its own, half b (nats)"), rows), ""]
    return "\n".join(parts + gaps_part(result["families"]) +
                     ["![loss against learning rate, one curve per width](lr_transfer.png)"])


def _gap(g: dict) -> str:
    d = g["gap"]
    if not math.isfinite(d.p):
        return f"{d.diff:+.3f} (one seed)"
    return f"{d.diff:+.3f} ± {d.half:.3f}" + (f" (p = {g['p_holm']:.3f})" if g["p_holm"] >= 0.001 else " (p < 0.001)")


def gaps_part(families: list[dict]) -> list[str]:
    """Whether the whole loss-against-rate curve moves with width: the widest minus the proxy at every rate."""
    grid = sorted({g["lr"] for f in families for g in f["gaps"]})
    cell = {(f["label"], g["lr"]): _gap(g) for f in families for g in f["gaps"]}
    lines = ["The whole curve, widest minus proxy at every rate (val half b, paired by seed, Holm-adjusted over "
             "each family's rates): where muP holds, the curves coincide and any rate chosen on the proxy "
             "transfers.", ""]
    for f in families:
        hits = [g for g in f["gaps"] if math.isfinite(g["gap"].p) and g["p_holm"] < 0.05]
        big = max(f["gaps"], key=lambda g: abs(g["gap"].diff))
        lines.append(f"- {f['label']}: the largest gap {_gap(big)} nats at lr {big['lr']:g}; a gap detected at "
                     f"{len(hits)} of {len(f['gaps'])} rates.")
    table = markdown_table(("lr", *(f"{f['label']}: widest − proxy (nats)" for f in families)),
                           [(f"{lr:g}", *(cell.get((f["label"], lr), "—") for f in families)) for lr in grid])
    return lines + ["", table, ""]


def transfer_json(result: dict) -> list[dict]:
    return [{**{k: f[k] for k in ("label", "grid", "proxy_lr", "transfers")},
             "seed_steps": {str(s): v for s, v in f["seed_steps"].items()},
             "gaps": [{"lr": g["lr"], **g["gap"].as_dict(), "p_holm": g["p_holm"]} for g in f["gaps"]],
             "rows": [{**{k: r[k] for k in ("width", "chosen", "edge", "steps")}, "cost": r["cost"].as_dict(),
                       "p_holm": r.get("p_holm"), "seed_best": {str(s): v for s, v in r["seed_best"].items()},
                       "mean_loss_by_lr": {str(lr): v for lr, v in r["mean_by_lr"].items()}} for r in f["rows"]]}
            for f in result["families"]]
