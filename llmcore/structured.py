"""Structured output: get a schema-valid JSON value out of a model's reply, whatever the provider.

Providers differ in how hard they enforce a schema (OpenAI strict `json_schema`, `json_object` plus a
schema for llama.cpp-style servers, or nothing but instructions in the prompt), so every reply goes
through the same path here:

1. `extract_json` finds the JSON in the text: the whole reply, a fenced ```json block, or the first
   object/array embedded in prose;
2. `coerce` fixes what is safe to fix without guessing (see its docstring);
3. the result is validated with JSON Schema Draft 2020-12, and failures come back as readable
   strings with a JSON path (`$.tags: array has 7 items, more than maxItems 5`).

The router makes one repair attempt with `repair_messages` when validation fails. `strict_schema`
turns a schema into the form OpenAI's strict mode accepts, `prompt_instructions` is the last-resort
mode's system prompt text, and `example_instance` builds a minimal valid value (the offline provider
starts from it).

Format keywords (`date-time`, `email`, …) are annotations only: whether they are checked would
depend on optional packages, and a reply should not pass on one machine and fail on another.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

# Replies longer than this are not scanned for embedded JSON beyond this many characters: a model's
# answer is far smaller, and the scan below tries a parse at each '{' or '['.
MAX_SCAN_CHARS = 200_000
MAX_PARSE_ATTEMPTS = 200
MAX_ERRORS = 20
_MAX_REF_DEPTH = 32

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_NUMERIC = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

JsonSchema = dict[str, Any]


# --- extraction -----------------------------------------------------------------------------------


class _NoJson(ValueError):
    pass


def _candidates(text: str) -> Iterator[str | tuple[str, int]]:
    """Places JSON may be, most explicit first: the whole text, fenced blocks, then each bracket."""
    yield text
    scan = text[:MAX_SCAN_CHARS]
    fenced = list(_FENCE.finditer(scan))
    # ```json blocks before unlabelled or other-language ones.
    fenced.sort(key=lambda m: m.group(1).lower() not in ("json", "jsonc", "json5"))
    for m in fenced:
        yield m.group(2)
    for i, ch in enumerate(scan):
        if ch in "{[":
            yield (scan, i)


def _relaxed(text: str) -> str:
    """`text` with trailing commas and Python's True/False/None fixed outside strings.

    Small local models produce both; the fix cannot change the meaning of valid JSON.
    """
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                in_string = False
            i += 1
            continue
        if ch == '"':
            in_string = True
        elif ch == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "}]":
                i += 1
                continue
        elif ch in "TFN" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            for word, repl in (("True", "true"), ("False", "false"), ("None", "null")):
                end = i + len(word)
                if text.startswith(word, i) and (
                    end >= n or not (text[end].isalnum() or text[end] == "_")
                ):
                    out.append(repl)
                    i = end
                    break
            else:
                out.append(ch)
                i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _parse_candidates(
    text: str, expected: str | None
) -> tuple[tuple[Any] | None, tuple[Any] | None, str | None]:
    """(value of the expected type, first value of another type, first parse error).

    Values come wrapped in 1-tuples so that a JSON `null` is told apart from "nothing found".
    """
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    first: tuple[Any] | None = None
    best_error: str | None = None
    attempts = 0
    for candidate in _candidates(text):
        attempts += 1
        if attempts > MAX_PARSE_ATTEMPTS:
            break
        try:
            if isinstance(candidate, tuple):
                source, start = candidate
                value, _ = decoder.raw_decode(source, start)
            else:
                source = candidate.strip()
                if not source:
                    continue
                value = decoder.decode(source)
        except json.JSONDecodeError as exc:
            if best_error is None and isinstance(candidate, tuple):
                best_error = _decode_error(exc, candidate[1])
            continue
        except ValueError as exc:  # NaN / Infinity
            best_error = best_error or str(exc)
            continue
        except RecursionError:
            best_error = best_error or "the JSON is nested too deeply"
            continue
        if isinstance(candidate, tuple) and not isinstance(value, dict | list):
            continue  # a bare `[` scan only counts when it yields an object or array
        if expected is None or _json_type_matches(value, expected):
            return (value,), first, None
        if first is None:
            first = (value,)
    return None, first, best_error


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _never_closes(text: str, start: int) -> bool:
    """True when the brackets opened at `start` are still open (or a string) at the end."""
    depth = 0
    in_string = escaped = False
    for ch in text[start:]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return False
    return True


def _decode_error(exc: json.JSONDecodeError, start: int) -> str:
    if _never_closes(exc.doc, start):
        return "the JSON is incomplete (the reply may have been cut off at the token limit)"
    return f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"


def extract_json(text: str, schema: JsonSchema | None = None) -> Any:
    """The JSON value in a model's reply. Raises ValueError with a readable reason if none.

    Tried in order: the whole reply; fenced code blocks (```json first); then every '{' or '['
    in the text, keeping the first object or array that parses. When `schema` names a top-level
    type (object or array), a value of that type is preferred over an earlier one of another type.
    If nothing parses, the same search runs once more after fixing trailing commas and Python
    literals (True/False/None).
    """
    if not isinstance(text, str) or not text.strip():
        raise _NoJson("the reply is empty")
    expected = _schema_type(schema) if schema else None
    wanted, other, error = _parse_candidates(text, expected)
    if wanted is None:
        # `[1]` in the prose parsed but the object after it has a trailing comma: try the relaxed
        # text before settling for a value of the wrong type.
        relaxed = _relaxed(text[:MAX_SCAN_CHARS])
        if relaxed != text:
            wanted, relaxed_other, _ = _parse_candidates(relaxed, expected)
            other = other or relaxed_other
    found = wanted or other
    if found is None:
        raise _NoJson(error or "no JSON object or array found in the reply")
    return found[0]


# --- schema helpers -------------------------------------------------------------------------------


def _types(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return []
    t = schema.get("type")
    if isinstance(t, str):
        return [t]
    if isinstance(t, list):
        return [x for x in t if isinstance(x, str)]
    if "properties" in schema or "additionalProperties" in schema:
        return ["object"]
    if "items" in schema or "prefixItems" in schema:
        return ["array"]
    return []


def _schema_type(schema: Any) -> str | None:
    types = [t for t in _types(schema) if t != "null"]
    return types[0] if len(types) == 1 and types[0] in ("object", "array") else None


def _json_type_matches(value: Any, json_type: str) -> bool:
    match json_type:
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "string":
            return isinstance(value, str)
        case "boolean":
            return isinstance(value, bool)
        case "null":
            return value is None
        case "integer":
            if isinstance(value, float):
                return value.is_integer()
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
    return False


def _resolve(schema: Any, root: JsonSchema, depth: int = 0) -> Any:
    """Follow local `$ref`s (`#/$defs/x`). Remote refs are left as they are."""
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return schema
        depth += 1
        if depth > _MAX_REF_DEPTH:
            raise ValueError(f"$ref chain too deep at {ref!r}")
        target: Any = root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise ValueError(f"unresolvable $ref {ref!r}")
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **siblings} if siblings and isinstance(target, dict) else target
    return schema


def _merge_all_of(schema: JsonSchema, root: JsonSchema) -> JsonSchema:
    """`allOf` folded into one schema: properties and required lists combined, other keys merged."""
    parts = schema.get("allOf")
    if not isinstance(parts, list):
        return schema
    merged: JsonSchema = {k: v for k, v in schema.items() if k != "allOf"}
    for part in parts:
        part = _resolve(part, root)
        if not isinstance(part, dict):
            continue
        part = _merge_all_of(part, root)
        props = {**merged.get("properties", {}), **part.get("properties", {})}
        required = [*merged.get("required", []), *part.get("required", [])]
        merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
        if props:
            merged["properties"] = props
        if required:
            merged["required"] = list(dict.fromkeys(required))
    return merged


# --- coercion -------------------------------------------------------------------------------------


def _to_number(value: str, integer: bool) -> int | float | None:
    text = value.strip()
    if not _NUMERIC.fullmatch(text):
        return None
    number = float(text)
    if not math.isfinite(number):
        return None
    if integer or (number.is_integer() and not any(c in text for c in ".eE")):
        return round(number)
    return number


def _coerce_number(value: Any, schema: JsonSchema, types: list[str]) -> Any:
    integer = "integer" in types and "number" not in types
    if isinstance(value, str):
        if "string" in types:
            return value
        parsed = _to_number(value, integer)
        if parsed is None:
            return value
        value = parsed
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if integer and isinstance(value, float) and math.isfinite(value):
        value = round(value)
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if integer:
        # An integer just inside an exclusive bound is exact; for numbers it is not, so leave it.
        if _is_num(ex_low) and (not _is_num(low) or math.floor(ex_low) + 1 > low):
            low = math.floor(ex_low) + 1
        if _is_num(ex_high) and (not _is_num(high) or math.ceil(ex_high) - 1 < high):
            high = math.ceil(ex_high) - 1
    if _is_num(low) and value < low:
        value = low
    if _is_num(high) and value > high:
        value = high
    return value


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _truncate(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    if limit <= 1:
        return value[:limit]
    return value[: limit - 1].rstrip() + "…"


def _coerce_string(value: Any, schema: JsonSchema, types: list[str]) -> Any:
    if _is_num(value) and not ({"number", "integer"} & set(types)):
        value = json.dumps(value)
    if not isinstance(value, str):
        return value
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        folded = [e for e in enum if isinstance(e, str) and e.lower() == value.strip().lower()]
        if len(folded) == 1:
            value = folded[0]
    limit = schema.get("maxLength")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
        value = _truncate(value, limit)
    return value


def _coerce_array(value: Any, schema: JsonSchema, root: JsonSchema, depth: int) -> Any:
    items = _resolve(schema.get("items"), root) if isinstance(schema.get("items"), dict) else None
    if isinstance(value, str) and items is not None and _types(items) == ["string"]:
        # "bug, backend, api" where a list of tags was asked for.
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        return value
    prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
    out = []
    for i, item in enumerate(value):
        if i < len(prefix):
            out.append(_coerce(item, prefix[i], root, depth + 1))
        elif items is not None:
            out.append(_coerce(item, items, root, depth + 1))
        else:
            out.append(item)
    if schema.get("uniqueItems") is True:
        seen: set[str] = set()
        unique = []
        for item in out:
            key = json.dumps(item, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                unique.append(item)
        out = unique
    limit = schema.get("maxItems")
    if isinstance(limit, int) and not isinstance(limit, bool) and len(out) > limit >= 0:
        out = out[:limit]
    return out


def _coerce_object(value: Any, schema: JsonSchema, root: JsonSchema, depth: int) -> Any:
    if not isinstance(value, dict):
        return value
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = set(schema.get("required") or [])
    patterns = schema.get("patternProperties")
    pattern_list = list(patterns) if isinstance(patterns, dict) else []
    additional = schema.get("additionalProperties", True)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in props:
            sub = _resolve(props[key], root)
            # null for an optional property that does not allow null is how strict mode says
            # "absent" (see strict_schema): drop it rather than fail.
            if item is None and key not in required and not _allows_null(sub, root):
                continue
            out[key] = _coerce(item, sub, root, depth + 1)
        elif any(_safe_search(p, key) for p in pattern_list):
            out[key] = item
        elif additional is False:
            continue  # extra keys the schema forbids: dropping them loses nothing asked for
        elif isinstance(additional, dict):
            out[key] = _coerce(item, additional, root, depth + 1)
        else:
            out[key] = item
    return out


def _allows_null(schema: Any, root: JsonSchema) -> bool:
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return schema is not False
    if "const" in schema:
        return schema["const"] is None
    if isinstance(schema.get("enum"), list):
        return None in schema["enum"]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return any(_allows_null(s, root) for s in schema[key])
    types = _types(schema)
    return not types or "null" in types


def _safe_search(pattern: str, key: str) -> bool:
    try:
        return re.search(pattern, key) is not None
    except re.error:
        return False


def _coerce(value: Any, schema: Any, root: JsonSchema, depth: int = 0) -> Any:
    if depth > 64 or not isinstance(schema, dict):
        return value
    try:
        schema = _resolve(schema, root)
        if isinstance(schema, dict):
            schema = _merge_all_of(schema, root)
    except ValueError:
        return value
    if not isinstance(schema, dict):
        return value
    types = _types(schema)
    if value is None and "null" in types:
        return None
    if "object" in types and isinstance(value, dict):
        return _coerce_object(value, schema, root, depth)
    if "array" in types and (
        isinstance(value, list) or (isinstance(value, str) and "string" not in types)
    ):
        return _coerce_array(value, schema, root, depth)
    if {"number", "integer"} & set(types) and not isinstance(value, bool | dict | list):
        value = _coerce_number(value, schema, types)
    if "string" in types:
        value = _coerce_string(value, schema, types)
    if (
        types == ["boolean"]
        and isinstance(value, str)
        and value.strip().lower() in ("true", "false")
    ):
        value = value.strip().lower() == "true"
    return value


def coerce(instance: Any, schema: JsonSchema) -> Any:
    """A copy of `instance` with the safe fixes applied before validation.

    - numbers clamped to `minimum`/`maximum` (a confidence of 120 becomes 100), integers rounded;
    - numeric strings turned into numbers where a number is asked for ("85" → 85), "true"/"false"
      into booleans, numbers into strings where a string is asked for;
    - strings longer than `maxLength` cut (ending in "…"); string enums matched ignoring case;
    - arrays longer than `maxItems` cut, duplicates dropped under `uniqueItems`, and a
      comma-separated string split where an array of strings is asked for;
    - properties forbidden by `additionalProperties: false` dropped, and `null` dropped for an
      optional property that does not allow null (how strict mode says "absent").

    Nothing is invented: a missing required property stays missing and fails validation.
    """
    return _coerce(copy.deepcopy(instance), schema, schema)


# --- validation -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def _validator(schema_json: str) -> Draft202012Validator:
    schema = json.loads(schema_json)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _describe(error: ValidationError) -> str:
    v, inst, kw = error.validator_value, error.instance, error.validator
    match kw:
        case "type":
            expected = " or ".join(v) if isinstance(v, list) else v
            return f"expected {expected}, got {_json_type_name(inst)} {_short(inst)}"
        case "required":
            return error.message
        case "additionalProperties" | "unevaluatedProperties":
            return error.message
        case "minLength":
            return f"string of {_count(len(inst), 'character')} is shorter than minLength {v}"
        case "maxLength":
            return f"string of {_count(len(inst), 'character')} is longer than maxLength {v}"
        case "minItems":
            return f"array has {_count(len(inst), 'item')}, fewer than minItems {v}"
        case "maxItems":
            return f"array has {_count(len(inst), 'item')}, more than maxItems {v}"
        case "minimum":
            return f"{_short(inst)} is less than the minimum {v}"
        case "maximum":
            return f"{_short(inst)} is greater than the maximum {v}"
        case "exclusiveMinimum":
            return f"{_short(inst)} must be greater than {v}"
        case "exclusiveMaximum":
            return f"{_short(inst)} must be less than {v}"
        case "enum":
            return f"{_short(inst)} is not one of {_short(v, 200)}"
        case "const":
            return f"{_short(inst)} must be {_short(v)}"
        case "pattern":
            return f"{_short(inst)} does not match the pattern {v!r}"
        case "uniqueItems":
            return "array items must be unique"
        case "anyOf" | "oneOf":
            return f"{_short(inst)} does not match any allowed form ({kw})"
    message = error.message
    return message if len(message) <= 200 else message[:199] + "…"


def schema_errors(instance: Any, schema: JsonSchema) -> list[str]:
    """Readable validation errors (`$.path: what is wrong`), at most MAX_ERRORS, in path order.

    Raises jsonschema.SchemaError when the schema itself is invalid (a programming error).
    """
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(
        validator.iter_errors(instance),
        key=lambda e: ([str(p) for p in e.absolute_path], str(e.validator), e.message),
    )
    out = [f"{e.json_path}: {_describe(e)}" for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        out.append(f"… and {len(errors) - MAX_ERRORS} more errors")
    return out


def validate_json(text: str, schema: JsonSchema) -> tuple[Any | None, list[str]]:
    """Parse, coerce and validate a model's reply: (value, []) on success, (None, errors) if not.

    Check the error list, not the value, to tell success from failure (a schema may allow null).
    Raises jsonschema.SchemaError when `schema` is not a valid Draft 2020-12 schema.
    """
    # Check the schema before the reply so a bad schema is never reported as a bad reply.
    _validator(json.dumps(schema, sort_keys=True))
    try:
        value = extract_json(text, schema)
    except ValueError as exc:
        return None, [f"$: {exc}"]
    value = coerce(value, schema)
    errors = schema_errors(value, schema)
    if errors:
        return None, errors
    return value, []


# --- prompting ------------------------------------------------------------------------------------


def _constraint_words(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return []
    words = []
    if isinstance(schema.get("enum"), list):
        words.append("one of " + ", ".join(_short(e, 40) for e in schema["enum"][:20]))
    for low, high, noun in _BOUNDS:
        if phrase := _bound_words(schema, low, high, noun):
            words.append(phrase)
    return words


# (lower-bound keyword, upper-bound keyword, what is counted; "" for plain numbers)
_BOUNDS = (
    ("minimum", "maximum", ""),
    ("minLength", "maxLength", "character"),
    ("minItems", "maxItems", "item"),
)


def _bound_words(schema: dict[str, Any], low: str, high: str, noun: str) -> str | None:
    """ "2 to 5 items", "at least 1 item", "at most 100": one bound pair in words."""

    def amount(key: str) -> str:
        return _count(schema[key], noun) if noun else f"{schema[key]}"

    if low in schema and high in schema:
        return f"{schema[low]} to {schema[high]}" + (f" {noun}s" if noun else "")
    if low in schema:
        return f"at least {amount(low)}"
    if high in schema:
        return f"at most {amount(high)}"
    return None


def _field_lines(schema: JsonSchema) -> list[str]:
    root = _resolve(schema, schema)
    props = root.get("properties") if isinstance(root, dict) else None
    if not isinstance(props, dict):
        return []
    required = set(root.get("required") or [])
    lines = []
    for name, sub in props.items():
        sub = _resolve(sub, schema)
        kind = "/".join(_types(sub)) or "any"
        details = [kind, "required" if name in required else "optional", *_constraint_words(sub)]
        if isinstance(sub, dict) and isinstance(sub.get("items"), dict):
            item_words = _constraint_words(_resolve(sub["items"], schema))
            item_type = "/".join(_types(_resolve(sub["items"], schema))) or "any"
            details.append(f"items: {', '.join([item_type, *item_words])}")
        line = f"- {name} ({'; '.join(details)})"
        if isinstance(sub, dict) and isinstance(sub.get("description"), str):
            line += f": {sub['description']}"
        lines.append(line)
    return lines


def prompt_instructions(schema: JsonSchema) -> str:
    """System-prompt text that asks for JSON matching `schema` (for providers with no JSON mode)."""
    parts = [
        "Reply with a single JSON value that conforms to the JSON Schema below.",
        "Output only the JSON: no explanation before or after it, no Markdown code fences, no "
        "comments. Use double quotes for strings and keys, and include every required field.",
    ]
    fields = _field_lines(schema)
    if fields:
        parts.append("Fields:\n" + "\n".join(fields))
    parts.append("JSON Schema:\n" + json.dumps(schema, indent=2, ensure_ascii=False))
    return "\n\n".join(parts)


MAX_REPAIR_ECHO_CHARS = 12_000


def repair_messages(
    original_messages: list[dict[str, Any]],
    bad_output: str,
    errors: list[str],
    schema: JsonSchema,
) -> list[dict[str, Any]]:
    """The conversation for one repair attempt: the original, the bad reply, and what was wrong.

    The original messages are not modified. The bad reply is echoed back as the assistant's turn
    (cut to MAX_REPAIR_ECHO_CHARS) so the model corrects its own output instead of starting over.
    """
    echoed = bad_output
    if len(echoed) > MAX_REPAIR_ECHO_CHARS:
        echoed = echoed[:MAX_REPAIR_ECHO_CHARS] + "\n… (cut)"
    listed = "\n".join(f"- {e}" for e in errors[:MAX_ERRORS]) or "- the reply was not valid JSON"
    request = (
        "Your previous reply was not accepted:\n"
        f"{listed}\n\n"
        "Reply again with only the corrected JSON value: no explanation, no Markdown code fences. "
        "Keep the content that was right and fix only what is listed.\n\n"
        "JSON Schema:\n" + json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    )
    return [
        *copy.deepcopy(original_messages),
        {"role": "assistant", "content": echoed},
        {"role": "user", "content": request},
    ]


# --- strict mode ----------------------------------------------------------------------------------

# Keywords OpenAI strict mode accepts; anything else makes the request fail, so it is removed here
# (the constraint still holds: validate_json checks the original schema) and, for the common
# constraints, restated in the description so the model still sees it.
_STRICT_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "definitions",
        "description",
        "title",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
    }
)


def _nullable(schema: JsonSchema) -> JsonSchema:
    types = schema.get("type")
    if isinstance(types, str) and "enum" not in schema and "const" not in schema:
        return {**schema, "type": [types, "null"]}
    if isinstance(types, list) and "enum" not in schema and "const" not in schema:
        return schema if "null" in types else {**schema, "type": [*types, "null"]}
    if isinstance(types, str | list) and isinstance(schema.get("enum"), list):
        enum = schema["enum"] if None in schema["enum"] else [*schema["enum"], None]
        base = [types] if isinstance(types, str) else list(types)
        return {**schema, "type": base if "null" in base else [*base, "null"], "enum": enum}
    return {"anyOf": [schema, {"type": "null"}]}


def _strict(schema: Any, root: JsonSchema) -> Any:
    if isinstance(schema, list):
        return [_strict(s, root) for s in schema]
    if not isinstance(schema, dict):
        return schema
    schema = _merge_all_of(schema, root)
    out: JsonSchema = {}
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: _strict(sub, root) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = _strict(value, root)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            # oneOf has no strict equivalent; anyOf is the closest the model can be held to.
            out["anyOf"] = out.get("anyOf", []) + [_strict(s, root) for s in value]
        elif key in _STRICT_KEYWORDS:
            out[key] = value
    words = _constraint_words({k: schema[k] for k in ("minLength", "maxLength") if k in schema})
    if words:
        note = "(" + "; ".join(words) + ")"
        out["description"] = f"{out['description']} {note}" if out.get("description") else note
    if "object" in _types(out) and "anyOf" not in out:
        props = out.setdefault("properties", {})
        required = set(schema.get("required") or [])
        out["properties"] = {
            name: sub if name in required else _nullable(sub) for name, sub in props.items()
        }
        out["required"] = list(props)
        out["additionalProperties"] = False
        if out.get("type") is None:
            out["type"] = "object"
    return out


def strict_schema(schema: JsonSchema) -> JsonSchema:
    """`schema` rewritten for OpenAI strict structured output.

    Every object gets `additionalProperties: false` and lists all its properties as required;
    properties that were optional become nullable (a null comes back where the field would have
    been left out, and `coerce` drops it again). Keywords strict mode rejects are removed, with
    length limits restated in the description. The root must be an object: ValueError otherwise,
    so the caller can fall back to a weaker mode.
    """
    root = _resolve(schema, schema)
    if not isinstance(root, dict) or "object" not in _types(root) or "null" in _types(root):
        raise ValueError("strict structured output needs an object schema at the root")
    return _strict(copy.deepcopy(schema), schema)


# --- examples -------------------------------------------------------------------------------------

_FORMAT_EXAMPLES = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "uri": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "duration": "P1D",
}


def _valid_against(value: Any, schema: Any, root: JsonSchema) -> bool:
    try:
        return not schema_errors(value, {**schema, "$defs": root.get("$defs", {})})
    except Exception:  # a fragment that is not a schema on its own: do not trust the value
        return False


def _example_number(schema: JsonSchema, integer: bool, variant: int) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    step = schema.get("multipleOf")
    if _is_num(schema.get("exclusiveMinimum")):
        ex = schema["exclusiveMinimum"]
        low = max(low, ex + 1) if _is_num(low) else ex + 1
        if not integer and _is_num(schema.get("maximum")) and low > schema["maximum"]:
            low = (ex + schema["maximum"]) / 2
    if integer and _is_num(low):
        low = math.ceil(low)
    value: int | float = low if _is_num(low) else (0 if not _is_num(high) or high >= 0 else high)
    if _is_num(step) and step > 0:
        value = math.ceil(value / step) * step
    value += variant * (step if _is_num(step) and step > 0 else 1)
    if _is_num(high) and value > high:
        value = high
    if _is_num(schema.get("exclusiveMaximum")) and value >= schema["exclusiveMaximum"]:
        value = schema["exclusiveMaximum"] - (1 if integer else 0.5)
    return int(value) if integer else value


def _example_string(schema: JsonSchema, variant: int) -> str:
    fmt = schema.get("format")
    base = _FORMAT_EXAMPLES.get(fmt, "") if isinstance(fmt, str) else ""
    if variant and not base:
        base = str(variant)  # distinct items for uniqueItems
    low = schema.get("minLength", 0)
    if isinstance(low, int) and len(base) < low:
        base = base + "x" * (low - len(base))
    high = schema.get("maxLength")
    if isinstance(high, int) and len(base) > high:
        base = base[:high]
    return base


def _example(schema: Any, root: JsonSchema, depth: int, variant: int = 0) -> Any:
    if depth > _MAX_REF_DEPTH:
        raise ValueError("schema recursion too deep to build an example")
    if schema is True or schema is None:
        return None
    if not isinstance(schema, dict):
        return None
    schema = _resolve(schema, root)
    if "const" in schema:
        return copy.deepcopy(schema["const"])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        enum = schema["enum"]
        return copy.deepcopy(enum[variant % len(enum)])
    if "default" in schema and not variant and _valid_against(schema["default"], schema, root):
        return copy.deepcopy(schema["default"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            branch = {k: v for k, v in schema.items() if k != key}
            options = schema[key]
            # Prefer a non-null branch: an example of `X or null` is more useful as X.
            options = sorted(options, key=lambda s: _types(_resolve(s, root)) == ["null"])
            return _example({**branch, **_resolve(options[0], root)}, root, depth + 1, variant)
    if isinstance(schema.get("allOf"), list):
        return _example(_merge_all_of(schema, root), root, depth + 1, variant)
    types = [t for t in _types(schema) if t != "null"] or _types(schema)
    kind = types[0] if types else None
    match kind:
        case "object":
            props = schema.get("properties") or {}
            return {
                name: _example(props.get(name, {}), root, depth + 1)
                for name in schema.get("required") or []
            }
        case "array":
            count = schema.get("minItems", 0)
            prefix = schema.get("prefixItems") or []
            items = schema.get("items", {})
            return [
                _example(prefix[i] if i < len(prefix) else items, root, depth + 1, variant=i)
                for i in range(count if isinstance(count, int) else 0)
            ]
        case "string":
            return _example_string(schema, variant)
        case "integer":
            return _example_number(schema, True, variant)
        case "number":
            return _example_number(schema, False, variant)
        case "boolean":
            return bool(variant % 2)
    return None


def example_instance(schema: JsonSchema) -> Any:
    """A minimal value valid against `schema`: required fields only, at their smallest.

    Uses `const`, then `enum` (first value), then a valid `default`, then the type: objects with
    their required properties, arrays of `minItems` distinct items, strings of `minLength`
    (a sample for common formats), numbers at `minimum` (0 when allowed). `pattern`, `not` and
    conditional keywords are not solved for, so a schema relying on them may need a hand-written
    example; raises ValueError for a schema whose required fields recurse without end.
    """
    return _example(schema, schema, 0)
