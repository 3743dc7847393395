from __future__ import annotations

import secrets
from datetime import timedelta

from django.db import models
from django.utils import timezone

from grimoire.models import TOKEN_PREFIX, ApiToken, hash_token


def api_token_create(
    *, user: models.Model, name: str = "default", expires_in: timedelta | None = None
) -> tuple[ApiToken, str]:
    """Create a token for `user`; returns the row and the raw token (the only time it exists)."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(30)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        key_hash=hash_token(raw),
        key_prefix=raw[: len(TOKEN_PREFIX) + 6],
        expires_at=timezone.now() + expires_in if expires_in else None,
    )
    return token, raw
