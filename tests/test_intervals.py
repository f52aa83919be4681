"""Interquartile means and bootstrap intervals (`permakey.evaluation.intervals`)."""

import numpy as np
import pytest
from scipy import stats

from permakey.evaluation.intervals import bootstrap_interval, difference_interval, iqm, mean


@pytest.mark.parametrize("n", [1, 4, 5, 8, 20, 101])
def test_iqm_is_scipys_quarter_trimmed_mean(n):
    values = np.random.default_rng(n).normal(size=n) * 10
    assert iqm(values) == pytest.approx(stats.trim_mean(values, 0.25))


def test_iqm_ignores_an_outlying_quarter_where_the_mean_does_not():
    runs = np.array([1.0, 2.0, 3.0, 4.0, 1000.0])
    assert iqm(runs) == pytest.approx(3.0)  # the middle three
    assert mean(runs) == pytest.approx(202.0)
    with pytest.raises(ValueError, match="no scores"):
        iqm(np.array([]))


def test_bootstrap_interval_covers_the_true_mean_about_as_often_as_it_says():
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(200):
        sample = rng.normal(5.0, 2.0, size=30)
        _, low, high = bootstrap_interval(sample, mean, resamples=500, seed=trial)
        covered += low <= 5.0 <= high
    assert 0.88 <= covered / 200 <= 0.99  # a 95% percentile interval, 30 runs


def test_bootstrap_interval_is_reproducible_and_narrows_with_runs():
    rng = np.random.default_rng(1)
    few, many = rng.normal(size=5), rng.normal(size=500)
    assert bootstrap_interval(few, seed=3) == bootstrap_interval(few, seed=3)
    _, low_f, high_f = bootstrap_interval(few)
    _, low_m, high_m = bootstrap_interval(many)
    assert high_m - low_m < (high_f - low_f) / 3
    estimate, low, high = bootstrap_interval(few)
    assert low <= estimate <= high and estimate == iqm(few)


def test_stratified_bootstrap_resamples_runs_within_each_task():
    # Task 0's runs are all 0 and task 1's all 10: a resample that mixed tasks would move the
    # statistic; resampling within each task never does.
    table = np.stack([np.zeros(6), np.full(6, 10.0)], axis=1)  # (runs, tasks)
    assert bootstrap_interval(table, mean) == (5.0, 5.0, 5.0)
    with pytest.raises(ValueError, match="runs, tasks"):
        bootstrap_interval(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval(np.ones(3), confidence=1.5)


def test_difference_interval_separates_distinct_settings_and_not_equal_ones():
    rng = np.random.default_rng(2)
    better, worse = rng.normal(10, 1, size=8), rng.normal(0, 1, size=8)
    diff, low, high = difference_interval(better, worse)
    assert low > 0 and diff == pytest.approx(iqm(better) - iqm(worse))
    _, low, high = difference_interval(rng.normal(0, 1, size=8), rng.normal(0, 1, size=8))
    assert low < 0 < high
    with pytest.raises(ValueError, match="both samples"):
        difference_interval(np.ones(3), np.array([]))
