"""GitHub webhook receiver throughput and latency on gunicorn + PostgreSQL, against a ceiling.

    .venv/bin/python bench/webhooks.py [--seconds 30] [--clients 16] [--workers 2] [--threads 4]

Starts gunicorn (as the Procfile does) on a PostgreSQL database: $DATABASE_URL when it names a
PostgreSQL database, else a temporary database created on postgres://postgres@127.0.0.1:5432 and
dropped afterwards. Q_SYNC is off and no qcluster runs, so a delivery's job is only enqueued
(the ORM broker's queue table), exactly what the web process does in production.

Then, with `--clients` threads each holding a keep-alive httpx client, for `--seconds` each:
- ceiling: GET /healthz, a trivial Django JSON view on the same server (the whole middleware
  stack, no database);
- webhooks: POST /webhooks/github/ with a realistic failed `workflow_job` payload (about 6 KB),
  each with its own X-GitHub-Delivery, signed with X-Hub-Signature-256 (1,000 bodies with their
  own job ids, signed before the clock starts, cycled).

Prints requests/s and p50/p99 latency for both, the ratio, and checks the goals: throughput at
least 60% of the ceiling, p99 under 50 ms, and every delivery answered 2xx stored in the database
(with its job enqueued). Skips (exit 0) when PostgreSQL is unreachable; exits 1 when a goal is
missed.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
GUNICORN = str(VENV_BIN / "gunicorn") if (VENV_BIN / "gunicorn").exists() else "gunicorn"
FIXTURE = (
    ROOT / "spells" / "tests" / "fixtures" / "webhooks" / "workflow_job__completed_failure.json"
)
ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "TZ")

GOAL_RATIO = 0.60
GOAL_P99_MS = 50.0


# --- PostgreSQL ---------------------------------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _pg(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=5)


@contextmanager
def database() -> Iterator[str | None]:
    """A PostgreSQL URL to run against (None when PostgreSQL is unreachable)."""
    given = os.environ.get("DATABASE_URL", "")
    if given.startswith(("postgres://", "postgresql://")):
        try:
            _pg(given).close()
        except Exception as exc:
            print(f"SKIP: PostgreSQL at DATABASE_URL is not reachable: {exc}")
            yield None
            return
        yield given
        return
    try:
        admin = _pg(ADMIN_URL)
    except Exception as exc:
        print(f"SKIP: PostgreSQL is not reachable at {ADMIN_URL} (set DATABASE_URL): {exc}")
        yield None
        return
    name = f"grimoire_bench_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(ADMIN_URL, name)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# --- The server ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env(db_url: str, secret: str, data_dir: str) -> dict[str, str]:
    # Hermetic: the developer's .env, provider keys and broker settings do not leak in.
    env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    env.update(
        DATABASE_URL=db_url,
        GITHUB_WEBHOOK_SECRET=secret,
        Q_SYNC="false",  # jobs are only enqueued: no qcluster runs during the benchmark
        DATA_DIR=data_dir,
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="false",
        GRIMOIRE_ENV_FILE=os.devnull,
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def gunicorn(env: dict[str, str], *, workers: int, threads: int, log: Path) -> Iterator[str]:
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    port = _free_port()
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
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited at start:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer /healthz within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- Load ---------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    accepted: list[str] = field(default_factory=list)  # delivery ids answered 2xx

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]

    def line(self) -> str:
        bad = sum(n for s, n in self.statuses.items() if not 200 <= s < 300) + self.errors
        return (
            f"{self.name:<30} {self.rate:8.0f} req/s   p50 {self.pct(0.50):6.2f} ms   "
            f"p99 {self.pct(0.99):6.2f} ms   ({self.ok} ok, {bad} not 2xx)"
        )


Request = Callable[[httpx.Client], tuple[httpx.Response, str | None]]


def hammer(name: str, request: Request, *, clients: int, seconds: float) -> Result:
    """`clients` threads send `request` back to back until the time is up."""
    result = Result(name)
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    stop_at = 0.0

    def client_loop() -> None:
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        accepted: list[str] = []
        errors = 0
        with httpx.Client(timeout=30) as client:
            start_gate.wait()
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    response, delivery = request(client)
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if delivery and 200 <= response.status_code < 300:
                    accepted.append(delivery)
        with lock:
            result.latencies_ms.extend(latencies)
            for status, n in statuses.items():
                result.statuses[status] = result.statuses.get(status, 0) + n
            result.accepted.extend(accepted)
            result.errors += errors

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    stop_at = began + seconds
    start_gate.wait()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - began
    return result


def merge(into: Result, part: Result) -> None:
    into.seconds += part.seconds
    into.latencies_ms.extend(part.latencies_ms)
    for status, n in part.statuses.items():
        into.statuses[status] = into.statuses.get(status, 0) + n
    into.errors += part.errors
    into.accepted.extend(part.accepted)


def interleaved(
    a: tuple[str, Request], b: tuple[str, Request], *, clients: int, seconds: float, rounds: int
) -> tuple[Result, Result]:
    """Both loads for `seconds` each, in alternating rounds (A B B A A B ...), so a change in
    the machine's background load during the run weighs on both the same way."""
    totals = (Result(a[0]), Result(b[0]))
    per_round = seconds / rounds
    for i in range(rounds):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            name, request = (a, b)[which]
            merge(totals[which], hammer(name, request, clients=clients, seconds=per_round))
    return totals


