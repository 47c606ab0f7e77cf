"""gptlab.report on hand-written run folders (no training): table numbers, published section, plot, errors.

    .venv/bin/python -m pytest tests/test_report.py -q
"""
import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import run_entry

from gptlab.analysis.published import PUBLISHED
from gptlab.analysis.render import write_report
from gptlab.analysis.runs import ReportError, collect_runs
from gptlab.report import ENTRY as REPORT

M30 = {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 512, "vocab_size": 50304, "bias": False,
       "dropout": 0.0, "gelu": "tanh"}
TINY = {**M30, "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64}
COLS = ["epoch", "lr", "mfu", "step", "tokens", "tokens_per_s", "train/loss", "val/loss", "val/ppl"]


def fake_run(d: Path, model: dict, data: str, val_tokens: int, params: int, tokens_per_step: int,
             val: list[float], every: int = 1000, summary: bool = True, data_dir: str = "data") -> Path:
    """A run folder as gptlab.train leaves it: config.yaml, metrics.csv (train and val rows), summary.json."""
    d.mkdir(parents=True)
    cfg = {"seed": 1337, "model": model, "paths": {"data_dir": data_dir, "log_dir": "runs", "run_dir": str(d)},
           "data": {"block_size": None, "name": data, "val_tokens": val_tokens, "batch_size": 8}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = []
    for i, v in enumerate(val):  # eval i after i*every steps; a train row before each eval after the first
        step, tokens = i * every, i * every * tokens_per_step
        if i:
            rows.append({"step": step - 1, "tokens": tokens, "lr": 6e-4, "mfu": 0.3, "tokens_per_s": 1e5,
                         "train/loss": v - 0.02})
        rows.append({"step": max(step - 1, 0), "tokens": tokens, "val/loss": v, "val/ppl": math.exp(v)})
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLS)
        w.writeheader()
        w.writerows({"epoch": 0, **r} for r in rows)
    if summary:
        steps = (len(val) - 1) * every
        best = min(range(len(val)), key=val.__getitem__)
        (d / "summary.json").write_text(json.dumps({
            "params": params, "tokens_per_step": tokens_per_step, "steps": steps, "tokens": steps * tokens_per_step,
            "tokens_per_param": steps * tokens_per_step / params, "train_s": 100.0, "val_before_loss": val[0],
            "final_train_loss": val[-1] - 0.02, "final_val_loss": val[-1], "final_val_ppl": math.exp(val[-1]),
            "best_val_loss": val[best], "best_val_ppl": math.exp(val[best]), "best_val_step": max(best * every - 1, 0),
            "model": model}))
    return d


@pytest.fixture
def sweep(tmp_path):
    """Two jobs of a sweep: the study's 30M model on OpenWebText, and a small model on Shakespeare."""
    root = tmp_path / "multirun" / "2026-11-27_21-00-00"
    fake_run(root / "0", M30, "openwebtext", 4_194_304, 29_938_560, 32_768, [10.9, 4.1, 3.6, 3.45, 3.4213])
    fake_run(root / "1", TINY, "shakespeare", 65_536, 3_322_880, 4_096, [10.8, 6.2, 5.5, 5.61], every=100)
    return root


def test_report_table_published_and_plot(sweep, tmp_path, capsys):
    out = tmp_path / "rep"
    assert run_entry(REPORT, [str(sweep), f"out={out}", "log_x=true"]) == 0
    printed = capsys.readouterr().out
    md = (out / "report.md").read_text()
    measured, published = md.split("## Published (not measured by gptlab)")
    measured, fits = measured.split("## Fits")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in measured.splitlines() if line.startswith("| ") and not line.startswith("| run")}
    # job 0: 4 evals x 1000 steps x 32768 tokens = 131.07M tokens, 4.38 tokens per parameter
    assert rows["0"] == ["29.94M", "512", "131.07M", "4.38", f"{math.exp(3.4213):.2f}", "3.4213",
                         "3.4213 (step 3999)"]
    # job 1 is on other val tokens (shakespeare): flagged; its best is not its final
    assert rows["1 †"] == ["3.32M", "64", "1.23M", "0.37", f"{math.exp(5.61):.2f}", "5.6100", "5.5000 (step 199)"]
    assert "† marks rows scored on other tokens" in measured and "openwebtext" in measured
    for line in printed.splitlines()[:4]:  # the table is printed as written
        assert line in md
    # published figures only in their own labelled section, with sources
    assert "gpt2-xl" not in measured and "123.65M" not in measured
    assert "| gpt2 | 123.65M | 1024 | 3.11 | 3.12 |" in published
    assert "1.56B" in published and "35.13" in published and "0.3256" in published
    assert "karpathy/nanoGPT" in published and "Unsupervised Multitask Learners" in published
    assert "lm-evaluation-harness" in published
    png = out / "val_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    import matplotlib.image
    h, w, _ = matplotlib.image.imread(png).shape
    assert h > 300 and w > 500


