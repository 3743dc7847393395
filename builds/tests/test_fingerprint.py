"""builds.fingerprint: normalisation, frame reduction and stable hashes. Pure, no database."""

from __future__ import annotations

import re

import pytest

from builds.fingerprint import fingerprint, normalize_error, reduce_frames


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # directories go, the file's base name stays; line and column numbers are masked
        (
            "/home/runner/work/shop/shop/src/cart.c:57:5: error: expected ';'",
            "cart.c:<n>:<n>: error: expected '<q>'",
        ),
        (
            "C:\\actions-runner\\_work\\app\\src\\main.cpp(253): error C2065",
            "main.cpp(<n>): error c2065",
        ),
        (
            "[ERROR] /builds/x/src/Foo.java:[71,65] cannot find symbol",
            "foo.java:[<n>,<n>] cannot find symbol",
        ),
        # numbers, hex, hashes, UUIDs
        ("Process 48849 has 19.36 GiB in use", "process <n> has <n> gib in use"),
        ("segfault at 0x7f3a2c1d9e50", "segfault at <hex>"),
        ("commit 4cd33ef59e1b6d327e9e3da0e6063217f076afef not found", "commit <hash> not found"),
        ("job 123e4567-e89b-12d3-a456-426614174000 failed", "job <uuid> failed"),
        # dates, times and durations
        ("expired at 2024-03-14T09:12:03.123Z", "expired at <date>"),
        ("deadline 10:42:07 passed", "deadline <time> passed"),
        ("--- FAIL: TestReserve (0.31s)", "--- fail: testreserve (<duration>)"),
        ("timed out after 310.0115718841553 seconds", "timed out after <duration>"),
        # temporary names
        ("cannot open /tmp/tmpa8x2k_q9/settings.py", "cannot open settings.py"),
        ("cannot write tmpa8x2k_q9.json", "cannot write <tmp>.json"),
        ("jenkins16410303359395480492.sh: not found", "<id>.sh: not found"),
        # quoted values
        (
            "ModuleNotFoundError: No module named 'requests'",
            "modulenotfounderror: no module named '<q>'",
        ),
        ('KeyError: "user_id"', 'keyerror: "<q>"'),
        ("undefined reference to `frobnicate'", "undefined reference to `<q>'"),
        # URLs keep their host, lose their path
        (
            "404 Not Found - GET https://registry.npmjs.org/@acme%2fui/-/ui-3.2.0.tgz",
            "<n> not found - get <url:registry.npmjs.org>",
        ),
        # level tags say how an error was printed, not what it is
        ("##[error]fatal: could not read Username", "could not read username"),
        ("npm ERR! code ERESOLVE", "code eresolve"),
    ],
)
def test_normalize_error_masks_what_changes_between_runs(text, expected):
    assert normalize_error(text) == expected


def test_apostrophes_in_prose_are_not_taken_for_quotes():
    assert (
        normalize_error("fatal: couldn't find remote ref 'main'")
        == "couldn't find remote ref '<q>'"
    )


def test_the_same_failure_in_two_builds_has_the_same_fingerprint():
    one = "/home/runner/work/shop/shop/tests/test_cart.py:27: AssertionError: assert 40 == 36 (took 0.12s)"
    two = "/builds/acme/shop/tests/test_cart.py:31: AssertionError: assert 41 == 36 (took 3.40s)"
    assert fingerprint(one) == fingerprint(two)


@pytest.mark.parametrize(
    ("one", "two"),
    [
        (
            "src/cart.c:57:5: error: expected ';'",
            "src/cart.c:57:5: error: unknown type name 'bool'",
        ),
        ("src/cart.c:57:5: error: expected ';'", "src/order.c:57:5: error: expected ';'"),
        ("ModuleNotFoundError: No module named 'x'", "ImportError: cannot import name 'x'"),
    ],
)
def test_different_failures_have_different_fingerprints(one, two):
    assert fingerprint(one) != fingerprint(two)


def test_fingerprint_is_stable_hex_and_depends_on_kind():
    value = fingerprint("error: boom", kind="compiler")
    assert re.fullmatch(r"[0-9a-f]{32}", value)
    assert value == fingerprint("error: boom", kind="compiler")
    assert value != fingerprint("error: boom", kind="test")


def test_reduce_frames_keeps_in_project_frames_without_line_numbers():
    frames = [
        '  File "/usr/lib/python3.12/subprocess.py", line 571, in run',
        '  File "/home/runner/work/shop/shop/shop/checkout.py", line 88, in checkout',
        '  File "/home/runner/work/shop/shop/shop/checkout.py", line 88, in checkout',  # recursion
        '  File "/opt/venv/lib/python3.12/site-packages/requests/api.py", line 59, in get',
        "\tat org.junit.Assert.fail(Assert.java:89)",
        "\tat com.acme.billing.TaxCalculatorTest.appliesReducedRate(TaxCalculatorTest.java:34)",
        "    at Object.<anonymous> (src/lib/__tests__/price.test.ts:13:33)",
        "    at Resolver.resolveModule (node_modules/jest-resolve/build/resolver.js:311:11)",
        "not a frame at all",
    ]
    assert reduce_frames(frames) == [
        "checkout.py:checkout",
        "com.acme.billing.taxcalculatortest.appliesreducedrate",
        "price.test.ts:object.<anonymous>",
    ]


def test_reduce_frames_with_project_markers_and_a_limit():
    frames = [f'  File "/srv/app/mod{i}.py", line {i}, in f{i}' for i in range(20)]
    frames.append('  File "/srv/vendor/lib.py", line 1, in g')
    assert reduce_frames(frames, project_markers=["/srv/vendor/"]) == ["lib.py:g"]
    assert len(reduce_frames(frames)) == 8
    assert len(reduce_frames(frames, limit=3)) == 3


def test_frames_change_the_fingerprint_only_through_project_code():
    text = "KeyError: 'user'"
    ours = ['  File "/srv/app/views.py", line 10, in show']
    library_moved = ['  File "/usr/lib/python3.13/json/decoder.py", line 99, in decode']
    assert fingerprint(text, frames=ours) != fingerprint(text)
    assert fingerprint(text, frames=library_moved) == fingerprint(text)
    assert fingerprint(
        text, frames=['  File "/other/checkout/app/views.py", line 12, in show']
    ) == fingerprint(text, frames=ours)
