"""Shared fixtures: real Celery worker and beat processes against the test database."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Test processes share 2 cores with Celery and web subprocesses: idle OpenMP threads should sleep, not spin.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "igniting"


def require_shared_data() -> Path:
    """The paper's data folder; missing data fails under CI=true and skips elsewhere."""
    if not SHARED_DATA.is_dir():
        message = f"the shared data folder {SHARED_DATA} is missing"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


def database_url_for_subprocesses() -> str:
    """A DATABASE_URL for subprocesses that points at the test database pytest-django made."""
    from django.db import connection

    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    if connection.vendor == "postgresql":
        user = settings.get("USER") or "postgres"
        password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
        host = settings.get("HOST") or "127.0.0.1"
        port = settings.get("PORT") or 5432
        return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"
    raise RuntimeError(f"unsupported database vendor {connection.vendor}")


def subprocess_env(**extra) -> dict:
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for_subprocesses(),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        CELERY_RESULT_BACKEND=settings.CELERY_RESULT_BACKEND,
        ZHUFU_TESTING="1",
        ZHUFU_VAR_DIR=str(settings.VAR_DIR),
        PYTHONUNBUFFERED="1",
    )
    if getattr(settings, "TRAINING_DATA_DIRS", None) is not None:  # a worker reads only the folders the test gave
        env["ZHUFU_TRAINING_DATA_DIRS"] = os.pathsep.join(str(p) for p in settings.TRAINING_DATA_DIRS)
    env.update(extra)
    return env


class ManagedProcess:
    """A child process whose output goes to a log file, stopped for sure at teardown."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self._log.close()


def start_celery(kind: str, tmp_path: Path, **env_extra) -> ManagedProcess:
    python = sys.executable
    if kind == "worker":
        args = [python, "-m", "celery", "-A", "webapp", "worker", "--pool", "solo", "-Q", "default,generate,train",
                "-n", f"test-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "-l", "info"]
    elif kind == "beat":
        args = [python, "-m", "celery", "-A", "webapp", "beat", "-l", "info", "--pidfile", str(tmp_path / "beat.pid")]
    else:
        raise ValueError(kind)
    return ManagedProcess(kind, args, subprocess_env(**env_extra), tmp_path)


def wait_until(predicate, timeout: float, interval: float = 0.5, describe: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {describe}")


@pytest.fixture
def celery_processes(transactional_db, tmp_path, settings):
    """A real worker and a real beat on the configured broker (Redis in CI); yields a dict."""
    started: dict[str, ManagedProcess] = {}

    def start(kind: str, **env_extra) -> ManagedProcess:
        process = start_celery(kind, tmp_path, **env_extra)
        started[kind] = process
        return process

    yield start
    for process in started.values():
        process.stop()


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def browser():
    """Debian's Chromium driven by Playwright, headless; missing Chromium fails under CI=true."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        yield chromium
        chromium.close()


# --- A tiny corpus and a private runs folder, for tests that train a tiny checkpoint.
GREETINGS = [
    ("七十生日祝福语", "愿您福如东海，寿比南山，身体康健，笑口常开。"),
    ("给妈妈的生日祝福", "妈妈，生日快乐！谢谢您一路的温柔与陪伴，愿您永远年轻美丽。"),
    ("古风新年祝福语", "岁序更新，瑞雪迎春；愿君新岁皆顺遂，长安常乐。"),
    ("同事升职祝福", "恭喜高升！实至名归，愿你在新岗位上大展宏图，再创佳绩。"),
    ("朋友乔迁祝福", "恭贺乔迁之喜！新居纳福，愿你在新家里的每一天都温暖明亮。"),
    ("高考加油的话", "十年磨一剑，今朝试锋芒。愿你从容落笔，金榜题名！"),
]


@pytest.fixture
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a second OpenMP thread only spins against other processes here
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "sft.json"
    records = [{"instruction": q, "input": "", "output": r} for q, r in GREETINGS * 3]
    path.write_text(json.dumps(records, ensure_ascii=False))
    return path


@pytest.fixture
def runs_dir(tmp_path, settings):
    settings.RUNS_DIR = tmp_path / "runs"
    return settings.RUNS_DIR


@pytest.fixture(scope="session")
def principled_judge_folder(tmp_path_factory):
    """The default principled judge (team corpus only), trained once per test session: about a
    minute on 2 busy cores, so every test that needs it links this folder instead of training."""
    from webapp.judges.default import DEFAULT_JUDGE_NAME, train_default_folder

    folder = tmp_path_factory.mktemp("default-judge") / DEFAULT_JUDGE_NAME
    train_default_folder(folder, lambda message: None)
    return folder


def link_default_judge(principled_judge_folder: Path, judges_dir: Path) -> Path:
    """The session's trained judge folder linked where ensure_default_judge looks for it."""
    target = Path(judges_dir) / principled_judge_folder.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(principled_judge_folder, target_is_directory=True)
    return target


@pytest.fixture
def default_judge(principled_judge_folder, settings, tmp_path):
    """The demo's default judge registered and active, from the session's trained folder."""
    from webapp.judges.default import ensure_default_judge

    settings.JUDGES_DIR = tmp_path / "judges"
    link_default_judge(principled_judge_folder, settings.JUDGES_DIR)
    return ensure_default_judge().version


@pytest.fixture(scope="session")
def team_principled_judge(principled_judge_folder):
    """The session's default judge (team corpus only) as a judge object, loaded from its folder."""
    from training.judges.principled import PrincipledJudge

    return PrincipledJudge.load(principled_judge_folder)
