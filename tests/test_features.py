"""Tests for nstlib.features: layer tables, receptive fields, truncation, weights modes."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from references import random_batch

import nstlib
from nstlib.features import (
    CONV_LAYERS,
    LAYER_NAMES,
    FeatureExtractor,
    Features,
)

IMAGENET_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
SHALLOW = {"content_layers": ("block2_conv1",), "style_layers": ("block1_conv1",)}


# ----------------------------------------------------------------------------- layer tables


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
    image = random_batch(32)
    expected = keras.Model(reference.input, reference.get_layer("block2_conv1").output)(
        keras.applications.vgg19.preprocess_input(image.numpy() * 255.0))
    np.testing.assert_allclose(extractor(image).content[0].numpy(), np.asarray(expected),
                               rtol=1e-4, atol=1e-3)


# ----------------------------------------------------------------------------- receptive fields


# ----------------------------------------------------------------------------- layer names


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
    outputs = extractor.layer_outputs(random_batch(16))
    assert set(outputs) == set(built)


def test_features_come_in_request_order_with_documented_shapes():
    extractor = FeatureExtractor(content_layers=("block1_conv2",),
                                 style_layers=("block2_conv1", "block1_conv1"), weights="random")
    features = extractor(random_batch(16, height=24))
    assert isinstance(features, Features)
    assert [tuple(f.shape) for f in features.content] == [(1, 24, 16, 64)]
    assert [tuple(f.shape) for f in features.style] == [(1, 12, 8, 128), (1, 24, 16, 64)]
    outputs = extractor.layer_outputs(random_batch(16, height=24))
    np.testing.assert_array_equal(features.style[1].numpy(), outputs["block1_conv1"].numpy())


def test_truncated_and_deep_extractors_share_shallow_features(block3_avg):
    shallow = FeatureExtractor(content_layers=(), style_layers=("block1_conv2",),
                               weights="random", pooling="avg", seed=0)
    assert len(shallow.model.layers) < len(block3_avg.model.layers)
    image = random_batch(32, seed=2)
    deep = block3_avg.layer_outputs(image)
    np.testing.assert_array_equal(shallow.layer_outputs(image)["block1_conv1"].numpy(),
                                  deep["block1_conv1"].numpy())
    np.testing.assert_array_equal(shallow(image).style[0].numpy(), deep["block1_conv2"].numpy())


# ----------------------------------------------------------------------------- random weights


def test_activations_neither_vanish_nor_explode():
    extractor = FeatureExtractor(content_layers=(), style_layers=("block1_conv1", "block5_conv1"),
                                 weights="random", seed=0)
    first, last = extractor(random_batch(32, seed=3)).style
    rms = [float(tf.sqrt(tf.reduce_mean(tf.square(f)))) for f in (first, last)]
    assert rms[0] > 0 and np.isfinite(rms[1])
    assert 0.1 < rms[1] / rms[0] < 10.0, rms


# ----------------------------------------------------------------------------- pooling


def test_average_pooling_is_a_numpy_2x2_mean_and_differs_from_max(block3_avg):
    image = random_batch(32, seed=4)
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


# ----------------------------------------------------------------------------- imagenet / auto


# ----------------------------------------------------------------------------- performance options


#: Bound on the relative error of bfloat16 features and Grams (random VGG19, 48 px,
#: default layers). Measured (2026-12-06, TF 2.21): 0.0028-0.0066 (features) and
#: 0.0018-0.0052 (Grams) on AMD EPYC Zen 4 with AVX512-BF16, the same with oneDNN off;
#: up to 0.035 on AMD EPYC Zen 3 (AVX2 only, bfloat16 emulated; issue #22). 0.06 leaves
#: 1.7x the worst measurement, still 10x below what a float16 overflow or a wrong cast gives.
BFLOAT16_RELATIVE_ERROR = 0.06


def test_bfloat16_features_are_close_to_float32(bfloat16_convolutions):
    import nstlib

    image = nstlib.load_sample("astronaut", max_size=48)
    f32 = nstlib.FeatureExtractor(weights="random")(image)
    bf16 = nstlib.FeatureExtractor(weights="random", compute_dtype="bfloat16")(image)
    for a, b in zip(f32.style + f32.content, bf16.style + bf16.content, strict=True):
        assert b.dtype == a.dtype  # returned as float32
        a, b = a.numpy(), b.numpy()
        assert 0 < np.linalg.norm(a - b) / np.linalg.norm(a) < BFLOAT16_RELATIVE_ERROR
        ga, gb = nstlib.gram_matrix(a).numpy(), nstlib.gram_matrix(b).numpy()
        assert np.linalg.norm(ga - gb) / np.linalg.norm(ga) < BFLOAT16_RELATIVE_ERROR

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
    import nstlib
    from nstlib.features import resolve_conv_impl

    # "auto" (measured, cached, forced) is tested in tests/test_conv_choice.py
    assert resolve_conv_impl("standard") == "standard"
    assert resolve_conv_impl("transposed", "bfloat16") == "transposed"
    with pytest.raises(ValueError, match="conv_impl"):
        resolve_conv_impl("winograd")
    image = nstlib.load_sample("chelsea", max_size=40)
    a = nstlib.FeatureExtractor(weights="random", conv_impl="standard")(image)
    b = nstlib.FeatureExtractor(weights="random", conv_impl="transposed")(image)
    for fa, fb in zip(a.style + a.content, b.style + b.content, strict=True):
        np.testing.assert_allclose(fb.numpy(), fa.numpy(), rtol=1e-4,
                                   atol=1e-4 * float(np.abs(fa.numpy()).max()))


def test_conv_measurement_keeps_tensorflow_retracing_warnings_quiet_and_restores_level():
    import logging

    from nstlib._tf_logging import quiet_tensorflow_warnings
    logger = tf.get_logger()
    before = logger.level
    with quiet_tensorflow_warnings():
        assert not logger.isEnabledFor(logging.WARNING)
        assert logger.isEnabledFor(logging.ERROR)
    assert logger.level == before
