"""LLM jobs through the real queue: 1,000 jobs, a stub provider answering in 500 ms, `qcluster`.

    .venv/bin/python bench/llm_jobs.py [--jobs 1000] [--latency-ms 500] [--workers N]
        [--drain] [--conn-max-age] [--keep]

What runs, all on loopback:
- bench/stub_llm_server.py in its own process, answering OpenAI-style after `--latency-ms`;
- a fresh DATA_DIR with SQLite (or the database in DATABASE_URL, when set), `manage.py migrate`;
- `manage.py qcluster` with the default configuration (the `default` queue's cluster; Q_WORKERS
  and the rest of Q_CLUSTER as settings.py has them) unless `--workers` overrides Q_WORKERS;
- this process submits the jobs with `llmcore.services.llm_job_submit` (one transaction each, the
  way API requests do), then waits until every job is terminal.

Prints jobs/s from the first job created to the last one finished, the job latency (created to
finished), memory per cluster process from /proc (RSS, and PSS/USS: forked workers share pages,
so RSS overstates what each one costs), and the ratio against a baseline measured in the same
run: the same number of concurrent callers as workers posting straight to the stub with httpx
(no queue, no database), which is the ceiling for that many workers at that latency.

`--drain` submits every job before the cluster starts and times the draining alone;
`--conn-max-age` runs everything with persistent database connections (a settings overlay in the
temp dir, an experiment); `--keep` keeps the temp dir with the process logs and the database.
Exits 0 when the goal is met, 1 when it is missed or the run failed; skips (exit 0) when a
prerequisite is missing. Timings depend on what else the machine runs: the load average is
printed with the results.

Goal (issue 3): at least 20 jobs/s on a 2-core machine with the default configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_JOBS_PER_S = 20.0
STUB = ROOT / "bench" / "stub_llm_server.py"
MANAGE = ROOT / "manage.py"
PYTHON = sys.executable
# The developer's provider setup must not leak into the benchmark (nor a real key to the stub).
_PROVIDER_VARS = re.compile(
    r"^(LLM_|OPENAI_|ANTHROPIC_|GROQ_|GITHUB_TOKEN|GITHUB_MODELS_|HUGGINGFACE_|HF_TOKEN|"
    r"CLOUDFLARE_|OLLAMA_|VLLM_|LLAMACPP_|CUSTOM_|Q_)"
)
PROMPT = "A CI build failed with {{error}}. In one sentence, what is the most likely fix?"


def skip(reason: str) -> int:
    print(f"SKIP bench/llm_jobs.py: {reason}")
    return 0


def missing_prerequisite() -> str | None:
    if not Path("/proc/self/status").exists():
        return "needs Linux /proc to read worker memory"
    if not STUB.exists():
        return f"{STUB.relative_to(ROOT)} is missing"
    for module in ("django", "django_q", "httpx"):
        try:
            __import__(module)
        except ImportError:
            return f"Python package {module!r} is not installed (run `make install`)"
    return None


# --- Processes ----------------------------------------------------------------------------------


def start_stub(latency_ms: float, log: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [PYTHON, str(STUB), "--port", "0", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        text=True,
    )
    url = proc.stdout.readline().strip() if proc.stdout else ""
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError(f"the stub did not start (see {log})")
    return proc, url


def stop(proc: subprocess.Popen | None, *, grace: float = 30.0) -> None:
    """Stop a process this script started (and, if it will not go, the children it left)."""
    if proc is None or proc.poll() is not None:
        return
    children = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for pid in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current:
                found.append(child)
                frontier.append(child)
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """RSS, PSS and USS (private pages) of one process, in kB; {} when it is gone."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                values["rss"] = int(line.split()[1])
        rollup = Path(f"/proc/{pid}/smaps_rollup")
        if rollup.exists():
            private = 0
            for line in rollup.read_text().splitlines():
                key, _, rest = line.partition(":")
                if key == "Pss":
                    values["pss"] = int(rest.split()[0])
                elif key in ("Private_Clean", "Private_Dirty"):
                    private += int(rest.split()[0])
            values["uss"] = private
    except (OSError, ValueError):
        return {}
    return values


# --- The queue run ------------------------------------------------------------------------------


