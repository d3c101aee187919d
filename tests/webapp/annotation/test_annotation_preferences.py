"""Pairwise human votes become corpus PreferencePair(source=human) with their provenance, for
reward-model training: unanimous and majority votes make pairs, ties / both-bad / split votes do
not (until an admin settles them), reruns follow the votes without duplicating anything."""
import json

import pytest

from webapp.annotation import exchange, services
from webapp.annotation.metrics import pair_outcome
from webapp.annotation.models import Batch, HumanPreference, Item, Kind
from webapp.core.roles import ADMIN, ANNOTATOR, create_user_with_role
from webapp.corpus.models import Greeting, PreferencePair, Query


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_pair_outcome_rules():
    assert pair_outcome(["a", "a", "a"]) == pair_outcome(["a", "a", "a"], "")
    assert (pair_outcome(["b", "b"]).choice, pair_outcome(["b", "b"]).how) == ("b", "unanimous")
    majority = pair_outcome(["a", "a", "tie"])
    assert (majority.choice, majority.how, round(majority.agreement, 3)) == ("a", "majority", 0.667)
    split = pair_outcome(["a", "b", "tie"])
    assert (split.choice, split.how, split.agreement) == (None, "split", 0.0)
    settled = pair_outcome(["a", "b", "tie"], "b")
    assert (settled.choice, settled.how, round(settled.agreement, 3)) == ("b", "settled", 0.333)


def comparison_batch(k=3) -> tuple[Batch, list[Item]]:
    """Five blind comparisons (greeting vs greeting_b) of one query."""
    query = Query.objects.create(text="给爷爷的八十大寿祝福")
    texts = [f"祝爷爷八十大寿快乐，福寿安康！第{i}条" for i in range(10)]
    greetings = [Greeting.objects.create(query=query, text=t, source="model", checkpoint_name=f"ckpt-{i % 2}")
                 for i, t in enumerate(texts)]
    batch = Batch.objects.create(name="对比", kind=Kind.PAIRWISE, k=k)
    items = [Item.objects.create(batch=batch, position=i, greeting=greetings[2 * i], greeting_b=greetings[2 * i + 1])
             for i in range(5)]
    return batch, items


def vote(batch, users, wanted: dict[int, list[str]]):
    """Each user takes items as handed out and votes wanted[position][user index], in item order
    (A/B as stored: flipped back to the sides that user saw)."""
    flip = {"a": "b", "b": "a"}
    for u, user in enumerate(users):
        while (assignment := services.next_assignment(batch, user)) is not None:
            stored = wanted[assignment.item.position][u]
            shown = flip.get(stored, stored) if assignment.swapped else stored
            services.submit_rating(assignment_id=assignment.pk, user=user, shown_choice=shown)


def test_votes_become_human_pairs_with_provenance(db):
    batch, items = comparison_batch()
    users = [create_user_with_role(f"ann{i}", ANNOTATOR, "pw-ann-12345")[0] for i in range(3)]
    vote(batch, users, {0: ["b", "b", "b"], 1: ["a", "a", "tie"], 2: ["tie", "tie", "a"],
                        3: ["a", "b", "tie"], 4: ["both_bad", "both_bad", "b"]})

    summary = exchange.record_human_preferences(batch)
    assert (summary.created, summary.linked, summary.updated, summary.unchanged) == (2, 0, 0, 0)
    assert summary.left_out == {"tie": 1, "split": 1, "both_bad": 1}
    pairs = PreferencePair.objects.filter(source="human")
    assert pairs.count() == 2 and set(pairs.values_list("origin", flat=True)) == {"annotation:对比"}
    unanimous = HumanPreference.objects.get(item=items[0])
    # B won: the pair's chosen is the item's side B
    assert (unanimous.pair.chosen, unanimous.pair.rejected) == (items[0].greeting_b, items[0].greeting)
    assert (unanimous.decision, unanimous.agreement, unanimous.votes) == ("unanimous", 1.0, {"b": 3})
    majority = HumanPreference.objects.get(item=items[1])
    assert (majority.pair.chosen, majority.decision, majority.agreement) == (items[1].greeting, "majority", 0.6667)
    assert majority.votes == {"a": 2, "tie": 1}
    # what the trainer reads: the same preferences as the LlamaFactory export
    exported = {(p["chosen"]["value"], p["rejected"]["value"]) for p in exchange.llamafactory_pairs(batch)}
    assert exported == {(p.chosen.text, p.rejected.text) for p in pairs}
    assert set(PreferencePair.objects.filter(human_preferences__isnull=False)) == set(pairs)

    # the split item is settled in review: a rerun adds its pair and duplicates nothing
    admin, _ = create_user_with_role("boss", ADMIN, "pw-boss-12345")
    services.settle(item_id=items[3].pk, user=admin, answer_value="b")
    again = exchange.record_human_preferences(batch)
    assert (again.created, again.unchanged) == (1, 2) and again.left_out == {"tie": 1, "both_bad": 1}
    settled = HumanPreference.objects.get(item=items[3])
    assert settled.decision == "settled" and settled.pair.chosen == items[3].greeting_b
    assert PreferencePair.objects.filter(source="human").count() == 3
    assert exchange.record_human_preferences(batch).unchanged == 3

    # a settlement can also overturn a majority: the earlier pair goes, the reversed one comes
    services.settle(item_id=items[1].pk, user=admin, answer_value="b")
    changed = exchange.record_human_preferences(batch)
    assert changed.created == 1
    flipped = HumanPreference.objects.get(item=items[1])
    assert flipped.pair.chosen == items[1].greeting_b and flipped.decision == "settled"
    assert not PreferencePair.objects.filter(chosen=items[1].greeting, rejected=items[1].greeting_b).exists()
    assert PreferencePair.objects.filter(source="human").count() == 3


