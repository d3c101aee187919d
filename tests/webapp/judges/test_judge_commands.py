"""The judge commands end to end on tiny files written here, and the judge services."""
import json
import shutil

import pytest
from django.core.management import CommandError, call_command

from training.judges.registry import query_hash, read_trained_queries
from webapp.corpus.models import Greeting, Label, Query
from webapp.judges.models import JudgeVersion, PrincipleSet
from webapp.judges import services

WARM = ["愿您福寿安康，笑口常开，儿孙绕膝享天伦之乐", "新岁启新程，愿你所行皆坦途，所愿皆如意",
        "祝老师桃李满天下，教师节快乐，岁岁常安康", "愿你前程似锦，心中有光，步履不停皆是诗"]
HOLLOW = ["祝你快乐快乐", "天天开心开心", "万事如意如意", "好好好好好好"]


@pytest.fixture(autouse=True)
def _one_thread_and_a_judges_dir(one_thread, settings, tmp_path):
    settings.JUDGES_DIR = tmp_path / "judges"


def write_pairs(path, n_queries=40, offset=0, long_rejected_every=0):
    """LlamaFactory pairwise JSON: warm (chosen) vs hollow (rejected); optionally some rejected
    texts padded to be longer than the chosen ones."""
    records = []
    for i in range(offset, offset + n_queries):
        rejected = HOLLOW[i % 4]
        if long_rejected_every and i % long_rejected_every == 0:
            rejected = rejected * 5
        records.append({"conversations": [{"from": "human", "value": f"第{i}号祝福语请求"}],
                        "chosen": {"from": "gpt", "value": WARM[i % 4]},
                        "rejected": {"from": "gpt", "value": rejected}})
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def write_labeled(path, n=24, offset=500):
    lines = []
    for i in range(offset, offset + n):
        good = i % 2 == 0
        lines.append(json.dumps({"query": f"第{i}号祝福语请求", "response": WARM[i % 4] if good else HOLLOW[i % 4],
                                 "label": int(good)}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.django_db
def test_train_judge_registers_a_tfidf_judge_with_heldout_metrics(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.json", n_queries=60)
    call_command("train_judge", "--kind", "tfidf", "--pairs", str(pairs), "--name", "tf1", "--activate")
    version = JudgeVersion.objects.get(name="tf1")
    assert version.kind == "tfidf" and version.is_active
    assert (services.judges_dir() / "tf1" / "weights.safetensors").is_file()
    metrics = version.metrics
    assert metrics["train_pairs"] + metrics["heldout_pairs"] == 60 and metrics["heldout_pairs"] > 0
    assert set(metrics["heldout"]) == {"overall", "chosen_not_longer", "length_matched"}
    assert metrics["heldout"]["overall"]["tf1"]["accuracy"] == 1.0
    # training queries recorded as hashes, held-out ones not among them
    trained = read_trained_queries(services.judges_dir() / "tf1")
    assert len(trained) == metrics["train_pairs"]
    out = capsys.readouterr().out
    assert "tf1" in out and "overall" in out
    # the same name again is refused before anything is trained or written
    with pytest.raises(CommandError, match="already registered"):
        call_command("train_judge", "--kind", "tfidf", "--pairs", str(pairs), "--name", "tf1")


@pytest.mark.django_db
def test_train_judge_refuses_missing_and_empty_files(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("train_judge", "--kind", "tfidf", "--pairs", str(tmp_path / "nope.json"), "--name", "x")
    (tmp_path / "empty.json").write_text("[]", encoding="utf-8")
    with pytest.raises(CommandError, match="cannot read pairs"):
        call_command("train_judge", "--kind", "tfidf", "--pairs", str(tmp_path / "empty.json"), "--name", "x")
    assert not JudgeVersion.objects.exists() and not (services.judges_dir() / "x").exists()


@pytest.mark.django_db
def test_evaluate_judge_on_pairs_reports_subsets_baselines_and_leakage(tmp_path, capsys):
    train_file = write_pairs(tmp_path / "train.json", n_queries=60)
    call_command("train_judge", "--kind", "tfidf", "--pairs", str(train_file), "--name", "tf1")
    # evaluation file: 20 queries the judge never saw (some with a longer rejected text) + 10 it trained on
    fresh = json.loads(write_pairs(tmp_path / "fresh.json", n_queries=20, offset=1000, long_rejected_every=2).read_text())
    seen = json.loads(train_file.read_text())
    trained = read_trained_queries(services.judges_dir() / "tf1")
    seen_trained = [r for r in seen if query_hash(r["conversations"][0]["value"]) in trained][:10]
    eval_file = tmp_path / "eval.json"
    eval_file.write_text(json.dumps(fresh + seen_trained, ensure_ascii=False), encoding="utf-8")
    capsys.readouterr()
    call_command("evaluate_judge", "--pairs", str(eval_file), "--judge", "tf1", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["leakage"] == {**report["leakage"], "total": 30, "excluded": 10, "kept": 20}
    results = report["results"]
    assert results["overall"]["pick_longer"]["count"] == 20
    assert results["chosen_not_longer"]["pick_longer"]["count"] == 10  # every other rejected text padded
    assert results["chosen_not_longer"]["pick_longer"]["accuracy"] == 0.0
    assert results["overall"]["tf1"]["accuracy"] == 1.0
    # the table form prints counts and the exclusion too
    call_command("evaluate_judge", "--pairs", str(eval_file), "--judge", "tf1")
    out = capsys.readouterr().out
    assert "excluded 10" in out and "(20/20)" in out


@pytest.mark.django_db
def test_evaluate_judge_on_labeled_gives_kappa_beside_length(tmp_path, capsys):
    call_command("train_judge", "--kind", "tfidf", "--pairs", str(write_pairs(tmp_path / "p.json", 60)), "--name", "tf1",
                 "--activate")
    capsys.readouterr()
    call_command("evaluate_judge", "--labeled", str(write_labeled(tmp_path / "l.jsonl")), "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["judge"] == "tf1" and report["leakage"]["excluded"] == 0
    tf = report["results"]["tf1"]
    assert tf["count"] == 24 and tf["accuracy"] == 1.0 and tf["kappa"] == pytest.approx(1.0)
    assert any(name.startswith("length>=") for name in report["results"])
    call_command("evaluate_judge", "--labeled", str(tmp_path / "l.jsonl"))
    out = capsys.readouterr().out
    assert "n=24" in out and "kappa 1.000" in out and "excluded 0" in out


@pytest.mark.django_db
def test_evaluate_judge_errors_are_clear(tmp_path):
    pairs = write_pairs(tmp_path / "p.json", 40)
    with pytest.raises(CommandError, match="no active judge"):
        call_command("evaluate_judge", "--pairs", str(pairs))
    with pytest.raises(CommandError, match="no judge version with name or id 'ghost'"):
        call_command("evaluate_judge", "--pairs", str(pairs), "--judge", "ghost")
    # a judge whose folder vanished
    call_command("train_judge", "--kind", "tfidf", "--pairs", str(pairs), "--name", "tf1")
    shutil.rmtree(services.judges_dir() / "tf1")
    with pytest.raises(CommandError, match="tf1.*does not exist"):
        call_command("evaluate_judge", "--pairs", str(pairs), "--judge", "tf1")
    # a judge version deleted from the database
    version = JudgeVersion.objects.get(name="tf1")
    version.delete()
    with pytest.raises(CommandError, match="no judge version with name or id 'tf1'"):
        call_command("evaluate_judge", "--pairs", str(pairs), "--judge", "tf1")
    with pytest.raises(services.JudgeServiceError, match="no longer exists"):
        services.load_judge(version)


@pytest.mark.django_db
def test_evaluate_judge_requires_a_tfidf_baseline_for_pairs(tmp_path):
    services.register_judge(kind="length", name="len39", config={"threshold": 39})
    with pytest.raises(CommandError, match="train_judge --kind tfidf"):
        call_command("evaluate_judge", "--pairs", str(write_pairs(tmp_path / "p.json", 10)), "--judge", "len39")


@pytest.mark.django_db
def test_train_reward_model_command_end_to_end(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.json", n_queries=40)
    call_command("train_reward_model", "--pairs", str(pairs), "--preset", "tiny", "--steps", "6", "--name", "rm1",
                 "--activate", verbosity=0)
    version = JudgeVersion.objects.get(name="rm1")
    assert version.kind == "reward_model" and version.is_active
    folder = services.judges_dir() / "rm1"
    for name in ("config.json", "model.safetensors", "reward_head.safetensors", "reward_model.json",
                 "tokenizer.json", "trained_queries.json"):
        assert (folder / name).is_file(), name
    assert set(version.metrics["heldout"]) == {"overall", "chosen_not_longer", "length_matched"}
    assert version.metrics["validation"]["steps"] == 6
    judge = services.load_judge(version)
    scores = judge.scores(["第1号祝福语请求"] * 2, [WARM[0], HOLLOW[0]])
    assert all(0.0 <= s <= 1.0 for s in scores)
    # evaluate it (needs a TF-IDF baseline)
    call_command("train_judge", "--kind", "tfidf", "--pairs", str(pairs), "--name", "tf1")
    capsys.readouterr()
    call_command("evaluate_judge", "--pairs", str(write_pairs(tmp_path / "e.json", 12, offset=900)), "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["judge"] == "rm1" and set(report["results"]["overall"]) == {"pick_longer", "rm1", "tfidf (tf1)"}
    assert report["results"]["overall"]["rm1"]["count"] == 12


@pytest.mark.django_db
def test_train_reward_model_from_a_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(CommandError, match="no checkpoint with id or name 'nope'"):
        call_command("train_reward_model", "--pairs", str(write_pairs(tmp_path / "p.json", 10)), "--preset", "tiny",
                     "--steps", "1", "--init-checkpoint", "nope", "--name", "rm2", verbosity=0)
    assert not JudgeVersion.objects.filter(name="rm2").exists()


@pytest.mark.django_db
def test_principle_set_with_more_than_ten_rules_is_refused():
    too_many = {"name": "big", "rules": [f"规则{i}" for i in range(11)], "strengths": ["真挚"], "weaknesses": ["空洞"]}
    with pytest.raises(services.JudgeServiceError, match="at most 10 rules"):
        services.register_judge(kind="llm", name="llm-big", principle_set=too_many,
                                config={"base_url": "http://127.0.0.1:1/v1", "model": "m"})
    assert not JudgeVersion.objects.filter(name="llm-big").exists()
    assert not PrincipleSet.objects.filter(name="big").exists()
    # a saved set edited behind the model's back is refused too
    ok = services.register_judge(kind="llm", name="llm-ok", principle_set={"name": "small", "rules": ["规则"] * 3},
                                 config={"base_url": "http://127.0.0.1:1/v1", "model": "m"})
    PrincipleSet.objects.filter(pk=ok.principle_set_id).update(rules=[f"规则{i}" for i in range(12)])
    ok.refresh_from_db()
    with pytest.raises(services.JudgeServiceError, match="at most 10 rules"):
        services.load_judge(ok)


@pytest.mark.django_db
def test_activation_keeps_one_active_judge(tmp_path):
    a = services.register_judge(kind="length", name="a", config={"threshold": 10})
    b = services.register_judge(kind="length", name="b", config={"threshold": 20})
    services.activate_judge(a)
    services.activate_judge(b)
    assert list(JudgeVersion.objects.filter(is_active=True).values_list("name", flat=True)) == ["b"]
    with pytest.raises(services.JudgeServiceError, match="unknown judge kind"):
        services.register_judge(kind="oracle", name="c")


def make_greetings(n=5):
    query = Query.objects.create(text="七十生日祝福语")
    texts = [WARM[0], HOLLOW[0], WARM[1] + "！", "短", "愿您松鹤长春，春秋不老，古稀重新，欢乐远长"][:n]
    return [Greeting.objects.create(query=query, text=t) for t in texts]


@pytest.mark.django_db
def test_judge_greetings_stores_verdicts_idempotently():
    version = services.register_judge(kind="length", name="len10", config={"threshold": 10})
    greetings = make_greetings()
    counts = services.judge_greetings(version, greetings, batch_size=2)
    assert counts["judged"] == 5 and counts["stored"] == 5 and counts["skipped"] == 0
    labels = Label.objects.filter(source_kind="judge", source_name="len10")
    assert labels.count() == 5
    by_text = {label.greeting.text: label for label in labels}
    assert by_text["短"].value == "bad" and by_text[WARM[0]].value == "good"
    assert 0 <= by_text["短"].score < 0.5 and "reason" in by_text["短"].detail
    # again: nothing judged, nothing added
    again = services.judge_greetings(version, greetings, batch_size=2)
    assert again["judged"] == 0 and again["skipped"] == 5 and labels.count() == 5
    # overwrite re-judges in place without duplicating
    third = services.judge_greetings(version, greetings, overwrite=True)
    assert third["judged"] == 5 and third["stored"] == 0 and labels.count() == 5


@pytest.mark.django_db
def test_judge_greetings_writes_nothing_of_a_failing_batch():
    version = services.register_judge(kind="length", name="len10", config={"threshold": 10})
    greetings = make_greetings()

    class Failing:
        version = "failing"

        def scores(self, queries, responses):
            raise RuntimeError("endpoint down")

    with pytest.raises(RuntimeError):
        services.judge_greetings(version, greetings, judge=Failing())
    assert not Label.objects.filter(source_name="len10").exists()
