"""Tests for nstlib.toy: the pixel-space energy model, checked against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from nstlib import toy


def _smooth(h, w, phase=0.0):
    i, j = np.indices((h, w))
    return 0.5 + 0.4 * np.sin(i / 7.0 + phase) * np.cos(j / 9.0)


def _ramp(h, w):
    return np.tile(np.linspace(0.1, 0.9, w), (h, 1))


def _loop_correlations(x, offsets):
    """Direct loop over pixels: per-channel mean, in-image pairs, pair-member variance."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    h, w, ch = x.shape
    mu = [sum(x[i, j, c] for i in range(h) for j in range(w)) / (h * w) for c in range(ch)]
    out = []
    for dy, dx in offsets:
        cov, var, count = 0.0, 0.0, 0
        for i in range(h):
            for j in range(w):
                if 0 <= i + dy < h and 0 <= j + dx < w:
                    for c in range(ch):
                        ua, ub = x[i, j, c] - mu[c], x[i + dy, j + dx, c] - mu[c]
                        cov += ua * ub
                        var += (ua * ua + ub * ub) / 2
                        count += 1
        out.append((cov / count) / (var / count + toy.VAR_EPS))
    return np.array(out)


# ----------------------------------------------------------------------------- statistics


def test_checkerboard_has_minus_one_correlations():
    board = toy.checkerboard(16)
    assert board.shape == (16, 16) and board.dtype == np.float32
    np.testing.assert_allclose(toy.neighbour_correlations(board), [-1.0, -1.0], atol=1e-6)
    # Diagonal neighbours of a checkerboard have the same colour.
    np.testing.assert_allclose(toy.neighbour_correlations(board, toy.DIAGONAL_OFFSETS),
                               [-1.0, -1.0, 1.0, 1.0], atol=1e-6)
    colour = toy.checkerboard((8, 12), channels=3)
    assert colour.shape == (8, 12, 3)
    np.testing.assert_allclose(toy.neighbour_correlations(colour), [-1.0, -1.0], atol=1e-6)
    # Squares two pixels wide: of the 15 pairs in a row, 8 agree and 7 differ.
    np.testing.assert_allclose(toy.neighbour_correlations(toy.checkerboard(16, period=4)),
                               [1 / 15, 1 / 15], atol=1e-6)


def test_smooth_images_have_correlations_near_plus_one():
    r = toy.neighbour_correlations(_ramp(32, 32))
    assert r[1] == pytest.approx(1.0, abs=1e-6)  # rows identical: vertical pairs are equal
    assert r[0] == pytest.approx(1 - 6 / 32**2, abs=1e-3)  # linear ramp: 1 - 6 / W^2
    assert np.all(toy.neighbour_correlations(_smooth(48, 48)) > 0.95)
    assert np.all(toy.neighbour_correlations(np.zeros((8, 8))) == 0.0)  # no 0/0
    noise = np.random.default_rng(0).random((64, 64))
    assert np.all(np.abs(toy.neighbour_correlations(noise)) < 0.1)  # white noise


@pytest.mark.parametrize("shape", [(5, 7), (6, 5, 3)])
def test_correlations_match_double_loop(shape):
    rng = np.random.default_rng(1)
    offsets = ((0, 1), (1, 0), (1, 1), (1, -1), (2, 0))
    for x in (rng.random(shape), rng.random(shape) ** 4):
        r = toy.neighbour_correlations(x, offsets)
        np.testing.assert_allclose(r, _loop_correlations(x, offsets), rtol=1e-12, atol=1e-12)
        assert np.all(np.abs(r) <= 1.0)


def test_numpy_and_tensorflow_paths_agree():
    rng = np.random.default_rng(2)
    x, c = rng.random((9, 11, 3)), rng.random((9, 11, 3))
    stats = np.array([0.3, -0.2, 0.1, 0.0])
    offsets = toy.DIAGONAL_OFFSETS
    r_np = toy.neighbour_correlations(x, offsets)
    r_tf = toy.neighbour_correlations(tf.constant(x), offsets)
    assert isinstance(r_np, np.ndarray) and tf.is_tensor(r_tf)
    np.testing.assert_allclose(r_tf.numpy(), r_np, rtol=1e-12)
    e_np = toy.energy(x, c, stats, alpha=2.0, beta=3.0, offsets=offsets)
    e_tf = toy.energy(tf.constant(x), c, tf.constant(stats), alpha=2.0, beta=3.0,
                      offsets=offsets)
    assert float(e_tf) == pytest.approx(e_np, rel=1e-12)
    lc, ls = toy.energy_components(x, c, stats, offsets)
    assert lc == pytest.approx(np.mean((x - c) ** 2), rel=1e-12)
    assert ls == pytest.approx(np.sum((r_np - stats) ** 2), rel=1e-12)
    assert e_np == pytest.approx(2.0 * lc + 3.0 * ls, rel=1e-12)
    # A (1, H, W, C) batch of one, as nstlib.images produces, is the same image.
    assert toy.energy(x[None], c[None], stats, offsets=offsets) == pytest.approx(
        toy.energy(x, c, stats, offsets=offsets), rel=1e-12)


