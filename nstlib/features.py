"""The VGG19 feature extractor: layers, weights (auto/imagenet/random/file), pooling, truncation.

The network is rebuilt here layer by layer with the same layer names and shapes as
``keras.applications.VGG19(include_top=False)``, so ImageNet weight files load by name,
but it stops at the deepest layer a run needs and can swap max for average pooling.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import NamedTuple

import h5py
import keras
import numpy as np
import tensorflow as tf

from nstlib import config
from nstlib.images import vgg_preprocess

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

DEFAULT_CONTENT_LAYERS = ("block4_conv2",)
DEFAULT_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                        "block5_conv1")

#: Where Keras downloads the ImageNet notop weights (file name, URL, MD5), as used by
#: keras.applications.VGG19; read from Keras when it exposes them.
_IMAGENET_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
_IMAGENET_MD5 = "253f8cb515780f3b799900260a226db6"
try:  # pragma: no cover - depends on the Keras version
    from keras.src.applications.vgg19 import WEIGHTS_PATH_NO_TOP as _IMAGENET_URL
except ImportError:  # pragma: no cover
    _IMAGENET_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
                     + _IMAGENET_FILE)

WEIGHT_MODES = ("auto", "imagenet", "random")
#: Precisions the convolution stack can run in (activations are returned as float32).
COMPUTE_DTYPES = ("float32", "bfloat16")
#: How the 3x3 convolutions are computed (see ``conv2d_same_transposed``).
CONV_IMPLS = ("auto", "standard", "transposed")


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights were asked for explicitly but cannot be found or downloaded."""


class Features(NamedTuple):
    """Activations of one forward pass.

    Attributes:
        content: One (B, h, w, c) float32 tensor per content layer, in request order.
        style: One (B, h, w, c) float32 tensor per style layer, in request order.
    """

    content: list
    style: list


# ----------------------------------------------------------------------------- layers


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


def receptive_field(layer: str) -> tuple[int, int]:
    """Receptive field size and stride (pixels) of one unit of ``layer`` in the input.

    Each 3x3 convolution (stride 1) widens the field by 2 * the current stride; each
    2x2 pooling (stride 2) widens it by the current stride and doubles the stride.

    Returns:
        (size, stride): e.g. ``receptive_field("block1_conv2") == (5, 1)``.
    """
    validate_layers(layer)
    size, stride = 1, 1
    for name in LAYER_NAMES[: LAYER_NAMES.index(layer) + 1]:
        if "_conv" in name:
            size += 2 * stride
        else:
            size += stride
            stride *= 2
    return size, stride


def layer_channels(layer: str) -> int:
    """Number of channels of a layer's output (64 ... 512)."""
    validate_layers(layer)
    return _BLOCKS[int(layer[5]) - 1][1]


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


def resolve_conv_impl(conv_impl: str, compute_dtype: str = "float32") -> str:
    """"auto" -> "transposed" for float32 on a machine without a visible GPU, else "standard".

    The transposed form is faster with oneDNN's float32 CPU kernels only (it also flips
    every kernel at each call, ~40 MB of copying per step up to block5_conv1); bfloat16
    (AMX) convolutions are fastest as plain ``Conv2D`` and GPUs (cuDNN) have no reason
    to gain (benchmarks/step_time.py, benchmarks/gpu.py).
    """
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be one of {', '.join(CONV_IMPLS)}, got {conv_impl!r}")
    if conv_impl != "auto":
        return conv_impl
    on_cpu = not tf.config.list_physical_devices("GPU")
    return "transposed" if compute_dtype == "float32" and on_cpu else "standard"


