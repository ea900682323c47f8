"""TensorFlow's Python logger, quieted where its warnings are expected."""

from __future__ import annotations

import contextlib

import tensorflow as tf


@contextlib.contextmanager
def quiet_tensorflow_warnings():
    """TensorFlow's Python logger at ERROR for the block, then as it was.

    Used where retracing is intended: every run traces its own step function (new
    objective, new image shape), and the conv-form measurement traces one forward pass per
    form and size. After a few traces TensorFlow warns "triggered tf.function retracing" on
    stdout, which would fill notebooks and users' output with noise.
    """
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)
