"""Signals of ``nst stylize`` and ``nst demo``: SIGTERM taken like Ctrl-C, held back while
a result is written, and TensorFlow imported without its start-up log lines.

SIGTERM (``timeout``, a job scheduler, a kernel stop) raises ``Terminated``, a
``KeyboardInterrupt``, in the main thread, so ``minimize`` keeps the current image just as
for Ctrl-C; ``_sigterm_deferred`` holds it back while files are written, so no half file or
temporary file is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

#: Commands during which SIGTERM takes Ctrl-C's path (``Terminated``).
SIGTERM_AS_CTRL_C = {"stylize", "demo"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C (so ``minimize`` keeps the image)."""


class _SigtermState:
    """Whether SIGTERM arrived, and whether raising it is held back (while saving)."""

    received = False
    deferred = False


def _on_sigterm(signum, frame) -> None:
    if _SigtermState.received or _SigtermState.deferred:  # one is enough; let saving finish
        _SigtermState.received = True
        return
    _SigtermState.received = True
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_ctrl_c(enabled: bool = True):
    """Turn SIGTERM into ``Terminated`` for the block (main thread only), then restore."""
    _SigtermState.received = _SigtermState.deferred = False
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _sigterm_deferred(raise_after: bool = False):
    """Hold SIGTERM back while results are written (``_SigtermState.received`` tells).

    With ``raise_after`` (a save in the middle of a run), a SIGTERM that arrived during the
    block is raised when the file is complete, so the run still stops at once but never
    leaves half a file or a temporary file behind.
    """
    already = _SigtermState.received
    _SigtermState.deferred = True
    try:
        yield
    finally:
        _SigtermState.deferred = False
    if raise_after and _SigtermState.received and not already:
        raise Terminated()


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with their C++ start-up log lines silenced.

    TensorFlow's native libraries print oneDNN/CUDA notices straight to file descriptor 2
    while loading, before any Python setting applies (setting TF_CPP_MIN_LOG_LEVEL from
    Python is too late for them). They would break the CLI's one-line errors, so fd 2 is
    pointed at /dev/null for the import only. Python exceptions still propagate. Set
    NSTLIB_TF_VERBOSE=1 to see the lines.
    """
    from nstlib.ablation.worker import tensorflow_import_silenced  # the one fd-2 silencer

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tensorflow_import_silenced():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
