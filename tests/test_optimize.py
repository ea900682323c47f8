"""Tests for nstlib.optimize: every optimizer, the history, stopping, non-finite losses, bounds."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import nstlib
from nstlib.optimize import (
    DEFAULT_LEARNING_RATES,
    OPTIMIZERS,
    NonFiniteLossError,
    backtracked_learning_rate,
    effective_learning_rate,
    make_optimizer,
    minimize,
)

STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1")


def _quadratic(target, scale: float = 1.0, nan_above: float | None = None):
    """loss(x) = scale * sum((x - target)^2); NaN once mean(x) exceeds ``nan_above``."""
    target = tf.constant(target, tf.float32)

    def loss_fn(x):
        total = scale * tf.reduce_sum(tf.square(x - target))
        if nan_above is not None:
            total += tf.where(tf.reduce_mean(x) > nan_above, np.float32(np.nan), 0.0)
        return {"total": total, "content": total, "style": tf.constant(0.0),
                "tv": tf.constant(0.0)}

    return loss_fn


def _start(shape=(1, 4, 5, 3), low=0.2, high=0.4, seed=0) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).uniform(low, high, shape), tf.float32)


class _Recorder:
    """A callback that keeps every (step, image, total) it is shown."""

    def __init__(self, stop_at: int | None = None, interrupt_at: int | None = None):
        self.steps, self.images, self.totals = [], [], []
        self.stop_at, self.interrupt_at = stop_at, interrupt_at

    def __call__(self, step, image, losses):
        self.steps.append(step)
        self.images.append(np.array(image))
        self.totals.append(float(losses["total"]))
        if step == self.interrupt_at:
            raise KeyboardInterrupt
        return step == self.stop_at


# ----------------------------------------------------------------------------- every optimizer


@pytest.fixture(scope="module")
def stylize_inputs():
    return nstlib.load_sample("chelsea", max_size=64), nstlib.load_sample("stripes", max_size=64)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_lowers_a_style_transfer_loss(stylize_inputs, optimizer):
    content, style = stylize_inputs
    steps = 20
    result = nstlib.stylize(content, style, size=64, steps=steps, optimizer=optimizer,
                            weights="random", content_layers=("block2_conv2",),
                            style_layers=STYLE_LAYERS, progress=False)
    history = result.history
    assert result.record["status"] == "completed"
    assert len(history) == steps + 1
    np.testing.assert_array_equal(history["step"], np.arange(steps + 1))
    total = history["total"]
    assert np.all(np.isfinite(total))
    assert total[-1] < 0.75 * total[0], (optimizer, total[0], total[-1])
    seconds = history["seconds"]
    assert seconds[0] >= 0 and np.all(np.diff(seconds) >= 0)
    image = result.image.numpy()
    assert image.min() >= 0.0 and image.max() <= 1.0


def test_history_rows_and_result_fields():
    init = _start()
    result = minimize(_quadratic(np.full(init.shape, 0.5)), init, steps=7, optimizer="adam",
                      learning_rate=0.01, progress=False)
    history = result.history
    assert len(history) == 8
    assert set(history.rows[0]) == {"step", "total", "content", "style", "tv", "seconds"}
    np.testing.assert_array_equal(history["step"], np.arange(8))
    assert np.all(np.diff(history["seconds"]) >= 0)
    assert history.final == history.rows[-1]
    assert history.to_dict()["total"] == list(history["total"])
    assert result.status == "completed" and result.learning_rate == 0.01
    # Row k holds the loss of the image after k updates; the last row is the returned image.
    assert history["total"][0] == pytest.approx(float(_quadratic(np.full(init.shape, 0.5))(
        init)["total"]), rel=1e-6)
    assert history["total"][-1] == pytest.approx(float(_quadratic(np.full(init.shape, 0.5))(
        result.image)["total"]), rel=1e-5)


def test_sgd_follows_the_hand_derived_update():
    # loss = sum((x - t)^2), gradient 2 (x - t): x_k - t = (1 - 2 lr)^k (x_0 - t).
    init, target, lr, steps = _start(), np.full((1, 4, 5, 3), 0.6, np.float32), 0.1, 5
    recorder = _Recorder()
    result = minimize(_quadratic(target), init, steps=steps, optimizer="sgd", learning_rate=lr,
                      callbacks=[recorder], progress=False)
    for k, image in enumerate(recorder.images):
        expected = target + (1 - 2 * lr) ** k * (init.numpy() - target)
        np.testing.assert_allclose(image, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.image.numpy(), recorder.images[-1])
    expected_totals = [np.sum(((1 - 2 * lr) ** k * (init.numpy() - target)) ** 2)
                       for k in range(steps + 1)]
    np.testing.assert_allclose(result.history["total"], expected_totals, rtol=1e-4)
    assert recorder.steps == list(range(steps + 1))


def test_default_sgd_rate_makes_the_per_pixel_step_independent_of_image_size():
    # For a mean-type loss the gradient per pixel is 2 (x - t) / (H W C); the default
    # SGD rate is multiplied by H W, so one step moves every pixel by the same amount.
    moves = []
    for shape in [(1, 8, 8, 3), (1, 16, 32, 3)]:
        init = tf.fill(shape, 0.2)
        size = np.prod(shape)
        result = minimize(_quadratic(np.full(shape, 0.8), scale=1.0 / size), init, steps=1,
                          optimizer="sgd", progress=False)
        moves.append(float(np.mean(result.image.numpy() - 0.2)))
    assert moves[0] == pytest.approx(moves[1], rel=1e-5)
    expected = DEFAULT_LEARNING_RATES["sgd"] * 2 * 0.6 / 3  # lr_pp * H W * 2 (t - x) / (H W C)
    assert moves[0] == pytest.approx(expected, rel=1e-5)


def test_zero_steps_returns_the_start():
    init = _start()
    for optimizer in ("adam", "lbfgs"):
        result = minimize(_quadratic(np.zeros(init.shape)), init, steps=0, optimizer=optimizer,
                          progress=False)
        assert len(result.history) == 1 and result.status == "completed"
        np.testing.assert_array_equal(result.image.numpy(), init.numpy())


def test_unknown_optimizer_and_bad_steps():
    init = _start()
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'; choose one of sgd, "
                                         "momentum, nesterov, rmsprop, adagrad, adam, lbfgs"):
        minimize(_quadratic(np.zeros(init.shape)), init, steps=3, optimizer="adamw",
                 progress=False)
    with pytest.raises(ValueError, match="steps must be non-negative"):
        minimize(_quadratic(np.zeros(init.shape)), init, steps=-1, progress=False)
    # Names are case-insensitive.
    result = minimize(_quadratic(np.zeros(init.shape)), init, steps=1, optimizer="Adam",
                      progress=False)
    assert result.status == "completed"


# ----------------------------------------------------------------------------- stopping


def _ill_conditioned(shape, seed=1):
    """Weighted quadratic plus a smoothness term: L-BFGS needs many iterations (an
    isotropic quadratic it solves in two, which would end the run before any stop)."""
    rng = np.random.default_rng(seed)
    target = tf.constant(rng.uniform(0.1, 0.9, shape), tf.float32)
    weight = tf.constant(rng.uniform(0.5, 5.0, shape), tf.float32)

    def loss_fn(x):
        total = (tf.reduce_sum(weight * tf.square(x - target))
                 + tf.reduce_sum(tf.square(x[:, 1:] - x[:, :-1])))
        return {"total": total}

    return loss_fn


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "lbfgs"])
def test_callback_returning_true_stops_early(optimizer):
    init = _start(shape=(1, 6, 6, 3))
    recorder = _Recorder(stop_at=3)
    result = minimize(_ill_conditioned(init.shape), init, steps=20, optimizer=optimizer,
                      learning_rate=None if optimizer == "lbfgs" else 0.01,
                      callbacks=[recorder], progress=False)
    assert result.status == "stopped"
    assert recorder.steps == [0, 1, 2, 3]
    assert len(result.history) == 4
    # The returned image is the one the callback saw when it asked to stop.
    np.testing.assert_array_equal(result.image.numpy(), recorder.images[-1])
    assert result.history["total"][-1] == pytest.approx(recorder.totals[-1])


def test_ctrl_c_keeps_the_current_image():
    init = _start()
    recorder = _Recorder(interrupt_at=2)
    result = minimize(_quadratic(np.full(init.shape, 0.9)), init, steps=10, optimizer="adam",
                      learning_rate=0.05, callbacks=[recorder], progress=False)
    assert result.status == "interrupted"
    np.testing.assert_array_equal(result.image.numpy(), recorder.images[-1])
    assert not np.array_equal(result.image.numpy(), init.numpy())


# ----------------------------------------------------------------------------- non-finite


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_non_finite_loss_raises_with_the_last_finite_image(optimizer):
    # The image climbs from ~0.3 towards 1; the loss is NaN once its mean passes 0.5.
    init = _start()
    loss_fn = _quadratic(np.ones(init.shape), nan_above=0.5)
    recorder = _Recorder()
    with pytest.raises(NonFiniteLossError, match="non-finite at step .*smaller learning rate") \
            as info:
        minimize(loss_fn, init, steps=200, optimizer=optimizer, learning_rate=0.02,
                 callbacks=[recorder], progress=False)
    error = info.value
    assert isinstance(error, FloatingPointError)
    assert len(recorder.images) >= 2  # a few good steps before it failed
    last_good = error.image.numpy()
    assert np.all(np.isfinite(last_good))
    np.testing.assert_array_equal(last_good, recorder.images[-1])
    assert np.isfinite(float(loss_fn(error.image)["total"]))
    assert np.mean(last_good) <= 0.5
    assert len(error.history) == len(recorder.images)
    assert error.history["total"][-1] == pytest.approx(recorder.totals[-1])


def test_non_finite_loss_under_lbfgs_keeps_the_last_accepted_image():
    init = _start()
    loss_fn = _quadratic(np.ones(init.shape), nan_above=0.5)
    recorder = _Recorder()
    with pytest.raises(NonFiniteLossError) as info:
        minimize(loss_fn, init, steps=20, optimizer="lbfgs", callbacks=[recorder],
                 progress=False)
    assert np.all(np.isfinite(info.value.image.numpy()))
    np.testing.assert_array_equal(info.value.image.numpy(), recorder.images[-1])
    assert np.isfinite(float(loss_fn(info.value.image)["total"]))


def test_non_finite_error_is_exported():
    assert nstlib.NonFiniteLossError is NonFiniteLossError


# ----------------------------------------------------------------------------- bounds


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam", "sgd"])
def test_pixels_stay_in_unit_range_when_the_optimum_is_outside(optimizer):
    # Targets below 0 and above 1 pull pixels out of range; the bounded optimum is clip(t).
    target = np.tile(np.array([-0.5, 0.3, 1.5], np.float32), (1, 4, 4, 1))
    recorder = _Recorder()
    result = minimize(_quadratic(target), tf.fill(target.shape, 0.5), steps=60,
                      optimizer=optimizer, learning_rate=None if optimizer == "lbfgs" else 0.1,
                      callbacks=[recorder], progress=False)
    for image in recorder.images + [result.image.numpy()]:
        assert image.min() >= 0.0 and image.max() <= 1.0
    np.testing.assert_allclose(result.image.numpy(), np.clip(target, 0, 1), atol=0.02)


def test_lbfgs_returns_the_last_recorded_image_and_no_learning_rate():
    init = _start()
    loss_fn = _quadratic(np.full(init.shape, 0.5))
    result = minimize(loss_fn, init, steps=3, optimizer="lbfgs", progress=False)
    assert result.learning_rate is None
    assert result.history["total"][-1] == pytest.approx(float(loss_fn(result.image)["total"]),
                                                        rel=1e-5, abs=1e-9)
    assert result.history["total"][-1] < result.history["total"][0]


# ----------------------------------------------------------------------------- factories


@pytest.mark.parametrize(("name", "cls", "momentum", "nesterov"), [
    ("sgd", keras.optimizers.SGD, 0.0, False),
    ("momentum", keras.optimizers.SGD, 0.9, False),
    ("nesterov", keras.optimizers.SGD, 0.9, True),
])
def test_make_optimizer_sgd_family(name, cls, momentum, nesterov):
    optimizer = make_optimizer(name, 0.125)
    assert type(optimizer) is cls
    assert optimizer.momentum == pytest.approx(momentum)
    assert bool(optimizer.nesterov) is nesterov
    assert float(optimizer.learning_rate) == pytest.approx(0.125)


def test_make_optimizer_adaptive_methods():
    rmsprop = make_optimizer("rmsprop", 0.01)
    assert type(rmsprop) is keras.optimizers.RMSprop
    assert rmsprop.epsilon == pytest.approx(1e-8)
    adagrad = make_optimizer("adagrad", 0.02)
    assert type(adagrad) is keras.optimizers.Adagrad
    assert adagrad.initial_accumulator_value == pytest.approx(1e-10)
    adam = make_optimizer("ADAM", 0.03)
    assert type(adam) is keras.optimizers.Adam
    assert (adam.beta_1, adam.beta_2) == (pytest.approx(0.9), pytest.approx(0.999))
    for optimizer, lr in [(rmsprop, 0.01), (adagrad, 0.02), (adam, 0.03)]:
        assert float(optimizer.learning_rate) == pytest.approx(lr)


def test_make_optimizer_refuses_lbfgs_and_unknown_names():
    with pytest.raises(ValueError, match="L-BFGS is not a Keras optimizer"):
        make_optimizer("lbfgs", 1.0)
    with pytest.raises(ValueError, match="unknown optimizer 'newton'"):
        make_optimizer("newton", 1.0)


def test_effective_learning_rate_rule():
    shape = (1, 32, 48, 3)
    # An explicit rate is used as given, for every optimizer.
    for name in OPTIMIZERS:
        assert effective_learning_rate(name, 0.5, shape) == 0.5
    # Defaults: per-pixel rates times H*W for the plain gradient methods ...
    for name in ("sgd", "momentum", "nesterov"):
        assert effective_learning_rate(name, None, shape) == pytest.approx(
            DEFAULT_LEARNING_RATES[name] * 32 * 48)
        assert effective_learning_rate(name, None, (1, 64, 96, 3)) == pytest.approx(
            4 * effective_learning_rate(name, None, shape))
    # ... and size-independent rates for the adaptive ones; L-BFGS has none.
    for name in ("rmsprop", "adagrad", "adam"):
        assert effective_learning_rate(name, None, shape) == DEFAULT_LEARNING_RATES[name]
        assert effective_learning_rate(name, None, (1, 7, 9, 3)) == DEFAULT_LEARNING_RATES[name]
    assert effective_learning_rate("lbfgs", None, shape) is None
    for bad in (0, -0.1):
        with pytest.raises(ValueError, match="learning rate must be positive"):
            effective_learning_rate("adam", bad, shape)
    assert set(DEFAULT_LEARNING_RATES) == set(OPTIMIZERS)


def test_minimize_reports_the_effective_learning_rate():
    init = tf.fill((1, 6, 10, 3), 0.5)
    result = minimize(_quadratic(np.zeros(init.shape)), init, steps=1, optimizer="momentum",
                      progress=False)
    assert result.learning_rate == pytest.approx(DEFAULT_LEARNING_RATES["momentum"] * 60)


def test_minimize_accepts_an_optimizer_instance():
    import keras
    import tensorflow as tf

    import nstlib

    target = tf.fill((1, 4, 4, 3), 0.75)

    def loss_fn(image):
        return {"total": tf.reduce_sum(tf.square(image - target))}

    result = nstlib.minimize(loss_fn, tf.fill((1, 4, 4, 3), 0.25), steps=30, progress=False,
                             optimizer=keras.optimizers.Adam(0.05, beta_1=0.99, epsilon=0.1))
    assert result.learning_rate is None
    assert result.history["total"][-1] < result.history["total"][0]
    with pytest.raises(ValueError, match="learning_rate"):
        nstlib.minimize(loss_fn, target, steps=1, learning_rate=0.1, progress=False,
                        optimizer=keras.optimizers.Adam(0.05))
    with pytest.raises(ValueError, match="used as given"):
        nstlib.minimize(loss_fn, target, steps=1, schedule="cosine", progress=False,
                        optimizer=keras.optimizers.Adam(0.05))


def test_cosine_schedule_matches_its_closed_form():
    from nstlib.optimize import COSINE_FINAL_FRACTION, learning_rate_schedule

    assert learning_rate_schedule(0.1, "constant", 10) == 0.1
    schedule = learning_rate_schedule(0.1, "cosine", 10)
    f = COSINE_FINAL_FRACTION
    for k in (0, 3, 5, 10, 12):
        expected = 0.1 * (f + (1 - f) * 0.5 * (1 + np.cos(np.pi * min(k, 10) / 10)))
        assert float(schedule(k)) == pytest.approx(expected, rel=1e-6)


def test_cosine_schedule_sets_adam_step_sizes():
    # With a constant gradient g, Adam's bias-corrected m / sqrt(v) is g/|g| at every step,
    # so each pixel moves by exactly the step's learning rate (up to epsilon).
    from nstlib.optimize import learning_rate_schedule

    befores = []
    result = minimize(lambda image: {"total": -tf.reduce_sum(image)}, tf.fill((1, 2, 2, 3), 0.2),
                      steps=8, optimizer="adam", learning_rate=0.05, schedule="cosine",
                      progress=False,
                      callbacks=[lambda step, image, losses: befores.append(image.numpy())])
    moves = np.diff(np.stack(befores)[:, 0, 0, 0, 0])
    expected = [float(learning_rate_schedule(0.05, "cosine", 8)(k)) for k in range(8)]
    np.testing.assert_allclose(moves, expected, rtol=1e-4)
    assert result.learning_rate == 0.05


@pytest.mark.parametrize("optimizer, schedule, fragment", [
    ("adam", "linear", "schedule must be one of constant, cosine"),
    ("lbfgs", "cosine", "needs a Keras optimizer, not L-BFGS"),
])
def test_bad_schedule_is_refused(optimizer, schedule, fragment):
    with pytest.raises(ValueError, match=fragment):
        minimize(lambda image: {"total": tf.reduce_sum(image)}, tf.zeros((1, 2, 2, 3)),
                 steps=1, optimizer=optimizer, schedule=schedule, progress=False)


# ----------------------------------------------------------------------------- default rates


def test_backtracking_halves_to_the_closed_form_armijo_rate():
    # loss = a/2 · Σ(x − t)²: a step of rate r gives L₁ = (1 − r a)² L₀ and the linear model
    # predicts a decrease of 2 r a L₀, so L₁ ≤ L₀ − ½ · 2 r a L₀ holds iff r a ≤ 1. From
    # r₀ = 1 with a = 10 the first accepted halving is r₀ / 16 (r a = 0.625).
    init = _start((1, 4, 5, 3), 0.45, 0.55)
    loss_fn = _quadratic(np.full(init.shape, 0.5), scale=5.0)
    assert backtracked_learning_rate(loss_fn, init, 1.0) == 1.0 / 16
    assert backtracked_learning_rate(loss_fn, init, 0.09) == 0.09  # r a = 0.9: accepted
    assert backtracked_learning_rate(loss_fn, init, 0.11) == 0.055  # r a = 1.1: halved


def test_default_sgd_rate_is_backtracked_only_when_the_rule_overshoots():
    init = _start((1, 4, 5, 3), 0.45, 0.55)
    rule = effective_learning_rate("sgd", None, init.shape)  # 0.002 · 20 = 0.04
    steep = _quadratic(np.full(init.shape, 0.5), scale=125.0)  # a = 250: rule · a = 10
    result = minimize(steep, init, steps=5, optimizer="sgd", progress=False)
    assert result.learning_rate == pytest.approx(rule / 16)
    assert np.all(np.diff(result.history["total"]) < 0)
    gentle = _quadratic(np.full(init.shape, 0.5), scale=1.0)
    assert minimize(gentle, init, steps=1, optimizer="sgd",
                    progress=False).learning_rate == pytest.approx(rule)
    # An explicit rate is used as given, even where it overshoots.
    assert minimize(steep, init, steps=1, optimizer="sgd", learning_rate=rule,
                    progress=False).learning_rate == rule


@pytest.mark.parametrize("size", [32, 64, 256])
def test_every_default_optimizer_lowers_the_default_loss_at_every_size(size):
    """Issue 15: the default stylize settings (all layers, weights, rates) at CLI sizes.

    Chelsea with stripes is the hard case for plain gradient steps at 32 px: the stripes
    average to a nearly flat grey there, so the normalised style loss (÷ ΣA² of a tiny
    target Gram) starts at 130 and its gradient is ~400 times the 64 px one.
    """
    for optimizer in OPTIMIZERS:
        result = nstlib.stylize("chelsea", "stripes", size=size, steps=3, optimizer=optimizer,
                                weights="random", progress=False)
        total = result.history["total"]
        assert np.all(np.isfinite(total)) and len(total) >= 2, optimizer
        assert total[-1] < total[0], (optimizer, size, list(total))


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_default_plain_gradient_rates_on_the_issue_case(optimizer):
    # stylize(noise48, noise48, size=32, steps=12, optimizer="sgd") went 0.34 -> 4.9.
    noise = np.random.default_rng(0).uniform(0, 1, (48, 48, 3)).astype(np.float32)
    result = nstlib.stylize(noise, noise, size=32, steps=12, optimizer=optimizer,
                            weights="random", progress=False)
    total = result.history["total"]
    assert total.max() <= total[0] and total[-1] < total[0], list(total)


# ----------------------------------------------------------------------------- every context

# Run in a fresh process on a copy of the package (issue 26): Adam, then the copy's
# optimize.py is edited on disk (lines added above the loops, as a merge into an editable
# install does while a long benchmark runs) so that the Keras step's text stands where
# L-BFGS's traced function stood, then L-BFGS in this thread and in two threads at once,
# each with its own loss.
_RUN_AFTER_AN_EDIT = r'''
import pathlib, sys, threading
import numpy as np
import tensorflow as tf
import nstlib
from nstlib.losses import StyleTransferObjective
from nstlib.optimize import minimize

package = pathlib.Path(nstlib.__file__).parent
assert package.is_relative_to(sys.argv[1]), package

def objective(seed):
    rng = np.random.default_rng(seed)
    content, style = (tf.constant(rng.uniform(0, 1, (1, 32, 32, 3)), tf.float32)
                      for _ in range(2))
    extractor = nstlib.FeatureExtractor(("block2_conv1",), ("block1_conv1", "block2_conv1"),
                                        weights="random", seed=seed, conv_impl="standard")
    return StyleTransferObjective(extractor, content, style), content

def check(name, optimizer, seed):
    loss_fn, start = objective(seed)
    result = minimize(loss_fn, start, steps=3, optimizer=optimizer, progress=False)
    total = result.history["total"]
    eager = float(loss_fn(result.image)["total"])  # no tracing, no source read
    assert result.status == "completed", (name, result.status)
    assert total[-1] < total[0] and abs(total[-1] - eager) <= 1e-5 * eager, (name, total)
    print(name, "ok", total[0], total[-1], flush=True)

check("adam before the edit", "adam", 0)
path = package / "optimize.py"
text = path.read_text()
lines = text.splitlines()
def decorator_line(name):  # the line of the decorator above "def name(", 0-based
    return next(k for k, line in enumerate(lines) if line.strip().startswith(f"def {name}(")) - 1
shift = decorator_line("value_and_grad") - decorator_line("step")
assert shift > 0 and lines[decorator_line("step")].strip().startswith("@tf.function"), shift
path.write_text("# a line added by a merge\n" * shift + text)
check("lbfgs after the edit", "lbfgs", 1)
errors = []

def in_thread(seed):
    try:
        check(f"lbfgs in thread {seed}", "lbfgs", seed)
    except BaseException as err:
        errors.append(repr(err))

threads = [threading.Thread(target=in_thread, args=(seed,)) for seed in (2, 3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert not errors, errors
'''


def test_runs_do_not_read_the_source_after_an_edit(tmp_path):
    """Issue 26: time_to_image's L-BFGS leg failed with "tf__step() takes 0 positional
    arguments but 1 was given" after its Adam legs. AutoGraph converted each traced step
    from its source file as it read at first trace; the editable install had been changed
    meanwhile, so the Keras step's text was read in place of L-BFGS's ``value_and_grad``.
    The steps are traced without AutoGraph now (``nstlib.optimize``'s docstring)."""
    import pathlib
    import shutil
    import subprocess
    import sys

    source = pathlib.Path(nstlib.__file__).parent
    shutil.copytree(source, tmp_path / "nstlib", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path),
           "PYTHONDONTWRITEBYTECODE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _RUN_AFTER_AN_EDIT, str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.count(" ok ") == 4, proc.stdout


def test_lbfgs_in_two_threads_gives_each_loss_its_own_run():
    """Two L-BFGS runs at once (each its own loss, as the benchmarks' turn-taking threads
    do) give the histories of the same runs one after the other."""
    import threading

    losses = {seed: _quadratic(_start(seed=seed + 10), scale=1.0 + seed)
              for seed in (0, 1)}
    alone = {seed: minimize(loss, _start(seed=seed), steps=4, optimizer="lbfgs",
                            progress=False).history["total"] for seed, loss in losses.items()}
    together, errors = {}, []

    def run(seed):
        try:
            together[seed] = minimize(losses[seed], _start(seed=seed), steps=4,
                                      optimizer="lbfgs", progress=False).history["total"]
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(repr(err))

    threads = [threading.Thread(target=run, args=(seed,)) for seed in losses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for seed in losses:
        np.testing.assert_allclose(together[seed], alone[seed], rtol=1e-6)
        assert together[seed][-1] < together[seed][0]


# ----------------------------------------------------------------------------- the guard


def _overshooting_quadratic(offset=0.001):
    """sum((x − t)²) from x0 = t + offset: Adam's first step moves every pixel by about
    its rate, so any rate ≥ 2·offset raises the loss."""
    init = _start()
    return _quadratic(init.numpy() - offset), init


def test_guard_halves_adams_default_rate_to_the_closed_form_rate():
    loss_fn, init = _overshooting_quadratic(0.001)
    guarded = minimize(loss_fn, init, steps=3, optimizer="adam", schedule="cosine",
                       progress=False)
    # First step ≈ rate·sign(g) (ε̂ = 1e-7 ≪ |g| = 0.002): it lowers the loss iff
    # rate < 2·0.001, so 0.1 is halved six times.
    assert guarded.guarded and guarded.learning_rate == pytest.approx(0.1 / 2**6)
    total = guarded.history["total"]
    assert total[1] < total[0] and float(loss_fn(guarded.image)["total"]) < total[0]
    unguarded = minimize(loss_fn, init, steps=3, optimizer="adam", schedule="cosine",
                         progress=False, guard=False)
    assert unguarded.learning_rate == 0.1 and not unguarded.guarded
    assert unguarded.history["total"][-1] > 100 * total[0]  # what the guard prevents


def test_guard_returns_the_image_of_lowest_loss_and_says_which():
    # An explicit rate is used as given: these steps overshoot and oscillate, so the
    # last image is not the best one.
    loss_fn, init = _overshooting_quadratic(0.05)
    result = minimize(loss_fn, init, steps=6, optimizer="adam", learning_rate=0.08,
                      schedule="cosine", progress=False)
    total = result.history["total"]
    best = int(np.argmin(total))
    assert len(total) == 7 and best < 6 and total[-1] > total[best]  # the case is real
    assert result.history.kept == best and result.history.final["step"] == best
    assert result.history.final["total"] == total[best]
    assert float(loss_fn(result.image)["total"]) == pytest.approx(total[best], rel=1e-5)
    # the textbook constant-rate Adam is not guarded: same steps, the last image back
    plain = minimize(loss_fn, init, steps=6, optimizer="adam", learning_rate=0.08,
                     schedule="constant", progress=False)
    assert not plain.guarded and plain.history.kept is None
    assert float(loss_fn(plain.image)["total"]) == pytest.approx(
        plain.history["total"][-1], rel=1e-5)


def test_constant_adam_keeps_its_default_rate_unless_the_guard_is_asked_for():
    loss_fn, init = _overshooting_quadratic(0.001)
    plain = minimize(loss_fn, init, steps=2, optimizer="adam", progress=False)
    assert plain.learning_rate == DEFAULT_LEARNING_RATES["adam"] and not plain.guarded
    asked = minimize(loss_fn, init, steps=2, optimizer="adam", progress=False, guard=True)
    assert asked.guarded and asked.learning_rate == pytest.approx(0.02 / 2**4)


def test_guard_keeps_the_rate_where_the_first_step_already_lowers_the_loss():
    loss_fn, init = _overshooting_quadratic(0.5)  # far from the optimum: 0.1 is fine
    result = minimize(loss_fn, init, steps=2, optimizer="adam", schedule="cosine",
                      progress=False)
    assert result.learning_rate == 0.1 and result.history.kept is None


#: Sizes and step counts of the default-method grid: small and shallow, so that it runs
#: in seconds; benchmarks/descent.py runs the grid up to 1024 px and 500 steps.
GUARD_GRID = [(size, steps) for size in (32, 64) for steps in (5, 12)]


@pytest.mark.parametrize("inputs", ["noise", "natural"])
def test_default_method_lowers_the_loss_over_a_grid_of_sizes_and_steps(inputs):
    """Issue 26: the default (Adam, cosine from 0.1) ended above its start on noise
    images in short runs (e.g. 64 px, 5 steps: 1.59x with these layers)."""
    rng = np.random.default_rng(0)
    layers = {"content_layers": ("block3_conv1",),
              "style_layers": ("block1_conv1", "block2_conv1", "block3_conv1")}
    for size, steps in GUARD_GRID:
        content, style = ((rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
                           for _ in range(2)) if inputs == "noise"
                          else ("chelsea", "brushstrokes"))
        result = nstlib.stylize(content, style, size=size, steps=steps, weights="random",
                                progress=False, **layers)
        start, returned = result.history["total"][0], result.losses["total"]
        assert returned < start, (inputs, size, steps, start, returned)
        assert result.record["guard"] is True
    if inputs == "noise":  # the grid holds a case the guard is needed for
        unguarded = nstlib.stylize(content, style, size=64, steps=5, weights="random",
                                   progress=False, guard=False, **layers)
        assert unguarded.losses["total"] > unguarded.history["total"][0]
