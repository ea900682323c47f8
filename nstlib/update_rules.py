"""Textbook first-order update rules on NumPy arrays (SGD, momentum, AdaGrad, RMSprop, Adam).

This module owns the update rules written out by hand in textbook notation (α learning
rate, ∇ gradient), for teaching and for checking what a Keras optimizer does; notebook 04
(``04_optimizers.ipynb``) teaches them. Every rule has the signature
``rule(x, grad, state, learning_rate, **hyper)`` and returns ``(new_x, new_state)``
without modifying its inputs; ``state`` starts as ``{}``. Each optimizer's record in
``nstlib.optimizer_specs`` names its rule and the settings that make the rule its Keras
optimizer (``UPDATE_RULES`` lists them by optimizer name). The optimisation loop that runs
Keras optimizers and L-BFGS on images is ``nstlib.optimize``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nstlib._checks import check_choice
from nstlib.optimizer_specs import OPTIMIZER_SPECS


def sgd_step(x: np.ndarray, grad: np.ndarray, state: dict,
             learning_rate: float) -> tuple[np.ndarray, dict]:
    """Plain gradient descent: ``x ← x − α ∇``.

    Args:
        x: Parameters, any shape.
        grad: ∇f(x), same shape as ``x``.
        state: Unused (kept for a uniform signature); returned unchanged.
        learning_rate: α.

    Returns:
        ``(new_x, state)``.
    """
    return np.asarray(x) - learning_rate * np.asarray(grad), dict(state)


def momentum_step(x: np.ndarray, grad: np.ndarray, state: dict, learning_rate: float,
                  beta: float = 0.9, nesterov: bool = False) -> tuple[np.ndarray, dict]:
    """Momentum as an exponentially weighted moving average of gradients.

    ``V ← β V + (1 − β) ∇`` then ``x ← x − α V``; with ``nesterov=True`` the step uses
    the look-ahead average ``x ← x − α (β V + (1 − β) ∇)`` (``V`` already updated).

    Keras' ``SGD(lr, momentum=m)`` keeps ``v ← m v − lr ∇``, ``x ← x + v``; that is this
    rule with ``v = −α V``, ``m = β`` and ``lr = α (1 − β)``.

    Args:
        x: Parameters, any shape.
        grad: ∇f(x), same shape.
        state: ``{"V": array}`` (zeros when empty).
        learning_rate: α.
        beta: Averaging factor β in [0, 1).
        nesterov: Use the Nesterov look-ahead step.

    Returns:
        ``(new_x, {"V": new_V})``.
    """
    grad = np.asarray(grad)
    velocity = beta * state.get("V", np.zeros_like(grad)) + (1.0 - beta) * grad
    direction = beta * velocity + (1.0 - beta) * grad if nesterov else velocity
    return np.asarray(x) - learning_rate * direction, {"V": velocity}


def _scale(accumulator: np.ndarray, epsilon: float, epsilon_inside_sqrt: bool) -> np.ndarray:
    """``√(s + ε)`` or ``√s + ε``: the denominator of the adaptive rules."""
    if epsilon_inside_sqrt:
        return np.sqrt(accumulator + epsilon)
    return np.sqrt(accumulator) + epsilon


def adagrad_step(x: np.ndarray, grad: np.ndarray, state: dict, learning_rate: float,
                 epsilon: float = 1e-8, initial_accumulator: float = 0.0,
                 epsilon_inside_sqrt: bool = False) -> tuple[np.ndarray, dict]:
    """AdaGrad (Duchi et al. 2011): per-coordinate steps shrinking with the gradient history.

    ``s ← s + ∇²`` then ``x ← x − α ∇ / (√s + ε)``. Keras' ``Adagrad`` starts from
    ``s = initial_accumulator_value`` (0.1 by default) and divides by ``√(s + ε)``:
    pass ``initial_accumulator`` and ``epsilon_inside_sqrt=True`` to reproduce it.

    Args:
        x: Parameters, any shape.
        grad: ∇f(x), same shape.
        state: ``{"s": array}`` (filled with ``initial_accumulator`` when empty).
        learning_rate: α.
        epsilon: ε, keeps the step finite where the gradient has always been zero.
        initial_accumulator: Starting value of ``s``.
        epsilon_inside_sqrt: Divide by ``√(s + ε)`` instead of ``√s + ε``.

    Returns:
        ``(new_x, {"s": new_s})``.
    """
    grad = np.asarray(grad)
    accumulator = state.get("s", np.full_like(grad, initial_accumulator)) + grad**2
    step = learning_rate * grad / _scale(accumulator, epsilon, epsilon_inside_sqrt)
    return np.asarray(x) - step, {"s": accumulator}


def rmsprop_step(x: np.ndarray, grad: np.ndarray, state: dict, learning_rate: float,
                 beta: float = 0.9, epsilon: float = 1e-8,
                 epsilon_inside_sqrt: bool = False) -> tuple[np.ndarray, dict]:
    """RMSprop (Hinton's lecture 6e): divide by a moving RMS of recent gradients.

    ``s ← β s + (1 − β) ∇²`` then ``x ← x − α ∇ / (√s + ε)``. Keras' ``RMSprop`` (``rho``
    = β) divides by ``√(s + ε)``: pass ``epsilon_inside_sqrt=True`` to reproduce it.

    Args:
        x: Parameters, any shape.
        grad: ∇f(x), same shape.
        state: ``{"s": array}`` (zeros when empty).
        learning_rate: α.
        beta: Averaging factor β of the squared gradients.
        epsilon: ε.
        epsilon_inside_sqrt: Divide by ``√(s + ε)`` instead of ``√s + ε``.

    Returns:
        ``(new_x, {"s": new_s})``.
    """
    grad = np.asarray(grad)
    accumulator = beta * state.get("s", np.zeros_like(grad)) + (1.0 - beta) * grad**2
    step = learning_rate * grad / _scale(accumulator, epsilon, epsilon_inside_sqrt)
    return np.asarray(x) - step, {"s": accumulator}


def adam_step(x: np.ndarray, grad: np.ndarray, state: dict, learning_rate: float,
              beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
              epsilon_hat: bool = False) -> tuple[np.ndarray, dict]:
    """Adam (Kingma & Ba 2015): momentum (first moment) over RMSprop (second moment).

    With ``t ← t + 1``: ``m ← β1 m + (1 − β1) ∇``, ``v ← β2 v + (1 − β2) ∇²``, the
    bias-corrected ``m̂ = m / (1 − β1^t)``, ``v̂ = v / (1 − β2^t)`` and
    ``x ← x − α m̂ / (√v̂ + ε)`` (Algorithm 1 of the paper).

    ``epsilon_hat=True`` uses the paper's "more efficient" ordering that Keras implements:
    ``x ← x − α_t m / (√v + ε̂)`` with ``α_t = α √(1 − β2^t) / (1 − β1^t)``. It equals
    Algorithm 1 with ε replaced by ``ε̂ / √(1 − β2^t)``, so the two differ only while ε
    matters (tiny gradients, first steps).

    Args:
        x: Parameters, any shape.
        grad: ∇f(x), same shape.
        state: ``{"m": array, "v": array, "t": int}`` (zeros and 0 when empty).
        learning_rate: α.
        beta1: Averaging factor of the gradients.
        beta2: Averaging factor of the squared gradients.
        epsilon: ε (or ε̂ with ``epsilon_hat``).
        epsilon_hat: Add ε to ``√v`` before the bias correction, as Keras does.

    Returns:
        ``(new_x, {"m": new_m, "v": new_v, "t": t})``.
    """
    grad = np.asarray(grad)
    t = int(state.get("t", 0)) + 1
    m = beta1 * state.get("m", np.zeros_like(grad)) + (1.0 - beta1) * grad
    v = beta2 * state.get("v", np.zeros_like(grad)) + (1.0 - beta2) * grad**2
    if epsilon_hat:
        rate = learning_rate * np.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
        step = rate * m / (np.sqrt(v) + epsilon)
    else:
        m_hat, v_hat = m / (1.0 - beta1**t), v / (1.0 - beta2**t)
        step = learning_rate * m_hat / (np.sqrt(v_hat) + epsilon)
    return np.asarray(x) - step, {"m": m, "v": v, "t": t}


def nesterov_step(x: np.ndarray, grad: np.ndarray, state: dict, learning_rate: float,
                  beta: float = 0.9) -> tuple[np.ndarray, dict]:
    """``momentum_step`` with ``nesterov=True`` (see there)."""
    return momentum_step(x, grad, state, learning_rate, beta=beta, nesterov=True)


def _update_rules() -> dict[str, Callable[..., tuple[np.ndarray, dict]]]:
    """The rule of every optimizer record that has one, by optimizer name."""
    return {name: spec.rule() for name, spec in OPTIMIZER_SPECS.items()
            if spec.update_rule is not None}


#: Hand-written update rules by optimizer name (all but L-BFGS), as their records in
#: ``nstlib.optimizer_specs`` name them.
UPDATE_RULES: dict[str, Callable[..., tuple[np.ndarray, dict]]] = _update_rules()


def run_update_rule(rule, grad_fn: Callable[[np.ndarray], np.ndarray], x0, steps: int,
                    learning_rate: float, **hyper) -> np.ndarray:
    """Iterate an update rule from ``x0`` and return the whole trajectory.

    Args:
        rule: A rule function, or an optimizer name of ``UPDATE_RULES`` ("adam").
        grad_fn: Maps parameters (shape of ``x0``) to the gradient (same shape).
        x0: Starting parameters, any shape; computed in float64.
        steps: Number of updates.
        learning_rate: α.
        **hyper: Further arguments of the rule (``beta``, ``epsilon``, ...).

    Returns:
        (steps + 1, *x0.shape) float64: row k is the parameters after k updates.
    """
    if isinstance(rule, str):
        rules = _update_rules()
        rule = rules[check_choice(rule, rules, "update rule", unknown=True)]
    x = np.array(x0, dtype=np.float64)
    state: dict = {}
    trajectory = [x]
    for _ in range(int(steps)):
        x, state = rule(x, np.asarray(grad_fn(x), dtype=np.float64), state, learning_rate,
                        **hyper)
        trajectory.append(x)
    return np.stack(trajectory)
