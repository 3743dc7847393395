"""Streaming analysis of CI build logs: why did this build fail?

The analyzer reads a log once, in chunks, in constant memory, and reports:

- error and warning lines (1-based line numbers over the log split on ``\\n``), with exact counts.
  The first :data:`MAX_FINDINGS` warnings are kept; of the errors, those that explain the failure
  are listed (up to :data:`MAX_FINDINGS`): the failing step's errors ranked close to the primary
  error, each repeated line once, without the wrapper lines ("make: *** Error 1") that restate
  them. Errors of steps that went on fine are counted, not listed (see
  ``LogAnalyzer._relevant_errors``);
- test failures from runner-aware parsers (pytest, unittest, Jest, Mocha, cargo test, go test,
  JUnit/Maven Surefire, Gradle, RSpec, PHPUnit, ExUnit, ScalaTest, gtest, Bazel, dotnet, TAP);
  compiler, linter and dependency-resolution errors are recognised and given a ``kind``;
- the single most likely failure line (``primary_error``) and the contiguous block of lines
  that best explains the failure (``excerpt``).

How it stays fast (the goal is tens of MB/s in pure Python): a single RE2 scan over each raw
byte chunk finds the few lines that mention anything failure-like; only those lines are decoded,
cleaned and classified. After an error line the analyzer switches to line-by-line mode for as
long as the following lines continue it (stack frames, indented details), so excerpts and
multi-line test reports are seen whole, then jumps again.

How it picks the primary error: each error line gets a score from the rule that recognised it
(a compiler error or a test report says more than "make: *** Error 1"), plus a bonus when the
CI step it belongs to failed and when it sits in the last error blocks before that failure.
Known wrapper noise (``##[error]Process completed with exit code 1``, Maven's help footer) is
never an error. See ``LogAnalyzer._choose_primary``.

No Django in here: the ``builds`` services, the ``summarize_log`` command and ``bench/`` use it.
"""

from __future__ import annotations

import gzip
import io
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import re2

from builds.fingerprint import LIBRARY_MARKERS
from builds.fingerprint import fingerprint as _fingerprint

__all__ = [
    "MAX_FINDINGS",
    "Excerpt",
    "Finding",
    "LogAnalysis",
    "LogAnalyzer",
    "TestFailure",
    "analyze_lines",
    "analyze_path",
    "analyze_stream",
    "analyze_text",
    "clean_line",
]

MAX_FINDINGS = 200  # errors, warnings and failures listed each; the counts stay exact
MAX_EXCERPT_LINES = 60
MAX_TEXT_CHARS = 2000  # stored text of one line; a minified bundle on one line stays bounded
CHUNK_BYTES = 1 << 20
_MAX_CLASSIFY_CHARS = (
    1000  # rules look at a line's start: an error is said early, long lines are slow
)
_MAX_LINE_BYTES = 64 * 1024  # a "line" longer than this is cut (still counted as one line)
_MAX_BLOCK_STORE = 200  # lines of text kept per block (a longer run is split)
_MAX_EXCERPT_LINE_CHARS = 500  # an excerpt line longer than this is cut: blocks stay small
_MAX_BLOCK_SPAN = 5000  # a block never swallows more than this many lines
_MAX_GAP = 2  # non-continuation lines that close a block
_MAX_BLOCKS = 48
_MAX_CANDIDATES = 600
_MAX_STEP_HEADER = 300  # lines a GitHub Actions "##[group]Run" header (script, env) may span
_TAIL_BYTES = 8192  # end of the previous chunk kept for looking back across chunk boundaries
# Primary error scoring (see LogAnalyzer._choose_primary).
_FAILED_SECTION_BONUS = 40  # a step that did not fail did not cause the failure
_RECENCY_BONUS = 10  # for errors in the last blocks before the step failed
_RECENCY_BLOCKS = 2
_RECENCY_MIN_SCORE = 40  # wrappers and summaries do not count as "the last blocks"
# An error is reported when its final score comes this close to the primary error's: the other
# errors of the failing step, not those of steps that passed or of post-processing.
_RELEVANCE_MARGIN = 40
# Lines demoted to noise (post-processing, errors printed by test classes that passed, ignored
# exceptions: 30) are not listed unless they are part of the primary error's block.
_LISTED_MIN_SCORE = 40


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class Finding:
    """One error or warning line."""

    line: int
    text: str
    fingerprint: str
    kind: str = "generic"


@dataclass(frozen=True, slots=True)
class TestFailure:
    """One failed test, as reported by its runner."""

    __test__ = False  # not a pytest test class despite the name

    runner: str
    test: str
    message: str
    line: int
    file: str | None = None


@dataclass(frozen=True, slots=True)
class Excerpt:
    start: int
    end: int
    text: str


