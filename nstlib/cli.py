"""The ``nst`` command: ``nst stylize``, ``nst demo``, ``nst ablate``, ``nst report``.

Bad input never produces a traceback: every error a user can cause is reported as one
line on stderr with a non-zero exit code (2 for bad input, 1 for a failed run, 130 for
Ctrl-C), and nothing that existed before is overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


class CliError(Exception):
    """A user error reported as one line (exit code 2)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be non-negative, got {text}")
    return value


def _layers(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (no usage dump)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs ``stylize``."""
    from nstlib import features, optimize, transfer

    parser.add_argument("--size", type=_positive_int, default=256,
                        help="longer side of the result in pixels (default 256)")
    parser.add_argument("--steps", type=_positive_int, default=300, help="optimisation steps")
    parser.add_argument("--optimizer", default="adam", type=str.lower,
                        help=f"one of {', '.join(optimize.OPTIMIZERS)} (default adam)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: "
                        "the optimizer's own, see nstlib.optimize.DEFAULT_LEARNING_RATES)")
    parser.add_argument("--schedule", default="constant", choices=optimize.SCHEDULES,
                        help="learning-rate schedule: constant, or cosine decay to 5%% over "
                             "the steps (default constant)")
    parser.add_argument("--precision", default="float32", choices=features.COMPUTE_DTYPES,
                        help="convolution precision: float32, or bfloat16 (several times "
                             "faster on CPUs with AMX/AVX512-BF16, slower on others)")
    parser.add_argument("--content-weight", type=_non_negative_float,
                        default=transfer.DEFAULT_CONTENT_WEIGHT)
    parser.add_argument("--style-weight", type=_non_negative_float,
                        default=transfer.DEFAULT_STYLE_WEIGHT)
    parser.add_argument("--tv-weight", type=_non_negative_float,
                        default=transfer.DEFAULT_TV_WEIGHT)
    parser.add_argument("--content-layers", type=_layers,
                        default=features.DEFAULT_CONTENT_LAYERS, help="comma-separated")
    parser.add_argument("--style-layers", type=_layers, default=features.DEFAULT_STYLE_LAYERS,
                        help="comma-separated")
    parser.add_argument("--init", default="content", help="content, noise or style")
    parser.add_argument("--weights", default="auto",
                        help="auto (ImageNet if available, else random), imagenet, random, "
                             "or a path to a VGG19 notop .h5 file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pixels", type=_positive_int, default=None,
                        help="refuse input images with more pixels (default 64 million)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nst", description="Neural style transfer by optimisation (nstlib).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    stylize = commands.add_parser("stylize", help="stylize CONTENT with STYLE")
    stylize.add_argument("content", help="content image path or bundled sample name")
    stylize.add_argument("style", help="style image path or bundled sample name")
    stylize.add_argument("-o", "--output", required=True, help="output image (.png or .jpg)")
    stylize.add_argument("--save-every", type=_positive_int, default=None, metavar="N",
                         help="also write OUT.stepNNNN.png every N steps")
    add_run_options(stylize)
    stylize.set_defaults(handler=cmd_stylize)

    demo = commands.add_parser("demo", help="stylize the bundled sample images")
    demo.add_argument("-o", "--output-dir", default="out/demo", help="folder for the results")
    add_run_options(demo)
    demo.set_defaults(handler=cmd_demo, steps=None, size=None)

    ablate = commands.add_parser("ablate", help="run a grid of stylize runs (YAML file) "
                                 "locally or on a Dask cluster; re-running resumes")
    ablate.add_argument("grid", help="grid file (YAML), e.g. examples/optimizers.yaml")
    ablate.add_argument("-o", "--output-dir", required=True,
                        help="results folder (runs/, results.csv); completed runs are kept")
    ablate.add_argument("--workers", type=_positive_int, default=None,
                        help="worker processes (default: min(CPUs, runs))")
    ablate.add_argument("--scheduler", default=None, metavar="ADDR|local-cluster",
                        help="run on Dask: a scheduler address (tcp://HOST:PORT) or "
                             "'local-cluster' to start one here (default: local processes)")
    ablate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ablate.set_defaults(handler=cmd_ablate)

    report = commands.add_parser("report", help="figures and a Markdown table (results.md) "
                                 "for a folder written by nst ablate")
    report.add_argument("results_dir", help="folder written by nst ablate")
    report.set_defaults(handler=cmd_report)
    return parser


# ----------------------------------------------------------------------------- commands


#: The demo's (content, style) pairs, all bundled with the project (data/README.md).
DEMO_PAIRS = (("chelsea", "brushstrokes"), ("astronaut", "mosaic"))


def check_run_options(args) -> None:
    """Validate names before any image is loaded or network built."""
    from nstlib import features, optimize, transfer

    optimize.check_optimizer(args.optimizer)
    features.validate_layers(args.content_layers, "content layer")
    features.validate_layers(args.style_layers, "style layer")
    if args.init not in transfer.INITS:
        raise CliError(f"--init must be one of {', '.join(transfer.INITS)}, got {args.init!r}")
    if args.lr is not None and not args.lr > 0:
        raise CliError(f"--lr must be positive, got {args.lr}")
    if args.seed < 0:
        raise CliError(f"--seed must be non-negative, got {args.seed}")


def run_one(args, content: str, style: str, output: Path, save_every: int | None = None) -> int:
    """Stylize one pair and write the image plus its JSON record; returns the exit code."""
    from nstlib import images
    from nstlib.optimize import NonFiniteLossError
    from nstlib.transfer import StylizeResult, stylize, write_json

    inputs = [p for p in (content, style) if Path(p).exists()]
    for source in inputs:  # fail before any work, and never touch an input
        if output.exists() and output.resolve() == Path(source).resolve():
            raise CliError(f"refusing to overwrite the input image {source}")
    if output.suffix.lower() not in {".png", ".jpg", ".jpeg"}:
        raise CliError(f"output must end in .png or .jpg, got {output.name!r}")
    max_pixels = args.max_pixels or images.MAX_PIXELS
    content_image = images.load_image(content, max_pixels=max_pixels)
    style_image = images.load_image(style, max_pixels=max_pixels)

    def save_intermediate(step, image, losses):
        if save_every and step > 0 and step % save_every == 0:
            images.save_image(image, output.with_name(f"{output.stem}.step{step:04d}.png"),
                              inputs=inputs)

    try:
        result = stylize(
            content_image, style_image, size=args.size, steps=args.steps,
            optimizer=args.optimizer, learning_rate=args.lr, schedule=args.schedule,
            compute_dtype=args.precision, content_weight=args.content_weight,
            style_weight=args.style_weight,
            tv_weight=args.tv_weight, content_layers=args.content_layers,
            style_layers=args.style_layers, init=args.init, weights=args.weights,
            seed=args.seed, callbacks=(save_intermediate,), progress=not args.no_progress)
    except NonFiniteLossError as err:
        if err.image is not None:
            images.save_image(err.image, output, inputs=inputs)
            write_json({"status": "failed", "error": str(err),
                        "history": err.history.to_dict()}, output.with_suffix(".json"))
            print(f"nst: error: {err}; the last finite image is in {output}", file=sys.stderr)
        else:
            print(f"nst: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    # The CLI loaded the images itself (to check them first); record where they came from.
    result.config.update(content=content, style=style)
    image_path, record_path = StylizeResult.save(result, output, inputs=inputs)
    print(summary_line(result, image_path, record_path))
    if result.config["status"] == "interrupted":
        print("nst: interrupted; the current image was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def summary_line(result, image_path: Path, record_path: Path) -> str:
    """One line: where the result went, which weights, final losses and time."""
    final = result.losses
    return (f"{image_path} ({record_path.name}): weights {result.config['weights_source']}; "
            f"loss {final['total']:.4g} (content {final['content']:.3g}, style "
            f"{final['style']:.3g}, tv {final['tv']:.3g}); {final['step']} steps in "
            f"{result.config['wall_seconds']:.1f} s")


def cmd_stylize(args) -> int:
    check_run_options(args)
    return run_one(args, args.content, args.style, Path(args.output), args.save_every)


def cmd_demo(args) -> int:
    from nstlib.config import QUICK

    args.size = args.size or (64 if QUICK else 256)
    args.steps = args.steps or (20 if QUICK else 200)
    check_run_options(args)
    out_dir = Path(args.output_dir)
    for content, style in DEMO_PAIRS:
        code = run_one(args, content, style, out_dir / f"{content}_{style}.png")
        if code:
            return code
    return 0


def cmd_ablate(args) -> int:
    from nstlib import ablation

    external = args.scheduler not in (None, "local-cluster")
    if external and args.workers is not None:
        raise CliError("--workers applies to local processes and 'local-cluster'; an "
                       "existing Dask cluster has its own workers")
    grid = ablation.load_grid(args.grid)  # a bad grid fails here: one line, exit 2
    try:
        result = ablation.run_grid(grid, args.output_dir, workers=args.workers,
                                   scheduler=args.scheduler, progress=not args.no_progress)
    except ImportError as err:
        raise CliError(str(err)) from None
    print(ablation.summary_line(result))
    if result.failed:
        print(f"nst: error: {len(result.failed)} of {len(result.rows)} runs failed (errors in "
              f"{result.table_paths[0]}); re-running retries them", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_report(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from nstlib import ablation

    for path in ablation.write_report(args.results_dir).values():
        print(path)
    return 0


# ----------------------------------------------------------------------------- entry


def main(argv=None) -> int:
    """Entry point of the ``nst`` console script."""
    args = build_parser().parse_args(argv)
    try:
        from nstlib.features import WeightsUnavailableError

        return args.handler(args)
    except KeyboardInterrupt:
        print("nst: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CliError, ValueError, WeightsUnavailableError) as err:
        print(f"nst: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        print(f"nst: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