def child_env(
    data_dir: Path, stub_url: str, workers: int | None, settings_module: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _PROVIDER_VARS.match(k)}
    env.update(
        DATA_DIR=str(data_dir),
        LLM_PROVIDERS="custom",
        CUSTOM_BASE_URL=stub_url,
        CUSTOM_MODEL="stub-model",
        DJANGO_SETTINGS_MODULE=settings_module,
        PYTHONUNBUFFERED="1",
    )
    env.pop("DEBUG", None)
    if workers:
        env["Q_WORKERS"] = str(workers)
    return env


# An experiment, not the default configuration: keep database connections open between tasks.
# With CONN_MAX_AGE=0 (Django's default, and what settings.py leaves SQLite at) every task and
# every enqueue closes its connection and the next query opens a new one.
OVERLAY = """\
from grimoire.settings import *  # noqa: F403

DATABASES["default"]["CONN_MAX_AGE"] = None  # noqa: F405
"""


def settings_for(args: argparse.Namespace, workdir: Path) -> str:
    if not args.conn_max_age:
        return "grimoire.settings"
    (workdir / "bench_llm_jobs_settings.py").write_text(OVERLAY)
    sys.path.insert(0, str(workdir))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(workdir), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return "bench_llm_jobs_settings"


def manage(args: list[str], env: dict[str, str], log: Path, **popen: Any) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, str(MANAGE), *args],
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        **popen,
    )


def cluster_roles(cluster_pid: int) -> dict[int, str]:
    """pid → role for the cluster's processes, from django-q2's own status record."""
    roles = {cluster_pid: "cluster (main)"}
    try:
        from django_q.status import Stat

        for stat in Stat.get_all():
            if getattr(stat, "pid", None) != cluster_pid:
                continue  # another cluster on the same broker
            roles[stat.sentinel] = "sentinel"
            if stat.pusher:
                roles[stat.pusher] = "pusher"
            if stat.monitor:
                roles[stat.monitor] = "monitor"
            for pid in stat.workers:
                roles[pid] = "worker"
    except Exception as exc:  # the status record is a convenience; the process tree answers too
        print(f"  (no django-q2 status record: {exc})", flush=True)
    for pid in descendants(cluster_pid):
        roles.setdefault(pid, "cluster process")
    return roles


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run_queue(args: argparse.Namespace, stub_url: str, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "data"
    data_dir.mkdir()
    env = child_env(data_dir, stub_url, args.workers, settings_for(args, workdir))
    log = workdir / "processes.log"
    print(f"  migrating a fresh database in {data_dir} ...", flush=True)
    migrate = manage(["migrate", "--noinput"], env, log)
    if migrate.wait(timeout=600) != 0:
        raise RuntimeError(f"migrate failed (see {log})")

    # This process submits and watches: same settings as the cluster.
    os.environ.update(env)
    for name in list(os.environ):
        if _PROVIDER_VARS.match(name) and name not in env:
            del os.environ[name]
    import django

    django.setup()
    from django.conf import settings
    from django.db import transaction
    from django.db.models import Count, Max, Min

    from llmcore import services
    from llmcore.models import TERMINAL_STATUSES, JobStatus, LLMOutput

    workers = settings.Q_CLUSTER["workers"]
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(
        f"  database {engine}, broker {'redis' if settings.REDIS_URL else 'orm'}, "
        f"qcluster 'default' with {workers} workers, poll {settings.Q_CLUSTER['poll']} s, "
        f"bulk {settings.Q_CLUSTER['bulk']}",
        flush=True,
    )
    # Enqueue log lines from this process would bury the report; the cluster keeps its own.
    logging.getLogger("django-q").setLevel(logging.WARNING)
    run_tag = f"bench:{uuid.uuid4().hex[:12]}"

    def submit_all() -> float:
        print(f"  submitting {args.jobs} jobs ...", flush=True)
        start = time.monotonic()
        for i in range(args.jobs):
            with transaction.atomic():  # one transaction per job, as API requests do
                services.llm_job_submit(
                    prompt=PROMPT,
                    context={"error": f"ImportError #{i}: no module named pkg{i % 37}"},
                    purpose="bench.llm_jobs",
                    subject=run_tag,
                )
        return time.monotonic() - start

    submit_s = submit_all() if args.drain else 0.0
    cluster = manage(["qcluster"], env, log)
    try:
        deadline = time.monotonic() + 60
        while len(descendants(cluster.pid)) < workers + 2:
            if cluster.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"qcluster did not start its workers (see {log})")
            time.sleep(0.2)
        if not args.drain:
            submit_s = submit_all()

        mine = LLMOutput.objects.filter(subject=run_tag)
        peak: dict[int, dict[str, int]] = {}
        roles: dict[int, str] = {}
        last_print = 0.0
        deadline = time.monotonic() + args.timeout
        while True:
            counts = dict(mine.values_list("status").annotate(n=Count("pk")).order_by())
            done = sum(counts.get(s, 0) for s in TERMINAL_STATUSES)
            roles = cluster_roles(cluster.pid) or roles
            for pid in roles:
                sample = memory_kb(pid)
                for key, value in sample.items():
                    peak.setdefault(pid, {})[key] = max(peak.get(pid, {}).get(key, 0), value)
            now = time.monotonic()
            if now - last_print >= 5:
                print(f"  {done}/{args.jobs} terminal {counts}", flush=True)
                last_print = now
            if done >= args.jobs:
                break
            if cluster.poll() is not None:
                raise RuntimeError(f"qcluster exited with {cluster.returncode} (see {log})")
            if now > deadline:
                raise RuntimeError(f"not every job finished within {args.timeout} s: {counts}")
            time.sleep(0.5)

        span = mine.aggregate(
            first=Min("created_at"), first_start=Min("started_at"), last=Max("completed_at")
        )
        if args.drain:
            # Jobs waited in the broker while the cluster was down: time the draining only.
            elapsed = (span["last"] - span["first_start"]).total_seconds()
        else:
            elapsed = (span["last"] - span["first"]).total_seconds()
        latencies = [
            (finished - created).total_seconds()
            for created, finished in mine.filter(status=JobStatus.COMPLETED).values_list(
                "created_at", "completed_at"
            )
        ]
        failed = list(mine.filter(status=JobStatus.FAILED).values_list("error", flat=True)[:3])
        return {
            "workers": workers,
            "engine": engine,
            "elapsed_s": elapsed,
            "submit_s": submit_s,
            "completed": len(latencies),
            "failed": mine.filter(status=JobStatus.FAILED).count(),
            "failed_examples": failed,
            "latencies": latencies,
            "roles": roles,
            "peak": peak,
            "log": log,
        }
    finally:
        stop(cluster)


