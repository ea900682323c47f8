"""Peak resident memory of a few ``nstlib.stylize`` steps, per size, precision and setting.

Each case runs in its own child process (``python memory.py --child SPEC``), so that one
run's allocations do not inflate the next one's peak; the child reports its
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the peak resident set of the whole
process: Python, TensorFlow, the weights and every activation/gradient buffer) once
after building the extractor (the baseline) and once after the run. A child killed by
the kernel for lack of memory is reported as such.

Every case runs ``nstlib.stylize`` itself (random weights, square astronaut content,
square brushstrokes style at the same size unless the case says otherwise) with the
case's settings (e.g. ``compute_dtype="bfloat16"``, ``optimizer="lbfgs"``).

    python benchmarks/memory.py                      # 512/1024/2048 px, float32 and bfloat16
    python benchmarks/memory.py --calibrate OUT.json # the cases nstlib.resources is fitted to

``--calibrate`` writes the file ``tests/test_resources.py`` checks the memory model against
(``benchmarks/results/memory_calibration.json``); run it on an otherwise idle machine with
at least 16 GiB free (the 2048 px float32 case peaks near 13 GiB).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time

import common

CHILD_TIMEOUT_S = 1800

#: The calibration cases: (name, longer side, settings over the defaults, steps).
CALIBRATION_CASES = (
    *((f"float32_{n}", n, {}, 6 if n < 2048 else 2) for n in (256, 512, 1024, 2048)),
    *((f"bfloat16_{n}", n, {"compute_dtype": "bfloat16"}, 6 if n < 2048 else 2)
      for n in (256, 512, 1024, 2048)),
    ("lbfgs_1024", 1024, {"optimizer": "lbfgs"}, 3),
    ("style2048_content256", 256, {"style_size": 2048}, 2),
    ("block3_layers_1024", 1024, {"content_layers": "block3_conv2",
                                  "style_layers": "block1_conv1,block2_conv1,block3_conv1"}, 4),
    ("pyramid3_1024", 1024, {"pyramid_levels": 3}, 3),
)


def child(spec: dict) -> dict:
    """Run in the child process: build, run the steps, report peaks (MiB) and step times."""
    import nstlib
    from nstlib import transfer

    size, steps = int(spec["size"]), int(spec["steps"])
    config = nstlib.StylizeConfig.from_flat(size=size, steps=steps, weights="random",
                                            **{**common.IMAGENET_RECIPE,
                                               **spec.get("overrides", {})})
    content, style = common.square_pair(size)
    if config.style_size is not None:
        style = common.square_pair(config.style_size)[1]
    transfer.extractor_for(config)  # built (and cached for stylize) before the baseline
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    stamps, cpu = [], []

    def stamp(*_):
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())  # every thread of the process: robust to sharing

    result = nstlib.stylize(content, style, config, progress=False, callbacks=[stamp])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # stamps: after step 0 (tracing), ..., after the final eager forward pass
    steps_s = [b - a for a, b in zip(stamps, stamps[1:], strict=False)][:-1]
    cpu_s = [b - a for a, b in zip(cpu, cpu[1:], strict=False)][:-1]
    return {"size": size, "overrides": spec.get("overrides", {}), "steps": steps,
            "content_hw": list(result.record["content_shape"][1:3]),
            "style_hw": list(result.record["style_shape"][1:3]),
            "conv_impl_used": result.record.get("conv_impl_used"),
            "baseline_peak_mib": baseline, "peak_mib": peak,
            "seconds_total": time.perf_counter() - start,
            "seconds_per_step_after_first": steps_s,
            "cpu_seconds_per_step_after_first": cpu_s,
            "finite": bool(all(v == v for v in result.history["total"]))}


def lbfgs_child(n: int, maxcor: int) -> float:
    """Float64 vectors of length n that SciPy's L-BFGS-B with bounds adds to the peak.

    A quadratic in n variables, 15 iterations; the objective's own two temporaries
    (difference and gradient) are taken off.
    """
    import numpy as np
    import scipy.optimize

    x0 = np.random.default_rng(0).random(n)
    target = np.full(n, 0.5)
    before = _vm_hwm()

    def fun(x):
        d = x - target
        return float(d @ d), 2 * d

    scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B",
                            bounds=scipy.optimize.Bounds(0.0, 1.0),
                            options={"maxiter": 15, "maxcor": maxcor, "ftol": 0.0,
                                     "gtol": 0.0})
    return (_vm_hwm() - before) / (8 * n) - 2


def _vm_hwm() -> int:
    """Peak resident bytes of this process image (VmHWM; unlike ru_maxrss, it does not
    start from the parent's resident set at fork)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def measure_lbfgs_vectors(n: int = 3 * 1024 * 1024) -> dict:
    """``lbfgs_child`` in a fresh process, with the SciPy version."""
    import scipy

    from nstlib.resources import LBFGS_MEMORY

    command = [sys.executable, os.path.abspath(__file__), "--lbfgs-child", str(n),
               str(LBFGS_MEMORY)]
    proc = subprocess.run(command, capture_output=True, text=True, check=True,
                          timeout=CHILD_TIMEOUT_S)
    return {"scipy": scipy.__version__, "n": n, "maxcor": LBFGS_MEMORY,
            "float64_vectors": float(proc.stdout.strip().splitlines()[-1])}


def run_child(spec: dict) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    label = spec.get("name", f"{spec['size']}px {spec.get('overrides', {})}")
    common.log(f"memory: {label} in a child process")
    try:
        proc = subprocess.run(command, capture_output=True,
                              text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timeout after {CHILD_TIMEOUT_S} s"}
    if proc.returncode != 0:
        reason = ("killed (SIGKILL: likely out of memory)" if proc.returncode == -9
                  else f"exit code {proc.returncode}")
        tail = proc.stderr.strip().splitlines()[-3:]
        return {**spec, "error": reason, "stderr_tail": tail}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    common.log(f"memory: {label}: peak {out['peak_mib']:.0f} MiB "
               f"(baseline {out['baseline_peak_mib']:.0f} MiB)")
    return {"name": label, **out}


def run(quick: bool = False) -> dict:
    sizes = (128, 256) if quick else (512, 1024, 2048)
    steps = 2
    table = {}
    for size in sizes:
        for dtype in ("float32", "bfloat16"):
            row = run_child({"size": size, "steps": steps,
                             "overrides": {"compute_dtype": dtype}})
            table.setdefault(str(size), {})[dtype] = row
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


def calibrate(path: str, only: str = "") -> dict:
    """Run ``CALIBRATION_CASES`` (or the comma-separated ``only``) and write ``path``.

    This process imports no TensorFlow: a child's ru_maxrss starts from its parent's
    resident set at fork, which must stay below every child's own peak.
    """
    from importlib import metadata

    wanted = set(filter(None, only.split(",")))
    cases = []
    for name, size, overrides, steps in CALIBRATION_CASES:
        if wanted and name not in wanted:
            continue
        cases.append(run_child({"name": name, "size": size, "steps": steps,
                                "overrides": overrides}))
    if wanted and os.path.exists(path):  # re-measured cases replace those in the file
        with open(path) as handle:
            kept = [c for c in json.load(handle)["cases"] if c["name"] not in wanted]
        order = [name for name, *_ in CALIBRATION_CASES]
        cases = sorted(kept + cases, key=lambda c: order.index(c["name"]))
    document = {
        "what": ("peak resident memory (ru_maxrss, MiB) of a fresh process running "
                 "nstlib.stylize (random weights, square images) per case; the cases "
                 "nstlib.resources is fitted to"),
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_model": common.cpu_model(),
        "cpu_flags": common.cpu_flags(),
        "cpu_family": _cpuinfo("cpu family"),
        "isa": ", ".join(["AVX-512" if "avx512f" in common.cpu_flags() else "no AVX-512",
                          "AVX512-BF16" if "avx512_bf16" in common.cpu_flags() else "no BF16",
                          "AMX" if "amx_bf16" in common.cpu_flags() else "no AMX"]),
        "load_average_at_end": common.load_average(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "machine_memory_gib": common.memory_total_gib(),
        "tensorflow": metadata.version("tensorflow"),
        "scipy_lbfgs": measure_lbfgs_vectors(),
        "cases": cases,
    }
    with open(path, "w") as handle:
        json.dump(common.rounded(document), handle, indent=1)
        handle.write("\n")
    return document


def case_config(case: dict):
    """The ``StylizeConfig`` a calibration case ran with."""
    import nstlib.settings

    return nstlib.settings.StylizeConfig.from_flat(
        size=case["size"], steps=case["steps"], weights="random",
        **{**common.IMAGENET_RECIPE, **case["overrides"]})


def is_style_case(case: dict) -> bool:
    """True for a case whose style image is larger than its content (the style-pass peak)."""
    return (case["overrides"].get("style_size") or case["size"]) > case["size"]


#: The cases ``fit`` fits the step terms to (the others check the model).
FIT_CASES = tuple(f"{dtype}_{n}" for dtype in ("float32", "bfloat16")
                  for n in (256, 512, 1024, 2048))


def fit(document: dict) -> dict:
    """Least-squares fit (relative residuals) of ``nstlib.resources``' constants.

    The step terms (base, k_net, k_loss) are fitted to ``FIT_CASES``; k_style to the
    cases whose style image is larger than the content; the step rates are the median
    over the 512-2048 px ``FIT_CASES`` of (conv + Gram FLOPs) / measured seconds per step.

    Returns:
        {"BASE_BYTES", "K_NET", "K_LOSS", "K_STYLE", "STEP_GFLOPS"}.
    """
    import numpy as np

    from nstlib import resources

    cases = {case["name"]: case for case in document["cases"] if "error" not in case}
    rows, targets = [], []
    for name in FIT_CASES:
        case = cases[name]
        config, hw = case_config(case), case["content_hw"]
        net, loss = resources.activation_bytes(config, hw)
        counted = resources.optimizer_bytes(config, hw) + _input_bytes(case)
        peak = case["peak_mib"] * 2**20
        rows.append(np.array([1.0, net, loss]) / peak)
        targets.append((peak - counted) / peak)
    (base, k_net, k_loss), *_ = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)
    style = [c for c in cases.values() if is_style_case(c)]
    k_style = float(np.median([(c["peak_mib"] * 2**20 - base - _input_bytes(c))
                               / resources.activation_bytes(case_config(c), c["style_hw"])[0]
                               for c in style])) if style else 0.0
    cores = document.get("usable_cores", 2)
    rates = {}
    for dtype in ("float32", "bfloat16"):
        values = [step_gflops(case, cores) for case in cases.values()
                  if case["name"] in {f"{dtype}_{n}" for n in (512, 1024, 2048)}]
        values = [v for v in values if v is not None]
        rates[dtype] = float(np.median(values)) if values else 0.0
    return {"BASE_BYTES": int(base), "K_NET": float(k_net), "K_LOSS": float(k_loss),
            "K_STYLE": k_style, "STEP_GFLOPS": rates}


def step_gflops(case: dict, cores: int) -> float | None:
    """(conv + Gram FLOPs) per step / seconds per step of a case, in GFLOP/s.

    The seconds are the median process CPU time of a step (all threads) divided by the
    cores, i.e. the wall time on an otherwise idle machine if the step keeps every core
    busy: on a shared machine that is steadier than wall time. Cases measured without CPU
    times use the median wall time.
    """
    from nstlib import resources

    cpu = case.get("cpu_seconds_per_step_after_first")
    wall = case["seconds_per_step_after_first"]
    if not cpu and not wall:
        return None
    seconds = _median(cpu) / cores if cpu else _median(wall)
    return resources.step_flop_count(case_config(case), case["content_hw"]) / seconds / 1e9


def _median(values) -> float:
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def print_fit(path: str) -> None:
    """The fitted constants, then predicted vs measured peak and step time per case."""
    from nstlib import resources

    with open(path) as handle:
        document = json.load(handle)
    constants = fit(document)
    print(json.dumps(constants, indent=1))
    for name, value in constants.items():  # predict with the fitted constants
        setattr(resources, name, value)
    for case in document["cases"]:
        if "error" in case:
            print(f"{case['name']}: {case['error']}")
            continue
        config = case_config(case)
        predicted = resources.predict_peak_bytes(config, case["content_hw"], case["style_hw"])
        measured = case["peak_mib"] * 2**20
        times = case["seconds_per_step_after_first"]
        wall = _median(times) if times else float("nan")
        cpu = case.get("cpu_seconds_per_step_after_first")
        cores = document.get("usable_cores", 2)
        idle = _median(cpu) / cores if cpu else float("nan")
        estimate = resources.predict_step_seconds(config, case["content_hw"])
        print(f"{case['name']:22s} measured {measured / 2**30:6.2f} GiB  predicted "
              f"{predicted / 2**30:6.2f} GiB  error {predicted / measured - 1:+6.1%}   "
              f"step: wall {wall:7.2f} s, cpu/cores {idle:7.2f} s, estimated {estimate:7.2f} s")


def _input_bytes(case: dict) -> int:
    """The loaded input images (counted by the model): content and style as loaded."""
    from nstlib import resources

    return resources.INPUT_BYTES_PER_PIXEL * sum(h * w for h, w in (case["content_hw"],
                                                                    case["style_hw"]))


def _cpuinfo(key: str) -> str | None:
    """One field of /proc/cpuinfo (first processor), e.g. "cpu family" -> "26"."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def main(argv=None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--child":
        print(json.dumps(child(json.loads(argv[1]))))
        return
    if argv and argv[0] == "--lbfgs-child":
        print(lbfgs_child(int(argv[1]), int(argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 and 256 px only")
    parser.add_argument("--calibrate", metavar="OUT.json", default=None,
                        help="run the calibration cases and write them to OUT.json")
    parser.add_argument("--only", default="", help="with --calibrate: comma-separated "
                        "case names (default: all)")
    parser.add_argument("--fit", metavar="CALIBRATION.json", default=None,
                        help="print the nstlib.resources constants fitted to a calibration "
                             "file and each case's prediction error")
    args = parser.parse_args(argv)
    if args.fit:
        print_fit(args.fit)
        return
    if args.calibrate:
        calibrate(args.calibrate, args.only)
        return
    common.emit(common.rounded({"machine": common.machine_info(), "memory": run(args.quick)}))


if __name__ == "__main__":
    sys.exit(main())
