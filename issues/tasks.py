from __future__ import annotations

from issues import services


def sync_labels(issue_id: str) -> bool:
    return services.issue_sync_labels(issue_id=issue_id)
