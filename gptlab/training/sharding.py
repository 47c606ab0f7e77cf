"""Fully sharded data parallel (FSDP2): parameters, gradients and optimizer state split across every rank.

    python -m gptlab.train trainer=fsdp model=gpt2-xl trainer.devices=8                  # 8 GPUs
    python -m gptlab.train trainer=fsdp trainer.accelerator=cpu trainer.devices=2 trainer.precision=32-true

`trainer.strategy=fsdp` maps to Lightning's ModelParallelStrategy with one data-parallel dimension over all ranks
(torch's `fully_shard`, the FSDP2 API torchtitan uses), not to Lightning's FSDPStrategy: that wraps FSDP1, which
Lightning refuses on a CPU accelerator, and FSDP2 is what PyTorch develops. Checkpoints are consolidated on rank 0
into one ordinary `last.ckpt` (the same keys as a DDP run's), so eval, sample, generations and `hf export` read them
as they read any run's, and a resume may change strategy.
"""
from __future__ import annotations

from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn


class FullySharded(ModelParallelStrategy):
    """ModelParallelStrategy with every rank in the one data-parallel (sharding) dimension and no tensor parallelism;
    checkpoints gathered into one file by rank 0."""

    def __init__(self, **kwargs):
        super().__init__(data_parallel_size=1, tensor_parallel_size=1, save_distributed_checkpoint=False, **kwargs)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes  # known once the connector set them
        super().setup_environment()


def strategy(name: str):
    """What Lightning's Trainer gets for trainer.strategy."""
    return FullySharded() if name == "fsdp" else name


def shard(model: nn.Module, mesh) -> None:
    """fully_shard each transformer block, then the rest (embeddings, final norm, head; tied weights stay one
    parameter): a block's weights are gathered just before it runs and freed after. Idempotent, as Lightning calls
    configure_model again for each fit and validate."""
    from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
    if isinstance(model, FSDPModule):
        return
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    register_fsdp_forward_method(model, "window_nll")  # validation's entry point: gathers like forward does

