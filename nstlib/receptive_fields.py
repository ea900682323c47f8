"""Receptive fields of VGG19 units: the analytic formula and a gradient measurement.

This module owns the receptive field of a unit of a VGG19 layer, computed two ways: the
analytic size and stride from the layer sequence (3x3 convolutions, 2x2 pools), and a
measurement from the support of the input gradient of one unit (and its neighbour) on a
noise image, so the formula can be checked against the network itself. Notebook 02
(``02_vgg19_features.ipynb``) teaches it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nstlib.features import DEFAULT_NETWORK, FeatureExtractor, layers_up_to


def receptive_field(layer: str, network: str = DEFAULT_NETWORK) -> tuple[int, int]:
    """Receptive field size and stride (pixels) of one unit of ``layer`` in the input.

    Each 3x3 convolution (stride 1) widens the field by 2 * the current stride; each
    2x2 pooling (stride 2) widens it by the current stride and doubles the stride.

    Returns:
        (size, stride): e.g. ``receptive_field("block1_conv2") == (5, 1)``; VGG16's
        layers after block3 see less than VGG19's (fewer convolutions).
    """
    size, stride = 1, 1
    for name in layers_up_to(layer, network):
        if "_conv" in name:
            size += 2 * stride
        else:
            size += stride
            stride *= 2
    return size, stride


def unit_input_gradient(extractor: FeatureExtractor, layer: str, image: tf.Tensor,
                        position: tuple[int, int] | None = None) -> tf.Tensor:
    """How much each input pixel moves one unit of ``layer``: |∂a/∂x| summed over RGB.

    The unit's activation ``a`` is the sum over channels of the layer's output at one
    spatial position (summing keeps at least one ReLU channel active, so the gradient is
    not zero by accident). The result is zero outside the unit's receptive field.

    Args:
        extractor: A ``FeatureExtractor`` built at least up to ``layer``.
        layer: VGG19 layer name.
        image: (1, H, W, 3) float32 in [0, 1].
        position: (row, col) in the layer's (h, w) output map; default its centre
            (h // 2, w // 2).

    Returns:
        (H, W) float32, non-negative.
    """
    _check_built(extractor, layer)
    image = tf.convert_to_tensor(image, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(image)
        output = extractor.layer_outputs(image)[layer]
        row, col = _unit_position(output, position)
        activation = tf.reduce_sum(output[0, row, col, :])
    return tf.reduce_sum(tf.abs(tape.gradient(activation, image)[0]), axis=-1)


def measure_receptive_field(extractor: FeatureExtractor, layer: str, size: int | None = None,
                            seed: int = 0) -> tuple[int, int]:
    """Receptive field size and stride of ``layer`` measured with gradients, not formulas.

    On a seeded uniform-noise input of ``size`` x ``size`` pixels, the input gradients of
    two neighbouring units (the centre unit and the one to its left) are non-zero exactly
    on their receptive fields: the side of the centre unit's support is the field size
    and the column shift between the two supports is the stride. Compare with the
    analytic ``receptive_field(layer)``.

    Args:
        extractor: A ``FeatureExtractor`` built at least up to ``layer``.
        layer: VGG19 layer name.
        size: Input side in pixels; default the smallest multiple of 32 whose two units'
            analytic fields fit inside the image with a one-pixel margin. If the measured
            support touches the border anyway, ``ValueError`` is raised, so a wrong
            analytic value cannot hide behind a clipped measurement.
        seed: Seed of the noise input.

    Returns:
        (size, stride) in pixels.

    Raises:
        ValueError: unknown layer, a layer deeper than the extractor, or an input too
            small to hold the field.
    """
    _check_built(extractor, layer)
    size = default_measurement_size(layer, extractor.network) if size is None else int(size)
    image = tf.random.stateless_uniform((1, size, size, 3), seed=[seed, 2], dtype=tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(image)
        output = extractor.layer_outputs(image)[layer]
        row, col = _unit_position(output, None)
        if col < 1:
            raise ValueError(f"a {size} px input gives {layer} a map too small to measure")
        centre = tf.reduce_sum(output[0, row, col, :])
        left = tf.reduce_sum(output[0, row, col - 1, :])
    boxes = [_support_box(tape.gradient(a, image)[0], layer, size) for a in (centre, left)]
    (top, bottom, first, last), (_, _, left_first, _) = boxes
    if bottom - top != last - first:
        raise ValueError(f"{layer}: support is {bottom - top + 1} x {last - first + 1} px, "
                         f"not square")
    return last - first + 1, first - left_first


def default_measurement_size(layer: str, network: str = DEFAULT_NETWORK) -> int:
    """Smallest multiple of 32 px whose centre unit and left neighbour fit with a margin.

    With "same" 3x3 convolutions and 2x2 pools, unit i of a layer with stride s is
    centred on input pixel i·s + (s − 1)/2 and spans ± (R − 1)/2 around it (R the field
    size of ``receptive_field``).
    """
    field, stride = receptive_field(layer, network)
    size = 32
    while True:
        col = (size // stride) // 2
        lowest = (col - 1) * stride + (stride - 1) / 2 - (field - 1) / 2
        highest = col * stride + (stride - 1) / 2 + (field - 1) / 2
        if col >= 1 and lowest >= 1 and highest <= size - 2:
            return size
        size += 32


def _check_built(extractor: FeatureExtractor, layer: str) -> None:
    if layer not in extractor.layers_built:
        layers_up_to(layer, extractor.network)  # an unknown name: the usual error
        raise ValueError(f"the extractor stops at {extractor.last_layer}; build one that "
                         f"includes {layer}")


def _unit_position(output: tf.Tensor, position) -> tuple[int, int]:
    height, width = int(output.shape[1]), int(output.shape[2])
    row, col = (height // 2, width // 2) if position is None else map(int, position)
    if not (0 <= row < height and 0 <= col < width):
        raise ValueError(f"position {(row, col)} is outside the {height} x {width} map")
    return row, col


def _support_box(gradient: tf.Tensor, layer: str, size: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) inclusive bounds of a (H, W, 3) gradient's non-zeros."""
    nonzero = np.any(gradient.numpy() != 0, axis=-1)
    rows, cols = np.flatnonzero(nonzero.any(axis=1)), np.flatnonzero(nonzero.any(axis=0))
    if rows.size == 0:
        raise ValueError(f"{layer}: the input gradient is zero everywhere")
    box = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    if box[0] == 0 or box[2] == 0 or box[1] == size - 1 or box[3] == size - 1:
        raise ValueError(f"{layer}: the receptive field reaches the border of a {size} px "
                         f"input; pass a larger size")
    return box
