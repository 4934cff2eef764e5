"""Learning-rate schedule of a training run, shared by the TensorFlow and JAX trainers."""

from __future__ import annotations


class LearningRate:
    """``base``, ramped up linearly over the first ``warmup`` steps and, from step ``decay_start``
    (None: never), falling linearly to zero at ``end``: the rate for a given optimizer step."""

    def __init__(self, base: float, warmup: int = 0, decay_start: int | None = None, end: int = 0) -> None:
        self.base, self.warmup, self.decay_start, self.end = float(base), int(warmup), decay_start, int(end)

    def __call__(self, step: int) -> float:
        rate = self.base
        if self.warmup > 0:
            rate *= min(1.0, (step + 1) / self.warmup)
        if self.decay_start is not None:
            rate *= min(1.0, max(0.0, (self.end - step) / max(1, self.end - self.decay_start)))
        return rate