def test_published_params_counted_as_nanogpt():
    def count(L, C, V=50257):  # tied wte, no wpe, biases everywhere
        return V * C + L * (12 * C * C + 13 * C) + 2 * C
    sizes = [(12, 768), (24, 1024), (36, 1280), (48, 1600)]
    assert [r[1] for r in PUBLISHED["openwebtext"]["rows"]] == [count(L, C) for L, C in sizes]


def test_run_without_summary_uses_metrics(tmp_path):
    """A run still training: numbers from metrics.csv, parameters counted from its config as nanoGPT does."""
    d = fake_run(tmp_path / "2026-11-27" / "21-00-00", M30, "openwebtext", 4_194_304, 0, 32_768,
                 [10.9, 4.0, 4.2], summary=False)
    (run,) = collect_runs([d])
    assert run["name"] == "2026-11-27/21-00-00"
    assert run["params"] == 29_938_560 and run["tokens"] == 2000 * 32_768
    assert run["final_val_loss"] == 4.2 and run["best_val_loss"] == 4.0 and run["best_val_step"] == 999
    assert run["curve"][0] == (0.0, 10.9)


def test_no_runs_errors(tmp_path, capsys):
    empty = tmp_path / "empty_sweep"
    (empty / "0").mkdir(parents=True)
    with pytest.raises(ReportError, match="empty_sweep: no runs found"):
        write_report([empty])
    with pytest.raises(ReportError, match="missing: no such file"):
        collect_runs([tmp_path / "missing"])
    # the CLI: a one-line error naming the path, no traceback, nothing written
    assert run_entry(REPORT, [str(empty)]) == 2
    assert f"error: {empty}: no runs found" in capsys.readouterr().err and not (empty / "report").exists()


def test_compare_live_on_the_runs_val_tokens(tmp_path, tiny_data):
    """--compare scores a model on the first val_tokens of the run's dataset at its context: check it by hand."""
    from gptlab.config import GPTConfig
    from gptlab.data.shards import open_split
    from gptlab.model.gpt import GPT
    torch.manual_seed(0)
    cfg = GPTConfig(**{**TINY, "n_layer": 1, "n_embd": 32, "block_size": 32})
    model = GPT(cfg).eval()
    sd = {"model." + k: v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": {"model": asdict(cfg)}, "state_dict": sd}, tmp_path / "m.ckpt")
    run = fake_run(tmp_path / "run", asdict(cfg), "tiny", 256, 100_000, 1024, [10.9, 9.0],
                   data_dir=str(tiny_data))
    res = write_report([run], tmp_path / "rep", compare=[str(tmp_path / "m.ckpt")], device="cpu")
    live = res["runs"][-1]
    assert live["kind"] == "measured live" and live["ctx"] == 32
    toks = torch.from_numpy(np.asarray(open_split(tiny_data / "tiny", "val")[0][:257], dtype=np.int64))
    x, y = toks[:-1].view(8, 32), toks[1:].view(8, 32)  # the runs' val windows: 256 targets in windows of 32
    with torch.no_grad():
        _, loss = model(x, y)
    assert live["final_val_loss"] == pytest.approx(loss.item(), rel=1e-4)
    md = (tmp_path / "rep" / "report.md").read_text().split("## Published")[0]
    assert "m.ckpt (measured live)" in md and f"{live['final_val_loss']:.4f}" in md


def test_key_value_arguments_as_other_gptlab_commands(sweep, tmp_path):
    out = tmp_path / "kv"
    assert run_entry(REPORT, [str(sweep), f"out={out}", "log_x=true"]) == 0
    assert (out / "report.md").exists() and (out / "val_curves.png").exists()
