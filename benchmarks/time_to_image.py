"""Wall-clock time to a good image: nstlib's methods vs 1000 steps of the tutorial's Adam.

The target is the loss that the reference (``reference_tutorial``: the TensorFlow
tutorial's training step) reaches after 1000 Adam updates, under the *reference's* loss
definition. Each nstlib method minimises that same loss (``ReferenceLoss``: the
tutorial's formula on nstlib's ``FeatureExtractor``; ``tests/test_benchmarks_smoke.py``
checks it against the tutorial's own Keras model), so the comparison is about the
optimiser and its schedule, not the loss. Same images for all: content "chelsea",
style "brushstrokes", 256 px longer side (170 x 256).

Phase 1 runs the reference alone for 1000 steps: its final loss is the target and its
wall-clock (first step with tracing included) the reference time. Phase 2 runs each
nstlib method until its image reaches the target, or until it has used
``cap × reference time`` (then it is reported as not reached). The method's clock
starts when its ``nstlib.minimize`` call starts (tracing included) and stops at the
callback of the first image at or below the target. During a method's first
``PACE_STEPS`` steps, steps of the reference alternate with it (``common.TurnTaking``;
waiting time is not counted): they give the reference's step time under the same
machine load, and so a second, load-robust ratio:
(method seconds) / (reference first step + 999 × reference median step now).

Methods whose own loss is not exactly the reference's (bfloat16 convolutions) are
checked with the float32 reference loss whenever their own loss comes within
``CHECK_MARGIN`` of the target; those checks are not counted in their time, and the
loss reported is always the float32 one.

Loss values, and so the step counts, depend on the VGG19 weights (random here).
"""

from __future__ import annotations

import sys
import time

import common
import flops
import reference_tutorial as ref

CONTENT, STYLE = "chelsea", "brushstrokes"
#: A bfloat16 method's own loss must be within this factor of the target before its
#: image is checked with the float32 reference loss.
CHECK_MARGIN = 1.03
#: Reference steps alternated with the first steps of each method.
PACE_STEPS = 10

#: The methods tried, in order: (description, settings). "cap" is the largest time
#: allowed, as a fraction of the reference time.
METHODS = {
    "adam_cosine_bf16": ("Adam (beta_1 0.9), learning rate 0.03 decayed to 5% by a cosine over "
                         "1200 steps, bfloat16 convolutions: stylize(..., schedule='cosine', "
                         "compute_dtype='bfloat16') (development runs: the target at step "
                         "~925; 0.02 over 1500 steps: ~1225)",
                         {"kind": "adam", "learning_rate": 0.03, "horizon": 1200,
                          "dtype": "bfloat16", "cap": 0.5}),
    "adam_cosine": ("Adam (beta_1 0.9), learning rate 0.05 decayed to 5% by a cosine over "
                    "1000 steps, float32 (development run: reached the target at step 603)",
                    {"kind": "adam", "learning_rate": 0.05, "horizon": 1000,
                     "dtype": "float32", "cap": 0.7}),
    "lbfgs": ("L-BFGS-B (nstlib optimizer='lbfgs', SciPy, 10 corrections), float32",
              {"kind": "lbfgs", "dtype": "float32", "cap": 0.1}),
}


class ReferenceLoss:
    """The tutorial's loss (see ``reference_tutorial.TutorialLoss``) on nstlib's network.

    total = 1e-2 / 5 · Σ_l mean((G_l − A_l)²) + 1e4 · mean((F − P)²) with Grams divided
    by H·W, style layers block1_conv1 ... block5_conv1, content block5_conv2.

    Args:
        content, style: (1, H, W, 3) images in [0, 1].
        compute_dtype: The extractor's ("float32" or "bfloat16"); Grams and losses are
            float32 either way.
    """

    def __init__(self, content, style, compute_dtype: str = "float32", seed: int = 0):
        import tensorflow as tf

        import nstlib

        self.extractor = nstlib.FeatureExtractor(ref.TUTORIAL_CONTENT_LAYERS,
                                                 ref.TUTORIAL_STYLE_LAYERS, weights="random",
                                                 seed=seed, compute_dtype=compute_dtype)
        self.style_weight = ref.TUTORIAL_STYLE_WEIGHT
        self.content_weight = ref.TUTORIAL_CONTENT_WEIGHT
        self.style_targets = [tf.constant(nstlib.gram_matrix(f))
                              for f in self.extractor(style).style]
        self.content_targets = [tf.constant(f) for f in self.extractor(content).content]

    def __call__(self, image):
        import tensorflow as tf

        import nstlib

        features = self.extractor(image)
        style = tf.add_n([tf.reduce_mean(tf.square(nstlib.gram_matrix(f) - t))
                          for f, t in zip(features.style, self.style_targets, strict=True)])
        style *= self.style_weight / len(self.style_targets)
        content = tf.add_n([tf.reduce_mean(tf.square(f - t)) for f, t in
                            zip(features.content, self.content_targets, strict=True)])
        content *= self.content_weight / len(self.content_targets)
        return {"total": style + content, "content": content, "style": style}


