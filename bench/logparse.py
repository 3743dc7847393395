"""Throughput and peak memory of builds.logparse.analyze_path on generated CI logs.

    .venv/bin/python bench/logparse.py [--sizes 20,200] [--keep DIR]

Generates mixed logs (GitHub Actions timestamps, ANSI colours, ``\\r`` progress bars, pytest,
Jest, go test, Maven/Surefire, cargo, npm and compiler output, passing and failing, with stack
traces) of 20 MB and 200 MB in a temporary directory. Every measurement runs in its own
subprocess so that ``ru_maxrss`` is that run's peak:

- ``analyze_path`` (the full analysis: errors, warnings, failures, primary error, excerpt),
- ``grep -ciE 'error|fail|warn'`` on the same file, the floor to compare against.

Prints MB/s (by wall clock and by CPU time, the latter less disturbed by other load on the
machine), peak RSS and the ratios. Goals: analyze_path >= 50 MB/s, and peak memory that does not
grow with the log size (the 200 MB peak within a few MB of the 20 MB peak).

When ../shared/datasets is present, the dev sets' real failing logs (error-dense: long stack
traces, many [ERROR] lines) are also measured as a reality check; skipped with a message if not.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THROUGHPUT_GOAL = 50.0  # MB/s

_MEASURE_ANALYZE = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from builds.logparse import analyze_path
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started, cpu_started = time.perf_counter(), time.process_time()
result = analyze_path({path!r})
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
print(json.dumps({{
    "seconds": elapsed,
    "cpu_seconds": cpu,
    "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "baseline_kb": baseline,
    "lines": result.total_lines,
    "errors": result.error_count,
    "warnings": result.warning_count,
    "failures": len(result.failures),
    "primary": result.primary_error.line if result.primary_error else None,
}}))
"""

