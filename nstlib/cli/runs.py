"""Stylizing with ``nst``: one content (``run_one``) or a batch under one progress bar
(``run_batch``), each result written with its record, a signal's partial result kept.

The images are loaded (TensorFlow) only here; every check before that is in ``inputs``
and ``output``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

from nstlib.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED, CliError
from nstlib.cli.inputs import check_image_sizes
from nstlib.cli.output import (
    _save_failed_run,
    _say_replacing,
    check_output_location,
    finished_before,
    summary_line,
)
from nstlib.cli.signals import Terminated, _sigterm_deferred, _SigtermState
from nstlib.records import RecordError, record_path


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
    if result.record["status"] == "interrupted" and not result.record.get("steps_done"):
        # The signal landed before the first step finished: there is no result to keep
        # (the starting image is not one), and an earlier OUT stays as it was.
        raise Terminated() if _SigtermState.received else KeyboardInterrupt()
    # The CLI loaded the images itself (to check them first); record where they came from,
    # and what was asked (a batch re-run keeps a complete result that matches it).
    result.record.update(content=content, style=style, requested=config.non_default())
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
    if result.record["status"] == "interrupted":
        return _Written(EXIT_INTERRUPTED, image_path)
    return _Written(0, image_path)


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
