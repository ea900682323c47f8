"""VGG19 weights: the modes (auto/imagenet/random/file), weight files, the ImageNet download.

This module owns where the extractor's weights come from: resolving a request ("auto",
"imagenet", "random" or a path) to a source, seeded He-normal random weights, reading and
writing VGG19 ``.h5`` weight files (legacy Keras and Keras 3 layouts) and fetching the
ImageNet notop weights through Keras' cache. Weight files are keyed by the layer table of
``nstlib.vgg_layers``. Notebook 02 (``02_vgg19_features.ipynb``) teaches the extractor and
its weights modes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

import h5py
import keras
import numpy as np

from nstlib import config
from nstlib._io import atomic_path
from nstlib.vgg_layers import CONV_LAYERS, layer_channels

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

#: Why the ImageNet download failed in this process (None: not tried, or it worked). Offline,
#: every run with weights="auto" would otherwise try again: Keras prints "Downloading data
#: from ..." each time, and behind a firewall that drops packets each try waits for a
#: timeout. A file copied into the cache later is still found (the cache is looked at first).
_download_failure: str | None = None


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights were asked for explicitly but cannot be found or downloaded."""


class WeightsFileError(ValueError):
    """A weights file that cannot be read as VGG19 weights (not HDF5, truncated, unreadable)."""


