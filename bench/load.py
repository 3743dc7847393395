"""Mixed traffic against the whole service: gunicorn + 2 qcluster on PostgreSQL, for N minutes.

    .venv/bin/python bench/load.py [--minutes 10] [--rate 15] [--clients 16]

Sets up a world of its own (a temporary PostgreSQL database on SYSTEM_PG_ADMIN_URL's server,
default postgres://postgres@127.0.0.1:5432/postgres, a temp DATA_DIR, an API token made with
`create_api_token --quiet-token`), starts the Procfile's `web` (gunicorn 2 workers x 4 threads),
`worker` (default queue) and `worker_high` lines, and bench/stub_llm_server.py as the only LLM
provider (300 ms a call). Then sends open-loop traffic at a steady rate:

- 30% signed GitHub webhooks (`issues` opened/edited, ignored `workflow_job` successes, `ping`);
- 20% build uploads (`POST /api/v1/builds`: JSON logs, and one in ten a 1-2 MB raw text log);
- 15% issue creation (`POST /issues`);
- 30% learning API reads (`/llm/learning/builds`, `/llm/learning/build/{id}`);
- 5% `GET /healthz`: the baseline, the cheapest request through the same server stack.

Prints throughput and p50/p99 per endpoint (with the ratio of each p50 to the /healthz p50 of the
same run), queue depth over time (django-q2 tasks waiting per queue, unfinished LLM jobs, builds
awaiting analysis, deliveries awaiting processing), errors, and the RSS of every process after a
warm-up and at the end. After the traffic it waits for the queues to drain and checks that no
accepted work was lost: every 2xx delivery, build and issue is stored and finished.
Goal: zero errors, zero lost work, memory growth <= 20% per process role.

Throttles are raised for the run (THROTTLE_USER_WRITE, THROTTLE_ISSUE_CREATE): the bench measures
the service, not its rate limits. Nothing leaves loopback (GITHUB_API_URL points at a closed
local port). Exit status 0 when the goal is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import hmac
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
ADMIN_URL = os.environ.get("SYSTEM_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
SECRET = "load-test-webhook-secret"  # noqa: S105 (signs the bench's own deliveries)
GOAL_MEMORY_GROWTH = 0.20
PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "TZ")

MIX = [
    ("webhook", 0.30),
    ("build", 0.20),
    ("issue", 0.15),
    ("learning", 0.30),
    ("healthz", 0.05),
]

# --- the world: database, processes ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=5)


class World:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="grimoire-load-"))
        self.db_name = f"grimoire_load_{secrets.token_hex(4)}"
        parts = urlsplit(args.pg_admin_url)
        self.db_url = urlunsplit(parts._replace(path=f"/{self.db_name}"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
        self.env.update(
            {
                "DJANGO_SETTINGS_MODULE": "grimoire.settings",
                "GRIMOIRE_ENV_FILE": str(self.tmp / "no.env"),
                "DATA_DIR": str(self.tmp / "data"),
                "DATABASE_URL": self.db_url,
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "WARNING",
                # INFO: the bench reads "running." to know a cluster is up.
                "Q_LOG_LEVEL": "INFO",
                "GITHUB_WEBHOOK_SECRET": SECRET,
                "GITHUB_API_URL": "http://127.0.0.1:9",
                "THROTTLE_USER_WRITE": "1000000/min",
                "THROTTLE_ISSUE_CREATE": "1000000/min",
                "Q_WORKERS": str(args.q_workers),
                "Q_WORKERS_HIGH": str(args.q_workers_high),
            }
        )

    def manage(self, *argv: str) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *argv],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode:
            raise RuntimeError(f"manage.py {argv[0]} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self, name: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 (lives as long as the process)
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        try:
            return (self.tmp / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def setup(self) -> tuple[str, str]:
        """Database, migrations, user and token, stub, web and workers; returns (url, token)."""
        with pg(self.args.pg_admin_url) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        stub = self.start(
            "stub",
            [
                PYTHON,
                str(ROOT / "bench" / "stub_llm_server.py"),
                "--port",
                "0",
                "--latency-ms",
                str(self.args.llm_latency_ms),
            ],
        )
        stub_url = wait(lambda: _first_url(self.log("stub")), 30, "the stub LLM server")
        del stub
        self.env.update(
            {
                "LLM_PROVIDERS": "custom",
                "CUSTOM_BASE_URL": stub_url,
                "CUSTOM_MODEL": "stub-model",
                "LLM_PRICES": json.dumps({"custom": {"stub-model": {"input": 1, "output": 2}}}),
            }
        )
        self.manage("migrate", "--no-input", "-v", "0")
        self.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            "get_user_model().objects.create_user('loadbot', password=None, is_staff=True)",
        )
        token = self.manage("create_api_token", "loadbot", "--name", "load", "--quiet-token")
        port = free_port()
        self.start(
            "web",
            [
                str(VENV_BIN / "gunicorn"),
                "grimoire.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(self.args.web_workers),
                "--threads",
                str(self.args.web_threads),
                "--timeout",
                "120",
                "--graceful-timeout",
                "20",
                "--log-level",
                "warning",
                "--no-control-socket",
            ],
        )
        self.start("worker", [PYTHON, "manage.py", "qcluster"])
        self.start("worker_high", [PYTHON, "manage.py", "qcluster"], Q_CLUSTER_NAME="high")
        url = f"http://127.0.0.1:{port}"
        wait(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 60, "web /readyz")
        for name in ("worker", "worker_high"):
            wait(lambda name=name: "running." in self.log(name) or None, 60, f"{name} to start")
        return url, token.strip()

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with pg(self.db_url) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    def teardown(self) -> dict[str, float]:
        """SIGTERM each process, not its group (as scripts/serve.py, Docker and Kubernetes do:
        a qcluster whose forked workers get the signal too hangs in its shutdown); then SIGKILL
        whatever is left of the group. Returns the seconds each took to stop."""
        took: dict[str, float] = {}
        for name, proc in self.procs.items():
            start = time.monotonic()
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(35)
            took[name] = time.monotonic() - start
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if not self.args.keep:
            with contextlib.suppress(Exception), pg(self.args.pg_admin_url) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        return took


def _first_url(text: str) -> str | None:
    return next((ln.strip() for ln in text.splitlines() if ln.startswith("http://")), None)


def wait(predicate, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(0.25)
    raise RuntimeError(f"timed out waiting for {what}")


# --- memory -----------------------------------------------------------------------------------------


def _session_members(leader: int) -> list[int]:
    """Every live process in `leader`'s session (the process and all it forked)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == leader:  # field 6 of stat, the session id
            pids.append(int(entry))
    return sorted(pids)


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(world: World) -> dict[str, dict[int, int]]:
    """Role → {pid: RSS KiB} for the web and worker processes."""
    return {
        name: {pid: _rss_kib(pid) for pid in _session_members(proc.pid)}
        for name, proc in world.procs.items()
        if name != "stub"
    }


