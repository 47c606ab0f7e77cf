"""The LightningDataModule: random training windows streamed from memory-mapped shards, fixed val windows.

    python -c "from gptlab.data.datamodule import TokenDataModule as D; \
               print(next(iter(D('data/shakespeare', 64, 4).train_dataloader()))[0].shape)"

Training draws one global stream of micro batches: micro batch g is drawn by a generator seeded with (seed, 0, g),
and optimizer step s takes g = s A W ... (s + 1) A W - 1 (A micro batches accumulated on each of W ranks; rank r's
j-th of the step is g = s A W + j W + r). So the stream is a pure function of the step, whatever the number of
ranks or loader workers: a checkpoint stores how many global micro batches were consumed, and a run resumed on
another number of ranks (the same global batch, another accumulation) continues with the same windows.
Validation is the first `val_tokens` tokens of val cut into consecutive windows: the same tokens for every
run and every model, split across ranks without padding so summed NLL and token counts are exact.
With loss_mask (datasets prepared with .mask.bin files, e.g. chat), a target whose mask is 0 becomes -1, which
the model ignores: train and val loss cover assistant tokens only. The windows drawn are the same either way.
"""
from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from gptlab.data import shards


class TrainWindows(IterableDataset):
    """Endless batches [batch, block] of (x, y) windows, documents joined by EOT as nanoGPT does."""

    def __init__(self, files: list[str], block_size: int, batch_size: int, seed: int, rank: int, start: int = 0,
                 mask_files: list[str] | None = None, world: int = 1, accumulation: int = 1):
        self.files, self.block, self.batch = files, block_size, batch_size
        self.seed, self.rank, self.start, self.world, self.accumulation = seed, rank, start, world, accumulation
        self.mask_files = mask_files
        self.sizes = [len(shards.open_shard(f)) for f in files]  # headers checked once, not per batch
        sizes = np.array(self.sizes, dtype=np.int64)
        self.windows = np.maximum(sizes - block_size, 0)  # start offsets available in each shard
        if self.windows.sum() == 0:
            raise ValueError(f"train split has no shard longer than block_size+1={block_size + 1} tokens: {files}")
        self.weights = self.windows / self.windows.sum()

    def global_index(self, k: int) -> int:
        """The global micro batch this rank's k-th one is: step k // A, slot k % A, then this rank's place."""
        step, slot = divmod(k, self.accumulation)
        return (step * self.accumulation + slot) * self.world + self.rank

    def batch_at(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 0, self.global_index(k)])
        which = rng.choice(len(self.files), size=self.batch, p=self.weights)
        xy = np.empty((self.batch, self.block + 1), dtype=np.int64)
        keep = np.ones((self.batch, self.block), dtype=bool)  # targets trained on
        for f in np.unique(which):
            # a fresh memmap per batch: nanoGPT found long-lived ones grow resident memory over a run
            tokens, rows = shards.map_tokens(self.files[f], self.sizes[f]), np.flatnonzero(which == f)
            mask = shards.map_tokens(self.mask_files[f], self.sizes[f], shards.MASK_DTYPE) if self.mask_files else None
            for row, off in zip(rows, rng.integers(0, self.windows[f], size=len(rows))):
                xy[row] = tokens[off:off + self.block + 1]
                if mask is not None:
                    keep[row] = mask[off + 1:off + self.block + 1]
        x, y = torch.from_numpy(xy[:, :-1]), torch.from_numpy(np.where(keep, xy[:, 1:], -1))
        return x, y

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        k = self.start + wid  # the loader takes batches from workers round-robin: k, k+1, ... in order
        while True:
            yield self.batch_at(k)
            k += nw


class ValWindows(Dataset):
    """Window i = tokens[i*T : i*T+T+1] of the first n_tokens of val; this rank's share is i = rank, rank+world, ..."""

    def __init__(self, files: list[str], block_size: int, n_tokens: int, rank: int = 0, world: int = 1,
                 mask_files: list[str] | None = None):
        # the first n_tokens+1 of the split, across shards in order, and their loss mask (all kept without one)
        self.tokens = torch.from_numpy(shards.first_tokens(map(shards.open_shard, files), n_tokens + 1))
        self.keep = (torch.from_numpy(shards.first_tokens(map(shards.open_mask, mask_files), n_tokens + 1)).bool()
                     if mask_files else torch.ones(len(self.tokens), dtype=torch.bool))
        self.block = block_size
        n = (len(self.tokens) - 1) // block_size
        if n == 0:
            raise ValueError(f"val split has {len(self.tokens)} tokens, fewer than one window of {block_size + 1}")
        self.index = list(range(rank, n, world))
        self.half = (n + 1) // 2  # windows [0, half) are val half a, the rest half b (empty with one window)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        """(inputs, targets with -1 where masked, whether the window lies in the second half of the val tokens)."""
        s = self.index[i] * self.block
        w = self.tokens[s:s + self.block + 1]
        return w[:-1], w[1:].masked_fill(~self.keep[s + 1:s + self.block + 1], -1), self.index[i] >= self.half


