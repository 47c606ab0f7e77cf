"""The LightningModule around the GPT: the optimizer and LR schedule its config names, train and val metrics.

    python -c "from gptlab.training.module import GPTModule as M; \
               print(M(dict(n_layer=2, n_head=2, n_embd=64, block_size=64)))"

Hyper-parameters are saved as plain dicts and numbers only, so checkpoints load with weights_only=True.
"""
from __future__ import annotations

import lightning as L
import torch
from torchmetrics import Metric

from gptlab.config import GPTConfig
from gptlab.model.gpt import GPT
from gptlab.optim.optimizer import build_optimizer, default_optimizer, lr_scheduler
from gptlab.optim.schedule import Schedule


class TokenNLL(Metric):
    """Summed negative log-likelihood and token count, reduced by sum across batches and ranks."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, mean_nll: torch.Tensor, tokens: int):
        # out-of-place: states made under trainer.validate's inference mode refuse in-place updates later
        self.nll = self.nll + mean_nll.double() * tokens
        self.tokens = self.tokens + tokens

    def compute(self):
        """(mean NLL, scored targets) over every batch and rank."""
        return self.nll / self.tokens.clamp(min=1), self.tokens


class HalvesNLL(Metric):
    """Summed NLL and target count of each val half (a: the first half of the val windows, b: the rest), so a study
    can choose a setting on one half and report it on the other."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("nll", default=torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.zeros(2, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, window_nll: torch.Tensor, window_tokens: torch.Tensor, second: torch.Tensor):
        half = second.long().to(window_nll.device)
        self.nll = self.nll.index_add(0, half, window_nll.double())
        self.tokens = self.tokens.index_add(0, half, window_tokens.long())

    def compute(self):
        """Mean NLL of half a and half b; NaN for an empty half."""
        loss = self.nll / self.tokens.clamp(min=1)
        return torch.where(self.tokens > 0, loss, torch.full_like(loss, float("nan")))


class GPTModule(L.LightningModule):
    """The GPT under Lightning: `model` its GPTConfig as a dict, `optim` and `sched` their component specs
    (conf/optim/*.yaml, conf/sched/*.yaml, resolved); plain types only, so checkpoints load with weights_only."""

    def __init__(self, model: dict, optim: dict | None = None, sched: dict | None = None, max_steps: int = 1000,
                 tokens_per_step: int = 0, compile: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.model = GPT(GPTConfig(**model))
        self.optim_spec = {**default_optimizer(), **(optim or {})} if "_target_" not in (optim or {}) else optim
        self.schedule = Schedule.of(sched or {})
        self.max_steps, self.tokens_per_step = max_steps, tokens_per_step
        self.val_nll = TokenNLL()
        self.val_halves = HalvesNLL()
        self._loss_sum, self._micro = None, 0  # running sum of micro-batch losses within one optimizer step
        # kept out of nn.Module registration, so state_dict has only model.* keys (no _orig_mod. aliases)
        self.__dict__["compiled"] = torch.compile(self.model) if compile else None

    def training_step(self, batch, batch_idx):
        x, y = batch
        model = self.model if self.compiled is None else self.compiled
        _, loss = model(x, y, return_logits=False)  # Lightning divides by the accumulation itself
        every, accum = self.trainer.log_every_n_steps, self.trainer.accumulate_grad_batches
        # only the steps Lightning writes a row for sum and log their loss: self.log costs ~0.1 ms of Python, and
        # floats become device tensors (a sync), so nothing is logged in between
        if every and (self.global_step + 1) % every == 0:
            self._loss_sum = loss.detach() if self._loss_sum is None else self._loss_sum + loss.detach()
        self._micro += 1
        if self._micro % accum == 0 and self._loss_sum is not None:  # the last micro batch of a logged step
            # the mean over every rank's micro batches (one all-reduce per logged step), so a row means the same on 1
            # process or N; no prog_bar: Lightning would read it every batch
            self.log("train/loss", self._loss_sum / accum, sync_dist=True)
            self.log("lr", self.lr_schedulers().get_last_lr()[0])
            self.log("tokens", float((self.global_step + 1) * self.tokens_per_step))
            self._loss_sum = None
        return loss

    def validation_step(self, batch, batch_idx):
        x, y, *second = batch  # second: which windows lie in val half b (gptlab.data.datamodule.ValWindows)
        loss, window_nll = self.model.window_nll(x, y)  # mean over targets != -1; 0 when there are none
        self.val_nll.update(loss, (y != -1).sum())  # masked targets (loss_mask) count for nothing; no host sync
        if second:
            self.val_halves.update(window_nll, (y != -1).sum(dim=1), second[0])

    def on_validation_epoch_end(self):
        loss, count = self.val_nll.compute()  # synced across ranks: every rank logs the same numbers
        self.val_nll.reset()
        halves = self.val_halves.compute()
        self.val_halves.reset()
        self.log("val/loss_a", halves[0].float())  # the first half of the val windows: where a study selects
        self.log("val/loss_b", halves[1].float())  # the second half: where the selected setting is reported
        self.log("val/loss", loss.float(), prog_bar=True, sync_dist=False, rank_zero_only=False)
        self.log("val/ppl", torch.exp(loss).float(), prog_bar=True)
        self.log("tokens", float(self.global_step * self.tokens_per_step))
        self.log("val/tokens", count.float())  # what was scored (fewer than data.val_tokens on a short split)

    def on_load_checkpoint(self, checkpoint):
        """A resume on another number of ranks keeps the global batch with another accumulation: Lightning's count of
        micro batches, which places the validations, is restated in the new one (read before the loops restore)."""
        restate_micro_batches(checkpoint, self.trainer.accumulate_grad_batches)

    def configure_model(self):
        """Under trainer.strategy=fsdp, shard the GPT across the ranks (gptlab/training/sharding.py)."""
        if getattr(self, "_device_mesh", None) is not None:
            from gptlab.training.sharding import shard
            shard(self.model, self._device_mesh["data_parallel"])

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Clip by global norm here under bf16-mixed: Lightning refuses to clip a fused AdamW under any mixed
        precision, because of fp16's loss scaler, which bf16 does not have (and 16-mixed turns fusing off)."""
        from lightning.pytorch.plugins.precision import MixedPrecision
        plugin = self.trainer.precision_plugin
        if (gradient_clip_val and gradient_clip_algorithm in (None, "norm") and type(plugin) is MixedPrecision
                and plugin.scaler is None):
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        scaler = getattr(self.trainer.precision_plugin, "scaler", None) is not None  # fp16's loss scaler
        opt = build_optimizer(self.optim_spec, self.model, loss_scaler=scaler)
        sched = lr_scheduler(opt, self.schedule, self.max_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}


def restate_micro_batches(checkpoint: dict, accumulation: int) -> None:
    """Shift the fit loop's batch counters by the micro batches the saved steps would have taken at `accumulation`.
    Saves happen at optimizer-step boundaries, so the saved count is steps x the accumulation then (one epoch)."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
    steps = checkpoint.get("global_step", 0)
    if not progress or not steps or progress["total"] != progress["current"] or progress["total"]["ready"] % steps:
        return
    shift = steps * (accumulation - progress["total"]["ready"] // steps)
    for counts in (progress["total"], progress["current"]):
        for key in counts:
            counts[key] += shift