# --- traffic ----------------------------------------------------------------------------------------

LOG_TEMPLATES = [
    """============================= test session starts ==============================
platform linux -- Python 3.12.1, pytest-8.3.2
collected {n} items

tests/test_{mod}.py ..F..                                                  [100%]

=================================== FAILURES ===================================
___________________________ test_{name} ___________________________

    def test_{name}():
>       assert compute({n}) == {m}
E       assert {k} == {m}

tests/test_{mod}.py:{line}: AssertionError
=========================== short test summary info ============================
FAILED tests/test_{mod}.py::test_{name} - assert {k} == {m}
========================= 1 failed, {n} passed in 0.{n}s =========================
""",
    """npm ERR! code ERESOLVE
npm ERR! ERESOLVE unable to resolve dependency tree
npm ERR! While resolving: {mod}@1.{n}.0
npm ERR! Found: react@18.{m}.0
npm ERR! Could not resolve dependency:
npm ERR! peer react@"^17.0.0" from {name}@2.{k}.1
npm ERR! Fix the upstream dependency conflict, or retry with --legacy-peer-deps
""",
    """--- FAIL: Test{Name} (0.0{k}s)
    {mod}_test.go:{line}: expected {m}, got {k}
FAIL
FAIL\texample.com/{mod}\t0.{n}s
""",
    """error[E0308]: mismatched types
  --> src/{mod}.rs:{line}:{k}
   |
{line} |     let value: u32 = compute_{name}();
   |                ---   ^^^^^^^^^^^^^^^^^ expected `u32`, found `i64`
error: could not compile `{mod}` (lib) due to 1 previous error
""",
]
WORDS = ["parser", "loader", "cache", "auth", "billing", "export", "search", "render", "queue"]


