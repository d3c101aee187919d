"""Job forms take registry rows and data-folder files from dropdowns; a path outside the app's data
folders is refused at the form naming the field (Chinese and English) and again when the job runs;
errors carry their field and the page that fixes them."""
import os

import pytest
from django.test import Client
from django.urls import reverse

from training.rl.grpo import GRPOConfig, GRPOError
from webapp.checkpoints.services import register_checkpoint
from webapp.core.roles import ADMIN, create_user_with_role
from webapp.jobs import services
from webapp.jobs.datafiles import DataFileError, check_data_file, upload_dir
from webapp.jobs.models import TRAIN_SLOT, TrainingJob
from webapp.judges.services import register_judge
from webapp.rlaif import services as rlaif_services

pytestmark = pytest.mark.django_db

# (kind, field, the other parameters a start needs)
FILE_FIELDS = [
    ("evaluate", "prompts_file", {}),
    ("grpo", "prompts_file", {}),
    ("rlaif_round", "heldout_file", {}),
    ("sft", "data_path", {"preset": "tiny", "data_source": "file", "seed": "0"}),
    ("curate_pairs", "prompts_file", {}),
    ("curate_pairs", "exclude_files", {}),
    ("reward_model", "pair_files", {}),
    ("adversarial_judge", "labelled_file", {}),
]


