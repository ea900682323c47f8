"""Tests for the hand-written update rules of nstlib.update_rules.

Each rule is checked two ways: against the Keras optimizer it corresponds to (with the
re-parameterisation stated in its docstring), on a small float64 quadratic, and against
closed forms that do not use the rule's own code (constant gradients, linear recursions).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from nstlib import optimize
from nstlib.update_rules import (
    UPDATE_RULES,
    adagrad_step,
    adam_step,
    momentum_step,
    rmsprop_step,
    run_update_rule,
    sgd_step,
)

# f(x) = ½ xᵀAx − bᵀx with an ill-conditioned, non-diagonal A (eigenvalues 0.2 and 3).
_Q = np.array([[np.cos(0.4), -np.sin(0.4)], [np.sin(0.4), np.cos(0.4)]])
A = _Q @ np.diag([0.2, 3.0]) @ _Q.T
B = np.array([1.0, -0.5])
X0 = np.array([2.0, 1.5])
STEPS = 50


def grad(x):
    return A @ x - B


def keras_trajectory(optimizer, x0=X0, steps=STEPS, grad_fn=grad):
    """Drive a Keras optimizer on a float64 variable with our own gradients."""
    variable = tf.Variable(np.array(x0, dtype=np.float64))
    rows = [variable.numpy().copy()]
    for _ in range(steps):
        g = tf.constant(grad_fn(variable.numpy()), tf.float64)
        optimizer.apply_gradients([(g, variable)])
        rows.append(variable.numpy().copy())
    return np.stack(rows)


# Keras keeps its learning rate, and converts some constants (Adam's β1, β2, AdaGrad's
# initial accumulator), through float32 even for float64 variables; the hyper-parameters
# below are exact in float32, so the comparison can be bit-for-bit up to round-off.
BETA2 = 1 - 2**-10  # 0.9990234375, close to Adam's 0.999
KERAS_CASES = {
    "sgd": (dict(learning_rate=0.25), lambda: keras.optimizers.SGD(0.25)),
    # EWMA momentum (α, β) = Keras SGD(lr = α(1 − β), momentum = β).
    "momentum": (dict(learning_rate=0.5, beta=0.75),
                 lambda: keras.optimizers.SGD(0.125, momentum=0.75)),
    "nesterov": (dict(learning_rate=0.5, beta=0.75),
                 lambda: keras.optimizers.SGD(0.125, momentum=0.75, nesterov=True)),
    "adagrad": (dict(learning_rate=0.5, epsilon=1e-7, initial_accumulator=0.125,
                     epsilon_inside_sqrt=True),
                lambda: keras.optimizers.Adagrad(0.5, initial_accumulator_value=0.125,
                                                 epsilon=1e-7)),
    "rmsprop": (dict(learning_rate=0.0625, beta=0.9, epsilon=1e-7, epsilon_inside_sqrt=True),
                lambda: keras.optimizers.RMSprop(0.0625, rho=0.9, epsilon=1e-7)),
    "adam": (dict(learning_rate=0.125, beta1=0.875, beta2=BETA2, epsilon=1e-7,
                  epsilon_hat=True),
             lambda: keras.optimizers.Adam(0.125, beta_1=0.875, beta_2=BETA2, epsilon=1e-7)),
}


@pytest.mark.parametrize("name", sorted(KERAS_CASES))
def test_rule_matches_keras_on_quadratic(name):
    hyper, factory = KERAS_CASES[name]
    ours = run_update_rule(name, grad, X0, STEPS, **hyper)
    theirs = keras_trajectory(factory())
    assert ours.shape == theirs.shape == (STEPS + 1, 2)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    # The run actually went somewhere (a rule that never moves would also "match" at k=0).
    assert np.linalg.norm(ours[-1] - X0) > 0.5


@pytest.mark.parametrize("name, hyper, factory", [
    ("momentum", dict(learning_rate=0.3, beta=0.9),
     lambda: keras.optimizers.SGD(0.3 * (1 - 0.9), momentum=0.9)),
    ("adam", dict(learning_rate=0.1, epsilon=1e-7, epsilon_hat=True),
     lambda: keras.optimizers.Adam(0.1)),
])
def test_keras_defaults_match_up_to_float32_constants(name, hyper, factory):
    # 0.1, 0.9 and 0.999 are not exact in float32: agreement to that rounding only.
    ours = run_update_rule(name, grad, X0, STEPS, **hyper)
    theirs = keras_trajectory(factory())
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_momentum_needs_the_learning_rate_reparameterisation():
    # Handing Keras α itself (instead of α(1 − β)) gives a different, 10x larger step.
    ours = run_update_rule("momentum", grad, X0, 10, learning_rate=0.3, beta=0.9)
    naive = keras_trajectory(keras.optimizers.SGD(0.3, momentum=0.9), steps=10)
    assert np.max(np.abs(ours - naive)) > 0.1


def test_textbook_defaults_differ_from_keras_defaults_where_documented():
    # AdaGrad: Keras starts its accumulator at 0.1, which damps the first steps.
    ours = run_update_rule("adagrad", grad, X0, 5, learning_rate=0.5)
    theirs = keras_trajectory(keras.optimizers.Adagrad(0.5), steps=5)
    assert np.max(np.abs(ours - theirs)) > 1e-3


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adagrad", "adam"])
def test_library_make_optimizer_is_the_hand_rule(name):
    """``make_optimizer``'s settings written as hand rules (to float32 rounding of β, lr)."""
    lr = 0.0625
    hyper = {
        "sgd": {},
        "momentum": dict(beta=0.9),
        "rmsprop": dict(beta=0.9, epsilon=1e-8, epsilon_inside_sqrt=True),
        "adagrad": dict(epsilon=1e-10, initial_accumulator=1e-10, epsilon_inside_sqrt=True),
        "adam": dict(epsilon=1e-7, epsilon_hat=True),
    }[name]
    alpha = lr / (1 - 0.9) if name == "momentum" else lr
    ours = run_update_rule(name, grad, X0, STEPS, learning_rate=alpha, **hyper)
    theirs = keras_trajectory(optimize.make_optimizer(name, lr))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert np.linalg.norm(ours[-1] - X0) > 0.1


