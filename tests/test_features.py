"""Tests for nstlib.features: layer tables, receptive fields, truncation, weights modes."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import nstlib
from nstlib import config
from nstlib.features import (
    CONV_LAYERS,
    LAYER_NAMES,
    FeatureExtractor,
    Features,
)
from nstlib.images import vgg_preprocess
from nstlib.receptive_fields import receptive_field
from nstlib.vgg_weights import WeightsUnavailableError, random_conv_weights

IMAGENET_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
SHALLOW = {"content_layers": ("block2_conv1",), "style_layers": ("block1_conv1",)}


def _image(size: int = 32, seed: int = 0, height: int | None = None) -> tf.Tensor:
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(size=(1, height or size, size, 3)), tf.float32)


@pytest.fixture(scope="module")
def block3_avg():
    """Random-weight extractor up to block3_conv1 with average pooling (seed 0)."""
    return FeatureExtractor(content_layers=(), style_layers=("block3_conv1",), weights="random",
                            pooling="avg", seed=0)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No cached weights (empty KERAS_HOME, no NSTLIB_VGG19_WEIGHTS) and no network.

    The network is cut by replacing Keras' downloader with one that fails the way it
    does offline, so the test never downloads 80 MB on a machine that happens to be online.
    """
    keras_home = tmp_path / "keras_home"
    keras_home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.delenv(config.WEIGHTS_ENV_VAR, raising=False)
    calls = []

    def no_network(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        print(f"Downloading data from {origin}")  # what Keras prints before trying
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary "
                        f"failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    return calls


# ----------------------------------------------------------------------------- layer tables


def test_layer_names_order_and_counts():
    expected = []
    for block, n_conv in enumerate((2, 2, 4, 4, 4), start=1):
        expected += [f"block{block}_conv{i}" for i in range(1, n_conv + 1)]
        expected.append(f"block{block}_pool")
    assert LAYER_NAMES == tuple(expected)
    assert len(LAYER_NAMES) == 21
    assert len(CONV_LAYERS) == 16
    assert CONV_LAYERS == tuple(n for n in expected if "conv" in n)
    assert [n for n in LAYER_NAMES if n.endswith("_pool")] == [f"block{b}_pool"
                                                                for b in range(1, 6)]
    assert nstlib.LAYER_NAMES is LAYER_NAMES and nstlib.CONV_LAYERS is CONV_LAYERS
    assert set(nstlib.DEFAULT_STYLE_LAYERS) <= set(CONV_LAYERS)
    assert set(nstlib.DEFAULT_CONTENT_LAYERS) <= set(CONV_LAYERS)


def test_layers_and_weights_match_keras_applications_vgg19(tmp_path):
    # The reference architecture: names, kernel shapes and outputs must agree so that
    # ImageNet weight files load by name. Keras 3 writes its own .weights.h5 layout.
    reference = keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3))
    names = [layer.name for layer in reference.layers if layer.name != reference.layers[0].name]
    assert tuple(names) == LAYER_NAMES
    for index, name in enumerate(CONV_LAYERS):
        layer = reference.get_layer(name)
        c_in = 3 if index == 0 else reference.get_layer(CONV_LAYERS[index - 1]).filters
        assert tuple(layer.kernel.shape) == (3, 3, c_in, layer.filters)
        assert layer.filters == nstlib.features.layer_channels(name)
        assert layer.padding == "same" and layer.strides == (1, 1)

    path = tmp_path / "keras3.weights.h5"
    reference.save_weights(path)
    extractor = FeatureExtractor(content_layers=("block2_conv1",), style_layers=(),
                                 weights=path)
    assert extractor.weights_source == "file"
    image = _image(32)
    expected = keras.Model(reference.input, reference.get_layer("block2_conv1").output)(
        keras.applications.vgg19.preprocess_input(image.numpy() * 255.0))
    np.testing.assert_allclose(extractor(image).content[0].numpy(), np.asarray(expected),
                               rtol=1e-4, atol=1e-3)


# ----------------------------------------------------------------------------- receptive fields


def _independent_receptive_fields() -> dict[str, tuple[int, int]]:
    """r_out = r_in + (k - 1) * j_in, j_out = j_in * s; conv k=3 s=1, pool k=2 s=2."""
    fields, r, j = {}, 1, 1
    for block, n_conv in enumerate((2, 2, 4, 4, 4), start=1):
        for i in range(1, n_conv + 1):
            r += (3 - 1) * j
            fields[f"block{block}_conv{i}"] = (r, j)
        r += (2 - 1) * j
        j *= 2
        fields[f"block{block}_pool"] = (r, j)
    return fields


