"""Generations compared: each model's figures with 95% t-intervals over prompts, the samples side by side, a PNG,
generations.json, and the comparison report's "Generation" section.

    python -m gptlab.generations models=[runs/a,runs/b]                       # writes generations/
    python -m gptlab.report runs/multirun/<sweep> generations=generations     # the section in report.md
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from gptlab.analysis.stats import LEVEL, summarize
from gptlab.analysis.tables import markdown_table
from gptlab.errors import Refused
from gptlab.evaluation.textstats import FIGURES
from gptlab.fs import atomic_write_bytes, atomic_write_json

DEFINITIONS = {
    "length": "tokens generated, to <|endoftext|> or the cap", "at cap": "share of samples that reached the cap",
    "distinct-1": "distinct words / all words over a prompt's samples (Li et al. 2016)",
    "distinct-2": "the same for word bigrams", "distinct-3": "the same for word trigrams",
    "rep-4": "share of a sample's word 4-grams that repeat an earlier one (Welleck et al. 2019)",
    "self-BLEU": "BLEU-4 of each sample against the prompt's other samples (Zhu et al. 2018); lower = more varied",
    "ref ppl": "perplexity of the continuation given the prompt, under the reference model"}


class GenerationsError(Refused, ValueError):
    """generations= names no generations.json: refused before the report writes anything."""


def summaries(result: dict) -> dict:
    """{model: {figure: Summary over the prompts where it is defined, or None}}."""
    out = {}
    for m, rows in result["per_prompt"].items():
        out[m] = {}
        for f in FIGURES:
            vals = [r[f] for r in rows if r.get(f) is not None]
            out[m][f] = summarize(vals) if vals else None
    return out


def _cell(s) -> str:
    if s is None:
        return "—"
    if not math.isfinite(s.low):
        return f"{s.mean:.3g} (n = 1)"
    return f"{s.mean:.3g} [{s.low:.3g}, {s.high:.3g}]"


def figures_table(result: dict) -> str:
    rows = [(m, len(result["per_prompt"][m]), *(_cell(s[f]) for f in FIGURES)) for m, s in summaries(result).items()]
    return markdown_table(("model", "prompts", *FIGURES), rows)


def _quote(text: str, limit: int = 300) -> str:
    text = text if len(text) <= limit else text[:limit] + " …"
    return text.replace("|", "\\|").replace("\r", "").replace("\n", " ⏎ ") or "(empty)"


def side_by_side(result: dict) -> str:
    """One row per prompt, one column per model (its first sample), the human reference last when there is one."""
    refs = all(p.get("reference") is not None for p in result["prompts"])
    header = ("prompt", *result["models"], *(["human reference"] if refs else []))
    rows = [(_quote(p["text"], 120), *(_quote(result["samples"][m][i][0]) for m in result["models"]),
             *([_quote(p["reference"])] if refs else [])) for i, p in enumerate(result["prompts"])]
    return markdown_table(header, rows)


def settings_line(result: dict) -> str:
    s = result["settings"]
    return (f"{len(result['prompts'])} prompts ({s['prompts']}) x {s['n_samples']} samples per model, "
            f"temperature {s['temperature']}, top_k {s['top_k']}, top_p {s['top_p']}, at most {s['max_new_tokens']} "
            f"new tokens, seed {s['seed']}; perplexity under `{s['ref']}`. Each figure: the mean over prompts and "
            f"its {LEVEL:.0%} t-interval.")


def generation_section(result: dict, png: str = "generations.png") -> str:
    defs = "\n".join(f"- **{k}**: {v}" for k, v in DEFINITIONS.items())
    return "\n".join(["## Generation", "", settings_line(result), "", figures_table(result), "", defs, "",
                      f"![distinct-n, rep-4 and self-BLEU per model]({png})"])


def generations_png(result: dict) -> bytes:
    """Grouped bars: distinct-1/2/3, rep-4 and self-BLEU per model, with their intervals as error bars."""
    import numpy as np

    from gptlab.analysis.plots import figure, png
    keys = ("distinct-1", "distinct-2", "distinct-3", "rep-4", "self-BLEU")
    sums = summaries(result)
    fig, ax = figure()
    width = 0.8 / max(1, len(sums))
    for k, (m, s) in enumerate(sums.items()):
        mean = [s[f].mean if s[f] else np.nan for f in keys]
        err = [(s[f].high - s[f].mean) if s[f] and math.isfinite(s[f].high) else 0 for f in keys]
        ax.bar(np.arange(len(keys)) + k * width, mean, width, yerr=err, capsize=3, label=m[-40:])
    ax.set_xticks(np.arange(len(keys)) + width * (len(sums) - 1) / 2, keys)
    ax.set(ylabel=f"mean over prompts, {LEVEL:.0%} interval", title="diversity (distinct-n) and repetition")
    return png(fig, ax)


def generations_json(result: dict) -> dict:
    return {**{k: result[k] for k in ("settings", "models", "prompts", "samples", "per_prompt")},
            "figures": {m: {f: (s.as_dict() if s else None) for f, s in fs.items()}
                        for m, fs in summaries(result).items()}}


def write_generations(result: dict, out: Path) -> Path:
    md = "\n".join(["# Generations", "", settings_line(result), "", figures_table(result), "",
                    "\n".join(f"- **{k}**: {v}" for k, v in DEFINITIONS.items()), "", "![figures](generations.png)",
                    "", "## Samples side by side (each model's first sample)", "", side_by_side(result), ""])
    atomic_write_bytes(out / "generations.png", generations_png(result))
    atomic_write_json(out / "generations.json", generations_json(result))
    atomic_write_bytes(out / "generations.md", md.encode())
    return out


def read_generations(path) -> dict:
    """generations.json (or the folder holding it) as written by write_generations, for the report."""
    p = Path(path)
    p = p / "generations.json" if p.is_dir() else p
    if not p.is_file():
        raise GenerationsError(f"generations={path}: no generations.json there; write one with python -m "
                               "gptlab.generations models=[...]")
    return json.loads(p.read_text())
