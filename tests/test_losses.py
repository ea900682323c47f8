"""Tests for nstlib.losses against NumPy references, closed forms and hand-derived gradients."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf
from references import random_image, scipy_pyramid

import nstlib
from nstlib.features import FeatureExtractor
from nstlib.losses import (
    CONTENT_REDUCTIONS,
    STYLE_FORMS,
    TV_KINDS,
    StyleTransferObjective,
    blend_weights,
    content_loss,
    layer_style_loss,
    pyramid_style_loss,
    pyramid_style_targets,
    shrink_style_targets,
    style_loss,
    total_variation_loss,
)
from nstlib.settings import LossConfig, StylizeConfig
from nstlib.statistics import gram_matrix, ledoit_wolf_shrinkage, shrink_gram

RNG = np.random.default_rng(42)


def _unnormalised_gram(f: np.ndarray) -> np.ndarray:
    """(H, W, N) -> (N, N): G_ij = sum over the M = H*W positions of F_i F_j."""
    flat = f.reshape(-1, f.shape[-1]).astype(np.float64)
    return flat.T @ flat


def _gatys_layer_loss(generated: np.ndarray, style: np.ndarray) -> float:
    """Gatys et al. (2016), eq. 4: E = 1 / (4 N^2 M^2) * sum (G - A)^2, unnormalised Grams."""
    n = generated.shape[-1]
    m = generated.shape[0] * generated.shape[1]
    g, a = _unnormalised_gram(generated), _unnormalised_gram(style)
    return float(((g - a) ** 2).sum() / (4.0 * n**2 * m**2))


def _hw_gram(f: np.ndarray) -> np.ndarray:
    return _unnormalised_gram(f) / (f.shape[0] * f.shape[1])


# ----------------------------------------------------------------------------- content


@pytest.fixture
def content_pair():
    generated = RNG.normal(size=(2, 4, 5, 3)).astype(np.float32)
    target = RNG.normal(size=(2, 4, 5, 3)).astype(np.float32)
    return generated, target


def test_content_loss_sum_mean_normalized_match_numpy(content_pair):
    f, p = content_pair
    diff2 = (f.astype(np.float64) - p) ** 2
    expected = {
        "sum": 0.5 * diff2.sum(),
        "mean": diff2.mean(),
        # Relative squared error: sum (F - P)^2 / sum P^2.
        "normalized": diff2.sum() / (p.astype(np.float64) ** 2).sum(),
    }
    for reduction in CONTENT_REDUCTIONS:
        value = content_loss(tf.constant(f), tf.constant(p), reduction)
        assert value.shape == ()
        np.testing.assert_allclose(float(value), expected[reduction], rtol=1e-5,
                                   err_msg=reduction)


def test_content_loss_default_is_the_classic_half_sum(content_pair):
    f, p = content_pair
    np.testing.assert_allclose(float(content_loss(f, p)),
                               0.5 * ((f.astype(np.float64) - p) ** 2).sum(), rtol=1e-5)


def test_content_loss_normalized_with_a_broadcast_target():
    # One target for a batch of two: each generated image is compared with the same P.
    p = RNG.normal(size=(1, 3, 3, 2)).astype(np.float32)
    f = RNG.normal(size=(2, 3, 3, 2)).astype(np.float32)
    per_image = [((f[b] - p[0]) ** 2).sum() / (p**2).sum() for b in range(2)]
    np.testing.assert_allclose(float(content_loss(f, p, "normalized")), np.mean(per_image),
                               rtol=1e-5)
    # A zero image has relative error exactly 1.
    np.testing.assert_allclose(float(content_loss(np.zeros_like(f), p, "normalized")), 1.0,
                               rtol=1e-6)


def test_content_loss_is_zero_at_the_target(content_pair):
    _, p = content_pair
    for reduction in CONTENT_REDUCTIONS:
        assert float(content_loss(p, p, reduction)) == 0.0


def test_content_loss_sum_gradient_is_f_minus_p(content_pair):
    f, p = content_pair
    generated = tf.Variable(f)
    with tf.GradientTape() as tape:
        loss = content_loss(generated, tf.constant(p), "sum")
    grad = tape.gradient(loss, generated).numpy()
    np.testing.assert_allclose(grad, f - p, rtol=1e-6, atol=1e-6)


def test_content_loss_mean_gradient_is_scaled_difference(content_pair):
    f, p = content_pair
    generated = tf.Variable(f)
    with tf.GradientTape() as tape:
        loss = content_loss(generated, tf.constant(p), "mean")
    np.testing.assert_allclose(tape.gradient(loss, generated).numpy(), 2 * (f - p) / f.size,
                               rtol=1e-5, atol=1e-8)


def test_content_loss_rejects_unknown_reduction(content_pair):
    with pytest.raises(ValueError, match="reduction must be one of sum, mean, normalized"):
        content_loss(*content_pair, reduction="max")


# ----------------------------------------------------------------------------- style


@pytest.fixture
def style_pair():
    # Non-negative like ReLU activations; N = 6 channels, M = 4 * 5 = 20 positions.
    generated = np.abs(RNG.normal(size=(1, 4, 5, 6))).astype(np.float32)
    style = np.abs(RNG.normal(size=(1, 4, 5, 6))).astype(np.float32) * 1.5
    return generated, style


def test_gatys_layer_loss_matches_paper_formula_with_unnormalised_grams(style_pair):
    generated, style = style_pair
    target = gram_matrix(style, "hw")  # the documented input: an "hw" Gram of the style
    value = float(layer_style_loss(tf.constant(generated), target, form="gatys"))
    np.testing.assert_allclose(value, _gatys_layer_loss(generated[0], style[0]), rtol=1e-5)


def test_gatys_is_the_default_form(style_pair):
    generated, style = style_pair
    target = gram_matrix(style)
    np.testing.assert_allclose(float(layer_style_loss(generated, target)),
                               float(layer_style_loss(generated, target, "gatys")), rtol=0)


def test_normalized_and_mse_layer_losses_match_numpy(style_pair):
    generated, style = style_pair
    g, a = _hw_gram(generated[0]), _hw_gram(style[0])
    target = gram_matrix(style, "hw")
    np.testing.assert_allclose(float(layer_style_loss(generated, target, "normalized")),
                               ((g - a) ** 2).sum() / (a**2).sum(), rtol=1e-5)
    np.testing.assert_allclose(float(layer_style_loss(generated, target, "mse")),
                               ((g - a) ** 2).mean(), rtol=1e-5)


def test_normalized_layer_loss_is_one_for_a_zero_image(style_pair):
    generated, style = style_pair
    value = layer_style_loss(np.zeros_like(generated), gram_matrix(style), "normalized")
    np.testing.assert_allclose(float(value), 1.0, rtol=1e-6)


@pytest.mark.parametrize("form", STYLE_FORMS)
def test_layer_style_loss_sums_over_the_batch(style_pair, form):
    generated, style = style_pair
    other = np.abs(RNG.normal(size=generated.shape)).astype(np.float32)
    target = gram_matrix(style)
    batch = layer_style_loss(np.concatenate([generated, other]), target, form)
    separate = layer_style_loss(generated, target, form) + layer_style_loss(other, target, form)
    np.testing.assert_allclose(float(batch), float(separate), rtol=1e-5)
    assert float(layer_style_loss(style, target, form)) == pytest.approx(0.0, abs=1e-9)


def test_gatys_layer_loss_gradient_matches_closed_form(style_pair):
    # Gatys et al. (2016), eq. 6: dE/dF = 1 / (N^2 M^2) * F (G - A) (per position, where F > 0).
    generated, style = style_pair
    f = generated[0].reshape(-1, 6).astype(np.float64)
    g, a = _unnormalised_gram(generated[0]), _unnormalised_gram(style[0])
    expected = (f @ (g - a)) / (6**2 * 20**2)
    variable = tf.Variable(generated)
    with tf.GradientTape() as tape:
        loss = layer_style_loss(variable, gram_matrix(style), "gatys")
    grad = tape.gradient(loss, variable).numpy()[0].reshape(-1, 6)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-7)


def test_layer_style_loss_rejects_unknown_form(style_pair):
    generated, style = style_pair
    with pytest.raises(ValueError, match="style form must be one of gatys, normalized, mse"):
        layer_style_loss(generated, gram_matrix(style), form="Gatys")


def _layers():
    shapes = [(1, 6, 6, 3), (1, 3, 3, 5), (1, 2, 2, 8)]
    gen = [np.abs(RNG.normal(size=s)).astype(np.float32) for s in shapes]
    sty = [np.abs(RNG.normal(size=s)).astype(np.float32) for s in shapes]
    return gen, sty


@pytest.mark.parametrize("form", STYLE_FORMS)
def test_style_loss_is_weighted_sum_with_default_equal_weights(form):
    gen, sty = _layers()
    grams = [gram_matrix(s) for s in sty]
    per_layer = np.array([float(layer_style_loss(f, a, form)) for f, a in zip(gen, grams,
                                                                              strict=True)])
    assert np.all(per_layer > 0)
    np.testing.assert_allclose(float(style_loss(gen, grams, form=form)), per_layer.mean(),
                               rtol=1e-5)
    weights = [0.5, 2.0, 10.0]
    np.testing.assert_allclose(float(style_loss(gen, grams, weights, form=form)),
                               (per_layer * weights).sum(), rtol=1e-5)


def test_style_loss_gatys_matches_numpy_for_several_layers():
    gen, sty = _layers()
    weights = [1.0, 0.25, 3.0]
    expected = sum(w * _gatys_layer_loss(f[0], s[0]) for w, f, s in zip(weights, gen, sty,
                                                                        strict=True))
    value = style_loss(gen, [gram_matrix(s) for s in sty], weights, form="gatys")
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_style_loss_rejects_mismatched_lengths():
    gen, sty = _layers()
    grams = [gram_matrix(s) for s in sty]
    with pytest.raises(ValueError, match="3 feature maps but 2 target Grams"):
        style_loss(gen, grams[:2])
    with pytest.raises(ValueError, match="2 layer weights for 3 style layers"):
        style_loss(gen, grams, layer_weights=[1.0, 1.0])


# ----------------------------------------------------------------------------- total variation


# A 3x3 single-channel image whose differences are easy to write down by hand:
#   image [[0, 1, 3],     dx (along width)  [[1, 2], [2, -1], [-1, 2]]
#          [2, 4, 3],     dy (along height) [[2, 3, 0], [-1, -4, -1]]
#          [1, 0, 2]]
TV_IMAGE = np.array([[0.0, 1.0, 3.0], [2.0, 4.0, 3.0], [1.0, 0.0, 2.0]], np.float32)
DX = np.array([[1.0, 2.0], [2.0, -1.0], [-1.0, 2.0]])
DY = np.array([[2.0, 3.0, 0.0], [-1.0, -4.0, -1.0]])


def _tv_image():
    return tf.constant(TV_IMAGE[None, :, :, None])


def test_tv_hand_computed_differences_are_right():
    # Guard the hand-written table above against typos.
    np.testing.assert_array_equal(np.diff(TV_IMAGE, axis=1), DX)
    np.testing.assert_array_equal(np.diff(TV_IMAGE, axis=0), DY)


def test_tv_l1_closed_form():
    # |dx|: 1+2+2+1+1+2 = 9; |dy|: 2+3+0+1+4+1 = 11.
    assert float(total_variation_loss(_tv_image(), "l1", "sum")) == pytest.approx(20.0)
    assert float(total_variation_loss(_tv_image())) == pytest.approx(20.0)  # defaults


def test_tv_squared_closed_form():
    # dx^2: 1+4+4+1+1+4 = 15; dy^2: 4+9+0+1+16+1 = 31.
    assert float(total_variation_loss(_tv_image(), "squared", "sum")) == pytest.approx(46.0)


def test_tv_isotropic_closed_form():
    # Pixels with both a right and a lower neighbour: (0,0), (0,1), (1,0), (1,1).
    expected = sum(np.sqrt(DX[i, j] ** 2 + DY[i, j] ** 2) for i in range(2) for j in range(2))
    assert expected == pytest.approx(np.sqrt(5) + np.sqrt(13) + np.sqrt(5) + np.sqrt(17))
    value = float(total_variation_loss(_tv_image(), "isotropic", "sum"))
    assert value == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kind", TV_KINDS)
def test_tv_mean_divides_by_number_of_elements(kind):
    image = RNG.uniform(size=(2, 5, 4, 3)).astype(np.float32)
    total = float(total_variation_loss(image, kind, "sum"))
    mean = float(total_variation_loss(image, kind, "mean"))
    assert mean == pytest.approx(total / image.size, rel=1e-6)


@pytest.mark.parametrize("kind", TV_KINDS)
def test_tv_matches_numpy_on_random_batch(kind):
    image = RNG.uniform(size=(2, 5, 4, 3))
    dx, dy = np.diff(image, axis=2), np.diff(image, axis=1)
    expected = {
        "l1": np.abs(dx).sum() + np.abs(dy).sum(),
        "squared": (dx**2).sum() + (dy**2).sum(),
        "isotropic": np.sqrt(dx[:, :-1] ** 2 + dy[:, :, :-1] ** 2 + 1e-12).sum(),
    }[kind]
    value = float(total_variation_loss(tf.constant(image, tf.float32), kind, "sum"))
    assert value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kind", TV_KINDS)
def test_tv_of_a_constant_image_is_zero_with_a_finite_gradient(kind):
    image = tf.Variable(tf.fill((1, 6, 6, 3), 0.5))
    with tf.GradientTape() as tape:
        loss = total_variation_loss(image, kind)
    grad = tape.gradient(loss, image).numpy()
    assert float(loss) == pytest.approx(0.0, abs=1e-4)  # isotropic: 25 * 3 * sqrt(1e-12)
    assert np.all(np.isfinite(grad))
    if kind != "l1":  # |x| has a subgradient at 0; the others a true zero gradient
        np.testing.assert_array_equal(grad, 0.0)


def test_tv_squared_gradient_matches_hand_derivation():
    # d/dx_ij of sum (x_{i,j+1} - x_ij)^2 + (x_{i+1,j} - x_ij)^2 = 2 * (discrete Laplacian terms).
    x = RNG.uniform(size=(4, 5))
    expected = np.zeros_like(x)
    dx, dy = np.diff(x, axis=1), np.diff(x, axis=0)
    expected[:, 1:] += 2 * dx
    expected[:, :-1] -= 2 * dx
    expected[1:, :] += 2 * dy
    expected[:-1, :] -= 2 * dy
    image = tf.Variable(x[None, :, :, None], dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = total_variation_loss(image, "squared", "sum")
    np.testing.assert_allclose(tape.gradient(loss, image).numpy()[0, :, :, 0], expected,
                               rtol=1e-5, atol=1e-6)


def test_tv_rejects_unknown_kind_and_reduction():
    with pytest.raises(ValueError, match="TV kind must be one of l1, isotropic, squared"):
        total_variation_loss(_tv_image(), "l2")
    with pytest.raises(ValueError, match="TV reduction must be one of sum, mean"):
        total_variation_loss(_tv_image(), "l1", "max")


# ----------------------------------------------------------------------------- objective


@pytest.fixture(scope="module")
def small_extractor():
    return FeatureExtractor(content_layers=("block1_conv2",),
                            style_layers=("block1_conv1", "block2_conv1"), weights="random",
                            seed=0)


def test_objective_combines_components_with_its_weights(small_extractor):
    rng = np.random.default_rng(3)
    content = tf.constant(rng.uniform(size=(1, 16, 16, 3)), tf.float32)
    style = tf.constant(rng.uniform(size=(1, 20, 12, 3)), tf.float32)
    image = tf.constant(rng.uniform(size=(1, 16, 16, 3)), tf.float32)
    objective = StyleTransferObjective(small_extractor, content, style, content_weight=2.0,
                                       style_weight=3.0, tv_weight=0.5,
                                       style_layer_weights=[0.7, 0.3], content_reduction="sum",
                                       style_form="gatys", tv_kind="squared",
                                       tv_reduction="sum")
    losses = objective(image)
    assert set(losses) == {"total", "content", "style", "tv"}

    gen, target_content, target_style = (small_extractor(x) for x in (image, content, style))
    expected_content = 0.5 * np.sum((gen.content[0].numpy().astype(np.float64)
                                     - target_content.content[0].numpy()) ** 2)
    expected_style = sum(
        w * float(layer_style_loss(f, gram_matrix(s), "gatys"))
        for w, f, s in zip([0.7, 0.3], gen.style, target_style.style, strict=True))
    expected_tv = float(total_variation_loss(image, "squared", "sum"))
    np.testing.assert_allclose(float(losses["content"]), expected_content, rtol=1e-4)
    np.testing.assert_allclose(float(losses["style"]), expected_style, rtol=1e-4)
    np.testing.assert_allclose(float(losses["tv"]), expected_tv, rtol=1e-5)
    np.testing.assert_allclose(float(losses["total"]),
                               2.0 * expected_content + 3.0 * expected_style + 0.5 * expected_tv,
                               rtol=1e-4)


def test_objective_components_vanish_at_their_targets(small_extractor):
    rng = np.random.default_rng(4)
    content = tf.constant(rng.uniform(size=(1, 16, 16, 3)), tf.float32)
    style = tf.constant(rng.uniform(size=(1, 16, 16, 3)), tf.float32)
    objective = StyleTransferObjective(small_extractor, content, style)
    assert float(objective(content)["content"]) == 0.0
    assert float(objective(style)["style"]) == pytest.approx(0.0, abs=1e-6)
    assert float(objective(tf.zeros_like(content))["style"]) > 0.0


def test_objective_rejects_unknown_definitions(small_extractor):
    image = tf.zeros((1, 8, 8, 3))
    with pytest.raises(ValueError, match="content_reduction must be one of"):
        StyleTransferObjective(small_extractor, image, image, content_reduction="l1")
    with pytest.raises(ValueError, match="style_form must be one of"):
        StyleTransferObjective(small_extractor, image, image, style_form="cov")
    with pytest.raises(ValueError, match="tv_kind must be one of"):
        StyleTransferObjective(small_extractor, image, image, tv_kind="l3")
    # Checked when the objective is built, not at its first call inside the optimiser.
    with pytest.raises(ValueError, match="tv_reduction must be one of sum, mean"):
        StyleTransferObjective(small_extractor, image, image, tv_reduction="median")
    with pytest.raises(ValueError, match="unknown loss setting 'style_wieght'"):
        StyleTransferObjective(small_extractor, image, image, style_wieght=2.0)


def test_objective_defaults_are_the_loss_config(small_extractor):
    """Without a config the objective is stylize's: LossConfig's settings, the recipe of the
    extractor's weights (random here) for those left at None, the extractor's layers; a
    config whose layers differ from the extractor's is refused."""
    from nstlib.settings import RECIPES

    image = tf.zeros((1, 8, 8, 3))
    objective = StyleTransferObjective(small_extractor, image, image)
    recipe = RECIPES["random"]
    assert objective.weights == (recipe["content_weight"], recipe["style_weight"],
                                 recipe["tv_weight"])
    assert objective.config.style_layers == small_extractor.style_layers
    assert StyleTransferObjective(small_extractor, image, image,
                                  LossConfig()).config == objective.config
    with pytest.raises(ValueError, match="differ from the loss config"):
        StyleTransferObjective(small_extractor, image, image,
                               LossConfig(style_layers=("block5_conv1",)))