@pytest.mark.parametrize("layer", LAYER_NAMES)
def test_receptive_field_matches_independent_calculation(layer):
    assert receptive_field(layer) == _independent_receptive_fields()[layer]


def test_receptive_field_known_values():
    assert receptive_field("block1_conv1") == (3, 1)
    assert receptive_field("block1_conv2") == (5, 1)
    assert receptive_field("block2_conv1") == (10, 2)
    assert receptive_field("block3_conv1") == (24, 4)
    assert receptive_field("block5_conv4") == (252, 16)  # the figure usually quoted
    assert receptive_field("block5_pool") == (268, 32)


def _support(gradient: np.ndarray) -> tuple[int, int, int, int]:
    """Inclusive (top, bottom, left, right) of the non-zero entries of an (H, W, 3) array."""
    nonzero = np.any(gradient != 0, axis=-1)
    rows, cols = np.flatnonzero(nonzero.any(axis=1)), np.flatnonzero(nonzero.any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def _centre_unit_gradients(extractor, layer, image, offsets=((0, 0),)):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(image)
        output = extractor.layer_outputs(image)[layer]
        row, col = output.shape[1] // 2, output.shape[2] // 2
        # Sum over channels: at least one ReLU of the unit is active.
        units = [tf.reduce_sum(output[0, row + dr, col + dc]) for dr, dc in offsets]
    return [tape.gradient(unit, image).numpy()[0] for unit in units]


@pytest.mark.parametrize("layer", ["block1_conv2", "block2_conv1", "block3_conv1"])
def test_receptive_field_measured_from_input_gradients(block3_avg, layer):
    # With average pooling every input pixel inside the field reaches the unit, so the
    # support of the input gradient is exactly the field; the support of the right-hand
    # neighbour is the same box shifted by the stride.
    size, stride = receptive_field(layer)
    image = _image(64, seed=1)
    centre, right = _centre_unit_gradients(block3_avg, layer, image, ((0, 0), (0, 1)))
    top, bottom, left, last = _support(centre)
    assert 0 < top and bottom < 63 and 0 < left and last < 63  # not clipped by the border
    assert (bottom - top + 1, last - left + 1) == (size, size)
    assert np.count_nonzero(np.any(centre[top:bottom + 1, left:last + 1] != 0, axis=-1)) \
        > 0.9 * size * size
    assert _support(right) == (top, bottom, left + stride, last + stride)


def test_max_pooling_gradient_stays_inside_the_receptive_field(block3_avg):
    # Max pooling routes the gradient through one input per window, so its support is a
    # subset of the field (same geometry, same weights).
    image = _image(64, seed=1)
    max_net = FeatureExtractor(content_layers=(), style_layers=("block2_conv1",),
                               weights="random", pooling="max", seed=0)
    (avg_grad,) = _centre_unit_gradients(block3_avg, "block2_conv1", image)
    (max_grad,) = _centre_unit_gradients(max_net, "block2_conv1", image)
    top, bottom, left, right = _support(avg_grad)
    m_top, m_bottom, m_left, m_right = _support(max_grad)
    assert top <= m_top <= m_bottom <= bottom and left <= m_left <= m_right <= right


def test_receptive_field_rejects_unknown_layer():
    with pytest.raises(ValueError, match="unknown VGG19 layer name.*'block6_conv1'"):
        receptive_field("block6_conv1")


# ----------------------------------------------------------------------------- layer names


def test_unknown_layer_names_list_the_valid_ones():
    with pytest.raises(ValueError) as info:
        FeatureExtractor(content_layers=("block4_conv2",),
                         style_layers=("block1_conv1", "conv1_1", "block3_conv5"),
                         weights="random")
    message = str(info.value)
    assert "style layer" in message
    assert "'conv1_1'" in message and "'block3_conv5'" in message
    assert "'block1_conv1'" not in message.split("valid")[0]  # valid names are not blamed
    for name in LAYER_NAMES:
        assert name in message
    with pytest.raises(ValueError, match="content layer name.*'relu4_2'"):
        FeatureExtractor(content_layers=("relu4_2",), style_layers=(), weights="random")


def test_extractor_needs_a_layer_and_a_known_pooling():
    with pytest.raises(ValueError, match="at least one content or style layer"):
        FeatureExtractor(content_layers=(), style_layers=(), weights="random")
    with pytest.raises(ValueError, match="pooling must be 'max' or 'avg'"):
        FeatureExtractor(**SHALLOW, weights="random", pooling="min")


# ----------------------------------------------------------------------------- truncation


def test_model_stops_at_the_deepest_requested_layer():
    extractor = FeatureExtractor(content_layers=("block1_conv2",),
                                 style_layers=("block2_conv1", "block1_conv1"), weights="random")
    assert extractor.last_layer == "block2_conv1"
    assert extractor.model.layers[-1].name == "block2_conv1"
    built = [layer.name for layer in extractor.model.layers[1:]]
    assert built == list(LAYER_NAMES[: LAYER_NAMES.index("block2_conv1") + 1])
    outputs = extractor.layer_outputs(_image(16))
    assert set(outputs) == set(built)


def test_features_come_in_request_order_with_documented_shapes():
    extractor = FeatureExtractor(content_layers=("block1_conv2",),
                                 style_layers=("block2_conv1", "block1_conv1"), weights="random")
    features = extractor(_image(16, height=24))
    assert isinstance(features, Features)
    assert [tuple(f.shape) for f in features.content] == [(1, 24, 16, 64)]
    assert [tuple(f.shape) for f in features.style] == [(1, 12, 8, 128), (1, 24, 16, 64)]
    outputs = extractor.layer_outputs(_image(16, height=24))
    np.testing.assert_array_equal(features.style[1].numpy(), outputs["block1_conv1"].numpy())


def test_truncated_and_deep_extractors_share_shallow_features(block3_avg):
    shallow = FeatureExtractor(content_layers=(), style_layers=("block1_conv2",),
                               weights="random", pooling="avg", seed=0)
    assert len(shallow.model.layers) < len(block3_avg.model.layers)
    image = _image(32, seed=2)
    deep = block3_avg.layer_outputs(image)
    np.testing.assert_array_equal(shallow.layer_outputs(image)["block1_conv1"].numpy(),
                                  deep["block1_conv1"].numpy())
    np.testing.assert_array_equal(shallow(image).style[0].numpy(), deep["block1_conv2"].numpy())


# ----------------------------------------------------------------------------- random weights


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
    image = _image(16)
    np.testing.assert_array_equal(a(image).content[0].numpy(), b(image).content[0].numpy())
    assert not np.allclose(a(image).content[0].numpy(), c(image).content[0].numpy())


def test_random_weights_are_he_normal_with_zero_bias():
    kernel, bias = random_conv_weights("block2_conv2", seed=3)
    fan_in = 9 * 128
    assert kernel.shape == (3, 3, 128, 128) and kernel.dtype == np.float32
    assert kernel.std() == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.02)
    assert abs(kernel.mean()) < 0.05 * kernel.std()
    np.testing.assert_array_equal(bias, 0.0)