def test_items_from_corpus_pairs_link_agreeing_votes_to_the_existing_pair(db):
    query = Query.objects.create(text="同事升职祝福")
    good = Greeting.objects.create(query=query, text="恭喜高升，实至名归，愿你在新岗位上大展宏图！")
    weak = Greeting.objects.create(query=query, text="恭喜。")
    corpus_pair = PreferencePair.objects.create(query=query, chosen=good, rejected=weak)
    batch = services.create_batch(name="验证", kind="pairwise", k=2, source_type="pairs", limit=5)
    users = [create_user_with_role(f"v{i}", ANNOTATOR, "pw-v-123456")[0] for i in range(2)]
    vote(batch, users, {0: ["a", "a"]})
    summary = exchange.record_human_preferences(batch)
    assert summary.created == 0 and summary.linked == 1  # people agree with the corpus: no new row
    assert HumanPreference.objects.get().pair == corpus_pair and PreferencePair.objects.count() == 1


def test_admin_button_records_pairs_and_annotators_cannot(db, client):
    batch, items = comparison_batch(k=1)
    user, _ = create_user_with_role("solo", ANNOTATOR, "pw-solo-12345")
    vote(batch, [user], {i: [c] for i, c in enumerate("abab") } | {4: ["tie"]})
    client.force_login(user)
    assert client.post("/annotate/preferences/record/", {"batch": batch.pk}).status_code == 403
    admin, _ = create_user_with_role("boss", ADMIN, "pw-boss-12345")
    client.force_login(admin)
    assert f'name="batch" value="{batch.pk}"' in client.get("/annotate/").content.decode()
    response = client.post("/annotate/preferences/record/", {"batch": batch.pk}, follow=True)
    assert "4 new" in response.content.decode() and "1 tie" in response.content.decode()
    assert PreferencePair.objects.filter(source="human").count() == 4


def test_comparison_ratings_export_and_import_round_trip(db):
    batch, items = comparison_batch(k=2)
    users = [create_user_with_role(f"r{i}", ANNOTATOR, "pw-r-123456")[0] for i in range(2)]
    vote(batch, users, {0: ["a", "b"], 1: ["b", "b"], 2: ["tie", "a"], 3: ["both_bad", "a"], 4: ["a", "a"]})
    text = exchange.export_jsonl(batch)
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == 10 and {r["item_source"]["type"] for r in rows} == {"comparison"}
    assert all(r["a"] != r["b"] and "checkpoint_name" in r["item_source"]["a"] for r in rows)
    before = sorted((r["position"], r["annotator"], r["choice"]) for r in rows)
    batch.delete()
    admin, _ = create_user_with_role("boss", ADMIN, "pw-boss-12345")
    summary = exchange.import_jsonl(text, admin)
    assert summary.created == 10
    again = Batch.objects.get(name="对比")
    items = again.items.all()
    assert all(i.greeting_b_id and i.pair_id is None for i in items)
    after = sorted((r["position"], r["annotator"], r["choice"])
                   for r in map(json.loads, exchange.export_jsonl(again).splitlines()))
    assert [(a, c) for _, a, c in after] == [(a, c) for _, a, c in before]
    assert exchange.import_jsonl(text, admin).already_present == 10


def test_exported_human_pairs_train_a_reward_model(db, tmp_path, settings, one_thread):
    """The file export_human_pairs writes is what the reward-model trainer reads: a tiny Bradley-Terry
    model trains on it for two steps and is registered as a judge version."""
    from io import StringIO

    from django.core.management import call_command

    from training.data.formats import iter_records
    from training.data.records import PairRecord
    from webapp.judges.models import JudgeVersion
    from webapp.judges.services import train_reward_model_version

    settings.RUNS_DIR = tmp_path / "runs"
    settings.JUDGES_DIR = tmp_path / "judges"
    batch = Batch.objects.create(name="奖励模型 人工对比", kind=Kind.PAIRWISE, k=1)
    for i, occasion in enumerate(["生日", "新年", "中秋", "端午", "乔迁", "升职", "毕业", "结婚"]):
        query = Query.objects.create(text=f"{occasion}祝福语")
        good = Greeting.objects.create(query=query, text=f"恭喜恭喜，{occasion}快乐！愿你万事顺意，岁岁平安，前程似锦。")
        weak = Greeting.objects.create(query=query, text=f"{occasion}快乐。")
        Item.objects.create(batch=batch, position=i, greeting=weak, greeting_b=good)
    user, _ = create_user_with_role("rm", ANNOTATOR, "pw-rm-123456")
    vote(batch, [user], {i: ["b"] for i in range(8)})

    out = tmp_path / "human_pairs.json"
    stdout = StringIO()
    call_command("export_human_pairs", str(out), batch="奖励模型 人工对比", stdout=stdout)
    assert "8 new" in stdout.getvalue() and "wrote 8 pairs" in stdout.getvalue()
    records = list(iter_records(out, "pairwise"))
    assert len(records) == 8 and all(isinstance(r, PairRecord) and len(r.chosen) > len(r.rejected) for r in records)

    version = train_reward_model_version(pair_files=[out], preset="tiny", steps=2, name="rm-human", progress_bar=False)
    assert JudgeVersion.objects.filter(name="rm-human", kind="reward_model").exists()
    assert version.metrics["train_pairs"] >= 1
