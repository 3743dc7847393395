"""Match errors against spells, fast, without Django.

A `SpellIndex` is built once from `SpellRecord`s and then answers many queries:

* fingerprint: the query carries a fingerprint a spell was created from (exact, score 100);
* pattern: one of the spell's regular expressions hits a line of the error;
* similarity: the error's words resemble the spell's words (TF-IDF cosine over an inverted
  index, numbers/paths/hex masked so two runs of the same failure look alike).

Why it scales: trying every pattern on every line (what Jenkins' Build Failure Analyzer does) costs
patterns x lines. Instead every pattern is analysed once for the literal text any match must
contain ("atoms", e.g. `no module named ` in `No module named '(\\w+)'`). All atoms go into one
case-insensitive literal RE2 set, which finds in a single linear pass over a line which atoms
occur; only the patterns whose atoms are all present are run, each compiled once. Patterns without
a usable atom go into a second RE2 set of whole expressions (also one linear pass). Similarity
uses posting lists, so it only touches spells that share a word with the error.

Patterns RE2 cannot compile (backreferences, lookarounds) run on the backtracking `regex` module
with a per-call timeout; a pattern that runs away is stopped, reported in `bad_patterns` and
switched off for the life of the index, so it can never hang a worker.
"""

from __future__ import annotations

import math
import re
import threading
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import re2

try:  # the backtracking engine is optional: without it, RE2-incompatible patterns are reported
    import regex as _regex
except ImportError:  # pragma: no cover - exercised only on installs without `regex`
    _regex = None

STATUSES = ("draft", "approved", "rejected")
REASONS = ("fingerprint", "pattern", "similarity")
# Lower sorts first: an exact fingerprint beats a pattern hit beats a resemblance.
_REASON_RANK = {"fingerprint": 0, "pattern": 1, "similarity": 2}
_STATUS_RANK = {"approved": 0, "draft": 1}

DEFAULT_MIN_SIMILARITY = 0.3
DEFAULT_REGEX_TIMEOUT = 0.05  # seconds per backtracking call
MAX_PATTERN_LENGTH = 1000
# Minified JS or base64 blobs can be megabytes on one line; nothing useful is matched past this.
MAX_LINE_LENGTH = 8192
MAX_QUERY_LINES = 5000
MAX_MATCHED_TEXT = 500
MIN_ATOM_LENGTH = 3
# Literal sets are cheap per byte but the program for 100k atoms needs room; this is a cap, not an
# allocation. Sets that still do not fit are split in halves until they do.
_ATOM_SET_MAX_MEM = 512 << 20
_RESIDUAL_SET_MAX_MEM = 64 << 20
# Whole-expression sets blow up the DFA when large; small shards keep each one tame.
_RESIDUAL_SHARD_SIZE = 64

# Ordinary lines from healthy CI runs. A failure pattern that matches one of these is too broad.
COMMON_LOG_LINES: tuple[str, ...] = (
    "",
    "Run actions/checkout@v4",
    "Syncing repository: octo-org/octo-repo",
    "##[group]Run npm ci",
    "##[endgroup]",
    "Post job cleanup.",
    "Cleaning up orphan processes",
    "Job succeeded",
    "Collecting requests>=2.31",
    "  Downloading requests-2.32.3-py3-none-any.whl (64 kB)",
    "Requirement already satisfied: urllib3<3,>=1.21.1 in ./venv/lib/python3.12/site-packages",
    "Successfully installed certifi-2024.8.30 idna-3.10 requests-2.32.3 urllib3-2.2.3",
    "============================= test session starts ==============================",
    "platform linux -- Python 3.12.4, pytest-8.3.2, pluggy-1.5.0",
    "collected 214 items",
    "tests/test_api.py ........................................                [ 18%]",
    "======================= 214 passed, 3 skipped in 12.31s ========================",
    "added 1302 packages, and audited 1303 packages in 21s",
    "found 0 vulnerabilities",
    "> my-app@1.0.0 build",
    "> tsc -p tsconfig.json",
    "webpack 5.94.0 compiled successfully in 4312 ms",
    "PASS src/components/Button.test.tsx (5.123 s)",
    "Tests:       58 passed, 58 total",
    "Done in 12.34s.",
    "[INFO] Scanning for projects...",
    "[INFO] Building my-service 1.4.2-SNAPSHOT",
    "[INFO] --- maven-compiler-plugin:3.13.0:compile (default-compile) @ my-service ---",
    "[INFO] Tests run: 42, Failures: 0, Errors: 0, Skipped: 0",
    "[INFO] BUILD SUCCESS",
    "> Task :app:compileJava UP-TO-DATE",
    "BUILD SUCCESSFUL in 37s",
    "go: downloading github.com/stretchr/testify v1.9.0",
    "ok  \tgithub.com/acme/widget/pkg/store\t0.412s",
    "=== RUN   TestParseConfig",
    "--- PASS: TestParseConfig (0.00s)",
    "   Compiling serde v1.0.210",
    "    Finished `release` profile [optimized] target(s) in 41.20s",
    "     Running unittests src/lib.rs (target/debug/deps/widget-3f2a9c1d)",
    "test result: ok. 17 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
    "-- The C compiler identification is GNU 13.2.0",
    "-- Configuring done (1.2s)",
    "[ 50%] Building CXX object CMakeFiles/app.dir/src/main.cpp.o",
    "[100%] Linking CXX executable app",
    "#5 [2/6] RUN apt-get update && apt-get install -y build-essential",
    "Step 3/10 : COPY requirements.txt .",
    " ---> Using cache",
    "Successfully built 3f2a9c1d7b4e",
    "Successfully tagged acme/app:latest",
    "Downloaded newer image for python:3.12-slim",
    "Cache restored successfully",
    "Attempting to resolve error logs",
    "No errors found.",
    "0 errors, 0 warnings",
    "Exception handling tests passed",
)


