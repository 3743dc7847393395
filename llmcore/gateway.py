"""The process-wide Router, built from the environment, with Django's cache for cooldowns.

The pure gateway (providers, router) knows nothing of Django; this module plugs in what a
deployment shares: the cache (so a provider cooled down by one worker is skipped by all), the
configured providers and prices, and the schema validator.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping

import httpx

from llmcore import config
from llmcore.cache import ResponseCache
from llmcore.providers import build_providers
from llmcore.router import Router

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_router: Router | None = None


def _validator():
    try:
        from llmcore.structured import validate_json
    except ImportError:  # structured.py not present: fall back to the router's own check
        return None
    return validate_json


def build_router(
    env: Mapping[str, str] | None = None, *, client: httpx.Client | None = None, **options
) -> Router:
    from django.core.cache import cache

    env = os.environ if env is None else env
    configs = config.providers_from_env(env)
    kwargs = {
        "cooldown_store": cache,
        "validator": _validator(),
        "price_overrides": config.prices_from_env(env),
        "client": client,
        # Off unless LLM_RESPONSE_CACHE=true: identical requests (provider, model, prompt,
        # parameters) are answered from the shared cache.
        "response_cache": ResponseCache(cache, enabled=config.response_cache_enabled(env)),
        "deadline": config.call_deadline_from_env(env),
    }
    kwargs.update(options)
    return Router(build_providers(configs), **kwargs)


def get_router() -> Router:
    global _router
    with _lock:
        if _router is None:
            _router = build_router()
        return _router


def describe() -> list[str]:
    return config.describe_providers(config.providers_from_env(os.environ))


def log_available_providers() -> None:
    try:
        lines = describe()
    except ValueError as exc:
        logger.error("LLM provider configuration is invalid: %s", exc)
        return
    logger.info("LLM providers in order: %s", "; ".join(lines))


@contextlib.contextmanager
def use_router(router: Router) -> Iterator[Router]:
    """Make `router` the process router inside the block (tests, benchmarks, llm_check)."""
    global _router
    with _lock:
        previous, _router = _router, router
    try:
        yield router
    finally:
        with _lock:
            _router = previous


def reset() -> None:
    """Forget the process router (settings changed)."""
    global _router
    with _lock:
        _router = None
