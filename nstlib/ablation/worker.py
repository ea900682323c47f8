"""One run, in a worker: stylize, measure, record, and write its files atomically."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import traceback
from pathlib import Path

from nstlib._io import atomic_write_bytes, write_json
from nstlib.ablation.grid import INPUTS, run_id
from nstlib.settings import StylizeConfig
from nstlib.transfer import stylize

RUNS_DIR = "runs"
COMPLETED, FAILED, INTERRUPTED, PENDING = "completed", "failed", "interrupted", "pending"


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

    flat = {k: v for k, v in config.items() if k not in (*INPUTS, "evaluate")}
    result = stylize(_source(config["content"], base_dir), _source(config["style"], base_dir),
                     StylizeConfig.from_flat(**flat), progress=False)
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
        atomic_write_bytes(payload["png"], image_path(out_dir, rid))
    write_json(record, record_path(out_dir, rid))
