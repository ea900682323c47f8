"""The TensorFlow style-transfer tutorial's training step, and nstlib timed against it.

``TutorialExtractor``, ``TutorialLoss`` and ``tutorial_trainer`` re-implement, minimally,
the training step of the TensorFlow tutorial "Neural style transfer"
(tensorflow.org/tutorials/generative/style_transfer):

* ``keras.applications.VGG19(include_top=False)``, frozen, with a Keras model whose
  outputs are the style layers block1_conv1 ... block5_conv1 and the content layer
  block5_conv2; input x·255 through ``keras.applications.vgg19.preprocess_input``;
* Gram matrix ``einsum('bijc,bijd->bcd') / (H·W)``;
* loss = style_weight / n_style · Σ_l mean((G_l − A_l)²)
  + content_weight / n_content · Σ mean((F − P)²), style_weight 1e-2, content weight 1e4;
* ``Adam(0.02, beta_1=0.99, epsilon=0.1)``, a ``@tf.function`` step, the image clipped to
  [0, 1] after each update and initialised with the content image.

The tutorial's later total-variation term is left out (the step above is its first,
plain version). Weights: ``keras.applications.VGG19(weights=None)`` with every conv
layer's weights copied from an nstlib ``FeatureExtractor`` (random seeded weights here,
since ImageNet weights cannot be downloaded on the benchmark machines), so that both
implementations run the same network.

``run()`` times one step of each, alternating step by step in one process (see
``common.TurnTaking``), at 256 and 512 px, with one large convolution (256 -> 256
channels, 128 x 128, forward) alternating too: the *practical limit* of a step is its
convolution FLOPs divided by that convolution's GFLOP/s, and each implementation's
efficiency is limit time / step time. nstlib runs its own losses (stylize's defaults)
with ``content_layers=("block5_conv2",)`` (the same network depth as the tutorial) and
the tutorial's Adam instance. nstlib's extractor uses its default ``conv_impl="auto"``
(the convolution form measured faster on this machine, ``nstlib.conv_choice``: plain
``Conv2D`` or the transposed convolution of the flipped kernel, same numbers); the
tutorial's model is ``keras.applications.VGG19`` with plain ``Conv2D`` layers.
"""

from __future__ import annotations

import sys

import common
import flops

TUTORIAL_CONTENT_LAYERS = ("block5_conv2",)
TUTORIAL_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                         "block5_conv1")
TUTORIAL_STYLE_WEIGHT = 1e-2
TUTORIAL_CONTENT_WEIGHT = 1e4

#: Size of the practical-limit convolution: (H, W, C_in, C_out).
LIMIT_CONV = (128, 128, 256, 256)


def tutorial_gram(features):
    import tensorflow as tf

    result = tf.linalg.einsum("bijc,bijd->bcd", features, features)
    shape = tf.shape(features)
    return result / tf.cast(shape[1] * shape[2], tf.float32)


class TutorialExtractor:
    """The tutorial's ``StyleContentModel``: image in [0, 1] -> content features, style Grams.

    Args:
        source: nstlib ``FeatureExtractor`` whose conv weights are copied (it must be
            built at least up to the deepest layer used here). None: a random-weights
            extractor with ``seed``.
        content_layers, style_layers: As in the tutorial by default.
        seed: Seed of the random weights when ``source`` is None.
    """

    def __init__(self, source=None, content_layers=TUTORIAL_CONTENT_LAYERS,
                 style_layers=TUTORIAL_STYLE_LAYERS, seed: int = 0):
        import keras

        import nstlib

        self.content_layers, self.style_layers = tuple(content_layers), tuple(style_layers)
        if source is None:
            source = nstlib.FeatureExtractor(self.content_layers, self.style_layers,
                                             weights="random", seed=seed)
        # the tutorial's Keras model of the source's network (VGG19, or VGG16 for the
        # trained hed-vgg16 weights), every convolution up to the deepest layer copied
        # from the source: a layer left out would keep Keras's random initial weights
        vgg = (keras.applications.VGG16 if source.network == "vgg16"
               else keras.applications.VGG19)(include_top=False, weights=None)
        vgg.trainable = False
        source_layers = {s.name for s in source.model.layers}
        deepest = max(self.style_layers + self.content_layers,
                      key=[x.name for x in vgg.layers].index)
        for layer in vgg.layers[:[x.name for x in vgg.layers].index(deepest) + 1]:
            if "_conv" not in layer.name:
                continue
            if layer.name not in source_layers:
                raise ValueError(f"the source network has no {layer.name}; build it up to "
                                 f"{deepest}")
            layer.set_weights(source.model.get_layer(layer.name).get_weights())
        outputs = [vgg.get_layer(n).output for n in self.style_layers + self.content_layers]
        self.vgg = keras.Model([vgg.input], outputs)
        self.vgg.trainable = False
        self.weights_description = source.description

    def __call__(self, inputs):
        import keras

        preprocessed = keras.applications.vgg19.preprocess_input(inputs * 255.0)
        outputs = self.vgg(preprocessed)
        n_style = len(self.style_layers)
        style = [tutorial_gram(o) for o in outputs[:n_style]]
        return {"content": dict(zip(self.content_layers, outputs[n_style:], strict=True)),
                "style": dict(zip(self.style_layers, style, strict=True))}


