"""Serve-time guards, slot conditioning and request-fit figures (no model needed)."""
from __future__ import annotations

from generation.backends import GenerationBackend
from generation.conditioning import model_query
from generation.engine import StreamEvent
from generation.greeting import write_checked, write_greetings
from generation.guards import Budget, CopyDetector, Guards
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


class SequenceBackend(GenerationBackend):
    """Hands out the scripted texts in order, one per candidate asked for, and counts the rounds."""

    def __init__(self, texts):
        self.texts, self.rounds = iter(texts), []

    def greeting_prompt(self, query):
        return query

    def stream(self, prompt, params):
        self.rounds.append(params.n)
        for index in range(params.n):
            yield StreamEvent("r", index, next(self.texts), True, "stop")


def test_failed_candidates_are_resampled_and_the_passing_ones_kept():
    good = ["中秋快乐，猫主子今晚多吃一口鱼。", "月圆中秋，愿我的小猫咪天天打呼噜。", "中秋节快乐，毛孩子陪我赏月。"]
    backend = SequenceBackend([NEW_YEAR, good[0], REPEATED, good[1], good[2], NEW_YEAR])
    chosen = write_checked(backend, "q", 3, guards=guards_for("给我的猫写一句中秋祝福"), budget=Budget(rounds=3))
    assert [c.text for c in chosen] == [good[1], good[0], good[2]]
    assert all(c.checked.passed for c in chosen)
    assert backend.rounds == [3, 2]  # the two failed places were written again, once each
    assert [c.attempts for c in chosen] == [2, 1, 2]


def test_the_budget_is_bounded_and_the_best_failures_fill_the_places():
    backend = SequenceBackend([NEW_YEAR] * 2 + [REPEATED] * 50)
    chosen = write_checked(backend, "q", 2, guards=guards_for("给我的猫写一句中秋祝福"), budget=Budget(rounds=2))
    assert backend.rounds == [2, 2, 2]  # round 0 plus two extra rounds, then it stops
    # a repeated-character text names the right occasion, so it ranks above a new-year one
    assert chosen[0].text == REPEATED and "occasion" not in chosen[0].checked.failed
    assert chosen[0].checked.record()["attempts"] == 3


def test_without_guards_every_place_keeps_its_first_text():
    backend = SequenceBackend([NEW_YEAR, NEW_YEAR])
    assert write_greetings(backend, "q", 2) == [NEW_YEAR, NEW_YEAR] and backend.rounds == [2]


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


def test_a_greeting_that_gives_another_age_fails_the_age_guard():
    guards = Guards(parse_request("祝爷爷八十大寿"))
    assert guards.check("爷爷，六十大寿快乐！愿您福寿绵长。").failed == ["age"]
    assert guards.check("爷爷，八十大寿快乐！愿您福寿绵长。").passed
    assert guards.check("爷爷，生日快乐！愿您新的一岁福寿绵长。").passed  # 新的一岁 names no age
    assert Guards(parse_request("给妈妈的生日祝福")).check("妈，五十岁生日快乐！").passed  # no age asked


def test_passing_an_entrance_exam_is_an_admission_not_a_first_school_day():
    assert parse_request("祝贺表妹考上大学").occasion == "录取"
    assert parse_request("儿子今天上大学了，开学祝福").occasion == "开学"


def test_best_of_prefers_the_higher_scored_text_among_equally_bad_ones():
    from generation.guards import best_of

    slots = parse_request("给我的猫写一句中秋祝福")
    # both name another occasion (the same failure); the scorer likes the second one better
    drafts = ["新年快乐，小猫咪，愿你来年顺顺利利。", "春节快乐，小猫咪，年夜饭给你留一条鱼。"]
    scored = {drafts[0]: 0.2, drafts[1]: 0.9}
    asked = []

    def scorer(texts):
        asked.append(list(texts))
        return [scored[t] for t in texts]

    plain, judged = Guards(slots), Guards(slots, scorer=scorer)
    pool = [plain.check(t) for t in drafts]
    assert [c.failed for c in pool] == [["occasion"], ["occasion"]]
    assert best_of(pool, [], plain).text == drafts[0]  # no scorer: the first drawn of equals
    assert best_of(pool, [], judged).text == drafts[1] and asked == [drafts]
    # fewer failures still win over a higher score: the scorer only breaks ties
    passing = plain.check(MID_AUTUMN_OK)
    scored[MID_AUTUMN_OK] = 0.0
    assert best_of([*pool, passing], [], judged).text == MID_AUTUMN_OK