@dataclass(slots=True)
class LogAnalysis:
    total_lines: int = 0
    error_count: int = 0
    warning_count: int = 0
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    failures: list[TestFailure] = field(default_factory=list)
    primary_error: Finding | None = None
    excerpt: Excerpt | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``summarize_log --json`` object, without the ``path`` key."""
        primary = self.primary_error
        return {
            "total_lines": self.total_lines,
            "error_count": self.error_count,
            "warning_count": self.warning_count,
            "errors": [
                {"line": f.line, "text": f.text, "fingerprint": f.fingerprint} for f in self.errors
            ],
            "warnings": [{"line": f.line, "text": f.text} for f in self.warnings],
            "failures": [
                {"runner": f.runner, "test": f.test, "message": f.message, "line": f.line}
                for f in self.failures
            ],
            "primary_error": (
                None
                if primary is None
                else {
                    "line": primary.line,
                    "text": primary.text,
                    "fingerprint": primary.fingerprint,
                }
            ),
            "excerpt": (
                None
                if self.excerpt is None
                else {
                    "start": self.excerpt.start,
                    "end": self.excerpt.end,
                    "text": self.excerpt.text,
                }
            ),
        }


# --------------------------------------------------------------------------------------------
# Cleaning

# CSI/OSC escapes, plus CSI remnants whose ESC byte a log shipper already dropped ("[31;1m").
_ANSI_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\[[0-9;]{1,12}m|\[\?25[hl]"
)
_ANSI_REMNANT_RE = re.compile(r"\[(?:[0-9;]{1,12}m|\?25[hl])")
# GitLab collapsible sections and Travis folds/timers are markup, not output.
_CI_MARKER_RE = re.compile(
    r"(?:section_(?:start|end):\d+:[\w.\-]+(?:\[[^\]\r]*\])?|travis_(?:fold|time):[^\r\n]*?)(?=\r|$)"
)
_TIMESTAMP = (
    r"(?:"
    # GitHub Actions raw logs; GitLab FF_TIMESTAMPS logs add a stream id, O/E and "+" when
    # the line continues the previous one ("<ISO> 00O ", "<ISO> 01E+")
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?(?: [0-9a-f]{2}[OE][+ ]?| |$)"
    # Jenkins timestamper: "[2024-01-01T10:00:00.123Z] " or "[10:00:00] " / "10:00:00 "
    r"|\[\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\]\s?"
    r"|\[\d\d:\d\d:\d\d(?:[.,]\d+)?\]\s"
    r"|\d\d:\d\d:\d\d(?:[.,]\d+)?\s(?=\S)"
    r")"
)
_TIMESTAMP_RE = re.compile(
    r"^\ufeff?"
    # `gh run view --log`: "<job>\t<step>\t<ISO timestamp> "
    r"(?:[^\t\n]{1,200}\t[^\t\n]{1,200}\t(?=\d{4}-\d\d-\d\dT))?" + _TIMESTAMP
)
# The same without the `gh run view` columns, for lines with fewer than two tabs: trying
# that optional group scans up to 400 characters ahead, which made this match the costliest
# step of cleaning a line.
_TIMESTAMP_NO_TAB_RE = re.compile(r"^\ufeff?" + _TIMESTAMP)


def _timestamp_re(raw: str) -> re.Pattern[str]:
    # The `gh run view` columns need two tabs; an indented stack frame has one.
    return _TIMESTAMP_RE if "\t" in raw and raw.count("\t") > 1 else _TIMESTAMP_NO_TAB_RE


def clean_line(raw: str) -> str:
    """Return the text a person sees for one log line.

    Drops ANSI escapes, CI timestamp prefixes (GitHub Actions, GitLab, Jenkins, ``gh run view``),
    GitLab/Travis section markers, the ``\\r`` of ``\\r\\n`` and everything a ``\\r`` overwrote
    (progress bars: the last non-empty segment is what stayed on screen).
    """
    if "\x1b" in raw:
        raw = _ANSI_RE.sub("", raw)
    elif "[" in raw and _ANSI_REMNANT_RE.search(raw):  # search costs half a sub that finds nothing
        raw = _ANSI_REMNANT_RE.sub("", raw)
    if "section_" in raw or "travis_" in raw:
        raw = _CI_MARKER_RE.sub("", raw)
    m = _timestamp_re(raw).match(raw)
    if m is not None:
        raw = raw[m.end() :]
    if "\r" in raw:
        segments = [s for s in raw.split("\r") if s.strip()]
        raw = segments[-1] if segments else ""
        m = _timestamp_re(raw).match(raw)
        if m is not None:
            raw = raw[m.end() :]
    return raw.rstrip()


# Explicit log levels that make a line neither an error nor a warning, or at most a warning.
_QUIET_TAG_RE = re.compile(
    # "[INFO] ...", "INFO: ...", and logger lines like "[main] INFO com.acme.Foo - ..."
    r"^\s*(?:\[[^\]\s]{1,40}\]\s+)?(?:\[(?:INFO|DEBUG|TRACE|NOTICE|FINE)\]|(?:INFO|DEBUG|TRACE)(?::|\s+-\s|\s))"
)
_WARNING_TAG_RE = re.compile(
    r"^\s*(?:\[(?:WARNING|WARN)\]|(?:WARNING|WARN|Warning|warning)(?:\[[\w\-]+\])?:|npm (?:WARN|warn)\b|W: |DEPRECATION:)"
)
# The first non-space character of a line either regex can match (``\s`` is what
# str.lstrip() strips).
_QUIET_TAG_STARTS = "[IDT"
_WARNING_TAG_STARTS = "[WwnD"

# GitHub Actions workflow commands/annotations as they appear in raw logs.
_ANNOTATION_RE = re.compile(
    r"^(?:##\[(?P<a>error|warning|notice|group|endgroup|section|command|debug)\]"
    r"|::(?P<b>error|warning|notice|group|endgroup)(?: [^:]*)?::)"
)


# --------------------------------------------------------------------------------------------
# Prefilter: one RE2 (DFA, linear time) scan over raw bytes finds the lines worth a look.
# Latin-1 mode so that invalid UTF-8 never stops a match; non-ASCII markers are spelled as
# their UTF-8 bytes. Everything a rule below can match must be reachable through this scan.

_HIT_KEYWORDS = [
    r"error",
    r"err!",
    r"fail",
    r"warn",
    r"fatal",
    r"panic",
    r"exception",
    r"traceback",
    r"abort",
    r"denied",
    r"timed out",
    r"timeout",
    r"killed",
    r"segmentation",
    r"core dumped",
    r"cannot",
    r"could not",
    r"couldn't",
    r"unable to",
    r"not found",
    r"no such file",
    r"undefined",
    r"unresolved",
    r"refused",
    r"refusing",
    r"rate limit",
    r"exit code",
    r"exit status",
    r"exited with",
    r"non-zero",
    r"out of memory",
    r"no space left",
    r"unauthorized",
    r"forbidden",
    r"canceled",
    r"cancelled",
    r"sigint",
    r"sigterm",
    r"interrupt",
    r"##\[",
    r"::error",
    r"::warning",
    r"section_start",
    r"travis_fold",
    r"\xe2\x9c[\x95-\x98]",  # ✕ ✖ ✗ ✘
    r"\xc3\x97",  # multiplication sign
    r"\xe2\x97\x8f",  # ●
    r"<<<",
    # Line-start shapes. Raw lines may carry a timestamp or ANSI codes before them, so these
    # are matched after a space, "m" (end of an SGR code) or "Z"/"]" (end of a timestamp).
    # Never "\s" here: in RE2 it matches "\n" and a hit would start on the line before.
    r"(?:^|[ \tmZ\]])\$ ",
    r"_{3,} ",
    r"(?:^|[ \tmZ\]])\d+\) ",
    r"not ok \d",
    r" stdout ----",
    r"(?:^|[ \tmZ\]])e: ",
    r"\[pipeline\] \{ \(",
    r"\.(?:py|pyi|go|rs|c|cc|cpp|cxx|h|hpp|ts|tsx|js|jsx|mjs|java|kt|kts|rb|php|swift|cs|scala):\d+:\d+",
]
_HIT_OPTIONS = re2.Options()
_HIT_OPTIONS.encoding = re2.Options.Encoding.LATIN1
_HIT_OPTIONS.case_sensitive = False
_HIT_RE = re2.compile(
    ("(?m)^[^\\n]*(?:" + "|".join(_HIT_KEYWORDS) + ")[^\\n]*").encode("latin-1"), _HIT_OPTIONS
)


# google-re2's Python layer costs more than RE2 itself here: a generator step and a match
# object per hit, two Python calls and a None check per set match. The hot paths call the
# compiled objects it wraps (google-re2 1.x), exactly as it does; with other bindings they
# fall back to the public API, which gives the same answers.
_RAW_HIT_RE = getattr(_HIT_RE, "_regexp", None)
_UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)


def _hit_spans(buf: bytes, pos: int, endpos: int) -> list[tuple[int, int]]:
    """``[m.span() for m in _HIT_RE.finditer(buf, pos, endpos)]``."""
    if _RAW_HIT_RE is None or _UNANCHORED is None:
        return [m.span() for m in _HIT_RE.finditer(buf, pos, endpos)]
    match = _RAW_HIT_RE.Match
    spans = []
    while True:
        span = match(_UNANCHORED, buf, pos, endpos)[0]
        if span[0] == -1:
            return spans
        spans.append(span)
        if pos == endpos:
            return spans
        pos = pos + 1 if pos == span[1] else span[1]  # an empty match: move on (never here)


# --------------------------------------------------------------------------------------------
# Classification

NONE, WARNING, ERROR = 0, 1, 2

F_OPEN = 1  # opens an excerpt block although it is not an error ("Traceback", "FAILURES")
F_NOISE = 2  # known wrapper noise: never counted, never primary, but continues a block
F_TERM = 4  # CI-level "this step/job failed" marker: the section it ends failed
F_SECTION = 8  # a CI step/section starts here
F_WRAPPER = 16  # says that something failed, not why ("make: *** Error 1", "exit status 1")
F_SUMMARY = 32  # outcome/summary line ("3 failed, 10 passed")
F_TB = 64  # Python traceback header
F_CONT = 128  # continues the current block even when not indented
F_EXC = 256  # an exception line (the traceback logic may promote it)
F_GUESS = 512  # a primary-error candidate that is not an error line (see _tail_candidate)
_WEAK_FLAGS = F_WRAPPER | F_SUMMARY  # lines that restate a failure rather than explain it


@dataclass(slots=True)
class _Cls:
    level: int
    kind: str
    score: int
    flags: int = 0
    rule: str = ""


# A handler returns this when the line is not what its rule is about: later rules get a go.
_SKIP = _Cls(NONE, "", 0, 0, "skip")

_Handler = Callable[["LogAnalyzer", re.Match[str], int, str], "_Cls | None"]


@dataclass(slots=True)
class _Rule:
    """One line shape: the first rule (in table order) whose triggers occur and regex matches wins."""

    name: str
    pattern: re.Pattern[str]
    level: int
    kind: str
    score: int
    flags: int = 0
    triggers: tuple[str, ...] = ()
    handler: _Handler | None = None


def _rule(
    name: str,
    pattern: str,
    level: int,
    kind: str,
    score: int,
    flags: int = 0,
    triggers: tuple[str, ...] = (),
    handler: _Handler | None = None,
    re_flags: int = 0,
) -> _Rule:
    return _Rule(name, re.compile(pattern, re_flags), level, kind, score, flags, triggers, handler)


# ---- handlers that record test failures or change parser context -------------------------


def _h_pytest_section(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._ctx_pytest = m.group("sec") in ("FAILURES", "ERRORS")
    return None


def _h_pytest_header(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    name = m.group("test").strip()
    if not (a._ctx_pytest or "test" in name.lower()) or " " in name.strip("[]"):
        return _Cls(NONE, "", 0, F_CONT, "pytest-separator")
    a._add_failure("pytest", name, "", line, capture="pytest")
    return None


def _h_pytest_summary(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    test = m.group("test")
    if "::" not in test and ".py" not in test:
        return _SKIP
    msg = (m.group("msg") or "").strip()
    # The short summary names the node id; the FAILURES header names "Class.test". Merge them.
    a._add_failure("pytest", test, msg, line, alias=test.split("::", 1)[-1].replace("::", "."))
    return None


def _h_pytest_verbose(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    test = m.group("test")
    a._add_failure("pytest", test, "", line, alias=test.split("::", 1)[-1].replace("::", "."))
    return None


def _h_pytest_end(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._ctx_pytest = False
    return None


def _h_unittest(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    test, cls = m.group("test"), m.group("cls")
    name = cls if cls.endswith("." + test) else f"{cls}.{test}"
    a._add_failure("unittest", name, "", line, capture="exception")
    return None


def _h_jest_file(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._jest_file = m.group("file")
    return None


def _h_jest_header(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    name = m.group("test").strip()
    if name.startswith("Console") or name.startswith("Deprecation"):
        return _Cls(NONE, "", 0, F_CONT, "jest-console")
    if name == "Test suite failed to run" and a._jest_file:
        name = f"{a._jest_file} (suite failed to run)"
    a._add_failure("jest", name, "", line, file=a._jest_file, capture="next")
    return None


def _h_mocha_failing(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._ctx_list = "mocha"
    return None


def _h_rspec_section(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._ctx_list = "rspec"
    return None


def _h_numbered(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    title = m.group("title").strip()
    exunit = re.match(r"test (?P<test>.+) \((?P<mod>[\w.]+)\)$", title)
    if exunit:
        # ExUnit prints "  1) test name (Module)" with no section header before it.
        a._add_failure(
            "exunit", f"{exunit.group('mod')}: {exunit.group('test')}", "", line, capture="exunit"
        )
        return _Cls(ERROR, "test", 90, F_OPEN, "exunit-failure")
    if a._ctx_list == "phpunit":
        a._add_failure("phpunit", title, "", line, capture="next")
        return _Cls(ERROR, "test", 90, F_OPEN, "phpunit-failure")
    if a._ctx_list == "mocha":
        # Mocha prints the suite path over several lines, the last one ending with ":".
        a._pending = _Pending("mocha", [title.rstrip(":")], line, title.endswith(":"))
        return _Cls(ERROR, "test", 90, 0, "mocha-failure")
    if a._ctx_list == "rspec":
        a._add_failure("rspec", title, "", line, capture="rspec")
        return _Cls(ERROR, "test", 90, 0, "rspec-failure")
    return _SKIP


def _h_phpunit_section(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._ctx_list = "phpunit"
    return None


def _h_named_failure(runner: str, capture: str | None = "next") -> _Handler:
    def handler(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
        a._add_failure(runner, m.group("test").strip(), "", line, capture=capture)
        return None

    return handler


def _h_rspec_list(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._add_failure("rspec", m.group("test").strip(), "", line, file=m.group("file"))
    return None


def _h_cargo_test(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._add_failure("cargo", m.group("test"), "", line)
    return None


def _h_cargo_panic(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    test = m.group("test")
    msg = m.group("msg")
    failure = a._failure_index.get(("cargo", test))
    if failure is not None and not failure[2]:
        if msg:
            failure[2] = msg
        else:
            a._capture = (failure, "next", 0, line)
    return None


def _h_go_fail(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._add_failure("go", m.group("test"), "", line, capture="go")
    return None


def _h_surefire(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    groups = m.groupdict()
    cls, meth = groups.get("cls") or groups.get("cls2"), groups.get("m") or groups.get("m2")
    a._add_failure("junit", f"{cls}.{meth}", "", line, capture="next")
    return None


def _h_maven_results(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._ctx_maven_results = True
    return None


def _h_maven_result_line(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    if not a._ctx_maven_results:
        return _Cls(NONE, "", 0, F_CONT, "maven-indented")
    a._add_failure("junit", m.group("test"), m.group("msg").strip(), line)
    return None


def _h_gradle(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._add_failure("gradle", f"{m.group('cls')}.{m.group('test')}", "", line, capture="next")
    return None


def _h_gtest(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._add_failure("gtest", m.group("test"), "", line)
    return None


def _h_tap(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._add_failure("tap", m.group("test").strip(), "", line)
    return None


def _h_dotnet(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._add_failure("dotnet", m.group("test"), "", line, capture="next")
    return None


def _h_exit(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    codes = [v for k, v in m.groupdict().items() if k.startswith("code") and v is not None]
    if not codes or codes[0] == "0":
        return _Cls(NONE, "", 0, F_NOISE, "exit-0")
    return None


def _h_totals(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    passed = int(m.group("f")) + int(m.group("e")) == 0
    a._end_test_scope(passed)
    if passed:
        return _Cls(NONE, "", 0, 0, "totals-ok")
    return None


def _h_test_class_failed(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._end_test_scope(False)
    return None


def _h_exception_ignored(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    a._tb_ignored = True
    return None


def _h_chained(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    if "direct cause" in text:
        # "raise X from e": the exception finally raised carries the context its author added
        # ("Failed to X: <cause>"), so it summarises the failure better than its cause.
        cand = a._last_exc_candidate
        if cand is not None:
            cand.score -= 6
    else:
        # "During handling of the above exception, another exception occurred": the handler
        # broke too; the first exception is still the root cause.
        a._tb_secondary = True
    return None


def _h_pytest_banner(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    what = m.group("what")
    if re.search(r"Interrupt|Timeout|error", what):
        return None
    return _Cls(NONE, "", 0, F_NOISE | F_CONT, "pytest-banner")


def _h_lint_code(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    code = m.group("code")
    # pylint: C(onvention), R(efactor), W(arning) are not errors; flake8/ruff codes fail the build.
    if len(code) == 5 and code[0] in "CRWI":
        return _Cls(WARNING, "lint", 0, 0, "pylint-warning")
    return None


def _h_lintrunner(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    if m.group("sev") != "Error":
        return _Cls(WARNING, "lint", 0, 0, "lintrunner-warning")
    return None


def _h_eslint(a: LogAnalyzer, m: re.Match[str], line: int, text: str) -> _Cls | None:
    if m.group("sev") == "warning":
        return _Cls(WARNING, "lint", 0, 0, "eslint-warning")
    return None


_EXC_NAME = r"(?:[A-Za-z_][\w]*\.)*(?:[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Failure|Fault)|KeyboardInterrupt|SystemExit|StopIteration|Exception)"

_RULES: list[_Rule] = [
    # ---- wrapper noise and CI step markers ------------------------------------------------
    _rule(
        "gha-exit",
        r"^(?:Error: )?Process completed with exit code (?P<code>\d+)",
        NONE,
        "",
        0,
        F_NOISE | F_TERM,
        ("process completed",),
        _h_exit,
    ),
    _rule(
        "gha-container",
        r"^Executing the custom container implementation failed",
        NONE,
        "",
        0,
        F_NOISE,
        ("custom container",),
    ),
    _rule("gha-step", r"^(?:##\[group\])?Run \S", NONE, "", 0, F_SECTION, ("##[group]run",)),
    # Travis CI and GitLab CI echo each command as "$ cmd": each one is a step of its own.
    _rule("shell-step", r"^\$ \S", NONE, "", 0, F_SECTION, ("$ ",)),
    _rule(
        "travis-command",
        r"^(?:The command \".*\" (?:failed and )?exited with|Done\. Your build exited with) (?P<code>\d+)",
        NONE,
        "",
        0,
        F_NOISE | F_TERM,
        ("exited with",),
        _h_exit,
    ),
    _rule(
        "gitlab-job-failed", r"^ERROR: Job failed\b", NONE, "", 0, F_NOISE | F_TERM, ("job failed",)
    ),
    # Step-failure markers of other CI systems: Azure Pipelines ("Bash exited with code '1'."),
    # CircleCI ("Exited with code exit status 1"), Buildkite, TeamCity ("Process exited with code 1").
    _rule(
        "ci-step-exit",
        r"^(?:(?:Bash|Cmd(?:\.exe)?|PowerShell|pwsh|Python|Node) exited with code '?(?P<code>\d+)'?"
        r"|Exited with code (?:exit status )?(?P<code2>\d+)"
        r"|(?:\S+ )?Error: The command exited with status (?P<code3>-?\d+)"
        r"|Process exited with code (?P<code4>-?\d+))",
        NONE,
        "",
        0,
        F_NOISE | F_TERM,
        ("exited with",),
        _h_exit,
    ),
    _rule(
        "jenkins-step-failed",
        r"^(?:Build step '.*' marked build as failure|Finished: (?:FAILURE|UNSTABLE|ABORTED))",
        NONE,
        "",
        0,
        F_NOISE | F_TERM,
        ("marked build as failure", "finished: "),
    ),
    _rule(
        "jenkins-script-exit",
        r"^ERROR: script returned exit code (?P<code>\d+)",
        ERROR,
        "generic",
        15,
        F_WRAPPER | F_TERM,
        ("script returned exit code",),
        _h_exit,
    ),
    _rule(
        "maven-help",
        r"^\[ERROR\] (?:-> \[Help 1\]|To see the full stack trace|Re-run Maven using|For more information about the errors"
        r"|\[Help \d+\] http|After correcting the problems|\s*mvn <\w+>|\s*$)",
        NONE,
        "",
        0,
        F_NOISE | F_CONT,
        ("[error]",),
    ),
    _rule("maven-empty", r"^\[ERROR\]$", NONE, "", 0, F_NOISE | F_CONT, ("[error]",)),
    _rule(
        "jvm-options",
        r"^(?:\[ERROR\] )?Picked up (?:JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS):",
        NONE,
        "",
        0,
        F_NOISE,
        ("picked up",),
    ),
    _rule(
        "npm-noise",
        r"^npm (?:ERR!|error) (?:A complete log of this run|\s*/\S+-debug(?:-\d+)?\.log$|This is probably not a problem with npm"
        r"|\s*$|Log files were not written|You can rerun the command with)",
        NONE,
        "",
        0,
        F_NOISE | F_CONT,
        ("npm err", "npm error"),
    ),
    _rule(
        "npm-empty",
        r"^npm (?:ERR!|error)$",
        NONE,
        "",
        0,
        F_NOISE | F_CONT,
        ("npm err", "npm error"),
    ),
    _rule(
        "npm-wrapper",
        r"^npm (?:ERR!|error) (?:code ELIFECYCLE|errno \d+|Failed at the .* script|Exit status \d+|Test failed\."
        r"|command failed|command sh -c|Lifecycle script .* failed|path \S+$|workspace \S+$|location \S+$)",
        ERROR,
        "generic",
        15,
        F_WRAPPER | F_CONT,
        ("npm err", "npm error"),
    ),
    _rule(
        "make-no-rule",
        r"^make(?:\[\d+\])?: \*\*\* No rule to make target",
        ERROR,
        "compiler",
        85,
        0,
        ("no rule",),
    ),
    _rule(
        "make-wrapper",
        r"^(?:g?make|mingw32-make)(?:\[\d+\])?: \*\*\* ",
        ERROR,
        "generic",
        15,
        F_WRAPPER,
        ("make",),
    ),
    _rule(
        "build-stopped",
        r"^(?:ninja: build stopped|compilation terminated\.|\*\*\* CMake build failed|collect2: error: ld returned)",
        ERROR,
        "compiler",
        15,
        F_WRAPPER,
        ("build stopped", "compilation terminated", "cmake build failed", "ld returned"),
    ),
    _rule(
        "cargo-wrapper",
        r"^error: (?:could not compile|aborting due to|test failed, to rerun|build failed|\d+ previous errors?"
        r"|process didn't exit successfully|Recipe `.*` failed)",
        ERROR,
        "generic",
        15,
        F_WRAPPER,
        ("error:",),
    ),
    _rule("go-exit", r"^exit status \d+$", ERROR, "generic", 10, F_WRAPPER, ("exit status",)),
    _rule(
        "exit-code-line",
        r"^(?:Got )?[Ee]xit (?:code|status):? (?P<code>\d+)\.?$",
        ERROR,
        "generic",
        10,
        F_WRAPPER,
        ("exit code", "exit status"),
        _h_exit,
    ),
    # ---- test runners ---------------------------------------------------------------------
    _rule(
        "pytest-section",
        r"^=+ (?P<sec>FAILURES|ERRORS|short test summary info|warnings summary|PASSES|RERUNS) =+$",
        NONE,
        "",
        0,
        F_OPEN,
        ("failures", "errors", "short test summary", "warnings summary", "passes", "reruns"),
        _h_pytest_section,
    ),
    _rule(
        "pytest-header",
        r"^_{3,} (?P<test>\S.*?) _{3,}$",
        ERROR,
        "test",
        90,
        F_OPEN,
        ("___ ",),
        _h_pytest_header,
    ),
    _rule(
        "pytest-summary",
        r"^(?:FAILED|ERROR) (?:\[[\d.]+s\] )?(?P<test>\S+)(?: - (?P<msg>.*))?$",
        ERROR,
        "test",
        86,
        0,
        ("failed ", "error "),
        _h_pytest_summary,
    ),
    _rule(
        "pytest-verbose",
        r"^(?P<test>\S+\.py::\S+)(?: <- \S+)? (?:FAILED|ERROR)\b",
        ERROR,
        "test",
        80,
        0,
        ("::",),
        _h_pytest_verbose,
    ),
    _rule(
        "pytest-outcome",
        r"^=+ .*\b\d+ (?:failed|errors?)\b.*=+$",
        ERROR,
        "test",
        25,
        F_SUMMARY,
        ("failed", "error"),
        _h_pytest_end,
    ),
    _rule(
        "unittest",
        r"^(?:FAIL|ERROR): (?P<test>\w+) \((?P<cls>[\w.]+)\)",
        ERROR,
        "test",
        90,
        F_OPEN,
        ("fail: ", "error: "),
        _h_unittest,
    ),
    _rule(
        "unittest-outcome",
        r"^FAILED \((?:failures|errors)=\d+",
        ERROR,
        "test",
        25,
        F_SUMMARY,
        ("failed (",),
    ),
    _rule(
        "go-fail",
        r"^\s*--- FAIL: (?P<test>\S+)(?: \((?P<dur>[\d.]+\s*s)\))?",
        ERROR,
        "test",
        90,
        0,
        ("--- fail",),
        _h_go_fail,
    ),
    _rule(
        "go-fail-pkg",
        r"^(?:FAIL\s*$|FAIL\t\S+)",
        ERROR,
        "test",
        30,
        F_SUMMARY | F_CONT,
        ("fail",),
    ),
    _rule(
        "jest-file",
        r"^\s*FAIL {1,2}(?P<file>\S+)",
        ERROR,
        "test",
        50,
        F_OPEN,
        ("fail ",),
        _h_jest_file,
    ),
    _rule(
        "jest-header",
        r"^\s*\u25cf (?P<test>.+)$",
        ERROR,
        "test",
        90,
        F_OPEN,
        ("\u25cf",),
        _h_jest_header,
    ),
    _rule(
        "jest-cross",
        r"^\s*[\u2715\u2716\u2717\u2718\u00d7] \S",
        ERROR,
        "test",
        50,
        0,
        ("\u2715", "\u2716", "\u2717", "\u2718", "\u00d7"),
    ),
    _rule(
        "mocha-failing",
        r"^\s*\d+ failing$",
        ERROR,
        "test",
        30,
        F_SUMMARY | F_OPEN,
        ("failing",),
        _h_mocha_failing,
    ),
    _rule(
        "rspec-section",
        r"^(?:Failures|Errors):\s*$",
        NONE,
        "",
        0,
        F_OPEN,
        ("failures:", "errors:"),
        _h_rspec_section,
    ),
    _rule(
        "phpunit-section",
        r"^There (?:was|were) \d+ (?:failures?|errors?):$",
        NONE,
        "",
        0,
        F_OPEN,
        ("there was", "there were"),
        _h_phpunit_section,
    ),
    _rule("numbered", r"^\s*\d+\) (?P<title>\S.*)$", NONE, "", 0, 0, (") ",), _h_numbered),
    _rule(
        "scalatest",
        r"^(?:\[info\] )?- (?P<test>.+?) \*\*\* FAILED \*\*\*",
        ERROR,
        "test",
        90,
        F_OPEN,
        ("*** failed",),
        _h_named_failure("scalatest"),
    ),
    _rule(
        "bazel-test",
        r"^FAIL: (?P<test>//\S+)",
        ERROR,
        "test",
        85,
        0,
        ("fail: //",),
        _h_named_failure("bazel", capture=None),  # the reason is in the test.log it points to
    ),
    _rule(
        "rspec-failure-error",
        r"^\s*Failure/Error: ",
        NONE,
        "",
        0,
        F_CONT,
        ("failure/error",),
    ),
    _rule(
        "rspec-list",
        r"^rspec (?P<file>\./\S+?):\d+ # (?P<test>.+)$",
        ERROR,
        "test",
        80,
        F_CONT,
        ("rspec ",),
        _h_rspec_list,
    ),
    _rule(
        "rspec-outcome",
        r"^\d+ examples?, [1-9]\d* failures?",
        ERROR,
        "test",
        25,
        F_SUMMARY,
        ("failure",),
    ),
    _rule(
        "cargo-test",
        r"^test (?P<test>\S+) \.\.\. FAILED$",
        ERROR,
        "test",
        80,
        0,
        ("... failed",),
        _h_cargo_test,
    ),
    # The per-test report section: what a person reads (the progress line above is a pointer).
    _rule(
        "cargo-section",
        r"^---- (?P<test>\S+) stdout ----$",
        ERROR,
        "test",
        90,
        F_OPEN,
        (" stdout ----",),
        _h_cargo_test,
    ),
    _rule(
        "cargo-panic",
        r"^thread '(?P<test>[^']+)' panicked at (?:'(?P<msg>.*)', \S+|(?P<loc>\S+?):?)$",
        ERROR,
        "runtime",
        88,
        F_OPEN,
        ("panicked",),
        _h_cargo_panic,
    ),
    _rule(
        "cargo-outcome",
        r"^test result: FAILED\.",
        ERROR,
        "test",
        25,
        F_SUMMARY,
        ("test result",),
    ),
    _rule(
        "surefire-test",
        r"^(?:\[ERROR\] )?(?:(?P<cls>[\w$]+(?:\.[\w$]+)*)[.#](?P<m>[\w$\[\]]+)(?:\([^)]*\))?"
        r"|(?P<m2>[\w$]+)\((?P<cls2>[\w.$]+)\))\s+Time elapsed: .*<<< (?:FAILURE|ERROR)!",
        ERROR,
        "test",
        90,
        F_OPEN,
        ("<<<",),
        _h_surefire,
    ),
    _rule(
        "surefire-class",
        r"Tests run: \d+, Failures: \d+, Errors: \d+.*<<< (?:FAILURE|ERROR)!",
        ERROR,
        "test",
        40,
        F_SUMMARY | F_OPEN,
        ("<<<",),
        _h_test_class_failed,
    ),
    _rule(
        "surefire-totals",
        r"^(?:\[(?:ERROR|WARNING|INFO)\] )?Tests run: \d+, Failures: (?P<f>\d+), Errors: (?P<e>\d+)",
        ERROR,
        "test",
        25,
        F_SUMMARY,
        ("tests run",),
        _h_totals,
    ),
    _rule(
        "maven-results",
        r"^\[ERROR\] (?:Failures|Errors|Tests in error):\s*$",
        NONE,
        "",
        0,
        F_OPEN,
        ("[error]",),
        _h_maven_results,
    ),
    _rule(
        "maven-result-line",
        r"^\[ERROR\]\s{2,}(?P<test>[\w$]+\.[\w$]+)(?::\d+)?(?:->\S+)*\s(?P<msg>.+)$",
        ERROR,
        "test",
        75,
        0,
        ("[error]",),
        _h_maven_result_line,
    ),
    _rule(
        "gradle-test",
        r"^(?P<cls>[\w.$]+) > (?P<test>.+?) FAILED$",
        ERROR,
        "test",
        90,
        F_OPEN,
        (" failed",),
        _h_gradle,
    ),
    _rule(
        "gradle-task",
        r"^> Task (?P<task>\S+) FAILED$",
        ERROR,
        "test",
        40,
        F_SUMMARY,
        ("> task",),
    ),
    _rule(
        "gradle-outcome",
        r"^(?:FAILURE: Build failed with an exception|BUILD FAILED|\d+ tests completed, \d+ failed)",
        ERROR,
        "generic",
        25,
        F_SUMMARY | F_OPEN,
        ("build fail", "tests completed"),
    ),
    _rule(
        "gradle-went-wrong",
        r"^Execution failed for task '",
        ERROR,
        "generic",
        45,
        F_CONT,
        ("execution failed",),
    ),
    _rule(
        "gtest",
        r"^\[\s+FAILED\s+\] (?P<test>[\w/.]+)(?: \(\d+ ms\))?$",
        ERROR,
        "test",
        85,
        0,
        ("failed",),
        _h_gtest,
    ),
    _rule("tap", r"^not ok \d+ (?:- )?(?P<test>.+)$", ERROR, "test", 80, 0, ("not ok",), _h_tap),
    # C++: Catch2 ("tests/cart.cpp:42: FAILED:"), Boost.Test ('cart.cpp(42): error: in "cart/total": ...'),
    # CTest's closing list ("  3 - unit_tests (Failed)").
    _rule(
        "catch2",
        r"^(?P<test>\S+\.\w+:\d+): FAILED:$",
        ERROR,
        "test",
        90,
        F_OPEN,
        ("failed:",),
        _h_named_failure("catch2"),
    ),
    _rule(
        "boost-test",
        r'^\S+\(\d+\): (?:fatal )?error:? in "(?P<test>[^"]+)": ',
        ERROR,
        "test",
        90,
        0,
        ("error",),
        _h_named_failure("boost", capture=None),
    ),
    _rule(
        "ctest",
        r"^\s+\d+ - (?P<test>\S+) \((?:Failed|SEGFAULT|Timeout|Subprocess aborted|Exception|Child aborted)\)",
        ERROR,
        "test",
        70,
        0,
        ("failed)", "segfault)", "timeout)", "aborted)", "exception)"),
        _h_named_failure("ctest", capture=None),
    ),
    # R testthat ("── Failure (test-cart.R:12:3): totals include VAT ──"), Julia ("Test Failed at x.jl:12").
    _rule(
        "testthat",
        r"^\u2500\u2500 (?:Failure|Error) \((?P<file>[^:)]+):\d+(?::\d+)?\): (?P<test>.+?) \u2500+$",
        ERROR,
        "test",
        90,
        F_OPEN,
        ("failure (", "error ("),
        _h_named_failure("testthat"),
    ),
    _rule(
        "julia-test",
        r"^(?:Test Failed|Error During Test) at (?P<test>\S+:\d+)",
        ERROR,
        "test",
        90,
        F_OPEN,
        ("test failed at", "error during test"),
        _h_named_failure("julia"),
    ),
    # .NET runners: xUnit console ("[FAIL] Ns.Class.Test"), NUnit ("1) Failed : Ns.Class.Test").
    _rule(
        "xunit-nunit",
        r"^\s*(?:\[FAIL\]|\d+\) Failed :) (?P<test>[\w.+<>`]+)",
        ERROR,
        "test",
        85,
        0,
        ("[fail]", "failed :"),
        _h_named_failure("dotnet"),
    ),
    _rule(
        "dotnet-test",
        r"^\s*Failed (?P<test>[\w.]+) \[[\d.< ]+\w*\]$",
        ERROR,
        "test",
        85,
        0,
        ("failed ",),
        _h_dotnet,
    ),
    # ---- compilers, type checkers, linters --------------------------------------------------
    _rule(
        "maven-javac",
        r"^\[ERROR\] (?P<file>\S+\.(?:java|kt|scala|groovy)):\[(?P<line>\d+),(?P<col>\d+)\] (?P<msg>.*)",
        ERROR,
        "compiler",
        100,
        0,
        ("[error]",),
    ),
    _rule(
        "maven-javac-warning",
        r"^\[WARNING\] (?P<file>\S+\.(?:java|kt|scala|groovy)):\[(?P<line>\d+),(?P<col>\d+)\] ",
        WARNING,
        "compiler",
        0,
        0,
        ("[warning]",),
    ),
    _rule(
        "tsc",
        r"^(?P<file>\S+?)(?:\((?P<line>\d+),(?P<col>\d+)\)|:(?P<line2>\d+):(?P<col2>\d+))\s?[:\-]\s?error (?P<code>TS\d+): ",
        ERROR,
        "compiler",
        100,
        0,
        ("error ts",),
    ),
    _rule(
        "msvc",
        r"^(?P<file>.+?)\((?P<line>\d+)(?:,\d+)?\)\s?: (?:fatal )?error (?P<code>[A-Z]+\d+)\s?: ",
        ERROR,
        "compiler",
        100,
        0,
        ("error",),
    ),
    _rule(
        "msvc-warning",
        r"^(?P<file>.+?)\((?P<line>\d+)(?:,\d+)?\)\s?: warning (?P<code>[A-Z]+\d+)\s?: ",
        WARNING,
        "compiler",
        0,
        0,
        ("warning",),
    ),
    _rule(
        "location-error",
        r"^(?P<file>[^\s:(][^:(]*?):(?P<line>\d+)(?::(?P<col>\d+))?:?\s(?:\d+:\d+\s)?(?:fatal )?error(?:\[[\w\-]+\])?:\s",
        ERROR,
        "compiler",
        100,
        0,
        ("error",),
    ),
    _rule(
        "location-warning",
        r"^(?P<file>[^\s:(][^:(]*?):(?P<line>\d+)(?::(?P<col>\d+))?:?\s(?:\d+:\d+\s)?warning(?:\[[\w\-]+\])?:\s",
        WARNING,
        "compiler",
        0,
        0,
        ("warning",),
    ),
    _rule(
        "kotlin",
        r"^e: (?:file://)?(?P<file>\S+?\.kts?)(?::(?P<line>\d+):(?P<col>\d+)|: \((?P<line2>\d+), (?P<col2>\d+)\)):? ",
        ERROR,
        "compiler",
        100,
        0,
        ("e: ",),
    ),
    _rule("kotlin-warning", r"^w: (?:file://)?\S+?\.kts?[:(]", WARNING, "compiler", 0, 0, ("w: ",)),
    _rule("rustc", r"^error\[E\d{4}\]: ", ERROR, "compiler", 95, F_OPEN, ("error[",)),
    _rule(
        "python-lint",
        r"^(?P<file>\S+\.pyi?):(?P<line>\d+):(?P<col>\d+): (?P<code>[A-Z]{1,3}\d{3,4}) ",
        ERROR,
        "lint",
        80,
        0,
        (".py",),
        _h_lint_code,
    ),
    # lintrunner (and linters formatted like it): "  Error (MYPY) [attr-defined]", "  Warning (FLAKE8) E501"
    _rule(
        "lintrunner",
        r"^\s*(?P<sev>Error|Warning|Advice) \((?P<code>[\w\-]+)\) \S",
        ERROR,
        "lint",
        80,
        0,
        ("error (", "warning (", "advice ("),
        _h_lintrunner,
    ),
    _rule(
        "eslint",
        r"^\s+(?P<line>\d+):(?P<col>\d+)\s+(?P<sev>error|warning)\s+\S",
        ERROR,
        "lint",
        85,
        0,
        ("error", "warning"),
        _h_eslint,
    ),
    _rule(
        "go-compile",
        r"^(?P<file>\S+\.go):(?P<line>\d+):(?P<col>\d+): \S",
        ERROR,
        "compiler",
        95,
        0,
        (".go:",),
    ),
    _rule(
        "cmake-error",
        r"^\s*CMake Error\b",
        ERROR,
        "compiler",
        90,
        F_OPEN,
        ("cmake error",),
    ),
    _rule("cmake-warning", r"^\s*CMake Warning\b", WARNING, "compiler", 0, 0, ("cmake warning",)),
    _rule(
        "linker",
        r"undefined reference to [`'\u2018]|^Undefined symbols for architecture|^ld: symbol\(s\) not found|unresolved external symbol",
        ERROR,
        "compiler",
        95,
        0,
        ("undefined", "unresolved"),
    ),
    _rule("ninja-failed", r"^FAILED: ", ERROR, "compiler", 40, F_OPEN, ("failed: ",)),
    _rule(
        "lint-summary",
        r"^(?:\u2716 \d+ problems?|Found \d+ errors?(?: in \d+ files?)?\.?(?: \(|$)|\d+ errors? generated\.)",
        ERROR,
        "lint",
        20,
        F_SUMMARY,
        ("problem", "found", "generated"),
    ),
    # ---- dependency resolution ---------------------------------------------------------------
    _rule(
        "pip-resolution",
        r"^(?:ERROR: )?(?:Could not find a version that satisfies|No matching distribution found|ResolutionImpossible"
        r"|Cannot install .* because these package versions have conflicting dependencies|Could not install packages due to"
        r"|Failed building wheel for|pip's dependency resolver|Could not build wheels for)",
        ERROR,
        "dependency",
        85,
        F_OPEN,
        ("could not", "no matching", "resolution", "cannot install", "failed building", "resolver"),
    ),
    _rule(
        "solver",
        r"version solving failed|SolverProblemError|No solution found when resolving|Because .* depends on .* (?:which|and) .*"
        r"(?:doesn't match|is forbidden|requires)|Could not find a matching version of package",
        ERROR,
        "dependency",
        85,
        0,
        ("version solving", "solverproblem", "no solution", "depends on", "matching version"),
    ),
    _rule(
        "npm-dependency",
        r"^npm (?:ERR!|error) (?:code (?:ERESOLVE|E404|ETARGET|ENOTFOUND|EINTEGRITY|EPEERINVALID|ENOVERSIONS)\b|ERESOLVE|404 |notarget"
        r"|peer dep|Could not resolve dependency|Conflicting peer dependency|No matching version found|While resolving)",
        ERROR,
        "dependency",
        85,
        0,
        ("npm err", "npm error"),
    ),
    _rule(
        "yarn-dependency",
        r"^error (?:Couldn't find package|An unexpected error occurred: .*(?:Not found|404)|Package .* refers to a non-existing file"
        r"|Couldn't find any versions for)",
        ERROR,
        "dependency",
        85,
        0,
        ("error ",),
    ),
    _rule(
        "cargo-dependency",
        r"^error: (?:failed to select a version|no matching package named|failed to get .* as a dependency|failed to load source for"
        r"|failed to download|failed to parse lock file|the lock file .* needs to be updated|cyclic package dependency)",
        ERROR,
        "dependency",
        85,
        0,
        ("error:",),
    ),
    _rule(
        "go-dependency",
        r"missing go\.sum entry|no required module provides package|updates to go\.mod needed|go\.mod/go\.sum are not up-to-date"
        r"|^go: (?:.*: )?(?:reading|verifying|finding|downloading|unrecognized import path|module) .*(?:404 Not Found|410 Gone|unknown revision"
        r"|invalid version|not found|no matching versions|malformed|connection refused|i/o timeout|TLS handshake timeout)"
        r"|^go: .*: (?:invalid version|unknown revision|ambiguous import)",
        ERROR,
        "dependency",
        85,
        0,
        ("go.sum", "go.mod", "module", "go: "),
    ),
    _rule(
        "jvm-dependency",
        r"Could not resolve dependencies for project|Could not find artifact|Failed to collect dependencies|Non-resolvable parent POM"
        r"|Could not transfer artifact|resolution will not be reattempted|Could not resolve all (?:files|dependencies|artifacts) for"
        r"|^\s*> Could not (?:find|resolve) [\w.\-]+:[\w.\-]+",
        ERROR,
        "dependency",
        85,
        F_OPEN,
        ("could not", "failed to collect", "non-resolvable", "resolution will not"),
    ),
    _rule(
        "ruby-php-dependency",
        r"Could not find gem '|Bundler could not find compatible versions|Your requirements could not be resolved to an installable set",
        ERROR,
        "dependency",
        85,
        0,
        ("could not",),
    ),
    _rule(
        "apt-dependency",
        r"^E: (?:Unable to locate package|Package '.*' has no installation candidate|Unable to fetch some archives|Failed to fetch|Version '.*' for '.*' was not found)",
        ERROR,
        "dependency",
        80,
        0,
        ("e: ",),
    ),
    # ---- runtime failures ------------------------------------------------------------------------
    _rule(
        "python-traceback",
        r"^Traceback \(most recent call last\):",
        NONE,
        "",
        0,
        F_OPEN | F_TB,
        ("traceback",),
    ),
    _rule(
        "chained-exception",
        r"^(?:The above exception was the direct cause of the following exception|During handling of the above exception, another exception occurred):",
        NONE,
        "",
        0,
        F_CONT,
        ("above exception",),
        _h_chained,
    ),
    _rule(
        "exception-ignored",
        r"^Exception ignored in\b",
        NONE,
        "",
        0,
        F_CONT,
        ("exception ignored",),
        _h_exception_ignored,
    ),
    _rule(
        "pytest-banner",
        r"^!{3,} (?P<what>.+?) !{3,}$",
        ERROR,
        "runtime",
        75,
        0,
        ("!!! ",),
        _h_pytest_banner,
    ),
    # pytest prints the reason of a failure or collection error on "E   " lines; the exception
    # or assertion there is what a person quotes, more than the test's name.
    _rule(
        "pytest-e-exception",
        r"^E\s{2,}(?P<exc>" + _EXC_NAME + r")(?::\s|:?$)",
        ERROR,
        "test",
        88,
        0,
        ("error", "exception", "exit", "interrupt", "failure", "fault"),
    ),
    _rule(
        "pytest-e-assert",
        r"^E\s{2,}(?:assert\b|AssertionError\b)",
        ERROR,
        "test",
        84,
        0,
        ("assert",),
    ),
    _rule("pytest-e-line", r"^E\s{2,}\S", NONE, "", 0, F_CONT, ("e  ",)),
    _rule(
        "pytest-crash-location",
        r"^\S+\.py:\d+: " + _EXC_NAME + r"$",
        NONE,
        "",
        0,
        F_CONT,
        (".py:",),
    ),
    _rule(
        "python-warning",
        r"(?:^|:\s)(?:[A-Z]\w*)?Warning: ",
        WARNING,
        "runtime",
        0,
        0,
        ("warning: ",),
    ),
    _rule(
        "java-exception",
        r"^(?:Exception in thread \"[^\"]*\" )?(?P<exc>(?:[a-z_][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Failure))(?::\s|$)",
        ERROR,
        "runtime",
        85,
        F_OPEN | F_EXC,
        ("exception", "error", "failure"),
    ),
    _rule(
        "exception",
        r"^(?P<exc>" + _EXC_NAME + r")(?: \[[\w.\-]+\])?(?::\s|:?$)",
        ERROR,
        "runtime",
        70,
        F_EXC,
        ("error", "exception", "exit", "interrupt", "failure", "fault", "stopiteration"),
    ),
    # An exception indented under a failing test (Jest, Mocha, Node's test runner).
    _rule(
        "indented-exception",
        r"^\s{2,}(?P<exc>(?:[A-Z]\w*(?:Error|Exception))|AssertionError \[\w+\]): \S",
        ERROR,
        "test",
        78,
        0,
        ("error", "exception"),
    ),
    # go test: "    file_test.go:31: expected ..." is the failing assertion's message.
    _rule(
        "go-test-message",
        r"^\s+(?P<file>\w+_test\.go):\d+: \S",
        ERROR,
        "test",
        76,
        0,
        ("_test.go:",),
    ),
    _rule(
        "ruby-exception",
        r"^\S+\.rb:\d+:in [`'][^'`]*': .* \((?P<exc>[\w:]+)\)$",
        ERROR,
        "runtime",
        85,
        0,
        (".rb:",),
    ),
    _rule(
        "php-fatal",
        r"^PHP (?:Fatal error|Parse error):",
        ERROR,
        "runtime",
        90,
        0,
        ("php",),
    ),
    _rule(
        "php-warning", r"^PHP (?:Warning|Notice|Deprecated):", WARNING, "runtime", 0, 0, ("php",)
    ),
    _rule(
        "go-panic",
        r"^(?:panic: |fatal error: (?!\S+\.h: )|runtime error: )",
        ERROR,
        "runtime",
        88,
        F_OPEN,
        ("panic", "fatal error", "runtime error"),
    ),
    _rule(
        "crash",
        r"Segmentation fault|core dumped|\bBus error\b|Illegal instruction|\bOOMKilled\b|out of memory|No space left on device"
        r"|^Killed$|Received signal: SIG[A-Z]+|heap limit Allocation failed",
        ERROR,
        "runtime",
        85,
        0,
        (
            "segmentation",
            "core dumped",
            "bus error",
            "illegal instruction",
            "oomkilled",
            "out of memory",
            "no space left",
            "killed",
            "received signal",
            "heap limit",
        ),
    ),
    _rule(
        "timeout",
        r"\b(?:timed out after|has timed out|has exceeded the maximum execution time|exceeded the timeout|Timeout of \d+ms exceeded)\b",
        ERROR,
        "infra",
        75,
        0,
        ("timed out", "exceeded", "timeout of"),
    ),
    _rule(
        "cancelled",
        r"^(?:The operation was cancell?ed|The runner has received a shutdown signal|A task was cancell?ed|.*\breceived SIG(?:INT|TERM)\b)",
        ERROR,
        "infra",
        80,
        0,
        ("operation was cancel", "shutdown signal", "received sig", "task was cancel"),
    ),
    # Generic "X failed/exited with code N" lines wrap the real error printed before them.
    _rule(
        "exit-wrapper",
        r"\b(?:failed|exited|returned|completed|terminated)\b(?: \w+){0,3} (?:with )?(?:a )?(?:non-zero )?(?:exit |return |error )?"
        r"(?:code|status)\s*[:=]?\s*-?\d+|returned non-zero exit (?:status|code)|non-zero exit (?:status|code)|\bsubprocess exited\b",
        ERROR,
        "generic",
        15,
        F_WRAPPER,
        ("code", "status", "subprocess exited"),
    ),
    # ---- generic level tags and prose ------------------------------------------------------------
    _rule(
        "docker-error",
        r"^(?:#\d+ (?:\d+\.\d+ )?)?(?:ERROR|error)(?: \[[^\]]+\])?: (?:failed to (?:solve|build|compute cache key|copy)|process \".*\" did not complete)"
        r"|^Error response from daemon: ",
        ERROR,
        "infra",
        80,
        0,
        ("failed to", "did not complete", "error response"),
    ),
    _rule(
        "maven-goal",
        r"^\[ERROR\] Failed to execute goal ",
        ERROR,
        "generic",
        50,
        F_OPEN,
        ("[error]",),
    ),
    _rule(
        "maven-compilation-header",
        r"^\[ERROR\] COMPILATION ERROR\s*:?$",
        ERROR,
        "compiler",
        30,
        F_OPEN,
        ("[error]",),
    ),
    _rule(
        "git-fatal",
        r"^(?:fatal|FATAL|Fatal)(?: error)?: \S",
        ERROR,
        "generic",
        80,
        0,
        ("fatal",),
    ),
    _rule(
        "level-error",
        r"^\s*(?:\[(?:ERROR|FATAL|CRITICAL|SEVERE|E)\]|<error>|\[error\]|(?:ERROR|FATAL|CRITICAL|SEVERE)(?:[:!]|\s+-\s|\s+(?=\S))"
        r"|#\d+ (?:\d+\.\d+ )?ERROR\b)",
        ERROR,
        "generic",
        72,
        0,
        ("error", "fatal", "critical", "severe", "[e]"),
    ),
    _rule(
        "error-colon",
        r"^\s*(?:Error|error|ERROR|Fatal error|FATAL ERROR|E)(?:\[[\w\-]+\])?:\s*\S",
        ERROR,
        "generic",
        75,
        0,
        ("error", "e:"),
    ),
    _rule(
        "npm-error",
        r"^npm (?:ERR!|error) ",
        ERROR,
        "generic",
        60,
        0,
        ("npm err", "npm error"),
    ),
    _rule(
        "glog",
        r"^(?P<sev>[EFW])\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ",
        ERROR,
        "generic",
        55,
        0,
        ("] ",),
    ),
    _rule(
        "level-warning",
        r"^\s*(?:\[(?:WARNING|WARN|W)\]|(?:WARNING|WARN)(?:[:!]|\s+-\s|\s+(?=\S))|[Ww]arning:|npm (?:WARN|warn)\b|W: |DEPRECATION:|\[DEPRECATION\]"
        r"|\[warn\])",
        WARNING,
        "generic",
        0,
        0,
        ("warn", "deprecation", "w: "),
    ),
    _rule(
        "logger-error",
        r"^\S.{0,80}?[\s\[|](?:ERROR|FATAL|CRITICAL|SEVERE)[\]\s:|]",
        ERROR,
        "generic",
        60,
        0,
        ("error", "fatal", "critical", "severe"),
    ),
    _rule(
        "logger-warning",
        r"^\S.{0,80}?[\s\[|](?:WARNING|WARN)[\]\s:|]",
        WARNING,
        "generic",
        0,
        0,
        ("warn",),
    ),
    _rule(
        "prose-failure",
        r"^\s*(?:Failed|Unable|Could not|Couldn't|Cannot|Can't|Can not|An error occurred|Error while|Error when|Error during)\b",
        ERROR,
        "generic",
        62,
        0,
        ("fail", "unable", "could not", "couldn't", "cannot", "can't", "can not", "error"),
    ),
    _rule(
        "os-error",
        r"\b(?:No such file or directory|Permission denied|command not found|Connection refused|Connection reset|Operation not permitted"
        r"|Name or service not known|Could not resolve host|certificate verify failed|Access Denied|AccessDenied|not authorized to perform"
        r"|401 Unauthorized|403 Forbidden|rate limit exceeded)\b|: not found$",
        ERROR,
        "generic",
        68,
        0,
        (
            "no such file",
            "denied",
            "not found",
            "refused",
            "reset",
            "not permitted",
            "not known",
            "resolve host",
            "verify failed",
            "not authorized",
            "unauthorized",
            "forbidden",
            "rate limit",
        ),
    ),
    _rule(
        "error-anywhere",
        r"(?:^|[\s(\[])(?:error|ERROR|Error)(?:\[[\w\-]+\])?:\s",
        ERROR,
        "generic",
        55,
        0,
        ("error",),
    ),
    _rule(
        "fail-upper",
        r"\b(?:FAILED|FAILURE|FAIL)\b",
        ERROR,
        "generic",
        42,
        F_SUMMARY,
        ("fail",),
    ),
    _rule(
        "failed-phrase",
        r"\bfailed(?:[.!:,;]| to | with | because |$)|\bfailure:",
        ERROR,
        "generic",
        48,
        0,
        ("failed", "failure:"),
    ),
]

_TEST_HEADER_RULES = frozenset(
    {
        "pytest-header",
        "surefire-test",
        "gradle-test",
        "go-fail",
        "jest-header",
        "unittest",
        "cargo-section",
        "mocha-failure",
        "exunit-failure",
        "phpunit-failure",
        "scalatest",
        "rspec-failure",
    }
)

# "RuntimeError: test_foo 1/1 failed!": an exception that only says that something failed.
_OUTCOME_ONLY_RE = re.compile(r"^[\w.]+: .{0,80}\bfailed[!.]?$")

# "Lint failed!", "test_cuda 1/1 failed!": a generic line that only reports an outcome.
_SAYS_ONLY_FAILED_RE = re.compile(
    r"^\s*(?:\S+\s+){0,4}\S*\s*(?:has |have )?failed[!.]?$", re.IGNORECASE
)

# Lines that only look like errors: zero counts, options, identifiers, passing results.
_BENIGN_TAIL_RE = re.compile(
    r"(?:\b(?:PASSED|PASS|passed)|\u2713|\u2714)\s*$|(?:\.\.\.|\s-)\s*(?:ok|OK)$"
    # a statistics row whose value is zero: "Failed distributed compilations        0"
    r"|\s\s0(?:\.0+)? ?%?$"
)
_ZERO_COUNT_RE = re.compile(
    r"\b0 (?:errors?|failures?|failed|failing|problems?)\b|\b(?:errors?|failures?|failed)\s*[:=]?\s*0\b(?![.\d])",
    re.IGNORECASE,
)
_PASSED_RE = re.compile(r"(?:\b(?:PASSED|PASS|passed)|\u2713|\u2714)\s*[\[(]|^ok\s+\S+\s+[\d.]+s")
_BENIGN_WORDS = (
    "-werror",
    "--fail",
    "fail-fast",
    "fail_fast",
    "continue-on-error",
    "if-no-files-found",
    "ignore-error",
    "ignore_error",
    "ignoreerror",
    "error-log",
    "error_log",
    "error.log",
    "errorprone",
    "error-prone",
    "error-page",
    "error_page",
    "no error",
    "without error",
)
_ERROR_IDENTIFIER_RE = re.compile(r"\bError(?:s|Handler|Boundary)\.\w")  # ErrorHandler.java


def _benign(head: str, low: str) -> bool:
    """Lines that only look like errors: zero counts, options, identifiers, passing results.

    Cheap checks first (this runs on every generic-looking line of a log)."""
    if _BENIGN_TAIL_RE.search(head[-48:]):
        return True
    if any(word in low for word in _BENIGN_WORDS):
        return True
    if "0" in head and _ZERO_COUNT_RE.search(head):
        return True
    if "error" in low and _ERROR_IDENTIFIER_RE.search(head):
        return True
    return (
        "pass" in low or "ok" in low or "\u2713" in low or "\u2714" in low
    ) and _PASSED_RE.search(head) is not None


# A leading "[info]"/"[ERROR]" tag is not part of a captured test failure message.
_LEVEL_TAG_RE = re.compile(r"^\[(?:info|error|warn|INFO|ERROR|WARN(?:ING)?)\]\s*")

# Failing to upload artifacts/metrics or to use a build cache rarely fails a build: these
# lines come from post-processing (often after the real failure) and mislead when chosen.
_POSTPROCESS_WORDS = (
    "upload",
    "publish",
    "metric",
    "stats",
    "telemetry",
    "cache",
    "storage",
    "write check",
)
_POSTPROCESS_RE = re.compile(
    r"\b(?:upload(?:ing|ed|s)?|publish(?:ing)? (?:metrics|stats|results)|(?:emit|send)(?:ting|ing)? (?:metrics|stats|telemetry)"
    r"|telemetry|(?:cache|storage) (?:write|read|upload)|write check failed)\b",
    re.IGNORECASE,
)
# Rules that still apply on a benign-looking line (they are specific enough not to be fooled).
_GENERIC_RULES = frozenset(
    {
        "level-error",
        "error-colon",
        "logger-error",
        "logger-warning",
        "prose-failure",
        "error-anywhere",
        "fail-upper",
        "failed-phrase",
        "os-error",
        "exit-wrapper",
        "level-warning",
    }
)


def _build_trigger_index() -> tuple[Any, tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """One RE2 set of every rule trigger: a single call says which rules a line may match
    (about 1.5 us, where testing each trigger substring in Python costs ten times more)."""
    table: dict[str, list[int]] = {}
    always = []
    for i, r in enumerate(_RULES):
        if not r.triggers:
            always.append(i)
        for t in r.triggers:
            table.setdefault(t, []).append(i)
    trigger_set = re2.Set.SearchSet()
    rules_of: list[tuple[int, ...]] = []
    for trigger, indexes in table.items():
        trigger_set.Add(re.escape(trigger))
        rules_of.append(tuple(indexes))
    trigger_set.Compile()
    return trigger_set, tuple(rules_of), tuple(always)


_TRIGGER_SET, _TRIGGER_RULES, _ALWAYS = _build_trigger_index()
_RAW_TRIGGER_SET = getattr(_TRIGGER_SET, "_set", None)  # see _hit_spans


def _triggers(low: str) -> list[int] | None:
    """The triggers found in ``low``: ``_TRIGGER_SET.Match(low)``."""
    if _RAW_TRIGGER_SET is None:
        return _TRIGGER_SET.Match(low)
    return _RAW_TRIGGER_SET.Match(low.encode("utf-8"))


# Rules that still matter on an INFO/DEBUG line: they record state (test summaries end a test
# class's scope) or mark CI steps.
_QUIET_RULES = frozenset(
    i for i, r in enumerate(_RULES) if r.handler is not None or r.flags & (F_TERM | F_SECTION)
)

# The rules to try on a line, by (triggers found, quiet): (rule, its bound search, generic?) in
# table order. Few trigger combinations occur in a log, so building this list once per
# combination saves the set/sort work and the attribute lookups that each line would pay.
_Plan = tuple[tuple[_Rule, Callable[[str], "re.Match[str] | None"], bool], ...]
_PLANS: dict[tuple[frozenset[int], bool], _Plan] = {}
_MAX_PLANS = 4096  # an adversarial log could make many combinations: memory stays bounded
_NO_TRIGGERS: frozenset[int] = frozenset()

# What the rules say about a line's text when no handler took part: (quiet, the rule that
# matched or None), or _WARNING_VERDICT for a line with a warning level tag. See _classify.
_Verdict = tuple[bool, "_Rule | None"]
_WARNING_TAG = _Rule("level-warning", _WARNING_TAG_RE, WARNING, "generic", 0)
_WARNING_VERDICT: _Verdict = (False, _WARNING_TAG)
_MAX_VERDICTS = 2048  # lines remembered per log (up to 2 MB of text)


def _plan(triggers: frozenset[int], quiet: bool) -> _Plan:
    key = (triggers, quiet)
    plan = _PLANS.get(key)
    if plan is None:
        indexes = set(_ALWAYS)
        for trigger in triggers:
            indexes.update(_TRIGGER_RULES[trigger])
        plan = tuple(
            (_RULES[i], _RULES[i].pattern.search, _RULES[i].name in _GENERIC_RULES)
            for i in sorted(indexes)
            # An INFO line is never an error: only rules with side effects matter.
            if not quiet or i in _QUIET_RULES
        )
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


# A stack frame printed after its exception (JVM, Node, Ruby, Go).
_FRAME_AFTER_RE = re.compile(r"^\s+(?:at |# \S+:\d+|\S+\.go:\d+)")

# Continuation: the line belongs to the block above it (frames, details, code excerpts).
_CONT_RE = re.compile(
    r"^(?:\s|at |Caused by|\.\.\. \d+ more|File \"|E\s|>|\||\^|~|-->|= note|note:|help:|Suppressed:|\+|-(?!-- ?(?:PASS|RUN))"
    r"|\[ERROR\]|\[FATAL\]|npm ERR!|npm error|symbol:|location:|required:|found:|reason:|[\u2502\u2575\u2577\u256d\u2570]|#\s|\d+ \||goroutine \d+ \[|created by |\[signal SIG)"
)
_CHAINED_RE = re.compile(
    r"^(?:The above exception was the direct cause|During handling of the above exception)"
)
# Lines that end a block even if indented: passing results and CI markup.
_BREAK_RE = re.compile(
    r"^(?:\s*(?:\u2713|\u2714|PASS\b|ok\s)|=== RUN|--- PASS|ok\s+\S+\s+[\d.]+s|\[INFO\]|##\[(?:group|endgroup)\]|Post job cleanup)"
)
# A header line right before an error belongs to its block ("# pkg", "In function", "* What went wrong:").
_HEADER_RE = re.compile(
    r"^(?:# \S+|\S.*: In (?:function|member function|instantiation)|In file included from|\* What went wrong:|> Task \S+ FAILED"
    r"|\s*FAIL {1,2}\S+|\S.*:\s*$)"
)


# --------------------------------------------------------------------------------------------
# Analyzer internals


@dataclass(slots=True)
class _Pending:
    """A Mocha failure whose multi-line title is still being read."""

    runner: str
    parts: list[str]
    line: int
    complete: bool


@dataclass(slots=True)
class _Block:
    id: int
    start: int
    end: int
    section: int
    lines: list[str] = field(default_factory=list)
    has_test: bool = False
    gap: int = 0
    origin: int = 0  # first line of the run of blocks this one continues (see _split_block)
    best: int = 0  # best candidate score seen in the block
    # Last line that says more than a wrapper or a summary: an excerpt ends there, not on the
    # "make: *** Error 1" / "FAIL pkg 0.5s" lines that close the block.
    last_strong: int = 0


@dataclass(slots=True)
class _Candidate:
    line: int
    text: str
    kind: str
    score: int
    section: int
    block: int
    order: int
    flags: int
    frames: tuple[str, ...] = ()


def _traceback_start(block: _Block, line: int, start: int) -> int:
    """Where the excerpt of an exception that ends a Python traceback starts: at the innermost
    frame of the project's own code (the call that led into the failure; the library frames
    under it stay), not at the outermost frames of the runner, the harness and the entry point
    that a long traceback opens with. A chained exception ("The above exception was the direct
    cause ...") starts at its cause's traceback, so the cause stays in the excerpt. ``start``
    when ``line`` does not end a traceback."""
    ln = line - 1
    while True:
        header = chosen = innermost = None
        while ln >= start:
            text = block.lines[ln - block.start].lstrip()
            if text.startswith("Traceback (most recent call last)"):
                header = ln
                break
            if text.startswith('File "'):
                if innermost is None:
                    innermost = ln
                if chosen is None and not any(marker in text for marker in LIBRARY_MARKERS):
                    chosen = ln
            ln -= 1
        if innermost is None:
            return start  # not a traceback, or a cause whose frames are not in the block
        if chosen is None:
            chosen = innermost  # only library frames: where it was raised
        result = header if header is not None and chosen == header + 1 else chosen
        if header is None:
            return result
        ln = header - 1
        while ln >= start and not block.lines[ln - block.start].strip():
            ln -= 1
        if ln < start or not _CHAINED_RE.match(block.lines[ln - block.start]):
            return result
        ln -= 1


def _group(cand: _Candidate) -> int:
    """The excerpt block a candidate belongs to; a line outside any block is a group alone."""
    return cand.block if cand.block >= 0 else -1 - cand.order


class LogAnalyzer:
    """Incremental analyzer: ``feed``/``feed_bytes`` pieces of a log, then ``finish()``.

    Memory stays bounded whatever the log size: counts are exact, but only the first
    :data:`MAX_FINDINGS` errors/warnings/failures, a bounded pool of primary-error candidates and
    a bounded number of excerpt blocks are kept.
    """

    def __init__(self) -> None:
        self._line_no = 0
        self._carry = b""
        self._carry_overflow = False
        self._pending_lines: list[bytes] = []
        self._pending_size = 0
        self._tail = b""  # end of the previous chunk, for looking back across a chunk boundary
        self._begin = 0  # where the lines being analysed start in the chunk (see _process)
        self._finished: LogAnalysis | None = None

        self.error_count = 0
        self.warning_count = 0
        self._errors: list[_Candidate] = []
        self._warnings: list[tuple[int, str, str]] = []
        self._failures: list[list[Any]] = []  # [runner, test, message, line, file]
        self._failure_index: dict[tuple[str, str], list[Any]] = {}

        self._section = 0
        self._failed_sections: set[int] = set()
        self._block: _Block | None = None
        self._block_seq = 0
        self._blocks: dict[int, _Block] = {}
        self._candidates: list[_Candidate] = []
        self._recent_candidates: deque[_Candidate] = deque(maxlen=_MAX_CANDIDATES // 2)
        self._order = 0

        # parser context
        self._ctx_pytest = False
        self._ctx_list = ""  # "mocha" | "rspec" | "phpunit": numbered failure entries follow
        self._ctx_maven_results = False
        self._jest_file: str | None = None
        self._pending: _Pending | None = None
        # (failure record, how to find its message, lines seen, line it was requested on)
        self._capture: tuple[list[Any], str, int, int] | None = None
        self._step_header_until = 0
        self._tb_state = 0  # 1: inside Python traceback frames
        self._tb_frames: list[str] = []
        # JVM/JS exceptions print their frames after the message: they go to this candidate.
        self._frames_for: _Candidate | None = None
        self._last_exc_candidate: _Candidate | None = None
        self._tb_ignored = False  # "Exception ignored in ...": the next traceback failed nothing
        # "During handling of the above exception ...": the next exception is secondary.
        self._tb_secondary = False
        self._scope_order = 0  # first candidate printed since the last test-class result
        self._verdicts: dict[str, _Verdict] = {}  # see _classify

    # ---- feeding ----------------------------------------------------------------------------

    def feed(self, line: str) -> None:
        """Feed one line (without its trailing newline)."""
        if self._finished is not None:
            raise RuntimeError("this log analysis is finished; start a new LogAnalyzer")
        if line.endswith("\n"):
            line = line[:-1]
        data = line.encode("utf-8", "surrogatepass") + b"\n"
        self._pending_lines.append(data)
        self._pending_size += len(data)
        if self._pending_size >= CHUNK_BYTES:
            self._flush_lines()

    def feed_text(self, text: str) -> None:
        """Feed an arbitrary piece of decoded log text (lines may span calls)."""
        self.feed_bytes(text.encode("utf-8", "surrogatepass"))

    def feed_bytes(self, data: bytes) -> None:
        """Feed an arbitrary piece of the raw log (lines may span calls).

        The fastest way in: appended log chunks can be passed as they arrive.
        """
        if self._finished is not None:
            raise RuntimeError("this log analysis is finished; start a new LogAnalyzer")
        if self._pending_lines:
            self._flush_lines()
        if not data:
            return
        cut = data.rfind(b"\n")
        if cut == -1:
            self._append_carry(data)
            return
        # The whole lines of ``data`` are analysed in place: copying a chunk costs more than
        # it seems (fresh pages for each 1 MB copy).
        begin = 0
        if self._carry:
            first = data.find(b"\n")
            line = self._carry + data[:first]
            self._carry = b""
            overflow, self._carry_overflow = self._carry_overflow, False
            if overflow or len(line) > _MAX_LINE_BYTES:
                line = line[:_MAX_LINE_BYTES]
            self._process(line + b"\n")
            begin = first + 1
        if begin <= cut:
            self._process(data, begin, cut + 1)
        self._append_carry(data[cut + 1 :])

    def _append_carry(self, data: bytes) -> None:
        if not data:
            return
        if self._carry_overflow:
            return  # the rest of an over-long line: counted when its newline arrives
        self._carry += data
        if len(self._carry) > _MAX_LINE_BYTES:
            self._carry = self._carry[:_MAX_LINE_BYTES]
            self._carry_overflow = True

    def _flush_lines(self) -> None:
        data = b"".join(self._pending_lines)
        self._pending_lines = []
        self._pending_size = 0
        self.feed_bytes(data)

    def finish(self) -> LogAnalysis:
        """Close the log and return the analysis (idempotent)."""
        if self._finished is not None:
            return self._finished
        if self._pending_lines:
            self._flush_lines()
        if self._carry or self._carry_overflow:
            line, self._carry, self._carry_overflow = self._carry, b"", False
            self._process(line + b"\n")
        if self._block is not None:
            self._close_block()
        self._finished = self._build_result()
        return self._finished

    # ---- the scan -----------------------------------------------------------------------------

    def _process(self, buf: bytes, begin: int = 0, end: int | None = None) -> None:
        """Analyse ``buf[begin:end]``: whole lines, each ending with ``\\n``."""
        n = len(buf) if end is None else end
        pos = self._begin = begin
        line_no = self._line_no
        # Hits always start at a line start, in order: the same scan tells block mode which of
        # its lines are hits, so both modes classify exactly the same lines.
        spans = _hit_spans(buf, begin, n)
        spans.append((n, n))  # sentinel
        i = 0
        while pos < n:
            if self._block is not None:
                # Line by line while a block is open: its continuation lines matter too.
                while pos < n and self._block is not None:
                    while spans[i][0] < pos:
                        i += 1
                    end = buf.find(b"\n", pos)
                    line_no += 1
                    self._block_line(line_no, buf[pos:end], spans[i][0] == pos)
                    pos = end + 1
                continue
            while spans[i][0] < pos:
                i += 1
            start, end = spans[i]
            if start >= n:
                line_no += buf.count(b"\n", pos, n)
                pos = n
                break
            line_no += buf.count(b"\n", pos, start) + 1
            self._hit_line(line_no, buf[start:end], buf, start)
            pos = end + 1
        self._line_no = line_no
        # The last few KB of the log, starting at a line start (see _lookback).
        if n - begin < _TAIL_BYTES:
            tail = self._tail + buf[begin:n]
        else:
            tail = buf[max(begin, n - 2 * _TAIL_BYTES) : n]
        if len(tail) > _TAIL_BYTES:
            tail = tail[-_TAIL_BYTES:]
            tail = tail[tail.find(b"\n") + 1 :]
        self._tail = tail

    def _decode(self, raw: bytes) -> str:
        if len(raw) > _MAX_LINE_BYTES:
            raw = raw[:_MAX_LINE_BYTES]
        return clean_line(raw.decode("utf-8", "replace"))

    def _hit_line(self, line_no: int, raw: bytes, buf: bytes, start: int) -> None:
        text = self._decode(raw)
        cls, shown = self._classify(text, line_no)
        if cls is None:
            return
        self._record(line_no, shown, cls)
        if cls.flags & F_TERM:
            self._terminate_section(line_no, buf, start)
            return
        if cls.level == ERROR or cls.flags & F_OPEN:
            if cls.flags & (F_NOISE | F_WRAPPER | F_SUMMARY) and not cls.flags & F_OPEN:
                return
            self._open_block(line_no, shown, buf, start)
            cand = self._last_cand
            if cand is not None and cand.line == line_no and self._block is not None:
                cand.block = self._block.id
                self._block.best = max(self._block.best, cand.score)
            if cls.rule in _TEST_HEADER_RULES and self._block is not None:
                self._block.has_test = True

    def _block_line(self, line_no: int, raw: bytes, hit: bool) -> None:
        block = self._block
        assert block is not None
        if len(block.lines) >= _MAX_BLOCK_STORE:
            block = self._split_block(line_no)
        text = self._decode(raw)
        cls = None
        shown = text
        if hit:
            cls, shown = self._classify(text, line_no)
        if cls is not None:
            self._record(line_no, shown, cls)
            if cls.flags & F_TERM:
                self._close_block()
                self._terminate_section(line_no, None, 0)
                return
        self._context_line(line_no, text, cls)
        if self._block is None:
            return
        if cls is not None and (cls.level == ERROR or cls.flags & (F_CONT | F_OPEN | F_NOISE)):
            continues = True
        else:
            continues = bool(
                text and not _BREAK_RE.match(text) and (_CONT_RE.match(text) or self._tb_state == 1)
            )
        block.lines.append(shown[:_MAX_EXCERPT_LINE_CHARS])
        if continues:
            block.end = line_no
            block.gap = 0
            if cls is None or not cls.flags & _WEAK_FLAGS:
                block.last_strong = line_no
        else:
            block.gap += 1
            if block.gap >= _MAX_GAP:
                self._close_block()
                return
        if line_no - block.origin >= _MAX_BLOCK_SPAN:
            self._close_block()

    # ---- classification -------------------------------------------------------------------------

    def _classify(self, text: str, line_no: int, *, probe: bool = False) -> tuple[_Cls | None, str]:
        """Classify one cleaned line; returns (classification or None, text to show).

        With ``probe`` the line is only looked at: no handler runs, no parser state changes
        (used when looking back at lines that were already analysed).
        """
        ann = None
        m = _ANNOTATION_RE.match(text) if text.startswith(("##[", "::")) else None
        if m is not None:
            ann = m.group("a") or m.group("b")
            text = text[m.end() :]
            if ann in ("group", "section"):
                if ann == "section" and text.startswith("Starting: "):
                    return _Cls(NONE, "", 0, F_SECTION, "azure-step"), text  # Azure Pipelines step
                if text.startswith("Run "):
                    if not probe:
                        self._step_header_until = line_no + _MAX_STEP_HEADER
                    return _Cls(NONE, "", 0, F_SECTION, "gha-step"), text
                return None, text
            if ann in ("endgroup", "command", "debug", "notice"):
                if ann == "endgroup" and not probe:
                    self._step_header_until = 0
                return None, text
        if self._step_header_until >= line_no and not probe:
            if ann is None:
                return None, text  # the step's script and env, echoed by the runner: not output
            self._step_header_until = 0
        head = text if len(text) <= _MAX_CLASSIFY_CHARS else text[:_MAX_CLASSIFY_CHARS]
        result: _Cls | None = None
        # Logs repeat lines (stack frames, retries, the same warning): what the rules said about
        # a line's text is reused when no handler (parser state) had a say in it.
        verdict = self._verdicts.get(head) if ann is None else None
        if verdict is None:
            # An explicit log level says what the line is, whatever words it contains. Level
            # tags start with one of a few characters: most lines skip both regexes.
            first = head.lstrip()[:1]
            quiet = first in _QUIET_TAG_STARTS and _QUIET_TAG_RE.match(head) is not None
            if ann != "error" and first in _WARNING_TAG_STARTS and _WARNING_TAG_RE.match(head):
                if ann is None:
                    self._remember(head, _WARNING_VERDICT)
                return _Cls(WARNING, "generic", 0, 0, "level-warning"), text
            low = head.lower()
            triggers = _triggers(low)
            benign = None
            matched = None
            pure = True
            for rule, search, generic in _plan(
                frozenset(triggers) if triggers else _NO_TRIGGERS, quiet
            ):
                if generic:
                    if benign is None:
                        benign = _benign(head, low)
                    if benign:
                        continue
                m = search(head)
                if m is None:
                    continue
                cls = _Cls(rule.level, rule.kind, rule.score, rule.flags, rule.name)
                if rule.handler is not None:
                    pure = False
                    if not probe:
                        override = rule.handler(self, m, line_no, head)
                        if override is not None:
                            if override is _SKIP:
                                continue
                            cls = override
                result = cls
                matched = rule
                break
            if pure and ann is None:
                self._remember(head, (quiet, matched))
        elif verdict[1] is _WARNING_TAG:
            return _Cls(WARNING, "generic", 0, 0, "level-warning"), text
        else:
            quiet, rule = verdict
            if rule is None:
                return None, text
            low = head.lower()
            result = _Cls(rule.level, rule.kind, rule.score, rule.flags, rule.name)
        if quiet and result is not None:
            # "[INFO] BUILD FAILURE": rules still see the line (test summaries end test scopes)
            # but an explicit INFO/DEBUG level is never an error or a warning.
            result.level = NONE
            result.flags &= ~F_OPEN
        if ann == "error":
            if result is None or result.level != ERROR:
                if result is not None and result.flags & F_NOISE:
                    return result, text
                # GitHub Actions error annotation: the step itself reported this failure.
                result = _Cls(ERROR, result.kind if result else "generic", 75, 0, "annotation")
            elif not result.flags & (F_WRAPPER | F_SUMMARY):
                result.score += 3
        elif ann == "warning":
            result = _Cls(WARNING, "generic", 0, 0, "annotation")
        if result is None or probe:
            return result, text
        if result.flags & F_TB:
            self._tb_state = 1
            self._tb_frames = []
        elif self._tb_state == 1 and result.flags & F_EXC:
            result = self._traceback_exception(result)
        if result.flags & F_EXC and _OUTCOME_ONLY_RE.search(head):
            result.score = min(result.score, 45)
        elif (
            result.rule in _GENERIC_RULES
            and low.rstrip().endswith(("failed", "failed!", "failed."))
            and _SAYS_ONLY_FAILED_RE.match(head)
        ):
            result.score = min(result.score, 40)
        if (
            result.level == ERROR
            and (result.rule in _GENERIC_RULES or result.rule == "annotation")
            and any(word in low for word in _POSTPROCESS_WORDS)
            and _POSTPROCESS_RE.search(head)
        ):
            result.score = min(result.score, 30)
        return result, text

    def _remember(self, head: str, verdict: _Verdict) -> None:
        if len(self._verdicts) >= _MAX_VERDICTS:
            self._verdicts.clear()  # memory stays bounded; the lines that repeat come back
        self._verdicts[head] = verdict

    def _traceback_exception(self, cls: _Cls) -> _Cls:
        """The first unindented line after traceback frames is the exception that ended it."""
        self._tb_state = 2
        if cls.level != ERROR:
            cls.level, cls.kind = ERROR, "runtime"
        # Inside a test report the test failure is the primary story, the exception its message.
        in_test = self._ctx_pytest or (self._block is not None and self._block.has_test)
        cls.score = 80 if in_test else 92
        if self._tb_ignored:
            self._tb_ignored = False
            cls.score = 30
        elif self._tb_secondary:
            self._tb_secondary = False
            cls.score -= 6
        return cls

    def _context_line(self, line_no: int, text: str, cls: _Cls | None) -> None:
        """Per-line state inside blocks: traceback frames, pending test messages, Mocha titles."""
        target = self._frames_for
        if target is not None and target.line != line_no:
            if _FRAME_AFTER_RE.match(text) and len(target.frames) < 32:
                target.frames = (*target.frames, text)
            elif text.strip() and not text.lstrip().startswith(("Caused by", "...")):
                self._frames_for = None
        if self._tb_state == 1:
            if text.startswith((" ", "\t")):
                if text.lstrip().startswith("File ") and len(self._tb_frames) < 64:
                    self._tb_frames.append(text)
            elif text and (cls is None or not cls.flags & (F_TB | F_EXC)):
                # An unindented line that ends the traceback without an exception shape.
                self._tb_state = 2
        if self._pending is not None and (cls is None or cls.rule != "mocha-failure"):
            pending = self._pending
            stripped = text.strip()
            if not pending.complete:
                if stripped:
                    pending.parts.append(stripped.rstrip(":"))
                    pending.complete = stripped.endswith(":")
                if len(pending.parts) > 8:
                    pending.complete = True
            elif stripped:
                self._pending = None
                self._add_failure(pending.runner, " ".join(pending.parts), stripped, pending.line)
        if self._capture is not None and self._capture[3] < line_no:
            failure, how, seen, after = self._capture
            stripped = _LEVEL_TAG_RE.sub("", text.strip(), count=1)
            message = None
            if how == "pytest":
                if text.startswith("E "):
                    message = text[1:].strip()
            elif how == "exunit":
                if stripped and not re.match(r"^\S+\.exs?:\d+$", stripped):
                    message = stripped
            elif how == "exception":
                if cls is not None and cls.flags & F_EXC:
                    message = stripped
            elif how == "rspec":
                # "Failure/Error: <source>" then the details ("expected: 121", "got: 100")
                # until a blank line or the "# ./spec/..." location: join the details.
                if stripped.startswith("#") or (not stripped and failure[2]):
                    message = failure[2] or stripped
                elif stripped and not stripped.startswith("Failure/Error:"):
                    failure[2] = f"{failure[2]} {stripped}" if failure[2] else stripped
            elif stripped:
                message = stripped
            seen += 1
            if message:
                if not failure[2]:
                    failure[2] = message[:MAX_TEXT_CHARS]
                if how == "go" and failure[4] is None:
                    m = re.match(r"^(\S+?\.go):\d+: ", stripped)
                    if m:
                        failure[4] = m.group(1)
                self._capture = None
            elif seen > (200 if how in ("pytest", "exception") else 6):
                self._capture = None
            else:
                self._capture = (failure, how, seen, after)

    # ---- recording ----------------------------------------------------------------------------------

    _last_cand: _Candidate | None = None

    def _record(self, line_no: int, text: str, cls: _Cls) -> None:
        if cls.flags & F_SECTION:
            self._section += 1
        if cls.flags & F_NOISE:
            return
        if cls.level == WARNING:
            self.warning_count += 1
            if len(self._warnings) < MAX_FINDINGS:
                self._warnings.append((line_no, text[:MAX_TEXT_CHARS], cls.kind or "generic"))
            return
        if cls.level != ERROR:
            return
        self.error_count += 1
        if cls.rule in _TEST_HEADER_RULES and self._block is not None:
            self._block.has_test = True
        frames = tuple(self._tb_frames) if cls.flags & F_EXC and self._tb_state == 2 else ()
        cand = _Candidate(
            line_no,
            text[:MAX_TEXT_CHARS],
            cls.kind or "generic",
            cls.score,
            self._section,
            self._block.id if self._block is not None else -1,
            self._order,
            cls.flags,
            frames,
        )
        self._order += 1
        self._last_cand = cand
        if self._block is not None:
            self._block.best = max(self._block.best, cand.score)
        if len(self._errors) < MAX_FINDINGS:
            self._errors.append(cand)
        if cls.flags & F_EXC:
            self._last_exc_candidate = cand
            self._frames_for = cand if not frames else None
        if len(self._candidates) < _MAX_CANDIDATES // 2:
            self._candidates.append(cand)
        else:
            self._recent_candidates.append(cand)

    def _end_test_scope(self, passed: bool) -> None:
        """A test class finished. If it passed, what it printed (logged exceptions, errors the
        tests provoke on purpose) did not fail the build."""
        if passed:
            for pool in (self._recent_candidates, self._candidates):
                for cand in reversed(pool):
                    if cand.order < self._scope_order:
                        break
                    if cand.kind in ("runtime", "generic"):
                        cand.score = min(cand.score, 30)
        self._scope_order = self._order

    def _add_failure(
        self,
        runner: str,
        test: str,
        message: str,
        line: int,
        *,
        file: str | None = None,
        capture: str | None = None,
        alias: str | None = None,
    ) -> None:
        test = test[:500]
        keys = [(runner, test)]
        if alias:
            keys.append((runner, alias))
        # Maven prints "org.x.FooTest.testBar" per test and "FooTest.testBar" in its results.
        short = ".".join(test.split(".")[-2:]) if runner == "junit" else None
        if short:
            keys.append((runner, "~" + short))
        for key in keys:
            existing = self._failure_index.get(key)
            if existing is not None:
                if message and not existing[2]:
                    existing[2] = message[:MAX_TEXT_CHARS]
                if file and not existing[4]:
                    existing[4] = file
                return
        record = [runner, test, message[:MAX_TEXT_CHARS], line, file]
        if len(self._failures) < MAX_FINDINGS:
            self._failures.append(record)
            for key in keys:
                self._failure_index[key] = record
        if capture and not message:
            self._capture = (record, capture, 0, line)

    # ---- blocks and sections -------------------------------------------------------------------------

    def _open_block(self, line_no: int, text: str, buf: bytes, start: int) -> None:
        self._block_seq += 1
        block = _Block(
            self._block_seq, line_no, line_no, self._section, origin=line_no, last_strong=line_no
        )
        header = self._line_before(buf, start)
        if header is not None and header.strip() and _HEADER_RE.match(header):
            block.start = line_no - 1
            block.lines.append(header[:_MAX_EXCERPT_LINE_CHARS])
        block.lines.append(text[:_MAX_EXCERPT_LINE_CHARS])
        self._block = block

    def _lookback(self, buf: bytes, start: int) -> tuple[bytes, int, int]:
        """Bytes that end where ``start`` begins, reaching into earlier chunks when needed, so
        looking back gives the same answer however the log was split into chunks; and where
        they begin (``buf`` holds the chunk being analysed from ``self._begin`` on)."""
        begin = self._begin
        if start - begin >= _TAIL_BYTES or not self._tail:
            return buf, start, begin
        return self._tail + buf[begin:start], len(self._tail) + start - begin, 0

    def _line_before(self, buf: bytes, start: int) -> str | None:
        buf, start, lo = self._lookback(buf, start)
        prev_end = start - 1  # the "\n" ending the previous line
        if prev_end < lo:
            return None
        prev_start = max(buf.rfind(b"\n", lo, prev_end) + 1, lo)
        return self._decode(buf[prev_start:prev_end])

    def _split_block(self, line_no: int) -> _Block:
        """A block that outgrew its store goes on as a new block, so that an error deep in a
        long run of output still has its surrounding lines for an excerpt."""
        old = self._block
        assert old is not None
        keep = old.end - old.start + 1
        del old.lines[keep:]
        self._blocks[old.id] = old
        self._block_seq += 1
        new = _Block(
            self._block_seq,
            line_no,
            line_no - 1,
            old.section,
            origin=old.origin,
            last_strong=line_no - 1,
        )
        new.has_test = old.has_test
        self._block = new
        if len(self._blocks) > _MAX_BLOCKS:
            self._evict_blocks()
        return new

    def _close_block(self) -> None:
        block = self._block
        if block is None:
            return
        self._block = None
        keep = block.end - block.start + 1
        del block.lines[keep:]
        self._blocks[block.id] = block
        self._tb_state = 0
        self._frames_for = None
        self._capture = None if self._capture and self._capture[1] == "next" else self._capture
        if len(self._blocks) > _MAX_BLOCKS:
            self._evict_blocks()

    def _evict_blocks(self) -> None:
        """Keep the first blocks, the latest ones and those holding the best candidates.

        Runs when the store overflows and trims it well below the limit, so its cost is
        amortised over many blocks.
        """
        ids = sorted(self._blocks)
        keep = set(ids[:8]) | set(ids[-16:])
        ranked = sorted(ids, key=lambda b: (-self._blocks[b].best, b))
        keep |= set(ranked[: _MAX_BLOCKS // 2 - len(keep)])
        for bid in ids:
            if bid not in keep:
                del self._blocks[bid]

    def _terminate_section(self, line_no: int, buf: bytes | None, start: int) -> None:
        """A CI-level failure marker: the current section failed; what follows is a new one."""
        if self._block is not None:
            self._close_block()
        section = self._section
        self._failed_sections.add(section)
        if buf is not None:
            self._tail_candidate(line_no, buf, start, section)
        self._section += 1
        self._ctx_pytest = False
        self._ctx_list = ""
        self._ctx_maven_results = False

    def _tail_candidate(self, line_no: int, buf: bytes, start: int, section: int) -> None:
        """When a step failed without any recognisable error, its last message is the best guess."""
        lines: list[str] = []
        buf, pos, lo = self._lookback(buf, start)
        for _ in range(12):
            if pos <= lo:
                break
            prev_start = max(buf.rfind(b"\n", lo, pos - 1) + 1, lo)
            text = self._decode(buf[prev_start : pos - 1])
            pos = prev_start
            lines.append(text)
        offset = 0
        for text in lines:
            offset += 1
            stripped = _ANNOTATION_RE.sub("", text).strip()
            if not stripped:
                continue
            cls, _ = self._classify(text, line_no - offset, probe=True)
            if cls is not None and cls.flags & (
                F_NOISE | F_WRAPPER | F_TERM | F_SECTION | F_SUMMARY
            ):
                continue
            if re.match(r"^(?:shell|env):|^[A-Z_][A-Z0-9_]*: |^\+ |^##\[", stripped):
                break
            self._block_seq += 1
            block = _Block(self._block_seq, line_no - offset, line_no - offset, section, [stripped])
            self._blocks[block.id] = block
            cand = _Candidate(
                line_no - offset,
                stripped[:MAX_TEXT_CHARS],
                "generic",
                35,
                section,
                block.id,
                self._order,
                F_GUESS,
            )
            self._order += 1
            (
                self._candidates
                if len(self._candidates) < _MAX_CANDIDATES // 2
                else self._recent_candidates
            ).append(cand)
            return

    # ---- result ----------------------------------------------------------------------------------------

    def _final_scorer(self, pool: list[_Candidate]) -> Callable[[_Candidate], int]:
        """How likely each candidate is the failure: its rule's score, + a bonus when its CI
        step failed, + a bonus when it sits in one of the last error blocks before that
        failure (logs end where builds fail; errors printed early and survived are usually
        noise)."""
        failed = self._failed_sections or {max(c.section for c in pool)} if pool else set()
        groups: dict[int, dict[int, int]] = {}
        for cand in pool:
            if cand.section in failed and cand.score >= _RECENCY_MIN_SCORE:
                group = _group(cand)
                last = groups.setdefault(cand.section, {})
                last[group] = max(last.get(group, 0), cand.line)
        recent: set[tuple[int, int]] = set()
        for section, last in groups.items():
            for group, _ in sorted(last.items(), key=lambda item: item[1])[-_RECENCY_BLOCKS:]:
                recent.add((section, group))

        def final(cand: _Candidate) -> int:
            score = cand.score
            if cand.section in self._failed_sections:
                score += _FAILED_SECTION_BONUS
            if (cand.section, _group(cand)) in recent:
                score += _RECENCY_BONUS
            return score

        return final

    def _choose_primary(
        self, pool: list[_Candidate], final: Callable[[_Candidate], int]
    ) -> _Candidate | None:
        """The most likely failure line: the best final score (compiler error > test failure >
        generic error > wrapper, see :meth:`_final_scorer`). Ties go to the earliest line (the
        first error causes the rest), except that a repeated identical error points at its last
        occurrence (the retry that failed).
        """
        if not pool:
            return None
        scored = sorted(
            ((final(c), -c.line, c) for c in pool), key=lambda t: (t[0], t[1]), reverse=True
        )
        best_score, _, best = scored[0]
        for score, _, cand in scored[1:]:
            if score != best_score:
                break
            if cand.line > best.line and cand.text == best.text:
                best = cand
        return best

    def _relevant_errors(
        self,
        pool: list[_Candidate],
        primary: _Candidate | None,
        final: Callable[[_Candidate], int],
        fp: Callable[[_Candidate], str],
    ) -> list[Finding]:
        """The error lines that explain the failure, not every line that looks like an error.

        Kept: the primary error, the errors of its block, and the errors that score nearly as
        well as it (the other errors of the failing step, see :meth:`_final_scorer`). Dropped:
        errors of steps that did not fail and lines demoted to noise (post-processing, errors
        printed by test classes that passed); wrapper and summary lines ("make: *** Error 1",
        "Got exit code 1", "FAIL") when a more specific error is reported, except the outcome
        line of the failing report; repeats of a line already listed (retries, re-runs): the
        occurrence in the primary error's block, else the last one, is kept.
        """
        recorded = {c.order: c for c in self._errors}
        for c in pool:
            if not c.flags & F_GUESS:
                recorded.setdefault(c.order, c)
        cands = sorted(recorded.values(), key=lambda c: c.order)
        home = _group(primary) if primary is not None else None
        if primary is not None:
            threshold = final(primary) - _RELEVANCE_MARGIN
            specific = not primary.flags & _WEAK_FLAGS
            # The outcome line of the failing report ("1 failed, 1 passed", "FAIL pkg 0.5s"):
            # the last summary after the primary error in its block.
            outcome = None
            if specific:
                for c in cands:
                    if c.flags & F_SUMMARY and c.line > primary.line and _group(c) == home:
                        outcome = c
            kept = []
            for c in cands:
                if c is not primary and c is not outcome:
                    if specific and c.flags & _WEAK_FLAGS:
                        continue
                    if _group(c) != home and (final(c) < threshold or c.score < _LISTED_MIN_SCORE):
                        continue
                kept.append(c)
            cands = kept
        by_text: dict[str, _Candidate] = {}
        for c in cands:
            held = by_text.get(c.text)
            if held is None or _group(held) != home or c is primary:
                by_text[c.text] = c
        chosen = sorted(by_text.values(), key=lambda c: c.line)[:MAX_FINDINGS]
        return [Finding(c.line, c.text, fp(c), c.kind) for c in chosen]

    def _build_result(self) -> LogAnalysis:
        pool = [
            c
            for c in {c.order: c for c in (*self._candidates, *self._recent_candidates)}.values()
            if not c.flags & F_NOISE
        ]
        fp_cache: dict[tuple[str, str, tuple[str, ...]], str] = {}

        def fp(c: _Candidate) -> str:
            k = (c.text, c.kind, c.frames)
            if k not in fp_cache:
                fp_cache[k] = _fingerprint(c.text, kind=c.kind, frames=c.frames)
            return fp_cache[k]

        final = self._final_scorer(pool)
        primary_cand = self._choose_primary(pool, final)

        errors = self._relevant_errors(pool, primary_cand, final, fp)
        warnings = [
            Finding(line, text, _fingerprint(text, kind=kind), kind)
            for line, text, kind in self._warnings
        ]
        failures = [TestFailure(r[0], r[1], r[2] or "", r[3], r[4]) for r in self._failures]
        primary = None
        excerpt = None
        if primary_cand is not None:
            primary = Finding(
                primary_cand.line, primary_cand.text, fp(primary_cand), primary_cand.kind
            )
            excerpt = self._excerpt_for(primary_cand)
        return LogAnalysis(
            total_lines=self._line_no,
            error_count=self.error_count,
            warning_count=self.warning_count,
            errors=errors,
            warnings=warnings,
            failures=failures,
            primary_error=primary,
            excerpt=excerpt,
        )

    def _excerpt_for(self, cand: _Candidate) -> Excerpt:
        block = self._blocks.get(cand.block)
        if block is None or not (block.start <= cand.line <= block.start + len(block.lines) - 1):
            return Excerpt(cand.line, cand.line, cand.text)
        start, end = block.start, block.start + len(block.lines) - 1
        end = min(end, max(block.last_strong, cand.line))
        if end - start + 1 > MAX_EXCERPT_LINES:
            # Keep the primary line and what leads to it (Python prints the cause last) and
            # what follows (Java/JS print the frames after the message), biased to follow.
            start = max(block.start, min(cand.line - 5, end - MAX_EXCERPT_LINES + 1))
            end = start + MAX_EXCERPT_LINES - 1
        start = _traceback_start(block, cand.line, start)
        lines = block.lines[start - block.start : end - block.start + 1]
        while lines and not lines[-1].strip():
            lines.pop()
            end -= 1
        return Excerpt(start, end, "\n".join(lines))


# --------------------------------------------------------------------------------------------
# Public entry points


def analyze_lines(lines: Iterable[str]) -> LogAnalysis:
    """Analyse decoded lines (without their trailing ``\\n``)."""
    analyzer = LogAnalyzer()
    for line in lines:
        analyzer.feed(line)
    return analyzer.finish()


def analyze_text(text: str) -> LogAnalysis:
    """Analyse a whole log held in memory."""
    analyzer = LogAnalyzer()
    analyzer.feed_text(text)
    return analyzer.finish()


def analyze_stream(stream: BinaryIO | TextIO, *, chunk_size: int = CHUNK_BYTES) -> LogAnalysis:
    """Analyse a binary or text stream, reading it in chunks (constant memory).

    Prefer binary streams. A text stream must be opened with ``newline=""``: universal-newline
    mode would turn the ``\r`` of progress bars into line breaks and shift every line number.
    """
    analyzer = LogAnalyzer()
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        if isinstance(chunk, str):
            analyzer.feed_text(chunk)
        else:
            analyzer.feed_bytes(chunk)
    return analyzer.finish()


def analyze_path(path: str | Path) -> LogAnalysis:
    """Analyse a log file.

    gzip is recognised by its magic bytes (whatever the file is called); UTF-16 logs (Windows
    agents redirecting PowerShell output) by their byte-order mark. Everything else is read as
    UTF-8, invalid bytes replaced.
    """
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == b"\x1f\x8b":
            with gzip.open(raw, "rb") as gz:
                return analyze_stream(gz)  # type: ignore[arg-type]
        if magic in (b"\xff\xfe", b"\xfe\xff"):
            with io.TextIOWrapper(raw, encoding="utf-16", errors="replace", newline="") as text:
                return analyze_stream(text)
        return analyze_stream(raw)
