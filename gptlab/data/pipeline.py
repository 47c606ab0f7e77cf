"""The prepare pipeline: a document source tokenized into uint16 shards + manifest.json under <data_dir>/<name>.

    python -m gptlab.prepare data=shakespeare                 # ~1.6M tokens, seconds (fetches the texts once)
    python -m gptlab.prepare data=openwebtext workers=16      # ~9B tokens, as nanoGPT's prepare.py
    python -m gptlab.prepare data=text data.name=notes data.source_args.paths=[notes/]
    GPTLAB_DATA=/big/disk python -m gptlab.prepare data=shakespeare force=true

Pipeline: source -> documents -> tiktoken encode_ordinary on `workers` threads (Rust, GIL released) -> EOT after each
document -> cut into shards of data.shard_tokens -> manifest.json, written last. Segmented documents (the chat
source) are tokenized segment by segment, and a loss mask ({split}_000000.mask.bin) is cut alongside. A rerun whose
manifest
verifies and whose settings are unchanged does nothing; an interrupted run leaves no manifest, so no reader
trusts its shards, and the next run starts over.
"""
from __future__ import annotations

import json
import os
import re
import time
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gptlab.data.shards import (
    DTYPE,
    MANIFEST,
    VERSION,
    ShardError,
    mark_verified,
    verify,
    write_manifest,
    write_mask,
    write_shard,
)
from gptlab.data.sources import SourceError, doc_text, fingerprint, open_source, source_arguments
from gptlab.data.tokenizer import EOT, N_VOCAB, NAME, get_tokenizer

IN_FLIGHT_CHARS = 8_000_000  # text queued for the encoder threads: keeps them busy, bounds memory (~30 MB)
SHARD_RE = re.compile(r"^[a-z]+_\d{6}(\.mask)?\.bin$")


def encode_doc(enc, doc) -> tuple[np.ndarray, np.ndarray | None]:
    """Token ids of one document followed by EOT, and its loss mask if it is (text, is_target) segments.
    array('I') converts a list of ints ~5x faster than np.array."""
    if isinstance(doc, str):
        ids = array("I", enc.encode_ordinary(doc))
        ids.append(EOT)
        return np.frombuffer(ids, dtype=np.uintc), None
    ids, mask = array("I"), bytearray()
    for text, target in doc:  # segment by segment: a target's tokens never merge with its neighbours'
        seg = enc.encode_ordinary(text)
        ids.extend(seg)
        mask += bytes([target]) * len(seg)
    ids.append(EOT)
    mask.append(bool(doc and doc[-1][1]))  # EOT after an assistant turn is a target: the model learns to stop
    return np.frombuffer(ids, dtype=np.uintc), np.frombuffer(mask, dtype=np.uint8)


def encode_docs(enc, items: Iterable[tuple[str, object]], workers: int) -> Iterator[tuple[str, object, tuple]]:
    """(split, doc, (tokens, mask)) for (split, doc) items, in order, encoded on `workers` threads (mask: None
    for a plain-text document).

    This is tiktoken's encode_ordinary_batch (a thread pool over encode_ordinary, whose Rust core releases the
    GIL) with one pool for the whole stream, all splits, instead of one per batch: no thread idles at a batch's
    end waiting for its longest document, and the main thread writes shards while the pool encodes.
    """
    pool, pending, chars = ThreadPoolExecutor(workers), deque(), 0
    try:
        for split, doc in items:
            pending.append((split, doc, pool.submit(encode_doc, enc, doc)))
            chars += len(doc_text(doc))
            while chars > IN_FLIGHT_CHARS:
                split_, doc_, fut = pending.popleft()
                chars -= len(doc_text(doc_))
                yield split_, doc_, fut.result()
        while pending:
            split_, doc_, fut = pending.popleft()
            yield split_, doc_, fut.result()
    finally:  # on an error or Ctrl-C, drop the queued documents instead of encoding them first
        pool.shutdown(cancel_futures=True)


class ShardWriter:
    """Cuts one split's token stream into {split}_000000.bin, ... of shard_tokens tokens each (the last: fewer),
    and, if `masked`, its loss mask into {split}_000000.mask.bin, ... of the same lengths."""

    def __init__(self, out: Path, split: str, shard_tokens: int, masked: bool = False):
        self.out, self.split = out, split
        self.buf, self.fill = np.empty(shard_tokens, dtype=np.uint16), 0  # paged in by the OS as it fills
        self.mbuf = np.empty(shard_tokens, dtype=np.uint8) if masked else None
        self.shards, self.docs, self.tokens, self.targets = [], 0, 0, 0

    def add(self, toks: np.ndarray, mask: np.ndarray | None = None) -> None:
        if (mask is None) != (self.mbuf is None):
            raise SourceError(f"{self.split}: a source must give loss masks for all of a split's documents or none")
        pos = 0
        while pos < len(toks):  # documents run across shard boundaries; the EOTs mark them
            n = min(len(self.buf) - self.fill, len(toks) - pos)
            self.buf[self.fill:self.fill + n] = toks[pos:pos + n]
            if mask is not None:
                self.mbuf[self.fill:self.fill + n] = mask[pos:pos + n]
            self.fill, pos = self.fill + n, pos + n
            if self.fill == len(self.buf):
                self._flush()
        self.docs, self.tokens = self.docs + 1, self.tokens + len(toks)
        self.targets += int(mask.sum()) if mask is not None else 0

    def _flush(self) -> None:
        stem = f"{self.split}_{len(self.shards):06d}"
        entry = write_shard(self.out / f"{stem}.bin", self.buf[:self.fill], NAME, N_VOCAB)
        if self.mbuf is not None:
            entry["mask"] = write_mask(self.out / f"{stem}.mask.bin", self.mbuf[:self.fill])
        self.shards.append(entry)
        self.fill = 0

    def close(self) -> dict:
        if self.fill:
            self._flush()
        info = {"docs": self.docs, "tokens": self.tokens, "shards": self.shards}
        return {**info, "target_tokens": self.targets} if self.mbuf is not None else info


