"""`manage.py tag_issue --json`: JSON lines in, JSON lines out, offline, bad lines reported."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from issues.management.commands import tag_issue
from issues.tagger import KINDS


def run(stdin_text: str, *args: str) -> tuple[list[dict], CommandError | None]:
    out = io.StringIO()
    error = None
    try:
        call_command("tag_issue", "--json", *args, stdin=io.StringIO(stdin_text), stdout=out)
    except CommandError as exc:
        error = exc
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return lines, error


def jsonl(*objects: object) -> str:
    return "".join(json.dumps(o) + "\n" for o in objects)


def test_it_tags_each_line_in_order():
    lines, error = run(
        jsonl(
            {"title": "App crashes on save", "body": "Traceback (most recent call last):\n..."},
            {"title": "How do I rotate my API token?", "body": ""},
        )
    )
    assert error is None
    assert [line["kind"] for line in lines] == ["bug", "question"]
    for line in lines:
        assert set(line) == {"kind", "tags", "summary", "source"}
        assert line["source"] == "fallback"
        assert line["kind"] in KINDS
        assert 3 <= len(line["tags"]) <= 5
        assert line["summary"]


def test_a_bad_line_gets_an_error_line_and_the_run_goes_on():
    text = (
        jsonl({"title": "Add dark mode", "body": "It would be nice."})
        + "{not json\n"
        + jsonl([1, 2], {"title": 7}, {"body": None}, {"title": "Docs typo in README"})
    )
    lines, error = run(text)
    assert [sorted(line) for line in lines] == [
        ["kind", "source", "summary", "tags"],
        ["error", "line"],
        ["error", "line"],
        ["error", "line"],
        ["error", "line"],
        ["kind", "source", "summary", "tags"],
    ]
    assert lines[0]["kind"] == "feature-request"
    assert lines[5]["kind"] == "documentation"
    assert [line.get("line") for line in lines[1:5]] == [2, 3, 4, 5]
    assert "invalid JSON" in lines[1]["error"]
    assert "object" in lines[2]["error"]
    assert '"title" must be a string' in lines[3]["error"]
    assert "required" in lines[4]["error"]
    # Non-zero exit at the end, after every line was answered.
    assert error is not None
    assert "4 of 6 lines" in str(error)


def test_blank_lines_are_skipped_and_empty_input_is_fine():
    lines, error = run("\n\n" + jsonl({"title": "Crash on start"}) + "   \n")
    assert error is None
    assert len(lines) == 1
    assert run("")[0] == []


def test_it_refuses_to_run_without_json_mode():
    with pytest.raises(CommandError, match="--json"):
        call_command("tag_issue", stdin=io.StringIO(""), stdout=io.StringIO())


def test_vocabulary_and_new_tags_options():
    issue = {"title": "Totals are wrong", "body": "See src/payments/totals.py"}
    closed, _ = run(jsonl(issue))
    assert "payments" not in closed[0]["tags"]
    opened, _ = run(jsonl(issue), "--allow-new-tags")
    assert "payments" in opened[0]["tags"]
    custom, _ = run(jsonl(issue), "--vocabulary", "payments,reports")
    assert "payments" in custom[0]["tags"]


def test_vocabulary_settings_are_the_defaults(settings):
    settings.ISSUES_TAG_VOCABULARY = ["payments"]
    settings.ISSUES_ALLOW_NEW_TAGS = False
    lines, _ = run(jsonl({"title": "Totals are wrong", "body": "See src/payments/totals.py"}))
    assert "payments" in lines[0]["tags"]


def test_a_runaway_line_is_refused_without_stopping_the_run(monkeypatch):
    monkeypatch.setattr(tag_issue, "MAX_LINE_CHARS", 100)
    monkeypatch.setattr(tag_issue, "_READ_CHUNK", 16)
    text = jsonl({"title": "x" * 500}) + jsonl({"title": "Crash on start"})
    lines, error = run(text)
    assert "longer than 100" in lines[0]["error"]
    assert lines[1]["kind"] == "bug"
    assert error is not None


def test_output_is_utf8_json_not_ascii_escapes():
    out = io.StringIO()
    call_command(
        "tag_issue",
        "--json",
        stdin=io.StringIO(jsonl({"title": "登录按钮没有反应", "body": ""})),
        stdout=out,
    )
    assert "登录按钮没有反应" in out.getvalue()
