"""The pure matcher: ranking, reasons, prefilter correctness, runaway guard, validation, cache."""

from __future__ import annotations

import random
import re
import threading

import pytest

from spells import matching
from spells.matching import (
    COMMON_LOG_LINES,
    ErrorQuery,
    IndexCache,
    Match,
    SpellIndex,
    SpellRecord,
    required_atoms,
    tokenize,
    validate_pattern,
)

RUNAWAY = r"(?<=x)(a|aa)+$"  # lookbehind forces the backtracking engine; (a|aa)+$ explodes
RUNAWAY_LINE = "x" + "a" * 60 + "!"


def spell(id, *patterns, status="approved", fingerprints=(), title=None, text="", error_type=""):
    return SpellRecord(
        id=id,
        title=title or f"spell {id}",
        status=status,
        patterns=list(patterns),
        fingerprints=list(fingerprints),
        text=text,
        error_type=error_type,
    )


def ids(matches):
    return [m.spell_id for m in matches]


# ---- reasons and ranking -------------------------------------------------------------------


def test_fingerprint_match_scores_100_and_ranks_first():
    index = SpellIndex.build(
        [
            spell(1, r"No module named '[\w.]+'"),
            spell(2, fingerprints=["fp-abc"]),
        ]
    )
    matches = index.match(ErrorQuery(message="No module named 'yaml'", fingerprints=["fp-abc"]))

    assert ids(matches) == [2, 1]
    assert matches[0].reason == "fingerprint"
    assert matches[0].score == 100.0
    assert matches[0].matched_text == "fp-abc"


def test_pattern_hit_reports_matched_text_pattern_and_line():
    index = SpellIndex.build([spell(7, r"error\[E0432\]: unresolved import `[^`]+`")])
    query = ErrorQuery(
        lines=["   Compiling app v0.1.0", "error[E0432]: unresolved import `tokio::main`"]
    )

    [match] = index.match(query)

    assert match.spell_id == 7
    assert match.reason == "pattern"
    assert match.matched_text == "error[E0432]: unresolved import `tokio::main`"
    assert match.pattern == r"error\[E0432\]: unresolved import `[^`]+`"
    assert match.line == 1
    assert 80 <= match.score <= 99


def test_error_type_and_message_are_joined_like_a_traceback_line():
    index = SpellIndex.build([spell(1, r"^TypeError: Cannot read properties of undefined")])

    matches = index.match(
        ErrorQuery(
            error_type="TypeError", message="Cannot read properties of undefined (reading 'x')"
        ),
        min_similarity=2,
    )

    assert ids(matches) == [1]


def test_approved_spell_ranks_before_draft_at_equal_relevance():
    index = SpellIndex.build(
        [
            spell("draft", r"fatal: could not read Username", status="draft"),
            spell("approved", r"fatal: could not read Username", status="approved"),
        ]
    )

    matches = index.match(ErrorQuery(message="fatal: could not read Username for 'https://x'"))

    assert ids(matches) == ["approved", "draft"]
    assert matches[0].score == matches[1].score


def test_stronger_reason_beats_status():
    # A draft created from this exact fingerprint explains the failure better than an approved
    # spell that only resembles it.
    index = SpellIndex.build(
        [
            spell("approved", title="No space left on device", text="The runner's disk is full."),
            spell("draft", status="draft", fingerprints=["fp1"]),
        ]
    )

    matches = index.match(ErrorQuery(message="no space left on device", fingerprints=["fp1"]))

    assert [(m.spell_id, m.reason) for m in matches] == [
        ("draft", "fingerprint"),
        ("approved", "similarity"),
    ]


def test_rejected_spells_never_match():
    index = SpellIndex.build(
        [
            spell(
                "rejected",
                r"Cannot connect to the Docker daemon",
                status="rejected",
                fingerprints=["fp1"],
                title="Cannot connect to the Docker daemon",
            )
        ]
    )

    matches = index.match(
        ErrorQuery(
            message="Cannot connect to the Docker daemon at unix:///x", fingerprints=["fp1"]
        ),
        min_similarity=0.0,
    )

    assert matches == []
    assert len(index) == 0


