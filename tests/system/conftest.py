"""Process-level fault tests: real `qcluster`, gunicorn and PostgreSQL, each test on its own.

Every test gets a fresh PostgreSQL database (created on the `postgres` database of
SYSTEM_PG_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres, and dropped after), its
own DATA_DIR, and a hermetic environment: the subprocesses see only what the test gives them, not
the developer's `.env` or provider keys. Nothing leaves loopback: the LLM provider is
bench/stub_llm_server.py on a free port.

The subprocesses' output goes to one log file per process in the test's tmp dir; when a test
fails, the tail of every log is printed so the failure can be read without re-running it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
GUNICORN = str(VENV_BIN / "gunicorn")
STUB = str(ROOT / "bench" / "stub_llm_server.py")
ADMIN_URL = os.environ.get("SYSTEM_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")

# Only these variables of the caller's environment reach the subprocesses (hermetic settings).
PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "TZ")

# Observes every claim and every transition to a terminal status of an LLMOutput at the database
# level, independently of the code under test: "completed exactly once" is then a count.
TRANSITIONS_SQL = """
CREATE TABLE sys_transitions (
    id bigserial PRIMARY KEY,
    output_id uuid NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION sys_log_transition() RETURNS trigger AS $$
BEGIN
    IF (NEW.status = 'processing' AND NEW.claim IS DISTINCT FROM OLD.claim)
       OR (NEW.status IN ('completed', 'failed', 'retrying') AND NEW.status IS DISTINCT FROM OLD.status)
    THEN
        INSERT INTO sys_transitions (output_id, status, attempts)
        VALUES (NEW.id, NEW.status, NEW.attempts);
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER sys_log_transition AFTER UPDATE ON llmcore_llmoutput
    FOR EACH ROW EXECUTE FUNCTION sys_log_transition();
"""

NON_TERMINAL = ("pending", "processing", "retrying")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.25, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # the thing polled may not be up yet
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what or predicate}{detail}")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def pg_connect(url: str, **kwargs: Any):
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=5, **kwargs)


def postgres_available(url: str = ADMIN_URL) -> str | None:
    try:
        with pg_connect(url) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL not reachable at {url}: {exc}"
    return None


def redis_available(url: str) -> str | None:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"Redis not reachable at {url}: {exc}"
    return None


class Proc:
    """A subprocess in its own session (so a signal to its group reaches all its children)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115 (kept open for the process's lifetime)
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the group, then SIGKILL what is left after `grace` seconds."""
        if self.alive():
            self.kill_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # Forked children (qcluster workers) may outlive the leader: always sweep the group.
        self.kill_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._fh.close()


class Stack:
    """One test's world: a database, a data dir, and the processes started against them."""

    def __init__(self, tmp_path: Path, db_url: str) -> None:
        self.tmp_path = tmp_path
        self.db_url = db_url
        # (not "data": the root conftest already makes tmp_path/data for the pytest process)
        self.data_dir = tmp_path / "grimoire-data"
        self.data_dir.mkdir()
        self.procs: list[Proc] = []
        self.base_env: dict[str, str] = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
        self.base_env.update(
            {
                "DJANGO_SETTINGS_MODULE": "grimoire.settings",
                "GRIMOIRE_ENV_FILE": str(tmp_path / "no.env"),
                "DATA_DIR": str(self.data_dir),
                "DATABASE_URL": db_url,
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "LOG_LEVEL": "INFO",
                "LOG_FORMAT": "json",
                # The sweeper's schedule and every other default stays as in production; tests
                # shorten only what they say they shorten.
                "LLM_PROVIDERS": "offline",
            }
        )

    # -- environment and commands ---------------------------------------------------------------

    def env(self, **extra: Any) -> dict[str, str]:
        env = dict(self.base_env)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def set(self, **extra: Any) -> None:
        """Change the environment of every process started from now on."""
        self.base_env.update({k: str(v) for k, v in extra.items()})

    def manage(self, *args: str, timeout: float = 180, **env: Any) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(
                f"manage.py {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def django(self, code: str, *, timeout: float = 180, **env: Any) -> Any:
        """Run `code` with the project's settings in a fresh process; it may set `result`, which
        comes back JSON-decoded."""
        wrapped = (
            "import json as _json\nresult = None\n"
            + code
            + "\nprint('@@RESULT@@' + _json.dumps(result, default=str))\n"
        )
        out = self.manage("shell", "-c", wrapped, timeout=timeout, **env)
        for line in reversed(out.splitlines()):
            if line.startswith("@@RESULT@@"):
                return json.loads(line[len("@@RESULT@@") :])
        pytest.fail(f"no result from the snippet; output:\n{out[-3000:]}")

    def migrate(self) -> None:
        self.manage("migrate", "--no-input", "-v", "0")

    def install_transition_log(self) -> None:
        with pg_connect(self.db_url) as conn:
            conn.execute(TRANSITIONS_SQL)

    # -- processes --------------------------------------------------------------------------------

    def start(self, name: str, argv: list[str], **env: Any) -> Proc:
        log = self.tmp_path / f"{name}.log"
        proc = Proc(name, argv, self.env(**env), log)
        self.procs.append(proc)
        return proc

    def start_qcluster(self, name: str, *, cluster: str = "default", **env: Any) -> Proc:
        if cluster != "default":
            env["Q_CLUSTER_NAME"] = cluster
        proc = self.start(name, [PYTHON, "manage.py", "qcluster"], **env)
        wait_for(
            lambda: "running." in proc.text() or not proc.alive(),
            timeout=60,
            what=f"qcluster {name} to start",
        )
        if not proc.alive():
            pytest.fail(f"qcluster {name} exited at start:\n{proc.text()[-3000:]}")
        return proc

    def start_gunicorn(self, *, workers: int = 2, threads: int = 4, **env: Any) -> str:
        port = free_port()
        argv = [
            GUNICORN,
            "grimoire.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
            "--no-control-socket",
        ]
        proc = self.start("gunicorn", argv, **env)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if not proc.alive():
                pytest.fail(f"gunicorn exited at start:\n{proc.text()[-3000:]}")
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200

        wait_for(up, timeout=60, what="gunicorn to answer /healthz")
        return url

    def start_stub(self, *args: str) -> tuple[Proc, str]:
        """bench/stub_llm_server.py in its own process; returns (process, base URL)."""
        proc = self.start("stub", [PYTHON, STUB, "--port", "0", *args])
        url = wait_for(
            lambda: next((ln for ln in proc.lines() if ln.startswith("http://")), None),
            timeout=30,
            what="the stub LLM server to print its URL",
        )
        return proc, url.strip()

    def use_stub(self, url: str, **env: Any) -> None:
        """Point every process started from now on at the stub as the only provider, priced so
        that a completed job has a cost."""
        self.set(
            LLM_PROVIDERS="custom",
            CUSTOM_BASE_URL=url,
            CUSTOM_MODEL="stub-model",
            LLM_PRICES=json.dumps({"custom": {"stub-model": {"input": 1.0, "output": 2.0}}}),
            **env,
        )

    def stop_all(self) -> None:
        # The test is over: a graceful qcluster shutdown proves nothing here, so do not wait long.
        for proc in reversed(self.procs):
            proc.stop(grace=3)

    # -- database ---------------------------------------------------------------------------------

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with pg_connect(self.db_url) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def status_counts(self) -> dict[str, int]:
        return dict(self.sql("SELECT status, count(*) FROM llmcore_llmoutput GROUP BY status"))

    def wait_all_terminal(self, expected: int, *, timeout: float) -> dict[str, int]:
        def done() -> dict[str, int] | None:
            counts = self.status_counts()
            if sum(counts.values()) == expected and not any(counts.get(s) for s in NON_TERMINAL):
                return counts
            return None

        return wait_for(
            done,
            timeout=timeout,
            interval=1.0,
            what=f"{expected} LLM jobs to reach a terminal state (now {self.status_counts()})",
        )

    def dump_logs(self, limit: int = 4000) -> str:
        parts = []
        for proc in self.procs:
            with contextlib.suppress(OSError):
                parts.append(f"----- {proc.name} ({proc.log}) -----\n{proc.text()[-limit:]}")
        return "\n".join(parts)


def submit_jobs_code(n: int, *, schema_every: int = 0, priority: str = "default") -> str:
    """A snippet for Stack.django(): submit `n` LLM jobs (every `schema_every`-th one with a JSON
    schema) and set `result` to their ids in order."""
    return f"""
from llmcore.services import llm_job_submit
SCHEMA = {{
    "type": "object",
    "properties": {{
        "summary": {{"type": "string"}},
        "confidence": {{"type": "integer", "minimum": 0, "maximum": 100}},
    }},
    "required": ["summary", "confidence"],
    "additionalProperties": False,
}}
result = []
for i in range({n}):
    structured = {schema_every} and i % {schema_every} == 0
    output = llm_job_submit(
        prompt="System test job %d: the build failed with ImportError: no module named numpy." % i,
        json_schema=SCHEMA if structured else None,
        priority={priority!r},
        purpose="system-test",
        subject="job:%d" % i,
    )
    result.append(str(output.pk))
"""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@contextlib.contextmanager
def stack_on(admin_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A Stack on a new database of the server at `admin_url`, torn down afterwards."""
    name = f"grimoire_sys_{secrets.token_hex(4)}"
    with pg_connect(admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    world = Stack(tmp_path, with_database(admin_url, name))
    try:
        yield world
    finally:
        world.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            sys.stderr.write("\n" + world.dump_logs() + "\n")
        try:
            with pg_connect(admin_url) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:  # do not hide the test's own failure behind this one
            sys.stderr.write(f"could not drop test database {name}: {exc}\n")


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    with stack_on(ADMIN_URL, tmp_path, request) as world:
        yield world
