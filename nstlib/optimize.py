"""Minimising a loss over the pixels of an image: Keras optimizers on a tape, or L-BFGS.

``minimize`` is the one loop. It records every step's losses and elapsed seconds in a
``History``, stops with ``NonFiniteLossError`` (keeping the last finite image) when a
loss becomes NaN or infinite, returns the current image on Ctrl-C, and calls
``callbacks`` after every step (a callback returning True stops the run).

The step functions are traced with ``tf.function(autograph=False)``: they are straight-line
TensorFlow code and need no AutoGraph, and AutoGraph would convert each one from the text
of its source file *as that file reads when the function is first traced*, not from the
code that was imported. A process that outlives an edit of the installed library (an
editable install changed by a merge or a ``git checkout`` during an hour-long benchmark, a
notebook kernel left open) then traced whatever function the edited file holds at the old
line numbers: ``benchmarks/time_to_image.py`` failed in its last (L-BFGS) leg with
"tf__step() takes 0 positional arguments but 1 was given", the Keras step read in
place of ``value_and_grad`` (reproduced by tests/test_optimize.py,
``test_runs_do_not_read_the_source_after_an_edit``).
The loss function is therefore called as plain Python inside the trace: tensor-dependent
choices in it must be TensorFlow ops (``tf.where``, ``tf.cond``), or it can be a
``tf.function`` itself.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import scipy.optimize
import tensorflow as tf

from nstlib._checks import check_choice
from nstlib._tf_logging import quiet_tensorflow_warnings
from nstlib.optimizer_specs import (
    OPTIMIZER_SPECS,
    SCHEDULES,
    OptimizerSpec,
    optimizer_spec,
)
from nstlib.resources import LBFGS_MEMORY

with warnings.catch_warnings():
    # Without ipywidgets, tqdm.auto uses its text bar in notebooks (what we want) but warns
    # "IProgress not found" into every notebook's first output.
    warnings.filterwarnings("ignore", message="IProgress not found")
    from tqdm.auto import tqdm


#: The optimizer names and their default rates (constant, and under the cosine schedule
#: where it differs), as read from their records (``nstlib.optimizer_specs``, which says
#: why they are what they are); kept for notebook 04 and older code.
OPTIMIZERS = tuple(OPTIMIZER_SPECS)
DEFAULT_LEARNING_RATES = {name: spec.learning_rate for name, spec in OPTIMIZER_SPECS.items()}
COSINE_LEARNING_RATES = {name: spec.cosine_learning_rate
                         for name, spec in OPTIMIZER_SPECS.items()
                         if spec.cosine_learning_rate is not None}
#: Backtracking of the plain-gradient default rate: accept a rate when its first step
#: achieves at least this fraction of the decrease predicted by the gradient (Armijo).
ARMIJO_FRACTION = 0.5
#: The same test for the first step of an adaptive optimizer under the guard: any decrease
#: beyond 1e-4 of the predicted one (the usual c1 of Nocedal & Wright). Adam's first step
#: moves every pixel by about its rate whatever the gradient's size, so the first-order
#: prediction overstates the decrease (achieved/predicted 0.13-0.16 for the default's
#: first step on the bundled pair at 128-256 px, which lowers the loss there by a third);
#: 0.5 would shrink that tuned rate where it works.
ADAPTIVE_ARMIJO_FRACTION = 1e-4
MAX_HALVINGS = 40
COSINE_FINAL_FRACTION = 0.05
LOSS_KEYS = ("total", "content", "style", "tv")

LossFn = Callable[[tf.Tensor], dict]
StepCallback = Callable[[int, tf.Tensor, dict], object]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite.

    Attributes:
        image: (1, H, W, 3) the last image whose loss was finite.
        history: The ``History`` up to that image.
    """

    def __init__(self, message: str, image: tf.Tensor, history: History):
        super().__init__(message)
        self.image, self.history = image, history


