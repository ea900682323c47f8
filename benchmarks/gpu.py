"""GPU: milliseconds per step at 512 and 1024 px, float32 and mixed precision, with the
tutorial's step alongside.

Runs only when ``tf.config.list_physical_devices("GPU")`` finds a GPU; otherwise the
document says ``"gpu": null`` with the reason. Per size, four step loops alternate one
step at a time (``common.TurnTaking``): nstlib float32 (``nstlib.stylize``'s objective
through ``nstlib.minimize``), nstlib mixed precision (``FeatureExtractor(
compute_dtype="bfloat16")``: bfloat16 convolutions, float32 Grams/losses/image; no
loss scaling is needed with bfloat16), the tutorial's float32 step
(``reference_tutorial``) and the limit convolution in both precisions. nstlib uses the
tutorial's layers (content block5_conv2) so that the three steps do the same network
work. TensorFlow's TF32 setting (on by default on Ampere and newer: float32
convolutions use TF32 tensor cores) is recorded.

``--force`` runs the same code on the CPU at small sizes (to test this script on
machines without a GPU; the numbers then mean nothing for GPUs).
"""

from __future__ import annotations

import argparse
import sys

import common
import flops
import reference_tutorial as ref


def measure(size: int, steps: int, warmup: int) -> dict:
    import nstlib

    content, style = common.square_pair(size)
    total = steps + warmup
    participants = {}
    for dtype in ("float32", "bfloat16"):
        extractor = nstlib.FeatureExtractor(ref.TUTORIAL_CONTENT_LAYERS,
                                            ref.TUTORIAL_STYLE_LAYERS, weights="random",
                                            compute_dtype=dtype)
        objective = ref.nstlib_objective(content, style, extractor)
        participants[f"nstlib_{dtype}"] = (
            lambda cb, o=objective: nstlib.minimize(o, content, steps=total,
                                                    optimizer=ref.tutorial_optimizer(),
                                                    callbacks=[cb], progress=False))
        if dtype == "float32":
            loss = ref.TutorialLoss(content, style, ref.TutorialExtractor(extractor))
            _, reference_step = ref.tutorial_trainer(loss, content)
            participants["reference_float32"] = common.loop(
                lambda s=reference_step: s().numpy(), total)
    conv_flop = None
    for dtype in ("float32", "bfloat16"):
        conv, conv_flop = ref.limit_conv(dtype)
        participants[f"limit_conv_{dtype}"] = common.loop(conv, total)
    raw = common.TurnTaking(participants).run()
    stats = {name: common.summary(common.minimize_steps(raw[name], warmup)
                                  if name.startswith("nstlib") else raw[name][warmup:])
             for name in participants}
    step_flop = flops.step_flops(size, size, ref.TUTORIAL_CONTENT_LAYERS,
                                 ref.TUTORIAL_STYLE_LAYERS)["conv_total"]
    ms = {name: 1000 * s["median"] for name, s in stats.items()}
    out = {"image": [1, size, size, 3], "ms_per_step": ms, "seconds_per_step": stats,
           "step_conv_gflop": step_flop / 1e9,
           "ratio_nstlib_float32_over_reference": common.ratio(ms["nstlib_float32"],
                                                               ms["reference_float32"]),
           "speedup_mixed_over_float32": common.ratio(ms["nstlib_float32"],
                                                      ms["nstlib_bfloat16"])}
    for dtype in ("float32", "bfloat16"):
        rate = conv_flop / stats[f"limit_conv_{dtype}"]["median"]
        out[f"limit_conv_{dtype}_gflops"] = rate / 1e9
        out[f"nstlib_{dtype}_percent_of_limit"] = (
            100 * (step_flop / rate) / stats[f"nstlib_{dtype}"]["median"])
    common.log(f"gpu {size}px: nstlib fp32 {ms['nstlib_float32']:.1f} ms, mixed "
               f"{ms['nstlib_bfloat16']:.1f} ms, reference {ms['reference_float32']:.1f} ms")
    return out


def run(quick: bool = False, force: bool = False) -> dict:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not force:
        return {"gpu": None, "reason": "no GPU visible to TensorFlow "
                "(tf.config.list_physical_devices('GPU') is empty); skipped"}
    sizes = (64, 128) if quick or not gpus else (512, 1024)
    steps, warmup = (3, 1) if quick or not gpus else (20, 3)
    return {
        "gpu": {
            "devices": common.machine_info()["gpus"] if gpus else [],
            "forced_on_cpu": not gpus,
            "tf32_enabled": tf.config.experimental.tensor_float_32_execution_enabled(),
            "what": ("ms per step (median after warm-up, alternating): nstlib float32, nstlib "
                     "mixed precision (bfloat16 convolutions), tutorial step float32; "
                     "content block5_conv2 for all"),
            "sizes": {str(size): measure(size, steps, warmup) for size in sizes},
        }
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--force", action="store_true",
                        help="run on the CPU when there is no GPU (testing only)")
    args = parser.parse_args(argv)
    common.emit(common.rounded({"machine": common.machine_info(),
                                **run(args.quick, args.force)}))


if __name__ == "__main__":
    sys.exit(main())
