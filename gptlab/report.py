"""Compare runs: one markdown table in the study's shape, every run's val curve on one plot, published GPT-2 apart.

    python -m gptlab.report runs/multirun/2026-11-27_21-00-00            # a sweep: every job folder under it
    python -m gptlab.report runs/2026-11-27/21-00-00 runs/2026-11-28/09-30-00 --out reports/30m --log-x
    python -m gptlab.report runs/multirun/2026-11-27_21-00-00 --compare hf:gpt2   # + GPT-2 scored live on the same val tokens
    python -c "from gptlab.report import collect_runs; print([r['name'] for r in collect_runs(['runs'])])"

Writes <out>/report.md and <out>/val_curves.png (out defaults to <path>/report for one path, else ./report) and
prints the table. Measured rows come from each run's summary.json (or its metrics.csv while a run has none);
published GPT-2 figures are copied below with their sources and shown in their own section, never in the
measured table. `--compare` needs gptlab.eval.perplexity and the model's weights (e.g. the Hugging Face cache).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import yaml

from gptlab.assets import atomic_write_bytes
from gptlab.fits import FitError, fit_power_law, parse_count
from gptlab.logs import read_metrics
from gptlab.plots import loss_vs_params_png, val_curves_png

NANOGPT = "nanoGPT README, baselines (https://github.com/karpathy/nanoGPT#baselines)"
GPT2_PAPER = ("Radford et al. 2019, Language Models are Unsupervised Multitask Learners, Table 3 "
              "(https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf)")
HARNESS = "EleutherAI lm-evaluation-harness, zero-shot, Hugging Face `gpt2` / `gpt2-xl`"

# Copied here so reports work without the project's reference notes. params: counted as nanoGPT (and gptlab's
# num_params) count them: tied wte once, position embeddings left out, e.g. gpt2 = 50257*768 + 12*(12*768^2 + 13*768) + 2*768.
PUBLISHED = {
    "openwebtext": {  # pretrained checkpoints scored on OpenWebText, 1024-token context
        "source": NANOGPT,
        "rows": [  # (model, params, train loss, val loss)
            ("gpt2", 123_653_376, 3.11, 3.12),
            ("gpt2-medium", 353_774_592, 2.85, 2.84),
            ("gpt2-large", 772_719_360, 2.66, 2.67),
            ("gpt2-xl", 1_555_972_800, 2.56, 2.54),
        ],
    },
    "gpt2_paper": {  # zero-shot, with the paper's detokenizers and token-ratio scaling
        "source": GPT2_PAPER,
        "columns": ("LAMBADA ppl", "LAMBADA acc", "WikiText2 ppl", "WikiText103 ppl", "PTB ppl", "enwik8 bpb"),
        "rows": [
            ("117M", 35.13, 45.99, 29.41, 37.50, 65.85, 1.16),
            ("345M", 15.60, 55.48, 22.76, 26.37, 47.33, 1.01),
            ("762M", 10.87, 60.12, 19.93, 22.05, 40.31, 0.97),
            ("1542M", 8.63, 63.24, 18.34, 17.48, 35.76, 0.93),
        ],
    },
    "harness": {
        "source": HARNESS,
        "rows": [  # (model, task, metric, value)
            ("gpt2", "lambada_openai", "acc", 0.3256),
            ("gpt2", "lambada_openai", "perplexity (per word)", 40.06),
            ("gpt2", "wikitext (wikitext-2-raw-v1, document level)", "word_perplexity", 37.37),
            ("gpt2", "wikitext", "byte_perplexity", 1.9682),
            ("gpt2", "wikitext", "bits_per_byte", 0.9769),
            ("gpt2", "hellaswag (validation)", "acc", 0.2892),
            ("gpt2", "hellaswag (validation)", "acc_norm", 0.3114),
            ("gpt2-xl", "hellaswag (validation)", "acc", 0.4004),
            ("gpt2-xl", "hellaswag (validation)", "acc_norm", 0.5089),
            ("gpt2-xl", "lambada_openai", "perplexity (per word)", 10.63),
        ],
    },
}

RUN_FILES = ("summary.json", "metrics.csv")
HEADER = ("run", "parameters", "context", "tokens trained", "tokens/param", "val ppl (final)", "final val loss",
          "best val loss")


class ReportError(RuntimeError):
    """No runs where asked, or a live comparison that cannot run; the message names the path or the missing piece."""


# --- collecting runs ---------------------------------------------------------------------------------------------

def _natural(p: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", str(p))]  # job 10 after job 9


def find_run_dirs(path) -> list[Path]:
    """The path itself if it is a run folder, else every run folder under it (not inside another run)."""
    path = Path(path)
    if not path.exists():
        raise ReportError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise ReportError(f"{path}: not a folder; give a run folder or a sweep folder")
    if any((path / f).is_file() for f in RUN_FILES):
        return [path]
    found = sorted({f.parent for name in RUN_FILES for f in path.rglob(name)}, key=_natural)
    runs = [d for d in found if not any(o in d.parents for o in found)]  # a run's own subfolders are not runs
    if not runs:
        raise ReportError(f"{path}: no runs found (no folder under it holds summary.json or metrics.csv)")
    return runs


def _yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _count_params(model_cfg: dict) -> int:
    """nanoGPT's count for a run without summary.json: the model built on the meta device, so no memory or init."""
    import torch
    from gptlab.config import GPTConfig
    from gptlab.model import GPT
    with torch.device("meta"):
        return GPT(GPTConfig(**model_cfg)).num_params()


