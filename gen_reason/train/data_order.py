"""Which samples each process trains on at each data position, and the batches the loop
takes from the encode-once cache: a pure function of (seed, position), so a resumed run
and a run on another number of processes see what an uninterrupted one would."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from gen_reason.errors import UserError
from gen_reason.train.conditioning import ConditioningCache
from gen_reason.train.losses import sample_generator

if TYPE_CHECKING:
    from gen_reason.train.lora_config import LoraTrainConfig


class DataOrder:
    """Which samples each process trains on at each data position (micro-batch).

    Epoch ``e`` is a permutation drawn from (seed, e); data position ``p`` takes the
    ``p``-th global batch of ``batch_size * processes`` samples (an incomplete last one is
    dropped) and process ``r`` its slots ``[r * batch_size, (r + 1) * batch_size)``.
    """

    def __init__(self, num_samples: int, batch_size: int, processes: int, rank: int, seed: int) -> None:
        self.num_samples, self.batch_size, self.rank, self.seed = num_samples, batch_size, rank, seed
        self.global_batch = batch_size * processes
        self.per_epoch = num_samples // self.global_batch
        if self.per_epoch < 1:
            raise UserError(f"the dataset has {num_samples} training samples, fewer than one global batch "
                            f"({batch_size} per process x {processes} processes)")
        self._epoch: tuple[int, list[int]] | None = None

    def _permutation(self, epoch: int) -> list[int]:
        if self._epoch is None or self._epoch[0] != epoch:
            order = torch.randperm(self.num_samples, generator=sample_generator(self.seed, 1, epoch)).tolist()
            self._epoch = (epoch, order)
        return self._epoch[1]

    def slots(self) -> range:
        """This process's positions within a global batch."""
        return range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)

    def indices(self, position: int) -> list[int]:
        """This process's sample indices at data position ``position``."""
        epoch, within = divmod(position, self.per_epoch)
        order = self._permutation(epoch)
        start = within * self.global_batch
        return [order[start + slot] for slot in self.slots()]

    def generators(self, position: int) -> list[torch.Generator]:
        """One generator per sample of this process's batch (noise, timesteps, latent samples)."""
        return [sample_generator(self.seed, 2, position, slot) for slot in self.slots()]


def total_steps(config: LoraTrainConfig, order: DataOrder) -> int:
    """Optimizer steps in the run: ``max_steps``, else ``epochs`` over the data."""
    if config.max_steps is not None:
        return config.max_steps
    return max(1, config.epochs * order.per_epoch // config.gradient_accumulation_steps)


def dataset_batches(cache: ConditioningCache, order: "DataOrder", device):
    """``data(position) -> (batch, generators)`` for the loop: this process's samples at a data
    position, from the encode-once cache, and one noise generator per sample."""

    def data(position: int):
        return cache.batch(order.indices(position), device), order.generators(position)

    return data
