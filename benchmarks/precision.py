"""bfloat16 convolutions vs float32: speed per step and the change in the final loss.

Two runs of the same objective (``nstlib.stylize``'s default losses and weights, content
block4_conv2, five style layers, Adam, content initialisation, random weights) alternate
step by step (``common.TurnTaking``): one with the float32 ``FeatureExtractor``, one
with ``FeatureExtractor(compute_dtype="bfloat16")`` (convolution stack in bfloat16 via
the Keras "mixed_bfloat16" policy; Gram matrices and losses in float32). Both final
images are then scored with the *float32* objective, so the loss change measures the
effect of bfloat16 on the optimisation, not on the loss evaluation. One large
convolution (256 -> 256 channels, 128 x 128) is timed in both precisions as well
(on CPUs with AMX/AVX512-BF16 oneDNN runs bfloat16 on those units).

Verdict: bfloat16 is worth offering where it is >= 1.2x faster per step and changes
the final float32 loss by less than 2 %.
"""

from __future__ import annotations

import sys

import common
import flops
import reference_tutorial as ref

MIN_SPEEDUP = 1.2
MAX_LOSS_CHANGE = 0.02


def run(quick: bool = False) -> dict:
    import numpy as np

    import nstlib

    size, steps, warmup = (64, 20, 2) if quick else (256, 200, 2)
    content, style = common.square_pair(size)

    def objective(dtype):
        extractor = nstlib.FeatureExtractor(weights="random", compute_dtype=dtype)
        return nstlib.StyleTransferObjective(extractor, content, style)  # stylize's loss

    objectives = {"float32": objective("float32"), "bfloat16": objective("bfloat16")}
    conv32, conv_flop = ref.limit_conv("float32")
    conv16, _ = ref.limit_conv("bfloat16")
    reps = steps + warmup
    participants = {
        f"step_{dtype}": (lambda cb, o=obj: nstlib.minimize(o, content, steps=steps,
                                                              callbacks=[cb], progress=False))
        for dtype, obj in objectives.items()
    }
    participants["conv_float32"] = common.loop(conv32, min(reps, 30))
    participants["conv_bfloat16"] = common.loop(conv16, min(reps, 30))
    taking = common.TurnTaking(participants)
    raw = taking.run()
    stats = {name: common.summary(common.minimize_steps(raw[name], warmup)
                                  if name.startswith("step") else raw[name][warmup:])
             for name in participants}
    final32 = objectives["float32"]
    results = {dtype: taking.results[f"step_{dtype}"] for dtype in objectives}
    losses = {dtype: {k: float(v) for k, v in final32(r.image).items()}
              for dtype, r in results.items()}
    change = (losses["bfloat16"]["total"] - losses["float32"]["total"]) / abs(
        losses["float32"]["total"])
    diff = np.abs(results["bfloat16"].image.numpy() - results["float32"].image.numpy())
    mse = float(np.mean(diff**2))
    speedup = common.ratio(stats["step_float32"]["median"], stats["step_bfloat16"]["median"])
    step_flop = flops.step_flops(size, size)["conv_total"]
    initial = float(final32(content)["total"])
    wins = speedup is not None and speedup >= MIN_SPEEDUP and abs(change) < MAX_LOSS_CHANGE
    common.log(f"precision {size}px: bf16 speed-up {speedup:.2f}x, final loss change "
               f"{100 * change:+.2f}% -> {'keep' if wins else 'do not use'}")
    return {
        "what": ("float32 vs bfloat16 convolutions (Grams/losses float32): seconds per step "
                 f"alternating, and the float32 objective of both results after {steps} "
                 "Adam steps"),
        "image": [1, size, size, 3], "steps": steps, "warmup_steps": warmup,
        "seconds_per_step": stats,
        "gflops": {k: step_flop / stats[f"step_{k}"]["median"] / 1e9 for k in objectives},
        "limit_conv_gflops": {k: conv_flop / stats[f"conv_{k}"]["median"] / 1e9
                              for k in objectives},
        "speedup_bf16": speedup,
        "initial_loss_float32": initial,
        "final_losses_scored_float32": losses,
        "final_loss_change_relative": change,
        "loss_decrease_float32": initial - losses["float32"]["total"],
        "image_difference": {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
                             "psnr_db": float(10 * np.log10(1.0 / mse)) if mse > 0 else None},
        "criteria": {"min_speedup": MIN_SPEEDUP, "max_relative_loss_change": MAX_LOSS_CHANGE},
        "bf16_wins_here": wins,
        "gpu_note": "GPU precision results are in the 'gpu' benchmark",
    }


def main(argv=None) -> None:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    common.emit(common.rounded({"machine": common.machine_info(),
                                "weights_note": common.NOTE_RANDOM_WEIGHTS,
                                "precision": run(args.quick)}))


if __name__ == "__main__":
    sys.exit(main())
