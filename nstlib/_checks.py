"""Argument checks shared by every module: "must be one of" in one place.

This private module owns the check that a value is one of a fixed set of choices and the
one-line message that names the argument, the allowed values and what was given
("pooling must be one of max, avg, got 'min'"), so that every module reports a bad
choice the same way. It imports nothing from nstlib and no notebook teaches it.
"""

from __future__ import annotations

from collections.abc import Collection


def check_choice(value, allowed: Collection, what: str, *, error: type[Exception] = ValueError,
                 unknown: bool = False):
    """``value`` unchanged if it is one of ``allowed``, else ``error`` with a one-line message.

    Args:
        value: The value to check (compared with ``in``, so exactly).
        allowed: The choices (a tuple, or a dict whose keys are the choices).
        what: Name of the argument in the message ("normalize", "TV kind").
        error: Exception class raised (``ValueError`` or a subclass such as ``ImageError``).
        unknown: Phrase the message for names ("unknown optimizer 'x'; choose one of a, b")
            instead of options ("normalize must be one of a, b, got 'x'").

    Returns:
        ``value``.
    """
    if value in allowed:
        return value
    choices = ", ".join(map(str, allowed))
    if unknown:
        raise error(f"unknown {what} {value!r}; choose one of {choices}")
    raise error(f"{what} must be one of {choices}, got {value!r}")
