"""Offline issue enrichment: kind, tags, components and a summary without any LLM.

This is what an issue gets when no provider answers (or when none is configured), and what
`manage.py tag_issue` prints. It never raises on odd input and bounds its work: only the first
`MAX_TEXT_CHARS` of a body (and `MAX_TITLE_CHARS` of a title) are read, and the regular
expressions use bounded repeats, possessive fences and line-anchored patterns that cannot run
across blank lines, so adversarial input costs tens of milliseconds, not seconds.

Two classifiers live here on purpose:

* `seed_rules_kind` / `seed_rules_tags` reproduce the seed's keyword rules (substring tests over
  title + description, first match wins). They are the floor the evaluation compares against.
* `classify_kind` scores every kind with hand-written, explainable features: where a cue appears
  (the title says more than the body), issue-template headings and declared types, stack traces and
  error names, question form, documentation cues, and negations such as "not a bug".
  `explain_kind` returns the scores and the features that fired, so a wrong call can be debugged.

No Django import: the issues app's services and the tag_issue command build on this module.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

__all__ = [
    "DEFAULT_VOCABULARY",
    "KINDS",
    "MAX_TAG_LENGTH",
    "MAX_TEXT_CHARS",
    "RESERVED_TAGS",
    "Enrichment",
    "KindDecision",
    "classify_kind",
    "explain_kind",
    "extract_components",
    "fallback_enrich",
    "normalize_tag",
    "normalize_tags",
    "seed_rules_kind",
    "seed_rules_tags",
    "summarize",
]

KINDS: tuple[str, ...] = ("bug", "feature-request", "question", "documentation")

# The seed's "common tags", normalised ("ui/ux" becomes "ui-ux").
DEFAULT_VOCABULARY: tuple[str, ...] = (
    "bug",
    "feature-request",
    "frontend",
    "backend",
    "documentation",
    "performance",
    "security",
    "database",
    "api",
    "ui-ux",
    "urgent",
)

# Always allowed in fallback tags whatever the vocabulary: the kind is the point of the exercise,
# and "needs-review" says a human should look (the seed adds it to every fallback result).
RESERVED_TAGS: tuple[str, ...] = (*KINDS, "needs-review", "needs-triage")

MAX_TAG_LENGTH = 40
# A body longer than this is analysed by its head only: issue templates, titles of stack traces
# and the author's own words come first; megabytes of pasted log add cost, not signal.
MAX_TEXT_CHARS = 20_000
MAX_TITLE_CHARS = 1_000

# Common synonyms mapped onto vocabulary names, so "enhancement" from a GitHub label or an LLM
# lands on "feature-request" instead of being dropped as unknown.
TAG_ALIASES: dict[str, str] = {
    "enhancement": "feature-request",
    "feature": "feature-request",
    "feature-requests": "feature-request",
    "doc": "documentation",
    "docs": "documentation",
    "perf": "performance",
    "db": "database",
    "ui": "ui-ux",
    "ux": "ui-ux",
    "ui-and-ux": "ui-ux",
    "front-end": "frontend",
    "back-end": "backend",
    "bugs": "bug",
    "defect": "bug",
    "questions": "question",
}


# --------------------------------------------------------------------------------------------
# Input hygiene and tag normalisation
# --------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    """Word lists written as one string: easier to read and extend than a list of literals."""
    return text.split()


_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")


def _clean_input(value: object, limit: int) -> str:
    """Return a bounded, printable str for anything a caller may hand us (None, bytes, junk)."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        value = bytes(value[: limit * 4]).decode("utf-8", errors="replace")
    elif not isinstance(value, str):
        try:
            value = str(value)
        except Exception:  # a caller's object with a broken __str__ is still not our crash
            return ""
    text = value[:limit].replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL_RE.sub(" ", text)


_TAG_JUNK_RE = re.compile(r"[^\w+#.]+")
_TAG_DASHES_RE = re.compile(r"-{2,}")


