"""nstlib.opinion: ratings CSV, the proxy formula and the MOS fit against independent sums."""

import csv
import os

import numpy as np
import pytest

from nstlib import opinion


def _synthetic(n: int = 12, k: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, k))
    return features, rng


# --- the fit -------------------------------------------------------------------------


def test_fit_recovers_known_coefficients_of_noise_free_data():
    features, _ = _synthetic()
    truth = np.array([2.5, -0.75, 1.25])
    ratings = truth[0] + features @ truth[1:]
    fit = opinion.fit_mos(features, ratings)
    np.testing.assert_allclose(fit.coefficients, truth, atol=1e-12)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.loo_rmse == pytest.approx(0.0, abs=1e-10)


def test_r2_is_one_minus_residual_over_total_sum_of_squares():
    features, rng = _synthetic(n=15, k=3, seed=1)
    ratings = 3 + features @ [0.4, -0.2, 0.1] + 0.3 * rng.normal(size=15)
    fit = opinion.fit_mos(features, ratings)
    # Independent fit: NumPy's SVD-based lstsq on the same design.
    x = np.column_stack([np.ones(15), features])
    reference, *_ = np.linalg.lstsq(x, ratings, rcond=None)
    np.testing.assert_allclose(fit.coefficients, reference, rtol=1e-10)
    residual = ratings - x @ reference
    expected = 1 - residual @ residual / np.sum((ratings - ratings.mean()) ** 2)
    assert fit.r2 == pytest.approx(expected, rel=1e-12)
    # For OLS with an intercept R² is also the squared correlation of fit and target.
    assert fit.r2 == pytest.approx(np.corrcoef(x @ reference, ratings)[0, 1] ** 2, rel=1e-10)


@pytest.mark.parametrize("ridge", [0.0, 0.7])
def test_leave_one_out_error_equals_refitting_without_each_sample(ridge):
    features, rng = _synthetic(n=9, k=2, seed=2)
    ratings = 1 + features @ [1.0, -2.0] + 0.5 * rng.normal(size=9)
    fit = opinion.fit_mos(features, ratings, ridge=ridge)
    brute = []
    for i in range(9):
        keep = np.arange(9) != i
        x = np.column_stack([np.ones(8), features[keep]])
        penalty = ridge * np.diag([0.0, 1.0, 1.0])
        b = np.linalg.solve(x.T @ x + penalty, x.T @ ratings[keep])
        brute.append(ratings[i] - np.r_[1.0, features[i]] @ b)
    np.testing.assert_allclose(fit.loo_residuals, brute, rtol=1e-9, atol=1e-12)
    assert fit.loo_rmse == pytest.approx(np.sqrt(np.mean(np.square(brute))), rel=1e-9)
    assert fit.n_samples == 9


def test_ridge_shrinks_weights_but_not_the_intercept():
    features, rng = _synthetic(n=20, k=2, seed=3)
    ratings = 4 + features @ [1.0, 1.0] + 0.1 * rng.normal(size=20)
    huge = opinion.fit_mos(features, ratings, ridge=1e9)
    np.testing.assert_allclose(huge.coefficients[1:], 0, atol=1e-6)
    assert huge.coefficients[0] == pytest.approx(ratings.mean(), abs=1e-6)


