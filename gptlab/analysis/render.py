"""The comparison report: the measured table, plateau and size-law fits with predictions, published GPT-2 apart.

    python -m gptlab.report runs=runs/multirun/2026-11-27_21-00-00            # the command line over this module
    python -c "from gptlab.analysis.render import write_report; print(write_report(['runs/x'])['table'])"

Writes <out>/report.md, report.json, val_curves.png, loss_vs_params.png (and cooldowns.png, lr_transfer.png)
atomically: the arms and their verdicts (gptlab/analysis/arms.py, verdicts.py), learning-rate transfer across width
(transfer.py), plateaus measured by cooldowns (cooldowns.py),
then the single-curve and size fits. Measured rows come from each
run's summary.json (or its metrics.csv while a run has none); published GPT-2 figures are shown in their own
section, never in the measured table.
"""
from __future__ import annotations

from pathlib import Path

from gptlab.analysis.arms import compare_arms
from gptlab.analysis.compare import compare_live
from gptlab.analysis.cooldowns import cooldown_fits, cooldown_section, cooldowns_json, parse_target, surface_predictions
from gptlab.analysis.fits import fit_record
from gptlab.analysis.multipliers import multipliers
from gptlab.analysis.multipliers import section as multiplier_section
from gptlab.analysis.plots import (
    arm_curves_png,
    cooldowns_png,
    loss_vs_params_png,
    lr_transfer_png,
    tokens_to_loss_png,
    val_curves_png,
)
from gptlab.analysis.published import PUBLISHED, published_section
from gptlab.analysis.runs import collect_runs, data_key, label_runs, reference_data
from gptlab.analysis.sample_tables import generation_section, generations_json, generations_png, read_generations
from gptlab.analysis.tables import markdown_table, num, pm
from gptlab.analysis.transfer import lr_transfer, transfer_json, transfer_section
from gptlab.analysis.verdicts import arms_json, arms_section
from gptlab.fs import atomic_write_bytes, atomic_write_json
from gptlab.run.curves import FitError, fit_power_law
from gptlab.units import human

HEADER = ("run", "parameters", "context", "tokens trained", "tokens/param", "val ppl (final)", "final val loss",
          "best val loss")



def table_rows(runs: list[dict]) -> list[tuple[str, ...]]:
    ref = reference_data(runs)
    out = []
    for r in runs:
        flag = " †" if data_key(r) != ref else ""
        best = num(r.get("best_val_loss"), ".4f")
        if r.get("best_val_step") is not None:
            best += f" (step {r['best_val_step']})"
        name = r.get("label") or r["name"] + flag  # what the run varies, as the legends and W&B name it
        out.append((name, human(r.get("params")), num(r.get("ctx"), "d"),
                    human(r.get("tokens")) if r["kind"] == "measured" else "pretrained",
                    num(r.get("tokens_per_param"), ".3g"), num(r.get("final_val_ppl"), ".2f"),
                    num(r.get("final_val_loss"), ".4f"), best))
    return out


def plateau_fit(run: dict):
    """L(t) = L_inf + A t^-alpha over the run's evals after step 0; a 'refused: ...' string when it cannot fit."""
    pts = [(t, v) for t, v in run["curve"] if t > 0]
    try:
        return fit_power_law([t for t, _ in pts], [v for _, v in pts])
    except FitError as e:
        return f"refused: {e}"


def model_size(spec: str) -> tuple[float, float | None]:
    """A size to predict, optionally at a token budget: a GPT-2 name (gpt2 ... gpt2-xl, counted as the runs are) or
    a count like 124M, then @2.6B for L(N, D)."""
    return parse_target(spec, {m: p for m, p, *_ in PUBLISHED["openwebtext"]["rows"]})