def _val_curve(rows: list[dict]) -> list[tuple[float, float]]:
    """(tokens, val loss) per eval; a resumed run may log an eval twice, the later row wins."""
    curve = {r["tokens"]: r["val/loss"] for r in rows if "val/loss" in r and "tokens" in r}
    return sorted(curve.items())


def load_run(run_dir, name: str | None = None) -> dict:
    """One measured row: summary.json's numbers (metrics.csv's while there is none) and the config they ran with."""
    d = Path(run_dir)
    cfg = _yaml(d / "config.yaml") or _yaml(d / ".hydra" / "config.yaml") or {}
    summary = json.loads((d / "summary.json").read_text()) if (d / "summary.json").is_file() else {}
    rows = read_metrics(d)
    model = summary.get("model") or cfg.get("model") or {}
    data = cfg.get("data") or {}
    curve = _val_curve(rows)
    run = {"name": name or d.name, "dir": str(d), "kind": "measured", "curve": curve,
           "overrides": _yaml(d / ".hydra" / "overrides.yaml") or [],
           "data_name": data.get("name"), "val_tokens": data.get("val_tokens"),
           "data_dir": (cfg.get("paths") or {}).get("data_dir"),
           "ctx": data.get("block_size") or model.get("block_size"),
           "from_summary": bool(summary)}
    if summary:
        run.update({k: summary.get(k) for k in ("params", "tokens", "tokens_per_param", "final_val_loss",
                                                "final_val_ppl", "best_val_loss", "best_val_step")})
        return run
    # no summary.json yet (running or killed): the same numbers, from the logged rows
    params = _count_params(model) if model else None
    tokens = max((r["tokens"] for r in rows if "tokens" in r), default=None)
    best = min(curve, key=lambda c: c[1]) if curve else None
    best_step = next((int(r["step"]) for r in rows if best and r.get("val/loss") == best[1] and "step" in r), None)
    run.update({"params": params, "tokens": tokens,
                "tokens_per_param": tokens / params if tokens is not None and params else None,
                "final_val_loss": curve[-1][1] if curve else None,
                "final_val_ppl": math.exp(curve[-1][1]) if curve else None,
                "best_val_loss": best[1] if best else None, "best_val_step": best_step})
    return run


def _name(run_dir: Path, root: Path) -> str:
    """A sweep's job by its folder under the sweep ('0', '1', ...); a lone run by its last two folders (date/time)."""
    if run_dir == root:
        return "/".join(run_dir.resolve().parts[-2:])
    return str(run_dir.relative_to(root))


def collect_runs(paths) -> list[dict]:
    """Every run under the given run or sweep folders, in order, each loaded with load_run."""
    if not paths:
        raise ReportError("no paths given; pass run folders or a sweep folder")
    runs = [load_run(d, _name(d, Path(p))) for p in paths for d in find_run_dirs(p)]
    label_runs(runs)
    return runs


def label_runs(runs: list[dict]) -> None:
    """Each run's plot label: its name and the overrides that differ between runs (the sweep's own keys)."""
    shared = set.intersection(*(set(r.get("overrides") or []) for r in runs)) if len(runs) > 1 else set()
    ref = reference_data(runs)
    for r in runs:
        own = [o for o in r.get("overrides") or [] if o not in shared]
        r["label"] = r["name"] + (" †" if data_key(r) != ref else "") + (": " + " ".join(own) if own else "")


# --- the table ---------------------------------------------------------------------------------------------------