class Stopper:
    """``nstlib.minimize`` callback: stops at the first image at/below the target.

    Its clock counts only the method's own work: time spent waiting for its turn
    (``hand_over``) and in float32 checks (``check``, for bfloat16 methods) is excluded.
    """

    def __init__(self, target: float, time_limit: float, check=None, hand_over=None):
        self.target, self.time_limit, self.check = float(target), time_limit, check
        self.hand_over = hand_over
        self.start = time.perf_counter()
        self.excluded = 0.0
        self.calls = 0
        self.reached_at: float | None = None
        self.best = float("inf")
        self.best_image = None
        self.trace: list[tuple[int, float, float]] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.excluded

    def __call__(self, step, image, losses) -> bool:
        now = self.elapsed()
        self.calls += 1
        value = float(losses["total"])
        if self.check is not None:
            began = time.perf_counter()
            value = (float(self.check(image)["total"]) if value <= self.target * CHECK_MARGIN
                     else None)
            self.excluded += time.perf_counter() - began
        if value is not None:
            self.trace.append((self.calls - 1, now, value))
            if value < self.best:
                self.best, self.best_image = value, image
        stop = False
        if value is not None and value <= self.target:
            self.reached_at, stop = now, True
        elif now > self.time_limit:
            stop = True
        if self.hand_over is not None:
            began = time.perf_counter()
            self.hand_over(step)
            self.excluded += time.perf_counter() - began
        return stop


def run_reference(content, style, steps: int) -> dict:
    """Phase 1: the tutorial's Adam for ``steps`` updates; its final loss is the target."""
    import nstlib

    source = nstlib.FeatureExtractor(ref.TUTORIAL_CONTENT_LAYERS, ref.TUTORIAL_STYLE_LAYERS,
                                     weights="random")
    loss = ref.TutorialLoss(content, style, ref.TutorialExtractor(source))
    start = time.perf_counter()
    image, train_step = ref.tutorial_trainer(loss, content)
    losses, stamps = [], []
    for k in range(steps):
        losses.append(float(train_step()))
        stamps.append(time.perf_counter() - start)
        if k % 100 == 0:
            common.log(f"reference step {k}: loss {losses[-1]:.5g} at {stamps[-1]:.1f} s")
    seconds = time.perf_counter() - start
    final = float(loss(image)["total"])
    step_times = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    marks = [k for k in (0, 10, 100, 200, 300, 500, 700) if k < steps]
    return {"steps": steps, "seconds": seconds, "final_loss": final,
            "loss_before_step": {str(k): losses[k] for k in marks},
            "first_step_seconds": stamps[0],
            "seconds_per_step": common.summary(step_times),
            "loss_fn": loss, "train_step": train_step}


def method_participant(name, settings, content, style, target, limit, check32, results):
    """A ``TurnTaking`` participant running one method until the target or its cap."""
    import nstlib

    loss = check32 if settings["dtype"] == "float32" else ReferenceLoss(
        content, style, settings["dtype"])
    check = None if settings["dtype"] == "float32" else check32

    def run(hand_over):
        stopper = Stopper(target, limit, check, hand_over)
        if settings["kind"] == "lbfgs":
            options = {"optimizer": "lbfgs", "steps": 100_000}
        else:  # the cosine reaches its floor at the horizon, where the run ends
            options = {"optimizer": settings["kind"], "steps": settings["horizon"],
                       "learning_rate": settings["learning_rate"], "schedule": "cosine"}
        outcome = nstlib.minimize(loss, content, callbacks=[stopper], progress=False,
                                  **options)
        results[name] = (stopper, outcome.status)

    return run


