"""prepare: sources -> shards + manifest. Token counts, document-level splits, reruns, interruptions, errors.

    .venv/bin/python -m pytest tests/test_prepare.py -q
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gptlab.data import sources
from gptlab.data.pipeline import prepare
from gptlab.data.shards import ShardError, load_manifest, open_split, verify
from gptlab.data.sources import SourceError

EOT = 50256
ROOT = Path(__file__).resolve().parents[1]
WORDS = "the of and to in is was he for it with as his on be at by I had not are but from or have an they".split()


def fake_doc(rng, i):
    """A distinct document: some prose, a unique tag, sometimes non-ASCII."""
    body = " ".join(rng.choice(WORDS, size=int(rng.integers(5, 120))))
    return f"Document {i}: {body}.\n\n{'Ünïcødé — ' if i % 5 == 0 else ''}end {i}\n"


def write_corpus(root, n_txt=14, n_jsonl=23):
    """n_txt .txt files (one nested) and a .jsonl with n_jsonl lines plus a blank one; returns all documents."""
    rng, docs = np.random.default_rng(0), []
    (root / "sub").mkdir(parents=True)
    for i in range(n_txt):
        docs.append(fake_doc(rng, i))
        (root / ("sub" if i == 3 else ".") / f"doc{i:02d}.txt").write_text(docs[-1], encoding="utf-8")
    lines = []
    for i in range(n_txt, n_txt + n_jsonl):
        docs.append(fake_doc(rng, i))
        lines.append(json.dumps({"id": i, "text": docs[-1]}))
    lines.insert(5, "")
    (root / "more.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "README.md").write_text("not a .txt: ignored inside folders")
    return docs


def split_docs(gpt2, data_dir, split):
    """The documents of a split, decoded back from its shards (EOT ends each one)."""
    tokens = np.concatenate(open_split(data_dir, split)).tolist()
    assert tokens[-1] == EOT
    docs, start = [], 0
    for i, t in enumerate(tokens):
        if t == EOT:
            docs.append(gpt2.decode(tokens[start:i]))
            start = i + 1
    return docs


def text_cfg(corpus, **args):
    return {"name": "corpus", "source": "text", "shard_tokens": 500,
            "source_args": {"paths": [str(corpus)], "val_fraction": 0.25, "seed": 7, **args}}


def test_text_source_counts_and_split(tmp_path, gpt2, capsys):
    docs = write_corpus(tmp_path / "corpus")
    m = prepare(text_cfg(tmp_path / "corpus"), tmp_path / "data", workers=2)
    out = tmp_path / "data" / "corpus"
    expected = sum(len(gpt2.encode_ordinary(d)) + 1 for d in docs)  # + 1: the EOT after each document
    assert m["total_tokens"] == expected == sum(s["tokens"] for s in m["splits"].values())
    assert m["splits"]["val"]["docs"] == round(len(docs) * 0.25) and m["splits"]["train"]["docs"] == len(docs) - 9
    train, val = split_docs(gpt2, out, "train"), split_docs(gpt2, out, "val")
    assert not set(train) & set(val)  # no document in both splits
    assert sorted(train + val) == sorted(docs)
    shards = m["splits"]["train"]["shards"]
    assert len(shards) > 1 and all(s["tokens"] == 500 for s in shards[:-1])  # full shards, then the rest
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        ["manifest.json"] + [s["file"] for r in m["splits"].values() for s in r["shards"]])
    assert "tokens/s" in capsys.readouterr().out


def test_rerun_skips_and_changed_settings_redo(tmp_path, capsys):
    write_corpus(tmp_path / "corpus")
    first = prepare(text_cfg(tmp_path / "corpus"), tmp_path / "data", workers=1)
    out = tmp_path / "data" / "corpus"
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.bin")}
    capsys.readouterr()
    again = prepare(text_cfg(tmp_path / "corpus"), tmp_path / "data", workers=1)
    assert "already prepared" in capsys.readouterr().out
    assert again == first and mtimes == {p.name: p.stat().st_mtime_ns for p in out.glob("*.bin")}
    other = prepare(text_cfg(tmp_path / "corpus", seed=8), tmp_path / "data", workers=1)
    assert "settings changed (source_args)" in capsys.readouterr().out
    assert other["source_args"]["seed"] == 8 and other["total_tokens"] == first["total_tokens"]


def test_damaged_shard_is_prepared_again(tmp_path, capsys):
    write_corpus(tmp_path / "corpus")
    prepare(text_cfg(tmp_path / "corpus"), tmp_path / "data", workers=1)
    victim = tmp_path / "data" / "corpus" / "val_000000.bin"
    victim.write_bytes(victim.read_bytes()[:-2])
    prepare(text_cfg(tmp_path / "corpus"), tmp_path / "data", workers=1)
    assert "re-preparing" in capsys.readouterr().out
    verify(tmp_path / "data" / "corpus")


def test_interrupted_run_leaves_nothing_to_read(tmp_path):
    """A source failing half way (here: a file that is not UTF-8) leaves no manifest, so readers refuse."""
    write_corpus(tmp_path / "corpus")
    prepare(text_cfg(tmp_path / "corpus"), tmp_path / "data", workers=1)
    (tmp_path / "corpus" / "zz_latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    with pytest.raises(SourceError, match=r"zz_latin1\.txt: not valid UTF-8"):
        prepare(text_cfg(tmp_path / "corpus"), tmp_path / "data", workers=1)  # a new file: not skipped
    with pytest.raises(ShardError, match=r"python -m gptlab\.prepare data.name=corpus force=true"):
        open_split(tmp_path / "data" / "corpus", "train")
    assert not list((tmp_path / "data" / "corpus").glob(".*.tmp"))


def test_text_source_errors(tmp_path):
    with pytest.raises(SourceError, match=r"nowhere\.txt: no such file or folder"):
        sources.text(paths=[str(tmp_path / "nowhere.txt")])
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe not utf-8")
    (tmp_path / "good.txt").write_text("fine")
    splits = sources.text(paths=[str(tmp_path / "bad.txt"), str(tmp_path / "good.txt")], val_fraction=0.5)
    with pytest.raises(SourceError, match=r"bad\.txt: not valid UTF-8 .* at byte 3"):
        list(splits["train"]) + list(splits["val"])
    (tmp_path / "rows.jsonl").write_text('{"text": "a", "body": "x"}\n\n{"body": "b"}\n')
    with pytest.raises(SourceError, match=r"rows\.jsonl:3: no string field 'text' \(found \['body'\]\)"):
        list(sources.text(paths=str(tmp_path / "rows.jsonl"), val_fraction=0)["train"])
    assert list(sources.text(paths=str(tmp_path / "rows.jsonl"), val_fraction=0, field="body")["train"]) == ["x", "b"]
    with pytest.raises(SourceError, match=r"good\.txt is a single line: it cannot be split into train and val"):
        sources.text(paths=str(tmp_path / "good.txt"))
    with pytest.raises(SourceError, match="source 'text': .*'bogus'; it takes paths, val_fraction"):
        sources.open_source("text", {"paths": "x", "bogus": 1})


def write_owt_standin(folder, n=400):
    """OpenWebText's schema (a `text` column) as local parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(1)
    docs = [fake_doc(rng, i) for i in range(n)]
    folder.mkdir()
    for k in range(2):
        part = docs[k * n // 2:(k + 1) * n // 2]
        table = pa.table({"text": part, "url": [f"u{i}" for i in range(len(part))]})
        pq.write_table(table, folder / f"{k:04d}.parquet")
    return docs


def test_openwebtext_split_matches_datasets(tmp_path, gpt2):
    from datasets import load_dataset
    write_owt_standin(tmp_path / "owt")
    args = {"path": "parquet", "revision": None, "data_files": str(tmp_path / "owt" / "*.parquet"),
            "test_size": 0.05, "cache_dir": str(tmp_path / "hf")}
    m = prepare({"name": "owt", "source": "openwebtext", "source_args": args, "shard_tokens": 100_000},
                tmp_path / "data", workers=2)
    ds = load_dataset("parquet", data_files=args["data_files"], split="train", cache_dir=str(tmp_path / "hf2"))
    want = ds.train_test_split(test_size=0.05, seed=2357, shuffle=True)  # nanoGPT's split, run independently
    out = tmp_path / "data" / "owt"
    assert split_docs(gpt2, out, "train") == want["train"]["text"]  # same documents, same order
    assert split_docs(gpt2, out, "val") == want["test"]["text"]
    assert (m["splits"]["train"]["docs"], m["splits"]["val"]["docs"]) == (380, 20)


def test_shakespeare_source():
    splits = sources.shakespeare()
    train, val = list(splits["train"]), list(splits["val"])
    assert (len(train), len(val)) == (38, 4) == (splits["train"].count, splits["val"].count)
    assert len(set(train + val)) == 42 and not set(train) & set(val)  # 42 distinct works, none in both
    assert not any("First Folio" in t[:2000] for t in train + val)
    assert list(sources.shakespeare()["val"]) == val  # the seed fixes the split
    assert list(sources.shakespeare(seed=1)["val"]) != val


def test_cli(tmp_path):
    """The Hydra entry point prepares and prints counts, leaves no outputs/ or .hydra/ behind; errors are one line."""
    write_corpus(tmp_path / "corpus")
    cmd = [sys.executable, "-m", "gptlab.prepare", "data=text", "data.name=mine", "workers=1",
           f"data.source_args.paths=[{tmp_path / 'corpus'}]", f"paths.data_dir={tmp_path / 'data'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "train" in run.stdout and "tokens/s" in run.stdout
    assert load_manifest(tmp_path / "data" / "mine")["source"] == "text"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "data"]
    cmd[-2] = f"data.source_args.paths=[{tmp_path / 'missing'}]"
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and "missing: no such file" in run.stderr
    assert "Traceback" not in run.stderr
