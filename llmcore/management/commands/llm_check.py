"""Check the LLM providers: `manage.py llm_check [--provider NAME ...] [--timeout S] [--json]`.

Sends one small request through each configured provider (LLM_PROVIDERS and friends, read the
same way the workers read them) and prints, per provider: ok or FAILED, the model, the latency,
and what went wrong in plain words with the provider's own message. Exits 1 when any provider
failed, 2 when the configuration itself is wrong (unknown provider, missing key).

Each provider is called on its own, through a Router holding only that provider, so the retry
rules of the real gateway apply (quick retries on 429/5xx/timeouts, honouring retry-after) but
no fallback can hide a broken provider. Cooldowns are kept in memory for the check: a provider
the workers are currently skipping is still tried, and the shared cooldown is reported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser

from llmcore import config
from llmcore.providers import SPECS, make_provider
from llmcore.providers.base import Provider, ProviderConfig, make_client
from llmcore.redaction import redact
from llmcore.router import HEALTH_KEY, MemoryCooldownStore, Router
from llmcore.types import Attempt, LLMError, LLMRequest, ProviderError

# Hooks for tests and scripts: the HTTP client every check uses (tests pass one over a mocked
# transport) and how the router waits between quick retries.
client_factory: Callable[[], httpx.Client] = make_client
sleep: Callable[[float], None] = time.sleep

PROMPT = "This is a connectivity check. Reply with the single word: OK"
MAX_TOKENS = 20
MESSAGE_LIMIT = 300


@dataclass
class CheckResult:
    provider: str
    ok: bool
    model: str
    latency_ms: float
    error: str = ""
    answer: str = ""
    offline: bool = False
    note: str = ""


def _short(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join(redact(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _last_failure(exc: LLMError) -> tuple[str, int | None, float | None, str]:
    """(code, HTTP status, retry-after, provider message) of what finally went wrong."""
    if isinstance(exc, ProviderError):
        return exc.code, exc.http_status, exc.retry_after, exc.message
    failed: list[Attempt] = [a for a in exc.attempts if a.status != "ok"]
    if failed:
        last = failed[-1]
        return last.error_code or "error", last.http_status, last.retry_after, last.error or ""
    return "error", None, None, exc.message


def explain(exc: LLMError, provider: Provider) -> str:
    """What went wrong, in words an operator can act on, then the provider's own message."""
    code, status, retry_after, message = _last_failure(exc)
    cfg = provider.config
    spec = SPECS.get(cfg.kind)
    key_env = spec.key_envs[0] if spec and spec.key_envs else "its API key"
    prefix = config.env_prefix(cfg.kind)
    http = f"HTTP {status}" if status else ""
    words = {
        "auth": f"the API key was refused ({http or 'auth error'}); check {key_env}",
        "quota": "the account is out of quota or credits; check billing or the plan's limits",
        "model_not_found": (
            f"the model {cfg.model!r} does not exist or this key may not use it; set {prefix}_MODEL"
        ),
        "context_window": "the request is too long for the model",
        "rate_limited": "rate limited: too many requests right now"
        + (f" (asked to wait {retry_after:g} s)" if retry_after else ""),
        "timeout": "no answer in time (raise LLM_TIMEOUT, or is the server up?)",
        "connection": f"could not connect to {cfg.base_url or 'the provider'}",
        "server_error": f"the provider had a server error ({http or '5xx'})",
        "overloaded": "the provider is overloaded; try again later",
        "conflict": "the provider answered 409 conflict; try again",
        "malformed_response": (
            "the answer was not what this API sends; is "
            f"{cfg.base_url or prefix + '_BASE_URL'} an OpenAI/Anthropic-style endpoint?"
        ),
        "bad_request": f"the provider rejected the request ({http or 'bad request'})",
        "structured_unsupported": "the provider rejected the request format",
        "refusal": "the model refused to answer",
        "config": f"the base URL is not usable; check {prefix}_BASE_URL",
        "internal_error": "the provider adapter crashed (a bug in Grimoire)",
    }.get(code, f"failed ({code})")
    detail = _short(message)
    return f"{words}: {detail}" if detail else words


def _shared_cooldown_active(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and bool(record.get("until"))
        and float(record["until"]) > time.time()
    )


def _shared_cooldown(name: str) -> str:
    """What the workers know about the provider: a cooldown they share through the cache."""
    try:
        from django.core.cache import cache

        record = cache.get(HEALTH_KEY.format(name=name))
    except Exception:  # no cache table yet (not migrated): nothing shared to report
        return ""
    if not _shared_cooldown_active(record):
        return ""
    remaining = float(record["until"]) - time.time()
    reason = record.get("reason") or "cooldown"
    return f"workers skip this provider for another {remaining:.0f} s ({reason})"


def _end_shared_cooldown(name: str) -> str:
    """Forget the provider's shared health record (cooldown and failure count). Returns the
    reason the workers were skipping it ("" when they were not, or there is no cache yet)."""
    try:
        from django.core.cache import cache

        key = HEALTH_KEY.format(name=name)
        record = cache.get(key)
        cache.delete(key)
    except Exception:  # no cache table yet (not migrated): nothing shared to end
        return ""
    if not _shared_cooldown_active(record):
        return ""
    return str(record.get("reason") or "cooldown")


