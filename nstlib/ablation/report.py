"""Report: image grid, metric plots, Markdown table of a results folder."""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nstlib._io import atomic_write_all
from nstlib.ablation.grid import canonical_config, format_value, run_id, short_label, varying_keys
from nstlib.ablation.runner import TABLE_FILE, AblationResult, load_results, table_files
from nstlib.ablation.worker import COMPLETED, FAILED, PENDING, RUNS_DIR, image_path


def _label(key: str, value) -> str:
    return f"{key} = {format_value(value)}"


def grid_layout(result: AblationResult) -> tuple[list, list[str]]:
    """Panels of the image grid: columns are the last axis, rows the other axes' combinations.

    Returns:
        (rows, column titles); each row is (row label, [spec or None per column],
        per-panel titles or None). Extra runs fill further rows with their own titles.
    """
    grid = result.grid
    by_id = {run_id(spec.config): spec for spec in result.specs}  # spec.run_id may be legacy
    axes, rows, columns, placed = list(grid.axes), [], [], set()
    if axes:
        last = axes[-1]
        columns = [_label(last, v) for v in grid.axes[last]]
        for values in itertools.product(*(grid.axes[a] for a in axes[:-1])):
            cells = []
            for value in grid.axes[last]:
                setting = dict(zip(axes, (*values, value), strict=True))
                rid = run_id(canonical_config({**grid.fixed, **setting}, grid.evaluate))
                cells.append(by_id.get(rid))
                placed.add(rid)
            label = "\n".join(_label(a, v) for a, v in zip(axes[:-1], values, strict=True))
            rows.append((label, cells, None))
    extra = [spec for spec in result.specs if run_id(spec.config) not in placed]
    width = max(1, len(columns) or min(4, len(extra)))
    for start in range(0, len(extra), width):
        chunk = extra[start:start + width]
        titles = [", ".join(_label(k, s.swept[k]) for k in varying_keys(result.specs)
                            if k not in grid.axes) or s.label for s in chunk]
        rows.append(("extra runs" if axes else "", chunk + [None] * (width - len(chunk)),
                     titles + [""] * (width - len(chunk))))
    return rows, columns


def _panel_text(row: dict) -> str:
    if row["status"] != COMPLETED:
        return row["status"]
    return f"loss {row['final_total']:.3g}, {row.get('wall_seconds') or 0:.0f} s"


