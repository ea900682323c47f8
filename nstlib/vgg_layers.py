"""The VGG19 layer table: names in network order, channels, default layers, name checks.

Plain Python (no TensorFlow), so that settings and the ``nst`` command can check layer
names before the network library is imported. ``nstlib.features`` builds the network from
this table and ``nstlib.vgg_weights`` keys weight files by it; notebook 02
(``02_vgg19_features.ipynb``) prints it.
"""

from __future__ import annotations

#: Conv layers per block and their channel counts (VGG19, configuration "E").
_BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))

#: Every layer name in network order, pools included (as in keras.applications.VGG19).
LAYER_NAMES: tuple[str, ...] = tuple(
    name
    for block, (n_conv, _) in enumerate(_BLOCKS, start=1)
    for name in [f"block{block}_conv{i}" for i in range(1, n_conv + 1)] + [f"block{block}_pool"]
)
#: Only the 16 convolution layers.
CONV_LAYERS: tuple[str, ...] = tuple(n for n in LAYER_NAMES if "_conv" in n)

#: Layers of the default losses (Gatys et al. 2016: conv4_2 for content, conv1_1 ... conv5_1
#: for style).
DEFAULT_CONTENT_LAYERS = ("block4_conv2",)
DEFAULT_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                        "block5_conv1")


def validate_layers(names, role: str = "layer") -> tuple[str, ...]:
    """Check layer names against VGG19's.

    Raises:
        ValueError: naming the unknown layers and listing every valid one.
    """
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    unknown = [n for n in names if n not in LAYER_NAMES]
    if unknown:
        raise ValueError(
            f"unknown VGG19 {role} name(s) {', '.join(map(repr, unknown))}; "
            f"valid names are: {', '.join(LAYER_NAMES)}"
        )
    return names


def deepest_layer(names) -> str:
    """The layer of ``names`` that comes last in the network."""
    return max(validate_layers(names), key=LAYER_NAMES.index)


def layer_channels(layer: str) -> int:
    """Number of channels of a layer's output (64 ... 512)."""
    validate_layers(layer)
    return _BLOCKS[int(layer[5]) - 1][1]
