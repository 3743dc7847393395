"""The router: providers in order, the only retry layer, cooldowns, structured-output negotiation.

For each provider in order (skipping ones cooling down):
- transient errors (429, 5xx, 529, timeouts, connection errors, garbled bodies) are retried on the
  same provider up to `max_quick_retries` times, waiting what the server asked (`retry-after-ms`,
  `retry-after`) or a short jittered backoff; a requested wait over `retry_after_cap` is not
  waited for: the provider is cooled down for that long and the next one is tried;
- failover errors (401/403, 404 model, quota, context window) go to the next provider at once;
  auth and quota also cool the provider down, shared across processes through `cooldown_store`
  (Django's cache in production); `failure_threshold` consecutive transient give-ups do too;
- fatal errors (other 400/422, refusals) raise at once: another provider would not fix them.
When every provider failed, AllProvidersTransientError says "retry the job later" (see
`backoff_delay`) and AllProvidersFailedError says "waiting will not help".

With a JSON schema the router asks each provider for its strongest structured-output mode,
steps down when a server rejects a mode with a 400 (and remembers that per provider and model),
validates the answer, and makes one repair attempt before raising StructuredOutputError.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any, Literal, Protocol

import httpx

from llmcore import pricing
from llmcore.cache import ResponseCache
from llmcore.providers.base import (
    MIN_CALL_SECONDS,
    Provider,
    ProviderResult,
    call_budget,
    call_time_left,
    make_client,
)
from llmcore.types import (
    AllProvidersFailedError,
    AllProvidersTransientError,
    Attempt,
    LLMRequest,
    LLMResponse,
    Message,
    ProviderError,
    StructuredOutputError,
)

logger = logging.getLogger(__name__)

Validator = Callable[[str, dict[str, Any]], tuple[Any, list[str]]]
Repair = Callable[[LLMRequest, str, list[str]], LLMRequest]

HEALTH_KEY = "llmcore:provider-health:{name}"
# Cooldown reasons that expire on their own within a job's retry window.
TRANSIENT_REASONS = frozenset({"rate_limited", "failures"})

# (provider name, model) -> index of the structured mode that last worked. Per process: a new
# process relearns with one rejected request per model, which is cheaper than a shared read.
_MODE_MEMORY: dict[tuple[str, str], int] = {}


class CooldownStore(Protocol):
    """The part of Django's cache API the router uses (django.core.cache.cache fits)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any, timeout: Any = ...) -> Any: ...


