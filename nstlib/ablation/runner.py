"""Running a grid: send its incomplete runs to a backend, collect the results table."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nstlib._io import atomic_write_bytes
from nstlib.ablation.backends import check_scheduler, make_backend
from nstlib.ablation.grid import Grid, GridError, RunSpec, load_grid, parse_grid
from nstlib.ablation.worker import (
    COMPLETED,
    FAILED,
    PENDING,
    RUNS_DIR,
    is_complete,
    persist,
    read_record,
)

GRID_FILE, TABLE_FILE = "grid.yaml", "results.csv"

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
    paths = [atomic_write_bytes(buffer.getvalue().encode("utf-8"), Path(out_dir) / TABLE_FILE)]
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError:
        return paths
    frame = pd.DataFrame([{k: _cell(row.get(k)) for k in columns} for row in rows],
                         columns=columns)
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False)
    paths.append(atomic_write_bytes(parquet.getvalue(), Path(out_dir) / "results.parquet"))
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


def stored_specs(grid: Grid, out_dir) -> list[RunSpec]:
    """The grid's runs, each with the id its files have in ``out_dir``.

    That is the run's id, except for a run not complete under it but complete under its
    legacy id (a folder written before ``StylizeConfig``): then the legacy id, so that the
    old record and image count and the run is not repeated.
    """
    specs = []
    for spec in grid.expand():
        if (spec.legacy_id is not None and not is_complete(out_dir, spec.run_id)
                and is_complete(out_dir, spec.legacy_id)):
            spec = dataclasses.replace(spec, run_id=spec.legacy_id)
        specs.append(spec)
    return specs


def collect(grid: Grid, out_dir) -> AblationResult:
    """Read every run's record from a results folder and write the table."""
    specs = stored_specs(grid, out_dir)
    rows = [table_row(spec, read_record(out_dir, spec.run_id)) for spec in specs]
    paths = write_table(rows, out_dir, grid.swept_keys)
    return AblationResult(grid, specs, Path(out_dir), rows, table_paths=paths)


def save_grid(grid: Grid, out_dir) -> Path:
    """Write the grid declaration as ``OUT/grid.yaml`` (with its base folder)."""
    data = {**grid.to_dict(), "base_dir": str(grid.base_dir) if grid.base_dir else None}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return atomic_write_bytes(text.encode("utf-8"), Path(out_dir) / GRID_FILE)


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
    specs = stored_specs(grid, out_dir)
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