@dataclass
class History:
    """Per-step losses and elapsed wall-clock seconds.

    Row k holds the losses of the image after k updates and the seconds spent to
    produce it (compilation included in row 1 onwards, since it happens in step 0).
    Every evaluated image has its row, also under ``minimize``'s guard: when the guard
    returns an earlier image than the last, ``kept`` is that image's row and ``final``
    its losses.
    """

    rows: list = field(default_factory=list)
    kept: int | None = None

    def append(self, step: int, losses: dict, seconds: float) -> None:
        self.rows.append({"step": step, **{k: float(v) for k, v in losses.items()},
                          "seconds": seconds})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: str) -> np.ndarray:
        """One column, e.g. ``history["total"]`` -> (len,) float64."""
        return np.array([row[key] for row in self.rows], dtype=np.float64)

    @property
    def final(self) -> dict:
        """The losses of the returned image: the last row, or row ``kept`` where the
        guard kept an earlier image (its "step" says which)."""
        if not self.rows:
            return {}
        return dict(self.rows[-1 if self.kept is None else self.kept])

    def to_dict(self) -> dict[str, list]:
        """Columns as lists (JSON-ready)."""
        keys = self.rows[0].keys() if self.rows else ()
        return {key: [row[key] for row in self.rows] for key in keys}

    @classmethod
    def joined(cls, parts, column: str) -> History:
        """One history from consecutive runs, each tagged with its value in ``column``.

        Args:
            parts: (value, History, seconds offset) per run, in order; steps are
                numbered on from the previous run's last step (each run's row 0 is its
                starting image) and each run's seconds are shifted by its offset.
            column: Name of the added column ("scale" for coarse-to-fine, "level" for
                multi-level WCT).
        """
        history = cls()
        for value, part, offset in parts:
            step0 = history.rows[-1]["step"] + 1 if history.rows else 0
            # the joined run returns the last part's image
            history.kept = None if part.kept is None else len(history.rows) + part.kept
            for row in part.rows:
                history.rows.append({**row, "step": step0 + row["step"],
                                     "seconds": offset + row["seconds"], column: value})
        return history


@dataclass
class OptimizationResult:
    """What ``minimize`` returns.

    Attributes:
        image: (1, H, W, 3) float32 in [0, 1], the image after the last update; under
            the guard the image of lowest loss seen (``history.final`` is its row).
        history: Losses per step.
        status: "completed", "stopped" (a callback asked), "interrupted" (Ctrl-C) or the
            optimizer's own message for L-BFGS ending early.
        learning_rate: The learning rate actually used (None for L-BFGS).
        guarded: Whether the guard was on (``minimize``).
    """

    image: tf.Tensor
    history: History
    status: str
    learning_rate: float | None
    guarded: bool = False

def effective_learning_rate(name: str | OptimizerSpec, learning_rate: float | None,
                            image_shape: Sequence[int],
                            schedule: str = "constant") -> float | None:
    """The learning rate ``minimize`` uses for an optimizer and image shape.

    An explicit ``learning_rate`` is used as given. The default is the optimizer's record's
    (``OptimizerSpec.default_rate``: its cosine rate under the cosine schedule, the rate at
    step 0, where it has one); a per-pixel default (``rate_kind`` "gradient": SGD,
    momentum, Nesterov) is multiplied by the number of pixels H·W, and ``minimize`` then
    lowers that rate where the first step would not lower the loss
    (``backtracked_learning_rate``).

    Args:
        name: An optimizer name (case-insensitive) or its ``OptimizerSpec``.
        learning_rate: The rate asked for, or None for the default.
        image_shape: (1, H, W, 3), the shape of the image optimised.
        schedule: "constant" or "cosine".

    Returns:
        The rate at step 0, or None for an optimizer that takes none (L-BFGS).
    """
    spec = optimizer_spec(name)
    if learning_rate is not None:
        if not learning_rate > 0:
            raise ValueError(f"learning rate must be positive, got {learning_rate}")
        return float(learning_rate)
    default = spec.default_rate(schedule)
    if default is not None and spec.rate_kind == "gradient":
        return default * int(image_shape[1]) * int(image_shape[2])
    return default