_MEASURE_GREP = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
out = subprocess.run(["grep", "-ciE", "error|fail|warn", {path!r}], capture_output=True, text=True)
elapsed = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({{
    "seconds": elapsed,
    "cpu_seconds": usage.ru_utime + usage.ru_stime,
    "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    "count": int(out.stdout.strip() or 0),
}}))
"""

_WORDS = [
    "build",
    "cache",
    "module",
    "compile",
    "link",
    "resolve",
    "fetch",
    "install",
    "verify",
    "package",
    "target",
    "source",
    "config",
    "runner",
    "step",
    "output",
    "artifact",
    "layer",
    "image",
    "service",
    "handler",
    "request",
    "response",
    "value",
]


def _ts(t: float) -> str:
    hours, rem = divmod(int(t), 3600)
    minutes, seconds = divmod(rem, 60)
    return f"2024-05-{1 + hours // 24:02d}T{hours % 24:02d}:{minutes:02d}:{seconds:02d}.{int(t * 1e7) % 10**7:07d}Z "


def _sentence(rng: random.Random, n: int = 8) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _pytest(rng: random.Random) -> list[str]:
    mod = f"tests/test_{rng.choice(_WORDS)}.py"
    lines = [
        f"{mod}::test_{rng.choice(_WORDS)}_{i} \x1b[32mPASSED\x1b[0m [{rng.randint(0, 99):3d}%]"
        for i in range(rng.randint(5, 30))
    ]
    if rng.random() < 0.15:
        lines += [
            "=================================== FAILURES ===================================",
            f"_____________________________ test_{rng.choice(_WORDS)} _____________________________",
            "",
            "    def test_value():",
            ">       assert compute(3) == 5",
            "E       assert 4 == 5",
            "E        +  where 4 = compute(3)",
            "",
            f"{mod}:{rng.randint(10, 300)}: AssertionError",
            f"FAILED {mod}::test_value - assert 4 == 5",
            "========================= 1 failed, 29 passed in 3.21s =========================",
        ]
    return lines


def _go(rng: random.Random) -> list[str]:
    pkg = f"github.com/acme/app/internal/{rng.choice(_WORDS)}"
    lines = []
    for i in range(rng.randint(3, 15)):
        name = f"Test{rng.choice(_WORDS).title()}{i}"
        lines += [f"=== RUN   {name}", f"--- PASS: {name} ({rng.random():.2f}s)"]
    if rng.random() < 0.1:
        lines += [
            "--- FAIL: TestHandlerTimeout (0.31s)",
            f"    handler_test.go:{rng.randint(10, 200)}: expected status 200, got 504",
            "FAIL",
            f"FAIL\t{pkg}\t0.412s",
        ]
    else:
        lines.append(f"ok  \t{pkg}\t{rng.random():.3f}s")
    return lines


def _maven(rng: random.Random) -> list[str]:
    cls = f"com.acme.{rng.choice(_WORDS)}.{rng.choice(_WORDS).title()}Test"
    lines = [
        f"[\x1b[1;34mINFO\x1b[m] Running {cls}",
        f"[\x1b[1;34mINFO\x1b[m] Tests run: {rng.randint(1, 40)}, Failures: 0, Errors: 0, Skipped: 0, "
        f"Time elapsed: {rng.random():.3f} s - in {cls}",
    ]
    if rng.random() < 0.08:
        lines += [
            f"[\x1b[1;31mERROR\x1b[m] Tests run: 4, Failures: 1, Errors: 0, Skipped: 0, Time elapsed: 0.2 s <<< FAILURE! - in {cls}",
            f"[\x1b[1;31mERROR\x1b[m] {cls}.testSave  Time elapsed: 0.01 s  <<< FAILURE!",
            "org.opentest4j.AssertionFailedError: expected: <3> but was: <2>",
            *[
                f"\tat org.junit.jupiter.api.AssertionUtils.fail(AssertionUtils.java:{rng.randint(10, 90)})"
                for _ in range(12)
            ],
            f"\tat {cls}.testSave({cls.rsplit('.', 1)[-1]}.java:42)",
            "",
        ]
    return lines


def _npm(rng: random.Random) -> list[str]:
    bar = "\r".join(
        f"[{'#' * k}{'.' * (20 - k)}] fetch {rng.choice(_WORDS)}" for k in range(0, 21, 4)
    )
    lines = [bar, f"added {rng.randint(10, 900)} packages in {rng.randint(2, 40)}s"]
    if rng.random() < 0.3:
        lines.append(
            f"npm WARN deprecated {rng.choice(_WORDS)}@1.{rng.randint(0, 9)}.0: use something else"
        )
    return lines


def _compile(rng: random.Random) -> list[str]:
    lines = [
        f"[{i}/{400}] Building CXX object src/{rng.choice(_WORDS)}/{rng.choice(_WORDS)}.cpp.o"
        for i in range(rng.randint(5, 40))
    ]
    if rng.random() < 0.2:
        lines.append(
            f"src/{rng.choice(_WORDS)}.cpp:{rng.randint(1, 900)}:12: warning: unused variable 'tmp' [-Wunused-variable]"
        )
    if rng.random() < 0.03:
        lines += [
            f"src/{rng.choice(_WORDS)}.cpp:{rng.randint(1, 900)}:5: error: use of undeclared identifier 'frobnicate'",
            "    frobnicate(value);",
            "    ^",
            "1 error generated.",
            "ninja: build stopped: subcommand failed.",
        ]
    return lines


def _jest(rng: random.Random) -> list[str]:
    file = f"src/{rng.choice(_WORDS)}/{rng.choice(_WORDS)}.test.ts"
    if rng.random() < 0.1:
        return [
            f" \x1b[31mFAIL\x1b[39m  {file}",
            f"  \u25cf {rng.choice(_WORDS).title()} \u203a renders {rng.choice(_WORDS)}",
            "",
            "    expect(received).toBe(expected) // Object.is equality",
            "",
            "    Expected: true",
            "    Received: false",
            "",
            f"      at Object.<anonymous> ({file}:{rng.randint(5, 80)}:17)",
            "",
        ]
    return [f" \x1b[32mPASS\x1b[39m  {file} ({rng.random():.2f} s)"]


def _prose(rng: random.Random) -> list[str]:
    return [_sentence(rng, rng.randint(4, 16)) for _ in range(rng.randint(5, 30))]


_GENERATORS = (_pytest, _go, _maven, _npm, _compile, _jest, _prose, _prose, _prose)


def generate(path: Path, size_mb: int, seed: int = 7) -> int:
    """Write a mixed CI log of about ``size_mb`` MB; returns its size in bytes."""
    rng = random.Random(seed)
    target = size_mb * 1_000_000
    written = 0
    clock = 0.0
    with path.open("w", encoding="utf-8", newline="\n") as out:
        while written < target:
            step = rng.choice(
                ("npm ci", "pytest -v", "go test ./...", "mvn -B verify", "ninja", "npx jest")
            )
            block = [
                f"##[group]Run {step}",
                f"\x1b[36;1m{step}\x1b[0m",
                "shell: /usr/bin/bash -e {0}",
                "##[endgroup]",
            ]
            for _ in range(rng.randint(20, 60)):
                block += rng.choice(_GENERATORS)(rng)
            chunk = []
            for line in block:
                clock += rng.random() * 0.01
                chunk.append(_ts(clock) + line + "\n")
            text = "".join(chunk)
            out.write(text)
            written += len(text.encode("utf-8"))
        tail = _ts(clock) + "##[error]Process completed with exit code 1.\n"
        out.write(tail)
        written += len(tail)
    return written


def _real_logs(datasets: Path, workdir: Path) -> Path | None:
    """The dev sets' failing logs concatenated into one file, or None (with a message)."""
    logs = sorted((datasets / "cidiff-breakages").glob("**/fail.log")) if datasets.is_dir() else []
    if not logs:
        print(f"skip the real-log reality check: no cidiff-breakages logs under {datasets}")
        return None
    path = workdir / "real-failing-logs.log"
    with path.open("wb") as out:
        for log in logs:
            out.write(log.read_bytes())
    return path


