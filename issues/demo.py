"""Demo issues, enriched by the worker (the fallback tagger when no LLM is configured)."""

from __future__ import annotations

from typing import TextIO

from grimoire.demo import demo_loader

DEMO_ISSUES = [
    {
        "title": "Login button not responding in Firefox",
        "description": "The login button on the homepage does nothing when clicked in Firefox 132. "
        "The console shows TypeError: Cannot read properties of undefined (reading 'submit') "
        "in src/auth/LoginForm.tsx. Chrome works.\n\nSteps to reproduce:\n1. Open /\n2. Click Log in",
        "priority": "high",
    },
    {
        "title": "Add CSV export to the monthly report",
        "description": "It would be great to export the monthly totals report as CSV so finance can "
        "import it into their spreadsheet tool.",
        "priority": "medium",
    },
]


@demo_loader("issues", order=30, models=("issues.Issue",))
def load(stdout: TextIO) -> int:
    from issues.models import Issue
    from issues.services import issue_create

    created = 0
    for data in DEMO_ISSUES:
        if not Issue.objects.filter(title=data["title"]).exists():
            issue_create(**data)
            created += 1
    stdout.write(f"  {created} demo issues")
    return created
