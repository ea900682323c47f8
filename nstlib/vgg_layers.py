"""The VGG layer tables (VGG19, VGG16): names in network order, channels, layer checks.

Plain Python (no TensorFlow), so that settings and the ``nst`` command can check layer
names before the network library is imported. One ``Network`` record per architecture
(``NETWORKS``); ``nstlib.features`` builds a network from its record and
``nstlib.vgg_weights`` keys weight files by its layer names; notebook 02
(``02_vgg19_features.ipynb``) prints the tables.

Both networks share the names of ``keras.applications``: VGG16 (configuration "D") is
VGG19 (configuration "E") without the fourth convolution of blocks 3, 4 and 5, so every
VGG16 layer name is also a VGG19 one (not the other way round).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Layers of the default losses (Gatys et al. 2016: conv4_2 for content, conv1_1 ... conv5_1
#: for style); they exist in both networks.
DEFAULT_CONTENT_LAYERS = ("block4_conv2",)
DEFAULT_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                        "block5_conv1")


@dataclass(frozen=True)
class Network:
    """One VGG architecture: everything about it that is not its weights.

    Attributes:
        name: "vgg19" or "vgg16".
        blocks: (convolutions, channels) per block, block 1 first.
        layer_names: Every layer name in network order, pools included.
        conv_layers: Only the convolution layers.
    """

    name: str
    blocks: tuple[tuple[int, int], ...]

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(
            name
            for block, (n_conv, _) in enumerate(self.blocks, start=1)
            for name in ([f"block{block}_conv{i}" for i in range(1, n_conv + 1)]
                         + [f"block{block}_pool"]))

    @property
    def conv_layers(self) -> tuple[str, ...]:
        return tuple(n for n in self.layer_names if "_conv" in n)

    @property
    def title(self) -> str:
        """"VGG19" or "VGG16", for messages."""
        return self.name.upper()


#: One record per architecture (Simonyan & Zisserman 2015, configurations E and D).
NETWORKS: dict[str, Network] = {
    "vgg19": Network("vgg19", ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))),
    "vgg16": Network("vgg16", ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))),
}
#: The network of a run that does not say (and of the names below).
DEFAULT_NETWORK = "vgg19"

#: Every VGG19 layer name in network order, pools included (as in keras.applications.VGG19).
LAYER_NAMES: tuple[str, ...] = NETWORKS["vgg19"].layer_names
#: Only the 16 VGG19 convolution layers.
CONV_LAYERS: tuple[str, ...] = NETWORKS["vgg19"].conv_layers


def network_spec(network: str = DEFAULT_NETWORK) -> Network:
    """The ``Network`` record of a name.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    try:
        return NETWORKS[network]
    except (KeyError, TypeError):
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got "
                         f"{network!r}") from None


def validate_layers(names, role: str = "layer",
                    network: str = DEFAULT_NETWORK) -> tuple[str, ...]:
    """Check layer names against a network's.

    Raises:
        ValueError: naming the unknown layers and listing every valid one.
    """
    spec = network_spec(network)
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    unknown = [n for n in names if n not in spec.layer_names]
    if unknown:
        raise ValueError(
            f"unknown {spec.title} {role} name(s) {', '.join(map(repr, unknown))}; "
            f"valid names are: {', '.join(spec.layer_names)}"
        )
    return names


def deepest_layer(names, network: str = DEFAULT_NETWORK) -> str:
    """The layer of ``names`` that comes last in the network."""
    order = network_spec(network).layer_names
    return max(validate_layers(names, network=network), key=order.index)


def layers_up_to(layer: str, network: str = DEFAULT_NETWORK) -> tuple[str, ...]:
    """Every layer name of ``network`` from the first to ``layer`` (included)."""
    order = network_spec(network).layer_names
    validate_layers(layer, network=network)
    return order[: order.index(layer) + 1]


def min_input_side(layer: str, network: str = DEFAULT_NETWORK) -> int:
    """The shortest input side at which ``layer`` still has a 1 px output: 2^p for the p
    2x2 max or average pools up to it (16 for block5_conv1, 32 for block5_pool), the
    stride of its receptive field (``receptive_fields.receptive_field``)."""
    return 2 ** sum(name.endswith("_pool") for name in layers_up_to(layer, network))


def layer_channels(layer: str, network: str = DEFAULT_NETWORK) -> int:
    """Number of channels of a layer's output (64 ... 512)."""
    validate_layers(layer, network=network)
    return network_spec(network).blocks[int(layer[5]) - 1][1]
