"""Shared helpers of the benchmark scripts: logging, machine record, statistics, and
turn-taking timing of several methods in one process.

Every script prints one JSON document on stdout and its progress on stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable

from nstlib.settings import RECIPES  # plain Python: imports no TensorFlow

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))

NOTE_RANDOM_WEIGHTS = (
    "VGG19 weights are the seeded random ('random') ones: timings do not depend on weight "
    "values, but loss values and the number of steps to reach a loss do (ImageNet weights "
    "give different numbers).")


#: The ImageNet recipe's pooling, layers and weights (``nstlib.settings.RECIPES``), written
#: into every benchmark run: these tables measure the classic network, while ``stylize``
#: with random weights would otherwise take the cheaper random recipe.
IMAGENET_RECIPE = dict(RECIPES["imagenet"])


def log(*args) -> None:
    """Progress line on stderr (stdout is reserved for the JSON document)."""
    print("[bench]", *args, file=sys.stderr, flush=True)


def emit(document: dict) -> None:
    """Print the one JSON document on stdout."""
    json.dump(document, sys.stdout, indent=1, default=_json_default)
    print()
    sys.stdout.flush()


def _json_default(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def parse_args(description: str, argv=None) -> argparse.Namespace:
    """The common command line: ``--quick`` for a short smoke run."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats (development smoke run)")
    return parser.parse_args(argv)


def parse_pairs(text: str) -> list[tuple[str, ...]] | None:
    """``--pairs`` as given ("chelsea+mosaic,coffee+stripes") as (content, style) tuples;
    None when empty (the benchmark's own pairs)."""
    return [tuple(pair.split("+")) for pair in text.split(",") if pair] or None


# ----------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The CPU model name (the library's own detection, also part of conv_impl's cache key)."""
    from nstlib.conv_choice import cpu_model as model

    return model()


def isa_class() -> str:
    """"amx", "avx512", "avx2" or "other" (``nstlib.conv_choice.isa_class``)."""
    from nstlib.conv_choice import isa_class as detect

    return detect()


def cpu_flags(wanted=("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile",
                      "avx512_fp16")) -> list[str]:
    """Which of the flags that matter for convolution speed the CPU reports."""
    from nstlib.conv_choice import cpu_flags as flags

    present = flags()
    return [f for f in wanted if f in present]


def stamp() -> dict:
    """What every result carries: date, CPU model, instruction-set class, TF version, load."""
    import tensorflow as tf

    return {"date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "cpu_model": cpu_model(), "isa_class": isa_class(), "tensorflow": tf.__version__,
            "load_average_1_5_15": load_average()}


def memory_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    """CPU, cores, memory, accelerators, library versions, date and current load."""
    import keras
    import numpy as np
    import tensorflow as tf

    import nstlib

    gpus = tf.config.list_physical_devices("GPU")
    gpu_names = []
    for gpu in gpus:
        try:
            gpu_names.append(tf.config.experimental.get_device_details(gpu).get("device_name",
                                                                               gpu.name))
        except Exception:  # noqa: BLE001 - details are best effort
            gpu_names.append(gpu.name)
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_model": cpu_model(),
        "isa_class": isa_class(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gib": memory_total_gib(),
        "load_average_1_5_15": load_average(),
        "gpus": gpu_names,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "nstlib": nstlib.__version__,
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 Linux)"),
        "tf_threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                       "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
    }


def gpu_present() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


# ----------------------------------------------------------------------------- statistics


