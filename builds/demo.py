"""Demo builds: real-looking failing logs from several runners, analysed by the worker."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from grimoire.demo import demo_loader

LOGS = Path(__file__).resolve().parent.parent / "grimoire" / "demo_data" / "logs"

DEMO_BUILDS = [
    (
        "pytest-import-error.log",
        {
            "repository": "acme/shop",
            "branch": "feature/reports",
            "job_name": "tests (3.12)",
            "commit_sha": "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39",
        },
    ),
    (
        "jest-type-error.log",
        {
            "repository": "acme/web",
            "branch": "main",
            "job_name": "jest",
            "commit_sha": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
        },
    ),
    (
        "cargo-borrow.log",
        {
            "repository": "acme/ledger",
            "branch": "audit-trail",
            "job_name": "cargo build",
            "commit_sha": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
        },
    ),
    (
        "go-test-fail.log",
        {
            "repository": "acme/fetcher",
            "branch": "main",
            "job_name": "go test ./...",
            "commit_sha": "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d",
        },
    ),
]


@demo_loader("builds", order=20, models=("builds.Build",))
def load(stdout: TextIO) -> int:
    from builds.models import Build
    from builds.services import build_create

    created = 0
    for name, meta in DEMO_BUILDS:
        if Build.objects.filter(
            repository=meta["repository"], commit_sha=meta["commit_sha"]
        ).exists():
            continue
        build_create(status="failed", log=[(LOGS / name).read_bytes()], **meta)
        created += 1
    stdout.write(f"  {created} demo builds (analysed by the worker once it starts)")
    return created
