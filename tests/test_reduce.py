"""The live charts' reductions: TensorBoard's debiased EMA and the min/max envelope."""

from __future__ import annotations

import numpy as np
import pytest

from pglab.reduce import ema, envelope, reduce_trace, thin


def test_ema_matches_tensorboard_by_hand():
    # w = 0.5, y = 1, 3, 5, nan, 7:
    # m1 = 0.5        s1 = 0.5  / (1 - 0.5)   = 1
    # m2 = 1.75       s2 = 1.75 / (1 - 0.25)  = 7/3
    # m3 = 3.375      s3 = 3.375 / (1 - 0.125) = 27/7
    # nan passes through and does not count
    # m4 = 5.1875     s4 = 5.1875 / (1 - 0.0625) = 83/15
    out = ema(np.array([1.0, 3.0, 5.0, np.nan, 7.0]), 0.5)
    np.testing.assert_allclose(out[[0, 1, 2, 4]], [1.0, 7 / 3, 27 / 7, 83 / 15], rtol=1e-12)
    assert np.isnan(out[3])


def test_ema_edges():
    y = np.array([2.0, -1.0, 4.0])
    np.testing.assert_array_equal(ema(y, 0.0), y)  # no smoothing
    np.testing.assert_allclose(ema(np.full(50, 3.0), 0.9), 3.0)  # debiased: no pull to 0
    assert ema(np.array([]), 0.6).size == 0
    for bad in (-0.1, 0.995, 1.0):
        with pytest.raises(ValueError, match=r"smoothing: .* out of range \(in \[0, 0.99\]\)"):
            ema(y, bad)


def test_envelope_keeps_every_bucket_extreme_and_is_bounded():
    rng = np.random.default_rng(0)
    n, max_points = 100_003, 500
    x = np.arange(n, dtype=float)
    y = rng.standard_normal(n).cumsum()
    y[77_777] = 1e6  # a spike a thinning would miss
    y[12_345] = -1e6
    ex, ey = envelope(x, y, max_points)
    assert len(ex) <= max_points
    assert np.all(np.diff(ex) > 0)  # in order, no duplicates
    assert ex[0] == 0 and ex[-1] == n - 1
    assert 1e6 in ey and -1e6 in ey
    nb = (max_points - 2) // 2
    kept = set(ex.astype(int).tolist())
    for b in range(nb):
        lo, hi = b * n // nb, (b + 1) * n // nb
        assert lo + int(np.argmin(y[lo:hi])) in kept
        assert lo + int(np.argmax(y[lo:hi])) in kept
    np.testing.assert_array_equal(ey, y[ex.astype(int)])  # points of the data, not new ones


def test_envelope_idempotent_on_short_data():
    x, y = np.arange(10.0), np.sin(np.arange(10.0))
    ex, ey = envelope(x, y, 10)
    np.testing.assert_array_equal(ex, x)
    np.testing.assert_array_equal(ey, y)
    once = envelope(np.arange(5000.0), np.cos(np.arange(5000.0)), 300)
    twice = envelope(*once, 300)
    assert len(once[0]) <= 300
    np.testing.assert_array_equal(twice[0], once[0])  # reducing a reduction changes nothing
    np.testing.assert_array_equal(twice[1], once[1])
    with pytest.raises(ValueError, match="max_points"):
        envelope(x, y, 3)


def test_thin_and_reduce_trace_bounded_whatever_the_length():
    for n in (10, 1_000, 300_000):
        x = np.arange(n, dtype=float)
        y = np.where(np.arange(n) % 7 == 0, np.nan, np.sin(x / 100))
        (rx, ry), smooth = reduce_trace(x, y, 0.6, 900)
        assert smooth is not None
        sx, sy = smooth
        assert len(rx) + len(sx) <= 900
        assert np.isfinite(ry).all() and np.isfinite(sy).all()
        assert sx[-1] == rx[-1] == x[np.isfinite(y)][-1]  # both lines reach the last point
    (rx, ry), smooth = reduce_trace(np.arange(5000.0), np.ones(5000), 0.0, 900)
    assert smooth is None and len(rx) <= 900
    tx, _ = thin(np.arange(100.0), np.arange(100.0), 10)
    assert len(tx) <= 10 and tx[0] == 0 and tx[-1] == 99
