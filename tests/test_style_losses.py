"""nstlib.style_losses and nstlib.style_loss_specs: each loss against closed forms and NumPy
references, its invariants, and its reach (settings, stylize, records, flags, grids)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import nstlib
from nstlib import cli, style_losses
from nstlib.settings import STYLE_LOSSES, ConfigError, LossConfig, StylizeConfig
from nstlib.style_loss_specs import STYLE_LOSS_SPECS, style_loss_spec

RNG = np.random.default_rng(7)


def _features(h=6, w=5, c=4, batch=1, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, h, w, c)).astype(np.float32)


def _loss(name, generated, style, mask=None, **options):
    """One layer's loss ``name`` of generated against style features (the record's
    functions, with the record's settings at their defaults)."""
    target_fn, loss_fn = style_loss_spec(name).functions()
    defaults = {k: getattr(LossConfig(), k) for k in style_loss_spec(name).settings}
    if style_loss_spec(name).random:
        defaults["seed"] = tf.constant([3, 4], tf.int64)
    return loss_fn(tf.constant(generated), target_fn(tf.constant(style), **defaults), mask,
                   **{**defaults, **options})


def test_table_is_the_settings_choices_and_gram_is_the_default():
    assert STYLE_LOSSES == tuple(STYLE_LOSS_SPECS)
    assert STYLE_LOSSES[0] == LossConfig().style_loss == "gram"
    assert set(STYLE_LOSSES) == {"gram", "mean_std", "sliced_wasserstein", "histogram", "mrf"}
    for spec in STYLE_LOSS_SPECS.values():
        assert all(callable(f) for f in spec.functions())
    with pytest.raises(ValueError, match="unknown style loss 'nope'"):
        style_loss_spec("nope")