def plot_image_grid(result: AblationResult, panel_size: float = 2.6):
    """The results as an image grid labelled with the swept values.

    Returns:
        A matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    rows, columns = grid_layout(result)
    by_id = {row["run_id"]: row for row in result.rows}
    n_cols = max(len(cells) for _, cells, _ in rows)
    done = [image_path(result.out_dir, r["run_id"]) for r in result.rows
            if r["status"] == COMPLETED]
    aspect = 1.0
    if done and done[0].is_file():
        width, height = Image.open(done[0]).size
        aspect = min(2.0, max(0.5, height / width))
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(
        panel_size * n_cols + 1.2, (panel_size * aspect + 0.7) * len(rows) + 0.8),
        squeeze=False)
    for r, (row_label, cells, titles) in enumerate(rows):
        for c in range(n_cols):
            ax, spec = axes[r][c], cells[c] if c < len(cells) else None
            ax.set_xticks([])
            ax.set_yticks([])
            if spec is None:
                ax.axis("off")
                continue
            row = by_id[spec.run_id]
            path = image_path(result.out_dir, spec.run_id)
            if row["status"] == COMPLETED and path.is_file():
                ax.imshow(np.asarray(Image.open(path)))
            else:
                ax.text(0.5, 0.5, f"{row['status']}\n{(row.get('error') or '')[:60]}",
                        ha="center", va="center", wrap=True, fontsize=8, color="firebrick")
            ax.set_xlabel(_panel_text(row), fontsize=8)
            if titles:
                ax.set_title(titles[c], fontsize=8)
            elif r == 0 and columns:
                ax.set_title(columns[c], fontsize=9)
            if c == 0 and row_label:
                ax.set_ylabel(row_label, fontsize=9)
    fig.suptitle(f"{result.grid.name}: results ({_weights_label(result.rows)})")
    fig.tight_layout()
    return fig


def _log_scale(ax, values, label: str) -> None:
    """A log y axis when some value is positive and finite (matplotlib cannot log-scale an
    axis without one), else linear; ``label`` gets the scale appended."""
    values = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    positive = bool(np.any(np.isfinite(values) & (values > 0)))
    if positive:
        ax.set_yscale("log")
    ax.set_ylabel(f"{label} ({'log' if positive else 'linear'} scale)")


def plot_metrics(result: AblationResult):
    """Final loss per run, total loss against wall-clock time, and the style/content trade-off.

    Returns:
        A matplotlib Figure with three panels.
    """
    import matplotlib.pyplot as plt

    fig, (ax_bar, ax_time, ax_trade) = plt.subplots(1, 3, figsize=(17, 4.8))
    positions = np.arange(len(result.rows))
    finals = [row.get("final_total") if row["status"] == COMPLETED else np.nan
              for row in result.rows]
    ax_bar.bar(positions, finals, color="steelblue")
    ax_bar.set_xticks(positions, [f"#{i + 1}" for i in positions])
    ax_bar.set_xlim(-0.6, len(positions) - 0.4)  # also the runs without a bar
    for i, row in enumerate(result.rows):
        if row["status"] != COMPLETED:
            ax_bar.annotate(row["status"], (i, 0), xycoords=("data", "axes fraction"),
                            xytext=(0, 4), textcoords="offset points", rotation=90,
                            ha="center", va="bottom", color="firebrick", fontsize=8)
    _log_scale(ax_bar, finals, "final total loss (dimensionless)")
    ax_bar.set_xlabel("run (# as in the table)")
    ax_bar.set_title("Final loss per run")
    plot_loss_vs_time(result, ax=ax_time)
    _plot_tradeoff(result, ax_trade)
    fig.suptitle(f"{result.grid.name}: metrics")
    fig.tight_layout()
    return fig


def plot_loss_vs_time(result: AblationResult, ax=None):
    """Total loss of every completed run against wall-clock seconds.

    Returns:
        The matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.5))
    keys, totals = varying_keys(result.specs), []
    for i, (spec, row) in enumerate(zip(result.specs, result.rows, strict=True)):
        record = result.record(spec.run_id) if row["status"] == COMPLETED else None
        history = (record or {}).get("history") or {}
        if history.get("seconds") and len(history.get("total") or ()) == len(
                history["seconds"]):
            ax.plot(history["seconds"], history["total"],
                    label=f"#{i + 1} {short_label(spec, keys)}")
            totals += history["total"]
    _log_scale(ax, totals, "total loss (dimensionless)")
    ax.set_xlabel("wall-clock time since the optimisation started (s)")
    ax.set_title("Loss against time")
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, title=", ".join(keys) or None, title_fontsize=7)
    return ax