def human(n) -> str:
    """29938560 -> 29.94M; the study's way of writing parameter and token counts."""
    if n is None:
        return "—"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:g}"


def _num(x, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def data_key(run: dict) -> tuple:
    return run.get("data_name"), run.get("val_tokens")


def reference_data(runs: list[dict]) -> tuple | None:
    """The (data.name, val_tokens) most measured rows share; rows with another key are scored on other tokens."""
    keys = Counter(data_key(r) for r in runs if r["kind"] == "measured")
    return keys.most_common(1)[0][0] if keys else None


def table_rows(runs: list[dict]) -> list[tuple[str, ...]]:
    ref = reference_data(runs)
    out = []
    for r in runs:
        flag = " †" if data_key(r) != ref else ""
        best = _num(r.get("best_val_loss"), ".4f")
        if r.get("best_val_step") is not None:
            best += f" (step {r['best_val_step']})"
        out.append((r["name"] + flag, human(r.get("params")), _num(r.get("ctx"), "d"),
                    human(r.get("tokens")) if r["kind"] == "measured" else "pretrained",
                    _num(r.get("tokens_per_param"), ".3g"), _num(r.get("final_val_ppl"), ".2f"),
                    _num(r.get("final_val_loss"), ".4f"), best))
    return out


# --- fits --------------------------------------------------------------------------------------------------------

def plateau_fit(run: dict):
    """L(t) = L_inf + A t^-alpha over the run's evals after step 0; a 'refused: ...' string when it cannot fit."""
    pts = [(t, v) for t, v in run["curve"] if t > 0]
    try:
        return fit_power_law([t for t, _ in pts], [v for _, v in pts])
    except FitError as e:
        return f"refused: {e}"


def model_size(spec: str) -> float:
    """A size to predict: a GPT-2 name (gpt2 ... gpt2-xl, counted as the runs are) or a count like 124M."""
    named = {m: p for m, p, *_ in PUBLISHED["openwebtext"]["rows"]}
    try:
        return float(named[spec]) if spec in named else parse_count(spec)
    except ValueError as e:
        raise ReportError(f"predict={spec}: {e}, or one of {', '.join(named)}") from None


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
        out["fit"] = f"refused: {e}"
        return out
    out["fit"] = fit
    for spec in predict:
        n = model_size(spec)
        loss, low, high = fit.predict(n)
        out["predictions"].append({"name": spec, "params": n, "loss": loss, "low": low, "high": high,
                                   "factor": n / fit.x_max})
    return out


def _pm(value: float, err: float, fmt: str = ".3f") -> str:
    return f"{value:{fmt}} ± {err:{fmt}}" if math.isfinite(err) else f"{value:{fmt}} ± undetermined"


def fits_section(runs: list[dict], scaling: dict) -> str:
    rows = []
    for r in runs:
        fit = r.get("plateau")
        if r["kind"] != "measured":
            continue
        if isinstance(fit, str):
            rows.append((r["name"], len([t for t, _ in r["curve"] if t > 0]), fit, "", "", "", _num(r.get("final_val_loss"), ".4f")))
        else:
            rows.append((r["name"], fit.n, _pm(fit.c, fit.c_err), _pm(fit.b, fit.b_err), _pm(fit.a, fit.a_err, ".3g"),
                         f"{fit.rmse:.4f}", _num(r.get("final_val_loss"), ".4f")))
    parts = ["## Fits", "", "### Plateaus: L(t) = L_inf + A·t^(−alpha), t = tokens trained", "",
             "Fitted to each run's evals after step 0; ± one standard error (least squares, residual-scaled). "
             "L_inf is where the curve heads if it kept improving as it did: an extrapolation, and a decaying "
             "learning rate bends real curves down at the end, so read it with its error.", "",
             markdown_table(("run", "evals fitted", "L_inf", "alpha", "A", "rmse", "final val loss"), rows), "",
             "### Scaling: L(N) = L_inf + B·N^(−beta), N = parameters", ""]
    fit, group = scaling["fit"], scaling["runs"]
    if group:
        data, tokens = scaling["data"], scaling["tokens"]
        parts += [f"Over the final val losses of {len(group)} runs ({', '.join(r['name'] for r in group)}) scored on "
                  f"`{data[0]}` val_tokens {data[1]} after {human(tokens)} training tokens each; runs trained on other "
                  "tokens or scored elsewhere are left out.", ""]
    if isinstance(fit, str):
        return "\n".join(parts + [fit[0].upper() + fit[1:] + ("" if fit.endswith((".", "?")) else ".")])
    parts += [markdown_table(("L_inf", "beta", "B", "rmse", "runs"),
                             [(_pm(fit.c, fit.c_err), _pm(fit.b, fit.b_err), _pm(fit.a, fit.a_err, ".3g"),
                               f"{fit.rmse:.4f}", fit.n)])]
    if scaling["predictions"]:
        parts += ["", "Predicted final val loss at the same training tokens; the interval is the fit's 95% "
                  "confidence interval (delta method, Student's t on n − 3 degrees of freedom). Far beyond the "
                  "largest fitted size it says what the law implies, not what a run would give.", "",
                  markdown_table(("size", "parameters", "predicted val loss", "95% interval", "beyond largest fitted"),
                                 [(p["name"], human(p["params"]), f"{p['loss']:.3f}",
                                   f"[{p['low']:.3f}, {p['high']:.3f}]", f"{p['factor']:.3g}x")
                                  for p in scaling["predictions"]])]
    return "\n".join(parts)


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def published_section() -> str:
    """The GPT-2 figures copied above, each table with its source; nothing here was measured by gptlab."""
    owt, paper, harness = PUBLISHED["openwebtext"], PUBLISHED["gpt2_paper"], PUBLISHED["harness"]
    parts = [
        "## Published (not measured by gptlab)",
        "",
        "Figures copied from their sources for orientation. They were not scored on this report's val tokens: "
        "do not read them as rows of the measured table.",
        "",
        f"### GPT-2 checkpoints on OpenWebText, 1024-token context — {owt['source']}",
        "",
        markdown_table(("model", "parameters", "context", "train loss", "val loss", "exp(val loss)"),
                       [(m, human(p), 1024, f"{tr:.2f}", f"{va:.2f}", f"{math.exp(va):.2f}")
                        for m, p, tr, va in owt["rows"]]),
        "",
        "nanoGPT's val loss is the mean over random 1024-token windows of its OpenWebText val split "
        "(test_size 0.0005, seed 2357), not gptlab's first `val_tokens` tokens: close to, not the same as, "
        "a gptlab run with data=openwebtext at context 1024.",
        "",
        f"### GPT-2 paper, zero-shot — {paper['source']}",
        "",
        markdown_table(("model",) + paper["columns"], paper["rows"]),
        "",
        f"### lm-evaluation-harness — {harness['source']}",
        "",
        markdown_table(("model", "task", "metric", "value"), harness["rows"]),
    ]
    return "\n".join(parts)


def runs_section(runs: list[dict]) -> str:
    lines = ["## Runs", ""]
    for r in runs:
        src = ("summary.json" if r.get("from_summary") else "metrics.csv (no summary.json)") if r["kind"] == "measured" \
            else r["kind"]
        over = " ".join(r.get("overrides") or []) or "none"
        lines.append(f"- **{r['name']}**: `{r['dir']}`; data `{r.get('data_name')}`, val_tokens {r.get('val_tokens')}; "
                     f"numbers from {src}; overrides: {over}")
    return "\n".join(lines)


def render_report(runs: list[dict], fits: str | None = None, plot_name: str = "val_curves.png") -> str:
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
             "were scored by `gptlab.report --compare` on those same tokens.", "",
             markdown_table(HEADER, table_rows(runs)), "", note, "", f"![validation loss]({plot_name})", "",
             runs_section(runs), ""]
    if fits is not None:
        parts += [fits, "", "![final loss against parameters](loss_vs_params.png)", ""]
    parts += [published_section(), ""]
    return "\n".join(parts)


