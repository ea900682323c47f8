"""Which form of VGG's 3x3 convolutions runs faster on this machine, measured once and kept.

``FeatureExtractor(conv_impl="auto")`` computes its convolutions either as plain
``Conv2D`` ("standard") or as the transposed convolution of the flipped kernel
("transposed", ``features.conv2d_same_transposed``): the same numbers, from different
oneDNN kernels whose relative speed depends on the CPU (the transposed form won on an
AMX Xeon, lost on an AVX2 EPYC). This module decides by timing both forms on the run's
network and image size the first time, and keeps the decision in a small per-user JSON
cache (``$XDG_CACHE_HOME/nstlib/conv_choice.json``, else ``~/.cache/nstlib/``) keyed by
CPU model, core count, instruction-set class, TensorFlow version, compute dtype, size
bucket and deepest layer. A corrupt or unwritable cache means measuring again, never an
error. On a GPU "auto" is "standard" without measuring; ``NSTLIB_CONV_IMPL=standard`` (or
``transposed``) forces the choice, e.g. for reproducible CI. The transposed form is chosen
only when it is at least 5 % faster (``MARGIN``).

What is timed is the forward pass: the input gradient is the same ``Conv2DBackpropInput``
with the same kernel in both forms, so timing it would add equal time to both (and
double the cost of the measurement). The CPU facts (``cpu_model``, ``isa_class``) are
also what the benchmarks record. TensorFlow is imported only when needed.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from nstlib._checks import check_choice
from nstlib._io import write_json
from nstlib.settings import CONV_IMPLS

#: The two forms, in the order they are timed.
FORMS = ("standard", "transposed")
#: Environment variable that forces the choice of ``conv_impl="auto"``.
ENV_VAR = "NSTLIB_CONV_IMPL"
#: Sizes (longer side, px) a run's size is rounded to; the measurement runs at the bucket.
SIZE_BUCKETS = (64, 128, 256, 512)
#: Bucket used when the run's size is not known (an extractor built on its own).
DEFAULT_SIZE = 256
#: Timed repeats per form (after one warm-up each); the median is kept.
REPEATS = 3
#: Repeats made whatever the time (one alone is at the mercy of a busy machine).
MIN_REPEATS = 2
#: Seconds the repeats may take after the warm-up before stopping early.
BUDGET_SECONDS = 2.0
#: How much faster the transposed form must be to be chosen over plain ``Conv2D``.
MARGIN = 0.05
CACHE_SCHEMA = 1



class ConvChoice(NamedTuple):
    """A resolved ``conv_impl``: the form used and why (one line for the run record)."""

    impl: str
    reason: str


_clock = time.perf_counter  # module attribute, so tests can count or fake the readings
_MEMO: dict[str, ConvChoice] = {}  # decisions of this process, by cache key


# ----------------------------------------------------------------------------- the CPU


def _cpuinfo_lines() -> list[str] | None:
    try:
        with open("/proc/cpuinfo") as handle:
            return handle.read().splitlines()
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; elsewhere ``platform.processor()``)."""
    for line in _cpuinfo_lines() or []:
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    for line in _cpuinfo_lines() or []:
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


#: ISA classes from narrowest to widest.
ISA_CLASSES = ("other", "avx2", "avx512", "amx")


def onednn_isa_cap(value: str | None = None) -> str | None:
    """The ISA class oneDNN is capped at by ``ONEDNN_MAX_CPU_ISA`` (None: no cap).

    oneDNN picks its kernels at run time and never uses an instruction set above this
    variable's (e.g. ``AVX2`` makes an AVX-512 machine run the kernels of an AVX2 laptop:
    other timings and other rounding), so the class that decides results is the lower of
    the CPU's and the cap's.

    Args:
        value: The variable's value (default: read from the environment).
    """
    value = (os.environ.get("ONEDNN_MAX_CPU_ISA", "") if value is None else value).upper()
    if value in ("", "ALL", "DEFAULT"):
        return None
    if "AMX" in value:
        return "amx"
    if value.startswith(("AVX512", "AVX10")):
        return "avx512"
    return "avx2" if value.startswith("AVX2") else "other"


