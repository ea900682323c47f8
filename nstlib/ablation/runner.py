"""Running a grid: send its incomplete runs to a backend, collect the results table.

Several runners may work on one results folder at once: each claims a run (``runs/<id>.lock``,
see ``nstlib.ablation.worker.claim``) just before sending it to a worker, so that each run is
executed once, and leaves the runs that another runner holds to it.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import platform
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nstlib._io import atomic_write_all, atomic_write_bytes
from nstlib.ablation.backends import check_scheduler, make_backend
from nstlib.ablation.grid import Grid, GridError, RunSpec, load_grid, parse_grid
from nstlib.ablation.worker import (
    CLAIM_REFRESH_SECONDS,
    COMPLETED,
    FAILED,
    PENDING,
    RUNS_DIR,
    STALE_CLAIM_SECONDS,
    claim,
    is_complete,
    persist,
    read_record,
    record_path,
    record_problem,
    refresh_claim,
    release_claim,
)

GRID_FILE, TABLE_FILE = "grid.yaml", "results.csv"

TABLE_HEAD = ("run_id",)
TABLE_TAIL = ("status", "weights_source", "architecture", "final_total", "final_content",
              "final_style", "final_tv", "steps_done", "ssim", "content_distance", "style_distance")
TABLE_END = ("seconds", "startup_seconds", "median_step_seconds", "wall_seconds", "host",
             "image", "error")


def table_row(spec: RunSpec, record: dict | None) -> dict:
    """One results-table row: id, swept settings, outcome, final losses, metrics, time."""
    row = {"run_id": spec.run_id, **spec.swept}
    if record is None:
        return {**row, "status": PENDING}
    final, measured = record.get("final") or {}, dict(record.get("metrics") or {})
    row.update(status=record.get("status"), weights_source=record.get("weights_source"),
               architecture=record.get("architecture"),
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
    return atomic_write_all(table_files(rows, out_dir, swept))


def table_files(rows: Sequence[dict], out_dir,
                swept: Sequence[str] = ()) -> list[tuple[Path, bytes]]:
    """(path, bytes) of ``results.csv`` and, when pyarrow imports, ``results.parquet``."""
    columns = _columns(rows, swept)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else _cell(row.get(k)) for k in columns})
    files = [(Path(out_dir) / TABLE_FILE, buffer.getvalue().encode("utf-8"))]
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError:
        return files
    frame = pd.DataFrame([{k: _cell(row.get(k)) for k in columns} for row in rows],
                         columns=columns)
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False)
    files.append((Path(out_dir) / "results.parquet", parquet.getvalue()))
    return files


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
        left: Ids of the runs left to another runner on the same folder: claimed by it, or
            finished by it after this call started. Their rows show whatever it has
            finished by the time this call collected the table.
        table_paths: ``results.csv`` (and ``results.parquet``); empty when not written.
        damaged: Run id -> one line naming its damaged record and what is wrong
            (``worker.record_problem``); such a run's row says "pending".
    """

    grid: Grid
    specs: list
    out_dir: Path
    rows: list
    executed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    left: list = field(default_factory=list)
    table_paths: list = field(default_factory=list)
    damaged: dict = field(default_factory=dict)

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


def collect(grid: Grid, out_dir, *, write: bool = True) -> AblationResult:
    """Read every run's record from a results folder and (unless ``write=False``) write
    the table. A damaged record counts as none (its run is "pending") and is listed in
    ``AblationResult.damaged``."""
    specs = stored_specs(grid, out_dir)
    rows = [table_row(spec, read_record(out_dir, spec.run_id)) for spec in specs]
    paths = write_table(rows, out_dir, grid.swept_keys) if write else []
    return AblationResult(grid, specs, Path(out_dir), rows, table_paths=paths,
                          damaged=damaged_records(specs, out_dir))


def damaged_records(specs: Sequence[RunSpec], out_dir) -> dict[str, str]:
    """Run id -> what is wrong with its record, for the runs whose record is damaged."""
    found = {spec.run_id: record_problem(out_dir, spec.run_id) for spec in specs}
    return {rid: problem for rid, problem in found.items() if problem is not None}


def save_grid(grid: Grid, out_dir) -> Path:
    """Write the grid declaration as ``OUT/grid.yaml`` (with its base folder)."""
    data = {**grid.to_dict(), "base_dir": str(grid.base_dir) if grid.base_dir else None}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return atomic_write_bytes(text.encode("utf-8"), Path(out_dir) / GRID_FILE)


