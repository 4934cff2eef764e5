"""A network behind a few fixed batch shapes, so that an item's output never depends on its batch.

Every call runs the network on padded batches of the shapes in ``chunks``: one compiled graph per
shape, small shapes for single requests (low latency) and large ones for grids and micro-batches
(throughput). Within one shape an item's output does not depend on its neighbours. Across shapes it
may: oneDNN picks its kernels by batch size, and on some CPUs (AVX2 without AVX-512) a batch of 1 or
4 sums in another order than a batch of 16, so the last bits differ and now and then a pixel by one
level. So at load time every shape is checked against the largest on a probe batch, and the shapes
that differ are not used on that machine. The generator and the upscalers both run this way.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

# A compiled call costs about as much as this many extra items (fixed overhead), whatever its size:
# measured for the generator on the 2-core CPU as 2.6 ms + 0.62 ms per face. It decides how a batch
# is cut into chunks.
CALL_OVERHEAD_ITEMS = 4


class FixedBatchRunner:
    """``fn`` (a Keras model or any callable on a batch) compiled for each shape in ``chunks``.

    ``item_shape`` and ``dtype`` describe one input item; ``probe`` holds a few items used to warm
    every graph up at load time and to drop the shapes that compute in another order.
    """

    def __init__(self, fn: Callable, item_shape: tuple[int, ...], chunks: tuple[int, ...],
                 probe: np.ndarray, what: str = "network", dtype: str = "float32") -> None:
        import tensorflow as tf

        self._tf = tf
        self.item_shape = tuple(item_shape)
        self.dtype = np.dtype(dtype)
        self.what = what
        run = tf.function(lambda x: fn(x, training=False), autograph=False)
        self._calls = {n: run.get_concrete_function(tf.TensorSpec((n, *self.item_shape), dtype))
                       for n in sorted(chunks)}
        # Also the warm-up: the first call of each graph is slow; pay it now, not on a user's request.
        self.chunks = self._bit_identical_chunks(np.asarray(probe, self.dtype))
        self._plans = chunk_plans(self.chunks)

    @property
    def max_batch(self) -> int:
        """The largest batch one compiled call takes; bigger inputs are split."""
        return self.chunks[-1]

    def _run(self, n: int, items: np.ndarray) -> np.ndarray:
        padded = np.zeros((n, *self.item_shape), self.dtype)
        padded[: len(items)] = items
        return self._calls[n](self._tf.constant(padded)).numpy()[: len(items)]

    def _bit_identical_chunks(self, probe: np.ndarray) -> tuple[int, ...]:
        shapes = tuple(self._calls)
        largest = shapes[-1]
        reference = self._run(largest, probe[:largest])
        kept = tuple(n for n in shapes
                     if n == largest or np.array_equal(self._run(n, probe[:n]), reference[:n]))
        if kept != shapes:
            log.info("%s: batch shapes %s compute in another order than %d on this CPU: not used, so that an "
                     "item gives the same output in any batch", self.what, sorted(set(shapes) - set(kept)), largest)
        return kept

    def __call__(self, items: np.ndarray) -> np.ndarray:
        """(N, *item_shape) -> the network's outputs for each item, in order."""
        items = np.asarray(items, self.dtype)
        if items.shape[1:] != self.item_shape:
            raise ValueError(f"{self.what} takes items of shape {self.item_shape}, not {items.shape[1:]}")
        out = []
        for start in range(0, len(items), self.max_batch):
            part = items[start:start + self.max_batch]
            for n in self._plans[len(part)]:
                piece, part = part[:n], part[n:]
                out.append(self._run(n, piece))
        return np.concatenate(out) if out else np.zeros((0,), np.float32)


def chunk_plans(chunks: tuple[int, ...]) -> list[tuple[int, ...]]:
    """For every batch size up to the largest chunk, the cheapest list of chunk shapes covering it.

    Padding is wasted work and every call has a fixed cost, so 17 items run as 16 + 1, and 60 as 64.
    """
    cost = [0.0] + [float("inf")] * chunks[-1]
    plans: list[tuple[int, ...]] = [()] + [()] * chunks[-1]
    for n in range(1, chunks[-1] + 1):
        for c in chunks:
            rest = max(0, n - c)
            if c + CALL_OVERHEAD_ITEMS + cost[rest] < cost[n]:
                cost[n] = c + CALL_OVERHEAD_ITEMS + cost[rest]
                plans[n] = (c,) + plans[rest]
    return plans
