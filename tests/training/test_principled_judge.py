"""The principled offline judge: verdicts with reasons, request fit, coherence, bad input,
principle sets, and the saved artefact. Trained once on the team corpus (seconds), no ../shared."""
import random
from pathlib import Path

import pytest

from generation.guards import CopyDetector
from training.judges.base import BAD, GOOD
from training.judges.creativity import HashedCopyDetector, cliches_in
from training.judges.fit import request_fit
from training.judges.negatives import OccasionPool, clauses, cut_near_middle, spliced
from training.judges.principled import (PRINCIPLES_V1, PrincipledJudge, PrincipleSetError, check_principles,
                                        default_offline_judge, train_principled)
from training.judges.registry import JudgeLoadError, load_judge
from training.judges.train_side import Example, collect

# Written for these tests (not from any corpus): (request, good greeting) per occasion.
MID_AUTUMN = ("给妈妈的中秋祝福", "妈，今晚的月亮又大又圆，我在外地也抬头看着它。中秋快乐，月饼记得少吃点甜的，等我回家陪你赏月。")
BIRTHDAY = ("给朋友的生日祝福", "生日快乐！又长一岁，愿你新的一年胃口好、睡得香，想去的地方都去成，蛋糕上的蜡烛我帮你吹。")
NEW_YEAR = ("给爸爸的春节祝福", "爸，过年好！今年的春联我来贴，年夜饭你就坐着等吃。新春快乐，愿你身体硬朗，少操心多开心。")
WEDDING = ("同事结婚的祝福", "新婚快乐！从今天起你们有了自己的小家，愿你们吵架不过夜，日子越过越甜，百年好合。")
NEW_HOME = ("朋友乔迁新居的祝福", "恭喜乔迁新居！新家的阳台一定要种点花，愿你们在新房里住得舒心，每天推门都是好心情。")


@pytest.fixture(scope="module")
def judge():
    return train_principled(collect(shared_dir=None))


@pytest.fixture(scope="module")
def saved(judge, tmp_path_factory):
    folder = tmp_path_factory.mktemp("judges") / "principled-v1"
    judge.save(folder)
    return folder


def test_verdict_has_a_mark_per_principle_and_reasons_for_failures(judge):
    verdicts = judge.evaluate_many([MID_AUTUMN[0], MID_AUTUMN[0]], [MID_AUTUMN[1], NEW_YEAR[1]])
    for verdict in verdicts:
        assert verdict.verdict in (GOOD, BAD)
        assert 0.0 <= verdict.score <= 1.0
        assert set(verdict.rubric) == {p.name for p in PRINCIPLES_V1}
        assert " / " in verdict.reason  # Chinese / English
        assert (verdict.verdict == GOOD) == (verdict.score >= 0.5)
    wrong = verdicts[1]
    assert wrong.verdict == BAD
    assert "[request_fit]" in wrong.reason and "春节" in wrong.reason
    assert judge.scores([MID_AUTUMN[0]] * 2, [MID_AUTUMN[1], NEW_YEAR[1]]) == [v.score for v in verdicts]


def test_a_wrong_occasion_fails_request_fit(judge):
    report = request_fit(MID_AUTUMN[0], NEW_YEAR[1])
    assert "occasion" in report.hard and report.score == 0.0
    assert "occasion" not in request_fit(MID_AUTUMN[0], MID_AUTUMN[1]).hard
    marks = judge.marks([MID_AUTUMN[0], MID_AUTUMN[0]], [NEW_YEAR[1], MID_AUTUMN[1]])
    assert marks[0]["request_fit"].failed and not marks[1]["request_fit"].failed
    assert marks[0]["request_fit"].score < marks[1]["request_fit"].score


def test_a_length_constraint_is_checked():
    short = request_fit("生日祝福 四字", "生日快乐，万事顺遂")
    long = request_fit("生日祝福 四字", BIRTHDAY[1])
    assert "length" not in short.hard and "length" in long.hard


def test_a_spliced_greeting_scores_lower_on_coherence_than_its_original(judge):
    examples = [Example(q, g, o, None, "test") for (q, g), o in
                [(MID_AUTUMN, "中秋"), (BIRTHDAY, "生日"), (NEW_YEAR, "春节"), (WEDDING, "结婚"), (NEW_HOME, "乔迁")]]
    pool, rng = OccasionPool(examples), random.Random(0)
    for example in examples:
        query, text = spliced(example, pool, rng)
        assert text != example.greeting and text.startswith(example.greeting[: cut_near_middle(example.greeting)])
        original, made = judge.marks([query, query], [example.greeting, text])
        assert made["coherence"].score < original["coherence"].score, text