def test_each_spell_appears_once_with_its_strongest_evidence():
    index = SpellIndex.build(
        [
            spell(
                1,
                r"panic: test timed out after \w+",
                r"^panic: test timed out",
                fingerprints=["fp"],
                title="Go test timed out",
            )
        ]
    )

    matches = index.match(
        ErrorQuery(message="panic: test timed out after 10m0s", fingerprints=["fp"]),
        min_similarity=0.0,
    )

    assert [(m.spell_id, m.reason) for m in matches] == [(1, "fingerprint")]


def test_several_patterns_of_one_spell_hitting_raise_its_score():
    one = SpellIndex.build([spell(1, r"WARNING: DATA RACE")])
    two = SpellIndex.build([spell(1, r"WARNING: DATA RACE", r"race detected during execution")])
    query = ErrorQuery(
        lines=["WARNING: DATA RACE", "testing.go:1398: race detected during execution of test"]
    )

    assert two.match(query)[0].score > one.match(query)[0].score


def test_more_literal_pattern_wins_over_a_generic_one_on_the_same_line():
    index = SpellIndex.build(
        [
            spell("generic", r"fatal error: [\w./+-]+: No such file or directory"),
            spell("python-h", r"fatal error: Python\.h: No such file or directory"),
        ]
    )

    matches = index.match(
        ErrorQuery(lines=["x.c:1:10: fatal error: Python.h: No such file or directory"])
    )

    assert ids(matches) == ["python-h", "generic"]
    assert matches[0].score > matches[1].score


def test_hits_in_code_context_score_lower_than_hits_in_the_error():
    index = SpellIndex.build([spell(1, r"Resource not accessible by integration")])
    line = "Error: Resource not accessible by integration"

    in_message = index.match(ErrorQuery(message=line), min_similarity=2)[0]
    in_context = index.match(ErrorQuery(message="boom", context=line), min_similarity=2)[0]

    assert in_context.reason == "pattern"
    assert in_context.score < in_message.score


def test_similarity_finds_a_reworded_error_despite_different_paths_and_numbers():
    index = SpellIndex.build(
        [
            spell(
                "oom",
                title="JavaScript heap out of memory during the build",
                text="Node ran out of heap. Raise --max-old-space-size.",
            ),
            spell("disk", title="No space left on device", text="The runner disk is full."),
        ]
    )

    matches = index.match(
        ErrorQuery(
            message="<--- JS stacktrace ---> FATAL ERROR: heap out of memory in /home/runner/work/app/x.js:1234"
        )
    )

    assert ids(matches) == ["oom"]
    assert matches[0].reason == "similarity"
    assert 0 < matches[0].score <= 80
    assert "heap out of memory" in matches[0].matched_text


def test_similarity_below_the_threshold_is_not_returned():
    index = SpellIndex.build([spell("oom", title="JavaScript heap out of memory")])
    query = ErrorQuery(message="heap allocation of widgets in the factory pipeline went wrong")

    assert index.match(query, min_similarity=0.9) == []
    assert index.match(query, min_similarity=2) == []  # above 1 turns similarity off


def test_limit_keeps_the_best_matches():
    index = SpellIndex.build([spell(i, r"Segmentation fault") for i in range(20)])

    assert len(index.match(ErrorQuery(message="Segmentation fault (core dumped)"), limit=3)) == 3
    assert index.match(ErrorQuery(message="Segmentation fault"), limit=0) == []


def test_an_empty_index_matches_nothing():
    index = SpellIndex.build([])

    assert index.match(ErrorQuery(message="anything", fingerprints=["x"])) == []
    assert list(index.scan_lines(["anything"])) == []


def test_build_rejects_an_unknown_status():
    with pytest.raises(ValueError, match="status"):
        SpellIndex.build([spell(1, status="archived")])


def test_match_to_dict_has_every_field():
    m = Match(spell_id=3, score=91.5, reason="pattern", matched_text="x", pattern="x", line=2)

    assert m.to_dict() == {
        "spell_id": 3,
        "score": 91.5,
        "reason": "pattern",
        "matched_text": "x",
        "pattern": "x",
        "line": 2,
    }


def test_scan_lines_yields_one_match_per_line_and_spell():
    index = SpellIndex.build(
        [spell("a", r"npm (?:ERR!|error) code E401", r"code E401"), spell("b", r"ENEEDAUTH")]
    )

    hits = list(index.scan_lines(["ok", "npm ERR! code E401", "npm ERR! code ENEEDAUTH"], start=10))

    assert [(m.spell_id, m.line) for m in hits] == [("a", 11), ("b", 12)]


