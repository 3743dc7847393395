"""GitHub webhook receiver throughput and latency on gunicorn + PostgreSQL, against a ceiling.

    .venv/bin/python bench/webhooks.py [--seconds 30] [--clients 16] [--workers 2] [--threads 4]
                                       [--load-generator auto|wrk|python]

Starts gunicorn (as the Procfile does) on a PostgreSQL database: $DATABASE_URL when it names a
PostgreSQL database, else a temporary database created on postgres://postgres@127.0.0.1:5432 and
dropped afterwards. Q_SYNC is off and no qcluster runs, so a delivery's job is only enqueued
(the ORM broker's queue table), exactly what the web process does in production.

Then, with `--clients` keep-alive connections, for `--seconds` each (split into alternating
rounds so that a change in the machine's background load weighs on both alike):
- ceiling: GET /healthz, a trivial Django JSON view on the same server (the whole middleware
  stack, no database);
- webhooks: POST /webhooks/github/ with a realistic failed `workflow_job` payload (about 6 KB),
  each with its own X-GitHub-Delivery, signed with X-Hub-Signature-256 (1,000 bodies with their
  own job ids, signed before the clock starts, cycled).

The load generator runs on the same cores as the server, so it must cost little, or the ceiling
measures the client instead of the server. `wrk` (C, epoll; `apt-get install wrk`) is used when
installed: about 0.05 ms of CPU per request. Without it, Python threads with httpx send the load:
about 1 ms per request, which on a small machine caps the ceiling near the client's own limit and
flatters the ratio; the run then says so. The load generator's share of the machine's CPU is
printed for both measurements.

Prints requests/s and p50/p99 latency for both, the ratio, the CPU the server's processes used
per answered request (gunicorn's and PostgreSQL's, read from /proc during each measurement: this
says where a delivery's cost goes and what the goal would need), and checks the goals: throughput at
least 60% of the ceiling, p99 under 50 ms, and every delivery answered 2xx stored in the database
(with its job enqueued); the ids answered 2xx are collected from the responses by either load
generator. With wrk, the percentiles of the alternating rounds are merged from each round's
quantiles (every 1% and every 0.1% above the 99th, and the maximum), each request counted at its
quantile's upper bound. Skips (exit 0) when PostgreSQL is unreachable; exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import os
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
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
    # One per request (Python client) or rebuilt from wrk's quantiles (see the module docstring).
    latencies_ms: list[float] = field(default_factory=list)
    ok: int = 0  # answered 2xx
    not_ok: int = 0  # answered otherwise, or no answer (connection errors, timeouts)
    accepted: list[str] = field(default_factory=list)  # delivery ids answered 2xx
    client_cpu_s: float = 0.0  # CPU time the load generator used
    # CPU time the server's processes used while it ran, by command (gunicorn, postgres).
    server_cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]

    def client_share(self) -> float:
        """The load generator's share of the machine's CPU while it ran."""
        return self.client_cpu_s / (self.seconds * (os.cpu_count() or 1)) if self.seconds else 0.0

    def merge(self, part: Result) -> None:
        self.seconds += part.seconds
        self.latencies_ms.extend(part.latencies_ms)
        self.ok += part.ok
        self.not_ok += part.not_ok
        self.accepted.extend(part.accepted)
        self.client_cpu_s += part.client_cpu_s
        for command, seconds in part.server_cpu_s.items():
            self.server_cpu_s[command] = self.server_cpu_s.get(command, 0.0) + seconds

    def cpu_ms_per_request(self, command: str) -> float:
        return self.server_cpu_s.get(command, 0.0) / self.ok * 1000 if self.ok else float("nan")

    def line(self) -> str:
        return (
            f"{self.name:<30} {self.rate:8.0f} req/s   p50 {self.pct(0.50):6.2f} ms   "
            f"p99 {self.pct(0.99):6.2f} ms   ({self.ok} ok, {self.not_ok} not 2xx)"
        )


@dataclass(frozen=True)
class Deliveries:
    """Signed workflow_job bodies, built before the clock starts and then cycled.

    Each of the `variants` bodies has its own job id; GitHub's signature covers the body only, so
    a fresh X-GitHub-Delivery per request needs no new signature, and the load generator spends
    its time sending, not on JSON and HMAC (its CPU is the same cores the server runs on)."""

    signed: list[tuple[bytes, str]]  # (body, X-Hub-Signature-256)

    @classmethod
    def build(cls, secret: str, variants: int = 1000) -> Deliveries:
        template = json.loads(FIXTURE.read_text())
        job_id_text = str(template["workflow_job"]["id"])
        body_text = json.dumps(template, separators=(",", ":"))
        key = secret.encode()
        signed = []
        for n in range(variants):
            body = body_text.replace(job_id_text, str(30_000_000_000 + n)).encode()
            signed.append((body, "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()))
        return cls(signed)


WEBHOOK_HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "GitHub-Hookshot/bench",
    "X-GitHub-Event": "workflow_job",
}


class PythonLoad:
    """`clients` threads, each with a keep-alive httpx client, sending back to back. Needs nothing
    installed, but costs about 1 ms of CPU per request on the server's own cores."""

    name = "Python threads (httpx)"

    def __init__(self, url: str, deliveries: Deliveries) -> None:
        self.url = url
        self.deliveries = deliveries
        self.counter = itertools.count()  # thread-safe in CPython

    def _send(self, client: httpx.Client, target: str) -> tuple[httpx.Response, str | None]:
        if target == "ceiling":
            return client.get(f"{self.url}/healthz"), None
        signed = self.deliveries.signed
        body, signature = signed[next(self.counter) % len(signed)]
        delivery = str(uuid.uuid4())
        headers = {
            **WEBHOOK_HEADERS,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": signature,
        }
        response = client.post(f"{self.url}/webhooks/github/", content=body, headers=headers)
        return response, delivery

    def run(self, name: str, target: str, *, clients: int, seconds: float) -> Result:
        result = Result(name)
        lock = threading.Lock()
        start_gate = threading.Barrier(clients + 1)
        stop_at = 0.0

        def client_loop() -> None:
            part = Result(name)
            with httpx.Client(timeout=30) as client:
                start_gate.wait()
                while time.perf_counter() < stop_at:
                    t0 = time.perf_counter()
                    try:
                        response, delivery = self._send(client, target)
                    except httpx.HTTPError:
                        part.not_ok += 1
                        continue
                    part.latencies_ms.append((time.perf_counter() - t0) * 1000)
                    if 200 <= response.status_code < 300:
                        part.ok += 1
                        if delivery:
                            part.accepted.append(delivery)
                    else:
                        part.not_ok += 1
            with lock:
                result.merge(part)

        threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        cpu0 = time.process_time()
        began = time.perf_counter()
        stop_at = began + seconds
        start_gate.wait()
        for t in threads:
            t.join()
        result.seconds = time.perf_counter() - began
        result.client_cpu_s = time.process_time() - cpu0
        return result