def build_vgg19(last_layer: str = "block5_pool", pooling: str = "max",
                dtype: str | None = None, conv_impl: str = "standard") -> keras.Model:
    """Untrained VGG19 convolutional trunk up to and including ``last_layer``.

    Args:
        last_layer: Deepest layer to build.
        pooling: "max" (as trained) or "avg" (Gatys et al. 2016 found it gives
            smoother gradients for synthesis).
        dtype: Keras dtype policy of every layer (None: the global policy, float32 by
            default; "mixed_bfloat16": float32 weights, bfloat16 computation and outputs).
        conv_impl: "standard" (``keras.layers.Conv2D``) or "transposed"
            (``TransposedConv2D``: same results, faster forward pass on oneDNN CPUs);
            "auto" picks with ``resolve_conv_impl``.

    Returns:
        A Keras model from (B, H, W, 3) preprocessed BGR input to a dict of every
        layer's output keyed by name.
    """
    if pooling not in ("max", "avg"):
        raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
    validate_layers(last_layer)
    pool_cls = keras.layers.MaxPooling2D if pooling == "max" else keras.layers.AveragePooling2D
    conv_cls = {"standard": keras.layers.Conv2D, "transposed": TransposedConv2D}[
        resolve_conv_impl(conv_impl, "bfloat16" if dtype and "bfloat16" in dtype else "float32")]
    inputs = keras.Input(shape=(None, None, 3), name="input")
    x, outputs = inputs, {}
    for name in LAYER_NAMES[: LAYER_NAMES.index(last_layer) + 1]:
        if "_conv" in name:
            layer = conv_cls(layer_channels(name), 3, padding="same", activation="relu",
                             name=name, dtype=dtype)
        else:
            layer = pool_cls(2, strides=2, name=name, dtype=dtype)
        x = layer(x)
        outputs[name] = x
    return keras.Model(inputs, outputs, name=f"vgg19_to_{last_layer}")


# ----------------------------------------------------------------------------- weights


@functools.lru_cache(maxsize=64)
def random_conv_weights(layer: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random weights for one conv layer (He-normal kernel, zero bias).

    The kernel is drawn from N(0, 2 / fan_in) with fan_in = 9 * in_channels. For a
    ReLU network this keeps the mean square activation constant from layer to layer
    (He et al., 2015), so features neither vanish nor explode through 16 layers. Each
    layer has its own generator seeded by (seed, layer index), so a network truncated at
    block2 has exactly the same block1-2 weights as the full one.

    Returns:
        kernel (3, 3, c_in, c_out) float32, bias (c_out,) float32.
    """
    index = CONV_LAYERS.index(layer)
    c_in = 3 if index == 0 else layer_channels(CONV_LAYERS[index - 1])
    c_out = layer_channels(layer)
    rng = np.random.default_rng([seed, index])
    kernel = rng.standard_normal((3, 3, c_in, c_out), dtype=np.float32)
    kernel *= np.float32(np.sqrt(2.0 / (9 * c_in)))
    return kernel, np.zeros(c_out, np.float32)


def read_h5_weights(path) -> dict[str, list[np.ndarray]]:
    """Read conv weights by layer name from a VGG19 ``.h5`` file.

    Understands the legacy Keras layout that ``keras.applications`` downloads (top-level
    groups named after layers, each listing ``weight_names``) and the Keras 3
    ``.weights.h5`` layout (``layers/<key>/vars/<i>``, the layer name in the attribute
    ``name`` of ``vars``).

    Returns:
        {layer name: [kernel (3, 3, c_in, c_out), bias (c_out,)]} for the layers present.
    """
    out: dict[str, list[np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layers" in root and isinstance(root["layers"], h5py.Group) and "layer_names" \
                not in root.attrs:
            for key, group in root["layers"].items():
                if "vars" not in group:
                    continue
                # Keras 3 keys groups by object path ("conv2d_3"); the layer's own name
                # ("block2_conv2") is the "name" attribute of its "vars" group.
                name = group["vars"].attrs.get("name", key)
                name = name.decode() if isinstance(name, bytes) else str(name)
                if name in CONV_LAYERS:
                    out[name] = [np.asarray(group["vars"][k]) for k in sorted(group["vars"],
                                                                              key=int)]
            return out
        for name in CONV_LAYERS:
            if name not in root:
                continue
            group = root[name]
            names = [n.decode() if isinstance(n, bytes) else n
                     for n in group.attrs.get("weight_names", [])]
            if names:  # a group without weights (as for pools) does not provide the layer
                out[name] = [np.asarray(group[n]) for n in names]
    return out


def write_h5_weights(model: keras.Model, path) -> Path:
    """Write a model's conv weights in the legacy Keras layout that ``read_h5_weights`` reads.

    Only the layers present in ``model`` are written, so a truncated extractor gives a
    small file. Written to a temporary name and renamed (atomic).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    conv = [layer for layer in model.layers if layer.name in CONV_LAYERS]
    with h5py.File(tmp, "w") as f:
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in conv])
        f.attrs["backend"] = b"tensorflow"
        for layer in conv:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/kernel:0", f"{layer.name}/bias:0"]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for name, value in zip(names, layer.get_weights(), strict=True):
                group.create_dataset(name, data=value)
    os.replace(tmp, path)
    return path