def check_optimizer(name: str) -> str:
    """Validate an optimizer name (case-insensitive) and return it in lower case."""
    return optimizer_spec(name).name


def learning_rate_schedule(learning_rate: float, schedule: str, steps: int):
    """The rate (or Keras schedule) handed to the optimizer.

    Args:
        learning_rate: Rate at step 0.
        schedule: One of ``SCHEDULES``.
        steps: Length of the run (the cosine reaches its floor at the last step).

    Returns:
        ``learning_rate`` itself for "constant", else a ``keras.optimizers.schedules``
        object: step k gets lr·(f + (1 − f)·½(1 + cos(π·k/steps))), f = 0.05.
    """
    check_choice(schedule, SCHEDULES, "schedule")
    if schedule == "constant":
        return learning_rate
    return keras.optimizers.schedules.CosineDecay(learning_rate, max(int(steps), 1),
                                                  alpha=COSINE_FINAL_FRACTION)


def make_optimizer(name: str | OptimizerSpec, learning_rate) -> keras.optimizers.Optimizer:
    """A fresh Keras optimizer by name (built by its record's ``keras`` factory).

    "momentum" and "nesterov" use momentum 0.9; "adam" uses the Keras defaults
    (β1 = 0.9, β2 = 0.999); "adagrad" starts its accumulator near zero so that the
    first steps are not damped by Keras' default of 0.1 (our gradients are ~1e-5).

    Args:
        name: An optimizer name (case-insensitive) or its ``OptimizerSpec``.
        learning_rate: A float or a ``keras.optimizers.schedules`` object.
    """
    spec = optimizer_spec(name)
    if spec.keras is None:
        raise ValueError(f"{spec.title or spec.name} is not a Keras optimizer; minimize() "
                         f"runs it through SciPy")
    return spec.keras(learning_rate)


def _is_finite(losses: dict) -> bool:
    return all(np.isfinite(float(v)) for v in losses.values())


