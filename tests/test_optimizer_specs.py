"""nstlib.optimizer_specs: each record's facts against what its Keras optimizer does, and
one added record as all that a new optimizer needs (settings, flags, memory, loop, rule).

The facts are checked against independent computations: the state slots against the
variables Keras creates, the rate kind against the size of a first step for gradients of
different scales, the gain against the steady-state step under a constant gradient, and
the textbook rule with ``rule_settings`` against the Keras optimizer's trajectory.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from nstlib import cli, optimize, optimizer_specs, resources, settings, update_rules
from nstlib.optimizer_specs import (
    MAX_ADAPTIVE_LEARNING_RATE,
    OPTIMIZER_SPECS,
    SCHEDULES,
    OptimizerSpec,
    keras_factory,
    optimizer_spec,
)
from nstlib.settings import ConfigError, StylizeConfig

KERAS_SPECS = sorted(name for name, spec in OPTIMIZER_SPECS.items() if spec.keras is not None)

# f(x) = ½ xᵀAx − bᵀx, ill-conditioned and non-diagonal (as in test_update_rules).
_Q = np.array([[np.cos(0.4), -np.sin(0.4)], [np.sin(0.4), np.cos(0.4)]])
A = _Q @ np.diag([0.2, 3.0]) @ _Q.T
B = np.array([1.0, -0.5])
X0 = np.array([2.0, 1.5])


def grad(x):
    return A @ x - B


def keras_trajectory(optimizer, grad_fn=grad, x0=X0, steps=50):
    """Drive a Keras optimizer on a float64 variable with our own gradients."""
    variable = tf.Variable(np.array(x0, dtype=np.float64))
    rows = [variable.numpy().copy()]
    for _ in range(steps):
        optimizer.apply_gradients([(tf.constant(grad_fn(variable.numpy()), tf.float64),
                                    variable)])
        rows.append(variable.numpy().copy())
    return np.stack(rows)


# ----------------------------------------------------------------------------- the records


def test_the_table_is_keyed_by_each_records_name_and_read_by_the_old_names():
    assert all(name == spec.name for name, spec in OPTIMIZER_SPECS.items())
    assert settings.OPTIMIZERS == optimize.OPTIMIZERS == tuple(OPTIMIZER_SPECS)
    assert settings.SCHEDULES == SCHEDULES
    assert optimize.DEFAULT_LEARNING_RATES == {
        "sgd": 0.002, "momentum": 0.0005, "nesterov": 0.0005, "rmsprop": 0.005,
        "adagrad": 0.05, "adam": 0.02, "lbfgs": None}
    assert optimize.COSINE_LEARNING_RATES == {"adam": 0.1}
    assert set(update_rules.UPDATE_RULES) == set(KERAS_SPECS)
    assert update_rules.UPDATE_RULES["adam"] is update_rules.adam_step


def test_lookup_is_case_insensitive_and_names_the_choices():
    assert optimizer_spec("ADAM") is OPTIMIZER_SPECS["adam"]
    assert optimizer_spec(OPTIMIZER_SPECS["sgd"]) is OPTIMIZER_SPECS["sgd"]
    assert optimize.check_optimizer("LBFGS") == "lbfgs"
    with pytest.raises(ValueError, match="unknown optimizer 'Newton'; choose one of sgd, "):
        optimizer_spec("Newton")
    with pytest.raises(ValueError, match="rate_kind must be one of"):
        OptimizerSpec(name="x", keras=None, learning_rate=None, rate_kind="fast")
    with pytest.raises(ValueError, match="lower case"):
        OptimizerSpec(name="Adam", keras=None, learning_rate=None, rate_kind="none")


def test_schedules_apply_to_keras_optimizers_only_and_said_once():
    lbfgs = OPTIMIZER_SPECS["lbfgs"]
    assert lbfgs.schedules == ("constant",)
    assert all(OPTIMIZER_SPECS[name].schedules == SCHEDULES for name in KERAS_SPECS)
    # one check, three callers: the settings, the loop, and the record itself
    messages = []
    for check in (lambda: lbfgs.check_schedule("cosine"),
                  lambda: StylizeConfig.from_flat(optimizer="lbfgs", schedule="cosine"),
                  lambda: optimize.minimize(lambda x: {"total": tf.reduce_sum(x)},
                                            tf.zeros((1, 2, 2, 3)), steps=1,
                                            optimizer="lbfgs", schedule="cosine",
                                            progress=False)):
        with pytest.raises(ValueError) as info:
            check()
        messages.append(str(info.value))
    assert messages == ["schedule 'cosine' needs a Keras optimizer, not L-BFGS"] * 3
    assert [OPTIMIZER_SPECS[n].default_schedule for n in ("adam", "sgd", "lbfgs")] == [
        "cosine", "constant", "constant"]
    assert StylizeConfig().optim.schedule_used() == "cosine"


@pytest.mark.parametrize("name", KERAS_SPECS)
def test_state_slots_are_the_image_sized_variables_keras_creates(name):
    spec = OPTIMIZER_SPECS[name]
    variable = tf.Variable(tf.zeros((1, 5, 7, 3)))
    opt = spec.keras(0.01)
    opt.build([variable])
    image_sized = [v for v in opt.variables if tuple(v.shape) == (1, 5, 7, 3)]
    assert len(image_sized) == spec.state_slots


@pytest.mark.parametrize("name", KERAS_SPECS)
def test_rate_kind_says_whether_a_first_step_follows_the_gradients_scale(name):
    """"adaptive": the first step is about the rate whatever the gradient's size (above
    the ε floor); "gradient": it is proportional to the gradient."""
    spec, lr = OPTIMIZER_SPECS[name], 0.01
    steps = []
    for scale in (1e-2, 1.0):
        trajectory = keras_trajectory(spec.keras(lr), lambda x, s=scale: np.full(2, s),
                                      x0=np.zeros(2), steps=1)
        steps.append(-trajectory[1, 0])
    if spec.rate_kind == "adaptive":
        assert steps[0] == pytest.approx(steps[1], rel=0.02)
        assert 0.3 * lr < steps[1] < 3.5 * lr  # AdaGrad/RMSprop divide by √(g²), √(0.1 g²)
    else:
        assert spec.rate_kind == "gradient"
        assert steps[1] == pytest.approx(100 * steps[0], rel=1e-4)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov"])
def test_gain_is_the_steady_state_step_per_rate_and_unit_gradient(name):
    spec, lr = OPTIMIZER_SPECS[name], 0.01
    trajectory = keras_trajectory(spec.keras(lr), lambda x: np.ones(2), x0=np.zeros(2),
                                  steps=400)
    assert -(trajectory[-1, 0] - trajectory[-2, 0]) / lr == pytest.approx(spec.gain, rel=1e-6)
    assert optimize.steady_state_gain(name) == spec.gain


@pytest.mark.parametrize("name", KERAS_SPECS)
def test_textbook_rule_with_its_settings_is_the_keras_optimizer(name):
    """The record's rule with ``rule_settings`` and α = rate · gain follows the record's
    Keras optimizer (to float32 rounding of the constants Keras keeps). Adaptive ones are
    driven with gradients of 1e-5 times the quadratic's, where ε matters as in stylize."""
    spec, lr = OPTIMIZER_SPECS[name], 0.0625
    scale = 1e-5 if spec.rate_kind == "adaptive" else 1.0

    def small(x):
        return scale * grad(x)

    ours = update_rules.run_update_rule(spec.rule(), small, X0, 50,
                                        learning_rate=lr * spec.gain, **spec.rule_settings)
    theirs = keras_trajectory(spec.keras(lr), small)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert np.linalg.norm(ours[-1] - X0) > 0.1


