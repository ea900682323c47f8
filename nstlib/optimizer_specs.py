"""One record per optimizer: every fact nstlib uses about it, in one entry (no TensorFlow).

An ``OptimizerSpec`` holds, for one optimizer name: how to build its Keras optimizer, its
default learning rates, what its rate multiplies (and so how the default scales with the
image and how large a rate is absurd), whether learning-rate schedules apply, the per-pixel
state the memory model counts, and the textbook NumPy rule of notebook 04 with the settings
that make it the Keras optimizer. ``OPTIMIZER_SPECS`` maps names to records, in the spirit
of optax's small transforms: the settings (``settings.OptimConfig`` and the ``nst`` flags),
the loop (``optimize.minimize``), the memory model (``resources``) and the textbook rules
(``update_rules``) all read it, so a new optimizer is one entry here (and a test).

Plain Python: Keras and NumPy are imported only when a factory or rule is called, so the
``nst`` command checks a command line without either.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nstlib._checks import check_choice

#: Keras learning-rate schedules: "constant", or "cosine" (half a cosine from the rate down
#: to 5 % of it over the run's steps, ``optimize.learning_rate_schedule``).
SCHEDULES = ("constant", "cosine")
#: Momentum coefficient β of "momentum" and "nesterov".
MOMENTUM = 0.9
#: Largest learning rate of an adaptive optimizer: a step of 10 crosses the whole intensity
#: range ten times.
MAX_ADAPTIVE_LEARNING_RATE = 10.0
#: Largest learning rate of a plain-gradient optimizer (and of L-BFGS, which ignores it).
#: Their rate multiplies raw gradients: for the default mean-type losses the median |g| per
#: pixel is 1e-4 to 4e-3 at 128-256 px (bundled pairs, trained VGG16 and random weights
#: alike, 2026-12-07) and falls about 4x each time the side doubles. The default rule
#: gives 0.002·H·W (131 at 256 px, 2e5 at 10,000 px), and sum-type losses need smaller
#: rates. 1e8 leaves a wide margin and still refuses values like 1e30, whose
#: first step throws every pixel to 0 or 1.
MAX_GRADIENT_LEARNING_RATE = 1e8
#: What a learning rate can multiply (``OptimizerSpec.rate_kind``): the largest rate
#: accepted, and why, for the message that refuses a larger one.
RATE_KINDS: dict[str, tuple[float, str]] = {
    "adaptive": (MAX_ADAPTIVE_LEARNING_RATE, "its steps are in [0, 1] intensity units"),
    "gradient": (MAX_GRADIENT_LEARNING_RATE, "it multiplies gradients of about 1e-4 per pixel"),
    "none": (MAX_GRADIENT_LEARNING_RATE, "which does not use it"),
}


def keras_factory(class_name: str, **settings) -> Callable[[Any], Any]:
    """A factory ``build(learning_rate)`` -> ``keras.optimizers.<class_name>(rate, **settings)``.

    Keras is imported when the factory is called, not when it is made.

    Args:
        class_name: Name of a class in ``keras.optimizers`` ("SGD", "Adam", ...).
        **settings: Its other constructor arguments (momentum, epsilon, ...).

    Returns:
        A function of the learning rate (a float or a ``keras.optimizers.schedules``
        object) that returns a fresh optimizer.
    """
    def build(learning_rate):
        import keras

        return getattr(keras.optimizers, class_name)(learning_rate, **settings)

    build.__qualname__ = build.__name__ = f"keras.optimizers.{class_name}"
    return build


@dataclass(frozen=True, kw_only=True)
class OptimizerSpec:
    """Everything nstlib knows about one optimizer.

    Attributes:
        name: Its name in settings, flags, grid files and records (lower case).
        title: Its name in messages where it differs from ``name`` ("L-BFGS").
        keras: ``build(learning_rate)`` -> a fresh Keras optimizer, where the rate is a float
            or a Keras schedule (``keras_factory``); None for L-BFGS, the one optimizer
            that is not a Keras optimizer (``optimize.minimize`` runs it through SciPy:
            no learning rate, no schedule).
        learning_rate: Default rate for the default (normalised, mean-type) loss of
            ``stylize``; per pixel for ``rate_kind`` "gradient" (see ``default_rate``).
            None when the optimizer takes no rate.
        cosine_learning_rate: Default rate at step 0 under the cosine schedule, where it
            differs from ``learning_rate`` (a decaying rate can start higher).
        cosine_by_default: Use the cosine schedule unless a run says otherwise.
        rate_kind: What the rate multiplies (a key of ``RATE_KINDS``): "adaptive" steps
            are about the rate in [0, 1] intensity units per pixel, whatever the
            gradient's scale (RMSprop, AdaGrad, Adam); "gradient" rates multiply the raw
            gradient, which for a mean-type loss shrinks as 1/(H·W), so the default is
            given per pixel, multiplied by H·W and then backtracked
            (``optimize.backtracked_learning_rate``); "none": no rate (L-BFGS).
        gain: The textbook rule's α per unit of the Keras rate, which is also how much
            longer than rate·g the Keras steps grow under a steady gradient: 1/(1 − β) for
            momentum and Nesterov, whose textbook form is an average (see
            ``update_rules.momentum_step``), 1 for the others. Backtracking tests the step
            rate·gain·g.
        state_slots: Float32 image-sized vectors of state the Keras optimizer keeps (Adam:
            two moments), for the memory model (``resources.optimizer_bytes``).
        update_rule: The textbook NumPy rule of notebook 04 (``rule(x, grad, state,
            learning_rate, **hyper)``, see ``nstlib.update_rules``), or the name of a
            function in ``nstlib.update_rules`` (so that reading this table imports no
            NumPy); None where there is none (L-BFGS).
        rule_settings: The rule's keyword arguments that make it the optimizer ``keras``
            builds, with α = rate · ``gain`` (equal up to float32 rounding).
    """

    name: str
    title: str | None = None
    keras: Callable[[Any], Any] | None
    learning_rate: float | None
    cosine_learning_rate: float | None = None
    cosine_by_default: bool = False
    rate_kind: str
    gain: float = 1.0
    state_slots: int = 0
    update_rule: Callable[..., tuple] | str | None = None
    rule_settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.name != self.name.lower():
            raise ValueError(f"optimizer names are lower case, got {self.name!r}")
        check_choice(self.rate_kind, RATE_KINDS, "rate_kind")

    @property
    def schedules(self) -> tuple[str, ...]:
        """The schedules that apply: all of ``SCHEDULES`` for a Keras optimizer, else
        only "constant"."""
        return SCHEDULES if self.keras is not None else ("constant",)

    @property
    def default_schedule(self) -> str:
        """The schedule of a run that does not name one."""
        return "cosine" if self.cosine_by_default else "constant"

    def check_learning_rate(self, learning_rate: float | None, *,
                            error: type[Exception] = ValueError) -> None:
        """``error`` with a one-line reason if ``learning_rate`` exceeds the limit of the
        optimizer's ``rate_kind`` (``RATE_KINDS``)."""
        limit, why = RATE_KINDS[self.rate_kind]
        if learning_rate is not None and learning_rate > limit:
            raise error(f"learning_rate {learning_rate:g} is absurd for {self.name} ({why}); "
                        f"the limit is {limit:g}")

    def check_schedule(self, schedule: str, *, error: type[Exception] = ValueError) -> str:
        """``schedule`` if it is one of ``SCHEDULES`` and applies to this optimizer, else
        ``error`` with a one-line message."""
        check_choice(schedule, SCHEDULES, "schedule", error=error)
        if schedule not in self.schedules:
            raise error(f"schedule {schedule!r} needs a Keras optimizer, not "
                        f"{self.title or self.name}")
        return schedule

    def default_rate(self, schedule: str = "constant") -> float | None:
        """The default rate under ``schedule`` (per pixel for ``rate_kind`` "gradient")."""
        if schedule == "cosine" and self.cosine_learning_rate is not None:
            return self.cosine_learning_rate
        return self.learning_rate

    def rule(self) -> Callable[..., tuple] | None:
        """The textbook NumPy rule as a function (``update_rule`` looked up if a name)."""
        if isinstance(self.update_rule, str):
            return getattr(importlib.import_module("nstlib.update_rules"), self.update_rule)
        return self.update_rule


