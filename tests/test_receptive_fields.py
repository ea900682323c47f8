"""Tests for nstlib.receptive_fields: analytic and gradient-measured receptive fields."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from references import random_batch

from nstlib import receptive_fields
from nstlib.features import (
    LAYER_NAMES,
    FeatureExtractor,
)
from nstlib.images import VGG_MEAN_BGR
from nstlib.receptive_fields import receptive_field


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
    image = random_batch(64, seed=1)
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
    image = random_batch(64, seed=1)
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


# --------------------------------------- receptive fields measured as notebooks 02 and 03 use them


@pytest.fixture(scope="module")
def extractor_to_block4():
    return FeatureExtractor(content_layers=("block4_pool",), style_layers=(), weights="random")


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
