"""Hugging Face GPT-2 <-> gptlab GPT: import the released weights, export a trained model for transformers.

    python -m gptlab.hf export model=runs/2026-11-27/21-00-00 out=exports/my-gpt   # run folder (best.ckpt) or .ckpt
    python -m gptlab.hf import model=hf:gpt2 out=ckpts/gpt2.ckpt                 # GPT-2 as a gptlab checkpoint
    python -c "from gptlab.model.convert import from_hf; print(from_hf('hf:gpt2').num_params())"
    python -c "from transformers import GPT2LMHeadModel as M; M.from_pretrained('exports/my-gpt')"

Module names match GPT-2's, so weights map by name; GPT-2's Conv1D layers store [in, out], so those four weights
are transposed. Released weights come from the Hugging Face cache; they must be downloaded once with internet:
    python -c "from transformers import GPT2LMHeadModel; GPT2LMHeadModel.from_pretrained('gpt2')"

Export notes: a bias=False model is written with zero biases (GPT2LMHeadModel always has them); a vocab padded
past GPT-2's 50257 ids (e.g. 50304) is cut to its first 50257 rows, since GPT-2 BPE never emits the padding ids
(pass gpt2_vocab=False to keep every row and skip the tokenizer). Tokenizer files (vocab.json, merges.txt,
tokenizer.json) are rebuilt offline from gptlab's tiktoken ranks and checked against tiktoken; when the ranks
cannot be loaded they are skipped with a note.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from gptlab.config import GPTConfig
from gptlab.data.tokenizer import EOT, N_VOCAB
from gptlab.errors import Refused
from gptlab.fs import atomic_dir
from gptlab.model.checkpoint import LoadError, build_gpt
from gptlab.model.gpt import GPT
from gptlab.model.mup import folded_state_dict
from gptlab.model.spec import check_spec, hf_ref

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
GELU_FROM_HF = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}
GELU_TO_HF = {"tanh": "gelu_new", "none": "gelu"}
SKIP = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of older transformers, not weights
TOKENIZER_CHECK = "Hello world, the future of AI is\n\n  Ünïcödé 你好 🤖 don't 12345\tend  <|endoftext|>"


class HFError(LoadError):
    """A Hugging Face model is unknown, missing from the cache offline, or not convertible."""


class HubUnavailable(Refused, HFError):
    """The weights are not cached and the hub cannot be reached: refused (exit 2), saying what to download."""


def resolve(name_or_path: str | Path) -> str:
    """'hf:gpt2' or 'gpt2' -> 'gpt2'; an existing folder -> itself; anything else -> HFError listing the names."""
    ref = hf_ref(str(name_or_path) if str(name_or_path).startswith("hf:") else f"hf:{name_or_path}")
    if ref is None:
        raise HFError(check_spec(f"hf:{str(name_or_path).removeprefix('hf:')}"))
    return ref


def missing_message(ref: str, err: Exception) -> str:
    from huggingface_hub import constants
    why = "HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else "the hub could not be reached"
    last = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return (f"hf:{ref}: the weights are not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and could not be "
            f"downloaded ({why}); download them once where the hub is reachable (`hf download {ref}`) and copy "
            f"the cache here (HF_HOME), or pass hf:<local folder> (transformers said: {last})")


def config_from_hf(c) -> GPTConfig:
    """GPTConfig for a transformers GPT2Config; refuses the variants gptlab's GPT does not implement."""
    if getattr(c, "model_type", "gpt2") != "gpt2":
        raise HFError(f"model_type {c.model_type!r} is not GPT-2; only GPT-2 checkpoints convert")
    gelu = GELU_FROM_HF.get(c.activation_function)
    if gelu is None:
        raise HFError(f"activation_function {c.activation_function!r} is not supported; gptlab's GPT has "
                      f"{', '.join(GELU_FROM_HF)} (GELU, tanh approximation or exact)")
    unsupported = [f"{k}={v!r}" for k, v, ok in [
        ("n_inner", c.n_inner, c.n_inner in (None, 4 * c.n_embd)),
        ("layer_norm_epsilon", c.layer_norm_epsilon, abs(c.layer_norm_epsilon - 1e-5) < 1e-12),
        ("scale_attn_weights", c.scale_attn_weights, c.scale_attn_weights),
        ("scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx, not c.scale_attn_by_inverse_layer_idx),
        ("tie_word_embeddings", c.tie_word_embeddings, c.tie_word_embeddings)] if not ok]
    if unsupported:
        raise HFError(f"GPT-2 variant not supported by gptlab's GPT: {', '.join(unsupported)}")
    return GPTConfig(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.n_positions,
                     vocab_size=c.vocab_size, bias=True, dropout=0.0, gelu=gelu)


def from_hf(name_or_path: str | Path, device="cpu", dtype: torch.dtype = torch.float32) -> GPT:
    """gptlab GPT (eval mode) from hf:gpt2 ... hf:gpt2-xl (HF cache) or a local Hugging Face GPT-2 folder."""
    from gptlab.hub import offline_unless_reachable
    ref = resolve(name_or_path)
    local = Path(ref).is_dir()
    if not local:
        offline_unless_reachable()  # unreachable: the cache only, no retries (set before transformers is imported)
    from transformers import AutoConfig, GPT2LMHeadModel
    try:
        hf_cfg = AutoConfig.from_pretrained(ref)  # checked before the weights are read
    except (OSError, ValueError) as e:
        raise (HFError(f"{ref}: not a loadable Hugging Face folder: {e}") if local else
               HubUnavailable(missing_message(ref, e))) from None
    cfg = config_from_hf(hf_cfg)
    try:
        hf = GPT2LMHeadModel.from_pretrained(ref, config=hf_cfg, dtype=dtype)
    except (OSError, ValueError) as e:
        raise (HFError(f"{ref}: weights not loadable: {e}") if local else
               HubUnavailable(missing_message(ref, e))) from None
    sd = {k: (v.t() if k.endswith(CONV1D) else v) for k, v in hf.state_dict().items() if not k.endswith(SKIP)}
    return build_gpt(cfg, sd, device, dtype)


def gpt2_vocab_merges(enc) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's vocab.json and merges.txt recovered from a tiktoken Encoding: token bytes are spelled with the
    byte-level alphabet, and the merge that made token r is where BPE stops using only ranks below r."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    alphabet = bytes_to_unicode()
    ranks = {enc.decode_single_token_bytes(i): i for i in range(EOT)}
    spell = lambda b: "".join(alphabet[x] for x in b)
    vocab, merges = {spell(t): r for t, r in ranks.items()}, []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        parts = [bytes([b]) for b in token]
        while len(parts) > 2:  # merge the lowest-ranked adjacent pair, as tiktoken's BPE does
            r, i = min((ranks.get(a + b, rank), i) for i, (a, b) in enumerate(zip(parts, parts[1:])))
            if r >= rank:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) == 2:
            merges.append((spell(parts[0]), spell(parts[1])))
        elif len(token) > 1:
            raise HFError(f"cannot recover the merge for token {rank} ({token!r})")
    vocab["<|endoftext|>"] = EOT
    return vocab, merges


