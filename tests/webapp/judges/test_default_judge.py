"""The principled judge as the app's default: registration, verdict records with per-principle marks,
the studio's ranked cards, the LLM fallback, RLAIF's default judge and the alignment page's table.
One judge folder, trained once per session on the team corpus (tests/conftest.py)."""
import json
import socket

import pytest
from django.test import Client
from django.urls import reverse

from tests.studio_helpers import LOCMEM, use_fake_backend
from tests.training.test_llm_judge import ScriptedServer, completion
from training.judges.base import BAD, GOOD
from training.judges.fallback import FallbackJudge
from training.judges.registry import load_judge as load_judge_object, query_hash, read_trained_queries
from training.judges.train_side import STARTER_DIR, collect
from webapp.core.roles import WRITER, create_user_with_role
from webapp.judges import default as default_judges
from webapp.judges.marks import verdict_records
from webapp.judges.models import JudgeVersion
from webapp.judges.services import judge_greetings, load_judge, register_judge, resolve_judge
from webapp.studio import services as studio_services
from webapp.studio.models import GenerationRequest
from webapp.studio.tasks import run_request

pytestmark = pytest.mark.django_db
REQUEST = "给妈妈的生日祝福"
GOOD_TEXT = "妈妈，生日快乐！愿您身体健康，天天开心，谢谢您这些年的辛苦。"
WRONG_OCCASION = "新年快乐，愿你来年顺顺利利。"


@pytest.fixture(autouse=True)
def local_cache(settings):
    from django.core.cache import cache

    settings.CACHES = LOCMEM
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()


def test_the_default_judge_is_registered_once_and_activated_only_when_none_is(principled_judge_folder, settings,
                                                                             tmp_path):
    from tests.conftest import link_default_judge

    settings.JUDGES_DIR = tmp_path / "judges"
    link_default_judge(principled_judge_folder, settings.JUDGES_DIR)
    first = default_judges.ensure_default_judge()
    assert not first.trained and first.activated  # the folder was there: nothing trained
    version = first.version
    assert version.kind == "principled" and version.is_active and version.name == settings.DEFAULT_JUDGE_NAME
    assert "is active" in first.summary() and "--no-shared" in version.config["reproduce"]
    again = default_judges.ensure_default_judge()
    assert again.version.pk == version.pk and not again.activated and JudgeVersion.objects.count() == 1

    # someone activated another judge: the default is never put back over it
    other = register_judge(kind="length", name="length-39", config={"threshold": 39})
    from webapp.judges.services import activate_judge

    activate_judge(other)
    assert not default_judges.ensure_default_judge().activated
    assert resolve_judge(None).name == "length-39"


def test_the_default_judge_learnt_from_the_team_corpus_only(principled_judge_folder):
    trained = read_trained_queries(principled_judge_folder)
    team = {query_hash(q) for q in collect(STARTER_DIR, None).queries()}
    assert trained and trained <= team


def test_verdict_records_carry_a_mark_per_principle_and_bad_input_is_bad_with_its_reason(principled_judge_folder):
    judge = load_judge_object("principled", principled_judge_folder)
    texts = [GOOD_TEXT, WRONG_OCCASION, "", "Happy birthday mom"]
    good, wrong, empty, english = verdict_records(judge, [REQUEST] * 4, texts, "principled-team-v1")
    assert good["verdict"] == GOOD and {m["name"] for m in good["principles"]} == {p.name for p in judge.principles}
    assert all(m["passed"] for m in good["principles"]) and good["score"] > wrong["score"]
    assert wrong["verdict"] == BAD
    fit = next(m for m in wrong["principles"] if m["name"] == "request_fit")
    assert not fit["passed"] and "生日" in fit["reason"] and "/" in fit["reason"]  # the one-line, bilingual reason
    for record, why in ((empty, "empty"), (english, "not a Chinese greeting")):
        assert record["verdict"] == BAD and why in record["reason"] and record["principles"] == []


