"""The admin training pages (/train/): role checks, CSRF, starting with named-field errors,
the one-job lock on the page, checkpoint promotion, one-click rollback, and the blind
comparison that feeds the annotation queue."""
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from webapp.annotation.models import Batch
from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.services import promote_checkpoint, register_checkpoint
from webapp.checkpoints.training import train_and_register
from webapp.core.roles import ADMIN, ANNOTATOR, WRITER, create_user_with_role
from webapp.corpus.models import Greeting
from webapp.jobs.kinds import all_kinds, one_line
from webapp.jobs.models import TRAIN_SLOT, LogLine, MetricPoint, TrainingJob

GET_PAGES = ["jobs:list", "jobs:start", "checkpoints:list", "checkpoints:compare"]


@pytest.fixture
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def client_for(role: str | None) -> Client:
    client = Client()
    if role:
        user, _ = create_user_with_role(f"user-{role}", role)
        client.force_login(user)
    return client


def fake_checkpoint(tmp_path, name: str) -> Checkpoint:
    """A registry row whose folder has what promotion checks (no model is loaded on these pages)."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return register_checkpoint(name=name, run_name=name, path=str(folder), preset="tiny", model_config={},
                               data={}, metrics={"loss": 2.5, "heldout_loss": 2.75})


@pytest.mark.django_db
@pytest.mark.parametrize("role, expected", [(None, 302), (WRITER, 403), (ANNOTATOR, 403), (ADMIN, 200)])
def test_only_admins_see_the_training_pages(fast_passwords, role, expected):
    client = client_for(role)
    job = TrainingJob.objects.create(kind="sft", status="succeeded", slot=None)
    urls = [reverse(name) for name in GET_PAGES] + [reverse("jobs:detail", args=[job.pk]),
                                                   reverse("jobs:live", args=[job.pk])]
    for url in urls:
        response = client.get(url)
        assert response.status_code == expected, url
        if role is None:
            assert response["Location"].startswith("/accounts/login/")
    nav = client.get("/").content.decode()
    assert ('href="/train/"' in nav) == (role == ADMIN)
    if role != ADMIN:  # POSTs are refused as well, and change nothing
        running = TrainingJob.objects.create(kind="sft", status="running", slot=TRAIN_SLOT)
        assert client.post(reverse("jobs:cancel", args=[running.pk])).status_code == expected
        assert client.post(reverse("jobs:start"), {"kind": "sft"}).status_code == expected
        running.refresh_from_db()
        assert not running.cancel_requested


@pytest.mark.django_db
def test_posts_need_the_csrf_token(fast_passwords):
    admin, _ = create_user_with_role("boss", ADMIN)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    running = TrainingJob.objects.create(kind="sft", status="running", slot=TRAIN_SLOT)
    assert client.post(reverse("jobs:cancel", args=[running.pk])).status_code == 403
    assert client.post(reverse("checkpoints:rollback")).status_code == 403
    running.refresh_from_db()
    assert not running.cancel_requested


@pytest.mark.django_db
def test_start_index_lists_every_kind_on_one_line_linking_its_own_page(fast_passwords):
    client = client_for(ADMIN)
    index = client.get(reverse("jobs:start")).content.decode()
    assert 'class="job-form"' not in index  # no parameter forms on the index
    links = [reverse("jobs:start-kind", args=[kind.name]) for kind in all_kinds()]
    assert all(f'href="{link}"' in index for link in links)
    # in pipeline order: SFT first, the research MARL job last
    assert index.index("/train/start/sft/") < index.index("/train/start/reward_model/") \
        < index.index("/train/start/grpo/") < index.index("/train/start/marl/")
    for kind in all_kinds():
        if kind.name.startswith("test_"):  # kinds other tests register without a description
            continue
        assert one_line(kind) and "\n" not in one_line(kind) and escape(one_line(kind)) in index
    page = client.get(reverse("jobs:start-kind", args=["sft"])).content.decode()
    assert 'name="sft-preset"' in page and 'id="start-sft"' in page
    assert 'name="evaluate-' not in page and page.count('id="start-') == 1  # one kind per page
    assert client.get(reverse("jobs:start-kind", args=["nope"])).status_code == 404


@pytest.mark.django_db
def test_a_kind_page_names_the_bad_field_beside_it(fast_passwords):
    client = client_for(ADMIN)
    response = client.post(reverse("jobs:start-kind", args=["sft"]), {
        "sft-preset": "tiny", "sft-data_source": "file", "sft-data_path": "/etc/passwd", "sft-seed": "0"})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'data-field="data_path"' in body and "data_path" in body
    assert 'class="kind-card chosen" id="kind-sft"' in body
    # the former single page's POST (kind in the body) still reaches the kind's form
    old = client.post(reverse("jobs:start"), {"kind": "sft", "sft-preset": "tiny", "sft-data_source": "file",
                                              "sft-data_path": "/etc/passwd", "sft-seed": "0"})
    assert old.status_code == 400 and 'data-field="data_path"' in old.content.decode()
    unknown = client.post(reverse("jobs:start"), {"kind": "nope"})
    assert unknown.status_code == 400 and "unknown job kind" in unknown.content.decode()
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
def test_start_is_refused_while_a_job_holds_the_slot(fast_passwords):
    busy = TrainingJob.objects.create(kind="sft", status="running", slot=TRAIN_SLOT)
    response = client_for(ADMIN).post(reverse("jobs:start"), {
        "kind": "sft", "sft-preset": "tiny", "sft-data_source": "starter", "sft-seed": "0"})
    assert response.status_code == 409
    assert f"job #{busy.pk}" in response.content.decode()
    assert TrainingJob.objects.count() == 1


@pytest.mark.django_db
def test_job_page_shows_progress_curves_log_and_cancels(fast_passwords):
    job = TrainingJob.objects.create(kind="sft", status="running", slot=TRAIN_SLOT, progress=0.4, eta_seconds=30,
                                     stage="training", params={"preset": "tiny"})
    MetricPoint.objects.bulk_create([MetricPoint(job=job, name=name, step=s, value=v)
                                     for name in ("loss", "kl") for s, v in ((1, 3.0), (2, 2.5))])
    LogLine.objects.create(job=job, message="<script>alert(1)</script>")
    client = client_for(ADMIN)
    page = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert 'value="40"' in page and "ETA 30 s" in page and 'hx-trigger="every 1s"' in page
    assert page.count('data-metric="') == 2 and "<polyline" in page
    assert "&lt;script&gt;" in page and "<script>alert" not in page
    response = client.post(reverse("jobs:cancel", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.cancel_requested and job.status == "running"
    job.mark_cancelled()
    live = client.get(reverse("jobs:live", args=[job.pk])).content.decode()
    assert "hx-trigger" not in live  # a finished job's page stops polling
    client.post(reverse("jobs:cancel", args=[job.pk]))  # too late: a message, no error page
    assert TrainingJob.objects.get(pk=job.pk).status == "cancelled"


@pytest.mark.django_db
def test_job_result_is_shown_as_readable_rows(fast_passwords):
    job = TrainingJob.objects.create(kind="sft", status="succeeded", params={"preset": "tiny"}, progress=1.0,
                                     result={"checkpoint": "tiny-1", "metrics": {"heldout_loss": 5.623815133881186,
                                                                                 "expert_load": [[0.25, 0.5]] * 40,
                                                                                 "tokens_per_s": 17184.49},
                                             "note": "<b>x</b>"})
    page = client_for(ADMIN).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert row(page, "metrics.heldout_loss") == "5.624"  # 4 significant digits, not a dict dump
    assert row(page, "checkpoint") == "tiny-1" and row(page, "metrics.tokens_per_s") == "17,184"
    assert row(page, "metrics.expert_load").startswith("[[0.25, 0.5], [0.25, 0.5]") and row(page, "metrics.expert_load").endswith("…")
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "{'heldout_loss'" not in page
    assert 'id="result-problems"' not in page  # nothing to flag in an SFT result


def row(page: str, metric: str) -> str:
    """The value cell of a metric's row in the job page's result table."""
    match = re.search(rf'<tr data-metric="{re.escape(metric)}"[^>]*><td>[^<]*</td><td class="value">([^<]*)</td>', page)
    assert match, f"no row for {metric}"
    return match.group(1)


def evaluation_report(**figures) -> dict:
    """What the evaluate job returns (training.rl.evaluation), with the given figures."""
    report = {"checkpoint_name": "gen-a", "judge_name": "len10", "prompts": 2, "samples_per_prompt": 2, "greetings": 4,
              "pass_rate": 0.75, "pass_rate_ci95": [0.5, 1.0], "mean_reward": 0.61, "distinct_1": 0.4,
              "distinct_2": 0.7, "novelty": 1.0, "copies": 0, "truncated": 0.0, "empty": 0.0,
              "lengths": {"mean": 21.5, "median": 21, "p10": 12, "p90": 30}, "kl_to_reference": {"kl_per_token": 0.01},
              "samples": [{"query": "给妈妈的生日祝福", "greeting": "妈妈，生日快乐！愿您<b>永远</b>年轻。" * 3},
                          {"query": "同事升职祝福", "greeting": "恭喜高升，前程似锦！"}]}
    return {**report, **figures}


@pytest.mark.django_db
def test_an_evaluation_result_is_a_table_with_readable_samples_and_flagged_problems(fast_passwords):
    client = client_for(ADMIN)
    good = TrainingJob.objects.create(kind="evaluate", status="succeeded", progress=1.0, result=evaluation_report())
    page = client.get(reverse("jobs:detail", args=[good.pk])).content.decode()
    assert row(page, "pass_rate") == "0.75" and row(page, "lengths.mean") == "21.5" and row(page, "novelty") == "1"
    assert 'id="result-problems"' not in page and 'class="flagged"' not in page
    samples = page[page.index('id="result-samples"'):page.index("</table>", page.index('id="result-samples"'))]
    assert "<td>给妈妈的生日祝福</td>" in samples and "&lt;b&gt;永远&lt;/b&gt;" in samples  # whole, escaped
    assert samples.count("永远") == 3 and "{'query'" not in page  # not cut, not a Python repr
    copied = TrainingJob.objects.create(kind="evaluate", status="succeeded", progress=1.0,
                                        result=evaluation_report(novelty=0.0, copies=4, pass_rate=0.25, truncated=0.5))
    page = client.get(reverse("jobs:detail", args=[copied.pk])).content.decode()
    problems = page[page.index('id="result-problems"'):page.index("</div>", page.index('id="result-problems"'))]
    assert "novelty" in problems and "promotion gate" in problems and "≥ 0.95" in problems  # the gate's own bar
    assert "4 of 4 greetings copy a training greeting" in problems
    assert "pass_rate" in problems and "truncated" in problems
    assert '<tr data-metric="novelty" class="flagged">' in page  # red in the table as well
    assert '<tr data-metric="distinct_2">' in page  # unflagged figures stay plain


@pytest.mark.django_db
def test_a_round_result_shows_the_gate_reasons_and_the_candidate_samples(fast_passwords):
    decision = {"promote": False, "reasons": ["pass rate 0.500 vs 0.400: +0.100, 95% CI [-0.1, +0.3] includes 0",
                                              "novelty 0.500 below the floor 0.95 (copies training greetings)",
                                              "distinct-2 0.700 vs 0.700: ok"],
                "checks": {"pass_rate": False, "novelty": False, "diversity": True}}
    job = TrainingJob.objects.create(kind="rlaif_round", status="succeeded", progress=1.0, result={
        "promoted": False, "decision": decision, "before": evaluation_report(), "after": evaluation_report(novelty=0.5)})
    page = client_for(ADMIN).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    reasons = page[page.index('id="gate-reasons"'):page.index("</ul>", page.index('id="gate-reasons"'))]
    assert reasons.count('class="flag"') == 2 and reasons.count('class="ok"') == 1
    assert '<tr data-metric="after.novelty" class="flagged">' in page and '<tr data-metric="before.novelty">' in page
    assert 'id="result-samples"' in page and "同事升职祝福" in page


@pytest.mark.django_db
def test_promote_and_one_click_rollback(fast_passwords, tmp_path):
    first, second = fake_checkpoint(tmp_path, "ck-first"), fake_checkpoint(tmp_path, "ck-second")
    promote_checkpoint(first)
    client = client_for(ADMIN)
    page = client.get(reverse("checkpoints:list")).content.decode()
    assert "heldout_loss=2.7500" in page and 'id="rollback"' not in page  # nothing active before: no rollback
    client.post(reverse("checkpoints:promote", args=[second.pk]))
    assert Checkpoint.objects.get(status="active") == second
    assert "Roll back to ck-first" in client.get(reverse("checkpoints:list")).content.decode()
    client.post(reverse("checkpoints:rollback"))
    assert Checkpoint.objects.get(status="active") == first
    assert Checkpoint.objects.get(pk=second.pk).status == "retired"
    # promoting a checkpoint whose files vanished is refused, the active one stays
    (tmp_path / "ck-second" / "model.safetensors").unlink()
    client.post(reverse("checkpoints:promote", args=[second.pk]))
    assert Checkpoint.objects.get(status="active") == first


@pytest.mark.django_db
def test_blind_comparison_feeds_the_annotation_queue(fast_passwords, one_thread, corpus_file, runs_dir):
    a = train_and_register(preset="tiny", data_paths=[corpus_file], max_steps=3, seed=0)
    b = train_and_register(preset="tiny", data_paths=[corpus_file], max_steps=3, seed=1)
    client = client_for(ADMIN)
    bad = client.post(reverse("checkpoints:compare"), {"a": a.pk, "b": a.pk, "prompts": "生日祝福", "seed": 0})
    assert bad.status_code == 400 and 'data-field="b"' in bad.content.decode()
    prompts = ["七十生日祝福语", "给妈妈的生日祝福", "朋友乔迁祝福"]
    response = client.post(reverse("checkpoints:compare"), {"a": a.pk, "b": b.pk, "prompts": "\n".join(prompts),
                                                            "seed": 3})
    assert response.status_code == 200
    body = response.content.decode()
    comparison = body[body.index('id="comparison"'):body.index("<details")]
    assert a.name not in comparison and b.name not in comparison  # blind: sides carry no names
    assert comparison.count('class="side"') == 2 * len(prompts)
    assert not Greeting.objects.filter(source="model").exists()  # viewing stores nothing
    send = re.search(r'action="/train/checkpoints/compare/annotate/".*?</form>', body, re.S).group(0)
    fields = dict(re.findall(r'name="(a|b|seed)" value="([^"]*)"', send))
    fields["prompts"] = re.search(r'<textarea name="prompts" hidden>(.*?)</textarea>', send, re.S).group(1)
    response = client.post(reverse("checkpoints:compare-annotate"), fields)
    assert response.status_code == 302 and response["Location"] == reverse("annotation:home")
    batch = Batch.objects.get()
    assert batch.kind == "pairwise" and batch.build.prompts == prompts
    assert (batch.source["checkpoint"], batch.source["checkpoint_b"]) == (a.name, b.name)
    assert a.name not in batch.name and b.name not in batch.name  # annotators see the batch name


@pytest.mark.django_db
def test_checkpoint_list_shows_the_training_judges_agreement_with_people(fast_passwords, tmp_path):
    from tests.webapp.annotation.test_annotation_services import annotators, pointwise_batch, rate
    from webapp.annotation import services as annotation
    from webapp.corpus.models import Label
    from webapp.judges.models import JudgeVersion

    batch = pointwise_batch(n_items=3, k=1)
    (person,) = annotators(1)
    for verdict in ["good", "bad", "bad"]:
        rate(annotation.next_assignment(batch, person), person, verdict=verdict)
    judge = JudgeVersion.objects.create(name="tfidf-trainer", kind="tfidf")
    for item, value in zip(batch.items.order_by("position"), ["good", "good", "bad"]):
        Label.objects.create(greeting=item.greeting, value=value, source_kind="judge", source_name=judge.name)
    grpo = fake_checkpoint(tmp_path, "ck-grpo")
    Checkpoint.objects.filter(pk=grpo.pk).update(data={"judge": judge.name, "parent": "ck-sft"})
    fake_checkpoint(tmp_path, "ck-sft")  # no judge trained it: a dash
    orphan = fake_checkpoint(tmp_path, "ck-orphan")
    Checkpoint.objects.filter(pk=orphan.pk).update(data={"judge": "deleted-judge"})

    page = client_for(ADMIN).get(reverse("checkpoints:list")).content.decode()
    row = page[page.index('data-checkpoint="ck-grpo"'):]
    row = row[:row.index("</tr>")]
    # people: good, bad, bad; judge: good, good, bad -> 2 of 3 agree
    assert f"?judge={judge.pk}" in row and "tfidf-trainer" in row and "0.667" in row and "n=3" in row
    orphan_row = page[page.index('data-checkpoint="ck-orphan"'):]
    assert "judge no longer registered" in orphan_row[:orphan_row.index("</tr>")]


def trained_by(page: str, checkpoint: str) -> str:
    """The 'Trained by judge' cell of one checkpoint's row, whitespace collapsed."""
    row = page[page.index(f'data-checkpoint="{checkpoint}"'):]
    cell = re.search(r'<td class="trained-by">(.*?)</td>', row[:row.index("</tr>")], re.S).group(1)
    return " ".join(cell.split())


