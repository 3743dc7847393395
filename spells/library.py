"""Spell definition files: load, validate and dump spells as YAML or JSON (no Django).

A team keeps its knowledge base in a repository as files like:

    version: 1
    defaults:            # optional, applied to every spell that does not say otherwise
      language: python
      tags: [python]
    spells:
      - slug: python-module-not-found       # stable key: importing twice updates, never duplicates
        title: "ModuleNotFoundError: a dependency is not installed"
        description: |
          Why it happens and how to fix it.
        solution_code: |
          pip install -r requirements.txt
        error_type: ModuleNotFoundError
        tags: [imports]
        patterns:
          - regex: "ModuleNotFoundError: No module named '[\\w.]+'"
            sample: "ModuleNotFoundError: No module named 'requests'"

Every pattern must compile (RE2, or the backtracking engine for lookarounds), must match its
sample line and must not be too broad. Errors name the file, the spell's index and slug, and the
field, and all of a file's problems are reported at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import yaml

from spells.matching import STATUSES, SpellRecord, validate_pattern

SOURCES = ("manual", "auto", "imported")
FORMATS = ("yaml", "json")
FORMAT_VERSION = 1
STARTER_DIR = Path(__file__).resolve().parent / "starter"

MAX_TITLE = 100
MAX_SLUG = 100
MAX_LANGUAGE = 50
MAX_ERROR_TYPE = 200
MAX_TAG = 50

_SLUG = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


class PatternDef(TypedDict):
    regex: str
    sample: str


@dataclass(slots=True)
class SpellDef:
    slug: str
    title: str
    description: str
    solution_code: str = ""
    language: str = ""
    error_type: str = ""
    tags: list[str] = field(default_factory=list)
    patterns: list[PatternDef] = field(default_factory=list)
    status: str = "approved"
    source: str = "imported"
    fingerprints: list[str] = field(default_factory=list)
    confidence_score: int | None = None
    auto_generated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data in file order; optional fields left out while they hold their default."""
        data: dict[str, Any] = {
            "slug": self.slug,
            "title": self.title,
            "description": self.description,
            "solution_code": self.solution_code,
            "language": self.language,
            "error_type": self.error_type,
            "tags": list(self.tags),
            "patterns": [{"regex": p["regex"], "sample": p["sample"]} for p in self.patterns],
            "status": self.status,
            "source": self.source,
        }
        if self.fingerprints:
            data["fingerprints"] = list(self.fingerprints)
        if self.confidence_score is not None:
            data["confidence_score"] = self.confidence_score
        if self.auto_generated:
            data["auto_generated"] = True
        return data

    def to_record(self, id: int | str | None = None) -> SpellRecord:
        """The matcher's view of this spell (id defaults to the slug)."""
        return SpellRecord(
            id=self.slug if id is None else id,
            title=self.title,
            status=self.status,
            patterns=[p["regex"] for p in self.patterns],
            fingerprints=list(self.fingerprints),
            text=f"{self.title}\n{self.description}\n{self.error_type}",
            error_type=self.error_type,
            language=self.language,
        )


@dataclass(frozen=True, slots=True)
class SpellProblem:
    source: str
    index: int | None
    field: str | None
    message: str
    slug: str | None = None

    def __str__(self) -> str:
        where = self.source
        if self.index is not None:
            where += f": spells[{self.index}]"
            if self.slug:
                where += f" ({self.slug})"
        if self.field:
            where += f".{self.field}" if self.index is not None else f": {self.field}"
        return f"{where}: {self.message}"


