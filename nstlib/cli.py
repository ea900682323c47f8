"""The ``nst`` command: ``nst stylize``, ``nst demo``, ``nst ablate``, ``nst report``.

Bad input never produces a traceback: every error a user can cause is reported as one
line on stderr with a non-zero exit code (2 for bad input, 1 for a failed run, 130 for
Ctrl-C, 143 for SIGTERM), and nothing that existed before is overwritten. ``nst stylize``
and ``nst demo`` treat SIGTERM (``timeout``, a job scheduler, a kernel stop) like Ctrl-C:
the current image and its record are written.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

from nstlib.records import RecordError, legacy_record_path, load_record, record_path

EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
#: 128 + 15, what a shell reports for a process ended by SIGTERM.
EXIT_TERMINATED = 128 + int(signal.SIGTERM)
#: Commands during which SIGTERM takes Ctrl-C's path (``Terminated``).
SIGTERM_AS_CTRL_C = {"stylize", "demo"}


class CliError(Exception):
    """A user error reported as one line (exit code 2)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C (so ``minimize`` keeps the image)."""


class _SigtermState:
    """Whether SIGTERM arrived, and whether raising it is held back (while saving)."""

    received = False
    deferred = False


def _on_sigterm(signum, frame) -> None:
    if _SigtermState.received or _SigtermState.deferred:  # one is enough; let saving finish
        _SigtermState.received = True
        return
    _SigtermState.received = True
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_ctrl_c(enabled: bool = True):
    """Turn SIGTERM into ``Terminated`` for the block (main thread only), then restore."""
    _SigtermState.received = _SigtermState.deferred = False
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _sigterm_deferred(raise_after: bool = False):
    """Hold SIGTERM back while results are written (``_SigtermState.received`` tells).

    With ``raise_after`` (a save in the middle of a run), a SIGTERM that arrived during the
    block is raised when the file is complete, so the run still stops at once but never
    leaves half a file or a temporary file behind.
    """
    already = _SigtermState.received
    _SigtermState.deferred = True
    try:
        yield
    finally:
        _SigtermState.deferred = False
    if raise_after and _SigtermState.received and not already:
        raise Terminated()


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with their C++ start-up log lines silenced.

    TensorFlow's native libraries print oneDNN/CUDA notices straight to file descriptor 2
    while loading, before any Python setting applies (setting TF_CPP_MIN_LOG_LEVEL from
    Python is too late for them). They would break the CLI's one-line errors, so fd 2 is
    pointed at /dev/null for the import only. Python exceptions still propagate. Set
    NSTLIB_TF_VERBOSE=1 to see the lines.
    """
    from nstlib.ablation.worker import tensorflow_import_silenced  # the one fd-2 silencer

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tensorflow_import_silenced():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401


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


