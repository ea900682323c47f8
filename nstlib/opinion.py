"""Mean opinion scores: reader ratings on disk, a labelled proxy, and a least-squares model.

A *mean opinion score* (MOS) is the average of the ratings that people give one result on
a fixed scale (here 1 = bad to 5 = excellent, as in ITU-T P.800). This module owns the
three things notebook 12 needs to predict a MOS from numbers the optimiser already has
(its final losses) or from the independent judge (``nstlib.judge``):

- **ratings on disk**: a small CSV (``result_id,rating,rater,timestamp``) that is only
  ever rewritten atomically with every earlier row kept (``append_rating``) and that is
  checked row by row when read (``load_ratings``: one-line ``ValueError`` on bad rows);
- **a proxy score** (``proxy_score``): a documented, deterministic function of the judge's
  numbers, used where no person has rated anything (CI, stored outputs). It is *not* an
  opinion and must always be labelled as a proxy;
- **the MOS model** (``fit_mos``, ``predict_mos``): ordinary (optionally ridge) least
  squares with an intercept, its R² and its leave-one-out error from the hat matrix.

NumPy and the standard library only.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

from nstlib._io import atomic_write_text

#: The rating scale (inclusive): 1 = bad, 2 = poor, 3 = fair, 4 = good, 5 = excellent.
RATING_MIN, RATING_MAX = 1.0, 5.0
#: Columns of a ratings CSV, in order (the first line of the file is this header).
FIELDS = ("result_id", "rating", "rater", "timestamp")


class Rating(NamedTuple):
    """One person's rating of one result (a row of the ratings CSV)."""

    result_id: str
    rating: float
    rater: str
    timestamp: str


def _check_rating(value, where: str) -> float:
    """``value`` as a float on the rating scale, or a one-line ValueError naming ``where``."""
    try:
        rating = float(value)
    except (TypeError, ValueError):
        rating = float("nan")
    if not RATING_MIN <= rating <= RATING_MAX:  # also rejects nan
        raise ValueError(f"{where}: rating {value!r} is not a number from "
                         f"{RATING_MIN:g} to {RATING_MAX:g}")
    return rating


