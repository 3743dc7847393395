"""A reviewer's day in the admin, in a real browser.

CI failures arrive, the offline provider drafts a spell for the one nothing matched, and a staff
reviewer (not a superuser: a member of a reviewers group) works through it: review queue → draft →
originating build log → edit → approve → thumbs up on the LLM output → re-run it → metrics.
A screenshot of each step lands in artifacts/screenshots/.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A pytest run that fails on an import: the analyser should pick the error out of the noise.
PYTEST_LOG = b"""\
Run pytest -q
============================= test session starts ==============================
platform linux -- Python 3.12.4, pytest-8.3.2
collected 12 items

tests/test_orders.py ....                                                [ 33%]
tests/test_reports.py .......F                                           [100%]

=================================== FAILURES ===================================
_____________________________ test_monthly_report ______________________________

    def test_monthly_report():
>       from shop.reports import monthly
E       ModuleNotFoundError: No module named 'shop.reports'

tests/test_reports.py:3: ModuleNotFoundError
=========================== short test summary info ============================
FAILED tests/test_reports.py::test_monthly_report - ModuleNotFoundError: No module named 'shop.reports'
========================= 1 failed, 11 passed in 0.42s =========================
Error: Process completed with exit code 1.
"""

# A different failure, so the queue holds more than the one spell the reviewer opens.
GO_LOG = b"""\
go test ./...
ok  \tgithub.com/acme/fetcher/cache\t0.012s
--- FAIL: TestFetchTimeout (0.50s)
    fetch_test.go:41: expected ErrTimeout, got <nil>
FAIL
FAIL\tgithub.com/acme/fetcher\t0.514s
FAIL
"""

REVIEWER_PASSWORD = "a-long-reviewer-password-4711"


def make_reviewer() -> Any:
    """Staff, not superuser: what a reviewer gets is what the reviewers group grants."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission

    group = Group.objects.create(name="reviewers")
    group.permissions.set(
        Permission.objects.filter(content_type__app_label__in=["spells", "builds", "llmcore"])
    )
    user = get_user_model().objects.create_user(
        username="riley", email="riley@example.com", password=REVIEWER_PASSWORD, is_staff=True
    )
    user.groups.add(group)
    return user


def failing_build(log: bytes, **metadata: Any) -> Any:
    """Ingest a failed build; on commit it is analysed, and an unmatched failure gets a draft."""
    from builds.services import build_create

    return build_create(status="failed", source="api", log=[log], **metadata)


