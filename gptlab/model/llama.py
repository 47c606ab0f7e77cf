"""The modern GPT as transformers' Llama or Qwen3: the architecture options that compute their function, mapped by
name (python -m gptlab.hf export picks it; gptlab/model/convert.py writes the folder).

    python -m gptlab.hf export runs/<a rope + rmsnorm + swiglu run> exports/llama-like
    python -c "from gptlab import GPTConfig; from gptlab.model.llama import family; \
               print(family(GPTConfig(pos='rope', norm='rmsnorm', mlp='swiglu', bias=False, qk_norm=True)))"

GPT-2's function (learned positions, LayerNorm, GELU) is GPT2LMHeadModel; rope + rmsnorm + swiglu without biases
is LlamaForCausalLM (tied or untied head); qk_norm on top of that is Qwen3ForCausalLM. zero_init only sets the
initial weights, so it never stands in the way. Anything else (relu2, a logit softcap, rope with LayerNorm, ...)
has no transformers architecture computing the same logits here, and export refuses it naming the option.
"""
from __future__ import annotations

import torch

from gptlab.config import ConfigError, GPTConfig
from gptlab.model.blocks import RMS_EPS, mlp_width

LLAMA = dict(pos="rope", norm="rmsnorm", mlp="swiglu", bias=False)  # Llama's block (Qwen3 adds qk_norm)


def family(c: GPTConfig) -> str:
    """gpt2, llama or qwen3: the transformers architecture that computes this config's function; ConfigError
    naming the first option none of them has (every option that changes the function, the schema says which, is
    Llama's or at GPT-2's default, so a new option is refused until it is mapped here)."""
    if not c.modern(function=True):  # GPT-2's block, its head tied or not, zero-initialised or not
        return "gpt2"
    # Llama's block (Qwen3's with qk_norm) of any MLP width (intermediate_size), every other option at its default
    llama = type(c)(**LLAMA, qk_norm=c.qk_norm, mlp_hidden=c.mlp_hidden)
    keys = (*c.options(function=True), "bias")
    wrong = [f"{k}={getattr(c, k)}" for k in keys if getattr(c, k) != getattr(llama, k)]
    if wrong:
        raise ConfigError(f"model.{wrong[0]}: no transformers architecture computes this model's function (GPT-2: "
                          "learned positions, LayerNorm, GELU, a tied head; Llama: pos=rope, norm=rmsnorm, "
                          "mlp=swiglu, bias=false; Qwen3: Llama with qk_norm), so it cannot be exported")
    return "qwen3" if c.qk_norm else "llama"


def hf_config(c: GPTConfig, n_vocab: int, eot: int | None):
    """The LlamaConfig or Qwen3Config of the same shape."""
    from transformers import LlamaConfig, Qwen3Config
    kind = Qwen3Config if c.qk_norm else LlamaConfig
    return kind(vocab_size=n_vocab, hidden_size=c.n_embd, intermediate_size=mlp_width(c), num_hidden_layers=c.n_layer,
                num_attention_heads=c.n_head, num_key_value_heads=c.n_head, head_dim=c.n_embd // c.n_head,
                hidden_act="silu", max_position_embeddings=c.block_size, rms_norm_eps=RMS_EPS,
                rope_parameters={"rope_type": "default", "rope_theta": float(c.rope_base)}, attention_bias=False,
                tie_word_embeddings=c.tie_embeddings, bos_token_id=eot, eos_token_id=eot, attention_dropout=c.dropout)


def state_dict(model, n_vocab: int) -> dict[str, torch.Tensor]:
    """The model's weights under Llama's (and Qwen3's) names: c_attn split into q, k, v; c_fc into gate and up."""
    c, sd = model.config, {k: v.detach().cpu() for k, v in model.state_dict().items()}
    C, h = c.n_embd, mlp_width(c)
    out = {"model.embed_tokens.weight": sd["transformer.wte.weight"][:n_vocab],
           "model.norm.weight": sd["transformer.ln_f.weight"]}
    if not c.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"][:n_vocab]
    for i in range(c.n_layer):
        src, dst = f"transformer.h.{i}.", f"model.layers.{i}."
        q, k, v = sd[src + "attn.c_attn.weight"].split(C)
        gate, up = sd[src + "mlp.c_fc.weight"].split(h)
        out.update({dst + "self_attn.q_proj.weight": q, dst + "self_attn.k_proj.weight": k,
                    dst + "self_attn.v_proj.weight": v, dst + "self_attn.o_proj.weight": sd[src + "attn.c_proj.weight"],
                    dst + "mlp.gate_proj.weight": gate, dst + "mlp.up_proj.weight": up,
                    dst + "mlp.down_proj.weight": sd[src + "mlp.c_proj.weight"],
                    dst + "input_layernorm.weight": sd[src + "ln_1.weight"],
                    dst + "post_attention_layernorm.weight": sd[src + "ln_2.weight"]})
        if c.qk_norm:
            out[dst + "self_attn.q_norm.weight"] = sd[src + "attn.q_norm.weight"]
            out[dst + "self_attn.k_norm.weight"] = sd[src + "attn.k_norm.weight"]
    return {k: v.contiguous() for k, v in out.items()}


def to_llama(model, n_vocab: int, eot: int | None):
    """A transformers LlamaForCausalLM (or Qwen3ForCausalLM) holding this model's weights."""
    from transformers import AutoModelForCausalLM
    cfg = hf_config(model.config, n_vocab, eot)
    with torch.device("meta"):
        hf = AutoModelForCausalLM.from_config(cfg)
    weights = state_dict(model, n_vocab)
    if model.config.tie_embeddings:
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    hf.load_state_dict(weights, strict=True, assign=True)
    if model.config.tie_embeddings:
        hf.lm_head.weight = hf.model.embed_tokens.weight
    return hf.eval()
