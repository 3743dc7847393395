"""What every provider adapter shares: configuration, the HTTP call, and error classification.

An adapter turns an `LLMRequest` into one HTTP request and the answer into a `ProviderResult`,
or raises a `ProviderError` whose `kind` tells the router what to do (DESIGN.md retry rules):

- transient (retry shortly, then fail over): 408, 409, 425, 429, 5xx, 529, timeouts, connection
  errors, a 2xx whose body is not the expected JSON;
- failover (next provider at once): 401/403 (with cooldown), 404 or unknown model, quota
  exhaustion (with cooldown), context-window overflow;
- fatal: any other 4xx, refusals, a structured-output mode the server rejects (the router
  catches that one and negotiates a weaker mode).

The adapters never retry: the router owns the only retry layer, and `make_client()` builds an
httpx client with transport retries switched off.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from llmcore.types import LLMRequest, ProviderError, Usage

# Structured-output modes, strongest first within each provider's list.
MODE_NONE = "none"  # no schema requested
MODE_JSON_SCHEMA = "json_schema"  # response_format json_schema (strict when the schema allows)
MODE_TOOL = "tool"  # Anthropic: one forced tool whose input_schema is the schema
MODE_JSON_OBJECT_SCHEMA = "json_object_schema"  # llama.cpp: {"type": "json_object", "schema"}
MODE_JSON_OBJECT = "json_object"  # JSON mode + schema in the prompt
MODE_PROMPT = "prompt"  # schema in the prompt only
MODE_OFFLINE = "offline"  # the offline provider builds the instance itself

# Modes a server may refuse with a 400; the weakest one (prompt) cannot be refused.
NEGOTIABLE_MODES = frozenset(
    {MODE_JSON_SCHEMA, MODE_TOOL, MODE_JSON_OBJECT_SCHEMA, MODE_JSON_OBJECT}
)

ERROR_MESSAGE_LIMIT = 500

# Seconds left for the routed call this request belongs to (the Router's deadline), read by
# post_json so one slow provider cannot use up the whole job's time. None: no deadline.
_call_budget: ContextVar[Callable[[], float] | None] = ContextVar("llm_call_budget", default=None)


# A request is not started with less time than this left: it could only time out (and a
# request already written is billed even when its answer is thrown away).
MIN_CALL_SECONDS = 2.0


def call_time_left() -> float:
    """Seconds left before the current routed call's deadline (infinity without one)."""
    budget = _call_budget.get()
    return float("inf") if budget is None else budget()


@contextmanager
def call_budget(remaining: Callable[[], float]) -> Iterator[None]:
    """Within the block, every provider request ends by `remaining()` seconds from its start."""
    token = _call_budget.set(remaining)
    try:
        yield
    finally:
        _call_budget.reset(token)


@dataclass(slots=True)
class ProviderConfig:
    name: str
    kind: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    model: str = ""
    timeout_connect: float = 5.0
    timeout_read: float = 60.0
    timeout_total: float = 120.0
    max_tokens: int | None = None
    extra_headers: dict[str, str] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        """One line for logs: never the key, only whether there is one."""
        if self.kind == "offline":
            return f"{self.name}: deterministic placeholder answers, no network"
        key = "key set" if self.api_key else "no key"
        label = self.name if self.name == self.kind else f"{self.name} ({self.kind})"
        where = f", {self.base_url}" if self.base_url else ""
        return f"{label}: model {self.model or '-'}{where}, {key}"