# ---- scale: the prefilter ------------------------------------------------------------------


def test_it_does_not_try_every_pattern_on_every_line():
    records = [
        spell(i, rf"ModuleNotFoundError: No module named 'pkg{i}_[a-z]+'") for i in range(2000)
    ]
    index = SpellIndex.build(records)
    lines = [*COMMON_LOG_LINES, "ModuleNotFoundError: No module named 'pkg1234_core'"]

    hits = list(index.scan_lines(lines))

    assert [m.spell_id for m in hits] == [1234]
    # Naive matching would run 2000 x len(lines) searches; only atom-matching candidates ran.
    assert index.stats["evaluations"] < 3000
    assert index.stats["lines"] == len(lines)


def test_patterns_without_literal_text_are_still_matched():
    index = SpellIndex.build([spell("code", r"^[A-Z]\d{4}$"), spell("num", r"^\d+x\d+$")])

    assert ids(index.match(ErrorQuery(lines=["E1234"]), min_similarity=2)) == ["code"]
    assert ids(index.match(ErrorQuery(lines=["3x4"]), min_similarity=2)) == ["num"]
    assert index.describe()["residual_set_patterns"] == 2


def test_python_end_of_text_anchor_works_on_re2():
    index = SpellIndex.build([spell(1, r"build failed\Z")])

    assert index.describe()["re2_patterns"] == 1
    assert ids(index.match(ErrorQuery(lines=["the build failed"]), min_similarity=2)) == [1]
    assert index.match(ErrorQuery(lines=["the build failed twice"]), min_similarity=2) == []


def test_a_set_that_gives_up_falls_back_to_a_brute_scan(monkeypatch):
    index = SpellIndex.build([spell(1, r"Unsupported class file major version \d+")])

    class GaveUp:
        def Match(self, text):  # the name re2.Set uses
            return None  # what RE2 returns when its DFA runs out of memory

    atom_set = index._atom_set
    monkeypatch.setattr(atom_set, "shards", [(GaveUp(), chunk) for _s, chunk in atom_set.shards])

    matches = index.match(
        ErrorQuery(lines=["Unsupported class file major version 65"]), min_similarity=2
    )

    assert ids(matches) == [1]
    assert atom_set.fallbacks == 1


def test_items_re2_cannot_fit_in_any_set_are_checked_one_by_one():
    atoms = ["no space left", "exit code 137"]
    guarded = matching._GuardedSet(atoms, literal=True, max_mem=1)  # too small for any program

    assert guarded.shards == []
    assert guarded.match(
        "OSError: No Space Left on device", lambda i, t: atoms[i] in t.lower()
    ) == [0]


@pytest.mark.parametrize(
    ("pattern", "atoms"),
    [
        (r"No module named '(\w+)'", [{"no module named '"}]),
        (r"(?i)ERROR\[E0432\]", [{"error[e0432]"}]),
        (r"(foo|barx)bazz", [{"foo", "barx"}, {"bazz"}]),
        (r"x?abcdef", [{"abcdef"}]),
        (r"(abc)?defg", [{"defg"}]),
        (r"(?:ab)(?:cd)ef", [{"abcdef"}]),
        (r"(?:abc){0,2}xyz", [{"xyz"}]),
        (r"(?:abc)+", [{"abc"}]),
        (r"(x|foo)bar", [{"bar"}]),  # one alternative has no atom: the branch requires nothing
        (r"ab.cd", []),
        (r"(?x) hello \s world", [{"hello"}, {"world"}]),
        (r"naïve text", [{"ve text"}]),
        (r"\bfoo\b", [{"foo"}]),
    ],
)
def test_required_atoms_are_what_every_match_contains(pattern, atoms):
    assert [set(a) for a in required_atoms(pattern)] == atoms


@pytest.mark.parametrize("pattern", [r"[[:alpha:]]+ failed", r"\pL+ failed", r"(?:colour){e<=1}"])
def test_syntax_python_would_misread_is_not_analysed(pattern):
    assert required_atoms(pattern) is None