class TutorialLoss:
    """The tutorial's ``style_content_loss`` as a loss function of the image.

    Calling it on a (1, H, W, 3) image in [0, 1] returns {"total", "content", "style"}
    (content and style already weighted, total = their sum), the form
    ``nstlib.minimize`` accepts.
    """

    def __init__(self, content_image, style_image, extractor: TutorialExtractor | None = None,
                 style_weight: float = TUTORIAL_STYLE_WEIGHT,
                 content_weight: float = TUTORIAL_CONTENT_WEIGHT):
        import tensorflow as tf

        self.extractor = extractor or TutorialExtractor()
        self.style_weight, self.content_weight = float(style_weight), float(content_weight)
        self.style_targets = {k: tf.constant(v) for k, v in
                              self.extractor(style_image)["style"].items()}
        self.content_targets = {k: tf.constant(v) for k, v in
                                self.extractor(content_image)["content"].items()}

    def __call__(self, image):
        import tensorflow as tf

        outputs = self.extractor(image)
        style = tf.add_n([tf.reduce_mean((outputs["style"][n] - self.style_targets[n]) ** 2)
                          for n in outputs["style"]])
        style *= self.style_weight / len(self.style_targets)
        content = tf.add_n([tf.reduce_mean((outputs["content"][n] - self.content_targets[n])
                                           ** 2) for n in outputs["content"]])
        content *= self.content_weight / len(self.content_targets)
        return {"total": style + content, "content": content, "style": style}


def tutorial_optimizer():
    import keras

    return keras.optimizers.Adam(learning_rate=0.02, beta_1=0.99, epsilon=1e-1)


def tutorial_trainer(loss_fn, init):
    """The tutorial's ``train_step`` on a variable initialised with ``init``.

    Returns:
        (image variable, step): ``step()`` performs one update and returns the loss of
        the image before it (the tutorial's step returns nothing; returning the scalar
        changes no computation and lets callers synchronise and record it).
    """
    import tensorflow as tf

    image = tf.Variable(init)
    opt = tutorial_optimizer()

    # autograph=False: for this straight-line step the same graph as the tutorial's
    # @tf.function(), and nothing is read from this file when it is traced (a file
    # edited during a long run would be; see nstlib.optimize's docstring)
    @tf.function(autograph=False)
    def train_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(image)["total"]
        grad = tape.gradient(loss, image)
        opt.apply_gradients([(grad, image)])
        image.assign(tf.clip_by_value(image, clip_value_min=0.0, clip_value_max=1.0))
        return loss

    return image, train_step


def limit_conv(dtype: str = "float32"):
    """One large 3x3 convolution forward (``LIMIT_CONV``), as a blocking callable.

    Returns:
        (step, flop): ``step()`` runs the convolution and waits for it; ``flop`` its
        FLOP count.
    """
    import tensorflow as tf

    h, w, c_in, c_out = LIMIT_CONV
    x = tf.random.stateless_normal((1, h, w, c_in), seed=[1, 2], dtype=tf.float32)
    kernel = tf.random.stateless_normal((3, 3, c_in, c_out), seed=[3, 4]) * 0.03
    x, kernel = tf.cast(x, dtype), tf.cast(kernel, dtype)

    @tf.function(autograph=False)  # as train_step
    def conv():
        y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
        return y[0, 0, 0, 0]  # a tiny slice: the whole convolution runs, little is copied

    return (lambda: conv().numpy()), flops.conv_flops(h, w, c_in, c_out)