def normalize_tag(tag: str) -> str:
    """Lower-case, hyphenated, stripped, at most MAX_TAG_LENGTH characters; "" when nothing is left.

    "UI/UX" → "ui-ux", "  Feature Request " → "feature-request", "snake_case" → "snake-case".
    "+", "#" and "." survive inside a tag so "c++", "c#" and "node.js" stay what they are.
    """
    if not isinstance(tag, str):
        return ""
    text = unicodedata.normalize("NFKC", tag[: MAX_TAG_LENGTH * 4]).lower().replace("_", "-")
    text = _TAG_JUNK_RE.sub("-", text)
    text = _TAG_DASHES_RE.sub("-", text).strip("-.")
    if len(text) > MAX_TAG_LENGTH:
        cut = text[:MAX_TAG_LENGTH]
        # Prefer ending on a word boundary so a long tag does not end mid-word.
        text = cut.rsplit("-", 1)[0] if "-" in cut[MAX_TAG_LENGTH // 2 :] else cut
        text = text.strip("-.")
    return text


def normalize_tags(
    tags: Iterable[str] | str | None,
    *,
    vocabulary: Iterable[str] | None,
    allow_new: bool,
    limit: int = 5,
) -> list[str]:
    """Normalise, alias, de-duplicate (keeping first-seen order) and filter tags.

    `vocabulary=None` means DEFAULT_VOCABULARY. Tags outside the vocabulary are dropped unless
    `allow_new`. A single comma-separated string is accepted too (labels pasted from a form).
    At most `limit` tags come back; non-string items are ignored.
    """
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = tags.split(",")
    vocab_source = DEFAULT_VOCABULARY if vocabulary is None else vocabulary
    allowed = {normalize_tag(v) for v in vocab_source if isinstance(v, str)}
    allowed.discard("")
    limit = max(0, int(limit))
    out: list[str] = []
    seen: set[str] = set()
    for index, raw in enumerate(tags):
        if len(out) >= limit or index >= 200:
            break
        tag = normalize_tag(raw)
        tag = TAG_ALIASES.get(tag, tag)
        if not tag or tag in seen:
            continue
        if not allow_new and tag not in allowed:
            continue
        seen.add(tag)
        out.append(tag)
    return out


# --------------------------------------------------------------------------------------------
# The seed's keyword rules (the baseline)
# --------------------------------------------------------------------------------------------

SEED_BUG_WORDS = ("bug", "error", "broken", "crash", "issue", "fail")
SEED_FEATURE_WORDS = ("feature", "enhancement", "request", "new", "add")
SEED_URGENT_WORDS = ("urgent", "critical", "asap", "immediately", "blocking")
SEED_FRONTEND_WORDS = ("frontend", "ui", "ux", "button", "modal", "form")
SEED_BACKEND_WORDS = ("backend", "api", "endpoint", "database", "server")
SEED_PERFORMANCE_WORDS = ("slow", "performance", "optimization", "lag", "delay")
# The seed has no keyword lists for documentation and question; these are the minimal lists in its
# style (plain substrings) so the baseline can name all four kinds.
SEED_DOCUMENTATION_WORDS = ("documentation", "docs", "readme", "typo")
SEED_QUESTION_WORDS = ("question", "how", "why", "?")


def _seed_text(title: str, body: str) -> str:
    return f"{_clean_input(title, MAX_TITLE_CHARS)} {_clean_input(body, MAX_TEXT_CHARS)}".lower()


def seed_rules_kind(title: str, body: str) -> str:
    """The seed's rules as a kind: first substring match in the order bug, feature-request,
    documentation, question; "question" when nothing matches (the seed has no default)."""
    text = _seed_text(title, body)
    for kind, words in (
        ("bug", SEED_BUG_WORDS),
        ("feature-request", SEED_FEATURE_WORDS),
        ("documentation", SEED_DOCUMENTATION_WORDS),
        ("question", SEED_QUESTION_WORDS),
    ):
        if any(word in text for word in words):
            return kind
    return "question"


def seed_rules_tags(title: str, body: str) -> list[str]:
    """The seed's `_get_fallback_tags`, faithfully: substring tests, "needs-review" first."""
    text = _seed_text(title, body)
    tags = ["needs-review"]
    for tag, words in (
        ("bug", SEED_BUG_WORDS),
        ("feature-request", SEED_FEATURE_WORDS),
        ("urgent", SEED_URGENT_WORDS),
        ("frontend", SEED_FRONTEND_WORDS),
        ("backend", SEED_BACKEND_WORDS),
        ("performance", SEED_PERFORMANCE_WORDS),
    ):
        if any(word in text for word in words):
            tags.append(tag)
    return tags


# --------------------------------------------------------------------------------------------
# Parsing an issue body into what the classifier and the summariser need
# --------------------------------------------------------------------------------------------

# Fences open at the start of a line; "```" in the middle of a sentence is inline code.
_FENCE_RE = re.compile(
    r"^[ \t]{0,3}(`{3,}+|~{3,}+)[^\n]*+\n(.*?)(?:^[ \t]{0,3}\1[ \t]*$|\Z)", re.DOTALL | re.MULTILINE
)
_HTML_COMMENT_RE = re.compile(r"<!--(.*?)(?:-->|\Z)", re.DOTALL)
_DETAILS_SUMMARY_RE = re.compile(r"<summary>.*?</summary>", re.IGNORECASE | re.DOTALL)
_HTML_TAG_RE = re.compile(r"</?[a-zA-Z][^<>\n]{0,300}>")
_MD_IMAGE_RE = re.compile(r"!\[[^\]\n]{0,300}\]\([^)\s]{0,600}\)")
_MD_LINK_RE = re.compile(r"\[([^\]\n]{0,300})\]\([^)\s]{0,600}\)")
_URL_RE = re.compile(r"\bhttps?://\S{1,2000}")
_INLINE_CODE_RE = re.compile(r"`([^`\n]{1,200})`")

_KIND_WORD_RE = re.compile(
    r"\b(bugs?|features?|feature requests?|enhancements?|questions?|support|documentation|docs?)\b"
)
_KIND_OF_WORD = {
    "bug": "bug",
    "bugs": "bug",
    "feature": "feature-request",
    "features": "feature-request",
    "feature request": "feature-request",
    "feature requests": "feature-request",
    "enhancement": "feature-request",
    "enhancements": "feature-request",
    "question": "question",
    "questions": "question",
    "support": "question",
    "documentation": "documentation",
    "doc": "documentation",
    "docs": "documentation",
}

# "### Issue type\n\nBug" (GitHub issue forms), "Type: <b>Bug</b>" (generated reports),
# "Issue Type: Feature Request".
_DECLARED_HEADING_RE = re.compile(
    r"(?im)^[ \t]*#{1,6}[ \t]*(?:issue|request|report)?[ \t]*type[ \t]*\n+[ \t]*([^\n]{1,60})"
)
_DECLARED_FIELD_RE = re.compile(
    r"(?i)\b(?:issue|request|report)?[ \t]*type[ \t]*:[ \t]*(?:<b>|\*\*|\*)?[ \t]*([a-z][a-z /]{1,40})"
)
_DECLARED_VALUE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(documentation|docs?)\b"), "documentation"),
    (re.compile(r"^(feature|enhancement)"), "feature-request"),
    (re.compile(r"^(question|support|help)"), "question"),
    (re.compile(r"^(bug|performance|crash|regression)"), "bug"),
)
_TEMPLATE_NAME_RE = re.compile(
    r"\b(bug[_ -]?report|bug|feature[_ -]?request|feature|question|documentation|docs?)[_-]template\b"
)


@dataclass
class _Parsed:
    title: str
    title_l: str
    title_core_l: str  # title without "[Bug]:"-style or "scope:" prefixes, lower-cased
    body: str  # bounded, cleaned raw body
    raw_l: str  # whole body lower-cased, code included (stack traces live in code blocks)
    prose: str  # body without code, comments, markup: what the author wrote in words
    prose_l: str
    declared: list[str] = field(default_factory=list)  # kinds the issue form declares
    template_kinds: list[str] = field(default_factory=list)  # kinds named by template markers


_TITLE_PREFIX_RE = re.compile(
    r"^(?:\s*(?:\[[^\]\n]{0,40}\]|\([^)\n]{0,40}\)|[\w./-]{1,30}(?:\([\w./-]{1,30}\))?\s*:(?!:))\s*)+"
)


# Upper-case change-type markers some projects put before a title ("DOC Fix ...", "ENH add ...").
_TITLE_MARKER_RE = re.compile(
    r"^(?:DOC|DOCS|ENH|FEAT|MNT|MAINT|TST|PERF|BLD|CI|RFC|WIP|API)\b:?\s+"
)
_SUBJECT_MARKER_RE = re.compile(r"^(?:BUG|FIX|BUGFIX|HOTFIX)\b:?\s+")


def _strip_title_prefix(title: str) -> str:
    stripped = _TITLE_MARKER_RE.sub("", _TITLE_PREFIX_RE.sub("", title).strip())
    return stripped or title.strip()


def _template_word(name: str) -> str:
    words = name.replace("_", " ").replace("-", " ").split()
    return " ".join(w for w in words if w != "report")


def _is_choice_prompt(line_l: str) -> bool:
    """A template line offering kinds to pick from ("request a feature or report a bug?")."""
    kinds = {_KIND_OF_WORD[m.group(1)] for m in _KIND_WORD_RE.finditer(line_l)}
    return len(kinds) >= 2


def _parse(title: object, body: object) -> _Parsed:
    title_s = " ".join(_clean_input(title, MAX_TITLE_CHARS).split())
    body_s = _clean_input(body, MAX_TEXT_CHARS)
    raw_l = body_s.lower()

    # Template markers ("bug_report_template") usually sit in HTML comments the author never saw.
    template_kinds = [
        _KIND_OF_WORD.get(_template_word(m.group(1)), "bug")
        for m in _TEMPLATE_NAME_RE.finditer(raw_l)
    ]

    declared: list[str] = []
    for m in (*_DECLARED_HEADING_RE.finditer(body_s), *_DECLARED_FIELD_RE.finditer(body_s)):
        value = _HTML_TAG_RE.sub("", m.group(1)).strip(" *_").lower()
        for pattern, kind in _DECLARED_VALUE:
            if pattern.search(value):
                declared.append(kind)
                break

    text = _HTML_COMMENT_RE.sub("\n", body_s)
    text = _FENCE_RE.sub("\n", text).replace("```", "`")
    text = _DETAILS_SUMMARY_RE.sub("\n", text)
    text = _MD_IMAGE_RE.sub(" ", text)
    text = _MD_LINK_RE.sub(r"\1", text)
    text = _HTML_TAG_RE.sub(" ", text)
    text = _URL_RE.sub(" ", text)

    # Lines that offer a choice of kinds are template prompts, not evidence; their answer (the
    # rest of the line after "?", or the next line) is the author's declaration.
    lines = text.split("\n")
    kept: list[str] = []
    pending_answer = False
    for line in lines:
        line_l = line.lower()
        if pending_answer and line.strip():
            pending_answer = False
            answer = line_l.strip(" *_")[:80]
            found = _KIND_WORD_RE.search(answer)
            if found:
                declared.append(_KIND_OF_WORD[found.group(1)])
            continue
        if _is_choice_prompt(line_l):
            tail = line_l.rsplit("?", 1)[1].strip(" *_:") if "?" in line_l else ""
            found = _KIND_WORD_RE.search(tail[:80]) if tail else None
            if found:
                declared.append(_KIND_OF_WORD[found.group(1)])
            elif "?" in line_l:
                pending_answer = True
            continue
        kept.append(line)
    prose = "\n".join(kept)
    return _Parsed(
        title=title_s,
        title_l=title_s.lower(),
        title_core_l=_strip_title_prefix(title_s).lower(),
        body=body_s,
        raw_l=raw_l,
        prose=prose,
        prose_l=prose.lower(),
        declared=declared,
        template_kinds=template_kinds,
    )


