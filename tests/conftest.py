"""Settings shared by every test module.

``conv_impl="auto"`` (the default) times both convolution forms once per machine and
caches the choice under ``~/.cache/nstlib``. The tests force one form instead, so that
they neither write to the user's cache nor spend seconds measuring, and so that results
compared bit for bit come from the same form in every process: without this, worker
processes measuring at the same time on a fresh machine could choose differently.
"transposed" is what "auto" meant on CPUs before it measured (the stored pre-redesign
results were made with it); set ``NSTLIB_CONV_IMPL=standard`` to test the other form.
tests/test_conv_choice.py unsets it to test the measurement itself.
"""

import os

os.environ.setdefault("NSTLIB_CONV_IMPL", "transposed")

import pytest  # noqa: E402
from references import numpy_gram  # noqa: E402


@pytest.fixture
def np_gram():
    """The NumPy Gram reference ``numpy_gram`` (a fixture, so test modules share one)."""
    return numpy_gram


@pytest.fixture
def clean_extractor_cache():
    """Empty stylize's extractor cache before and after the test (rebuilt networks)."""
    from nstlib import transfer

    transfer.cached_extractor.cache_clear()
    yield
    transfer.cached_extractor.cache_clear()


@pytest.fixture
def tiny_config():
    """A StylizeConfig that runs in well under a second: 32 px, 2 steps, shallow layers."""
    from nstlib.settings import StylizeConfig

    return StylizeConfig.from_flat(size=32, steps=2, weights="random",
                                   content_layers=("block2_conv1",),
                                   style_layers=("block1_conv1", "block2_conv1"))


@pytest.fixture(scope="module")
def block3_avg():
    """Random-weight extractor up to block3_conv1 with average pooling (seed 0)."""
    from nstlib.features import FeatureExtractor

    return FeatureExtractor(content_layers=(), style_layers=("block3_conv1",), weights="random",
                            pooling="avg", seed=0)


@pytest.fixture(scope="session")
def bfloat16_convolutions():
    """Skip unless TensorFlow can run a bfloat16 convolution on this machine.

    TensorFlow sends bfloat16 convolutions to oneDNN when the CPU reports AVX-512; with
    oneDNN capped below that (``ONEDNN_MAX_CPU_ISA=AVX2``, ``make test-avx2``) oneDNN has
    no bfloat16 kernel and the op fails. A real AVX2 CPU is not affected: TensorFlow then
    keeps the op on its own (Eigen) kernels.
    """
    import tensorflow as tf

    try:
        tf.nn.conv2d(tf.zeros((1, 4, 4, 3), tf.bfloat16), tf.zeros((3, 3, 3, 4), tf.bfloat16),
                     strides=1, padding="SAME")
    except tf.errors.OpError as err:
        pytest.skip("no bfloat16 convolution on this machine (ONEDNN_MAX_CPU_ISA="
                    f"{os.environ.get('ONEDNN_MAX_CPU_ISA', '')!r}): "
                    f"{str(err).strip().splitlines()[0][:120]}")
