"""Seconds per optimisation step of ``nstlib.stylize`` at 128, 256 and 512 px, and GFLOP/s.

For each size, three step loops alternate one step at a time in one process
(``common.TurnTaking``), so that a drifting machine load affects them alike:

* ``stylize``: ``nstlib.stylize`` itself with its defaults (content block4_conv2, style
  block1_conv1 ... block5_conv1, Adam, normalised losses), random weights, square
  astronaut / brushstrokes images; the time of step k is measured between the
  callbacks of steps k-1 and k (the compiled step plus the library's per-step
  bookkeeping);
* ``standard_conv`` and ``transposed_conv``: the same objective with
  ``FeatureExtractor(conv_impl="standard")`` (plain ``Conv2D``) and
  ``conv_impl="transposed"`` (the forward convolutions as transposed convolutions, see
  ``nstlib.features.conv2d_same_transposed``) through ``nstlib.minimize``; ``stylize``
  uses ``conv_impl="auto"``, the form measured faster on this machine
  (``nstlib.conv_choice``; which one and why is in ``conv_impl_of_stylize``);
* ``stylize_bf16``: the same objective with ``FeatureExtractor(compute_dtype="bfloat16")``
  through ``nstlib.minimize`` (convolutions in bfloat16, Grams and losses in float32);
* ``limit_conv``: one 3x3 convolution 256 -> 256 channels at 128 x 128 (forward,
  float32), whose GFLOP/s defines the practical limit of a step.

The first ``warmup`` steps (tracing, allocation) are dropped; medians of the rest are
reported. GFLOP/s = convolution FLOPs of one step (``flops.step_flops``: forward to
block5_conv1 plus every conv's input gradient; no weight gradients) / median seconds.
"""

from __future__ import annotations

import argparse
import sys

import common
import flops
import reference_tutorial as ref

#: Reference points of the issue on the 2-core benchmark CPU (seconds per step).
REFERENCE_POINTS = {256: 0.55, 512: 2.2}


def measure(size: int, steps: int, warmup: int, bf16: bool = True) -> dict:
    """Alternated step times of stylize and its variants at one size (see the module)."""
    import nstlib

    content, style = common.square_pair(size)
    total = steps + warmup
    participants = {
        "stylize": lambda cb: nstlib.stylize(content, style, size=size, steps=total,
                                             weights="random", callbacks=[cb],
                                             progress=False, **common.IMAGENET_RECIPE),
    }
    variants = {"standard_conv": {"conv_impl": "standard"},
                "transposed_conv": {"conv_impl": "transposed"}}
    if bf16:
        variants["stylize_bf16"] = {"compute_dtype": "bfloat16"}
    for name, options in variants.items():
        extractor = nstlib.FeatureExtractor(weights="random", **options)
        objective = nstlib.StyleTransferObjective(extractor, content, style)  # stylize's loss
        participants[name] = lambda cb, o=objective: nstlib.minimize(
            o, content, steps=total, callbacks=[cb], progress=False)
    conv, conv_flop = ref.limit_conv()
    participants["limit_conv"] = common.loop(conv, total)
    taking = common.TurnTaking(participants)
    raw = taking.run()
    stats = {name: common.summary(common.minimize_steps(raw[name], warmup)
                                  if name != "limit_conv" else raw[name][warmup:])
             for name in participants}
    step = flops.step_flops(size, size)
    conv_rate = conv_flop / stats["limit_conv"]["median"]
    limit_seconds = step["conv_total"] / conv_rate
    out = {"stamp": common.stamp(), "image": [1, size, size, 3], "seconds_per_step": stats,
           "step_conv_gflop": step["conv_total"] / 1e9, "step_gram_gflop": step["gram"] / 1e9,
           "limit_conv_gflops": conv_rate / 1e9, "limit_seconds_per_step": limit_seconds}
    for name in participants:
        if name == "limit_conv":
            continue
        median = stats[name]["median"]
        out[f"{name}_gflops"] = step["conv_total"] / median / 1e9
        out[f"{name}_percent_of_float32_limit"] = 100 * limit_seconds / median
    record = taking.results["stylize"].record
    out["conv_impl_of_stylize"] = {"used": record["conv_impl_used"],
                                   "reason": record.get("conv_impl_reason")}
    out["speedup_over_standard_conv"] = common.ratio(stats["standard_conv"]["median"],
                                                     stats["stylize"]["median"])
    out["transposed_speedup_over_standard"] = common.ratio(
        stats["standard_conv"]["median"], stats["transposed_conv"]["median"])
    if bf16:
        out["bf16_speedup"] = common.ratio(stats["stylize"]["median"],
                                           stats["stylize_bf16"]["median"])
    if size in REFERENCE_POINTS:
        out["reference_point_seconds"] = REFERENCE_POINTS[size]
        out["within_reference_point"] = stats["stylize"]["median"] <= REFERENCE_POINTS[size]
    common.log(f"step time {size}px: stylize {stats['stylize']['median']:.3f} s "
               f"({out['stylize_gflops']:.0f} GFLOP/s, "
               f"{out['stylize_percent_of_float32_limit']:.0f}% of limit), standard conv "
               f"{stats['standard_conv']['median']:.3f} s, transposed conv "
               f"{stats['transposed_conv']['median']:.3f} s"
               + (f", bf16 {stats['stylize_bf16']['median']:.3f} s" if bf16 else ""))
    return out


def run(quick: bool = False, sizes=None, steps: int | None = None, bf16: bool = True) -> dict:
    """Every size's measurement (default 128, 256, 512 px; quick: 64, 128 px, 3 steps)."""
    sizes = sizes or ((64, 128) if quick else (128, 256, 512))
    steps, warmup = (steps or 3, 1) if quick else (steps or 10, 2)
    return {
        "what": ("seconds per optimisation step of nstlib.stylize (defaults, random weights, "
                 "square images), alternating with the standard and transposed convolution "
                 "forms, the bfloat16 extractor and the limit convolution; medians after "
                 "warm-up"),
        "flop_counting": flops.WHAT_IS_COUNTED,
        "layers": {"content": list(flops.DEFAULT_CONTENT_LAYERS),
                   "style": list(flops.DEFAULT_STYLE_LAYERS)},
        "steps_timed": steps, "warmup_steps": warmup,
        "sizes": {str(size): measure(size, steps, warmup, bf16) for size in sizes},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats (development smoke run)")
    parser.add_argument("--sizes", type=lambda text: [int(v) for v in text.split(",")],
                        help="comma-separated sizes in px (default 128,256,512)")
    parser.add_argument("--steps", type=int, help="timed steps per method (default 10)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 extractor")
    args = parser.parse_args(argv)
    common.emit(common.rounded({"machine": common.machine_info(),
                                "weights_note": common.NOTE_RANDOM_WEIGHTS,
                                "step_time": run(args.quick, args.sizes, args.steps,
                                                 not args.no_bf16)}))


if __name__ == "__main__":
    sys.exit(main())