# --------------------------------------------------------------------------------------------
# classify_kind: weighted, explainable features
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Feature:
    name: str
    kind: str
    field: str  # "title" (whole title), "core" (title without prefixes), "prose", "raw", "code"
    pattern: re.Pattern[str]
    weight: float
    # Distinct matches counted up to `cap` (1 = present or not).
    cap: int = 1
    # A match right after "not"/"no"/"without" counts against the kind instead of for it.
    negatable: bool = False


def _f(
    name: str,
    kind: str,
    where: str,
    pattern: str,
    weight: float,
    *,
    cap: int = 1,
    negatable: bool = False,
    flags: int = 0,
) -> _Feature:
    return _Feature(name, kind, where, re.compile(pattern, flags), weight, cap, negatable)


_NEGATION_RE = re.compile(
    r"\b(?:not|no|never|without|isn'?t|wasn'?t|aren'?t|non|nor)[\s-]+(?:a |an |the |really |actually |any )?$"
)

_BUG, _FEAT, _QUES, _DOCS = KINDS

_FEATURES: tuple[_Feature, ...] = (
    # ---- title -------------------------------------------------------------------------------
    _f(
        "title: fix-style title",
        _BUG,
        "core",
        r"^(?:fix(?:es|ed|ing)?|hotfix|bugfix|resolve[sd]?|workaround)\b",
        3.0,
    ),
    _f(
        "title: names a crash/hang",
        _BUG,
        "title",
        r"\b(?:crash(?:es|ed|ing)?|segfault|segmentation fault|panic(?:s|ked)?|hang(?:s|ing)?|freez(?:e|es|ing)|frozen|deadlock|stuck)\b",
        3.0,
    ),
    _f("title: says bug", _BUG, "title", r"\b(?:bug|bugs|regression)\b", 3.0, negatable=True),
    _f(
        "title: names an error/failure",
        _BUG,
        "title",
        r"\b(?:error|errors|exception|traceback|fail(?:s|ed|ing|ure|ures)?|broken|breaks?|\w+(?:error|exception))\b",
        2.5,
        negatable=True,
    ),
    _f(
        "title: something does not work",
        _BUG,
        "title",
        r"\b(?:not working|(?:doesn'?t|does not|don'?t|do not|didn'?t|did not|isn'?t|is not|are not|aren'?t|won'?t|will not|cannot|can'?t|could not|couldn'?t|unable to|fails? to|no longer|stopped|stops)\s+(?:work|working|load|loading|open|start|show|render|find|compile|build|run|save|display|be|get|read|write|connect|respond|recogni[sz]e|detect|update|install|import|return))\b",
        3.0,
    ),
    _f(
        "title: wrong/unexpected result",
        _BUG,
        "title",
        r"\b(?:wrong|incorrect(?:ly)?|invalid|unexpected(?:ly)?|inconsistent|mismatch|leak(?:s|ing)?|corrupt(?:s|ed|ion)?|undefined|null|nan|missing|disappear(?:s|ed)?|ignor(?:es|ed)|duplicated?|overflow|warn(?:s|ing|ings)?|(?:is|are|got|gets|very|too|extremely) slow|slowness|takes (?:too )?long|high (?:cpu|memory)|not (?:shown|displayed|rendered|saved|loaded|found|respected|updated|recogni[sz]ed|detected|correct|supported anymore)|instead of)\b",
        1.5,
    ),
    _f(
        "title: names a problem",
        _BUG,
        "title",
        r"\b(?:issue|issues|problem|problems)\b",
        1.0,
        negatable=True,
    ),
    _f(
        "title: weak negative",
        _BUG,
        "title",
        r"\b(?:can'?t|cannot|unable|doesn'?t|does not|isn'?t|won'?t|not)\b",
        0.7,
    ),
    _f(
        "title: request-style verb",
        _FEAT,
        "core",
        r"^(?:add(?:s|ed|ing)?|support(?:s|ing)?|implement(?:s|ed|ing)?|allow(?:s|ing)?|enable(?:s)?|introduce[sd]?|provide|expose|extend|make it possible|let|create|new|offer|request|proposal|propose|please add|feature|consider)\b",
        3.0,
    ),
    _f(
        "title: improvement verb",
        _FEAT,
        "core",
        r"^(?:improve[sd]?|improvement|speed up|optimi[sz]e[sd]?|refactor(?:ed|s)?|deprecate[sd]?|remove[sd]?|replace[sd]?|migrate|update[sd]?|upgrade[sd]?|bump|rename[sd]?|use|make|move|switch|drop|split|change|simplify|reduce|avoid|unify|normali[sz]e|expand|increase|decrease|show|display|auto\w*)\b",
        1.5,
    ),
    _f(
        "title: asks for a feature",
        _FEAT,
        "title",
        r"\b(?:feature|features|enhancement|proposal|rfc|suggestion|idea|wishlist|roadmap|request)\b",
        2.5,
        negatable=True,
    ),
    _f(
        "title: option/support wording",
        _FEAT,
        "title",
        r"\b(?:support for|(?:add|new)\s+(?:an? |the )?(?:option|setting|flag|parameter|argument|api|method|function|command|way|ability)|option to|ability to|should (?:be able to|support|allow|have|provide)|would be (?:nice|great|useful|good)|please (?:add|support|allow|make|consider)|consider (?:adding|supporting|using|making)|make .{1,40} (?:configurable|optional)|configurable|customi[sz]able)\b",
        2.5,
    ),
    _f("title: ends with a question mark", _QUES, "title", r"\?\s*$", 3.0),
    _f("title: wh-question", _QUES, "core", r"^(?:how|why|what|which|where|who|whom|whose)\b", 3.0),
    _f(
        "title: yes/no question",
        _QUES,
        "core",
        r"^(?:is|are|can|could|does|do|should|would|will|did|has|have|was|were|any)\s(?!not\b)",
        1.5,
    ),
    _f(
        "title: asks for help",
        _QUES,
        "title",
        r"\b(?:how to|how do|how can|question|questions|help|is it possible|is there (?:a|any) way|clarification|clarify|confus(?:ed|ing)|understand(?:ing)?|difference between|best way|advice|usage of|meaning of|what does)\b",
        2.0,
    ),
    _f(
        "title: starts with DOC",
        _DOCS,
        "title",
        r"^\W*(?:doc|docs|documentation|doc\(\w+\))\b",
        4.0,
    ),
    _f(
        "title: documentation words",
        _DOCS,
        "title",
        r"\b(?:doc|docs|documentation|docstrings?|readme|typos?|user guide|guide|tutorials?|wiki|changelog|spelling|grammar|wording|sphinx|api reference|man ?page|javadoc|jsdoc|documented|undocumented|misleading)\b",
        3.5,
    ),
    _f("title: examples", _DOCS, "title", r"\b(?:example|examples|gallery)\b", 1.5),
    # ---- declarations: issue forms, template markers, "feature or bug?" answers ---------------
    # (added per declared kind in _score, weight 4.0 / 2.0)
    # ---- body: template headings ---------------------------------------------------------------
    _f(
        "body: bug template heading",
        _BUG,
        "prose",
        r"\b(?:steps to reproduce|reproduction steps|repro(?:duction)? steps|to reproduce|how to reproduce|reproducible example|minimal (?:reproducible |complete )?example|code to reproduce|expected (?:behaviou?r|result|outcome|output)|actual (?:behaviou?r|result|outcome|output)|observed (?:behaviou?r|result)|describe the bug|bug report|what happened|relevant log output|steps:)",
        2.0,
    ),
    _f("body: current behaviour heading", _BUG, "prose", r"\bcurrent behaviou?r\b", 0.5),
    _f(
        "body: feature template heading",
        _FEAT,
        "prose",
        r"\b(?:is your feature request related to a problem|describe the workflow you want to enable|describe your proposed solution|describe the solution you'?d like|describe alternatives you'?ve considered|alternatives considered|proposed (?:solution|change|feature|api)|describe the feature|feature description|feature request|motivation|use ?case|pitch)\b",
        2.5,
    ),
    _f(
        "body: documentation template heading",
        _DOCS,
        "prose",
        r"\b(?:describe the issue linked to the documentation|(?:doc|docs|documentation) (?:issue|bug|improvement|change|page|link)|describe the doc issue|suggest a potential alternative/fix)\b",
        4.0,
    ),
    # ---- body: evidence of a failure -----------------------------------------------------------
    _f(
        "body: stack trace",
        _BUG,
        "raw",
        r"traceback \(most recent call last\)|exception in thread|^[ \t]+at [\w$.<>]{1,300}\([^)\n]{0,300}:\d+\)|^[ \t]+at [^\n]{1,200}:\d+:\d+\)?[ \t]*$|\bsegmentation fault\b|\bcore dumped\b|^panic:|\bsigsegv\b|\bsigabrt\b|\bstack ?trace\b|\bbacktrace\b|\buncaught\b",
        2.0,
        flags=re.MULTILINE,
    ),
    _f("body: error name", _BUG, "body_cs", r"\b[A-Z]\w{1,40}(?:Error|Exception)\b", 1.0),
    _f(
        "body: failure words",
        _BUG,
        "prose",
        r"\b(?:crash(?:es|ed|ing)?|errors?|exception|fail(?:s|ed|ing|ure)?|broken|bug|regression|wrong|incorrect(?:ly)?|unexpected(?:ly)?|instead of|doesn'?t work|does not work|not working|no longer works|stopped working|throws?|thrown|hangs?|freezes?)\b",
        0.6,
        cap=4,
        negatable=True,
    ),
    _f(
        "body: used to work",
        _BUG,
        "prose",
        r"\b(?:worked (?:fine |well )?(?:in|with|before|on) (?:the )?(?:previous|earlier|older|last)|used to work|after (?:updating|upgrading)|since (?:updating|upgrading|version))\b",
        2.0,
    ),
    _f(
        "body: says it fixes a reported issue",
        _BUG,
        "prose",
        r"\b(?:this (?:pr|pull request|patch|change|commit) (?:will |should )?fix(?:es)?|fix(?:es|ed)? #\d+|fix(?:es|ed)? (?:the |a )?(?:bug|crash|regression|failure|issue))\b",
        1.5,
    ),
    _f(
        "body: something does not work",
        _BUG,
        "prose",
        r"\b(?:can'?t|cannot|unable to|doesn'?t|does not|won'?t|isn'?t|only (?:works|opens|shows|happens)|no longer|hides?|disappears?)\b",
        0.4,
        cap=3,
    ),
    # ---- body: asking for something new -----------------------------------------------------------
    _f(
        "body: wish wording",
        _FEAT,
        "prose",
        r"\b(?:would be (?:nice|great|useful|helpful|good|cool|awesome)|it would be|i'?d like|i would like|we would like|would like to (?:see|have)|please (?:add|support|consider|allow)|add support|support for|ability to|option to|allow (?:users|us|the user|people)|new feature|feature|enhancement|proposal|propose|suggest(?:ion)?|could we|can we|should support|nice to have|currently (?:there is no|it is not possible|you can'?t|we can'?t)|not (?:yet )?supported|is not supported|add an? (?:option|flag|setting|parameter))\b",
        0.8,
        cap=3,
        negatable=True,
    ),
    # ---- body: asking a question ----------------------------------------------------------------
    _f(
        "body: asks for help",
        _QUES,
        "prose",
        r"\b(?:how (?:do|can|should|would|could) (?:i|we|you|one)|how to|is it possible|is there (?:a|any) way|any (?:idea|ideas|help|suggestions?|advice|pointers|thoughts)|help me|please help|can (?:someone|anyone|somebody)|could (?:someone|anyone|somebody)|thanks in advance|i'?m (?:trying|wondering|confused|not sure)|i am (?:trying|wondering|confused|not sure)|i was wondering|not sure (?:if|whether|how)|i don'?t understand|what is the (?:best|right|correct|recommended) way|what am i doing wrong|am i (?:missing|doing)|question|stack ?overflow|forum)\b",
        1.0,
        cap=4,
    ),
    _f(
        "body: personal help request",
        _QUES,
        "prose",
        r"\b(?:my (?:code|program|project|app|application|script|camera|model|computer|laptop|machine|setup|environment)|kindly|pls|plz|stuck|resolve my|help me out|i(?:'m| am) (?:new|a beginner|beginner)|newbie|beginner)\b",
        1.0,
        cap=3,
    ),
    _f(
        "title: build or install trouble",
        _QUES,
        "title",
        r"\b(?:install(?:ing|ation)?|compil(?:e|ing|ation)|build(?:ing)?|cmake|linking|linker|setup|set up|configure|on (?:ubuntu|fedora|centos|debian|windows|macos|mac|linux|raspberry|arch|m1|android|ios))\b",
        1.5,
    ),
    _f("body: question marks", _QUES, "prose", r"\?(?=\s|$)", 0.6, cap=3),
    # ---- body: documentation ---------------------------------------------------------------------
    _f(
        "body: documentation words",
        _DOCS,
        "prose",
        r"\b(?:documentation|docs|docstrings?|readme|typos?|user guide|tutorials?|the example|broken link|dead link|misleading|documented|undocumented|api reference|changelog|wiki|spelling|wording|sphinx|\.rst|man ?page)\b",
        1.0,
        cap=4,
    ),
)

