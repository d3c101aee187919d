"""`make demo` end to end: the real command, a real web server, worker and beat.

Runs the demo twice on one database: first on the embedded SQLite broker (no Redis),
then on the real Redis, and checks that the second run reuses what the first set up."""
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest

from tests.conftest import REPO, link_default_judge, subprocess_env, wait_until
from webapp.site.demo import free_port

pytestmark = pytest.mark.services


class DemoProcess:
    def __init__(self, env: dict, port: int):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--preset", "tiny", "--port", str(port)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.append(raw.decode(errors="replace").rstrip())

    def output(self) -> str:
        return "\n".join(self.lines)

    def url(self) -> str | None:
        for line in self.lines:
            if "Zhufu is up:" in line:
                return line.split("Zhufu is up:")[1].split()[0]
        if self.proc.poll() is not None:
            raise AssertionError(f"demo exited early ({self.proc.returncode}):\n{self.output()[-4000:]}")
        return None

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=60)


def fetch_health(url: str) -> dict:
    try:
        with urllib.request.urlopen(url + "healthz", timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # 503 while a part is still starting
        return json.loads(error.read())
    except OSError as error:  # not answering (yet, or any more): the wait decides
        return {"ok": False, "error": str(error)}


def run_demo_until_green(env: dict) -> tuple[DemoProcess, dict, str]:
    demo = DemoProcess(env, free_port(8600))
    try:
        url = wait_until(demo.url, timeout=300, describe="the demo to print its URL")
        health = wait_until(lambda: (h := fetch_health(url))["ok"] and h, timeout=120,
                            describe="every part green")
        with urllib.request.urlopen(url, timeout=5) as response:
            page = response.read().decode()
    except AssertionError as error:
        demo.interrupt()
        raise AssertionError(f"{error}\n--- demo output ---\n{demo.output()[-6000:]}") from None
    return demo, health, page


def test_demo_serves_green_status_without_redis_then_with_redis(transactional_db, tmp_path, principled_judge_folder):
    # the session's trained judge stands in for the minute the demo spends training it on a fresh clone
    link_default_judge(principled_judge_folder, tmp_path / "var" / "judges")
    base_env = subprocess_env(ZHUFU_VAR_DIR=str(tmp_path / "var"), ZHUFU_DEMO="1")
    base_env.pop("CELERY_BROKER_URL")
    base_env.pop("CELERY_RESULT_BACKEND")

    embedded_env = dict(base_env, REDIS_URL="off")
    demo, health, page = run_demo_until_green(embedded_env)
    assert health["parts"]["broker"]["detail"].startswith("sqla+sqlite")
    assert page.count('class="part ok"') == 6, page
    assert "Broker:   embedded SQLite broker" in demo.output()
    assert demo.output().count("shown once") == 3
    assert "Judge: principled-team-v1 (principled) is active" in demo.output()
    assert demo.interrupt() == 0
    assert "stopped." in demo.output()

    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    demo, health, page = run_demo_until_green(dict(base_env, REDIS_URL=redis_url))
    assert health["parts"]["broker"]["detail"].startswith("redis")
    output = demo.output()
    assert "is active" in output and "training the" not in output, output
    assert "shown once" not in output and output.count("password unchanged") == 3
    assert demo.interrupt() == 0
