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
