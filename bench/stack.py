"""A private Zhufu stack on loopback: its own PostgreSQL cluster and Redis server on free ports
(in a temp folder), migrated, with web (uvicorn, as `make demo` runs it), Celery worker and beat
pointed at them. The fault tests kill and restart these parts; the load and soak benchmarks
measure them. Nothing here touches the shared PostgreSQL on 5432 or Redis on 6379.

PostgreSQL refuses to run as root, so when we are root the cluster runs as the `postgres` user.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from tests.conftest import REPO, ManagedProcess, wait_until

PG_BIN = Path(os.environ.get("ZHUFU_PG_BIN", "/usr/local/bin"))
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PrivatePostgres:
    """A throw-away cluster; `stop(mode="immediate")` is a crash (no checkpoint), `start()` recovers."""

    def __init__(self, port: int | None = None):
        # Its own folder under the system temp dir: the postgres user must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="zhufu-pg-"))
        self.dir = self.root / "data"
        self.port = port or free_port()
        self.log = self.root / "pg.log"
        self.dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.dir, "postgres")
        self.dir.chmod(0o700)
        result = subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.dir), "-U", "postgres", "-A",
                                              "trust", "--no-sync", "-E", "UTF8"]), capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")

    @property
    def server_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}"

    def url(self, db: str = "zhufu") -> str:
        return f"{self.server_url}/{db}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        result = subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.dir), "-o", options, "-l",
                                              str(self.log), "-w", "-t", "60", "start"]), capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr[-1000:]}\n{self.log.read_text()[-2000:]}")

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.dir), "-m", mode, "-w", "stop"]),
                       capture_output=True)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def copy_from(self, data_dir: Path) -> None:
        """Replace this (stopped) cluster's data with a copy of a cleanly stopped one."""
        shutil.rmtree(self.dir)
        subprocess.run(["cp", "-a", str(data_dir), str(self.dir)], check=True)

    def create_database(self, name: str = "zhufu") -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def connect(self, db: str = "zhufu"):
        return psycopg.connect(self.url(db), autocommit=True)


