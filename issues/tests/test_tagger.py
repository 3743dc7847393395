"""Behaviour of the offline tagger (issues.tagger): kinds, seed rules, tags, components, summaries.

Every example here is written for this file; nothing reads the shared evaluation datasets.
"""

from __future__ import annotations

import random
import re

import pytest

from issues.tagger import (
    DEFAULT_VOCABULARY,
    KINDS,
    MAX_TAG_LENGTH,
    Enrichment,
    classify_kind,
    explain_kind,
    extract_components,
    fallback_enrich,
    normalize_tag,
    normalize_tags,
    seed_rules_kind,
    seed_rules_tags,
    summarize,
)

PY_TRACEBACK = """\
Saving a profile with an empty display name crashes the server.

```
Traceback (most recent call last):
  File "/usr/lib/python3.12/site-packages/django/core/handlers/base.py", line 197, in _get_response
  File "/srv/app/src/accounts/profile.py", line 42, in save_profile
    name = data["display_name"].strip()
AttributeError: 'NoneType' object has no attribute 'strip'
```
"""

BUG_TEMPLATE = """\
### Describe the bug
Clicking the export button on the reports page does nothing.

### Steps to reproduce
1. Open Reports
2. Click Export

### Expected behavior
A CSV file is downloaded.

### Actual behavior
Nothing happens and the console shows an error.
"""

FEATURE_TEMPLATE = """\
**Is your feature request related to a problem? Please describe.**
I keep switching themes by hand every evening.

**Describe the solution you'd like**
It would be nice to follow the operating system's dark mode setting automatically.
"""


# ---------------------------------------------------------------------------------------------
# classify_kind
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "body", "expected"),
    [
        ("Profile save crashes with AttributeError", PY_TRACEBACK, "bug"),
        ("Export button on the reports page", BUG_TEMPLATE, "bug"),
        ("Fix off-by-one error in pagination", "The last page repeats one row.", "bug"),
        ("Login page is broken after upgrading to 2.3", "", "bug"),
        ("Add support for dark mode", "", "feature-request"),
        ("Theme switching", FEATURE_TEMPLATE, "feature-request"),
        ("Allow exporting reports as PDF", "Only CSV exists today.", "feature-request"),
        ("How do I configure a proxy for outgoing requests?", "", "question"),
        (
            "Proxy configuration",
            "Is there a way to set a proxy for outgoing calls? I'm trying to run this behind a "
            "corporate firewall. Thanks in advance!",
            "question",
        ),
        ("Typo in README installation section", "It says `pip instal`.", "documentation"),
        (
            "DOC clarify the timeout parameter",
            "The docstring does not say the unit.",
            "documentation",
        ),
        (
            "LogisticRegression class weights",
            "### Describe the issue linked to the documentation\n\nThe user guide does not "
            "explain how class weights interact with C.",
            "documentation",
        ),
    ],
)
def test_it_classifies_each_kind(title, body, expected):
    assert classify_kind(title, body) == expected


def test_a_question_mark_title_beats_weak_failure_words_in_the_body():
    body = "I read the guide but I am not sure whether the cache is shared between workers."
    assert classify_kind("Is the cache shared between worker processes?", body) == "question"


def test_not_a_bug_counts_against_bug():
    title = "Sorting of search results"
    body = "This is not a bug. It would be great to have an option to sort results by date."
    assert classify_kind(title, body) == "feature-request"
    # The seed's substring rules fall for it: "bug" appears in the text.
    assert seed_rules_kind(title, body) == "bug"


def test_a_template_choice_prompt_is_not_evidence_but_its_answer_is():
    prompt = "**Do you want to request a *feature* or report a *bug*?**\n"
    assert classify_kind("Memo and refs", prompt + "Feature\n\nLet memo accept a ref.") == (
        "feature-request"
    )
    assert classify_kind("Memo and refs", prompt + "Bug\n\nMemo ignores the ref.") == "bug"


def test_a_declared_issue_type_is_honoured():
    body = "### Issue type\n\nSupport\n\n### Source\n\nbinary\n\nWhat is the recommended setup?"
    assert classify_kind("Model export on Raspberry Pi", body) == "question"
    generated = "Type: <b>Feature Request</b>\n\nShow the branch name in the status bar."
    assert classify_kind("Branch name in status bar", generated) == "feature-request"


def test_template_markers_in_html_comments_count():
    body = "<!-- Do Not Delete This! feature_request_template -->\nShow a minimap for diffs."
    assert classify_kind("Minimap for diffs", body) == "feature-request"