# --------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpellRecord:
    """What the matcher needs to know about one spell (the lead maps Spell rows to these)."""

    id: int | str
    title: str
    status: str = "approved"
    patterns: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    # Title + description + error type: the words similarity is computed on.
    text: str = ""
    error_type: str = ""
    language: str = ""


@dataclass(frozen=True, slots=True)
class ErrorQuery:
    """One failure to explain: a single error, or the extracted error lines of a build."""

    error_type: str = ""
    message: str = ""
    context: str = ""
    fingerprints: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Match:
    spell_id: int | str
    score: float  # 0-100; how strong the evidence is, not the spell's quality
    reason: str  # "fingerprint" | "pattern" | "similarity"
    matched_text: str
    pattern: str | None = None
    # Index into ErrorQuery.lines (or into the lines given to scan_lines) when a line was hit.
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BadPattern:
    spell_id: int | str
    pattern: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PatternError(ValueError):
    """A pattern neither engine accepts, or one that would match everything."""


# --------------------------------------------------------------------------------------------
# Compiling one pattern
# --------------------------------------------------------------------------------------------

_ESCAPED_BIG_Z = re.compile(r"(?<!\\)((?:\\\\)*)\\Z")
# The `regex` module's fuzzy-matching constraints, e.g. `(?:colour){e<=1}`: Python's parser reads
# them as literal text, so literal analysis would be wrong for them.
_FUZZY = re.compile(r"\{[^}]*[eids]\s*[<=]")
# POSIX classes and \p{..} are RE2 syntax that Python's parser misreads or rejects.
_NOT_PYTHON_SYNTAX = re.compile(r"\[\[:|\\[pPCQ]|\\x\{")


def _re2_options() -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False  # RE2 would print every rejected pattern to stderr
    return opts


def _compile_re2(pattern: str) -> Any:
    # Python spells end-of-text \Z; RE2 calls it \z.
    return re2.compile(_ESCAPED_BIG_Z.sub(r"\1\\z", pattern), _re2_options())


def compile_pattern(pattern: str) -> tuple[str, Any]:
    """Compile with RE2 when it can, else with the backtracking `regex` module.

    Returns (engine, compiled) where engine is "re2" or "regex"; raises PatternError.
    """
    if not pattern:
        raise PatternError("pattern is empty")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(
            f"pattern is too long ({len(pattern)} characters, at most {MAX_PATTERN_LENGTH})"
        )
    try:
        return "re2", _compile_re2(pattern)
    except re2.error as exc:
        re2_reason = _decode(exc)
    if "pattern too large" in re2_reason or "bad repetition" in re2_reason:
        # Backtracking would be even worse on these; refuse instead of falling back.
        raise PatternError(f"does not compile: {re2_reason}")
    if _regex is None:
        raise PatternError(f"RE2 cannot compile it ({re2_reason}) and `regex` is not installed")
    try:
        return "regex", _regex.compile(pattern)
    except _regex.error as exc:
        raise PatternError(f"does not compile: {exc}") from None


