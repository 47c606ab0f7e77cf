"""Run folders read back for comparison: find them under a sweep, load each one's numbers, label what differs.

    python -c "from gptlab.analysis.runs import collect_runs; print([r['name'] for r in collect_runs(['runs'])])"

Each run is a dict: its summary.json numbers (metrics.csv's while a run has none), its val curves (`curve` on all
of val, `curve_b` on val half b), its data and context, and the Hydra overrides it ran with.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import yaml

from gptlab.errors import Refused
from gptlab.run.folder import METRICS, SUMMARY, label, read_metrics, recorded

RUN_FILES = (SUMMARY, METRICS)


class ReportError(Refused, RuntimeError):
    """No runs where asked, or a live comparison that cannot run; the message names the path or the missing piece."""


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
    from gptlab.model.gpt import GPT
    with torch.device("meta"):
        return GPT(GPTConfig(**model_cfg)).num_params()


def _val_curve(rows: list[dict], key: str = "val/loss") -> list[tuple[float, float]]:
    """(tokens, loss) per eval, `key` being val/loss or a half's (val/loss_b); a resumed run may log an eval twice,
    the later row wins. A half's empty or NaN cells (runs from before val halves, a half with no windows) are left
    out, so a run without them has an empty half curve."""
    curve = {r["tokens"]: r[key] for r in rows if key in r and "tokens" in r
             and (key == "val/loss" or math.isfinite(r[key]))}
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
           "curve_b": _val_curve(rows, "val/loss_b"),  # where a multiplier is read when a rate was chosen on half a
           "overrides": _yaml(d / ".hydra" / "overrides.yaml") or [],
           "data_name": data.get("name"), "val_tokens": data.get("val_tokens"), "loss_mask": data.get("loss_mask"),
           "data_dir": (cfg.get("paths") or {}).get("data_dir"),
           "ctx": recorded(cfg)["block_size"],
           "from_summary": bool(summary), "seed": cfg.get("seed"), "lr": (cfg.get("optim") or {}).get("lr"),
           "baseline": (cfg.get("study") or {}).get("baseline"), "config": cfg}
    if summary:
        run.update({k: summary.get(k) for k in ("params", "tokens", "tokens_per_param", "final_val_loss",
                                                "final_val_ppl", "best_val_loss", "best_val_step",
                                                "final_val_loss_a", "final_val_loss_b", "train_s",
                                                "tokens_per_step", "cooldown")})
        return run
    # no summary.json yet (running or killed): the same numbers, from the logged rows
    params = _count_params(model) if model else None
    tokens = max((r["tokens"] for r in rows if "tokens" in r), default=None)
    best = min(curve, key=lambda c: c[1]) if curve else None
    last = next((r for r in reversed(rows) if "val/loss" in r), {})
    best_step = next((int(r["step"]) for r in rows if best and r.get("val/loss") == best[1] and "step" in r), None)
    run.update({"params": params, "tokens": tokens,
                "tokens_per_param": tokens / params if tokens is not None and params else None,
                "final_val_loss": curve[-1][1] if curve else None,
                "final_val_ppl": math.exp(curve[-1][1]) if curve else None,
                "best_val_loss": best[1] if best else None, "best_val_step": best_step,
                "final_val_loss_a": last.get("val/loss_a"), "final_val_loss_b": last.get("val/loss_b")})
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
        r["label"] = r["name"] + (" †" if data_key(r) != ref else "") + (": " + label(own) if own else "")


def data_key(run: dict) -> tuple:
    return run.get("data_name"), run.get("val_tokens")


def reference_data(runs: list[dict]) -> tuple | None:
    """The (data.name, val_tokens) most measured rows share; rows with another key are scored on other tokens."""
    keys = Counter(data_key(r) for r in runs if r["kind"] == "measured")
    return keys.most_common(1)[0][0] if keys else None