_DECLARED_WEIGHT = 4.0
_TEMPLATE_WEIGHT = 2.0
# Tie-break order when scores are equal: the most common kind in trackers first.
_PRIORITY = {_BUG: 0, _FEAT: 1, _QUES: 2, _DOCS: 3}


@dataclass(frozen=True)
class KindDecision:
    """The classifier's answer with its working: per-kind scores and the features that fired."""

    kind: str
    scores: dict[str, float]
    reasons: list[str]


def _field_text(parsed: _Parsed, where: str) -> str:
    return {
        "title": parsed.title_l,
        "core": parsed.title_core_l,
        "prose": parsed.prose_l,
        "raw": parsed.raw_l,
        "body_cs": parsed.body,
    }[where]


def _apply(feature: _Feature, text: str) -> float:
    """Weight contributed by one feature: positive per distinct match, negative when negated."""
    if not text:
        return 0.0
    seen: set[str] = set()
    total = 0.0
    for match in feature.pattern.finditer(text):
        key = match.group(0)
        if key in seen:
            continue
        if feature.negatable and _NEGATION_RE.search(
            text, max(0, match.start() - 24), match.start()
        ):
            total -= feature.weight
            seen.add(key)
        else:
            total += feature.weight
            seen.add(key)
        if len(seen) >= feature.cap:
            break
    return total


