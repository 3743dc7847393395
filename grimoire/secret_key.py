"""The SECRET_KEY used when none is configured: generated once, kept in a local file."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

# Long enough to pass Django's deployment check (>= 50 chars, >= 5 unique characters).
_KEY_BYTES = 48


def load_or_create_secret_key(path: Path) -> str:
    """Return the key stored at `path`, creating it (mode 0600) on first use.

    Several processes start at once (web + qcluster workers), so creation is exclusive: whoever
    loses the race reads the winner's key instead of writing its own.
    """
    try:
        key = path.read_text().strip()
        if key:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(_KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process created it between our read and our open: use theirs.
        for _ in range(50):
            existing = path.read_text().strip()
            if existing:
                return existing
            time.sleep(0.02)  # the winner has created the file but not written it yet
        raise
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
