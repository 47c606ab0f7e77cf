"""Token shards on disk: a 256-byte header, then uint16 tokens; a manifest.json lists them with sha256s.

    python -c "from gptlab.data.shards import verify; print(verify('data/shakespeare')['splits'].keys())"  # verify
    python -c "from gptlab.data.shards import open_split; print(open_split('data/shakespeare', 'val')[0][:10])"

Header (little-endian): magic b"GPTLABTK", u32 format version, u32 header size, u64 token count,
16-byte dtype name, 32-byte tokenizer name, u32 vocab size, zero padding to 256 bytes.
A dataset folder holds {split}_{index:06d}.bin shards and manifest.json, written last, so a folder with a
manifest is complete. Sources with a loss mask (chat) add {split}_{index:06d}.mask.bin beside each shard: the same
header with dtype uint8 and tokenizer "loss-mask", one byte per token, 1 = a training target; the manifest lists
it as the shard entry's "mask" (file, tokens, sha256) and it is verified like the shard. Every file is written to a
temp name and renamed (gptlab/fs.py), so readers never see half a shard.
"""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np

from gptlab.errors import Failed, Refused
from gptlab.fs import atomic_write_bytes, sha256_bytes, sha256_file

MAGIC = b"GPTLABTK"
VERSION = 1
HEADER_BYTES = 256
DTYPE = "uint16"
MASK_DTYPE = "uint8"
MASK_NAME = "loss-mask"  # the tokenizer field of a mask file's header
ITEMSIZE = {DTYPE: 2, MASK_DTYPE: 1}
MANIFEST = "manifest.json"
VERIFIED = ".verified.json"  # sidecar: shards already hashed, keyed by (size, mtime_ns)
RACY_NS = 2_000_000_000  # mtimes are coarse (ticks of ms, 2 s on FAT): trust only older ones, as git does
_HEADER = struct.Struct("<8sIIQ16s32sI")


class ShardError(Failed, ValueError):
    """A dataset folder, manifest or shard is missing, corrupt, or not what the caller expects."""


class DatasetMissing(Refused, ShardError):
    """No prepared dataset where asked: refused before any work (exit 2), naming the prepare command."""


def check_dataset(data_dir, prepare_cmd: str) -> None:
    """DatasetMissing unless data_dir holds a manifest (its shards are verified when they are opened); the message
    gives `prepare_cmd` (gptlab.config.presets.prepare_command), the command that makes it."""
    if not (Path(data_dir) / MANIFEST).is_file():
        raise DatasetMissing(f"{data_dir} holds no prepared dataset; prepare it first: {prepare_cmd}")


def _prepare_hint(data_dir: Path) -> str:
    return (f"prepare it again: python -m gptlab.prepare data.name={Path(data_dir).name} force=true, with the data= "
            "settings that made it")


def pack_header(count: int, tokenizer: str, vocab_size: int, dtype: str = DTYPE) -> bytes:
    if not 0 < len(tokenizer.encode()) <= 32:
        raise ValueError(f"tokenizer name {tokenizer!r} must be 1 to 32 bytes")
    head = _HEADER.pack(MAGIC, VERSION, HEADER_BYTES, count, dtype.encode(), tokenizer.encode(), vocab_size)
    return head.ljust(HEADER_BYTES, b"\0")


def write_shard(path, tokens: np.ndarray, tokenizer: str = "gpt2", vocab_size: int = 50257,
                dtype: str = DTYPE) -> dict:
    """Write tokens atomically (temp file, fsync, rename). Returns the manifest entry {file, tokens, sha256}."""
    path = Path(path)
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.size == 0:
        raise ValueError(f"{path.name}: need a non-empty 1-D token array, got shape {tokens.shape}")
    if vocab_size > 2 ** (8 * ITEMSIZE[dtype]):
        raise ValueError(f"vocab_size {vocab_size} does not fit {dtype}")
    if tokens.dtype != np.dtype(dtype):
        if tokens.min() < 0 or tokens.max() >= vocab_size:  # check before the cast can wrap
            raise ValueError(f"{path.name}: token ids outside [0, {vocab_size})")
        tokens = tokens.astype(dtype)
    elif tokens.max() >= vocab_size:
        raise ValueError(f"{path.name}: token ids outside [0, {vocab_size})")
    header = pack_header(tokens.size, tokenizer, vocab_size, dtype)
    body = np.ascontiguousarray(tokens, dtype=np.dtype(dtype).newbyteorder("<")).data
    atomic_write_bytes(path, header, body)
    return {"file": path.name, "tokens": int(tokens.size), "sha256": sha256_bytes(header, body)}