def load_ratings(path) -> list[Rating]:
    """Read a ratings CSV written by ``append_rating``.

    Args:
        path: The CSV file. A missing file means no ratings yet.

    Returns:
        The rows in file order (empty when the file does not exist).

    Raises:
        ValueError: One line naming the file and line when the header is not ``FIELDS``,
            a row has the wrong number of fields, an empty ``result_id`` or a rating
            outside [RATING_MIN, RATING_MAX].
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(rows[0]) != FIELDS:
        found = ",".join(rows[0]) if rows else "an empty file"
        raise ValueError(f"{path}: line 1: expected the header {','.join(FIELDS)}, "
                         f"found {found!r}")
    ratings = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:  # a blank line (e.g. a trailing newline added by an editor)
            continue
        where = f"{path}: line {number}"
        if len(row) != len(FIELDS):
            raise ValueError(f"{where}: expected {len(FIELDS)} fields "
                             f"({','.join(FIELDS)}), found {len(row)}")
        result_id, rating, rater, timestamp = (field.strip() for field in row)
        if not result_id:
            raise ValueError(f"{where}: empty result_id")
        ratings.append(Rating(result_id, _check_rating(rating, where), rater, timestamp))
    return ratings


def _to_csv(ratings) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS)
    for row in ratings:
        writer.writerow([row.result_id, f"{row.rating:.10g}", row.rater, row.timestamp])
    return buffer.getvalue()


def append_rating(path, result_id: str, rating: float, rater: str = "",
                  timestamp: str | None = None) -> Rating:
    """Add one rating to a ratings CSV, keeping every earlier row.

    The file is read and checked first (a malformed file raises and is left untouched),
    then rewritten atomically with the new row last: a crash or Ctrl-C leaves either the
    old file or the new one, never half of either. Its folder is created if needed.

    Args:
        path: The CSV file (created with its header when missing).
        result_id: Which result was rated (non-empty, e.g. "chelsea+brushstrokes/sw30").
        rating: A number in [RATING_MIN, RATING_MAX].
        rater: Who rated (optional; a name or initials).
        timestamp: ISO 8601 time (default: now, UTC, to the second).

    Returns:
        The row written.
    """
    result_id = str(result_id).strip()
    if not result_id:
        raise ValueError("append_rating: empty result_id")
    row = Rating(result_id, _check_rating(rating, "append_rating"), str(rater).strip(),
                 timestamp or datetime.now(UTC).isoformat(timespec="seconds"))
    path = Path(path)
    earlier = load_ratings(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(_to_csv([*earlier, row]), path)
    return row


def mean_opinion_scores(ratings) -> dict[str, tuple[float, int]]:
    """Mean rating and number of ratings per result.

    Args:
        ratings: ``Rating`` rows (``load_ratings``).

    Returns:
        {result_id: (mean rating, count)} in order of first appearance.
    """
    grouped: dict[str, list[float]] = {}
    for row in ratings:
        grouped.setdefault(row.result_id, []).append(row.rating)
    return {key: (float(np.mean(values)), len(values)) for key, values in grouped.items()}


def proxy_score(style_distance, content_score, reference_style_distance):
    """A PROXY for a mean opinion score from the judge's numbers (not anyone's opinion).

    ``proxy = 1 + 4 * sqrt(g * c)`` on the 1-5 scale, with

    - ``g = clip(1 - style_distance / reference_style_distance, 0, 1)``: how much of the
      way from "no transfer" to the style the result went (0 for a result as far from the
      style as the untouched photo, 1 for the style's own statistics);
    - ``c = clip(content_score, 0, 1)``: the judge's content score (blurred-luminance SSIM).

    The geometric mean makes a result score well only when it has both the style *and* the
    content's layout, which is what a rater asked "is this a good stylisation of the
    photo?" looks for; it is deterministic and uses no network. It stands in for ratings
    only so that code can run without them: never report it as a MOS.

    Args:
        style_distance: Judge style distance(s) of the result(s) (scalar or (n,)).
        content_score: Judge content score(s), same shape.
        reference_style_distance: Judge style distance of the untouched content photo
            from the style (> 0), scalar or same shape.

    Returns:
        float or (n,) float64 in [1, 5].
    """
    style_distance = np.asarray(style_distance, np.float64)
    reference = np.asarray(reference_style_distance, np.float64)
    if np.any(reference <= 0):
        raise ValueError("proxy_score: reference_style_distance must be positive")
    gain = np.clip(1.0 - style_distance / reference, 0.0, 1.0)
    content = np.clip(np.asarray(content_score, np.float64), 0.0, 1.0)
    score = RATING_MIN + (RATING_MAX - RATING_MIN) * np.sqrt(gain * content)
    return float(score) if score.ndim == 0 else score


@dataclass(frozen=True)
class MosFit:
    """A linear MOS model ``mos ≈ b0 + Σ_j b_j x_j`` and how well it fits.

    Attributes:
        coefficients: (k + 1,) float64: the intercept b0, then one weight per feature.
        r2: Coefficient of determination on the training data, 1 − SS_res / SS_tot (nan
            when every target is equal).
        loo_rmse: Root mean square leave-one-out prediction error, in rating units.
        loo_residuals: (n,) y_i minus the prediction of a model fitted without sample i.
        ridge: The penalty λ used (0 for ordinary least squares).
    """

    coefficients: np.ndarray
    r2: float
    loo_rmse: float
    loo_residuals: np.ndarray
    ridge: float = 0.0

    @property
    def n_samples(self) -> int:
        return len(self.loo_residuals)


def design_matrix(features) -> np.ndarray:
    """(n, k) features -> (n, k + 1) float64 with a leading column of ones (the intercept)."""
    features = np.asarray(features, np.float64)
    if features.ndim == 1:
        features = features[:, None]
    if features.ndim != 2:
        raise ValueError(f"features must be (n, k), got shape {features.shape}")
    return np.hstack([np.ones((len(features), 1)), features])


def fit_mos(features, ratings, ridge: float = 0.0) -> MosFit:
    """Least-squares fit of ratings (or a proxy) on features, with an intercept.

    Solves the normal equations ``(XᵀX + λD) b = Xᵀy`` where X is ``design_matrix
    (features)`` and D is the identity without its intercept entry (the intercept is not
    shrunk). The leave-one-out residuals need no refits: with the hat matrix
    ``H = X (XᵀX + λD)⁻¹ Xᵀ``, the residual of sample i when it is left out is
    ``e_i / (1 − H_ii)`` (exact for any fixed λ).

    Args:
        features: (n, k) or (n,) float, one row per rated result.
        ratings: (n,) float, the MOS (or proxy) of each result.
        ridge: λ ≥ 0; 0 is ordinary least squares.

    Returns:
        ``MosFit``. ``loo_rmse`` is inf when some sample fully determines its own fit
        (H_ii = 1, e.g. n equal to the number of coefficients).

    Raises:
        ValueError: Shapes that disagree, fewer samples than coefficients, non-finite
            values, a negative λ, or features that are linearly dependent (OLS).
    """
    x = design_matrix(features)
    y = np.asarray(ratings, np.float64).reshape(-1)
    n, p = x.shape
    if len(y) != n:
        raise ValueError(f"fit_mos: {n} feature rows but {len(y)} ratings")
    if n < p:
        raise ValueError(f"fit_mos: {n} samples cannot determine {p} coefficients")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("fit_mos: features and ratings must be finite")
    if ridge < 0:
        raise ValueError(f"fit_mos: ridge must be >= 0, got {ridge}")
    penalty = float(ridge) * np.diag([0.0] + [1.0] * (p - 1))
    gram = x.T @ x + penalty
    if ridge == 0 and np.linalg.matrix_rank(x) < p:
        raise ValueError("fit_mos: the features are linearly dependent (try ridge > 0)")
    coefficients = np.linalg.solve(gram, x.T @ y)
    residuals = y - x @ coefficients
    leverage = np.einsum("ij,ji->i", x, np.linalg.solve(gram, x.T))
    with np.errstate(divide="ignore", invalid="ignore"):
        loo = np.where(1.0 - leverage > 1e-10, residuals / (1.0 - leverage), np.inf)
    total = np.sum((y - y.mean()) ** 2)
    r2 = float(1.0 - np.sum(residuals ** 2) / total) if total > 0 else float("nan")
    return MosFit(coefficients=coefficients, r2=r2,
                  loo_rmse=float(np.sqrt(np.mean(loo ** 2))), loo_residuals=loo,
                  ridge=float(ridge))


def predict_mos(fit: MosFit, features) -> np.ndarray:
    """Predicted MOS: (n, k) or (n,) features -> (n,) float64 (not clipped to the scale)."""
    x = design_matrix(features)
    if x.shape[1] != len(fit.coefficients):
        raise ValueError(f"predict_mos: the model has {len(fit.coefficients) - 1} features, "
                         f"got {x.shape[1] - 1}")
    return x @ fit.coefficients