def test_an_open_loss_config_is_resolved_by_the_plans_one_function(small_extractor,
                                                                    monkeypatch):
    """The objective looks no recipe up: settings left at None go through
    ``plan.resolve_loss`` (the run's own step), once per objective, and a resolved config
    (a plan's) is used as it is."""
    from nstlib import losses, plan

    calls = []

    def counted(loss, weights):
        calls.append((weights.source, weights.network))
        return plan.resolve_loss(loss, weights)

    monkeypatch.setattr(losses, "resolve_loss", counted)
    image = tf.zeros((1, 8, 8, 3))
    open_config = StyleTransferObjective(small_extractor, image, image).config
    assert calls == [("random", small_extractor.network)]
    loss = LossConfig(content_layers=small_extractor.content_layers,
                      style_layers=small_extractor.style_layers)
    planned = plan.make_plan(StylizeConfig(loss=loss), (8, 8), (8, 8),
                             plan.FoundWeights("random", small_extractor.network))
    assert planned.config.loss == open_config
    assert StyleTransferObjective(small_extractor, image, image,
                                  planned.config.loss).config == planned.config.loss
    assert len(calls) == 2  # one place, once per objective (a no-op for a resolved config)


# ---------------------------------------------------------------- Gram shrinkage in the style loss


def test_style_loss_shrinks_the_targets():
    rng = np.random.default_rng(8)
    generated = [tf.constant(rng.random((1, 6, 6, 4)), tf.float32)]
    style = tf.constant(rng.random((1, 3, 3, 4)), tf.float32)
    target = [gram_matrix(style)]
    manual = style_loss(generated, [shrink_gram(target[0], 0.4)], form="normalized")
    assert float(style_loss(generated, target, form="normalized", gram_shrinkage=0.4)) == \
        pytest.approx(float(manual), rel=1e-6)
    manual_lw = style_loss(generated, [shrink_gram(target[0], "ledoit-wolf", style)])
    assert float(style_loss(generated, target, gram_shrinkage="ledoit-wolf",
                            target_features=[style])) == pytest.approx(float(manual_lw))
    assert float(style_loss(generated, target, gram_shrinkage=0.0)) == pytest.approx(
        float(style_loss(generated, target)))
    with pytest.raises(ValueError):
        shrink_style_targets(target, "ledoit-wolf")


