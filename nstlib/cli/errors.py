"""Exit codes of ``nst`` and the error a user causes (reported as one line, exit 2)."""

from __future__ import annotations

import signal

EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
#: 128 + 15, what a shell reports for a process ended by SIGTERM.
EXIT_TERMINATED = 128 + int(signal.SIGTERM)


class CliError(Exception):
    """A user error reported as one line (exit code 2)."""


__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "CliError"]
