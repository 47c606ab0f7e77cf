"""Optimizers built from config: the model's parameter roles become groups, and conf/optim/<name>.yaml's _target_
is called with them. Any torch.optim class is one YAML file; an optimizer that needs code is one file here and one
YAML (MuonAdamW in muon.py).

    python -m gptlab.train optim=muon optim.lr=0.02
    python -c "from gptlab import GPT, GPTConfig; from gptlab.optim.optimizer import param_groups; \
               print([(g['role'], len(g['params'])) for g in param_groups(GPT(GPTConfig(2, 2, 32, 16)), 1e-3, 0.1)])"

Groups, in parameter order, from GPT.param_roles(): embedding, hidden, head (untied only) and gain. Weight decay
goes to the matrices (embedding, hidden, head), not to gains and biases. muP (model.mup_base_width) gives the hidden
group lr x hidden_lr and weight decay / hidden_lr (gptlab/model/mup.py); the standard parametrisation leaves every
group at the configured rate, so AdamW computes exactly what one matrices-and-vectors split did. Each group keeps
its `role`, which an optimizer may read (Muon takes the hidden group).
"""
from __future__ import annotations

import torch

DECAYED = ("embedding", "hidden", "head")  # roles whose matrices take weight decay


def param_groups(model, lr: float, weight_decay: float) -> list[dict]:
    """One group per non-empty role: {params, role, lr, weight_decay}; the first carries the configured rate (the
    one metrics.csv logs)."""
    mult, groups = model.mult, []
    for role, named in model.param_roles().items():
        if not named:
            continue
        scale = mult.hidden_lr if role == "hidden" else 1.0
        decay = weight_decay / scale if role in DECAYED else 0.0
        groups.append({"params": [p for _, p in named], "role": role, "lr": lr * scale, "weight_decay": decay})
    return groups


def default_optimizer() -> dict:
    """conf/optim/adamw.yaml, resolved without a recipe: what a module built without an optim spec trains with."""
    from omegaconf import OmegaConf

    from gptlab.config.presets import CONF
    return OmegaConf.to_container(OmegaConf.merge({"recipe": {}}, {"optim": OmegaConf.load(CONF / "optim" /
                                                                                             "adamw.yaml")}),
                                  resolve=True)["optim"]


def optimizer_arguments(spec: dict) -> dict:
    """The optimizer's keyword arguments: its spec without Hydra's _target_ and _partial_."""
    return {k: v for k, v in spec.items() if k not in ("_target_", "_partial_")}


def build_optimizer(spec: dict, model, loss_scaler: bool = False) -> torch.optim.Optimizer:
    """The optimizer `spec` names (conf/optim/*.yaml, resolved), over the model's parameter groups. Under fp16's
    loss scaler a fused kernel is turned off: Lightning unscales, then clips, then steps."""
    from hydra.utils import get_object
    kwargs = optimizer_arguments(spec)
    if loss_scaler and "fused" in kwargs:
        kwargs["fused"] = False
    lr, decay = kwargs.pop("lr"), kwargs.pop("weight_decay", 0.0)
    return get_object(spec["_target_"])(param_groups(model, lr, decay), lr=lr, weight_decay=decay, **kwargs)


def lr_scheduler(optimizer, schedule, max_steps: int):
    """LambdaLR over every group: each group's own rate times the schedule's factor at the step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.factor(step, max_steps))
