"""Batch samplers over a token stream, both resumable through `state_dict()`.

- `RandomWindows`: random contiguous windows of `block_size + 1` tokens (the usual memmap
  loader): cheap, and what most trainers do.
- `SequentialEpochs`: the stream cut into non-overlapping windows, visited in a fresh seeded order
  each epoch, so that the number of times each token is seen is known exactly (for studies of
  repetition). With several processes, rank r takes every world-th window of the order.
"""

from __future__ import annotations

import numpy as np
import torch

from scalelab.errors import UserError


def _to_tensors(windows: np.ndarray, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """windows (B, T + 1) -> inputs (B, T), targets (B, T) as int64 on device."""
    t = torch.from_numpy(windows.astype(np.int64))
    x, y = t[:, :-1], t[:, 1:]
    if torch.device(device).type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.contiguous(), y.contiguous()


class RandomWindows:
    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int, rank: int = 0):
        if tokens.size < block_size + 2:
            raise UserError(
                f"the split holds {tokens.size} tokens, fewer than one window of {block_size + 1}; "
                "use more data or a shorter model.block_size"
            )
        self.tokens, self.block, self.batch = tokens, block_size, batch_size
        self.rng = np.random.default_rng([seed, rank])

    def next_windows(self) -> np.ndarray:
        starts = self.rng.integers(0, self.tokens.size - self.block - 1, size=self.batch)
        return np.stack([self.tokens[s : s + self.block + 1] for s in starts])

    def next(self, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        return _to_tensors(self.next_windows(), device)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class SequentialEpochs:
    """Epoch-exact iteration: every window once per epoch, in a seeded order."""

    def __init__(
        self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int, rank: int = 0, world: int = 1
    ):
        self.tokens, self.block, self.batch = tokens, block_size, batch_size
        self.n_windows = (tokens.size - 1) // block_size
        if self.n_windows < batch_size * world:
            raise UserError(
                f"the split holds {self.n_windows} windows of {block_size} tokens, fewer than one batch "
                f"({batch_size} x {world} processes); use more data or a smaller batch"
            )
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch, self.pos = 0, 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)
        usable = order.size // self.world * self.world  # every rank gets the same count
        return order[:usable][self.rank :: self.world]

    def window(self, index: int) -> np.ndarray:
        s = index * self.block
        return self.tokens[s : s + self.block + 1]

    def next_indices(self) -> np.ndarray:
        """The window indices of the next batch, moving to a new epoch when this one runs out."""
        if self.pos + self.batch > self._order.size:
            self.epoch += 1
            self.pos = 0
            self._order = self._epoch_order(self.epoch)
        idx = self._order[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return idx

    def next(self, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        return _to_tensors(np.stack([self.window(i) for i in self.next_indices()]), device)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._order = self._epoch_order(self.epoch)


def eval_windows(tokens: np.ndarray, block_size: int, batch_size: int, n_batches: int, seed: int) -> np.ndarray:
    """A fixed set of random validation windows (n_batches, batch_size, block_size + 1).

    The same windows are used at every evaluation of a run, so successive estimates differ only
    by the model, not by the sample.
    """
    if tokens.size < block_size + 2:
        raise UserError(
            f"the evaluation split holds {tokens.size} tokens, fewer than one window of {block_size + 1}"
        )
    rng = np.random.default_rng([seed, 7919])
    starts = rng.integers(0, tokens.size - block_size - 1, size=(n_batches, batch_size))
    return np.stack([[tokens[s : s + block_size + 1] for s in row] for row in starts]).astype(np.int64)
