"""A pixel-space energy model of style transfer: no network, just an image and two terms.

The principles notebook treats an image ``x`` (H, W) grey or (H, W, C) colour, values in
[0, 1], as a physical system with energy

    E(x) = alpha * L_content(x) + beta * L_style(x)

* ``L_content(x) = mean((x - c)^2)`` against a content image ``c`` of the same shape.
* The "style" of an image is a handful of nearest-neighbour autocorrelations of the
  centred image. For an offset ``d = (dy, dx)`` the pairs ``(a, b)`` are all pixels
  ``a = (i, j)`` whose neighbour ``b = (i + dy, j + dx)`` lies inside the image (no
  wrap-around), in every channel, and with ``u = x - mu`` (``mu``: per-channel mean)

      r_d(x) = mean_pairs(u_a * u_b) / (mean_pairs(u_a^2 + u_b^2) / 2 + VAR_EPS)
             = 1 - mean_pairs((x_a - x_b)^2) / mean_pairs(u_a^2 + u_b^2)   (VAR_EPS = 0)

  A checkerboard has ``r = -1`` for both (0, 1) and (1, 0); smooth photographs have
  ``r`` close to +1 (a linear ramp across W pixels: about ``1 - 6 / W^2``).
* ``L_style(x) = sum_d (r_d(x) - r_d(s))^2`` against the statistics of a style image
  ``s`` (which may have any size).

This is the textbook "covariance over variance" with the variance taken over the pixels
that take part in the pairs: since ``2 u_a u_b <= u_a^2 + u_b^2``, ``r`` always lies in
[-1, 1], and border pixels do not pull a smooth image's ``r`` away from 1 by O(1/W) as
dividing by the whole image's variance would. Unlike a Pearson coefficient of the two
shifted copies, ``mu`` is one global mean, so every sum behind ``E`` changes in O(1) when
one pixel changes: that is what makes the Metropolis sampler below fast.

Scales: ``L_content`` of a recognisable image is O(0.01 - 0.1), while ``L_style`` lies in
[0, 4 * len(offsets)]; ``beta / alpha`` between about 0.01 and 1 spans the trade-off.

Two minimisers of the same energy:

* ``gradient_descent``: TensorFlow, ``tf.GradientTape``, Adam (or plain SGD) updates
  clipped to [0, 1]; every pixel moves at every step.
* ``metropolis``: simulated annealing with single-pixel proposals and a geometric
  temperature schedule, in NumPy/pure Python. The energy change of a proposal is
  computed incrementally from running sums in O(number of offsets).

``neighbour_correlations``, ``energy_components`` and ``energy`` accept NumPy arrays
(computed in float64, returning NumPy values) and TensorFlow tensors (computed in the
tensor's dtype, differentiable, returning tensors); the two paths implement the same
formula.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from nstlib._checks import check_choice
from nstlib.images import as_hwc
from nstlib.records import old_record_name

#: Horizontal and vertical nearest neighbours: the default style statistics.
DEFAULT_OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0))
#: The four nearest neighbours up to symmetry: horizontal, vertical and both diagonals.
DIAGONAL_OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))
#: Added to the pair variance so that a constant image has r = 0 instead of 0/0.
VAR_EPS = 1e-8


@dataclass
class ToyResult:
    """What a minimiser returns.

    Attributes:
        image: Final image, float32 in [0, 1], same shape as the content image.
        energies: (K,) float64 total energy at the recorded steps.
        steps: (K,) int64 step index of each record: optimiser updates for gradient
            descent (0 = initial image), proposals for Metropolis.
        seconds: Wall-clock time of the minimisation loop.
        acceptance: Fraction of accepted proposals (Metropolis only).
        content_losses: (K,) float64 ``L_content`` at the recorded steps.
        style_losses: (K,) float64 ``L_style`` at the recorded steps.
        temperatures: (K,) float64 annealing temperature at the recorded steps
            (Metropolis only).
        record: The method and every parameter of the run, defaults resolved (e.g. the
            automatic ``t_start``), so a result can be reproduced from its record.

    ``config`` is the old name of ``record`` (read-only; it warns, ``DeprecationWarning``).
    """

    image: np.ndarray
    energies: np.ndarray
    steps: np.ndarray
    seconds: float
    acceptance: float | None = None
    content_losses: np.ndarray | None = None
    style_losses: np.ndarray | None = None
    temperatures: np.ndarray | None = None
    record: dict = field(default_factory=dict)

    config = old_record_name()


# ----------------------------------------------------------------------------- helpers


def checkerboard(size, period: int = 2, channels: int | None = None) -> np.ndarray:
    """A black-and-white checkerboard, the canonical "anti-smooth" style image.

    Args:
        size: Side ``n`` (square) or ``(H, W)``.
        period: Pixels after which the pattern repeats along a row; squares are
            ``period // 2`` pixels wide. ``period=2`` alternates every pixel (r = -1).
        channels: If given, the pattern is repeated into (H, W, channels).

    Returns:
        (H, W) or (H, W, channels) float32 array of 0s and 1s.
    """
    if period < 2 or period % 2:
        raise ValueError(f"period must be an even integer >= 2, got {period!r}")
    h, w = (size, size) if np.isscalar(size) else tuple(size)
    half = period // 2
    i, j = np.indices((int(h), int(w)))
    board = ((i // half + j // half) % 2).astype(np.float32)
    if channels is not None:
        board = np.repeat(board[..., None], channels, axis=-1)
    return board


def _check_offsets(offsets) -> tuple[tuple[int, int], ...]:
    offsets = tuple((int(dy), int(dx)) for dy, dx in offsets)
    if not offsets or any(o == (0, 0) for o in offsets):
        raise ValueError(f"offsets must be non-empty and non-zero, got {offsets!r}")
    return offsets


def _pair_slices(shape_hw, offset) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices selecting the first and second pixel of every in-image pair at ``offset``."""
    h, w = shape_hw
    dy, dx = offset
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"offset {offset} does not fit an image of size {h}x{w}")
    first = (slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
    second = (slice(max(0, dy), h + min(0, dy)), slice(max(0, dx), w + min(0, dx)))
    return first, second


def _as_hwc_tf(x) -> tf.Tensor:
    if x.shape.rank == 4 and x.shape[0] == 1:
        x = x[0]
    if x.shape.rank == 2:
        x = x[..., None]
    if x.shape.rank != 3:
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got {x.shape}")
    return x


def _is_tf(x) -> bool:
    return tf.is_tensor(x) or isinstance(x, tf.Variable)


# ----------------------------------------------------------------------------- statistics


def neighbour_correlations(x, offsets: Sequence[tuple[int, int]] = DEFAULT_OFFSETS):
    """Normalised nearest-neighbour autocorrelations ``r_d`` of the centred image.

    Args:
        x: Image (H, W), (H, W, C) or (1, H, W, C) in [0, 1]. A NumPy array (or
            array-like) is computed in float64; a ``tf.Tensor``/``tf.Variable`` in its
            own dtype, differentiably.
        offsets: Sequence of ``(dy, dx)`` neighbour offsets, e.g. ``DEFAULT_OFFSETS``
            (horizontal, vertical) or ``DIAGONAL_OFFSETS``.

    Returns:
        (len(offsets),) float64 NumPy array, or a tensor of ``x``'s dtype for TF input:
        ``r_d = mean(u_a u_b) / (mean(u_a^2 + u_b^2) / 2 + VAR_EPS)`` over the in-image
        pairs ``(a, b)`` at offset ``d``, with ``u = x - mu`` centred per channel. Always
        in [-1, 1].
    """
    offsets = _check_offsets(offsets)
    if _is_tf(x):
        xt = _as_hwc_tf(tf.convert_to_tensor(x))
        xc = xt - tf.reduce_mean(xt, axis=(0, 1), keepdims=True)
        rs = []
        for off in offsets:
            a, b = _pair_slices(xt.shape[:2], off)
            ua, ub = xc[a], xc[b]
            var = 0.5 * tf.reduce_mean(tf.square(ua) + tf.square(ub)) + VAR_EPS
            rs.append(tf.reduce_mean(ua * ub) / var)
        return tf.stack(rs)
    xn = as_hwc(x)
    xc = xn - xn.mean(axis=(0, 1), keepdims=True)
    rs = []
    for off in offsets:
        a, b = _pair_slices(xn.shape[:2], off)
        ua, ub = xc[a], xc[b]
        var = 0.5 * np.mean(ua**2 + ub**2) + VAR_EPS
        rs.append(np.mean(ua * ub) / var)
    return np.array(rs, dtype=np.float64)


def energy_components(x, content, style_stats, offsets=DEFAULT_OFFSETS):
    """The two terms of the energy, unweighted.

    Args:
        x: Image (H, W) or (H, W, C) in [0, 1]; NumPy array or TF tensor (see
            ``neighbour_correlations``).
        content: Content image of the same shape as ``x``.
        style_stats: (len(offsets),) target correlations, e.g.
            ``neighbour_correlations(style_image, offsets)``.
        offsets: Neighbour offsets the statistics refer to.

    Returns:
        ``(content_loss, style_loss)``: ``mean((x - content)^2)`` and
        ``sum_d (r_d(x) - style_stats_d)^2``; NumPy floats or scalar tensors.
    """
    r = neighbour_correlations(x, offsets)
    if _is_tf(x):
        dtype = r.dtype
        c = tf.reshape(tf.cast(content, dtype), tf.shape(x))
        content_loss = tf.reduce_mean(tf.square(tf.cast(x, dtype) - c))
        targets = tf.reshape(tf.cast(style_stats, dtype), [-1])
        style_loss = tf.reduce_sum(tf.square(r - targets))
        return content_loss, style_loss
    xn = np.asarray(x, dtype=np.float64)
    cn = np.asarray(content, dtype=np.float64).reshape(xn.shape)
    content_loss = float(np.mean((xn - cn) ** 2))
    style_loss = float(np.sum((r - np.ravel(np.asarray(style_stats, np.float64))) ** 2))
    return content_loss, style_loss


def energy(x, content, style_stats, alpha: float = 1.0, beta: float = 1.0,
           offsets=DEFAULT_OFFSETS):
    """Total energy ``alpha * L_content + beta * L_style`` (see ``energy_components``).

    Returns:
        A float for NumPy input, a scalar tensor (differentiable) for TF input.
    """
    content_loss, style_loss = energy_components(x, content, style_stats, offsets)
    return alpha * content_loss + beta * style_loss


def _style_targets(style, offsets) -> np.ndarray:
    """Style image (any size) -> its correlations; a 1-D array is taken as the targets."""
    s = np.asarray(style, dtype=np.float64)
    if s.ndim == 1:
        if s.shape[0] != len(offsets):
            raise ValueError(f"{len(offsets)} target correlations expected, got {s.shape[0]}")
        return s
    return neighbour_correlations(s, offsets)


def _initial_image(content: np.ndarray, init, seed: int) -> np.ndarray:
    if init is None:
        return content.copy()
    if isinstance(init, str):
        if init != "noise":
            raise ValueError(f"init must be None, 'noise' or an array, got {init!r}")
        # Its own stream, so the noise does not replay the sampler's proposals.
        return np.random.default_rng((seed, 1)).random(content.shape)
    x0 = np.asarray(init, dtype=np.float64).reshape(content.shape)
    return np.clip(x0, 0.0, 1.0)


def _describe_init(init):
    return init if init is None or isinstance(init, str) else "array"


# ----------------------------------------------------------------------------- gradient descent


def gradient_descent(content, style, alpha: float = 1.0, beta: float = 1.0, steps: int = 300,
                     learning_rate: float = 0.02, init=None, seed: int = 0,
                     optimizer: str = "adam", offsets=DEFAULT_OFFSETS) -> ToyResult:
    """Minimise the energy with ``tf.GradientTape`` and projected (clipped) updates.

    Args:
        content: Content image (H, W) or (H, W, C) in [0, 1].
        style: Style image of any size (its correlations are the targets), or a 1-D
            array of ``len(offsets)`` target correlations.
        alpha: Weight of the content term.
        beta: Weight of the style term.
        steps: Number of updates; every pixel moves at each one.
        learning_rate: Step size. With ``"adam"`` it is roughly the per-pixel change per
            step; with ``"sgd"`` it multiplies a raw gradient whose entries are O(1/HW),
            so it has to be correspondingly large.
        init: ``None`` (start from the content), ``"noise"`` (uniform, from ``seed``) or
            an image of the content's shape.
        seed: Seed for ``init="noise"``; the updates themselves are deterministic.
        optimizer: ``"adam"`` (scale-free, the default) or ``"sgd"`` (plain gradient step).
        offsets: Neighbour offsets of the style statistics.

    Returns:
        ``ToyResult`` with ``steps + 1`` records (record 0 is the initial image).
    """
    check_choice(optimizer, ("adam", "sgd"), "optimizer")
    offsets = _check_offsets(offsets)
    c_np = np.asarray(content, dtype=np.float64)
    targets = _style_targets(style, offsets)
    x0 = _initial_image(c_np, init, seed)

    dtype = tf.float32
    c_tf = tf.constant(c_np, dtype)
    t_tf = tf.constant(targets, dtype)
    x = tf.Variable(tf.constant(x0, dtype))
    m = tf.Variable(tf.zeros_like(x))
    v = tf.Variable(tf.zeros_like(x))
    lr, b1, b2, eps = float(learning_rate), 0.9, 0.999, 1e-8

    @tf.function(autograph=False)  # straight-line code (see nstlib.optimize's docstring)
    def step(t):
        with tf.GradientTape() as tape:
            lc, ls = energy_components(x, c_tf, t_tf, offsets)
            e = alpha * lc + beta * ls
        g = tape.gradient(e, x)
        if optimizer == "adam":
            m.assign(b1 * m + (1 - b1) * g)
            v.assign(b2 * v + (1 - b2) * tf.square(g))
            m_hat = m / (1 - tf.pow(b1, t))
            v_hat = v / (1 - tf.pow(b2, t))
            update = lr * m_hat / (tf.sqrt(v_hat) + eps)
        else:
            update = lr * g
        # Projection onto the box [0, 1]: the energy knows nothing about valid pixels.
        x.assign(tf.clip_by_value(x - update, 0.0, 1.0))
        return lc, ls

    lcs, lss = [], []
    start = time.perf_counter()
    for k in range(1, int(steps) + 1):
        lc, ls = step(tf.constant(float(k), dtype))
        lcs.append(float(lc))
        lss.append(float(ls))
    seconds = time.perf_counter() - start
    # Record the final state in float64 so that it agrees with energy(result.image).
    image = x.numpy()
    lc, ls = energy_components(image, c_np, targets, offsets)
    lcs.append(lc)
    lss.append(ls)
    lcs, lss = np.array(lcs), np.array(lss)
    return ToyResult(
        image=image,
        energies=alpha * lcs + beta * lss,
        steps=np.arange(int(steps) + 1, dtype=np.int64),
        seconds=seconds,
        content_losses=lcs,
        style_losses=lss,
        record=dict(method="gradient_descent", alpha=alpha, beta=beta, steps=int(steps),
                    learning_rate=lr, init=_describe_init(init), seed=seed,
                    optimizer=optimizer, offsets=offsets, targets=targets.tolist()),
    )


# ----------------------------------------------------------------------------- Metropolis


class _AnnealState:
    """Running sums behind the energy, on a zero-padded, flattened copy of the image.

    Pixel ``(i, j, ch)`` lives at flat index ``((i + P) * (W + 2P) + j + P) * C + ch`` of
    ``x`` (a Python list: scalar indexing is several times faster than on an ndarray),
    where ``P`` is the largest offset component. The zero padding makes out-of-image
    neighbours contribute nothing, so a single-pixel update needs no bounds checks:
    ``inside`` is 1 on real pixels and 0 on the padding.

    Per offset ``d``, with ``n_d`` pairs per channel, the two centred pair sums are

        num_d = sum_pairs u_a u_b         = sum_ch [P - mu T + n_d mu^2]
        den_d = sum_pairs u_a^2 + u_b^2   = sum_ch [Q - 2 mu T + 2 n_d mu^2]

    where, per channel, ``P`` is the raw sum of pair products, ``T`` the raw sum and ``Q``
    the raw sum of squares of the pair members (a pixel in two pairs counts twice).
    Only ``T`` is kept per channel (it multiplies that channel's mean). Moving pixel ``p``
    from ``old`` to ``new`` changes ``P`` by ``(new - old) * (x[p + o] + x[p - o])``,
    ``T`` by ``(new - old) * m`` and ``Q`` by ``(new^2 - old^2) * m``, where
    ``m = inside[p + o] + inside[p - o]`` is the number of pairs ``p`` belongs to: O(1)
    per offset. Then ``r_d = 2 num_d / (den_d + 2 n_d C VAR_EPS)``.
    """

    def __init__(self, x0, content, targets, alpha, beta, offsets):
        h, w, ch = x0.shape
        pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
        self.shape = (h, w, ch)
        self.pad = pad
        self.channels = ch
        self.n = h * w  # pixels per channel
        self.n_total = h * w * ch
        self.alpha, self.beta = float(alpha), float(beta)
        self.targets = [float(t) for t in targets]
        self.offsets = offsets
        wp = w + 2 * pad
        self.strides = [(dy * wp + dx) * ch for dy, dx in offsets]
        self.pairs = [(h - abs(dy)) * (w - abs(dx)) for dy, dx in offsets]

        def padded(a):
            out = np.zeros((h + 2 * pad, wp, ch))
            out[pad:pad + h, pad:pad + w] = a
            return out

        self.x = padded(x0).ravel().tolist()
        self.c = padded(content).ravel().tolist()
        self.inside = padded(np.ones((h, w, ch))).ravel().tolist()
        # Flat padded index of every real pixel, in (i, j, ch) order.
        self.index = np.flatnonzero(padded(np.ones((h, w, ch))).ravel())
        self.resync()

    def image(self) -> np.ndarray:
        h, w, ch = self.shape
        p = self.pad
        a = np.asarray(self.x).reshape(h + 2 * p, w + 2 * p, ch)
        return a[p:p + h, p:p + w].copy()

    def resync(self) -> None:
        """Recompute every running sum from the image (removes accumulated round-off)."""
        x = self.image()
        c = np.asarray(self.c).reshape(x.shape[0] + 2 * self.pad, -1, self.channels)
        c = c[self.pad:self.pad + x.shape[0], self.pad:self.pad + x.shape[1]]
        self.sums = x.sum(axis=(0, 1)).tolist()  # per channel: mu = sums / n
        self.content_sq = float(np.sum((x - c) ** 2))
        self.nums, self.dens, self.totals = [], [], []
        xc = x - x.mean(axis=(0, 1))
        for off in self.offsets:
            a, b = _pair_slices(x.shape[:2], off)
            self.nums.append(float(np.sum(xc[a] * xc[b])))
            self.dens.append(float(np.sum(xc[a] ** 2 + xc[b] ** 2)))
            self.totals.append((x[a].sum(axis=(0, 1)) + x[b].sum(axis=(0, 1))).tolist())
        self.energy = self.components()[0]

    def components(self) -> tuple[float, float, float]:
        """(energy, content_loss, style_loss) from the current running sums."""
        lc = self.content_sq / self.n_total
        ls = 0.0
        for num, den, npair, t in zip(self.nums, self.dens, self.pairs, self.targets,
                                      strict=True):
            ls += (2.0 * num / (den + 2.0 * npair * self.channels * VAR_EPS) - t) ** 2
        return self.alpha * lc + self.beta * ls, lc, ls


def _anneal_chunk(st: _AnnealState, positions, deltas, bounds, record=None) -> int:
    """Run proposals ``k``: move pixel ``positions[k]`` by ``deltas[k]`` (reflected into
    [0, 1]) and accept iff ``dE <= bounds[k]``. Returns the number accepted; if ``record``
    is a list, every proposal's ``dE`` is appended to it (tests, temperature estimate).

    ``bounds[k] = -T_k * log(u_k)`` with ``u_k`` uniform: ``dE <= bound`` happens with
    probability ``min(1, exp(-dE / T_k))``, the Metropolis rule, without an ``exp`` per
    proposal. Everything is copied into local variables first: this loop is the hot path.
    """
    x, c, inside = st.x, st.c, st.inside
    sums, totals, nums, dens = st.sums, st.totals, st.nums, st.dens
    chans = st.channels
    inv_n, inv_nt = 1.0 / st.n, 1.0 / st.n_total
    alpha, beta = st.alpha, st.beta
    content_sq, e_cur = st.content_sq, st.energy
    # Per offset: flat stride, pairs per channel, den's epsilon term, target.
    terms = [(o, npair, 2.0 * npair * chans * VAR_EPS, t)
             for o, npair, t in zip(st.strides, st.pairs, st.targets, strict=True)]
    ranges = range(len(terms))
    accepted = 0
    new_nums = [0.0] * len(terms)
    new_dens = [0.0] * len(terms)
    new_tots = [0.0] * len(terms)
    for p, delta, bound in zip(positions, deltas, bounds, strict=True):
        old = x[p]
        new = old + delta
        # Reflecting at the walls keeps the proposal symmetric (q(a->b) = q(b->a)).
        if new < 0.0:
            new = -new
        elif new > 1.0:
            new = 2.0 - new
        d = new - old
        d2 = d * (new + old)  # new^2 - old^2
        ch = p % chans
        mu_old = sums[ch] * inv_n
        mu_new = mu_old + d * inv_n
        dmu2 = mu_new * mu_new - mu_old * mu_old
        style = 0.0
        for q in ranges:
            o, npair, eps_term, target = terms[q]
            m = inside[p + o] + inside[p - o]
            t_old = totals[q][ch]
            t_new = t_old + d * m
            g = npair * dmu2 - (mu_new * t_new - mu_old * t_old)
            num = nums[q] + d * (x[p + o] + x[p - o]) + g
            den = dens[q] + d2 * m + 2.0 * g
            new_nums[q] = num
            new_dens[q] = den
            new_tots[q] = t_new
            r = 2.0 * num / (den + eps_term) - target
            style += r * r
        content_new = content_sq + d * (old + new - 2.0 * c[p])
        e_new = alpha * content_new * inv_nt + beta * style
        if record is not None:
            record.append(e_new - e_cur)
        if e_new - e_cur <= bound:
            accepted += 1
            x[p] = new
            sums[ch] += d
            content_sq, e_cur = content_new, e_new
            for q in ranges:
                nums[q] = new_nums[q]
                dens[q] = new_dens[q]
                totals[q][ch] = new_tots[q]
    st.content_sq, st.energy = content_sq, e_cur
    return accepted


def metropolis(content, style, alpha: float = 1.0, beta: float = 1.0, steps: int = 200_000,
               t_start: float | None = None, t_end: float | None = None,
               proposal_scale: float = 0.25, seed: int = 0, init=None,
               offsets=DEFAULT_OFFSETS, record_every: int | None = None) -> ToyResult:
    """Simulated annealing of the energy with random single-pixel proposals.

    Each proposal picks a pixel (and channel) uniformly, adds ``U(-s, s)`` with
    ``s = proposal_scale`` and reflects the result into [0, 1]; it is accepted with
    probability ``min(1, exp(-dE / T))``. The temperature falls geometrically from
    ``t_start`` to ``t_end`` over the run. ``dE`` costs O(len(offsets)) (running sums,
    see ``_AnnealState``): a few microseconds per proposal in pure Python, e.g. 2e5
    proposals on a 48x48 image in about half a second.

    Args:
        content: Content image (H, W) or (H, W, C) in [0, 1].
        style: Style image of any size, or a 1-D array of ``len(offsets)`` targets.
        alpha: Weight of the content term.
        beta: Weight of the style term.
        steps: Number of proposals (one sweep is H * W * C proposals).
        t_start: Initial temperature, in energy units. ``None``: the median ``|dE|`` of
            1000 trial proposals at the initial image, so that a typical uphill move is
            first accepted with probability about 1/e whatever the image size.
        t_end: Final temperature; ``None``: ``t_start * 1e-5`` (cold enough that the end
            of the run is a greedy descent into the nearest minimum).
        proposal_scale: Half-width ``s`` of the uniform proposal, in (0, 1].
        seed: Seed of the proposals, the acceptance draws and ``init="noise"``.
        init: ``None`` (start from the content), ``"noise"`` or an image.
        offsets: Neighbour offsets of the style statistics.
        record_every: Record the energy every this many proposals (the running sums are
            recomputed from scratch there); ``None``: about 200 records.

    Returns:
        ``ToyResult`` with records at proposals 0, ``record_every``, ... and ``steps``,
        the acceptance rate and the temperatures.
    """
    if not 0.0 < proposal_scale <= 1.0:
        raise ValueError(f"proposal_scale must lie in (0, 1], got {proposal_scale!r}")
    offsets = _check_offsets(offsets)
    steps = int(steps)
    c_np = np.asarray(content, dtype=np.float64)
    targets = _style_targets(style, offsets)
    x0 = _initial_image(c_np, init, seed)
    st = _AnnealState(as_hwc(x0), as_hwc(c_np, "content"), targets, alpha, beta,
                      offsets)
    rng = np.random.default_rng(seed)

    def draw(k):
        positions = st.index[rng.integers(0, st.n_total, size=k)].tolist()
        deltas = rng.uniform(-proposal_scale, proposal_scale, size=k).tolist()
        return positions, deltas

    if t_start is None:
        # Trial proposals with bound -inf: every dE is evaluated, none is accepted.
        positions, deltas = draw(1000)
        trial: list[float] = []
        _anneal_chunk(st, positions, deltas, [-math.inf] * len(positions), record=trial)
        t_start = float(np.median(np.abs(trial))) or 1e-12
    if t_end is None:
        t_end = t_start * 1e-5
    if t_start <= 0 or t_end <= 0:
        raise ValueError("temperatures must be positive")
    if record_every is None:
        record_every = max(1, steps // 200)
    ratio = (t_end / t_start) ** (1.0 / max(steps - 1, 1))

    def temperature(k):
        return t_start * ratio ** np.asarray(k, dtype=np.float64)

    _, lc, ls = st.components()
    rec_steps, lcs, lss, temps = [0], [lc], [ls], [t_start]
    accepted = 0
    done = 0
    start = time.perf_counter()
    while done < steps:
        k = min(record_every, steps - done)
        positions, deltas = draw(k)
        bounds = (-temperature(np.arange(done, done + k)) * np.log1p(-rng.random(k))).tolist()
        accepted += _anneal_chunk(st, positions, deltas, bounds)
        done += k
        st.resync()
        _, lc, ls = st.components()
        rec_steps.append(done)
        lcs.append(lc)
        lss.append(ls)
        temps.append(float(temperature(done - 1)))
    seconds = time.perf_counter() - start

    image = st.image().reshape(c_np.shape).astype(np.float32)
    lcs, lss = np.array(lcs), np.array(lss)
    return ToyResult(
        image=image,
        energies=st.alpha * lcs + st.beta * lss,
        steps=np.array(rec_steps, dtype=np.int64),
        seconds=seconds,
        acceptance=accepted / steps if steps else 0.0,
        content_losses=lcs,
        style_losses=lss,
        temperatures=np.array(temps),
        record=dict(method="metropolis", alpha=alpha, beta=beta, steps=steps,
                    t_start=t_start, t_end=t_end, proposal_scale=proposal_scale, seed=seed,
                    init=_describe_init(init), offsets=offsets, record_every=record_every,
                    targets=targets.tolist()),
    )