def write_mask(path, mask: np.ndarray) -> dict:
    """Write a loss mask (0/1 per token) beside its shard, atomically; returns its manifest entry."""
    return write_shard(path, np.asarray(mask, dtype=np.uint8), MASK_NAME, 2, MASK_DTYPE)


def read_header(path, dtype: str = DTYPE) -> dict:
    """Parse and check a shard's header, and that the file is exactly header + itemsize bytes per token."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
        size = path.stat().st_size
    except FileNotFoundError:
        raise ShardError(f"{path}: shard file is missing") from None
    if len(raw) < HEADER_BYTES or raw[:8] != MAGIC:
        raise ShardError(f"{path}: not a gptlab token shard (bad magic {raw[:8]!r})")
    magic, version, hbytes, count, kind, tok, vocab = _HEADER.unpack_from(raw)
    head = {"version": version, "header_bytes": hbytes, "tokens": count, "dtype": kind.rstrip(b"\0").decode(),
            "tokenizer": tok.rstrip(b"\0").decode(), "vocab_size": vocab}
    if version != VERSION or hbytes != HEADER_BYTES:
        raise ShardError(f"{path}: shard format version {version} (header {hbytes} B); this gptlab reads "
                         f"version {VERSION} ({HEADER_BYTES} B). Re-prepare the dataset.")
    if head["dtype"] != dtype:
        raise ShardError(f"{path}: dtype {head['dtype']!r}, expected {dtype!r}")
    if size != HEADER_BYTES + ITEMSIZE[dtype] * count:
        raise ShardError(f"{path}: file is {size} bytes but its header says {count} tokens "
                         f"({HEADER_BYTES + ITEMSIZE[dtype] * count} bytes); truncated or corrupt, "
                         "re-prepare the dataset")
    return head


def open_shard(path, dtype: str = DTYPE) -> np.memmap:
    """Memory-map a shard's tokens (read-only) after checking its header and size."""
    return map_tokens(path, read_header(path, dtype)["tokens"], dtype)


def map_tokens(path, count: int, dtype: str = DTYPE) -> np.memmap:
    """Memory-map `count` tokens of a shard already checked by open_shard (no header read: per-batch use)."""
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_BYTES, shape=(count,))


def first_tokens(arrays, n: int) -> np.ndarray:
    """The first n elements of a split's shards (or masks) in order, as one int64 array (fewer if shorter)."""
    parts, have = [], 0
    for a in arrays:
        parts.append(np.asarray(a[:n - have], dtype=np.int64))
        have += len(parts[-1])
        if have >= n:
            break
    return np.concatenate(parts)


def open_mask(path) -> np.memmap:
    """Memory-map a loss mask file (uint8, 1 = target)."""
    return open_shard(path, MASK_DTYPE)


def _files(manifest: dict):
    """(entry, dtype) for every file the manifest lists: shards and their masks."""
    for info in manifest["splits"].values():
        for e in info["shards"]:
            yield e, DTYPE
            if "mask" in e:
                yield e["mask"], MASK_DTYPE