@pytest.fixture
def private_var(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings.VAR_DIR


@pytest.fixture
def admin_client(private_var):
    user, _ = create_user_with_role("boss", ADMIN)
    client = Client()
    client.force_login(user)
    return client


def link_out_of_uploads(target="/etc/passwd"):
    """A symlink inside the uploads folder that points outside it."""
    upload_dir().mkdir(parents=True, exist_ok=True)
    link = upload_dir() / "innocent.txt"
    os.symlink(target, link)
    return str(link)


@pytest.mark.parametrize("kind, field, others", FILE_FIELDS)
@pytest.mark.parametrize("outside", ["/etc/passwd", "../../etc/passwd", "symlink"])
def test_a_path_outside_the_data_folders_is_refused_naming_the_field(private_var, kind, field, others, outside):
    value = link_out_of_uploads() if outside == "symlink" else outside
    with pytest.raises(services.JobError) as caught:
        services.start_job(kind, {**others, field: value})
    error = caught.value
    assert field in error.errors, error.message
    text = " ".join(error.errors[field])
    assert field in text and "数据文件夹" in text and "data folders" in text  # bilingual, names the field
    assert not TrainingJob.objects.exists()


def test_the_kind_page_shows_the_refusal_beside_the_field_with_the_upload_link(admin_client):
    response = admin_client.post(reverse("jobs:start-kind", args=["evaluate"]),
                                 {"evaluate-prompts_file": "/etc/passwd"})
    assert response.status_code == 400
    body = response.content.decode()
    error = body[body.index('data-field="prompts_file"'):]
    error = error[:error.index("</div>")]
    assert "prompts_file" in error and "only files inside the app&#x27;s data folders" in error
    assert 'href="#upload"' in error and 'id="upload"' in body


def test_a_stored_outside_path_is_refused_again_when_the_job_runs(private_var, tmp_path):
    """A job row that bypassed the form (an older row, a script) still cannot read outside the folders."""
    for kind, field in (("evaluate", "prompts_file"), ("sft", "data_path")):
        params = {"evaluate": {"prompts_file": "/etc/passwd"},
                  "sft": {"preset": "tiny", "data_source": "file", "data_path": "/etc/passwd", "seed": 0}}[kind]
        job = TrainingJob.objects.create(kind=kind, params=params, status="running", slot=TRAIN_SLOT, worker="w")
        assert services.execute(job, resumed=False) == "failed"
        job.refresh_from_db()
        assert job.error.startswith(f"{field}:") and "data folders" in job.error, job.error
        assert job.result["failed_field"] == field
    with pytest.raises(DataFileError) as caught:
        check_data_file("../../etc/passwd", "prompts_file")
    assert caught.value.field == "prompts_file"
    with pytest.raises(rlaif_services.RlaifError) as caught:
        rlaif_services.prompts_from("/etc/passwd", "heldout_file")
    assert caught.value.field == "heldout_file"


def fake_checkpoint(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return register_checkpoint(name=name, run_name=name, path=str(folder), preset="tiny", model_config={}, data={},
                               metrics={})


def test_the_evaluate_page_offers_registry_rows_and_data_files_as_dropdowns(admin_client, tmp_path):
    fake_checkpoint(tmp_path, "gen-a")
    register_judge(kind="length", name="len-judge", config={"threshold": 10})
    page = admin_client.get(reverse("jobs:start-kind", args=["evaluate"])).content.decode()
    for name in ("prompts_file", "checkpoint", "judge"):
        assert f'<select name="evaluate-{name}"' in page
        assert f'<input type="text" name="evaluate-{name}"' not in page
    assert '<option value="gen-a">gen-a · candidate · tiny</option>' in page
    assert '<option value="len-judge">len-judge · length</option>' in page
    assert "starter / queries.txt" in page  # the starter corpus's prompt set
    assert "no judge is active" in page  # the blank choice says what it would use


def test_an_upload_lands_in_the_uploads_folder_and_is_chosen(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = admin_client.post(reverse("jobs:upload", args=["evaluate"]), {
        "for_field": "prompts_file", "file": SimpleUploadedFile("my prompts.txt", "中秋节祝福语\n".encode())})
    assert response.status_code == 302
    saved = upload_dir() / "my_prompts.txt"
    assert saved.read_text(encoding="utf-8") == "中秋节祝福语\n"
    page = admin_client.get(response["Location"]).content.decode()
    assert f'<option value="{saved}" selected>uploads / my_prompts.txt</option>' in page
    refused = admin_client.post(reverse("jobs:upload", args=["evaluate"]), {
        "for_field": "prompts_file", "file": SimpleUploadedFile("run.sh", b"rm -rf /")})
    assert refused.status_code == 302 and not (upload_dir() / "run.sh").exists()


def test_no_active_judge_links_the_judges_page_at_the_form_and_on_the_failed_job(admin_client, tmp_path):
    fake_checkpoint(tmp_path, "gen-a")
    judges_page = reverse("judges:list")
    response = admin_client.post(reverse("jobs:start-kind", args=["evaluate"]), {
        "evaluate-prompts_file": str(rlaif_services.STARTER_QUERIES), "evaluate-checkpoint": "gen-a"})
    body = response.content.decode()
    assert response.status_code == 400 and 'data-field="judge"' in body
    assert f'href="{judges_page}"' in body and "manage.py" not in body
    # at run time (a periodic round, a stored job): the reason names the field, the job page links the fix
    job = TrainingJob.objects.create(kind="grpo", params={"checkpoint": "gen-a"}, status="running", slot=TRAIN_SLOT,
                                     worker="w")
    assert services.execute(job, resumed=False) == "failed"
    job.refresh_from_db()
    assert job.error.startswith("judge:") and "manage.py" not in job.error
    assert job.result["fix_url"] == judges_page
    page = admin_client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert f'id="job-fix" href="{judges_page}"' in page
    assert f'href="{reverse("jobs:start-kind", args=["grpo"])}?checkpoint=gen-a"' in page  # start again


def test_the_judges_page_activates_a_judge(admin_client):
    judge = register_judge(kind="length", name="len-judge", config={"threshold": 10})
    assert "none: jobs that leave the judge blank" in admin_client.get(reverse("judges:list")).content.decode()
    admin_client.post(reverse("judges:activate", args=[judge.pk]))
    judge.refresh_from_db()
    assert judge.is_active
    assert '<strong id="active-judge">len-judge</strong>' in admin_client.get(reverse("judges:list")).content.decode()


def test_grpo_errors_carry_their_field_and_map_to_the_form_names(monkeypatch, tmp_path):
    with pytest.raises(GRPOError) as caught:
        GRPOConfig(init_checkpoint=tmp_path, reference_checkpoint=tmp_path, out_dir=tmp_path, prompts=["x"],
                   lr=1.0).validate()
    assert caught.value.field == "lr"

    def refuse(field):
        def train(*args, **kwargs):
            raise GRPOError(f"{field} must be positive", field=field)
        return train

    monkeypatch.setattr(rlaif_services, "sft_reference", lambda checkpoint: tmp_path)
    checkpoint = fake_checkpoint(tmp_path, "gen-b")
    for grpo_field, form_field in (("max_steps", "steps"), ("max_seconds", "max_minutes"), ("lr", "lr"),
                                   (None, "grpo")):
        monkeypatch.setattr(rlaif_services, "train_grpo", refuse(grpo_field))
        with pytest.raises(rlaif_services.RlaifError) as caught:
            rlaif_services.run_grpo(checkpoint=checkpoint, judge=None, prompts=["x"], run_name="r")
        assert caught.value.field == form_field
