"""The staff log page (highlighting, escaping, windowing) and the builds admin."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from builds import pages, services
from builds.models import AnalysisStatus, Build

pytestmark = pytest.mark.django_db

LOG = """\
\x1b[36mcollecting ...\x1b[0m
downloading 10%\rdownloading 55%\rdownloading 100%
<script>alert("owned")</script> printed by a test
=================================== FAILURES ===================================
_________________________________ test_total __________________________________

    def test_total():
>       assert total([1, 2]) == 4
E       assert 3 == 4

tests/test_app.py:7: AssertionError
=========================== short test summary info ============================
FAILED tests/test_app.py::test_total - assert 3 == 4 <b>bold</b>
========================= 1 failed, 1 passed in 0.05s ==========================
"""


def analysed(log: str = LOG, **meta) -> Build:
    build = services.build_create(status="failed", log=[log.encode()], **meta)
    services.build_analyze(build_id=str(build.pk))
    build.refresh_from_db()
    assert build.analysis_status == AnalysisStatus.DONE
    return build


@pytest.fixture
def staff_browser(staff) -> Client:
    browser = Client()
    browser.force_login(staff)
    return browser


def line_div(html: str, number: int) -> str:
    match = re.search(rf'<div id="L{number}" class="([^"]*)">(.*?)</div>', html, re.S)
    assert match, f"line {number} not rendered"
    return match.group(0)


def line_class(html: str, number: int) -> set[str]:
    return set(re.search(r'class="([^"]*)"', line_div(html, number)).group(1).split())


def test_the_log_page_highlights_errors_and_marks_the_excerpt(staff_browser):
    build = analysed()
    response = staff_browser.get(f"/builds/{build.pk}/log")
    assert response.status_code == 200
    html = response.content.decode()
    summary = build.summary
    failed = next(e["line"] for e in summary["errors"] if e["text"].startswith("FAILED"))
    assert "err" in line_class(html, failed)
    assert "primary" in line_class(html, summary["primary_error"]["line"])
    for number in range(summary["excerpt"]["start"], summary["excerpt"]["end"] + 1):
        assert "excerpt" in line_class(html, number)
    assert "excerpt" not in line_class(html, 1)
    assert "err" not in line_class(html, 1)
    assert f'href="#L{summary["primary_error"]["line"]}"' in html
    assert f"/api/v1/builds/{build.pk}/log" in html


def test_the_log_page_escapes_html_from_the_log(staff_browser):
    build = analysed()
    html = staff_browser.get(f"/builds/{build.pk}/log").content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html


def test_the_log_page_strips_ansi_and_shows_the_last_progress_state(staff_browser):
    build = analysed()
    html = staff_browser.get(f"/builds/{build.pk}/log").content.decode()
    assert "\x1b" not in html
    assert "[36m" not in html
    assert "collecting ..." in line_div(html, 1)
    assert "downloading 100%" in line_div(html, 2)
    assert "10%" not in line_div(html, 2)


def test_a_long_log_opens_around_the_failure(staff_browser, monkeypatch):
    monkeypatch.setattr(pages, "MAX_LINES", 300)
    filler = "".join(f"ok step {n}\n" for n in range(900))
    build = analysed(filler + LOG + "".join(f"after {n}\n" for n in range(200)))
    start = build.summary["excerpt"]["start"]
    assert start > 900
    html = staff_browser.get(f"/builds/{build.pk}/log").content.decode()
    first_shown = int(re.search(r'<div id="L(\d+)"', html).group(1))
    assert first_shown == start - 200
    assert "Showing from line" in html
    assert 'id="L1"' not in html
    assert len(re.findall(r'<div id="L\d+"', html)) == 300
    assert "Only part of the log is shown" in html
    assert "err" in line_class(html, build.summary["primary_error"]["line"])


def test_a_build_without_analysis_still_shows_its_log(staff_browser):
    build = services.build_create(status="running", log=[b"compiling <main>\n"])
    html = staff_browser.get(f"/builds/{build.pk}/log").content.decode()
    assert "compiling &lt;main&gt;" in html


def test_non_staff_are_sent_to_the_login_page(alice):
    build = analysed()
    browser = Client()
    browser.force_login(alice)
    response = browser.get(f"/builds/{build.pk}/log")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    anonymous = Client().get(f"/builds/{build.pk}/log")
    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]


def test_an_unknown_build_log_page_is_404(staff_browser):
    response = staff_browser.get("/builds/00000000-0000-0000-0000-000000000000/log")
    assert response.status_code == 404


# --- admin -------------------------------------------------------------------------------------


@pytest.fixture
def superuser_browser(db) -> Client:
    from grimoire.testing import make_user

    browser = Client()
    browser.force_login(make_user("root", superuser=True))
    return browser


def test_the_admin_changelist_lists_builds_with_their_counts(
    superuser_browser, alice, django_assert_max_num_queries
):
    for n in range(5):
        analysed(repository=f"acme/repo{n}", owner=alice)
    with django_assert_max_num_queries(15):
        response = superuser_browser.get("/admin/builds/build/")
    assert response.status_code == 200
    assert response.context["cl"].result_count == 5
    html = response.content.decode()
    assert "acme/repo0" in html and "acme/repo4" in html
    shown = {b.repository: b for b in response.context["cl"].result_list}
    assert shown["acme/repo0"].error_count >= 1
    filtered = superuser_browser.get("/admin/builds/build/", {"status__exact": "success"})
    assert filtered.status_code == 200
    assert filtered.context["cl"].result_count == 0
    searched = superuser_browser.get("/admin/builds/build/", {"q": "repo3"})
    assert [b.repository for b in searched.context["cl"].result_list] == ["acme/repo3"]


def test_the_admin_shortens_long_primary_errors():
    from django.contrib.admin.sites import site

    admin = site._registry[Build]
    build = Build(primary_error="E" * 150)
    assert admin.primary_error_short(build) == "E" * 100 + "…"
    assert admin.primary_error_short(Build(primary_error="short")) == "short"


def test_the_admin_change_view_links_the_log_and_shows_reports(superuser_browser, alice):
    build = analysed(repository="acme/shop")
    services.build_report_create(
        build=build,
        type="failure_analysis",
        analysis="An off-by-one in total()",
        recommendations=["fix it"],
        confidence=0.7,
        author=alice,
    )
    response = superuser_browser.get(f"/admin/builds/build/{build.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"/builds/{build.pk}/log" in html
    assert "An off-by-one in total()" in html
    assert "<script>alert" not in html


def test_the_admin_action_queues_analysis_again_for_finished_builds_only(
    superuser_browser, django_capture_on_commit_callbacks
):
    finished = analysed()
    running = services.build_create(status="running", log=[b"still going\n"])
    first = finished.analyzed_at
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_browser.post(
            "/admin/builds/build/",
            {
                "action": "reanalyze",
                "_selected_action": [str(finished.pk), str(running.pk)],
            },
            follow=True,
        )
    assert response.status_code == 200
    assert "Queued analysis of 1 build(s)." in response.content.decode()
    finished.refresh_from_db()
    running.refresh_from_db()
    assert finished.analyzed_at > first
    assert running.analysis_status == AnalysisStatus.NONE


def test_non_staff_cannot_open_the_admin(alice):
    browser = Client()
    browser.force_login(alice)
    response = browser.get("/admin/builds/build/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
