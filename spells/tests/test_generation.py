"""Drafting spells with the LLM: once per fingerprint, reuse, the hourly cap, validation."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from builds.fingerprint import fingerprint
from builds.models import Build
from builds.services import build_create
from grimoire import jobs
from grimoire.testing import json_response, openai_chat
from llmcore import gateway
from llmcore.models import JobStatus, LLMOutput
from spells import services
from spells.models import (
    GenerationStatus,
    Spell,
    SpellGeneration,
    SpellMatch,
    SpellPattern,
    SpellSource,
    SpellStatus,
)

OPENAI_ENV = {"LLM_PROVIDERS": "openai", "OPENAI_API_KEY": "sk-test-" + "c" * 40}
MESSAGE = "TypeError: Cannot read properties of undefined (reading 'length')"
ERROR = {
    "error_type": "TypeError",
    "message": MESSAGE,
    "context": "const len = myArray.length;",
    "repository": "acme-labs/widget-web",
    "pr_number": 77,
    "files_changed": ["src/cart.js", "src/cart.test.js"],
}
DRAFT = {
    "title": "Reading .length of an undefined array",
    "description": "The array is undefined when the code runs (not loaded yet, or a missing "
    "property). Default it or guard before reading length.",
    "solution_code": "const len = (myArray ?? []).length;",
    "confidence_score": 81,
}
FAILED_LOG = b"""\
Run python scripts/migrate.py
Traceback (most recent call last):
  File "/home/runner/work/widget/widget/scripts/migrate.py", line 4, in <module>
    import quuxlib.frobnicate
ModuleNotFoundError: No module named 'quuxlib'
##[error]Process completed with exit code 1.
"""


def openai_answer(content: str) -> httpx.Response:
    return openai_chat(content, prompt_tokens=300, completion_tokens=80)


class FakeLLM:
    """A provider at the transport: every request gets `answer(request)`; requests are kept."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        return self.answer(request)

    def prompts(self) -> list[str]:
        return [json.loads(r.content)["messages"][-1]["content"] for r in self.requests]


@pytest.fixture
def llm():
    """`llm(draft_dict | str | callable, env=...)` installs a provider answering with it."""
    contexts = []

    def install(answer: Any = DRAFT, *, env: dict[str, str] = OPENAI_ENV) -> FakeLLM:
        if callable(answer):
            fake = FakeLLM(answer)
        else:
            text = answer if isinstance(answer, str) else json.dumps(answer)
            fake = FakeLLM(lambda r: openai_answer(text))
        router = gateway.build_router(
            env, client=httpx.Client(transport=httpx.MockTransport(fake.handle)), sleep=lambda s: 0
        )
        ctx = gateway.use_router(router)
        ctx.__enter__()
        contexts.append(ctx)
        return fake

    yield install
    for ctx in reversed(contexts):
        ctx.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _spell_settings(settings):
    settings.AUTO_CREATE_SPELLS = True
    settings.AUTO_CREATE_SPELLS_PER_HOUR = 30
    settings.SPELL_REUSE_MIN_SCORE = 60.0


