"""The GPT: parameter counts, FLOPs, the chunked loss, KV-cache generation, sampling filters."""
import math

import pytest
import torch
import torch.nn.functional as F

from gptlab.config.schema import GPTConfig
from gptlab.model.gpt import GPT
from gptlab.model.loss import chunked_cross_entropy
from gptlab.model.sampling import filter_logits


def small(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**dict(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=101), **kw}))


def test_30m_preset_has_exactly_29_938_560_parameters():
    m = GPT(GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=512, vocab_size=50304, bias=False))
    assert m.num_params() == 29_938_560
    assert m.num_params(non_embedding=False) == 29_938_560 + 512 * 384


def test_gpt2_124m_counted_as_nanogpt():
    m = GPT(GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257, bias=True))
    assert m.num_params() == 123_653_376  # 124,439,808 in total minus 1024 x 768 position embeddings


def test_module_names_match_gpt2_and_head_is_tied():
    m = small(bias=True)
    names = set(m.state_dict())
    for n in ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.1.ln_1.weight",
              "transformer.h.1.attn.c_attn.weight", "transformer.h.1.attn.c_attn.bias",
              "transformer.h.1.attn.c_proj.weight", "transformer.h.1.ln_2.bias", "transformer.h.1.mlp.c_fc.weight",
              "transformer.h.1.mlp.c_proj.weight", "transformer.ln_f.weight", "lm_head.weight"]:
        assert n in names
    assert m.lm_head.weight is m.transformer.wte.weight


def test_init_scales_residual_projections():
    m = GPT(GPTConfig(n_layer=8, n_head=4, n_embd=256, block_size=16, vocab_size=50304))
    assert m.transformer.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert m.transformer.h[0].mlp.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)


def test_flops_per_token_matches_a_hand_count():
    c = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=64, bias=False)
    m = GPT(c)
    # matmul weights per layer: qkv 16x48, proj 16x16, fc 16x64, proj 64x16; LayerNorm gains 2x16; head 64x16; ln_f 16
    n = 2 * (16 * 48 + 16 * 16 + 16 * 64 + 64 * 16 + 2 * 16) + 64 * 16 + 16
    assert m.num_params() == n
    attn = 2 * 3 * (2 * 8 * 16 + 2 * 8 * 16)  # per layer: QK^T and AV, 2 FLOPs per MAC, x3 for fwd+bwd
    assert m.flops_per_token() == 6 * n + attn


def test_loss_is_mean_cross_entropy_and_ignores_minus_one():
    m = small()
    x, y = torch.randint(0, 101, (2, 10)), torch.randint(0, 101, (2, 10))
    y[0, :3] = -1
    logits, loss = m(x, y)
    ref = F.cross_entropy(logits.reshape(-1, 101), y.reshape(-1), ignore_index=-1)
    assert loss.item() == pytest.approx(ref.item(), abs=1e-6)


def test_chunked_loss_and_gradients_equal_the_plain_path():
    m = small()
    x, y = torch.randint(0, 101, (3, 20)), torch.randint(0, 101, (3, 20))
    y[1, 5:9] = -1
    _, plain = m(x, y)
    plain.backward()
    g_plain = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    logits, fused = m(x, y, return_logits=False)
    fused.backward()
    assert logits is None and fused.item() == pytest.approx(plain.item(), abs=1e-6)
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, g_plain[n], atol=1e-6, rtol=1e-4)


def test_a_device_without_chunking_takes_the_plain_path(monkeypatch):
    """CHUNK[device] = None (CUDA: compiled full logits are faster there): return_logits=False still returns
    (None, loss), the loss of the plain path; chunked_cross_entropy then runs as one chunk."""
    import gptlab.model.loss as model
    m = small()
    x, y = torch.randint(0, 101, (2, 12)), torch.randint(0, 101, (2, 12))
    plain = m(x, y)[1]
    monkeypatch.setitem(model.CHUNK, "cpu", None)
    logits, loss = m(x, y, return_logits=False)
    assert logits is None and loss.item() == plain.item() and loss.grad_fn.name() != "_ChunkedLinearCEBackward"
    h, w, t = torch.randn(37, 8), torch.randn(11, 8), torch.randint(0, 11, (37,))
    assert chunked_cross_entropy(h, w, t).item() == pytest.approx(F.cross_entropy(h @ w.T, t).item(), abs=1e-5)