def isa_class(flags: set[str] | None = None) -> str:
    """"amx", "avx512", "avx2" or "other": the widest matrix/vector unit oneDNN may use.

    Args:
        flags: CPU flags (default: ``cpu_flags()``, then lowered to ``onednn_isa_cap()``;
            none on non-Linux: "other"). Given flags are classified as they are.
    """
    cap = onednn_isa_cap() if flags is None else None
    flags = cpu_flags() if flags is None else flags
    found = next((name for name, flag in (("amx", "amx_tile"), ("avx512", "avx512f"),
                                          ("avx2", "avx2")) if flag in flags), "other")
    if cap is not None and ISA_CLASSES.index(cap) < ISA_CLASSES.index(found):
        return cap
    return found


def usable_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def describe_cpu() -> str:
    """One line naming the CPU, the cores this process may use and its instruction-set
    class, e.g. "AMD EPYC, 2 cores, avx512 instruction-set class": printed next to every
    timing (notebooks, benchmarks), because the same code ranks differently per class."""
    cap = onednn_isa_cap()
    capped = f" (oneDNN capped at {cap})" if cap is not None else ""
    return (f"{cpu_model()}, {usable_cores()} cores, {isa_class()} instruction-set "
            f"class{capped}")


# ----------------------------------------------------------------------------- the cache


def size_bucket(size: int | None) -> int:
    """The bucket of a longer side: the nearest of ``SIZE_BUCKETS`` on a log scale."""
    if size is None:
        return DEFAULT_SIZE
    return min(SIZE_BUCKETS, key=lambda bucket: abs(math.log2(bucket / max(int(size), 1))))