def test_the_studio_stores_verdicts_and_orders_cards_by_score(default_judge, monkeypatch):
    writer = create_user_with_role("wen", WRITER, "pw-wen-12345")[0]
    use_fake_backend(monkeypatch, [WRONG_OCCASION, GOOD_TEXT, "妈妈生日快乐！"])
    req = GenerationRequest.objects.create(user=writer, n=3, query=REQUEST, prompt_query=REQUEST)
    req.reset_candidates()
    assert run_request.run(req.pk) == "done"
    candidates = list(req.candidates.order_by("index"))
    records = [c.checks["judge"] for c in candidates]
    assert [r["judge"] for r in records] == [default_judge.name] * 3
    assert records[0]["verdict"] == BAD and records[1]["verdict"] == GOOD
    assert "occasion" in candidates[0].checks["failed"]  # the guards' own record is kept beside it
    best_first = sorted(range(3), key=lambda i: -records[i]["score"])

    client = Client()
    client.force_login(writer)
    api = client.get(f"/write/api/requests/{req.pk}").json()
    assert [c["index"] for c in api["candidates"]] == best_first
    assert [c["judge"]["score"] for c in api["candidates"]] == sorted((r["score"] for r in records), reverse=True)
    page = client.get(reverse("studio:request", args=[req.pk])).content.decode()
    positions = [page.index(f'id="card-{i}"') for i in best_first]
    assert positions == sorted(positions)
    assert "评审：不好 Judge: Bad" in page and "评审：好 Judge: Good" in page
    assert 'data-principle="request_fit" data-passed="false"' in page and "请求的是生日" in page


def test_cards_stay_in_index_order_without_a_judge(monkeypatch, settings):
    writer = create_user_with_role("wen", WRITER, "pw-wen-12345")[0]
    use_fake_backend(monkeypatch, [WRONG_OCCASION, GOOD_TEXT])
    req = GenerationRequest.objects.create(user=writer, n=2, query=REQUEST, prompt_query=REQUEST)
    req.reset_candidates()
    assert run_request.run(req.pk) == "done"
    assert all("judge" not in c.checks for c in req.candidates.all())
    assert [c["index"] for c in studio_services.progress(req)["candidates"]] == [0, 1]


def test_the_serving_judge_is_loaded_once_per_process_until_another_is_activated(default_judge):
    version, judge = default_judges.serving_judge()
    assert version.pk == default_judge.pk and default_judges.serving_judge()[1] is judge
    from webapp.judges.services import activate_judge

    activate_judge(register_judge(kind="length", name="length-20", config={"threshold": 20}))
    assert default_judges.serving_judge()[0].name == "length-20"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


def llm_version(base_url: str) -> JudgeVersion:
    return register_judge(kind="llm", name="llm-test", principle_set={"name": "t", "rules": ["只有在各方面都好时才给 1。"],
                                                                       "strengths": [], "weaknesses": []},
                          config={"base_url": base_url, "model": "m", "max_retries": 0, "timeout": 2})


def test_an_llm_judge_whose_endpoint_is_down_falls_back_to_the_offline_executors(default_judge):
    judge = load_judge(llm_version(closed_port_url()))
    assert isinstance(judge, FallbackJudge)
    good, wrong = judge.evaluate_many([REQUEST, REQUEST], [GOOD_TEXT, WRONG_OCCASION])
    assert good.verdict == GOOD and wrong.verdict == BAD
    assert all(v.reason.startswith("LLM 评审不可用") and "JudgeUnavailable" in v.reason for v in (good, wrong))
    assert good.judge_version.endswith("(fallback)") and "生日" in wrong.reason  # the offline reason follows
    assert judge.scores([REQUEST], [WRONG_OCCASION])[0] < 0.5


def test_an_llm_judge_answering_garbage_falls_back_too(default_judge):
    with ScriptedServer(lambda body, n: (200, completion("not json at all"))) as server:
        judge = load_judge(llm_version(server.base_url))
        verdict = judge.evaluate(REQUEST, GOOD_TEXT)
    assert verdict.verdict == GOOD and "JudgeOutputInvalid" in verdict.reason and judge.last_fallback


def test_without_an_offline_judge_the_endpoint_error_says_so(settings, tmp_path):
    from training.judges.llm import JudgeUnavailable

    settings.JUDGES_DIR = tmp_path / "no-judges"
    judge = load_judge(llm_version(closed_port_url()))
    with pytest.raises(JudgeUnavailable, match="no offline judge to fall back to"):
        judge.evaluate(REQUEST, GOOD_TEXT)


