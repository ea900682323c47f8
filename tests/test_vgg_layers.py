"""Tests for nstlib.vgg_layers: the VGG19 layer table and layer-name checks."""

from __future__ import annotations

import pytest

import nstlib
from nstlib.features import (
    CONV_LAYERS,
    LAYER_NAMES,
    FeatureExtractor,
)


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


# ----------------------------------------------------------------------------- VGG16


def test_each_network_table_matches_keras_applications():
    """Names, order and channels of both tables against Keras' own models (no weights)."""
    import keras

    from nstlib.vgg_layers import NETWORKS, layer_channels

    builders = {"vgg19": keras.applications.VGG19, "vgg16": keras.applications.VGG16}
    for name, build in builders.items():
        model = build(weights=None, include_top=False)
        layers = [layer for layer in model.layers if "block" in layer.name]
        assert NETWORKS[name].layer_names == tuple(layer.name for layer in layers)
        for layer in layers:
            if "_conv" in layer.name:
                assert layer_channels(layer.name, name) == layer.filters
    assert len(NETWORKS["vgg16"].conv_layers) == 13 and len(NETWORKS["vgg19"].conv_layers) == 16
    # every VGG16 name is a VGG19 name: configuration D is E without conv4 of blocks 3-5
    assert set(NETWORKS["vgg16"].layer_names) < set(NETWORKS["vgg19"].layer_names)


def test_vgg16_refuses_the_fourth_convolutions_and_unknown_networks():
    from nstlib.vgg_layers import deepest_layer, layers_up_to, network_spec, validate_layers

    with pytest.raises(ValueError, match=r"unknown VGG16 style layer name\(s\) "
                                         r"'block3_conv4'; valid names are: block1_conv1"):
        validate_layers(("block1_conv1", "block3_conv4"), "style layer", "vgg16")
    assert deepest_layer(("block2_conv1", "block5_conv3", "block4_conv1"), "vgg16") == \
        "block5_conv3"
    assert layers_up_to("block3_pool", "vgg16")[-4:] == (
        "block3_conv1", "block3_conv2", "block3_conv3", "block3_pool")
    with pytest.raises(ValueError, match="network must be one of vgg19, vgg16, got 'vgg11'"):
        network_spec("vgg11")
