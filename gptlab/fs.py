"""The one way gptlab writes files: whole or not at all (temp file beside the target, fsync, rename, fsync the folder).

    python -c "from gptlab.fs import atomic_write_text; atomic_write_text('out/hello.txt', 'hi')"
    python -c "from gptlab.fs import sha256_file; print(sha256_file('pyproject.toml'))"

Shards, checkpoints, the HF export, summaries, reports and cached assets all go through here, so a kill or a full
disk never leaves a half-written file at a path that a later run would trust.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def sha256_bytes(*chunks) -> str:
    """sha256 of the chunks (bytes-like) as one stream."""
    h = hashlib.sha256()
    for data in chunks:
        h.update(data)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh hidden name beside `path`: same filesystem, so os.replace onto `path` is atomic."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temp file beside `path` for writing; on a clean exit fsync it and rename it over `path`.
    On any error the temp file is removed and `path` keeps what it held."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, *chunks) -> None:
    """Write the chunks (bytes-like) to `path` atomically."""
    with atomic_file(path) as f:
        for data in chunks:
            f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_symlink(link: str | os.PathLike, target: str | os.PathLike) -> None:
    """`link` -> `target` (relative to the link's folder), replacing an older link in one rename."""
    link = Path(link)
    tmp = temp_path(link)
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """`obj` as indented JSON (non-JSON values as str), atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


@contextmanager
def atomic_dir(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """A temp folder beside `path` to fill; on a clean exit its files are fsynced and it is renamed to `path`.
    With `replace`, an existing `path` is swapped out and removed only once the new folder is in place; without it,
    a folder that appeared meanwhile (a concurrent writer) wins and the temp folder is dropped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
        if replace and path.exists():
            old = temp_path(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            try:
                os.replace(tmp, path)
            except OSError:
                if not path.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # a concurrent writer renamed its copy first: use that
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)