def write_tokenizer(folder: Path, max_length: int) -> bool:
    """GPT-2 tokenizer files built from gptlab's tiktoken ranks; False (and a note) if they are unavailable."""
    from transformers import GPT2Tokenizer

    from gptlab.data.tokenizer import get_tokenizer
    try:
        enc = get_tokenizer()
    except RuntimeError as e:
        print(f"note: tokenizer files skipped (GPT-2 ranks unavailable): {str(e).splitlines()[0]}")
        return False
    vocab, merges = gpt2_vocab_merges(enc)
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
    if tok.encode(TOKENIZER_CHECK) != enc.encode(TOKENIZER_CHECK, allowed_special="all"):  # never ship a wrong one
        raise HFError("the rebuilt Hugging Face tokenizer disagrees with tiktoken; not exporting it")
    tok.save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return True


def hf_state_dict(model: GPT, n_vocab: int, hf_keys: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel weights: Conv1D ones transposed, vocab rows cut to n_vocab, zeros for absent biases."""
    sd = {}
    for k, v in folded_state_dict(model).items():  # muP's multipliers in the weights: GPT-2 has none
        v = v.detach().cpu()
        sd[k] = v[:n_vocab] if k in ("transformer.wte.weight", "lm_head.weight") else v.t() if k.endswith(CONV1D) else v
    for k, shape in hf_keys.items():
        if k not in sd and k.endswith(".bias"):  # bias=False model: GPT-2 adds a bias, zero changes nothing
            sd[k] = torch.zeros(shape, dtype=sd["transformer.wte.weight"].dtype)
    if model.config.tie_embeddings:
        sd["lm_head.weight"] = sd["transformer.wte.weight"]
    return {k: v.contiguous() for k, v in sd.items()}


def to_gpt2(model: GPT, n_vocab: int, eot: int | None):
    """A transformers GPT2LMHeadModel holding this model's weights (muP's multipliers folded in)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    c = model.config
    hf_cfg = GPT2Config(vocab_size=n_vocab, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
                        n_head=c.n_head, activation_function=GELU_TO_HF[c.gelu], resid_pdrop=c.dropout,
                        embd_pdrop=c.dropout, attn_pdrop=c.dropout, bos_token_id=eot, eos_token_id=eot,
                        tie_word_embeddings=c.tie_embeddings)
    with torch.device("meta"):  # the architecture only: real tensors are assigned below
        hf = GPT2LMHeadModel(hf_cfg)
    hf_keys = {k: v.shape for k, v in hf.state_dict().items()}
    hf.load_state_dict(hf_state_dict(model, n_vocab, hf_keys), strict=True, assign=True)
    if c.tie_embeddings:
        hf.lm_head.weight = hf.transformer.wte.weight
    return hf


def to_hf(model: GPT, out_dir: str | Path, tokenizer: bool = True, gpt2_vocab: bool = True,
          overwrite: bool = False) -> Path:
    """Write a transformers folder (config, safetensors, tokenizer files): GPT2LMHeadModel for GPT-2's block, Llama
    or Qwen3 for the modern options that compute their function (gptlab/model/llama.py; others are refused), built
    next to out_dir and renamed into place. gpt2_vocab: the ids are GPT-2 BPE, so padding rows past 50257 go."""
    from gptlab.model.llama import family, to_llama
    c, out = model.config, Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise HFError(f"{out} exists and is not an empty folder; pass overwrite=true to replace it")
    n_vocab = N_VOCAB if gpt2_vocab and c.vocab_size > N_VOCAB else c.vocab_size
    eot = EOT if n_vocab > EOT else None
    hf = to_gpt2(model, n_vocab, eot) if family(c) == "gpt2" else to_llama(model, n_vocab, eot)
    with atomic_dir(out, replace=True) as tmp:  # the old folder is removed only once the new one is in place
        hf.save_pretrained(tmp)
        (tmp / "gptlab.json").write_text(json.dumps({"config": asdict(c), "exported_vocab": n_vocab}, indent=2))
        if tokenizer and not (gpt2_vocab and n_vocab == N_VOCAB):
            print(f"note: tokenizer files skipped: the model's {c.vocab_size} ids are not GPT-2 BPE")
        elif tokenizer:
            write_tokenizer(tmp, c.block_size)
    return out
