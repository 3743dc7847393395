"""The offline provider: deterministic answers with no network and no key.

It is the last provider in the default chain so Grimoire works on a fresh machine. Every answer is
clearly marked: plain text starts with "[offline]", and with a JSON schema it builds an instance
that validates against the schema, with strings taken from the input (also marked "[offline]")
and confidence-like numbers set low, so nothing it writes passes for a real model's judgement.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from llmcore.providers.base import (
    MODE_NONE,
    MODE_OFFLINE,
    Provider,
    ProviderResult,
    ProviderSpec,
    register,
)
from llmcore.types import LLMRequest, Usage

MARK = "[offline]"
OFFLINE_MODEL = "offline"
NOTICE = (
    f"{MARK} No LLM provider answered, so this is an automatic, low-confidence placeholder "
    "built from the input. Review it before relying on it."
)
MAX_DEPTH = 8
DEFAULT_LIST_LENGTH = 3

_CONFIDENCE_RE = re.compile(r"confiden|certaint|probab|likelihood|score", re.IGNORECASE)
_TITLE_WORDS = frozenset({"title", "name", "headline", "subject", "label"})
_CODE_WORDS = frozenset({"code", "patch", "diff", "snippet", "command", "script", "shell"})
_LIST_WORDS = frozenset({"tags", "labels", "keywords", "topics", "categories"})
_NAME_SPLIT_RE = re.compile(r"[_\-\s.]+|(?<=[a-z])(?=[A-Z])")
_WORD_RE = re.compile(r"[a-z][a-z0-9_+#.-]{2,}")
_STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "from",
        "have",
        "has",
        "had",
        "was",
        "were",
        "are",
        "not",
        "but",
        "you",
        "your",
        "our",
        "their",
        "there",
        "what",
        "when",
        "where",
        "which",
        "while",
        "will",
        "would",
        "could",
        "should",
        "can",
        "cannot",
        "into",
        "onto",
        "than",
        "then",
        "them",
        "they",
        "these",
        "those",
        "been",
        "being",
        "about",
        "after",
        "before",
        "above",
        "below",
        "under",
        "over",
        "also",
        "just",
        "only",
        "very",
        "more",
        "most",
        "some",
        "such",
        "each",
        "other",
        "any",
        "all",
        "none",
        "null",
        "true",
        "false",
        "json",
        "schema",
        "respond",
        "answer",
        "output",
        "return",
        "please",
        "given",
        "following",
        "provide",
        "generate",
        "value",
        "values",
        "field",
        "fields",
        "string",
        "number",
        "object",
        "array",
        "error",
        "errors",
        "line",
        "lines",
        "file",
        "files",
        "using",
        "used",
        "use",
        "make",
        "made",
        "need",
        "needs",
        "like",
    ]
)

_FORMAT_VALUES = {
    "date-time": "2000-01-01T00:00:00Z",
    "date": "2000-01-01",
    "time": "00:00:00Z",
    "email": "offline@example.com",
    "idn-email": "offline@example.com",
    "uri": "https://example.com/offline",
    "url": "https://example.com/offline",
    "iri": "https://example.com/offline",
    "uri-reference": "offline",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "duration": "PT0S",
}


def _name_words(name: str) -> set[str]:
    return {w.lower() for w in _NAME_SPLIT_RE.split(name) if w}


def _is_title(name: str) -> bool:
    return bool(_name_words(name) & _TITLE_WORDS)


def _is_code(name: str) -> bool:
    return bool(_name_words(name) & _CODE_WORDS)


def _is_list(name: str) -> bool:
    words = _NAME_SPLIT_RE.split(name)
    return bool(words) and words[-1].lower() in _LIST_WORDS


def _collapse(text: str) -> str:
    return " ".join(text.split())


class _Builder:
    def __init__(self, root: dict[str, Any], prompt: str) -> None:
        self.root = root
        self.prompt = prompt
        lines = [line.strip() for line in prompt.splitlines() if line.strip()]
        self.first_line = _collapse(lines[0]) if lines else "empty input"
        self.excerpt = _collapse(prompt)[:300] or "empty input"
        self.keywords = self._keywords(prompt)
        self.prompt_lower = prompt.lower()

    @staticmethod
    def _keywords(prompt: str) -> list[str]:
        words = [w.strip(".-") for w in _WORD_RE.findall(prompt.lower())]
        words = [w for w in words if len(w) >= 3 and w not in _STOPWORDS and not w.isdigit()]
        counts = Counter(words)
        first_seen = {w: i for i, w in reversed(list(enumerate(words)))}
        return sorted(counts, key=lambda w: (-counts[w], first_seen[w]))

    # -- dispatch --------------------------------------------------------------------------------

    def build(self, schema: Any, name: str = "", depth: int = 0) -> Any:
        if schema is True or schema is None:
            return self._string({}, name)
        if not isinstance(schema, dict) or depth > MAX_DEPTH:
            return None
        if "$ref" in schema:
            target = self._resolve(schema["$ref"])
            if target is not None:
                merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
                return self.build(merged, name, depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._pick_enum(schema["enum"])
        if isinstance(schema.get("allOf"), list):
            merged = self._merge_all_of(schema)
            return self.build(merged, name, depth + 1)
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self._first_valid(branches, schema, key, name, depth)
        kind = self._type_of(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind in ("integer", "number"):
            return self._number(schema, name, integer=kind == "integer")
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return self._string(schema, name)

    def _resolve(self, ref: str) -> dict[str, Any] | None:
        if not ref.startswith("#"):
            return None
        node: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node if isinstance(node, dict) else None

    @staticmethod
    def _type_of(schema: dict[str, Any]) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            non_null = [k for k in kind if k != "null"]
            return non_null[0] if non_null else "null"
        if isinstance(kind, str):
            return kind
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "multipleOf")):
            return "number"
        return "string"

    def _pick_enum(self, options: list[Any]) -> Any:
        # Prefer an option the input mentions ("bug" in a bug report); otherwise the first.
        for option in options:
            if isinstance(option, str) and len(option) > 2 and option.lower() in self.prompt_lower:
                return option
        return options[0]

    def _merge_all_of(self, schema: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, dict) and "$ref" in part:
                part = self._resolve(part["$ref"]) or {}
            if not isinstance(part, dict):
                continue
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = sorted({*merged.get("required", []), *value})
                else:
                    merged.setdefault(key, value)
        return merged

    def _first_valid(
        self, branches: list[Any], schema: dict[str, Any], key: str, name: str, depth: int
    ) -> Any:
        rest = {k: v for k, v in schema.items() if k != key}
        candidates = []
        for branch in branches:
            candidate_schema = {**rest, **branch} if isinstance(branch, dict) else branch
            value = self.build(candidate_schema, name, depth + 1)
            if _is_valid(value, {**self._defs(), **candidate_schema}):
                return value
            candidates.append(value)
        return candidates[0]

    def _defs(self) -> dict[str, Any]:
        return {k: self.root[k] for k in ("$defs", "definitions") if k in self.root}

    # -- types -----------------------------------------------------------------------------------

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties") or {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        result: dict[str, Any] = {}
        for key, sub in props.items():
            value = self.build(sub, key, depth + 1)
            # Optional properties are filled only when the value we can make is valid.
            if key in required or _is_valid(value, {**self._defs(), **_as_schema(sub)}):
                result[key] = value
        extra = schema.get("additionalProperties")
        for key in required:
            if key not in result:
                result[key] = self.build(extra if isinstance(extra, dict) else {}, key, depth + 1)
        return result

    def _array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        min_items = int(schema.get("minItems") or 0)
        max_items = schema.get("maxItems")
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            items = [self.build(sub, name, depth + 1) for sub in prefix]
            return items[: max_items if isinstance(max_items, int) else None]
        item_schema = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        if _is_list(name) and self._type_of(item_schema) == "string":
            count = max(min_items, DEFAULT_LIST_LENGTH)
        else:
            count = max(min_items, 1)
        if isinstance(max_items, int):
            count = min(count, max_items)
        enum = item_schema.get("enum") if isinstance(item_schema, dict) else None
        if isinstance(enum, list) and enum:
            mentioned = [e for e in enum if isinstance(e, str) and e.lower() in self.prompt_lower]
            values = mentioned or enum[:1]
            pool = values + [e for e in enum if e not in values]
            return pool[: max(min_items, min(count, len(values)))]
        if _is_list(name) and self._type_of(item_schema) == "string":
            words = self.keywords or ["offline"]
            items = list(words[:count])
            while len(items) < count:
                items.append(f"offline-{len(items) + 1}")
            return [self._fit_string(item_schema, w) for w in items]
        items = [self.build(item_schema, _singular(name), depth + 1) for _ in range(count)]
        if schema.get("uniqueItems"):
            items = _make_unique(items)
        return items

    def _number(self, schema: dict[str, Any], name: str, *, integer: bool) -> int | float:
        lo = schema.get("minimum")
        hi = schema.get("maximum")
        ex_lo = schema.get("exclusiveMinimum")
        ex_hi = schema.get("exclusiveMaximum")
        step = 1 if integer else 0.001
        if isinstance(ex_lo, int | float) and not isinstance(ex_lo, bool):
            lo = ex_lo + step if lo is None else max(lo, ex_lo + step)
        if isinstance(ex_hi, int | float) and not isinstance(ex_hi, bool):
            hi = ex_hi - step if hi is None else min(hi, ex_hi - step)
        if _CONFIDENCE_RE.search(name):
            # Low on purpose: an offline answer must never look confident.
            if lo is not None and hi is not None:
                value: float = lo + (hi - lo) * 0.1
            elif hi is not None and hi <= 1:
                value = min(hi, 0.1)
            else:
                value = (lo or 0) + (10 if integer else 0.1)
        else:
            value = lo if lo is not None else 0
        if hi is not None and value > hi:
            value = hi
        if lo is not None and value < lo:
            value = lo
        multiple = schema.get("multipleOf")
        if isinstance(multiple, int | float) and multiple > 0:
            value = math.ceil(value / multiple) * multiple
        if integer:
            number = round(value)
            if lo is not None:
                number = max(number, math.ceil(lo))
            if hi is not None:
                number = min(number, math.floor(hi))
            return number
        return float(value)

    def _string(self, schema: dict[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMAT_VALUES:
            return _FORMAT_VALUES[fmt]
        if _is_title(name):
            text = f"{MARK} {self.first_line[:80]}"
        elif _is_code(name):
            text = f"# {MARK} no LLM was available, so no code was generated."
        elif name:
            text = f"{NOTICE} Input: {self.excerpt}"
        else:
            text = f"{MARK} {self.excerpt}"
        return self._fit_string(schema, text)

    @staticmethod
    def _fit_string(schema: dict[str, Any], text: str) -> str:
        max_len = schema.get("maxLength")
        min_len = schema.get("minLength")
        if isinstance(max_len, int) and len(text) > max_len:
            text = text[:max_len].rstrip() if max_len > 1 else text[:max_len]
            text = text if len(text) >= (min_len or 0) else text.ljust(min_len or 0, ".")
        if isinstance(min_len, int) and len(text) < min_len:
            text = text.ljust(min_len, ".")
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                regex = re.compile(pattern)
            except re.error:
                return text
            if not regex.search(text):
                for candidate in ("offline", "OFFLINE", "0", "a", "x-offline", ""):
                    if regex.search(candidate):
                        return candidate
        return text


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") else name


def _as_schema(schema: Any) -> dict[str, Any]:
    return schema if isinstance(schema, dict) else {}


def _make_unique(items: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        candidate = item
        n = 1
        while candidate in seen:
            n += 1
            if isinstance(item, str):
                candidate = f"{item} ({n})"
            elif isinstance(item, int | float) and not isinstance(item, bool):
                candidate = item + n - 1
            else:
                break
        seen.append(candidate)
    return seen


def _is_valid(value: Any, schema: dict[str, Any]) -> bool:
    try:
        cls = validator_for(schema, default=Draft202012Validator)
        return cls(schema).is_valid(value)
    except SchemaError:
        return False
    except Exception:
        # A schema jsonschema cannot evaluate (unknown keyword types, bad refs) proves nothing.
        return False


def build_instance(schema: dict[str, Any], prompt: str) -> Any:
    """A deterministic instance of `schema` whose strings come from `prompt`."""
    return _Builder(schema, prompt).build(schema)


def prompt_text(request: LLMRequest) -> str:
    """The user's words: the last user message, or all messages when there is none."""
    users = [m.content for m in request.messages if m.role == "user"]
    if users:
        return users[-1]
    return "\n".join(m.content for m in request.messages)


class OfflineProvider(Provider):
    kind = "offline"
    structured_modes = (MODE_OFFLINE,)
    local = True
    offline = True

    def send(
        self,
        request: LLMRequest,
        *,
        client: httpx.Client | None = None,
        structured_mode: str = MODE_NONE,
    ) -> ProviderResult:
        prompt = prompt_text(request)
        if request.json_schema is not None:
            text = json.dumps(build_instance(request.json_schema, prompt), ensure_ascii=False)
            mode = MODE_OFFLINE
        else:
            excerpt = _collapse(prompt)[:500]
            text = f"{NOTICE}\n\n{excerpt}" if excerpt else NOTICE
            mode = MODE_NONE
        return ProviderResult(
            text=text,
            model=OFFLINE_MODEL,
            usage=Usage(),
            structured_mode=mode,
            finish_reason="stop",
            raw=None,
            offline=True,
        )


register(
    ProviderSpec(
        kind="offline",
        factory=OfflineProvider,
        default_model=OFFLINE_MODEL,
        key_optional=True,
        local=True,
    )
)
