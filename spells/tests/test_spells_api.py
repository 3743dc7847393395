"""The spells API, the import/export/match_log commands and the review workspace in the admin."""

from __future__ import annotations

import json
from datetime import timedelta
from html.parser import HTMLParser
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from builds.fingerprint import fingerprint
from grimoire import testing
from spells.models import (
    GenerationStatus,
    ReviewQueueSpell,
    Spell,
    SpellGeneration,
    SpellPattern,
    SpellRevision,
    SpellSource,
    SpellStatus,
)

pytestmark = pytest.mark.django_db

REFUSED_LINE = "Error: connect ECONNREFUSED 127.0.0.1:5432"
REFUSED = r"ECONNREFUSED 127\.0\.0\.1:\d+"
RUNAWAY = r"(?<=x)(a|aa)+$"  # lookbehind forces the backtracking engine; (a|aa)+$ explodes
RUNAWAY_LINE = "x" + "a" * 60 + "!"


def make_spell(
    title: str,
    *,
    status: str = SpellStatus.APPROVED,
    patterns: tuple[tuple[str, str], ...] = (),
    **fields,
) -> Spell:
    fields.setdefault("description", f"{title}: why it happens and how to fix it.")
    spell = Spell.objects.create(title=title, status=status, **fields)
    for regex, sample in patterns:
        SpellPattern.objects.create(spell=spell, regex=regex, sample=sample)
    return spell


def match(client, **payload):
    return client.post("/api/v1/spells/match", payload, format="json")


# --- POST /api/v1/spells/match ------------------------------------------------------------------


def test_match_ranks_approved_before_draft_and_never_returns_rejected(alice_client):
    draft = make_spell(
        "Postgres is not up yet (draft)",
        status=SpellStatus.DRAFT,
        patterns=((REFUSED, "connect ECONNREFUSED 127.0.0.1:5432"),),
    )
    approved = make_spell(
        "Postgres is not up yet", patterns=((REFUSED, "connect ECONNREFUSED 127.0.0.1:5432"),)
    )
    make_spell(
        "Rejected advice",
        status=SpellStatus.REJECTED,
        patterns=((REFUSED, "connect ECONNREFUSED 127.0.0.1:5432"),),
    )

    response = match(alice_client, error_type="Error", message=REFUSED_LINE)

    assert response.status_code == 200
    matches = response.json()["matches"]
    assert [m["spell_id"] for m in matches] == [approved.pk, draft.pk]
    best = matches[0]
    assert best["reason"] == "pattern"
    assert best["matched_text"] == "ECONNREFUSED 127.0.0.1:5432"
    assert best["pattern"] == REFUSED
    assert best["status"] == "approved"
    assert best["title"] == "Postgres is not up yet"
    assert best["description"] and "solution_code" in best
    assert 0 < best["score"] <= 100
    assert matches[1]["status"] == "draft"


def test_match_by_fingerprint_outranks_a_pattern_hit(alice_client):
    by_pattern = make_spell("By pattern", patterns=((REFUSED, "ECONNREFUSED 127.0.0.1:5432"),))
    fp = fingerprint(REFUSED_LINE, kind="Error")
    by_fp = make_spell("Seen this exact failure", status=SpellStatus.DRAFT, fingerprints=[fp])

    matches = match(alice_client, message=REFUSED_LINE, fingerprints=[fp]).json()["matches"]

    assert [m["spell_id"] for m in matches][:2] == [by_fp.pk, by_pattern.pk]
    assert matches[0]["reason"] == "fingerprint"
    assert matches[0]["score"] == 100


def test_match_finds_a_spell_by_text_similarity(alice_client):
    spell = make_spell(
        "Docker daemon not running",
        description="Cannot connect to the Docker daemon: the docker daemon is not running "
        "on the runner, start the docker service.",
        error_type="DockerDaemonError",
    )
    matches = match(
        alice_client,
        message="Cannot connect to the Docker daemon. Is the docker daemon running?",
    ).json()["matches"]
    assert matches[0]["spell_id"] == spell.pk
    assert matches[0]["reason"] == "similarity"


