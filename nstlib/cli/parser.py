"""The command line of ``nst``: subcommands, and one flag per ``StylizeConfig`` setting
(generated from the config fields, help from their docs), without TensorFlow.

``settings_from`` turns the flags typed into a ``StylizeConfig``; ``flag_error`` spells a
library message's setting as its flag, so a check made by the library reads as the
command line was typed.
"""

from __future__ import annotations

import argparse
import re

from nstlib.cli.errors import EXIT_BAD_INPUT, CliError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (no usage dump), and takes a value
    that starts with a minus and a digit as a value (``--style-blend -1,2``,
    ``--lr -1e-3``) like the ``=`` form does, not as an unknown option (Python 3.13's rule;
    3.11 only takes plain negative numbers). No ``nst`` option looks like a number."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\.?\d")

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

    typed = {name: getattr(args, name) for name in StylizeConfig.flat_fields()
             if hasattr(args, name)}
    try:
        return StylizeConfig.from_flat(**{**defaults, **typed})
    except ConfigError as err:  # "learning_rate must be ..." -> "--learning-rate must be ..."
        raise flag_error(err) from None


#: Flags of settings that are inputs rather than ``StylizeConfig`` fields.
INPUT_FLAGS = {"style_masks": "--style-mask"}


def flag_of(name: str) -> str | None:
    """The flag that sets ``name`` (a ``StylizeConfig`` flat field or an input), or None."""
    from nstlib.settings import StylizeConfig

    if name in StylizeConfig.flat_fields():
        return f"--{name.replace('_', '-')}"
    return INPUT_FLAGS.get(name)


def flag_error(err: Exception) -> CliError:
    """A library error that names a setting, as the ``CliError`` that names its flag.

    The library's messages start with the setting they are about ("style_size 1 is too
    small ...", "style_blend has 3 weights ..."), or with a count and then it ("1
    style_masks for 2 style image(s)"); that word becomes the flag, the rest stays the
    library's.
    """
    words = str(err).split(" ")
    for index in (0, 1) if words[0].isdigit() else (0,):
        if index < len(words) and (flag := flag_of(words[index])) is not None:
            words[index] = flag
            break
    return CliError(" ".join(words))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nst", description="Neural style transfer by optimisation (nstlib).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    stylize = commands.add_parser(
        "stylize", help="stylize CONTENT with STYLE (or many contents)",
        description="nst stylize CONTENT STYLE -o OUT.png stylizes one image. For many, "
                    "give several content files or folders and the style last, or the "
                    "styles with --style (then every IMAGE is a content); -o is then a "
                    "folder that gets NAME.png and NAME.png.json per content. One progress "
                    "bar covers the batch; a failing input is reported in one line and the "
                    "others finish (exit code 1 if any failed); a re-run keeps the results "
                    "already complete with the same settings. Every image's record is "
                    "IMAGE.json (out.png -> out.png.json).")
    stylize.add_argument("images", nargs="+", metavar="IMAGE",
                         help="content images or folders of them, then the style image "
                              "(paths or bundled sample names); with --style all are contents")
    stylize.add_argument("--style", dest="styles", action="append", default=None,
                         metavar="STYLE", help="style image; repeat for several styles "
                                               "(weights: --style-blend)")
    stylize.add_argument("--style-mask", dest="style_masks", action="append", default=None,
                         metavar="MASK", help="mask image per style, in the styles' order "
                                              "(repeat): white where that style applies, black "
                                              "where not; the content's or the result's size")
    stylize.add_argument("-o", "--output", required=True,
                         help="output image (.png or .jpg); with several contents a folder")
    stylize.add_argument("--save-every", type=_positive_int, default=None, metavar="N",
                         help="also write OUT.stepNNNN.png every N steps")
    stylize.add_argument("--redo", action="store_true",
                         help="with several contents, stylize again those whose result in "
                              "-o is already complete with these settings (by default a "
                              "re-run keeps them, like nst ablate)")
    stylize.add_argument("--dry-run", action="store_true",
                         help="print the predicted peak memory and seconds per step, then "
                              "exit (exit 2 if it would not fit); loads no TensorFlow")
    add_run_options(stylize)

    demo = commands.add_parser("demo", help="stylize the bundled sample images")
    demo.add_argument("-o", "--output-dir", default="out/demo", help="folder for the results")
    add_run_options(demo)

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

    report = commands.add_parser("report", help="figures and a Markdown table (results.md) "
                                 "for a folder written by nst ablate")
    report.add_argument("results_dir", help="folder written by nst ablate")
    return parser
