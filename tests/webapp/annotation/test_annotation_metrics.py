"""The agreement metrics equal the reference libraries on the same (seeded random) data."""
import math

import krippendorff
import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import cohen_kappa_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from webapp.annotation import metrics

SEEDS = range(5)


@pytest.mark.parametrize("seed", SEEDS)
def test_cohen_kappa_and_confusion_matrix_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    a = list(rng.choice(["good", "bad"], size=60, p=[0.6, 0.4]))
    # b agrees with a most of the time so kappa is away from 0
    b = [x if rng.random() < 0.7 else rng.choice(["good", "bad"]) for x in a]
    assert metrics.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    labels = ["good", "bad"]
    assert metrics.confusion_matrix(a, b, labels) == sk_confusion_matrix(a, b, labels=labels).tolist()
    assert metrics.agreement_rate(a, b) == pytest.approx(np.mean(np.array(a) == np.array(b)))


def test_cohen_kappa_three_classes_and_undefined_case():
    rng = np.random.default_rng(42)
    a = list(rng.integers(0, 3, size=40))
    b = list(rng.integers(0, 3, size=40))
    assert metrics.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert math.isnan(metrics.cohen_kappa(["good"] * 5, ["good"] * 5))


@pytest.mark.parametrize("seed", SEEDS)
def test_spearman_and_kendall_equal_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    # rubric weighted scores take few values, so ties are common: the tie handling matters
    x = list(np.round(rng.integers(10, 31, size=50) / 10.0, 1))
    y = list(np.clip(np.array(x) / 3 + rng.normal(0, 0.2, size=50), 0, 1).round(2))
    assert metrics.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert metrics.kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("level", ["nominal", "interval"])
def test_krippendorff_alpha_equals_the_package_with_missing_values(seed, level):
    rng = np.random.default_rng(seed)
    raters, items = 4, 30
    truth = rng.integers(1, 4, size=items)
    data = np.array([[t if rng.random() < 0.75 else rng.integers(1, 4) for t in truth] for _ in range(raters)],
                    dtype=float)
    data[rng.random(data.shape) < 0.35] = np.nan  # missing ratings, some items left with one rating
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    units = [[None if np.isnan(v) else float(v) for v in data[:, j]] for j in range(items)]
    assert metrics.krippendorff_alpha(units, level) == pytest.approx(expected, abs=1e-10)


def test_krippendorff_alpha_on_labels_and_undefined_case():
    units = [["good", "good"], ["good", "bad"], ["bad", "bad", None], ["bad"], ["good", "good", "bad"]]
    coded = np.array([[{"good": 1.0, "bad": 0.0}.get(u[r], np.nan) if r < len(u) else np.nan for u in units]
                      for r in range(3)])
    assert metrics.krippendorff_alpha(units, "nominal") == pytest.approx(
        krippendorff.alpha(reliability_data=coded, level_of_measurement="nominal"), abs=1e-12)
    assert math.isnan(metrics.krippendorff_alpha([["good", "good"], ["good", "good"]]))


def test_pairwise_agreement_counts_pairs_of_annotators():
    votes = [["a", "a"], ["a", "b"], ["tie", "a"], ["b", "b", "b"], ["tie", "tie"]]
    # pairs: (a,a)=1 (a,b)=0 (tie,a)=0 three (b,b)=3 (tie,tie)=1 -> 5 of 7
    share, pairs = metrics.pairwise_agreement(votes, "with_ties")
    assert (share, pairs) == (pytest.approx(5 / 7), 7)
    share, pairs = metrics.pairwise_agreement(votes, "without_ties")
    assert (share, pairs) == (pytest.approx(4 / 5), 5)


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    a = list(rng.choice(["good", "bad"], size=80))
    b = [x if rng.random() < 0.8 else ("bad" if x == "good" else "good") for x in a]
    first = metrics.bootstrap_ci(metrics.agreement_rate, a, b, n_resamples=300, seed=7)
    again = metrics.bootstrap_ci(metrics.agreement_rate, a, b, n_resamples=300, seed=7)
    other = metrics.bootstrap_ci(metrics.agreement_rate, a, b, n_resamples=300, seed=8)
    assert first == again and first != other
    assert first[0] < metrics.agreement_rate(a, b) < first[1]


def test_majority_and_length_bins():
    assert metrics.majority(["good", "bad", "good"]) == "good"
    assert metrics.majority(["good", "bad"]) is None
    assert [metrics.length_bin(n) for n in (0, 29, 30, 49, 50, 79, 80, 500)] == [
        "<30", "<30", "30–50", "30–50", "50–80", "50–80", "≥80", "≥80"]