def test_objective_applies_shrinkage_to_style_targets_only():
    extractor = FeatureExtractor(("block1_conv2",), ("block1_conv1", "block2_conv1"),
                                 weights="random")
    rng = np.random.default_rng(9)
    content = rng.random((1, 24, 24, 3)).astype(np.float32)
    style = rng.random((1, 16, 16, 3)).astype(np.float32)
    plain = StyleTransferObjective(extractor, content, style)
    shrunk = StyleTransferObjective(extractor, content, style, gram_shrinkage=0.3)
    lw = StyleTransferObjective(extractor, content, style, gram_shrinkage="ledoit-wolf")
    features = extractor(style).style
    for a, b, c, f in zip(plain.style_targets, shrunk.style_targets, lw.style_targets,
                          features, strict=True):
        np.testing.assert_allclose(b.numpy(), shrink_gram(a, 0.3).numpy(), rtol=1e-6)
        lam = float(ledoit_wolf_shrinkage(f)[0])
        np.testing.assert_allclose(c.numpy(), shrink_gram(a, lam).numpy(), rtol=1e-5,
                                   atol=1e-6 * float(tf.reduce_max(a)))
    np.testing.assert_array_equal(plain.content_targets[0].numpy(),
                                  shrunk.content_targets[0].numpy())