def explain_kind(title: str, body: str) -> KindDecision:
    """Score every kind and say why. Never raises; empty input is a low-confidence "question"."""
    parsed = _parse(title, body)
    return _decide(parsed)


def _decide(parsed: _Parsed) -> KindDecision:
    scores = dict.fromkeys(KINDS, 0.0)
    reasons: list[str] = []
    for feature in _FEATURES:
        delta = _apply(feature, _field_text(parsed, feature.field))
        if delta:
            scores[feature.kind] += delta
            reasons.append(f"{feature.name} ({feature.kind} {delta:+.1f})")
    for kind in dict.fromkeys(parsed.declared):
        scores[kind] += _DECLARED_WEIGHT
        reasons.append(f"issue form declares {kind} ({kind} {_DECLARED_WEIGHT:+.1f})")
    for kind in dict.fromkeys(parsed.template_kinds):
        scores[kind] += _TEMPLATE_WEIGHT
        reasons.append(f"template marker says {kind} ({kind} {_TEMPLATE_WEIGHT:+.1f})")
    best = max(KINDS, key=lambda k: (scores[k], -_PRIORITY[k]))
    if scores[best] <= 0:
        # Nothing to go on: a bare title is most often someone asking for something.
        best = _QUES if not parsed.title and not parsed.prose.strip() else _FEAT
        reasons.append(f"no evidence, default {best}")
    return KindDecision(kind=best, scores=scores, reasons=reasons)


def classify_kind(title: str, body: str) -> str:
    """One of "bug", "feature-request", "question", "documentation"."""
    return explain_kind(title, body).kind


# --------------------------------------------------------------------------------------------
# Components: file paths, stack frames and error names found in the text
# --------------------------------------------------------------------------------------------

_CODE_EXTENSIONS = (
    "py|pyx|pyi|js|jsx|mjs|cjs|ts|tsx|java|kt|kts|go|rs|rb|php|c|cc|cpp|cxx|h|hh|hpp|cs|swift|m|mm|"
    "scala|vue|svelte|css|scss|sass|less|html|htm|sql|yml|yaml|json|toml|ini|cfg|sh|bash|lua|dart|"
    "ex|exs|erl|clj|hs|ml|r|jl|pl|gradle|cmake|ipynb|md|rst"
)
# A path with at least one directory: src/auth/login.py, C:\app\views.py, ./lib/x.js.
_PATH_RE = re.compile(
    r"(?<![\w@])((?:[a-zA-Z]:)?(?:[\\/]|\.{1,2}[\\/])?(?:[\w.@+-]{1,80}[\\/]){1,20}[\w.@+-]{1,120}\.(?:"
    + _CODE_EXTENSIONS
    + r"))(?![\w/])"
)
_GITHUB_BLOB_RE = re.compile(
    r"github\.com/[\w.-]+/[\w.-]+/(?:blob|tree)/[\w.-]+/([\w./@+-]{1,300})"
)
# Java/Kotlin/Scala frames: "at com.example.auth.LoginService.login(LoginService.java:42)".
_JAVA_FRAME_RE = re.compile(r"\bat ((?:[\w$]{1,80}\.){2,30}[\w$<>]{1,80})\(")
_ERROR_NAME_RE = re.compile(r"\b([A-Z][A-Za-z0-9]{1,40}(?:Error|Exception|Fault|Panic))\b")
_ERROR_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bsegmentation fault\b|\bsigsegv\b|\bsegfault\b", re.I), "segfault"),
    (re.compile(r"\bout of memory\b|\boom[- ]?kill", re.I), "out-of-memory"),
    (re.compile(r"\bmemory leak", re.I), "memory-leak"),
    (re.compile(r"\bdeadlock", re.I), "deadlock"),
    (re.compile(r"\btimed out\b|\btimeout error\b", re.I), "timeout"),
    (re.compile(r"^panic: ", re.M), "panic"),
)

# Directory names that say where code sits, not what it does.
_GENERIC_DIRS = frozenset(
    _words("""
    src source sources lib libs lib64 app apps pkg pkgs packages package internal cmd main java kotlin
    scala python python2 python3 js ts javascript typescript test tests __tests__ testing spec specs
    dist build out target bin obj include inc module modules site-packages dist-packages
    node_modules usr local home users user var tmp temp opt etc vendor vendors third_party
    third-party thirdparty external deps com org net io www static public assets resources res
    common shared util utils helpers helper misc base generic impl private code project projects
    workspace repo repos root env venv .venv virtualenv scripts script tools github .github
    content contrib extra extras x64 x86 debug release bazel-out runfiles google3 android
    """)
)
_GENERIC_FILES = frozenset(
    _words(
        "__init__ index main setup conftest init utils util helpers common base mod lib app test tests "
        "readme changelog license package manifest out output bundle chunk vendor min build dist tmp "
        "temp file foo bar baz example sample"
    )
)
# Frames from these roots are the runtime, not the project.
_LIBRARY_FRAME_ROOTS = (
    "java.",
    "javax.",
    "jdk.",
    "sun.",
    "kotlin.",
    "scala.",
    "android.",
    "org.junit.",
)
_LIBRARY_PATH_MARKERS = ("site-packages", "dist-packages", "node_modules", "/lib/python", "<frozen")


def _camel_to_kebab(name: str) -> str:
    return normalize_tag(re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name))


_TEST_DIRS = frozenset(
    _words("test tests __tests__ testing spec specs functional unit integration e2e")
)
_DOC_EXTENSIONS = (".md", ".rst", ".txt")


def _component_from_path(path: str) -> str:
    path = path.replace("\\", "/")
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    if not parts:
        return ""
    if re.fullmatch(r"[a-zA-Z]:", parts[0]):
        parts = parts[1:]
    *dirs, filename = parts or [""]
    stem = filename.rsplit(".", 1)[0].lstrip("_").lower()
    # A test file names what it tests better than its directory ("functional", "unit") does.
    if (
        any(d.lower() in _TEST_DIRS for d in dirs)
        or stem.startswith("test_")
        or stem.endswith("_test")
    ):
        name = re.sub(r"^test_|_test$|\.(?:test|spec)$", "", stem)
        if name and name not in _GENERIC_FILES:
            return normalize_tag(name)
    for directory in reversed(dirs):
        low = directory.lower()
        if low in _GENERIC_DIRS or low in _TEST_DIRS or len(low) < 2:
            continue
        if low.startswith((".", "python3.", "python2.")) or re.fullmatch(r"v?\d[\w.-]*", low):
            continue  # hidden, interpreter and version directories: 1.2.3, v2
        return normalize_tag(directory.lstrip("_"))
    if filename.lower().endswith(_DOC_EXTENSIONS):
        return ""  # README.md, ISSUES.md: documents, not parts of the code
    if stem and stem not in _GENERIC_FILES:
        return normalize_tag(stem)
    return ""


_HEXISH_RE = re.compile(r"[0-9a-f]{8,}|\d{4,}")


def _plausible_component(component: str) -> bool:
    """A name a person would use for a part of a codebase: not an id, a hash or a number."""
    if not component or len(component) < 2 or len(component) > 30:
        return False
    parts = component.split("-")
    if any(len(part) > 20 for part in parts) or _HEXISH_RE.search(component):
        return False
    return any(ch in "aeiouy" for ch in component) and not component.isdigit()


