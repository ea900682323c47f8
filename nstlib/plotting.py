"""Figures the notebooks share: image panels and loss curves, titled and with labelled axes.

Display only: nothing here computes a number that a result depends on. Images are
array-likes (NumPy arrays or tensors) in [0, 1]; every function returns the matplotlib
Figure or Axes it drew on, so a notebook can add to it (a patch, a colour bar) before
``plt.show()``. TensorFlow is not imported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

#: Axis labels for the history columns that ``plot_loss_curves`` plots against.
X_LABELS = {"step": "optimisation step",
            "seconds": "wall-clock time since the optimisation started (s)"}


def _display_array(image) -> np.ndarray:
    """One image as the array ``imshow`` gets: RGB clipped to [0, 1], or grey.

    Args:
        image: (H, W) grey, (H, W, 3) or (H, W, 1), or a batch of one, (1, H, W, C);
            values in [0, 1] (RGB values outside are clipped, as an image would be saved).

    Returns:
        (H, W, 3) RGB or (H, W) grey NumPy array.

    Raises:
        ValueError: a batch of more than one image, or any other shape.
    """
    array = np.asarray(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        return array
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError("image must have shape (H, W), (H, W, 1 or 3) or (1, H, W, C), "
                         f"got {np.shape(image)}")
    return np.clip(array, 0.0, 1.0)


def show_image(ax, image, title: str | None = None, *, unit: str = "pixels",
               fontsize: float | None = None, **imshow_kwargs):
    """Draw one image on ``ax`` with a title and both axes labelled in ``unit``.

    Taught in notebook 07: the ``show(ax, image, title)`` panels of its AdaIN figures
    (and notebook 08's WCT figures).

    Args:
        ax: A matplotlib Axes.
        image: (H, W) grey, (H, W, 1 or 3) or (1, H, W, C), values in [0, 1] (RGB values
            outside are clipped); grey is drawn with ``cmap="gray"`` on [0, 1] unless
            ``imshow_kwargs`` say otherwise.
        title: Panel title (None: no title).
        unit: Unit of the axis labels, "x (pixels)" and "y (pixels)" by default.
        fontsize: Title font size (None: matplotlib's default).
        **imshow_kwargs: Passed to ``ax.imshow`` (e.g. ``interpolation="nearest"``).

    Returns:
        ``ax``.
    """
    array = _display_array(image)
    if array.ndim == 2:
        for key, value in (("cmap", "gray"), ("vmin", 0.0), ("vmax", 1.0)):
            imshow_kwargs.setdefault(key, value)
    ax.imshow(array, **imshow_kwargs)
    if title is not None:
        ax.set_title(title, fontsize=fontsize)
    ax.set_xlabel(f"x ({unit})")
    ax.set_ylabel(f"y ({unit})")
    return ax


def _panel_list(panels) -> list[tuple[str, object]]:
    items = list(panels.items()) if isinstance(panels, Mapping) else list(panels)
    if not items:
        raise ValueError("show_images needs at least one (title, image) panel")
    for item in items:
        if not (isinstance(item, Sequence) and len(item) == 2):
            raise ValueError("panels must be a {title: image} mapping or (title, image) "
                             f"pairs, got an item of type {type(item).__name__}")
    return items


def show_images(panels, *, title: str | None = None, ncols: int | None = None,
                panel_size: float = 3.6, unit: str = "pixels", fontsize: float | None = None,
                **imshow_kwargs):
    """A row or grid of image panels, each with its title, in one figure.

    Taught in notebook 00: the content | style | result figure; notebooks 01-08 draw
    their result rows with it.

    Args:
        panels: {title: image} or a sequence of (title, image) pairs, drawn left to right,
            then top to bottom; images as for ``show_image``.
        title: Figure title (None: none).
        ncols: Panels per row (None: all in one row).
        panel_size: Width and height of one panel in inches.
        unit: Unit of the axis labels.
        fontsize: Panel-title font size.
        **imshow_kwargs: Passed to every ``ax.imshow``.

    Returns:
        The Figure; ``fig.axes`` holds one Axes per panel, in order (empty grid cells of
        the last row are removed).
    """
    items = _panel_list(panels)
    ncols = len(items) if ncols is None else int(ncols)
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    nrows = math.ceil(len(items) / ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(panel_size * ncols, panel_size * nrows + 0.5))
    flat = axes.ravel()
    for ax, (panel_title, image) in zip(flat[:len(items)], items, strict=True):
        show_image(ax, image, panel_title, unit=unit, fontsize=fontsize, **imshow_kwargs)
    for ax in flat[len(items):]:
        ax.remove()
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_loss_curves(histories: Mapping, key: str = "total", *, x: str = "step", ax=None,
                     title: str | None = None, xlabel: str | None = None,
                     ylabel: str | None = None, log: bool = True,
                     styles: Mapping[str, str] | None = None):
    """One curve per run: a loss column of each history against its steps or seconds.

    Taught in notebook 04: loss against steps and against wall-clock time for each
    optimizer (notebook 05 compares its single-scale, pyramid and coarse-to-fine runs
    the same way).

    Args:
        histories: {label: history}; a history is an ``nstlib.optimize.History`` or any
            mapping of column name -> sequence (a run record's "history").
        key: The loss column to plot ("total", "content", "style", "tv").
        x: The column on the horizontal axis ("step" or "seconds").
        ax: Axes to draw on (None: a new 7.5 x 4.5 inch figure).
        title: Axes title (None: "<key> loss against <x>").
        xlabel, ylabel: Axis labels (None: from ``X_LABELS`` and ``key``).
        log: Logarithmic loss axis.
        styles: {label: matplotlib format string}, e.g. {"lbfgs": "--"}.

    Returns:
        The Axes, with a legend of the labels.
    """
    if not histories:
        raise ValueError("plot_loss_curves needs at least one history")
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.5))
    styles = styles or {}
    for label, history in histories.items():
        ax.plot(np.asarray(history[x], dtype=np.float64),
                np.asarray(history[key], dtype=np.float64), styles.get(label, "-"), label=label)
    scale = ", log scale" if log else ""
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel if xlabel is not None else X_LABELS.get(x, x))
    ax.set_ylabel(ylabel if ylabel is not None else f"{key} loss (dimensionless{scale})")
    ax.set_title(title if title is not None else f"{key} loss against {x}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return ax
