"""Prompt sets for comparing generations: the built-in set, a file (one prompt a line), or val documents' first
tokens with the text that followed them as the human reference.

    python -c "from gptlab.evaluation.prompts import BUILTIN; print(BUILTIN)"
    python -m gptlab.generations models=[runs/a,runs/b] prompts=val:data/shakespeare n_prompts=16   # val prompts
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gptlab.errors import Refused

BUILTIN = ("The future of AI is", "Once upon a time,", "The meaning of life is", "Scientists have discovered",
           "ROMEO:", "In the beginning", "The best way to learn a language is", "My favourite food is")


class PromptError(Refused, ValueError):
    """A prompt set that cannot be read: refused before any model is loaded (exit 2)."""


def read_prompts(spec: str, enc, n_prompts: int, prompt_tokens: int, reference_tokens: int) -> list[dict]:
    """[{text, ids, reference (text or None)}] for prompts=builtin | file:<path> | val:<prepared data folder>."""
    if spec == "builtin":
        texts = list(BUILTIN)
    elif spec.startswith("file:"):
        path = Path(spec[5:])
        if not path.is_file():
            raise PromptError(f"prompts={spec}: no such file; give one prompt a line")
        texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not texts:
            raise PromptError(f"prompts={spec}: the file holds no prompt (one a line)")
    elif spec.startswith("val:"):
        return val_prompts(Path(spec[4:]), enc, n_prompts, prompt_tokens, reference_tokens)
    else:
        raise PromptError(f"prompts={spec!r}: use builtin, file:<path> (one prompt a line) or val:<data folder>")
    return [{"text": t, "ids": enc.encode_ordinary(t), "reference": None} for t in texts[:n_prompts]]


def starts(tokens: np.ndarray, n: int, eot: int, newline_ids: set[int]) -> list[int]:
    """n evenly spread places a prompt may start: the val documents' first tokens (after each <|endoftext|>) when
    the split holds n documents or more, else line starts (after a token holding a newline), evenly spaced."""
    docs = [0] + [int(i) + 1 for i in np.flatnonzero(tokens == eot)[:-1]]
    if len(docs) >= n:
        return [docs[round(i * len(docs) / n)] for i in range(n)]
    lines = [int(i) + 1 for i in np.flatnonzero(np.isin(tokens, list(newline_ids)))]
    if len(lines) < n:
        return lines
    return [lines[round(i * len(lines) / n)] for i in range(n)]


def val_prompts(data_dir: Path, enc, n: int, prompt_tokens: int, reference_tokens: int) -> list[dict]:
    from gptlab.data.shards import ShardError, open_split
    from gptlab.data.tokenizer import EOT
    try:
        tokens = np.concatenate([np.asarray(s) for s in open_split(data_dir, "val")]).astype(np.int64)
    except (ShardError, OSError) as e:
        raise PromptError(f"prompts=val:{data_dir}: {e}") from None
    newline = {i for i in range(enc.n_vocab) if i != EOT and b"\n" in enc.decode_single_token_bytes(i)}
    out = []
    for s in starts(tokens, n, EOT, newline):
        ids = tokens[s:s + prompt_tokens + reference_tokens].tolist()
        ids = ids[:ids.index(EOT)] if EOT in ids else ids
        if len(ids) <= prompt_tokens:
            continue  # a document shorter than the prompt has nothing to continue
        out.append({"text": enc.decode(ids[:prompt_tokens]), "ids": ids[:prompt_tokens],
                    "reference": enc.decode(ids[prompt_tokens:]), "reference_ids": ids[prompt_tokens:]})
    if not out:
        raise PromptError(f"prompts=val:{data_dir}: no val document is longer than prompt_tokens={prompt_tokens}")
    return out