# --- The baseline -------------------------------------------------------------------------------


def run_baseline(stub_url: str, concurrency: int, calls: int) -> tuple[float, int]:
    """Calls per second with `concurrency` threads posting straight to the stub (no queue), and
    how many connection errors were retried on the way (the stub's accept backlog is small)."""
    import httpx

    payload = {
        "model": "stub-model",
        "messages": [{"role": "user", "content": PROMPT.replace("{{error}}", "ImportError")}],
    }
    retried = 0
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency + 4)) as client:

        def call(_: int) -> None:
            nonlocal retried
            for attempt in range(5):
                try:
                    response = client.post(f"{stub_url}/chat/completions", json=payload)
                    response.raise_for_status()
                    response.json()
                    return
                except httpx.TransportError:
                    retried += 1
                    if attempt == 4:
                        raise

        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(call, range(calls)))
        return calls / (time.monotonic() - start), retried


# --- Report -------------------------------------------------------------------------------------


def report(result: dict[str, Any], baseline: float, args: argparse.Namespace) -> bool:
    jobs_per_s = args.jobs / result["elapsed_s"]
    workers = result["workers"]
    ceiling = workers / (args.latency_ms / 1000)
    lat = result["latencies"]
    print()
    print(
        f"jobs                {args.jobs} ({result['completed']} completed, {result['failed']} failed)"
    )
    for error in result["failed_examples"]:
        print(f"  failed: {error[:200]}")
    print(
        f"submitting took     {result['submit_s']:.1f} s ({args.jobs / result['submit_s']:.0f} jobs/s)"
    )
    span = "first job started" if args.drain else "first job created"
    print(f"{span} -> last finished  {result['elapsed_s']:.1f} s")
    print(f"throughput          {jobs_per_s:.1f} jobs/s   (goal ≥ {GOAL_JOBS_PER_S:g})")
    if lat:
        print(
            f"job latency         p50 {percentile(lat, 0.5):.1f} s, p95 {percentile(lat, 0.95):.1f} s, "
            f"max {max(lat):.1f} s (created → finished, queue wait included)"
        )
    print(
        f"baseline            {baseline:.1f} calls/s: {workers} threads calling the stub directly "
        f"(ceiling {ceiling:.1f}/s for {workers} callers at {args.latency_ms:g} ms)"
    )
    print(f"ratio               {jobs_per_s / baseline:.2f} x the baseline")

    print("memory per cluster process (peak during the run, MB):")
    by_role: dict[str, list[dict[str, int]]] = {}
    for pid, role in sorted(result["roles"].items(), key=lambda item: item[1]):
        sample = result["peak"].get(pid)
        if sample:
            by_role.setdefault(role, []).append(sample)
    for role, samples in by_role.items():

        def mb(key: str, samples: list[dict[str, int]] = samples) -> str:
            values = [s[key] / 1024 for s in samples if key in s]
            return f"{statistics.mean(values):6.1f}" if values else "     -"

        print(f"  {role:<16} x{len(samples):<3} RSS {mb('rss')}  PSS {mb('pss')}  USS {mb('uss')}")
    total_pss = sum(s.get("pss", 0) for s in result["peak"].values()) / 1024
    print(f"  cluster total PSS {total_pss:.0f} MB")

    met = jobs_per_s >= GOAL_JOBS_PER_S and result["failed"] == 0
    print(f"goal                {'MET' if met else 'MISSED'}")
    if jobs_per_s < GOAL_JOBS_PER_S:
        explain_miss(result, jobs_per_s, ceiling, baseline, args)
    return met


