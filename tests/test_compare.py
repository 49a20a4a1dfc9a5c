"""pglab.compare: alignment, 95% bands and the summary table, against hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest

from pglab import compare


def run(steps, ret, **extra):
    return pd.DataFrame({"time/env_steps": steps, "rollout/return_last20": ret, **extra})


def test_t975_table_and_normal_limit():
    assert compare.t975(1) == pytest.approx(12.706)
    assert compare.t975(2) == pytest.approx(4.303)
    assert compare.t975(30) == pytest.approx(2.042)
    assert compare.t975(200) == pytest.approx(1.96)
    assert math.isnan(compare.t975(0))
    np.testing.assert_allclose(compare.t975(np.array([2, 40])), [4.303, 1.96])


def test_align_interpolates_inside_each_run_and_is_nan_outside():
    frames = {
        "a": run([0.0, 10.0], [0.0, 100.0]),
        "b": run([5.0, 20.0], [1.0, 4.0]),  # y = 1 + (x - 5) / 5
    }
    out = compare.align(frames, compare.RETURN, grid=np.array([0.0, 5.0, 7.5, 10.0, 20.0]))
    np.testing.assert_allclose(out["a"].to_numpy(), [0.0, 50.0, 75.0, 100.0, np.nan])
    np.testing.assert_allclose(out["b"].to_numpy(), [np.nan, 1.0, 1.5, 2.0, 4.0])
    grid = compare.shared_grid(frames, n_grid=5)
    np.testing.assert_allclose(grid, [0.0, 5.0, 10.0, 15.0, 20.0])


def test_align_skips_missing_values_and_unsorted_rows():
    f = run([20.0, 0.0, 10.0], [4.0, 0.0, np.nan])
    out = compare.align({"r": f}, compare.RETURN, grid=np.array([0.0, 10.0, 20.0]))
    np.testing.assert_allclose(out["r"].to_numpy(), [0.0, 2.0, 4.0])  # NaN row ignored


def test_band_mean_and_student_t_interval_by_hand():
    values = np.array([[1.0, 2.0, 3.0], [5.0, np.nan, 7.0], [4.0, np.nan, np.nan]])
    mean, low, high, n = compare.band(values)
    np.testing.assert_allclose(mean, [2.0, 6.0, 4.0])
    np.testing.assert_array_equal(n, [3, 2, 1])
    # row 0: s = 1, half = t(2) / sqrt(3); row 1: s = sqrt(2), half = t(1) * sqrt(2) / sqrt(2)
    np.testing.assert_allclose(high - mean, [4.303 / math.sqrt(3), 12.706, np.nan])
    np.testing.assert_allclose(mean - low, [4.303 / math.sqrt(3), 12.706, np.nan])


def test_group_bands_one_band_per_group_and_absent_metric_left_out():
    steps = np.arange(0.0, 101.0, 10.0)
    frames = {f"a{s}": run(steps, steps + s) for s in range(3)}
    frames |= {f"b{s}": run(steps, 2 * steps) for s in range(2)}
    frames["c0"] = pd.DataFrame({"time/env_steps": steps})  # never reported the metric
    groups = {k: k[0] for k in frames}
    bands = compare.group_bands(frames, groups, compare.RETURN, n_grid=11)
    assert [b.group for b in bands] == ["a", "b"]
    a, b = bands
    np.testing.assert_allclose(a.x, steps)
    np.testing.assert_allclose(a.mean, steps + 1.0)  # mean of offsets 0, 1, 2
    np.testing.assert_allclose(a.high - a.mean, 4.303 / math.sqrt(3))
    np.testing.assert_allclose(b.high, b.mean)  # identical seeds: zero width
    assert (a.n == 3).all() and (b.n == 2).all()


def test_per_run_summaries():
    f = run(
        [0.0, 10.0, 20.0, 30.0],
        [0.0, 10.0, 20.0, np.nan],
        **{"diag/grad_var": [1.0, 3.0, np.nan, 5.0]},
    )
    assert compare.final_value(f) == 20.0
    assert compare.steps_to_threshold(f, 15.0) == 20.0
    assert compare.steps_to_threshold(f, 0.0) == 0.0
    assert math.isnan(compare.steps_to_threshold(f, 25.0))
    assert math.isnan(compare.steps_to_threshold(f, None))
    assert compare.normalized_auc(f) == pytest.approx(10.0)  # mean of y = x on [0, 20]
    assert compare.normalized_auc(run([5.0], [7.0])) == 7.0
    assert compare.mean_metric(f, "diag/grad_var") == pytest.approx(3.0)
    assert math.isnan(compare.mean_metric(f, "diag/clip_fraction"))


def test_summary_table_rows_per_group():
    steps = [0.0, 50.0, 100.0]
    frames = {
        "p0": run(steps, [0.0, 100.0, 200.0], **{"diag/grad_var": [2.0, 2.0, 2.0]}),
        "p1": run(steps, [0.0, 50.0, 100.0], **{"diag/grad_var": [4.0, 4.0, 4.0]}),
        "q0": run(steps, [0.0, 10.0, 20.0]),
    }
    table = compare.summary_table(frames, {"p0": "P", "p1": "P", "q0": "Q"}, threshold=100.0)
    p, q = table.to_dict("records")
    assert p["group"] == "P" and p["seeds"] == 2
    assert p["final return"] == pytest.approx(150.0)
    assert p["final return ±95%"] == pytest.approx(12.706 * 70.71068 / math.sqrt(2), rel=1e-4)
    assert p["steps to threshold"] == pytest.approx(75.0)  # 50 and 100
    assert p["reached"] == "2/2"
    assert p["AUC (mean return)"] == pytest.approx((100.0 + 50.0) / 2)
    assert p["mean grad variance"] == pytest.approx(3.0)
    assert q["reached"] == "0/1" and math.isnan(q["steps to threshold"])
    assert math.isnan(q["mean grad variance"]) and math.isnan(q["final return ±95%"])


def test_metric_columns_returns_first_and_only_reported():
    f = pd.DataFrame(
        {
            "update": [1, 2],
            "loss/policy": [0.1, 0.2],
            "rollout/return_last20": [1.0, 2.0],
            "diag/clip_fraction": [np.nan, np.nan],
        }
    )
    assert compare.metric_columns({"r": f}) == ["rollout/return_last20", "loss/policy"]