def load_results(out_dir, *, write: bool = True) -> AblationResult:
    """The grid and records of a results folder written by ``run_grid``.

    Args:
        out_dir: The results folder.
        write: Rewrite ``results.csv`` from the records (``collect``).

    Raises:
        GridError: the folder has no ``grid.yaml``.
    """
    path = Path(out_dir) / GRID_FILE
    if not path.is_file():
        raise GridError(f"{out_dir} is not a results folder (no {GRID_FILE}); run "
                        f"`nst ablate GRID.yaml -o {out_dir}` first")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    base_dir = data.pop("base_dir", None)
    return collect(parse_grid(data, str(path), base_dir), out_dir, write=write)


def _lost_run(spec: RunSpec, error: BaseException) -> dict:
    """Payload for a run whose worker died or could not be reached (written here, where
    TensorFlow need not be imported: the environment is only this runner's host)."""
    environment = {"host": socket.gethostname(), "python": platform.python_version()}
    record = {"run_id": spec.run_id, "config": spec.config, "status": FAILED,
              "error": f"worker lost: {type(error).__name__}: {error}", "history": {},
              "final": {}, "seed": spec.config.get("seed"), "environment": environment,
              "host": None, "image": f"{spec.run_id}.png"}
    return {"record": record, "png": None}


class GridWriteError(OSError):
    """``run_grid`` stopped because a result could not be written (e.g. a full disk).

    The workers are ended and every run finished before it is on disk; the run whose
    files failed has neither (no image without its record), and re-running resumes.

    Attributes:
        errno, strerror, filename: Those of the failed write (``filename`` is the
            destination, never a temporary file).
        result: The ``AblationResult`` collected after stopping (its ``table_paths`` are
            empty when the table could not be written either).
    """

    def __init__(self, error: OSError, result: AblationResult | None = None):
        super().__init__(error.errno, error.strerror or str(error), error.filename)
        self.result = result