class TokenDataModule(L.LightningDataModule):
    def __init__(self, data_dir: str, block_size: int, batch_size: int, val_tokens: int = 65536,
                 num_workers: int = 0, seed: int = 1337, vocab_size: int = 50257, tokenizer: str = "gpt2",
                 loss_mask: bool = False, accumulation: int = 1):
        super().__init__()
        self.accumulation = accumulation  # micro batches per optimizer step on each rank
        self.data_dir, self.block_size, self.batch_size = data_dir, block_size, batch_size
        self.val_tokens, self.num_workers, self.seed = val_tokens, num_workers, seed
        self.vocab_size, self.tokenizer, self.loss_mask = vocab_size, tokenizer, loss_mask
        self.train_batches = 0  # batches consumed by training: the stream's position, saved in checkpoints
        self._split_files = {}  # split -> shard paths, verified once by check()

    def check(self) -> None:
        """Open and verify the dataset now, so missing or damaged data fails before any model is built."""
        for split in ("train", "val"):
            self._files(split)
            self._masks(split)
        held = shards.load_manifest(self.data_dir)["splits"]["val"]["tokens"]
        scored = (min(held, self.val_tokens + 1) - 1) // self.block_size * self.block_size
        if scored < self.val_tokens:  # the records say what was scored: val/tokens in metrics.csv and summary.json
            warnings.warn(f"data.val_tokens={self.val_tokens:,} but {self.data_dir} val holds {held:,} tokens: each "
                          f"validation scores {scored:,} (whole windows of {self.block_size})", stacklevel=2)

    def val_start(self, n: int) -> list[int]:
        """The val split's first n tokens: the start of a val document (the end-of-run sample's default prompt)."""
        return shards.first_tokens(map(shards.open_shard, self._files("val")), n).tolist()

    def _files(self, split: str) -> list[str]:
        if split not in self._split_files:
            self._split_files[split] = [m.filename for m in shards.open_split(
                self.data_dir, split, tokenizer=self.tokenizer, vocab_size=self.vocab_size)]
        return self._split_files[split]

    def _masks(self, split: str) -> list[str] | None:
        """The split's loss-mask files when loss_mask is on (None when off); a dataset without them is an error."""
        if not self.loss_mask:
            return None
        if (files := shards.mask_files(self.data_dir, split)) is None:
            raise shards.ShardError(f"{self.data_dir}: loss_mask is on but split {split!r} was prepared without "
                                    "loss masks (only the chat source writes them); set data.loss_mask=false")
        return files

    def _rank_world(self):
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def _loader(self, dataset, **kw):
        t = self.trainer  # pinned pages (asynchronous host-to-device copies) only when batches go to a CUDA device
        pin = t.strategy.root_device.type == "cuda" if t is not None else torch.cuda.is_available()
        # an own generator: a loader seeds its workers from the global torch RNG otherwise, and a resumed run creates
        # its loaders at other points of that stream than an uninterrupted one (dropout masks would differ)
        return DataLoader(dataset, num_workers=self.num_workers, pin_memory=pin,
                          persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.seed), **kw)

    def train_dataloader(self):
        rank, world = self._rank_world()
        ds = TrainWindows(self._files("train"), self.block_size, self.batch_size, self.seed, rank, self.train_batches,
                          self._masks("train"), world, self.accumulation)
        return self._loader(ds, batch_size=None, prefetch_factor=4 if self.num_workers else None)

    def val_dataloader(self):
        rank, world = self._rank_world()
        ds = ValWindows(self._files("val"), self.block_size, self.val_tokens, rank, world, self._masks("val"))
        return self._loader(ds, batch_size=self.batch_size, shuffle=False)

    def on_before_batch_transfer(self, batch, dataloader_idx):
        if self.trainer is not None and self.trainer.training:
            self.train_batches += 1
        return batch

    def state_dict(self):
        """This rank's micro batches consumed, and the stream's: checkpoints are written at step boundaries, where
        every rank has consumed as many."""
        return {"train_batches": self.train_batches, "global_batches": self.train_batches * self._rank_world()[1]}

    def load_state_dict(self, state):
        world = self._rank_world()[1]
        if "global_batches" not in state:  # a checkpoint from before the global stream: its own rank's count
            self.train_batches = int(state["train_batches"])
            return
        consumed = int(state["global_batches"])
        if consumed % world:
            raise ValueError(f"the checkpoint consumed {consumed} micro batches, which {world} ranks cannot share "
                             "evenly; resume on a number of devices that divides the global batch")
        self.train_batches = consumed // world
