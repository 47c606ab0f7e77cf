"""The report's pictures, as PNG bytes: validation curves (with their plateau fits) and final loss against size.

    python -c "from gptlab.analysis.runs import collect_runs; from gptlab.analysis.plots import val_curves_png as p; \
               open('v.png', 'wb').write(p(collect_runs(['runs/multirun/2026-11-27_21-00-00'])))"
    python -m gptlab.report runs/multirun/2026-11-27_21-00-00 predict=124M   # writes both next to report.md

Matplotlib's Agg canvas directly: no display, no pyplot global state. Run dicts come from gptlab.report.load_run.
"""
from __future__ import annotations

import io

import numpy as np


def figure():
    """An 8 x 5 inch Agg figure and its one axes: no display, no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def png(fig, ax) -> bytes:
    """The figure as PNG bytes, with a light grid and the legend when anything is labelled."""
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _short(label: str, limit: int = 70) -> str:
    return label if len(label) <= limit else label[:limit - 3] + "..."


def val_curves_png(runs: list[dict], log_x: bool = False) -> bytes:
    """Val loss against tokens trained, one line per run, its plateau fit dashed in the same colour (with L_inf in
    the legend); rows scored live (pretrained models) as grey horizontal lines."""
    fig, ax = figure()
    for r in runs:
        label = _short(r["label"])
        if r["kind"] != "measured":
            if r.get("final_val_loss") is not None:
                ax.axhline(r["final_val_loss"], ls="--", lw=1, color="gray", label=label)
            continue
        pts = [(t, v) for t, v in r["curve"] if t > 0 or not log_x]  # the step-0 eval has no place on a log axis
        if not pts:
            continue
        (line,) = ax.plot(*zip(*pts), marker="o", ms=3, label=label)
        fit = r.get("plateau")
        if fit is not None and not isinstance(fit, str):
            t = np.geomspace(fit.x_min, fit.x_max, 100)
            ax.plot(t, fit(t), ls="--", lw=1, color=line.get_color(),
                    label=f"  fit: L_inf {fit.c:.3f} ± {fit.c_err:.3f}")
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel="tokens trained", ylabel="validation loss", title="validation loss on the data's val tokens")
    return png(fig, ax)


def arm_curves_png(result: dict, log_x: bool = False) -> bytes:
    """Val loss against tokens, one line per arm: the mean over its seeds (at its chosen rate) with the 95%
    t-interval of the mean shaded, at the evals after step 0 that every seed logged."""
    from gptlab.analysis.stats import summarize
    fig, ax = figure()
    for a in result["arms"]:
        sel = a.get("selection")
        runs = a["by_lr"][sel["chosen"]] if sel else a["runs"]
        common = sorted(set.intersection(*(set(t for t, _ in r["curve"]) for r in runs)))
        common = [t for t in common if t > 0]  # the eval before step 0 (~10.8 for every arm) would flatten the rest
        if not common:
            continue
        stats = [summarize([dict(r["curve"])[t] for r in runs]) for t in common]
        mean = [s.mean for s in stats]
        (line,) = ax.plot(common, mean, marker="o", ms=3, label=_short(f"{a['label']} (n = {len(runs)})"))
        if len(runs) > 1:
            ax.fill_between(common, [s.low for s in stats], [s.high for s in stats], color=line.get_color(),
                            alpha=0.2, lw=0)
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel="tokens trained", ylabel="validation loss",
           title="val loss (all val tokens) at each arm's chosen rate: mean over seeds, 95% interval shaded")
    return png(fig, ax)


def loss_vs_params_png(runs: list[dict], scaling: dict) -> bytes:
    """Final val loss against parameters (log x): the runs in the size fit filled, others hollow, the fitted
    L(N) curve and each prediction with its 95% interval."""
    fig, ax = figure()
    fitted = {id(r) for r in scaling["runs"]}
    for r in runs:
        if r.get("params") and r.get("final_val_loss") is not None:
            inside = id(r) in fitted
            ax.plot(r["params"], r["final_val_loss"], "o", color="C0" if inside else "gray",
                    mfc="C0" if inside else "none")
            ax.annotate(r["name"], (r["params"], r["final_val_loss"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    fit = scaling.get("fit")
    if fit is not None and not isinstance(fit, str):
        right = max([fit.x_max] + [p["params"] for p in scaling["predictions"]])
        n = np.geomspace(fit.x_min, right, 200)
        ax.plot(n, fit(n), "--", color="C1",
                label=f"L(N) = {fit.c:.3f} + {fit.a:.3g}·N^-{fit.b:.3f}  ({fit.n} runs)")
        for p in scaling["predictions"]:
            ax.errorbar(p["params"], p["loss"], yerr=[[p["loss"] - p["low"]], [p["high"] - p["loss"]]], fmt="s",
                        color="C3", capsize=4,
                        label=f"predicted {p['name']}: {p['loss']:.3f} [{p['low']:.3f}, {p['high']:.3f}]")
    ax.set_xscale("log")
    ax.set(xlabel="parameters (tied embedding counted once, position embeddings not)", ylabel="final validation loss",
           title="final validation loss against model size")
    return png(fig, ax)


def cooldowns_png(fits: dict) -> bytes:
    """Each constant-rate run's val curve (solid), its branches' cooldowns (thin), the budgets' final losses
    (squares) and the L(D) fit through them (dashed), tokens on a log axis."""
    fig, ax = figure()
    for i, s in enumerate(fits["sources"]):
        colour, run = f"C{i % 10}", s["run"]
        pts = [(t, v) for t, v in run["curve"] if t > 0]
        if pts:
            ax.plot(*zip(*pts), color=colour, lw=1.5, label=_short(f"{run['label']}: constant rate"))
        for b in s["branches"]:
            seg = [(t, v) for t, v in b["curve"] if t >= b["from_tokens"] > 0]
            if seg:
                ax.plot(*zip(*seg), color=colour, lw=0.8, alpha=0.7)
        ax.plot([b["tokens"] for b in s["branches"]], [b["final_val_loss"] for b in s["branches"]], "s", ms=5,
                color=colour, label="  cooldown endpoints")
        fit = s["fit"]
        if not isinstance(fit, str):
            t = np.geomspace(fit.x_min, fit.x_max * 2, 100)
            ax.plot(t, fit(t), "--", lw=1, color=colour, label=f"  L(D): E {fit.c:.3f} ± {fit.c_err:.3f}")
    ax.set_xscale("log")
    ax.set(xlabel="tokens trained", ylabel="validation loss",
           title="cooldown branches from constant-rate checkpoints (Hägele et al. 2024)")
    return png(fig, ax)


def coord_check_png(results: list[dict]) -> bytes:
    """muP's coordinate-check figure: one row per parametrisation (gptlab.model.coord_check results), columns the
    layers' mean |x| at init and after the last step and their change after the first and the last step, against
    width (or depth) on log-log axes, one line per layer. Flat lines: that layer's scale does not depend on size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    steps = results[0]["steps"]
    columns = [("", 0, "mean |x_0|"), ("", steps, f"mean |x_{steps}|"), (" change", 1, "mean |x_1 - x_0|"),
               (" change", steps, f"mean |x_{steps} - x_0|")]
    from matplotlib.ticker import NullLocator
    fig = Figure(figsize=(4 * len(columns), 3.4 * len(results)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(results), len(columns), squeeze=False)
    for row, r in zip(axes, results):
        sizes = sorted(r["sizes"])
        names = [k for k in r["sizes"][sizes[0]]["layers"] if not k.endswith(" change")]
        for ax, (suffix, t, title) in zip(row, columns):
            for name in names:
                ys = [r["sizes"][n]["layers"][name + suffix][t] for n in sizes]
                if min(ys) > 0:
                    ax.plot(sizes, ys, marker="o", ms=3, label=name)
            ax.set(xscale="log", yscale="log", xlabel=r["axis"], title=f"{r['label']}: {title}")
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.grid(True, alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def lr_transfer_png(result: dict) -> bytes:
    """The muP paper's Figure 1: final val loss (mean over seeds) against the learning rate, one curve per width, one
    panel per family (SP, muP) on shared axes; a star marks each width's rate chosen on val half a."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator
    families = result["families"]
    fig = Figure(figsize=(5.5 * len(families), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(families), squeeze=False, sharey=True)[0]
    for ax, f in zip(axes, families):
        for r in f["rows"]:
            lrs = sorted(r["mean_by_lr"])
            (line,) = ax.plot(lrs, [r["mean_by_lr"][lr] for lr in lrs], marker="o", ms=3, label=f"width {r['width']}")
            if r["chosen"] in r["mean_by_lr"]:
                ax.plot([r["chosen"]], [r["mean_by_lr"][r["chosen"]]], marker="*", ms=12, color=line.get_color())
        ax.set(xscale="log", xlabel="learning rate (optim.lr)", title=f["label"])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(f["grid"], [f"{lr:g}" for lr in f["grid"]], fontsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    lows = [min(r["mean_by_lr"].values()) for f in families for r in f["rows"]]
    axes[0].set_ylim(min(lows) - 0.03, max(lows) + 0.3)  # the optima's region; worse rates leave through the top
    axes[0].set_ylabel("final val loss, mean over seeds (clipped above)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def tokens_to_loss_png(found: list[dict], baseline: str) -> bytes:
    """Each arm's tokens to the baseline's final loss, as a multiple of the baseline's: the geometric mean over seeds
    with its 95% interval, on a log axis (1x: as many as the baseline; an arm that never got there is left out)."""
    fig, ax = figure()
    shown = [m for m in found if m["multiplier"] is not None]
    y = list(range(len(shown)))
    for i, m in zip(y, shown):
        err = [[m["multiplier"] - (m["low"] or m["multiplier"])], [(m["high"] or m["multiplier"]) - m["multiplier"]]]
        ax.errorbar(m["multiplier"], i, xerr=err, fmt="o", capsize=4)
        ax.plot(m["ratios"], [i] * len(m["ratios"]), "x", color="gray", ms=4)
    ax.axvline(1.0, color="black", lw=1, ls="--")
    ax.set_yticks(y, [_short(m["label"], 40) for m in shown])
    ax.set_xscale("log")
    ax.set(xlabel=f"tokens to the final loss of {_short(baseline, 40)}, over its tokens (x: each seed)",
           title="tokens to the baseline's loss: geometric mean over seeds, 95% interval")
    return png(fig, ax)
