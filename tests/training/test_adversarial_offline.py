"""The principled judge's offline adversarial game: local attacks, rule-based reflection, and a
revision kept only when held-out agreement holds and the attack success rate falls."""
import json
import random

import pytest

from training.judges.adversarial_offline import (Revision, corruption_attacks, make_attacks, main, model_attacks,
                                                 optimise, propose, read_outputs, revised, strategies)
from training.judges.base import GOOD
from training.judges.evaluation import LabeledItem
from training.judges.principled import PrincipledJudge
from training.judges.train_side import collect

# Written for these tests: (request, greeting) of different occasions.
OUTPUTS = [("给妈妈的中秋祝福", "妈，中秋快乐！今晚的月亮又大又圆，等我回家陪你赏月。"),
           ("给朋友的生日祝福", "生日快乐！又长一岁，愿你胃口好、睡得香，蛋糕上的蜡烛我帮你吹。"),
           ("给爸爸的春节祝福", "爸，过年好！今年的春联我来贴，年夜饭你就坐着等吃。新春快乐。"),
           ("同事结婚的祝福", "新婚快乐！愿你们吵架不过夜，日子越过越甜，百年好合。")]


@pytest.fixture(scope="module")
def labelled():
    """The team corpus's labelled lines (good and people's bad) as labelled items."""
    data = collect(shared_dir=None)
    items = [LabeledItem(e.query, e.greeting, 1) for e in data.examples[::12]]
    items += [LabeledItem(q, t, 0) for q, t in data.weak[::2]]
    return items


def test_model_attacks_answer_a_request_of_another_occasion():
    attacks = model_attacks(OUTPUTS, random.Random(0), 4)
    assert attacks and all(a.strategy == "model_other_request" for a in attacks)
    for attack in attacks:
        written_for = next(q for q, t in OUTPUTS if t == attack.greeting)
        assert attack.query != written_for


def test_corruptions_are_flawed_copies_of_good_greetings():
    attacks = corruption_attacks(OUTPUTS, "spliced", random.Random(0), 4)
    assert attacks
    for attack in attacks:
        assert attack.greeting not in [t for _q, t in OUTPUTS] and attack.strategy == "spliced"


def test_every_strategy_is_drawn():
    weights = strategies(with_model=True)
    attacks = make_attacks(OUTPUTS, OUTPUTS, weights, 3 * len(weights), random.Random(0))
    assert {a.strategy for a in attacks} >= set(weights) - {"wrong_addressee", "shuffled"}


def test_a_revision_changes_only_the_copy(team_principled_judge):
    before = dict(team_principled_judge.components.calibration)
    candidate = revised(team_principled_judge, Revision("x", {"overall_threshold": before["overall_threshold"] + 5}), "v+adv1")
    assert candidate.name == "v+adv1" and team_principled_judge.components.calibration == before
    q, g = OUTPUTS[0]
    assert candidate.scores([q], [g])[0] < team_principled_judge.scores([q], [g])[0]


def test_reflection_proposes_tightening_for_what_fooled_the_judge(team_principled_judge, labelled):
    attacks = make_attacks([(i.query, i.response) for i in labelled if i.label], OUTPUTS,
                           strategies(True), 80, random.Random(1))
    verdicts = team_principled_judge.evaluate_many([a.query for a in attacks], [a.greeting for a in attacks])
    fooled = [a for a, v in zip(attacks, verdicts) if v.verdict == GOOD]
    assert fooled, "the team-corpus judge should pass some attacks"
    revisions = propose(team_principled_judge, fooled, [(i.query, i.response) for i in labelled if i.label])
    assert revisions
    calibration = team_principled_judge.components.calibration
    for revision in revisions:
        for key, value in revision.changes.items():
            assert value != calibration.get(key), revision.name
    assert propose(team_principled_judge, [], OUTPUTS) == []


def test_rounds_keep_a_revision_only_when_agreement_holds_and_asr_falls(team_principled_judge, labelled, tmp_path):
    result = optimise(team_principled_judge, labelled, OUTPUTS, rounds=2, attacks_per_round=60, seed=0)
    assert len(result["rounds"]) == 2
    for record in result["rounds"]:
        for tried in record["revisions_tried"]:
            should = (tried["agreement"] >= record["before"]["agreement"]
                      and tried["attack_success_rate"] < record["before"]["attack_success_rate"])
            assert tried["accepted"] == should
        if record["kept"]:
            assert record["after"]["attack_success_rate"] < record["before"]["attack_success_rate"]
            assert record["after"]["agreement"] >= record["before"]["agreement"]
    if result["improved"]:
        folder = result["best"].save(tmp_path / "judge")
        loaded = PrincipledJudge.load(folder)
        assert "+adv" in loaded.name and loaded.components.calibration == result["best"].components.calibration


def test_too_few_labels_are_refused_naming_them(team_principled_judge):
    with pytest.raises(ValueError, match="labelled"):
        optimise(team_principled_judge, [LabeledItem("生日祝福", "生日快乐", 1)], OUTPUTS, rounds=1)


def test_the_cli_writes_rounds_and_a_new_version(team_principled_judge, labelled, tmp_path):
    judge_dir = team_principled_judge.save(tmp_path / "judge")
    labelled_file = tmp_path / "labelled.jsonl"
    labelled_file.write_text("\n".join(json.dumps({"query": i.query, "response": i.response, "label": i.label},
                                                  ensure_ascii=False) for i in labelled), encoding="utf-8")
    outputs = tmp_path / "outputs.jsonl"
    outputs.write_text("\n".join(json.dumps({"query": q, "greeting": t}, ensure_ascii=False) for q, t in OUTPUTS),
                       encoding="utf-8")
    assert read_outputs(outputs) == OUTPUTS
    out = tmp_path / "rounds.json"
    main(["--judge", str(judge_dir), "--labelled", str(labelled_file), "--model-outputs", str(outputs), "--rounds", "1",
          "--attacks", "40", "--include-trained", "--save", str(tmp_path / "revised"), "--out", str(out)])
    report = json.loads(out.read_text(encoding="utf-8"))
    assert len(report["rounds"]) == 1 and report["model_outputs"] == len(OUTPUTS)
    assert (tmp_path / "revised" / "principled.json").is_file() == report["improved"]