def cached_imagenet_path() -> Path | None:
    """The ImageNet notop file from ``NSTLIB_VGG19_WEIGHTS`` or the Keras cache, if present."""
    env = os.environ.get(config.WEIGHTS_ENV_VAR)
    if env and Path(env).is_file():
        return Path(env)
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    cached = keras_home / "models" / _IMAGENET_FILE
    return cached if cached.is_file() else None


def download_imagenet_weights() -> Path:
    """Fetch the ImageNet notop weights with Keras' own downloader and cache.

    Raises:
        WeightsUnavailableError: offline or blocked, with instructions.
    """
    env = os.environ.get(config.WEIGHTS_ENV_VAR)
    if env and not Path(env).is_file():
        raise WeightsUnavailableError(
            f"{config.WEIGHTS_ENV_VAR}={env} does not name a file; point it at "
            f"{_IMAGENET_FILE} or use weights='random'"
        )
    cached = cached_imagenet_path()
    if cached is not None:
        return cached
    try:
        # Keras reports "Downloading data from ..." on stdout; stdout belongs to results
        # (the CLI's summary line, notebook outputs), so the progress goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            return Path(keras.utils.get_file(_IMAGENET_FILE, _IMAGENET_URL,
                                             cache_subdir="models", file_hash=_IMAGENET_MD5))
    except Exception as err:  # noqa: BLE001 - any download failure means "unavailable"
        raise WeightsUnavailableError(
            f"ImageNet VGG19 weights could not be downloaded ({type(err).__name__}). "
            f"Copy {_IMAGENET_FILE} (from {_IMAGENET_URL}) into ~/.keras/models/, or set "
            f"{config.WEIGHTS_ENV_VAR}=/path/to/{_IMAGENET_FILE}, or pass weights='random'"
        ) from None


def resolve_weights(weights, seed: int = 0) -> tuple[str, Path | None]:
    """Decide which weights a request means.

    Args:
        weights: "auto", "imagenet", "random", or a path to a VGG19 ``.h5`` file.
        seed: Seed for random weights.

    Returns:
        (source, path): source is "imagenet", "random" or "file"; path is the weight
        file (None for random).
    """
    if isinstance(weights, str | os.PathLike) and str(weights) not in WEIGHT_MODES:
        path = Path(weights)
        if not path.is_file():
            raise ValueError(
                f"weights must be one of {', '.join(WEIGHT_MODES)} or a path to a VGG19 .h5 "
                f"file; {str(weights)!r} is neither"
            )
        return "file", path
    if weights == "random":
        return "random", None
    if weights == "imagenet":
        return "imagenet", download_imagenet_weights()
    if weights == "auto":
        try:
            return "imagenet", download_imagenet_weights()
        except WeightsUnavailableError:
            print(f"nstlib: ImageNet VGG19 weights unavailable; using RANDOM weights "
                  f"(seed {seed}). See README 'VGG19 weights'.", file=sys.stderr)
            return "random", None
    raise ValueError(f"weights must be one of {', '.join(WEIGHT_MODES)} or a path, got "
                     f"{weights!r}")


# ----------------------------------------------------------------------------- extractor


