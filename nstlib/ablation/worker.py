"""One run, in a worker: stylize, measure, record, and write its files atomically.

Also the results folder's layout (``runs/<id>.json``, ``.png``) and the claims that let
several runners share one folder (``runs/<id>.lock``, see ``claim``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sys
import time
import traceback
import uuid
from pathlib import Path

from nstlib._io import atomic_write_all, json_bytes
from nstlib.ablation.grid import INPUTS, OPTIONAL_INPUTS, run_id
from nstlib.records import RecordError, load_record
from nstlib.settings import StylizeConfig

RUNS_DIR = "runs"
COMPLETED, FAILED, INTERRUPTED, PENDING = "completed", "failed", "interrupted", "pending"
#: A claim not refreshed for this long is stale (its runner refreshes it every
#: ``CLAIM_REFRESH_SECONDS``); the only test for a claim made on another host, or one whose
#: lock file cannot be read.
STALE_CLAIM_SECONDS = 15 * 60.0
CLAIM_REFRESH_SECONDS = 60.0


@contextlib.contextmanager
def tensorflow_import_silenced():
    """Point file descriptor 2 at /dev/null for the block if TensorFlow is not imported yet.

    TensorFlow's native libraries print start-up notices there while they load, before any
    log level applies; in a worker they would interleave with the runner's one-line
    messages. A no-op once TensorFlow is imported, or with NSTLIB_TF_VERBOSE set.
    """
    if "tensorflow" in sys.modules or os.environ.get("NSTLIB_TF_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


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
    """An image argument (or a list of them): a relative path that exists under
    ``base_dir`` becomes that path."""
    if isinstance(value, list):
        return [_source(v, base_dir) for v in value]
    if isinstance(value, str) and base_dir and not os.path.isabs(value):
        candidate = Path(base_dir) / value
        if candidate.exists():
            return str(candidate)
    return value


def _evaluation(config: dict, result, base_dir: str | None) -> dict:
    """Metrics of a finished run's image: the grid's evaluation network, and the
    network-free judge (``nstlib.judge``). The sizes are the run's plan's
    (``result.plan``): the content at the result's size, the style (the plan's
    ``main_style``, the most heavily weighted) at the last scale's style size."""
    from nstlib import images, judge, metrics
    from nstlib.transfer import cached_extractor

    spec = config["evaluate"]
    extractor = cached_extractor(tuple(spec["content_layers"]), tuple(spec["style_layers"]),
                                 spec["weights"], spec["pooling"], int(spec["seed"]))
    plan, image = result.plan, result.image
    content = images.load_image(_source(config["content"], base_dir))
    styles = config["style"] if isinstance(config["style"], list) else [config["style"]]
    style = images.load_image(_source(styles[plan.main_style], base_dir))
    style = images.at_size(style, plan.stages[-1].style_hws[plan.main_style])
    values = metrics.evaluate(extractor, image, content, style)
    content_here = images.resize(content, plan.result_hw)
    values.update(judge.judge(image, content_here, style))
    return {**values, "weights_source": extractor.weights_source}


def _completed_record(config: dict, base_dir: str | None) -> tuple[dict, bytes]:
    """Run ``stylize`` with ``config`` and measure the result: (record, PNG bytes)."""
    from nstlib import images, metrics
    from nstlib.transfer import stylize  # here: importing the ablation package needs no TF

    flat = {k: v for k, v in config.items() if k not in (*INPUTS, *OPTIONAL_INPUTS, "evaluate")}
    result = stylize(_source(config["content"], base_dir), _source(config["style"], base_dir),
                     StylizeConfig.from_flat(**flat), progress=False,
                     style_masks=_source(config.get("style_masks"), base_dir))
    record = result.to_dict()
    record.update(content=config["content"], style=config["style"],
                  optimizer_status=record["status"],
                  status=INTERRUPTED if record["status"] == "interrupted" else COMPLETED,
                  error=None)
    measured = metrics.timing(result.history["seconds"])
    if config["evaluate"] is not None:
        evaluation = _evaluation(config, result, base_dir)
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
    with tensorflow_import_silenced():
        limit_threads(threads)
        import tensorflow  # noqa: F401 - here, with its start-up notices silenced
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


def record_path(out_dir, rid: str) -> Path:
    """``OUT/runs/<id>.json``."""
    return Path(out_dir) / RUNS_DIR / f"{rid}.json"


def image_path(out_dir, rid: str) -> Path:
    """``OUT/runs/<id>.png``."""
    return Path(out_dir) / RUNS_DIR / f"{rid}.png"