@pytest.mark.parametrize("text, why", [("", "empty"), ("   ", "empty"), ("Happy birthday, my friend!", "not a Chinese"),
                                       ("🎂🎉✨", "not a Chinese")])
def test_empty_or_non_chinese_is_bad_with_a_reason(judge, text, why):
    verdict = judge.evaluate(BIRTHDAY[0], text)
    assert verdict.verdict == BAD and verdict.score == 0.0 and why in verdict.reason
    assert judge.scores([BIRTHDAY[0]] * 2, [text, BIRTHDAY[1]])[0] == 0.0


def test_an_unknown_executor_is_refused_by_name(saved):
    bad_set = [p.__dict__ for p in PRINCIPLES_V1] + [{"name": "rhyme", "zh": "押韵", "en": "rhymes", "executor": "rhymer"}]
    with pytest.raises(PrincipleSetError, match="rhymer"):
        check_principles(bad_set)
    with pytest.raises(PrincipleSetError, match="no principles"):
        check_principles([])
    with pytest.raises(JudgeLoadError, match="rhymer"):
        load_judge("principled", saved, config={"principles": bad_set})


def test_a_principle_subset_runs_only_its_executors(saved):
    subset = [p for p in PRINCIPLES_V1 if p.name in ("request_fit", "fluency")]
    judge = PrincipledJudge.load(saved, principles=subset)
    verdict = judge.evaluate(MID_AUTUMN[0], NEW_YEAR[1])
    assert set(verdict.rubric) == {"request_fit", "fluency"} and verdict.verdict == BAD


def test_the_artefact_round_trips_without_pickle_or_training_text(judge, saved):
    loaded = load_judge("principled", saved)
    queries = [q for q, _g in (MID_AUTUMN, BIRTHDAY, NEW_YEAR)] * 2
    texts = [MID_AUTUMN[1], BIRTHDAY[1], NEW_YEAR[1], NEW_YEAR[1], MID_AUTUMN[1], "月饼生日快乐新婚"]
    assert loaded.scores(queries, texts) == pytest.approx(judge.scores(queries, texts), abs=1e-6)
    assert loaded.version == "principled-v1"
    names = {p.name for p in Path(saved).rglob("*") if p.is_file()}
    assert not any(n.endswith((".pkl", ".pickle", ".pt", ".joblib")) for n in names)
    assert "coherence.safetensors" in names and "principled.json" in names
    first = collect(shared_dir=None).examples[0]
    for path in Path(saved).rglob("*.json"):
        stored = path.read_text(encoding="utf-8")
        assert first.greeting not in stored and f'"{first.query}"' not in stored
    assert "python -m training.judges.principled" in (Path(saved) / "principled.json").read_text(encoding="utf-8")


def test_default_offline_judge_trains_once_then_loads(tmp_path):
    folder = tmp_path / "judge"
    first = default_offline_judge(folder, shared_dir=None)
    stamp = (folder / "principled.json").stat().st_mtime_ns
    second = default_offline_judge(folder, shared_dir=None)
    assert (folder / "principled.json").stat().st_mtime_ns == stamp
    assert first.scores([BIRTHDAY[0]], [BIRTHDAY[1]]) == second.scores([BIRTHDAY[0]], [BIRTHDAY[1]])


def test_the_hashed_copy_detector_agrees_with_the_guard():
    training = [MID_AUTUMN[1], BIRTHDAY[1], WEDDING[1]]
    guard, hashed = CopyDetector(training), HashedCopyDetector.from_texts(training)
    probes = [MID_AUTUMN[1], MID_AUTUMN[1][:-3] + "好好的", NEW_HOME[1], BIRTHDAY[1][:20] + NEW_HOME[1][20:]]
    assert [hashed.is_copy(p) for p in probes] == [guard.is_copy(p) for p in probes]
    assert [hashed.overlap(p) for p in probes] == pytest.approx([guard.overlap(p) for p in probes])
    assert hashed.is_copy(MID_AUTUMN[1]) and not hashed.is_copy(NEW_HOME[1])


def test_cliches_are_counted():
    assert cliches_in("愿你如星辰般闪耀，如春风般温暖，万事如意") == ["如星辰般闪耀", "如春风般温暖", "万事如意"]
    assert cliches_in(NEW_HOME[1]) == []
    assert clauses("甲，乙。丙") == ["甲，", "乙。", "丙"]