#: Every optimizer by name. Default rates are for the default loss of ``stylize``; the
#: adaptive ones are fractions of the [0, 1] intensity range, the plain-gradient ones are
#: per pixel and only an upper bound (``optimize.minimize`` halves the product with H·W
#: until the first step lowers the loss enough, see ``optimize.backtracked_learning_rate``,
#: because the curvature of the normalised content and style terms does not follow
#: 1/(H·W)). Adam's cosine rate was measured at 256 px with random VGG19 weights and the
#: ImageNet recipe (2026-12-02, benchmarks/time_to_quality.py): from 0.1 decayed over 120
#: steps it passed the loss of 300 constant steps at 0.02 in under 100 steps; 0.07 and 0.14
#: over 100 steps ended higher. With the trained VGG16 it ends 1-28 % above that loss
#: (README Performance). AdaGrad starts its accumulator near zero so that the first steps
#: are not damped by Keras' default of 0.1 (our gradients are ~1e-4, far below 0.1²);
#: RMSprop's ε is the textbook 1e-8.
OPTIMIZER_SPECS: dict[str, OptimizerSpec] = {spec.name: spec for spec in (
    OptimizerSpec(name="sgd", keras=keras_factory("SGD"), learning_rate=0.002,
                  rate_kind="gradient", update_rule="sgd_step"),
    OptimizerSpec(name="momentum", keras=keras_factory("SGD", momentum=MOMENTUM),
                  learning_rate=0.0005, rate_kind="gradient", gain=1 / (1 - MOMENTUM),
                  state_slots=1, update_rule="momentum_step",
                  rule_settings={"beta": MOMENTUM}),
    OptimizerSpec(name="nesterov",
                  keras=keras_factory("SGD", momentum=MOMENTUM, nesterov=True),
                  learning_rate=0.0005, rate_kind="gradient", gain=1 / (1 - MOMENTUM),
                  state_slots=1, update_rule="nesterov_step",
                  rule_settings={"beta": MOMENTUM}),
    OptimizerSpec(name="rmsprop", keras=keras_factory("RMSprop", epsilon=1e-8),
                  learning_rate=0.005, rate_kind="adaptive", state_slots=1,
                  update_rule="rmsprop_step",
                  rule_settings={"beta": 0.9, "epsilon": 1e-8, "epsilon_inside_sqrt": True}),
    OptimizerSpec(name="adagrad",
                  keras=keras_factory("Adagrad", initial_accumulator_value=1e-10,
                                      epsilon=1e-10),
                  learning_rate=0.05, rate_kind="adaptive", state_slots=1,
                  update_rule="adagrad_step",
                  rule_settings={"epsilon": 1e-10, "initial_accumulator": 1e-10,
                                 "epsilon_inside_sqrt": True}),
    OptimizerSpec(name="adam", keras=keras_factory("Adam"), learning_rate=0.02,
                  cosine_learning_rate=0.1, cosine_by_default=True, rate_kind="adaptive",
                  state_slots=2, update_rule="adam_step",
                  rule_settings={"epsilon": 1e-7, "epsilon_hat": True}),
    OptimizerSpec(name="lbfgs", title="L-BFGS", keras=None, learning_rate=None,
                  rate_kind="none"),
)}


def optimizer_spec(name: str | OptimizerSpec) -> OptimizerSpec:
    """The record of an optimizer name (case-insensitive); a record is returned as given.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if isinstance(name, OptimizerSpec):
        return name
    key = str(name).lower()
    # the message shows the name as given: it is a known one exactly when key is
    check_choice(key if key in OPTIMIZER_SPECS else name, OPTIMIZER_SPECS, "optimizer",
                 unknown=True)
    return OPTIMIZER_SPECS[key]