def test_rlaif_uses_the_default_judge_and_no_judge_names_the_page_that_fixes_it(default_judge):
    from webapp.rlaif.services import RlaifError, judge_for

    version, judge = judge_for(None)
    assert version.kind == "principled" and judge.scores([REQUEST], [GOOD_TEXT])[0] >= 0.5
    JudgeVersion.objects.update(is_active=False)
    with pytest.raises(RlaifError) as refused:
        judge_for(None)
    assert refused.value.field == "judge" and refused.value.fix[1] == "评审页面 Judges page"


def test_the_alignment_page_shows_each_principles_agreement_with_people(default_judge):
    from tests.webapp.annotation.test_annotation_services import annotators, pointwise_batch, rate
    from webapp.annotation import services as annotation
    from webapp.core.roles import ADMIN

    batch = pointwise_batch(n_items=4, k=1)
    person = annotators(1)[0]
    for verdict in ("good", "bad", "good", "bad"):
        rate(annotation.next_assignment(batch, person), person, verdict=verdict)
    greetings = [item.greeting for item in batch.items.order_by("position")]
    judge_greetings(default_judge, greetings)
    admin, _ = create_user_with_role("boss", ADMIN, "pw-admin-123")
    client = Client()
    client.force_login(admin)
    response = client.get(reverse("annotation:alignment"), {"judge": default_judge.pk, "batch": batch.pk})
    rows = response.context["principles"]
    assert [r["name"] for r in rows] == ["request_fit", "coherence", "preference", "fluency", "creativity"]
    # recomputed here from the stored marks; a text that is no greeting (one of these is mostly "。") has none
    marked = {l.greeting_id: l.detail["principles"] for l in default_judge_labels(default_judge) if l.detail["principles"]}
    from webapp.annotation.alignment import pointwise_items

    human = {pk: item.consensus for pk, item in pointwise_items(batch).items()}
    assert len(marked) == 3 and sorted(human.values()) == ["bad", "bad", "good", "good"]
    for row in rows:
        agree = sum((human[g] == "good") == next(m["passed"] for m in marks if m["name"] == row["name"])
                    for g, marks in marked.items())
        assert row["compared"] == row["agreement"].n == 3 and row["agreement"].value == pytest.approx(agree / 3)
    body = response.content.decode()
    assert 'id="principle-alignment"' in body and "Agreement with people per principle" in body


def default_judge_labels(version):
    from webapp.corpus.models import Label

    return Label.objects.filter(source_kind="judge", source_name=version.name)


def test_the_register_default_judge_command_prints_what_it_did(default_judge):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("register_default_judge", stdout=out)
    assert f"{default_judge.name} (principled) is active" in out.getvalue()
    assert json.loads(json.dumps(default_judge.metrics))["calibration_kappa"] is not None


def test_a_principle_set_naming_an_unknown_executor_is_refused_naming_it(default_judge):
    from webapp.judges.services import JudgeServiceError

    odd = register_judge(kind="principled", name="principled-odd", path=default_judge.path,
                         config={"principles": [{"name": "vibes", "zh": "感觉", "en": "vibes", "executor": "magic"}]})
    with pytest.raises(JudgeServiceError, match="'magic'") as refused:
        load_judge(odd)
    assert "vibes" in str(refused.value) and "request_fit" in str(refused.value)  # the known ones are listed


def test_a_failing_judge_leaves_the_request_done_and_says_so_on_the_cards(default_judge, monkeypatch):
    from webapp.studio import ranking

    class BrokenJudge:
        def evaluate_many(self, queries, texts):
            raise RuntimeError("the judge broke")

        def scores(self, queries, texts):
            raise RuntimeError("the judge broke")

    monkeypatch.setattr(ranking, "serving_judge", lambda: (default_judge, BrokenJudge()))
    writer = create_user_with_role("wen", WRITER, "pw-wen-12345")[0]
    use_fake_backend(monkeypatch, [WRONG_OCCASION, GOOD_TEXT])
    req = GenerationRequest.objects.create(user=writer, n=2, query=REQUEST, prompt_query=REQUEST)
    req.reset_candidates()
    assert run_request.run(req.pk) == "done"
    candidates = list(req.candidates.order_by("index"))
    assert [c.text for c in candidates] == [WRONG_OCCASION, GOOD_TEXT]
    assert all("the judge broke" in c.checks["judge"]["error"] for c in candidates)
    client = Client()
    client.force_login(writer)
    page = client.get(reverse("studio:request", args=[req.pk])).content.decode()
    assert "评审失败 The judge failed" in page and page.index('id="card-0"') < page.index('id="card-1"')
