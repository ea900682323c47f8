"""The ``nst`` command: ``nst stylize``, ``nst demo``, ``nst ablate``, ``nst report``.

Bad input never produces a traceback: every error a user can cause is reported as one
line on stderr with a non-zero exit code (2 for bad input, 1 for a failed run, 130 for
Ctrl-C, 143 for SIGTERM), and nothing that existed before is overwritten. ``nst stylize``
and ``nst demo`` treat SIGTERM (``timeout``, a job scheduler, a kernel stop) like Ctrl-C:
the current image and its record are written.

The package, one concept a module, data flowing one way (each imports only those above):
``errors`` (exit codes, ``CliError``), ``signals`` (SIGTERM as Ctrl-C, quiet TensorFlow
import), ``parser`` (flags generated from ``StylizeConfig``), ``output`` (where results
go), ``inputs`` (the library's checks before TensorFlow loads), ``runs`` (one content or a
batch), ``commands`` (the four subcommands) and here ``main``.
"""

from __future__ import annotations

import sys

from nstlib.cli.commands import (
    COMMANDS,
    DEMO_PAIRS,
    cmd_ablate,
    cmd_demo,
    cmd_report,
    cmd_stylize,
    dry_run,
)
from nstlib.cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    CliError,
)
from nstlib.cli.inputs import (
    IMAGE_SUFFIXES,
    check_image_sizes,
    check_memory,
    check_sizes_early,
    check_styles,
    plans_from_headers,
    stylize_inputs,
)
from nstlib.cli.output import (
    batch_outputs,
    check_output_location,
    finished_before,
    summary_line,
)
from nstlib.cli.parser import (
    FLAG_ALIASES,
    add_run_options,
    build_parser,
    flag_error,
    settings_from,
)
from nstlib.cli.runs import run_batch, run_one
from nstlib.cli.signals import (  # noqa: F401 - their old home, for tests and scripts
    SIGTERM_AS_CTRL_C,
    Terminated,
    _import_tensorflow_quietly,
    _on_sigterm,
    _sigterm_as_ctrl_c,
    _sigterm_deferred,
    _SigtermState,
)


def main(argv=None) -> int:
    """Entry point of the ``nst`` console script."""
    try:
        args = build_parser().parse_args(argv)  # no TensorFlow yet: usage errors are quick
        with _sigterm_as_ctrl_c(args.command in SIGTERM_AS_CTRL_C):
            return COMMANDS[args.command](args)
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


__all__ = ["COMMANDS", "DEMO_PAIRS", "EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED",
           "EXIT_TERMINATED", "FLAG_ALIASES", "IMAGE_SUFFIXES", "SIGTERM_AS_CTRL_C", "CliError",
           "Terminated", "add_run_options", "batch_outputs", "build_parser",
           "check_image_sizes", "check_memory", "check_output_location", "check_sizes_early",
           "check_styles", "cmd_ablate", "cmd_demo", "cmd_report", "cmd_stylize", "dry_run",
           "finished_before", "flag_error", "main", "plans_from_headers", "run_batch",
           "run_one", "settings_from", "stylize_inputs", "summary_line"]
