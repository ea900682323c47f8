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

#: VGG19 conv layers (name, C_in, C_out) in network order; "pool" marks a 2x2 pooling.
VGG19_LAYERS: tuple = (
    ("block1_conv1", 3, 64), ("block1_conv2", 64, 64), "pool",
    ("block2_conv1", 64, 128), ("block2_conv2", 128, 128), "pool",
    ("block3_conv1", 128, 256), ("block3_conv2", 256, 256), ("block3_conv3", 256, 256),
    ("block3_conv4", 256, 256), "pool",
    ("block4_conv1", 256, 512), ("block4_conv2", 512, 512), ("block4_conv3", 512, 512),
    ("block4_conv4", 512, 512), "pool",
    ("block5_conv1", 512, 512), ("block5_conv2", 512, 512), ("block5_conv3", 512, 512),
    ("block5_conv4", 512, 512),
)
CONV_NAMES = tuple(layer[0] for layer in VGG19_LAYERS if layer != "pool")

DEFAULT_CONTENT_LAYERS = ("block4_conv2",)
DEFAULT_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                        "block5_conv1")


def conv_flops(height: int, width: int, c_in: int, c_out: int, kernel: int = 3) -> int:
    """FLOPs of one stride-1 "same" convolution forward: 2·H·W·k²·C_in·C_out."""
    return 2 * int(height) * int(width) * kernel * kernel * int(c_in) * int(c_out)


def layer_table(height: int, width: int, last_layer: str) -> list[dict]:
    """Every conv layer up to ``last_layer`` with its spatial size, channels and FLOPs.

    Returns:
        [{"layer", "height", "width", "c_in", "c_out", "forward"}] in network order.
    """
    if last_layer not in CONV_NAMES:
        raise ValueError(f"unknown conv layer {last_layer!r}; choose one of "
                         f"{', '.join(CONV_NAMES)}")
    h, w, rows = int(height), int(width), []
    for layer in VGG19_LAYERS:
        if layer == "pool":
            h, w = h // 2, w // 2
            continue
        name, c_in, c_out = layer
        rows.append({"layer": name, "height": h, "width": w, "c_in": c_in, "c_out": c_out,
                     "forward": conv_flops(h, w, c_in, c_out)})
        if name == last_layer:
            return rows
    raise AssertionError("unreachable")


def deepest(layers) -> str:
    """The layer of ``layers`` that comes last in VGG19."""
    return max(layers, key=CONV_NAMES.index)


def step_flops(height: int, width: int, content_layers=DEFAULT_CONTENT_LAYERS,
               style_layers=DEFAULT_STYLE_LAYERS) -> dict:
    """Convolution FLOPs of one optimisation step (forward + input gradient).

    Args:
        height, width: Image size in pixels.
        content_layers, style_layers: Layers the loss uses (conv layer names).

    Returns:
        {"deepest_layer", "conv_layers", "forward", "input_gradient", "conv_total",
        "gram", "per_layer"}: FLOPs as integers; "conv_total" = forward + input_gradient
        is the number the GFLOP/s figures of the benchmarks divide by.
    """
    layers = tuple(content_layers) + tuple(style_layers)
    last = deepest(layers)
    rows = layer_table(height, width, last)
    forward = sum(row["forward"] for row in rows)
    by_name = {row["layer"]: row for row in rows}
    gram = sum(4 * by_name[n]["height"] * by_name[n]["width"] * by_name[n]["c_out"] ** 2
               for n in style_layers)
    return {"deepest_layer": last, "conv_layers": len(rows), "forward": forward,
            "input_gradient": forward, "conv_total": 2 * forward, "gram": gram,
            "per_layer": rows}


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