@pytest.mark.parametrize("shape", [(8, 10), (7, 6, 3)])
def test_tf_gradient_matches_finite_differences(shape):
    rng = np.random.default_rng(3)
    x = rng.uniform(0.1, 0.9, shape)
    c = rng.random(shape)
    stats = np.array([-0.8, 0.4])
    alpha, beta = 1.0, 0.5
    xt = tf.Variable(x)  # float64: the finite differences need the precision
    with tf.GradientTape() as tape:
        e = toy.energy(xt, c, stats, alpha, beta)
    grad = tape.gradient(e, xt).numpy()
    h = 1e-6
    for _ in range(6):
        idx = tuple(int(rng.integers(0, n)) for n in shape)
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd = (toy.energy(xp, c, stats, alpha, beta) - toy.energy(xm, c, stats, alpha, beta))
        fd /= 2 * h
        assert grad[idx] == pytest.approx(fd, rel=1e-6, abs=1e-9)


# ----------------------------------------------------------------------------- Metropolis internals


def _reflect(v):
    return -v if v < 0 else (2.0 - v if v > 1 else v)


@pytest.mark.parametrize(
    "shape, offsets",
    [((12, 10), toy.DEFAULT_OFFSETS), ((7, 9, 3), toy.DIAGONAL_OFFSETS)],
)
def test_incremental_delta_energy_matches_full_recomputation(shape, offsets):
    rng = np.random.default_rng(4)
    x, c = rng.random(shape), rng.random(shape)
    stats = rng.uniform(-1, 1, len(offsets))
    alpha, beta = 1.3, 0.7
    st = toy._AnnealState(x.reshape(*shape[:2], -1), c.reshape(*shape[:2], -1), stats,
                          alpha, beta, offsets)
    e0 = toy.energy(x, c, stats, alpha, beta, offsets)
    assert st.energy == pytest.approx(e0, rel=1e-12)

    # Rejected proposals (bound -inf): every dE is measured from the same state x.
    n = 400
    flat = rng.integers(0, x.size, n)
    positions = st.index[flat].tolist()
    deltas = rng.uniform(-0.6, 0.6, n).tolist()
    des: list[float] = []
    assert toy._anneal_chunk(st, positions, deltas, [-math.inf] * n, record=des) == 0
    np.testing.assert_array_equal(st.image().reshape(shape), x)  # nothing moved
    for k in range(n):
        x2 = x.copy().ravel()
        x2[flat[k]] = _reflect(x2[flat[k]] + deltas[k])
        expected = toy.energy(x2.reshape(shape), c, stats, alpha, beta, offsets) - e0
        assert des[k] == pytest.approx(expected, rel=1e-8, abs=1e-13)

    # Accepted proposals one after another: the running energy tracks the full one.
    cur = x.copy().ravel()
    for k in range(200):
        p, d = int(flat[k]), deltas[k]
        des = []
        e_before = toy.energy(cur.reshape(shape), c, stats, alpha, beta, offsets)
        assert toy._anneal_chunk(st, [int(st.index[p])], [d], [math.inf], record=des) == 1
        cur[p] = _reflect(cur[p] + d)
        e_after = toy.energy(cur.reshape(shape), c, stats, alpha, beta, offsets)
        assert des[0] == pytest.approx(e_after - e_before, rel=1e-8, abs=1e-13)
        assert st.energy == pytest.approx(e_after, rel=1e-10)
    np.testing.assert_allclose(st.image().ravel(), cur, atol=1e-15)


def test_zero_temperature_never_goes_uphill():
    c = _smooth(16, 16)
    res = toy.metropolis(c, toy.checkerboard(8), beta=0.5, steps=5000, t_start=1e-300,
                         t_end=1e-300, record_every=100)
    assert np.all(np.diff(res.energies) <= 1e-12)
    assert 0.0 < res.acceptance < 1.0


# ----------------------------------------------------------------------------- minimisers


