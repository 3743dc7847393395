"""Spell definition files: parsing, validation errors that point at the problem, round trips."""

from __future__ import annotations

import json

import pytest

from spells.library import (
    SpellDef,
    SpellFileError,
    dump_spells,
    load_spell_file,
    load_starter_library,
    parse_spells,
)

GOOD = """
version: 1
defaults:
  language: Python
  tags: [python]
spells:
  - slug: python-module-not-found
    title: "ModuleNotFoundError: a dependency is not installed"
    description: |
      The package is not installed in the CI environment.
      Add it to requirements.
    solution_code: |
      pip install -r requirements.txt
    error_type: ModuleNotFoundError
    tags: [Imports, python]
    patterns:
      - regex: "ModuleNotFoundError: No module named '[\\\\w.]+'"
        sample: "ModuleNotFoundError: No module named 'requests'"
  - slug: docker-daemon-down
    title: Cannot connect to the Docker daemon
    description: The daemon is not running.
    language: docker
    status: draft
    source: manual
    fingerprints: [abc123]
    confidence_score: 72
    auto_generated: true
"""


def problems_of(text, fmt="yaml"):
    with pytest.raises(SpellFileError) as info:
        parse_spells(text, fmt, source="team.yaml")
    return [str(p) for p in info.value.problems]


def one_spell(**fields):
    spell = {"slug": "s", "title": "T", "description": "D", **fields}
    return json.dumps({"spells": [spell]})


def test_it_parses_a_file_with_defaults_applied():
    first, second = parse_spells(GOOD)

    assert first == SpellDef(
        slug="python-module-not-found",
        title="ModuleNotFoundError: a dependency is not installed",
        description="The package is not installed in the CI environment.\nAdd it to requirements.",
        solution_code="pip install -r requirements.txt",
        language="python",
        error_type="ModuleNotFoundError",
        tags=["python", "imports"],
        patterns=[
            {
                "regex": r"ModuleNotFoundError: No module named '[\w.]+'",
                "sample": "ModuleNotFoundError: No module named 'requests'",
            }
        ],
        status="approved",
        source="imported",
    )
    assert (second.language, second.status, second.source) == ("docker", "draft", "manual")
    assert (second.fingerprints, second.confidence_score, second.auto_generated) == (
        ["abc123"],
        72,
        True,
    )
    assert second.patterns == []


def test_a_plain_list_of_spells_is_accepted():
    [spell] = parse_spells('[{"slug": "a", "title": "T", "description": "D"}]', "json")

    assert spell.slug == "a"
    assert spell.source == "imported"


def test_default_source_is_configurable():
    [spell] = parse_spells(one_spell(), "json", default_source="manual")

    assert spell.source == "manual"


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_dump_then_parse_round_trips(fmt):
    spells = parse_spells(GOOD)

    assert parse_spells(dump_spells(spells, fmt), fmt) == spells


def test_yaml_dump_writes_multiline_text_as_blocks():
    text = dump_spells(parse_spells(GOOD))

    assert "description: |-\n" in text
    assert "version: 1" in text


def test_the_whole_starter_library_round_trips():
    spells = load_starter_library()

    assert parse_spells(dump_spells(spells, "yaml")) == spells
    assert parse_spells(dump_spells(spells, "json"), "json") == spells


def test_to_record_gives_the_matcher_what_it_needs():
    spell = parse_spells(GOOD)[0]

    record = spell.to_record(42)

    assert record.id == 42
    assert record.patterns == [r"ModuleNotFoundError: No module named '[\w.]+'"]
    assert "Add it to requirements." in record.text
    assert spell.to_record().id == "python-module-not-found"


# ---- errors name the file, the spell and the field -------------------------------------------


def test_errors_name_file_index_slug_and_field():
    problems = problems_of(one_spell(title="x" * 101))

    assert problems == ["team.yaml: spells[0] (s).title: is 101 characters long, at most 100"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"slug": ""}, "spells[0].slug: is required"),
        ({"slug": "Bad Slug"}, "(Bad Slug).slug: must be lowercase"),
        ({"title": ""}, ".title: is required"),
        ({"description": "  "}, ".description: is required"),
        ({"title": 404}, ".title: must be a string, not int"),
        ({"status": "archived"}, ".status: must be one of"),
        ({"source": "scraped"}, ".source: must be one of"),
        ({"tags": "python"}, ".tags: must be a list of strings"),
        ({"fingerprints": [1, 2]}, ".fingerprints: must be a list of strings"),
        ({"confidence_score": 101}, ".confidence_score: must be an integer from 0 to 100"),
        ({"confidence_score": True}, ".confidence_score: must be an integer from 0 to 100"),
        ({"auto_generated": "yes"}, ".auto_generated: must be true or false"),
        ({"pattern": []}, ".pattern: unknown field"),
        ({"patterns": "x"}, ".patterns: must be a list"),
        ({"patterns": ["x"]}, ".patterns[0]: must be a mapping"),
        (
            {"patterns": [{"regex": "abcd", "sample": "abcd", "flags": "i"}]},
            "unknown key(s) ['flags']",
        ),
        ({"patterns": [{"sample": "x"}]}, ".patterns[0].regex: is required"),
        ({"patterns": [{"regex": "disk quota exceeded"}]}, ".patterns[0].sample: is required"),
        (
            {"patterns": [{"regex": "disk quota (", "sample": "disk quota ("}]},
            ".patterns[0].regex: does not compile",
        ),
        (
            {"patterns": [{"regex": "disk quota exceeded", "sample": "no space left"}]},
            ".patterns[0].regex: does not match its sample line",
        ),
        (
            {"patterns": [{"regex": "(?:disk)?", "sample": "disk"}]},
            ".patterns[0].regex: too broad: matches the empty string",
        ),
        (
            {"patterns": [{"regex": "installed", "sample": "installed"}]},
            ".patterns[0].regex: too broad: also matches the ordinary log line",
        ),
        (
            {
                "patterns": [
                    {"regex": "disk quota exceeded", "sample": "disk quota exceeded"},
                    {"regex": "disk quota exceeded", "sample": "disk quota exceeded!"},
                ]
            },
            ".patterns[1].regex: duplicate",
        ),
    ],
)
def test_each_bad_field_is_reported(fields, expected):
    problems = problems_of(one_spell(**fields), "json")

    assert any(expected in p for p in problems), problems


def test_every_problem_in_a_file_is_reported_at_once():
    text = json.dumps(
        {
            "spells": [
                {"slug": "a", "title": "", "description": "D"},
                {"slug": "b", "title": "T", "description": "D", "status": "nope"},
                {"slug": "a", "title": "T", "description": "D"},
            ]
        }
    )

    problems = problems_of(text, "json")

    assert problems == [
        "team.yaml: spells[0] (a).title: is required",
        "team.yaml: spells[1] (b).status: must be one of ['draft', 'approved', 'rejected'], not 'nope'",
    ]


def test_duplicate_slugs_in_one_file_are_refused():
    text = json.dumps({"spells": [{"slug": "a", "title": "T", "description": "D"}] * 2})

    assert problems_of(text, "json") == [
        "team.yaml: spells[1] (a).slug: duplicate slug, already used by spells[0]"
    ]


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        ("spells: [\n  - slug: a\n  title", "yaml", "team.yaml: line 2, column 3: invalid YAML"),
        ('{"spells": [', "json", "team.yaml: line 1, column 13: invalid JSON"),
        ("just a string", "yaml", "expected a list of spells"),
        ("version: 2\nspells: []", "yaml", "team.yaml: version: unsupported version 2"),
        ("spells: {}", "yaml", "team.yaml: spells: must be a list"),
        ("spels: []", "yaml", "unknown top-level key(s): ['spels']"),
        ("defaults: {title: x}\nspells: []", "yaml", "team.yaml: defaults: must be a mapping"),
    ],
)
def test_malformed_files_say_where(text, fmt, expected):
    problems = problems_of(text, fmt)

    assert any(expected in p for p in problems), problems


def test_yaml_is_loaded_safely():
    # A python tag would construct an object with an unsafe loader; safe_load refuses it.
    problems = problems_of("!!python/object/apply:os.system ['echo hacked']")

    assert any("invalid YAML" in p for p in problems)


def test_unknown_format_is_a_value_error():
    with pytest.raises(ValueError, match="format"):
        parse_spells("[]", "toml")
    with pytest.raises(ValueError, match="format"):
        dump_spells([], "toml")


# ---- files --------------------------------------------------------------------------------------


def test_load_spell_file_picks_the_format_from_the_extension(tmp_path):
    spells = parse_spells(GOOD)
    (tmp_path / "a.yml").write_text(dump_spells(spells, "yaml"), encoding="utf-8")
    (tmp_path / "b.json").write_text(dump_spells(spells, "json"), encoding="utf-8")

    assert load_spell_file(tmp_path / "a.yml") == spells
    assert load_spell_file(tmp_path / "b.json") == spells


def test_load_spell_file_names_the_file_in_errors(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("spells:\n  - slug: a\n    title: T\n", encoding="utf-8")

    with pytest.raises(SpellFileError) as info:
        load_spell_file(path)

    assert str(info.value) == f"{path}: spells[0] (a).description: is required"


def test_load_spell_file_reports_unreadable_and_unknown_files(tmp_path):
    with pytest.raises(SpellFileError, match="cannot read"):
        load_spell_file(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="extension"):
        load_spell_file(tmp_path / "spells.txt")


def test_starter_library_refuses_a_slug_defined_in_two_files(tmp_path):
    body = "spells:\n  - {slug: same, title: T, description: D}\n"
    (tmp_path / "a.yaml").write_text(body, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(body, encoding="utf-8")

    with pytest.raises(SpellFileError) as info:
        load_starter_library(tmp_path)

    assert "b.yaml: spells[0] (same).slug: duplicate slug, already defined in a.yaml" in str(
        info.value
    )
