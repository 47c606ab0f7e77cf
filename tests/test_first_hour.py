"""A new user's first hour: a short run ends validated, one text file is enough, refusals leave nothing behind.

    .venv/bin/python -m pytest tests/test_first_hour.py -q -m "not slow"

The slow tests train through `python -m gptlab.train` as a user types it; the others call the library.
"""
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from helpers import ROOT, run_train

from gptlab.data import sources
from gptlab.data.sources import SourceError

PARAGRAPHS = "\n\n".join(f"Paragraph {i}: the quick brown fox jumps over the lazy dog." for i in range(40))


def test_one_text_file_is_split_inside_by_paragraphs_keeping_every_character(tmp_path):
    (tmp_path / "input.txt").write_text(PARAGRAPHS)
    splits = sources.text(paths=str(tmp_path / "input.txt"), val_fraction=0.1)
    (train,), (val,) = list(splits["train"]), list(splits["val"])
    assert train + val == PARAGRAPHS  # nothing lost, nothing added, nothing reordered
    assert val.startswith("Paragraph 36:") and train.endswith("Paragraph 35: the quick brown fox jumps over the lazy "
                                                               "dog.\n\n")
    assert splits["val"].how == f"{tmp_path / 'input.txt'} is one document, split by paragraphs: the first 36 train, " \
                                f"the last 4 val ({len(val) / len(PARAGRAPHS):.1%} of its characters)"


def test_one_file_with_too_few_paragraphs_is_split_by_lines(tmp_path):
    text = "\n".join(f"line {i}" for i in range(20)) + "\n\nlast paragraph"  # 2 paragraphs: 10% of them is none
    (tmp_path / "a.txt").write_text(text)
    splits = sources.text(paths=str(tmp_path / "a.txt"), val_fraction=0.1)
    (val,) = list(splits["val"])
    assert "split by lines: the first 19 train, the last 2 val" in splits["val"].how  # 21 lines, blank ones not counted
    assert val == "line 19\n\nlast paragraph" and list(splits["train"])[0] + val == text


@pytest.mark.parametrize("content,message", [
    (b"", "is empty (0 bytes): give it text, or leave it out"),
    (b"  \n\n\t\n", "is empty (only whitespace): there is no text to prepare"),
    (b"one line, no more", "is a single line: it cannot be split into train and val")])
def test_an_empty_or_unsplittable_file_is_named_as_such(tmp_path, content, message):
    (tmp_path / "notes.txt").write_bytes(content)
    with pytest.raises(SourceError, match="^" + re.escape(f"{tmp_path / 'notes.txt'} {message}")):
        sources.text(paths=str(tmp_path / "notes.txt"))


def test_an_unreadable_file_is_named_as_such(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.txt").write_text("y")

    def denied(self, *a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(Path, "read_text", denied)  # root reads any file: the OS error is simulated
    with pytest.raises(SourceError, match=r"[ab]\.txt: cannot be read \(Permission denied\); check its permissions"):
        list(sources.text(paths=[str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], val_fraction=0.5)["train"])


def test_prepare_says_how_it_split_one_file_and_records_it(tmp_path, capsys, gpt2):
    from gptlab.data.pipeline import prepare
    (tmp_path / "input.txt").write_text(PARAGRAPHS)
    manifest = prepare({"name": "mine", "source": "text", "shard_tokens": 10_000,
                        "source_args": {"paths": [str(tmp_path / "input.txt")], "val_fraction": 0.1}}, tmp_path,
                       workers=1)
    how = manifest["split"]
    assert how.startswith(f"{tmp_path / 'input.txt'} is one document, split by paragraphs: the first 36 train")
    assert capsys.readouterr().out.strip().splitlines()[-1] == how
    assert manifest["splits"]["train"]["docs"] == manifest["splits"]["val"]["docs"] == 1


def test_warnings_print_as_one_line():
    from gptlab import cli
    cli.one_line_warnings()
    assert warnings.formatwarning("val holds 4 tokens:\n  each validation", UserWarning, "datamodule.py", 98) == \
        "warning: val holds 4 tokens: each validation\n"


def test_gitignore_covers_what_the_commands_write_into_the_current_folder():
    for path in ("generations/generations.md", "runs/x/summary.json", "data/x/manifest.json", "exports/x/config.json",
                 "report/report.md"):
        p = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert p.returncode == 0, f"{path} is not ignored"


def test_a_local_hugging_face_folder_is_a_model_without_hf(tmp_path):
    from gptlab import GPT, GPTConfig
    from gptlab.model.convert import to_hf
    from gptlab.model.load import load_model
    from gptlab.model.spec import check_spec
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=50304))
    to_hf(model, tmp_path / "tiny", tokenizer=False)
    assert check_spec(str(tmp_path / "tiny")) is None
    loaded, info = load_model(str(tmp_path / "tiny"))
    assert info["source"] == "hf" and loaded.config.n_embd == 16


