"""Schemathesis against GET /api/schema/, in-process through the WSGI app, with a Bearer token.

One test per operation; each runs the schema's examples, schemathesis's coverage cases and up to
MAX_EXAMPLES generated cases (valid and invalid input), derandomized so every run sends the same
requests. Every response must:
- not be a 5xx;
- match the schema for its status code, with the documented content type;
- use a documented status code, or one of the generic error codes every endpoint may answer
  (bad input, auth, not found, wrong method, throttled), which are not in the schema yet
  (see test_findings.py);
- when it is an error, have the project's one error shape {"error": {"code", "message", "details"}}.

Known findings (test_findings.py, strict xfails) are patched into the schema the fuzzer uses,
each narrowly (SCHEMA_FIXES), so the fuzzer keeps looking everywhere else. Fixing one makes its
xfail pass, which fails the run until the xfail and its entry here are removed.

Nothing the fuzzer sends starts real work: on_commit never fires inside the test's transaction,
so no endpoint had to be excluded.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is not installed: run scripts/ci-fuzz"
)

from django.core.cache import cache  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
)

from grimoire.wsgi import application  # noqa: E402

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = 25
# Errors any endpoint may answer: bad input, no or bad token, not staff, unknown id, wrong
# method, unacceptable or unsupported media type, body too large, throttled.
GENERIC_ERROR_STATUSES = frozenset({400, 401, 403, 404, 405, 406, 413, 415, 429})

SCHEMA_PATH = "/api/schema/?format=json"

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}


def _nullable(component: str, prop: str) -> Callable[[dict[str, Any]], None]:
    def fix(raw: dict[str, Any]) -> None:
        props = raw["components"]["schemas"].get(component, {}).get("properties", {})
        if prop in props:
            props[prop]["nullable"] = True

    return fix


def _also_answers(
    method: str, path: str, status: str, like: str | None = None
) -> Callable[[dict[str, Any]], None]:
    """The operation may also answer `status`: with the body of `like`, or an error."""

    def fix(raw: dict[str, Any]) -> None:
        operation = raw["paths"].get(path, {}).get(method.lower())
        if operation is None:
            return
        responses = operation["responses"]
        if like is not None and like in responses:
            responses.setdefault(status, copy.deepcopy(responses[like]))
        else:
            responses.setdefault(
                status,
                {"description": "", "content": {"application/json": {"schema": ERROR_SCHEMA}}},
            )

    return fix


# test_findings.py test name -> the schema as it should be there.
SCHEMA_FIXES: dict[str, Callable[[dict[str, Any]], None]] = {}


def load_schema() -> Any:
    """The app's schema, fetched in-process through WSGI (no server, no network), fixes applied."""
    from schemathesis.python import wsgi

    response = wsgi.get_client(application).get(SCHEMA_PATH)
    if response.status_code != 200:
        raise RuntimeError(f"GET {SCHEMA_PATH} answered {response.status_code}")
    raw = json.loads(response.get_data())
    for fix in SCHEMA_FIXES.values():
        fix(raw)
    loaded = schemathesis.openapi.from_dict(raw)
    loaded.app = application
    loaded.location = SCHEMA_PATH
    return loaded


schema = load_schema()

# Ids of the objects api_world seeded for the running test (they change with every test).
KNOWN_IDS: dict[str, Any] = {}


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Half the cases aim at an object that exists, so the 2xx responses get checked too."""
    if not path_parameters or not any(name in KNOWN_IDS for name in path_parameters):
        return st.just(path_parameters)
    real = {**path_parameters, **{k: v for k, v in KNOWN_IDS.items() if k in path_parameters}}
    return st.sampled_from([path_parameters, real])


def _documented_statuses(case: Any) -> set[str]:
    return {str(code) for code in case.operation.definition.raw.get("responses", {})}


def documented_status(ctx: Any, response: Any, case: Any) -> bool | None:
    if case.method.upper() != case.operation.method.upper():
        # Schemathesis also tries methods the path does not declare: 405, or DRF's metadata
        # for OPTIONS, are the right answers there.
        if response.status_code == 405 or (
            case.method.upper() == "OPTIONS" and 200 <= response.status_code < 300
        ):
            return None
        raise AssertionError(
            f"{case.method} on {case.path} (not a declared method) answered {response.status_code}"
        )
    documented = _documented_statuses(case)
    if "default" in documented or str(response.status_code) in documented:
        return None
    if response.status_code in GENERIC_ERROR_STATUSES:
        return None
    raise AssertionError(
        f"{case.method} {case.path} answered {response.status_code}, "
        f"which the schema does not document (documented: {sorted(documented)})"
    )


def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(
            f"{response.status_code} error body is not JSON: {response.content[:200]!r}"
        ) from exc
    error = body.get("error") if isinstance(body, dict) else None
    if (
        set(body) != {"error"}
        or not isinstance(error, dict)
        or set(error) != {"code", "message", "details"}
        or not isinstance(error["code"], str)
        or not isinstance(error["message"], str)
    ):
        raise AssertionError(f"{response.status_code} body is not the error shape: {body!r}")
    return None


CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    documented_status,
    error_shape,
]


@pytest.fixture
def fuzz_token(api_world: dict[str, Any]) -> Any:
    KNOWN_IDS.clear()
    KNOWN_IDS.update(api_world["known"])
    yield api_world["token"]
    KNOWN_IDS.clear()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # The fixture's objects and token serve every example of one operation: intended here.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_api_answers_within_its_schema(case: Any, fuzz_token: str) -> None:
    # Write throttles count per user in the cache; the fuzzer is not what they are for.
    cache.clear()
    case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_token}"}, checks=CHECKS)