def test_chunked_loss_handles_ragged_chunks():
    h, w = torch.randn(37, 8), torch.randn(11, 8)
    t = torch.randint(0, 11, (37,))
    assert chunked_cross_entropy(h, w, t, chunk=5).item() == pytest.approx(F.cross_entropy(h @ w.T, t).item(), abs=1e-5)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
def test_chunked_loss_under_autocast_matches_float64(dtype, tol):
    """bf16 matmuls (as the GPU path runs them) and fp16 autocast (grads kept fp32: fp16 would underflow) against
    a float64 reference of the loss and both gradients; the gradients come back in the inputs' fp32."""
    torch.manual_seed(0)
    h, w = torch.randn(300, 64, requires_grad=True), (0.02 * torch.randn(1000, 64)).requires_grad_()
    t = torch.randint(0, 1000, (300,))
    t[::7] = -1
    with torch.autocast("cpu", dtype=dtype):
        loss = chunked_cross_entropy(h, w, t, chunk=128)
    loss.backward()
    h64, w64 = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = F.cross_entropy(h64 @ w64.T, t, ignore_index=-1)
    ref.backward()
    rel = lambda a, b: ((a.double() - b).norm() / b.norm()).item()
    assert abs(loss.item() - ref.item()) / ref.item() < tol
    assert rel(h.grad, h64.grad) < tol and rel(w.grad, w64.grad) < tol
    assert h.grad.dtype == w.grad.dtype == torch.float32


@pytest.mark.parametrize("prompt_len,new", [(1, 20), (5, 40)])
def test_kv_cache_greedy_generation_equals_uncached(prompt_len, new):
    m = small().eval()
    idx = torch.randint(0, 101, (2, prompt_len))
    cached = m.generate(idx, new, temperature=0, use_cache=True)
    plain = m.generate(idx, new, temperature=0, use_cache=False)
    assert torch.equal(cached, plain) and cached.shape == (2, prompt_len + new)


def test_kv_cache_logits_equal_full_forward():
    from gptlab.model.gpt import KVCache
    m = small().eval()
    idx = torch.randint(0, 101, (1, 12))
    full = m(idx)[0]
    cache = KVCache(m.config, 1, "cpu", torch.float32)
    parts = [m.lm_head(m.hidden(idx[:, :7], cache)), m.lm_head(m.hidden(idx[:, 7:9], cache))]
    parts += [m.lm_head(m.hidden(idx[:, i:i + 1], cache)) for i in range(9, 12)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_generation_past_the_context_slides_the_window_like_uncached():
    m = small(block_size=8).eval()
    idx = torch.randint(0, 101, (1, 3))
    assert torch.equal(m.generate(idx, 20, temperature=0), m.generate(idx, 20, temperature=0, use_cache=False))


def test_same_seed_same_samples():
    m = small().eval()
    idx = torch.zeros(1, 1, dtype=torch.long)
    a = m.generate(idx, 15, generator=torch.Generator().manual_seed(3))
    b = m.generate(idx, 15, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_top_k_and_top_p_keep_exactly_the_right_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.05, 0.2, 0.15, 0.1]]))
    keep = lambda out: torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert keep(filter_logits(logits, top_k=2)) == [0, 2]
    assert keep(filter_logits(logits, top_p=0.5)) == [0]          # 0.5 alone reaches 0.5
    assert keep(filter_logits(logits, top_p=0.7)) == [0, 2]       # 0.5 + 0.2
    assert keep(filter_logits(logits, top_p=0.71)) == [0, 2, 3]   # needs the 0.15 too
    assert keep(filter_logits(logits, top_k=4, top_p=0.9)) == [0, 2, 3, 4]


def test_context_overflow_is_refused():
    m = small(block_size=8)
    with pytest.raises(ValueError, match="exceeds block_size 8"):
        m(torch.zeros(1, 9, dtype=torch.long))


def test_chunked_loss_without_grad_equals_with_grad():
    m = small()
    x, y = torch.randint(0, 101, (2, 12)), torch.randint(0, 101, (2, 12))
    with_grad = m(x, y, return_logits=False)[1]
    with torch.no_grad():
        without = m(x, y, return_logits=False)[1]
    assert without.item() == pytest.approx(with_grad.item(), abs=1e-6) and not without.requires_grad
