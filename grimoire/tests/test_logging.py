from __future__ import annotations

import json
import logging

import pytest

from grimoire.logs import ContextFilter, JsonFormatter, TextFormatter, bind_job


def _record(msg="hello %s", args=("world",), **extra):
    record = logging.LogRecord("grimoire.test", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    ContextFilter().filter(record)
    return record


def test_json_lines_carry_message_level_and_extras():
    line = JsonFormatter().format(_record(build_id=42))
    payload = json.loads(line)
    assert "\n" not in line
    assert payload["message"] == "hello world"
    assert payload["level"] == "info"
    assert payload["logger"] == "grimoire.test"
    assert payload["build_id"] == 42
    assert "job_id" not in payload


def test_job_id_is_attached_inside_bind_job():
    with bind_job("job-123"):
        payload = json.loads(JsonFormatter().format(_record()))
    assert payload["job_id"] == "job-123"
    assert "job_id" not in json.loads(JsonFormatter().format(_record()))


def test_exceptions_stay_on_one_json_line():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        import sys

        record = _record()
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError" in json.loads(line)["exc"]


def test_text_format_is_human_readable():
    with bind_job("j1"):
        line = TextFormatter().format(_record())
    assert "INFO" in line and "hello world" in line and "job_id=j1" in line


@pytest.mark.django_db
def test_requests_get_an_id_echoed_in_the_response(client):
    response = client.get("/healthz")
    assert len(response["X-Request-ID"]) == 32
    response = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    response = client.get("/healthz", HTTP_X_REQUEST_ID="<script>")
    assert response["X-Request-ID"] != "<script>"


def test_the_console_handler_redacts_secrets(capsys):
    import logging as _logging

    from django.conf import settings

    assert "redact" in settings.LOGGING["handlers"]["console"]["filters"]
    token = "ghp_" + "A1" * 18
    handler = _logging.root.handlers[0]
    record = _logging.LogRecord(
        "grimoire.test", _logging.WARNING, __file__, 1, "token %s leaked", (token,), None
    )
    for f in handler.filters:
        f.filter(record)
    line = handler.format(record)
    assert token not in line
    assert "REDACTED" in line
