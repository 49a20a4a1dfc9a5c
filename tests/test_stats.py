"""pglab.stats: IQM and bootstrap intervals against hand-computed values and rliable's formulas."""

import math

import numpy as np
import pytest

from pglab import stats


def trim_mean_25(x):
    """scipy.stats.trim_mean(x, 0.25) written out (rliable's aggregate_iqm): sort, cut
    int(0.25 n) from each end, mean of the rest."""
    a = np.sort(np.asarray(x, dtype=float).ravel())
    k = int(0.25 * a.size)
    return a[k : a.size - k].mean()


def test_iqm_by_hand():
    assert stats.iqm([1.0, 2.0, 3.0, 100.0]) == pytest.approx(2.5)  # k = 1: mean of 2, 3
    assert stats.iqm([5.0, 1.0, 3.0]) == pytest.approx(3.0)  # k = 0: the mean
    assert stats.iqm(np.arange(8.0)) == pytest.approx(3.5)  # k = 2: mean of 2..5
    assert stats.iqm([7.0]) == 7.0
    assert math.isnan(stats.iqm([]))
    rng = np.random.default_rng(1)
    for n in (4, 5, 10, 13, 50):
        x = rng.standard_cauchy(n)
        assert stats.iqm(x) == pytest.approx(trim_mean_25(x))
    rows = rng.normal(size=(6, 9))
    np.testing.assert_allclose(stats.iqm(rows, axis=1), [trim_mean_25(r) for r in rows])


def test_bootstrap_ci_is_the_percentile_interval_of_resampled_means():
    """The interval equals rliable's recipe run by hand with the same resample indices."""
    x = np.array([3.0, 9.0, 1.0, 4.0, 7.0, 2.0])
    est = stats.bootstrap_ci(x, "mean", reps=500, seed=3)
    idx = np.random.default_rng(3).integers(0, 6, size=(500, 6, 1))
    boot = x.reshape(-1, 1)[idx, 0].reshape(500, 6).mean(axis=1)
    assert est.point == pytest.approx(x.mean()) and est.n == 6
    np.testing.assert_allclose([est.lo, est.hi], np.quantile(boot, [0.025, 0.975]))
    again = stats.bootstrap_ci(x, "mean", reps=500, seed=3)
    assert (again.lo, again.hi) == (est.lo, est.hi)  # fixed seed: same table every rerun


def test_one_seed_gives_a_point_and_no_interval_and_nan_runs_are_dropped():
    est = stats.bootstrap_ci([np.nan, 4.0, np.nan])
    assert est.point == 4.0 and est.n == 1 and math.isnan(est.lo) and math.isnan(est.hi)
    empty = stats.bootstrap_ci([np.nan])
    assert empty.n == 0 and math.isnan(empty.point)
    assert empty.to_json()["point"] is None


def test_interval_is_clipped_to_the_bounds():
    x = np.array([0.0, 0.0, 0.0, 500.0, 500.0])
    est = stats.bootstrap_ci(x, reps=400, bounds=(0.0, 500.0))
    assert 0.0 <= est.lo <= est.point <= est.hi <= 500.0
    _, lo, hi, _ = stats.curve_ci(np.array([[490.0, 500.0, 500.0, 10.0]]), bounds=(0.0, 500.0))
    assert lo[0] >= 0.0 and hi[0] <= 500.0


def test_stratified_bootstrap_resamples_within_each_task():
    """Task 0 is constant 0 and task 1 constant 10: any within-task resample has mean 5, so
    the stratified interval is exactly [5, 5]; pooled resampling would spread it."""
    scores = np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
    est = stats.stratified_bootstrap_ci(scores, "mean", reps=200)
    assert (est.point, est.lo, est.hi, est.n) == (5.0, 5.0, 5.0, 4)
    iqm = stats.stratified_bootstrap_ci(scores, "iqm", reps=200)
    assert iqm.point == pytest.approx(trim_mean_25(scores)) and iqm.lo == iqm.hi == 5.0


def test_bootstrap_covers_the_true_mean_about_95_percent_of_the_time():
    """Coverage on a known distribution: N(2, 3^2), n = 50 runs, 1000 studies (SE of the
    rate ~0.007). The percentile bootstrap runs slightly narrow at finite n (about 94% in
    theory at n = 50, 93.2% here); a broken interval (half width, wrong quantiles, pooled
    over studies) lands far outside [0.91, 0.97]."""
    rng = np.random.default_rng(0)
    data = rng.normal(2.0, 3.0, size=(1000, 50))
    hits = 0
    for k, x in enumerate(data):
        est = stats.bootstrap_ci(x, reps=1000, seed=k)
        hits += est.lo <= 2.0 <= est.hi
    assert 0.91 <= hits / 1000 <= 0.97


def test_curve_ci_uses_the_runs_present_at_each_point():
    """Ragged runs and a NaN stretch: each point's statistics use only the runs with data."""
    v = np.array(
        [
            [1.0, 3.0, 5.0],
            [2.0, np.nan, 6.0],  # run 1 has a NaN stretch here
            [4.0, np.nan, np.nan],  # only run 0 left: no interval
            [np.nan, np.nan, np.nan],
        ]
    )
    point, lo, hi, n = stats.curve_ci(v, "mean", reps=300)
    np.testing.assert_allclose(point, [3.0, 4.0, 4.0, np.nan])
    np.testing.assert_array_equal(n, [3, 2, 1, 0])
    assert lo[0] < 3.0 < hi[0] and lo[1] < 4.0 < hi[1]
    assert np.isnan(lo[2:]).all() and np.isnan(hi[2:]).all()
    # with two runs the resampled means are {2, 4, 6} only: the interval lies within [2, 6]
    assert lo[1] >= 2.0 and hi[1] <= 6.0
    point_iqm, *_ = stats.curve_ci(np.array([[1.0, 2.0, 3.0, 100.0]]), "iqm", reps=50)
    assert point_iqm[0] == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stat": "median"}, "stat: 'median' is not allowed"),
        ({"reps": 3}, "reps: 3 is out of range"),
        ({"confidence": 1.5}, "confidence: 1.5 is out of range"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        stats.bootstrap_ci([1.0, 2.0], **kwargs)