def minimize(loss_fn: LossFn, init: tf.Tensor, *, steps: int,
             optimizer: str | keras.optimizers.Optimizer = "adam",
             learning_rate: float | None = None, schedule: str = "constant",
             callbacks: Sequence[StepCallback] = (), progress: bool = True,
             description: str = "optimising", guard: bool | None = None
             ) -> OptimizationResult:
    """Minimise ``loss_fn`` over the pixels of ``init``, keeping them in [0, 1].

    The guard (on by default under the cosine schedule, the fast default, whose high
    starting rate can overshoot; off under "constant", so the taught rules run exactly as
    written) makes a run end below its starting loss:

    1. A default rate of an adaptive optimizer (Adam, RMSprop, AdaGrad) is halved until
       the optimizer's own first step lowers the loss (``backtracked_learning_rate``
       with the first step of the record's textbook rule and
       ``ADAPTIVE_ARMIJO_FRACTION``), as SGD's default always is. Adam's first step moves
       every pixel by about the rate (m̂/√v̂ = ±1), which from a noise image at 32 px
       raised the loss 24-fold at 0.1; on the bundled pairs at 128-256 px 0.1 passes as is
       with random weights, and is halved once for some pairs with the trained VGG16.
       The rate used is the result's ``learning_rate``. An explicit rate is used as given.
    2. The image returned is the one of lowest loss seen (the start, or the image after
       some update), also when the run is stopped or interrupted. The history still has
       every step's row, rises included; ``history.kept`` and ``history.final`` say
       which row was returned. Later steps can still raise the loss (Adam is not a
       descent method); the returned image never has a higher loss than the first step's.

    Together: the first step lowers the loss and no image worse than it is returned, so
    any run of at least one step ends below its start. It costs one gradient and one
    forward pass per rate tried before the run, and one copy of the image.

    Args:
        loss_fn: Maps a (1, H, W, 3) image to a dict of scalar tensors with a "total"
            key (others are recorded too). It is traced by ``tf.function`` without
            AutoGraph (module docstring): Python ``if``/``while`` on tensors must be
            ``tf.cond``/``tf.while_loop``, or the function a ``tf.function`` itself.
        init: (1, H, W, 3) float32 starting image in [0, 1].
        steps: Number of updates (L-BFGS: iterations, each one or more evaluations).
        optimizer: A name of ``OPTIMIZER_SPECS`` (case-insensitive) or its record, or a
            fresh Keras optimizer instance used as given (e.g. Adam with other β/ε, or a
            learning-rate schedule); then ``learning_rate`` must be None and the result's
            ``learning_rate`` is None.
        learning_rate: None for the default (``effective_learning_rate``; for SGD,
            momentum and Nesterov then ``backtracked_learning_rate``).
        schedule: "constant" or "cosine" (``learning_rate_schedule``), for the Keras
            optimizers named by string ("cosine" with L-BFGS or an instance is refused:
            ``OptimizerSpec.check_schedule``).
        callbacks: Called as ``callback(step, image, losses)`` after each recorded row;
            returning True stops the run.
        progress: Show a tqdm progress bar.
        description: Progress-bar label.
        guard: True, False, or None for on under "cosine" and off under "constant" (see
            above). L-BFGS accepts only decreasing iterates already; it ignores the guard.

    Returns:
        ``OptimizationResult``; its history has ``steps + 1`` rows when a Keras optimizer
        completes, and one row per L-BFGS iteration (fewer when L-BFGS converges early).

    Raises:
        NonFiniteLossError: with the last finite image attached.
    """
    if int(steps) < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    init = tf.convert_to_tensor(init, tf.float32)
    if isinstance(optimizer, keras.optimizers.Optimizer):
        if learning_rate is not None or schedule != "constant":
            raise ValueError("an optimizer instance is used as given: pass learning_rate=None "
                             "and schedule='constant' (set the rate on the instance)")
        lr, keras_optimizer = None, optimizer
        guarded = bool(guard)
    else:
        spec = optimizer_spec(optimizer)  # the one check of the name
        spec.check_schedule(schedule)
        guarded = (schedule == "cosine") if guard is None else bool(guard)
        lr = effective_learning_rate(spec, learning_rate, init.shape, schedule)
        if learning_rate is None and int(steps) > 0:
            if spec.rate_kind == "gradient":
                lr = backtracked_learning_rate(loss_fn, init, lr, spec.gain)
            elif spec.rate_kind == "adaptive" and guarded:
                lr = backtracked_learning_rate(loss_fn, init, lr, first_step=spec,
                                               fraction=ADAPTIVE_ARMIJO_FRACTION)
        keras_optimizer = None if spec.keras is None else spec.keras(
            learning_rate_schedule(lr, schedule, steps))
    bar = tqdm(total=int(steps), desc=description, disable=not progress, leave=False)
    try:
        with quiet_tensorflow_warnings():
            if keras_optimizer is None:  # L-BFGS
                return _minimize_lbfgs(loss_fn, init, int(steps), list(callbacks), bar)
            return _minimize_keras(loss_fn, init, int(steps), keras_optimizer, lr,
                                   list(callbacks), bar, guarded)
    finally:
        bar.close()


def steady_state_gain(name: str | OptimizerSpec) -> float:
    """How much longer than ``rate · g`` an optimizer's steps grow under a steady gradient:
    1/(1 − β) for momentum and Nesterov (β = ``optimizer_specs.MOMENTUM``), 1 for plain SGD
    (its record's ``gain``)."""
    return optimizer_spec(name).gain


