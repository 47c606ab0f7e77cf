"""GPT-2 BPE as a tiktoken Encoding, loaded without needing openaipublic.blob.core.windows.net.

    python -c "from gptlab.data.tokenizer import get_tokenizer as t; print(t().encode_ordinary('Hello world'))"

The ranks file is the r50k_base one (identical to GPT-2's vocab.bpe/encoder.json merges). Order of attempts:
  1. $GPTLAB_CACHE/gpt2.tiktoken (default ~/.cache/gptlab), checked by sha256;
  2. fetch it from the openai-whisper sdist on PyPI (whisper/assets/gpt2.tiktoken) into that path;
  3. tiktoken.get_encoding("gpt2"), which downloads from OpenAI's blob storage.
"""
from __future__ import annotations

import functools

import tiktoken
from tiktoken.load import load_tiktoken_bpe

from gptlab.data.assets import AssetError, cache_dir, cached_sdist_file
from gptlab.fs import sha256_file

NAME = "gpt2"
N_VOCAB = 50257
EOT = 50256  # <|endoftext|>, appended after every document
RANKS_FILE = "gpt2.tiktoken"
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
WHISPER = "openai-whisper==20250625"  # its sdist ships the GPT-2 ranks as whisper/assets/gpt2.tiktoken

try:  # tiktoken's own spelling (possessive quantifiers in recent versions: same splits, faster)
    from tiktoken_ext.openai_public import r50k_pat_str as PAT_STR
except ImportError:  # GPT-2's pattern as older tiktoken versions wrote it
    PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _from_ranks(path) -> tiktoken.Encoding:
    ranks = load_tiktoken_bpe(str(path), expected_hash=RANKS_SHA256)
    return tiktoken.Encoding(name=NAME, pat_str=PAT_STR, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": EOT}, explicit_n_vocab=N_VOCAB)


@functools.cache
def get_tokenizer() -> tiktoken.Encoding:
    """The GPT-2 tokenizer (50257 ids, <|endoftext|> = 50256). Raises AssetError (a RuntimeError) if unloadable."""
    path = cache_dir() / RANKS_FILE
    errors = []
    if path.exists() and sha256_file(path) == RANKS_SHA256:
        return _from_ranks(path)
    if path.exists():
        errors.append(f"{path} has the wrong sha256 (refetching)")
    try:
        return _from_ranks(cached_sdist_file(path, WHISPER, f"*/whisper/assets/{RANKS_FILE}", RANKS_SHA256))
    except Exception as e:  # no PyPI access, pip misconfigured, ...
        errors.append(f"pip download of {WHISPER}: {e}")
    try:
        return tiktoken.get_encoding(NAME)
    except Exception as e:  # no internet
        errors.append(f"tiktoken.get_encoding('gpt2'): {e}")
    raise AssetError(
        "could not load the GPT-2 tokenizer. Tried:\n  - " + "\n  - ".join(errors) +
        f"\nFix: put the r50k_base ranks file (sha256 {RANKS_SHA256}) at {path}, e.g. copy "
        f"whisper/assets/gpt2.tiktoken from `pip download --no-deps {WHISPER}` or "
        "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken; "
        "set GPTLAB_CACHE to use another folder.")