def _random_pattern(rnd):
    words = ["error", "fail", "Timeout", "module", "npm", "E404", "x", "core"]
    pieces = []
    for _ in range(rnd.randint(1, 5)):
        kind = rnd.random()
        word = rnd.choice(words)
        if kind < 0.35:
            pieces.append(re.escape(word))
        elif kind < 0.45:
            pieces.append(rf"(?:{re.escape(word)})?")
        elif kind < 0.55:
            pieces.append(rf"(?:{re.escape(word)}|{re.escape(rnd.choice(words))})")
        elif kind < 0.65:
            pieces.append(rnd.choice([r"\d+", r"\w+", r"[a-z]*", r".*", r"\s"]))
        elif kind < 0.72:
            pieces.append(rf"(?:{re.escape(word)}){{1,2}}")
        elif kind < 0.8:
            pieces.append(rnd.choice([": ", " - ", "'", r"\.", r"\[", "!"]))
        else:
            pieces.append(" ")
    pattern = "".join(pieces)
    if rnd.random() < 0.1:
        pattern = "^" + pattern
    if rnd.random() < 0.2:
        pattern = "(?i)" + pattern
    return pattern


def test_prefilter_agrees_with_naive_matching_on_random_patterns():
    rnd = random.Random(20241123)
    patterns = list(dict.fromkeys(_random_pattern(rnd) for _ in range(400)))
    patterns = [p for p in patterns if not re.search(p, "")]
    index = SpellIndex.build([spell(i, p) for i, p in enumerate(patterns)])
    vocab = [
        "error",
        "ERROR",
        "fail",
        "Timeout",
        "module",
        "npm",
        "E404",
        "x",
        "core",
        "42",
        ":",
        " ",
        "'",
        ".",
        "[",
        "!",
        "-",
    ]
    lines = ["".join(rnd.choice(vocab) for _ in range(rnd.randint(1, 9))) for _ in range(400)]
    compiled = [re.compile(p) for p in patterns]

    for line in lines:
        expected = {i for i, c in enumerate(compiled) if c.search(line)}
        got = {m.spell_id for m in index.scan_lines([line])}
        assert got == expected, line


# ---- the backtracking engine and the runaway guard -----------------------------------------


def test_patterns_re2_cannot_compile_run_on_the_backtracking_engine():
    index = SpellIndex.build(
        [
            spell("lookbehind", r"(?<=: )Connection refused(?! by peer)"),
            spell("backref", r"'(\w+)' is defined twice: '\1'"),
        ]
    )

    assert index.describe()["backtracking_patterns"] == 2
    assert ids(index.match(ErrorQuery(lines=["dial: Connection refused"]), min_similarity=2)) == [
        "lookbehind"
    ]
    assert (
        index.match(ErrorQuery(lines=["dial: Connection refused by peer"]), min_similarity=2) == []
    )
    assert ids(index.match(ErrorQuery(lines=["'x' is defined twice: 'x'"]), min_similarity=2)) == [
        "backref"
    ]
    assert index.match(ErrorQuery(lines=["'x' is defined twice: 'y'"]), min_similarity=2) == []


def test_a_runaway_pattern_is_stopped_reported_and_switched_off():
    index = SpellIndex.build(
        [spell("runaway", RUNAWAY), spell("good", r"exec format error")], regex_timeout=0.02
    )
    query = ErrorQuery(lines=[RUNAWAY_LINE, "exec /app: exec format error"])

    first = index.match(query, min_similarity=2)
    second = index.match(query, min_similarity=2)

    assert ids(first) == ids(second) == ["good"]
    [bad] = index.bad_patterns
    assert (bad.spell_id, bad.pattern) == ("runaway", RUNAWAY)
    assert "ran away" in bad.reason
    assert index.stats["timeouts"] == 1  # switched off after the first, not tried again


def test_a_runaway_pattern_stays_off_when_the_index_is_rebuilt_from_it():
    records = [spell("runaway", RUNAWAY)]
    old = SpellIndex.build(records, regex_timeout=0.02)
    list(old.scan_lines([RUNAWAY_LINE]))

    new = SpellIndex.build(records, previous=old, regex_timeout=0.02)

    assert [b.spell_id for b in new.bad_patterns] == ["runaway"]
    assert list(new.scan_lines([RUNAWAY_LINE, "xaa"])) == []
    assert new.stats["timeouts"] == 0