# --- live comparison ---------------------------------------------------------------------------------------------

def compare_live(spec: str, runs: list[dict], data_dir: str | None = None, batch_size: int = 8,
                 device: str | None = None) -> list[dict]:
    """Score `spec` (e.g. hf:gpt2) on the runs' val tokens at their context, one row per distinct (data, val_tokens,
    context): the same windows the runs were validated on."""
    try:
        from gptlab.eval import perplexity
    except ImportError as e:
        raise ReportError(f"--compare needs gptlab.eval.perplexity, which this checkout lacks ({e})") from None
    import torch
    from gptlab.load import LoadError, check_compatible, load_model
    from gptlab.shards import ShardError, first_tokens, open_split
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model, _ = load_model(spec, device=device)
    except (LoadError, OSError, ImportError, ValueError) as e:
        raise ReportError(f"--compare {spec}: cannot load the model or its weights: {e}") from None
    out, seen = [], set()
    for r in runs:
        key = (r.get("data_name"), r.get("val_tokens"), r.get("ctx"), r.get("data_dir"))
        if r["kind"] != "measured" or key[:3] in seen:
            continue
        seen.add(key[:3])
        name, n, ctx = key[:3]
        if not (name and n and ctx):
            raise ReportError(f"--compare: {r['dir']} has no data.name, data.val_tokens or context in its config.yaml")
        folder = Path(data_dir or key[3] or "data") / name
        try:
            check_compatible(model, block_size=ctx)
            tokens = first_tokens(open_split(folder, "val"), n + 1)  # +1: n targets, as the runs' val windows
            res = perplexity(model, tokens, ctx, ctx, batch_size, device)
        except (LoadError, ShardError, ValueError) as e:
            raise ReportError(f"--compare {spec}: {e}") from None
        out.append({"name": f"{spec} (measured live)", "dir": str(folder), "kind": "measured live", "curve": [],
                    "overrides": [], "data_name": name, "val_tokens": n, "ctx": ctx, "params": model.num_params(),
                    "tokens": None, "tokens_per_param": None, "final_val_loss": res["loss"],
                    "final_val_ppl": res["ppl"], "best_val_loss": None, "best_val_step": None})
    return out


