"""gptlab.sample: filters through the sampling path, seeds, KV cache, <|endoftext|>, padded ids, options, CLI."""
import io
import math
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from gptlab.cli import rewrite
from gptlab.config import ConfigError, SampleConfig
from gptlab.config.schema import GPTConfig
from gptlab.data.tokenizer import EOT
from gptlab.model.gpt import GPT
from gptlab.model.sampling import TextStream, sample
from gptlab.sample import ENTRY as SAMPLE
from gptlab.sample import read_prompt

ROOT = Path(__file__).resolve().parents[1]
V = 50304  # GPT-2's 50257 padded, as the tiny and 30m presets
A = 317  # " A": the token the rigged model writes before <|endoftext|>


def tiny(block_size=64, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=block_size, vocab_size=V, bias=False)).eval()


def constant_logits(logits: torch.Tensor) -> GPT:
    """A GPT whose next-token logits are `logits` at every position: ln_f's gain is 0 and its bias e0, so the
    head returns the first column of its (tied) weight. Its vocabulary is len(logits)."""
    m = GPT(GPTConfig(n_layer=0, n_head=1, n_embd=4, block_size=512, vocab_size=len(logits), bias=True))
    with torch.no_grad():
        m.transformer.ln_f.weight.zero_()
        m.transformer.ln_f.bias.copy_(torch.tensor([1.0, 0, 0, 0]))
        m.lm_head.weight[:, 0] = logits
    return m.eval()


def hand_made(probs=(0.5, 0.05, 0.2, 0.15, 0.1)) -> torch.Tensor:
    """Ids 0..4 with these probabilities, in a 64-token vocabulary (small: every draw is cheap)."""
    logits = torch.full((64,), -1e4)
    logits[:len(probs)] = torch.log(torch.tensor(probs))
    return logits


def eot_after(n: int) -> GPT:
    """From a one-token prompt, writes A n times, then only <|endoftext|>: positions < n point the layer-normed
    residual at A's embedding, later ones at EOT's."""
    m = GPT(GPTConfig(n_layer=0, n_head=1, n_embd=4, block_size=32, vocab_size=V, bias=False))
    with torch.no_grad():
        m.transformer.wte.weight.zero_()
        m.transformer.wte.weight[A, 0] = 100
        m.transformer.wte.weight[EOT, 2] = 100
        m.transformer.wpe.weight[:n] = torch.tensor([1e4, -1e4, 0, 0])
        m.transformer.wpe.weight[n:] = torch.tensor([0, 0, 1e4, -1e4])
    return m.eval()


