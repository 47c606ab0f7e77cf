"""muP's coordinate check (Yang et al. 2022, section 4; microsoft/mup's coord_check): train models of growing width
(or depth) a few Adam steps at one rate and watch the typical size of every layer's output, mean |x|, and of its
change since init, mean |x_t - x_0|. Under muP these stay flat in width; under the standard parametrisation the
changes grow with it, which is why a rate tuned on a narrow model overshoots on a wide one.

    python experiments/mup_transfer/coord_check.py            # widths 64..512 and depths 2..16: PNGs and a table
    python -c "from gptlab.training.coord_check import coord_check as c; print(c([64, 128], mup=True)['slopes'])"
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gptlab.config import GPTConfig
from gptlab.config.presets import preset
from gptlab.model.gpt import GPT
from gptlab.optim.optimizer import param_groups

VOCAB, BLOCK, BATCH = 256, 32, 8  # a small vocabulary keeps the readout cheap: width is what varies


def layer_outputs(model: GPT, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each layer's output on x: the embedding sum, every attention and MLP branch, the last block's
    output (the residual stream), the logits."""
    taken, hooks = {}, []
    named = {"embedding": model.transformer.drop}
    for i, block in enumerate(model.transformer.h):
        named |= {f"attn.{i}": block.attn, f"mlp.{i}": block.mlp}
    named["residual stream"] = model.transformer.h[-1]  # the last block's output, before the final LayerNorm
    for name, module in named.items():
        hooks.append(module.register_forward_hook(lambda _m, _i, out, name=name: taken.__setitem__(name, out)))
    try:
        taken["logits"] = model.logits(model.hidden(x))
    finally:
        for h in hooks:
            h.remove()
    return {k: v.detach().float() for k, v in taken.items()}


def one_model(cfg: GPTConfig, steps: int, lr: float, seed: int) -> dict:
    """{layer: [mean |x_t|], layer + ' change': [mean |x_t - x_0|]} for t = 0..steps, and the first gradient's global
    norm, for one model trained on one fixed random batch with AdamW over gptlab's groups (no decay or clip)."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, VOCAB, (BATCH, BLOCK + 1), generator=g)
    x, y = data[:, :-1], data[:, 1:]
    betas = tuple(preset("optim", "adamw")["betas"])  # the betas training uses (conf/optim/adamw.yaml)
    opt = torch.optim.AdamW(param_groups(model, lr, 0.0), lr=lr, betas=betas)
    out, first, grad_norm = {}, None, None
    for t in range(steps + 1):
        with torch.no_grad():
            now = layer_outputs(model.eval(), x)
        first = first or now
        for k, v in now.items():
            out.setdefault(k, []).append(v.abs().mean().item())
            out.setdefault(k + " change", []).append((v - first[k]).abs().mean().item())
        if t == steps:
            break
        _, loss = model.train()(x, y)
        loss.backward()
        if grad_norm is None:
            grad_norm = math.sqrt(sum(p.grad.pow(2).sum().item() for p in model.parameters()))
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {"layers": out, "grad_norm": grad_norm}


def model_config(width: int, depth: int, mup: bool, depth_mup: bool, base_width: int, base_depth: int) -> GPTConfig:
    return GPTConfig(n_layer=depth, n_head=4, n_embd=width, block_size=BLOCK, vocab_size=VOCAB, bias=False,
                     mup_base_width=base_width if mup else None, mup_base_depth=base_depth if depth_mup else None)


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x: 0 is flat, 1 grows in proportion."""
    return float(np.polyfit(np.log(xs), np.log(np.maximum(ys, 1e-30)), 1)[0])


def coord_check(widths=(64, 128, 256, 512), mup: bool = True, depths=None, depth_mup: bool = False, steps: int = 4,
                lr: float = 1e-2, seeds=(0, 1), base_width: int = 64, base_depth: int = 2) -> dict:
    """Over widths (at depth 2) or, given depths, over depths (at width base_width): each layer's mean |x_t| and
    mean |x_t - x_0| averaged over seeds, the first gradient norms, and each quantity's log-log slope at t = steps."""
    axis = list(depths) if depths else list(widths)
    sizes = {}
    for n in axis:
        cfg = model_config(base_width if depths else n, n if depths else 2, mup, depth_mup, base_width, base_depth)
        runs = [one_model(cfg, steps, lr, s) for s in seeds]
        layers = {k: [sum(r["layers"][k][t] for r in runs) / len(runs) for t in range(steps + 1)]
                  for k in runs[0]["layers"]}
        sizes[n] = {"layers": layers, "grad_norm": sum(r["grad_norm"] for r in runs) / len(runs)}
    names = list(sizes[axis[0]]["layers"])
    slopes = {k: slope(axis, [sizes[n]["layers"][k][steps] for n in axis]) for k in names}
    slopes["grad_norm"] = slope(axis, [sizes[n]["grad_norm"] for n in axis])
    return {"axis": "depth" if depths else "width", "sizes": sizes, "slopes": slopes, "steps": steps, "lr": lr,
            "mup": mup, "depth_mup": depth_mup, "seeds": list(seeds)}