# ----------------------------------------------------------------------------- pyramid style loss


SHALLOW = dict(content_layers=("block1_conv2",), style_layers=("block1_conv1", "block2_conv1"))


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(SHALLOW["content_layers"], SHALLOW["style_layers"],
                            weights="random", seed=0)


def _np_gram(features):
    f = np.asarray(features, np.float64)[0]
    flat = f.reshape(-1, f.shape[-1])
    return flat.T @ flat / flat.shape[0]


def _np_normalized_style(generated, targets, weights=None):
    weights = [1.0 / len(generated)] * len(generated) if weights is None else weights
    total = 0.0
    for w, f, a in zip(weights, generated, targets, strict=True):
        g = _np_gram(f)
        a = np.asarray(a, np.float64)[0]
        total += w * np.sum((g - a) ** 2) / np.sum(a**2)
    return total


def test_pyramid_style_loss_one_level_equals_style_loss():
    rng = np.random.default_rng(5)
    features = [tf.constant(rng.random((1, 8, 8, 4)), tf.float32),
                tf.constant(rng.random((1, 4, 4, 6)), tf.float32)]
    targets = [tf.constant(_np_gram(rng.random((1, 9, 9, c)))[None], tf.float32)
               for c in (4, 6)]
    for form in ("gatys", "normalized", "mse"):
        plain = style_loss(features, targets, [0.3, 0.7], form).numpy()
        pyramid = pyramid_style_loss([features], [targets], None, [0.3, 0.7], form).numpy()
        assert pyramid == pytest.approx(plain, rel=1e-6)