def _load(out_dir, rid: str) -> tuple[dict | None, str | None]:
    """(the run's record, None) when it is usable; (None, what is wrong with the file) when
    it is damaged; (None, None) when there is none."""
    path = record_path(out_dir, rid)
    try:
        record = load_record(path)
    except FileNotFoundError:
        return None, None
    except RecordError as err:
        return None, str(err)
    status, found = record.get("status"), record.get("run_id", None)
    if found != rid:
        return None, (f"{path} has no run_id, so it is not a run record" if found is None
                      else f"{path} is the record of run {found!r}, not of {rid}")
    if status not in (COMPLETED, FAILED, INTERRUPTED):
        return None, f"{path} has no valid status (got {status!r})"
    for key in ("final", "history", "metrics", "config"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            return None, f"{path} has a {key!r} that is not a JSON object"
    total = (record.get("final") or {}).get("total")
    if status == COMPLETED and (isinstance(total, bool) or not isinstance(total, int | float)):
        return None, f"{path} says completed but has no final loss"
    return record, None


def read_record(out_dir, rid: str) -> dict | None:
    """A run's record, or None when it is missing or damaged (``record_problem`` says
    how): not JSON (e.g. cut short), not a JSON object, another run's, no valid status,
    or "completed" without its final losses."""
    return _load(out_dir, rid)[0]


def record_problem(out_dir, rid: str) -> str | None:
    """One line naming a run's damaged record and what is wrong; None when the record is
    usable or missing. A damaged record counts as no record: the run is not run yet."""
    return _load(out_dir, rid)[1]


def is_complete(out_dir, rid: str) -> bool:
    """True when the run's record says "completed" and its image exists."""
    record = read_record(out_dir, rid)
    return (record is not None and record.get("status") == COMPLETED
            and image_path(out_dir, rid).is_file())


def persist(payload: dict, out_dir) -> None:
    """Write a run's image (if any) and its record, replacing both only once both are
    fully written (``_io.atomic_write_all``), the record last.

    So a record that says "completed" always has its image, and a write that fails (a
    full disk) leaves neither a new image without its record nor a temporary file.

    Raises:
        OSError: the write failed; ``filename`` is the destination that failed.
    """
    record = payload["record"]
    rid = record["run_id"]
    files = [] if payload.get("png") is None else [(image_path(out_dir, rid), payload["png"])]
    atomic_write_all([*files, (record_path(out_dir, rid), json_bytes(record))])


# ----------------------------------------------------------------------------- claims
#
# Several runners may share one results folder (two `nst ablate` on it, or one per machine
# of a shared file system). Before executing a run, a runner claims it by creating
# runs/<id>.lock with O_CREAT | O_EXCL (atomic on local file systems and NFS v3+), holding
# its pid, host and start time; the others skip the run while that claim is live.


def lock_path(out_dir, rid: str) -> Path:
    """``OUT/runs/<id>.lock``: the claim of a run being executed."""
    return Path(out_dir) / RUNS_DIR / f"{rid}.lock"


def read_claim(out_dir, rid: str) -> dict | None:
    """A run's claim {"pid", "host", "started", "token"}; {} when its lock cannot be parsed
    (e.g. while its runner is still writing it); None when the run is not claimed."""
    try:
        text = lock_path(out_dir, rid).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        held = json.loads(text)
    except ValueError:
        return {}
    return held if isinstance(held, dict) else {}


def _pid_alive(pid) -> bool:
    """Whether a process with this id exists on this host."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:  # kill(0) = own group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user
        return True
    return True


def claim_is_live(out_dir, rid: str, stale_seconds: float = STALE_CLAIM_SECONDS) -> bool:
    """Whether a run is claimed by a runner that may still be executing it.

    A claim is stale once its lock has gone ``stale_seconds`` without a refresh (runners
    refresh theirs every ``CLAIM_REFRESH_SECONDS``), and at once when it was made on this
    host by a process that no longer exists. A claim from another host, or a lock that
    cannot be read, is trusted until then.
    """
    path = lock_path(out_dir, rid)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    held = read_claim(out_dir, rid)
    if held is None or age > stale_seconds:
        return False
    if held.get("host") == socket.gethostname():
        return _pid_alive(held.get("pid"))
    return True


def _remove_stale_claim(out_dir, rid: str, stale_seconds: float) -> bool:
    """Delete a run's lock if its claim is stale; True when the lock is gone.

    Takeovers are serialised by a second O_EXCL file (``<id>.takeover``), so that two
    runners finding the same stale lock cannot delete the fresh lock one of them made.
    """
    guard = lock_path(out_dir, rid).with_suffix(".takeover")
    try:
        os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:  # another runner is taking it over (or died doing so)
        with contextlib.suppress(OSError):
            if time.time() - guard.stat().st_mtime > 30:
                guard.unlink()
        return False
    try:
        if claim_is_live(out_dir, rid, stale_seconds):
            return False
        lock_path(out_dir, rid).unlink(missing_ok=True)
        return True
    finally:
        guard.unlink(missing_ok=True)


def claim(out_dir, rid: str, stale_seconds: float = STALE_CLAIM_SECONDS) -> str | None:
    """Claim a run for this process: create ``runs/<id>.lock`` with O_CREAT | O_EXCL.

    A stale claim (see ``claim_is_live``) is taken over.

    Returns:
        The claim's token (for ``release_claim``), or None when another runner holds it.
    """
    path = lock_path(out_dir, rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _remove_stale_claim(out_dir, rid, stale_seconds):
                return None
            continue
        token = uuid.uuid4().hex
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.time(), "token": token}, handle)
        return token
    return None  # another runner made a fresh claim while the stale one was removed


def refresh_claim(out_dir, rid: str) -> None:
    """Mark a claim as still in use (its lock's modification time is now)."""
    with contextlib.suppress(OSError):
        os.utime(lock_path(out_dir, rid))


def release_claim(out_dir, rid: str, token: str) -> None:
    """Remove this process's claim of a run; a claim that is no longer ours is left."""
    held = read_claim(out_dir, rid)
    if held and held.get("token") == token:
        lock_path(out_dir, rid).unlink(missing_ok=True)