def write_manifest(data_dir, manifest: dict) -> None:
    atomic_write_bytes(Path(data_dir) / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


def load_manifest(data_dir) -> dict:
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    if not data_dir.is_dir():
        raise ShardError(f"dataset folder {data_dir} does not exist; {_prepare_hint(data_dir)}")
    if not path.exists():
        raise ShardError(f"{path} is missing (not prepared, or preparation was interrupted); "
                         f"{_prepare_hint(data_dir)}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardError(f"{path}: not valid JSON ({e}); {_prepare_hint(data_dir)}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise ShardError(f"{path}: no 'splits' table; {_prepare_hint(data_dir)}")
    if manifest.get("format_version") != VERSION:
        raise ShardError(f"{path}: format_version {manifest.get('format_version')}, expected {VERSION}; "
                         f"{_prepare_hint(data_dir)}")
    return manifest


def _load_verified(data_dir: Path) -> dict:
    try:
        return json.loads((data_dir / VERIFIED).read_text())
    except (OSError, ValueError):
        return {}


def _verified_key(path: Path, sha256: str) -> dict | None:
    """What a successful check of `path` is remembered by; None while its mtime is too fresh to vouch for it."""
    st = path.stat()
    if time.time_ns() - st.st_mtime_ns < RACY_NS:  # a write within the same mtime tick would go unnoticed
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def _save_verified(data_dir: Path, ok: dict) -> None:
    try:
        atomic_write_bytes(data_dir / VERIFIED, json.dumps(ok, indent=1).encode())
    except OSError:  # read-only dataset folder: verify again next time
        pass


def mark_verified(data_dir, manifest: dict) -> None:
    """Record shards just written (their sha256 computed while writing) as verified, so no one hashes them again."""
    data_dir = Path(data_dir)
    keys = {e["file"]: _verified_key(data_dir / e["file"], e["sha256"]) for e, _ in _files(manifest)}
    _save_verified(data_dir, {k: v for k, v in keys.items() if v})


def verify(data_dir) -> dict:
    """Check every shard in the manifest: header, size and sha256. Returns the manifest; raises ShardError.

    A shard whose (size, mtime_ns) and sha256 match an earlier successful check is not hashed again, so a big
    dataset is hashed once, not on every run.
    """
    data_dir = Path(data_dir)
    manifest = load_manifest(data_dir)
    seen, ok = _load_verified(data_dir), {}
    for entry, dtype in _files(manifest):
        path = data_dir / entry["file"]
        head = read_header(path, dtype)
        if head["tokens"] != entry["tokens"]:
            raise ShardError(f"{path}: header says {head['tokens']} tokens, manifest says {entry['tokens']}")
        key = _verified_key(path, entry["sha256"])
        if key is None or seen.get(entry["file"]) != key:
            if (got := sha256_file(path)) != entry["sha256"]:
                raise ShardError(f"{path}: sha256 {got} does not match the manifest ({entry['sha256']}); "
                                 f"the file changed or is corrupt, {_prepare_hint(data_dir)}")
        if key:
            ok[entry["file"]] = key
    if ok != seen:
        _save_verified(data_dir, ok)
    return manifest


def open_split(data_dir, split: str, tokenizer: str = "gpt2", vocab_size: int = 50257) -> list[np.memmap]:
    """Verified, memory-mapped shards of one split. vocab_size is the tokenizer's (50257), not the padded model's."""
    data_dir = Path(data_dir)
    manifest = load_manifest(data_dir)
    got = (manifest.get("tokenizer"), manifest.get("vocab_size"))
    if got != (tokenizer, vocab_size):
        raise ShardError(f"{data_dir / MANIFEST}: prepared with tokenizer {got[0]!r} (vocab {got[1]}), "
                         f"but {tokenizer!r} (vocab {vocab_size}) is expected; re-prepare the dataset "
                         "or fix the config")
    if split not in manifest["splits"]:
        raise ShardError(f"{data_dir}: no split {split!r}; it has {sorted(manifest['splits'])}")
    verify(data_dir)
    shards = []
    for entry in manifest["splits"][split]["shards"]:
        path = data_dir / entry["file"]
        head = read_header(path)
        if (head["tokenizer"], head["vocab_size"]) != (tokenizer, vocab_size):
            raise ShardError(f"{path}: tokenizer {head['tokenizer']!r} (vocab {head['vocab_size']}), "
                             f"expected {tokenizer!r} (vocab {vocab_size})")
        shards.append(open_shard(path))
    if not shards:
        raise ShardError(f"{data_dir}: split {split!r} has no tokens")
    return shards


def mask_files(data_dir, split: str) -> list[str] | None:
    """Paths of one split's loss masks, in shard order, after verifying the dataset; None if it has none."""
    data_dir = Path(data_dir)
    manifest = verify(data_dir)
    if split not in manifest["splits"]:
        raise ShardError(f"{data_dir}: no split {split!r}; it has {sorted(manifest['splits'])}")
    entries = manifest["splits"][split]["shards"]
    if not any("mask" in e for e in entries):
        return None
    if not all("mask" in e and e["mask"]["tokens"] == e["tokens"] for e in entries):
        raise ShardError(f"{data_dir / MANIFEST}: split {split!r} has loss masks for only some shards, or of the "
                         f"wrong length; {_prepare_hint(data_dir)}")
    return [str(data_dir / e["mask"]["file"]) for e in entries]
