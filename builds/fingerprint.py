"""Error fingerprints: the same failure in two builds hashes the same, different failures do not.

A fingerprint is a hash of the error text after everything that changes from one run to the
next has been masked: directories (the file's base name stays, it identifies the failure),
line and column numbers, numbers, hex, hashes, UUIDs, dates, times, durations, temporary
names, quoted values and URLs' paths. Stack frames, when given, are reduced to the in-project
ones (library and runtime frames move with every upgrade) and folded into the hash.

No Django in here: ``builds.logparse`` and ``spells.matching`` use it on hot paths.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

__all__ = ["LIBRARY_MARKERS", "fingerprint", "normalize_error", "reduce_frames"]

# Level tags and CI annotations say how an error was printed, not what it is: the same
# compiler error appears as "[ERROR] x" in Maven's summary and as "x" in the compiler output.
_LEVEL_PREFIX = re.compile(
    r"^(?:\s*(?:##\[(?:error|warning)\]|::(?:error|warning)[^:]*::|\[(?:error|warning|warn|fatal|severe)\]"
    r"|npm (?:err!|error|warn)|(?:error|fatal|warning|warn|critical)(?:\[[\w-]+\])?:|e {2,}|e: ))+\s*",
    re.IGNORECASE,
)
_WS = re.compile(r"\s+")

# Order matters: each pattern sees the output of the previous ones, so the specific shapes
# (UUIDs, timestamps, hashes) are masked before the generic "number" rule would shred them.
_SUBSTITUTIONS: list[tuple[re.Pattern[str], str]] = [
    # URLs: keep the host (which registry, which service), drop the path and query. No slash
    # is left behind for the path rule below to chew on.
    (re.compile(r"\b[a-z][a-z0-9+.\-]*://([^/\s'\"`<>]+)[^\s'\"`<>)\]]*", re.I), r"<url:\1>"),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
        "<uuid>",
    ),
    (
        re.compile(
            r"\b\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d)?(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)?\b"
        ),
        "<date>",
    ),
    (re.compile(r"\b\d{1,2}:\d\d:\d\d(?:[.,]\d+)?\b"), "<time>"),
    # Quoted values: the offending name changes, the failure's shape does not. The opening quote
    # must not follow a letter so that "couldn't ... 'x'" is not read as one quoted span.
    (re.compile(r"(?<![\w'])'[^'\n]{0,300}'(?![\w])"), "'<q>'"),
    (re.compile(r'(?<![\w"])"[^"\n]{0,300}"'), '"<q>"'),
    (re.compile(r"`[^`'\n]{0,300}'"), "`<q>'"),  # GNU tools' old `name' quoting
    (re.compile(r"`[^`\n]{0,300}`"), "`<q>`"),
    (
        re.compile(
            "[\u2018\u201c\u00ab\u2039][^\u2019\u201d\u00bb\u203a\\n]{0,300}[\u2019\u201d\u00bb\u203a]"
        ),
        "'<q>'",
    ),
    # Paths: keep the base name only. Absolute (/a/b/c, C:\a\b) and relative (a/b/c.py).
    (
        re.compile(r"(?:[A-Za-z]:)?[\\/]?(?:[\w.\-@+~$]+[\\/])+([\w.\-@+~$]*)"),
        r"\1",
    ),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    # Hashes: git SHAs, digests, object ids (hex with at least one digit and one letter).
    (re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,}\b", re.I), "<hash>"),
    # Long mixed alphanumeric tokens: request ids, runner names, random suffixes.
    (
        re.compile(r"\b(?=[A-Za-z0-9]*\d[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{16,}\b"),
        "<id>",
    ),
    # Temporary names: tmpXXXX, mktemp/tempfile output, Go's TestFoo123456789 temp dirs.
    (re.compile(r"\btmp[\w\-]*", re.I), "<tmp>"),
    (
        re.compile(
            r"\b(?:\d+(?:\.\d+)?\s?(?:ms|us|µs|ns|s|sec|secs|seconds?|m|mins?|minutes?|h|hrs?|hours?)\b)+"
        ),
        "<duration>",
    ),
    (re.compile(r"\d{6,}"), "<n>"),
    (re.compile(r"\b\d+(?:\.\d+)*\b"), "<n>"),
]


MAX_NORMALIZE_CHARS = 2000


def normalize_error(text: str) -> str:
    """Return ``text`` with everything that varies between runs of the same failure masked."""
    # An error line's identity is in its head; bounding the input keeps the masking regexes'
    # cost flat (a 20,000-character line once took seconds of CPU).
    text = _LEVEL_PREFIX.sub("", text.strip()[:MAX_NORMALIZE_CHARS], count=1)
    for pattern, replacement in _SUBSTITUTIONS:
        text = pattern.sub(replacement, text)
    return _WS.sub(" ", text).strip().lower()


# Frames from these places belong to runtimes, package managers and test harnesses: they change
# with every upgrade and say nothing about which project code failed.
LIBRARY_MARKERS: tuple[str, ...] = (
    "site-packages",
    "dist-packages",
    "/lib/python",
    "<frozen",
    "/usr/lib/",
    "/usr/local/lib/",
    "node_modules",
    "node:internal",
    "internal/",
    "/rustc/",
    ".cargo/registry",
    "/go/pkg/mod/",
    "/src/runtime/",
    "/src/testing/",
    "hostedtoolcache",
    "java.",
    "javax.",
    "jdk.",
    "sun.",
    "kotlin.",
    "scala.",
    "org.junit.",
    "junit.",
    "org.testng.",
    "org.apache.maven.",
    "org.gradle.",
    "org.codehaus.plexus.",
    "_pytest",
    "pluggy",
    "unittest/",
    "gems/",
    "/ruby/",
)

_PY_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line \d+, in (?P<func>\S+)')
_JAVA_FRAME = re.compile(r"^\s*at (?P<func>[\w$.<>/]+)\((?P<file>[^):]*)(?::\d+)?\)")
_JS_FRAME = re.compile(r"^\s*at (?:(?P<func>[^()]+?) \()?(?P<path>[^()\s]+?)(?::\d+)+\)?$")
_GO_FRAME = re.compile(r"^\s*(?P<path>\S+\.go):\d+(?: \+0x[0-9a-f]+)?$")
_RUBY_FRAME = re.compile(r"^\s*(?:# )?(?P<path>\S+\.rb):\d+:in [`'](?P<func>[^'`]+)'")
_RUST_FRAME = re.compile(r"^\s*(?:\d+: )(?P<func>[\w:<>]+)")


def _frame_key(frame: str) -> tuple[str, str] | None:
    """Return (location used to decide library/project, normalised frame) or None."""
    for pattern in (_PY_FRAME, _JAVA_FRAME, _RUBY_FRAME, _GO_FRAME, _JS_FRAME, _RUST_FRAME):
        m = pattern.match(frame)
        if m is None:
            continue
        groups = m.groupdict()
        path = groups.get("path") or ""
        func = (groups.get("func") or "").strip()
        base = re.split(r"[\\/]", path)[-1] if path else ""
        location = path or func
        # A JVM frame's method name already says where it is (package.Class.method).
        key = f"{base}:{func}" if base and func else (base or func)
        return location, normalize_error(key)
    return None


def reduce_frames(
    frames: Iterable[str],
    project_markers: Sequence[str] | None = None,
    *,
    limit: int = 8,
) -> list[str]:
    """Keep the in-project stack frames, normalised (no line numbers or directories).

    With ``project_markers`` a frame is in-project when its location contains one of them;
    without, when it contains none of :data:`LIBRARY_MARKERS`. Lines that are not frames are
    ignored, consecutive duplicates (recursion) collapse, and at most ``limit`` frames are kept.
    """
    kept: list[str] = []
    for frame in frames:
        parsed = _frame_key(frame)
        if parsed is None:
            continue
        location, key = parsed
        if project_markers is not None:
            in_project = any(marker in location for marker in project_markers)
        else:
            in_project = not any(marker in location for marker in LIBRARY_MARKERS)
        if in_project and (not kept or kept[-1] != key):
            kept.append(key)
            if len(kept) >= limit:
                break
    return kept


def fingerprint(text: str, *, kind: str = "", frames: Iterable[str] = ()) -> str:
    """Stable 32-hex-digit fingerprint of an error line (and its in-project frames)."""
    parts = [kind, normalize_error(text), *reduce_frames(frames)]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:32]