def _component_from_java_frame(frame: str) -> str:
    if frame.startswith(_LIBRARY_FRAME_ROOTS):
        return ""
    packages = [p for p in frame.split(".")[:-2] if p.islower()]
    for package in reversed(packages):
        if package not in _GENERIC_DIRS and len(package) > 1:
            return normalize_tag(package)
    return ""


@dataclass
class _Components:
    code: list[str]  # from paths and frames written in the text, best first
    linked: list[str]  # from links to files in repositories (often template boilerplate)
    errors: list[str]

    def all(self, limit: int = 5) -> list[str]:
        merged = [*self.code[:3], *self.linked, *self.errors[:2]]
        return list(dict.fromkeys(merged))[: max(0, limit)]


def _find_components(title: str, body: str) -> _Components:
    text = f"{title}\n{body}"
    areas: Counter[str] = Counter()
    first_seen: dict[str, int] = {}

    def add(counter: Counter[str], component: str, position: int) -> None:
        if _plausible_component(component):
            counter[component] += 1
            first_seen.setdefault(component, position)

    linked: Counter[str] = Counter()
    for match in _GITHUB_BLOB_RE.finditer(text):
        add(linked, _component_from_path(match.group(1)), match.start())
    without_urls = _URL_RE.sub(" ", text)
    for match in _PATH_RE.finditer(without_urls):
        path = match.group(1)
        # Library frames say where the failure surfaced, not which part of the project is broken.
        if not any(marker in path for marker in _LIBRARY_PATH_MARKERS):
            add(areas, _component_from_path(path), match.start())
    for match in _JAVA_FRAME_RE.finditer(without_urls):
        add(areas, _component_from_java_frame(match.group(1)), match.start())

    errors: Counter[str] = Counter()
    error_seen: dict[str, int] = {}
    for match in _ERROR_NAME_RE.finditer(without_urls):
        tag = _camel_to_kebab(match.group(1))
        errors[tag] += 1
        error_seen.setdefault(tag, match.start())
    for pattern, tag in _ERROR_PHRASES:
        found = pattern.search(without_urls)
        if found:
            errors[tag] += 1
            error_seen.setdefault(tag, found.start())

    def ranked(counter: Counter[str], seen: dict[str, int]) -> list[str]:
        return sorted(counter, key=lambda c: (-counter[c], seen[c]))

    code = ranked(areas, first_seen)
    return _Components(
        code=code,
        linked=[c for c in ranked(linked, first_seen) if c not in code][:1],
        errors=ranked(errors, error_seen),
    )


def extract_components(title: str, body: str, *, limit: int = 5) -> list[str]:
    """Component tags from the text, best first: code areas from file paths and stack frames
    ("src/auth/login.py" → "auth", "tests/test_cache.py" → "cache"; library frames ignored), one
    area from a link to a repository file, then error names ("TypeError" → "type-error",
    "segmentation fault" → "segfault")."""
    found = _find_components(
        _clean_input(title, MAX_TITLE_CHARS), _clean_input(body, MAX_TEXT_CHARS)
    )
    return found.all(limit)


def _first_error_name(text: str) -> str:
    match = _ERROR_NAME_RE.search(text)
    if match:
        return match.group(1)
    for pattern, tag in _ERROR_PHRASES:
        if pattern.search(text):
            return tag.replace("-", " ")
    return ""


# --------------------------------------------------------------------------------------------
# Area tags from the vocabulary (word-boundary keyword rules, title weighted over body)
# --------------------------------------------------------------------------------------------

_AREA_RULES: dict[str, re.Pattern[str]] = {
    "frontend": re.compile(
        r"\b(?:frontend|front-end|ui|button|buttons|modal|dialog|forms?|css|html|browser|chrome|"
        r"firefox|safari|dom|layout|page|pages|dropdown|tooltip|hover|theme|dark mode|font|icons?|"
        r"widget|gui|screen|render(?:ing|s|ed)?|click(?:ing|ed)?|scroll(?:ing|bar)?|jsx|tsx|react|vue|"
        r"angular|svelte|component|components|webview|sidebar|menu|tab|tabs|editor)\b"
    ),
    "backend": re.compile(
        r"\b(?:backend|back-end|server|servers|service|services|worker|workers|daemon|queue|cron|"
        r"rpc|node|nodes|microservices?|process|thread|threads|kernel|runtime|compiler|cli|"
        r"command line|deployment|docker|kubernetes)\b"
    ),
    "api": re.compile(
        r"\b(?:api|apis|endpoint|endpoints|rest|restful|graphql|rpc|http|https|status code|"
        r"request|response|webhook|sdk|json|grpc|openapi|swagger|bindings?)\b"
    ),
    "database": re.compile(
        r"\b(?:database|databases|db|sql|sqlite|postgres|postgresql|mysql|mariadb|mongodb|mongo|"
        r"redis|migrations?|orm|transactions?|sql queries|database queries|leveldb|"
        r"rocksdb|cassandra|elasticsearch)\b"
    ),
    "performance": re.compile(
        r"\b(?:slow|slower|slowly|slowness|performance|perf|latency|speed|speed up|faster|"
        r"memory usage|cpu|lag|laggy|delay|optimi[sz]ation|optimi[sz]e|throughput|hangs?|freez(?:e|es)|"
        r"memory leak|takes too long|high memory|benchmark|bottleneck|out of memory|oom)\b"
    ),
    "security": re.compile(
        r"\b(?:security|vulnerability|vulnerable|cve|xss|csrf|injection|authentication|"
        r"authori[sz]ation|auth|password|passwords|tokens?|secrets?|permissions?|exploit|ssl|tls|"
        r"certificates?|encrypt(?:ion|ed)?|sanitiz(?:e|ation)|privilege|oauth|login|signature)\b"
    ),
    "ui-ux": re.compile(
        r"\b(?:ux|usability|user experience|accessibility|a11y|confusing|design|screen reader|"
        r"contrast|keyboard shortcuts?|keybindings?|padding|alignment|misaligned|discoverab\w*|"
        r"ui/ux|look and feel|intuitive|workflow)\b"
    ),
    "urgent": re.compile(
        r"\b(?:urgent|urgently|critical|asap|immediately|blocking|blocker|outage|data loss|"
        r"production (?:is )?down|severe|p0|sev1|showstopper)\b"
    ),
    "documentation": re.compile(
        r"\b(?:documentation|docs|docstrings?|readme|typos?|user guide|tutorials?|changelog|wiki)\b"
    ),
}
# Components that point at an area of the vocabulary.
_COMPONENT_AREAS: dict[str, str] = {
    **dict.fromkeys(
        _words("auth authentication login oauth security crypto ssl tls permissions acl"),
        "security",
    ),
    **dict.fromkeys(
        _words("db database models migrations sql orm storage persistence"), "database"
    ),
    **dict.fromkeys(_words("api rest graphql endpoints routes rpc http"), "api"),
    **dict.fromkeys(
        _words("ui frontend components pages views templates css styles web client widgets gui"),
        "frontend",
    ),
    **dict.fromkeys(
        _words("server backend services handlers workers jobs tasks daemon"), "backend"
    ),
    **dict.fromkeys(_words("docs doc documentation"), "documentation"),
    **dict.fromkeys(_words("out-of-memory memory-leak deadlock timeout"), "performance"),
}
_FRONTEND_EXT_RE = re.compile(r"\.(?:css|scss|sass|less|html|htm|jsx|tsx|vue|svelte)\b")