def test_match_looks_at_the_context_lines_too(alice_client):
    spell = make_spell("Postgres", patterns=((REFUSED, "ECONNREFUSED 127.0.0.1:5432"),))
    matches = match(
        alice_client,
        message="test setup failed",
        context=f"starting tests\n{REFUSED_LINE}\n",
    ).json()["matches"]
    assert matches[0]["spell_id"] == spell.pk
    assert matches[0]["reason"] == "pattern"


def test_match_sees_new_and_changed_spells_at_once(alice_client):
    assert match(alice_client, message=REFUSED_LINE).json()["matches"] == []
    spell = make_spell("Postgres", patterns=((REFUSED, "ECONNREFUSED 127.0.0.1:5432"),))
    assert [m["spell_id"] for m in match(alice_client, message=REFUSED_LINE).json()["matches"]] == [
        spell.pk
    ]
    spell.status = SpellStatus.REJECTED
    spell.save()
    assert match(alice_client, message=REFUSED_LINE).json()["matches"] == []


def test_a_runaway_pattern_does_not_hang_the_match_endpoint(alice_client):
    # Saved straight to the database, past the admin's validation (as an old import might).
    make_spell("Runaway", patterns=((RUNAWAY, "xaa"),))
    good = make_spell("Postgres", patterns=((REFUSED, "ECONNREFUSED 127.0.0.1:5432"),))
    response = match(alice_client, message=REFUSED_LINE, context=RUNAWAY_LINE)
    assert response.status_code == 200
    assert [m["spell_id"] for m in response.json()["matches"]] == [good.pk]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"message": ""},
        {"message": "x", "limit": 0},
        {"message": "x", "limit": 51},
        {"message": "x", "fingerprints": "abc"},
        {"message": "x" * 20_001},
    ],
    ids=["empty", "blank", "limit-0", "limit-51", "fingerprints-not-list", "too-long"],
)
def test_match_refuses_bad_input_with_400(alice_client, payload):
    response = alice_client.post("/api/v1/spells/match", payload, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message", "details"}


def test_match_needs_a_token(anon_client):
    assert match(anon_client, message=REFUSED_LINE).status_code == 401


def test_match_limit_caps_the_results(alice_client):
    for i in range(5):
        make_spell(f"Postgres {i}", patterns=((REFUSED, "ECONNREFUSED 127.0.0.1:5432"),))
    matches = match(alice_client, message=REFUSED_LINE, limit=2).json()["matches"]
    assert len(matches) == 2


# --- GET /api/v1/spells and /api/v1/spells/{id} ------------------------------------------------


@pytest.fixture
def three_spells():
    return {
        "approved": make_spell(
            "Approved", patterns=((REFUSED, "ECONNREFUSED 127.0.0.1:5432"),), language="node"
        ),
        "draft": make_spell("Draft", status=SpellStatus.DRAFT, auto_generated=True),
        "rejected": make_spell("Rejected", status=SpellStatus.REJECTED),
    }


def test_users_list_only_approved_spells(alice_client, three_spells):
    response = alice_client.get("/api/v1/spells")
    assert response.status_code == 200
    body = response.json()
    items = body["results"] if isinstance(body, dict) else body
    assert [s["id"] for s in items] == [three_spells["approved"].pk]
    item = items[0]
    assert item["patterns"] == [{"regex": REFUSED, "sample": "ECONNREFUSED 127.0.0.1:5432"}]
    assert item["status"] == "approved"
    drafts = alice_client.get("/api/v1/spells?status=draft").json()
    assert (drafts["results"] if isinstance(drafts, dict) else drafts) == []


def test_staff_list_every_spell_and_can_filter(staff_client, three_spells):
    body = staff_client.get("/api/v1/spells").json()
    items = body["results"] if isinstance(body, dict) else body
    assert {s["id"] for s in items} == {s.pk for s in three_spells.values()}
    body = staff_client.get("/api/v1/spells?status=draft").json()
    items = body["results"] if isinstance(body, dict) else body
    assert [s["id"] for s in items] == [three_spells["draft"].pk]
    body = staff_client.get("/api/v1/spells?language=node").json()
    items = body["results"] if isinstance(body, dict) else body
    assert [s["id"] for s in items] == [three_spells["approved"].pk]


def test_the_list_does_not_query_per_spell(staff_client):
    def queries_for_list() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            assert staff_client.get("/api/v1/spells").status_code == 200
        return len(ctx.captured_queries)

    queries_for_list()  # the token's first use is recorded once; not part of the list's cost
    for i in range(2):
        make_spell(f"S{i}", patterns=((REFUSED, "ECONNREFUSED 127.0.0.1:5432"),))
    few = queries_for_list()
    for i in range(2, 8):
        make_spell(f"S{i}", patterns=((REFUSED, "ECONNREFUSED 127.0.0.1:5432"),))
    assert queries_for_list() == few


def test_detail_hides_unapproved_spells_from_users(alice_client, staff_client, three_spells):
    approved = alice_client.get(f"/api/v1/spells/{three_spells['approved'].pk}")
    assert approved.status_code == 200
    assert approved.json()["title"] == "Approved"
    for hidden in ("draft", "rejected"):
        response = alice_client.get(f"/api/v1/spells/{three_spells[hidden].pk}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert staff_client.get(f"/api/v1/spells/{three_spells[hidden].pk}").status_code == 200
    assert alice_client.get("/api/v1/spells/999999").status_code == 404


def test_listing_needs_a_token(anon_client, three_spells):
    assert anon_client.get("/api/v1/spells").status_code == 401
    assert anon_client.get(f"/api/v1/spells/{three_spells['approved'].pk}").status_code == 401


# --- GET /api/v1/spells/metrics -----------------------------------------------------------------


def test_metrics_are_staff_only(anon_client, alice_client):
    assert anon_client.get("/api/v1/spells/metrics").status_code == 401
    assert alice_client.get("/api/v1/spells/metrics").status_code == 403


def test_metrics_report_generation_review_and_matching(staff_client, staff):
    reviewed = make_spell(
        "Auto 1", status=SpellStatus.DRAFT, auto_generated=True, confidence_score=90
    )
    make_spell("Auto 2", status=SpellStatus.DRAFT, auto_generated=True, confidence_score=40)
    Spell.objects.filter(pk=reviewed.pk).update(human_reviewed=True)
    popular = make_spell("Popular", match_count=7)
    SpellGeneration.objects.create(
        fingerprint="a" * 32, status=GenerationStatus.COMPLETED, spell=reviewed
    )
    SpellGeneration.objects.create(fingerprint="b" * 32, status=GenerationStatus.FAILED)
    SpellGeneration.objects.create(
        fingerprint="c" * 32,
        status=GenerationStatus.DEFERRED,
        occurrences=9,
        error={"message": "E: Unable to locate package libfoo-dev"},
    )

    response = staff_client.get("/api/v1/spells/metrics")

    assert response.status_code == 200
    m = response.json()
    assert m["window_days"] == 30
    assert m["auto_generated_per_day"] == [{"day": timezone.now().date().isoformat(), "count": 2}]
    assert m["average_confidence"] == 65.0
    assert m["generation"]["by_status"] == {"completed": 1, "failed": 1, "deferred": 1}
    assert m["generation"]["success_rate"] == 0.5
    assert {"llm_jobs", "llm_latency_ms_avg", "llm_cost_usd"} <= set(m["generation"])
    assert m["review_rate"] == 0.5
    assert m["top_matched"][0] == {"id": popular.pk, "title": "Popular", "match_count": 7}
    unmatched = m["unmatched_fingerprints"]
    assert unmatched[0]["fingerprint"] == "c" * 32
    assert unmatched[0]["occurrences"] == 9
    assert "libfoo-dev" in unmatched[0]["message"]
    assert "a" * 32 not in [u["fingerprint"] for u in unmatched]


def test_metrics_window_is_validated(staff_client):
    assert staff_client.get("/api/v1/spells/metrics?days=7").json()["window_days"] == 7
    response = staff_client.get("/api/v1/spells/metrics?days=soon")
    assert response.status_code == 400
    assert "days" in response.json()["error"]["message"]


# --- import_spells / export_spells --------------------------------------------------------------

SPELL_FILE = """\
version: 1
defaults:
  language: python
  tags: [python]
spells:
  - slug: pg-not-ready
    title: PostgreSQL is not accepting connections yet
    description: |
      The tests start before the database service is ready.
      Add a health check to the service container.
    solution_code: |
      options: --health-cmd pg_isready --health-interval 5s
    error_type: ConnectionRefused
    patterns:
      - regex: "ECONNREFUSED 127\\\\.0\\\\.0\\\\.1:\\\\d+"
        sample: "connect ECONNREFUSED 127.0.0.1:5432"
  - slug: quuxlib-missing
    title: quuxlib is not installed
    description: Add quuxlib to requirements.txt.
    error_type: ModuleNotFoundError
    status: draft
    patterns:
      - regex: "No module named 'quuxlib'"
        sample: "ModuleNotFoundError: No module named 'quuxlib'"
"""


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def spell_file(tmp_path) -> Path:
    path = tmp_path / "spells.yaml"
    path.write_text(SPELL_FILE)
    return path


def test_import_creates_spells_with_their_patterns(spell_file):
    assert "2 created, 0 updated, 0 unchanged" in run("import_spells", str(spell_file))
    spell = Spell.objects.get(slug="pg-not-ready")
    assert spell.title == "PostgreSQL is not accepting connections yet"
    assert spell.language == "python"
    assert spell.tags == ["python"]
    assert spell.status == SpellStatus.APPROVED
    assert spell.source == SpellSource.IMPORTED
    assert list(spell.patterns.values_list("regex", "sample")) == [
        (r"ECONNREFUSED 127\.0\.0\.1:\d+", "connect ECONNREFUSED 127.0.0.1:5432")
    ]
    assert Spell.objects.get(slug="quuxlib-missing").status == SpellStatus.DRAFT
    assert spell.revisions.get().action == "imported"


def test_import_twice_changes_nothing(spell_file):
    run("import_spells", str(spell_file))
    before = {s.pk: s.updated_at for s in Spell.objects.all()}
    revisions = SpellRevision.objects.count()
    assert "0 created, 0 updated, 2 unchanged" in run("import_spells", str(spell_file))
    assert {s.pk: s.updated_at for s in Spell.objects.all()} == before
    assert SpellRevision.objects.count() == revisions
    assert SpellPattern.objects.count() == 2


def test_import_updates_a_changed_spell_and_its_patterns(spell_file):
    run("import_spells", str(spell_file))
    spell_file.write_text(
        SPELL_FILE.replace("is not installed", "is missing").replace(
            "regex: \"No module named 'quuxlib'\"", "regex: \"No module named 'quux(lib)?'\""
        )
    )
    assert "0 created, 1 updated, 1 unchanged" in run("import_spells", str(spell_file))
    spell = Spell.objects.get(slug="quuxlib-missing")
    assert spell.title == "quuxlib is missing"
    assert list(spell.patterns.values_list("regex", flat=True)) == ["No module named 'quux(lib)?'"]
    assert spell.revisions.first().action == "re-imported"


def test_import_skip_existing_keeps_local_edits(spell_file):
    run("import_spells", str(spell_file))
    Spell.objects.filter(slug="pg-not-ready").update(title="Our own wording")
    spell_file.write_text(
        SPELL_FILE
        + """\
  - slug: brand-new
    title: A new spell from upstream
    description: Something new.
"""
    )
    out = run("import_spells", "--skip-existing", str(spell_file))
    assert "1 created, 0 updated, 0 unchanged" in out
    assert Spell.objects.get(slug="pg-not-ready").title == "Our own wording"
    assert Spell.objects.filter(slug="brand-new").exists()
    # Without the flag the file wins again.
    run("import_spells", str(spell_file))
    assert Spell.objects.get(slug="pg-not-ready").title.startswith("PostgreSQL")


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_then_import_round_trips(spell_file, tmp_path, fmt):
    run("import_spells", str(spell_file))
    out = tmp_path / f"export.{fmt}"
    call_command("export_spells", "--format", fmt, "--output", str(out), stderr=StringIO())
    snapshot = {
        s.slug: (s.title, s.description, s.solution_code, s.status, s.tags, s.error_type)
        for s in Spell.objects.all()
    }
    patterns = sorted(SpellPattern.objects.values_list("spell__slug", "regex", "sample"))

    # Into the same database: nothing to do.
    assert "0 created, 0 updated, 2 unchanged" in run("import_spells", str(out))
    # Into an empty one: the same knowledge base.
    Spell.objects.all().delete()
    assert "2 created" in run("import_spells", str(out))
    assert {
        s.slug: (s.title, s.description, s.solution_code, s.status, s.tags, s.error_type)
        for s in Spell.objects.all()
    } == snapshot
    assert sorted(SpellPattern.objects.values_list("spell__slug", "regex", "sample")) == patterns


def test_export_leaves_out_rejected_spells_unless_asked(spell_file):
    run("import_spells", str(spell_file))
    Spell.objects.filter(slug="quuxlib-missing").update(status=SpellStatus.REJECTED)
    assert "quuxlib-missing" not in run("export_spells")
    assert "quuxlib-missing" in run("export_spells", "--all")
    data = json.loads(run("export_spells", "--format", "json", "--status", "rejected"))
    assert [s["slug"] for s in data["spells"]] == ["quuxlib-missing"]


def test_export_then_import_does_not_duplicate_spells_without_a_slug(tmp_path):
    make_spell("Made in the admin", patterns=((REFUSED, "ECONNREFUSED 127.0.0.1:5432"),))
    make_spell("Drafted by the LLM", status=SpellStatus.DRAFT, auto_generated=True)
    out = tmp_path / "export.yaml"
    call_command("export_spells", "--output", str(out), stderr=StringIO())
    run("import_spells", str(out))
    assert Spell.objects.count() == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            SPELL_FILE.replace('sample: "connect ECONNREFUSED', 'sample: "connect EHOSTUNREACH'),
            "spells[0] (pg-not-ready)",
        ),
        ("spells: [{slug: x, title: no description}]", "description"),
        ("spells:\n  - slug: a\n    title: [unclosed\n", "spells.yaml"),
        ("version: 7\nspells: []\n", "unsupported version"),
    ],
    ids=["pattern-misses-sample", "missing-field", "bad-yaml", "bad-version"],
)
def test_import_of_a_bad_file_names_the_problem_and_writes_nothing(tmp_path, content, expected):
    path = tmp_path / "spells.yaml"
    path.write_text(content)
    with pytest.raises(CommandError) as raised:
        run("import_spells", str(path))
    assert expected in str(raised.value)
    assert Spell.objects.count() == 0