def tokenize(splits: dict, out: Path, enc, workers: int, shard_tokens: int) -> dict:
    """Encode every split's documents into shards; returns {split: {docs, tokens, shards}}."""
    writers = {split: ShardWriter(out, split, shard_tokens, docs.masked) for split, docs in splits.items()}
    counts = [docs.count for docs in splits.values()]
    items = ((split, doc) for split, docs in splits.items() for doc in docs)
    n_bytes, t0, last = 0, time.perf_counter(), 0.0
    with tqdm(total=None if None in counts else sum(counts), desc=out.name, unit="doc", dynamic_ncols=True) as bar:
        for split, doc, (toks, mask) in encode_docs(enc, items, workers):
            writers[split].add(toks, mask)
            n_bytes += len(doc_text(doc).encode("utf-8", "replace"))
            bar.update()
            if (now := time.perf_counter()) - last > 0.5 or bar.n == bar.total:  # a postfix redraws: not every doc
                toks_done = sum(w.tokens for w in writers.values())
                bar.set_postfix_str(f"{split}, {toks_done / 1e6:.2f}M tok, {n_bytes / 1e6 / (now - t0):.1f} MB/s")
                last = now
    return {split: w.close() for split, w in writers.items()}


def _settings(data_cfg: Mapping) -> dict:
    """Everything that decides the bytes on disk; a manifest with other settings is stale."""
    for key in ("name", "source", "shard_tokens"):
        if data_cfg.get(key) in (None, ""):
            raise SourceError(f"data.{key} is not set (see conf/data/*.yaml)")
    if int(data_cfg["shard_tokens"]) < 1:
        raise SourceError(f"data.shard_tokens must be >= 1, got {data_cfg['shard_tokens']}")
    args = json.loads(json.dumps(source_arguments(data_cfg["source"], data_cfg.get("source_args") or {}),
                                 default=str))  # Paths etc. -> JSON; defaults written out, so they compare equal
    return {"format_version": VERSION, "tokenizer": NAME, "vocab_size": N_VOCAB, "dtype": DTYPE,
            "source": data_cfg["source"], "source_args": args, "inputs": fingerprint(data_cfg["source"], args),
            "shard_tokens": int(data_cfg["shard_tokens"])}


def _up_to_date(out: Path, settings: dict) -> dict | None:
    """The existing manifest if it verifies and matches settings, else None (saying why)."""
    if not (out / MANIFEST).exists():
        return None
    try:
        manifest = verify(out)
    except ShardError as e:
        print(f"re-preparing {out}: {e}")
        return None
    changed = [k for k in settings if manifest.get(k) != settings[k]]
    if changed:
        print(f"re-preparing {out}: settings changed ({', '.join(changed)})")
        return None
    return manifest


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Shards of an earlier, larger run and temp files of a killed one."""
    for f in out.iterdir():
        if (SHARD_RE.match(f.name) and f.name not in keep) or (f.name.startswith(".") and f.name.endswith(".tmp")):
            f.unlink(missing_ok=True)


def prepare(data_cfg: Mapping, data_dir, workers: int | None = None, force: bool = False) -> dict:
    """Prepare data_cfg (a conf/data/*.yaml as a dict) into data_dir/<name>; returns the manifest."""
    out = Path(data_dir) / data_cfg["name"]
    settings = _settings(data_cfg)
    if not force and (manifest := _up_to_date(out, settings)):
        sizes = ", ".join(f"{k} {v['tokens']:,}" for k, v in manifest["splits"].items())
        print(f"{out} is already prepared ({sizes} tokens); force=true to redo")
        return manifest
    workers = int(workers or os.cpu_count() or 1)
    enc = get_tokenizer()
    splits = open_source(data_cfg["source"], settings["source_args"])
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # from here until the new manifest the folder is incomplete
    _remove_stale(out, keep=set())
    t0 = time.perf_counter()
    results = tokenize(splits, out, enc, workers, settings["shard_tokens"])
    seconds = time.perf_counter() - t0
    if not results.get("train", {}).get("tokens"):
        raise SourceError(f"source {data_cfg['source']!r} produced no train documents")
    total = sum(r["tokens"] for r in results.values())
    how = next((d.how for d in splits.values() if d.how), None)  # a split made inside documents says how
    manifest = {**settings, "name": data_cfg["name"], "eot_token": EOT, "splits": results, "total_tokens": total,
                **({"split": how} if how else {}),
                "prepared_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "seconds": round(seconds, 3), "workers": workers}
    write_manifest(out, manifest)
    _remove_stale(out, keep={f for r in results.values() for s in r["shards"]
                             for f in (s["file"], s.get("mask", {}).get("file"))})
    mark_verified(out, manifest)  # hashes were taken while writing: the first training run need not rehash
    parts = ", ".join(f"{k} {r['tokens']:,} tokens ({r['docs']:,} docs, shards: {len(r['shards'])})"
                      for k, r in results.items())
    print(f"{out}: {parts}; {total / seconds:,.0f} tokens/s with {workers} threads" + (f"\n{how}" if how else ""))
    return manifest