def _decode(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else str(exc)
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


# --------------------------------------------------------------------------------------------
# Literal analysis: which text must every match contain?
# --------------------------------------------------------------------------------------------

try:
    from re import _constants as _sre_c
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python < 3.11 spelled them sre_*
    _sre_parse = None
    _sre_c = None


def required_atoms(pattern: str) -> list[frozenset[str]] | None:
    """Literal strings every match of `pattern` contains, lowercased.

    The result is an AND of ORs: each frozenset holds alternatives, at least one of which occurs
    in any matching line. Only runs of at least MIN_ATOM_LENGTH printable ASCII characters are kept.
    Returns None when the pattern cannot be analysed (then it is never prefiltered by atoms).
    Being conservative is what matters: dropping a requirement only costs speed, inventing one
    would lose matches.
    """
    if _sre_parse is None or _NOT_PYTHON_SYNTAX.search(pattern) or _FUZZY.search(pattern):
        return None
    try:
        parsed = _sre_parse.parse(pattern.replace(r"\z", r"\Z"), 0)
    except Exception:  # any parser complaint means "cannot analyse"
        return None
    _exact, reqs = _analyse(parsed.data if hasattr(parsed, "data") else list(parsed))
    return [r for r in reqs if r]


def _analyse(items: Sequence[tuple[Any, Any]]) -> tuple[str | None, list[frozenset[str]]]:
    """Return (exact, requirements) for a node sequence.

    `exact` is the one string the sequence always matches when it is made only of literals.
    """
    c = _sre_c
    reqs: list[frozenset[str]] = []
    run: list[str] = []
    exact_possible = True

    def flush() -> None:
        if len(run) >= MIN_ATOM_LENGTH:
            reqs.append(frozenset(["".join(run).lower()]))
        run.clear()

    for op, av in items:
        if op is c.LITERAL:
            if 0x20 <= av <= 0x7E:
                run.append(chr(av))
            else:
                exact_possible = False
                flush()
        elif op is c.AT:
            # Zero-width: the literals on both sides are still adjacent in the text.
            exact_possible = False
        elif op is c.SUBPATTERN or op is c.ATOMIC_GROUP:
            inner = av[-1] if op is c.SUBPATTERN else av
            sub_exact, sub_reqs = _analyse(inner.data)
            if sub_exact is not None:
                run.extend(sub_exact)
            else:
                exact_possible = False
                flush()
                reqs.extend(sub_reqs)
        elif op is c.BRANCH:
            exact_possible = False
            flush()
            alternatives: set[str] = set()
            for alt in av[1]:
                _alt_exact, alt_reqs = _analyse(alt.data)
                best = _strongest(alt_reqs)
                if best is None:
                    alternatives = set()
                    break
                alternatives |= best
            if alternatives:
                reqs.append(frozenset(alternatives))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) or op is getattr(c, "POSSESSIVE_REPEAT", None):
            exact_possible = False
            flush()
            low, _high, inner = av
            if low >= 1:
                _e, sub_reqs = _analyse(inner.data)
                reqs.extend(sub_reqs)
        else:
            # Classes, wildcards, lookarounds, backreferences, conditionals: no literal we can
            # rely on (a lookahead's text is required too, but ignoring it is merely slower).
            exact_possible = False
            flush()
    # Even a run too short to be an atom alone is exact: the caller glues it to its neighbours.
    exact = "".join(run) if exact_possible else None
    flush()
    return exact, reqs


def _strongest(reqs: list[frozenset[str]]) -> frozenset[str] | None:
    if not reqs:
        return None
    return max(reqs, key=lambda alts: min(len(a) for a in alts))


def _literal_chars(pattern: str) -> int:
    """How many literal characters a pattern has anywhere (a breadth signal for validation)."""
    if _sre_parse is None:  # pragma: no cover
        return sum(ch.isalnum() for ch in pattern)
    try:
        parsed = _sre_parse.parse(pattern.replace(r"\z", r"\Z"), 0)
    except Exception:  # fall back to a rough count
        return sum(ch.isalnum() for ch in pattern)
    count = 0
    stack = [parsed.data]
    while stack:
        for op, av in stack.pop():
            if op is _sre_c.LITERAL:
                count += 1
            elif op is _sre_c.SUBPATTERN:
                stack.append(av[-1].data)
            elif op is _sre_c.BRANCH:
                stack.extend(alt.data for alt in av[1])
    return count


# --------------------------------------------------------------------------------------------
# Multi-pattern sets with a failure detector
# --------------------------------------------------------------------------------------------


class _GuardedSet:
    """An RE2 set that notices when it silently gives up.

    RE2::Set returns "no match" when its DFA runs out of memory, which would quietly lose
    matches. Every shard therefore holds an empty pattern at index 0 that matches every line: if
    it is missing from a result, the shard failed and the caller falls back to a brute scan.
    """

    def __init__(
        self,
        items: Sequence[str],
        *,
        literal: bool,
        max_mem: int,
        shard_size: int | None = None,
    ) -> None:
        self._literal = literal
        self._max_mem = max_mem
        self.shards: list[tuple[Any, list[int]]] = []
        # Items RE2 refuses even alone in a set: checked one by one on every line.
        self.loose: list[int] = []
        self.fallbacks = 0
        ids = list(range(len(items)))
        chunks = (
            [ids[i : i + shard_size] for i in range(0, len(ids), shard_size)]
            if shard_size
            else [ids]
        )
        for chunk in chunks:
            if chunk:
                self._add_shard(items, chunk)

    def _options(self) -> re2.Options:
        opts = _re2_options()
        opts.max_mem = self._max_mem
        if self._literal:
            opts.literal = True
            opts.case_sensitive = False
        return opts

    def _add_shard(self, items: Sequence[str], chunk: list[int]) -> None:
        rset = re2.Set.SearchSet(self._options())
        try:
            rset.Add("")
            for item_id in chunk:
                item = items[item_id]
                rset.Add(item if self._literal else _ESCAPED_BIG_Z.sub(r"\1\\z", item))
            rset.Compile()
        except re2.error:
            if len(chunk) == 1:
                self.loose.append(chunk[0])
                return
            # Too big for one program: split until each half fits.
            half = len(chunk) // 2
            self._add_shard(items, chunk[:half])
            self._add_shard(items, chunk[half:])
            return
        self.shards.append((rset, chunk))

    def match(self, text: str, brute: Callable[[int, str], bool]) -> list[int]:
        found: list[int] = []
        for rset, chunk in self.shards:
            hits = rset.Match(text)
            if hits and 0 in hits:
                found.extend(chunk[h - 1] for h in hits if h)
            else:
                self.fallbacks += 1
                found.extend(i for i in chunk if brute(i, text))
        found.extend(i for i in self.loose if brute(i, text))
        return found


