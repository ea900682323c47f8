"""Tests for whitening/colouring and WCT stylisation (nstlib.wct)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nstlib import wct


def _correlated(batch, positions_hw, channels, seed=0):
    """(B, H, W, C) features with a full, strongly non-diagonal covariance and a mean."""
    rng = np.random.default_rng(seed)
    h, w = positions_hw
    z = rng.standard_normal((batch, h * w, channels))
    mixing = rng.standard_normal((batch, channels, channels))
    mean = rng.uniform(-2, 5, size=(batch, 1, channels))
    return (z @ mixing + mean).reshape(batch, h, w, channels).astype(np.float32)


def _np_cov(x):
    """Per-image covariance with NumPy, divided by the number of positions."""
    x = np.asarray(x, np.float64)
    return np.stack([np.cov(img.reshape(-1, img.shape[-1]), rowvar=False, bias=True)
                     for img in x])


def _rel_fro(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _np_wct(content, style, eps):
    """Reference WCT of one (H, W, C) content and style with np.linalg.eigh."""
    c = content.reshape(-1, content.shape[-1]).astype(np.float64)
    s = style.reshape(-1, style.shape[-1]).astype(np.float64)
    lam_c, e_c = np.linalg.eigh(np.cov(c, rowvar=False, bias=True))
    lam_s, e_s = np.linalg.eigh(np.cov(s, rowvar=False, bias=True))
    whiten = e_c @ np.diag((np.clip(lam_c, 0, None) + eps) ** -0.5) @ e_c.T
    colour = e_s @ np.diag(np.clip(lam_s, 0, None) ** 0.5) @ e_s.T
    out = (c - c.mean(axis=0)) @ whiten @ colour + s.mean(axis=0)
    return out.reshape(content.shape)


def test_feature_covariance_matches_numpy():
    x = _correlated(2, (6, 7), 5)
    cov = wct.feature_covariance(x).numpy()
    assert cov.shape == (2, 5, 5) and cov.dtype == np.float32
    np.testing.assert_allclose(cov, _np_cov(x), rtol=1e-4, atol=1e-4)


def test_covariance_spectrum_is_descending_and_matches_numpy():
    x = _correlated(1, (10, 10), 6, seed=1)
    values, vectors = wct.covariance_spectrum(x)
    expected = np.sort(np.linalg.eigvalsh(_np_cov(x)[0]))[::-1]
    np.testing.assert_allclose(values.numpy()[0], expected, rtol=1e-6)
    v = vectors.numpy()[0]
    np.testing.assert_allclose(v @ np.diag(values.numpy()[0]) @ v.T, _np_cov(x)[0], rtol=1e-5,
                               atol=1e-5)


def test_whitened_features_have_identity_covariance_and_zero_mean():
    x = _correlated(2, (20, 20), 8, seed=2)
    assert _rel_fro(_np_cov(x)[0], np.eye(8)) > 1.0  # far from white to begin with
    white = wct.whiten(x, eps=0.0).numpy()
    for cov in _np_cov(white):
        assert _rel_fro(cov, np.eye(8)) < 1e-4
    np.testing.assert_allclose(white.mean(axis=(1, 2)), 0.0, atol=1e-4)


def test_coloured_features_have_the_style_covariance_and_mean():
    content = _correlated(2, (20, 20), 8, seed=3)
    style = _correlated(1, (15, 30), 8, seed=4)
    out = wct.color(wct.whiten(content, eps=0.0), style).numpy()
    style_cov = _np_cov(style)[0]
    for image in out:
        assert _rel_fro(_np_cov(image[None])[0], style_cov) < 1e-4
        np.testing.assert_allclose(image.mean(axis=(0, 1)), style[0].mean(axis=(0, 1)),
                                   rtol=1e-4, atol=1e-4)


def test_wct_of_an_image_with_itself_is_the_identity():
    x = _correlated(1, (16, 16), 6, seed=5)
    np.testing.assert_allclose(wct.wct(x, x, eps=0.0).numpy(), x, rtol=1e-4, atol=1e-3)


def test_wct_alpha_zero_returns_the_content_and_alpha_blends():
    content = _correlated(1, (12, 12), 4, seed=6)
    style = _correlated(1, (12, 12), 4, seed=7)
    np.testing.assert_array_equal(wct.wct(content, style, alpha=0.0).numpy(), content)
    full = wct.wct(content, style, alpha=1.0).numpy()
    np.testing.assert_allclose(wct.wct(content, style, alpha=0.3).numpy(),
                               0.3 * full + 0.7 * content, rtol=1e-5, atol=1e-4)
    assert _rel_fro(full, content) > 0.5


def test_rank_truncation_keeps_the_stated_energy():
    rng = np.random.default_rng(8)
    spectrum = np.array([50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.25])
    basis, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    z = rng.standard_normal((4000, 8))
    z = (z - z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False, bias=True))).T
    style = (z * np.sqrt(spectrum) @ basis.T).reshape(1, 40, 100, 8).astype(np.float32)
    content = _correlated(1, (30, 30), 8, seed=9)
    for rank in (1, 3, 5):
        stated = float(wct.energy_kept(wct.covariance_spectrum(style)[0],
                                              rank)[0])
        assert stated == pytest.approx(spectrum[:rank].sum() / spectrum.sum(), rel=1e-4)
        white = wct.whiten(content, eps=0.0, rank=rank).numpy()
        cov_white = _np_cov(white)[0]
        # Whitening onto the top-k subspace gives a rank-k projector: P @ P = P, trace k.
        assert np.trace(cov_white) == pytest.approx(rank, rel=1e-4)
        np.testing.assert_allclose(cov_white @ cov_white, cov_white, atol=1e-4)
        # Colouring white features with the style's top k keeps that share of its variance.
        full_white = wct.whiten(content, eps=0.0).numpy()
        coloured = wct.color(full_white, style, rank=rank).numpy()
        kept = np.trace(_np_cov(coloured)[0]) / np.trace(_np_cov(style)[0])
        assert kept == pytest.approx(stated, rel=1e-3)
        # WCT of an image with itself at rank k keeps its top-k share of the variance.
        own = wct.wct(style, style, eps=0.0, rank=rank).numpy()
        assert np.trace(_np_cov(own)[0]) / np.trace(_np_cov(style)[0]) == pytest.approx(
            stated, rel=1e-3)
    assert float(wct.energy_kept(np.array([3.0, 1.0]), None)) == 1.0


def test_eps_regularises_a_singular_covariance():
    # 6 positions, 10 channels: the covariance has rank <= 5 and 5+ zero eigenvalues.
    x = _correlated(1, (2, 3), 10, seed=10)
    values = wct.covariance_spectrum(x)[0].numpy()[0]
    assert np.abs(values[5:]).max() < 1e-8 * values[0]
    with np.errstate(all="ignore"):
        assert not np.isfinite(wct.whiten(x, eps=0.0).numpy()).all()
    eps = 1e-3
    white = wct.whiten(x, eps=eps).numpy()
    assert np.isfinite(white).all()
    # Covariance E diag(lambda / (lambda + eps)) E^T, with NumPy's eigendecomposition.
    lam, vec = np.linalg.eigh(_np_cov(x)[0])
    lam = np.clip(lam, 0, None)
    np.testing.assert_allclose(_np_cov(white)[0], vec @ np.diag(lam / (lam + eps)) @ vec.T,
                               atol=1e-4)
    # Truncating to the non-zero part is the other fix: finite, and white on that subspace.
    truncated = wct.whiten(x, eps=0.0, rank=5).numpy()
    assert np.isfinite(truncated).all()
    assert np.trace(_np_cov(truncated)[0]) == pytest.approx(5.0, rel=1e-4)


def test_pixel_wct_matches_a_numpy_eigendecomposition():
    rng = np.random.default_rng(11)
    i, j = np.indices((24, 32))
    content = np.stack([0.5 + 0.3 * np.sin(i / 5 + k) * np.cos(j / 7) for k in range(3)], -1)
    content += 0.05 * rng.standard_normal(content.shape)
    style = rng.uniform(0, 1, size=(16, 16, 3)) * np.array([0.3, 0.9, 0.6])
    style[..., 2] = 0.5 * style[..., 1] + 0.2
    style += 0.02 * rng.standard_normal(style.shape)
    content, style = content.astype(np.float32)[None], style.astype(np.float32)[None]
    out = wct.wct(tf.constant(content), tf.constant(style), eps=1e-5).numpy()
    np.testing.assert_allclose(out[0], _np_wct(content[0], style[0], 1e-5), rtol=1e-4,
                               atol=1e-4)


def test_wct_rejects_bad_arguments():
    x = _correlated(1, (4, 4), 3)
    with pytest.raises(ValueError, match="rank"):
        wct.whiten(x, rank=0)
    with pytest.raises(ValueError, match="eps"):
        wct.whiten(x, eps=-1.0)
    with pytest.raises(ValueError, match="B, H, W, C"):
        wct.wct(x[0], x)


# ----------------------------------------------------------------------------- transfer


def _image(seed, size=32):
    rng = np.random.default_rng(seed)
    i, j = np.indices((size, size))
    base = np.stack([0.5 + 0.4 * np.sin(i / (3 + k) + seed) * np.cos(j / 4) for k in range(3)],
                    -1)
    return tf.constant(np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1)[None],
                       tf.float32)


def test_feature_inversion_loss_is_zero_at_the_target_image():
    extractor = wct.layer_extractor("block1_conv2", weights="random")
    image = _image(0)
    loss_fn = wct.feature_inversion_loss(extractor, extractor(image).content[0],
                                              tv_weight=0.5)
    losses = loss_fn(image)
    assert float(losses["content"]) == pytest.approx(0.0, abs=1e-7)
    expected_tv = (np.abs(np.diff(image.numpy(), axis=1)).sum()
                   + np.abs(np.diff(image.numpy(), axis=2)).sum()) / image.numpy().size
    assert float(losses["total"]) == pytest.approx(0.5 * expected_tv, rel=1e-4)


def test_invert_features_moves_towards_the_target():
    extractor = wct.layer_extractor("block1_conv2", weights="random")
    target_image, start = _image(1), _image(2)
    outcome = wct.invert_features(extractor, extractor(target_image).content[0], start,
                                       steps=25, tv_weight=0.0, progress=False)
    content = outcome.history["content"]
    assert len(content) == 26
    assert content[-1] < 0.3 * content[0]
    before = np.abs(start.numpy() - target_image.numpy()).mean()
    assert np.abs(outcome.image.numpy() - target_image.numpy()).mean() < before


def test_wct_stylize_runs_every_level_and_records_them():
    result = wct.wct_stylize(_image(3).numpy(), _image(4).numpy(),
                                  layers=("block2_conv1", "block1_conv1"), size=32, steps=3,
                                  weights="random", progress=False)
    assert len(result.level_images) == 2
    assert result.image.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(result.image.numpy(), result.level_images[-1].numpy())
    np.testing.assert_array_equal(result.history["level"], [0] * 4 + [1] * 4)
    np.testing.assert_array_equal(result.history["step"], np.arange(8))
    assert result.record["layers"] == ["block2_conv1", "block1_conv1"]
    assert result.record["weights_source"] == "random"
    with pytest.raises(ValueError, match="one layer"):
        wct.wct_stylize(_image(3).numpy(), _image(4).numpy(), layers=(), progress=False)


def test_wct_stylize_with_the_trained_vgg16_records_its_network_and_source():
    """hed-vgg16 weights are VGG16 weights: the default levels exist there too, and the
    record says which network, source and why (what notebook 08 prints)."""
    result = wct.wct_stylize(_image(3).numpy(), _image(4).numpy(),
                             layers=("block4_conv1", "block1_conv1"), size=32, steps=1,
                             weights="hed-vgg16", progress=False)
    record = result.record
    assert (record["architecture"], record["weights_source"]) == ("vgg16", "hed-vgg16")
    assert "hed-vgg16" in record["weights_reason"]
    assert len(result.level_images) == 2
    assert set(wct.DEFAULT_WCT_LAYERS) <= set(wct.layer_extractor(
        "block5_pool", weights="hed-vgg16").layers_built)


def test_wct_stylize_rejects_a_layer_the_network_lacks_before_any_level_runs(monkeypatch):
    def no_optimisation(*args, **kwargs):
        raise AssertionError("a level ran before the layers were checked")

    monkeypatch.setattr(wct, "minimize", no_optimisation)
    with pytest.raises(ValueError, match="unknown VGG16 content layer.*block3_conv4"):
        wct.wct_stylize(_image(3).numpy(), _image(4).numpy(),
                        layers=("block1_conv1", "block3_conv4"), size=32, steps=1,
                        weights="hed-vgg16", progress=False)


# ------------------------------------------------------------------- wct_stylize plans as stylize


def _pair():
    rng = np.random.default_rng(7)
    return rng.random((30, 20, 3), np.float32), rng.random((25, 40, 3), np.float32)


def test_wct_stylize_records_stylize_keys_plus_its_own_and_the_plans_sizes():
    from nstlib import sizes
    from nstlib.transfer import stylize

    content, style = _pair()
    result = wct.wct_stylize(content, style, size=24, style_scale=0.5, steps=2,
                             layers=("block2_conv1", "block1_conv1"), alpha=0.5,
                             weights="random", progress=False)
    plain = stylize(content, style, size=24, steps=2, weights="random",
                    content_layers=("block2_conv1",), style_layers=("block1_conv1",),
                    progress=False)
    assert set(result.record) == set(plain.record) | set(wct.WCT_RECORD_KEYS)
    assert set(wct.WCT_RECORD_KEYS) == {"method", "layers", "alpha", "eps", "rank",
                                        "inversion_tv_weight"}
    assert result.record["method"] == "wct" and result.record["alpha"] == 0.5
    assert result.record["layers"] == ["block2_conv1", "block1_conv1"]
    (stage,) = result.plan.stages
    assert stage.content_hw == sizes.fitted_hw((30, 20), 24) == (24, 16)
    assert stage.style_hws == (sizes.fitted_hw((25, 40), 12),) == ((8, 12),)
    assert result.record["plan"] == result.plan.record()
    assert result.record["content_shape"] == [1, *stage.content_hw, 3]
    assert result.record["style_shape"] == [1, *stage.style_hws[0], 3]
    assert tuple(result.image.shape[1:3]) == result.plan.result_hw
    assert result.record["steps"] == 2 and result.record["steps_done"] == 4  # 2 per level
    assert isinstance(result, wct.StylizeResult)


def test_wct_stylize_with_random_weights_uses_the_random_recipes_network(monkeypatch):
    from nstlib.settings import RECIPES

    seen = []
    level = wct.wct_level

    def spy(image, style_image, extractor, **kwargs):
        seen.append((extractor.pooling, extractor.first_layer_dc, extractor.content_layers))
        return level(image, style_image, extractor, **kwargs)

    monkeypatch.setattr(wct, "wct_level", spy)
    content, style = _pair()
    result = wct.wct_stylize(content, style, size=16, steps=1,
                             layers=("block2_conv1", "block1_conv1"), weights="random",
                             progress=False)
    recipe = RECIPES["random"]
    network = result.plan.config.network
    assert result.plan.recipe == result.record["recipe"] == "random"
    assert (network.pooling, network.first_layer_dc) == (recipe["pooling"],
                                                          recipe["first_layer_dc"])
    assert result.record["pooling"] == recipe["pooling"]
    assert seen == [(recipe["pooling"], recipe["first_layer_dc"], ("block2_conv1",)),
                    (recipe["pooling"], recipe["first_layer_dc"], ("block1_conv1",))]


def test_wct_stylize_takes_a_config_and_refuses_settings_it_does_not_use():
    from nstlib.settings import ConfigError, StylizeConfig, WCTConfig

    content, style = _pair()
    config, settings = wct.wct_settings(StylizeConfig(size=16), WCTConfig(alpha=0.3), eps=0.1,
                                        network="vgg16", steps=3)
    assert (config.size, config.optim.steps, config.network.architecture) == (16, 3, "vgg16")
    assert (settings.alpha, settings.eps, settings.layers) == (0.3, 0.1,
                                                               wct.DEFAULT_WCT_LAYERS)
    default, _ = wct.wct_settings()
    assert (default.optim.steps, default.optim.schedule_used(),
            default.optim.guard_used()) == (100, "constant", False)
    with pytest.raises(ConfigError, match="does not use tv_weight.*inversion_tv_weight"):
        wct.wct_stylize(content, style, tv_weight=0.3, progress=False)
    with pytest.raises(ConfigError, match="does not use scales, init"):
        wct.wct_stylize(content, style, StylizeConfig(scales=(8, 16), init="noise"),
                        progress=False)
    with pytest.raises(ConfigError, match="does not use style_weight"):
        wct.wct_stylize(content, style, StylizeConfig.from_flat(style_weight=3.0),
                        progress=False)
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        wct.wct_stylize(content, style, alhpa=0.5, progress=False)
    with pytest.raises(ConfigError, match="alpha must be at most 1"):
        wct.wct_stylize(content, style, alpha=2.0, progress=False)