def backtracked_learning_rate(loss_fn: LossFn, init: tf.Tensor, learning_rate: float,
                              gain: float = 1.0, *, first_step: OptimizerSpec | None = None,
                              fraction: float = ARMIJO_FRACTION) -> float:
    """The default plain-gradient rate, halved until its first step lowers the loss enough.

    Why: the rule rate × H·W keeps a *gradient* step the same size in every pixel for a
    mean-type loss, but stability needs rate · λ_max < 2 (λ_max the largest curvature),
    and the curvature of the normalised content and style terms falls faster than
    1/(H·W) as the image grows (measured with random weights: λ_max ∝ side^-3.4 for the
    content term and side^-3.8 for the style term), so the rule overshoots on small
    images. It also overshoots when the style image is nearly flat at the run's size
    (stripes at 32 px): the normalised style loss divides by ΣA² of a tiny target Gram,
    and its gradient and curvature grow by orders of magnitude. Backtracking measures the
    actual problem instead: the step x₁ = clip(x₀ − rate·g) is accepted when
    L(x₁) ≤ L(x₀) − ½·g·(x₀ − x₁) (Armijo's condition), else the rate is halved. With
    random weights and their recipe, sizes of 128 px and more kept the rule's rate for the
    bundled samples; with the trained VGG16 and its recipe at 128 px (notebook 04) SGD's
    rate was halved three times and momentum's four. With momentum the
    steps grow to ``gain`` = 1/(1 − β) times rate·g while the gradient keeps its direction,
    so the step tested is that steady-state step (a first step alone passed the test and
    then diverged, with the random recipe on noise at 32 px).

    ``minimize``'s guard uses the same test for an adaptive optimizer's default rate,
    with the optimizer's own first step (``first_step``) in place of rate·g.

    Args:
        loss_fn: As for ``minimize``.
        init: (1, H, W, 3) float32 starting image.
        learning_rate: The rule's rate (the largest one tried).
        gain: Factor from the rate to the step tested (``steady_state_gain``).
        first_step: None for the step ``gain``·rate·g; or an optimizer's record, whose
            textbook rule (``OptimizerSpec.rule`` with its ``rule_settings``, α =
            rate·``gain``) gives the first step from empty state (Adam: rate·g/(|g| + ε̂),
            Keras' first step up to float32 rounding).
        fraction: The fraction of the predicted decrease a step must achieve.

    Returns:
        The first accepted rate (after at most ``MAX_HALVINGS`` halvings).
    """
    x0 = tf.convert_to_tensor(init, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x0)
        start = loss_fn(x0)["total"]
    grad = tape.gradient(start, x0)
    if grad is None or not np.isfinite(float(start)):
        return learning_rate  # the run itself reports a non-finite start
    rate = float(learning_rate)
    for _ in range(MAX_HALVINGS):
        move = (gain * rate * grad if first_step is None
                else _first_move(optimizer_spec(first_step), rate, grad))
        x1 = tf.clip_by_value(x0 - move, 0.0, 1.0)
        predicted = float(tf.reduce_sum(grad * (x0 - x1)))  # first-order decrease
        if float(loss_fn(x1)["total"]) <= float(start) - fraction * predicted:
            return rate
        rate *= 0.5
    return rate


def _first_move(spec: OptimizerSpec, rate: float, grad: tf.Tensor) -> tf.Tensor:
    """x0 − x1 of the first step of ``spec``'s textbook rule (empty state), float32."""
    g = grad.numpy().astype(np.float64)
    x1, _ = spec.rule()(np.zeros_like(g), g, {}, rate * spec.gain, **spec.rule_settings)
    return tf.constant(-x1, tf.float32)


class _Recorder:
    """Shared bookkeeping: history rows, callbacks, progress bar and non-finite checks."""

    def __init__(self, callbacks, bar):
        self.history, self.callbacks, self.bar = History(), callbacks, bar
        self.start = time.perf_counter()
        self.last_good: tf.Tensor | None = None
        self.best: tuple[float, int, tf.Tensor] | None = None  # (total, row, image)

    def record(self, step: int, image: tf.Tensor, losses: dict) -> bool:
        """Record image k's losses; returns True if a callback asks to stop."""
        losses = {k: float(v) for k, v in losses.items()}
        if not _is_finite(losses):
            raise NonFiniteLossError(
                f"loss became non-finite at step {step} ({_format(losses)}); "
                f"try a smaller learning rate", self.last_good, self.history)
        self.last_good = image
        self.history.append(step, losses, time.perf_counter() - self.start)
        if self.best is None or losses["total"] < self.best[0]:
            self.best = (losses["total"], len(self.history) - 1, image)
        if step > 0:
            self.bar.update(1)
            if step % 10 == 0:
                self.bar.set_postfix_str(f"loss {losses['total']:.4g}")
        return any(bool(cb(step, image, losses)) for cb in self.callbacks)


