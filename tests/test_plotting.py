"""Tests for nstlib.plotting (figures the notebooks share) and the notebooks' numeric helpers.

The figures are checked for what a reader relies on: one Axes per panel, the titles and
axis labels asked for, and image data equal to the array passed in. ``metrics.relative_error``
and ``metrics.psnr`` (moved out of notebooks 02, 03, 07 and 08) are checked against closed
forms.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nstlib import metrics, plotting  # noqa: E402
from nstlib.optimize import History  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _rgb(seed: int, shape=(1, 6, 9, 3)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def _image_data(ax) -> np.ndarray:
    (image,) = ax.get_images()
    return np.asarray(image.get_array())


# ------------------------------------------------------------------------------ show_images


def test_show_images_one_row_titles_labels_and_data():
    panels = {"content": _rgb(0), "style": _rgb(1, (8, 5, 3)), "result": _rgb(2)}
    fig = plotting.show_images(panels, title="content | style | result")

    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["content", "style", "result"]
    assert fig._suptitle.get_text() == "content | style | result"
    for ax, image in zip(fig.axes, panels.values(), strict=True):
        expected = image[0] if image.ndim == 4 else image
        np.testing.assert_array_equal(_image_data(ax), expected)
        assert ax.get_xlabel() == "x (pixels)" and ax.get_ylabel() == "y (pixels)"
        assert ax.get_subplotspec().get_geometry()[:2] == (1, 3)


def test_show_images_grid_from_pairs_drops_the_empty_cells():
    pairs = [(f"panel {k}", _rgb(k)) for k in range(5)]
    fig = plotting.show_images(pairs, ncols=3, unit="map units", fontsize=7)

    assert len(fig.axes) == 5
    assert [ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes] == [(2, 3)] * 5
    assert [ax.get_title() for ax in fig.axes] == [title for title, _ in pairs]
    assert fig.axes[4].title.get_fontsize() == 7
    assert fig.axes[0].get_xlabel() == "x (map units)"
    np.testing.assert_array_equal(_image_data(fig.axes[3]), pairs[3][1][0])


def test_show_images_refuses_bad_panels():
    with pytest.raises(ValueError, match="at least one"):
        plotting.show_images({})
    with pytest.raises(ValueError, match="ncols must be at least 1"):
        plotting.show_images({"a": _rgb(0)}, ncols=0)
    with pytest.raises(ValueError, match=r"\(title, image\) pairs"):
        plotting.show_images([_rgb(0)])


# ------------------------------------------------------------------------------- show_image


def test_show_image_clips_rgb_and_returns_the_axes():
    image = np.linspace(-0.5, 1.5, 4 * 5 * 3).reshape(1, 4, 5, 3)
    _, ax = plt.subplots()
    assert plotting.show_image(ax, image, "clipped") is ax
    np.testing.assert_array_equal(_image_data(ax), np.clip(image[0], 0.0, 1.0))
    assert ax.get_title() == "clipped"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x (pixels)", "y (pixels)")


def test_show_image_grey_defaults_and_overrides():
    grey = np.random.default_rng(3).uniform(size=(7, 4))
    _, (left, right) = plt.subplots(1, 2)
    plotting.show_image(left, grey[..., None])                   # (H, W, 1) is grey too
    plotting.show_image(right, grey, cmap="magma", vmin=0.2, interpolation="nearest")

    first, second = left.get_images()[0], right.get_images()[0]
    np.testing.assert_array_equal(first.get_array(), grey)
    assert first.get_cmap().name == "gray" and first.get_clim() == (0.0, 1.0)
    assert second.get_cmap().name == "magma" and second.get_clim() == (0.2, 1.0)
    assert second.get_interpolation() == "nearest"
    assert left.get_title() == ""


def test_show_image_refuses_a_batch_and_other_shapes():
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match=r"got \(2, 4, 4, 3\)"):
        plotting.show_image(ax, np.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"got \(4, 4, 2\)"):
        plotting.show_image(ax, np.zeros((4, 4, 2)))


# ------------------------------------------------------------------------- plot_loss_curves


def _history(scale: float, rows: int = 4) -> History:
    history = History()
    for step in range(rows):
        history.append(step, {"total": scale / (step + 1), "style": scale / (step + 2)},
                       0.5 * step)
    return history


def test_plot_loss_curves_one_line_per_run_with_its_data():
    record_history = {"step": [0, 1, 2], "seconds": [0.0, 0.2, 0.4], "total": [3.0, 2.0, 1.5]}
    histories = {"adam": _history(2.0), "lbfgs": record_history}
    ax = plotting.plot_loss_curves(histories, styles={"lbfgs": "--"})

    adam, lbfgs = ax.get_lines()
    np.testing.assert_array_equal(adam.get_xdata(), [0, 1, 2, 3])
    np.testing.assert_allclose(adam.get_ydata(), [2.0, 1.0, 2 / 3, 0.5])
    np.testing.assert_array_equal(lbfgs.get_ydata(), record_history["total"])
    assert (adam.get_linestyle(), lbfgs.get_linestyle()) == ("-", "--")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["adam", "lbfgs"]
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == plotting.X_LABELS["step"]
    assert ax.get_ylabel() == "total loss (dimensionless, log scale)"
    assert ax.get_title() == "total loss against step"


def test_plot_loss_curves_against_seconds_on_given_axes():
    _, given = plt.subplots()
    ax = plotting.plot_loss_curves({"run": _history(1.0)}, "style", x="seconds", ax=given,
                                   log=False, title="style term", ylabel="style loss")
    assert ax is given
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [0.0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(line.get_ydata(), [1 / 2, 1 / 3, 1 / 4, 1 / 5])
    assert ax.get_yscale() == "linear"
    assert (ax.get_title(), ax.get_ylabel()) == ("style term", "style loss")
    assert ax.get_xlabel() == "wall-clock time since the optimisation started (s)"


def test_plot_loss_curves_needs_a_history():
    with pytest.raises(ValueError, match="at least one history"):
        plotting.plot_loss_curves({})


# ------------------------------------------------------------------ numeric helpers (metrics)


def test_relative_error_closed_forms():
    reference = np.random.default_rng(4).standard_normal((3, 5, 2))
    # estimate = c * reference: ||(c - 1) r|| / ||r|| = |c - 1|.
    for c in (0.0, 0.5, 1.0, 3.0, -1.0):
        assert metrics.relative_error(c * reference, reference) == pytest.approx(abs(c - 1.0))
    # Orthogonal error: ||e|| / ||r|| for r = (1, 0), e = (0, t).
    assert metrics.relative_error([1.0, 0.25], [1.0, 0.0]) == pytest.approx(0.25)
    # Not symmetric: normalised by the second argument.
    assert metrics.relative_error(2 * reference, reference) == pytest.approx(1.0)
    assert metrics.relative_error(reference, 2 * reference) == pytest.approx(0.5)


def test_relative_error_accepts_tensors_and_refuses_bad_input():
    tf = pytest.importorskip("tensorflow")
    a = tf.constant([[3.0, 4.0]])
    assert metrics.relative_error(tf.zeros_like(a), a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"shapes differ: \(2,\) vs \(1, 2\)"):
        metrics.relative_error([1.0, 2.0], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="reference is all zeros"):
        metrics.relative_error([1.0], [0.0])


def test_psnr_closed_forms():
    reference = np.random.default_rng(5).uniform(0.2, 0.8, size=(1, 8, 6, 3))
    # A constant offset d gives MSE = d², so PSNR = 10·log10(1 / d²) = -20·log10(d).
    for offset in (0.1, 0.01, 0.05):
        assert metrics.psnr(reference + offset, reference) == pytest.approx(
            -20.0 * np.log10(offset))
    assert metrics.psnr(255 * (reference + 0.1), 255 * reference, max_val=255.0) == \
        pytest.approx(20.0)
    assert metrics.psnr(reference, reference) == float("inf")
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(reference, reference[0])


def test_psnr_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(6)
    a = rng.uniform(size=(1, 16, 12, 3)).astype(np.float32)
    b = np.clip(a + 0.07 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    expected = float(tf.image.psnr(b, a, max_val=1.0)[0])
    assert metrics.psnr(b, a) == pytest.approx(expected, abs=1e-3)
