"""Interval estimates of scores over a few runs: the interquartile mean and bootstrap intervals.

With five or so training seeds per setting, a mean of runs says more about chance than about
the setting, and a median throws most runs away. Agarwal et al. ("Deep Reinforcement Learning
at the Edge of the Statistical Precipice", NeurIPS 2021; the rliable library) recommend the
interquartile mean (IQM: the mean of the middle 50% of runs) with percentile bootstrap
confidence intervals, the runs resampled within each task (stratified). This module computes
those estimates with numpy alone, for a table of runs x tasks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Resamples of a bootstrap interval: enough that a 95% interval's ends move by well under 1%
# of its width between seeds of the resampling.
RESAMPLES = 2000


def iqm(scores: np.ndarray) -> float:
    """The interquartile mean of every value of ``scores``.

    The mean after dropping the lowest and the highest quarter of values (``floor(n / 4)``
    each, as ``scipy.stats.trim_mean(x, 0.25)`` does): for 5 runs, the mean of the middle 3.

    Args:
        scores: any shape, finite values; (runs,) or (runs, tasks).

    Raises:
        ValueError: no values.
    """
    flat = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if flat.size == 0:
        raise ValueError("the interquartile mean of no scores is undefined")
    cut = flat.size // 4
    return float(flat[cut : flat.size - cut].mean())


def mean(scores: np.ndarray) -> float:
    """The mean of every value of ``scores`` (any shape)."""
    return float(np.mean(np.asarray(scores, dtype=np.float64)))


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The ends of the central ``confidence`` share of bootstrap ``values``."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_interval(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """A statistic of ``scores`` with its stratified percentile bootstrap interval.

    Each resample draws, for every task (column) independently, as many runs as it has with
    replacement, and takes the statistic of the whole resampled table.

    Args:
        scores: (runs, tasks) or (runs,) scores, e.g. each run's mean return per game.
        statistic: of a (runs, tasks) table, e.g. `iqm` or `mean`.
        confidence: the interval's coverage, in (0, 1).
        resamples: bootstrap resamples.
        seed: of the resampling; the same seed gives the same interval.

    Returns:
        (estimate, low, high): the statistic of ``scores`` and the interval's ends.

    Raises:
        ValueError: no runs, or a ``confidence`` outside (0, 1).
    """
    table = np.asarray(scores, dtype=np.float64)
    table = table[:, None] if table.ndim == 1 else table  # (runs, tasks)
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"scores must be (runs, tasks) with runs and tasks, got {table.shape}")
    _check_confidence(confidence)
    runs, tasks = table.shape
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, runs, size=(resamples, runs, tasks))  # run index per task
    resampled = np.take_along_axis(table[None], picks, axis=1)  # (resamples, runs, tasks)
    values = np.array([statistic(r) for r in resampled])
    return (statistic(table), *_percentiles(values, confidence))


def difference_interval(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``statistic(a) - statistic(b)`` with a percentile bootstrap interval.

    ``a`` and ``b`` are independent samples (e.g. the runs of two settings of one game, as
    (runs,) arrays, their lengths may differ); each resample redraws both.

    Returns:
        (difference, low, high). An interval that excludes 0 says that the settings differ
        at that confidence.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError(f"both samples need runs, got {a.size} and {b.size}")
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, a.size, size=(resamples, a.size))]  # (resamples, runs of a)
    rb = b[rng.integers(0, b.size, size=(resamples, b.size))]
    values = np.array([statistic(x) - statistic(y) for x, y in zip(ra, rb, strict=True)])
    return (statistic(a) - statistic(b), *_percentiles(values, confidence))