def test_pyramid_style_loss_is_weighted_sum_over_levels():
    rng = np.random.default_rng(6)
    levels = [[tf.constant(rng.random((1, s, s, 3)), tf.float32)] for s in (8, 4, 2)]
    targets = [[tf.constant(_np_gram(rng.random((1, 5, 5, 3)))[None], tf.float32)]
               for _ in range(3)]
    expected_terms = [_np_normalized_style(f, t) for f, t in zip(levels, targets, strict=True)]
    got = pyramid_style_loss(levels, targets, form="normalized").numpy()
    assert got == pytest.approx(np.mean(expected_terms), rel=1e-5)
    weighted = pyramid_style_loss(levels, targets, [1.0, 0.5, 0.25], form="normalized").numpy()
    assert weighted == pytest.approx(np.dot([1.0, 0.5, 0.25], expected_terms), rel=1e-5)
    with pytest.raises(ValueError):
        pyramid_style_loss(levels, targets[:2])
    with pytest.raises(ValueError):
        pyramid_style_loss(levels, targets, [1.0, 1.0])


def test_pyramid_style_targets_are_grams_of_scipy_pyramid_levels(extractor):
    style = random_image((1, 40, 36, 3), seed=7)
    targets = pyramid_style_targets(extractor, style, levels=3)
    for level, grams in zip(scipy_pyramid(style, 3), targets, strict=True):
        features = extractor(level[None].astype(np.float32)).style
        for f, gram in zip(features, grams, strict=True):
            expected = _np_gram(f)
            np.testing.assert_allclose(gram.numpy()[0], expected, rtol=1e-4,
                                       atol=1e-5 * np.abs(expected).max())


