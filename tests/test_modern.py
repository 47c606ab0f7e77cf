"""The modern GPT's options, each against a hand computation at a tiny size; KV-cache decoding equal to recomputing;
checkpoints that rebuild what they describe; export to Llama and Qwen3 with equal logits, or a one-line refusal.

    .venv/bin/python -m pytest tests/test_modern.py -q

Off (every option at its default) is GPT-2 bit for bit: tests/test_mup.py reproduces tests/fixtures/sp_reference.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import composed, in_process, run_train, validated

from gptlab import GPT, GPTConfig
from gptlab.config import ConfigError
from gptlab.model.blocks import RMS_EPS, mlp_width, rope_tables, rotate
from gptlab.model.loss import chunked_cross_entropy

BASE = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=96, bias=False)
OPTIONS = {"rope": dict(pos="rope"), "qk_norm": dict(qk_norm=True), "rmsnorm": dict(norm="rmsnorm"),
           "relu2": dict(mlp="relu2"), "swiglu": dict(mlp="swiglu"), "untied": dict(tie_embeddings=False),
           "softcap": dict(logit_softcap=5.0), "zero_init": dict(zero_init=True)}
ALL = dict(pos="rope", qk_norm=True, norm="rmsnorm", mlp="relu2", tie_embeddings=False, logit_softcap=5.0,
           zero_init=True)


def model(seed=0, **kw):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(**{**BASE, **kw})).eval()
    with torch.no_grad():  # zero-initialised and unit gains would hide mistakes: every weight random
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def test_rope_rotates_each_channel_pair_by_position_times_its_frequency():
    """Against complex multiplication: channel i and i + hd/2 are one complex number turned by pos * base^(-2i/hd)."""
    cfg = GPTConfig(**{**BASE, "pos": "rope"})
    hd = cfg.n_embd // cfg.n_head
    x = torch.randn(1, 1, 5, hd)
    cos, sin = rope_tables(cfg, 3, 5, "cpu", torch.float32)  # positions 3..7
    got = rotate(x, cos, sin)
    z = torch.complex(x[..., :hd // 2], x[..., hd // 2:])
    angle = torch.outer(torch.arange(3, 8.0), 10000.0 ** (-torch.arange(0, hd, 2) / hd))
    want = z * torch.polar(torch.ones_like(angle), angle)
    torch.testing.assert_close(got, torch.cat((want.real, want.imag), -1), atol=1e-5, rtol=1e-5)


def test_the_cpu_rmsnorm_equals_torchs_with_its_own_backward_checked_numerically():
    """blocks.RMSNorm's lean backward: gradcheck in float64, and torch's nn.RMSNorm's values and gradients in fp32."""
    from torch.nn.functional import rms_norm

    from gptlab.model.blocks import FusedRMSNorm, RMSNorm
    x, w = torch.randn(2, 3, 5, 8, dtype=torch.float64, requires_grad=True), torch.randn(8, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: FusedRMSNorm.apply(a, b, RMS_EPS), (x, w.requires_grad_()))
    m, x = RMSNorm(32, eps=RMS_EPS), torch.randn(4, 16, 32, requires_grad=True)
    with torch.no_grad():
        m.weight.normal_()
    gy = torch.randn(4, 16, 32)
    want = torch.autograd.grad(rms_norm(x, (32,), m.weight, RMS_EPS), (x, m.weight), gy)
    got = torch.autograd.grad(m(x), (x, m.weight), gy)
    assert torch.equal(m(x), rms_norm(x, (32,), m.weight, RMS_EPS))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_rope_attention_depends_on_relative_positions_only():
    cfg = GPTConfig(**{**BASE, "pos": "rope"})
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    dot = lambda p, s: (rotate(q, *rope_tables(cfg, p, 1, "cpu", torch.float32))  # noqa: E731
                        * rotate(k, *rope_tables(cfg, s, 1, "cpu", torch.float32))).sum().item()
    assert dot(7, 3) == pytest.approx(dot(11, 7), abs=1e-5) and dot(7, 3) != pytest.approx(dot(7, 4), abs=1e-3)