def test_explain_kind_says_which_features_fired():
    decision = explain_kind("App crashes on start", "Traceback (most recent call last):\n  ...")
    assert decision.kind == "bug"
    assert decision.scores["bug"] > max(v for k, v in decision.scores.items() if k != "bug")
    assert any("crash" in reason for reason in decision.reasons)
    assert any("stack trace" in reason for reason in decision.reasons)


def test_title_counts_more_than_body():
    body = "Error handling here is fine, nothing fails."
    assert classify_kind("Add a retry option to the uploader", body) == "feature-request"


@pytest.mark.parametrize(
    ("title", "body"),
    [
        ("", ""),
        (None, None),
        (b"Crash \xff\xfe on start", b"\x00\x01 binary \x89PNG"),
        (12345, ["not", "text"]),
        ("x" * 100_000, "y" * 2_000_000),
        ("登录按钮没有反应", "我点击登录按钮后页面没有任何反应。"),
        ("\x00\x00\x00", "\x1b[31mred\x1b[0m\r\n\r\n"),
        ("[[[[[[[[", "```\n" * 5000),
        ("a/" * 2000, "at " + "a." * 20_000 + "B("),
    ],
)
def test_it_never_raises_on_odd_input(title, body):
    assert classify_kind(title, body) in KINDS
    enrichment = fallback_enrich(title, body)
    assert enrichment.kind in KINDS
    assert 3 <= len(enrichment.tags) <= 5
    assert enrichment.summary
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", enrichment.summary)


def test_empty_input_is_a_question_needing_triage():
    enrichment = fallback_enrich("", "")
    assert enrichment.kind == "question"
    assert enrichment.tags == ["question", "needs-review", "needs-triage"]
    assert enrichment.summary == "Question with no title or description."


# ---------------------------------------------------------------------------------------------
# The seed's keyword rules (the baseline)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "body", "expected"),
    [
        ("Login issue", "", "bug"),  # "issue" is a bug word for the seed
        ("Export to PDF", "Please add it", "feature-request"),
        ("README is outdated", "", "documentation"),
        ("Where is the config stored?", "", "question"),
        ("Hello", "", "question"),  # nothing matched
        # First match wins in the order bug, feature-request, documentation, question.
        ("Docs typo makes the example crash", "", "bug"),
        ("New docs page", "", "feature-request"),
    ],
)
def test_seed_rules_kind_is_first_substring_match(title, body, expected):
    assert seed_rules_kind(title, body) == expected


def test_seed_rules_tags_are_faithful_substring_rules():
    assert seed_rules_tags("Urgent: API is slow", "") == [
        "needs-review",
        "urgent",
        "backend",
        "performance",
    ]
    # Substrings, as in the seed: "ui" inside "build" makes it frontend.
    assert seed_rules_tags("Build breaks", "") == ["needs-review", "frontend"]
    assert seed_rules_tags("", "") == ["needs-review"]


# ---------------------------------------------------------------------------------------------
# Tag normalisation and vocabulary
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  UI/UX ", "ui-ux"),
        ("Feature Request", "feature-request"),
        ("snake_case_tag", "snake-case-tag"),
        ("--weird--tag--", "weird-tag"),
        ("C++", "c++"),
        ("node.js", "node.js"),
        ("", ""),
        ("!!!", ""),
        ("\uff21\uff30\uff29", "api"),  # full-width letters fold to ASCII
    ],
)
def test_normalize_tag(raw, expected):
    assert normalize_tag(raw) == expected


def test_normalize_tag_bounds_length_without_a_dangling_hyphen():
    tag = normalize_tag("very long tag " * 20)
    assert 0 < len(tag) <= MAX_TAG_LENGTH
    assert not tag.endswith("-")
    assert normalize_tag(None) == ""  # type: ignore[arg-type]


def test_default_vocabulary_is_the_seeds_common_tags_normalised():
    assert DEFAULT_VOCABULARY == (
        "bug",
        "feature-request",
        "frontend",
        "backend",
        "documentation",
        "performance",
        "security",
        "database",
        "api",
        "ui-ux",
        "urgent",
    )
    assert all(normalize_tag(t) == t for t in DEFAULT_VOCABULARY)


def test_normalize_tags_filters_to_the_vocabulary_and_maps_aliases():
    tags = ["Bug", "bug", "Enhancement", "made-up", "Docs", "UI/UX"]
    assert normalize_tags(tags, vocabulary=None, allow_new=False) == [
        "bug",
        "feature-request",
        "documentation",
        "ui-ux",
    ]


