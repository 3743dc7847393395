"""Provider adapters. `make_provider(config)` builds the adapter for a ProviderConfig's kind."""

from __future__ import annotations

from llmcore.providers import anthropic, offline, openai, openai_compat
from llmcore.providers.base import (
    SPECS,
    Provider,
    ProviderConfig,
    ProviderResult,
    ProviderSpec,
    make_client,
)

__all__ = [
    "PROVIDER_KINDS",
    "SPECS",
    "Provider",
    "ProviderConfig",
    "ProviderResult",
    "ProviderSpec",
    "anthropic",
    "build_providers",
    "make_client",
    "make_provider",
    "offline",
    "openai",
    "openai_compat",
]

PROVIDER_KINDS: tuple[str, ...] = tuple(SPECS)


def make_provider(config: ProviderConfig) -> Provider:
    try:
        spec = SPECS[config.kind]
    except KeyError:
        raise ValueError(
            f"unknown provider kind {config.kind!r}; expected one of {', '.join(SPECS)}"
        ) from None
    return spec.factory(config)


def build_providers(configs: list[ProviderConfig]) -> list[Provider]:
    return [make_provider(c) for c in configs]
