from __future__ import annotations

import hashlib
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "gmr_"  # noqa: S105  (a public prefix, not a secret)
# last_used_at is bookkeeping, not security: refresh it at most this often to spare a write per call.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenManager(models.Manager["ApiToken"]):
    def authenticate(self, raw: str) -> ApiToken | None:
        """The live token matching `raw`, or None. Only the hash is stored, never the token."""
        if not raw or len(raw) > 200:
            return None
        token = (
            self.select_related("user")
            .filter(key_hash=hash_token(raw), revoked_at__isnull=True)
            .first()
        )
        if token is None or token.is_expired:
            return None
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
            # Conditional update: concurrent requests with the same token do one write, not many.
            type(token).objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        return token


class ApiToken(models.Model):
    """An API token for a user. Shown once at creation; stored as a SHA-256 hash."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, default="default")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the token, so a person can tell their tokens apart in the admin.
    key_prefix = models.CharField(max_length=16, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenManager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.key_prefix}… ({self.user}, {self.name})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()