# Quantiles wrk reports per round: every 1%, then every 0.1% above the 99th, then the maximum.
WRK_QUANTILES = [*range(1, 100), *(99 + i / 10 for i in range(1, 10)), 99.95, 99.99, 100]

# The wrk script. Both runs count the 2xx answers in response() (wrk's own error count only
# counts statuses over 399); the webhook run also sends a fresh delivery id on a pre-signed body
# in request() and keeps the ids answered 2xx, read from the response's "delivery" field.
# Globals set by the prelude: OUT, BODIES, PATH, RUN, QUANTILES.
_WRK_LUA = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  accepted, bodies, signatures, sent, ok = {}, {}, {}, 0, 0
  if BODIES ~= "" then
    for line in io.lines(BODIES) do
      local tab = line:find("\t", 1, true)
      signatures[#signatures + 1] = line:sub(1, tab - 1)
      bodies[#bodies + 1] = line:sub(tab + 1)
    end
  end
end

if BODIES ~= "" then
  function request()
    sent = sent + 1
    local i = sent % #bodies + 1
    return wrk.format("POST", PATH, {
      ["Content-Type"] = "application/json",
      ["User-Agent"] = "GitHub-Hookshot/bench",
      ["X-GitHub-Event"] = "workflow_job",
      ["X-GitHub-Delivery"] = string.format("%s-%d-%d", RUN, tid, sent),
      ["X-Hub-Signature-256"] = signatures[i],
    }, bodies[i])
  end

end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    if BODIES ~= "" then
      local id = body:match('"delivery":%s*"([^"]+)"')
      if id then accepted[#accepted + 1] = id end
    end
  end
end

function done(summary, latency, requests)
  local out = assert(io.open(OUT, "w"))
  local e = summary.errors
  local answered_2xx = 0
  for _, thread in ipairs(threads) do answered_2xx = answered_2xx + thread:get("ok") end
  out:write(string.format("requests %d\nduration_us %d\nok %d\nsocket_errors %d\n",
    summary.requests, summary.duration, answered_2xx,
    e.connect + e.read + e.write + e.timeout))
  for _, q in ipairs(QUANTILES) do
    -- wrk 4.1's percentile(100) is 0: the maximum is latency.max.
    local value = q >= 100 and latency.max or latency:percentile(q)
    out:write(string.format("q %g %d\n", q, value))
  end
  for _, thread in ipairs(threads) do
    for _, id in ipairs(thread:get("accepted")) do out:write("id ", id, "\n") end
  end
  out:close()
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII text is a valid Lua string literal


class WrkLoad:
    """wrk with `clients` connections over two threads: a few percent of the machine's CPU."""

    name = "wrk"

    def __init__(self, url: str, deliveries: Deliveries, workdir: Path) -> None:
        self.url = url
        self.workdir = workdir
        self.bodies = workdir / "bodies.txt"
        with self.bodies.open("wb") as out:
            for body, signature in deliveries.signed:
                out.write(signature.encode() + b"\t" + body + b"\n")  # compact JSON: one line
        self.runs = itertools.count()

    def _script(self, target: str, out: Path) -> Path:
        n = next(self.runs)
        prelude = {
            "OUT": str(out),
            "BODIES": str(self.bodies) if target == "webhooks" else "",
            "PATH": "/webhooks/github/" if target == "webhooks" else "/healthz",
            "RUN": f"bench-{uuid.uuid4().hex[:12]}-{n}",
        }
        lines = [f"{name} = {_lua_string(value)}" for name, value in prelude.items()]
        lines.append("QUANTILES = {" + ", ".join(f"{q:g}" for q in WRK_QUANTILES) + "}")
        script = self.workdir / f"run-{n}.lua"
        script.write_text("\n".join(lines) + "\n" + _WRK_LUA)
        return script

    def run(self, name: str, target: str, *, clients: int, seconds: float) -> Result:
        out = self.workdir / f"result-{name.replace(' ', '_').replace('/', '_')}.txt"
        script = self._script(target, out)
        path = "/webhooks/github/" if target == "webhooks" else "/healthz"
        argv = [
            "wrk",
            f"--threads={min(clients, 2)}",
            f"--connections={clients}",
            f"--duration={max(1, round(seconds))}s",
            "--timeout=10s",
            f"--script={script}",
            f"{self.url}{path}",
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if run.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({run.returncode}): {run.stderr or run.stdout}")
        return self._parse(
            name,
            out.read_text(),
            after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
        )

    @staticmethod
    def _parse(name: str, text: str, cpu_s: float) -> Result:
        values: dict[str, int] = {}
        quantiles: list[tuple[float, float]] = []
        result = Result(name, client_cpu_s=cpu_s)
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "id":
                result.accepted.append(rest)
            elif kind == "q":
                q, micros = rest.split()
                quantiles.append((float(q), int(micros) / 1000))
            else:
                values[kind] = int(rest)
        requests = values["requests"]
        result.seconds = values["duration_us"] / 1e6
        result.ok = values["ok"]
        # Answers other than 2xx, plus wrk's socket errors (connect/read/write/timeout events).
        result.not_ok = requests - result.ok + values["socket_errors"]
        # wrk's percentile(q) is the latency of the request at rank round(N*q/100 + 0.5): the
        # requests up to that rank are counted at that value, an upper bound for each of them.
        previous_rank = 0
        for q, ms in quantiles:
            rank = min(requests, round(requests * q / 100 + 0.5))
            result.latencies_ms.extend([ms] * (rank - previous_rank))
            previous_rank = max(previous_rank, rank)
        return result


SERVER_COMMANDS = ("gunicorn", "postgres")
PROC = Path("/proc")


def _cpu_by_process() -> dict[int, tuple[str, float]]:
    """{pid: (command, CPU seconds so far)} for every process named gunicorn or postgres (the web
    workers, and PostgreSQL's backends and background writers)."""
    found: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "comm").read_text().strip()
            if command not in SERVER_COMMANDS:
                continue
            # After the parenthesised command, utime and stime are the 12th and 13th fields.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while being read
            continue
        found[int(entry.name)] = (command, (int(fields[11]) + int(fields[12])) / tick)
    return found


class ServerCPU:
    """CPU seconds the server's processes use while the block runs, by command.

    Sampled every quarter second, because PostgreSQL backends come and go (a web worker reconnects
    after CONN_MAX_AGE) and a process's CPU time disappears with it: at most the last quarter
    second of a process that ended is missed. Both run only for the benchmark here, so this is
    what serving the measurement cost. Without /proc, `used` stays empty."""

    def __init__(self) -> None:
        self.available = PROC.is_dir()
        self.used = dict.fromkeys(SERVER_COMMANDS, 0.0) if self.available else {}
        self._seen: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        now = _cpu_by_process()
        for pid, (command, seconds) in now.items():
            previous = self._seen.get(pid)
            if previous is not None and previous[0] == command:
                self.used[command] += max(0.0, seconds - previous[1])
        self._seen = now

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def __enter__(self) -> ServerCPU:
        if self.available:
            self._seen = _cpu_by_process()  # the baseline: only what is used from now on counts
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()
            self._sample()


def measured(load: PythonLoad | WrkLoad, name: str, target: str, **kwargs: Any) -> Result:
    """One load run, with the CPU the server's processes used during it."""
    with ServerCPU() as cpu:
        result = load.run(name, target, **kwargs)
    result.server_cpu_s = dict(cpu.used)
    return result


def interleaved(
    load: PythonLoad | WrkLoad, *, clients: int, seconds: float, rounds: int
) -> tuple[Result, Result]:
    """Both loads for `seconds` each, in alternating rounds (A B B A A B ...), so a change in
    the machine's background load during the run weighs on both the same way."""
    ceiling, hooks = Result("ceiling GET /healthz"), Result("POST /webhooks/github/")
    per_round = seconds / rounds
    for i in range(rounds):
        order = (ceiling, hooks) if i % 2 == 0 else (hooks, ceiling)
        for total in order:
            target = "ceiling" if total is ceiling else "webhooks"
            total.merge(measured(load, total.name, target, clients=clients, seconds=per_round))
    return ceiling, hooks


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


def load_generator(choice: str, url: str, deliveries: Deliveries, workdir: Path):
    if choice == "wrk" or (choice == "auto" and shutil.which("wrk")):
        if not shutil.which("wrk"):
            raise SystemExit("wrk is not installed (apt-get install wrk)")
        return WrkLoad(url, deliveries, workdir)
    return PythonLoad(url, deliveries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per measurement (30)")
    parser.add_argument("--clients", type=int, default=16, help="keep-alive connections (16)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (4)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up (2)")
    parser.add_argument(
        "--rounds", type=int, default=6, help="alternating rounds the time is split into (6)"
    )
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="wrk when installed (auto), or Python threads with httpx",
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
                load = load_generator(args.load_generator, url, Deliveries.build(secret), Path(tmp))
                print(
                    f"gunicorn {args.workers} workers x {args.threads} threads, "
                    f"{args.clients} connections from {load.name}, {args.seconds:.0f} s each, "
                    f"PostgreSQL {urlsplit(db_url).path.lstrip('/')}, {os.cpu_count()} CPUs"
                )
                commit_ms = commit_latency_ms(db_url)
                # Warm both paths (imports, connections, the URL resolver) before timing.
                load.run("warm-up", "ceiling", clients=args.clients, seconds=args.warmup)
                warm = load.run("warm-up", "webhooks", clients=args.clients, seconds=args.warmup)
                # One client alone: the service time of each, without queueing.
                solo_ceiling = load.run("solo", "ceiling", clients=1, seconds=args.warmup)
                solo_hooks = load.run("solo", "webhooks", clients=1, seconds=args.warmup)
                ceiling, hooks = interleaved(
                    load, clients=args.clients, seconds=args.seconds, rounds=max(1, args.rounds)
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
        f"median {hooks.pct(0.5):.2f} ms"
    )
    print(
        f"load generator: {ceiling.client_share():.0%} of the machine's CPU during the ceiling, "
        f"{hooks.client_share():.0%} during the webhooks"
        + (
            "; Python threads cost about 1 ms of CPU per request on the server's own cores, so "
            "the ceiling is likely the client's limit and the ratio flattered (install wrk)"
            if isinstance(load, PythonLoad)
            else ""
        )
    )
    print(
        f"context: one client alone: /healthz p50 {solo_ceiling.pct(0.5):.2f} ms, webhook p50 "
        f"{solo_hooks.pct(0.5):.2f} ms; one INSERT+COMMIT on this PostgreSQL {commit_ms:.2f} ms "
        f"(median, idle); a delivery is one statement (its row and its job together), and "
        f"deliveries arriving together share one (group commit); load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    if ceiling.server_cpu_s and hooks.server_cpu_s:
        web_ceiling = ceiling.cpu_ms_per_request("gunicorn")
        web, db = hooks.cpu_ms_per_request("gunicorn"), hooks.cpu_ms_per_request("postgres")
        print(
            f"server CPU per answered request: /healthz {web_ceiling:.2f} ms in gunicorn; a "
            f"delivery {web:.2f} ms in gunicorn + {db:.2f} ms in PostgreSQL = {web + db:.2f} ms "
            f"({(web + db) / web_ceiling:.1f}x; on a saturated machine the ratio is about the "
            f"inverse, so {GOAL_RATIO:.0%} needs a delivery to cost at most "
            f"{web_ceiling / GOAL_RATIO:.2f} ms in all)"
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
        # Every id answered 2xx is stored, and every 2xx answer carried its id.
        "durability": found == accepted and accepted == hooks.ok + warm.ok + solo_hooks.ok > 0,
        "all 2xx": hooks.ok > 0 and hooks.not_ok == 0,
    }
    if queued >= 0:
        goals["jobs enqueued"] = queued == total
    missed = [name for name, ok in goals.items() if not ok]
    print("RESULT:", "PASS" if not missed else f"FAIL ({', '.join(missed)})")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