def _plot_tradeoff(result: AblationResult, ax) -> None:
    points = [(i, row) for i, row in enumerate(result.rows) if row["status"] == COMPLETED
              and all(isinstance(row.get(k), int | float)
                      for k in ("content_distance", "style_distance"))]
    for i, row in points:
        ax.scatter(row["content_distance"], row["style_distance"], color="darkorange")
        ax.annotate(f"#{i + 1}", (row["content_distance"], row["style_distance"]),
                    xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_xlabel("content distance ||F - P|| / ||P|| (relative)")
    ax.set_ylabel("style distance, mean ||G - A|| / ||A|| (relative)")
    ax.set_title("Style vs content distance (lower is closer)")
    ax.grid(True, alpha=0.3)


def _markdown_number(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(result: AblationResult) -> str:
    """The results as a Markdown table (one row per run, swept values as labels)."""
    swept = result.grid.swept_keys
    head = ["#", "run", *swept, "status", "total loss", "content", "style", "SSIM",
            "content dist.", "style dist.", "time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, row in enumerate(result.rows):
        cells = [str(i + 1), f"`{row['run_id']}`",
                 *(format_value(row.get(k)) for k in swept), row["status"],
                 *(_markdown_number(row.get(k)) for k in (
                     "final_total", "final_content", "final_style", "ssim",
                     "content_distance", "style_distance", "wall_seconds"))]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def _environment_line(result: AblationResult) -> str:
    for spec in result.specs:
        environment = (result.record(spec.run_id) or {}).get("environment")
        if environment and environment.get("tensorflow"):  # not a lost worker's stand-in
            return (f"nstlib {environment.get('nstlib')}, TensorFlow "
                    f"{environment.get('tensorflow')}, host {environment.get('host')}")
    return "no run has finished yet"


def _weights_label(rows) -> str:
    """The weights sources of the completed runs with their networks, e.g.
    "hed-vgg16 weights (VGG16)"; "no completed runs" when there are none."""
    done = [row for row in rows if row["status"] == COMPLETED]
    if not done:
        return "no completed runs"
    sources = sorted({str(row.get("weights_source")) for row in done})
    networks = sorted({str(row.get("architecture") or "network not recorded").upper()
                       for row in done})
    return f"{', '.join(sources)} weights ({', '.join(networks)})"


def markdown_report(result: AblationResult, figures: Sequence[str] = ()) -> str:
    """``results.md``: what was run, with which weights, the table and the figures."""
    grid, rows = result.grid, result.rows
    statuses = [row["status"] for row in rows]
    fixed = ", ".join(f"{k} = {format_value(v)}" for k, v in grid.fixed.items()) or "none"
    axes = "; ".join(f"{k} in {{{', '.join(format_value(v) for v in values)}}}"
                     for k, values in grid.axes.items()) or "none"
    text = [f"# Ablation: {grid.name}", "",
            f"{len(rows)} runs: {statuses.count(COMPLETED)} completed, "
            f"{statuses.count(FAILED)} failed, {statuses.count(PENDING)} not run. "
            f"Weights: {_weights_label(rows)}. {_environment_line(result)}.", "",
            f"* Fixed: {fixed}", f"* Axes (all combinations): {axes}",
            f"* Extra runs: {len(grid.runs)}", "",
            "Losses are the unweighted terms of the last step; distances are relative "
            "(0 = identical to the target) and measured with the same evaluation network "
            "for every run; time is stylize's wall-clock time.", "",
            markdown_table(result), ""]
    if not statuses.count(COMPLETED):
        text += ["No run has completed, so there are no figures; the errors are below."]
    text += [f"![{name}]({name})" for name in figures]
    text += ["", f"Full table: `{TABLE_FILE}`; per-run records: `{RUNS_DIR}/<run>.json`.", ""]
    for i, row in enumerate(rows):
        if row["status"] == FAILED:
            error = str(row.get("error"))
            error = error if len(error) <= 200 else error[:200] + "... (see its record)"
            text.append(f"* run #{i + 1} `{row['run_id']}` failed: {error}")
        elif row["run_id"] in result.damaged:
            text.append(f"* run #{i + 1} `{row['run_id']}` is listed as not run: "
                        f"{result.damaged[row['run_id']]}")
    return "\n".join(text).rstrip() + "\n"


def write_report(out_dir, result: AblationResult | None = None) -> dict[str, Path]:
    """Write ``images.png``, ``metrics.png``, ``results.md`` and the table into a results
    folder.

    Everything is drawn and written out in full before any file is replaced
    (``_io.atomic_write_all``), so a failure (a full disk, a damaged folder) leaves the
    previous report and table as they were. With no completed run there is nothing to
    plot: only ``results.md`` and the table are written (with each failed run's error),
    and earlier figures are left as they are.

    Args:
        out_dir: The results folder.
        result: Its ``load_results(out_dir, write=False)``, if already read.

    Returns:
        {"images": path, "metrics": path, "markdown": path, "table": results.csv path},
        without "images" and "metrics" when no run has completed.

    Raises:
        OSError: a file could not be written; ``filename`` is the destination.
    """
    import matplotlib.pyplot as plt

    result = load_results(out_dir, write=False) if result is None else result
    out_dir = Path(out_dir)
    files = {}
    plots = (("images", plot_image_grid), ("metrics", plot_metrics))
    for name, plot in plots if any(r["status"] == COMPLETED for r in result.rows) else ():
        fig = plot(result)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        files[name] = (out_dir / f"{name}.png", buffer.getvalue())
    text = markdown_report(result, [path.name for path, _ in files.values()])
    files["markdown"] = (out_dir / "results.md", text.encode("utf-8"))
    table = table_files(result.rows, out_dir, result.grid.swept_keys)
    atomic_write_all([*files.values(), *table])
    result.table_paths = [path for path, _ in table]
    return {**{name: path for name, (path, _) in files.items()}, "table": table[0][0]}