def test_rmsnorm_qk_norm_and_the_mlps_by_hand():
    x = torch.randn(3, 32)
    m = model(norm="rmsnorm", qk_norm=True, mlp="swiglu")
    block = m.transformer.h[0]
    want = x / torch.sqrt(x.square().mean(-1, keepdim=True) + RMS_EPS) * block.ln_1.weight
    torch.testing.assert_close(block.ln_1(x), want)
    q = torch.randn(1, 2, 4, 16)
    qn = block.attn.q_norm(q)
    torch.testing.assert_close(qn / block.attn.q_norm.weight, q / torch.sqrt(q.square().mean(-1, keepdim=True)
                                                                               + RMS_EPS))
    h = mlp_width(m.config)
    assert h == 88 and 3 * h * 32 == pytest.approx(8 * 32 * 32, rel=0.04)  # SwiGLU: the parameters of 4x, nearly
    w, wp = block.mlp.c_fc.weight, block.mlp.c_proj.weight
    torch.testing.assert_close(block.mlp(x), (F.silu(x @ w[:h].T) * (x @ w[h:].T)) @ wp.T)
    r = model(mlp="relu2").transformer.h[0].mlp
    torch.testing.assert_close(r(x), torch.relu(x @ r.c_fc.weight.T).square() @ r.c_proj.weight.T)


