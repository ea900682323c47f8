"""nstlib: optimisation-based neural style transfer with TensorFlow/Keras.

The public API is re-exported here; each name lives in the module that owns its concept
(images -> features -> statistics/losses -> optimize -> transfer, with ``settings`` below
them all; README.md's module table says which module owns what).

Importing the package has no side effects: it does not import TensorFlow, change
environment variables or touch file descriptors. A public name (``nstlib.stylize``) or a
submodule (``nstlib.images``) is imported from its module on first use.
"""

from importlib import import_module, metadata

try:
    __version__ = metadata.version("nstlib")
except metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0.0.0+unknown"

#: Public name -> the submodule that owns it.
_EXPORTS = {
    "CONV_LAYERS": "vgg_layers",
    "ConfigError": "settings",
    "DEFAULT_CONTENT_LAYERS": "vgg_layers",
    "DEFAULT_STYLE_LAYERS": "vgg_layers",
    "DEFAULT_WCT_LAYERS": "wct",
    "FeatureExtractor": "features",
    "Features": "features",
    "History": "optimize",
    "ImageError": "images",
    "InsufficientMemoryError": "resources",
    "LAYER_NAMES": "vgg_layers",
    "LossConfig": "settings",
    "NetworkConfig": "settings",
    "NonFiniteLossError": "optimize",
    "OPTIMIZERS": "settings",
    "OPTIMIZER_SPECS": "optimizer_specs",
    "OptimConfig": "settings",
    "OptimizerSpec": "optimizer_specs",
    "QUICK": "config",
    "RunPlan": "plan",
    "StyleTransferObjective": "losses",
    "StylizeConfig": "settings",
    "StylizeResult": "transfer",
    "UPDATE_RULES": "update_rules",
    "WCTConfig": "settings",
    "WCTStylizeResult": "wct",
    "WeightsFileError": "vgg_weights",
    "WeightsUnavailableError": "vgg_weights",
    "adain": "statistics",
    "batch_norm": "statistics",
    "channel_mean_std": "statistics",
    "color": "wct",
    "combine_luminance": "colors",
    "content_loss": "losses",
    "covariance_spectrum": "wct",
    "energy_kept": "wct",
    "feature_covariance": "wct",
    "feature_inversion_loss": "wct",
    "gaussian_kernel": "pyramids",
    "gram_matrix": "statistics",
    "guided_gram": "statistics",
    "image_pyramid": "pyramids",
    "instance_norm": "statistics",
    "invert_features": "wct",
    "layer_extractor": "wct",
    "layer_style_loss": "losses",
    "ledoit_wolf_shrinkage": "statistics",
    "load_image": "images",
    "load_mask": "images",
    "load_sample": "images",
    "make_optimizer": "optimize",
    "make_plan": "plan",
    "match_color_statistics": "colors",
    "measure_receptive_field": "receptive_fields",
    "minimize": "optimize",
    "plot_loss_curves": "plotting",
    "predict_peak_bytes": "resources",
    "predict_step_seconds": "resources",
    "psnr": "metrics",
    "pyramid_style_loss": "losses",
    "receptive_field": "receptive_fields",
    "relative_error": "metrics",
    "resize_max_side": "images",
    "run_update_rule": "update_rules",
    "sample_names": "images",
    "save_image": "images",
    "set_seed": "reproducibility",
    "show_image": "plotting",
    "show_images": "plotting",
    "shrink_gram": "statistics",
    "style_loss": "losses",
    "stylize": "transfer",
    "total_variation_loss": "losses",
    "unit_input_gradient": "receptive_fields",
    "wct_stylize": "wct",
    "whiten": "wct",
}

#: Submodules reachable as attributes (``nstlib.images``) without an explicit import.
_SUBMODULES = ("ablation", "cli", "colors", "config", "features", "images", "losses", "metrics",
               "optimize", "optimizer_specs", "patterns", "plan", "plotting", "pyramids",
               "receptive_fields", "conv_choice", "reproducibility", "resources",
               "settings", "statistics", "toy", "transfer", "update_rules", "vgg_layers",
               "vgg_weights", "wct", "weight_sources")

# ``nstlib.wct`` is the module since it exists (the transform itself is ``nstlib.wct.wct``):
# a package attribute cannot be both, and importing the submodule would rebind it anyway.
__all__ = sorted([*_EXPORTS, "__version__", "wct"])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f"nstlib.{_EXPORTS[name]}"), name)
    elif name in _SUBMODULES:
        value = import_module(f"nstlib.{name}")
    else:
        raise AttributeError(f"module 'nstlib' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