class PrivateRedis:
    """Redis with persistence off: a SIGKILL and restart loses every queued message (on purpose)."""

    def __init__(self, root: Path, port: int | None = None):
        self.port = port or free_port()
        self.root = root
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        log = open(self.root / "redis.log", "ab")
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.root)], stdout=log, stderr=log)
        wait_until(lambda: self.ping(), 20, 0.1, "the private Redis to answer")

    def ping(self) -> bool:
        try:
            return self.command("PING") == b"+PONG"
        except OSError:
            return False

    def command(self, *words: str) -> bytes:
        """One inline command, raw reply line (enough for PING, LLEN, FLUSHALL)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
            conn.sendall((" ".join(words) + "\r\n").encode())
            return conn.recv(4096).split(b"\r\n")[0]

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def queue_length(self, queue: str) -> int:
        return int(self.command("LLEN", queue)[1:])


class Stack:
    """PostgreSQL + Redis + (on demand) web, worker, beat, all private to `root`."""

    def __init__(self, root: Path | None = None, **env_extra):
        self.owns_root = root is None  # a folder we made is removed at close; a caller's keeps the logs
        self.root = Path(root or tempfile.mkdtemp(prefix="zhufu-stack-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.var_dir = self.root / "var"
        self.var_dir.mkdir(exist_ok=True)
        self.pg = PrivatePostgres()
        self.redis = PrivateRedis(self.root)
        self.env_extra = env_extra
        self.processes: dict[str, ManagedProcess] = {}
        self.web_port = free_port()

    # --- set-up
    def start_services(self) -> None:
        """PostgreSQL with the schema migrated, and Redis. Migrating takes ~20 s, so a migrated cluster
        is kept under the temp dir, keyed by the migration files, and copied on later runs (~1 s)."""
        template = Path(tempfile.gettempdir()) / f"zhufu-pg-template-{migrations_key()}"
        if (template / "PG_VERSION").is_file():
            self.pg.copy_from(template)
            self.pg.start()
        else:
            self.pg.start()
            self.pg.create_database()
            self.migrate()
            self.pg.stop("fast")  # a clean shutdown: the copy needs no recovery
            staging = Path(tempfile.mkdtemp(prefix="zhufu-pg-staging-"))
            subprocess.run(["cp", "-a", str(self.pg.dir), str(staging / "data")], check=True)
            try:
                os.rename(staging / "data", template)
            except OSError:  # another run made it first
                pass
            shutil.rmtree(staging, ignore_errors=True)
            self.pg.start()
        self.redis.start()

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_SETTINGS"))}
        env.update(
            DATABASE_URL=self.pg.url(), REDIS_URL=self.redis.url(), CELERY_BROKER_URL=self.redis.url(),
            CELERY_RESULT_BACKEND=self.redis.url(), ZHUFU_VAR_DIR=str(self.var_dir), ZHUFU_TESTING="1",
            PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
            DJANGO_SETTINGS_MODULE="webapp.settings", SECURE_COOKIES="off",  # plain HTTP on loopback
        )
        env.update(self.env_extra)
        env.update(extra)
        return env

    def manage(self, *args: str, timeout: float = 300, **env_extra) -> str:
        result = subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=self.env(**env_extra), capture_output=True,
                                text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def migrate(self) -> None:
        self.manage("migrate", "--noinput")

    def shell(self, code: str, **env_extra) -> str:
        return self.manage("shell", "-c", code, **env_extra)

    # --- processes
    def start(self, name: str, pool: str = "solo", concurrency: int = 1, **env_extra) -> ManagedProcess:
        """Start 'web', 'worker' (or 'worker2', ...) or 'beat'; any earlier one of that name is stopped.
        Workers default to the solo pool (one process to kill); `make demo` runs prefork with 2."""
        self.stop(name)
        if name == "web":
            args = [PYTHON, "-m", "uvicorn", "webapp.asgi:application", "--host", "127.0.0.1", "--port",
                    str(self.web_port), "--no-access-log"]
        elif name.startswith("worker"):
            args = [PYTHON, "-m", "celery", "-A", "webapp", "worker", "--pool", pool, "--concurrency", str(concurrency),
                    "-Q", "default,generate,train", "-n", f"{name}-{os.getpid()}@%h", "--without-gossip",
                    "--without-mingle", "-l", "info"]
        elif name == "beat":
            args = [PYTHON, "-m", "celery", "-A", "webapp", "beat", "-l", "info", "--pidfile",
                    str(self.root / "beat.pid"), "-s", str(self.root / "beat-schedule")]
        else:
            raise ValueError(name)
        process = ManagedProcess(name, args, self.env(**env_extra), self.root)
        self.processes[name] = process
        return process

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            process.stop()

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group (the worker and any pool children)."""
        process = self.processes.pop(name)
        process.kill(signal.SIGKILL)
        process._log.close()

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def wait_for_web(self, timeout: float = 90) -> None:
        import requests

        def answers():
            try:
                requests.get(self.web_url + "/healthz", timeout=2)
                return True
            except requests.RequestException:
                return False

        try:
            wait_until(answers, timeout, 0.3, "the web server to answer")
        except AssertionError:
            raise AssertionError(f"web did not start:\n{self.processes['web'].log_tail()}") from None

    def wait_for_heartbeat(self, role: str, after: float, timeout: float = 90) -> None:
        """Until a `role` heartbeat newer than the wall-clock time `after` is in the database."""
        def fresh():
            try:
                with self.pg.connect() as conn:
                    row = conn.execute("SELECT max(extract(epoch from last_seen)) FROM core_heartbeat WHERE role=%s",
                                       (role,)).fetchone()
            except psycopg.Error:
                return False
            return row[0] is not None and float(row[0]) > after

        wait_until(fresh, timeout, 0.3, f"a fresh {role} heartbeat")

    def close(self) -> None:
        for name in list(self.processes):  # a throw-away stack: no graceful shutdowns to wait for
            self.kill(name)
        self.redis.kill()
        self.pg.remove()
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


def migrations_key() -> str:
    """A hash of every migration file we ship plus the versions of the apps whose migrations we don't."""
    import hashlib
    from importlib.metadata import version

    digest = hashlib.sha256(f"{version('django')} {version('django-celery-beat')}".encode())
    for path in sorted(REPO.glob("webapp/*/migrations/*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` plus its children (a prefork worker's pool)."""
    total = 0
    for p in [pid, *children_of(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def children_of(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = [int(k) for k in kids]
    for k in list(out):
        out += children_of(k)
    return out