def commit_latency_ms(db_url: str, n: int = 200) -> float:
    """Median time of one tiny INSERT + COMMIT: the durability floor under every delivery."""
    with _pg(db_url) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS grimoire_bench_probe (id bigserial, at timestamptz)"
        )
        try:
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                conn.execute("INSERT INTO grimoire_bench_probe (at) VALUES (now())")
                times.append((time.perf_counter() - t0) * 1000)
        finally:
            conn.execute("DROP TABLE grimoire_bench_probe")
    return statistics.median(times)


def healthz_request(url: str) -> Request:
    def send(client: httpx.Client) -> tuple[httpx.Response, str | None]:
        return client.get(f"{url}/healthz"), None

    return send


def webhook_request(url: str, secret: str, *, variants: int = 1000) -> Request:
    """A failed workflow_job delivery, signed, with a new delivery id each time.

    The bodies (`variants` of them, each with its own job id) are built and signed before the
    clock starts and then cycled, so the load generator spends its time sending, not on JSON and
    HMAC: its CPU is the same two cores the server runs on. GitHub's signature covers the body
    only, so a fresh X-GitHub-Delivery per request needs no new signature.
    """
    template = json.loads(FIXTURE.read_text())
    job_id_text = str(template["workflow_job"]["id"])
    body_text = json.dumps(template, separators=(",", ":"))
    key = secret.encode()
    signed = []
    for n in range(variants):
        body = body_text.replace(job_id_text, str(30_000_000_000 + n)).encode()
        signed.append((body, "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()))
    counter = itertools.count()

    def send(client: httpx.Client) -> tuple[httpx.Response, str | None]:
        body, signature = signed[
            next(counter) % variants
        ]  # itertools.count: thread-safe in CPython
        delivery = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/bench",
            "X-GitHub-Event": "workflow_job",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": signature,
        }
        return client.post(f"{url}/webhooks/github/", content=body, headers=headers), delivery

    return send


# --- Checks -------------------------------------------------------------------------------------


def stored(db_url: str, accepted: list[str]) -> tuple[int, int, int]:
    """(accepted deliveries found in the database, deliveries stored, jobs in the broker queue)."""
    with _pg(db_url) as conn:
        ids = {row[0] for row in conn.execute("SELECT delivery_id FROM spells_webhookdelivery")}
        try:
            queued = conn.execute("SELECT count(*) FROM django_q_ormq").fetchone()[0]
        except Exception:
            queued = -1  # a Redis broker: not countable here
    return sum(1 for d in accepted if d in ids), len(ids), queued


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per measurement (30)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads (16)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (4)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up (2)")
    parser.add_argument(
        "--rounds", type=int, default=6, help="alternating rounds the time is split into (6)"
    )
    args = parser.parse_args(argv)

    with database() as db_url:
        if db_url is None:
            return 0
        secret = secrets.token_hex(20)
        with tempfile.TemporaryDirectory(prefix="grimoire-bench-") as tmp:
            env = _server_env(db_url, secret, tmp)
            log = Path(tmp) / "gunicorn.log"
            with gunicorn(env, workers=args.workers, threads=args.threads, log=log) as url:
                print(
                    f"gunicorn {args.workers} workers x {args.threads} threads, "
                    f"{args.clients} client threads, {args.seconds:.0f} s each, "
                    f"PostgreSQL {urlsplit(db_url).path.lstrip('/')}, {os.cpu_count()} CPUs"
                )
                ceiling_req = healthz_request(url)
                hook_req = webhook_request(url, secret)
                commit_ms = commit_latency_ms(db_url)
                # Warm both paths (imports, connections, the URL resolver) before timing.
                hammer("warm-up", ceiling_req, clients=args.clients, seconds=args.warmup)
                warm = hammer("warm-up", hook_req, clients=args.clients, seconds=args.warmup)
                # One client alone: the service time of each, without queueing.
                solo_ceiling = hammer("solo", ceiling_req, clients=1, seconds=args.warmup)
                solo_hooks = hammer("solo", hook_req, clients=1, seconds=args.warmup)
                ceiling, hooks = interleaved(
                    ("ceiling GET /healthz", ceiling_req),
                    ("POST /webhooks/github/", hook_req),
                    clients=args.clients,
                    seconds=args.seconds,
                    rounds=max(1, args.rounds),
                )
            accepted_ids = warm.accepted + solo_hooks.accepted + hooks.accepted
            found, total, queued = stored(db_url, accepted_ids)
            server_errors = [
                line for line in log.read_text().splitlines() if '"level": "error"' in line
            ]

    accepted = len(accepted_ids)
    ratio = hooks.rate / ceiling.rate if ceiling.rate else 0.0
    p99 = hooks.pct(0.99)
    print(ceiling.line())
    print(hooks.line())
    print(
        f"ratio: {ratio:.1%} of the ceiling's throughput (goal >= {GOAL_RATIO:.0%}); "
        f"webhook p99 {p99:.2f} ms (goal < {GOAL_P99_MS:.0f} ms); "
        f"median {statistics.median(hooks.latencies_ms) if hooks.latencies_ms else float('nan'):.2f} ms"
    )
    print(
        f"context: one client alone: /healthz p50 {solo_ceiling.pct(0.5):.2f} ms, webhook p50 "
        f"{solo_hooks.pct(0.5):.2f} ms; one INSERT+COMMIT on this PostgreSQL {commit_ms:.2f} ms "
        f"(median, idle); a delivery is one statement (its row and its job together), and "
        f"deliveries arriving together share one (group commit); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    queue_note = f", {queued} jobs enqueued" if queued >= 0 else ""
    print(
        f"database: {found}/{accepted} deliveries answered 2xx are stored "
        f"({total} rows{queue_note})"
    )
    if server_errors:
        print(f"server logged {len(server_errors)} errors; first: {server_errors[0][:300]}")
    goals = {
        "throughput": ratio >= GOAL_RATIO,
        "p99": p99 < GOAL_P99_MS,
        "durability": found == accepted and accepted > 0,
        "all 2xx": hooks.ok > 0 and hooks.ok == len(hooks.latencies_ms) and hooks.errors == 0,
    }
    if queued >= 0:
        goals["jobs enqueued"] = queued == total
    missed = [name for name, ok in goals.items() if not ok]
    print("RESULT:", "PASS" if not missed else f"FAIL ({', '.join(missed)})")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
