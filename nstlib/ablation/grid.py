"""Grids: declaration, validation, expansion into runs, and run ids.

The settings a grid may give are the inputs "content" and "style" (one image or a list,
blended by ``style_blend``), optionally "style_masks" (one mask file per style), plus every
``StylizeConfig`` setting by flat name (``StylizeConfig.flat_fields()``). Each value is
coerced by its field's type (YAML's ``3e-1`` string -> 0.3, ``none`` -> None, a list of
layer names -> a tuple) and every expanded run is validated (``StylizeConfig.from_flat``)
when the grid loads, so a bad value fails before any run starts, naming the run and key.

Run ids (schema 2). A run's id is the first ``ID_LENGTH`` hex digits of the SHA-1 of its
canonical description, written as compact JSON with sorted keys::

    {"schema": 2, "content": ..., "style": ...,
     "config": {the settings that differ from StylizeConfig's defaults},
     "evaluate": {the evaluation settings that differ from EVALUATE_DEFAULTS}}

("evaluate" is left out when the grid measures no metrics). Only values that differ from a
default are hashed, after coercion, so writing a default explicitly is the same run and
adding a setting with a default never changes an existing id; changing a default does not
change ids either (the run record holds every value).

Legacy ids (schema 1, written before ``StylizeConfig``) hashed every ``stylize`` argument
of that time with its default filled in (``LEGACY_V1_DEFAULTS``, frozen here) plus the
whole evaluate section. Each run's legacy id is computed from its declared settings
alongside the new one, so a results folder written then still resumes (``legacy_run_id``).
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from nstlib.settings import ConfigError, StylizeConfig

GRID_KEYS = ("name", "fixed", "axes", "runs", "evaluate")
#: Settings of a run that are its inputs, not ``StylizeConfig`` fields.
INPUTS = ("content", "style")
#: Inputs a run may give: one mask per style image (paths), as ``stylize(style_masks=...)``.
#: Part of a run's config and id only when given, so ids of grids without masks stay put.
OPTIONAL_INPUTS = ("style_masks",)
#: Defaults of the ``evaluate`` section: the network the metrics are measured with. Fixed
#: (not taken from the loss defaults), so that metrics stay comparable across versions.
EVALUATE_DEFAULTS = {"content_layers": ["block4_conv2"],
                     "style_layers": ["block1_conv1", "block2_conv1", "block3_conv1",
                                      "block4_conv1", "block5_conv1"],
                     "weights": "auto", "pooling": "max", "seed": 0}
ID_LENGTH = 10
#: Version of the run-id scheme (see the module docstring); part of every hashed description.
SCHEMA_VERSION = 2

#: Every ``stylize`` argument a grid could set before ``StylizeConfig`` (content and style
#: had no default), with its default then, as JSON: what schema-1 ids hashed. Frozen.
LEGACY_V1_DEFAULTS = {
    "size": 256, "steps": 300, "optimizer": "adam", "learning_rate": None,
    "content_weight": 1.0, "style_weight": 10.0, "tv_weight": 1.0,
    "content_layers": ["block4_conv2"],
    "style_layers": ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                     "block5_conv1"],
    "style_layer_weights": None, "init": "content", "weights": "auto", "pooling": "max",
    "style_size": None, "content_reduction": "normalized", "style_form": "normalized",
    "tv_kind": "l1", "seed": 0, "deterministic": True, "pyramid_levels": 1,
    "pyramid_level_weights": None, "scales": None, "gram_shrinkage": None,
    "schedule": "constant", "compute_dtype": "float32"}
#: The schema-1 arguments whose string values were read as floats (their annotation
#: mentioned float); all other values were hashed as written.
LEGACY_V1_FLOAT_ARGUMENTS = ("learning_rate", "content_weight", "style_weight", "tv_weight",
                             "style_layer_weights", "pyramid_level_weights")


class GridError(ValueError):
    """A grid that cannot be run; the message is one line naming the problem."""


def setting_fields() -> dict:
    """``StylizeConfig.flat_fields()``: the settings a grid may give besides the inputs."""
    return StylizeConfig.flat_fields()


def canonical_json(config) -> str:
    """Compact JSON with sorted keys: the text a run id hashes."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=True)


def _digest(description) -> str:
    return hashlib.sha1(canonical_json(description).encode("utf-8")).hexdigest()[:ID_LENGTH]


