"""The four commands of ``nst``: ``stylize`` (with ``--dry-run``), ``demo``, ``ablate`` and
``report``; each returns its exit code. ``COMMANDS`` maps a subcommand to its function.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

from nstlib.cli.errors import EXIT_FAILED, CliError
from nstlib.cli.inputs import (
    _header_problem,
    check_memory,
    check_sizes_early,
    check_styles,
    plans_from_headers,
    stylize_inputs,
)
from nstlib.cli.output import batch_outputs, check_output_location
from nstlib.cli.parser import settings_from
from nstlib.cli.runs import run_batch, run_one
from nstlib.cli.signals import _import_tensorflow_quietly

#: The demo's (content, style) pairs, all bundled with the project (data/README.md).
DEMO_PAIRS = (("chelsea", "brushstrokes"), ("astronaut", "mosaic"))


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
    check_styles(config, styles, args.style_masks)  # --style-blend, --style-mask counts
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


#: Subcommand -> the function that runs it (``main`` calls it with the parsed arguments).
COMMANDS = {"stylize": cmd_stylize, "demo": cmd_demo, "ablate": cmd_ablate,
            "report": cmd_report}