# ----------------------------------------------------------------------------- closed forms


def test_sgd_on_quadratic_is_a_linear_recursion():
    alpha = 0.3
    x_star = np.linalg.solve(A, B)
    trajectory = run_update_rule(sgd_step, grad, X0, 20, learning_rate=alpha)
    contraction = np.eye(2) - alpha * A
    for k in (1, 7, 20):
        expected = x_star + np.linalg.matrix_power(contraction, k) @ (X0 - x_star)
        np.testing.assert_allclose(trajectory[k], expected, rtol=1e-12, atol=1e-12)


def test_momentum_with_constant_gradient_is_a_bias_free_average():
    g = np.array([2.0, -1.0])
    alpha, beta, steps = 0.1, 0.8, 12
    trajectory = run_update_rule("momentum", lambda x: g, np.zeros(2), steps,
                                 learning_rate=alpha, beta=beta)
    # V_k = (1 − β^k) g, so x_t = −α g Σ_{k=1..t} (1 − β^k).
    for t in (1, 5, steps):
        factor = sum(1 - beta**k for k in range(1, t + 1))
        np.testing.assert_allclose(trajectory[t], -alpha * g * factor, rtol=1e-12)
    # Nesterov looks one average ahead: direction β V_k + (1 − β) g = (1 − β^{k+1}) g.
    nesterov = run_update_rule("nesterov", lambda x: g, np.zeros(2), steps,
                               learning_rate=alpha, beta=beta)
    factor = sum(1 - beta ** (k + 1) for k in range(1, steps + 1))
    np.testing.assert_allclose(nesterov[-1], -alpha * g * factor, rtol=1e-12)


def test_adagrad_with_constant_gradient_takes_one_over_sqrt_k_steps():
    g = np.array([3.0, -0.01])
    trajectory = run_update_rule("adagrad", lambda x: g, np.zeros(2), 9, learning_rate=0.5,
                                 epsilon=0.0)
    # s_k = k g², step_k = α sign(g) / √k: independent of |g|.
    expected = -0.5 * np.sign(g) * sum(1 / np.sqrt(k) for k in range(1, 10))
    np.testing.assert_allclose(trajectory[-1], expected, rtol=1e-12)


def test_rmsprop_with_constant_gradient():
    g = np.array([4.0, -0.5])
    beta, alpha, eps = 0.9, 0.01, 1e-3
    trajectory = run_update_rule("rmsprop", lambda x: g, np.zeros(2), 6, learning_rate=alpha,
                                 beta=beta, epsilon=eps)
    expected = -sum(alpha * g / (np.sqrt(1 - beta**k) * np.abs(g) + eps) for k in range(1, 7))
    np.testing.assert_allclose(trajectory[-1], expected, rtol=1e-12)
    inside = run_update_rule("rmsprop", lambda x: g, np.zeros(2), 6, learning_rate=alpha,
                             beta=beta, epsilon=eps, epsilon_inside_sqrt=True)
    expected = -sum(alpha * g / np.sqrt((1 - beta**k) * g**2 + eps) for k in range(1, 7))
    np.testing.assert_allclose(inside[-1], expected, rtol=1e-12)