def _run(code: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="20,200", help="comma-separated sizes in MB")
    parser.add_argument("--keep", type=Path, help="write the generated logs here and keep them")
    parser.add_argument(
        "--datasets",
        type=Path,
        default=ROOT.parent / "shared" / "datasets",
        help="development datasets: their failing logs, concatenated, are measured as a reality check",
    )
    args = parser.parse_args(argv)
    if shutil.which("grep") is None:
        print("grep not found: the floor cannot be measured")
        return 1

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="grimoire-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    real = None
    try:
        real = _real_logs(args.datasets, workdir)
        if real is not None:
            ours = _run(_MEASURE_ANALYZE.format(root=str(ROOT), path=str(real)))
            grep = _run(_MEASURE_GREP.format(path=str(real)))
            real_row = (real.stat().st_size, ours, grep)
        for size in (int(s) for s in args.sizes.split(",")):
            path = workdir / f"mixed-{size}mb.log"
            if not path.exists():
                started = time.perf_counter()
                generate(path, size)
                print(f"generated {path.name} in {time.perf_counter() - started:.1f}s")
            nbytes = path.stat().st_size
            ours = _run(_MEASURE_ANALYZE.format(root=str(ROOT), path=str(path)))
            grep = _run(_MEASURE_GREP.format(path=str(path)))
            rows.append((size, nbytes, ours, grep))
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print(
        "\nThroughput by wall clock, and by CPU time (less disturbed by other load on the machine)."
        f"\n{'log':>8} {'analyze_path':>25} {'peak RSS':>9} {'grep -ciE':>25} {'grep RSS':>9} "
        f"{'grep/ours':>9}  findings"
    )
    for size, nbytes, ours, grep in rows:
        mb = nbytes / 1e6
        ours_rate, ours_cpu = mb / ours["seconds"], mb / max(ours["cpu_seconds"], 1e-9)
        grep_rate, grep_cpu = mb / grep["seconds"], mb / max(grep["cpu_seconds"], 1e-9)
        print(
            f"{size:>6}MB {ours_rate:>7.1f} MB/s ({ours_cpu:>5.1f} CPU) {ours['maxrss_kb'] / 1024:>6.1f} MB "
            f"{grep_rate:>7.1f} MB/s ({grep_cpu:>5.0f} CPU) {grep['maxrss_kb'] / 1024:>6.1f} MB "
            f"{grep_rate / ours_rate:>8.1f}x  "
            f"{ours['lines']} lines, {ours['errors']} errors, {ours['warnings']} warnings, "
            f"{ours['failures']} failures (grep counted {grep['count']} lines)"
        )
    if real is not None:
        nbytes, ours, grep = real_row
        mb = nbytes / 1e6
        print(
            f"\nReality check, real failing CI logs ({mb:.1f} MB, error-dense: long stack traces, many "
            f"[ERROR] lines): analyze_path {mb / ours['seconds']:.1f} MB/s "
            f"({mb / max(ours['cpu_seconds'], 1e-9):.1f} CPU), grep {mb / grep['seconds']:.1f} MB/s."
        )
    if rows:
        ours_rate = rows[-1][1] / 1e6 / rows[-1][2]["seconds"]
        ours_cpu = rows[-1][1] / 1e6 / max(rows[-1][2]["cpu_seconds"], 1e-9)
        verdict = "meets" if ours_rate >= THROUGHPUT_GOAL else "MISSES"
        print(
            f"\nthroughput at {rows[-1][0]} MB: {ours_rate:.1f} MB/s wall, {ours_cpu:.1f} MB/s CPU "
            f"({verdict} the {THROUGHPUT_GOAL:.0f} MB/s goal by wall clock)"
        )
        if len(rows) > 1:
            small, large = rows[0][2], rows[-1][2]
            growth = (large["maxrss_kb"] - small["maxrss_kb"]) / 1024
            print(
                f"peak memory: {small['maxrss_kb'] / 1024:.1f} MB at {rows[0][0]} MB, "
                f"{large['maxrss_kb'] / 1024:.1f} MB at {rows[-1][0]} MB (growth {growth:+.1f} MB; "
                f"interpreter + imports alone: {large['baseline_kb'] / 1024:.1f} MB)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
