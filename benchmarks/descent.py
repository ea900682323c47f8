"""Does the default method end below its starting loss at every size and step count?

Issue 26 asks that ``stylize``'s default (Adam, cosine from 0.1, under ``minimize``'s guard)
lowers the loss for every size and step count a user can ask for: noise and natural images,
32 to 1024 px, 5 to 500 steps. The tests cover the mechanism and a small grid with random
weights and shallow layers (tests/test_optimize.py); this script runs the whole grid with
the default settings (weights "auto": what a user gets here), and with ``--unguarded``
also each run without the guard, to show where it matters.

For each cell it reports the loss of the returned image over the starting loss
("returned_ratio"; the guard's promise is < 1), the last image's ("last_ratio"), the rate
used (the guard may have halved it), the row kept and the seconds. Noise: content and style
both uniform noise, seeded. Natural: the bundled chelsea with brushstrokes.

    python benchmarks/descent.py --quick                 # 32 and 64 px, 5 and 20 steps
    python benchmarks/descent.py                         # 32-1024 px x 5-500 steps (hours)
    python benchmarks/descent.py --sizes 32,48 --steps 12,15 --unguarded
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import common

SIZES = (32, 64, 128, 256, 512, 1024)
STEPS = (5, 20, 120, 500)
QUICK_SIZES, QUICK_STEPS = (32, 64), (5, 20)
INPUTS = ("noise", "natural")


def inputs_for(kind: str, size: int, seed: int = 0):
    """(content, style) for a cell: seeded uniform noise (size x size) or a bundled pair."""
    import numpy as np

    if kind == "natural":
        return "chelsea", "brushstrokes"
    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(0, 1, (size, size, 3)).astype(np.float32) for _ in range(2))


def measure(kind: str, size: int, steps: int, guard: bool | None = None,
            weights: str = "auto") -> dict:
    """One default ``stylize`` run; its losses relative to the start."""
    import nstlib

    content, style = inputs_for(kind, size)
    began = time.perf_counter()
    result = nstlib.stylize(content, style, size=size, steps=steps, weights=weights,
                            guard=guard, progress=False)
    seconds = time.perf_counter() - began
    total = result.history["total"]
    return {"start": float(total[0]), "returned_ratio": result.losses["total"] / total[0],
            "last_ratio": float(total[-1] / total[0]),
            "min_ratio": float(total.min() / total[0]),
            "learning_rate": result.record["learning_rate"], "guard": result.record["guard"],
            "kept_row": result.history.kept, "weights": result.record["weights_source"],
            "seconds": seconds}


def run(sizes, steps_list, unguarded: bool = False, weights: str = "auto") -> dict:
    cells = []
    for kind, size, steps in itertools.product(INPUTS, sizes, steps_list):
        cell = {"inputs": kind, "size": size, "steps": steps,
                "default": measure(kind, size, steps, None, weights)}
        if unguarded:
            cell["unguarded"] = measure(kind, size, steps, False, weights)
        common.log(f"{kind} {size} px {steps} steps: returned "
                   f"{cell['default']['returned_ratio']:.3f} x start"
                   + (f" (unguarded {cell['unguarded']['returned_ratio']:.3f})"
                      if unguarded else ""))
        cells.append(cell)
    raised = [(c["inputs"], c["size"], c["steps"]) for c in cells
              if c["default"]["returned_ratio"] >= 1]
    out = {"what": "loss of the image stylize returns / starting loss, default settings",
           "cells": cells, "default_lowers_every_cell": not raised,
           "cells_not_lowered": raised}
    if unguarded:
        out["cells_not_lowered_unguarded"] = [
            (c["inputs"], c["size"], c["steps"]) for c in cells
            if c["unguarded"]["returned_ratio"] >= 1]
    return out


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 and 64 px, 5 and 20 steps")
    parser.add_argument("--sizes", type=_ints, default=None, help="e.g. 32,48,64")
    parser.add_argument("--steps", type=_ints, default=None, help="e.g. 5,12,500")
    parser.add_argument("--unguarded", action="store_true",
                        help="also run each cell with guard=False")
    parser.add_argument("--weights", default="auto", help="stylize's weights (default auto)")
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    common.emit(common.rounded({"machine": common.machine_info(),
                                "descent": run(sizes, steps, args.unguarded, args.weights)}))


if __name__ == "__main__":
    sys.exit(main())
