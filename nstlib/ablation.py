"""Ablations: grids of ``stylize`` runs, locally or on a Dask cluster, with a results table.

A grid is a small YAML file (or the same structure as a dict)::

    name: optimizers                  # optional, used in titles
    fixed:                            # settings of every run (any ``stylize`` argument)
      content: chelsea
      style: brushstrokes
      size: 128
      steps: 100
    axes:                             # values combine (product), first axis slowest
      optimizer: [adam, rmsprop]
      learning_rate: [0.005, 0.02]
    runs:                             # optional extra runs: settings over ``fixed``
      - {optimizer: lbfgs}
    evaluate:                         # optional: the network that measures the metrics
      style_layers: [block1_conv1, block2_conv1]

Every run's canonical config holds every ``stylize`` argument (defaults filled in) plus the
evaluation settings; its id is a short hash of that config as JSON with sorted keys, so the
same settings always get the same id, on any machine. Runs go to worker processes on this
machine (``LocalBackend``) or to a Dask cluster (``DaskBackend``); each finished run is
written at once (``runs/<id>.png`` and ``runs/<id>.json``, atomically) and re-running a grid
skips the runs already complete. ``run_grid`` collects one row per run into
``results.csv`` (and ``results.parquet`` when pyarrow is installed); ``write_report``
adds figures and a Markdown table.

Relative image paths in a grid file are resolved against the file's folder; sample names
(``nstlib.sample_names()``) work as they do in ``stylize``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import difflib
import hashlib
import inspect
import io
import itertools
import json
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from nstlib.features import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS
from nstlib.transfer import stylize, write_json

GRID_KEYS = ("name", "fixed", "axes", "runs", "evaluate")
#: ``stylize`` arguments a grid cannot set: they do not describe the result.
NOT_SETTINGS = ("callbacks", "progress")
#: Defaults of the ``evaluate`` section: the network the metrics are measured with.
EVALUATE_DEFAULTS = {"content_layers": list(DEFAULT_CONTENT_LAYERS),
                     "style_layers": list(DEFAULT_STYLE_LAYERS), "weights": "auto",
                     "pooling": "max", "seed": 0}
RUNS_DIR, GRID_FILE, TABLE_FILE = "runs", "grid.yaml", "results.csv"
ID_LENGTH = 10
COMPLETED, FAILED, INTERRUPTED, PENDING = "completed", "failed", "interrupted", "pending"


class GridError(ValueError):
    """A grid that cannot be run; the message is one line naming the problem."""


# ============================================================================================
# Grids: declaration, validation, expansion into runs with stable ids
# ============================================================================================


def stylize_parameters() -> dict[str, inspect.Parameter]:
    """The ``stylize`` arguments a grid may set (all but callbacks and progress)."""
    params = inspect.signature(stylize).parameters
    return {name: p for name, p in params.items() if name not in NOT_SETTINGS}


def canonical_json(config: dict) -> str:
    """Compact JSON with sorted keys: the text a run id hashes."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=True)


def run_id(config: dict) -> str:
    """Stable short id of a canonical run config: first hex digits of its SHA-1."""
    return hashlib.sha1(canonical_json(config).encode("utf-8")).hexdigest()[:ID_LENGTH]


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


def _coerce(name: str, value, parameter: inspect.Parameter):
    """YAML reads ``1e-2`` as a string; turn such strings into floats for float arguments."""
    if isinstance(value, str) and "float" in str(parameter.annotation):
        try:
            return float(value)
        except ValueError:
            raise GridError(f"{name} must be a number, got {value!r}") from None
    return value