def test_objective_with_one_level_matches_plain_and_two_levels_matches_reference(extractor):
    content = random_image((1, 32, 32, 3), seed=8)
    style = random_image((1, 36, 36, 3), seed=9)
    image = random_image((1, 32, 32, 3), seed=10)
    plain = StyleTransferObjective(extractor, content, style)
    one = StyleTransferObjective(extractor, content, style, pyramid_levels=1)
    two = StyleTransferObjective(extractor, content, style, pyramid_levels=2)
    assert float(one(image)["style"]) == pytest.approx(float(plain(image)["style"]), rel=1e-6)
    # Independent reference for two levels: SciPy pyramids, NumPy Grams, mean over levels.
    expected = []
    for gen_level, sty_level in zip(scipy_pyramid(image, 2), scipy_pyramid(style, 2),
                                    strict=True):
        gen = extractor(gen_level[None].astype(np.float32)).style
        sty = extractor(sty_level[None].astype(np.float32)).style
        expected.append(_np_normalized_style(gen, [_np_gram(f)[None] for f in sty]))
    assert float(two(image)["style"]) == pytest.approx(np.mean(expected), rel=1e-4)
    # Content and TV do not depend on the pyramid.
    assert float(two(image)["content"]) == pytest.approx(float(plain(image)["content"]))