def test_normalize_tags_keeps_new_tags_only_when_allowed():
    tags = ["Bug", "Made Up"]
    assert normalize_tags(tags, vocabulary=DEFAULT_VOCABULARY, allow_new=False) == ["bug"]
    assert normalize_tags(tags, vocabulary=DEFAULT_VOCABULARY, allow_new=True) == [
        "bug",
        "made-up",
    ]


def test_normalize_tags_respects_limit_custom_vocabulary_and_odd_items():
    vocabulary = ["payments", "Checkout Flow"]
    tags = ["checkout_flow", 42, None, "", "Payments", "bug"]
    assert normalize_tags(tags, vocabulary=vocabulary, allow_new=False) == [
        "checkout-flow",
        "payments",
    ]
    assert normalize_tags("a, b, c, d", vocabulary=[], allow_new=True, limit=2) == ["a", "b"]
    assert normalize_tags(None, vocabulary=None, allow_new=True) == []
    assert normalize_tags(["a"], vocabulary=None, allow_new=True, limit=-1) == []


# ---------------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------------


def test_components_come_from_project_frames_not_library_frames():
    components = extract_components("Profile save crashes", PY_TRACEBACK)
    assert components[0] == "accounts"
    assert "attribute-error" in components
    assert "django" not in components and "handlers" not in components


def test_components_from_plain_paths_windows_paths_and_test_files():
    body = (
        "The bug is in src/auth/login.py and C:\\proj\\billing\\invoice.py; "
        "tests/test_cache.py fails too."
    )
    components = extract_components("Login fails", body)
    assert components[:3] == ["auth", "billing", "cache"]


def test_components_from_java_and_javascript_stack_frames():
    java = (
        "java.lang.NullPointerException\n"
        "    at com.example.shipping.RateService.quote(RateService.java:42)\n"
        "    at java.base/java.lang.Thread.run(Thread.java:833)\n"
    )
    assert extract_components("Quote fails", java) == ["shipping", "null-pointer-exception"]
    js = "TypeError: x is undefined\n    at render (/app/src/widgets/chart.js:10:5)"
    assert extract_components("Chart broken", js) == ["widgets", "type-error"]


def test_components_from_error_phrases_and_repository_links():
    body = (
        "Segmentation fault (core dumped) in "
        "https://github.com/acme/vision/blob/main/modules/imgproc/src/resize.cpp#L10"
    )
    assert extract_components("Resize crashes", body) == ["imgproc", "segfault"]


def test_components_skip_ids_hashes_and_generic_directories():
    body = (
        "at chrome-extension://fmkadmapgofadopljbjfkapdkoienihi/build/main.js:10:5\n"
        "see src/lib/index.js and build/3f2a9c1d7e/out.js"
    )
    assert extract_components("DevTools error", body) == []


def test_extract_components_respects_limit():
    body = "a/alpha/x.py b/beta/x.py c/gamma/x.py KeyError ValueError"
    assert len(extract_components("", body, limit=2)) == 2
    assert extract_components("", body, limit=0) == []


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def test_bug_summary_names_subject_error_and_component():
    summary = fallback_enrich("Profile save crashes", PY_TRACEBACK).summary
    assert summary.startswith("Bug in accounts: Profile save crashes (AttributeError).")
    assert "empty display name crashes the server" in summary
    assert len(_sentences(summary)) <= 2


def test_summary_strips_markup_code_templates_and_links():
    body = (
        "<!-- Please fill the template -->\n"
        "### Steps to reproduce\n"
        "- [x] I searched existing issues\n"
        "```js\nexport()\n```\n"
        "![screenshot](https://example.com/a.png)\n"
        "When I export a report with more than 1000 rows the download never starts.\n"
        "See https://example.com/report for details.\n"
    )
    summary = fallback_enrich("Export stalls on large reports", body).summary
    for junk in ("<!--", "###", "```", "![", "http", "[x]"):
        assert junk not in summary
    assert "the download never starts" in summary


def test_summary_prefers_an_informative_sentence_over_greetings():
    body = (
        "Hi team, thanks for the great project!\n\n"
        "Uploading a file larger than 2 GB fails with a timeout after exactly 60 seconds."
    )
    summary = summarize("Large uploads fail", body, kind="bug")
    assert "2 GB fails with a timeout" in summary
    assert "thanks" not in summary.lower()