def _check_names(settings: dict, where: str, origin: str) -> None:
    valid = stylize_parameters()
    for name in settings:
        if name not in valid:
            close = difflib.get_close_matches(str(name), list(valid), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise GridError(f"{origin}: unknown setting {name!r} in {where}{hint}; stylize "
                            f"accepts: {', '.join(valid)}")


def canonical_config(settings: dict, evaluate: dict | None) -> dict:
    """A run's full config: every ``stylize`` argument (defaults filled in) + ``evaluate``.

    Args:
        settings: Argument name -> value for this run (must include content and style).
        evaluate: Evaluation settings (see ``EVALUATE_DEFAULTS``) or None for no metrics.

    Returns:
        JSON-ready dict with sorted keys.
    """
    config = {}
    for name, parameter in stylize_parameters().items():
        if name in settings:
            value = _coerce(name, settings[name], parameter)
        elif parameter.default is inspect.Parameter.empty:
            raise GridError(f"every run needs {name!r} (set it in fixed, axes or runs)")
        else:
            value = parameter.default
        config[name] = _plain(value, name)
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
        run_id: Short hash of ``config`` (see ``run_id``).
        config: Canonical config: every ``stylize`` argument plus "evaluate".
        swept: The grid's swept settings (axes and keys of extra runs) -> this run's value.
    """

    run_id: str
    config: dict
    swept: dict

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

    def expand(self) -> list[RunSpec]:
        """Every run: the product of the axes (first axis slowest), then the extra runs.

        Runs with identical configs are kept once.
        """
        settings = [dict(zip(self.axes, values, strict=True))
                    for values in itertools.product(*self.axes.values())] if self.axes else []
        settings += [dict(run) for run in self.runs]
        if not settings:
            settings = [{}]
        specs, seen = [], set()
        for overrides in settings:
            config = canonical_config({**self.fixed, **overrides}, self.evaluate)
            spec = RunSpec(run_id(config), config, {k: config[k] for k in self.swept_keys})
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


# ============================================================================================
# One run, in a worker: stylize, measure, record
# ============================================================================================


def limit_threads(threads: int | None) -> None:
    """Give this process's TensorFlow ``threads`` intra-op threads and one inter-op thread.

    Must run before the first TF op of the process; later calls are ignored (TF cannot
    change its thread pools once they exist).
    """
    if not threads:
        return
    for variable in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[variable] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _source(value, base_dir: str | None):
    """An image argument: a relative path that exists under ``base_dir`` becomes that path."""
    if isinstance(value, str) and base_dir and not os.path.isabs(value):
        candidate = Path(base_dir) / value
        if candidate.exists():
            return str(candidate)
    return value


def _evaluation(config: dict, image, base_dir: str | None) -> dict:
    """Metrics of a finished image with the grid's evaluation network."""
    from nstlib import images, metrics
    from nstlib.transfer import cached_extractor

    spec = config["evaluate"]
    extractor = cached_extractor(tuple(spec["content_layers"]), tuple(spec["style_layers"]),
                                 spec["weights"], spec["pooling"], int(spec["seed"]))
    content = images.load_image(_source(config["content"], base_dir))
    style = images.load_image(_source(config["style"], base_dir))
    style = images.resize_max_side(style, int(config["style_size"] or max(image.shape[1:3])))
    values = metrics.evaluate(extractor, image, content, style)
    return {**values, "weights_source": extractor.weights_source}


def _completed_record(config: dict, base_dir: str | None) -> tuple[dict, bytes]:
    """Run ``stylize`` with ``config`` and measure the result: (record, PNG bytes)."""
    from nstlib import images, metrics

    kwargs = {k: v for k, v in config.items() if k != "evaluate"}
    kwargs["content"] = _source(kwargs["content"], base_dir)
    kwargs["style"] = _source(kwargs["style"], base_dir)
    result = stylize(**kwargs, progress=False)
    record = result.record()
    record.update(content=config["content"], style=config["style"],
                  optimizer_status=record["status"],
                  status=INTERRUPTED if record["status"] == "interrupted" else COMPLETED,
                  error=None)
    measured = metrics.timing(result.history["seconds"])
    if config["evaluate"] is not None:
        evaluation = _evaluation(config, result.image, base_dir)
        record["evaluation_weights_source"] = evaluation.pop("weights_source")
        measured.update(evaluation)
    record["metrics"] = measured
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(images.to_uint8(result.image)).save(buffer, format="PNG")
    return record, buffer.getvalue()


def _failed_record(config: dict, error: BaseException) -> dict:
    """The record of a run that raised: its error and whatever history it had."""
    from nstlib.reproducibility import environment_record

    history = getattr(error, "history", None)
    return {"status": FAILED, "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(limit=-3),
            "history": history.to_dict() if history is not None else {},
            "final": history.final if history is not None else {},
            "seed": config.get("seed"), "environment": environment_record()}


def execute_run(config: dict, out_dir: str | None = None, base_dir: str | None = None,
                threads: int | None = None) -> dict:
    """Run one grid point in this process and return (and optionally save) its record.

    This is the function backends send to workers: a plain module-level function of
    JSON-ready arguments, so TensorFlow is imported and used in the worker. A run that
    raises (non-finite loss, unknown layer name, unreadable image...) is recorded as
    failed, never raised.

    Args:
        config: Canonical run config (``RunSpec.config``).
        out_dir: Results folder to save into (None: only return the payload).
        base_dir: Folder for relative image paths.
        threads: TF intra-op threads for this process (see ``limit_threads``).

    Returns:
        {"record": the JSON record, "png": the image as PNG bytes or None}.
    """
    limit_threads(threads)
    started = time.perf_counter()
    log, png = io.StringIO(), None
    try:
        # Keras' downloader prints to stdout, nstlib's weights notice to stderr: both belong
        # to the run's record, not to the terminal of whoever runs the grid.
        with contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
            record, png = _completed_record(config, base_dir)
    except Exception as err:  # noqa: BLE001 - a failed run is recorded, not raised
        record = _failed_record(config, err)
    record.update(run_id=run_id(config), config=config, log=log.getvalue().strip(),
                  host=record["environment"]["host"], image=f"{run_id(config)}.png",
                  run_seconds=time.perf_counter() - started)
    payload = {"record": record, "png": png}
    if out_dir is not None:
        with contextlib.suppress(OSError):  # e.g. a remote worker without the folder
            persist(payload, out_dir)
    return payload


# ============================================================================================
# Results folder: atomic writes, completeness, the table
# ============================================================================================


def _write_atomic(data: bytes, path: Path) -> Path:
    """Write bytes to ``path`` via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def record_path(out_dir, rid: str) -> Path:
    """``OUT/runs/<id>.json``."""
    return Path(out_dir) / RUNS_DIR / f"{rid}.json"


def image_path(out_dir, rid: str) -> Path:
    """``OUT/runs/<id>.png``."""
    return Path(out_dir) / RUNS_DIR / f"{rid}.png"


def read_record(out_dir, rid: str) -> dict | None:
    """A run's record, or None when it is missing or unreadable."""
    try:
        return json.loads(record_path(out_dir, rid).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(out_dir, rid: str) -> bool:
    """True when the run's record says "completed" and its image exists."""
    record = read_record(out_dir, rid)
    return (record is not None and record.get("status") == COMPLETED
            and record.get("run_id") == rid and image_path(out_dir, rid).is_file())


def persist(payload: dict, out_dir) -> None:
    """Write a run's image (if any) and then its record, each atomically.

    The record goes last, so a record that says "completed" always has its image.
    """
    record = payload["record"]
    rid = record["run_id"]
    if payload.get("png") is not None:
        _write_atomic(payload["png"], image_path(out_dir, rid))
    write_json(record, record_path(out_dir, rid))


TABLE_HEAD = ("run_id",)
TABLE_TAIL = ("status", "weights_source", "final_total", "final_content", "final_style",
              "final_tv", "steps_done", "ssim", "content_distance", "style_distance")
TABLE_END = ("seconds", "startup_seconds", "median_step_seconds", "wall_seconds", "host",
             "image", "error")


def table_row(spec: RunSpec, record: dict | None) -> dict:
    """One results-table row: id, swept settings, outcome, final losses, metrics, time."""
    row = {"run_id": spec.run_id, **spec.swept}
    if record is None:
        return {**row, "status": PENDING}
    final, measured = record.get("final") or {}, dict(record.get("metrics") or {})
    row.update(status=record.get("status"), weights_source=record.get("weights_source"),
               **{f"final_{k}": final.get(k) for k in ("total", "content", "style", "tv")},
               steps_done=final.get("step"))
    row.update(measured)
    row.update(wall_seconds=record.get("wall_seconds"), host=record.get("host"),
               image=record.get("image") if record.get("status") == COMPLETED else None,
               error=record.get("error"))
    return row


def _columns(rows: Sequence[dict], swept: Sequence[str]) -> list[str]:
    """Column order: id, swept settings, outcome and losses, metrics (per layer), time."""
    seen = list(dict.fromkeys(k for row in rows for k in row))
    first = [k for k in (*TABLE_HEAD, *swept, *TABLE_TAIL) if k in seen]
    last = [k for k in TABLE_END if k in seen and k not in first]
    return first + sorted(k for k in seen if k not in first and k not in last) + last


def varying_keys(specs: Sequence[RunSpec]) -> list[str]:
    """The swept settings whose values differ between the given runs."""
    keys = list(specs[0].swept) if specs else []
    return [k for k in keys if len({canonical_json(s.swept[k]) for s in specs}) > 1]


def short_label(spec: RunSpec, keys: Sequence[str]) -> str:
    """"adam, 0.02": the values of ``keys`` only (for legends and panel titles)."""
    return ", ".join(format_value(spec.swept[k]) for k in keys) or spec.run_id


def _cell(value):
    """CSV/Parquet cell: lists and dicts as JSON text, None as empty."""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def write_table(rows: Sequence[dict], out_dir, swept: Sequence[str] = ()) -> list[Path]:
    """Write ``results.csv`` (always) and ``results.parquet`` (when pyarrow imports).

    Returns:
        The paths written.
    """
    columns = _columns(rows, swept)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else _cell(row.get(k)) for k in columns})
    paths = [_write_atomic(buffer.getvalue().encode("utf-8"), Path(out_dir) / TABLE_FILE)]
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError:
        return paths
    frame = pd.DataFrame([{k: _cell(row.get(k)) for k in columns} for row in rows],
                         columns=columns)
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False)
    paths.append(_write_atomic(parquet.getvalue(), Path(out_dir) / "results.parquet"))
    return paths