class SpellFileError(ValueError):
    """A spell file that cannot be used; `problems` lists every problem found."""

    def __init__(self, problems: list[SpellProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

_FIELDS = (
    "slug",
    "title",
    "description",
    "solution_code",
    "language",
    "error_type",
    "tags",
    "patterns",
    "status",
    "source",
    "fingerprints",
    "confidence_score",
    "auto_generated",
)
_DEFAULTABLE = ("language", "error_type", "tags", "status", "source")


def parse_spells(
    text: str,
    fmt: str = "yaml",
    *,
    source: str = "<string>",
    default_source: str = "imported",
) -> list[SpellDef]:
    """Parse and validate a spell file's text; raises SpellFileError listing every problem."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    data = _load(text, fmt, source)
    if isinstance(data, list):
        items, defaults = data, {}
    elif isinstance(data, dict):
        unknown = sorted(set(data) - {"version", "defaults", "spells"})
        if unknown:
            raise SpellFileError(
                [SpellProblem(source, None, None, f"unknown top-level key(s): {unknown}")]
            )
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise SpellFileError(
                [SpellProblem(source, None, "version", f"unsupported version {version!r}")]
            )
        items = data.get("spells")
        defaults = data.get("defaults") or {}
        if not isinstance(items, list):
            raise SpellFileError([SpellProblem(source, None, "spells", "must be a list of spells")])
        if not isinstance(defaults, dict) or set(defaults) - set(_DEFAULTABLE):
            raise SpellFileError(
                [
                    SpellProblem(
                        source,
                        None,
                        "defaults",
                        f"must be a mapping with only these keys: {list(_DEFAULTABLE)}",
                    )
                ]
            )
    else:
        raise SpellFileError(
            [SpellProblem(source, None, None, "expected a list of spells or {spells: [...]}")]
        )

    problems: list[SpellProblem] = []
    defs: list[SpellDef] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        spell, item_problems = _parse_one(item, index, defaults, source, default_source)
        problems.extend(item_problems)
        if spell is None:
            continue
        if spell.slug in seen:
            problems.append(
                SpellProblem(
                    source,
                    index,
                    "slug",
                    f"duplicate slug, already used by spells[{seen[spell.slug]}]",
                    spell.slug,
                )
            )
            continue
        seen[spell.slug] = index
        defs.append(spell)
    if problems:
        raise SpellFileError(problems)
    return defs


def _load(text: str, fmt: str, source: str) -> Any:
    try:
        if fmt == "json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise SpellFileError(
            [SpellProblem(source, None, where, f"invalid JSON: {exc.msg}")]
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpellFileError(
            [SpellProblem(source, None, where, f"invalid YAML: {problem}")]
        ) from None


def _parse_one(
    item: Any,
    index: int,
    defaults: dict[str, Any],
    source: str,
    default_source: str,
) -> tuple[SpellDef | None, list[SpellProblem]]:
    problems: list[SpellProblem] = []
    slug_hint = item.get("slug") if isinstance(item, dict) else None
    slug_hint = slug_hint if isinstance(slug_hint, str) else None

    def bad(field_name: str | None, message: str) -> None:
        problems.append(SpellProblem(source, index, field_name, message, slug_hint))

    if not isinstance(item, dict):
        bad(None, "must be a mapping of fields")
        return None, problems
    for key in item:
        if key not in _FIELDS:
            bad(str(key), f"unknown field (known fields: {', '.join(_FIELDS)})")

    merged = {**defaults, **item}
    if "tags" in defaults and "tags" in item and isinstance(item["tags"], list):
        merged["tags"] = [*defaults["tags"], *item["tags"]]

    def text(name: str, *, required: bool = False, max_len: int | None = None) -> str:
        value = merged.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            bad(name, f"must be a string, not {type(value).__name__}")
            return ""
        if required and not value.strip():
            bad(name, "is required")
        if max_len is not None and len(value.strip()) > max_len:
            bad(name, f"is {len(value.strip())} characters long, at most {max_len}")
        return value

    slug = text("slug", required=True, max_len=MAX_SLUG).strip()
    if slug and not _SLUG.match(slug):
        bad("slug", "must be lowercase letters, digits and single '-', '_' or '.' between them")
    title = text("title", required=True, max_len=MAX_TITLE).strip()
    description = text("description", required=True).strip()
    solution_code = text("solution_code").strip("\n")
    language = text("language", max_len=MAX_LANGUAGE).strip().lower()
    error_type = text("error_type", max_len=MAX_ERROR_TYPE).strip()
    status = text("status") or "approved"
    if status not in STATUSES:
        bad("status", f"must be one of {list(STATUSES)}, not {status!r}")
    origin = text("source") or default_source
    if origin not in SOURCES:
        bad("source", f"must be one of {list(SOURCES)}, not {origin!r}")

    tags = _string_list(merged.get("tags"), "tags", bad)
    tags = list(dict.fromkeys(t.strip().lower() for t in tags if t.strip()))
    for tag in tags:
        if len(tag) > MAX_TAG:
            bad("tags", f"tag {tag[:20]!r}... is longer than {MAX_TAG} characters")
    fingerprints = _string_list(merged.get("fingerprints"), "fingerprints", bad)

    confidence = merged.get("confidence_score")
    if confidence is not None and (
        isinstance(confidence, bool)
        or not isinstance(confidence, int)
        or not 0 <= confidence <= 100
    ):
        bad("confidence_score", "must be an integer from 0 to 100")
        confidence = None
    auto_generated = merged.get("auto_generated", False)
    if not isinstance(auto_generated, bool):
        bad("auto_generated", "must be true or false")
        auto_generated = False

    patterns = _parse_patterns(merged.get("patterns"), bad)
    if problems:
        return None, problems
    return (
        SpellDef(
            slug=slug,
            title=title,
            description=description,
            solution_code=solution_code,
            language=language,
            error_type=error_type,
            tags=tags,
            patterns=patterns,
            status=status,
            source=origin,
            fingerprints=fingerprints,
            confidence_score=confidence,
            auto_generated=auto_generated,
        ),
        problems,
    )


def _string_list(value: Any, name: str, bad: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        bad(name, "must be a list of strings")
        return []
    return list(value)


def _parse_patterns(value: Any, bad: Any) -> list[PatternDef]:
    if value is None:
        return []
    if not isinstance(value, list):
        bad("patterns", "must be a list of {regex, sample} mappings")
        return []
    patterns: list[PatternDef] = []
    seen: set[str] = set()
    for i, entry in enumerate(value):
        where = f"patterns[{i}]"
        if not isinstance(entry, dict):
            bad(where, "must be a mapping with 'regex' and 'sample'")
            continue
        extra = sorted(set(entry) - {"regex", "sample"})
        if extra:
            bad(where, f"unknown key(s) {extra}; a pattern has only 'regex' and 'sample'")
        regex, sample = entry.get("regex"), entry.get("sample")
        if not isinstance(regex, str) or not regex:
            bad(f"{where}.regex", "is required and must be a string")
            continue
        if not isinstance(sample, str):
            bad(f"{where}.sample", "is required and must be a string (a line the regex matches)")
            continue
        if regex in seen:
            bad(f"{where}.regex", "duplicate of an earlier pattern of this spell")
            continue
        seen.add(regex)
        for problem in validate_pattern(regex, sample):
            bad(f"{where}.regex", problem)
        patterns.append({"regex": regex, "sample": sample})
    return patterns


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def format_for_path(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    raise ValueError(
        f"{path}: cannot tell the format from the extension (use .yaml, .yml or .json)"
    )


def load_spell_file(path: str | Path, *, default_source: str = "imported") -> list[SpellDef]:
    path = Path(path)
    fmt = format_for_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpellFileError([SpellProblem(str(path), None, None, f"cannot read: {exc}")]) from None
    return parse_spells(text, fmt, source=str(path), default_source=default_source)


def load_starter_library(directory: str | Path | None = None) -> list[SpellDef]:
    """Every spell shipped with Grimoire, in file then file-order; slugs unique across files."""
    directory = Path(directory) if directory is not None else STARTER_DIR
    defs: list[SpellDef] = []
    owner: dict[str, str] = {}
    problems: list[SpellProblem] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            loaded = load_spell_file(path)
        except SpellFileError as exc:
            problems.extend(exc.problems)
            continue
        for index, spell in enumerate(loaded):
            if spell.slug in owner:
                problems.append(
                    SpellProblem(
                        str(path),
                        index,
                        "slug",
                        f"duplicate slug, already defined in {owner[spell.slug]}",
                        spell.slug,
                    )
                )
                continue
            owner[spell.slug] = path.name
            defs.append(spell)
    if problems:
        raise SpellFileError(problems)
    return defs


# --------------------------------------------------------------------------------------------
# Dumping
# --------------------------------------------------------------------------------------------


class _BlockDumper(yaml.SafeDumper):
    """Safe dumper that writes multi-line strings (descriptions, code) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def dump_spells(defs: Iterable[SpellDef], fmt: str = "yaml") -> str:
    """A file `parse_spells` reads back to the same spells."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    data = {"version": FORMAT_VERSION, "spells": [d.to_dict() for d in defs]}
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return yaml.dump(
        data,
        Dumper=_BlockDumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