def test_summary_is_a_sentence_not_a_truncated_description():
    long_paragraph = (
        "The scheduler starts every job twice when the worker restarts during a deploy, "
        "because the lease is released before the job row is marked as running, "
        "which means that another worker sees the job as free and claims it again, "
        "and the customer receives two identical invoices for the same order, "
        "and then support has to refund one of them manually every single time this happens."
    )
    summary = fallback_enrich("Jobs run twice after a worker restart", long_paragraph).summary
    assert not long_paragraph.startswith(summary)
    assert summary[-1] in ".?!"
    assert len(_sentences(summary)) <= 2
    for sentence in _sentences(summary):
        assert sentence[-1] in ".?!"
        # Whatever was kept ends on a whole word of the original text.
        last_word = re.findall(r"\w+", sentence)[-1]
        assert re.search(
            rf"\b{last_word}\b", long_paragraph + " Jobs run twice after a worker restart"
        )


def test_question_summary_keeps_the_question_form():
    summary = fallback_enrich("How do I rotate the API token?", "").summary
    assert summary == "Question: How do I rotate the API token?"


def test_summary_never_repeats_the_title_as_its_detail():
    title = "Cannot add node 1 because a node with that id is already in the store"
    summary = fallback_enrich(title, title + ".").summary
    assert summary.count("already in the store") == 1


def test_summary_leaves_out_sentences_with_secrets():
    body = (
        "Deploys fail since this morning with a 401 from the registry.\n"
        "My token is ghp_abcdefghijklmnopqrstuvwxyz0123456789 if that helps."
    )
    summary = fallback_enrich("Deploy fails with 401", body).summary
    assert "ghp_" not in summary


def test_summary_of_binary_junk_is_only_the_title_sentence():
    junk = random.Random(7).randbytes(4096).decode("latin-1")
    summary = fallback_enrich("Crash on start", junk).summary
    assert summary == "Bug: Crash on start."


def test_summary_is_bounded_for_a_huge_title():
    enrichment = fallback_enrich("word " * 400, "")
    assert len(enrichment.summary) < 400


def test_summary_keeps_non_english_text():
    summary = fallback_enrich("登录按钮没有反应", "我点击登录按钮后页面没有任何反应。").summary
    assert "登录按钮没有反应" in summary


# ---------------------------------------------------------------------------------------------
# fallback_enrich
# ---------------------------------------------------------------------------------------------


def test_fallback_enrich_returns_a_complete_enrichment():
    enrichment = fallback_enrich("Dashboard page is very slow to load", "Takes 20 s in Chrome.")
    assert isinstance(enrichment, Enrichment)
    assert enrichment.source == "fallback"
    assert enrichment.kind == "bug"
    assert enrichment.tags[0] == enrichment.kind
    assert {"performance", "frontend"} <= set(enrichment.tags)
    assert 3 <= len(enrichment.tags) <= 5
    assert len(set(enrichment.tags)) == len(enrichment.tags)
    assert all(normalize_tag(t) == t for t in enrichment.tags)
    assert enrichment.to_dict() == {
        "kind": enrichment.kind,
        "tags": enrichment.tags,
        "summary": enrichment.summary,
        "components": enrichment.components,
        "source": "fallback",
    }


def test_fallback_tags_come_from_the_vocabulary_unless_new_tags_are_allowed():
    body = "Password reset fails in src/auth/reset.py with a KeyError."
    closed = fallback_enrich("Password reset token is rejected", body)
    assert "auth" in closed.components
    assert "auth" not in closed.tags
    assert "security" in closed.tags
    assert set(closed.tags) <= set(DEFAULT_VOCABULARY) | {
        "question",
        "needs-review",
        "needs-triage",
    }

    opened = fallback_enrich("Password reset token is rejected", body, allow_new_tags=True)
    assert "auth" in opened.tags
    assert len(opened.tags) <= 5


def test_a_custom_vocabulary_can_name_components():
    body = "Totals are wrong in src/payments/totals.py"
    enrichment = fallback_enrich("Wrong totals", body, vocabulary=["payments", "reports"])
    assert enrichment.kind == "bug"
    assert "payments" in enrichment.tags
    assert "frontend" not in enrichment.tags  # not in this vocabulary


def test_fallback_uses_word_boundaries_not_substrings():
    # The seed tags this frontend ("ui" in "build") and feature ("add" in "address").
    enrichment = fallback_enrich("Build fails on the address parser", "")
    assert "frontend" not in enrichment.tags
    assert enrichment.kind == "bug"
