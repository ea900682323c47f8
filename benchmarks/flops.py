"""Convolution FLOP counts of one style-transfer optimisation step through VGG19.

What is counted (one step = loss and gradient with respect to the image):

* forward: every 3x3 convolution from block1_conv1 up to and including the deepest layer
  the loss uses, 2·H·W·9·C_in·C_out FLOPs each (one multiply and one add per
  multiply-accumulate; H, W the layer's spatial size; "same" padding counted densely,
  as the kernels execute it);
* input gradient: the same 2·H·W·9·C_in·C_out for every one of those convolutions
  (Conv2DBackpropInput is a convolution of the output gradient with the transposed
  kernel: the same multiply-accumulates). block1_conv1 is included: in style transfer
  the image is the variable, so the gradient with respect to the first layer's input
  *is* needed (unlike in network training); it is small (C_in = 3).

Not counted: weight gradients (the weights are constants; the tape watches only the
image and TensorFlow prunes Conv2DBackpropFilter from the graph), bias additions,
ReLUs, pooling, VGG pre-processing, the optimizer update, and Gram matrices and
losses. The Gram matrices' FLOPs (4·h·w·C² per style layer: forward F^T F plus the
backward matrix product) are reported separately by ``step_flops`` as ``gram``.

Pooling is 2x2 with stride 2 and "valid" padding, so an odd side h becomes floor(h/2),
as in Keras.

Run as a script to print the counts for 128/256/512 px square images as JSON.
"""

from __future__ import annotations

import json
import sys

from nstlib.resources import conv_flops  # noqa: F401  (re-exported for the benchmarks)
from nstlib.resources import step_flops as _step_flops
from nstlib.vgg_layers import CONV_LAYERS as CONV_NAMES
from nstlib.vgg_layers import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS

# The arithmetic lives in nstlib.resources (it also predicts seconds per step before a run).


def layer_table(height: int, width: int, last_layer: str) -> list[dict]:
    """Every conv layer up to ``last_layer`` with its spatial size, channels and FLOPs.

    Returns:
        [{"layer", "height", "width", "c_in", "c_out", "forward"}] in network order.
    """
    if last_layer not in CONV_NAMES:
        raise ValueError(f"unknown conv layer {last_layer!r}; choose one of "
                         f"{', '.join(CONV_NAMES)}")
    return _step_flops(height, width, (last_layer,), ())["per_layer"]


def deepest(layers) -> str:
    """The layer of ``layers`` that comes last in VGG19."""
    return max(layers, key=CONV_NAMES.index)


def step_flops(height: int, width: int, content_layers=DEFAULT_CONTENT_LAYERS,
               style_layers=DEFAULT_STYLE_LAYERS) -> dict:
    """Convolution FLOPs of one optimisation step (``nstlib.resources.step_flops``).

    Returns:
        {"deepest_layer", "conv_layers", "forward", "input_gradient", "conv_total",
        "gram", "per_layer"}: FLOPs as integers; "conv_total" = forward + input_gradient
        is the number the GFLOP/s figures of the benchmarks divide by.
    """
    return _step_flops(height, width, content_layers, style_layers)


WHAT_IS_COUNTED = (
    "conv FLOPs of one step: forward 2*H*W*9*Cin*Cout for every 3x3 conv up to the deepest "
    "loss layer, plus the same again for each conv's input gradient (block1_conv1 included: "
    "the image is the variable). Not counted: weight gradients (never computed: weights are "
    "constant), bias, ReLU, pooling, Gram matrices (reported separately as 'gram'), losses, "
    "optimizer update."
)


def main() -> None:
    out = {"what": WHAT_IS_COUNTED, "sizes": {}}
    for size in (128, 256, 512):
        counts = step_flops(size, size)
        out["sizes"][str(size)] = {k: v for k, v in counts.items() if k != "per_layer"}
        out["sizes"][str(size)]["conv_total_gflop"] = counts["conv_total"] / 1e9
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