def cache_path() -> Path:
    """``$XDG_CACHE_HOME/nstlib/conv_choice.json`` (default ``~/.cache/nstlib/...``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "nstlib" / "conv_choice.json"


def cache_key(compute_dtype: str, bucket: int, last_layer: str,
              tf_version: str | None = None, network: str = "vgg19") -> str:
    """What a decision depends on, as one string (a key of the cache's "entries").

    The depth is the last layer, prefixed by the network unless it is VGG19 (so keys
    written before VGG16 existed stay valid).
    """
    tf_version = tf_version or _tf_version()
    depth = last_layer if network == "vgg19" else f"{network} {last_layer}"
    return (f"{cpu_model()} | {usable_cores()} cores | {isa_class()} | tf {tf_version} | "
            f"{compute_dtype} | {bucket} px | {depth}")


def _valid_entry(entry) -> bool:
    try:
        return (entry["choice"] in FORMS
                and all(float(entry["seconds"][form]) > 0 for form in FORMS))
    except (KeyError, TypeError, ValueError):
        return False


def read_cache(path: Path) -> tuple[dict, str | None]:
    """The cache's entries, and what was wrong with the file (None: fine or absent)."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as err:
        return {}, f"unreadable cache replaced ({type(err).__name__})"
    entries = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        return {}, "malformed cache replaced"
    return {k: v for k, v in entries.items() if _valid_entry(v)}, None


def _display(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if home not in ("", "/") and text.startswith(home) else text


# ----------------------------------------------------------------------------- measuring


def time_forms(steps: Mapping[str, Callable[[], object]], repeats: int = REPEATS,
               budget: float = BUDGET_SECONDS) -> dict[str, list[float]]:
    """Seconds of each call of each step function: one warm-up each, then repeats in turn.

    The forms alternate (a, b, a, b, ...) so that a drifting machine load affects them
    alike; after ``MIN_REPEATS`` rounds, rounds stop once ``budget`` seconds are spent.

    Args:
        steps: Form name -> a function that runs one pass and waits for its result.
        repeats: Most timed calls per form.
        budget: Seconds of timed rounds after which no new round starts.

    Returns:
        {form: [seconds of each timed call]}, ``MIN_REPEATS`` to ``repeats`` calls each.
    """
    for step in steps.values():
        step()  # tracing, first-call allocations and oneDNN primitive creation
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    started = _clock()
    for round_ in range(max(int(repeats), 1)):
        if round_ >= MIN_REPEATS and _clock() - started > budget:
            break
        for name, step in steps.items():
            start = _clock()
            step()
            seconds[name].append(_clock() - start)
    return seconds


def faster(seconds: Mapping[str, float]) -> str:
    """"transposed" if it took at least ``MARGIN`` less time than "standard", else "standard".

    Within the margin the two are as fast as timing noise can tell, and the plain form
    (Keras' own layer, no kernel flip per call) keeps machines of one kind on one form.
    """
    clearly_faster = seconds["transposed"] < (1 - MARGIN) * seconds["standard"]
    return "transposed" if clearly_faster else "standard"


def _describe(entry: dict) -> str:
    timed = ", ".join(f"{form} {1000 * float(entry['seconds'][form]):.1f} ms" for form in FORMS)
    return (f"{timed} (forward pass to {entry['last_layer']} at {entry['size']} px, "
            f"median of {entry['repeats']})")


def _measure(key: str, compute_dtype: str, bucket: int, last_layer: str,
             make_steps: Callable[[str, int, str], Mapping[str, Callable]]) -> dict:
    print(f"nstlib: timing both convolution forms once for this CPU ({bucket} px, to "
          f"{last_layer}); the choice is cached in {_display(cache_path())}", file=sys.stderr)
    state = random.getstate()  # Keras draws unseeded initializer seeds from `random`
    try:
        steps = make_steps(last_layer, bucket, compute_dtype)
        samples = time_forms(steps)
    finally:
        random.setstate(state)
    seconds = {form: statistics.median(samples[form]) for form in FORMS}
    return {"choice": faster(seconds), "seconds": seconds, "repeats": len(samples[FORMS[0]]),
            "size": bucket, "last_layer": last_layer, "compute_dtype": compute_dtype,
            "measured_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "key": key}


def _store(path: Path, entries: dict) -> str | None:
    """Write the cache; returns why it could not be written (None: written)."""
    try:
        write_json({"schema": CACHE_SCHEMA, "entries": entries}, path)
    except OSError as err:
        return f"cache not written: {type(err).__name__}: {err}"
    return None


def measured_choice(compute_dtype: str, last_layer: str, image_size: int | None,
                    make_steps: Callable[[str, int, str], Mapping[str, Callable]],
                    network: str = "vgg19") -> ConvChoice:
    """The faster form for this machine and run: remembered, cached, or measured now.

    Args:
        compute_dtype: "float32" or "bfloat16".
        last_layer: The deepest layer of the network.
        image_size: The run's longer side in px (None: ``DEFAULT_SIZE``).
        make_steps: ``(last_layer, size, compute_dtype) -> {form: step}``, each step one
            forward pass of the network in that form on a (1, size, size, 3) image.
        network: "vgg19" or "vgg16" (part of the cache key; ``make_steps`` builds it).
    """
    bucket = size_bucket(image_size)
    key = cache_key(compute_dtype, bucket, last_layer, network=network)
    if key in _MEMO:
        return _MEMO[key]
    path = cache_path()
    entries, problem = read_cache(path)
    if key in entries:
        choice = ConvChoice(entries[key]["choice"], f"cached measurement of "
                            f"{entries[key].get('measured_utc', '?')}: {_describe(entries[key])}"
                            f" (cache {_display(path)})")
    else:
        entries[key] = _measure(key, compute_dtype, bucket, last_layer, make_steps)
        notes = [n for n in (problem, _store(path, entries)) if n]
        choice = ConvChoice(entries[key]["choice"], f"measured: {_describe(entries[key])} "
                            f"(cache {_display(path)}{''.join('; ' + n for n in notes)})")
    _MEMO[key] = choice
    return choice


def choose(conv_impl: str, compute_dtype: str, last_layer: str, image_size: int | None,
           make_steps: Callable[[str, int, str], Mapping[str, Callable]],
           network: str = "vgg19") -> ConvChoice:
    """Resolve ``conv_impl``: explicit forms as given, "auto" forced, GPU or measured.

    Raises:
        ValueError: ``conv_impl`` or ``$NSTLIB_CONV_IMPL`` is not a known form.
    """
    check_choice(conv_impl, CONV_IMPLS, "conv_impl")
    if conv_impl != "auto":
        return ConvChoice(conv_impl, "requested")
    forced = os.environ.get(ENV_VAR, "").strip()
    if forced:
        check_choice(forced, FORMS, ENV_VAR)
        return ConvChoice(forced, f"forced by {ENV_VAR}={forced}")
    if _gpu_visible():
        return ConvChoice("standard", "GPU visible: plain Conv2D (cuDNN), not measured")
    return measured_choice(compute_dtype, last_layer, image_size, make_steps, network)


def _gpu_visible() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__