def _log_text(rng: random.Random) -> str:
    template = rng.choice(LOG_TEMPLATES)
    name = rng.choice(WORDS)
    values = {
        "n": rng.randint(3, 90),
        "m": rng.randint(1, 9),
        "k": rng.randint(10, 99),
        "line": rng.randint(10, 400),
        "mod": rng.choice(WORDS),
        "name": name,
        "Name": name.title(),
    }
    noise = "".join(
        f"[{i:05d}] step {rng.choice(WORDS)}: ok ({rng.random():.3f}s)\n"
        for i in range(rng.randint(20, 300))
    )
    return noise + template.format(**values)


def _big_log(rng: random.Random) -> bytes:
    lines = rng.randint(15_000, 30_000)  # ~1-2 MB
    body = "".join(
        f"2024-05-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z compiling module {rng.choice(WORDS)}_{i}\n"
        for i in range(lines)
    )
    return (body + _log_text(rng)).encode()


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    deliveries: list[str] = field(default_factory=list)
    builds: list[str] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, endpoint: str, seconds: float, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.latencies[endpoint].append(seconds)
            if not ok:
                self.errors[endpoint].append(detail[:300])


class Traffic:
    def __init__(self, url: str, token: str, results: Results, seed: int) -> None:
        self.url = url
        self.token = token
        self.results = results
        self.seed = seed
        self.issue_numbers: list[int] = []
        self.next_number = 1
        self.lock = threading.Lock()

    def _send(
        self, http: httpx.Client, endpoint: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            response = http.request(method, self.url + path, timeout=60, **kwargs)
        except httpx.HTTPError as exc:
            self.results.record(endpoint, time.perf_counter() - start, False, repr(exc))
            return None
        ok = 200 <= response.status_code < 300
        self.results.record(
            endpoint,
            time.perf_counter() - start,
            ok,
            f"{response.status_code} {response.text[:200]}",
        )
        return response if ok else None

    def webhook(self, http: httpx.Client, rng: random.Random) -> None:
        roll = rng.random()
        with self.lock:
            if roll < 0.6 or not self.issue_numbers:
                number, action = self.next_number, "opened"
                self.next_number += 1
                self.issue_numbers.append(number)
            else:
                number, action = rng.choice(self.issue_numbers), "edited"
        if roll < 0.7:
            event = "issues"
            payload: dict[str, Any] = {
                "action": action,
                "issue": {
                    "number": number,
                    "title": f"Flaky {rng.choice(WORDS)} test on main (#{number})",
                    "body": f"Seen {rng.randint(1, 9)} times this week.\n\n"
                    + _log_text(rng)[-600:],
                    "html_url": f"https://github.com/acme/app/issues/{number}",
                    "user": {"login": "octocat"},
                },
                "repository": {"full_name": "acme/app"},
            }
        elif roll < 0.9:
            event = "workflow_job"
            payload = {
                "action": "completed",
                "workflow_job": {"id": rng.randint(1, 10**9), "conclusion": "success"},
                "repository": {"full_name": "acme/app"},
            }
        else:
            event, payload = "ping", {"zen": "Keep it logically awesome.", "hook_id": 1}
        body = json.dumps(payload).encode()
        delivery = str(uuid.uuid4())
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        response = self._send(
            http,
            "POST /webhooks/github/",
            "POST",
            "/webhooks/github/",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": signature,
            },
        )
        if response is not None:
            with self.results.lock:
                self.results.deliveries.append(delivery)

    def build(self, http: httpx.Client, rng: random.Random) -> None:
        auth = {"Authorization": f"Bearer {self.token}"}
        sha = f"{rng.getrandbits(160):040x}"
        if rng.random() < 0.1:
            response = self._send(
                http,
                "POST /api/v1/builds (raw 1-2 MB)",
                "POST",
                "/api/v1/builds",
                params={"status": "failed", "repository": "acme/app", "commit_sha": sha},
                content=gzip.compress(_big_log(rng), compresslevel=1),
                headers={**auth, "Content-Type": "text/plain", "Content-Encoding": "gzip"},
            )
        else:
            response = self._send(
                http,
                "POST /api/v1/builds",
                "POST",
                "/api/v1/builds",
                json={
                    "status": "failed",
                    "repository": "acme/app",
                    "branch": rng.choice(["main", "dev", "feature/x"]),
                    "commit_sha": sha,
                    "job_name": f"test ({rng.choice(WORDS)})",
                    "log": _log_text(rng),
                },
                headers=auth,
            )
        if response is not None:
            with self.results.lock:
                self.results.builds.append(response.json()["id"])

    def issue(self, http: httpx.Client, rng: random.Random) -> None:
        response = self._send(
            http,
            "POST /issues",
            "POST",
            "/issues",
            json={
                "title": f"{rng.choice(WORDS).title()} crashes when {rng.choice(WORDS)} is empty",
                "description": "Steps: run the nightly job.\n" + _log_text(rng)[-400:],
                "priority": rng.choice(["low", "medium", "high"]),
            },
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if response is not None:
            with self.results.lock:
                self.results.issues.append(response.json()["id"])

    def learning(self, http: httpx.Client, rng: random.Random) -> None:
        auth = {"Authorization": f"Bearer {self.token}"}
        with self.results.lock:
            build = rng.choice(self.results.builds) if self.results.builds else None
        if build is None or rng.random() < 0.5:
            self._send(
                http,
                "GET /llm/learning/builds",
                "GET",
                "/llm/learning/builds",
                params={"limit": 20},
                headers=auth,
            )
        else:
            self._send(
                http,
                "GET /llm/learning/build/{id}",
                "GET",
                f"/llm/learning/build/{build}",
                headers=auth,
            )

    def healthz(self, http: httpx.Client, rng: random.Random) -> None:
        self._send(http, "GET /healthz (baseline)", "GET", "/healthz")

    def run(self, *, seconds: float, rate: float, clients: int) -> None:
        """Open loop: request i is due at start + i/rate, whatever the answers' speed."""
        start = time.monotonic() + 0.5
        total = int(seconds * rate)
        counter = iter(range(total))
        lock = threading.Lock()
        kinds = [k for k, _ in MIX]
        weights = [w for _, w in MIX]

        def client(index: int) -> None:
            rng = random.Random(self.seed * 1000 + index)
            with httpx.Client() as http:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    kind = rng.choices(kinds, weights)[0]
                    getattr(self, kind)(http, rng)

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


# --- observing --------------------------------------------------------------------------------------

DEPTH_SQL = """
SELECT
  (SELECT count(*) FROM django_q_ormq WHERE key = 'default'),
  (SELECT count(*) FROM django_q_ormq WHERE key = 'high'),
  (SELECT count(*) FROM django_q_ormq WHERE key = 'low'),
  (SELECT count(*) FROM llmcore_llmoutput WHERE status IN ('pending', 'processing', 'retrying')),
  (SELECT count(*) FROM builds_build WHERE analysis_status IN ('pending', 'running')),
  (SELECT count(*) FROM spells_webhookdelivery WHERE status = 'received')
"""
DEPTH_COLUMNS = ("q:default", "q:high", "q:low", "llm open", "builds open", "deliveries open")


def sample_depth(world: World, stop: threading.Event, every: float, out: list) -> None:
    start = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(Exception):
            out.append((time.monotonic() - start, world.sql(DEPTH_SQL)[0]))
        stop.wait(every)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def check_lost_work(world: World, results: Results) -> list[str]:
    """Every accepted delivery, build and issue is stored and has finished its work."""
    problems = []

    def ids_in(table: str, column: str, wanted: list[str]) -> set[str]:
        if not wanted:
            return set()
        found = set()
        for start in range(0, len(wanted), 500):
            chunk = ",".join(f"'{w}'" for w in wanted[start : start + 500])
            found |= {
                str(r[0])
                for r in world.sql(f"SELECT {column} FROM {table} WHERE {column} IN ({chunk})")  # noqa: S608
            }
        return found

    for label, table, column, wanted in (
        ("deliveries", "spells_webhookdelivery", "delivery_id", results.deliveries),
        ("builds", "builds_build", "id", results.builds),
        ("issues", "issues_issue", "id", results.issues),
    ):
        missing = set(wanted) - ids_in(table, column, wanted)
        if missing:
            problems.append(
                f"{len(missing)} accepted {label} not stored, e.g. {sorted(missing)[:3]}"
            )
    unfinished = world.sql(
        """
        SELECT 'deliveries not processed', count(*) FROM spells_webhookdelivery
            WHERE status NOT IN ('processed', 'ignored')
        UNION ALL SELECT 'builds not analysed', count(*) FROM builds_build
            WHERE analysis_status <> 'done'
        UNION ALL SELECT 'issues not enriched', count(*) FROM issues_issue
            WHERE enrichment_status = 'pending'
        UNION ALL SELECT 'LLM jobs not completed', count(*) FROM llmcore_llmoutput
            WHERE status <> 'completed'
        UNION ALL SELECT 'failed tasks', count(*) FROM django_q_task WHERE NOT success
        UNION ALL SELECT 'tasks still queued', count(*) FROM django_q_ormq
            WHERE key IN ('default', 'high')
        """
    )
    problems += [f"{n} {label}" for label, n in unfinished if n]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=15.0, help="requests per second, all kinds")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--q-workers", type=int, default=4, help="workers of the default cluster")
    parser.add_argument("--q-workers-high", type=int, default=2)
    parser.add_argument("--llm-latency-ms", type=float, default=300.0)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before memory is read")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg-admin-url", default=ADMIN_URL)
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    args = parser.parse_args(argv)

    try:
        with pg(args.pg_admin_url) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        print(f"SKIP: PostgreSQL is not reachable at {args.pg_admin_url}: {exc}")
        return 0

    world = World(args)
    print(f"setting up in {world.tmp} (database {world.db_name}) ...", flush=True)
    results = Results()
    problems: list[str] = ["the run did not finish"]
    mem_start: dict[str, dict[int, int]] = {}
    mem_end: dict[str, dict[int, int]] = {}
    try:
        url, token = world.setup()
        traffic = Traffic(url, token, results, args.seed)
        seconds = args.minutes * 60
        depth: list[tuple[float, tuple[int, ...]]] = []
        stop = threading.Event()
        sampler = threading.Thread(target=sample_depth, args=(world, stop, 5.0, depth))
        sampler.start()

        def read_start_memory() -> None:
            time.sleep(min(args.warmup, seconds / 2))
            mem_start.update(memory(world))

        mem_thread = threading.Thread(target=read_start_memory, daemon=True)
        mem_thread.start()
        print(
            f"sending {args.rate:g} req/s for {args.minutes:g} min from {args.clients} clients ...",
            flush=True,
        )
        t0 = time.monotonic()
        traffic.run(seconds=seconds, rate=args.rate, clients=args.clients)
        elapsed = time.monotonic() - t0
        mem_thread.join()
        mem_end.update(memory(world))

        drain_start = time.monotonic()
        with contextlib.suppress(RuntimeError):
            wait(
                lambda: not check_lost_work(world, results),
                args.drain_timeout,
                "the queues to drain",
            )
        drained_in = time.monotonic() - drain_start
        stop.set()
        sampler.join()
        problems = check_lost_work(world, results)
        report(args, results, elapsed, depth, mem_start, mem_end, drained_in, problems)
    finally:
        took = world.teardown()
        print(
            "shutdown on SIGTERM: "
            + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in took.items())
        )
        if args.keep:
            print(f"kept {world.tmp} and database {world.db_name}")
    errors = sum(len(v) for v in results.errors.values())
    growth_ok = all(g <= GOAL_MEMORY_GROWTH for g in role_growth(mem_start, mem_end).values())
    return 0 if errors == 0 and not problems and growth_ok else 1


