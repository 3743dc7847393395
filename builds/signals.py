"""Events other apps react to. Receivers stay thin: they call their own app's services."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the transaction that stores a build's analysis; kwargs: build, analysis (dict).
build_analyzed = Signal()