# --------------------------------------------------------------------------------------------
# Similarity: tokens with the volatile parts masked
# --------------------------------------------------------------------------------------------

# One pass: URLs, paths, addresses, hashes/ids, then numbers/versions/times.
_MASK = re.compile(
    r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+"
    r"|(?:[A-Za-z]:)?(?:[\\/][\w.@+~-]+){2,}[\\/]?"
    r"|\b0x[0-9a-fA-F]+\b"
    r"|\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{7,}\b"
    r"|\b\d[\d.:,_-]*\b"
)
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
# fmt: off
_STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do",
    "does", "for", "from", "had", "has", "have", "how", "if", "in", "into", "is", "it", "its",
    "may", "might", "no", "not", "of", "on", "or", "so", "such", "that", "the", "their", "then",
    "there", "these", "this", "to", "was", "were", "when", "which", "while", "will", "with",
    "would", "you", "your",
))
# fmt: on


def normalize_text(text: str) -> str:
    """Mask what differs between two runs of the same failure (paths, numbers, hashes, URLs)."""
    return _MASK.sub(" ", text)


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens of `text` after masking; camelCase words also yield their parts."""
    tokens: list[str] = []
    for word in _TOKEN.findall(normalize_text(text)):
        low = word.lower()
        if len(low) < 2 or low in _STOPWORDS:
            continue
        tokens.append(low)
        if low == word or word[1:] == low[1:]:
            continue  # no inner capitals: nothing to split
        parts = _CAMEL.findall(word)
        if len(parts) > 1:
            tokens.extend(p.lower() for p in parts if len(p) > 2 and p.lower() not in _STOPWORDS)
    return tokens


def _weights(counts: Counter[str], idf: Callable[[str], float]) -> dict[str, float]:
    return {t: (1.0 + math.log(c)) * idf(t) for t, c in counts.items() if c > 0}


# --------------------------------------------------------------------------------------------
# The index
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Analysis:
    """What is known about a pattern string regardless of which spells use it."""

    engine: str  # "re2" | "regex" | "" when unusable
    error: str | None
    atoms: list[frozenset[str]] | None
    literal_chars: int
    backtracking: Any  # the compiled `regex` object for backtracking patterns


@dataclass(slots=True)
class _Pattern:
    pattern: str
    engine: str
    # RE2 objects cost ~7 KB each and most patterns never see a line that passes the prefilter,
    # so RE2 patterns are compiled at build time only to validate them, then again on first use.
    regexp: Any
    spells: list[int]
    analysis: _Analysis
    literal_len: int = 0  # characters of literal text every match contains
    disabled: bool = False
    strikes: int = 0

    def compiled(self) -> Any:
        regexp = self.regexp
        if regexp is None:
            # A race here compiles twice and keeps one: harmless.
            regexp = self.regexp = _compile_re2(self.pattern)
        return regexp


@dataclass(slots=True)
class _Spell:
    id: int | str
    status_rank: int


class SpellIndex:
    """Compiled, immutable-after-build view of a set of spells. Thread-safe for matching."""

    def __init__(self) -> None:
        # Use SpellIndex.build(); the constructor only makes an empty shell.
        self._spells: list[_Spell] = []
        self._fingerprints: dict[str, list[int]] = {}
        self._patterns: list[_Pattern] = []
        self._atoms: list[str] = []
        self._atom_set: _GuardedSet | None = None
        self._triggers: dict[int, list[int]] = {}
        self._checks: dict[int, list[frozenset[int]]] = {}
        self._residual: list[int] = []
        self._residual_set: _GuardedSet | None = None
        self._always: list[int] = []
        # term -> (spell numbers, weights): two flat arrays cost a fifth of a list of tuples.
        self._postings: dict[str, tuple[array[int], array[float]]] = {}
        self._idf: dict[str, float] = {}
        self._default_idf = 1.0
        self._norms: list[float] = []
        self._bad: list[BadPattern] = []
        self._analyses: dict[str, _Analysis] = {}
        self._runaways: dict[str, str] = {}
        self._lock = threading.Lock()
        self.regex_timeout = DEFAULT_REGEX_TIMEOUT
        self.runaway_strikes = 1
        # Approximate under concurrent use (unlocked increments): for logs and the benchmark.
        self.stats: Counter[str] = Counter()

    # ---- building ---------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        records: Iterable[SpellRecord],
        *,
        previous: SpellIndex | None = None,
        regex_timeout: float = DEFAULT_REGEX_TIMEOUT,
        runaway_strikes: int = 1,
    ) -> SpellIndex:
        """Compile every pattern once and build the prefilter and similarity index.

        Rejected spells are left out entirely. A pattern that does not compile, or that matches
        the empty string, is skipped and listed in `bad_patterns`; it never fails the build.
        `previous` (the index this one replaces) lends its per-pattern analysis, so a rebuild
        after one spell changed does not re-analyse the other thousands of patterns, and a
        pattern that ran away there stays switched off here.
        """
        index = cls()
        index.regex_timeout = regex_timeout
        index.runaway_strikes = max(1, runaway_strikes)
        prior = previous._analyses if previous is not None else {}
        if previous is not None:
            index._runaways = dict(previous._runaways)
        by_pattern: dict[str, int] = {}
        docs: list[Counter[str]] = []
        for record in records:
            if record.status not in STATUSES:
                raise ValueError(
                    f"spell {record.id!r}: status must be one of {STATUSES}, not {record.status!r}"
                )
            if record.status == "rejected":
                continue
            spell_no = len(index._spells)
            index._spells.append(_Spell(record.id, _STATUS_RANK[record.status]))
            for fp in dict.fromkeys(record.fingerprints):
                if fp:
                    index._fingerprints.setdefault(fp, []).append(spell_no)
            for pattern in dict.fromkeys(record.patterns):
                known = by_pattern.get(pattern)
                if known is not None:
                    index._patterns[known].spells.append(spell_no)
                    continue
                analysis = prior.get(pattern) or index._analyse(pattern)
                # Only patterns in use are carried to the next generation.
                index._analyses[pattern] = analysis
                error = analysis.error or index._runaways.get(pattern)
                if error is not None:
                    index._bad.append(BadPattern(record.id, pattern, error))
                    continue
                by_pattern[pattern] = len(index._patterns)
                index._patterns.append(
                    _Pattern(pattern, analysis.engine, analysis.backtracking, [spell_no], analysis)
                )
            docs.append(index._document(record))
        index._build_prefilter()
        index._build_similarity(docs)
        return index

    def _analyse(self, pattern: str) -> _Analysis:
        try:
            engine, regexp = compile_pattern(pattern)
            if _searches(engine, regexp, "", self.regex_timeout):
                raise PatternError("too broad: matches the empty string, so every line")
        except PatternError as exc:
            analysis = _Analysis("", str(exc), None, 0, None)
        except TimeoutError:
            analysis = _Analysis("", "ran away on the empty string", None, 0, None)
        else:
            analysis = _Analysis(
                engine,
                None,
                required_atoms(pattern),
                _literal_chars(pattern),
                regexp if engine == "regex" else None,
            )
        return analysis

    def _document(self, record: SpellRecord) -> Counter[str]:
        # Title, error type and the words the failure prints (pattern literals) are the spell's
        # signature; the long prose of the description only supports them, at half weight.
        doc: Counter[str] = Counter()
        doc.update(tokenize(record.title) * 2)
        doc.update(tokenize(record.error_type) * 2)
        for pattern in record.patterns:
            doc.update(tokenize(re.sub(r"\\.|[\[\](){}?*+|^$]", " ", pattern)))
        for term, count in Counter(tokenize(record.text)).items():
            doc[term] += 0.5 * count
        return doc

    def _build_prefilter(self) -> None:
        analysed: list[list[frozenset[str]] | None] = []
        frequency: Counter[str] = Counter()
        for pat in self._patterns:
            reqs = pat.analysis.atoms
            analysed.append(reqs)
            for alts in reqs or ():
                frequency.update(alts)

        def cost(alts: frozenset[str]) -> float:
            # Expected work when this requirement triggers: patterns sharing its weakest atom,
            # divided by how rare a line containing it is (longer literals are rarer).
            return max(frequency[a] / min(len(a), 24) ** 2 for a in alts) * len(alts)

        atom_ids: dict[str, int] = {}

        def ids(alts: frozenset[str]) -> frozenset[int]:
            return frozenset(atom_ids.setdefault(a, len(atom_ids)) for a in alts)

        for pno, reqs in enumerate(analysed):
            pat = self._patterns[pno]
            if not reqs:
                if pat.engine == "re2":
                    self._residual.append(pno)
                else:
                    self._always.append(pno)
                # Optional parts are counted too, so only trust half of it.
                pat.literal_len = pat.analysis.literal_chars // 2
                continue
            ranked = sorted(set(reqs), key=cost)
            trigger, checks = ranked[0], ranked[1:4]
            for atom in ids(trigger):
                self._triggers.setdefault(atom, []).append(pno)
            if checks:
                self._checks[pno] = [ids(alts) for alts in checks]
            pat.literal_len = sum(min(len(a) for a in alts) for alts in reqs)
        self._atoms = list(atom_ids)
        if self._atoms:
            self._atom_set = _GuardedSet(self._atoms, literal=True, max_mem=_ATOM_SET_MAX_MEM)
        if self._residual:
            self._residual_set = _GuardedSet(
                [self._patterns[p].pattern for p in self._residual],
                literal=False,
                max_mem=_RESIDUAL_SET_MAX_MEM,
                shard_size=_RESIDUAL_SHARD_SIZE,
            )

    def _build_similarity(self, docs: list[Counter[str]]) -> None:
        n = len(docs)
        df: Counter[str] = Counter()
        for doc in docs:
            df.update(doc.keys())
        self._idf = {t: math.log((n + 1) / (d + 0.5)) for t, d in df.items()}
        # A query word no spell uses says nothing about which spell fits; weighing it like the
        # rarest known word keeps long, detailed errors from drowning their shared words.
        self._default_idf = max(self._idf.values(), default=1.0)
        postings: dict[str, tuple[array[int], array[float]]] = {}
        for sno, doc in enumerate(docs):
            weights = _weights(doc, self._idf.__getitem__)
            self._norms.append(math.sqrt(sum(w * w for w in weights.values())) or 1.0)
            for term, w in weights.items():
                if w > 0:
                    plist = postings.get(term)
                    if plist is None:
                        plist = postings[term] = (array("l"), array("d"))
                    plist[0].append(sno)
                    plist[1].append(w)
        self._postings = postings

    # ---- introspection -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._spells)

    @property
    def bad_patterns(self) -> list[BadPattern]:
        with self._lock:
            return list(self._bad)

    def describe(self) -> dict[str, int]:
        """Sizes of the index's parts (for logs, metrics and the benchmark)."""
        return {
            "spells": len(self._spells),
            "patterns": len(self._patterns),
            "re2_patterns": sum(p.engine == "re2" for p in self._patterns),
            "backtracking_patterns": sum(p.engine == "regex" for p in self._patterns),
            "atoms": len(self._atoms),
            "residual_set_patterns": len(self._residual),
            "always_tried_patterns": len(self._always),
            "bad_patterns": len(self._bad),
            "fingerprints": len(self._fingerprints),
            "terms": len(self._postings),
        }

    # ---- patterns ----------------------------------------------------------------------------

    def _candidates(self, line: str) -> list[int]:
        cands: set[int] = set()
        if self._atom_set is not None:
            found = set(self._atom_set.match(line, self._atom_in))
            if found:
                checks = self._checks
                for atom in found:
                    for pno in self._triggers.get(atom, ()):
                        if pno in cands:
                            continue
                        need = checks.get(pno)
                        if need is None or all(not alts.isdisjoint(found) for alts in need):
                            cands.add(pno)
        if self._residual_set is not None:
            cands.update(
                self._residual[i] for i in self._residual_set.match(line, self._residual_hit)
            )
        cands.update(self._always)
        return sorted(cands)

    def _atom_in(self, atom_id: int, line: str) -> bool:
        return self._atoms[atom_id] in line.lower()

    def _residual_hit(self, residual_no: int, line: str) -> bool:
        return self._patterns[self._residual[residual_no]].compiled().search(line) is not None

    def _line_hits(self, line: str) -> list[tuple[_Pattern, str]]:
        """(pattern, matched text) for every pattern that matches this line."""
        if len(line) > MAX_LINE_LENGTH:
            line = line[:MAX_LINE_LENGTH]
        stats = self.stats
        stats["lines"] += 1
        hits: list[tuple[_Pattern, str]] = []
        for pno in self._candidates(line):
            pat = self._patterns[pno]
            if pat.disabled:
                continue
            stats["evaluations"] += 1
            if pat.engine == "re2":
                m = pat.compiled().search(line)
            else:
                try:
                    m = pat.regexp.search(line, timeout=self.regex_timeout)
                except TimeoutError:
                    self._strike(pat, line)
                    continue
            if m is not None:
                hits.append((pat, m.group(0)[:MAX_MATCHED_TEXT]))
        return hits

    def _strike(self, pat: _Pattern, line: str) -> None:
        with self._lock:
            self.stats["timeouts"] += 1
            pat.strikes += 1
            if pat.disabled or pat.strikes < self.runaway_strikes:
                return
            pat.disabled = True
            reason = self._runaways[pat.pattern] = (
                f"ran away (catastrophic backtracking): no answer within "
                f"{self.regex_timeout * 1000:.0f} ms on a {len(line)}-character line; disabled"
            )
            self._bad.extend(
                BadPattern(self._spells[s].id, pat.pattern, reason) for s in pat.spells
            )

    def scan_lines(self, lines: Iterable[str], *, start: int = 0) -> Iterator[Match]:
        """Pattern hits over a whole log, line by line (no similarity, no ranking).

        Yields one Match per (line, spell), `line` numbered from `start`. This is the cheap path
        for streaming a build log; use `match` to rank the spells for one extracted error.
        """
        for offset, line in enumerate(lines):
            seen: set[int] = set()
            for pat, text in self._line_hits(line):
                for sno in pat.spells:
                    if sno in seen:
                        continue
                    seen.add(sno)
                    yield Match(
                        self._spells[sno].id,
                        _pattern_score(pat, text, 0, in_context=False),
                        "pattern",
                        text,
                        pat.pattern,
                        start + offset,
                    )

    # ---- similarity --------------------------------------------------------------------------

    def _similar(self, counts: Counter[str], min_similarity: float) -> list[tuple[int, float]]:
        if not counts or not self._spells:
            return []
        n = len(self._spells)
        q = _weights(counts, lambda t: self._idf.get(t, self._default_idf))
        q_norm = math.sqrt(sum(w * w for w in q.values())) or 1.0
        # Words many spells share barely move a cosine but cost the longest posting lists; the
        # cut keeps a query's cost flat as the library grows (idf of a skipped word < log 50).
        common = max(64, n // 50)
        acc: dict[int, float] = {}
        shared: dict[int, int] = {}
        for term, qw in q.items():
            plist = self._postings.get(term)
            if plist is None or len(plist[0]) > common:
                continue
            for sno, dw in zip(*plist, strict=False):  # equal by construction
                acc[sno] = acc.get(sno, 0.0) + qw * dw
                shared[sno] = shared.get(sno, 0) + 1
        # One word in common is a coincidence, not a resemblance.
        scored = ((s, dot / (q_norm * self._norms[s])) for s, dot in acc.items() if shared[s] > 1)
        return [(s, c) for s, c in scored if c >= min_similarity]

    # ---- the query ---------------------------------------------------------------------------

    def match(
        self,
        query: ErrorQuery,
        *,
        limit: int = 10,
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
    ) -> list[Match]:
        """Ranked spells for one error: fingerprint, then pattern, then similarity hits.

        Within a reason, approved spells come before drafts, then higher scores first. Each spell
        appears once, with its strongest evidence. `min_similarity` is a cosine in 0-1; above 1
        turns similarity off.
        """
        best: dict[int, tuple[tuple[int, int, float], Match]] = {}

        def offer(sno: int, m: Match) -> None:
            key = (_REASON_RANK[m.reason], self._spells[sno].status_rank, -m.score)
            current = best.get(sno)
            if current is None or key < current[0]:
                best[sno] = (key, m)

        for fp in dict.fromkeys(query.fingerprints):
            for sno in self._fingerprints.get(fp, ()):
                offer(sno, Match(self._spells[sno].id, 100.0, "fingerprint", fp))

        hit_patterns: dict[int, set[str]] = defaultdict(set)
        pattern_hits: list[tuple[int, _Pattern, str, int | None, bool]] = []
        for line, line_no, in_context in _query_lines(query):
            for pat, text in self._line_hits(line):
                for sno in pat.spells:
                    hit_patterns[sno].add(pat.pattern)
                    pattern_hits.append((sno, pat, text, line_no, in_context))
        for sno, pat, text, line_no, in_context in pattern_hits:
            extra = len(hit_patterns[sno]) - 1
            score = _pattern_score(pat, text, extra, in_context=in_context)
            offer(sno, Match(self._spells[sno].id, score, "pattern", text, pat.pattern, line_no))

        if min_similarity <= 1.0:
            counts: Counter[str] = Counter()
            counts.update(tokenize(query.error_type) * 2)
            counts.update(tokenize(query.message))
            for line in query.lines[:MAX_QUERY_LINES]:
                counts.update(tokenize(line))
            if not counts:
                counts.update(tokenize(query.context))
            summary = _summary(query)
            for sno, cosine in self._similar(counts, min_similarity):
                if sno not in best:
                    score = round(min(cosine, 1.0) * 80, 1)
                    offer(sno, Match(self._spells[sno].id, score, "similarity", summary))

        ranked = sorted(best.values(), key=lambda kv: (kv[0], str(kv[1].spell_id)))
        return [m for _key, m in ranked[: max(0, limit)]]


def _pattern_score(pat: _Pattern, matched: str, extra_patterns: int, *, in_context: bool) -> float:
    r"""80 for a bare hit, up to +15 for specificity, +2 per other pattern of the spell that hit.

    Specificity is half how much literal text the pattern demands (40 characters is plenty) and
    half how much of the matched text that literal explains: of two patterns that hit the same
    line, the one spelling out more of it (e.g. `Python.h: No such file` vs `\S+\.h: No such
    file`) is the better explanation. A hit only in the code context is weaker evidence.
    """
    lit = pat.literal_len
    specificity = 0.5 * min(1.0, lit / 40) + 0.5 * min(1.0, lit / max(1, len(matched)))
    score = 80.0 + 15.0 * specificity + 2.0 * min(2, extra_patterns)
    if in_context:
        score -= 10.0
    return round(min(score, 99.0), 1)


def _searches(engine: str, regexp: Any, text: str, timeout: float) -> bool:
    if engine == "re2":
        return regexp.search(text) is not None
    return regexp.search(text, timeout=timeout) is not None


def _query_lines(query: ErrorQuery) -> Iterator[tuple[str, int | None, bool]]:
    """(line, index in query.lines or None, came from context) for every line worth scanning."""
    budget = MAX_QUERY_LINES
    for i, line in enumerate(query.lines[:budget]):
        yield line, i, False
    message_lines = [ln for ln in query.message.splitlines() if ln.strip()]
    error_type = query.error_type.strip()
    if error_type and message_lines and not message_lines[0].lstrip().startswith(error_type):
        # Tracebacks print "KeyError: 'x'" but APIs get type and message apart; patterns are
        # written against what the log shows.
        yield f"{error_type}: {message_lines[0].strip()}", None, False
    elif error_type and not message_lines:
        yield error_type, None, False
    for line in message_lines[:budget]:
        yield line, None, False
    for line in query.context.splitlines()[:budget]:
        if line.strip():
            yield line, None, True


def _summary(query: ErrorQuery) -> str:
    for text in (query.message, *query.lines, query.context):
        for line in text.splitlines():
            if line.strip():
                head = line.strip()
                if query.error_type and not head.startswith(query.error_type):
                    head = f"{query.error_type}: {head}"
                return head[:MAX_MATCHED_TEXT]
    return query.error_type[:MAX_MATCHED_TEXT]


# --------------------------------------------------------------------------------------------
# Validation of a single pattern (admin forms, spell files)
# --------------------------------------------------------------------------------------------


def validate_pattern(pattern: str, sample: str) -> list[str]:
    """Problems with a pattern and its sample line; an empty list means it is fine."""
    problems: list[str] = []
    try:
        engine, regexp = compile_pattern(pattern)
    except PatternError as exc:
        return [str(exc)]
    timeout = 0.1
    try:
        if _searches(engine, regexp, "", timeout):
            problems.append("too broad: matches the empty string, so it would match every line")
        if _literal_chars(pattern) < 4:
            problems.append("too broad: needs at least 4 literal characters to be specific")
        if not problems:
            for line in COMMON_LOG_LINES:
                if line and _searches(engine, regexp, line, timeout):
                    problems.append(f"too broad: also matches the ordinary log line {line!r}")
                    break
        if not sample:
            problems.append("no sample line: every pattern needs a sample line it must match")
        elif "\n" in sample or "\r" in sample:
            problems.append("sample must be a single line (patterns are matched line by line)")
        elif not _searches(engine, regexp, sample, timeout):
            problems.append("does not match its sample line")
        if engine == "regex":
            problems.extend(_runaway_probe(regexp, sample))
    except TimeoutError:
        problems.append("runs away (catastrophic backtracking) on its own sample or a plain line")
    return problems


def _runaway_probe(regexp: Any, sample: str) -> list[str]:
    """Try inputs that make backtracking explode: long runs of each character of the sample."""
    probes = [sample * 20]
    for ch in list(dict.fromkeys(sample or "a"))[:16]:
        # With and without the sample in front, so lookbehinds and anchors are satisfied.
        probes.append(ch * 3000 + "\x00")
        probes.append(sample + ch * 3000 + "\x00")
    for probe in probes:
        try:
            regexp.search(probe, timeout=0.05)
        except TimeoutError:
            shown = probe[:10] + "..." if len(probe) > 10 else probe
            return [f"runs away (catastrophic backtracking) on input like {shown!r}"]
    return []


# --------------------------------------------------------------------------------------------
# Keeping an index warm
# --------------------------------------------------------------------------------------------


class IndexCache:
    """One warm SpellIndex per process, rebuilt only when the spells change.

    The caller supplies a cheap version token (e.g. (max(updated_at), count) of the spells) on
    every `get`; the loader runs only when the token differs from the one the index was built
    for. Concurrent callers with a new token wait for a single rebuild instead of each doing one.
    """

    def __init__(
        self,
        loader: Callable[[], Iterable[SpellRecord]],
        **build_options: Any,
    ) -> None:
        self._loader = loader
        self._build_options = build_options
        self._lock = threading.Lock()
        self._token: Hashable | None = None
        self._index: SpellIndex | None = None
        self.builds = 0

    def get(self, token: Hashable) -> SpellIndex:
        index = self._index
        if index is not None and self._token == token:
            return index
        with self._lock:
            if self._index is not None and self._token == token:
                return self._index  # another thread rebuilt it while we waited
            index = SpellIndex.build(self._loader(), previous=self._index, **self._build_options)
            self._index, self._token = index, token
            self.builds += 1
            return index

    def invalidate(self) -> None:
        with self._lock:
            self._index = None
            self._token = None