@pytest.mark.parametrize("content", [_smooth(32, 32), _ramp(32, 32)], ids=["smooth", "ramp"])
def test_metropolis_reaches_checkerboard_statistics(content):
    style = toy.checkerboard(16)
    res = toy.metropolis(content, style, alpha=1.0, beta=5.0, steps=60_000, seed=0)
    assert res.image.shape == content.shape and res.image.dtype == np.float32
    assert res.image.min() >= 0.0 and res.image.max() <= 1.0
    assert res.steps[0] == 0 and res.steps[-1] == 60_000
    assert len(res.energies) == len(res.steps) == len(res.temperatures)
    assert res.energies[-1] < 0.05 * res.energies[0]
    assert 0.0 < res.acceptance < 1.0
    assert np.all(np.diff(res.temperatures) < 0)  # geometric cooling
    assert np.all(toy.neighbour_correlations(res.image) < -0.5)
    assert res.record["method"] == "metropolis" and res.record["t_start"] > 0
    assert res.temperatures[0] == res.record["t_start"]
    # The record is the energy of the returned image (which is float32-rounded).
    stats = toy.neighbour_correlations(style)
    assert res.energies[-1] == pytest.approx(
        toy.energy(res.image, content, stats, 1.0, 5.0), rel=1e-4)


def test_the_old_config_name_of_the_record_warns():
    res = toy.ToyResult(np.zeros((2, 2)), np.zeros(1), np.zeros(1, np.int64), 0.0,
                        record={"method": "metropolis"})
    with pytest.warns(DeprecationWarning, match=r"^ToyResult\.config is now \.record$"):
        assert res.config is res.record


@pytest.mark.parametrize("content", [_smooth(32, 32), _ramp(32, 32)], ids=["smooth", "ramp"])
def test_gradient_descent_reaches_checkerboard_statistics(content):
    style = toy.checkerboard(16)
    res = toy.gradient_descent(content, style, alpha=1.0, beta=5.0, steps=150)
    assert res.image.shape == content.shape
    assert res.image.min() >= 0.0 and res.image.max() <= 1.0
    assert len(res.energies) == 151 and res.steps[-1] == 150 and res.acceptance is None
    assert res.energies[-1] < 0.05 * res.energies[0]
    assert np.all(toy.neighbour_correlations(res.image) < -0.5)
    stats = toy.neighbour_correlations(style)
    assert res.energies[0] == pytest.approx(toy.energy(content, content, stats, 1.0, 5.0),
                                            rel=1e-5)
    np.testing.assert_allclose(res.energies, res.content_losses + 5.0 * res.style_losses)


def test_colour_images_and_target_vectors():
    content = np.stack([_smooth(16, 16), _ramp(16, 16), _smooth(16, 16, 1.0)], axis=-1)
    target = np.array([-1.0, -1.0])
    mc = toy.metropolis(content, target, beta=5.0, steps=20_000)
    gd = toy.gradient_descent(content, target, beta=5.0, steps=100, optimizer="sgd",
                              learning_rate=300.0)
    for res in (mc, gd):
        assert res.image.shape == (16, 16, 3)
        assert res.energies[-1] < res.energies[0]


def test_weak_style_keeps_the_content():
    content = _smooth(24, 24)
    res = toy.gradient_descent(content, toy.checkerboard(8), beta=1e-4, steps=50)
    np.testing.assert_allclose(res.image, content, atol=0.05)


def test_results_are_deterministic_per_seed():
    c = _smooth(16, 16)
    style = toy.checkerboard(8)
    a = toy.metropolis(c, style, steps=10_000, seed=7)
    b = toy.metropolis(c, style, steps=10_000, seed=7)
    d = toy.metropolis(c, style, steps=10_000, seed=8)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.energies, b.energies)
    assert a.acceptance == b.acceptance
    assert not np.array_equal(a.image, d.image)

    g1 = toy.gradient_descent(c, style, steps=20, init="noise", seed=3)
    g2 = toy.gradient_descent(c, style, steps=20, init="noise", seed=3)
    g3 = toy.gradient_descent(c, style, steps=20, init="noise", seed=4)
    np.testing.assert_array_equal(g1.image, g2.image)
    np.testing.assert_array_equal(g1.energies, g2.energies)
    assert not np.array_equal(g1.image, g3.image)


def test_invalid_arguments_raise():
    c = _smooth(8, 8)
    with pytest.raises(ValueError, match="period"):
        toy.checkerboard(8, period=3)
    with pytest.raises(ValueError, match="offsets"):
        toy.neighbour_correlations(c, ((0, 0),))
    with pytest.raises(ValueError, match="proposal_scale"):
        toy.metropolis(c, c, proposal_scale=1.5)
    with pytest.raises(ValueError, match="optimizer"):
        toy.gradient_descent(c, c, optimizer="lbfgs")
    with pytest.raises(ValueError, match="target"):
        toy.metropolis(c, np.array([0.1, 0.2, 0.3]))