def test_reviewer_day(page: Any, live_server: Any, screenshots: Any) -> None:
    from builds.models import AnalysisStatus
    from llmcore.models import Feedback, LLMOutput
    from spells.models import ReviewQueueSpell, Spell, SpellRevision, SpellStatus

    reviewer = make_reviewer()
    build = failing_build(
        PYTEST_LOG, repository="acme/shop", branch="feature/reports", job_name="tests (3.12)"
    )
    failing_build(GO_LOG, repository="acme/fetcher", branch="main", job_name="go test")

    build.refresh_from_db()
    assert build.analysis_status == AnalysisStatus.DONE
    draft = Spell.objects.get(origin_build=build)
    assert draft.auto_generated
    assert not draft.human_reviewed
    assert draft.status == SpellStatus.DRAFT
    assert draft.llm_output is not None
    assert draft.llm_output.offline
    assert ReviewQueueSpell.objects.count() == 2

    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    stylesheets: dict[str, int] = {}
    page.on(
        "response",
        lambda r: stylesheets.__setitem__(r.url, r.status) if r.url.endswith(".css") else None,
    )

    # 1. Log in.
    page.goto("/admin/")
    assert "/admin/login/" in page.url
    screenshots(page, "login")
    page.fill("#id_username", "riley")
    page.fill("#id_password", REVIEWER_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))
    assert page.locator("#site-name").inner_text() == "Grimoire"
    assert page.get_by_text("Knowledge base of CI failures and fixes").is_visible()
    # DEBUG is off: the admin's CSS comes from the staticfiles handler, and it really styles.
    base_css = [url for url in stylesheets if url.endswith("/static/admin/css/base.css")]
    assert base_css, stylesheets
    assert stylesheets[base_css[0]] == 200, stylesheets
    header_bg = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
    assert header_bg not in ("", "rgba(0, 0, 0, 0)"), header_bg
    screenshots(page, "admin-home")

    # 2. The review queue: both drafts, highest confidence first.
    page.get_by_role("link", name="Review queue", exact=True).click()
    page.wait_for_url(re.compile(r"/admin/spells/reviewqueuespell/$"))
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    # Offline drafts all get the same placeholder title, so find the row by its link.
    draft_link = page.locator(f"#result_list a[href*='/reviewqueuespell/{draft.pk}/change/']")
    assert draft_link.inner_text() == draft.title
    screenshots(page, "review-queue")

    # 3. The drafted spell, with where it came from.
    draft_link.click()
    page.wait_for_url(re.compile(rf"/admin/spells/reviewqueuespell/{draft.pk}/change/$"))
    assert page.locator("#id_title").input_value() == draft.title
    assert page.get_by_role("link", name="open the build log").is_visible()
    llm_link = page.get_by_role("link", name=str(draft.llm_output_id)[:8])
    assert llm_link.is_visible()
    screenshots(page, "drafted-spell")

    # 4. Its originating build log, with the failure highlighted.
    page.get_by_role("link", name="open the build log").click()
    page.wait_for_url(re.compile(rf"/builds/{build.pk}/log$"))
    assert page.locator("h1").inner_text().startswith("Log of")
    assert page.get_by_text("No module named 'shop.reports'").first.is_visible()
    assert page.locator(".log .err").count() >= 1
    assert page.locator(".log .primary").count() == 1
    screenshots(page, "build-log")
    page.go_back()
    page.wait_for_url(re.compile(rf"/admin/spells/reviewqueuespell/{draft.pk}/change/$"))

    # 5. Edit the draft into something a colleague can use.
    new_title = "pytest: shop.reports moved to shop.reporting"
    page.fill("#id_title", new_title)
    page.fill(
        "#id_description",
        "The reports module was renamed in the reporting refactor; tests still import the old "
        "path. Import from shop.reporting instead.",
    )
    page.fill("#id_solution_code", "from shop.reporting import monthly")
    page.fill("#id_language", "python")
    page.click("input[name=_continue]")
    page.wait_for_url(re.compile(rf"/admin/spells/reviewqueuespell/{draft.pk}/change/$"))
    assert page.locator(".messagelist .success").count() == 1
    draft.refresh_from_db()
    assert draft.title == new_title
    assert draft.solution_code == "from shop.reporting import monthly"
    assert SpellRevision.objects.filter(spell=draft, user=reviewer, action="edited").exists()
    screenshots(page, "spell-edited")

    # 6. Approve it from the queue with the admin action: it leaves the queue, review recorded.
    page.goto("/admin/spells/reviewqueuespell/")
    page.check(f"#result_list input.action-select[value='{draft.pk}']")
    page.select_option("select[name=action]", "approve")
    page.click("button[name=index]")
    page.wait_for_load_state()
    assert page.get_by_text("1 spell(s) updated.").is_visible()
    assert page.get_by_role("link", name=new_title).count() == 0
    assert page.locator("#result_list tbody tr").count() == 1
    draft.refresh_from_db()
    assert draft.status == SpellStatus.APPROVED
    assert draft.human_reviewed
    assert draft.reviewed_by == reviewer
    assert draft.reviewed_at is not None
    assert SpellRevision.objects.filter(spell=draft, user=reviewer, action="approved").exists()
    screenshots(page, "approved")

    # 7. Thumbs up on the LLM output that drafted it.
    page.goto(f"/admin/spells/spell/{draft.pk}/change/")
    page.get_by_role("link", name=str(draft.llm_output_id)[:8]).click()
    page.wait_for_url(re.compile(rf"/llm_outputs/{draft.llm_output_id}$"))
    assert page.get_by_text("Answered by the offline provider").is_visible()
    up = page.locator("button[name=vote][value=up]")
    assert up.is_enabled()
    up.click()
    page.wait_for_url(re.compile(rf"/llm_outputs/{draft.llm_output_id}$"))
    assert page.get_by_text("Thanks for the feedback.").is_visible()
    assert page.locator("button[name=vote][value=up]").is_disabled()
    assert "1" in page.locator("button[name=vote][value=up]").inner_text()
    vote = Feedback.objects.get(output_id=draft.llm_output_id, user=reviewer)
    assert vote.vote == Feedback.UP
    screenshots(page, "llm-output-thumbs-up")

    # 8. Re-run it: a new output, linked to its parent, done by the (inline) worker.
    page.get_by_role("button", name="Re-run").click()
    page.wait_for_url(re.compile(r"/llm_outputs/[0-9a-f-]{36}$"))
    assert page.get_by_text("Queued a new output.").is_visible()
    rerun = LLMOutput.objects.get(parent_id=draft.llm_output_id)
    assert page.url.endswith(f"/llm_outputs/{rerun.pk}")
    assert rerun.relation == "re_run"
    assert rerun.status == "completed"
    assert rerun.prompt == draft.llm_output.prompt
    assert page.get_by_role("link", name=str(draft.llm_output_id)[:8]).is_visible()
    screenshots(page, "llm-output-rerun")

    # 9. The metrics page: generation, review and feedback numbers reflect the day.
    page.goto("/admin/spells/spell/metrics/")
    assert page.get_by_role("heading", name="Metrics", exact=True).count() == 1
    assert page.get_by_text(re.compile(r"^Last \d+ days\.$")).is_visible()
    assert page.get_by_text(re.compile(r"completed: 2")).first.is_visible()
    assert page.get_by_text(re.compile(r"👍 1 / 👎 0")).is_visible()
    screenshots(page, "metrics")

    assert page_errors == []
    assert len(screenshots.taken) == 10
