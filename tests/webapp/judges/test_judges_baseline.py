"""Baseline judges and the evaluation that puts every judge beside the length baseline."""
import random

import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, precision_score, recall_score

from training.judges.base import Verdict
from training.judges.evaluation import (
    LabeledItem,
    Pair,
    binary_metrics,
    evaluate_labeled,
    evaluate_pairs,
    in_heldout,
    split_by_query,
)
from training.judges.length import LengthJudge, best_length_threshold, pick_longer
from training.judges.tfidf import JudgeFileError, TfidfJudge, train_tfidf_judge

WARM = ["愿您福寿安康，笑口常开，儿孙绕膝享天伦", "新岁启新程，愿你所行皆坦途，所愿皆如意", "祝老师桃李满天下，教师节快乐，岁岁安康"]
HOLLOW = ["祝你快乐快乐快乐，一切都好都好都好都好", "祝福你祝福你，天天开心天天开心天天开心", "祝你好好好，万事如意如意如意如意如意"]


def test_verdict_validates_its_fields():
    with pytest.raises(ValueError, match="verdict must be"):
        Verdict("Great", 0.5, "", "v1")
    with pytest.raises(ValueError, match="score must be in"):
        Verdict("Good", 1.5, "", "v1")


def test_kappa_and_metrics_match_scikit_learn():
    rng = random.Random(3)
    truth = [rng.randint(0, 1) for _ in range(200)]
    predicted = [t if rng.random() < 0.7 else 1 - t for t in truth]
    metrics = binary_metrics(truth, predicted)
    assert metrics["kappa"] == pytest.approx(cohen_kappa_score(truth, predicted))
    assert metrics["f1"] == pytest.approx(f1_score(truth, predicted))
    assert metrics["precision"] == pytest.approx(precision_score(truth, predicted))
    assert metrics["recall"] == pytest.approx(recall_score(truth, predicted))


def test_pair_subsets_and_pick_longer_baseline():
    pairs = [
        Pair("q1", "长长长长长长长长长长长长长长长长", "短"),       # chosen longer by 15
        Pair("q2", "短的", "长长长长长长长长长长长长长长长长长长长"),  # chosen shorter
        Pair("q3", "一二三四五", "一二三四五六"),                     # matched, chosen shorter
    ]
    report = evaluate_pairs(pairs, {"length": LengthJudge(threshold=5)})
    assert report["overall"]["pick_longer"] == {"accuracy": 1 / 3, "correct": 1, "count": 3}
    assert report["chosen_not_longer"]["pick_longer"]["count"] == 2
    assert report["chosen_not_longer"]["pick_longer"]["correct"] == 0
    assert report["length_matched"]["pick_longer"]["count"] == 1
    assert not pick_longer("同样长", "同样长")  # a tie is not a win


def test_length_threshold_is_fitted():
    lengths, labels = [10, 20, 30, 40, 50, 60], [0, 0, 0, 1, 1, 1]
    assert best_length_threshold(lengths, labels) == 40
    items = [LabeledItem("q", "字" * n, y) for n, y in zip(lengths, labels)]
    assert evaluate_labeled(items, {"length": LengthJudge(40)})["length"]["accuracy"] == 1.0


def test_split_by_query_keeps_each_query_on_one_side():
    pairs = [Pair(f"query {i % 50}", "a", "b") for i in range(500)]
    train, heldout = split_by_query(pairs, 0.2)
    assert {p.query for p in train}.isdisjoint({p.query for p in heldout})
    assert 0.05 < len(heldout) / len(pairs) < 0.4
    assert in_heldout("七十生日祝福语", 0.2) == in_heldout("七十生日祝福语", 0.2)


def test_tfidf_judge_learns_content_not_length_and_round_trips(tmp_path):
    # The hollow texts are as long as the warm ones: only the content separates them.
    chosen = [w for w in WARM for _ in range(4)]
    rejected = [h for h in HOLLOW for _ in range(4)]
    judge = train_tfidf_judge(chosen, rejected, name="tfidf-test")
    pairs = [Pair("q", w, h) for w, h in zip(WARM, HOLLOW)]
    assert evaluate_pairs(pairs, {"tfidf": judge})["overall"]["tfidf"]["accuracy"] == 1.0
    assert judge.evaluate("q", WARM[0]).verdict == "Good"
    assert judge.evaluate("q", HOLLOW[0]).verdict == "Bad"
    judge.save(tmp_path / "j")
    loaded = TfidfJudge.load(tmp_path / "j")
    assert loaded.scores(["q"] * 3, HOLLOW) == pytest.approx(judge.scores(["q"] * 3, HOLLOW))
    assert loaded.version == "tfidf-test"


def test_tfidf_judge_refuses_broken_files(tmp_path):
    with pytest.raises(JudgeFileError, match="missing judge.json"):
        TfidfJudge.load(tmp_path)
    (tmp_path / "judge.json").write_text('{"kind": "tfidf"}')
    (tmp_path / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(JudgeFileError, match="unreadable"):
        TfidfJudge.load(tmp_path)
    with pytest.raises(ValueError, match="same, non-zero number"):
        train_tfidf_judge(["a"], [])
