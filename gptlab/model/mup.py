"""muP (Yang et al. 2022, "Tensor Programs V", Table 3 for Adam; microsoft/mup) and depth-muP (Yang et al. 2023,
"Tensor Programs VI"): the multipliers that let a learning rate tuned on a narrow, shallow proxy hold at any width
and depth. The GPT and its optimizer read them from here; the standard parametrisation is every multiplier 1.

    python -c "from gptlab.model.mup import Multipliers; from gptlab import GPTConfig; \
               print(Multipliers.of(GPTConfig(6, 6, 384, 512, mup_base_width=64, mup_base_depth=2)))"

With model.mup_base_width = b and m = n_embd / b:
- hidden matrices (c_attn, c_proj, c_fc): init std 0.02 / sqrt(m) (variance x b / width), Adam rate lr / m;
- embeddings (wte, wpe), LayerNorm gains, biases: init and rate unchanged;
- the output logits x 1/m. The readout shares its matrix with wte, as mup's MuSharedReadout does: the matrix keeps the
  embedding's init and constant rate, and the 1/m is applied to its input (the final LayerNorm's output);
- attention logits q.k / d_head instead of q.k / sqrt(d_head);
- weight decay on hidden matrices x m, as MuAdam does for a decay multiplied by the rate (torch's AdamW): the step's
  shrink lr * wd, and so the decay's timescale, is the same at every width;
- gradient clipping unchanged: under muP the global gradient norm stays O(1) in width (tests/test_mup.py measures
  it over widths 64 to 512), so one threshold clips every width alike; under SP it grows with width.

With model.mup_base_depth = d and k = n_layer / d: each residual branch x 1/sqrt(k), the residual projections'
init 0.02 / sqrt(2 d) (GPT-2's 1/sqrt(2 n_layer), taken at the base depth: the multiplier does the rest), and the
hidden matrices' Adam rate / sqrt(k) (Depth-muP for Adam).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from gptlab.config import GPTConfig

HIDDEN = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")  # width x width


@dataclass(frozen=True)
class Multipliers:
    width: float = 1.0  # m = n_embd / mup_base_width
    depth: float = 1.0  # k = n_layer / mup_base_depth
    mup: bool = False  # width muP on: attention scale 1/d_head
    init_layers: int = 0  # the n_layer GPT-2's residual-projection init is computed at

    @classmethod
    def of(cls, c: GPTConfig) -> Multipliers:
        width = c.n_embd / c.mup_base_width if c.mup_base_width else 1.0
        depth = c.n_layer / c.mup_base_depth if c.mup_base_depth else 1.0
        return cls(width, depth, c.mup_base_width is not None, c.mup_base_depth or c.n_layer)

    @property
    def output(self) -> float:
        """The factor on the readout's input (so on the logits)."""
        return 1.0 / self.width

    @property
    def branch(self) -> float:
        """The factor on each residual branch's output."""
        return 1.0 / math.sqrt(self.depth)

    @property
    def hidden_lr(self) -> float:
        """The factor on the hidden matrices' learning rate."""
        return 1.0 / (self.width * math.sqrt(self.depth))

    @property
    def hidden_std(self) -> float:
        """The factor on the hidden matrices' init std (GPT-2's 0.02, its residual projections' 0.02/sqrt(2L))."""
        return 1.0 / math.sqrt(self.width)

    def attn_scale(self, head_dim: int) -> float | None:
        """The attention logits' scale: 1/d_head under muP; None lets SDPA use its own 1/sqrt(d_head)."""
        return 1.0 / head_dim if self.mup else None

    @property
    def standard(self) -> bool:
        return self == Multipliers(init_layers=self.init_layers)


def is_hidden(name: str) -> bool:
    """A width x width (or width x 4 width) matrix inside a block: the ones muP rescales."""
    return name.endswith(HIDDEN)


def folded_state_dict(model) -> dict:
    """The model's weights with its multipliers folded in, so a standard GPT-2 (transformers' GPT2LMHeadModel)
    computes the same logits: q rows of c_attn x 1/sqrt(d_head) (its q.k / sqrt(d_head) becomes q.k / d_head), each
    branch's c_proj x the branch factor, the final LayerNorm x the output factor (the tied matrix stays untouched, so
    the embedding does too). Standard models come back as they are."""
    sd, mult, c = model.state_dict(), model.mult, model.config
    if mult.standard:
        return sd
    sd = {k: v.detach().clone() for k, v in sd.items()}
    scale = {"transformer.ln_f.": mult.output}
    for i in range(c.n_layer):
        scale |= {f"transformer.h.{i}.attn.c_proj.": mult.branch, f"transformer.h.{i}.mlp.c_proj.": mult.branch}
    for key, v in sd.items():
        prefix = key.rsplit(".", 1)[0] + "."
        if prefix in scale and scale[prefix] != 1.0:
            v.mul_(scale[prefix])
        if mult.mup and key.endswith(("attn.c_attn.weight", "attn.c_attn.bias")):
            v[:c.n_embd].mul_((c.n_embd // c.n_head) ** -0.5)  # the q rows
    return sd
