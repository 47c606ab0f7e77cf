"""Plateaus measured by cooldowns: each constant-rate run's branches give its loss at several token budgets; L(D)
per run and L(N, D) across sizes are fitted to them, and predictions say how far they extrapolate.

    python -m gptlab.train -m experiment=cooldown                               # constant runs, branches at 5 budgets
    python -m gptlab.report runs/multirun/<sweep> predict=124M,124M@1B          # L(D), L(N, D), predictions

A budget's loss is the branch's final val loss (its rate decayed over its last cooldown.fraction of steps), so it
is a measured point, not an extrapolation of one curve (Hägele et al. 2024). L(D) = E + B·D^(-beta) per run needs
5 budgets; L(N, D) = E + A·N^(-alpha) + B·D^(-beta) needs 7 points over 2 or more sizes and budgets.
"""
from __future__ import annotations

from pathlib import Path

from gptlab.analysis.fits import fit_record, fit_surface
from gptlab.analysis.runs import ReportError, load_run
from gptlab.analysis.tables import markdown_table, pm
from gptlab.run.curves import FitError, fit_power_law
from gptlab.units import human, parse_count


def load_branches(run: dict) -> list[dict]:
    """The run's cooldown branches (<run>/cooldowns/*/ with a summary.json), by budget."""
    root = Path(run["dir"]) / "cooldowns"
    dirs = sorted(d for d in root.glob("*") if (d / "summary.json").is_file()) if root.is_dir() else []
    branches = []
    for d in dirs:
        b = load_run(d, f"{run['name']}/{d.name}")
        b["from_tokens"] = (b.get("cooldown") or {}).get("from_step", 0) * (b.get("tokens_per_step") or 0)
        if b.get("final_val_loss") is not None:
            branches.append(b)
    return sorted(branches, key=lambda b: b["tokens"])


def _fit(fn, *args):
    try:
        return fn(*args)
    except FitError as e:
        return f"refused: {e}"


def cooldown_fits(runs: list[dict]) -> dict:
    """{sources: [{run, branches, fit}], surface}: L(D) per run with branches, L(N, D) over all their budgets."""
    sources = []
    for r in runs:
        if r["kind"] == "measured" and (branches := load_branches(r)):
            sources.append({"run": r, "branches": branches,
                            "fit": _fit(fit_power_law, [b["tokens"] for b in branches],
                                        [b["final_val_loss"] for b in branches])})
    points = [(s["run"]["params"], b["tokens"], b["final_val_loss"]) for s in sources for b in s["branches"]]
    surface = _fit(fit_surface, *zip(*points)) if points else None
    return {"sources": sources, "surface": surface}


def parse_target(spec: str, named: dict) -> tuple[float, float | None]:
    """'124M' or '124M@2.6B' (a size, and a token budget) or 'gpt2@1B' as (N, D or None)."""
    size, _, tokens = spec.partition("@")
    try:
        n = float(named[size]) if size in named else parse_count(size)
        d = parse_count(tokens) if tokens else None
    except ValueError as e:
        raise ReportError(f"predict={spec}: {e}, or one of {', '.join(named)}; optionally @ a token budget: "
                          "124M@2.6B") from None
    return n, d


def surface_predictions(fits: dict, targets: list[tuple[str, float, float | None]]) -> list[dict]:
    """Each target's L(N, D) with its 95% interval and how far beyond the fitted sizes and budgets it reaches; the
    fit's refusal for each when it was refused."""
    surface, out = fits["surface"], []
    for name, n, d in targets:
        if isinstance(surface, str) or surface is None:
            out.append({"name": name, "params": n, "tokens": d, "refused": surface or "no cooldown branches"})
            continue
        d = d or surface.d_range[1]
        loss, low, high = surface.predict(n, d)
        out.append({"name": name, "params": n, "tokens": d, "loss": loss, "low": low, "high": high,
                    "n_factor": n / surface.n_range[1], "d_factor": d / surface.d_range[1]})
    return out


def cooldown_section(fits: dict, predictions: list[dict]) -> str:
    if not fits["sources"]:
        return ""
    rows = []
    for s in fits["sources"]:
        r, f = s["run"], s["fit"]
        budgets = ", ".join(f"{human(b['tokens'])}: {b['final_val_loss']:.4f}" for b in s["branches"])
        rows.append((r["name"], human(r.get("params")), budgets,
                     f if isinstance(f, str) else f"{pm(f.c, f.c_err)}; beta {pm(f.b, f.b_err)}"))
    parts = ["## Plateaus measured by cooldowns", "",
             "Each budget's loss is a branch from the constant-rate run's checkpoint whose rate decayed over its last "
             "steps (Hägele et al. 2024): measured, not extrapolated. L(D) = E + B·D^(−beta) is fitted to each "
             "run's budgets (± one standard error).", "",
             markdown_table(("run", "parameters", "budget: final val loss", "E of L(D)"), rows), "",
             "![cooldowns](cooldowns.png)", "", "### L(N, D) = E + A·N^(−alpha) + B·D^(−beta) over every budget", ""]
    surface = fits["surface"]
    if isinstance(surface, str):
        parts.append(surface[0].upper() + surface[1:] + ".")
    else:
        parts.append(markdown_table(("E", "alpha", "beta", "A", "B", "rmse", "points"),
                                    [(pm(surface.E, surface.E_err), pm(surface.alpha, surface.alpha_err),
                                      pm(surface.beta, surface.beta_err), f"{surface.A:.3g}", f"{surface.B:.3g}",
                                      f"{surface.rmse:.4f}", surface.n)]))
    if predictions:
        parts += ["", "Predictions (95% interval: delta method, Student's t on n − 5 dof; beyond the fitted range "
                  "they say what the law implies, not what a run would give):", ""]
        parts += [f"- {prediction_line(p)}" for p in predictions]
    return "\n".join(parts)


def prediction_line(p: dict) -> str:
    if "refused" in p:
        return f"{p['name']}: not predicted: the L(N, D) fit was {p['refused']}"
    return (f"{p['name']}: L({human(p['params'])}, {human(p['tokens'])} tokens) = {p['loss']:.3f} "
            f"[{p['low']:.3f}, {p['high']:.3f}], {p['n_factor']:.3g}x the largest fitted size and "
            f"{p['d_factor']:.3g}x the largest budget")


def cooldowns_json(fits: dict, predictions: list[dict]) -> dict:
    return {"sources": [{"run": s["run"]["dir"], "params": s["run"].get("params"),
                         "budgets": [{"tokens": b["tokens"], "final_val_loss": b["final_val_loss"], "dir": b["dir"]}
                                     for b in s["branches"]], "fit": fit_record(s["fit"])} for s in fits["sources"]],
            "surface": fit_record(fits["surface"]), "predictions": predictions}