# --- the command -------------------------------------------------------------------------------------------------

def write_report(paths, out=None, log_x: bool = False, compare: list[str] | None = None, predict=(),
                 **compare_kw) -> dict:
    """Collect runs, fit them, score --compare models; write report.md, val_curves.png and loss_vs_params.png
    atomically. Returns what was written."""
    for spec in predict:
        model_size(spec)  # a bad size fails before any model is scored
    runs = collect_runs(paths)
    for r in runs:
        r["plateau"] = plateau_fit(r)
    for spec in compare or []:  # before writing: a failing comparison leaves no half report
        runs += compare_live(spec, runs, **compare_kw)
    scaling = scaling_fit(runs, predict)
    out = Path(out) if out else (Path(paths[0]) / "report" if len(paths) == 1 else Path("report"))
    if compare:
        label_runs(runs)  # the live rows change which overrides are shared
    atomic_write_bytes(out / "val_curves.png", val_curves_png(runs, log_x))
    atomic_write_bytes(out / "loss_vs_params.png", loss_vs_params_png(runs, scaling))
    fits = fits_section(runs, scaling)
    atomic_write_bytes(out / "report.md", render_report(runs, fits).encode())
    return {"out": out, "runs": runs, "scaling": scaling, "table": markdown_table(HEADER, table_rows(runs)),
            "fits": fits}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gptlab.report", description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", help="run folders and/or sweep folders")
    ap.add_argument("--out", help="report folder (default <path>/report for one path, else ./report)")
    ap.add_argument("--log-x", action="store_true", help="log-scale tokens axis")
    ap.add_argument("--compare", action="append", metavar="SPEC", help="also score e.g. hf:gpt2 live (repeatable)")
    ap.add_argument("--data-dir", help="prepared datasets for --compare (default: each run's paths.data_dir)")
    ap.add_argument("--batch-size", type=int, default=8, help="windows per forward for --compare")
    ap.add_argument("--device", help="device for --compare (default cuda if available, else cpu)")
    ap.add_argument("--predict", action="append", default=[], metavar="SIZE",
                    help="predict the final val loss at this size from the L(N) fit: 124M, 1.5B or gpt2 (repeatable)")
    argv = sys.argv[1:] if argv is None else list(argv)
    # key=value spellings, as the other gptlab commands take them: compare=hf:gpt2 out=reports/x log_x=true
    for key in ("compare", "out", "data_dir", "batch_size", "device", "predict"):
        argv = [x for a in argv for x in (["--" + key.replace("_", "-"), a.split("=", 1)[1]]
                                          if a.startswith(key + "=") else [a])]
    argv = ["--log-x" if a in ("log_x=true", "log_x=True") else a for a in argv if a not in ("log_x=false",)]
    a = ap.parse_args(argv)
    try:
        res = write_report(a.paths, a.out, a.log_x, a.compare, a.predict, data_dir=a.data_dir,
                           batch_size=a.batch_size, device=a.device)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(res["table"] + "\n\n" + res["fits"])
    print(f"\nwrote {res['out'] / 'report.md'}, {res['out'] / 'val_curves.png'} and {res['out'] / 'loss_vs_params.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