@functools.lru_cache(maxsize=64)
def random_conv_weights(layer: str, seed: int = 0,
                        first_layer_dc: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random weights for one conv layer (He-normal kernel, zero bias).

    The kernel is drawn from N(0, 2 / fan_in) with fan_in = 9 * in_channels. For a
    ReLU network this keeps the mean square activation constant from layer to layer
    (He et al., 2015), so features neither vanish nor explode through 16 layers. Each
    layer has its own generator seeded by (seed, layer index), so a network truncated at
    block2 has exactly the same block1-2 weights as the full one.

    Args:
        layer: A conv layer name, e.g. "block1_conv1".
        seed: Seed of the generators.
        first_layer_dc: For block1_conv1 only, the fraction kept of each filter's mean over
            its 3×3 taps (``dc_reduced_kernel``); 1 leaves the He-normal draw as it is.

    Returns:
        kernel (3, 3, c_in, c_out) float32, bias (c_out,) float32.
    """
    index = CONV_LAYERS.index(layer)
    c_in = 3 if index == 0 else layer_channels(CONV_LAYERS[index - 1])
    c_out = layer_channels(layer)
    rng = np.random.default_rng([seed, index])
    kernel = rng.standard_normal((3, 3, c_in, c_out), dtype=np.float32)
    kernel *= np.float32(np.sqrt(2.0 / (9 * c_in)))
    if index == 0 and first_layer_dc != 1.0:
        kernel = dc_reduced_kernel(kernel, first_layer_dc)
    return kernel, np.zeros(c_out, np.float32)


def check_first_layer_dc(keep: float) -> None:
    """A one-line ValueError unless ``keep`` (``first_layer_dc``) lies in [0, 1]."""
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"first_layer_dc must be in [0, 1], got {keep}")


def dc_reduced_kernel(kernel: np.ndarray, keep: float) -> np.ndarray:
    """A kernel whose taps' mean (its response to a flat patch) is scaled by ``keep``.

    A random first-layer filter mostly measures the colour of a pixel: the mean of its
    nine taps times the pixel value outweighs its response to edges, so the Grams of its
    features are mostly colour statistics. Trained first-layer filters are mostly
    zero-mean edge and colour-opponent detectors. Subtracting ``1 - keep`` of each
    (input, output) channel's spatial mean keeps that much of the colour response and all
    of the structure; the kernel is then rescaled to the root mean square it had, so the
    He scaling of the activations holds.

    Args:
        kernel: (3, 3, c_in, c_out).
        keep: In [0, 1]: 0 gives zero-mean filters, 1 the kernel unchanged.

    Returns:
        (3, 3, c_in, c_out) float32.
    """
    check_first_layer_dc(keep)
    rms = np.sqrt(np.mean(np.square(kernel, dtype=np.float64)))
    reduced = kernel - (1.0 - keep) * kernel.mean(axis=(0, 1), keepdims=True, dtype=np.float64)
    reduced *= rms / np.sqrt(np.mean(reduced ** 2))
    return reduced.astype(np.float32)


def read_h5_weights(path) -> dict[str, list[np.ndarray]]:
    """Read conv weights by layer name from a VGG19 ``.h5`` file.

    Understands the legacy Keras layout that ``keras.applications`` downloads (top-level
    groups named after layers, each listing ``weight_names``) and the Keras 3
    ``.weights.h5`` layout (``layers/<key>/vars/<i>``, the layer name in the attribute
    ``name`` of ``vars``).

    Returns:
        {layer name: [kernel (3, 3, c_in, c_out), bias (c_out,)]} for the layers present.

    Raises:
        WeightsFileError: "not a VGG19 weights file: PATH (why)" for a file that is not
            HDF5, is truncated or damaged, or cannot be read.
    """
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError:
        raise WeightsFileError(f"permission denied: {path}") from None
    try:
        return _read_h5_layers(path)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise WeightsFileError(f"not a VGG19 weights file: {path} ({_h5_reason(err)})") from None


def _h5_reason(err: Exception) -> str:
    """h5py's wording reduced to its cause ("file signature not found" -> not HDF5)."""
    text = str(err)
    if "signature" in text:
        return "not an HDF5 file"
    if "truncated" in text or "eof" in text.lower():
        return "truncated HDF5 file"
    inner = text[text.rfind("(") + 1:text.rfind(")")] if "(" in text else text
    return inner or type(err).__name__


def _read_h5_layers(path) -> dict[str, list[np.ndarray]]:
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
    conv = [layer for layer in model.layers if layer.name in CONV_LAYERS]
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in conv])
        f.attrs["backend"] = b"tensorflow"
        for layer in conv:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/kernel:0", f"{layer.name}/bias:0"]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for name, value in zip(names, layer.get_weights(), strict=True):
                group.create_dataset(name, data=value)
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
    global _download_failure
    if _download_failure is not None:
        raise WeightsUnavailableError(_unavailable_message(f"{_download_failure}, "
                                                           "not retried in this process"))
    try:
        # Keras reports "Downloading data from ..." on stdout; stdout belongs to results
        # (the CLI's summary line, notebook outputs), so the progress goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            return Path(keras.utils.get_file(_IMAGENET_FILE, _IMAGENET_URL,
                                             cache_subdir="models", file_hash=_IMAGENET_MD5))
    except Exception as err:  # noqa: BLE001 - any download failure means "unavailable"
        _download_failure = type(err).__name__
        raise WeightsUnavailableError(_unavailable_message(_download_failure)) from None


def _unavailable_message(why: str) -> str:
    """The one-line error of a failed download, with what to do instead."""
    return (f"ImageNet VGG19 weights could not be downloaded ({why}). Copy {_IMAGENET_FILE} "
            f"(from {_IMAGENET_URL}) into ~/.keras/models/, or set "
            f"{config.WEIGHTS_ENV_VAR}=/path/to/{_IMAGENET_FILE}, or pass weights='random'")


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
            env = os.environ.get(config.WEIGHTS_ENV_VAR)
            why = (f" ({config.WEIGHTS_ENV_VAR}={env} does not name a file)"
                   if env and not Path(env).is_file() else "")
            print(f"nstlib: ImageNet VGG19 weights unavailable{why}; using RANDOM weights "
                  f"(seed {seed}). See README 'VGG19 weights'.", file=sys.stderr)
            return "random", None
    raise ValueError(f"weights must be one of {', '.join(WEIGHT_MODES)} or a path, got "
                     f"{weights!r}")