def _format(losses: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in losses.items())


def _minimize_keras(loss_fn, init, steps, opt, lr, callbacks, bar,
                    guarded: bool = False) -> OptimizationResult:
    image = tf.Variable(init, trainable=True)

    @tf.function(autograph=False)  # see the module docstring
    def step():
        before = tf.identity(image)
        with tf.GradientTape() as tape:
            losses = loss_fn(image)
        grad = tape.gradient(losses["total"], image)
        opt.apply_gradients([(grad, image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        return before, losses

    recorder, status = _Recorder(callbacks, bar), "completed"
    try:
        for k in range(steps):
            before, losses = step()
            if recorder.record(k, before, losses):
                status = "stopped"
                break
        else:
            final = tf.identity(image)
            recorder.record(steps, final, loss_fn(final))  # eager: one forward pass
    except KeyboardInterrupt:
        status = "interrupted"
    final = recorder.last_good if status != "completed" else tf.identity(image)
    final = init if final is None else final
    if guarded and recorder.best is not None and recorder.best[1] < len(recorder.history) - 1:
        _, recorder.history.kept, final = recorder.best  # an earlier image had a lower loss
    return OptimizationResult(tf.convert_to_tensor(final), recorder.history, status, lr,
                              guarded)


def _minimize_lbfgs(loss_fn, init, steps, callbacks, bar) -> OptimizationResult:
    shape = init.shape

    @tf.function(autograph=False)  # see the module docstring
    def value_and_grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            losses = loss_fn(x)
        return losses, tape.gradient(losses["total"], x)

    cache: dict = {}

    def evaluate(x64: np.ndarray):
        # SciPy works in float64; the network in float32.
        if cache.get("x") is None or not np.array_equal(cache["x"], x64):
            losses, grad = value_and_grad(tf.constant(x64.reshape(shape), tf.float32))
            cache.update(x=x64.copy(), losses={k: float(v) for k, v in losses.items()},
                         grad=grad.numpy().astype(np.float64).ravel())
        return cache["losses"], cache["grad"]

    def fun(x64):
        losses, grad = evaluate(x64)
        if not _is_finite(losses):
            raise NonFiniteLossError(f"loss became non-finite ({_format(losses)})",
                                     recorder.last_good, recorder.history)
        return losses["total"], grad

    recorder = _Recorder(callbacks, bar)
    counter = {"k": 0}

    def callback(intermediate_result):
        counter["k"] += 1
        x = intermediate_result.x
        if recorder.record(counter["k"], _to_image(x, shape), evaluate(x)[0]):
            raise StopIteration

    x0 = init.numpy().astype(np.float64).ravel()
    recorder.record(0, init, evaluate(x0)[0])
    status = "completed"
    try:
        if steps > 0:
            result = scipy.optimize.minimize(
                fun, x0, jac=True, method="L-BFGS-B", bounds=scipy.optimize.Bounds(0.0, 1.0),
                callback=callback,
                # ftol/gtol = 0: run the requested iterations; our gradients are tiny.
                options={"maxiter": steps, "maxfun": 2 * steps + 20, "maxcor": LBFGS_MEMORY,
                         "ftol": 0.0, "gtol": 0.0})
            if not result.success and counter["k"] < steps:
                status = f"lbfgs: {result.message}"
            if result.message and "callback" in str(result.message).lower():
                status = "stopped"
    except KeyboardInterrupt:
        status = "interrupted"
    return OptimizationResult(recorder.last_good, recorder.history, status, None)


def _to_image(x64: np.ndarray, shape) -> tf.Tensor:
    return tf.constant(x64.reshape(shape), tf.float32)
