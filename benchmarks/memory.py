"""Peak resident memory of a few ``nstlib.stylize`` steps at 512, 1024 and 2048 px.

Each (size, precision) runs in its own child process (``python memory.py --child``), so
that one run's allocations do not inflate the next one's peak; the child reports its
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the peak resident set of the whole
process: Python, TensorFlow, the weights and every activation/gradient buffer) once
after building the extractor (the baseline) and once after the run. A child killed by
the kernel for lack of memory is reported as such.

float32 runs ``nstlib.stylize`` itself (defaults, random weights, square images, style
image at the same size); bfloat16 runs the same objective with
``FeatureExtractor(compute_dtype="bfloat16")`` through ``nstlib.minimize``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import common

CHILD_TIMEOUT_S = 1800


def child(size: int, dtype: str, steps: int) -> dict:
    """Run in the child process: build, run ``steps`` steps, report peaks (MiB)."""
    import nstlib
    from nstlib import transfer

    content, style = common.square_pair(size)
    if dtype == "float32":  # the extractor stylize will reuse (its cache)
        extractor = transfer.cached_extractor(nstlib.DEFAULT_CONTENT_LAYERS,
                                              nstlib.DEFAULT_STYLE_LAYERS, "random", "max", 0)
    else:
        extractor = nstlib.FeatureExtractor(weights="random", compute_dtype=dtype)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    stamps = []
    if dtype == "float32":
        result = nstlib.stylize(content, style, size=size, steps=steps, weights="random",
                                progress=False,
                                callbacks=[lambda *a: stamps.append(time.perf_counter())])
    else:
        objective = nstlib.StyleTransferObjective(extractor, content, style)  # stylize's loss
        result = nstlib.minimize(objective, content, steps=steps, progress=False,
                                 callbacks=[lambda *a: stamps.append(time.perf_counter())])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steps_s = [b - a for a, b in zip(stamps, stamps[1:], strict=False)][:-1]
    return {"size": size, "dtype": dtype, "steps": steps, "baseline_peak_mib": baseline,
            "peak_mib": peak, "seconds_total": time.perf_counter() - start,
            "seconds_per_step_after_first": steps_s,
            "finite": bool(all(v == v for v in result.history["total"]))}


def run_child(size: int, dtype: str, steps: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", str(size), dtype,
               str(steps)]
    common.log(f"memory: {size}px {dtype} in a child process")
    try:
        proc = subprocess.run(command, capture_output=True,
                              text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"size": size, "dtype": dtype, "error": f"timeout after {CHILD_TIMEOUT_S} s"}
    if proc.returncode != 0:
        reason = ("killed (SIGKILL: likely out of memory)" if proc.returncode == -9
                  else f"exit code {proc.returncode}")
        tail = proc.stderr.strip().splitlines()[-3:]
        return {"size": size, "dtype": dtype, "error": reason, "stderr_tail": tail}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    common.log(f"memory: {size}px {dtype}: peak {out['peak_mib']:.0f} MiB "
               f"(baseline {out['baseline_peak_mib']:.0f} MiB)")
    return out


def run(quick: bool = False) -> dict:
    sizes = (128, 256) if quick else (512, 1024, 2048)
    steps = 2
    rows = [run_child(size, dtype, steps) for size in sizes for dtype in ("float32",
                                                                          "bfloat16")]
    table = {}
    for row in rows:
        table.setdefault(str(row["size"]), {})[row["dtype"]] = row
    total_gib = common.memory_total_gib()
    largest = table[str(sizes[-1])]
    return {
        "what": ("peak resident memory (ru_maxrss of a child process per size and "
                 f"precision) of nstlib.stylize with {steps} steps (the first includes "
                 "tracing; building the targets and the final eager forward pass are "
                 "included too)"),
        "machine_memory_gib": total_gib,
        "sizes": table,
        "largest_runs": {dtype: "error" not in row for dtype, row in largest.items()},
    }


def main(argv=None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--child":
        size, dtype, steps = int(argv[1]), argv[2], int(argv[3])
        print(json.dumps(child(size, dtype, steps)))
        return
    args = common.parse_args(__doc__.splitlines()[0], argv)
    common.emit(common.rounded({"machine": common.machine_info(), "memory": run(args.quick)}))


if __name__ == "__main__":
    sys.exit(main())