def run_description(config: dict) -> dict:
    """What a run id hashes: inputs, non-default settings and evaluation, schema version.

    Args:
        config: A run's full config (``RunSpec.config``, see ``canonical_config``).
    """
    flat = {k: v for k, v in config.items() if k not in (*INPUTS, *OPTIONAL_INPUTS, "evaluate")}
    described = {"schema": SCHEMA_VERSION, "content": config["content"],
                 "style": config["style"],
                 "config": _plain(StylizeConfig.from_flat(**flat).non_default(), "config")}
    described.update({k: config[k] for k in OPTIONAL_INPUTS if k in config})
    evaluate = config.get("evaluate")
    if evaluate is not None:
        described["evaluate"] = {k: v for k, v in evaluate.items()
                                 if k not in EVALUATE_DEFAULTS or v != EVALUATE_DEFAULTS[k]}
    return described


def run_id(config: dict) -> str:
    """Stable short id of a run's full config (schema 2, see the module docstring)."""
    return _digest(run_description(config))


def _plain(value, where: str):
    """``value`` as plain JSON types (tuples -> lists, NumPy scalars -> Python)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, where) for k, v in value.items()}
    raise GridError(f"{where}: {type(value).__name__} values cannot be part of a grid; use "
                    f"numbers, strings, lists or file paths")


def legacy_run_id(settings: dict, evaluate: dict | None) -> str | None:
    """The schema-1 id the code before ``StylizeConfig`` gave these declared settings.

    Args:
        settings: The run's settings as declared (fixed and overrides, not coerced).
        evaluate: The evaluation settings (``EVALUATE_DEFAULTS`` filled in) or None.

    Returns:
        The id, or None when that code could not have run these settings (a setting it
        did not know, a value it rejected).
    """
    if any(k not in LEGACY_V1_DEFAULTS and k not in INPUTS for k in settings) or any(
            k not in settings for k in INPUTS):
        return None
    config = {}
    try:
        for name in (*INPUTS, *LEGACY_V1_DEFAULTS):
            value = settings.get(name, LEGACY_V1_DEFAULTS.get(name))
            if isinstance(value, str) and name in LEGACY_V1_FLOAT_ARGUMENTS:
                value = float(value)
            config[name] = _plain(value, name)
        config["evaluate"] = None if evaluate is None else _plain(evaluate, "evaluate")
    except (ValueError, GridError):
        return None
    return _digest(config)


def _check_names(settings: dict, where: str, origin: str) -> None:
    valid = [*INPUTS, *setting_fields(), *OPTIONAL_INPUTS]
    for name in settings:
        if name not in valid:
            close = difflib.get_close_matches(str(name), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise GridError(f"{origin}: unknown setting {name!r} in {where}{hint}; valid "
                            f"settings: {', '.join(valid)}")


def _validated(flat: dict) -> StylizeConfig:
    """``StylizeConfig.from_flat(**flat)`` (which coerces each value by its field's type and
    checks them); a ConfigError names the setting at fault."""
    try:
        return StylizeConfig.from_flat(**flat)
    except ConfigError as err:
        message = str(err)
    for name, value in flat.items():  # which setting is wrong on its own?
        try:
            StylizeConfig.from_flat(**{name: value})
        except ConfigError:
            raise ConfigError(message if name in message else f"{name}: {message}") from None
    raise ConfigError(message)  # settings that do not fit together, e.g. steps and scales


def canonical_config(settings: dict, evaluate: dict | None) -> dict:
    """A run's full config: its inputs, every ``StylizeConfig`` setting, ``evaluate``.

    Args:
        settings: Setting name -> value for this run as declared (must include content and
            style); values are coerced by their field's type and checked together.
        evaluate: Evaluation settings (see ``EVALUATE_DEFAULTS``) or None for no metrics.

    Returns:
        JSON-ready dict with sorted keys: "content", "style", every flat setting
        (``StylizeConfig.to_flat``) and "evaluate".

    Raises:
        GridError: content or style missing. ConfigError: a bad value (naming the key).
    """
    for name in INPUTS:
        if name not in settings:
            raise GridError(f"every run needs {name!r} (set it in fixed, axes or runs)")
    flat = _validated({k: v for k, v in settings.items()
                       if k not in (*INPUTS, *OPTIONAL_INPUTS)})
    if settings.get("style_masks") is not None:
        flat.loss.check_masks()
    config = {name: _plain(settings[name], name) for name in (*INPUTS, *OPTIONAL_INPUTS)
              if name in settings}
    config.update(flat.to_flat())
    config["evaluate"] = None if evaluate is None else _plain(evaluate, "evaluate")
    return dict(sorted(config.items()))


def _short_layer(name: str) -> str:
    """"block3_conv1" -> "b3c1" (labels only)."""
    if name.startswith("block") and "_conv" in name:
        block, conv = name[5:].split("_conv")
        return f"b{block}c{conv}"
    return name


def format_value(value) -> str:
    """A swept value as a short label: floats in %g, layer lists as "b1c1+b2c1"."""
    if value is None:
        return "default"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "+".join(_short_layer(str(v)) if isinstance(v, str) else format_value(v)
                        for v in value)
    return str(value)


@dataclass(frozen=True)
class RunSpec:
    """One run of a grid.

    Attributes:
        run_id: Short hash of ``config`` (see ``run_id``); in an ``AblationResult`` of an
            old results folder, the legacy id when the run is stored under that.
        config: Full config (``canonical_config``): inputs, every setting, "evaluate".
        swept: The grid's swept settings (axes and keys of extra runs) -> this run's value.
        legacy_id: The id this run had before ``StylizeConfig`` (``legacy_run_id``), or
            None when it could not have been run then.
    """

    run_id: str
    config: dict
    swept: dict
    legacy_id: str | None = None

    @property
    def label(self) -> str:
        """"optimizer=adam, learning_rate=0.02" (only the swept settings)."""
        return ", ".join(f"{k}={format_value(v)}" for k, v in self.swept.items()) or self.run_id


@dataclass
class Grid:
    """A declared grid of runs (see the module docstring for the YAML form).

    Attributes:
        fixed: Settings shared by every run.
        axes: Setting name -> list of values; all combinations are run.
        runs: Extra runs, each a dict of settings applied over ``fixed``.
        evaluate: Evaluation network settings (``EVALUATE_DEFAULTS`` filled in) or None.
        name: Title of the study.
        base_dir: Folder against which relative image paths are resolved.
    """

    fixed: dict = field(default_factory=dict)
    axes: dict = field(default_factory=dict)
    runs: list = field(default_factory=list)
    evaluate: dict | None = field(default_factory=lambda: dict(EVALUATE_DEFAULTS))
    name: str = "ablation"
    base_dir: Path | None = None

    @property
    def swept_keys(self) -> list[str]:
        """Axis names, then the other settings that extra runs change, in first-seen order."""
        keys = list(self.axes)
        for run in self.runs:
            keys += [k for k in run if k not in keys]
        return keys

    def _declared_runs(self) -> list[dict]:
        """Each run's settings as declared: fixed, then the axes' values or an extra run."""
        settings = [dict(zip(self.axes, values, strict=True))
                    for values in itertools.product(*self.axes.values())] if self.axes else []
        settings += [dict(run) for run in self.runs]
        return [{**self.fixed, **overrides} for overrides in settings or [{}]]

    def _spec(self, number: int, settings: dict) -> RunSpec:
        """The ``RunSpec`` of the ``number``-th declared run (GridError naming it if bad)."""
        try:
            config = canonical_config(settings, self.evaluate)
        except (ConfigError, GridError) as err:
            label = ", ".join(f"{k}={format_value(settings[k])}" for k in self.swept_keys
                              if k in settings)
            where = f"run {number}" + (f" ({label})" if label else "")
            raise GridError(f"{where}: {err}") from None
        return RunSpec(run_id(config), config, {k: config[k] for k in self.swept_keys},
                       legacy_run_id(settings, self.evaluate))

    def expand(self) -> list[RunSpec]:
        """Every run: the product of the axes (first axis slowest), then the extra runs.

        Each run's settings are coerced and validated; runs with identical configs are
        kept once.

        Raises:
            GridError: a run without content or style, or with a bad value (naming the
                run, by number and swept values, and the setting).
        """
        specs, seen = [], set()
        for number, settings in enumerate(self._declared_runs(), start=1):
            spec = self._spec(number, settings)
            if spec.run_id not in seen:
                seen.add(spec.run_id)
                specs.append(spec)
        return specs

    def to_dict(self) -> dict:
        """The declaration as plain data (what ``grid.yaml`` in a results folder holds)."""
        return {"name": self.name, "fixed": self.fixed, "axes": self.axes, "runs": self.runs,
                "evaluate": self.evaluate}


def _mapping(data, key: str, origin: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise GridError(f"{origin}: {key!r} must be a mapping of settings, got "
                        f"{type(value).__name__}")
    return value


def _evaluate_section(data: dict, origin: str) -> dict | None:
    if "evaluate" in data and data["evaluate"] in (None, False):
        return None
    section = _mapping(data, "evaluate", origin)
    unknown = sorted(set(section) - set(EVALUATE_DEFAULTS))
    if unknown:
        raise GridError(f"{origin}: unknown evaluate setting(s) {', '.join(unknown)}; valid: "
                        f"{', '.join(EVALUATE_DEFAULTS)}")
    return {**EVALUATE_DEFAULTS, **section}


def parse_grid(data, origin: str = "grid", base_dir=None) -> Grid:
    """Validate a grid declaration (a dict, e.g. from YAML) and build a ``Grid``.

    Args:
        data: Mapping with keys among "name", "fixed", "axes", "runs", "evaluate".
        origin: Name used in error messages (the file name).
        base_dir: Folder for relative image paths (default: the working directory).

    Raises:
        GridError: unknown keys or settings (with the valid names), axes that are not
            non-empty lists, a setting both fixed and swept, runs lacking content/style.
    """
    if not isinstance(data, dict):
        raise GridError(f"{origin}: a grid must be a mapping with keys {', '.join(GRID_KEYS)}, "
                        f"got {type(data).__name__}")
    unknown = [k for k in data if k not in GRID_KEYS]
    if unknown:
        raise GridError(f"{origin}: unknown key(s) {', '.join(map(repr, unknown))}; a grid has "
                        f"{', '.join(GRID_KEYS)}")
    fixed, axes = _mapping(data, "fixed", origin), _mapping(data, "axes", origin)
    runs = data.get("runs") or []
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise GridError(f"{origin}: 'runs' must be a list of mappings of settings")
    _check_names(fixed, "fixed", origin)
    _check_names(axes, "axes", origin)
    for number, run in enumerate(runs, start=1):
        _check_names(run, f"runs[{number}]", origin)
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise GridError(f"{origin}: axis {name!r} must be a non-empty list of values, got "
                            f"{values!r}")
        if name in fixed:
            raise GridError(f"{origin}: {name!r} is both fixed and an axis")
    grid = Grid(fixed=dict(fixed), axes=dict(axes), runs=[dict(r) for r in runs],
                evaluate=_evaluate_section(data, origin), name=str(data.get("name") or
                                                                    "ablation"),
                base_dir=Path(base_dir) if base_dir is not None else Path.cwd())
    try:
        grid.expand()
    except GridError as err:
        raise GridError(f"{origin}: {err}") from None
    return grid


def load_grid(source, base_dir=None) -> Grid:
    """A ``Grid`` from a YAML file, a dict or a ``Grid``.

    Args:
        source: Path of a YAML grid file, a dict declaration, or a ``Grid``.
        base_dir: Folder for relative image paths (default: the file's folder, or the
            working directory for a dict).

    Raises:
        GridError: missing or unreadable file, invalid YAML, invalid declaration.
    """
    if isinstance(source, Grid):
        return source
    if not isinstance(source, str | os.PathLike):
        return parse_grid(source, "grid", base_dir)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GridError(f"grid file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise GridError(f"cannot read grid file {path}: {err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise GridError(f"{path}: invalid YAML{where}: {problem}") from None
    return parse_grid(data, str(path), base_dir if base_dir is not None else path.parent)


def varying_keys(specs: Sequence[RunSpec]) -> list[str]:
    """The swept settings whose values differ between the given runs."""
    keys = list(specs[0].swept) if specs else []
    return [k for k in keys if len({canonical_json(s.swept[k]) for s in specs}) > 1]


def short_label(spec: RunSpec, keys: Sequence[str]) -> str:
    """"adam, 0.02": the values of ``keys`` only (for legends and panel titles)."""
    return ", ".join(format_value(spec.swept[k]) for k in keys) or spec.run_id
