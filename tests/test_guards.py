"""Serve-time guards, slot conditioning and request-fit figures (no model needed)."""
from __future__ import annotations

import itertools

from generation.conditioning import model_query
from generation.guards import Budget, CopyDetector, Guards, pick_candidates
from generation.requests import parse_request
from training.data.conditioning import condition_examples
from training.rl.request_fit import request_figures

MID_AUTUMN_OK = "中秋快乐！小猫咪，今晚月亮又大又圆，给你加一份小鱼干。"
NEW_YEAR = "新年快乐，愿你来年顺顺利利。"
REPEATED = "中秋快乐，香香香香香的月饼给小猫。"


def guards_for(request: str, training=()):
    return Guards(parse_request(request), CopyDetector(training) if training else None)


def test_a_candidate_for_another_occasion_fails_the_occasion_guard():
    guards = guards_for("给我的猫写一句中秋祝福")
    assert guards.check(MID_AUTUMN_OK).checks["occasion"]
    assert not guards.check(NEW_YEAR).checks["occasion"]
    assert guards.check(NEW_YEAR).failed[0] == "occasion"


def test_repeat_and_copy_and_distinct_guards():
    training = ["中秋快乐！小猫咪，今晚月亮又大又圆，给你加一份小鱼干。"]
    guards = guards_for("给我的猫写一句中秋祝福", training)
    assert "repeat" in guards.check(REPEATED).failed
    assert "copy" in guards.check(MID_AUTUMN_OK).failed
    other = "中秋到啦，喵星人今晚赏月，记得别抢我的月饼。"
    assert guards.check(other, taken=[other]).failed == ["distinct"]


def scripted_sampler(texts):
    """sample(k, round) that hands out the scripted texts in order, and counts the calls."""
    stream = iter(texts)
    calls = []

    def sample(k, round_index):
        calls.append((k, round_index))
        return [(t, "stop") for t in itertools.islice(stream, k)]

    return sample, calls


def test_failed_candidates_are_resampled_and_the_passing_ones_kept():
    good = ["中秋快乐，猫主子今晚多吃一口鱼。", "月圆中秋，愿我的小猫咪天天打呼噜。", "中秋节快乐，毛孩子陪我赏月。"]
    sample, calls = scripted_sampler([NEW_YEAR, good[0], REPEATED, good[1], good[2], NEW_YEAR])
    chosen = pick_candidates(sample, 3, guards_for("给我的猫写一句中秋祝福"), Budget(rounds=3, oversample=2))
    assert [c.text for c in chosen] == good
    assert all(c.passed for c in chosen)
    assert calls[0] == (3, 0) and calls[1][1] == 1  # a second round was drawn for the failures


def test_the_budget_is_bounded_and_the_best_failures_fill_the_places():
    sample, calls = scripted_sampler([NEW_YEAR] * 3 + [REPEATED] * 50)
    chosen = pick_candidates(sample, 2, guards_for("给我的猫写一句中秋祝福"), Budget(rounds=2, oversample=2))
    assert len(calls) == 3  # round 0 plus two extra rounds, then it stops
    assert len(chosen) == 2
    # a repeated-character text names the right occasion, so it ranks above a new-year one
    assert chosen[0].text == REPEATED and "occasion" not in chosen[0].failed


def test_slot_prefix_is_the_model_query_and_raw_text_stays_for_query_format():
    request = "给我的猫写一句中秋祝福"
    assert model_query(request, "query") == request
    prefixed = model_query(request, "slots")
    assert prefixed.startswith("场合：中秋") and "猫" in prefixed


def test_training_rows_naming_another_occasion_are_dropped():
    rows = [("元宵节祝福语", "中秋快乐，月圆人团圆。"), ("元宵节祝福语", "元宵节快乐，汤圆甜甜，花灯亮亮。")]
    kept, info = condition_examples(rows, "slots")
    assert info["dropped_wrong_occasion"] == 1
    assert [r for _, r in kept] == ["元宵节快乐，汤圆甜甜，花灯亮亮。"]


def test_request_figures_count_only_requests_that_ask():
    groups = [("给我的猫写一句中秋祝福", [MID_AUTUMN_OK, NEW_YEAR]), ("随便写点什么", ["祝你开心。"])]
    figures = request_figures(groups)
    assert figures["n_occasion_fit"] == 2 and figures["occasion_fit"] == 0.5
    assert figures["wrong_occasion"] == 0.5
    assert figures["distinct"] == 1.0
