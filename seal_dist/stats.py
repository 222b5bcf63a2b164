"""Confidence intervals for accuracies measured over passages: a percentile bootstrap that resamples passages
(contexts), the unit that varies between evaluations, with every condition resampled together so that the
difference of two conditions is a paired comparison."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def bootstrap(scores: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """`scores` is conditions x contexts (each context's mean accuracy under each condition); returns the
    conditions' mean accuracy over `resamples` resamplings of the contexts (conditions x resamples)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, scores.shape[1], size=(resamples, scores.shape[1]))
    return scores[:, picks].mean(axis=-1)


def interval(estimate: float, resampled: np.ndarray, confidence: float) -> Interval:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high))


@dataclass(frozen=True)
class Ordering:
    """`better` beats `worse` by `gap` (its interval); significant where the interval excludes 0."""

    better: str
    worse: str
    gap: Interval

    @property
    def significant(self) -> bool:
        return self.gap.low > 0


def orderings(names: list[str], scores: np.ndarray, resampled: np.ndarray, confidence: float) -> list[Ordering]:
    """Each condition against the one before it (the comparison's order: no update, passage, round 0, ...)."""
    means = scores.mean(axis=1)
    return [Ordering(names[i], names[i - 1],
                     interval(means[i] - means[i - 1], resampled[i] - resampled[i - 1], confidence))
            for i in range(1, len(names))]