@pytest.mark.parametrize("name", STYLE_LOSSES)
def test_zero_for_identical_features(name):
    features = _features(8, 7, 4)
    assert float(_loss(name, features, features)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", STYLE_LOSSES)
def test_positive_and_finite_gradient_for_different_features(name):
    generated = tf.Variable(_features(8, 7, 4, seed=1))
    style = _features(9, 6, 4, seed=2)
    target_fn, loss_fn = style_loss_spec(name).functions()
    options = {k: getattr(LossConfig(), k) for k in style_loss_spec(name).settings}
    if style_loss_spec(name).random:
        options["seed"] = tf.constant([1, 2], tf.int64)
    target = target_fn(tf.constant(style), **options)
    with tf.GradientTape() as tape:
        value = loss_fn(generated, target, None, **options)
    grad = tape.gradient(value, generated).numpy()
    assert float(value) > 0
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_mean_std_equals_numpy():
    generated, style = _features(5, 6, 3, seed=3), _features(7, 4, 3, seed=4) * 2 + 1
    mean, std = generated.mean(axis=(1, 2)), generated.std(axis=(1, 2))
    target_mean, target_std = style.mean(axis=(1, 2)), style.std(axis=(1, 2))
    expected = (np.sum((mean - target_mean) ** 2) + np.sum((std - target_std) ** 2)) / (
        np.sum(target_mean**2) + np.sum(target_std**2))
    np.testing.assert_allclose(float(_loss("mean_std", generated, style)), expected, rtol=1e-4)


def test_mean_std_with_a_binary_mask_is_the_statistics_of_the_region():
    generated, style = _features(6, 6, 3, seed=5), _features(6, 6, 3, seed=6)
    mask = np.zeros((1, 6, 6, 1), np.float32)
    mask[:, :, :3] = 1
    masked = _loss("mean_std", generated, style, tf.constant(mask))
    alone = _loss("mean_std", generated[:, :, :3], style)
    np.testing.assert_allclose(float(masked), float(alone), rtol=1e-4)


def test_sliced_wasserstein_is_one_dimensional_w2_for_one_channel():
    generated = RNG.normal(size=(1, 5, 4, 1)).astype(np.float32)
    style = (RNG.normal(size=(1, 4, 5, 1)) * 3 + 1).astype(np.float32)
    for sign in (1.0, -1.0):  # the one unit direction in R^1 is +1 or -1
        value = style_losses.sliced_wasserstein_distance(
            generated, style.reshape(-1, 1), tf.constant([[sign]]))
        expected = np.mean((np.sort(generated.ravel()) - np.sort(style.ravel())) ** 2)
        np.testing.assert_allclose(float(value[0]), expected, rtol=1e-5)


def test_sliced_wasserstein_is_zero_for_a_permutation_of_positions():
    style = _features(6, 5, 8, seed=8)
    flat = style.reshape(-1, 8)
    shuffled = flat[np.random.default_rng(1).permutation(len(flat))].reshape(style.shape)
    assert float(_loss("sliced_wasserstein", shuffled, style, sw_projections=32)) < 1e-10


def test_sliced_wasserstein_interpolates_the_target_quantiles_for_unequal_sizes():
    # a target of 2m values that repeats each of m values twice has the same quantile
    # function at the levels of the m-sample: the distance to the m-sample is zero
    generated = _features(3, 4, 1, seed=9)
    doubled = np.repeat(generated.reshape(-1, 1), 2, axis=0)
    value = style_losses.sliced_wasserstein_distance(generated, doubled, tf.constant([[1.0]]))
    assert float(value[0]) < 1e-10


def test_sliced_wasserstein_with_a_binary_mask_is_the_distance_of_the_region():
    generated, style = _features(6, 6, 3, seed=18), _features(5, 7, 3, seed=19)
    mask = np.zeros((1, 6, 6, 1), np.float32)
    mask[:, 2:5] = 1
    directions = style_losses.random_directions(3, 5, tf.constant([0, 1], tf.int64))
    target = style.reshape(-1, 3)
    masked = style_losses.sliced_wasserstein_distance(generated, target, directions,
                                                      tf.constant(mask))
    alone = style_losses.sliced_wasserstein_distance(generated[:, 2:5], target, directions)
    np.testing.assert_allclose(float(masked[0]), float(alone[0]), rtol=1e-5)


def test_sliced_wasserstein_draws_are_seeded():
    generated, style = _features(seed=10), _features(seed=11)
    first = _loss("sliced_wasserstein", generated, style, seed=tf.constant([0, 5], tf.int64))
    again = _loss("sliced_wasserstein", generated, style, seed=tf.constant([0, 5], tf.int64))
    other = _loss("sliced_wasserstein", generated, style, seed=tf.constant([0, 6], tf.int64))
    assert float(first) == float(again) != float(other)


def _numpy_quantile_map(values, target):
    """Per channel: the value of rank r -> the target's quantile at (r + ½)/n (linear)."""
    n, m = len(values), len(target)
    out = np.empty_like(values)
    for c in range(values.shape[1]):
        ranks = np.argsort(np.argsort(values[:, c], kind="stable"), kind="stable")
        out[:, c] = np.interp((ranks + 0.5) / n, (np.arange(m) + 0.5) / m,
                              np.sort(target[:, c]))
    return out


def test_histogram_matching_equals_numpy_quantile_mapping():
    generated, style = _features(5, 6, 3, seed=12), _features(8, 3, 3, seed=13) ** 2
    target, _ = style_losses.histogram_target(tf.constant(style))
    matched = style_losses.histogram_match(generated, target).numpy()
    expected = _numpy_quantile_map(generated.reshape(-1, 3), style.reshape(-1, 3))
    np.testing.assert_allclose(matched.reshape(-1, 3), expected, rtol=1e-5, atol=1e-6)
    value = _loss("histogram", generated, style)
    scale = np.mean(np.sum(style.reshape(-1, 3) ** 2, axis=1))
    np.testing.assert_allclose(float(value), np.mean(np.sum(
        (generated.reshape(-1, 3) - expected) ** 2, axis=1)) / scale, rtol=1e-4)


def test_histogram_matching_with_a_binary_mask_matches_the_region():
    generated, style = _features(4, 6, 2, seed=14), _features(5, 5, 2, seed=15)
    mask = np.zeros((1, 4, 6, 1), np.float32)
    mask[:, :2] = 1
    target, _ = style_losses.histogram_target(tf.constant(style))
    matched = style_losses.histogram_match(generated, target, tf.constant(mask)).numpy()
    expected = _numpy_quantile_map(generated[:, :2].reshape(-1, 2), style.reshape(-1, 2))
    np.testing.assert_allclose(matched[:, :2].reshape(-1, 2), expected, rtol=1e-5, atol=1e-6)


def test_mrf_nearest_patches_equal_a_brute_force_search():
    generated, style = _features(5, 6, 2, seed=16), _features(6, 5, 2, seed=17)

    def patches(x):
        _, h, w, _ = x.shape
        return np.stack([x[0, i:i + 3, j:j + 3].ravel() for i in range(h - 2)
                         for j in range(w - 2)])

    gen_p, style_p = patches(generated), patches(style)
    ncc = (gen_p / np.linalg.norm(gen_p, axis=1, keepdims=True)) @ (
        style_p / np.linalg.norm(style_p, axis=1, keepdims=True)).T
    target = style_losses.mrf_target(tf.constant(style))
    np.testing.assert_allclose(target[0].numpy(), style_p, rtol=1e-6)
    library = style_losses.mrf_nearest(style_losses.feature_patches(generated), target[1])
    np.testing.assert_array_equal(library.numpy()[0], ncc.argmax(axis=1))
    expected = np.mean((gen_p - style_p[ncc.argmax(axis=1)]) ** 2) / np.mean(style_p**2)
    np.testing.assert_allclose(float(_loss("mrf", generated, style)), expected, rtol=1e-4)


def test_mrf_strides_the_style_patches_and_refuses_too_many_pairs(monkeypatch):
    assert style_losses.mrf_stride(10, 10, max_patches=64) == 1
    assert style_losses.mrf_stride(66, 66, max_patches=4096) == 1  # 64 x 64 patches
    assert style_losses.mrf_stride(67, 67, max_patches=4096) == 2
    monkeypatch.setattr(style_losses, "MRF_MAX_PAIRS", 10)
    with pytest.raises(ValueError, match="MRF would compare"):
        _loss("mrf", _features(6, 6, 2), _features(6, 6, 2))


def test_settings_refuse_another_losses_settings():
    with pytest.raises(ConfigError, match="sw_projections applies to style_loss "
                                          "'sliced_wasserstein' only"):
        LossConfig(style_loss="gram", sw_projections=8)
    with pytest.raises(ConfigError, match="gram_shrinkage applies to style_loss 'gram'"):
        LossConfig(style_loss="mean_std", gram_shrinkage=0.5)
    with pytest.raises(ConfigError, match="style_loss must be one of"):
        LossConfig(style_loss="wasserstein")
    assert LossConfig(style_loss="sliced_wasserstein", sw_projections=16).sw_projections == 16


@pytest.mark.parametrize("name", STYLE_LOSSES)
def test_stylize_runs_and_records_the_style_loss(name):
    result = nstlib.stylize("chelsea", "brushstrokes", style_loss=name, weights="random",
                            size=32, steps=3, progress=False)
    assert result.record["style_loss"] == name
    assert np.all(np.isfinite(result.history["total"]))
    assert StylizeConfig.from_record(result.record).loss.style_loss == name


def test_sliced_wasserstein_run_is_deterministic_for_a_seed():
    runs = [nstlib.stylize("chelsea", "brushstrokes", style_loss="sliced_wasserstein",
                           weights="random", size=32, steps=3, seed=seed, progress=False)
            for seed in (1, 1, 2)]
    np.testing.assert_array_equal(runs[0].image.numpy(), runs[1].image.numpy())
    assert not np.array_equal(runs[0].image.numpy(), runs[2].image.numpy())


def test_blend_of_two_styles_runs_for_a_non_gram_loss():
    result = nstlib.stylize("chelsea", ["brushstrokes", "mosaic"], style_loss="mean_std",
                            style_blend=(0.7, 0.3), weights="random", size=32, steps=2,
                            progress=False)
    assert np.all(np.isfinite(result.history["style"]))


def test_masks_work_with_mean_std_and_are_refused_by_mrf_before_any_work(tmp_path):
    mask = np.ones((1, 21, 32, 1), np.float32)
    result = nstlib.stylize("chelsea", "brushstrokes", style_loss="mean_std", weights="random",
                            size=32, steps=2, style_masks=[mask], progress=False)
    assert np.all(np.isfinite(result.history["style"]))
    with pytest.raises(ConfigError, match="style_loss 'mrf' does not work with style masks"):
        nstlib.stylize(tmp_path / "missing.png", tmp_path / "missing.png", style_loss="mrf",
                       style_masks=[tmp_path / "missing_mask.png"])


def test_cli_flag_parses():
    args = cli.build_parser().parse_args(["stylize", "a.png", "b.png", "-o", "o.png",
                                          "--style-loss", "sliced_wasserstein",
                                          "--sw-projections", "32"])
    config = cli.settings_from(args)
    assert config.loss.style_loss == "sliced_wasserstein"
    assert config.loss.sw_projections == 32


def test_grid_axis_over_style_loss_loads(tmp_path):
    from nstlib import ablation

    grid = ablation.parse_grid({"fixed": {"content": "chelsea", "style": "brushstrokes",
                                          "size": 32, "steps": 2},
                                "axes": {"style_loss": list(STYLE_LOSSES), "seed": [0, 1]}})
    specs = grid.expand()
    assert len(specs) == 2 * len(STYLE_LOSSES)
    assert {spec.config["style_loss"] for spec in specs} == set(STYLE_LOSSES)
    assert len({spec.run_id for spec in specs}) == len(specs)
    with pytest.raises(ablation.GridError, match="does not work with style masks"):
        ablation.parse_grid({"fixed": {"content": "chelsea", "style": "brushstrokes",
                                       "style_loss": "mrf", "style_masks": ["m.png"]}}).expand()


def test_example_grid_loads():
    from nstlib import ablation, config

    grid = ablation.load_grid(config.REPO_ROOT / "examples" / "style_losses.yaml")
    specs = grid.expand()
    assert len(specs) == len(STYLE_LOSSES) * 2 * 3
    assert {spec.config["style_loss"] for spec in specs} == set(STYLE_LOSSES)