def test_softcap_caps_every_logit_and_the_chunked_loss_and_its_gradient_agree():
    m = model(logit_softcap=5.0)
    x = torch.randint(0, 96, (2, 16))
    logits, loss = m(x, x)
    assert logits.abs().max() < 5.0
    z = F.linear(m.hidden(x), m.lm_head.weight)
    torch.testing.assert_close(logits, 5.0 * torch.tanh(z / 5.0))
    h = m.hidden(x).flatten(0, 1).detach().requires_grad_()
    w = m.lm_head.weight.detach().clone().requires_grad_()
    plain = F.cross_entropy(5.0 * torch.tanh((h @ w.T) / 5.0), x.flatten())
    plain.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    chunked = chunked_cross_entropy(h, w, x.flatten(), chunk=7, softcap=5.0)
    chunked.backward()
    torch.testing.assert_close(chunked, plain)
    torch.testing.assert_close(h.grad, gh, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(w.grad, gw, atol=1e-6, rtol=1e-4)
    with torch.no_grad():  # evaluation's path (no gradient work) caps the logits too
        torch.testing.assert_close(chunked_cross_entropy(h, w, x.flatten(), chunk=7, softcap=5.0), plain.detach())


def test_an_untied_head_and_zero_initialised_projections():
    torch.manual_seed(0)
    m = GPT(GPTConfig(**BASE, tie_embeddings=False, zero_init=True))
    assert m.lm_head.weight is not m.transformer.wte.weight and [n for n, _ in m.param_roles()["head"]] == \
        ["lm_head.weight"]
    zeroed = [p for n, p in m.named_parameters() if n.endswith("c_proj.weight") or n == "lm_head.weight"]
    assert len(zeroed) == 2 * 2 + 1 and all(p.abs().sum() == 0 for p in zeroed)
    assert m.num_params() == GPT(GPTConfig(**BASE)).num_params() + 96 * 32  # the head's own matrix


@pytest.mark.parametrize("name", sorted(OPTIONS) + ["all"])
def test_kv_cache_decoding_equals_recomputing_the_context(name):
    m = model(**(ALL if name == "all" else OPTIONS[name]))
    x = torch.randint(0, 96, (2, 5))
    fast = m.generate(x, 9, temperature=0, use_cache=True)
    slow = m.generate(x, 9, temperature=0, use_cache=False)
    assert torch.equal(fast, slow)
    assert fast.shape == (2, 14)  # past block_size 16: the window slides alike


@pytest.mark.parametrize("name", sorted(OPTIONS) + ["all"])
def test_a_checkpoint_records_every_option_and_loads_what_it_describes(name, tmp_path):
    from gptlab.model.checkpoint import save_checkpoint
    from gptlab.model.load import load_model
    m = model(**(ALL if name == "all" else OPTIONS[name]))
    loaded, info = load_model(save_checkpoint(m, tmp_path / "m.ckpt"))
    assert loaded.config == m.config
    x = torch.randint(0, 96, (2, 16))
    assert torch.equal(loaded(x)[0], m(x)[0])


@pytest.mark.parametrize("kw,family", [(dict(pos="rope", norm="rmsnorm", mlp="swiglu"), "LlamaForCausalLM"),
                                       (dict(pos="rope", norm="rmsnorm", mlp="swiglu", tie_embeddings=False,
                                             zero_init=True), "LlamaForCausalLM"),
                                       (dict(pos="rope", norm="rmsnorm", mlp="swiglu", qk_norm=True),
                                        "Qwen3ForCausalLM"),
                                       (dict(tie_embeddings=False), "GPT2LMHeadModel")])
def test_export_computes_the_same_logits_in_transformers(kw, family, tmp_path):
    from transformers import AutoModelForCausalLM

    from gptlab.model.convert import to_hf
    m = model(**{**kw, "vocab_size": 50304, "rope_base": 500.0})
    to_hf(m, tmp_path / "out", tokenizer=False)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    x = torch.randint(0, 50257, (2, 16))
    with torch.no_grad():
        diff = (m(x)[0][..., :50257] - hf(x).logits).abs().max().item()
    assert type(hf).__name__ == family and diff < 1e-4


@pytest.mark.parametrize("kw,option", [(dict(mlp="relu2"), "model.pos=learned"),
                                       (dict(pos="rope", norm="rmsnorm", mlp="relu2"), "model.mlp=relu2"),
                                       (dict(pos="rope", norm="rmsnorm", mlp="swiglu", logit_softcap=30.0),
                                        "model.logit_softcap=30.0"),
                                       (dict(pos="rope", mlp="swiglu"), "model.norm=layernorm")])
def test_export_refuses_what_no_transformers_architecture_computes(kw, option, tmp_path):
    from gptlab.model.convert import to_hf
    with pytest.raises(ConfigError, match=rf"^{option}: no transformers architecture computes"):
        to_hf(model(**kw), tmp_path / "out", tokenizer=False)


def test_the_options_are_checked_and_refused_with_mup_in_one_line():
    with pytest.raises(ConfigError, match=r"^mup_base_width / mup_base_depth with pos=rope: muP's multipliers are"):
        GPTConfig(**BASE, pos="rope", mup_base_width=16)
    with pytest.raises(ConfigError, match=r"^mlp must be one of gelu, relu2, swiglu, got 'geglu'"):
        GPTConfig(**BASE, mlp="geglu")
    with pytest.raises(ConfigError, match=r"^pos must be learned when the head size"):
        GPTConfig(n_layer=1, n_head=1, n_embd=3, pos="rope")
    run = validated(composed("model=30m_modern"))
    assert run.model.modern() and run.model.n_embd == 384


def test_the_option_lists_are_derived_from_the_schema_and_take_a_new_option(monkeypatch):
    """Every list of model keys is read from the fields' metadata: the same as the hand-written lists it replaced
    (written out here), and an option added to the schema is in all of them: the bench tries it, export refuses it."""
    from dataclasses import make_dataclass

    from gptlab.config.schema import option
    from gptlab.model.llama import family
    from gptlab.speed import options as bench
    assert GPTConfig.options() == ("pos", "qk_norm", "norm", "mlp", "mlp_hidden", "tie_embeddings", "logit_softcap",
                                   "zero_init")
    assert GPTConfig.architecture_keys() == (
        "n_layer", "n_head", "n_embd", "block_size", "vocab_size", "bias", "gelu", "mup_base_width", "mup_base_depth",
        "pos", "rope_base", "qk_norm", "norm", "mlp", "mlp_hidden", "tie_embeddings", "logit_softcap", "zero_init")
    assert GPTConfig.standard() == {
        "mup_base_width": None, "mup_base_depth": None, "pos": "learned", "rope_base": 10000.0, "qk_norm": False,
        "norm": "layernorm", "mlp": "gelu", "mlp_hidden": None, "tie_embeddings": True, "logit_softcap": None,
        "zero_init": False}
    assert list(bench.every().items()) == [
        ("pos=rope", {"pos": "rope"}), ("qk_norm=true", {"qk_norm": True}), ("norm=rmsnorm", {"norm": "rmsnorm"}),
        ("mlp=relu2", {"mlp": "relu2"}), ("mlp=swiglu", {"mlp": "swiglu"}),
        ("tie_embeddings=false", {"tie_embeddings": False}), ("logit_softcap=30", {"logit_softcap": 30.0}),
        ("zero_init=true", {"zero_init": True})]
    assert bench.together() == {"pos": "rope", "qk_norm": True, "norm": "rmsnorm", "mlp": "relu2",
                                "tie_embeddings": False, "logit_softcap": 30.0, "zero_init": True}
    assert list(bench.variants(["all"]))[-1] == "all together"
    assert GPTConfig(**BASE, pos="rope", rope_base=500.0, zero_init=True).modern() == ["pos=rope", "zero_init=True"]
    assert GPTConfig(**BASE, pos="rope", zero_init=True).modern(function=True) == ["pos=rope"]

    Windowed = make_dataclass("Windowed", [("window", int, option(0, tried=[8, 16]))], bases=(GPTConfig,))
    assert Windowed.options()[-1] == "window" and Windowed.options(function=True)[-1] == "window"
    assert Windowed.architecture_keys()[-1] == "window" and Windowed.standard()["window"] == 0
    assert Windowed.tried()["window"] == (8, 16) and Windowed(**BASE, window=8).modern() == ["window=8"]
    monkeypatch.setattr("gptlab.config.schema.GPTConfig", Windowed)
    assert list(bench.every())[-2:] == ["window=8", "window=16"] and bench.together()["window"] == 8
    llama = dict(pos="rope", norm="rmsnorm", mlp="swiglu")
    assert family(Windowed(**BASE, **llama)) == "llama"
    with pytest.raises(ConfigError, match=r"^model.window=8: no transformers architecture computes"):
        family(Windowed(**BASE, **llama, window=8))


def test_the_modern_preset_keeps_the_30m_parameter_count_it_states():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "conf" / "model" / "30m_modern.yaml").read_text()
    cfg = validated(composed("model=30m_modern")).model
    n = GPT(cfg).num_params()
    assert f"{n:,}" in text and math.isclose(n, GPT(validated(composed("model=30m")).model).num_params(), rel_tol=0.1)


@pytest.mark.slow
def test_every_option_at_once_trains_resumes_exactly_and_evaluates(tiny_data, tmp_path):
    """All the options together (and Muon): a sliced run resumed alone equals the uninterrupted one, and eval of
    the run reproduces its summary."""
    import json

    from test_runfolder import rows, summary
    opts = [f"model.{k}={v}".replace("True", "true").replace("False", "false") for k, v in ALL.items()]
    common = [*opts, "optim=muon", "trainer.max_steps=12", "trainer.eval_interval=5"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    run_train([*common, f"hydra.run.dir={ref}"], tiny_data, tmp_path)
    run_train([*common, "trainer.stop_after=6", f"hydra.run.dir={cut}"], tiny_data, tmp_path)
    run_train([f"resume={cut}"], tiny_data, tmp_path, extra=False)
    assert rows(cut) == rows(ref) and summary(cut) == summary(ref)
    assert json.loads((ref / "summary.json").read_text())["model"]["pos"] == "rope"
    e = in_process("eval", [f"model={ref}"], {"GPTLAB_DATA": str(tiny_data)})
    assert e.returncode == 0 and abs(float(e.stdout.split("difference ")[1].split()[0])) < 1e-5, e.stderr