def test_activations_neither_vanish_nor_explode():
    extractor = FeatureExtractor(content_layers=(), style_layers=("block1_conv1", "block5_conv1"),
                                 weights="random", seed=0)
    first, last = extractor(_image(32, seed=3)).style
    rms = [float(tf.sqrt(tf.reduce_mean(tf.square(f)))) for f in (first, last)]
    assert rms[0] > 0 and np.isfinite(rms[1])
    assert 0.1 < rms[1] / rms[0] < 10.0, rms


# ----------------------------------------------------------------------------- pooling


def test_average_pooling_is_a_numpy_2x2_mean_and_differs_from_max(block3_avg):
    image = _image(32, seed=4)
    avg = block3_avg.layer_outputs(image)
    max_net = FeatureExtractor(content_layers=(), style_layers=("block1_pool",),
                               weights="random", pooling="max", seed=0)
    mx = max_net.layer_outputs(image)
    conv = avg["block1_conv2"].numpy()
    np.testing.assert_array_equal(conv, mx["block1_conv2"].numpy())  # same weights below
    blocks = conv.reshape(1, 16, 2, 16, 2, 64)
    np.testing.assert_allclose(avg["block1_pool"].numpy(), blocks.mean(axis=(2, 4)), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(mx["block1_pool"].numpy(), blocks.max(axis=(2, 4)), rtol=1e-6)
    assert not np.allclose(avg["block1_pool"].numpy(), mx["block1_pool"].numpy())


# ----------------------------------------------------------------------------- weight files


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
    image = _image(24, seed=5)
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
    image = _image(12, seed=6)
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
    with pytest.raises(ValueError, match="auto, imagenet, random"):
        FeatureExtractor(**SHALLOW, weights="ImageNet-ish")


# ----------------------------------------------------------------------------- imagenet / auto


def test_imagenet_offline_raises_with_instructions(offline, capsys):
    with pytest.raises(WeightsUnavailableError) as info:
        FeatureExtractor(**SHALLOW, weights="imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert config.WEIGHTS_ENV_VAR in message  # NSTLIB_VGG19_WEIGHTS=/path/to/...
    assert "~/.keras/models" in message and IMAGENET_FILE in message
    assert "weights='random'" in message
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
    assert len(lines) == 1, err
    assert "RANDOM" in lines[0] and "unavailable" in lines[0] and "seed 4" in lines[0]
    assert extractor.weights_source == "random" and extractor.weights_path is None
    reference = FeatureExtractor(**SHALLOW, weights="random", seed=4)
    image = _image(16)
    np.testing.assert_array_equal(extractor(image).content[0].numpy(),
                                  reference(image).content[0].numpy())


def test_auto_and_imagenet_use_the_env_var_file(offline, monkeypatch, tmp_path, capsys):
    donor = FeatureExtractor(**SHALLOW, weights="random", seed=7)
    path = donor.save_weights(tmp_path / "my_vgg19.h5")
    monkeypatch.setenv(config.WEIGHTS_ENV_VAR, str(path))
    image = _image(16)
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


# ----------------------------------------------------------------------------- performance options


def test_bfloat16_features_are_close_to_float32():
    import nstlib

    image = nstlib.load_sample("astronaut", max_size=48)
    f32 = nstlib.FeatureExtractor(weights="random")(image)
    bf16 = nstlib.FeatureExtractor(weights="random", compute_dtype="bfloat16")(image)
    for a, b in zip(f32.style + f32.content, bf16.style + bf16.content, strict=True):
        assert b.dtype == a.dtype  # returned as float32
        a, b = a.numpy(), b.numpy()
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.03
        ga, gb = nstlib.gram_matrix(a).numpy(), nstlib.gram_matrix(b).numpy()
        assert np.linalg.norm(ga - gb) / np.linalg.norm(ga) < 0.03

def test_compute_dtype_is_validated():
    import nstlib

    with pytest.raises(ValueError, match="compute_dtype"):
        nstlib.FeatureExtractor(weights="random", compute_dtype="float16")

def test_transposed_conv_matches_standard_conv_values_and_gradients():
    import tensorflow as tf

    from nstlib.features import conv2d_same_transposed

    x = tf.random.stateless_normal((1, 9, 7, 5), seed=[1, 2])
    kernel = tf.random.stateless_normal((3, 3, 5, 4), seed=[3, 4])
    weights = tf.random.stateless_normal((1, 9, 7, 4), seed=[5, 6])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        standard = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
        transposed = conv2d_same_transposed(x, kernel)
        loss_s, loss_t = (tf.reduce_sum(weights * y) for y in (standard, transposed))
    np.testing.assert_allclose(transposed.numpy(), standard.numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(tape.gradient(loss_t, [x, kernel]), tape.gradient(loss_s, [x, kernel]),
                    strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)

def test_conv_impl_choice_and_identical_features():
    import tensorflow as tf

    import nstlib
    from nstlib.features import resolve_conv_impl

    on_cpu = not tf.config.list_physical_devices("GPU")
    assert resolve_conv_impl("auto", "float32") == ("transposed" if on_cpu else "standard")
    assert resolve_conv_impl("auto", "bfloat16") == "standard"
    assert resolve_conv_impl("standard") == "standard"
    with pytest.raises(ValueError, match="conv_impl"):
        resolve_conv_impl("winograd")
    image = nstlib.load_sample("chelsea", max_size=40)
    a = nstlib.FeatureExtractor(weights="random", conv_impl="standard")(image)
    b = nstlib.FeatureExtractor(weights="random", conv_impl="transposed")(image)
    for fa, fb in zip(a.style + a.content, b.style + b.content, strict=True):
        np.testing.assert_allclose(fb.numpy(), fa.numpy(), rtol=1e-4,
                                   atol=1e-4 * float(np.abs(fa.numpy()).max()))