@pytest.fixture
def run_jobs(django_capture_on_commit_callbacks):
    """`with run_jobs(): ...` runs the jobs queued inside when the block ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def request_draft(fp: str = "fp-" + "a" * 29, **error: Any) -> SpellGeneration:
    return services.spell_generate_request(fingerprint=fp, error={**ERROR, **error})


def approved_spell(regex: str, sample: str, *, status: str = SpellStatus.APPROVED) -> Spell:
    spell = Spell.objects.create(
        title="Reading a property of undefined",
        description="Guard against undefined before reading its properties.",
        status=status,
        language="javascript",
        error_type="TypeError",
    )
    SpellPattern.objects.create(spell=spell, regex=regex, sample=sample)
    return spell


# --- Once per fingerprint -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_same_fingerprint_is_drafted_once(llm, run_jobs):
    fake = llm()
    with run_jobs():
        first = request_draft()
        second = request_draft()
        third = request_draft(message="the same fingerprint, other words")
    assert first.pk == second.pk == third.pk
    generation = SpellGeneration.objects.get()
    assert generation.occurrences == 3
    assert generation.status == GenerationStatus.COMPLETED
    assert LLMOutput.objects.count() == 1
    assert len(fake.requests) == 1
    assert Spell.objects.count() == 1

    # Ever: a later occurrence after the draft exists starts nothing either.
    with run_jobs():
        request_draft()
    assert LLMOutput.objects.count() == 1
    assert SpellGeneration.objects.get().occurrences == 4


@pytest.mark.django_db
def test_a_drafted_spell_is_complete_and_awaits_review(llm, run_jobs):
    fake = llm()
    with run_jobs():
        generation = request_draft()
    generation.refresh_from_db()
    spell = generation.spell
    assert spell is not None
    assert (spell.title, spell.description, spell.solution_code) == (
        DRAFT["title"],
        DRAFT["description"],
        DRAFT["solution_code"],
    )
    assert spell.auto_generated is True
    assert spell.human_reviewed is False
    assert spell.status == SpellStatus.DRAFT
    assert spell.source == SpellSource.AUTO
    assert spell.confidence_score == 81
    assert spell.fingerprints == [generation.fingerprint]
    assert spell.error_type == "TypeError"
    assert spell.origin_error == MESSAGE
    pattern = spell.patterns.get()
    assert pattern.sample == MESSAGE
    assert re.search(pattern.regex, MESSAGE)
    # Generalised over the run-to-run detail (the property name) but still specific.
    assert re.search(
        pattern.regex, "TypeError: Cannot read properties of undefined (reading 'map')"
    )
    assert not re.search(pattern.regex, "TypeError: x is not a function")
    assert generation.finished_at is not None
    assert spell.revisions.get().action == "auto-generated"
    # The seed's prompt, with the PR context.
    (prompt,) = fake.prompts()
    for expected in (
        "Error Type: TypeError",
        f"Error Message: {MESSAGE}",
        "Code Context: const len = myArray.length;",
        "- Repository: acme-labs/widget-web",
        "- PR Number: 77",
        "- Files Changed: src/cart.js, src/cart.test.js",
    ):
        assert expected in prompt
    sent = json.loads(fake.requests[0].content)
    assert sent["response_format"]["type"] in {"json_schema", "json_object"}


@pytest.mark.django_db
def test_secrets_in_the_failure_never_reach_the_provider(llm, run_jobs):
    token = "ghp_" + "Q7" * 18
    fake = llm()
    with run_jobs():
        request_draft(context=f"export GITHUB_TOKEN={token}\nconst len = myArray.length;")
    assert fake.requests
    assert all(token not in r.content.decode() for r in fake.requests)
    assert token not in LLMOutput.objects.get().prompt


@pytest.mark.django_db
def test_the_same_failure_in_a_later_build_matches_the_drafted_spell(llm, run_jobs):
    llm()
    with run_jobs():
        first = build_create(status="failed", log=[FAILED_LOG], repository="acme-labs/widget")
    spell = Spell.objects.get()
    assert spell.origin_build_id == first.pk
    with run_jobs():
        second = build_create(status="failed", log=[FAILED_LOG], repository="acme-labs/widget")
    match = SpellMatch.objects.get(build=second)
    assert match.spell == spell
    assert match.reason == "fingerprint"
    assert SpellGeneration.objects.count() == 1
    assert LLMOutput.objects.count() == 1


# --- Reuse --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failure_like_an_existing_spell_reuses_it(llm, run_jobs):
    fake = llm()
    known = approved_spell(
        r"TypeError: Cannot read propert(y|ies) of undefined",
        "TypeError: Cannot read properties of undefined (reading 'map')",
    )
    with run_jobs():
        generation = request_draft(fp="fp-reuse-" + "0" * 23)
    assert generation.status == GenerationStatus.REUSED
    assert generation.spell == known
    assert str(known.pk) in generation.note
    assert generation.llm_output is None
    assert fake.requests == []
    assert LLMOutput.objects.count() == 0
    known.refresh_from_db()
    assert "fp-reuse-" + "0" * 23 in known.fingerprints  # remembered for next time
    assert Spell.objects.count() == 1


@pytest.mark.django_db
def test_a_rejected_spell_is_never_reused(llm, run_jobs):
    llm()
    approved_spell(
        r"TypeError: Cannot read propert(y|ies) of undefined",
        "TypeError: Cannot read properties of undefined (reading 'map')",
        status=SpellStatus.REJECTED,
    )
    with run_jobs():
        generation = request_draft()
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.COMPLETED
    assert generation.spell.auto_generated


# --- The hourly cap -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_over_the_hourly_cap_drafts_are_deferred_and_started_when_budget_frees(
    llm, run_jobs, settings
):
    settings.AUTO_CREATE_SPELLS_PER_HOUR = 2
    fake = llm()
    with run_jobs():
        g1, g2, g3, g4 = (request_draft(fp=f"fp-cap-{i}", message=f"Error {i}") for i in range(4))
    for g in (g1, g2, g3, g4):
        g.refresh_from_db()
    assert [g.status for g in (g1, g2)] == [GenerationStatus.COMPLETED] * 2
    assert [g.status for g in (g3, g4)] == [GenerationStatus.DEFERRED] * 2
    assert g3.note == "deferred: hourly cap reached"
    assert g3.llm_output is None and g3.started_at is None
    assert len(fake.requests) == 2

    # Still inside the hour: the sweeper starts nothing.
    with run_jobs():
        assert services.start_deferred_generations() == 0
    assert len(fake.requests) == 2

    # An hour later for one of the two: one slot frees, and the oldest deferred draft takes it.
    SpellGeneration.objects.filter(pk=g1.pk).update(
        started_at=timezone.now() - timedelta(minutes=61)
    )
    with run_jobs():
        assert services.start_deferred_generations() == 1
    g3.refresh_from_db()
    g4.refresh_from_db()
    assert g3.status == GenerationStatus.COMPLETED
    assert g3.spell is not None
    assert g4.status == GenerationStatus.DEFERRED
    assert len(fake.requests) == 3

    # Deferred, not dropped: the periodic sweep starts the last one once the hour has passed.
    SpellGeneration.objects.update(started_at=timezone.now() - timedelta(hours=2))
    with run_jobs():
        counts = jobs.sweep_stuck_work()
    assert counts["spell_generation"] == 1
    g4.refresh_from_db()
    assert g4.status == GenerationStatus.COMPLETED
    assert SpellGeneration.objects.filter(status=GenerationStatus.DEFERRED).count() == 0


@pytest.mark.django_db
def test_a_deferred_fingerprint_seen_again_is_still_one_generation(llm, run_jobs, settings):
    settings.AUTO_CREATE_SPELLS_PER_HOUR = 0
    fake = llm()
    with run_jobs():
        request_draft()
        request_draft()
    generation = SpellGeneration.objects.get()
    assert generation.status == GenerationStatus.DEFERRED
    assert generation.occurrences == 2
    assert fake.requests == []


# --- Validating the draft -----------------------------------------------------------------------


@pytest.mark.django_db
def test_an_answer_without_a_title_fails_the_generation(llm, run_jobs):
    answer = {k: v for k, v in DRAFT.items() if k != "title"}
    llm(answer)
    with run_jobs():
        generation = request_draft()
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.FAILED
    assert generation.note.startswith("LLM failed")
    assert generation.finished_at is not None
    assert generation.spell is None
    assert Spell.objects.count() == 0
    assert generation.llm_output.status == JobStatus.FAILED


@pytest.mark.django_db
def test_a_blank_title_fails_the_generation(llm, run_jobs):
    llm({**DRAFT, "title": "    "})
    with run_jobs():
        generation = request_draft()
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.FAILED
    assert "title" in generation.note
    assert Spell.objects.count() == 0


@pytest.mark.parametrize(("given", "stored"), [(140, 100), (-5, 0), ("64", 64), (99.6, 100)])
@pytest.mark.django_db
def test_confidence_is_clamped_to_0_100(llm, run_jobs, given, stored):
    llm({**DRAFT, "confidence_score": given})
    with run_jobs():
        generation = request_draft()
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.COMPLETED
    assert generation.spell.confidence_score == stored


@pytest.mark.django_db
def test_the_offline_provider_never_drafts_a_confident_spell(llm, run_jobs):
    llm(env={})  # no provider configured: the offline placeholder answers
    with run_jobs():
        generation = request_draft()
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.COMPLETED
    assert generation.llm_output.offline is True
    assert generation.spell.confidence_score <= 10
    assert generation.spell.status == SpellStatus.DRAFT


@pytest.mark.django_db
def test_an_llm_failure_fails_the_generation_with_the_reason(llm, run_jobs):
    llm(
        lambda r: json_response(
            401,
            {
                "error": {
                    "message": "Incorrect API key provided",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        )
    )
    with run_jobs():
        generation = request_draft()
    generation.refresh_from_db()
    assert generation.status == GenerationStatus.FAILED
    assert generation.note.startswith("LLM failed: ")
    assert generation.note != "LLM failed: error"  # names the failure
    assert generation.finished_at is not None
    assert Spell.objects.count() == 0


# --- Programmatic use and the API ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_generate_spell_as_in_the_seed_returns_the_new_spell_id(llm):
    fake = llm()
    error_payload = {
        "error_type": "TypeError",
        "message": "Cannot read property 'length' of undefined",
        "context": "const len = myArray.length;",
    }
    spell_id = services.generate_spell(error_payload)
    assert isinstance(spell_id, int)
    spell = Spell.objects.get(pk=spell_id)
    assert spell.auto_generated and spell.title == DRAFT["title"]
    assert spell.fingerprints == [
        fingerprint("Cannot read property 'length' of undefined", kind="TypeError")
    ]
    (prompt,) = fake.prompts()
    assert "Error Message: Cannot read property 'length' of undefined" in prompt
    assert "Code Context: const len = myArray.length;" in prompt
    # The same error again: the same spell, without asking the LLM again.
    assert services.generate_spell(error_payload) == spell_id
    assert len(fake.requests) == 1


@pytest.mark.django_db
def test_generate_spell_needs_a_message():
    with pytest.raises(ValueError, match="message"):
        services.generate_spell({"error_type": "TypeError", "message": "   "})
    assert SpellGeneration.objects.count() == 0


@pytest.mark.django_db
def test_post_generate_is_for_staff_only(anon_client, alice_client):
    payload = {"error_type": "TypeError", "message": MESSAGE}
    assert anon_client.post("/api/v1/spells/generate", payload, format="json").status_code == 401
    assert alice_client.post("/api/v1/spells/generate", payload, format="json").status_code == 403
    assert SpellGeneration.objects.count() == 0


@pytest.mark.django_db
def test_post_generate_queues_a_draft(staff_client, llm, run_jobs):
    llm()
    with run_jobs():
        response = staff_client.post(
            "/api/v1/spells/generate",
            {**ERROR, "files_changed": ["src/cart.js"]},
            format="json",
        )
    assert response.status_code == 202
    body = response.json()
    generation = SpellGeneration.objects.get()
    assert body["generation_id"] == generation.pk
    assert body["status"] == GenerationStatus.PENDING
    assert body["llm_output_id"] == str(generation.llm_output_id)
    assert generation.status == GenerationStatus.COMPLETED
    assert generation.fingerprint == fingerprint(MESSAGE, kind="TypeError")
    assert generation.error["files_changed"] == ["src/cart.js"]


@pytest.mark.parametrize(
    "payload",
    [{}, {"message": ""}, {"message": "x", "pr_number": 0}, {"message": "x", "files_changed": "a"}],
    ids=["empty", "blank-message", "pr-zero", "files-not-a-list"],
)
@pytest.mark.django_db
def test_post_generate_refuses_bad_input(staff_client, payload):
    response = staff_client.post("/api/v1/spells/generate", payload, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert SpellGeneration.objects.count() == 0


# --- The switch ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_with_auto_create_off_an_unknown_failure_drafts_nothing(llm, run_jobs, settings):
    settings.AUTO_CREATE_SPELLS = False
    fake = llm()
    with run_jobs():
        build = build_create(status="failed", log=[FAILED_LOG])
    build = Build.objects.get(pk=build.pk)
    assert build.analysis_status == "done"  # analysed, just not drafted
    assert build.primary_fingerprint
    assert SpellGeneration.objects.count() == 0
    assert LLMOutput.objects.count() == 0
    assert Spell.objects.count() == 0
    assert fake.requests == []


@pytest.mark.django_db
def test_with_auto_create_on_an_unknown_failure_is_drafted(llm, run_jobs):
    llm()
    with run_jobs():
        build = build_create(status="failed", log=[FAILED_LOG])
    build = Build.objects.get(pk=build.pk)
    generation = SpellGeneration.objects.get()
    assert generation.fingerprint == build.primary_fingerprint
    assert generation.build == build
    assert generation.error["message"] == "ModuleNotFoundError: No module named 'quuxlib'"
    assert generation.error["error_type"] == "ModuleNotFoundError"
    assert "import quuxlib.frobnicate" in generation.error["context"]


# --- 50 deliveries of the same failure at once --------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_simultaneous_identical_failures_make_one_generation(llm):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): SQLite serialises writers anyway")
    fake = llm()
    threads_n = 50
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []
    results: list[int] = []
    fp = fingerprint(MESSAGE, kind="TypeError")

    def deliver() -> None:
        try:
            barrier.wait(timeout=30)
            generation = services.spell_generate_request(fingerprint=fp, error=ERROR)
            results.append(generation.pk)
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(set(results)) == 1 and len(results) == threads_n
    generation = SpellGeneration.objects.get()
    assert generation.occurrences == threads_n
    assert LLMOutput.objects.count() == 1
    assert len(fake.requests) == 1
    assert generation.status == GenerationStatus.COMPLETED
    assert Spell.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_simultaneous_new_failures_respect_the_hourly_cap(settings, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): SQLite serialises writers anyway")
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)  # only enqueue the LLM jobs; the cap is the point
    settings.AUTO_CREATE_SPELLS_PER_HOUR = 5
    threads_n = 50
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def deliver(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            services.spell_generate_request(
                fingerprint=f"fp-burst-{i}",
                error={"error_type": "E", "message": f"distinct failure {i} qx{i}zz"},
            )
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert SpellGeneration.objects.count() == threads_n
    assert SpellGeneration.objects.exclude(started_at=None).count() == 5
    assert LLMOutput.objects.count() == 5
    assert SpellGeneration.objects.filter(status=GenerationStatus.DEFERRED).count() == 45