def role_growth(
    start: dict[str, dict[int, int]], end: dict[str, dict[int, int]]
) -> dict[str, float]:
    """Per role (web, worker, worker_high): growth of the mean RSS of its processes.

    Mean, not sum: django-q2 recycles workers (a new pid) and gunicorn may restart one, so pids
    differ between the two readings; the mean per process is what a leak would move."""
    growth = {}
    for role, before in start.items():
        after = end.get(role, {})
        if before and after:
            mean_before = sum(before.values()) / len(before)
            mean_after = sum(after.values()) / len(after)
            growth[role] = mean_after / mean_before - 1
    return growth


def report(
    args: argparse.Namespace,
    results: Results,
    elapsed: float,
    depth: list[tuple[float, tuple[int, ...]]],
    mem_start: dict[str, dict[int, int]],
    mem_end: dict[str, dict[int, int]],
    drained_in: float,
    problems: list[str],
) -> None:
    print()
    print(
        f"Grimoire load run: {elapsed / 60:.1f} min at {args.rate:g} req/s target, PostgreSQL, "
        f"gunicorn {args.web_workers}x{args.web_threads}, qcluster default ({args.q_workers} "
        f"workers) + high ({args.q_workers_high}), stub LLM {args.llm_latency_ms:g} ms"
    )
    base = results.latencies.get("GET /healthz (baseline)") or [float("nan")]
    base_p50 = statistics.median(base) * 1000
    print(
        f"\n{'endpoint':38} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'p50 / healthz':>13}"
    )
    total = errors = 0
    for endpoint in sorted(results.latencies):
        values = results.latencies[endpoint]
        n_err = len(results.errors.get(endpoint, []))
        total += len(values)
        errors += n_err
        p50 = pct(values, 0.5) * 1000
        print(
            f"{endpoint:38} {len(values):8d} {n_err:6d} {len(values) / elapsed:7.2f} {p50:8.1f} "
            f"{pct(values, 0.99) * 1000:8.1f} {p50 / base_p50:12.1f}x"
        )
    print(f"{'all':38} {total:8d} {errors:6d} {total / elapsed:7.2f}")
    for endpoint, details in results.errors.items():
        for detail in details[:3]:
            print(f"  error on {endpoint}: {detail}")

    print("\nqueue depth over time (django-q2 tasks waiting per queue; work not yet finished):")
    print("  " + f"{'t (s)':>6} " + " ".join(f"{c:>15}" for c in DEPTH_COLUMNS))
    step = max(1, len(depth) // 20)
    for t, row in depth[::step] + ([depth[-1]] if depth and (len(depth) - 1) % step else []):
        print("  " + f"{t:6.0f} " + " ".join(f"{v:15d}" for v in row))
    if depth:
        peak = [max(row[i] for _, row in depth) for i in range(len(DEPTH_COLUMNS))]
        print("  " + f"{'peak':>6} " + " ".join(f"{v:15d}" for v in peak))

    print(f"\nmemory (RSS) after {args.warmup:g}s of warm-up and at the end of the traffic:")
    growth = role_growth(mem_start, mem_end)
    for role in mem_start:
        before, after = mem_start[role], mem_end.get(role, {})
        print(
            f"  {role:12} {len(before):2d} procs {sum(before.values()) / 1024:7.1f} MiB -> "
            f"{len(after):2d} procs {sum(after.values()) / 1024:7.1f} MiB; mean per process "
            f"{growth.get(role, float('nan')) * 100:+.1f}%"
        )
        for pid in sorted(set(before) | set(after)):
            b, a = before.get(pid), after.get(pid)
            print(
                f"      pid {pid:7d} {(b or 0) / 1024:7.1f} -> {(a or 0) / 1024:7.1f} MiB"
                + ("" if b and a else "  (started or ended between the readings)")
            )

    print(f"\ndrained in {drained_in:.1f}s after the traffic stopped")
    print(
        f"accepted: {len(results.deliveries)} deliveries, {len(results.builds)} builds, "
        f"{len(results.issues)} issues"
    )
    lost = "none" if not problems else "; ".join(problems)
    print(f"lost or unfinished work: {lost}")
    max_growth = max(growth.values()) if growth else float("nan")
    print(
        f"\ngoal: zero errors {'OK' if errors == 0 else 'MISSED'} ({errors}), zero lost work "
        f"{'OK' if not problems else 'MISSED'}, memory growth <= 20% "
        f"{'OK' if max_growth <= GOAL_MEMORY_GROWTH else 'MISSED'} (max {max_growth * 100:+.1f}%)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
