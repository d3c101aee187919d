"""`make demo`: set up what the app needs on embedded defaults, then run web, worker and beat."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from webapp.core.roles import ADMIN, ANNOTATOR, WRITER, create_user_with_role

DEMO_ACCOUNTS = (("admin", ADMIN), ("annotator", ANNOTATOR), ("writer", WRITER))


def create_demo_accounts(out) -> None:
    """One account per role; a password is printed only when the account is created."""
    for username, role in DEMO_ACCOUNTS:
        _, password = create_user_with_role(username, role)
        if password:
            out(f"  created {role:<9} account  {username} / {password}   (shown once: note it)")
        else:
            out(f"  {role:<9} account {username} exists (password unchanged)")


def describe_broker() -> str:
    if settings.BROKER_KIND == "redis":
        return f"Redis at {settings.CELERY_BROKER_URL}"
    return f"embedded SQLite broker ({settings.CELERY_BROKER_URL}); no Redis answered on 127.0.0.1:6379"


def free_port(preferred: int) -> int:
    for port in range(preferred, preferred + 50):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {preferred}..{preferred + 49}")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen


def pump_output(child: Child, out) -> None:
    """Copy a child's output to ours, each line prefixed with its name."""
    for raw in iter(child.proc.stdout.readline, b""):
        out(f"[{child.name}] {raw.decode(errors='replace').rstrip()}")


def spawn(name: str, args: list[str], out) -> Child:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(args, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    child = Child(name, proc)
    threading.Thread(target=pump_output, args=(child, out), daemon=True).start()
    return child


def wait_for_http(url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answered (503 while parts are still starting)
        except OSError:
            time.sleep(0.5)
    return False


def run_services(port: int, out) -> int:
    """Run web, worker and beat in the foreground until Ctrl-C or until one of them dies."""
    python = sys.executable
    children = [
        spawn("web", [python, "-m", "uvicorn", "webapp.asgi:application", "--host", "127.0.0.1",
                      "--port", str(port), "--no-access-log"], out),
        # Two workers: a long training job never holds up the studio's generations.
        spawn("worker", [python, "-m", "celery", "-A", "webapp", "worker", "-Q", "default,generate",
                         "--concurrency", "1", "-n", "serve@%h", "-l", "info"], out),
        spawn("trainer", [python, "-m", "celery", "-A", "webapp", "worker", "-Q", "train",
                          "--concurrency", "1", "-n", "train@%h", "-l", "info"], out),
        spawn("beat", [python, "-m", "celery", "-A", "webapp", "beat", "-l", "info",
                       "--pidfile", str(Path(settings.VAR_DIR) / "beat.pid")], out),
    ]
    url = f"http://127.0.0.1:{port}/"
    stop = {"signal": None}

    def request_stop(signum, _frame):
        stop["signal"] = signum

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if wait_for_http(url + "healthz"):
        out("")
        out(f"  Zhufu is up: {url}   (Ctrl-C stops web, worker and beat)")
        out("")
    exit_code = 0
    while stop["signal"] is None:
        dead = [child for child in children if child.proc.poll() is not None]
        if dead:
            out(f"  {dead[0].name} exited with code {dead[0].proc.returncode}; stopping the others")
            exit_code = 1
            break
        time.sleep(0.5)
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.proc.kill()
    out("  stopped.")
    return exit_code