def seeded(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("top_k,top_p,kept", [(2, None, {0, 2}), (3, None, {0, 2, 3}), (None, 0.4, {0}),
                                              (None, 0.6, {0, 2}), (None, 0.8, {0, 2, 3}),
                                              (4, 0.9, {0, 2, 3, 4}), (None, 1.0, {0, 1, 2, 3, 4})])
def test_top_k_and_top_p_sample_exactly_the_kept_tokens(gpt2, top_k, top_p, kept):
    out = sample(constant_logits(hand_made()), gpt2, [0], 200, temperature=1.0, top_k=top_k, top_p=top_p,
                 generator=seeded(0), stop_at_eot=False)
    assert len(out) == 200 and set(out) == kept


def test_padded_ids_are_never_sampled(gpt2):
    logits = torch.zeros(V)
    logits[7], logits[50257:] = 5.0, 50.0
    m = constant_logits(logits)
    drawn = sample(m, gpt2, [0], 50, temperature=1.0, top_k=None, generator=seeded(0), stop_at_eot=False)
    assert max(drawn) < 50257 and len(set(drawn)) > 10  # without the mask every draw would be a padded id
    assert sample(m, gpt2, [0], 5, temperature=0) == [7] * 5


def test_same_seed_same_text_other_seed_other_text(gpt2):
    m, ids = tiny(), gpt2.encode_ordinary("The future of AI is")
    text = lambda seed: gpt2.decode(sample(m, gpt2, ids, 20, top_k=None, generator=seeded(seed)))  # noqa: E731
    assert text(1) == text(1) != text(2)


@pytest.mark.parametrize("new", [10, 24])  # 30: prompt + output outgrow block_size 16, the window slides
def test_kv_cache_and_uncached_sampling_agree(gpt2, new):
    m, ids = tiny(block_size=16), [464, 2003, 286, 9552, 318]
    cached = sample(m, gpt2, ids, new, temperature=1.0, top_k=None, generator=seeded(3), stop_at_eot=False)
    plain = sample(m, gpt2, ids, new, temperature=1.0, top_k=None, generator=seeded(3), stop_at_eot=False,
                   use_cache=False)
    assert cached == plain and len(cached) == new


def test_stops_at_endoftext_unless_told_not_to(gpt2):
    m, seen = eot_after(6), []
    assert sample(m, gpt2, [A], 20, on_token=seen.append, generator=seeded(0)) == [A] * 6 == seen
    assert sample(m, gpt2, [A], 9, stop_at_eot=False, generator=seeded(0)) == [A] * 6 + [EOT] * 3


def test_empty_prompt_starts_from_endoftext(gpt2):
    assert sample(eot_after(4), gpt2, [], 10, temperature=0) == [A] * 4


def test_long_prompt_is_cropped_with_a_warning(gpt2):
    m, ids = tiny(block_size=8), list(range(100, 120))
    with pytest.warns(UserWarning, match="only its last 8"):
        out = sample(m, gpt2, ids, 6, generator=seeded(5))
    assert out == sample(m, gpt2, ids[-8:], 6, generator=seeded(5))


def test_text_stream_holds_back_characters_split_across_tokens(gpt2):
    text = "naïve 🙂 日本語 ✓ done"
    ids, pieces = gpt2.encode_ordinary(text), []
    assert any(_not_utf8(gpt2.decode_single_token_bytes(t)) for t in ids)  # some token is half a character
    stream = TextStream(gpt2, pieces.append)
    for t in ids:
        stream(t)
    stream.close()
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


@pytest.mark.parametrize("kw,key", [(dict(temperature=0), "greedy=true"), (dict(temperature=-0.5), "greedy=true"),
                                    (dict(temperature=math.nan), "temperature"), (dict(top_p=0), "top_p"),
                                    (dict(top_p=1.5), "top_p"), (dict(top_k=0), "top_k"), (dict(top_k=2.5), "top_k"),
                                    (dict(num_samples=0), "num_samples"), (dict(max_new_tokens=-1), "max_new_tokens"),
                                    (dict(greedy="yes"), "greedy"), (dict(head_dtype="int4"), "head_dtype")])
def test_bad_options_are_refused_naming_the_key(kw, key):
    with pytest.raises(ConfigError, match=key):
        SampleConfig(**kw)


def test_good_options_pass():
    SampleConfig(temperature=0, greedy=True)
    SampleConfig(temperature=1, top_k=1, top_p=1, num_samples=1, max_new_tokens=1)


def test_prompt_from_stdin_file_or_text(tmp_path):
    assert read_prompt("-", stdin=io.StringIO("To be, or not\n")) == "To be, or not"
    (tmp_path / "p.txt").write_text("line 1\nline 2\n", encoding="utf-8")
    assert read_prompt("ignored", tmp_path / "p.txt") == "line 1\nline 2"
    assert read_prompt("") == "" and read_prompt("Hi") == "Hi"
    with pytest.raises(ConfigError, match="prompt_file"):
        read_prompt("x", tmp_path / "missing.txt")


def test_hydra_argv_passes_model_and_prompt_verbatim():
    prompt = "It's 3:00, [a] {b} ${x} \\"
    args = rewrite(["model=hf:gpt2", f"prompt={prompt}", "top_k=5"], SAMPLE)
    assert args[0] == "spec=hf:gpt2" and args[2] == "top_k=5"
    value = OverridesParser.create().parse_override(args[1]).value()
    assert OmegaConf.create({"p": value}).p == prompt


def cli(*args, **kw):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "gptlab.sample", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, **kw)


def test_cli_streams_the_prompt_and_its_samples(gpt2, tmp_path):
    m = tiny(block_size=32, seed=1)
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"hyper_parameters": {"model": asdict(m.config)},
                "state_dict": {"model." + k: v for k, v in m.state_dict().items()}}, ckpt)
    prompt = "Hello, world: it's"
    p = cli(f"model={ckpt}", f"prompt={prompt}", "num_samples=2", "max_new_tokens=12", "device=cpu", "seed=7")
    assert p.returncode == 0, p.stderr
    gen, ids = seeded(7), gpt2.encode_ordinary(prompt)
    texts = [prompt + gpt2.decode(sample(m, gpt2, ids, 12, generator=gen), errors="replace") for _ in range(2)]
    assert p.stdout == texts[0] + "\n" + "-" * 40 + "\n" + texts[1] + "\n"
    assert texts[0] != texts[1]


def test_cli_refuses_bad_options_before_loading_the_model():
    p = cli("model=/nonexistent.ckpt", "temperature=0")
    assert p.returncode != 0 and "use greedy=true" in p.stderr and "nonexistent" not in p.stderr


def test_exact_head_matches_generate_and_bf16_head_stays_close(gpt2):
    import torch

    from gptlab.config.schema import GPTConfig
    from gptlab.model.gpt import GPT
    from gptlab.model.sampling import sample
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=50304)).eval()
    exact = sample(m, gpt2, [464], 12, temperature=0, head_dtype=None, stop_at_eot=False)
    ref = m.generate(torch.tensor([[464]]), 12, temperature=0)[0, 1:].tolist()
    assert exact == ref  # head_dtype=None is the model's own fp32 output layer
    h = torch.randn(4, 32)
    full = m.lm_head(h)
    half = torch.nn.functional.linear(h.bfloat16(), m.lm_head.weight.bfloat16()).float()
    assert (full - half).abs().max() < 0.05 * full.abs().max()  # what head_dtype="auto" trades on a CPU


def test_cli_refuses_an_unknown_head_dtype(tmp_path):
    import subprocess
    import sys

    from helpers import ROOT
    p = subprocess.run([sys.executable, "-m", "gptlab.sample", "model=hf:gpt2", "head_dtype=int4"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "head_dtype must be one of auto, exact, bf16, got 'int4'" in p.stderr