def test_runaway_strikes_allow_a_pattern_some_slow_lines_first():
    index = SpellIndex.build([spell("r", RUNAWAY)], regex_timeout=0.02, runaway_strikes=2)

    list(index.scan_lines([RUNAWAY_LINE]))
    assert index.bad_patterns == []
    list(index.scan_lines([RUNAWAY_LINE]))
    assert len(index.bad_patterns) == 1


def test_bad_patterns_are_reported_and_the_spells_other_patterns_still_work():
    index = SpellIndex.build(
        [spell(1, r"(unclosed", r"(optional)?", r"Permission denied \(publickey\)")]
    )

    reasons = {b.pattern: b.reason for b in index.bad_patterns}
    assert "does not compile" in reasons[r"(unclosed"]
    assert "empty string" in reasons[r"(optional)?"]
    assert ids(
        index.match(ErrorQuery(message="git@github.com: Permission denied (publickey)."))
    ) == [1]


def test_patterns_too_long_are_refused():
    index = SpellIndex.build([spell(1, "a" * (matching.MAX_PATTERN_LENGTH + 1))])

    assert "too long" in index.bad_patterns[0].reason


# ---- similarity tokens ----------------------------------------------------------------------


def test_tokenize_masks_paths_numbers_hashes_and_urls():
    tokens = tokenize(
        "KeyError at /home/runner/work/app/main.py:42 in 0x7f3a9c build 3f2a9c1d7b4e "
        "see https://example.com/x?y=1 ModuleNotFound"
    )

    assert "keyerror" in tokens and "key" in tokens and "error" in tokens
    assert "modulenotfound" in tokens and "module" in tokens
    for noise in ("home", "runner", "py", "42", "x7f3a9c", "3f2a9c1d7b4e", "example", "https"):
        assert noise not in tokens


# ---- validate_pattern -------------------------------------------------------------------------


def test_a_good_pattern_has_no_problems():
    assert (
        validate_pattern(r"No module named '[\w.]+'", "ModuleNotFoundError: No module named 'x'")
        == []
    )


@pytest.mark.parametrize(
    ("pattern", "sample", "expected"),
    [
        ("", "x", "empty"),
        ("a" * 1001, "a", "too long"),
        (r"error(", "error(", "does not compile"),
        (r"(?:fail)?", "fail", "empty string"),
        (r"E\d+", "E1", "at least 4 literal"),
        (r"Successfully", "Successfully built", "ordinary log line"),
        (r"disk quota exceeded", "no space left", "does not match its sample"),
        (r"disk quota exceeded", "", "no sample line"),
        (r"disk quota exceeded", "disk quota exceeded\nnext", "single line"),
        (r"(?<=x)(a|aa)+$", "xaaa", "runs away"),
    ],
)
def test_validate_pattern_names_the_problem(pattern, sample, expected):
    problems = validate_pattern(pattern, sample)

    assert any(expected in p for p in problems), problems


# ---- IndexCache ---------------------------------------------------------------------------------


def test_index_cache_builds_once_per_token_and_rebuilds_when_it_changes():
    loads = []

    def loader():
        loads.append(1)
        return [spell(len(loads), r"Gradle build daemon disappeared")]

    cache = IndexCache(loader)
    first = cache.get(("2024-11-23T10:00", 1))
    again = cache.get(("2024-11-23T10:00", 1))
    changed = cache.get(("2024-11-23T10:05", 1))

    assert first is again
    assert changed is not first
    assert cache.builds == len(loads) == 2
    assert ids(changed.match(ErrorQuery(message="Gradle build daemon disappeared"))) == [2]


def test_index_cache_invalidate_forces_a_rebuild():
    cache = IndexCache(lambda: [])
    cache.get(1)
    cache.invalidate()
    cache.get(1)

    assert cache.builds == 2


def test_index_cache_builds_once_when_many_threads_ask_for_a_new_token():
    gate = threading.Event()
    calls = []

    def slow_loader():
        calls.append(1)
        gate.wait(5)
        return [spell(1, r"exec format error")]

    cache = IndexCache(slow_loader)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("v1"))) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(5)

    assert len(calls) == 1
    assert len({id(r) for r in results}) == 1


def test_index_cache_passes_build_options_through():
    cache = IndexCache(lambda: [spell(1, RUNAWAY)], regex_timeout=0.02)

    index = cache.get(1)
    list(index.scan_lines([RUNAWAY_LINE]))

    assert index.regex_timeout == 0.02
    assert len(index.bad_patterns) == 1
