"""Tests for the helpers that notebooks 00, 02 and 03 rely on.

Receptive fields measured with gradients (``receptive_fields.measure_receptive_field``,
``receptive_fields.unit_input_gradient``) are checked against field sizes worked out by
hand and against a direct NumPy computation of a first-layer gradient; ``stylize`` is
checked in the two degenerate set-ups the notebooks use (no style layers, no content
layers).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nstlib import receptive_fields, stylize
from nstlib.features import FeatureExtractor
from nstlib.images import VGG_MEAN_BGR


@pytest.fixture(scope="module")
def extractor_to_block4():
    return FeatureExtractor(content_layers=("block4_pool",), style_layers=(), weights="random")


# Worked out by hand from the VGG19 layout: each 3x3 conv adds 2 x stride, each 2x2 pool
# adds one stride and doubles it (block3 ends at 16 + 4 * 8 = 48, pool -> 52, and so on).
HAND_FIELDS = {
    "block1_conv1": (3, 1),
    "block1_conv2": (5, 1),
    "block1_pool": (6, 2),
    "block2_conv1": (10, 2),
    "block3_conv1": (24, 4),
    "block3_conv4": (48, 4),
    "block3_pool": (52, 8),
    "block4_conv2": (84, 8),
}


@pytest.mark.parametrize("layer", sorted(HAND_FIELDS))
def test_measured_field_matches_hand_computation(extractor_to_block4, layer):
    measured = receptive_fields.measure_receptive_field(extractor_to_block4, layer)
    assert measured == HAND_FIELDS[layer]
    assert receptive_fields.receptive_field(layer) == HAND_FIELDS[layer]


def test_measured_field_of_block5_with_average_pooling():
    extractor = FeatureExtractor(("block5_conv1",), (), weights="random", pooling="avg", seed=3)
    # 124 after block4_pool (stride 16), + 2 * 16 for block5_conv1.
    assert receptive_fields.measure_receptive_field(extractor, "block5_conv1", seed=1) == (156, 16)


def test_measurement_does_not_depend_on_a_large_enough_size(extractor_to_block4):
    default = receptive_fields.default_measurement_size("block2_conv2")
    for size in (default, default + 32, default + 64):
        measured = receptive_fields.measure_receptive_field(extractor_to_block4, "block2_conv2",
                                                            size)
        assert measured == (14, 2)


def test_too_small_input_is_refused(extractor_to_block4):
    with pytest.raises(ValueError, match="border"):
        receptive_fields.measure_receptive_field(extractor_to_block4, "block3_conv1", size=24)


def test_layer_beyond_the_extractor_is_refused():
    extractor = FeatureExtractor(("block1_conv2",), (), weights="random")
    with pytest.raises(ValueError, match="stops at block1_conv2"):
        receptive_fields.measure_receptive_field(extractor, "block2_conv1")
    with pytest.raises(ValueError, match="unknown VGG19"):
        receptive_fields.measure_receptive_field(extractor, "conv1")


def test_default_sizes_worked_out_by_hand():
    # block5_conv4: field 252, stride 16. At 288 px the map is 18 wide; units 8 and 9 are
    # centred on 135.5 and 151.5 and span 10..261 and 26..277, inside 1..286. At 256 px
    # unit 8 (the centre) would end at 261 > 254.
    assert receptive_fields.default_measurement_size("block5_conv4") == 288
    # block5_pool: field 268, stride 32; 288 px puts the left neighbour at -22.
    assert receptive_fields.default_measurement_size("block5_pool") == 320
    assert receptive_fields.default_measurement_size("block1_conv1") == 32


def test_first_layer_gradient_matches_numpy():
    extractor = FeatureExtractor(("block1_conv1",), (), weights="random", seed=5)
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(1, 9, 11, 3)).astype(np.float32)
    row, col = 4, 6
    got = receptive_fields.unit_input_gradient(extractor, "block1_conv1", image, (row, col)).numpy()

    kernel, bias = extractor.model.get_layer("block1_conv1").get_weights()
    bgr = image[0, :, :, ::-1] * 255.0 - np.array(VGG_MEAN_BGR, np.float32)
    patch = bgr[row - 1:row + 2, col - 1:col + 2, :]  # (3, 3, 3) around the unit
    pre_activation = np.einsum("ijc,ijck->k", patch, kernel) + bias
    active = pre_activation > 0
    # d a / d rgb: 255 * kernel summed over active channels, colour order flipped (BGR).
    grad_bgr = 255.0 * kernel[:, :, :, active].sum(axis=-1)
    expected = np.zeros((9, 11), np.float32)
    expected[row - 1:row + 2, col - 1:col + 2] = np.abs(grad_bgr[:, :, ::-1]).sum(axis=-1)

    assert active.any()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_unit_gradient_position_checks(extractor_to_block4):
    image = tf.zeros((1, 32, 32, 3))
    with pytest.raises(ValueError, match="outside"):
        receptive_fields.unit_input_gradient(extractor_to_block4, "block2_conv1", image, (16, 0))


def test_unit_gradient_support_moves_by_the_stride(extractor_to_block4):
    image = tf.random.stateless_uniform((1, 64, 64, 3), seed=[1, 2])
    supports = [receptive_fields.unit_input_gradient(extractor_to_block4, "block2_conv2", image,
                                             (8, c)).numpy() > 0 for c in (7, 8)]
    cols = [np.flatnonzero(s.any(axis=0)) for s in supports]
    assert cols[1][0] - cols[0][0] == 2 and cols[1][-1] - cols[0][-1] == 2
    assert all(c.size == 14 for c in cols)


def test_content_reconstruction_without_style_layers():
    result = stylize("chelsea", "mosaic", size=32, steps=15, style_weight=0.0, tv_weight=0.0,
                     init="noise", content_layers=("block2_conv2",), style_layers=(),
                     weights="random", progress=False)
    content = result.history["content"]
    assert np.all(result.history["style"] == 0.0)
    assert content[-1] < 0.5 * content[0]
    assert result.image.shape == (1, 21, 32, 3)


def test_texture_synthesis_without_content_layers():
    result = stylize("chelsea", "stripes", size=32, steps=15, content_weight=0.0,
                     tv_weight=0.0, init="noise", content_layers=(),
                     style_layers=("block1_conv1", "block2_conv1"), weights="random",
                     progress=False)
    style = result.history["style"]
    assert np.all(result.history["content"] == 0.0)
    assert style[-1] < 0.5 * style[0]


def test_relative_gram_distance_as_notebook_03_uses_it():
    # Notebook 03 measures ||G(a) - G(b)|| / ||G(b)|| with metrics.relative_gram_distance(a, b).
    from nstlib import metrics

    image = np.random.default_rng(7).uniform(size=(1, 12, 16, 3)).astype(np.float32)
    # A rotation only permutes the positions, which the Gram sums over.
    assert metrics.relative_gram_distance(np.rot90(image, axes=(1, 2)), image) < 1e-6
    # G(2x) = 4 G(x): ||4G - G|| / ||G|| = 3, and ||G - 4G|| / ||4G|| = 3/4.
    assert metrics.relative_gram_distance(2 * image, image) == pytest.approx(3.0, rel=1e-5)
    assert metrics.relative_gram_distance(image, 2 * image) == pytest.approx(0.75, rel=1e-5)