@pytest.mark.django_db
def test_checkpoint_list_reads_no_rating_rows_once_the_judges_agreement_is_cached(fast_passwords, tmp_path, settings):
    from django.db import connection
    from django.template.defaultfilters import floatformat
    from django.test.utils import CaptureQueriesContext

    from tests.webapp.annotation.test_annotation_services import annotators, pointwise_batch, rate
    from webapp.annotation import alignment
    from webapp.annotation import services as annotation
    from webapp.annotation.models import Rating
    from webapp.corpus.models import Label
    from webapp.judges.models import JudgeVersion

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "checkpoint-list-tests"}}
    batch = pointwise_batch(n_items=12, k=1)
    (person,) = annotators(1)
    judge = JudgeVersion.objects.create(name="tfidf-counted", kind="tfidf")
    for item in batch.items.all():  # the judge calls every greeting good
        Label.objects.create(greeting=item.greeting, value="good", source_kind="judge", source_name=judge.name)
    client = client_for(ADMIN)

    def view() -> tuple[str, list[str]]:
        with CaptureQueriesContext(connection) as queries:
            page = client.get(reverse("checkpoints:list")).content.decode()
        return page, [q["sql"] for q in queries.captured_queries]

    def trained_by_judge(name: str) -> Checkpoint:
        checkpoint = fake_checkpoint(tmp_path, name)
        Checkpoint.objects.filter(pk=checkpoint.pk).update(data={"judge": judge.name})
        return checkpoint

    def rate_next(verdicts: list[str]) -> None:
        for verdict in verdicts:
            rate(annotation.next_assignment(batch, person), person, verdict=verdict)

    def expected_cell() -> str:  # the figure computed afresh, uncached, as the template shows it
        figures = alignment.judge_alignment(judge, alignment.pointwise_items(None), full=False)
        a = figures["agreement"]
        return (f"{judge.name}</a>: {floatformat(a.value, 3)} [{floatformat(a.low, 3)}, {floatformat(a.high, 3)}], "
                f"n={figures['compared']}")

    def reads_rating_rows(queries: list[str]) -> bool:
        return any("annotation_rating" in sql and "COUNT(" not in sql for sql in queries)

    rate_next(["good", "good"])
    trained_by_judge("ck-0")
    small_cold, small_warm = view(), view()
    assert "tfidf-counted</a>: 1.000" in trained_by(small_cold[0], "ck-0") and "n=2" in small_cold[0]

    rate_next(["bad"] * 4 + ["good"] * 6)  # 12 ratings: 8 good, as the judge says
    for i in range(1, 5):
        trained_by_judge(f"ck-{i}")
    big_cold, big_warm = view(), view()
    for i in range(5):
        assert expected_cell() in trained_by(big_cold[0], f"ck-{i}")
        assert trained_by(big_warm[0], f"ck-{i}") == trained_by(big_cold[0], f"ck-{i}")
    assert "0.667" in trained_by(big_warm[0], "ck-0") and "n=12" in trained_by(big_warm[0], "ck-0")

    # Six times the ratings and five times the checkpoints: not one query more, cold or warm.
    assert len(big_cold[1]) == len(small_cold[1]) and len(big_warm[1]) == len(small_warm[1])
    assert reads_rating_rows(small_cold[1]) and reads_rating_rows(big_cold[1])
    assert not reads_rating_rows(small_warm[1]) and not reads_rating_rows(big_warm[1])
    assert len(big_warm[1]) < len(big_cold[1])

    # What the figure reads changes: the next view recomputes it.
    annotation.undo_last(batch=batch, user=person)  # the 12th rating (good) is taken back: 7 of 11 agree
    page, queries = view()
    undone = trained_by(page, "ck-0")
    assert reads_rating_rows(queries) and expected_cell() in undone and "0.636" in undone and "n=11" in undone
    rated = Rating.objects.filter(item__batch=batch).order_by("id").first()  # people said good
    Label.objects.filter(source_name=judge.name, greeting=rated.item.greeting).update(value="bad")  # rewritten in place
    page, queries = view()
    assert reads_rating_rows(queries) and expected_cell() in trained_by(page, "ck-0")
    assert "0.545" in trained_by(page, "ck-0")  # 6 of 11