def test_init_from_the_hub_offline_is_refused_at_once(tmp_path):
    from test_cli import entry, one_line
    code, torch, err = entry("train", "init=hf:gpt2", env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                                                          "GPTLAB_RUNS": str(tmp_path / "runs")})
    assert code == 2 and not torch
    assert one_line(err) == "error: hf:gpt2 is not in the local cache and HF_HUB_OFFLINE=1 is set; download its " \
                            "weights once where the hub is reachable (`hf download openai-community/gpt2`) and copy " \
                            "the cache here (HF_HOME), or pass a local Hugging Face folder"
    assert not (tmp_path / "runs").exists()


def test_a_refused_resume_writes_nothing_anywhere(tmp_path):
    from test_cli import entry, one_line
    before = set(tmp_path.rglob("*"))
    code, _, err = entry("train", "resume=runs/nope", cwd=tmp_path, env={"GPTLAB_RUNS": str(tmp_path / "runs")})
    assert code == 2 and one_line(err) == "error: resume=runs/nope: no such run folder or .ckpt file"
    assert set(tmp_path.rglob("*")) == before  # no train.log, no run folder


@pytest.mark.slow
def test_a_short_run_ends_validated_and_eval_reproduces_its_summary(tiny_data, tmp_path):
    """max_steps=7 with eval every 5: the run validates at 7 too; summary, best.ckpt and eval all describe it; the
    sample starts from the val split; a resume of runs/last names the run's own presets, shows no Lightning warning
    and continues in the run's own folder."""
    from gptlab.data import shards
    from gptlab.data.tokenizer import get_tokenizer
    run = tmp_path / "short"
    p = run_train(["model=30m", "trainer.max_steps=7", f"hydra.run.dir={run}"], tiny_data, tmp_path)
    s = json.loads((run / "summary.json").read_text())
    assert (s["finished"], s["steps"], s["final_val_step"], s["best_val_step"]) == (True, 7, 7, 7)
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert f"val after training (step 7): loss {s['final_val_loss']:.4f}" in p.stdout
    val = shards.first_tokens(map(shards.open_shard, [m.filename for m in shards.open_split(tiny_data / "tiny",
                                                                                            "val")]), 8)
    assert f"sample:\n{get_tokenizer().decode(val.tolist())}" in p.stdout
    e = subprocess.run([sys.executable, "-m", "gptlab.eval", f"model={run}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "GPTLAB_DATA": str(tiny_data)})
    diff = float(e.stdout.split("difference ")[1].split()[0])
    assert e.returncode == 0 and abs(diff) < 1e-5, e.stdout + e.stderr
    assert (tmp_path / "last").resolve() == run.resolve()  # runs/last names the latest run
    p = run_train([f"resume={tmp_path / 'last'}", "trainer.max_steps=9"], tiny_data, tmp_path, extra=False)
    assert "recipe: shakespeare_tiny's recipe (tuned on data=shakespeare) on data=text data.name=tiny, model=30m " \
        "(the recipe was tuned for model=tiny" in p.stdout
    assert "exists and is not empty" not in p.stdout + p.stderr
    assert json.loads((run / "summary.json").read_text())["final_val_step"] == 9