class GridInterrupted(KeyboardInterrupt):
    """``run_grid`` stopped by Ctrl-C (SIGINT) or SIGTERM, after ending its workers.

    Every run that finished before the signal is on disk (and kept by the next call), its
    claims are released and the table is written.

    Attributes:
        signum: ``signal.SIGINT`` or ``signal.SIGTERM``.
        result: The ``AblationResult`` collected after stopping (None until then);
            ``result.executed`` lists the runs finished by the interrupted call.
    """

    def __init__(self, signum: int = signal.SIGINT, result: AblationResult | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.result = signum, result


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (``timeout``, a job scheduler, ``kill``) stops the grid like Ctrl-C.

    Inside the block, the first SIGTERM raises ``GridInterrupted(SIGTERM)`` in the main
    thread; later ones, and any after the yielded ``disarm()`` was called (the clean-up:
    ending workers, writing the table), are ignored. Outside the main thread, where Python
    cannot handle signals, a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    armed = [True]

    def stop(signum, frame):
        if armed[0]:
            armed[0] = False
            raise GridInterrupted(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield lambda: armed.__setitem__(0, False)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


class _Claims:
    """The runs this runner has claimed (their tokens), refreshed in a background thread.

    As a context manager: on exit (finished, failed or interrupted) every claim still held
    is released.
    """

    def __init__(self, out_dir: Path, stale_seconds: float = STALE_CLAIM_SECONDS):
        self.out_dir, self.stale_seconds, self.held = out_dir, stale_seconds, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, daemon=True,
                                        name="nstlib-claims")

    def take(self, rid: str) -> bool:
        """Claim a run; False when another runner holds it."""
        token = claim(self.out_dir, rid, self.stale_seconds)
        if token is not None:
            self.held[rid] = token
        return token is not None

    def release(self, rid: str) -> None:
        token = self.held.pop(rid, None)
        if token is not None:
            release_claim(self.out_dir, rid, token)

    def _refresh(self) -> None:
        while not self._stop.wait(min(CLAIM_REFRESH_SECONDS, self.stale_seconds / 4)):
            for rid in list(self.held):
                refresh_claim(self.out_dir, rid)

    def __enter__(self) -> _Claims:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for rid in list(self.held):
            self.release(rid)


def _record_stamp(out_dir, rid: str):
    """What identifies the current version of a run's record (None: no record)."""
    try:
        stat = record_path(out_dir, rid).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _next_run(queue: list, claims: _Claims, out_dir: Path, stamps: dict, left: list):
    """Pop queued runs until one that this runner claims and that no other runner has
    finished or tried (its record unchanged) since this call started; None when none is."""
    while queue:
        spec = queue.pop(0)
        if not claims.take(spec.run_id):
            left.append(spec.run_id)
        elif _record_stamp(out_dir, spec.run_id) != stamps[spec.run_id]:
            claims.release(spec.run_id)  # done (or failed) meanwhile by another runner
            left.append(spec.run_id)
        else:
            return spec
    return None


def _payload(future, spec: RunSpec) -> dict:
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - a lost worker fails only its run
        return _lost_run(spec, err)


def _show_progress(bar, done: int, failed: int, left: int) -> None:
    if bar.disable:  # a disabled tqdm lacks most attributes
        return
    bar.n = bar.initial + done + left
    notes = ([f"{failed} failed"] if failed else []) + (
        [f"{left} left to another runner"] if left else [])
    bar.set_postfix_str(", ".join(notes), refresh=False)
    bar.refresh()


def _execute(backend, specs: Sequence[RunSpec], out_dir: Path, base_dir, bar, done: list,
             left: list) -> None:
    """Claim and submit runs while the backend has free slots; write each result as it
    arrives. Fills ``done`` (ids executed here) and ``left`` (ids left to other runners)."""
    stamps = {spec.run_id: _record_stamp(out_dir, spec.run_id) for spec in specs}
    queue, futures, failed = list(specs), {}, 0
    with _Claims(out_dir) as claims:
        try:
            while True:
                while queue and len(futures) < (getattr(backend, "slots", None) or len(specs)):
                    spec = _next_run(queue, claims, out_dir, stamps, left)
                    if spec is not None:
                        futures[backend.submit(spec.config, out_dir, base_dir)] = spec
                _show_progress(bar, len(done), failed, len(left))
                if not futures:
                    return
                for future in backend.wait_first(futures):
                    spec = futures.pop(future)
                    payload = _payload(future, spec)
                    if not is_complete(out_dir, spec.run_id):
                        persist(payload, out_dir)
                    claims.release(spec.run_id)  # after its record is on disk
                    done.append(spec.run_id)
                    failed += payload["record"]["status"] != COMPLETED
        except BaseException:
            backend.cancel(futures)  # the workers end before the claims are released
            raise


def run_grid(grid, out_dir, *, workers: int | None = None, scheduler=None, backend=None,
             progress: bool = True) -> AblationResult:
    """Run every incomplete run of a grid and write the results table.

    Runs are claimed one at a time as workers free up (``runs/<id>.lock``), so that
    several calls on the same folder, on one machine or several, share the work; runs
    another call holds are left to it (``AblationResult.left``).

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
        GridError: invalid grid. GridInterrupted (a KeyboardInterrupt): Ctrl-C or, in the
            main thread, SIGTERM; the workers are ended, every run finished before it is
            on disk, the claims are released and the table is written (``.result``).
        GridWriteError (an OSError): a result could not be written (a full disk); the
            same, and the failed run has neither image nor record (``.result``).
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
    executed, left, stop = [], [], None
    owned = backend is None and bool(pending)
    bar = tqdm(total=len(specs), initial=len(skipped), desc=f"ablation {grid.name}",
               unit="run", file=sys.stderr, disable=not progress, leave=False)
    with _sigterm_interrupts() as disarm:
        try:
            if owned:
                backend = make_backend(workers, scheduler, len(pending))
            if pending:
                base_dir = None if grid.base_dir is None else str(grid.base_dir)
                _execute(backend, pending, out_dir, base_dir, bar, executed, left)
        except (KeyboardInterrupt, OSError) as err:
            stop = err
        finally:
            disarm()
            bar.close()
            if owned and backend is not None:
                backend.close()
            try:
                result = collect(grid, out_dir)
            except OSError as err:  # the disk that stopped a run may refuse the table too
                if stop is None:
                    stop = err
                result = collect(grid, out_dir, write=False)
    result.executed, result.skipped, result.left = executed, skipped, left
    if isinstance(stop, OSError):
        raise GridWriteError(stop, result) from None
    if stop is not None:
        raise GridInterrupted(getattr(stop, "signum", signal.SIGINT), result) from None
    return result


def summary_line(result: AblationResult) -> str:
    """One line: runs completed / failed / skipped / left to another runner, and where the
    table is."""
    statuses = [row["status"] for row in result.rows]
    parts = [f"{statuses.count(COMPLETED)} completed"]
    if statuses.count(FAILED):
        parts.append(f"{statuses.count(FAILED)} failed")
    if len(result.skipped):
        parts.append(f"{len(result.skipped)} already complete")
    if result.left:
        parts.append(f"{len(result.left)} left to another runner")
    return (f"{len(result.rows)} runs ({', '.join(parts)}); table: "
            f"{', '.join(str(p) for p in result.table_paths)}")