def test_objective_refuses_pyramid_too_deep_for_layers():
    deep = FeatureExtractor(("block1_conv1",), ("block3_conv1",), weights="random")
    small = random_image((1, 24, 24, 3))
    with pytest.raises(ValueError, match="block3_conv1 needs at least 4 px"):
        StyleTransferObjective(deep, small, random_image((1, 64, 64, 3)), pyramid_levels=4)


# ------------------------------------------------------------ several styles: blended Gram targets


def _texture(color, size: int = 32, seed: int = 1, spread: float = 0.15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = spread * rng.standard_normal((size, size, 3))
    return np.clip(np.asarray(color) + noise, 0, 1).astype(np.float32)


RED, BLUE = _texture((0.85, 0.15, 0.1), seed=1), _texture((0.1, 0.15, 0.85), seed=2)


FAST = {"weights": "random", "content_layers": ("block2_conv1",),
        "style_layers": ("block1_conv1", "block2_conv1"), "progress": False}


def _grey_content(size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(0.5 + 0.1 * rng.standard_normal((size, size, 3)), 0, 1).astype(np.float32)


def test_blend_weights_are_normalised_and_checked():
    assert blend_weights(None, 4) == [0.25] * 4
    assert blend_weights((3, 1), 2) == [0.75, 0.25]
    assert blend_weights((1, 0), 2) == [1.0, 0.0]
    with pytest.raises(nstlib.ConfigError,
                       match=re.escape("style_blend has 3 weights for 2 style image(s)")):
        blend_weights((1, 1, 1), 2)


def test_several_styles_blend_their_gram_targets():
    extractor = FeatureExtractor(FAST["content_layers"], FAST["style_layers"], weights="random")
    content = tf.constant(_grey_content()[None])
    a, b = tf.constant(RED[None]), tf.constant(BLUE[None])
    objective = StyleTransferObjective(extractor, content, [a, b], style_blend=(0.7, 0.3))
    for layer, target in enumerate(objective.style_targets):
        fa = extractor(a).style[layer].numpy().astype(np.float64)[0]
        fb = extractor(b).style[layer].numpy().astype(np.float64)[0]
        ga = fa.reshape(-1, fa.shape[-1]).T @ fa.reshape(-1, fa.shape[-1]) / fa[..., 0].size
        gb = fb.reshape(-1, fb.shape[-1]).T @ fb.reshape(-1, fb.shape[-1]) / fb[..., 0].size
        np.testing.assert_allclose(target[0], 0.7 * ga + 0.3 * gb, rtol=1e-4,
                                   atol=1e-4 * np.abs(ga).max())
