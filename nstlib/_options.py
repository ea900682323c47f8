"""Frozen, keyword-only settings objects: fields with help text, coercion by type, checks.

Every configuration dataclass of nstlib (``NetworkConfig``, ``LossConfig``, ``OptimConfig``,
``StylizeConfig``) declares its fields with ``option(default, doc)``. From that one
declaration come the constructor, the validation error messages, the CLI flag and its help
text, the grid-file key and its type coercion, and the key in every run record: a new
setting is one field plus the code that uses it.

Coercion turns what a user typed (a CLI string, a YAML scalar, a list) into the field's
declared type, e.g. ``"3e-1"`` -> 0.3 for a ``float | None`` field, ``"none"`` -> None,
``"a,b"`` or ``["a", "b"]`` -> ``("a", "b")`` for a ``tuple[str, ...]`` field.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Sequence
from typing import Any

from nstlib._checks import check_choice

_NONE_WORDS = {"none", "null"}
_TRUE_WORDS, _FALSE_WORDS = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


class ConfigError(ValueError):
    """A setting with a bad name or value; the message is one line naming the field."""


def option(default, doc: str, *, choices: Sequence | None = None, words: Sequence = ()):
    """A dataclass field with one-line help text (and the allowed values, if a fixed set).

    ``words`` are the texts a field that also takes numbers accepts ("ledoit-wolf"):
    coercion turns any spelling of one (case-insensitive) into the one given here, and
    leaves other texts for the class's ``validate`` to refuse with its own message.
    """
    return dataclasses.field(default=default,
                             metadata={"doc": doc, "choices": choices, "words": tuple(words)})


def _members(hint) -> tuple:
    """The member types of a union hint (``int | None`` -> (int, NoneType)), or (hint,)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _is_tuple(hint) -> bool:
    return typing.get_origin(hint) is tuple


def _scalar(kind, value, name: str):
    """``value`` as one of bool/int/float/str, or ConfigError."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise ConfigError(f"{name} must be text, got {value!r}")
    raise TypeError(f"unsupported option type {kind!r} for {name}")


def _tuple(hint, value, name: str) -> tuple:
    (item, _ellipsis) = typing.get_args(hint)
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, Sequence):
        raise ConfigError(f"{name} must be a list, got {value!r}")
    return tuple(_scalar(item, v, name) for v in value)


def coerce(hint, value, name: str):
    """``value`` converted to the type ``hint`` (see the module docstring), or ConfigError.

    Union members are tried in order: None (for None or "none"), a tuple (for a list or a
    comma-separated string), then the scalar types as declared (``float | str``: a number
    if it parses as one, else the text).
    """
    members = _members(hint)
    if type(None) in members and (value is None or (
            isinstance(value, str) and value.strip().lower() in _NONE_WORDS)):
        return None
    tuples = [m for m in members if _is_tuple(m)]
    scalars = [m for m in members if m is not type(None) and not _is_tuple(m)]
    is_list = isinstance(value, list | tuple) or (isinstance(value, str) and "," in value)
    if tuples and (is_list or not scalars):
        return _tuple(tuples[0], value, name)
    errors = []
    for kind in scalars:
        try:
            return _scalar(kind, value, name)
        except ConfigError as err:
            errors.append(err)
    if value is None:
        raise ConfigError(f"{name} must be set, got None")
    raise errors[-1] if errors else ConfigError(f"{name}: unsupported value {value!r}")


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One setting as the CLI, grid files and records see it.

    Attributes:
        name: Flat name (the ``stylize`` keyword, grid key and record key).
        section: Attribute of ``StylizeConfig`` holding it ("network", "loss", "optim"), or
            None for ``StylizeConfig``'s own fields.
        hint: The declared type.
        default: The default value.
        doc: One-line help text.
        choices: The allowed values when they are a fixed set, else None.
        words: Texts the field accepts besides numbers, in their canonical spelling.
    """

    name: str
    section: str | None
    hint: Any
    default: Any
    doc: str
    choices: tuple | None
    words: tuple = ()

    def coerce(self, value):
        """``value`` converted to this field's type (ConfigError if it cannot be), with a
        word of ``words`` in its canonical spelling."""
        value = coerce(self.hint, value, self.name)
        if isinstance(value, str):
            return next((word for word in self.words if word == value.lower()), value)
        return value


def field_infos(cls, section: str | None = None) -> dict[str, FieldInfo]:
    """``FieldInfo`` of every option field of a settings dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    infos = {}
    for f in dataclasses.fields(cls):
        if "doc" not in f.metadata:
            continue
        choices = f.metadata.get("choices")
        infos[f.name] = FieldInfo(f.name, section, hints[f.name], f.default, f.metadata["doc"],
                                  None if choices is None else tuple(choices),
                                  f.metadata.get("words", ()))
    return infos


class Options:
    """Mix-in for frozen settings dataclasses: coerce every field, then ``validate()``.

    Subclasses are ``@dataclass(frozen=True, kw_only=True)`` with ``option`` fields and
    may define ``validate(self)`` for checks across fields (raise ``ConfigError``).
    """

    def __post_init__(self):
        for name, info in field_infos(type(self)).items():
            value = info.coerce(getattr(self, name))
            if info.choices is not None and value is not None:  # case-insensitive names
                value = check_choice(value.lower() if isinstance(value, str) else value,
                                     info.choices, name, error=ConfigError)
            object.__setattr__(self, name, value)
        self.validate()

    def validate(self) -> None:
        """Checks beyond the type and choices of each field (none by default)."""

    def replace(self, **changes):
        """A copy with some fields changed (validated like the original)."""
        return dataclasses.replace(self, **changes)

    def filled(self, values: dict):
        """A copy whose fields that are None take their value from ``values`` (by name).

        Settings whose default depends on something only known when a run starts (the
        VGG19 weights it ends up with, see ``settings.RECIPES``) are None until then.
        """
        missing = {name: values[name] for name in field_infos(type(self))
                   if name in values and getattr(self, name) is None}
        return dataclasses.replace(self, **missing) if missing else self

    def to_dict(self) -> dict:
        """Field name -> JSON-able value (tuples as lists)."""
        return {name: jsonable(getattr(self, name)) for name in field_infos(type(self))}


def check_finite(value: float | None, name: str, *, minimum: float = 0.0,
                 strict: bool = False, maximum: float | None = None) -> None:
    """ConfigError unless ``value`` is None or a finite number in the allowed range."""
    if value is None:
        return
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    if value < minimum or (strict and value == minimum):
        relation = "greater than" if strict else "at least"
        raise ConfigError(f"{name} must be {relation} {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum:g}, got {value:g}")


def jsonable(value):
    """Tuples (also nested) as lists, so records and hashes see plain JSON values."""
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    return value