# In a body, "critical" or "immediately" is usually emphasis; only these say the issue is urgent.
_AREA_BODY_RULES: dict[str, re.Pattern[str]] = {
    "urgent": re.compile(
        r"\b(?:urgent|urgently|asap|blocker|outage|data loss|production (?:is )?down|showstopper)\b"
    ),
}


def _area_scores(parsed: _Parsed, components: Sequence[str]) -> Counter[str]:
    scores: Counter[str] = Counter()
    for area, pattern in _AREA_RULES.items():
        body_pattern = _AREA_BODY_RULES.get(area, pattern)
        title_hits = len({m.group(0) for m in pattern.finditer(parsed.title_l)})
        body_hits = len({m.group(0) for m in body_pattern.finditer(parsed.prose_l)})
        score = 2 * title_hits + min(body_hits, 3)
        if score:
            scores[area] = score
    for component in components:
        area = _COMPONENT_AREAS.get(component)
        if area:
            scores[area] += 2
    if _FRONTEND_EXT_RE.search(parsed.raw_l):
        scores["frontend"] += 1
    return scores


# --------------------------------------------------------------------------------------------
# Summary: a sentence built from the title plus the body's most informative sentence
# --------------------------------------------------------------------------------------------

_SUMMARY_MAX_SENTENCE = 220
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s+|(?<=[\u3002\uff01\uff1f])")
_HEADING_LINE_RE = re.compile(
    r"^\s*(?:#{1,6}\s|\*\*[^*\n]{1,120}\*\*\s*:?\s*$|__[^_\n]{1,120}__\s*$)"
)
_CHECKLIST_RE = re.compile(r"^\s*[-*+]\s*\[[ xX]\]")
_BULLET_RE = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_METADATA_LINE_RE = re.compile(r"^\s*[-*]?\s*[\w /().-]{1,40}:\s*\S")
# Pasted tracebacks, frames, prompts and log lines outside code fences: output, not prose.
_LOG_LINE_RE = re.compile(
    r"(?i)(?:traceback \(most recent call last\)|file \"[^\"\n]{1,300}\", line \d|at [\w$.<>/]{1,300}[(:]"
    r"|[\w.]{0,80}(?:error|exception|warning)\b[^\n]{0,40}:|\$ |>>> |[#>] |\[?\d{2}:\d{2}:\d{2}"
    r"|\[?\d{4}-\d{2}-\d{2}[ t]\d{2}:|(?:error|warning|fatal|info|debug)[:\]] )"
)
# "Have I written custom code (...): Yes" - an issue form's question with its one-word answer.
_FORM_ANSWER_RE = re.compile(r"(?i)[:?]\s*(?:yes|no|n/?a|none|unknown|true|false)\.?$")
_NO_RESPONSE_RE = re.compile(r"^\s*_?no response_?\s*$", re.I)
_BOILERPLATE_RE = re.compile(
    r"\b(?:thanks?|thank you|hi|hello|hey|greetings|please (?:make sure|read|search|fill|provide|"
    r"check|describe|include|delete|see|note)|i agree|checklist|code of conduct|this template|the "
    r"template|do not delete|issue reporter|search existing|before (?:submitting|filing|opening)|"
    r"see details at|pull request readiness|contribut(?:e|ing) guidelines?|are you willing|"
    r"if applicable|feel free|cc @|/cc|ping @|merge with extra|resolves #|fixes #|closes #|"
    r"relates? to #|see also)\b"
)
_SECRET_RE = re.compile(
    r"(?i)(?:password|passwd|secret|token|api[_ -]?key|authorization)\s*[:=]\s*\S"
    r"|\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|xox[abp]-[A-Za-z0-9-]{10,})"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)
_WORD_RE = re.compile(r"[^\W\d_][\w'-]*")
_STOPWORDS = frozenset(
    _words("""
    a an the and or but if then else of in on at to for from by with without into onto over under
    is are was were be been being am do does did done doing have has had having it its this that
    these those there here i me my we our you your he she they them their not no yes can could
    should would will may might must when while where which who what why how as so than too very
    just also only some any all each more most other such own same up down out off again further
    once about after before because until against between through during above below
    """)
)
_KIND_CUES: dict[str, re.Pattern[str]] = {
    "bug": re.compile(
        r"\b(?:error|errors|fails?|failed|failing|crash\w*|exception|instead|expected|actual|"
        r"when|broken|wrong|incorrect|throws?|returns?|should|doesn'?t|does not|cannot|can'?t)\b"
    ),
    "feature-request": re.compile(
        r"\b(?:would|could|add|adding|support|allow|option|ability|feature|propose|suggest|"
        r"currently|instead|useful|like to|want|need)\b"
    ),
    "question": re.compile(
        r"\b(?:how|why|what|whether|possible|way|wondering|trying|understand|help|know)\b|\?"
    ),
    "documentation": re.compile(
        r"\b(?:documentation|docs|docstring|example|guide|tutorial|page|typo|mention\w*|describ\w*|"
        r"explain\w*|states?|says?|missing|unclear|clarify)\b"
    ),
}
_KIND_LABELS = {
    "bug": "Bug",
    "feature-request": "Feature request",
    "question": "Question",
    "documentation": "Documentation",
}
_KIND_COMPONENT_WORD = {
    "bug": "in",
    "feature-request": "for",
    "question": "about",
    "documentation": "for",
}


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD_RE.findall(text.lower()) if len(w) > 2 and w not in _STOPWORDS}


_TEXT_PUNCTUATION = frozenset(
    " .,;:!?'\"()[]-/`%&+=#@*_\u2019\u201c\u201d\u3001\u3002\uff0c\uff01\uff1f"
)


def _reads_as_text(sentence: str) -> bool:
    """False for binary junk decoded as text: too many symbols that writing does not use."""
    odd = 0
    for ch in sentence:
        if ch.isalnum() or ch in _TEXT_PUNCTUATION:
            continue
        odd += 1
    if odd > len(sentence) * 0.05:
        return False
    # Latin-1 noise is alphabetic but mixes cases mid-word ("gCxK"); real words rarely do.
    words = [w for w in _WORD_RE.findall(sentence) if len(w) > 1]
    if not words:
        return False
    mixed = sum(
        1
        for w in words
        if w.lower() != w.upper() and not (w.islower() or w.isupper() or w.istitle())
    )
    return mixed <= len(words) * 0.3