def summary(seconds: list[float]) -> dict:
    """Median, quartiles, min, max and count of a list of durations (seconds)."""
    values = sorted(float(s) for s in seconds)
    if not values:
        return {"n": 0, "median": None}
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return {"n": len(values), "median": statistics.median(values), "q1": q[0], "q3": q[2],
            "min": values[0], "max": values[-1]}


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def rounded(obj, digits: int = 5):
    """Round floats in nested dicts/lists to ``digits`` significant digits."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, digits) for v in obj]
    return obj


# ----------------------------------------------------------------------------- turn taking


class TurnTaking:
    """Run several step loops in threads, one step at a time each, in rotation.

    Each participant is a function ``run(callback)`` that performs its steps (e.g. calls
    ``nstlib.minimize`` or ``nstlib.stylize`` with ``callbacks=[callback]``) and calls
    ``callback(step, image, losses)`` after every step. Inside the callback the
    participant hands the turn to the next one and waits for its turn again, so exactly
    one participant computes at any time and consecutive steps of different methods
    alternate: on a machine whose load drifts, every method sees the same conditions.

    The duration of a participant's step k is the time from the end of its callback k-1
    to the start of its callback k (the first one runs from the thread's first turn and
    so includes set-up and tracing).
    """

    def __init__(self, participants: dict[str, Callable]):
        self.participants = dict(participants)
        self.order = list(self.participants)
        self._turn = {name: threading.Semaphore(0) for name in self.order}
        self._done: set[str] = set()
        self._lock = threading.Lock()
        self.events: dict[str, list[tuple[str, float]]] = {name: [] for name in self.order}
        self.results: dict[str, object] = {}
        self.errors: dict[str, BaseException] = {}

    def _pass_turn(self, name: str) -> None:
        with self._lock:
            start = self.order.index(name)
            for offset in range(1, len(self.order) + 1):
                candidate = self.order[(start + offset) % len(self.order)]
                if candidate not in self._done:
                    self._turn[candidate].release()
                    return

    def callback(self, name: str) -> Callable:
        def hand_over(step=None, image=None, losses=None):
            self.events[name].append(("in", time.perf_counter()))
            self._pass_turn(name)
            self._turn[name].acquire()
            self.events[name].append(("out", time.perf_counter()))
            return False
        return hand_over

    def _thread(self, name: str) -> None:
        self._turn[name].acquire()
        self.events[name].append(("out", time.perf_counter()))
        try:
            self.results[name] = self.participants[name](self.callback(name))
        except BaseException as err:  # noqa: BLE001 - reported by run()
            self.errors[name] = err
        finally:
            with self._lock:
                self._done.add(name)
            self._pass_turn(name)

    def run(self) -> dict[str, list[float]]:
        """Run every participant to completion; returns each one's step durations."""
        threads = [threading.Thread(target=self._thread, args=(name,), daemon=True)
                   for name in self.order]
        for thread in threads:
            thread.start()
        self._turn[self.order[0]].release()
        for thread in threads:
            thread.join()
        if self.errors:
            name, err = next(iter(self.errors.items()))
            raise RuntimeError(f"benchmark participant {name!r} failed: {err!r}") from err
        return {name: self.durations(name) for name in self.order}

    def durations(self, name: str) -> list[float]:
        """Seconds of each step of one participant (index k: the step before callback k)."""
        events, out = self.events[name], []
        for (kind_a, t_a), (kind_b, t_b) in zip(events, events[1:], strict=False):
            if kind_a == "out" and kind_b == "in":
                out.append(t_b - t_a)
        return out


def loop(step: Callable[[], object], steps: int) -> Callable:
    """A participant that calls ``step()`` ``steps`` times, handing over after each."""
    def run(callback):
        value = None
        for k in range(steps):
            value = step()
            callback(k)
        return value
    return run


def minimize_steps(durations: list[float], warmup: int) -> list[float]:
    """Steady-state step times of an ``nstlib.minimize`` participant.

    ``minimize`` calls the callback after every update (index k = step k) and once more
    after an eager forward pass of the final image; that last interval and the first
    ``warmup`` ones (tracing, first-call allocations) are dropped.
    """
    return durations[warmup:-1]


# ----------------------------------------------------------------------------- images


def image_pair(content: str, style: str, size: int, style_size: int | None = None):
    """Content and style samples resized to a longer side of ``size`` pixels.

    Returns:
        (content, style): (1, H, W, 3) float32 tensors in [0, 1].
    """
    from nstlib import images

    c = images.resize_max_side(images.load_image(content), int(size))
    s = images.resize_max_side(images.load_image(style), int(style_size or size))
    return c, s


def square_pair(size: int, content: str = "astronaut", style: str = "brushstrokes"):
    """Square size x size content (astronaut is square) and style (center crop) images."""
    import tensorflow as tf

    from nstlib import images

    def square(name):
        image = images.load_image(name)
        h, w = int(image.shape[1]), int(image.shape[2])
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return images.resize(image[:, top:top + side, left:left + side, :], (size, size))

    return tf.identity(square(content)), tf.identity(square(style))
