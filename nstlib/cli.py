"""The ``nst`` command: ``nst stylize``, ``nst demo``, ``nst ablate``, ``nst report``.

Bad input never produces a traceback: every error a user can cause is reported as one
line on stderr with a non-zero exit code (2 for bad input, 1 for a failed run, 130 for
Ctrl-C), and nothing that existed before is overwritten.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


class CliError(Exception):
    """A user error reported as one line (exit code 2)."""


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with their C++ start-up log lines silenced.

    TensorFlow's native libraries print oneDNN/CUDA notices straight to file descriptor 2
    while loading, before any Python setting applies (setting TF_CPP_MIN_LOG_LEVEL from
    Python is too late for them). They would break the CLI's one-line errors, so fd 2 is
    pointed at /dev/null for the import only. Python exceptions still propagate. Set
    NSTLIB_TF_VERBOSE=1 to see the lines.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ.get("NSTLIB_TF_VERBOSE"):
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (no usage dump)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


#: Extra spellings of some settings' flags (kept from before the flags were generated).
FLAG_ALIASES = {"learning_rate": ("--lr",), "compute_dtype": ("--precision",)}


def _flag_type(info):
    """An argparse ``type`` that coerces a flag's text like a grid value (one-line errors)."""
    from nstlib._options import ConfigError

    def parse(text: str):
        try:
            return info.coerce(text.lower() if info.choices else text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = info.name
    return parse


def _flag_help(info) -> str:
    default = info.default
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    shown = "" if "default" in info.doc else f" (default {default})"
    return f"{info.doc}{shown}".replace("%", "%%")


def _metavar(info) -> str:
    """``{a,b}`` for a fixed set of choices, else the kind of value the flag takes."""
    if info.choices:
        return "{" + ",".join(info.choices) + "}"
    kind = info.hint.__name__ if isinstance(info.hint, type) else str(info.hint)
    scalar = "N" if kind.startswith("int") else "X" if kind.startswith("float") else "TEXT"
    if "tuple[int" in kind:
        return f"{scalar}|N,N,..." if scalar == "N" and not kind.startswith("tuple") else "N,N,..."
    if "tuple[float" in kind:
        return "X,X,..."
    return "A,B,..." if "tuple[str" in kind else scalar


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """One flag per ``StylizeConfig`` setting (help from the field docs), plus run options.

    Flags left out keep the config's defaults (argparse.SUPPRESS), so ``settings_from``
    sees only what was typed.
    """
    from nstlib.settings import StylizeConfig

    group = parser.add_argument_group("settings (nstlib.StylizeConfig fields)")
    for name, info in StylizeConfig.flat_fields().items():
        flags = (f"--{name.replace('_', '-')}",) + FLAG_ALIASES.get(name, ())
        if info.hint is bool:
            group.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=_flag_help(info))
        else:
            group.add_argument(*flags, dest=name, type=_flag_type(info), choices=info.choices,
                               default=argparse.SUPPRESS, metavar=_metavar(info),
                               help=_flag_help(info))
    parser.add_argument("--max-pixels", type=_positive_int, default=None,
                        help="refuse input images with more pixels (default 64 million)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def settings_from(args, **defaults):
    """The ``StylizeConfig`` of a command line: typed flags over ``defaults``."""
    from nstlib._options import ConfigError
    from nstlib.settings import StylizeConfig

    names = StylizeConfig.flat_fields()
    typed = {name: getattr(args, name) for name in names if hasattr(args, name)}
    try:
        return StylizeConfig.from_flat(**{**defaults, **typed})
    except ConfigError as err:  # "learning_rate must be ..." -> "--learning-rate must be ..."
        name, _, rest = str(err).partition(" ")
        flag = f"--{name.replace('_', '-')}" if name in names else name
        raise CliError(f"{flag} {rest}") from None


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
    demo.set_defaults(handler=cmd_demo)

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


def run_one(args, config, content: str, style: str, output: Path,
            save_every: int | None = None) -> int:
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
        result = stylize(content_image, style_image, config, callbacks=(save_intermediate,),
                         progress=not args.no_progress)
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
    config = settings_from(args)
    _import_tensorflow_quietly()
    return run_one(args, config, args.content, args.style, Path(args.output), args.save_every)


def cmd_demo(args) -> int:
    from nstlib.config import QUICK

    config = settings_from(args, size=64 if QUICK else 256, steps=20 if QUICK else 200)
    _import_tensorflow_quietly()
    out_dir = Path(args.output_dir)
    for content, style in DEMO_PAIRS:
        code = run_one(args, config, content, style, out_dir / f"{content}_{style}.png")
        if code:
            return code
    return 0


def cmd_ablate(args) -> int:
    _import_tensorflow_quietly()
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
    _import_tensorflow_quietly()
    from nstlib import ablation

    for path in ablation.write_report(args.results_dir).values():
        print(path)
    return 0


# ----------------------------------------------------------------------------- entry


def main(argv=None) -> int:
    """Entry point of the ``nst`` console script."""
    try:
        args = build_parser().parse_args(argv)  # no TensorFlow yet: usage errors are quick
        return args.handler(args)
    except KeyboardInterrupt:  # also while TensorFlow is still being imported
        print("nst: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CliError, ValueError) as err:
        print(f"nst: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        print(f"nst: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return EXIT_FAILED
    except RuntimeError as err:
        if not _is_weights_error(err):
            raise
        print(f"nst: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _is_weights_error(err: BaseException) -> bool:
    """True for ``vgg_weights.WeightsUnavailableError`` (imported only if already loaded)."""
    module = sys.modules.get("nstlib.vgg_weights")
    return module is not None and isinstance(err, module.WeightsUnavailableError)


if __name__ == "__main__":
    sys.exit(main())