def test_import_of_a_missing_file_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match=r"nope\.yaml"):
        run("import_spells", str(tmp_path / "nope.yaml"))


def test_import_with_nothing_to_import_is_a_command_error():
    with pytest.raises(CommandError, match="Nothing to import"):
        run("import_spells")


def test_import_of_a_file_with_an_unknown_extension_is_a_command_error(tmp_path):
    path = tmp_path / "spells.txt"
    path.write_text(SPELL_FILE)
    with pytest.raises(CommandError, match="extension"):
        run("import_spells", str(path))


def test_import_all_or_nothing_when_one_of_several_files_is_bad(spell_file, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("spells: [{slug: x, title: no description}]")
    with pytest.raises(CommandError):
        run("import_spells", str(spell_file), str(bad))
    assert Spell.objects.count() == 0


# --- match_log ----------------------------------------------------------------------------------

LOG = """\
Run python scripts/migrate.py
Traceback (most recent call last):
  File "/home/runner/work/widget/widget/scripts/migrate.py", line 4, in <module>
    import quuxlib.frobnicate
ModuleNotFoundError: No module named 'quuxlib'
##[error]Process completed with exit code 1.
"""


def test_match_log_prints_the_errors_with_their_spells_as_json(tmp_path, spell_file):
    run("import_spells", str(spell_file))
    log = tmp_path / "build.log"
    log.write_text(LOG)

    result = json.loads(run("match_log", str(log), "--json"))

    assert result["path"] == str(log)
    assert result["error_count"] >= 1
    primary = result["errors"][0]
    assert primary["primary"] is True
    assert primary["line"] == 5
    assert primary["text"] == "ModuleNotFoundError: No module named 'quuxlib'"
    assert primary["fingerprint"]
    spell = Spell.objects.get(slug="quuxlib-missing")
    assert primary["matches"][0]["spell_id"] == spell.pk
    assert primary["matches"][0]["reason"] == "pattern"
    assert primary["matches"][0]["matched_text"] == "No module named 'quuxlib'"


def test_match_log_text_output_marks_the_primary_error(tmp_path, spell_file):
    run("import_spells", str(spell_file))
    log = tmp_path / "build.log"
    log.write_text(LOG)
    out = run("match_log", str(log))
    first = out.splitlines()[0]
    assert first.startswith("* line 5: ModuleNotFoundError")
    assert f"spell {Spell.objects.get(slug='quuxlib-missing').pk} (pattern" in out


def test_match_log_of_a_missing_file_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        run("match_log", str(tmp_path / "missing.log"), "--json")


# --- The review workspace (admin) ---------------------------------------------------------------


class _FormScraper(HTMLParser):
    """The fields of the admin's change form as a browser would submit them."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.in_form = False
        self.data: dict[str, list[str]] = {}
        self._textarea: str | None = None
        self._select: str | None = None
        self._select_value: str | None = None
        self._first_option: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("id") == self.form_id:
            self.in_form = True
        if not self.in_form:
            return
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.data.setdefault(name, []).append(a.get("value", "on"))
        elif tag == "textarea" and name:
            self._textarea = name
            self.data.setdefault(name, []).append("")
        elif tag == "select" and name:
            self._select, self._select_value, self._first_option = name, None, None
        elif tag == "option" and self._select:
            if self._first_option is None:
                self._first_option = a.get("value", "")
            if "selected" in a:
                self._select_value = a.get("value", "")

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea][-1] += data

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None
        elif tag == "select" and self._select:
            value = self._select_value if self._select_value is not None else ""
            self.data.setdefault(self._select, []).append(value)
            self._select = None
        elif tag == "form" and self.in_form:
            self.in_form = False


def change_form_data(client: Client, url: str, form_id: str) -> dict[str, list[str]]:
    response = client.get(url)
    assert response.status_code == 200
    scraper = _FormScraper(form_id)
    scraper.feed(response.content.decode())
    data = scraper.data
    # Textareas start with a newline Django adds for rendering; the browser strips it.
    return {k: [v[1:] if v.startswith("\n") else v for v in vs] for k, vs in data.items()}


@pytest.fixture
def admin_client(db) -> Client:
    client = Client()
    client.force_login(testing.make_user("head-reviewer", superuser=True))
    return client


@pytest.fixture
def queue():
    drafts = {
        name: make_spell(
            name,
            status=SpellStatus.DRAFT,
            auto_generated=True,
            confidence_score=score,
            source=SpellSource.AUTO,
        )
        for name, score in (("low", 20), ("high", 93), ("medium", 64), ("top", 80))
    }
    # Not in the queue: reviewed, rejected, hand-written.
    make_spell("reviewed", status=SpellStatus.DRAFT, auto_generated=True, human_reviewed=True)
    make_spell("rejected", status=SpellStatus.REJECTED, auto_generated=True)
    make_spell("manual", status=SpellStatus.DRAFT)
    return drafts


def changelist_titles(client: Client, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200
    return [s.title for s in response.context["cl"].result_list]


QUEUE_URL = "/admin/spells/reviewqueuespell/"


def test_the_review_queue_lists_unreviewed_drafts_highest_confidence_first(admin_client, queue):
    assert changelist_titles(admin_client, QUEUE_URL) == ["high", "top", "medium", "low"]
    assert list(ReviewQueueSpell.objects.values_list("title", flat=True)) == [
        "high",
        "top",
        "medium",
        "low",
    ]


@pytest.mark.parametrize(
    ("band", "titles"),
    [("high", ["high", "top"]), ("medium", ["medium"]), ("low", ["low"])],
)
def test_the_review_queue_filters_by_confidence_band(admin_client, queue, band, titles):
    assert changelist_titles(admin_client, f"{QUEUE_URL}?confidence={band}") == titles


def _act(client: Client, url: str, action: str, spells: list[Spell]):
    return client.post(
        url,
        {"action": action, "_selected_action": [s.pk for s in spells], "index": 0},
        follow=True,
    )


@pytest.mark.parametrize(
    ("action", "status", "revision"),
    [
        ("approve", SpellStatus.APPROVED, "approved"),
        ("reject", SpellStatus.REJECTED, "rejected"),
        ("mark_reviewed", SpellStatus.DRAFT, "reviewed"),
    ],
)
def test_review_actions_record_reviewer_time_and_a_revision(
    admin_client, queue, action, status, revision
):
    before = timezone.now()
    response = _act(admin_client, QUEUE_URL, action, [queue["high"], queue["low"]])
    assert response.status_code == 200
    reviewer = response.wsgi_request.user
    for name in ("high", "low"):
        spell = Spell.objects.get(pk=queue[name].pk)
        assert spell.status == status
        assert spell.human_reviewed is True
        assert spell.reviewed_by == reviewer
        assert before <= spell.reviewed_at <= timezone.now()
        latest = spell.revisions.first()
        assert (latest.action, latest.user) == (revision, reviewer)
        assert latest.snapshot["status"] == status
    # Reviewed spells leave the queue; the others stay.
    assert changelist_titles(admin_client, QUEUE_URL) == ["top", "medium"]
    assert Spell.objects.get(pk=queue["top"].pk).reviewed_by is None


def test_review_actions_work_from_the_main_spell_list_too(admin_client, queue):
    _act(admin_client, "/admin/spells/spell/", "approve", [queue["medium"]])
    spell = Spell.objects.get(pk=queue["medium"].pk)
    assert spell.status == SpellStatus.APPROVED and spell.reviewed_by is not None


def test_editing_a_spell_in_the_admin_records_who_and_when(admin_client):
    spell = make_spell(
        "Old title",
        status=SpellStatus.DRAFT,
        patterns=((REFUSED, "connect ECONNREFUSED 127.0.0.1:5432"),),
    )
    url = f"/admin/spells/spell/{spell.pk}/change/"
    data = change_form_data(admin_client, url, "spell_form")
    data["title"] = ["Better title"]
    data["description"] = ["Start the database service before the tests."]
    data["_save"] = ["Save"]
    before = timezone.now()

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    spell.refresh_from_db()
    assert spell.title == "Better title"
    revision = spell.revisions.get()
    assert revision.action == "edited"
    assert revision.user.username == "head-reviewer"
    assert revision.created_at >= before
    assert revision.snapshot["title"] == "Better title"
    assert revision.snapshot["patterns"] == [
        {"regex": REFUSED, "sample": "connect ECONNREFUSED 127.0.0.1:5432"}
    ]


def test_the_admin_refuses_a_pattern_that_misses_its_sample(admin_client):
    spell = make_spell("Spell", patterns=((REFUSED, "connect ECONNREFUSED 127.0.0.1:5432"),))
    url = f"/admin/spells/spell/{spell.pk}/change/"
    data = change_form_data(admin_client, url, "spell_form")
    data["patterns-0-sample"] = ["connect EHOSTUNREACH 10.0.0.1:5432"]
    data["_save"] = ["Save"]

    response = admin_client.post(url, data)

    assert response.status_code == 200  # the form again, with the error
    assert "does not match its sample line" in response.content.decode()
    assert spell.patterns.get().sample == "connect ECONNREFUSED 127.0.0.1:5432"
    assert SpellRevision.objects.count() == 0


def test_the_metrics_page_renders_for_staff(admin_client, queue):
    SpellGeneration.objects.create(
        fingerprint="d" * 32,
        status=GenerationStatus.FAILED,
        occurrences=3,
        error={"message": "error: linker `cc` not found"},
        created_at=timezone.now() - timedelta(hours=1),
    )
    response = admin_client.get("/admin/spells/spell/metrics/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Last 30 days." in html
    assert html.count("<h1>Metrics</h1>") <= 1
    assert "Average confidence of auto-generated spells" in html
    assert "linker `cc` not found" in html
    assert "\u00d73" in html  # the occurrences (multiplication sign, then 3)


def test_the_metrics_page_is_not_for_users(alice):
    client = Client()
    client.force_login(alice)
    response = client.get("/admin/spells/spell/metrics/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