@dataclass(slots=True)
class ProviderResult:
    """One successful provider call, before the router adds cost, latency and validation."""

    text: str
    model: str
    usage: Usage
    structured_mode: str
    finish_reason: str | None = None
    raw: Any | None = field(default=None, repr=False)
    offline: bool = False


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What config.py needs to know about a provider kind to build its ProviderConfig."""

    kind: str
    factory: Callable[[ProviderConfig], Provider]
    base_url: str = ""
    default_model: str = ""
    # Environment variables holding the key, canonical first; empty for keyless servers.
    key_envs: tuple[str, ...] = ()
    # Keyless servers (Ollama) or servers where a key is optional (vLLM --api-key, custom).
    key_optional: bool = False
    local: bool = False
    # True when the provider only makes sense with an explicit base URL (vLLM, custom).
    needs_base_url: bool = False
    needs_model: bool = False


SPECS: dict[str, ProviderSpec] = {}


def register(spec: ProviderSpec) -> ProviderSpec:
    SPECS[spec.kind] = spec
    return spec


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    message: str
    type: str = ""
    code: str = ""
    param: str = ""
    # Numeric error codes (Cloudflare puts them in an "errors" list).
    codes: tuple[int, ...] = ()


def make_client(*, max_connections: int = 20) -> httpx.Client:
    """An httpx client with no transport retries: the router is the only retry layer."""
    return httpx.Client(
        transport=httpx.HTTPTransport(retries=0),
        timeout=httpx.Timeout(60.0, connect=5.0),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        follow_redirects=False,
    )


# --- Parsing helpers ----------------------------------------------------------------------------


def parse_retry_after(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            ms = float(value)
        except ValueError:
            ms = -1.0
        if ms >= 0:
            return ms / 1000.0
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now())
    return seconds if seconds >= 0 else None


def error_info(body: Any, text: str = "") -> ErrorInfo:
    """Pull message/type/code out of the error bodies providers actually send.

    Shapes: OpenAI/GitHub/Groq/Ollama/llama.cpp `{"error": {"message", "type", "code"}}`,
    Anthropic `{"type": "error", "error": {...}}`, Hugging Face `{"error": "..."}`, Cloudflare
    `{"errors": [{"code": 3036, "message"}]}`, vLLM `{"object": "error", "message", "code"}`,
    FastAPI-style `{"detail": ...}`, or plain text.
    """
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code = err.get("code")
            return ErrorInfo(
                message=str(err.get("message") or err.get("msg") or json.dumps(err)),
                type=str(err.get("type") or ""),
                code="" if code is None else str(code),
                param=str(err.get("param") or ""),
                codes=(code,) if isinstance(code, int) else (),
            )
        if isinstance(err, str) and err:
            return ErrorInfo(message=err, type=str(body.get("error_type") or ""))
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            messages = []
            codes: list[int] = []
            for item in errors:
                if isinstance(item, dict):
                    messages.append(str(item.get("message", "")))
                    if isinstance(item.get("code"), int):
                        codes.append(item["code"])
                else:
                    messages.append(str(item))
            return ErrorInfo(
                message="; ".join(m for m in messages if m) or "error",
                code=str(codes[0]) if codes else "",
                codes=tuple(codes),
            )
        if "message" in body:
            code = body.get("code")
            return ErrorInfo(
                message=str(body["message"]),
                type=str(body.get("type") or ""),
                code="" if code is None else str(code),
            )
        if "detail" in body:
            detail = body["detail"]
            return ErrorInfo(message=detail if isinstance(detail, str) else json.dumps(detail))
    return ErrorInfo(message=text.strip() or "no error message")


def _short(message: str) -> str:
    message = " ".join(message.split())
    if len(message) > ERROR_MESSAGE_LIMIT:
        return message[: ERROR_MESSAGE_LIMIT - 1] + "…"
    return message


_QUOTA_RE = re.compile(
    r"insufficient_quota|exceeded your current quota|quota (?:exceeded|exhausted)|"
    r"credit balance is too low|out of credits|exceeded your monthly included credits|"
    r"per 86400s|bymodelbyday|byday\b|daily (?:free )?(?:allocation|limit|quota)|"
    r"tokens per day|requests per day|\(tpd\)|\(rpd\)",
    re.IGNORECASE,
)
_CONTEXT_RE = re.compile(
    r"context_length_exceeded|maximum context length|context window|context length|"
    r"prompt is too long|input is too long|too many (?:input )?tokens|reduce the length|"
    r"exceeds? the (?:model's )?(?:maximum|max) (?:context|input)|string_above_max_length",
    re.IGNORECASE,
)
_MODEL_RE = re.compile(
    r"model_not_found|unknown_model|unknown model|model .{0,80}?(?:not found|does not exist|"
    r"is not supported|not available|decommissioned)|no such model|invalid model",
    re.IGNORECASE,
)
_STRUCTURED_RE = re.compile(
    r"response_format|json_schema|json_object|json schema|\bschema\b|structured|"
    r"input_schema|tool_choice|\btools?\b|guided_json|grammar",
    re.IGNORECASE,
)
# Cloudflare Workers AI: 3036 = account out of its daily allocation (neurons).
CLOUDFLARE_QUOTA_CODES = frozenset({3036})


def is_quota_exhausted(status: int, info: ErrorInfo) -> bool:
    if status == 402:
        return True
    if CLOUDFLARE_QUOTA_CODES.intersection(info.codes):
        return True
    if info.code == "insufficient_quota" or info.type == "insufficient_quota":
        return True
    return bool(_QUOTA_RE.search(info.message))


def classify_http_error(
    *,
    provider: str,
    status: int,
    info: ErrorInfo,
    headers: Mapping[str, str],
    structured_mode: str = MODE_NONE,
    now: Callable[[], float] = time.time,
) -> ProviderError:
    """Map an HTTP error answer to the ProviderError kind the retry rules ask for."""
    retry_after = parse_retry_after(headers, now=now)
    message = _short(info.message)

    def err(kind: Any, code: str, *, cooldown: bool = False) -> ProviderError:
        return ProviderError(
            kind,
            message,
            provider=provider,
            http_status=status,
            retry_after=retry_after,
            code=code,
            cooldown=cooldown,
        )

    # Quota first: OpenAI and Cloudflare send it as a 429 that waiting seconds will not fix.
    if is_quota_exhausted(status, info):
        return err("failover", "quota", cooldown=True)
    if status in (401, 403):
        return err("failover", "auth", cooldown=True)
    if status == 413 or _CONTEXT_RE.search(info.message) or _CONTEXT_RE.search(info.code):
        return err("failover", "context_window")
    if status == 404 or _MODEL_RE.search(info.message) or _MODEL_RE.search(info.code):
        return err("failover", "model_not_found")
    if status == 429:
        return err("transient", "rate_limited")
    if status in (408, 425):
        return err("transient", "timeout")
    if status == 409:
        return err("transient", "conflict")
    if status == 529 or info.type == "overloaded_error":
        return err("transient", "overloaded")
    if status >= 500:
        return err("transient", "server_error")
    if (
        status in (400, 422)
        and structured_mode in NEGOTIABLE_MODES
        and (_STRUCTURED_RE.search(info.message) or _STRUCTURED_RE.search(info.param))
    ):
        return err("fatal", "structured_unsupported")
    return err("fatal", "bad_request")


def schema_instruction(schema: Mapping[str, Any]) -> str:
    return (
        "Respond with a single JSON value that validates against the JSON Schema below. "
        "Output only the JSON: no prose, no Markdown code fences.\n"
        f"JSON Schema:\n{json.dumps(schema, separators=(',', ':'), sort_keys=True)}"
    )


_SCHEMA_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]")


def schema_name(name: str) -> str:
    """OpenAI requires ^[a-zA-Z0-9_-]{1,64}$ for json_schema and tool names."""
    return _SCHEMA_NAME_RE.sub("_", name)[:64] or "result"


def join_system(*parts: str | None) -> str | None:
    text = "\n\n".join(p for p in parts if p)
    return text or None


# --- The adapter base class ---------------------------------------------------------------------


@dataclass(slots=True)
class HttpAnswer:
    status: int
    headers: httpx.Headers
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class Provider:
    """Base adapter. Subclasses set `kind`, `structured_modes` and implement `send()`."""

    kind: ClassVar[str] = ""
    structured_modes: ClassVar[tuple[str, ...]] = (MODE_PROMPT,)
    local: ClassVar[bool] = False
    offline: ClassVar[bool] = False

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        # Injectable so tests can drive the total-timeout deadline without sleeping.
        self.clock: Callable[[], float] = time.monotonic
        self.wall_clock: Callable[[], float] = time.time

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.config.describe()}>"

    def model_for(self, request: LLMRequest) -> str:
        return request.model_for(self.name) or self.config.model

    def modes_for(self, request: LLMRequest) -> tuple[str, ...]:
        if request.json_schema is None:
            return (MODE_NONE,)
        return self.structured_modes

    def send(
        self,
        request: LLMRequest,
        *,
        client: httpx.Client,
        structured_mode: str,
    ) -> ProviderResult:
        raise NotImplementedError

    # -- HTTP ------------------------------------------------------------------------------------

    def timeout(self, cap: float | None = None) -> httpx.Timeout:
        c = self.config

        def capped(seconds: float) -> float:
            return seconds if cap is None else max(0.001, min(seconds, cap))

        return httpx.Timeout(
            connect=capped(c.timeout_connect),
            read=capped(c.timeout_read),
            write=capped(c.timeout_read),
            pool=capped(c.timeout_connect),
        )

    def post_json(
        self,
        client: httpx.Client,
        url: str,
        payload: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> HttpAnswer:
        """POST `payload`, read the whole answer within timeout_total, map transport failures."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        all_headers = {"content-type": "application/json", "accept": "application/json"}
        all_headers.update(headers)
        all_headers.update(self.config.extra_headers)
        start = self.clock()
        total = self.config.timeout_total
        left = call_time_left()  # the routed call's deadline, when it is nearer
        cap = max(0.0, left) if left < total else None
        deadline = start + (total if cap is None else cap)
        try:
            req = client.build_request(
                "POST", url, content=body, headers=all_headers, timeout=self.timeout(cap)
            )
            # Streamed so a server that trickles bytes cannot hold us past timeout_total:
            # httpx's read timeout bounds each gap, the deadline bounds the whole answer.
            response = client.send(req, stream=True)
            try:
                chunks: list[bytes] = []
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if self.clock() > deadline:
                        raise self._timeout_error("total timeout", start, cap)
                if self.clock() > deadline:
                    raise self._timeout_error("total timeout", start, cap)
            finally:
                response.close()
        except httpx.TimeoutException as exc:
            raise self._timeout_error(type(exc).__name__, start, cap) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            # A broken base URL will not heal by retrying; let the next provider answer.
            raise ProviderError(
                "failover",
                f"bad base URL {self.config.base_url!r}: {exc}",
                provider=self.name,
                code="config",
                cooldown=True,
            ) from exc
        except httpx.DecodingError as exc:
            raise ProviderError(
                "transient",
                f"undecodable response body: {exc}",
                provider=self.name,
                code="malformed_response",
            ) from exc
        except (httpx.TransportError, OSError) as exc:
            raise ProviderError(
                "transient",
                f"connection error ({type(exc).__name__}): {exc}"
                if str(exc)
                else f"connection error ({type(exc).__name__})",
                provider=self.name,
                code="connection",
            ) from exc
        return HttpAnswer(response.status_code, response.headers, b"".join(chunks))

    def _timeout_error(self, what: str, start: float, cap: float | None = None) -> ProviderError:
        elapsed = self.clock() - start
        if cap is not None:
            # Cut short by the routed call's deadline, not the provider's own timeouts: not a
            # sign of the provider's health (the router does not count it against it).
            return ProviderError(
                "transient",
                f"timed out after {elapsed:.1f}s ({what}): the call's deadline left {cap:.1f}s",
                provider=self.name,
                code="deadline",
            )
        return ProviderError(
            "transient",
            f"timed out after {elapsed:.1f}s ({what}; connect {self.config.timeout_connect}s, "
            f"read {self.config.timeout_read}s, total {self.config.timeout_total}s)",
            provider=self.name,
            code="timeout",
        )

    def decode(self, answer: HttpAnswer, *, structured_mode: str) -> Any:
        """The JSON body of a 2xx answer; raise the classified error for anything else."""
        try:
            body = answer.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not 200 <= answer.status < 300:
            text = answer.content[:2000].decode("utf-8", "replace")
            raise classify_http_error(
                provider=self.name,
                status=answer.status,
                info=error_info(body, text),
                headers=answer.headers,
                structured_mode=structured_mode,
                now=self.wall_clock,
            )
        if not isinstance(body, dict):
            raise self.malformed("response body is not a JSON object", answer)
        return body

    def malformed(self, what: str, answer: HttpAnswer | None = None) -> ProviderError:
        snippet = ""
        if answer is not None:
            snippet = ": " + _short(answer.content[:200].decode("utf-8", "replace"))
        return ProviderError(
            "transient",
            f"malformed response ({what}){snippet}",
            provider=self.name,
            http_status=answer.status if answer is not None else None,
            code="malformed_response",
        )

    def refusal(self, message: str, *, http_status: int | None = 200) -> ProviderError:
        return ProviderError(
            "fatal",
            f"the model refused: {_short(message)}",
            provider=self.name,
            http_status=http_status,
            code="refusal",
        )


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
