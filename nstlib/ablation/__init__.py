"""Ablations: grids of ``stylize`` runs, locally or on a Dask cluster, with a results table.

A grid is a small YAML file (or the same structure as a dict)::

    name: optimizers                  # optional, used in titles
    fixed:                            # settings of every run: content, style, and any
                                      # StylizeConfig setting by flat name
      content: chelsea
      style: brushstrokes
      size: 128
      steps: 100
    axes:                             # values combine (product), first axis slowest
      optimizer: [adam, rmsprop]
      learning_rate: [0.005, 0.02]
    runs:                             # optional extra runs: settings over ``fixed``
      - {optimizer: lbfgs}
    evaluate:                         # optional: the network that measures the metrics
      style_layers: [block1_conv1, block2_conv1]

The settings are the fields of ``StylizeConfig`` (``StylizeConfig.flat_fields()``, the same
names as ``stylize``'s keywords and ``nst stylize``'s flags): each value is coerced by its
field's type (YAML's ``1e-2`` string -> 0.01, ``none`` -> None) and every run is validated
when the grid loads, so a bad value fails before anything runs, naming the run and the key.

Every run's config holds its inputs, every setting (defaults filled in) and the evaluation
settings, and goes into its record; its id is a short hash of only what differs from the
defaults (see ``nstlib.ablation.grid``), so the same settings always get the same id, on
any machine, and a new setting with a default changes no id. Folders written before
``StylizeConfig`` (ids over every argument) still resume. Runs go to worker processes on this
machine (``LocalBackend``) or to a Dask cluster (``DaskBackend``); each finished run is
written at once (``runs/<id>.png`` and ``runs/<id>.json``, atomically) and re-running a grid
skips the runs already complete. ``run_grid`` collects one row per run into
``results.csv`` (and ``results.parquet`` when pyarrow is installed); ``write_report``
adds figures and a Markdown table.

Several runners may share one results folder (two ``nst ablate`` on it, or one per machine
of a shared file system): each claims a run just before executing it (``runs/<id>.lock``,
created with O_EXCL, holding pid, host and start time) and skips the runs another runner
holds. A claim whose runner is gone is taken over: at once when that runner was on this
host and its process no longer exists; otherwise (another host, an unreadable lock) once
the lock has gone ``STALE_CLAIM_SECONDS`` (15 minutes) without the refresh its runner
makes every minute (``nstlib.ablation.worker.claim``). Each run's lock is removed when it
finishes, and every lock of a runner when it stops.
Ctrl-C or SIGTERM ends the workers, keeps every finished run and releases the claims
(``GridInterrupted``); so does a result that cannot be written, e.g. on a full disk
(``GridWriteError``: a run's image and record are replaced together or not at all);
re-running completes the rest. A record that is damaged (cut short, not a JSON object,
another run's) counts as no record: ``AblationResult.damaged`` says which and why, and the
run is run again.

Relative image paths in a grid file are resolved against the file's folder; sample names
(``nstlib.sample_names()``) work as they do in ``stylize``.

The package is five modules, each importing only from the ones before it:
``grid`` (declaration, validation, expansion, ids) -> ``worker`` (one run in a worker
process, its record and files) -> ``backends`` (where runs execute: local processes, Dask)
-> ``runner`` (``run_grid``, the results table, ``load_results``) -> ``report`` (figures,
Markdown). Every public name is re-exported here: use ``nstlib.ablation.run_grid`` etc.
"""

from nstlib.ablation.backends import (
    DaskBackend,
    LocalBackend,
    available_cpus,
    check_scheduler,
    make_backend,
)
from nstlib.ablation.grid import (
    EVALUATE_DEFAULTS,
    GRID_KEYS,
    ID_LENGTH,
    INPUTS,
    LEGACY_V1_DEFAULTS,
    LEGACY_V1_FLOAT_ARGUMENTS,
    SCHEMA_VERSION,
    Grid,
    GridError,
    RunSpec,
    canonical_config,
    canonical_json,
    format_value,
    legacy_run_id,
    load_grid,
    parse_grid,
    run_description,
    run_id,
    setting_fields,
    short_label,
    varying_keys,
)
from nstlib.ablation.report import (
    grid_layout,
    markdown_report,
    markdown_table,
    plot_image_grid,
    plot_loss_vs_time,
    plot_metrics,
    write_report,
)
from nstlib.ablation.runner import (
    GRID_FILE,
    TABLE_END,
    TABLE_FILE,
    TABLE_HEAD,
    TABLE_TAIL,
    AblationResult,
    GridInterrupted,
    GridWriteError,
    collect,
    damaged_records,
    load_results,
    read_table,
    run_grid,
    save_grid,
    stored_specs,
    summary_line,
    table_files,
    table_row,
    write_table,
)
from nstlib.ablation.worker import (
    CLAIM_REFRESH_SECONDS,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    PENDING,
    RUNS_DIR,
    STALE_CLAIM_SECONDS,
    claim,
    claim_is_live,
    execute_run,
    image_path,
    is_complete,
    limit_threads,
    lock_path,
    persist,
    read_claim,
    read_record,
    record_path,
    record_problem,
    refresh_claim,
    release_claim,
    tensorflow_import_silenced,
)

__all__ = [
    "GRID_KEYS",
    "INPUTS",
    "SCHEMA_VERSION",
    "LEGACY_V1_DEFAULTS",
    "LEGACY_V1_FLOAT_ARGUMENTS",
    "EVALUATE_DEFAULTS",
    "RUNS_DIR",
    "GRID_FILE",
    "TABLE_FILE",
    "ID_LENGTH",
    "COMPLETED",
    "FAILED",
    "INTERRUPTED",
    "PENDING",
    "GridError",
    "setting_fields",
    "run_description",
    "legacy_run_id",
    "canonical_json",
    "run_id",
    "canonical_config",
    "format_value",
    "RunSpec",
    "Grid",
    "parse_grid",
    "load_grid",
    "limit_threads",
    "tensorflow_import_silenced",
    "execute_run",
    "record_path",
    "image_path",
    "read_record",
    "record_problem",
    "is_complete",
    "persist",
    "STALE_CLAIM_SECONDS",
    "CLAIM_REFRESH_SECONDS",
    "lock_path",
    "read_claim",
    "claim_is_live",
    "claim",
    "refresh_claim",
    "release_claim",
    "TABLE_HEAD",
    "TABLE_TAIL",
    "TABLE_END",
    "table_row",
    "varying_keys",
    "short_label",
    "write_table",
    "table_files",
    "read_table",
    "AblationResult",
    "GridInterrupted",
    "GridWriteError",
    "collect",
    "damaged_records",
    "save_grid",
    "load_results",
    "stored_specs",
    "available_cpus",
    "LocalBackend",
    "DaskBackend",
    "check_scheduler",
    "make_backend",
    "run_grid",
    "summary_line",
    "grid_layout",
    "plot_image_grid",
    "plot_metrics",
    "plot_loss_vs_time",
    "markdown_table",
    "markdown_report",
    "write_report",
]
