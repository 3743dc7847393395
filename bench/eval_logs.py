"""Line-level quality of builds.logparse on the labelled development logs.

    .venv/bin/python bench/eval_logs.py [--datasets DIR] [-v]

For every labelled log: the predicted lines are the ``errors`` lines plus the ``excerpt`` range;
precision, recall and F1 are computed against the labelled failure lines, and the
``primary_error`` counts as a hit when it lands on a labelled line. Figures are printed per
dataset and overall, both micro (pooled lines) and macro (mean of per-log F1).

Datasets (skipped with a message when absent):

- ``cidiff-breakages``: ``groundtruth`` files, ``E a-b`` error ranges and ``C n`` context lines.
  Context lines are neutral: predicting them is neither rewarded nor penalised. The ranges
  number lines the way Java's readLine/Python's splitlines do (a lone ``\\r`` also ends a line:
  Maven progress bars); they are mapped to lines split on ``\\n``, the numbering logparse reports.
- ``pytorch-log-classifier-fixtures/classify``: the line marked ``#=MATCH=# `` is the label
  (markers and the ``#=SOURCE=#`` metadata line are removed before analysis). Fixtures without a
  marker carry no label and are skipped. One labelled line per log caps the precision any
  multi-line excerpt can reach there, so that set's F1 is reported but read it with that in mind.

The parser has no per-dataset rules; this script only reads labels.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builds.logparse import LogAnalysis, analyze_path, analyze_text

F1_GOAL = 0.6
PRIMARY_GOAL = 0.7


@dataclass
class Case:
    dataset: str
    name: str
    labelled: set[int]
    neutral: set[int] = field(default_factory=set)
    path: Path | None = None
    text: str | None = None


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    f1s: list[float] = field(default_factory=list)
    hits: int = 0
    cases: int = 0

    def add(self, tp: int, fp: int, fn: int, hit: bool) -> float:
        self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn
        f1 = _f1(tp, fp, fn)
        self.f1s.append(f1)
        self.hits += hit
        self.cases += 1
        return f1

    def micro(self) -> tuple[float, float, float]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        return p, r, _f1(self.tp, self.fp, self.fn)

    def macro_f1(self) -> float:
        return sum(self.f1s) / len(self.f1s) if self.f1s else 0.0

    def hit_rate(self) -> float:
        return self.hits / self.cases if self.cases else 0.0


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _universal_to_newline_map(data: bytes) -> list[int]:
    """mapping[k] = the \\n-line (1-based) holding universal-newline line k+1."""
    mapping: list[int] = []
    for i, line in enumerate(data.split(b"\n"), start=1):
        if line.endswith(b"\r"):
            line = line[:-1]
        mapping.extend([i] * (line.count(b"\r") + 1))
    return mapping


def load_cidiff(root: Path) -> list[Case]:
    cases = []
    for gt in sorted(root.glob("**/groundtruth")):
        log = gt.parent / "fail.log"
        if not log.exists():
            continue
        mapping = _universal_to_newline_map(log.read_bytes())
        labelled: set[int] = set()
        neutral: set[int] = set()
        for row in gt.read_text().splitlines()[1:]:
            parts = row.split()
            if len(parts) != 2 or parts[0] not in ("E", "C"):
                continue
            a, _, b = parts[1].partition("-")
            for k in range(int(a), int(b or a) + 1):
                if k - 1 < len(mapping):
                    (labelled if parts[0] == "E" else neutral).add(mapping[k - 1])
        neutral -= labelled
        name = str(gt.parent.relative_to(root))
        cases.append(Case("cidiff-breakages", name, labelled, neutral, path=log))
    return cases


def load_pytorch(root: Path) -> list[Case]:
    cases = []
    for fixture in sorted((root / "classify").glob("*.txt")):
        lines = fixture.read_text(encoding="utf-8", errors="replace").split("\n")
        if lines and lines[0].startswith("#=SOURCE=#"):
            lines = lines[1:]
        labelled = set()
        for i, line in enumerate(lines, start=1):
            if line.startswith("#=MATCH=# "):
                lines[i - 1] = line[len("#=MATCH=# ") :].replace("\u2039", "").replace("\u203a", "")
                labelled.add(i)
        if labelled:
            cases.append(
                Case(
                    "pytorch-log-classifier-fixtures", fixture.stem, labelled, text="\n".join(lines)
                )
            )
    return cases


def predicted_lines(result: LogAnalysis) -> set[int]:
    lines = {f.line for f in result.errors}
    if result.excerpt is not None:
        lines.update(range(result.excerpt.start, result.excerpt.end + 1))
    return lines


def main(argv: list[str] | None = None) -> int:
    default_root = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", type=Path, default=default_root)
    parser.add_argument("-v", "--verbose", action="store_true", help="one row per log")
    args = parser.parse_args(argv)

    cases: list[Case] = []
    for name, loader in (
        ("cidiff-breakages", load_cidiff),
        ("pytorch-log-classifier-fixtures", load_pytorch),
    ):
        root = args.datasets / name
        if root.is_dir():
            cases.extend(loader(root))
        else:
            print(f"skip {name}: {root} not found")
    if not cases:
        print(f"No labelled datasets under {args.datasets}; nothing to evaluate (skipped).")
        return 0

    scores: dict[str, Score] = {}
    overall = Score()
    started = time.perf_counter()
    for case in cases:
        result = analyze_path(case.path) if case.path is not None else analyze_text(case.text or "")
        predicted = predicted_lines(result) - case.neutral
        tp = len(predicted & case.labelled)
        fp = len(predicted - case.labelled)
        fn = len(case.labelled - predicted)
        primary = result.primary_error.line if result.primary_error else None
        hit = primary in case.labelled
        f1 = scores.setdefault(case.dataset, Score()).add(tp, fp, fn, hit)
        overall.add(tp, fp, fn, hit)
        if args.verbose:
            excerpt = f"{result.excerpt.start}-{result.excerpt.end}" if result.excerpt else "-"
            labelled = _ranges(sorted(case.labelled))
            print(
                f"{'HIT ' if hit else 'miss'} f1={f1:.2f} tp={tp:<4} fp={fp:<4} fn={fn:<4} "
                f"primary={primary} excerpt={excerpt} labels={labelled} {case.dataset[:6]}/{case.name}"
            )
            if not hit and result.primary_error:
                print(f"      primary: {result.primary_error.text[:150]!r}")
    elapsed = time.perf_counter() - started

    print(
        f"\n{'dataset':34} {'logs':>5} {'P(micro)':>9} {'R(micro)':>9} {'F1(micro)':>10} {'F1(macro)':>10} {'primary hit':>12}"
    )
    for name, s in [*sorted(scores.items()), ("overall", overall)]:
        p, r, f1 = s.micro()
        print(
            f"{name:34} {s.cases:5d} {p:9.3f} {r:9.3f} {f1:10.3f} {s.macro_f1():10.3f} {s.hit_rate():12.3f}"
        )
    _, _, micro = overall.micro()
    print(
        f"\nGoals: F1 > {F1_GOAL}, primary-error hit rate > {PRIMARY_GOAL}. {len(cases)} logs in {elapsed:.2f}s."
    )
    print(
        f"  primary-error hit rate: {overall.hit_rate():.3f} overall ({_verdict(overall.hit_rate(), PRIMARY_GOAL)})"
    )
    per_dataset = ", ".join(f"{name} {s.macro_f1():.3f}" for name, s in sorted(scores.items()))
    print(
        f"  F1 per log (macro): {overall.macro_f1():.3f} overall ({_verdict(overall.macro_f1(), F1_GOAL)}); "
        f"{per_dataset}"
    )
    biggest = sorted((len(c.labelled) for c in cases), reverse=True)[:4]
    total = sum(len(c.labelled) for c in cases)
    print(
        f"  F1 pooled over lines (micro): {micro:.3f}; the 4 largest labels hold {sum(biggest)} of "
        f"{total} labelled lines ({', '.join(map(str, biggest))} lines each), so they dominate it."
    )
    if "pytorch-log-classifier-fixtures" in scores:
        print(
            "  pytorch fixtures label one line per log: any excerpt of n lines scores at most 2/(n+1) there."
        )
    return 0


def _verdict(value: float, goal: float) -> str:
    return "meets the goal" if value > goal else "BELOW the goal"


def _ranges(lines: list[int]) -> str:
    out: list[str] = []
    for n in lines:
        if out and re.fullmatch(rf"(\d+-)?{n - 1}", out[-1]):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    text = ",".join(out)
    return text if len(text) < 60 else text[:57] + "..."


if __name__ == "__main__":
    raise SystemExit(main())
