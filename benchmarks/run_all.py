"""Run the whole benchmark suite and print ONE JSON document on stdout.

Each benchmark runs in its own Python process (``python benchmarks/<name>.py``), so that
process-wide TensorFlow state (op determinism switched on by ``stylize``, memory
high-water marks, traced functions) does not leak from one into the next; their JSON
documents are gathered under "benchmarks", with the machine described once. Progress
goes to stderr.

    python benchmarks/run_all.py            # the real measurement (59 min, idle 2-core AVX-512)
    python benchmarks/run_all.py --quick    # a short smoke run for development
    python benchmarks/run_all.py --only step_time,memory

Timings are only meaningful on an otherwise idle machine; the load average at the
start of each benchmark is recorded next to its results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import common

#: Benchmark scripts in run order, and the key of their result in their JSON document.
BENCHMARKS = {
    "time_to_picture": "time_to_picture",
    "step_time": "step_time",
    "reference_tutorial": "reference_tutorial",
    "precision": "precision",
    "time_to_image": "time_to_image",
    "time_to_quality": "time_to_quality",
    "memory": "memory",
    "gpu": "gpu",
}

#: Facts of the machine record repeated with every benchmark's result.
STAMP = ("date_utc", "cpu_model", "isa_class", "tensorflow")


def run_one(name: str, quick: bool) -> tuple[dict | None, str | None, float]:
    command = [sys.executable, os.path.join(common.BENCH_DIR, f"{name}.py")]
    if quick:
        command.append("--quick")
    common.log(f"=== {name} {'(quick)' if quick else ''}")
    start = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=None, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return None, f"{name} exited with code {proc.returncode}", seconds
    try:
        return json.loads(proc.stdout), None, seconds
    except json.JSONDecodeError as err:
        return None, f"{name} printed no valid JSON ({err})", seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--only", default="",
                        help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(BENCHMARKS)}")
    started = time.perf_counter()
    document = {
        "suite": "nstlib benchmarks",
        "quick": args.quick,
        "machine": common.machine_info(),
        "notes": [
            common.NOTE_RANDOM_WEIGHTS,
            "Medians of steps alternated between methods in one process; still, timings "
            "are only meaningful on an otherwise idle machine (see each benchmark's "
            "load_average_at_start).",
        ],
        "benchmarks": {},
        "errors": {},
        "seconds": {},
    }
    for name in names:
        result, error, seconds = run_one(name, args.quick)
        document["seconds"][name] = round(seconds, 1)
        if error:
            common.log(f"!!! {error}")
            document["errors"][name] = error
            continue
        body = {k: v for k, v in result.items() if k not in ("machine", "weights_note")}
        key = BENCHMARKS[name]
        entry = body.get(key, body) if key in body else body
        machine = result.get("machine", {})
        if isinstance(entry, dict):
            entry = {"load_average_at_start": machine.get("load_average_1_5_15"),
                     "stamp": {k: machine.get(k) for k in STAMP}, **entry}
        elif entry is None:  # "gpu": null with its reason next to it
            entry = {"result": None, **{k: v for k, v in body.items() if k != key}}
        document["benchmarks"][name] = entry
    document["seconds"]["total"] = round(time.perf_counter() - started, 1)
    common.emit(document)
    return 1 if document["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