def explain_miss(
    result: dict[str, Any],
    jobs_per_s: float,
    ceiling: float,
    baseline: float,
    args: argparse.Namespace,
) -> None:
    workers = result["workers"]
    need = int(GOAL_JOBS_PER_S * args.latency_ms / 1000 / 0.8) + 1
    if ceiling < GOAL_JOBS_PER_S / 0.8:
        print(
            f"why: a django-q2 worker process runs one job at a time, so {workers} workers at "
            f"{args.latency_ms:g} ms per call top out at {ceiling:.0f} jobs/s whatever the CPU. "
            f"They wait on the network, not the CPU: Q_WORKERS={need} or more lifts that "
            f"ceiling above the goal (try `--workers {need * 5 // 4}`)."
        )
    submit_rate = args.jobs / result["submit_s"] if result["submit_s"] else float("inf")
    if jobs_per_s / baseline < 0.75 or (not args.drain and submit_rate < 3 * GOAL_JOBS_PER_S):
        print(
            f"why: the cluster reached only {jobs_per_s / baseline:.2f} of the direct-call "
            f"baseline and submitting ran at {submit_rate:.0f} jobs/s while it worked: the "
            f"database ({result['engine']}) is contended, or the machine is busy (load average "
            f"{load_average()} now). On SQLite every worker, the pusher, the monitor and the "
            "submitter take turns on one write lock; PostgreSQL via DATABASE_URL (and Redis via "
            "REDIS_URL) is the scale-out answer, `--conn-max-age` an experiment with persistent "
            "connections."
        )


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=500.0)
    parser.add_argument(
        "--workers", type=int, default=None, help="Q_WORKERS for the cluster (default: settings)"
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="submit every job before starting the cluster, then time the draining alone",
    )
    parser.add_argument(
        "--conn-max-age",
        action="store_true",
        help="experiment: keep DB connections open (CONN_MAX_AGE=None) via a settings overlay",
    )
    parser.add_argument("--baseline-calls", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for all jobs")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args(argv)

    reason = missing_prerequisite()
    if reason:
        return skip(reason)

    workdir = Path(tempfile.mkdtemp(prefix="grimoire-bench-jobs-"))
    stub = None
    try:
        mode = "drain: submitted first" if args.drain else "submitted while the cluster runs"
        extra = "; experiment: CONN_MAX_AGE=None" if args.conn_max_age else ""
        print(
            f"bench/llm_jobs.py: {args.jobs} jobs ({mode}{extra}), stub latency "
            f"{args.latency_ms:g} ms, {os.cpu_count()} CPUs, load average {load_average()}"
        )
        stub, url = start_stub(args.latency_ms, workdir / "stub.log")
        result = run_queue(args, url, workdir)
        print(
            f"  baseline: {args.baseline_calls} direct calls with {result['workers']} threads ..."
        )
        baseline, retried = run_baseline(url, result["workers"], args.baseline_calls)
        if retried:
            print(f"  (baseline: {retried} connection error(s) retried)")
        met = report(result, baseline, args)
        if args.keep:
            print(f"kept {workdir}")
        return 0 if met else 1
    except RuntimeError as exc:
        print(f"bench/llm_jobs.py failed: {exc}")
        log = workdir / "processes.log"
        if log.exists():
            print("--- last lines of the process log ---")
            print("\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        return 1
    finally:
        stop(stub, grace=5)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
