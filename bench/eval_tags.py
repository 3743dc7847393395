"""Evaluate the offline issue classifier (`issues.tagger.classify_kind`) on labelled issues.

Usage:
    .venv/bin/python bench/eval_tags.py [--data PATH] [--halves] [--errors N]

Reads ../shared/datasets/issues-labelled/dev.jsonl (override with --data or
GRIMOIRE_ISSUES_DATASET): JSON lines {"title", "body", "label"} with label one of bug,
feature-request, question, documentation. Prints, for classify_kind and for the seed's keyword
rules measured in the same run on the same rows: per-label precision/recall/F1, macro-F1 and the
confusion matrix, then the difference and ratio of macro-F1 against the seed and whether the goal
(seed + 0.15) is met. No network, no model download.

--halves also reports two fixed halves of the set (split by a hash of the title). Rules were
written while reading misclassified issues from the "tune" half only; the "check" half shows how
much of the gain carries over to issues that were not looked at.

Exits 0 with a message when the dataset is missing (users do not have it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from issues.tagger import KINDS, classify_kind, explain_kind, seed_rules_kind  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "issues-labelled" / "dev.jsonl"
GOAL_MARGIN = 0.15


def load(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            row = json.loads(line)
            if row.get("label") in KINDS:
                rows.append(row)
    return rows


def half_of(row: dict) -> str:
    digest = hashlib.sha1(
        str(row.get("title") or "").encode("utf-8"), usedforsecurity=False
    ).hexdigest()
    return "tune" if int(digest, 16) % 2 == 0 else "check"


def metrics(gold: Sequence[str], pred: Sequence[str]) -> dict:
    per_label = {}
    for label in KINDS:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == label and p == label)
        predicted = sum(1 for p in pred if p == label)
        actual = sum(1 for g in gold if g == label)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    confusion = {g: {p: 0 for p in KINDS} for g in KINDS}
    for g, p in zip(gold, pred, strict=True):
        confusion[g][p] += 1
    accuracy = (
        sum(1 for g, p in zip(gold, pred, strict=True) if g == p) / len(gold) if gold else 0.0
    )
    macro = sum(v["f1"] for v in per_label.values()) / len(KINDS)
    return {"per_label": per_label, "macro_f1": macro, "accuracy": accuracy, "confusion": confusion}


def report(name: str, result: dict) -> None:
    print(f"\n== {name}: macro-F1 {result['macro_f1']:.3f}  accuracy {result['accuracy']:.3f}")
    print(f"  {'label':<16}{'precision':>10}{'recall':>10}{'F1':>8}{'n':>6}")
    for label, v in result["per_label"].items():
        print(
            f"  {label:<16}{v['precision']:>10.3f}{v['recall']:>10.3f}{v['f1']:>8.3f}{v['support']:>6}"
        )
    print("  confusion (rows = gold, columns = predicted):")
    short = {"bug": "bug", "feature-request": "feat", "question": "ques", "documentation": "docs"}
    print("  " + " " * 16 + "".join(f"{short[k]:>7}" for k in KINDS))
    for g in KINDS:
        print(f"  {g:<16}" + "".join(f"{result['confusion'][g][p]:>7}" for p in KINDS))


def evaluate(rows: list[dict], label: str) -> tuple[dict, dict]:
    gold = [r["label"] for r in rows]
    ours = metrics(gold, [classify_kind(r.get("title") or "", r.get("body") or "") for r in rows])
    seed = metrics(gold, [seed_rules_kind(r.get("title") or "", r.get("body") or "") for r in rows])
    print(f"\n######## {label}: {len(rows)} issues")
    report("classify_kind", ours)
    report("seed keyword rules (baseline)", seed)
    diff = ours["macro_f1"] - seed["macro_f1"]
    ratio = ours["macro_f1"] / seed["macro_f1"] if seed["macro_f1"] else float("inf")
    print(
        f"\n  macro-F1 classify_kind {ours['macro_f1']:.3f} vs seed {seed['macro_f1']:.3f}: "
        f"{diff:+.3f} ({ratio:.2f}x)"
    )
    return ours, seed


def show_errors(rows: list[dict], limit: int, classify: Callable[[str, str], str]) -> None:
    shown = 0
    for row in rows:
        title, body = row.get("title") or "", row.get("body") or ""
        if classify(title, body) == row["label"]:
            continue
        decision = explain_kind(title, body)
        print(f"\n-- gold {row['label']} / predicted {decision.kind} | {title}")
        print("   scores:", {k: round(v, 1) for k, v in decision.scores.items()})
        print("   reasons:", "; ".join(decision.reasons))
        print("   body:", " ".join(body.split())[:300])
        shown += 1
        if shown >= limit:
            break


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--halves", action="store_true", help="also report the tune/check halves")
    parser.add_argument(
        "--errors", type=int, default=0, help="print N misclassified issues from the tune half"
    )
    args = parser.parse_args(argv)
    path = args.data or Path(os.environ.get("GRIMOIRE_ISSUES_DATASET", DEFAULT_DATA))
    if not path.is_file():
        print(f"SKIP: labelled issues not found at {path} (set --data or GRIMOIRE_ISSUES_DATASET)")
        return 0
    rows = load(path)
    if not rows:
        print(f"SKIP: no labelled rows in {path}")
        return 0

    started = time.perf_counter()
    ours, seed = evaluate(rows, f"all of {path.name}")
    elapsed = time.perf_counter() - started
    if args.halves:
        for half in ("tune", "check"):
            evaluate([r for r in rows if half_of(r) == half], f"{half} half")
    if args.errors:
        show_errors([r for r in rows if half_of(r) == "tune"], args.errors, classify_kind)

    goal = seed["macro_f1"] + GOAL_MARGIN
    verdict = "MET" if ours["macro_f1"] >= goal else "MISSED"
    print(
        f"\nGoal: macro-F1 >= seed + {GOAL_MARGIN:.2f} = {goal:.3f}; classify_kind "
        f"{ours['macro_f1']:.3f} -> {verdict}"
    )
    print(f"({len(rows)} issues, both classifiers, {elapsed:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