def run(quick: bool = False, methods=None) -> dict:
    import nstlib
    from nstlib import images

    size, reference_steps = (96, 100) if quick else (256, 1000)
    content = images.resize_max_side(images.load_image(CONTENT), size)
    style = images.resize_max_side(images.load_image(STYLE), size)
    h, w = int(content.shape[1]), int(content.shape[2])
    common.log(f"time to image: reference {reference_steps} Adam steps at {(h, w)}")
    reference = run_reference(content, style, reference_steps)
    target, ref_seconds = reference["final_loss"], reference["seconds"]
    common.log(f"reference: loss {target:.5g} after {reference_steps} steps, "
               f"{ref_seconds:.1f} s")
    check32 = ReferenceLoss(content, style)
    tutorial_value = float(reference["loss_fn"](content)["total"])
    agreement = abs(float(check32(content)["total"]) - tutorial_value) / tutorial_value
    out_methods = {}
    for name in methods or METHODS:
        description, settings = METHODS[name]
        common.log(f"time to image: {name} (cap {settings['cap']} x reference time)")
        nstlib.set_seed(0, deterministic=False)
        results: dict = {}
        taking = common.TurnTaking({
            "method": method_participant(name, settings, content, style, target,
                                         settings["cap"] * ref_seconds, check32, results),
            "reference_pace": common.loop(lambda: reference["train_step"]().numpy(),
                                          PACE_STEPS),
        })
        raw = taking.run()
        stopper, status = results[name]
        pace = common.summary(raw["reference_pace"][1:])["median"]
        ref_now = reference["first_step_seconds"] + (reference_steps - 1) * pace
        reached = stopper.reached_at
        steps_to_target = stopper.trace[-1][0] if reached is not None else None
        scored = (float(reference["loss_fn"](stopper.best_image)["total"])
                  if stopper.best_image is not None else None)
        out_methods[name] = {
            "description": description, "settings": settings,
            "reached_target": reached is not None,
            "seconds_to_target": reached,
            "steps_to_target": steps_to_target,
            "ratio_to_reference_time": common.ratio(reached, ref_seconds),
            "ratio_to_reference_time_paced": common.ratio(reached, ref_now),
            "reference_step_seconds_alongside": pace,
            "seconds_run": stopper.elapsed(),
            "steps_run": stopper.calls - 1,
            "best_loss": stopper.best,
            "best_loss_scored_by_tutorial_model": scored,
            "status": status,
            "trace_every_50_steps": [(k, round(t, 2), v) for k, t, v in stopper.trace
                                     if k % 50 == 0],
        }
        common.log(f"{name}: reached {reached is not None}"
                   + (f" in {reached:.1f} s ({steps_to_target} steps, ratio "
                      f"{reached / ref_seconds:.3f}, paced {reached / ref_now:.3f})"
                      if reached is not None else f", best {stopper.best:.5g}"))
    reached = {k: v["seconds_to_target"] for k, v in out_methods.items()
               if v["reached_target"]}
    winner = min(reached, key=reached.get) if reached else None
    return {
        "what": ("wall-clock seconds until nstlib's method reaches the loss that "
                 f"{reference_steps} tutorial Adam steps reach (the reference's loss "
                 "definition minimised by both, same images and size, tracing included)"),
        "images": {"content": CONTENT, "style": STYLE, "shape": [1, h, w, 3]},
        "step_conv_gflop": flops.step_flops(h, w, ref.TUTORIAL_CONTENT_LAYERS,
                                            ref.TUTORIAL_STYLE_LAYERS)["conv_total"] / 1e9,
        "reference": {k: v for k, v in reference.items()
                      if k not in ("loss_fn", "train_step")},
        "target_loss": target,
        "loss_agreement_nstlib_vs_tutorial_model": agreement,
        "methods": out_methods,
        "winner": winner,
        "winner_ratio_to_reference_time": out_methods[winner]["ratio_to_reference_time"]
        if winner else None,
        "winner_ratio_paced": out_methods[winner]["ratio_to_reference_time_paced"]
        if winner else None,
        "target_ratio_max": 0.33,
    }


def main(argv=None) -> None:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    common.emit(common.rounded({"machine": common.machine_info(),
                                "weights_note": common.NOTE_RANDOM_WEIGHTS,
                                "time_to_image": run(args.quick)}))


if __name__ == "__main__":
    sys.exit(main())