def read_table(out_dir):
    """``results.csv`` of a results folder as a pandas DataFrame (needs pandas)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("read_table needs pandas: pip install 'nstlib[dask]'") from None
    return pd.read_csv(Path(out_dir) / TABLE_FILE)


@dataclass
class AblationResult:
    """A grid's runs and where their results are.

    Attributes:
        grid: The grid.
        specs: Its runs, in grid order.
        out_dir: The results folder.
        rows: One table row per run (``table_row``), in grid order.
        executed: Ids of the runs executed by this call (not skipped).
        skipped: Ids of the runs that were already complete.
        table_paths: ``results.csv`` (and ``results.parquet``).
    """

    grid: Grid
    specs: list
    out_dir: Path
    rows: list
    executed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    table_paths: list = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        """Ids of the runs whose record says "failed"."""
        return [row["run_id"] for row in self.rows if row["status"] == FAILED]

    def record(self, rid: str) -> dict | None:
        """The JSON record of one run (None if it has none yet)."""
        return read_record(self.out_dir, rid)

    def dataframe(self):
        """The rows as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=_columns(self.rows, self.grid.swept_keys))


def collect(grid: Grid, out_dir) -> AblationResult:
    """Read every run's record from a results folder and write the table."""
    specs = grid.expand()
    rows = [table_row(spec, read_record(out_dir, spec.run_id)) for spec in specs]
    paths = write_table(rows, out_dir, grid.swept_keys)
    return AblationResult(grid, specs, Path(out_dir), rows, table_paths=paths)