def test_predict_applies_intercept_and_weights():
    fit = opinion.fit_mos([[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0])
    np.testing.assert_allclose(opinion.predict_mos(fit, [10.0, -1.0]), [21.0, -1.0])
    with pytest.raises(ValueError, match="1 features, got 2"):
        opinion.predict_mos(fit, [[1.0, 2.0]])


def test_fit_refuses_what_it_cannot_determine():
    with pytest.raises(ValueError, match="2 samples cannot determine 3"):
        opinion.fit_mos([[1, 2], [3, 4]], [1, 2])
    with pytest.raises(ValueError, match="linearly dependent"):
        opinion.fit_mos([[1, 2], [2, 4], [3, 6], [4, 8]], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="3 feature rows but 2 ratings"):
        opinion.fit_mos([1, 2, 3], [1, 2])
    # Exactly determined: every sample is its own fit, so leaving it out is undefined.
    assert opinion.fit_mos([0.0, 1.0], [1.0, 2.0]).loo_rmse == np.inf


# --- the proxy -----------------------------------------------------------------------


def test_proxy_follows_its_documented_formula():
    style = np.array([0.0, 0.35, 0.7, 0.9, 0.2])
    content = np.array([1.0, 0.64, 0.9, 0.5, -0.2])
    got = opinion.proxy_score(style, content, 0.7)
    gain = np.array([1.0, 0.5, 0.0, 0.0, 1 - 0.2 / 0.7])
    expected = 1 + 4 * np.sqrt(gain * np.array([1.0, 0.64, 0.9, 0.5, 0.0]))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert opinion.proxy_score(0.35, 0.64, 0.7) == pytest.approx(1 + 4 * 0.8 * np.sqrt(0.5))
    assert isinstance(opinion.proxy_score(0.35, 0.64, 0.7), float)
    with pytest.raises(ValueError, match="positive"):
        opinion.proxy_score(0.1, 0.5, 0.0)


# --- ratings on disk -----------------------------------------------------------------


def test_csv_round_trip_keeps_every_field(tmp_path):
    path = tmp_path / "ratings" / "r.csv"  # the folder is created
    written = [opinion.append_rating(path, "a/sw3", 4, rater="ann", timestamp="t1"),
               opinion.append_rating(path, "b, with comma", 2.5, rater="bo", timestamp="t2"),
               opinion.append_rating(path, "a/sw3", 5)]
    loaded = opinion.load_ratings(path)
    assert loaded == written
    assert loaded[1] == ("b, with comma", 2.5, "bo", "t2")
    assert loaded[2].timestamp.endswith("+00:00")
    with open(path, newline="") as handle:  # an ordinary CSV reader sees the same rows
        rows = list(csv.reader(handle))
    assert rows[0] == list(opinion.FIELDS) and len(rows) == 4
    assert opinion.mean_opinion_scores(loaded) == {"a/sw3": (4.5, 2), "b, with comma": (2.5, 1)}


def test_missing_file_is_no_ratings(tmp_path):
    assert opinion.load_ratings(tmp_path / "none.csv") == []


def test_append_never_loses_earlier_rows_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "r.csv"
    for i in range(30):
        opinion.append_rating(path, f"id{i % 4}", 1 + i % 5, timestamp=str(i))
        assert [r.timestamp for r in opinion.load_ratings(path)] == [str(j) for j in range(i + 1)]
    assert os.listdir(tmp_path) == ["r.csv"]


@pytest.mark.parametrize("text, message", [
    ("id,score\n", r"line 1: expected the header result_id,rating,rater,timestamp"),
    ("", r"line 1: expected the header .* found 'an empty file'"),
    ("result_id,rating,rater,timestamp\na,4,x\n", r"line 2: expected 4 fields .* found 3"),
    ("result_id,rating,rater,timestamp\na,4,x,t\nb,great,x,t\n",
     r"line 3: rating 'great' is not a number from 1 to 5"),
    ("result_id,rating,rater,timestamp\na,7,x,t\n", r"line 2: rating '7' is not a number"),
    ("result_id,rating,rater,timestamp\na,nan,x,t\n", r"line 2: rating 'nan' is not"),
    ("result_id,rating,rater,timestamp\n ,3,x,t\n", r"line 2: empty result_id"),
])
def test_malformed_csv_is_one_line_error_and_is_never_overwritten(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        opinion.load_ratings(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(ValueError, match=message):
        opinion.append_rating(path, "new", 3)
    assert path.read_text() == text


def test_append_checks_its_own_arguments(tmp_path):
    path = tmp_path / "r.csv"
    with pytest.raises(ValueError, match="rating 0 is not a number from 1 to 5"):
        opinion.append_rating(path, "a", 0)
    with pytest.raises(ValueError, match="empty result_id"):
        opinion.append_rating(path, "  ", 3)
    assert not path.exists()


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("result_id,rating,rater,timestamp\na,3,,t\n\n")
    assert opinion.load_ratings(path) == [("a", 3.0, "", "t")]
