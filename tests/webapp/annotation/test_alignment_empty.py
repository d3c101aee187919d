"""The alignment page while no judge has judged the rated greetings: it says why it is empty and
offers the action that fills it; the judge_rated job it starts fills the page."""
import pytest
from django.test import Client
from django.urls import reverse

from tests.webapp.annotation.test_annotation_services import annotators, pointwise_batch, rate
from webapp.annotation import services as annotation_services
from webapp.core.roles import ADMIN, create_user_with_role
from webapp.corpus.models import Label
from webapp.jobs import services
from webapp.jobs.models import TrainingJob
from webapp.judges.services import activate_judge, register_judge

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.VAR_DIR = tmp_path / "var"
    user, _ = create_user_with_role("boss", ADMIN)
    client = Client()
    client.force_login(user)
    return client


def empty_state(client) -> str:
    page = client.get(reverse("annotation:alignment")).content.decode()
    if 'id="alignment-empty"' not in page:
        return ""
    start = page.index('id="alignment-empty"')
    return page[start:page.index("</div>", start)]


def rated_batch():
    batch = pointwise_batch(n_items=3, k=1)
    (person,) = annotators(1)
    for verdict in ("good", "bad", "good"):
        rate(annotation_services.next_assignment(batch, person), person, verdict=verdict)
    return batch


def test_with_nothing_rated_it_links_building_a_batch(admin_client):
    state = empty_state(admin_client)
    assert "No judge has judged the rated greetings yet" in state
    assert f'href="{reverse("annotation:batch-create")}"' in state


def test_with_no_judge_it_leads_to_training_or_activating_one(admin_client):
    rated_batch()
    state = empty_state(admin_client)
    assert "3 greetings are rated" in state and reverse("jobs:start-kind", args=["reward_model"]) in state
    register_judge(kind="length", name="len10", config={"threshold": 10})
    state = empty_state(admin_client)
    assert reverse("judges:list") in state and reverse("jobs:start-kind", args=["judge_rated"]) in state


def test_the_button_judges_the_rated_greetings_and_the_page_fills(admin_client):
    rated_batch()
    judge = activate_judge(register_judge(kind="length", name="len10", config={"threshold": 10}))
    state = empty_state(admin_client)
    assert 'id="alignment-judge-rated"' in state and 'name="judge_rated-judge" value="len10"' in state
    # the button's form, as the browser sends it
    response = admin_client.post(reverse("jobs:start-kind", args=["judge_rated"]), {"judge_rated-judge": "len10"})
    assert response.status_code == 302
    job = TrainingJob.objects.get()
    job.mark_running("here")  # what the worker does, run here
    assert services.execute(job, resumed=False) == "succeeded"
    job.refresh_from_db()
    assert job.result["judged"] == 3 and job.result["judge"] == "len10"
    assert Label.objects.filter(source_kind="judge", source_name="len10").count() == 3
    assert empty_state(admin_client) == ""  # the versions table instead
    page = admin_client.get(reverse("annotation:alignment")).content.decode()
    assert "<td>len10</td>" in page
    detail = admin_client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert f'href="{reverse("annotation:alignment")}?judge={judge.pk}" id="result-alignment"' in detail