def test_default_rates_scale_with_the_image_only_for_gradient_kinds():
    for name, spec in OPTIMIZER_SPECS.items():
        small = optimize.effective_learning_rate(name, None, (1, 8, 8, 3))
        large = optimize.effective_learning_rate(name, None, (1, 16, 16, 3))
        if spec.rate_kind == "gradient":
            assert large == pytest.approx(4 * small) and small == spec.learning_rate * 64
        else:
            assert large == small == spec.learning_rate
    assert optimize.effective_learning_rate("adam", None, (1, 8, 8, 3), "cosine") == 0.1


def test_the_module_reads_no_tensorflow_keras_or_numpy():
    code = ("import sys; import nstlib.optimizer_specs as o; o.optimizer_spec('adam'); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- one more entry


def lion_step(x, grad, state, learning_rate, beta1=0.9, beta2=0.99):
    """Lion (Chen et al. 2023), written out here, independently of Keras: the step is the
    sign of an interpolation of the gradient and a momentum m, which decays more slowly."""
    m = state.get("m", np.zeros_like(grad))
    direction = np.sign(beta1 * m + (1 - beta1) * grad)
    return x - learning_rate * direction, {"m": beta2 * m + (1 - beta2) * grad}


#: A record for an optimizer nstlib does not ship: Keras' Lion, sign steps of the rate in
#: every pixel (so an adaptive rate kind), one momentum slot.
LION = OptimizerSpec(name="lion", keras=keras_factory("Lion"), learning_rate=0.05,
                     rate_kind="adaptive", state_slots=1, update_rule=lion_step)


@pytest.fixture
def lion(monkeypatch):
    monkeypatch.setitem(OPTIMIZER_SPECS, "lion", LION)
    return LION


def test_one_record_is_all_a_new_optimizer_needs(lion, tmp_path):
    # Unknown before (and after: see the test below).
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        StylizeConfig.from_flat(optimizer="adamw")
    # Settings: accepted, with its default schedule and its rate kind's limit.
    config = StylizeConfig.from_flat(optimizer="Lion", size=32, weights="random")
    assert config.optim.optimizer == "lion" and config.optim.schedule_used() == "constant"
    with pytest.raises(ConfigError, match="learning_rate 20 is absurd for lion .its steps"):
        config.replace(learning_rate=2 * MAX_ADAPTIVE_LEARNING_RATE)
    # The nst command: the flag's choices and a command line.
    args = cli.build_parser().parse_args(
        ["stylize", "a.png", "b.png", "-o", str(tmp_path / "o.png"), "--optimizer", "lion",
         "--schedule", "cosine", "--size", "32"])
    assert cli.settings_from(args).optim.optimizer == "lion"
    assert "lion" in StylizeConfig.flat_fields()["optimizer"].choices
    # The memory model: one float32 slot besides the loop's image copies.
    hw, n = (20, 30), 3 * 20 * 30
    assert resources.optimizer_bytes(config, hw) == (1 + resources.IMAGE_COPIES) * n * 4
    assert (resources.predict_peak_bytes(config, (32, 32), (32, 32))
            - resources.predict_peak_bytes(config.replace(optimizer="sgd"), (32, 32), (32, 32))
            == 3 * 32 * 32 * 4)
    # The textbook rule by name.
    x = update_rules.run_update_rule("lion", grad, X0, 3, learning_rate=0.5)
    np.testing.assert_allclose(x[1], X0 - 0.5 * np.sign(grad(X0)))
    # The loop, on a tiny problem: minimize with the default rate follows the rule written
    # above (sign steps of 0.05 towards the target, clipped to [0, 1]).
    target = np.linspace(0.05, 0.95, 36).reshape(1, 3, 4, 3)
    rng = np.random.default_rng(0)
    init = rng.uniform(0.1, 0.9, (1, 3, 4, 3)).astype(np.float32)

    def loss(x):
        return {"total": tf.reduce_sum((x - target.astype(np.float32)) ** 2)}

    result = optimize.minimize(loss, tf.constant(init), steps=12, optimizer="lion",
                               progress=False)
    assert result.learning_rate == LION.learning_rate and result.status == "completed"
    x, state = init.astype(np.float64), {}
    for _ in range(12):
        x, state = lion_step(x, 2 * (x - target), state, LION.learning_rate)
        x = np.clip(x, 0.0, 1.0)
    np.testing.assert_allclose(result.image.numpy(), x, atol=1e-6)
    assert result.history["total"][-1] < 0.5 * result.history["total"][0]


def test_without_the_record_lion_is_unknown_everywhere():
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        StylizeConfig.from_flat(optimizer="lion")
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        optimize.make_optimizer("lion", 0.1)
    with pytest.raises(ValueError, match="unknown update rule 'lion'"):
        update_rules.run_update_rule("lion", grad, X0, 1, learning_rate=0.1)
    assert "lion" not in optimizer_specs.OPTIMIZER_SPECS


def test_minimize_looks_the_name_up_once(monkeypatch):
    looked_up = []

    def counting(name):
        if not isinstance(name, OptimizerSpec):
            looked_up.append(name)
        return optimizer_spec(name)

    monkeypatch.setattr(optimize, "optimizer_spec", counting)
    for name in ("SGD", "adam", "lbfgs"):
        optimize.minimize(lambda x: {"total": tf.reduce_sum((x - 0.25) ** 2)},
                          tf.fill((1, 2, 3, 3), 0.5), steps=2, optimizer=name, progress=False)
    assert looked_up == ["SGD", "adam", "lbfgs"]