def check_provider(
    provider: Provider, *, client: httpx.Client, retries: bool = True
) -> CheckResult:
    options: dict[str, Any] = {
        "cooldown_store": MemoryCooldownStore(),
        "client": client,
        "sleep": sleep,
    }
    if not retries:
        options["max_quick_retries"] = 0
    router = Router([provider], **options)
    request = LLMRequest.from_prompt(PROMPT, max_tokens=MAX_TOKENS)
    start = time.monotonic()
    try:
        response = router.complete(request)
    except LLMError as exc:
        return CheckResult(
            provider=provider.name,
            ok=False,
            model=provider.model_for(request),
            latency_ms=(time.monotonic() - start) * 1000,
            error=explain(exc, provider),
        )
    return CheckResult(
        provider=provider.name,
        ok=True,
        model=response.model,
        latency_ms=response.latency_ms,
        answer=_short(response.text, 60),
        offline=response.offline,
    )


def _select(
    env: Mapping[str, str], wanted: list[str] | None, timeout: float | None
) -> list[ProviderConfig]:
    """The configs to check: the configured chain, or the named providers (configured or not)."""
    try:
        configured = config.providers_from_env(env)
    except ValueError as exc:
        if not wanted:
            raise CommandError(f"LLM provider configuration: {exc}", returncode=2) from None
        configured = []
    if wanted:
        by_name = {c.name: c for c in configured}
        chosen = []
        for raw in wanted:
            try:
                kind = config.normalize_name(raw)
            except ValueError as exc:
                raise CommandError(str(exc), returncode=2) from None
            if kind in by_name:
                chosen.append(by_name[kind])
                continue
            try:
                chosen.append(config.provider_config(kind, env))
            except ValueError as exc:
                raise CommandError(f"cannot check {kind!r}: {exc}", returncode=2) from None
        configured = chosen
    if timeout is not None:
        for cfg in configured:
            cfg.timeout_total = timeout
            cfg.timeout_read = min(cfg.timeout_read, timeout)
            cfg.timeout_connect = min(cfg.timeout_connect, timeout)
    return configured


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


class Command(BaseCommand):
    help = "Send one small request through each configured LLM provider and report how it went."
    # A broken provider configuration is what this command is for: report it in its own words
    # instead of stopping at the system check.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--provider",
            action="append",
            metavar="NAME",
            help="Check only this provider (repeatable); it need not be in LLM_PROVIDERS.",
        )
        parser.add_argument(
            "--timeout", type=float, help="Total seconds per call (default: the configured one)."
        )
        parser.add_argument(
            "--no-retry", action="store_true", help="One request per provider, no quick retries."
        )
        parser.add_argument(
            "--reset-cooldowns",
            action="store_true",
            help="End the shared cooldown of each provider that answers (after rotating a key), "
            "so the workers use it again at once; a provider that still fails keeps its cooldown.",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object per line.")

    def handle(self, *args: Any, **options: Any) -> None:
        timeout = options.get("timeout")
        if timeout is not None and timeout <= 0:
            raise CommandError("--timeout must be greater than zero", returncode=2)
        configs = _select(os.environ, options.get("provider"), timeout)
        results = []
        client = client_factory()
        with contextlib.ExitStack() as stack:
            if options["verbosity"] < 2:
                # The router's retry/failover warnings repeat what the report says; -v 2 shows them.
                stack.enter_context(_quiet("llmcore.router"))
            stack.callback(client.close)
            for cfg in configs:
                result = check_provider(
                    make_provider(cfg), client=client, retries=not options["no_retry"]
                )
                result.note = _shared_cooldown(cfg.name)
                # Only a provider that just answered is trusted again, whatever its cooldown's
                # reason (the note names it): a key still refused would otherwise be tried, and
                # refused, by every worker until it cooled down anew.
                if options["reset_cooldowns"] and result.ok:
                    ended = _end_shared_cooldown(cfg.name)
                    if ended:
                        result.note = (
                            f"shared cooldown ({ended}) ended: the workers use this provider again"
                        )
                results.append(result)
                self._print(result, as_json=options["json"])
        failed = [r.provider for r in results if not r.ok]
        if not options["json"]:
            self.stdout.write(
                f"{len(results) - len(failed)} of {len(results)} provider(s) answered."
            )
        if failed:
            raise CommandError(
                f"{len(failed)} provider(s) failed: {', '.join(failed)}", returncode=1
            )

    def _print(self, result: CheckResult, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(asdict(result)))
            return
        status = self.style.SUCCESS("ok    ") if result.ok else self.style.ERROR("FAILED")
        line = f"{result.provider:<12} {status} {result.model:<32} {result.latency_ms:>7.0f} ms"
        if result.ok:
            if result.offline:
                line += "  offline placeholder answers (no network, no model)"
            elif result.answer:
                line += f"  answered {result.answer!r}"
        else:
            line += f"  {result.error}"
        self.stdout.write(line)
        if result.note:
            self.stdout.write(f"{'':<12} note: {result.note}")