def check_output_location(output: Path) -> None:
    """Refuse, before any work, an output that could not be written (one line naming it).

    The image and its record (``OUT.png.json``, ``records.record_path``) must not be
    folders, the image must end in .png or
    .jpg, and the nearest existing folder on the way must be a folder (not a file) in which
    a file can be created. That is probed with a real temporary file, so permissions,
    read-only mounts and ACLs count exactly as they will when the result is written.
    Needs no TensorFlow: ``cmd_stylize`` and ``cmd_demo`` call it first.

    Raises:
        CliError: with the output path (never the hidden temporary file's name).
    """
    for target in (output, record_path(output)):
        if target.is_dir():
            raise CliError(f"output {target} is a folder; name a file, e.g. "
                           f"{target / 'result.png'}")
        if target == output and output.suffix.lower() not in {".png", ".jpg", ".jpeg"}:
            raise CliError(f"output must end in .png or .jpg, got {output.name!r}")
    folder = output.parent
    try:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent  # the folders still missing are created when writing
        if not folder.is_dir():
            raise CliError(f"cannot write {output}: {folder} is a file, not a folder")
        fd, probe = tempfile.mkstemp(prefix=".nst-write-check-", dir=folder)
    except OSError as err:
        raise CliError(f"cannot write {output}: folder {folder} is not writable "
                       f"({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)


def check_image_sizes(plan, check_content: bool = True) -> None:
    """Refuse sizes at which an image is too small for the network (one line, the flag).

    Each 2x2 max pool halves a side (rounding down), so a layer after p pools needs a
    shorter side of at least 2^p pixels (16 for block5_conv1); smaller images would fail
    inside TensorFlow. Checks every scale of the run's plan, at the exact sizes ``stylize``
    resizes to, and the coarsest level of a style pyramid (``losses.check_pyramid_size``'s
    rule). Needs no TensorFlow: ``cmd_stylize`` calls it with the plan made from the sizes
    the image headers give.

    Args:
        plan: The run's ``plan.RunPlan``.
        check_content: False to check only the style images (a batch checks each content
            when it comes to it).

    Raises:
        CliError: naming the flag that set the size (``--size``, ``--scales``,
            ``--style-size``, ``--style-scale`` or ``--pyramid-levels``).
    """
    from nstlib.sizes import pyramid_hws
    from nstlib.vgg_layers import deepest_layer, layers_up_to

    config, network = plan.config, plan.network
    loss = config.loss

    def needed(layers) -> tuple[str, int]:
        layer = deepest_layer(layers, network)
        return layer, 2 ** sum(n.endswith("_pool") for n in layers_up_to(layer, network)[:-1])

    layer, minimum = needed(loss.content_layers + loss.style_layers)
    style_layer, style_minimum = (needed(loss.style_layers) if loss.style_layers
                                  else (layer, 1))
    result_flag = (f"--scales {','.join(map(str, config.scales))}" if config.scales
                   else f"--size {config.size}")
    if config.style_size is not None:
        style_flag = f"--style-size {config.style_size}"
    elif config.style_scale is not None:
        style_flag = f"--style-scale {config.style_scale:g}"
    else:
        style_flag = result_flag  # the style follows the result's size
    for stage in plan.stages:
        checked = [("style", hw, style_flag) for hw in stage.style_hws]
        if check_content:
            checked.insert(0, ("content", stage.content_hw, result_flag))
        for what, (h, w), flag in checked:
            at = f" (at scale {stage.size})" if config.scales else ""
            if min(h, w) < minimum:
                raise CliError(f"{flag} is too small: the {what} image would be {h}x{w} px"
                               f"{at} and {layer} needs a shorter side of at least "
                               f"{minimum} px")
            levels = loss.pyramid_levels
            coarsest = pyramid_hws((h, w), levels)[-1]
            if min(coarsest) < style_minimum:
                most = next(k for k in range(levels, 0, -1)
                            if min(pyramid_hws((h, w), k)[-1]) >= style_minimum)
                raise CliError(f"--pyramid-levels {levels} is too many for the {what} image "
                               f"at {h}x{w} px{at}: its level {levels - 1} would be "
                               f"{coarsest[0]}x{coarsest[1]} px and {style_layer} needs a "
                               f"shorter side of at least {style_minimum} px; use at most "
                               f"{most}")


class _Written(NamedTuple):
    """What ``_stylize_one`` did: its exit code and the image it wrote (None: nothing)."""

    code: int
    image: Path | None


def run_one(args, config, content: str, style: str | list[str], output: Path,
            save_every: int | None = None, *, style_masks: list[str] | None = None,
            callbacks=(), progress: bool | None = None, echo=print, plan=None) -> int:
    """Stylize one content and write the image plus its JSON record; returns the exit code.

    ``style`` is one style image or a list of them (with ``style_masks``, one mask each);
    ``callbacks`` run after the CLI's own, ``progress`` (default: unless --no-progress) is
    stylize's bar, and ``echo`` prints the summary line (``tqdm.write`` under a batch bar).
    ``plan`` is the run's plan made from the image headers, whose memory was checked
    (``plans_from_headers``, ``check_memory``); None: planned once the images are loaded.
    Ctrl-C or SIGTERM after the first step keeps the current image (exit 130 or 143, one
    line saying where it is); before it, nothing is written and ``KeyboardInterrupt`` (or
    ``Terminated``) propagates, for ``main`` to say so in one line.
    """
    outcome = _stylize_one(args, config, content, style, output, save_every,
                           style_masks=style_masks, callbacks=callbacks, progress=progress,
                           echo=echo, plan=plan)
    if outcome.code == EXIT_TERMINATED:
        print(f"nst: terminated (SIGTERM); the current image was written to {output}",
              file=sys.stderr)
    elif outcome.code == EXIT_INTERRUPTED:
        print(f"nst: interrupted; the current image was written to {output}", file=sys.stderr)
    return outcome.code


def _stylize_one(args, config, content: str, style: str | list[str], output: Path,
                 save_every: int | None = None, *, style_masks: list[str] | None = None,
                 callbacks=(), progress: bool | None = None, echo=print,
                 plan=None) -> _Written:
    """``run_one`` without its last line: the exit code and the image written, if any."""
    from nstlib import images
    from nstlib.optimize import NonFiniteLossError
    from nstlib.plan import make_plan
    from nstlib.transfer import stylize

    # Fail before any work, and never touch an input (sample names protect data/ files).
    check_output_location(output)
    if style_masks:
        config.loss.check_masks()
    styles = style if isinstance(style, list) else [style]
    inputs = [content, *styles, *(style_masks or ())]
    for target in (output, record_path(output)):
        images.check_not_an_input(target, inputs)
    max_pixels = args.max_pixels or images.MAX_PIXELS
    content_image = images.load_image(content, max_pixels=max_pixels)
    style_images = [images.load_image(s, max_pixels=max_pixels) for s in styles]
    content_hw = tuple(int(n) for n in content_image.shape[1:3])
    style_hws = tuple(tuple(int(n) for n in s.shape[1:3]) for s in style_images)
    if plan is None or (plan.content_hw, plan.style_hws) != (content_hw, style_hws):
        plan = None  # not the plan whose memory was checked: stylize checks its own
    check_image_sizes(plan or make_plan(config, content_hw, style_hws))
    for mask in style_masks or ():  # readable and within --max-pixels; stylize checks sizes
        images.load_mask(mask, max_pixels=max_pixels)

    def save_intermediate(step, image, losses):
        if save_every and step > 0 and step % save_every == 0:
            with _sigterm_deferred(raise_after=True):
                images.save_image(image, output.with_name(f"{output.stem}.step{step:04d}.png"),
                                  inputs=inputs)

    try:
        result = stylize(content_image, style_images if isinstance(style, list) else
                         style_images[0], config, style_masks=style_masks,
                         callbacks=(save_intermediate, *callbacks),
                         progress=not args.no_progress if progress is None else progress,
                         checked_plan=plan)
    except NonFiniteLossError as err:
        with _sigterm_deferred():
            return _Written(*_save_failed_run(err, config, content, style, output, inputs))
    if result.config["status"] == "interrupted" and not result.config.get("steps_done"):
        # The signal landed before the first step finished: there is no result to keep
        # (the starting image is not one), and an earlier OUT stays as it was.
        raise Terminated() if _SigtermState.received else KeyboardInterrupt()
    # The CLI loaded the images itself (to check them first); record where they came from,
    # and what was asked (a batch re-run keeps a complete result that matches it).
    result.config.update(content=content, style=style, requested=config.non_default())
    with _sigterm_deferred():
        _say_replacing(output)
        try:
            image_path, record_file = result.save(output, inputs=inputs)
        except OSError as err:
            failed = err.filename if err.filename == str(record_path(output)) else output
            print(f"nst: error: could not write {failed} "
                  f"({err.strerror or err}); the previous {output.name} and its record, if "
                  f"any, are as they were", file=sys.stderr)
            return _Written(EXIT_FAILED, None)
    echo(summary_line(result, image_path, record_file))
    if _SigtermState.received:
        return _Written(EXIT_TERMINATED, image_path)
    if result.config["status"] == "interrupted":
        return _Written(EXIT_INTERRUPTED, image_path)
    return _Written(0, image_path)


def _say_replacing(output: Path) -> None:
    """One line when a write replaces files (or leaves an older-layout record beside)."""
    replaced = [str(p) for p in (output, record_path(output)) if p.exists()]
    if replaced:
        print(f"nst: replacing the existing {' and '.join(replaced)}", file=sys.stderr)
    legacy = legacy_record_path(output)
    if legacy.is_file() and not record_path(output).exists():
        print(f"nst: the record now goes to {record_path(output).name}; {legacy} (written "
              f"by an earlier version) is left as it is", file=sys.stderr)


def _save_failed_run(err, config, content: str, style, output: Path,
                     inputs) -> tuple[int, Path | None]:
    """The last finite image and a record with the run's settings: (EXIT_FAILED, image)."""
    from nstlib import images
    from nstlib._io import atomic_write_all, json_bytes

    if err.image is None:
        print(f"nst: error: {err}", file=sys.stderr)
        return EXIT_FAILED, None
    record = {"content": content, "style": style, **config.to_flat(), "status": "failed",
              "error": str(err), "history": err.history.to_dict(), "image": output.name,
              "requested": config.non_default()}
    for target in (output, record_path(output)):
        images.check_not_an_input(target, inputs)
    _say_replacing(output)
    atomic_write_all([(output, images.encode_image(err.image, output)),
                      (record_path(output), json_bytes(record))])
    print(f"nst: error: {err}; the last finite image is in {output}", file=sys.stderr)
    return EXIT_FAILED, output


def summary_line(result, image_path: Path, record_path: Path) -> str:
    """One line: where the result went, which weights, final losses, steps and time.

    The steps are the updates made (``steps_done``: with ``--scales 16,32 --steps 3``,
    3 + 3 = 6; the history's step numbers also count the second scale's starting row).
    """
    final, record = result.losses, result.config
    steps = record.get("steps_done", final.get("step", 0))
    return (f"{image_path} ({record_path.name}): weights {record['weights_source']}; "
            f"loss {final['total']:.4g} (content {final['content']:.3g}, style "
            f"{final['style']:.3g}, tv {final['tv']:.3g}); {steps} step"
            f"{'' if steps == 1 else 's'} in {record['wall_seconds']:.1f} s")


#: Files a content folder contributes to ``nst stylize`` (suffixes, any case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")


def stylize_inputs(args) -> tuple[list[str], list[str], bool]:
    """(contents, styles, batch) of a ``nst stylize`` command line (folders expanded).

    Without --style the last positional is the style (``nst stylize CONTENT STYLE``); with
    it every positional is a content. ``batch`` is True for several contents or a folder.
    """
    if args.styles:
        named, styles = list(args.images), list(args.styles)
    elif len(args.images) < 2:
        raise CliError("give a content and a style image: nst stylize CONTENT STYLE -o "
                       "OUT.png, or nst stylize CONTENT... --style STYLE -o OUT")
    else:
        named, styles = list(args.images[:-1]), [args.images[-1]]
    contents, folders = [], [Path(c) for c in named if _is_dir(c)]
    for item in named:
        if Path(item) in folders:
            found = sorted(str(p) for p in Path(item).iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CliError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the directory "
                               f"{item}")
            contents += found
        else:
            contents.append(item)
    batch = len(contents) > 1 or bool(folders)
    if batch and Path(args.output).suffix.lower() in IMAGE_SUFFIXES:
        what = f"{folders[0]} is a directory" if folders else f"{len(contents)} content images"
        raise CliError(f"{what}, so -o must be a folder for the results, got {args.output}")
    if args.style_masks and len(args.style_masks) != len(styles):
        raise CliError(f"{len(args.style_masks)} --style-mask for {len(styles)} style "
                       f"image(s); give one mask per style, in the same order")
    return contents, styles, batch


def _is_dir(path: str) -> bool:
    """Whether ``path`` is a folder (False where it cannot be examined: loading says why)."""
    try:
        return Path(path).is_dir()
    except OSError:
        return False


def batch_outputs(contents: list[str], out_dir: Path, inputs: list[str]) -> list[Path]:
    """``OUT/<content name>.png`` per content; refuses clashes and inputs (one line)."""
    from nstlib import images

    outputs, seen = [], {}
    for content in contents:
        output = out_dir / f"{Path(content).stem}.png"
        if output in seen:
            raise CliError(f"{seen[output]} and {content} would both be written to {output}; "
                           f"rename one")
        seen[output] = content
        for target in (output, record_path(output)):
            images.check_not_an_input(target, inputs)
        check_output_location(output)
        outputs.append(output)
    return outputs


def finished_before(output: Path, content: str, style, style_masks, config) -> bool:
    """Whether ``output`` is a complete result of this very request (a batch keeps it).

    True when the image exists and its record (``OUT.png.json``) says "completed" for the
    same content, style(s), masks and settings as asked (``StylizeConfig.non_default``,
    stored as ``requested``). Records of an earlier version (``OUT.json``) hold no
    ``requested``, so their image is stylized again.

    Raises:
        RecordError: the record exists but cannot be used (one line naming it).
    """
    try:
        record = load_record(record_path(output))
    except FileNotFoundError:
        return False
    wanted = {"content": content, "style": style, "style_masks": style_masks or None,
              "requested": config.non_default(), "status": "completed",
              "image": output.name}
    return output.is_file() and all(record.get(k) == v for k, v in wanted.items())


def run_batch(args, config, contents: list[str], style, outputs: list[Path],
              plans: dict | None = None) -> int:
    """Stylize every content with one progress bar; failures are reported, others finish.

    Contents whose result is already complete with these settings (``finished_before``)
    are kept unless ``--redo``. Ctrl-C or SIGTERM stops the batch with one line saying how
    many results are kept (the current image too, when a step had finished). ``plans``:
    content -> its plan from the headers (``plans_from_headers``), memory checked.
    """
    from tqdm import tqdm

    todo, kept = [], []
    for content, output in zip(contents, outputs, strict=True):
        try:
            done = not args.redo and finished_before(output, content, style,
                                                     args.style_masks, config)
        except RecordError as err:
            print(f"nst: {err}; {output.name} will be stylized again", file=sys.stderr)
            done = False
        (kept if done else todo).append((content, output))
    if kept:
        print(f"nst: keeping {len(kept)} of {len(contents)} results already complete with "
              f"these settings in {args.output} (--redo stylizes them again)", file=sys.stderr)
    per_run = sum(stage.steps for stage in config.stages())
    bar = tqdm(total=per_run * len(todo), unit="step", disable=args.no_progress, leave=False)

    def advance(step, image, losses):
        if step > 0:
            bar.update(1)

    failed, finished, current = 0, len(kept), None
    try:
        for number, (content, output) in enumerate(todo, 1):
            bar.set_description(f"stylize {number}/{len(todo)} {Path(content).name}")
            current = output
            try:
                code, written = _stylize_one(args, config, content, style, output,
                                             args.save_every, style_masks=args.style_masks,
                                             callbacks=(advance,), progress=False,
                                             echo=tqdm.write,
                                             plan=(plans or {}).get(content))
            except (CliError, ValueError, OSError) as err:
                message = str(err.strerror if isinstance(err, OSError) and err.strerror
                              else err)
                where = "" if content in message else f"{content}: "
                tqdm.write(f"nst: error: {where}{message}", file=sys.stderr)
                code, written = EXIT_FAILED, None
            bar.update(per_run * number - bar.n)  # also when L-BFGS stopped early
            if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
                bar.close()
                return _batch_stopped(args, code, finished, len(contents), written)
            failed += code != 0
            finished += code == 0
            current = None
    except KeyboardInterrupt as err:  # before the current image's first step finished
        bar.close()
        code = EXIT_TERMINATED if isinstance(err, Terminated) else EXIT_INTERRUPTED
        return _batch_stopped(args, code, finished, len(contents), None, current)
    finally:
        bar.close()
    more = f" ({len(kept)} kept from an earlier run)" if kept else ""
    print(f"nst: {len(contents) - failed} of {len(contents)} images stylized into "
          f"{args.output}{more}")
    if failed:
        print(f"nst: error: {failed} of {len(contents)} inputs failed (see above)",
              file=sys.stderr)
        return EXIT_FAILED
    return 0


def _batch_stopped(args, code: int, finished: int, total: int, written: Path | None,
                   current: Path | None = None) -> int:
    """The one line of a batch stopped by a signal; returns its exit code."""
    how = "terminated (SIGTERM)" if code == EXIT_TERMINATED else "interrupted"
    if written is not None:
        partial = f"; the current image was written to {written} (status interrupted)"
    else:
        partial = "" if current is None else f"; nothing was written for {current.name}"
    print(f"nst: {how}: {finished} of {total} results complete in {args.output}{partial}; "
          f"re-run the same command to stylize the rest (complete results are kept)",
          file=sys.stderr)
    return code


def plans_from_headers(config, contents, styles) -> dict:
    """Content -> the ``plan.RunPlan`` of its run, from the sizes the image headers give
    (no TensorFlow, no decoding; weights as ``weight_sources.likely_source`` expects).
    Contents (or styles) whose header gives no size are left out: loading them says why."""
    from nstlib.plan import make_plan
    from nstlib.resources import image_hw

    style_hws = [image_hw(s) for s in styles]
    if None in style_hws:
        return {}
    return {c: make_plan(config, hw, style_hws) for c in contents
            if (hw := image_hw(c)) is not None}


def check_memory(plans: dict) -> None:
    """Refuse (one line) a run whose plan's predicted peak memory exceeds the available
    memory (``resources.check_fits``; ``plans`` as ``plans_from_headers`` makes them)."""
    from nstlib import resources

    for plan in plans.values():
        try:
            resources.check_fits(plan, flag="--size")
        except resources.InsufficientMemoryError as err:
            raise CliError(str(err)) from None


def check_sizes_early(plans: dict, batch: bool) -> None:
    """``check_image_sizes`` of the plans made from the headers, before TensorFlow loads.

    A batch checks only the styles here (a flag such as ``--style-size 1`` fails every
    content alike); a content too small is reported as that input's failure.
    """
    for plan in plans.values():
        check_image_sizes(plan, check_content=not batch)
        if batch:
            return  # the styles are the same in every plan


def _header_problem(source: str) -> str:
    """Why ``resources.image_hw`` found no size for ``source`` (as loading would say it)."""
    path = Path(source)
    if _is_dir(source):
        return f"expected an image file, got a directory: {source}"
    if not path.exists():
        return f"image not found: {source}"
    return f"cannot read the size of {source} from its header (not an image Pillow can read?)"


def dry_run(config, contents, styles) -> int:
    """``nst stylize --dry-run``: the predictions per content image; 2 if one cannot fit."""
    from nstlib import resources

    for source in (*styles, *contents):
        if resources.image_hw(source) is None:
            raise CliError(f"--dry-run: {_header_problem(source)}")
    plans = plans_from_headers(config, contents, styles)
    available = resources.available_bytes()
    for content, plan in plans.items():
        if len(plans) > 1:
            print(f"{content}:")
        print("\n".join(plan.describe(available)))
    check_sizes_early(plans, batch=False)
    check_memory(plans)
    return 0


def cmd_stylize(args) -> int:
    config = settings_from(args)
    contents, styles, batch = stylize_inputs(args)
    blend = config.loss.style_blend
    if blend is not None and len(blend) != len(styles):
        raise CliError(f"--style-blend has {len(blend)} weights for {len(styles)} style "
                       f"image(s)")
    if args.dry_run:
        return dry_run(config, contents, styles)
    plans = plans_from_headers(config, contents, styles)
    check_sizes_early(plans, batch)
    check_memory(plans)
    style = styles if len(styles) > 1 else styles[0]
    if not batch:
        check_output_location(Path(args.output))
        _import_tensorflow_quietly()
        return run_one(args, config, contents[0], style, Path(args.output), args.save_every,
                       style_masks=args.style_masks, plan=plans.get(contents[0]))
    _import_tensorflow_quietly()  # before nstlib.images, which imports TensorFlow
    outputs = batch_outputs(contents, Path(args.output),
                            [*contents, *styles, *(args.style_masks or ())])
    return run_batch(args, config, contents, style, outputs, plans)


def cmd_demo(args) -> int:
    from nstlib.config import QUICK

    # full mode: stylize's defaults (256 px, the default method and the weights' recipe)
    config = settings_from(args, **({"size": 64, "steps": 20} if QUICK else {}))
    out_dir = Path(args.output_dir)
    plans = {}
    for content, style in DEMO_PAIRS:
        check_output_location(out_dir / f"{content}_{style}.png")
        found = plans_from_headers(config, [content], [style])
        check_memory(found)
        plans[content, style] = found.get(content)
    _import_tensorflow_quietly()
    for content, style in DEMO_PAIRS:
        code = run_one(args, config, content, style, out_dir / f"{content}_{style}.png",
                       plan=plans[content, style])
        if code:
            return code
    return 0


def cmd_ablate(args) -> int:
    """``nst ablate``: run a grid; exit 0 when no run failed (runs left to another runner on
    the same folder do not count as failed), 1 when some failed, 2 for a bad grid or option
    (nothing written), 130 for Ctrl-C and 143 for SIGTERM (finished runs kept: re-running
    completes the rest).

    The grid is validated before anything else; this process never imports TensorFlow
    (the workers do), so a bad grid fails at once.
    """
    import signal

    from nstlib import ablation

    external = args.scheduler not in (None, "local-cluster")
    if external and args.workers is not None:
        raise CliError("--workers applies to local processes and 'local-cluster'; an "
                       "existing Dask cluster has its own workers")
    grid = ablation.load_grid(args.grid)  # a bad grid fails here: one line, exit 2
    out_dir = Path(args.output_dir)
    if (out_dir / ablation.RUNS_DIR).is_dir():  # say first what happens to damaged records
        specs = ablation.stored_specs(grid, out_dir)
        for rid, problem in ablation.damaged_records(specs, out_dir).items():
            print(f"nst: {problem}; run {rid} will be run again and that file replaced",
                  file=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # inherited by the workers
    try:
        result = ablation.run_grid(grid, args.output_dir, workers=args.workers,
                                   scheduler=args.scheduler, progress=not args.no_progress)
    except ImportError as err:
        raise CliError(str(err)) from None
    except ablation.GridWriteError as err:
        rows = err.result.rows if err.result is not None else []
        complete = sum(row["status"] == ablation.COMPLETED for row in rows)
        finished = len(err.result.executed) if err.result is not None else 0
        print(f"nst: error: could not write {err.filename} ({err.strerror}); {complete} of "
              f"{len(rows)} runs complete in {args.output_dir} ({finished} finished by this "
              f"call); {_fix_first(err)}re-run the same command to resume", file=sys.stderr)
        return EXIT_FAILED
    except ablation.GridInterrupted as stop:
        rows = stop.result.rows if stop.result is not None else []
        complete = sum(row["status"] == ablation.COMPLETED for row in rows)
        # Counted from the records on disk: a worker may have written its record just
        # before the signal, when this process had not yet heard of it.
        finished = complete - (len(stop.result.skipped) if stop.result is not None else 0)
        how = "interrupted" if stop.signum == signal.SIGINT else "stopped by SIGTERM"
        print(f"nst: {how}: {finished} run(s) finished before it, {complete} of {len(rows)} "
              f"complete in {args.output_dir}; re-run the same command to complete the rest",
              file=sys.stderr)
        return 128 + int(stop.signum)
    print(ablation.summary_line(result))
    if result.failed:
        print(f"nst: error: {len(result.failed)} of {len(result.rows)} runs failed (errors in "
              f"{result.table_paths[0]}); re-running retries them", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_report(args) -> int:
    """``nst report``: figures and results.md of a results folder; prints the paths written.

    Exit 0 when the report has figures (some runs completed; failed ones are listed with
    their errors). Exit 1 when no run has completed: results.md is still written, with
    the table of failed and not-run runs and each error, and one line on stderr says so.
    Exit 2 when the folder is not a results folder.
    """
    import matplotlib

    matplotlib.use("Agg")
    from nstlib import ablation

    result = ablation.load_results(args.results_dir, write=False)
    for number, spec in enumerate(result.specs, 1):
        if spec.run_id in result.damaged:
            print(f"nst: {result.damaged[spec.run_id]}; run #{number} is listed as not run "
                  f"(nst ablate on {args.results_dir} runs it again)", file=sys.stderr)
    try:
        paths = ablation.write_report(args.results_dir, result)
    except OSError as err:
        print(f"nst: error: could not write {err.filename} ({err.strerror or err}); the "
              f"report and table in {args.results_dir} are as they were; {_fix_first(err)}"
              f"re-run nst report {args.results_dir}", file=sys.stderr)
        return EXIT_FAILED
    for path in paths.values():
        print(path)
    if "images" not in paths:
        statuses = [row["status"] for row in result.rows]
        print(f"nst: error: no completed runs in {args.results_dir} ("
              f"{statuses.count(ablation.FAILED)} failed, {statuses.count(ablation.PENDING)} "
              f"not run); {paths['markdown']} lists them with their errors", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _fix_first(err: OSError) -> str:
    """"free some space, then " for a full disk (else nothing): what to do before re-running."""
    return "free some space, then " if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""


# ----------------------------------------------------------------------------- entry


def main(argv=None) -> int:
    """Entry point of the ``nst`` console script."""
    try:
        args = build_parser().parse_args(argv)  # no TensorFlow yet: usage errors are quick
        with _sigterm_as_ctrl_c(args.command in SIGTERM_AS_CTRL_C):
            return args.handler(args)
    except KeyboardInterrupt as err:  # also while TensorFlow is still being imported
        if isinstance(err, Terminated):
            print("nst: terminated (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED
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
