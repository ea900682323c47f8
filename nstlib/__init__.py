"""nstlib: optimisation-based neural style transfer with TensorFlow/Keras.

The public API is re-exported here; each name lives in the module that owns its concept
(images -> features -> statistics/losses -> optimize -> transfer).
"""

import os
import sys


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with their C++ start-up log lines silenced.

    TensorFlow's native libraries print oneDNN/CUDA notices straight to file descriptor 2
    while loading, before any Python setting applies (setting TF_CPP_MIN_LOG_LEVEL from
    Python is too late for them). They would break the CLI's one-line errors, so fd 2 is
    pointed at /dev/null for the import only. Python exceptions still propagate. Set
    NSTLIB_TF_VERBOSE=1 to see the lines.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ.get("NSTLIB_TF_VERBOSE"):
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()

__version__ = "0.1.0"

from nstlib.config import QUICK  # noqa: E402
from nstlib.features import (  # noqa: E402
    CONV_LAYERS,
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    LAYER_NAMES,
    FeatureExtractor,
    Features,
    WeightsUnavailableError,
    measure_receptive_field,
    receptive_field,
    unit_input_gradient,
)
from nstlib.images import (  # noqa: E402
    ImageError,
    gaussian_kernel,
    image_pyramid,
    load_image,
    load_sample,
    resize_max_side,
    sample_names,
    save_image,
)
from nstlib.losses import (  # noqa: E402
    StyleTransferObjective,
    content_loss,
    layer_style_loss,
    pyramid_style_loss,
    style_loss,
    total_variation_loss,
)
from nstlib.optimize import (  # noqa: E402
    OPTIMIZERS,
    UPDATE_RULES,
    History,
    NonFiniteLossError,
    make_optimizer,
    minimize,
    run_update_rule,
)
from nstlib.reproducibility import set_seed  # noqa: E402
from nstlib.statistics import (  # noqa: E402
    adain,
    batch_norm,
    channel_mean_std,
    color,
    covariance_spectrum,
    energy_kept,
    feature_covariance,
    gram_matrix,
    instance_norm,
    ledoit_wolf_shrinkage,
    shrink_gram,
    wct,
    whiten,
)
from nstlib.transfer import (  # noqa: E402
    DEFAULT_WCT_LAYERS,
    StylizeResult,
    WCTStylizeResult,
    feature_inversion_loss,
    invert_features,
    layer_extractor,
    stylize,
    wct_stylize,
)

__all__ = [
    "CONV_LAYERS", "DEFAULT_CONTENT_LAYERS", "DEFAULT_STYLE_LAYERS", "DEFAULT_WCT_LAYERS",
    "FeatureExtractor", "Features", "History", "ImageError", "LAYER_NAMES", "NonFiniteLossError",
    "OPTIMIZERS", "QUICK", "StyleTransferObjective", "StylizeResult", "WCTStylizeResult",
    "WeightsUnavailableError", "__version__", "adain", "batch_norm", "channel_mean_std", "color",
    "content_loss", "covariance_spectrum", "energy_kept", "feature_covariance",
    "feature_inversion_loss", "gaussian_kernel", "gram_matrix", "image_pyramid", "instance_norm",
    "invert_features", "layer_extractor", "layer_style_loss", "ledoit_wolf_shrinkage",
    "load_image", "load_sample", "measure_receptive_field", "run_update_rule", "UPDATE_RULES",
    "unit_input_gradient", "make_optimizer", "minimize", "pyramid_style_loss",
    "receptive_field", "resize_max_side", "sample_names", "save_image", "set_seed", "shrink_gram",
    "style_loss", "stylize", "total_variation_loss", "wct", "wct_stylize", "whiten",
]