def test_adam_first_step_is_learning_rate_times_sign():
    g = np.array([1e3, -1e-3, 0.0])
    x1, state = adam_step(np.zeros(3), g, {}, learning_rate=0.01, epsilon=0.0 + 1e-12)
    # Bias correction makes m̂ = g and v̂ = g² at t = 1: the step is α·sign(g).
    np.testing.assert_allclose(x1, [-0.01, 0.01, 0.0], rtol=1e-6)
    assert state["t"] == 1
    np.testing.assert_allclose(state["m"], 0.1 * g)
    np.testing.assert_allclose(state["v"], 0.001 * g**2)


def test_adam_epsilon_hat_is_algorithm_one_with_rescaled_epsilon():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(4, 3)) * 1e-6  # tiny gradients: ε matters
    beta2, eps_hat = 0.999, 1e-7
    # m and v do not depend on ε, so the two states stay equal and each step (taken from
    # x = 0) can be compared on its own.
    state_hat, state_alg = {}, {}
    for t, g in enumerate(grads, start=1):
        step_hat, state_hat = adam_step(np.zeros(3), g, state_hat, 0.01, beta2=beta2,
                                        epsilon=eps_hat, epsilon_hat=True)
        step_alg, state_alg = adam_step(np.zeros(3), g, state_alg, 0.01, beta2=beta2,
                                        epsilon=eps_hat / np.sqrt(1 - beta2**t))
        np.testing.assert_allclose(step_alg, step_hat, rtol=1e-12, atol=1e-18)
    # With the same ε the two forms really differ at these gradient sizes.
    plain, _ = adam_step(np.zeros(3), grads[0], {}, 0.01, epsilon=eps_hat)
    hat, _ = adam_step(np.zeros(3), grads[0], {}, 0.01, epsilon=eps_hat, epsilon_hat=True)
    assert np.max(np.abs(plain - hat)) > 1e-4


# ----------------------------------------------------------------------------- interface


@pytest.mark.parametrize("name", sorted(UPDATE_RULES))
def test_rules_do_not_modify_their_inputs(name):
    x, g = np.array([1.0, 2.0]), np.array([0.5, -0.5])
    rule = UPDATE_RULES[name]
    _, state = rule(x.copy(), g.copy(), {}, 0.1)
    frozen = {k: np.copy(v) for k, v in state.items()}
    x_new, state_new = rule(x, g, state, 0.1)
    np.testing.assert_array_equal(x, [1.0, 2.0])
    np.testing.assert_array_equal(g, [0.5, -0.5])
    for key, value in frozen.items():
        np.testing.assert_array_equal(state[key], value)
    assert x_new.shape == x.shape and set(state_new) == set(state)


def test_update_rules_cover_the_keras_optimizers():
    assert set(UPDATE_RULES) == set(optimize.OPTIMIZERS) - {"lbfgs"}
    assert sgd_step(np.ones(2), np.ones(2), {}, 0.5)[0].tolist() == [0.5, 0.5]
    x, state = momentum_step(np.ones(2), np.ones(2), {}, 1.0, beta=0.5)
    np.testing.assert_allclose(state["V"], [0.5, 0.5])
    np.testing.assert_allclose(x, [0.5, 0.5])
    x, state = rmsprop_step(np.zeros(1), np.array([2.0]), {}, 1.0, beta=0.75, epsilon=0.0)
    np.testing.assert_allclose(state["s"], [1.0])  # 0.25 · 4
    np.testing.assert_allclose(x, [-2.0])
    x, state = adagrad_step(np.zeros(1), np.array([2.0]), {"s": np.array([5.0])}, 1.0,
                            epsilon=0.0)
    np.testing.assert_allclose(state["s"], [9.0])
    np.testing.assert_allclose(x, [-2.0 / 3.0])


def test_run_update_rule_shapes_and_errors():
    trajectory = run_update_rule("adam", lambda x: 2 * x, np.ones((2, 3)), 4, 0.1)
    assert trajectory.shape == (5, 2, 3) and trajectory.dtype == np.float64
    np.testing.assert_array_equal(trajectory[0], np.ones((2, 3)))
    with pytest.raises(ValueError, match="unknown update rule"):
        run_update_rule("lbfgs", grad, X0, 3, 0.1)