def save_grid(grid: Grid, out_dir) -> Path:
    """Write the grid declaration as ``OUT/grid.yaml`` (with its base folder)."""
    data = {**grid.to_dict(), "base_dir": str(grid.base_dir) if grid.base_dir else None}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return _write_atomic(text.encode("utf-8"), Path(out_dir) / GRID_FILE)


def load_results(out_dir) -> AblationResult:
    """The grid and records of a results folder written by ``run_grid``.

    Raises:
        GridError: the folder has no ``grid.yaml``.
    """
    path = Path(out_dir) / GRID_FILE
    if not path.is_file():
        raise GridError(f"{out_dir} is not a results folder (no {GRID_FILE}); run "
                        f"`nst ablate GRID.yaml -o {out_dir}` first")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    base_dir = data.pop("base_dir", None)
    return collect(parse_grid(data, str(path), base_dir), out_dir)


# ============================================================================================
# Backends: worker processes on this machine, or a Dask cluster
# ============================================================================================


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _init_local_worker(threads: int) -> None:
    """Worker-process initializer: thread limits before any TF op; Ctrl-C left to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_threads(threads)


class LocalBackend:
    """Runs on worker processes of this machine (multiprocessing "spawn").

    Each worker imports TensorFlow itself and is limited to ``threads`` intra-op threads,
    so that workers x threads does not exceed the machine's cores. Use it as a context
    manager to reuse the workers (and their imported TensorFlow) for several grids.

    Args:
        workers: Number of processes (default: the available CPUs).
        threads: TF intra-op threads per process (default: CPUs // workers, at least 1).
    """

    def __init__(self, workers: int | None = None, threads: int | None = None):
        cpus = available_cpus()
        self.workers = int(workers or cpus)
        self.threads = int(threads or max(1, cpus // self.workers))
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None

    @property
    def description(self) -> str:
        return f"{self.workers} local process(es) x {self.threads} thread(s)"

    def submit(self, config: dict, out_dir, base_dir) -> concurrent.futures.Future:
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_local_worker, initargs=(self.threads,))
        return self._executor.submit(execute_run, config, str(out_dir), base_dir, None)

    def as_completed(self, futures: Iterable) -> Iterator:
        return concurrent.futures.as_completed(list(futures))

    def cancel(self, futures: Iterable) -> None:
        """Stop at once: drop queued runs and end the worker processes."""
        if self._executor is None:
            return
        # ProcessPoolExecutor has no public way to stop running tasks (3.14 adds
        # terminate_workers); its process table is stable across 3.8-3.13.
        for process in list(getattr(self._executor, "_processes", {}).values()):
            process.terminate()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DaskBackend:
    """Runs on a Dask distributed cluster: an existing one, or a ``LocalCluster`` started here.

    Args:
        scheduler: "local-cluster" (start ``LocalCluster(n_workers=workers,
            threads_per_worker=1, processes=True)``), a scheduler address such as
            "tcp://10.0.0.5:8786", or a ``distributed.Client``.
        workers: Worker processes of a local cluster (default: the available CPUs).
        threads: TF intra-op threads per worker process (default for a local cluster:
            CPUs // workers; for an existing cluster: TensorFlow's own choice).

    Results are sent back to this process and written here, so workers of a remote
    cluster need the images (sample names always work) but not the results folder.
    """

    def __init__(self, scheduler="local-cluster", workers: int | None = None,
                 threads: int | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ImportError("the Dask backend needs dask[distributed]: pip install "
                              "'nstlib[dask]'") from None
        self.cluster, self.threads, self._owns_client = None, threads, True
        if isinstance(scheduler, str) and scheduler == "local-cluster":
            import logging

            n = int(workers or available_cpus())
            self.threads = int(threads or max(1, available_cpus() // n))
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        elif isinstance(scheduler, str):
            self.client = Client(scheduler, timeout="10s")
        else:
            self.client, self._owns_client = scheduler, False

    @property
    def description(self) -> str:
        where = "local cluster" if self.cluster is not None else self.client.scheduler.address
        return f"Dask ({where}, {len(self.client.scheduler_info()['workers'])} worker(s))"

    def submit(self, config: dict, out_dir, base_dir):
        return self.client.submit(execute_run, config, None, base_dir, self.threads,
                                  pure=False, key=f"nst-run-{run_id(config)}-{time.time_ns()}")

    def as_completed(self, futures: Iterable) -> Iterator:
        from distributed import as_completed

        return as_completed(list(futures))

    def cancel(self, futures: Iterable) -> None:
        self.client.cancel(list(futures))

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> DaskBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_scheduler(scheduler) -> None:
    """Reject a scheduler argument that is neither None, "local-cluster", an address nor a
    client (before any folder is created or process started)."""
    if isinstance(scheduler, str) and scheduler != "local-cluster" and ":" not in scheduler:
        raise GridError(f"scheduler must be 'local-cluster' or an address like "
                        f"tcp://HOST:PORT, got {scheduler!r}")


def make_backend(workers: int | None = None, scheduler=None, n_runs: int | None = None):
    """The backend for ``run_grid``'s arguments.

    Args:
        workers: Processes (local backend or local cluster); default min(CPUs, runs).
        scheduler: None (local processes), "local-cluster", an address or a Client.
        n_runs: Number of runs to execute (caps the default number of workers).
    """
    if workers is None:
        workers = max(1, min(available_cpus(), n_runs or available_cpus()))
    if scheduler is None:
        return LocalBackend(workers)
    check_scheduler(scheduler)
    return DaskBackend(scheduler, workers)


# ============================================================================================
# Running a grid
# ============================================================================================


def _lost_run(spec: RunSpec, error: BaseException) -> dict:
    """Payload for a run whose worker died or could not be reached."""
    from nstlib.reproducibility import environment_record

    environment = environment_record()
    record = {"run_id": spec.run_id, "config": spec.config, "status": FAILED,
              "error": f"worker lost: {type(error).__name__}: {error}", "history": {},
              "final": {}, "seed": spec.config.get("seed"), "environment": environment,
              "host": None, "image": f"{spec.run_id}.png"}
    return {"record": record, "png": None}


def _execute(backend, specs: Sequence[RunSpec], out_dir: Path, base_dir, bar) -> list[str]:
    """Submit every run, write each result as it arrives; returns the executed ids."""
    futures, done, failed = {}, [], 0
    try:
        for spec in specs:
            futures[backend.submit(spec.config, out_dir, base_dir)] = spec
        for future in backend.as_completed(futures):
            spec = futures[future]
            try:
                payload = future.result()
            except Exception as err:  # noqa: BLE001 - a lost worker fails only its run
                payload = _lost_run(spec, err)
            if not is_complete(out_dir, spec.run_id):
                persist(payload, out_dir)
            done.append(spec.run_id)
            failed += payload["record"]["status"] != COMPLETED
            bar.update(1)
            if failed:
                bar.set_postfix_str(f"{failed} failed")
    except BaseException:
        backend.cancel(futures)
        raise
    return done


def run_grid(grid, out_dir, *, workers: int | None = None, scheduler=None, backend=None,
             progress: bool = True) -> AblationResult:
    """Run every incomplete run of a grid and write the results table.

    Args:
        grid: A ``Grid``, a dict declaration or the path of a YAML grid file.
        out_dir: Results folder: ``grid.yaml``, ``runs/<id>.{png,json}``, ``results.csv``.
        workers: Worker processes (default min(available CPUs, runs to execute)).
        scheduler: None for local processes; "local-cluster" for a Dask ``LocalCluster``
            started (and closed) here; an address "tcp://HOST:PORT" or a
            ``distributed.Client`` for an existing cluster.
        backend: An open ``LocalBackend`` or ``DaskBackend`` to use (and not close)
            instead of ``workers``/``scheduler``.
        progress: Show a progress bar over runs on stderr.

    Returns:
        ``AblationResult`` with one row per run in grid order. Failed runs are rows with
        status "failed" and their error; they are retried by the next call.

    Raises:
        GridError: invalid grid. KeyboardInterrupt: after cancelling the queued runs;
            every run finished before it is on disk, and the table is written.
    """
    from tqdm.auto import tqdm

    grid = load_grid(grid)
    check_scheduler(scheduler)
    out_dir = Path(out_dir)
    specs = grid.expand()
    (out_dir / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    save_grid(grid, out_dir)
    pending = [s for s in specs if not is_complete(out_dir, s.run_id)]
    skipped = [s.run_id for s in specs if s not in pending]
    executed: list[str] = []
    owned = backend is None and bool(pending)
    bar = tqdm(total=len(specs), initial=len(skipped), desc=f"ablation {grid.name}",
               unit="run", file=sys.stderr, disable=not progress, leave=False)
    try:
        if owned:
            backend = make_backend(workers, scheduler, len(pending))
        if pending:
            base_dir = None if grid.base_dir is None else str(grid.base_dir)
            executed = _execute(backend, pending, out_dir, base_dir, bar)
    finally:
        bar.close()
        if owned and backend is not None:
            backend.close()
        result = collect(grid, out_dir)
    result.executed, result.skipped = executed, skipped
    return result


def summary_line(result: AblationResult) -> str:
    """One line: runs completed / failed / skipped and where the table is."""
    statuses = [row["status"] for row in result.rows]
    parts = [f"{statuses.count(COMPLETED)} completed"]
    if statuses.count(FAILED):
        parts.append(f"{statuses.count(FAILED)} failed")
    if len(result.skipped):
        parts.append(f"{len(result.skipped)} already complete")
    return (f"{len(result.rows)} runs ({', '.join(parts)}); table: "
            f"{', '.join(str(p) for p in result.table_paths)}")


# ============================================================================================
# Report: image grid, metric plots, Markdown table
# ============================================================================================


def _label(key: str, value) -> str:
    return f"{key} = {format_value(value)}"


def grid_layout(result: AblationResult) -> tuple[list, list[str]]:
    """Panels of the image grid: columns are the last axis, rows the other axes' combinations.

    Returns:
        (rows, column titles); each row is (row label, [spec or None per column],
        per-panel titles or None). Extra runs fill further rows with their own titles.
    """
    grid = result.grid
    by_id = {spec.run_id: spec for spec in result.specs}
    axes, rows, columns, placed = list(grid.axes), [], [], set()
    if axes:
        last = axes[-1]
        columns = [_label(last, v) for v in grid.axes[last]]
        for values in itertools.product(*(grid.axes[a] for a in axes[:-1])):
            cells = []
            for value in grid.axes[last]:
                setting = dict(zip(axes, (*values, value), strict=True))
                rid = run_id(canonical_config({**grid.fixed, **setting}, grid.evaluate))
                cells.append(by_id.get(rid))
                placed.add(rid)
            label = "\n".join(_label(a, v) for a, v in zip(axes[:-1], values, strict=True))
            rows.append((label, cells, None))
    extra = [spec for spec in result.specs if spec.run_id not in placed]
    width = max(1, len(columns) or min(4, len(extra)))
    for start in range(0, len(extra), width):
        chunk = extra[start:start + width]
        titles = [", ".join(_label(k, s.swept[k]) for k in varying_keys(result.specs)
                            if k not in grid.axes) or s.label for s in chunk]
        rows.append(("extra runs" if axes else "", chunk + [None] * (width - len(chunk)),
                     titles + [""] * (width - len(chunk))))
    return rows, columns


def _panel_text(row: dict) -> str:
    if row["status"] != COMPLETED:
        return row["status"]
    return f"loss {row['final_total']:.3g}, {row.get('wall_seconds') or 0:.0f} s"


def plot_image_grid(result: AblationResult, panel_size: float = 2.6):
    """The results as an image grid labelled with the swept values.

    Returns:
        A matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    rows, columns = grid_layout(result)
    by_id = {row["run_id"]: row for row in result.rows}
    n_cols = max(len(cells) for _, cells, _ in rows)
    done = [image_path(result.out_dir, r["run_id"]) for r in result.rows
            if r["status"] == COMPLETED]
    aspect = 1.0
    if done and done[0].is_file():
        width, height = Image.open(done[0]).size
        aspect = min(2.0, max(0.5, height / width))
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(
        panel_size * n_cols + 1.2, (panel_size * aspect + 0.7) * len(rows) + 0.8),
        squeeze=False)
    for r, (row_label, cells, titles) in enumerate(rows):
        for c in range(n_cols):
            ax, spec = axes[r][c], cells[c] if c < len(cells) else None
            ax.set_xticks([])
            ax.set_yticks([])
            if spec is None:
                ax.axis("off")
                continue
            row = by_id[spec.run_id]
            path = image_path(result.out_dir, spec.run_id)
            if row["status"] == COMPLETED and path.is_file():
                ax.imshow(np.asarray(Image.open(path)))
            else:
                ax.text(0.5, 0.5, f"{row['status']}\n{(row.get('error') or '')[:60]}",
                        ha="center", va="center", wrap=True, fontsize=8, color="firebrick")
            ax.set_xlabel(_panel_text(row), fontsize=8)
            if titles:
                ax.set_title(titles[c], fontsize=8)
            elif r == 0 and columns:
                ax.set_title(columns[c], fontsize=9)
            if c == 0 and row_label:
                ax.set_ylabel(row_label, fontsize=9)
    weights = sorted({str(row.get("weights_source")) for row in result.rows
                      if row["status"] == COMPLETED}) or ["none"]
    fig.suptitle(f"{result.grid.name}: results ({', '.join(weights)} VGG19 weights)")
    fig.tight_layout()
    return fig


def plot_metrics(result: AblationResult):
    """Final loss per run, total loss against wall-clock time, and the style/content trade-off.

    Returns:
        A matplotlib Figure with three panels.
    """
    import matplotlib.pyplot as plt

    fig, (ax_bar, ax_time, ax_trade) = plt.subplots(1, 3, figsize=(17, 4.8))
    positions = np.arange(len(result.rows))
    finals = [row.get("final_total") if row["status"] == COMPLETED else np.nan
              for row in result.rows]
    ax_bar.bar(positions, finals, color="steelblue")
    ax_bar.set_xticks(positions, [f"#{i + 1}" for i in positions])
    for i, row in enumerate(result.rows):
        if row["status"] != COMPLETED:
            ax_bar.annotate(row["status"], (i, 0), xycoords=("data", "axes fraction"),
                            xytext=(0, 4), textcoords="offset points", rotation=90,
                            ha="center", va="bottom", color="firebrick", fontsize=8)
    ax_bar.set_yscale("log")
    ax_bar.set_xlabel("run (# as in the table)")
    ax_bar.set_ylabel("final total loss (dimensionless, log scale)")
    ax_bar.set_title("Final loss per run")
    plot_loss_vs_time(result, ax=ax_time)
    _plot_tradeoff(result, ax_trade)
    fig.suptitle(f"{result.grid.name}: metrics")
    fig.tight_layout()
    return fig


def plot_loss_vs_time(result: AblationResult, ax=None):
    """Total loss of every completed run against wall-clock seconds.

    Returns:
        The matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.5))
    keys = varying_keys(result.specs)
    for i, (spec, row) in enumerate(zip(result.specs, result.rows, strict=True)):
        record = result.record(spec.run_id) if row["status"] == COMPLETED else None
        history = (record or {}).get("history") or {}
        if history.get("seconds"):
            ax.plot(history["seconds"], history["total"],
                    label=f"#{i + 1} {short_label(spec, keys)}")
    ax.set_yscale("log")
    ax.set_xlabel("wall-clock time since the optimisation started (s)")
    ax.set_ylabel("total loss (dimensionless, log scale)")
    ax.set_title("Loss against time")
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, title=", ".join(keys) or None, title_fontsize=7)
    return ax


def _plot_tradeoff(result: AblationResult, ax) -> None:
    points = [(i, row) for i, row in enumerate(result.rows) if row["status"] == COMPLETED
              and row.get("style_distance") is not None]
    for i, row in points:
        ax.scatter(row["content_distance"], row["style_distance"], color="darkorange")
        ax.annotate(f"#{i + 1}", (row["content_distance"], row["style_distance"]),
                    xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_xlabel("content distance ||F - P|| / ||P|| (relative)")
    ax.set_ylabel("style distance, mean ||G - A|| / ||A|| (relative)")
    ax.set_title("Style vs content distance (lower is closer)")
    ax.grid(True, alpha=0.3)


def _markdown_number(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(result: AblationResult) -> str:
    """The results as a Markdown table (one row per run, swept values as labels)."""
    swept = result.grid.swept_keys
    head = ["#", "run", *swept, "status", "total loss", "content", "style", "SSIM",
            "content dist.", "style dist.", "time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, row in enumerate(result.rows):
        cells = [str(i + 1), f"`{row['run_id']}`",
                 *(format_value(row.get(k)) for k in swept), row["status"],
                 *(_markdown_number(row.get(k)) for k in (
                     "final_total", "final_content", "final_style", "ssim",
                     "content_distance", "style_distance", "wall_seconds"))]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def _environment_line(result: AblationResult) -> str:
    for spec in result.specs:
        environment = (result.record(spec.run_id) or {}).get("environment")
        if environment:
            return (f"nstlib {environment.get('nstlib')}, TensorFlow "
                    f"{environment.get('tensorflow')}, host {environment.get('host')}")
    return "no run has finished yet"


def markdown_report(result: AblationResult, figures: Sequence[str] = ()) -> str:
    """``results.md``: what was run, with which weights, the table and the figures."""
    grid, rows = result.grid, result.rows
    statuses = [row["status"] for row in rows]
    weights = sorted({str(row.get("weights_source")) for row in rows
                      if row["status"] == COMPLETED}) or ["none"]
    fixed = ", ".join(f"{k} = {format_value(v)}" for k, v in grid.fixed.items()) or "none"
    axes = "; ".join(f"{k} in {{{', '.join(format_value(v) for v in values)}}}"
                     for k, values in grid.axes.items()) or "none"
    text = [f"# Ablation: {grid.name}", "",
            f"{len(rows)} runs: {statuses.count(COMPLETED)} completed, "
            f"{statuses.count(FAILED)} failed, {statuses.count(PENDING)} not run. "
            f"VGG19 weights: {', '.join(weights)}. {_environment_line(result)}.", "",
            f"* Fixed: {fixed}", f"* Axes (all combinations): {axes}",
            f"* Extra runs: {len(grid.runs)}", "",
            "Losses are the unweighted terms of the last step; distances are relative "
            "(0 = identical to the target) and measured with the same evaluation network "
            "for every run; time is stylize's wall-clock time.", "",
            markdown_table(result), ""]
    text += [f"![{name}]({name})" for name in figures]
    text += ["", f"Full table: `{TABLE_FILE}`; per-run records: `{RUNS_DIR}/<run>.json`.", ""]
    for i, row in enumerate(rows):
        if row["status"] == FAILED:
            error = str(row.get("error"))
            error = error if len(error) <= 200 else error[:200] + "... (see its record)"
            text.append(f"* run #{i + 1} `{row['run_id']}` failed: {error}")
    return "\n".join(text).rstrip() + "\n"


def write_report(out_dir) -> dict[str, Path]:
    """Write ``images.png``, ``metrics.png`` and ``results.md`` into a results folder.

    Returns:
        {"images": path, "metrics": path, "markdown": path, "table": results.csv path}.
    """
    import matplotlib.pyplot as plt

    result = load_results(out_dir)
    out_dir = Path(out_dir)
    paths = {}
    for name, plot in (("images", plot_image_grid), ("metrics", plot_metrics)):
        fig = plot(result)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        paths[name] = _write_atomic(buffer.getvalue(), out_dir / f"{name}.png")
    text = markdown_report(result, [p.name for p in paths.values()])
    paths["markdown"] = _write_atomic(text.encode("utf-8"), out_dir / "results.md")
    paths["table"] = result.table_paths[0]
    return paths