class MemoryCooldownStore:
    """A per-process stand-in for the Django cache (tests, benchmarks, scripts)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, tuple[Any, float | None]] = {}

    def get(self, key: str, default: Any = None) -> Any:
        item = self._data.get(key)
        if item is None:
            return default
        value, expires = item
        if expires is not None and self._clock() >= expires:
            del self._data[key]
            return default
        return value

    def set(self, key: str, value: Any, timeout: Any = None) -> None:
        expires = None if timeout is None else self._clock() + float(timeout)
        self._data[key] = (value, expires)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)


def backoff_delay(
    attempt: int,
    *,
    base: float = 5.0,
    factor: float = 2.0,
    cap: float = 300.0,
    jitter: Callable[[], float] = random.random,
    strategy: Literal["equal", "full"] = "equal",
) -> float:
    """Seconds to wait before retry number `attempt` (1 for the first retry).

    Exponential (`base * factor**(attempt-1)`, capped at `cap`) with jitter so jobs that failed
    together do not retry together. "equal" jitter waits between half and all of that (never
    near zero, which matters when a provider is down); "full" waits between zero and all of it.
    """
    if attempt < 1:
        raise ValueError("attempt counts retries from 1")
    exp = min(cap, base * factor ** min(attempt - 1, 64))
    if strategy == "full":
        return jitter() * exp
    if strategy == "equal":
        return exp / 2 + jitter() * exp / 2
    raise ValueError(f"unknown jitter strategy {strategy!r}")


# --- Validation and repair defaults -------------------------------------------------------------

_FENCE_RE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def basic_validate(text: str, schema: dict[str, Any]) -> tuple[Any, list[str]]:
    """JSON parse (tolerating a Markdown fence) + jsonschema; used when no validator is given."""
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    match = _FENCE_RE.match(text)
    candidate = match.group(1) if match else text
    try:
        value = json.loads(candidate)
    except ValueError as exc:
        return None, [f"not valid JSON: {exc}"]
    cls = validator_for(schema, default=Draft202012Validator)
    errors = [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in cls(schema).iter_errors(value)
    ]
    return (None, errors) if errors else (value, [])


def default_validator() -> Validator:
    try:
        from llmcore.structured import validate_json
    except ImportError:
        return basic_validate
    return validate_json


def repair_request(request: LLMRequest, text: str, errors: list[str]) -> LLMRequest:
    """The same conversation, plus the invalid answer and what is wrong with it."""
    listed = "\n".join(f"- {e}" for e in errors[:20])
    note = (
        "Your previous answer does not validate against the required JSON Schema:\n"
        f"{listed}\n"
        "Reply again with only the corrected JSON value, no prose and no code fences."
    )
    return dataclasses.replace(
        request,
        messages=[*request.messages, Message("assistant", text), Message("user", note)],
    )


class _GaveUp(Exception):
    """A provider is done for this request; the router moves on to the next one."""

    def __init__(self, error: ProviderError, *, transient: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.transient = transient


class Router:
    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        cooldown_store: CooldownStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_quick_retries: int = 2,
        retry_after_cap: float = 60.0,
        validator: Validator | None = None,
        repair: Repair | None = None,
        client: httpx.Client | None = None,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        quick_retry_base: float = 0.5,
        quick_retry_max: float = 8.0,
        failure_threshold: int = 3,
        failure_window: float = 300.0,
        failure_cooldown: float = 60.0,
        auth_cooldown: float = 900.0,
        quota_cooldown: float = 3600.0,
        max_cooldown: float = 86400.0,
        price_overrides: dict[str, Any] | None = None,
        mode_memory: MutableMapping[tuple[str, str], int] | None = None,
        response_cache: ResponseCache | None = None,
        deadline: float | None = None,
    ) -> None:
        self.providers = list(providers)
        self.store: CooldownStore = cooldown_store or MemoryCooldownStore(clock)
        self.clock = clock
        self.sleep = sleep
        self.max_quick_retries = max_quick_retries
        self.retry_after_cap = retry_after_cap
        self.validator: Validator = validator or default_validator()
        self.repair: Repair = repair or repair_request
        self._client = client
        self._client_lock = threading.Lock()
        self.wall_clock = wall_clock
        self.jitter = jitter
        self.quick_retry_base = quick_retry_base
        self.quick_retry_max = quick_retry_max
        self.failure_threshold = failure_threshold
        self.failure_window = failure_window
        self.failure_cooldown = failure_cooldown
        self.auth_cooldown = auth_cooldown
        self.quota_cooldown = quota_cooldown
        self.max_cooldown = max_cooldown
        self.price_overrides = price_overrides
        self.mode_memory = _MODE_MEMORY if mode_memory is None else mode_memory
        self.response_cache = response_cache
        # Seconds one complete() may take over every provider, retry and wait (None: no limit).
        self.deadline = deadline
        # No request is started with less time than this left; a short deadline scales it down
        # so that the first request always goes out.
        self.min_call_seconds = (
            MIN_CALL_SECONDS if deadline is None else min(MIN_CALL_SECONDS, deadline / 4)
        )

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            # One process-wide router may serve several threads; build the pool only once.
            with self._client_lock:
                if self._client is None:
                    self._client = make_client()
        return self._client

    # -- public ----------------------------------------------------------------------------------

    def complete(self, request: LLMRequest) -> LLMResponse:
        start = self.clock()
        if self.deadline is None:
            return self._complete(request, start)
        stop_at = start + self.deadline
        # Every provider request made for this call ends by the deadline (providers/base.py).
        with call_budget(lambda: stop_at - self.clock()):
            return self._complete(request, start)

    def _complete(self, request: LLMRequest, start: float) -> LLMResponse:
        attempts: list[Attempt] = []
        if not self.providers:
            raise AllProvidersFailedError("no LLM providers are configured", attempts=attempts)
        all_transient = True
        out_of_time = False
        retry_hint: float | None = None
        for provider in self.providers:
            model = provider.model_for(request)
            health = self._health(provider)
            cooling = self._cooling_for(health)
            if cooling is not None:
                reason, remaining = cooling
                attempts.append(
                    Attempt(
                        provider.name,
                        model,
                        "failover",
                        error=f"skipped: cooling down ({reason}) for another {remaining:.0f}s",
                        error_code="cooldown",
                        retry_after=remaining,
                    )
                )
                if reason in TRANSIENT_REASONS:
                    retry_hint = _min(retry_hint, remaining)
                else:
                    all_transient = False
                continue
            cached = self._cached(provider, model, request, start, attempts)
            if cached is not None:
                return cached
            if call_time_left() < self.min_call_seconds and not provider.offline:
                # Out of time: the job is retried later (a transient outcome, even after a
                # permanent failure elsewhere: this provider was never asked), not killed by the
                # cluster mid-call. The offline provider takes no time, so it still answers.
                attempts.append(
                    Attempt(
                        provider.name,
                        model,
                        "failover",
                        error=f"skipped: no time left before the call's {self.deadline:.0f}s "
                        "deadline",
                        error_code="deadline",
                    )
                )
                out_of_time = True
                continue
            try:
                result, attempt = self._call(provider, request, model, attempts)
            except _GaveUp as gave:
                if gave.error.code == "deadline":
                    out_of_time = True  # cut by our deadline: not the provider's fault
                else:
                    self._record_failure(provider, gave, health)
                if gave.transient:
                    retry_hint = _min(retry_hint, gave.error.retry_after)
                else:
                    all_transient = False
                continue
            if health and health.get("failures"):
                self._clear_health(provider)
            return self._finish(provider, request, model, result, attempt, attempts, start)

        summary = "; ".join(
            f"{a.provider}: {a.error}" for a in attempts if a.status in ("failover", "fatal")
        )
        if all_transient or out_of_time:
            raise AllProvidersTransientError(
                f"every provider failed transiently ({summary})",
                attempts=attempts,
                retry_after=retry_hint,
            )
        raise AllProvidersFailedError(f"every provider failed ({summary})", attempts=attempts)

    def cooldowns(self) -> dict[str, dict[str, Any]]:
        """Provider name → its current health record, for `llm_check` and the metrics page."""
        return {p.name: self._health(p) or {} for p in self.providers}

    # -- one provider ----------------------------------------------------------------------------

    def _call(
        self,
        provider: Provider,
        request: LLMRequest,
        model: str,
        attempts: list[Attempt],
        *,
        repair: bool = False,
    ) -> tuple[ProviderResult, Attempt]:
        modes = provider.modes_for(request)
        memory_key = (provider.name, model)
        index = min(self.mode_memory.get(memory_key, 0), len(modes) - 1)
        retries = 0
        while True:
            mode = modes[index]
            t0 = self.clock()
            try:
                result = provider.send(request, client=self.client, structured_mode=mode)
            except ProviderError as exc:
                elapsed = (self.clock() - t0) * 1000
                if exc.code == "structured_unsupported" and index + 1 < len(modes):
                    if call_time_left() < self.min_call_seconds:
                        # A weaker mode would work, but not in time: retry the job later.
                        attempts.append(
                            self._attempt(provider, model, "failover", exc, elapsed, mode)
                        )
                        raise _GaveUp(
                            ProviderError(
                                "transient",
                                "no time left before the call's deadline for a weaker "
                                "structured-output mode",
                                provider=provider.name,
                                code="deadline",
                            ),
                            transient=True,
                        ) from exc
                    attempts.append(self._attempt(provider, model, "retry", exc, elapsed, mode))
                    index += 1
                    self.mode_memory[memory_key] = index
                    logger.info(
                        "provider rejected a structured-output mode; trying a weaker one",
                        extra={"provider": provider.name, "model": model, "mode": mode},
                    )
                    continue
                if exc.kind == "transient":
                    wait = exc.retry_after
                    over_cap = wait is not None and wait > self.retry_after_cap
                    if wait is None:
                        wait = backoff_delay(
                            retries + 1,
                            base=self.quick_retry_base,
                            cap=self.quick_retry_max,
                            jitter=self.jitter,
                        )
                    # A retry that could not start before the call's deadline is not waited for.
                    in_time = wait + self.min_call_seconds <= call_time_left()
                    if retries < self.max_quick_retries and not over_cap and in_time:
                        attempts.append(
                            self._attempt(provider, model, "retry", exc, elapsed, mode, repair)
                        )
                        logger.warning(
                            "LLM call failed transiently; retrying",
                            extra=self._log_extra(provider, model, exc, wait=wait),
                        )
                        self.sleep(wait)
                        retries += 1
                        continue
                    attempts.append(
                        self._attempt(provider, model, "failover", exc, elapsed, mode, repair)
                    )
                    logger.warning(
                        "LLM provider gave up transiently; failing over",
                        extra=self._log_extra(provider, model, exc),
                    )
                    raise _GaveUp(exc, transient=True) from exc
                if exc.kind == "failover":
                    attempts.append(
                        self._attempt(provider, model, "failover", exc, elapsed, mode, repair)
                    )
                    logger.warning(
                        "LLM provider failed; failing over",
                        extra=self._log_extra(provider, model, exc),
                    )
                    raise _GaveUp(exc, transient=False) from exc
                attempts.append(self._attempt(provider, model, "fatal", exc, elapsed, mode, repair))
                logger.warning(
                    "LLM request failed fatally", extra=self._log_extra(provider, model, exc)
                )
                exc.attempts = list(attempts)
                raise
            except Exception as exc:
                # A bug in one adapter must not stop the chain (the offline provider is last).
                logger.exception("LLM provider adapter crashed", extra={"provider": provider.name})
                error = ProviderError(
                    "failover",
                    f"adapter error {type(exc).__name__}: {exc}",
                    provider=provider.name,
                    code="internal_error",
                )
                attempts.append(
                    self._attempt(
                        provider, model, "failover", error, (self.clock() - t0) * 1000, mode
                    )
                )
                raise _GaveUp(error, transient=False) from exc
            attempt = Attempt(
                provider.name,
                result.model,
                "ok",
                http_status=None if provider.offline else 200,
                latency_ms=(self.clock() - t0) * 1000,
                structured_mode=result.structured_mode,
                repair=repair,
            )
            attempts.append(attempt)
            return result, attempt

    def _finish(
        self,
        provider: Provider,
        request: LLMRequest,
        model: str,
        result: ProviderResult,
        attempt: Attempt,
        attempts: list[Attempt],
        start: float,
    ) -> LLMResponse:
        schema = request.json_schema
        parsed: Any = None
        usage = result.usage
        if schema is not None:
            parsed, errors = self.validator(result.text, schema)
            if errors:
                attempt.status = "retry"
                attempt.error = "answer does not match the schema: " + "; ".join(errors[:5])
                attempt.error_code = "schema_invalid"
                logger.warning(
                    "LLM answer does not match the schema; one repair attempt",
                    extra={"provider": provider.name, "model": result.model, "errors": errors[:5]},
                )
                if call_time_left() < self.min_call_seconds:
                    # No time for the repair call: the job is retried later, not failed.
                    raise AllProvidersTransientError(
                        "the answer did not match the schema and no time is left before the "
                        f"call's {self.deadline:.0f}s deadline for a repair call",
                        attempts=attempts,
                    )
                first = self._response(provider, model, result, None, usage, attempts, start)
                fixed_request = self.repair(request, result.text, errors)
                try:
                    result, attempt = self._call(
                        provider, fixed_request, model, attempts, repair=True
                    )
                except (_GaveUp, ProviderError) as exc:
                    error = exc.error if isinstance(exc, _GaveUp) else exc
                    raise StructuredOutputError(
                        f"the answer did not match the schema and the repair call failed: {error}",
                        attempts=attempts,
                        errors=errors,
                        response=first,
                    ) from exc
                usage = usage + result.usage
                parsed, errors = self.validator(result.text, schema)
                if errors:
                    attempt.status = "fatal"
                    attempt.error = "repaired answer still does not match the schema: " + (
                        "; ".join(errors[:5])
                    )
                    attempt.error_code = "schema_invalid"
                    raise StructuredOutputError(
                        "the answer did not match the schema, even after one repair attempt: "
                        + "; ".join(errors[:5]),
                        attempts=attempts,
                        errors=errors,
                        response=self._response(
                            provider, model, result, None, usage, attempts, start
                        ),
                    )
        response = self._response(provider, model, result, parsed, usage, attempts, start)
        if self.response_cache is not None:
            self.response_cache.store(provider.name, model, request, response)
        return response

    def _response(
        self,
        provider: Provider,
        model: str,
        result: ProviderResult,
        parsed: Any,
        usage: Any,
        attempts: list[Attempt],
        start: float,
    ) -> LLMResponse:
        kind = provider.config.kind
        priced_model = result.model
        if not pricing.is_priced(kind, priced_model, self.price_overrides):
            priced_model = model
        return LLMResponse(
            text=result.text,
            parsed=parsed,
            provider=provider.name,
            model=result.model,
            usage=usage,
            cost_usd=pricing.cost_usd(kind, priced_model, usage, self.price_overrides),
            latency_ms=(self.clock() - start) * 1000,
            attempts=list(attempts),
            structured_mode=result.structured_mode,
            offline=result.offline,
            finish_reason=result.finish_reason,
            cost_known=pricing.is_priced(kind, priced_model, self.price_overrides),
            raw=result.raw,
        )

    def _cached(
        self,
        provider: Provider,
        model: str,
        request: LLMRequest,
        start: float,
        attempts: list[Attempt],
    ) -> LLMResponse | None:
        if self.response_cache is None:
            return None
        hit = self.response_cache.lookup(provider.name, model, request)
        if hit is None:
            return None
        attempts.append(
            Attempt(provider.name, hit.model, "ok", error_code="cache_hit", latency_ms=0.0)
        )
        return dataclasses.replace(
            hit, attempts=list(attempts), latency_ms=(self.clock() - start) * 1000, cost_usd=0.0
        )

    # -- health and cooldowns --------------------------------------------------------------------

    @staticmethod
    def _key(provider: Provider) -> str:
        return HEALTH_KEY.format(name=provider.name)

    def _health(self, provider: Provider) -> dict[str, Any] | None:
        value = self.store.get(self._key(provider))
        return value if isinstance(value, dict) else None

    def _clear_health(self, provider: Provider) -> None:
        delete = getattr(self.store, "delete", None)
        if callable(delete):
            delete(self._key(provider))
        else:
            self.store.set(self._key(provider), None, 1)

    def _cooling_for(self, health: dict[str, Any] | None) -> tuple[str, float] | None:
        if not health or not health.get("until"):
            return None
        remaining = float(health["until"]) - self.wall_clock()
        if remaining <= 0:
            return None
        return str(health.get("reason") or "cooldown"), remaining

    def _cool_down(self, provider: Provider, reason: str, seconds: float, message: str) -> None:
        seconds = max(1.0, min(seconds, self.max_cooldown))
        record = {
            "failures": 0,
            "until": self.wall_clock() + seconds,
            "reason": reason,
            "message": message[:300],
        }
        self.store.set(self._key(provider), record, math.ceil(seconds))
        logger.warning(
            "LLM provider cooling down",
            extra={"provider": provider.name, "reason": reason, "seconds": round(seconds)},
        )

    def _record_failure(
        self, provider: Provider, gave: _GaveUp, health: dict[str, Any] | None
    ) -> None:
        exc = gave.error
        if exc.cooldown:
            if exc.code == "quota":
                seconds = exc.retry_after if exc.retry_after else self.quota_cooldown
            else:
                seconds = self.auth_cooldown
            self._cool_down(provider, exc.code, seconds, exc.message)
            return
        if not gave.transient:
            return  # 404 model, context window: about this request, not the provider's health
        if exc.retry_after is not None and exc.retry_after > self.retry_after_cap:
            self._cool_down(provider, "rate_limited", exc.retry_after, exc.message)
            return
        failures = int((health or {}).get("failures") or 0) + 1
        if failures >= self.failure_threshold:
            self._cool_down(
                provider,
                "failures",
                self.failure_cooldown,
                f"{failures} consecutive failures; last: {exc.message}",
            )
            return
        record = {"failures": failures, "until": None, "reason": None, "message": exc.message}
        self.store.set(self._key(provider), record, math.ceil(self.failure_window))

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _attempt(
        provider: Provider,
        model: str,
        status: Any,
        exc: ProviderError,
        latency_ms: float,
        mode: str,
        repair: bool = False,
    ) -> Attempt:
        return Attempt(
            provider.name,
            model,
            status,
            http_status=exc.http_status,
            error=exc.message,
            latency_ms=latency_ms,
            retry_after=exc.retry_after,
            error_code=exc.code,
            structured_mode=mode,
            repair=repair,
        )

    @staticmethod
    def _log_extra(
        provider: Provider, model: str, exc: ProviderError, *, wait: float | None = None
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "provider": provider.name,
            "model": model,
            "http_status": exc.http_status,
            "error_code": exc.code,
            "error": exc.message,
        }
        if wait is not None:
            extra["wait_s"] = round(wait, 3)
        return extra


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
