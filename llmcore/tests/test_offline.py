"""The offline provider: deterministic, no network, clearly marked, valid against the schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from llmcore.providers.base import MODE_NONE, MODE_OFFLINE, ProviderConfig
from llmcore.providers.offline import MARK, OfflineProvider, build_instance
from llmcore.types import LLMRequest, Message

PROMPT = (
    "TypeError: Cannot read property 'length' of undefined\n"
    "const len = myArray.length; in frontend/login.js; the login button crashes the frontend"
)

SPELL_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 100},
        "description": {"type": "string"},
        "solution_code": {"type": "string"},
        "confidence_score": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["title", "description", "solution_code", "confidence_score"],
    "additionalProperties": False,
}


def offline() -> OfflineProvider:
    return OfflineProvider(
        ProviderConfig(name="offline", kind="offline", base_url="", model="offline")
    )


def send(schema: dict[str, Any] | None = None, prompt: str = PROMPT):
    request = LLMRequest(messages=[Message("user", prompt)], json_schema=schema)
    return offline().send(
        request, client=None, structured_mode=MODE_OFFLINE if schema else MODE_NONE
    )


def assert_valid(instance: Any, schema: dict[str, Any]) -> None:
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(instance)]
    assert errors == []


def test_a_text_answer_is_marked_offline_and_built_from_the_input():
    result = send()
    assert result.text.startswith(MARK)
    assert "low-confidence" in result.text
    assert "Cannot read property 'length'" in result.text
    assert result.offline is True
    assert result.model == "offline"
    assert result.usage.input_tokens == result.usage.output_tokens == 0


def test_it_is_deterministic():
    assert send(SPELL_SCHEMA).text == send(SPELL_SCHEMA).text
    assert send().text == send().text


def test_a_spell_draft_is_valid_marked_and_low_confidence():
    result = send(SPELL_SCHEMA)
    data = json.loads(result.text)
    assert_valid(data, SPELL_SCHEMA)
    assert data["title"].startswith(MARK)
    assert "TypeError" in data["title"]
    assert len(data["title"]) <= 100
    assert MARK in data["description"]
    assert MARK in data["solution_code"]
    assert data["confidence_score"] <= 20


@pytest.mark.parametrize(
    ("schema", "low"),
    [
        ({"type": "number", "minimum": 0, "maximum": 1}, 0.2),
        ({"type": "integer", "minimum": 0, "maximum": 100}, 20),
        ({"type": "number"}, 0.2),
        ({"type": "integer", "minimum": 50, "maximum": 100}, 60),
    ],
)
def test_confidence_like_numbers_are_low(schema, low):
    data = build_instance(
        {"type": "object", "properties": {"confidence": schema}, "required": ["confidence"]}, PROMPT
    )
    assert data["confidence"] <= low
    assert_valid(data["confidence"], schema)


def test_tags_come_from_the_words_of_the_input():
    schema = {
        "type": "object",
        "properties": {
            "summary": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        },
        "required": ["summary", "tags"],
    }
    data = build_instance(schema, PROMPT)
    assert_valid(data, schema)
    assert "frontend" in data["tags"]
    assert 1 <= len(data["tags"]) <= 5


def test_enums_prefer_a_value_the_input_mentions():
    schema = {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "items": {"enum": ["bug", "backend", "frontend", "docs"]},
                "uniqueItems": True,
            },
            "priority": {"enum": ["low", "medium", "high"]},
        },
        "required": ["tags", "priority"],
    }
    data = build_instance(schema, PROMPT)
    assert_valid(data, schema)
    assert data["tags"] == ["frontend"]
    assert data["priority"] == "low"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 500},
        {"type": "string", "maxLength": 5},
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "uuid"},
        {"type": "string", "pattern": "^[a-z]+$"},
        {"type": ["string", "null"]},
        {"type": "boolean"},
        {"type": "null"},
        {"const": "fixed"},
        {"type": "integer", "exclusiveMinimum": 3, "maximum": 9, "multipleOf": 2},
        {"type": "array", "items": {"type": "integer"}, "minItems": 3, "uniqueItems": True},
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
        {"anyOf": [{"type": "integer", "minimum": 5}, {"type": "string"}]},
        {
            "oneOf": [
                {"type": "null"},
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            ]
        },
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
            ]
        },
        {
            "type": "object",
            "properties": {
                "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 2},
                "meta": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "required": ["source"],
                },
            },
            "required": ["steps", "meta"],
            "additionalProperties": False,
            "$defs": {
                "step": {
                    "type": "object",
                    "properties": {
                        "command": {"type": "string"},
                        "order": {"type": "integer", "minimum": 1},
                    },
                    "required": ["command", "order"],
                }
            },
        },
    ],
)
def test_instances_validate_against_a_range_of_schemas(schema):
    assert_valid(build_instance(schema, PROMPT), schema)


def test_draft_07_definitions_refs_work_too():
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"fix": {"$ref": "#/definitions/fix"}},
        "required": ["fix"],
        "definitions": {
            "fix": {
                "type": "object",
                "properties": {"patch": {"type": "string"}},
                "required": ["patch"],
            }
        },
    }
    data = build_instance(schema, PROMPT)
    assert list(Draft7Validator(schema).iter_errors(data)) == []
    assert MARK in data["fix"]["patch"]


def test_an_empty_prompt_still_answers():
    result = send(SPELL_SCHEMA, prompt="")
    assert_valid(json.loads(result.text), SPELL_SCHEMA)


def test_it_ignores_the_requested_model_and_needs_no_client():
    request = LLMRequest(messages=[Message("user", "hi")], model="gpt-4o")
    result = offline().send(request, client=None, structured_mode=MODE_NONE)
    assert result.model == "offline"
