"""Benchmark the spell matcher (`spells.matching`) against the naive approach.

Usage:
    .venv/bin/python bench/matching.py [--sizes 100,1000,10000,100000] [--log-lines 10000]
                                       [--throughput-spells 1000] [--throughput-lines 100000]
                                       [--naive-budget 8] [--quick]

Spells: the starter library plus generated, realistic variants (one spell per module, package,
error code, class... as a team's knowledge base grows), 0.5% of them using lookarounds so the
backtracking path is exercised too. Log: real CI logs from ../shared/datasets (cidiff fail/pass
logs, pytorch log-classifier fixtures, duck_hunt samples) when present, else synthetic build
output; in both cases 1% of lines are error lines some spells explain.

Prints, measured in the same run on the same log:
  1. per spell count: time to match every line of a --log-lines log, and the naive baseline
     (every pattern tried with Python `re` on every line, as Jenkins' Build Failure Analyzer
     does) with the ratio; the naive time is measured on as many lines as fit in
     --naive-budget seconds and scaled to the log (it says so). Every size also checks that the
     index finds exactly the (line, spell) hits naive matching finds on the measured lines.
     Goals (issue 5): >= 100x faster than naive at 10,000 spells; 10x more spells costs < 2x.
  2. throughput at --throughput-spells spells over --throughput-lines lines: lines/s, and
     per-query p50/p99 of `SpellIndex.match` (pattern + similarity) for the log's error lines,
     each against naive in the same run.
  3. the runaway guard: `(a+)+$` on 'aaaa...!' is exponential for Python `re` (run in a
     subprocess with a timeout) and linear on RE2; a pattern only the backtracking engine can
     run is stopped at its timeout, reported and switched off.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spells.library import load_starter_library  # noqa: E402
from spells.matching import ErrorQuery, SpellIndex, SpellRecord  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
SEED = 20241123

# --------------------------------------------------------------------------------------------
# Generated spells: (pattern template, sample template, title template)
# --------------------------------------------------------------------------------------------

TEMPLATES: list[tuple[str, str, str]] = [
    (
        r"ModuleNotFoundError: No module named '{mod}(?:\.\w+)*'",
        "ModuleNotFoundError: No module named '{mod}.core'",
        "{mod} is not installed",
    ),
    (
        r"ImportError: cannot import name '{Cls}' from '{mod}'",
        "ImportError: cannot import name '{Cls}' from '{mod}' (/venv/lib/python3.12/site-packages/{mod}/__init__.py)",
        "{Cls} moved out of {mod}",
    ),
    (
        r"ERROR: No matching distribution found for {pkg}(?:[=<>!~]=?[\w.]+)?$",
        "ERROR: No matching distribution found for {pkg}==1.{n}.0",
        "{pkg} has no release for this Python",
    ),
    (
        r"ERROR: Failed building wheel for {pkg}$",
        "ERROR: Failed building wheel for {pkg}",
        "{pkg} needs a compiler to build",
    ),
    (
        r"npm (?:ERR!|error) 404 Not Found - GET https://registry\.npmjs\.org/@{org}%2f{pkg}",
        "npm ERR! 404 Not Found - GET https://registry.npmjs.org/@{org}%2f{pkg} - Not found",
        "@{org}/{pkg} is private",
    ),
    (
        r"Error: Cannot find module '{pkg}(?:/[\w./-]+)?'",
        "Error: Cannot find module '{pkg}/dist/index.js'",
        "{pkg} missing from package.json",
    ),
    (
        r"error TS{n4}: .+ '{Cls}'",
        "src/{mod}.ts(12,7): error TS{n4}: Property 'x' does not exist on type '{Cls}'",
        "TS{n4} on {Cls}",
    ),
    (
        r"TypeError: {obj}\.{meth} is not a function",
        "TypeError: {obj}.{meth} is not a function",
        "{obj}.{meth} removed in a major release",
    ),
    (
        r"java\.lang\.{Cls}Exception: {word} (?:failed|refused|denied)",
        "java.lang.{Cls}Exception: {word} failed for request 42",
        "{Cls}Exception from {word}",
    ),
    (
        r"Caused by: com\.{org}\.{mod}\.{Cls}Error: .+",
        "Caused by: com.{org}.{mod}.{Cls}Error: invalid state",
        "{Cls}Error in com.{org}.{mod}",
    ),
    (
        r"Could not find artifact com\.{org}:{pkg}:(?:jar|pom):[\w.-]+",
        "[ERROR] Failed to execute goal on project api: Could not find artifact com.{org}:{pkg}:jar:2.{n}.0 in central",
        "com.{org}:{pkg} not published",
    ),
    (
        r"> Could not find com\.{org}:{pkg}:[\w.-]+\.",
        "     > Could not find com.{org}:{pkg}:3.{n}.1.",
        "com.{org}:{pkg} missing from repositories",
    ),
    (
        r"cannot find package \"github\.com/{org}/{pkg}(?:/[\w/-]+)?\"",
        'main.go:5:2: cannot find package "github.com/{org}/{pkg}/v2"',
        "github.com/{org}/{pkg} not vendored",
    ),
    (
        r"--- FAIL: Test{Cls}{Verb} \(\d+\.\d+s\)",
        "--- FAIL: Test{Cls}{Verb} (0.03s)",
        "Test{Cls}{Verb} is flaky",
    ),
    (
        r"error\[E0{n3}\]: .* `{mod}::{Cls}`",
        "error[E0{n3}]: cannot find type `{mod}::{Cls}` in this scope",
        "E0{n3} with {mod}::{Cls}",
    ),
    (
        r"thread '{mod}::tests::{word}' panicked at",
        "thread '{mod}::tests::{word}' panicked at src/{mod}.rs:{n}:5:",
        "{mod}::tests::{word} panics",
    ),
    (
        r"fatal error: {mod}/{word}\.h: No such file or directory",
        "src/x.c:3:10: fatal error: {mod}/{word}.h: No such file or directory",
        "{mod} headers missing",
    ),
    (
        r"undefined reference to `{mod}_{word}'",
        "/usr/bin/ld: a.o: in function `main': undefined reference to `{mod}_{word}'",
        "link lib{mod}",
    ),
    (
        r"E: Unable to locate package lib{pkg}-dev$",
        "E: Unable to locate package lib{pkg}-dev",
        "lib{pkg}-dev not in this release",
    ),
    (
        r"manifest for {org}/{pkg}:[\w.-]+ not found",
        "Error response from daemon: manifest for {org}/{pkg}:1.{n} not found: manifest unknown",
        "{org}/{pkg} tag missing",
    ),
    (
        r"FAILED tests/test_{mod}\.py::test_{word}\b",
        "FAILED tests/test_{mod}.py::test_{word} - AssertionError: assert 1 == 2",
        "test_{word} in test_{mod}.py",
    ),
    (
        r"django\.db\.utils\.\w+Error: relation \"{mod}_{word}\" does not exist",
        'django.db.utils.ProgrammingError: relation "{mod}_{word}" does not exist',
        "{mod}_{word} table missing",
    ),
    (r"(?i){Cls}{Verb}Exception", "com.acme.{Cls}{Verb}Exception: boom", "{Cls}{Verb}Exception"),
    (r"KeyError: '{VAR}'$", "KeyError: '{VAR}'", "{VAR} not set in CI"),
]
# Lookarounds force the backtracking engine: rare in practice, present to exercise that path.
BACKTRACKING_TEMPLATE = (
    r"(?<!WARN )ERROR {pkg}: (\w+) failed(?! \(ignored\))",
    "ERROR {pkg}: sync failed",
    "{pkg} sync failure",
)

# fmt: off
SYLLABLES = (
    "ka", "lo", "mi", "nu", "ra", "te", "so", "vi", "bel", "dor", "fin", "gar", "hul", "jen",
    "kor", "lum", "mar", "nix", "pol", "qua", "rin", "sut", "tor", "vex", "wil", "yor", "zan",
)
VERBS = (
    "Create", "Update", "Delete", "Parse", "Render", "Load", "Save", "Sync", "Fetch", "Validate",
    "Merge", "Resolve",
)
# fmt: on


def _name(rnd: random.Random, parts: int) -> str:
    return "".join(rnd.choice(SYLLABLES) for _ in range(parts))


def generate_spells(count: int, rnd: random.Random) -> tuple[list[SpellRecord], list[str]]:
    """`count` distinct spells and one sample error line for each."""
    records: list[SpellRecord] = []
    samples: list[str] = []
    seen: set[str] = set()
    while len(records) < count:
        if rnd.random() < 0.005:
            pattern_t, sample_t, title_t = BACKTRACKING_TEMPLATE
        else:
            pattern_t, sample_t, title_t = rnd.choice(TEMPLATES)
        values = {
            "mod": _name(rnd, 3),
            "pkg": _name(rnd, 3),
            "org": _name(rnd, 2),
            "word": _name(rnd, 2),
            "obj": _name(rnd, 2),
            "meth": _name(rnd, 2),
            "Cls": _name(rnd, 2).capitalize() + _name(rnd, 1).capitalize(),
            "Verb": rnd.choice(VERBS),
            "VAR": f"{_name(rnd, 2).upper()}_{_name(rnd, 1).upper()}",
            "n": str(rnd.randint(1, 99)),
            "n3": str(rnd.randint(100, 799)),
            "n4": str(rnd.randint(1000, 9999)),
        }
        pattern = pattern_t.format(**values)
        if pattern in seen:
            continue
        seen.add(pattern)
        title = title_t.format(**values)
        records.append(
            SpellRecord(
                id=f"gen-{len(records)}",
                title=title,
                patterns=[pattern],
                text=f"{title}\nGenerated benchmark spell for {values['pkg']} and {values['mod']}.",
                status="approved" if rnd.random() < 0.8 else "draft",
            )
        )
        samples.append(sample_t.format(**values))
    return records, samples


# --------------------------------------------------------------------------------------------
# Log lines
# --------------------------------------------------------------------------------------------

# The pytorch fixtures mark the expected line and wrap capture groups in \u2039 \u203a.
_MARKERS = re.compile("^#=MATCH=# |[\u2039\u203a]")


def dataset_lines() -> list[str]:
    if not DATASETS.is_dir():
        return []
    lines: list[str] = []
    paths = sorted(DATASETS.glob("cidiff-breakages/**/*.log"))
    paths += sorted(DATASETS.glob("pytorch-log-classifier-fixtures/**/*.txt"))
    paths += sorted(p for p in DATASETS.glob("duck_hunt-format-samples/**/*") if p.is_file())
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.split("\n"):
            if line.startswith("#=SOURCE=#"):
                continue
            lines.append(_MARKERS.sub("", line))
    return lines


SYNTHETIC = [
    "Collecting {pkg}>=1.{n}",
    "  Downloading {pkg}-1.{n}.0-py3-none-any.whl (12 kB)",
    "tests/test_{mod}.py::test_{word} PASSED [ {n}%]",
    "   Compiling {pkg} v0.{n}.3",
    "[INFO] Downloading from central: https://repo.maven.apache.org/maven2/com/{org}/{pkg}/1.{n}/{pkg}-1.{n}.pom",
    "> Task :{mod}:compileJava UP-TO-DATE",
    "ok  \tgithub.com/{org}/{pkg}\t0.{n}s",
    "#{n} [{n}/9] RUN npm ci --prefix {mod}",
    "2024-07-08T16:48:{n}.3750041Z Run actions/checkout@v4",
    "[{n}%] Building CXX object CMakeFiles/{mod}.dir/src/{word}.cpp.o",
]


def build_log(
    count: int, rnd: random.Random, error_samples: Sequence[str]
) -> tuple[list[str], str]:
    real = dataset_lines()
    source = f"{len(real):,} real lines from {DATASETS}" if real else "synthetic lines"
    if not real:
        print(f"note: {DATASETS} not found; using synthetic build output as the log")
    log: list[str] = []
    for i in range(count):
        if rnd.random() < 0.01:
            log.append(rnd.choice(error_samples))
        elif real:
            log.append(real[i % len(real)])
        else:
            values = {
                "pkg": _name(rnd, 3),
                "mod": _name(rnd, 2),
                "org": _name(rnd, 2),
                "word": _name(rnd, 2),
                "n": str(rnd.randint(1, 99)),
            }
            log.append(rnd.choice(SYNTHETIC).format(**values))
    return log, source


_ERRORISH = re.compile(
    r"(?i)\b(?:error|fail(?:ed|ure)?|exception|fatal|panic(?:ked)?|cannot|denied|not found)\b"
)


def error_queries(log: Sequence[str], limit: int) -> list[ErrorQuery]:
    """What a log parser hands the matcher: each error-looking line with the two after it."""
    queries = []
    for i, line in enumerate(log):
        if _ERRORISH.search(line):
            queries.append(ErrorQuery(lines=list(log[i : i + 3])))
            if len(queries) >= limit:
                break
    return queries


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


def rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return pages * 4096 / 2**20


class Naive:
    """Every pattern, compiled once with Python `re`, tried on every line."""

    def __init__(self, records: Iterable[SpellRecord]) -> None:
        self.compiled = [
            (r.id, re.compile(p)) for r in records if r.status != "rejected" for p in r.patterns
        ]

    def line_hits(self, line: str) -> set:
        return {sid for sid, rx in self.compiled if rx.search(line)}


def time_naive(naive: Naive, lines: Sequence[str], budget: float) -> tuple[float, int, list[set]]:
    """Seconds per line measured on as many lines as fit in the budget, and their hits."""
    hits: list[set] = []
    start = time.perf_counter()
    for line in lines:
        hits.append(naive.line_hits(line))
        if time.perf_counter() - start > budget and len(hits) >= 20:
            break
    return (time.perf_counter() - start) / len(hits), len(hits), hits


def scan_time(index: SpellIndex, log: Sequence[str], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _match in index.scan_lines(log):
            pass
        best = min(best, time.perf_counter() - start)
    return best


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def sizes_table(
    starter: list[SpellRecord],
    generated: list[SpellRecord],
    log: list[str],
    sizes: list[int],
    budget: float,
) -> None:
    print(
        f"\n1. Matching every line of a {len(log):,}-line log (best of 3), naive = every pattern x every line"
    )
    header = f"{'spells':>8} {'build':>8} {'RSS+':>8} {'index/log':>10} {'lines/s':>11} {'naive/log':>11} {'naive lines':>11} {'ratio':>8} {'hits ok':>8}"
    print(header)
    print("-" * len(header))
    times: dict[int, float] = {}
    ratios: dict[int, float] = {}
    for size in sizes:
        records = (starter + generated)[:size]
        gc.collect()
        before = rss_mb()
        start = time.perf_counter()
        index = SpellIndex.build(records)
        build = time.perf_counter() - start
        grown = rss_mb() - before
        list(index.scan_lines(log[:2000]))  # warm: lazily compiled patterns, DFA caches
        ours = scan_time(index, log)
        naive = Naive(records)
        per_line, measured, naive_hits = time_naive(naive, log, budget)
        naive_log = per_line * len(log)
        ours_hits = [set() for _ in range(measured)]
        for m in index.scan_lines(log[:measured]):
            ours_hits[m.line].add(m.spell_id)
        agree = (
            "yes"
            if ours_hits == naive_hits
            else f"NO ({sum(a != b for a, b in zip(ours_hits, naive_hits, strict=True))})"
        )
        times[size] = ours
        ratios[size] = naive_log / ours
        scaled = "" if measured == len(log) else "*"
        print(
            f"{size:>8,} {fmt_s(build):>8} {grown:>6.0f}MB {fmt_s(ours):>10} {len(log) / ours:>11,.0f} "
            f"{fmt_s(naive_log) + scaled:>11} {measured:>11,} {ratios[size]:>7,.0f}x {agree:>8}"
        )
    print("   * naive measured on the first 'naive lines' lines and scaled to the whole log")
    print("\n   scaling (time for 10x the spells):")
    for small, big in itertools.pairwise(sizes):
        if big == small * 10:
            growth = times[big] / times[small]
            print(
                f"     {small:>7,} -> {big:>7,} spells: x{growth:.2f} time   goal < x2: {'met' if growth < 2 else 'NOT met'}"
            )
    if 10_000 in ratios:
        print(
            f"   at 10,000 spells: {ratios[10_000]:,.0f}x faster than naive   goal >= 100x: {'met' if ratios[10_000] >= 100 else 'NOT met'}"
        )


def throughput(
    starter: list[SpellRecord],
    generated: list[SpellRecord],
    log: list[str],
    spells: int,
    budget: float,
) -> None:
    records = (starter + generated)[:spells]
    index = SpellIndex.build(records)
    naive = Naive(records)
    print(
        f"\n2. Throughput: {len(records):,} spells ({index.describe()['backtracking_patterns']} on the backtracking engine), {len(log):,} log lines"
    )
    list(index.scan_lines(log[:2000]))
    ours = scan_time(index, log, repeats=1)
    per_line, measured, _hits = time_naive(naive, log, budget)
    print(f"   index : {len(log) / ours:>12,.0f} lines/s   ({fmt_s(ours)} for the log)")
    print(f"   naive : {1 / per_line:>12,.0f} lines/s   (measured on {measured:,} lines)")
    print(f"   ratio : {per_line * len(log) / ours:>12,.0f}x")

    queries = error_queries(log, 2000)
    for q in queries[:50]:
        index.match(q)
    ours_q = []
    for q in queries:
        start = time.perf_counter_ns()
        index.match(q)
        ours_q.append((time.perf_counter_ns() - start) / 1e9)
    naive_q = []
    start_all = time.perf_counter()
    for q in queries:
        start = time.perf_counter_ns()
        for line in q.lines:
            naive.line_hits(line)
        naive_q.append((time.perf_counter_ns() - start) / 1e9)
        if time.perf_counter() - start_all > budget and len(naive_q) >= 20:
            break
    p50, p99 = percentile(ours_q, 0.5), percentile(ours_q, 0.99)
    n50, n99 = percentile(naive_q, 0.5), percentile(naive_q, 0.99)
    print(
        f"   per query ({len(ours_q):,} error lines + 2 lines of context, patterns + similarity):"
    )
    print(
        f"     index p50 {fmt_s(p50):>9}  p99 {fmt_s(p99):>9}   mean {fmt_s(statistics.fmean(ours_q))}"
    )
    print(
        f"     naive p50 {fmt_s(n50):>9}  p99 {fmt_s(n99):>9}   (patterns only, {len(naive_q):,} queries)"
    )
    print(f"     ratio p50 {n50 / p50:,.0f}x  p99 {n99 / p99:,.0f}x")


def runaway() -> None:
    print("\n3. Runaway patterns")
    probe = (
        "import re, sys, time\n"
        "n = int(sys.argv[1]); rx = re.compile(r'(a+)+$'); t = time.perf_counter()\n"
        "rx.search('a' * n + '!'); print(time.perf_counter() - t)\n"
    )
    for n in (16, 20, 24, 28):
        try:
            out = subprocess.run(
                [sys.executable, "-c", probe, str(n)],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            took = fmt_s(float(out.stdout))
        except subprocess.TimeoutExpired:
            took = "> 10 s (killed)"
        print(f"   Python re  (a+)+$ on 'a'*{n}+'!': {took}")
    index = SpellIndex.build([SpellRecord(id="nested", title="nested", patterns=[r"(a+)+$"])])
    line = "a" * 100_000 + "!"
    start = time.perf_counter()
    list(index.scan_lines([line]))
    print(
        f"   index (RE2) (a+)+$ on a {len(line):,}-char line: {fmt_s(time.perf_counter() - start)} (linear time, line capped at 8,192 chars)"
    )

    index = SpellIndex.build(
        [
            SpellRecord(id="runaway", title="runaway", patterns=[r"(?<=x)(a|aa)+$"]),
            SpellRecord(id="ok", title="ok", patterns=[r"exec format error"]),
        ],
        regex_timeout=0.05,
    )
    lines = ["x" + "a" * 60 + "!", "exec /app: exec format error"] * 3
    start = time.perf_counter()
    hits = [m.spell_id for m in index.scan_lines(lines)]
    took = time.perf_counter() - start
    print(
        f"   backtracking-only (?<=x)(a|aa)+$ over {len(lines)} lines: {fmt_s(took)} total, hits {hits}"
    )
    for bad in index.bad_patterns:
        print(f"     reported: {bad.spell_id}: {bad.reason}")
    print(f"     timeouts: {index.stats['timeouts']} (switched off after the first)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--log-lines", type=int, default=10_000)
    parser.add_argument("--throughput-spells", type=int, default=1000)
    parser.add_argument("--throughput-lines", type=int, default=100_000)
    parser.add_argument(
        "--naive-budget", type=float, default=8.0, help="seconds of naive matching per measurement"
    )
    parser.add_argument(
        "--quick", action="store_true", help="sizes 100,1000; 20,000 throughput lines"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        sizes, args.throughput_lines, args.naive_budget = [100, 1000], 20_000, 2.0

    rnd = random.Random(SEED)
    starter = [d.to_record() for d in load_starter_library()]
    generated, samples = generate_spells(max([*sizes, args.throughput_spells]), rnd)
    starter_samples = [p["sample"] for d in load_starter_library() for p in d.patterns]
    # Errors some index explains: starter samples, and samples of the first generated spells
    # (present at every size) plus some of the later ones (only in the big indexes).
    error_samples = starter_samples + samples[:100] + rnd.sample(samples, min(400, len(samples)))
    log, source = build_log(args.log_lines, random.Random(SEED + 1), error_samples)
    big_log, _ = build_log(args.throughput_lines, random.Random(SEED + 2), error_samples)
    print(f"spells: {len(starter)} starter + generated variants; log: {source}, 1% error lines")
    print(f"python {sys.version.split()[0]}")

    sizes_table(starter, generated, log, sizes, args.naive_budget)
    throughput(starter, generated, big_log, args.throughput_spells, args.naive_budget)
    runaway()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