def _looks_like_code(line: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return False
    if line.startswith(("    ", "\t")) and not _BULLET_RE.match(line):
        return True
    letters = sum(ch.isalpha() or ch.isspace() for ch in stripped)
    return letters / len(stripped) < 0.7


def _prose_units(prose: str) -> list[str]:
    """Paragraphs and list items of the author's prose, template furniture removed."""
    units: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            units.append(" ".join(current))
            current.clear()

    for raw_line in prose.split("\n")[:2000]:
        line = raw_line.rstrip()
        stripped = line.strip().lstrip(">").strip()
        if not stripped:
            flush()
            continue
        if (
            _HEADING_LINE_RE.match(line)
            or _CHECKLIST_RE.match(line)
            or _NO_RESPONSE_RE.match(stripped)
            or stripped.startswith("|")
            or _looks_like_code(line)
            or _LOG_LINE_RE.match(stripped)
        ):
            flush()
            continue
        if (
            _METADATA_LINE_RE.match(stripped) and len(stripped.split()) <= 8
        ) or _FORM_ANSWER_RE.search(stripped):
            flush()
            continue
        if _BULLET_RE.match(stripped):
            flush()
            stripped = _BULLET_RE.sub("", stripped)
        current.append(_INLINE_CODE_RE.sub(r"\1", stripped).replace("**", "").replace("__", ""))
    flush()
    return units


def _fit_sentence(sentence: str) -> str:
    """The sentence itself when short enough, else its longest leading clause; "" when neither fits.

    Cutting happens at a clause boundary and the result ends like a sentence: a summary is never a
    description chopped mid-word.
    """
    sentence = " ".join(sentence.split()).strip(" -:;,")
    if len(sentence) > _SUMMARY_MAX_SENTENCE:
        window = sentence[: _SUMMARY_MAX_SENTENCE + 1]
        cut = max(
            window.rfind(sep) for sep in (", ", "; ", " — ", " - ", " because ", " but ", " which ")
        )
        if cut < 60:
            return ""
        sentence = window[:cut].rstrip(" ,;:-")
    if sentence and sentence[-1] not in ".!?\u3002\uff01\uff1f":
        sentence += "."
    return sentence


def _best_sentence(parsed: _Parsed, kind: str) -> str:
    title_words = _content_words(parsed.title)
    cue = _KIND_CUES.get(kind, _KIND_CUES["bug"])
    best: tuple[float, str] | None = None
    position = 0
    for unit in _prose_units(parsed.prose):
        for sentence in _SENTENCE_SPLIT_RE.split(unit):
            sentence = sentence.strip()
            if not sentence:
                continue
            position += 1
            if position > 200:
                break
            words = sentence.split()
            cjk = sum(
                1 for ch in sentence if "\u3000" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af"
            )
            if (len(words) < 5 and cjk < 8) or len(words) > 80:
                continue
            if max(len(w) for w in words) > 50 or not _reads_as_text(sentence):
                continue  # a URL, path or blob of data, not prose
            lower = sentence.lower()
            if _SECRET_RE.search(sentence) or _BOILERPLATE_RE.search(lower):
                continue
            if _is_choice_prompt(lower):
                continue
            content = _content_words(sentence)
            if title_words and content and len(content & title_words) >= 0.85 * len(content):
                continue  # restates the title: adds nothing
            overlap = len(content & title_words) / len(title_words) if title_words else 0.0
            cues = min(len({m.group(0) for m in cue.finditer(lower)}), 3)
            score = 3.0 * overlap + 0.8 * cues - 0.15 * min(position, 20)
            if 8 <= len(words) <= 35:
                score += 1.0
            if not _fit_sentence(sentence):
                continue
            if best is None or score > best[0]:
                best = (score, sentence)
    return _capitalise_plain(_fit_sentence(best[1])) if best else ""


def _capitalise_plain(text: str) -> str:
    """Capitalise a plain first word, never an identifier ("app#resolve()", "tf.keras", "npm")."""
    first_word = text.split(" ", 1)[0]
    if first_word.isalpha() and first_word.islower() and len(first_word) > 2:
        return text[0].upper() + text[1:]
    return text


def _subject(title: str) -> tuple[str, bool]:
    """The title as the subject of a sentence, and whether it was phrased as a question."""
    subject = _INLINE_CODE_RE.sub(r"\1", _strip_title_prefix(title))
    subject = _SUBJECT_MARKER_RE.sub("", subject) or subject
    subject = " ".join(subject.split()).strip(" .:;,!-")
    is_question = subject.endswith("?")
    subject = subject.rstrip("? ")
    if len(subject) > 160:
        window = subject[:161]
        cut = max(window.rfind(sep) for sep in (", ", "; ", " — ", " - ", " ("))
        subject = window[:cut] if cut >= 40 else window.rsplit(" ", 1)[0]
        subject = subject.rstrip(" ,;:-(")
    return subject, is_question


def _summary(parsed: _Parsed, kind: str, found: _Components) -> str:
    label = _KIND_LABELS.get(kind, "Issue")
    subject, is_question = _subject(parsed.title)
    detail = _best_sentence(parsed, kind)
    # Only a component the author wrote (a path or frame) names the area; linked files are often
    # the issue template's own links.
    area = found.code[0] if found.code else ""
    if area and area.replace("-", " ") in re.sub(r"[-_]", " ", subject.lower()):
        area = ""
    head = label + (
        f" {_KIND_COMPONENT_WORD[kind]} {area}" if area and kind in _KIND_COMPONENT_WORD else ""
    )
    if not subject:
        if detail:
            return f"{head}: {detail}"
        return f"{label} with no title or description."
    first = f"{head}: {_capitalise_plain(subject)}"
    if kind == "bug":
        error = _first_error_name(f"{parsed.title}\n{parsed.body}")
        if error and error.lower() not in subject.lower():
            first += f" ({error})"
    asks = is_question or _WH_START_RE.match(subject.lower()) is not None
    first += "?" if asks and kind == "question" else "."
    return f"{first} {detail}" if detail else first


_WH_START_RE = re.compile(
    r"(?:how|why|what|which|where|who|is there|is it possible|can i|how do)\b"
)


def summarize(title: str, body: str, *, kind: str | None = None) -> str:
    """One or two sentences: "<Kind> [in <component>]: <subject> [(<ErrorName>)]." followed by the
    body's most informative sentence (template headings, code, links and boilerplate removed)."""
    parsed = _parse(title, body)
    if kind not in KINDS:
        kind = _decide(parsed).kind
    return _summary(parsed, kind, _find_components(parsed.title, parsed.body))


# --------------------------------------------------------------------------------------------
# fallback_enrich: everything together
# --------------------------------------------------------------------------------------------


@dataclass
class Enrichment:
    kind: str
    tags: list[str]
    summary: str
    components: list[str] = field(default_factory=list)
    source: str = "fallback"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def fallback_enrich(
    title: str,
    body: str,
    *,
    vocabulary: Sequence[str] | None = None,
    allow_new_tags: bool = False,
) -> Enrichment:
    """Kind, 3-5 tags, a 1-2 sentence summary and component tags, with no LLM.

    Tags are, in order: the kind, the best-supported areas of the vocabulary, components (only when
    `allow_new_tags` or when the vocabulary names them) and "needs-review". The kind and
    RESERVED_TAGS are allowed whatever the vocabulary; when the text supports fewer than three
    tags, "needs-triage" fills the gap rather than a guess.
    """
    parsed = _parse(title, body)
    kind = _decide(parsed).kind
    found = _find_components(parsed.title, parsed.body)
    components = found.all()
    vocab = list(DEFAULT_VOCABULARY if vocabulary is None else vocabulary)
    allowed = [*vocab, *RESERVED_TAGS]
    allowed_norm = {normalize_tag(v) for v in allowed if isinstance(v, str)}

    areas = _area_scores(parsed, components)
    vocab_order = {normalize_tag(v): i for i, v in enumerate(vocab) if isinstance(v, str)}
    # Another kind's name is not an area ("docs" in a bug report does not make it documentation).
    ranked_areas = [
        a
        for a in sorted(areas, key=lambda a: (-areas[a], vocab_order.get(a, len(vocab_order))))
        if (a not in KINDS or a == kind) and (allow_new_tags or a in allowed_norm)
    ]
    candidates = [kind, *ranked_areas[:3], *components]
    tags = normalize_tags(candidates, vocabulary=allowed, allow_new=allow_new_tags, limit=4)
    tags.append("needs-review")
    if len(tags) < 3:
        tags.append("needs-triage")
    return Enrichment(
        kind=kind,
        tags=tags,
        summary=_summary(parsed, kind, found),
        components=components,
        source="fallback",
    )
