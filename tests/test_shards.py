"""The shard format and its manifest: round trips, and every kind of damage refused with the file's name.

    .venv/bin/python -m pytest tests/test_shards.py -q
"""
import os

import numpy as np
import pytest

from gptlab.data import shards
from gptlab.data.shards import (
    HEADER_BYTES,
    ShardError,
    load_manifest,
    open_shard,
    open_split,
    read_header,
    verify,
    write_manifest,
    write_shard,
)
from gptlab.fs import sha256_file


def make_dataset(root, splits={"train": [1000, 1000, 10], "val": [300]}, tokenizer="gpt2", vocab=50257, seed=0):
    """A dataset folder as prepare writes it; returns (folder, {split: concatenated tokens}).
    The manifest always claims gpt2/50257; `tokenizer` and `vocab` go into the shard headers only."""
    rng, d = np.random.default_rng(seed), root / "tiny"
    d.mkdir()
    manifest = {"format_version": 1, "tokenizer": "gpt2", "vocab_size": 50257, "dtype": "uint16", "splits": {}}
    tokens = {}
    for split, sizes in splits.items():
        parts = [rng.integers(0, vocab, n, dtype=np.uint16) for n in sizes]
        entries = [write_shard(d / f"{split}_{i:06d}.bin", p, tokenizer, vocab) for i, p in enumerate(parts)]
        manifest["splits"][split] = {"tokens": sum(sizes), "shards": entries}
        tokens[split] = np.concatenate(parts)
    write_manifest(d, manifest)
    return d, tokens


def age(path, seconds=60):
    """Backdate a file's mtime, as if it was written a while ago."""
    t = os.stat(path).st_mtime_ns - seconds * 10**9
    os.utime(path, ns=(t, t))


def test_round_trip(tmp_path):
    tokens = np.random.default_rng(1).integers(0, 50257, 12345).astype(np.int64)
    entry = write_shard(tmp_path / "a.bin", tokens)
    assert entry == {"file": "a.bin", "tokens": 12345, "sha256": sha256_file(tmp_path / "a.bin")}
    head = read_header(tmp_path / "a.bin")
    assert (head["tokens"], head["dtype"], head["tokenizer"], head["vocab_size"]) == (12345, "uint16", "gpt2", 50257)
    back = open_shard(tmp_path / "a.bin")
    assert back.dtype == np.uint16 and np.array_equal(back, tokens)
    assert os.path.getsize(tmp_path / "a.bin") == HEADER_BYTES + 2 * 12345
    assert sorted(os.listdir(tmp_path)) == ["a.bin"]  # no temp file left behind


def test_rejects_out_of_vocab(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        write_shard(tmp_path / "a.bin", np.array([1, 50257]))
    with pytest.raises(ValueError, match="outside"):
        write_shard(tmp_path / "a.bin", np.array([-1, 2]))
    assert not os.listdir(tmp_path)


def test_bad_magic_names_file(tmp_path):
    write_shard(tmp_path / "a.bin", np.arange(10))
    with open(tmp_path / "a.bin", "r+b") as f:
        f.write(b"NOTASHRD")
    with pytest.raises(ShardError, match=r"a\.bin.*bad magic"):
        open_shard(tmp_path / "a.bin")


def test_size_disagreeing_with_header_names_file(tmp_path):
    write_shard(tmp_path / "a.bin", np.arange(10))
    with open(tmp_path / "a.bin", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(ShardError, match=r"a\.bin.*10 tokens"):
        open_shard(tmp_path / "a.bin")
    os.truncate(tmp_path / "a.bin", HEADER_BYTES + 7)
    with pytest.raises(ShardError, match=r"a\.bin.*truncated"):
        open_shard(tmp_path / "a.bin")


def test_open_split_reads_back(tmp_path):
    d, tokens = make_dataset(tmp_path)
    for split in ("train", "val"):
        parts = open_split(d, split)
        assert all(isinstance(p, np.memmap) for p in parts)
        assert np.array_equal(np.concatenate(parts), tokens[split])
    assert load_manifest(d)["splits"]["train"]["tokens"] == 2010


def test_hash_mismatch_names_file(tmp_path):
    d, _ = make_dataset(tmp_path)
    victim = d / "train_000001.bin"
    with open(victim, "r+b") as f:  # same size, one token changed
        f.seek(HEADER_BYTES + 2 * 17)
        old = f.read(2)
        f.seek(HEADER_BYTES + 2 * 17)
        f.write(bytes([old[0] ^ 1, old[1]]))
    with pytest.raises(ShardError, match=r"train_000001\.bin: sha256 .* does not match"):
        open_split(d, "train")


def test_verification_is_cached_but_changes_are_seen(tmp_path, monkeypatch):
    d, _ = make_dataset(tmp_path)
    for f in d.glob("*.bin"):
        age(f)
    calls = []
    monkeypatch.setattr(shards, "sha256_file", lambda p: calls.append(p) or sha256_file(p))
    verify(d)
    assert len(calls) == 4  # every shard hashed once ...
    verify(d)
    open_split(d, "train")
    assert len(calls) == 4  # ... and not again while (size, mtime) are unchanged
    victim = d / "val_000000.bin"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"val_000000\.bin: sha256"):
        verify(d)


def test_fresh_files_are_always_hashed(tmp_path, monkeypatch):
    """A file modified within the mtime tick of its check must not pass on a cached verification."""
    d, _ = make_dataset(tmp_path, splits={"train": [50]})
    verify(d)
    victim = d / "train_000000.bin"
    before = victim.stat()
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))  # as if written in the same mtime tick
    with pytest.raises(ShardError, match=r"train_000000\.bin: sha256"):
        verify(d)


def test_tokenizer_or_vocab_mismatch(tmp_path):
    d, _ = make_dataset(tmp_path)
    with pytest.raises(ShardError, match=r"manifest\.json: prepared with tokenizer 'gpt2' \(vocab 50257\)"):
        open_split(d, "train", vocab_size=50304)
    with pytest.raises(ShardError, match="but 'cl100k_base' .* is expected"):
        open_split(d, "train", tokenizer="cl100k_base")


def test_shard_header_disagreeing_with_manifest(tmp_path):
    d, _ = make_dataset(tmp_path, splits={"train": [100], "val": [100]}, tokenizer="other", vocab=50000)
    with pytest.raises(ShardError, match=r"train_000000\.bin: tokenizer 'other' \(vocab 50000\)"):
        open_split(d, "train")


def test_missing_dataset_names_prepare_command(tmp_path):
    with pytest.raises(ShardError, match=r"python -m gptlab\.prepare data.name=owt force=true"):
        open_split(tmp_path / "owt", "train")
    (tmp_path / "owt").mkdir()
    with pytest.raises(ShardError, match=r"manifest\.json is missing.*gptlab\.prepare data.name=owt force=true"):
        open_split(tmp_path / "owt", "train")


def test_missing_shard_and_unknown_split(tmp_path):
    d, _ = make_dataset(tmp_path)
    with pytest.raises(ShardError, match="no split 'test'"):
        open_split(d, "test")
    (d / "val_000000.bin").unlink()
    with pytest.raises(ShardError, match=r"val_000000\.bin: shard file is missing"):
        open_split(d, "val")


def test_corrupt_manifest(tmp_path):
    d, _ = make_dataset(tmp_path)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(ShardError, match=r"manifest\.json: not valid JSON.*prepare data.name=tiny force=true"):
        open_split(d, "train")
