"""What ``nst stylize`` checks before TensorFlow loads: its inputs (folders expanded,
styles and masks counted) and the plan made from the image headers (sizes, memory).

Every check here is the library's (``settings.check_style_counts``, ``RunPlan.check_sizes``,
``resources.check_fits``), its message with the setting spelled as the flag
(``parser.flag_error``).
"""

from __future__ import annotations

from pathlib import Path

from nstlib.cli.errors import CliError
from nstlib.cli.parser import flag_error

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
    return contents, styles, batch


def _is_dir(path: str) -> bool:
    """Whether ``path`` is a folder (False where it cannot be examined: loading says why)."""
    try:
        return Path(path).is_dir()
    except OSError:
        return False


def check_styles(config, styles: list[str], style_masks: list[str] | None) -> None:
    """``settings.check_style_counts`` of a command line: one --style-blend weight and one
    --style-mask (if any) per style image (``CliError`` naming the flag)."""
    from nstlib._options import ConfigError
    from nstlib.settings import check_style_counts

    try:
        check_style_counts(len(styles), config.loss.style_blend,
                           None if style_masks is None else len(style_masks))
    except ConfigError as err:
        raise flag_error(err) from None


def check_image_sizes(plan, check_content: bool = True) -> None:
    """``RunPlan.check_sizes`` (an image too small for the network, at the exact sizes
    ``stylize`` resizes to), with the setting at fault spelled as its flag (``--size``,
    ``--scales``, ``--style-size``, ``--style-scale`` or ``--pyramid-levels``).

    Needs no TensorFlow: ``cmd_stylize`` calls it with the plan made from the sizes the
    image headers give, ``run_one`` with the plan of the images loaded.

    Raises:
        CliError: the library's one line, e.g. "--size 18 is too small: the content image
            would be 15x18 px and block5_conv1 needs a shorter side of at least 16 px".
    """
    from nstlib._options import ConfigError

    try:
        plan.check_sizes(check_content)
    except ConfigError as err:
        raise flag_error(err) from None


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
