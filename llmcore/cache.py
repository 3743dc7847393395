"""Optional response cache keyed by (provider, model, prompt, params). Off by default.

LLM answers are not pure functions of the prompt, and a stale cached answer is worse than a
slow fresh one for most of Grimoire (spell drafts, fixes), so caching is opt-in
(LLM_RESPONSE_CACHE=true in settings) and meant for repeated identical calls such as re-running
an eval set. The key is a SHA-256 of a canonical JSON encoding, so it is safe to use as a cache
key in any backend and reveals nothing about the prompt.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from llmcore.types import LLMRequest, LLMResponse

KEY_PREFIX = "llmcore:response:"
DEFAULT_TIMEOUT = 24 * 3600


def cache_key(
    provider: str,
    model: str,
    prompt: Any,
    params: Mapping[str, Any] | None = None,
) -> str:
    """A stable key for (provider, model, prompt, params); dict key order does not matter."""
    payload = {
        "provider": provider,
        "model": model,
        "prompt": prompt,
        "params": dict(params or {}),
    }
    blob = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return KEY_PREFIX + hashlib.sha256(blob.encode()).hexdigest()


def request_cache_key(provider: str, model: str, request: LLMRequest) -> str:
    """The key for a whole LLMRequest: messages and system are the prompt, the rest are params."""
    prompt = {
        "system": request.system,
        "messages": [[m.role, m.content] for m in request.messages],
    }
    params = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "json_schema": request.json_schema,
        "schema_name": request.schema_name,
    }
    return cache_key(provider, model, prompt, params)


class _Cache(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any, timeout: Any = ...) -> Any: ...


class ResponseCache:
    """Stores whole LLMResponses in a Django-like cache; does nothing unless enabled."""

    def __init__(
        self, backend: _Cache, *, enabled: bool = False, timeout: int = DEFAULT_TIMEOUT
    ) -> None:
        self.backend = backend
        self.enabled = enabled
        self.timeout = timeout

    def lookup(self, provider: str, model: str, request: LLMRequest) -> LLMResponse | None:
        if not self.enabled:
            return None
        return self.backend.get(request_cache_key(provider, model, request))

    def store(self, provider: str, model: str, request: LLMRequest, response: LLMResponse) -> None:
        # Offline answers are placeholders: caching one would hide a provider that came back.
        if not self.enabled or response.offline:
            return
        self.backend.set(request_cache_key(provider, model, request), response, self.timeout)
