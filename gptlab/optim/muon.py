"""Muon on the hidden matrices, AdamW on everything else, as one optimizer (Keller Jordan's MuonWithAuxAdam): what
optim=muon builds (conf/optim/muon.yaml gives every rate, with its source).

    python -m gptlab.train optim=muon                      # the default job with Muon
    python -m gptlab.train optim=muon optim.lr=0.04 optim.embedding_lr=0.004

torch.optim.Muon (momentum, Nesterov, 5 Newton-Schulz steps that orthogonalise the update, a shape-dependent rate
adjustment) steps the `hidden` group, which holds only 2-D matrices; torch.optim.AdamW (fused where it can be) steps
the embedding, head and gain groups, each at its own rate. Both share this optimizer's param_groups and state, so
Lightning, the LR schedule (every group's rate times its factor), gradient clipping, DDP, checkpoints and resume see
one ordinary optimizer. Clipping under Muon clips the gradient that enters Muon's momentum; the update itself is
orthogonalised, so its size is set by the rate, not by the gradient's norm.
"""
from __future__ import annotations

import torch


class MuonAdamW(torch.optim.Optimizer):
    """One optimizer over role-tagged groups (gptlab/optim/optimizer.py): Muon for `hidden`, AdamW for the
    rest. Every argument comes from conf/optim/muon.yaml."""

    def __init__(self, params, *, lr: float, weight_decay: float, momentum: float, nesterov: bool, ns_steps: int,
                 adjust_lr_fn: str, embedding_lr: float, head_lr: float, gain_lr: float, betas, eps: float,
                 adam_weight_decay: float, fused: bool | None = None):
        groups = [dict(g) for g in params]
        roles = {g.get("role") for g in groups}
        if "hidden" not in roles:
            raise ValueError("optim=muon needs the model's hidden matrices (a group with role 'hidden')")
        rates = {"embedding": embedding_lr, "head": head_lr, "gain": gain_lr}
        hidden = [g for g in groups if g.get("role") == "hidden"]
        rest = [{**g, "lr": rates[g["role"]], "weight_decay": adam_weight_decay if g["role"] != "gain" else 0.0}
                for g in groups if g.get("role") != "hidden"]
        self.muon = torch.optim.Muon(hidden, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                     ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn)
        self.adamw = torch.optim.AdamW(rest, lr=embedding_lr, betas=tuple(betas), eps=eps, fused=fused)
        super().__init__(self.muon.param_groups + self.adamw.param_groups, {})
        self.param_groups = self.muon.param_groups + self.adamw.param_groups  # the very same dicts
        self._share_state()

    def _share_state(self) -> None:
        """The inner optimizers read and write this optimizer's param_groups and state (their params never meet)."""
        n = len(self.muon.param_groups)
        self.muon.param_groups, self.adamw.param_groups = self.param_groups[:n], self.param_groups[n:]
        self.muon.state = self.adamw.state = self.state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)  # new group dicts and a new state: point the inner optimizers at them
        self._share_state()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss
