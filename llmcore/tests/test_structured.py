"""Structured output: extraction, coercion, readable validation errors, strict schemas, examples."""

from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from llmcore.structured import (
    MAX_ERRORS,
    MAX_REPAIR_ECHO_CHARS,
    coerce,
    example_instance,
    extract_json,
    prompt_instructions,
    repair_messages,
    schema_errors,
    strict_schema,
    validate_json,
)

SPELL_DRAFT = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 100},
        "description": {"type": "string"},
        "solution_code": {"type": "string"},
        "confidence_score": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["title", "description", "solution_code", "confidence_score"],
    "additionalProperties": False,
}

ISSUE_ENRICHMENT = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "minLength": 1, "maxLength": 500},
        "tags": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 30},
            "minItems": 3,
            "maxItems": 5,
            "uniqueItems": True,
        },
    },
    "required": ["summary", "tags"],
    "additionalProperties": False,
}

GOOD_SPELL = {
    "title": "Fix TypeError when array is undefined",
    "description": "Guard the access.",
    "solution_code": "const len = (myArray ?? []).length;",
    "confidence_score": 85,
}


def as_text(value: object) -> str:
    return json.dumps(value)


# --- extraction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        as_text(GOOD_SPELL),
        "  \n" + json.dumps(GOOD_SPELL, indent=2) + "\n\n",
        "```json\n" + as_text(GOOD_SPELL) + "\n```",
        "```JSON\n" + as_text(GOOD_SPELL) + "\n```",
        "```\n" + as_text(GOOD_SPELL) + "\n```",
        "Here is the spell you asked for:\n\n```json\n"
        + json.dumps(GOOD_SPELL, indent=2)
        + "\n```\n\nLet me know if you need more.",
        "Sure! " + as_text(GOOD_SPELL) + " I hope this helps.",
        "The answer is " + as_text(GOOD_SPELL),
        as_text(GOOD_SPELL) + "\n\nNote: confidence is an estimate.",
        # An example object in the prose, the answer in a fenced block: the fence wins.
        'Given input {"a": 1}:\n```json\n' + as_text(GOOD_SPELL) + "\n```",
        # A bracketed aside before the object: an object is what the schema asks for.
        "Result [1]: " + as_text(GOOD_SPELL),
        # Unclosed fence (reply cut after the JSON).
        "```json\n" + as_text(GOOD_SPELL),
        # Trailing comma and Python literals from a small local model.
        as_text(GOOD_SPELL)[:-1] + ",}",
        "```python\nx = 1\n```\n```json\n" + as_text(GOOD_SPELL) + "\n```",
    ],
    ids=[
        "pure",
        "whitespace",
        "fenced-json",
        "fenced-JSON",
        "fenced-bare",
        "fenced-with-prose",
        "embedded",
        "leading-prose",
        "trailing-prose",
        "fence-beats-example",
        "bracket-aside",
        "unclosed-fence",
        "trailing-comma",
        "json-fence-after-code-fence",
    ],
)
def test_the_spell_is_extracted_from_every_reply_shape(reply):
    value, errors = validate_json(reply, SPELL_DRAFT)
    assert errors == []
    assert value == GOOD_SPELL


def test_python_literals_are_relaxed_only_outside_strings():
    reply = '{"a": True, "b": None, "c": "True None False", "d": [1, 2,],}'
    assert extract_json(reply) == {"a": True, "b": None, "c": "True None False", "d": [1, 2]}


def test_an_escaped_quote_inside_a_string_does_not_confuse_the_relaxer():
    reply = '{"a": "say \\"hi\\", ]", "b": [1,],}'
    assert extract_json(reply) == {"a": 'say "hi", ]', "b": [1]}


def test_an_array_is_extracted_when_the_schema_asks_for_one():
    schema = {"type": "array", "items": {"type": "integer"}}
    assert extract_json('See {"note": 1} then [1, 2, 3].', schema) == [1, 2, 3]
    assert extract_json('See {"note": 1} then [1, 2, 3].') == {"note": 1}


def test_a_scalar_reply_is_accepted_when_it_is_the_whole_text():
    assert extract_json("42") == 42
    assert validate_json('"hello"', {"type": "string"}) == ("hello", [])


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("", "$: the reply is empty"),
        ("   \n", "$: the reply is empty"),
        ("I cannot help with that.", "$: no JSON object or array found in the reply"),
        ('{"title": "Fix', "$: the JSON is incomplete"),
        ('```json\n{"title": "x", "confidence_score": 5\n```', "$: the JSON is incomplete"),
        ('{"title": "x" "description": "y"}', "$: invalid JSON at line 1 column 15"),
        ('{"score": NaN}', "$: NaN is not valid JSON"),
    ],
)
def test_replies_without_usable_json_get_a_readable_error(reply, message):
    value, errors = validate_json(reply, SPELL_DRAFT)
    assert value is None
    assert len(errors) == 1
    assert errors[0].startswith(message)


def test_deeply_nested_json_fails_cleanly():
    reply = "[" * 100_000 + "]" * 100_000
    value, errors = validate_json(reply, {"type": "array"})
    assert value is None
    assert errors


def test_a_huge_reply_with_many_brackets_is_bounded():
    reply = "{x " * 300_000 + as_text(GOOD_SPELL)
    value, errors = validate_json(reply, SPELL_DRAFT)
    # The object lies beyond the scan limit: a clear error about the first attempt, not a hang.
    assert value is None
    assert len(errors) == 1
    assert errors[0].startswith("$: the JSON is incomplete")


# --- coercion -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "expected"),
    [(150, 100), (-3, 0), (85.4, 85), (99.6, 100), ("85", 85), (" 42 ", 42), ("101", 100)],
)
def test_confidence_score_is_clamped_and_made_an_integer(score, expected):
    value, errors = validate_json(as_text({**GOOD_SPELL, "confidence_score": score}), SPELL_DRAFT)
    assert errors == []
    assert value["confidence_score"] == expected
    assert isinstance(value["confidence_score"], int)


@pytest.mark.parametrize("score", ["high", True, None, [85], "85%"])
def test_a_score_that_is_not_a_number_is_not_guessed(score):
    value, errors = validate_json(as_text({**GOOD_SPELL, "confidence_score": score}), SPELL_DRAFT)
    assert value is None
    assert errors[0].startswith("$.confidence_score: expected integer, got ")


def test_number_schema_keeps_fractions_and_clamps_both_ways():
    schema = {"type": "number", "minimum": 0, "maximum": 1}
    assert coerce(0.25, schema) == 0.25
    assert coerce("0.5", schema) == 0.5
    assert coerce(7, schema) == 1
    assert coerce(-0.1, schema) == 0


def test_exclusive_integer_bounds_clamp_inside_the_bound():
    schema = {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}
    assert coerce(-5, schema) == 1
    assert coerce(50, schema) == 9
    assert schema_errors(coerce(50, schema), schema) == []


def test_long_title_is_truncated_to_max_length():
    long_title = "Fix " + "very " * 40 + "long title"
    value, errors = validate_json(as_text({**GOOD_SPELL, "title": long_title}), SPELL_DRAFT)
    assert errors == []
    assert 90 < len(value["title"]) <= 100
    assert value["title"].endswith("very…")
    assert long_title.startswith(value["title"][:-1].rstrip())


def test_additional_properties_are_dropped_when_forbidden():
    reply = as_text({**GOOD_SPELL, "reasoning": "...", "notes": [1]})
    value, errors = validate_json(reply, SPELL_DRAFT)
    assert errors == []
    assert set(value) == set(GOOD_SPELL)


def test_additional_properties_are_kept_when_allowed():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert coerce({"a": "1", "b": "2"}, schema) == {"a": 1, "b": "2"}


def test_pattern_properties_are_kept_even_when_additional_are_forbidden():
    schema = {
        "type": "object",
        "patternProperties": {"^x-": {"type": "string"}},
        "additionalProperties": False,
    }
    assert coerce({"x-a": "1", "b": 2}, schema) == {"x-a": "1"}


def test_tags_are_split_deduplicated_and_cut_to_max_items():
    reply = as_text({"summary": "Login fails", "tags": "bug, backend, api, bug, auth, db, ui"})
    value, errors = validate_json(reply, ISSUE_ENRICHMENT)
    assert errors == []
    assert value["tags"] == ["bug", "backend", "api", "auth", "db"]


def test_too_few_tags_is_an_error_not_a_guess():
    value, errors = validate_json(as_text({"summary": "s", "tags": ["bug"]}), ISSUE_ENRICHMENT)
    assert value is None
    assert errors == ["$.tags: array has 1 item, fewer than minItems 3"]


def test_enum_strings_match_ignoring_case_and_numbers_become_strings():
    schema = {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": ["bug", "feature"]},
            "name": {"type": "string"},
            "ok": {"type": "boolean"},
        },
    }
    assert coerce({"kind": " Bug ", "name": 123, "ok": "TRUE"}, schema) == {
        "kind": "bug",
        "name": "123",
        "ok": True,
    }


def test_null_for_an_optional_field_is_dropped_but_kept_when_null_is_allowed():
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {"type": ["string", "null"]},
            "c": {"type": "string"},
            "d": {},
        },
        "required": ["c"],
    }
    assert coerce({"a": None, "b": None, "c": None, "d": None}, schema) == {
        "b": None,
        "c": None,
        "d": None,
    }


def test_coercion_follows_refs_and_prefix_items_and_does_not_modify_its_input():
    schema = {
        "$defs": {"score": {"type": "integer", "minimum": 0, "maximum": 10}},
        "type": "object",
        "properties": {
            "scores": {"type": "array", "items": {"$ref": "#/$defs/score"}},
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
        },
    }
    original = {"scores": [11, "3", -1], "pair": ["4", 5]}
    snapshot = copy.deepcopy(original)
    assert coerce(original, schema) == {"scores": [10, 3, 0], "pair": [4, "5"]}
    assert original == snapshot


def test_coercion_applies_inside_all_of():
    schema = {
        "allOf": [
            {"type": "object", "properties": {"score": {"type": "integer", "maximum": 10}}},
            {"properties": {"name": {"type": "string", "maxLength": 3}}},
        ],
        "additionalProperties": False,
    }
    assert coerce({"score": "50", "name": "abcdef", "x": 1}, schema) == {
        "score": 10,
        "name": "ab…",
    }


def test_a_string_that_may_be_a_string_is_not_turned_into_a_number():
    assert coerce("85", {"type": ["string", "integer"]}) == "85"


# --- validation errors ----------------------------------------------------------------------------


def test_validation_errors_name_the_json_path_and_the_problem():
    reply = as_text(
        {
            "title": ["x"],
            "description": "",
            "confidence_score": "high",
            "solution_code": ["a"],
        }
    )
    value, errors = validate_json(reply, SPELL_DRAFT)
    assert value is None
    assert errors == [
        '$.confidence_score: expected integer, got string "high"',
        '$.solution_code: expected string, got array ["a"]',
        '$.title: expected string, got array ["x"]',
    ]


def test_missing_required_fields_are_reported():
    value, errors = validate_json('{"title": "x"}', SPELL_DRAFT)
    assert value is None
    assert errors == [
        "$: 'confidence_score' is a required property",
        "$: 'description' is a required property",
        "$: 'solution_code' is a required property",
    ]


def test_nested_paths_use_indexes_and_quoted_keys():
    schema = {
        "type": "object",
        "properties": {"odd key": {"type": "array", "items": {"type": "string", "minLength": 2}}},
    }
    assert schema_errors({"odd key": ["ok", "x"]}, schema) == [
        "$['odd key'][1]: string of 1 character is shorter than minLength 2"
    ]


def test_error_messages_stay_short_for_huge_values():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    (error,) = schema_errors({"a": "x" * 100_000}, schema)
    assert len(error) < 120


def test_the_number_of_errors_is_capped():
    schema = {"type": "array", "items": {"type": "integer"}}
    errors = schema_errors(["x"] * 100, schema)
    assert len(errors) == MAX_ERRORS + 1
    assert errors[-1] == f"… and {100 - MAX_ERRORS} more errors"


@pytest.mark.parametrize(
    ("schema", "instance", "expected"),
    [
        ({"enum": ["a", "b"]}, "c", '$: "c" is not one of ["a", "b"]'),
        ({"const": 1}, 2, "$: 2 must be 1"),
        ({"type": "string", "pattern": "^v"}, "x", "$: \"x\" does not match the pattern '^v'"),
        ({"type": "array", "uniqueItems": True}, [1, 1], "$: array items must be unique"),
        ({"minimum": 5}, 1, "$: 1 is less than the minimum 5"),
        ({"maximum": 5}, 9, "$: 9 is greater than the maximum 5"),
        ({"exclusiveMinimum": 5}, 5, "$: 5 must be greater than 5"),
        (
            {"type": "string", "maxLength": 1},
            "ab",
            "$: string of 2 characters is longer than maxLength 1",
        ),
        ({"type": "array", "maxItems": 1}, [1, 2], "$: array has 2 items, more than maxItems 1"),
        (
            {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            [],
            "$: [] does not match any allowed form (anyOf)",
        ),
    ],
)
def test_each_kind_of_error_reads_well(schema, instance, expected):
    assert schema_errors(instance, schema) == [expected]


def test_an_invalid_schema_is_a_programming_error_not_a_bad_reply():
    with pytest.raises(SchemaError):
        validate_json("{}", {"type": "no-such-type"})


# --- prompting and repair -------------------------------------------------------------------------


def test_prompt_instructions_state_the_rules_and_include_the_schema():
    text = prompt_instructions(SPELL_DRAFT)
    assert "Output only the JSON" in text
    assert "no Markdown code fences" in text
    assert "- title (string; required; 1 to 100 characters)" in text
    assert "- confidence_score (integer; required; 0 to 100)" in text
    schema_part = text.split("JSON Schema:\n", 1)[1]
    assert json.loads(schema_part) == SPELL_DRAFT


def test_prompt_instructions_describe_array_items_and_descriptions():
    schema = copy.deepcopy(ISSUE_ENRICHMENT)
    schema["properties"]["summary"]["description"] = "Two sentences."
    text = prompt_instructions(schema)
    assert "- summary (string; required; 1 to 500 characters): Two sentences." in text
    assert "- tags (array; required; 3 to 5 items; items: string, 1 to 30 characters)" in text


def test_repair_messages_append_the_bad_reply_and_the_errors():
    original = [
        {"role": "system", "content": "You draft spells."},
        {"role": "user", "content": "Error: x is undefined"},
    ]
    snapshot = copy.deepcopy(original)
    errors = ['$.confidence_score: expected integer, got string "high"']
    messages = repair_messages(original, '{"confidence_score": "high"}', errors, SPELL_DRAFT)
    assert original == snapshot
    assert messages[:2] == original
    assert messages[2] == {"role": "assistant", "content": '{"confidence_score": "high"}'}
    assert messages[3]["role"] == "user"
    request = messages[3]["content"]
    assert errors[0] in request
    assert "only the corrected JSON" in request
    assert json.loads(request.split("JSON Schema:\n", 1)[1]) == SPELL_DRAFT
    assert len(messages) == 4


def test_repair_messages_cut_a_huge_bad_reply_and_cope_with_no_errors():
    messages = repair_messages([], "x" * (MAX_REPAIR_ECHO_CHARS * 3), [], SPELL_DRAFT)
    assert len(messages[0]["content"]) < MAX_REPAIR_ECHO_CHARS + 50
    assert "- the reply was not valid JSON" in messages[1]["content"]


# --- strict schemas -------------------------------------------------------------------------------


def _walk_objects(schema):
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            yield schema
        for value in schema.values():
            yield from _walk_objects(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _walk_objects(value)


NESTED = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20, "description": "Short name"},
        "age": {"type": "integer", "minimum": 0, "default": 1},
        "kind": {"type": "string", "enum": ["a", "b"]},
        "meta": {
            "type": "object",
            "properties": {"note": {"type": "string"}, "level": {"type": "integer"}},
            "required": ["level"],
        },
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"id": {"type": "string"}}},
        },
        "ref": {"$ref": "#/$defs/thing"},
        "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    },
    "required": ["name"],
    "$defs": {"thing": {"type": "object", "properties": {"x": {"type": "number"}}}},
}


def test_strict_schema_closes_every_object_and_requires_every_property():
    strict = strict_schema(NESTED)
    objects = list(_walk_objects(strict))
    assert len(objects) >= 4
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])


def test_strict_schema_makes_optional_properties_nullable_and_keeps_required_ones():
    strict = strict_schema(NESTED)
    props = strict["properties"]
    assert props["name"]["type"] == "string"
    assert props["age"]["type"] == ["integer", "null"]
    assert props["kind"]["type"] == ["string", "null"]
    assert props["kind"]["enum"] == ["a", "b", None]
    assert props["meta"]["type"] == ["object", "null"]
    assert props["meta"]["properties"]["level"]["type"] == "integer"
    assert props["meta"]["properties"]["note"]["type"] == ["string", "null"]
    assert props["ref"] == {"anyOf": [{"$ref": "#/$defs/thing"}, {"type": "null"}]}
    assert strict["$defs"]["thing"]["properties"]["x"]["type"] == ["number", "null"]


def test_strict_schema_drops_keywords_strict_mode_rejects_and_restates_lengths():
    strict = strict_schema(NESTED)
    name = strict["properties"]["name"]
    assert "maxLength" not in name
    assert name["description"] == "Short name (at most 20 characters)"
    assert "default" not in strict["properties"]["age"]
    assert strict["properties"]["age"]["minimum"] == 0
    assert "oneOf" not in json.dumps(strict)
    assert "anyOf" in strict["properties"]["either"]["anyOf"][0]


def test_strict_schema_is_a_valid_schema_and_does_not_modify_its_input():
    snapshot = copy.deepcopy(NESTED)
    strict = strict_schema(NESTED)
    assert snapshot == NESTED
    Draft202012Validator.check_schema(strict)


def test_a_strict_reply_with_nulls_validates_against_the_original_schema():
    strict = strict_schema(NESTED)
    reply = {
        "name": "n",
        "age": None,
        "kind": None,
        "meta": None,
        "items": None,
        "ref": None,
        "either": None,
    }
    assert schema_errors(reply, strict) == []
    value, errors = validate_json(as_text(reply), NESTED)
    assert errors == []
    assert value == {"name": "n"}


def test_strict_schema_merges_all_of():
    schema = {
        "type": "object",
        "allOf": [
            {"properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer"}}},
        ],
    }
    strict = strict_schema(schema)
    assert strict["required"] == ["a", "b"]
    assert strict["properties"]["a"]["type"] == "string"
    assert strict["properties"]["b"]["type"] == ["integer", "null"]


def test_the_spell_schema_in_strict_form():
    strict = strict_schema(SPELL_DRAFT)
    assert strict["required"] == list(SPELL_DRAFT["properties"])
    assert strict["properties"]["title"] == {
        "type": "string",
        "description": "(1 to 100 characters)",
    }
    assert strict["properties"]["confidence_score"] == SPELL_DRAFT["properties"]["confidence_score"]


@pytest.mark.parametrize(
    "schema",
    [{"type": "array"}, {"type": "string"}, {"type": ["object", "null"]}, {"anyOf": [{}]}],
)
def test_strict_schema_refuses_a_root_that_is_not_an_object(schema):
    with pytest.raises(ValueError, match="object schema at the root"):
        strict_schema(schema)


# --- examples -------------------------------------------------------------------------------------

EXAMPLE_SCHEMAS = [
    SPELL_DRAFT,
    ISSUE_ENRICHMENT,
    NESTED,
    strict_schema(SPELL_DRAFT),
    strict_schema(NESTED),
    {"type": "string"},
    {"type": "string", "minLength": 5, "maxLength": 6},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "email"},
    {"type": "integer", "minimum": 3, "maximum": 9, "multipleOf": 2},
    {"type": "integer", "maximum": -4},
    {"type": "integer", "exclusiveMinimum": 7},
    {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    {"type": "number", "exclusiveMaximum": 0},
    {"type": "boolean"},
    {"type": "null"},
    {"type": ["null", "integer"], "minimum": 2},
    {"enum": ["x", "y"]},
    {"const": {"fixed": True}},
    {"type": "string", "default": "hello"},
    {"type": "integer", "default": -1, "minimum": 0},
    {"type": "array", "items": {"type": "integer"}, "minItems": 4, "uniqueItems": True},
    {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 3, "uniqueItems": True},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "minItems": 2},
    {
        "anyOf": [
            {"type": "null"},
            {"type": "object", "required": ["k"], "properties": {"k": {"type": "string"}}},
        ]
    },
    {"oneOf": [{"type": "integer", "minimum": 10}]},
    {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"required": ["b"], "properties": {"b": {"type": "string"}}},
        ]
    },
    {"type": "object", "properties": {"child": {"$ref": "#"}}},
    {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"next": {"$ref": "#/$defs/node"}},
                "required": ["v"],
                "$comment": "v is untyped",
            }
        },
        "$ref": "#/$defs/node",
    },
    {},
]


@pytest.mark.parametrize(
    "schema", EXAMPLE_SCHEMAS, ids=[str(i) for i in range(len(EXAMPLE_SCHEMAS))]
)
def test_example_instance_is_valid_against_its_schema(schema):
    instance = example_instance(schema)
    assert schema_errors(instance, schema) == []


def test_example_instance_of_the_spell_and_enrichment_schemas():
    assert example_instance(SPELL_DRAFT) == {
        "title": "x",
        "description": "",
        "solution_code": "",
        "confidence_score": 0,
    }
    example = example_instance(ISSUE_ENRICHMENT)
    assert example["summary"] == "x"
    assert len(example["tags"]) == 3
    assert len(set(example["tags"])) == 3


def test_example_instance_uses_enum_default_and_const():
    assert example_instance({"enum": ["first", "second"]}) == "first"
    assert example_instance({"type": "string", "default": "hello"}) == "hello"
    assert example_instance({"type": "integer", "default": -1, "minimum": 0}) == 0
    assert example_instance({"const": 3}) == 3


def test_example_instance_refuses_endless_required_recursion():
    schema = {
        "type": "object",
        "properties": {"child": {"$ref": "#"}},
        "required": ["child"],
    }
    with pytest.raises(ValueError, match="recursion"):
        example_instance(schema)


def test_example_instance_round_trips_through_validate_json():
    for schema in (SPELL_DRAFT, ISSUE_ENRICHMENT, NESTED):
        value, errors = validate_json(as_text(example_instance(schema)), schema)
        assert errors == []
        assert value == example_instance(schema)