class FeatureExtractor:
    """VGG19 features for style transfer, truncated at the deepest requested layer.

    Args:
        content_layers: Layer names whose activations feed the content loss.
        style_layers: Layer names whose activations feed the style loss.
        weights: "auto" (ImageNet if available, else random, saying so), "imagenet"
            (never degrades), "random" (seeded He-normal, see ``random_conv_weights``)
            or a path to a VGG19 notop ``.h5`` file.
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
        conv_impl: "auto" (default), "standard" or "transposed": how the convolutions
            are computed (same numbers, see ``conv2d_same_transposed``). "auto" uses the
            transposed form for float32 on machines without a visible GPU, where it
            made steps faster in benchmarks/step_time.py, else plain ``Conv2D``.

    Attributes:
        weights_source: "imagenet", "random" or "file", what was actually loaded.
        weights_path: The weight file used (None for random).
        model: The Keras model (preprocessed input -> dict of layer outputs).

    Calling the extractor on (B, H, W, 3) images in [0, 1] returns ``Features`` with
    ``.content`` and ``.style`` lists of (B, h, w, c) tensors.
    """

    def __init__(self, content_layers=DEFAULT_CONTENT_LAYERS, style_layers=DEFAULT_STYLE_LAYERS,
                 weights="auto", pooling: str = "max", seed: int = 0,
                 compute_dtype: str = "float32", conv_impl: str = "auto"):
        if compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, got "
                             f"{compute_dtype!r}")
        self.compute_dtype = compute_dtype
        self.conv_impl = resolve_conv_impl(conv_impl, compute_dtype)
        self.content_layers = validate_layers(content_layers, "content layer")
        self.style_layers = validate_layers(style_layers, "style layer")
        if not self.content_layers and not self.style_layers:
            raise ValueError("at least one content or style layer is needed")
        self.pooling = pooling
        self.seed = int(seed)
        requested = self.content_layers + self.style_layers
        self.layers = tuple(n for n in LAYER_NAMES if n in requested)
        self.last_layer = self.layers[-1]
        self.model = build_vgg19(self.last_layer, pooling,
                                 None if compute_dtype == "float32" else "mixed_bfloat16",
                                 self.conv_impl)
        self.weights_source, self.weights_path = resolve_weights(weights, self.seed)
        self._load_weights()

    def _load_weights(self) -> None:
        conv = [layer for layer in self.model.layers if layer.name in CONV_LAYERS]
        if self.weights_source == "random":
            for layer in conv:
                layer.set_weights(list(random_conv_weights(layer.name, self.seed)))
            return
        stored = read_h5_weights(self.weights_path)
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
        """One line for logs and records, e.g. ``"random (seed 0)"``."""
        if self.weights_source == "random":
            return f"random (seed {self.seed}, He-normal)"
        return f"{self.weights_source} ({self.weights_path})"

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
        return LAYER_NAMES[: LAYER_NAMES.index(self.last_layer) + 1]

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


# ----------------------------------------------------------------------------- measured fields


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
    size = default_measurement_size(layer) if size is None else int(size)
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


def default_measurement_size(layer: str) -> int:
    """Smallest multiple of 32 px whose centre unit and left neighbour fit with a margin.

    With "same" 3x3 convolutions and 2x2 pools, unit i of a layer with stride s is
    centred on input pixel i·s + (s − 1)/2 and spans ± (R − 1)/2 around it (R the field
    size of ``receptive_field``).
    """
    field, stride = receptive_field(layer)
    size = 32
    while True:
        col = (size // stride) // 2
        lowest = (col - 1) * stride + (stride - 1) / 2 - (field - 1) / 2
        highest = col * stride + (stride - 1) / 2 + (field - 1) / 2
        if col >= 1 and lowest >= 1 and highest <= size - 2:
            return size
        size += 32


def _check_built(extractor: FeatureExtractor, layer: str) -> None:
    validate_layers(layer)
    if LAYER_NAMES.index(layer) > LAYER_NAMES.index(extractor.last_layer):
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