def scaling_fit(runs: list[dict], predict=()) -> dict:
    """L(N) = L_inf + B N^-beta over final val losses of the largest set of runs scored on the same val tokens
    after the same number of training tokens; predictions at the sizes in `predict` with 95% intervals."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        if r["kind"] == "measured" and r.get("params") and r.get("final_val_loss") is not None:
            groups.setdefault((data_key(r), r.get("tokens")), []).append(r)
    key, group = max(groups.items(), key=lambda kv: len(kv[1]), default=((None, None), []))
    out = {"runs": group, "data": key[0], "tokens": key[1], "predictions": []}
    try:
        fit = fit_power_law([r["params"] for r in group], [r["final_val_loss"] for r in group])
    except FitError as e:
        fit = f"refused: {e}"
    out["fit"] = fit
    for spec in predict:
        n, d = model_size(spec)
        if isinstance(fit, str) or d is not None:
            why = fit if isinstance(fit, str) else (f"L(N) is fitted at one budget ({human(key[1])} tokens); a "
                                                     "prediction at another needs cooldown runs (L(N, D))")
            out["predictions"].append({"name": spec, "params": n, "refused": why})
            continue
        loss, low, high = fit.predict(n)
        out["predictions"].append({"name": spec, "params": n, "loss": loss, "low": low, "high": high,
                                   "factor": n / fit.x_max})
    return out


def fits_section(runs: list[dict], scaling: dict) -> str:
    rows = []
    for r in runs:
        fit = r.get("plateau")
        if r["kind"] != "measured":
            continue
        if isinstance(fit, str):
            evals = len([t for t, _ in r["curve"] if t > 0])
            rows.append((r["name"], evals, fit, "", "", "", num(r.get("final_val_loss"), ".4f")))
        else:
            rows.append((r["name"], fit.n, pm(fit.c, fit.c_err), pm(fit.b, fit.b_err), pm(fit.a, fit.a_err, ".3g"),
                         f"{fit.rmse:.4f}", num(r.get("final_val_loss"), ".4f")))
    parts = ["## Fits", "", "### Plateaus extrapolated from one curve: L(t) = L_inf + A·t^(−alpha), t = tokens", "",
             "An extrapolation, not a measurement: fitted to each run's evals after step 0; ± one standard error "
             "(least squares, residual-scaled). L_inf is where the curve heads if it kept improving as it did; a "
             "decaying learning rate bends real curves down at the end, and one curve cannot separate a plateau "
             "from a slow descent. The cooldown section measures plateaus instead, where a run has branches.", "",
             markdown_table(("run", "evals fitted", "L_inf", "alpha", "A", "rmse", "final val loss"), rows), "",
             "### Scaling: L(N) = L_inf + B·N^(−beta), N = parameters", ""]
    fit, group = scaling["fit"], scaling["runs"]
    if group:
        data, tokens = scaling["data"], scaling["tokens"]
        parts += [f"Over the final val losses of {len(group)} runs ({', '.join(r['name'] for r in group)}) scored on "
                  f"`{data[0]}` val_tokens {data[1]} after {human(tokens)} training tokens each; runs trained on other "
                  "tokens or scored elsewhere are left out.", ""]
    refused = [f"- predict={p['name']}: not predicted: {p['refused']}" for p in scaling["predictions"]
               if "refused" in p]
    if isinstance(fit, str):
        return "\n".join(parts + [fit[0].upper() + fit[1:] + ("" if fit.endswith((".", "?")) else "."), ""] + refused)
    parts += [markdown_table(("L_inf", "beta", "B", "rmse", "runs"),
                             [(pm(fit.c, fit.c_err), pm(fit.b, fit.b_err), pm(fit.a, fit.a_err, ".3g"),
                               f"{fit.rmse:.4f}", fit.n)])]
    if scaling["predictions"]:
        parts += ["", "Predicted final val loss at the same training tokens; the interval is the fit's 95% "
                  "confidence interval (delta method, Student's t on n − 3 degrees of freedom). Far beyond the "
                  "largest fitted size it says what the law implies, not what a run would give.", "",
                  markdown_table(("size", "parameters", "predicted val loss", "95% interval", "beyond largest fitted"),
                                 [(p["name"], human(p["params"]), f"{p['loss']:.3f}",
                                   f"[{p['low']:.3f}, {p['high']:.3f}]", f"{p['factor']:.3g}x")
                                  for p in scaling["predictions"] if "refused" not in p])]
    return "\n".join(parts + ([""] + refused if refused else []))


def runs_section(runs: list[dict]) -> str:
    lines = ["## Runs", ""]
    for r in runs:
        src = ("summary.json" if r.get("from_summary") else "metrics.csv (no summary.json)") \
            if r["kind"] == "measured" \
            else r["kind"]
        over = " ".join(r.get("overrides") or []) or "none"
        lines.append(f"- **{r['name']}**: `{r['dir']}`; data `{r.get('data_name')}`, val_tokens {r.get('val_tokens')}; "
                     f"numbers from {src}; overrides: {over}")
    return "\n".join(lines)


def render_report(runs: list[dict], fits: str | None = None, plot_name: str = "val_curves.png",
                  generation: str | None = None) -> str:
    ref = reference_data(runs)
    odd = [r["name"] for r in runs if data_key(r) != ref]
    note = (f"Measured rows are scored on the same val tokens only when their data.name and data.val_tokens agree; "
            f"here most rows use `{ref[0]}` with val_tokens {ref[1]}.")
    if odd:
        note += f" † marks rows scored on other tokens, not comparable with the rest: {', '.join(odd)}."
    else:
        note += " All rows agree."
    parts = ["# gptlab report", "", "## Measured by gptlab", "",
             "val ppl (final) = exp(final val loss): mean cross-entropy over the first val_tokens tokens of the "
             "dataset's val split, in consecutive windows of the run's context. Rows labelled *measured live* "
             "were scored by `gptlab.report compare=...` on those same tokens.", "",
             markdown_table(HEADER, table_rows(runs)), "", note, "", f"![validation loss]({plot_name})", "",
             runs_section(runs), ""]
    if fits is not None:
        parts += [fits, "", "![final loss against parameters](loss_vs_params.png)", ""]
    if generation is not None:
        parts += [generation, ""]
    parts += [published_section(), ""]
    return "\n".join(parts)


def write_report(paths, out=None, log_x: bool = False, compare: list[str] | None = None, predict=(),
                 baseline: str | None = None, generations=None, **compare_kw) -> dict:
    """Collect runs, fit them, score the compare= models; write report.md, val_curves.png and loss_vs_params.png
    atomically. Returns what was written."""
    for spec in predict:
        model_size(spec)  # a bad size fails before any model is scored
    gen = read_generations(generations) if generations else None  # refused before anything is scored or written
    runs = collect_runs(paths)
    for r in runs:
        r["plateau"] = plateau_fit(r)
    for spec in compare or []:  # before writing: a failing comparison leaves no half report
        runs += compare_live(spec, runs, **compare_kw)
    arms = compare_arms(runs, baseline)  # before anything is written: an ambiguous study fails whole
    cool = cooldown_fits(runs)
    scaling = scaling_fit(runs, [] if cool["sources"] else predict)
    targets = [(spec, *model_size(spec)) for spec in predict] if cool["sources"] else []
    cool["predictions"] = surface_predictions(cool, targets)
    out = Path(out) if out else (Path(paths[0]) / "report" if len(paths) == 1 else Path("report"))
    if compare:
        label_runs(runs)  # the live rows change which overrides are shared
    replicated = any(a["summary"].n > 1 for a in arms["arms"])
    curves = arm_curves_png(arms, log_x) if replicated else val_curves_png(runs, log_x)  # seeds: mean and band
    atomic_write_bytes(out / "val_curves.png", curves)
    atomic_write_bytes(out / "loss_vs_params.png", loss_vs_params_png(runs, scaling))
    fits = fits_section(runs, scaling)
    if cool["sources"]:
        atomic_write_bytes(out / "cooldowns.png", cooldowns_png(cool))
        fits = cooldown_section(cool, cool["predictions"]) + "\n\n" + fits
    verdicts = arms_section(arms)
    found = multipliers(arms) if replicated and len(arms["arms"]) > 1 else []
    if found:
        atomic_write_bytes(out / "tokens_to_loss.png", tokens_to_loss_png(found, arms["baseline"]))
        verdicts += "\n\n" + multiplier_section(arms, found)
    transfer = lr_transfer(arms["arms"])
    if transfer["families"]:
        atomic_write_bytes(out / "lr_transfer.png", lr_transfer_png(transfer))
        verdicts = transfer_section(transfer) + "\n\n" + verdicts
    if gen is not None:
        atomic_write_bytes(out / "generations.png", generations_png(gen))
    atomic_write_bytes(out / "report.md", render_report(runs, verdicts + "\n\n" + fits, generation=(
        generation_section(gen) if gen is not None else None)).encode())
    atomic_write_json(out / "report.json", report_json(runs, arms, scaling) | {
        "cooldowns": cooldowns_json(cool, cool["predictions"]), "transfer": transfer_json(transfer),
        "generation": generations_json(gen) if gen is not None else None, "multipliers": found})
    return {"out": out, "runs": runs, "scaling": scaling, "arms": arms, "verdicts": verdicts, "cooldowns": cool,
            "table": markdown_table(HEADER, table_rows(runs)), "fits": fits}


def report_json(runs: list[dict], arms: dict, scaling: dict) -> dict:
    """report.json: the arms and verdicts, each run's final numbers and plateau fit, the size fit's predictions."""
    return {**arms_json(arms),
            "runs": [{k: r.get(k) for k in ("name", "dir", "kind", "seed", "lr", "params", "tokens", "final_val_loss",
                                            "final_val_loss_a", "final_val_loss_b", "best_val_loss")}
                     | {"plateau_extrapolated": fit_record(r.get("plateau"))} for r in runs],
            "size_fit": fit_record(scaling["fit"]), "predictions": scaling["predictions"]}
