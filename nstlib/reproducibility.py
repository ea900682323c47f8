"""Seeding and the provenance record that travels with every result."""

from __future__ import annotations

import os
import platform
import random
import socket

import numpy as np
import tensorflow as tf


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow, and optionally make TF ops deterministic.

    Args:
        seed: Non-negative integer seed.
        deterministic: Also call ``tf.config.experimental.enable_op_determinism()`` so
            that the same seed and inputs on the same CPU give the same bits.
    """
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    tf.random.set_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def environment_record() -> dict:
    """Versions and machine facts recorded next to every result.

    Returns:
        A JSON-serialisable dict: library, TensorFlow, Keras, NumPy and Python versions,
        host name, processor and the visible accelerators.
    """
    import keras

    from nstlib import __version__

    return {
        "nstlib": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }
