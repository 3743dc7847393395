"""Python client for Grimoire's learning API (what a coding agent uses to learn from builds).

Only httpx, no Django: copy this one file into an agent's project or install Grimoire beside it.

    from grimoire.client import LLMClient

    with LLMClient("http://127.0.0.1:8000", token="…") as client:
        page = client.get_builds(limit=20)
        for build in page.builds:
            if build.status == "failed":
                data = client.get_build(build.id)
                print(data["log_summary"]["errors"][:3])
        client.submit_report(build.id, type="failure_analysis", analysis="…",
                             recommendations=["…"], confidence=0.8)

Every failure is one of two exceptions: `GrimoireAPIError` (the server answered with an error;
`.status`, `.code`, `.message`, `.details` from its error shape) or `GrimoireConnectionError`
(no answer: refused, DNS, timeout). Nothing is retried behind your back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

__all__ = [
    "DEFAULT_URL",
    "REPORT_TYPES",
    "BuildInfo",
    "BuildsPage",
    "GrimoireAPIError",
    "GrimoireConnectionError",
    "GrimoireError",
    "GrimoireTimeoutError",
    "LLMClient",
]

DEFAULT_URL = "http://127.0.0.1:8000"
REPORT_TYPES = (
    "failure_analysis",
    "code_improvement",
    "test_coverage",
    "dependency_audit",
    "performance_analysis",
)
USER_AGENT = "grimoire-client/1"


class GrimoireError(Exception):
    """Base class of everything this client raises about talking to the server."""


class GrimoireConnectionError(GrimoireError):
    """The server could not be reached or did not answer in time."""


class GrimoireTimeoutError(GrimoireConnectionError):
    pass


class GrimoireAPIError(GrimoireError):
    """The server answered with an error (or with something that is not the API's JSON)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        *,
        method: str = "",
        url: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details if details is not None else {}
        self.method = method
        self.url = url
        super().__init__(f"{status} {code}: {message}")


@dataclass(frozen=True)
class BuildInfo:
    """One build as listed by `get_builds` (`raw` holds every field the server sent)."""

    id: str
    status: str
    repository: str = ""
    branch: str = ""
    commit_sha: str = ""
    pull_request: int | None = None
    job_name: str = ""
    job_url: str = ""
    command: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    duration_seconds: float | None = None
    error_count: int = 0
    warning_count: int = 0
    primary_error: str | None = None
    log_bytes: int = 0
    log: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuildInfo:
        known = {name for name in cls.__dataclass_fields__ if name != "raw"}
        values = {k: v for k, v in data.items() if k in known}
        return cls(
            **{**values, "id": str(data["id"]), "status": str(data["status"])}, raw=dict(data)
        )

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


@dataclass(frozen=True)
class BuildsPage:
    """A page of builds, newest first; `total` counts every build, not just this page."""

    builds: list[BuildInfo]
    total: int
    skip: int
    limit: int

    def __iter__(self) -> Iterator[BuildInfo]:
        return iter(self.builds)

    def __len__(self) -> int:
        return len(self.builds)


class LLMClient:
    """Client for `/llm/learning/*` and `/build/run`.

    Authenticate with an API token (`manage.py create_api_token USER`) or, as in the seed, with
    the `session_id` of a signed-in session. `backend_url` and `token` default to the
    `GRIMOIRE_URL` and `GRIMOIRE_TOKEN` environment variables, then to a local server.
    `transport` lets tests (or unusual networks) supply their own httpx transport.
    """

    def __init__(
        self,
        backend_url: str | None = None,
        token: str | None = None,
        session_id: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.backend_url = (backend_url or os.environ.get("GRIMOIRE_URL") or DEFAULT_URL).rstrip(
            "/"
        )
        token = token if token is not None else os.environ.get("GRIMOIRE_TOKEN") or None
        self.session_id = session_id
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.backend_url,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    # --- plumbing -----------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LLMClient(backend_url={self.backend_url!r})"

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if self.session_id:
            query["session_id"] = self.session_id
        url = f"{self.backend_url}{path}"
        try:
            response = self._http.request(method, path, params=query or None, json=json)
        except httpx.TimeoutException as exc:
            raise GrimoireTimeoutError(f"{method} {url} timed out: {exc}") from exc
        except httpx.TransportError as exc:
            raise GrimoireConnectionError(
                f"cannot reach Grimoire at {self.backend_url} ({type(exc).__name__}: {exc}); "
                "is the server running?"
            ) from exc
        return _decode(response, method=method, url=url)

    # --- the learning API ---------------------------------------------------------------------

    def get_builds(
        self,
        limit: int = 20,
        skip: int = 0,
        *,
        status: str | None = None,
        include_log: bool = False,
    ) -> BuildsPage:
        """Recent builds, newest first (the server caps `limit` at 100)."""
        data = self._request(
            "GET",
            "/llm/learning/builds",
            params={
                "limit": limit,
                "skip": skip,
                "status": status,
                "include_log": "true" if include_log else None,
            },
        )
        try:
            return BuildsPage(
                builds=[BuildInfo.from_dict(item) for item in data["builds"]],
                total=int(data["total"]),
                skip=int(data["skip"]),
                limit=int(data["limit"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _shape_error("GET /llm/learning/builds", exc) from exc

    def get_build(self, build_id: str) -> dict[str, Any]:
        """One build: metadata, `log`, `log_summary` (errors, warnings, failures, primary_error,
        excerpt) and `llm_reports`."""
        data = self._request("GET", f"/llm/learning/build/{_segment(build_id)}")
        return _inner(data, "build", "GET /llm/learning/build")

    def get_codebase(self) -> dict[str, Any]:
        """The workspace: `file_tree`, `key_config_files`, `backend_files`, `structure_summary`."""
        return _inner(self._request("GET", "/llm/learning/codebase"), "codebase", "GET codebase")

    def submit_report(
        self,
        build_id: str,
        report_type: str | None = None,
        analysis: str = "",
        recommendations: Iterable[str] = (),
        confidence: float = 0.5,
        type: str | None = None,  # the seed calls it `type=`
    ) -> dict[str, Any]:
        """Store an analysis of a build; returns `{"status", "message", "report_id"}`.

        The seed spells the kind both `report_type=` and `type=`; either works.
        """
        if report_type is not None and type is not None and report_type != type:
            raise ValueError(f"report_type={report_type!r} and type={type!r} disagree")
        kind = report_type if report_type is not None else type
        if kind is None:
            raise TypeError(
                f"submit_report() needs report_type= (one of {', '.join(REPORT_TYPES)})"
            )
        if isinstance(recommendations, str):
            recommendations = [recommendations]  # a lone string is one recommendation, not letters
        return self._request(
            "POST",
            "/llm/learning/report",
            json={
                "build_id": str(build_id),
                "type": kind,
                "analysis": analysis,
                "recommendations": list(recommendations),
                "confidence": confidence,
            },
        )

    def run_build(self, command: str, *, repository: str = "", branch: str = "") -> dict[str, Any]:
        """Staff only: run a command allowed by the server's BUILD_RUN_COMMANDS as a build;
        returns `{"status", "build_id", "state"}` (the build runs in the background)."""
        return self._request(
            "POST",
            "/build/run",
            json={"command": command, "repository": repository, "branch": branch},
        )


def _segment(value: Any) -> str:
    # An id is one path segment: "../x" must not walk to another endpoint.
    return quote(str(value), safe="")


def _decode(response: httpx.Response, *, method: str, url: str) -> dict[str, Any]:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if response.is_success:
        if not isinstance(body, dict):
            raise GrimoireAPIError(
                response.status_code,
                "bad_response",
                f"expected a JSON object from {method} {url}, got {_snippet(response)}",
                method=method,
                url=url,
            )
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or f"http_{response.status_code}")
        message = str(error.get("message") or response.reason_phrase)
        details = error.get("details")
    else:
        # Not Grimoire's error shape: a proxy page, a wrong URL, a different server.
        code = f"http_{response.status_code}"
        message = f"{response.reason_phrase or 'error'}: {_snippet(response)}"
        details = None
    raise GrimoireAPIError(response.status_code, code, message, details, method=method, url=url)


def _snippet(response: httpx.Response, limit: int = 200) -> str:
    text = response.text.strip().replace("\n", " ")
    return (text[:limit] + "…") if len(text) > limit else (text or "an empty body")


def _inner(data: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    inner = data.get(key)
    if not isinstance(inner, dict):
        raise _shape_error(what, KeyError(key))
    return inner


def _shape_error(what: str, exc: Exception) -> GrimoireAPIError:
    return GrimoireAPIError(
        200, "bad_response", f"unexpected response shape from {what}: {type(exc).__name__}: {exc}"
    )
