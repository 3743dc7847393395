"""Plain data types shared by the LLM gateway: requests, responses, attempts and errors.

No Django here: the router and the providers are tested and benchmarked without a database.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
AttemptStatus = Literal["ok", "retry", "failover", "fatal"]
ErrorKind = Literal["transient", "failover", "fatal"]

ERROR_KINDS: frozenset[str] = frozenset({"transient", "failover", "fatal"})


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content}


@dataclass(slots=True)
class LLMRequest:
    messages: list[Message]
    system: str | None = None
    # "gpt-4o" asks every provider for that model (a 404 fails over to the next one);
    # "openai:gpt-4o" pins it to the provider named "openai" and leaves the others on their defaults.
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    json_schema: dict[str, Any] | None = None
    schema_name: str = "result"
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_prompt(cls, prompt: str, **kwargs: Any) -> LLMRequest:
        return cls(messages=[Message("user", prompt)], **kwargs)

    def model_for(self, provider_name: str) -> str | None:
        """The model this request asks of `provider_name`, or None for the provider's default."""
        if not self.model:
            return None
        prefix, sep, rest = self.model.partition(":")
        if sep and rest and "/" not in prefix:
            return rest if prefix == provider_name else None
        return self.model

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": [m.to_dict() for m in self.messages],
            "system": self.system,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "json_schema": self.json_schema,
            "schema_name": self.schema_name,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True, slots=True)
class Usage:
    # input_tokens counts every prompt token, cached ones included; cached_tokens is the part
    # served from the provider's prompt cache (billed at the cached-input price).
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class Attempt:
    provider: str
    model: str
    status: AttemptStatus
    http_status: int | None = None
    error: str | None = None
    latency_ms: float = 0.0
    retry_after: float | None = None
    error_code: str | None = None
    structured_mode: str | None = None
    repair: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class LLMResponse:
    text: str
    parsed: Any | None
    provider: str
    model: str
    usage: Usage
    cost_usd: float
    latency_ms: float
    attempts: list[Attempt]
    structured_mode: str
    offline: bool = False
    finish_reason: str | None = None
    # False when the price table does not know the model: cost_usd is then 0, not "free".
    cost_known: bool = True
    # The provider's decoded response body, for storage and debugging; never logged.
    raw: Any | None = field(default=None, repr=False)

    def to_dict(self, *, include_raw: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "text": self.text,
            "parsed": self.parsed,
            "provider": self.provider,
            "model": self.model,
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "cost_known": self.cost_known,
            "latency_ms": self.latency_ms,
            "attempts": [a.to_dict() for a in self.attempts],
            "structured_mode": self.structured_mode,
            "offline": self.offline,
            "finish_reason": self.finish_reason,
        }
        if include_raw:
            data["raw"] = self.raw
        return data


# --- Errors -------------------------------------------------------------------------------------


class LLMError(Exception):
    """Base of every gateway error. `attempts` is the chain tried before giving up."""

    def __init__(self, message: str, *, attempts: list[Attempt] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.attempts: list[Attempt] = list(attempts or [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "message": self.message,
            "attempts": [a.to_dict() for a in self.attempts],
        }


class ProviderError(LLMError):
    """One provider call failed; `kind` tells the router what to do next.

    - transient: retry the same provider shortly (honouring retry_after), then fail over;
    - failover: go to the next provider at once (cooldown=True also benches this provider);
    - fatal: the request itself is wrong; stop.
    `code` is a stable machine word for metrics and messages (auth, quota, rate_limited, ...).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        provider: str,
        http_status: int | None = None,
        retry_after: float | None = None,
        code: str = "error",
        cooldown: bool = False,
    ) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}")
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.provider = provider
        self.http_status = http_status
        self.retry_after = retry_after
        self.code = code
        self.cooldown = cooldown

    def __str__(self) -> str:
        status = f" HTTP {self.http_status}" if self.http_status else ""
        return f"{self.provider}{status} ({self.kind}, {self.code}): {self.message}"

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update(
            kind=self.kind,
            provider=self.provider,
            http_status=self.http_status,
            retry_after=self.retry_after,
            code=self.code,
        )
        return data


class AllProvidersTransientError(LLMError):
    """Every provider failed with a transient error: retry the job later with backoff.

    `retry_after` is the shortest wait any provider asked for (None when none did).
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: list[Attempt] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.retry_after = retry_after


class AllProvidersFailedError(LLMError):
    """Every provider failed and at least one failure will not go away by waiting."""


class StructuredOutputError(LLMError):
    """The answer did not validate against the schema, even after one repair attempt."""

    def __init__(
        self,
        message: str,
        *,
        attempts: list[Attempt] | None = None,
        errors: list[str] | None = None,
        response: LLMResponse | None = None,
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.errors = list(errors or [])
        # The last (invalid) answer with its usage and cost, so the caller can store and bill it.
        self.response = response

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["errors"] = self.errors
        return data