def nstlib_objective(content, style, extractor=None):
    """nstlib's objective (stylize's default losses and weights) at the tutorial's depth."""
    import nstlib

    extractor = extractor or nstlib.FeatureExtractor(TUTORIAL_CONTENT_LAYERS,
                                                     TUTORIAL_STYLE_LAYERS, weights="random")
    return nstlib.StyleTransferObjective(extractor, content, style)  # stylize's loss


def compare_at(size: int, steps: int, warmup: int) -> dict:
    """nstlib vs the tutorial step (and the limit convolution), alternating, at one size."""
    import nstlib

    content, style = common.square_pair(size)
    extractor = nstlib.FeatureExtractor(TUTORIAL_CONTENT_LAYERS, TUTORIAL_STYLE_LAYERS,
                                        weights="random", image_size=size)
    objective = nstlib_objective(content, style, extractor)
    reference_loss = TutorialLoss(content, style, TutorialExtractor(extractor))
    _, reference_step = tutorial_trainer(reference_loss, content)
    conv, conv_flop = limit_conv()
    total = warmup + steps
    taking = common.TurnTaking({
        "nstlib": lambda cb: nstlib.minimize(objective, content, steps=total,
                                             optimizer=tutorial_optimizer(), callbacks=[cb],
                                             progress=False),
        "reference": common.loop(lambda: reference_step().numpy(), total),
        "limit_conv": common.loop(conv, total),
    })
    raw = taking.run()
    times = {"nstlib": common.minimize_steps(raw["nstlib"], warmup),
             "reference": raw["reference"][warmup:], "limit_conv": raw["limit_conv"][warmup:]}
    stats = {k: common.summary(v) for k, v in times.items()}
    step_flop = flops.step_flops(size, size, TUTORIAL_CONTENT_LAYERS, TUTORIAL_STYLE_LAYERS)
    conv_rate = conv_flop / stats["limit_conv"]["median"]
    limit_seconds = step_flop["conv_total"] / conv_rate
    out = {
        "image": [1, size, size, 3],
        "nstlib_conv_impl": extractor.conv_impl,
        "nstlib_conv_impl_reason": extractor.conv_impl_reason,
        "seconds_per_step": stats,
        "ratio_nstlib_over_reference": common.ratio(stats["nstlib"]["median"],
                                                    stats["reference"]["median"]),
        "step_conv_gflop": step_flop["conv_total"] / 1e9,
        "limit_conv_gflops": conv_rate / 1e9,
        "limit_seconds_per_step": limit_seconds,
    }
    for name in ("nstlib", "reference"):
        median = stats[name]["median"]
        out[f"{name}_gflops"] = step_flop["conv_total"] / median / 1e9
        out[f"{name}_percent_of_limit"] = 100.0 * limit_seconds / median
    common.log(f"reference comparison {size}px: nstlib {stats['nstlib']['median']:.3f} s, "
               f"reference {stats['reference']['median']:.3f} s, ratio "
               f"{out['ratio_nstlib_over_reference']:.3f}, nstlib "
               f"{out['nstlib_percent_of_limit']:.0f}% of limit")
    return out


def run(quick: bool = False) -> dict:
    sizes = (64, 128) if quick else (256, 512)
    steps, warmup = (3, 1) if quick else (8, 2)
    return {
        "what": ("seconds per optimisation step, nstlib (its own losses, content "
                 "block5_conv2, the tutorial's Adam) vs the TensorFlow tutorial's train_step, "
                 "alternating step by step in one process; practical limit = conv FLOPs of "
                 "one step / GFLOP/s of one 3x3 conv 256->256 ch at 128x128 (forward, "
                 "float32, measured alternating with the steps)"),
        "flop_counting": flops.WHAT_IS_COUNTED,
        "steps_timed": steps, "warmup_steps": warmup,
        "targets": {"nstlib_over_reference_max": 1.0, "percent_of_limit_min": 90},
        "sizes": {str(size): compare_at(size, steps, warmup) for size in sizes},
    }


def main(argv=None) -> None:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    common.emit(common.rounded({"machine": common.machine_info(), "weights_note":
                                common.NOTE_RANDOM_WEIGHTS, "reference_tutorial":
                                run(args.quick)}))


if __name__ == "__main__":
    sys.exit(main())
