"""Secret redaction: canaries disappear, ordinary text survives, logs are redacted."""

from __future__ import annotations

import io
import json
import logging
import random
import string
import sys

import pytest

from llmcore.redaction import (
    RedactingFilter,
    Redaction,
    is_secret_key,
    marker,
    redact,
    redact_obj,
    redact_with_report,
)

# Canaries are built at run time from a seeded generator so the repository holds no string a
# secret scanner would flag, and every run plants the same values.
_rng = random.Random(20240601)
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
UPPER_DIGITS = string.ascii_uppercase + string.digits
B64 = ALNUM + "+/"


def rand(alphabet: str, n: int) -> str:
    # A digit and both cases (where the alphabet has them) so it looks like the secret it stands for.
    extras = [c for c in "7Qk" if c in alphabet]
    body = [_rng.choice(alphabet) for _ in range(n - len(extras))]
    return "".join(body + extras)


def jwt() -> str:
    return (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkNhbmFyeSJ9." + rand(URLSAFE, 43)
    )


PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join(rand(B64, 64) for _ in range(6))
    + "\n"
    + rand(B64, 20)
    + "==\n-----END RSA PRIVATE KEY-----"
)

# kind, secret value, a line that carries it (`{}` marks where the secret goes)
CANARIES: list[tuple[str, str, str]] = [
    ("openai_key", "sk-proj-" + rand(URLSAFE, 64), "OPENAI_API_KEY={}"),
    ("openai_key", "sk-" + rand(ALNUM, 48), "using key {} for the request"),
    ("openai_key", "sk-svcacct-" + rand(URLSAFE, 60), "svc={} ok"),
    ("anthropic_key", "sk-ant-api03-" + rand(URLSAFE, 93) + "AA", "x-api-key: {}"),
    ("anthropic_key", "sk-ant-admin01-" + rand(URLSAFE, 80), "admin key {}."),
    ("groq_key", "gsk_" + rand(ALNUM, 52), "export GROQ_API_KEY={}"),
    ("huggingface_token", "hf_" + rand(ALNUM, 34), "huggingface-cli login --token={}"),
    ("google_api_key", "AIza" + rand(URLSAFE, 35), "https://maps.example/api?key={}&q=x"),
    ("google_oauth_token", "ya29." + rand(URLSAFE, 100), "gcloud says {}"),
    ("slack_token", "xoxb-1234567890-9876543210-" + rand(ALNUM, 24), "SLACK={}"),
    ("slack_token", "xoxp-1234567890-9876543210-" + rand(ALNUM, 32), "posted with {}"),
    ("stripe_key", "sk_live_" + rand(ALNUM, 24), "stripe.api_key = {}"),
    ("stripe_key", "rk_live_" + rand(ALNUM, 24), "restricted {}"),
    ("stripe_key", "whsec_" + rand(ALNUM, 32), "webhook signing {}"),
    ("npm_token", "npm_" + rand(ALNUM, 36), "//registry.npmjs.org/:_authToken={}"),
    ("pypi_token", "pypi-AgEIcHlwaS5vcmc" + rand(URLSAFE, 70), "twine upload -p {}"),
    ("grimoire_token", "gmr_" + rand(URLSAFE, 40), "curl -H 'X-Token: {}' /api"),
    ("github_token", "ghp_" + rand(ALNUM, 36), "remote: {} was used"),
    ("github_token", "gho_" + rand(ALNUM, 36), "oauth {}"),
    ("github_token", "ghu_" + rand(ALNUM, 36), "user-to-server {}"),
    ("github_token", "ghs_" + rand(ALNUM, 36), "installation {}"),
    ("github_token", "ghr_" + rand(ALNUM, 36), "refresh {}"),
    ("github_token", "github_pat_" + rand(ALNUM, 22) + "_" + rand(ALNUM, 59), "PAT {} here"),
    ("gitlab_token", "glpat-" + rand(URLSAFE, 20), "gitlab {}"),
    ("aws_access_key_id", "AKIA" + rand(UPPER_DIGITS, 16), "aws_access_key_id={}"),
    ("aws_access_key_id", "ASIA" + rand(UPPER_DIGITS, 16), "AccessKeyId {} expires"),
    ("aws_secret_key", rand(B64, 40), "aws_secret_access_key = {}"),
    ("aws_secret_key", rand(B64, 40), '"AWS_SECRET_ACCESS_KEY": "{}"'),
    ("cloudflare_token", rand(URLSAFE, 40), "CLOUDFLARE_API_KEY={}"),
    ("cloudflare_token", rand(URLSAFE, 40), "CF_API_TOKEN: {}"),
    ("sendgrid_key", "SG." + rand(URLSAFE, 22) + "." + rand(URLSAFE, 43), "mail {}"),
    ("jwt", jwt(), "session cookie value {} set"),
    ("bearer_token", "abc" + rand(URLSAFE, 40), "Authorization: Bearer {}"),
    ("bearer_token", rand(URLSAFE, 30), "-H 'authorization: bearer {}'"),
    ("bearer_token", rand(URLSAFE, 30) + "==", "sent Bearer {} upstream"),
    ("authorization", "dXNlcjpwYXNzd29yZDEyMw==", "Authorization: Basic {}"),
    ("authorization", rand(ALNUM, 32), "Proxy-Authorization: {}"),
    ("authorization", rand(ALNUM, 32), "{{'Authorization': 'Token {}', 'Accept': 'json'}}"),
    ("url_password", "hunter2" + rand(ALNUM, 6), "postgres://app:{}@db.internal:5432/app"),
    ("url_password", "p%40ss" + rand(ALNUM, 8), "DATABASE_URL=mysql://root:{}@127.0.0.1/db"),
    ("url_password", "s3cr" + rand(ALNUM, 8), "redis://:{}@cache:6379/0"),
    ("url_password", "pa@ss" + rand(ALNUM, 8), "amqp://guest:{}@rabbit/vhost"),
    ("password", "Tr0ub4dor" + rand(ALNUM, 4), "DB_PASSWORD={}"),
    ("password", "Tr0ub4dor" + rand(ALNUM, 4), "  password: {}"),
    ("password", "Tr0ub4dor" + rand(ALNUM, 4), '{{"password": "{}", "user": "bob"}}'),
    ("password", "Tr0ub4dor" + rand(ALNUM, 4), "--password={}"),
    ("password", "Tr0ub4dor" + rand(ALNUM, 4), "Server=db;User Id=sa;Password={};Encrypt=true"),
    ("password", "Tr0ub4dor" + rand(ALNUM, 4), "jdbc:postgresql://db/app?user=a&password={}&ssl=1"),
    ("password", "Tr0ub4dor" + rand(ALNUM, 4), "curl -u admin:{} https://ci.example"),
    ("password", "Tr0ub4dor" + rand(ALNUM, 4), "spring.datasource.password={}"),
    ("password", "Tr0ub4dor" + rand(ALNUM, 4), "$db_password = '{}';"),
    ("password", "changeme", "ADMIN_PASSWORD={}"),
    ("secret", rand(ALNUM, 32), "client_secret={}&grant_type=client_credentials"),
    ("secret", rand(ALNUM, 32), "SECRET_KEY = '{}'"),
    ("secret", rand(ALNUM, 32), "apiKey: '{}',"),
    ("secret", rand(ALNUM, 44) + "==", "AccountName=acct;AccountKey={};EndpointSuffix=x"),
    ("secret", rand(URLSAFE, 43), "blob.example/c/f?sv=2021&sig={}&se=2030"),
    ("secret", rand(ALNUM, 24), "X-Auth-Token: {}"),
    ("secret", rand(ALNUM, 24), "const accessToken = `{}`;"),
    ("secret", rand(ALNUM, 24), "credentials := {}"),
    ("secret", rand(ALNUM, 24), "'secret_key' => '{}',"),
    ("cookie", "sessionid=" + rand(ALNUM, 32) + "; csrftoken=x", "Cookie: {}"),
    (
        "slack_webhook",
        "T0" + rand(UPPER_DIGITS, 8) + "/B0" + rand(UPPER_DIGITS, 8) + "/x" + rand(ALNUM, 23),
        "https://hooks.slack.com/services/{}",
    ),
    ("private_key", PRIVATE_KEY, "key:\n{}\nnext line"),
]


def _ids() -> list[str]:
    return [f"{i}-{kind}" for i, (kind, _, _) in enumerate(CANARIES)]


@pytest.mark.parametrize(("kind", "secret", "template"), CANARIES, ids=_ids())
def test_each_canary_is_replaced_and_the_line_around_it_survives(kind, secret, template):
    text = template.format(secret)
    # A private key keeps its line breaks after the marker; everything else is replaced in place.
    kept_breaks = "\n" * secret.count("\n") if kind == "private_key" else ""
    assert redact(text) == template.format(marker(kind) + kept_breaks)


@pytest.mark.parametrize(("kind", "secret", "template"), CANARIES, ids=_ids())
def test_each_canary_is_reported_with_its_kind_and_original_span(kind, secret, template):
    text = "prefix line\n" + template.format(secret) + "\nsuffix line"
    redacted, report = redact_with_report(text)
    assert len(report) == 1
    found = report[0]
    assert found.kind == kind
    assert text[found.start : found.end] == secret
    # A private key keeps its line breaks after the marker; everything else is replaced in place.
    kept_breaks = "\n" * secret.count("\n") if kind == "private_key" else ""
    assert redacted == text[: found.start] + marker(kind) + kept_breaks + text[found.end :]


def _plant(lines: list[str]) -> tuple[str, list[str]]:
    secrets = [secret for _, secret, _ in CANARIES]
    planted = list(lines)
    for i, (_, secret, template) in enumerate(CANARIES):
        planted.insert((i * 7) % (len(planted) + 1), template.format(secret))
    return "\n".join(planted) + "\n", secrets


CI_LOG = """\
2024-05-01T10:00:00.0000000Z ##[group]Run actions/checkout@v4
2024-05-01T10:00:01.1234567Z Syncing repository: octo/widgets
2024-05-01T10:00:02.0000000Z HEAD is now at 3f786850e387550fdab836ed7e6dc881de23001b Fix flaky test
2024-05-01T10:00:03.0000000Z ##[endgroup]
2024-05-01T10:00:04.0000000Z + pip install -r requirements.txt
2024-05-01T10:00:05.0000000Z Collecting django==5.0.4 (from -r requirements.txt (line 1))
2024-05-01T10:00:06.0000000Z Successfully installed Django-5.0.4 asgiref-3.8.1 sqlparse-0.5.0
2024-05-01T10:00:07.0000000Z ============================= test session starts ==============================
2024-05-01T10:00:07.1000000Z platform linux -- Python 3.12.3, pytest-8.2.0, pluggy-1.5.0
2024-05-01T10:00:08.0000000Z tests/test_api.py::test_create_token PASSED                         [ 12%]
2024-05-01T10:00:08.5000000Z tests/test_api.py::test_login FAILED                                [ 25%]
2024-05-01T10:00:09.0000000Z E       AssertionError: assert 401 == 200
2024-05-01T10:00:09.1000000Z E        +  where 401 = <Response status_code=401, "application/json">.status_code
2024-05-01T10:00:09.2000000Z tests/test_api.py:42: AssertionError
2024-05-01T10:00:10.0000000Z Error: invalid token: expired
2024-05-01T10:00:10.1000000Z request id 123e4567-e89b-12d3-a456-426614174000 took 153.2ms (max_tokens=4096, token_type=bearer)
2024-05-01T10:00:10.2000000Z docker run --rm -u 1000:1000 -v /home/runner/work/widgets:/src image:sha256-9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
2024-05-01T10:00:11.0000000Z ##[error]Process completed with exit code 1.
"""


def test_canaries_planted_in_a_ci_log_all_disappear_and_other_lines_survive():
    lines = CI_LOG.splitlines()
    text, secrets = _plant(lines)
    out = redact(text)
    for secret in secrets:
        assert secret not in out
        # No long fragment survives either (a partial match would still leak).
        for line in secret.splitlines():
            assert line[len(line) // 4 : len(line) // 4 + 12] not in out
    assert out.count("\n") == text.count("\n")
    out_lines = set(out.splitlines())
    for line in lines:
        assert line in out_lines


DIFF = """\
diff --git a/settings.py b/settings.py
index 83db48f..bf269f4 100644
--- a/settings.py
+++ b/settings.py
@@ -10,7 +10,9 @@ import os
-DEBUG = True
+DEBUG = False
+AUTH_PASSWORD_VALIDATORS = [
+    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
+]
 password = request.POST.get("password")
 token = os.environ["GITHUB_TOKEN"]
 self.api_key = api_key
 def login(username: str, password: str, token: str | None = None) -> bool:
"""


def test_canaries_planted_in_a_diff_disappear_and_code_lines_survive():
    lines = DIFF.splitlines()
    text, secrets = _plant(lines)
    out = redact(text)
    assert not [s for s in secrets if s in out]
    for line in lines:
        assert line in out.splitlines()


ISSUE = """\
### Bug: login fails after upgrading to 2.3.1

Steps: run `./manage.py runserver`, open http://localhost:8000/login/ and sign in.
Expected the dashboard; got a 500. Traceback points at /srv/app/accounts/views.py line 88.
Version: 2.3.1 (commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3), Python 3.12, PostgreSQL 16.
"""


def test_canaries_planted_in_issue_text_disappear():
    text, secrets = _plant(ISSUE.splitlines())
    out = redact(text)
    assert not [s for s in secrets if s in out]
    assert "http://localhost:8000/login/" in out
    assert "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3" in out


FALSE_POSITIVES = [
    CI_LOG,
    DIFF,
    ISSUE,
    "commit 3f786850e387550fdab836ed7e6dc881de23001b\nAuthor: Jane <jane@example.com>",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "uuid 123e4567-e89b-12d3-a456-426614174000 and 0b5f1c1e-5e2e-4b0a-9c1d-3c2f7d1a9e11",
    "/home/runner/work/proj/src/main/java/com/example/TokenService.java:123: error",
    "C:\\Users\\runner\\AppData\\Local\\Temp\\pip-install-abc123\\setup.py",
    "numbers 1234567890 3.14159 -42 0xdeadbeef 1e-9",
    "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
    "password_validation: enabled; password_hash=pbkdf2_sha256",
    'log("password=%s", pw) and f"token={token}"',
    "authorization: for admins only",
    "max_tokens=4096 prompt_tokens: 12 completion_tokens: 40 total_tokens=52",
    "token_type=bearer token_count=12 tokenizer=cl100k",
    "secrets: inherit",
    "token: ${{ secrets.GITHUB_TOKEN }}",
    "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
    "OPENAI_API_KEY=${OPENAI_API_KEY}",
    "API_KEY=$API_KEY",
    "password: {{ vault_password }}",
    "SECRET_KEY=",
    'password=""',
    "password: ********",
    "GITHUB_TOKEN: ***",
    "token=<your-token-here>",
    "password = None",
    "token: str",
    "apiKey: string;",
    "api_key = settings.OPENAI_API_KEY",
    "password = getpass.getpass()",
    "secret = os.environ['SECRET']",
    "const token = process.env.TOKEN;",
    "password=password",
    "token=access_token",
    "Error: bad password: rejected",
    "the auth: required",
    "Authorization header missing",
    "Authorization: Bearer",
    "Use a Bearer token in the Authorization header.",
    "Bearer authentication is configured",
    "pip install scikit-learn sk-learn-compat-shim-for-old-projects",
    "docker run -u 1000:1000 image",
    "git push -u origin feature/token-refresh",
    "http://localhost:8080/path?next=/home",
    "ssh git@github.com:octo/widgets.git",
    "https://user@example.com/repo.git",
    "PWD=/home/runner/work/widgets",
    "Cookie: none set",
    "spells: 12 matched, 3 drafted",
    "key=value primary_key=id cache_key=abc123 keys: 3",
    "https://example.com/a:b@c",  # '@' only after a path separator: not userinfo
    "git config --local http.https://github.com/.extraheader AUTHORIZATION: basic ***",
    "pip install --user git+https://github.com/pytorch/vision.git@d23a6e1664d20707c11781299611436e1f0c104f",
    "[INFO] Checking unresolved references to org.codehaus.mojo.signature:java18:1.0",
    "@tf.function(input_signature=[tf.TensorSpec(shape=None)])",
    "Checking unresolved references to net.sf.androidscents.signature:android-api-level-10:2.3.3_r2",
    '{"type":"test","event":"started","name":"auth::jwt::test_create_token"}',
    "",
    "\n\n",
    "émoji ✓ 日本語 テキスト — ümlaut",
]


@pytest.mark.parametrize("text", FALSE_POSITIVES)
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == text


def test_empty_values_and_references_are_kept_but_literal_placeholders_are_not():
    # Documented decision: references point at a secret and are kept; a literal default such as
    # `changeme` is still a password somewhere and is redacted.
    assert redact("DB_PASSWORD=") == "DB_PASSWORD="
    assert redact("DB_PASSWORD=${{ secrets.DB }}") == "DB_PASSWORD=${{ secrets.DB }}"
    assert redact("DB_PASSWORD=changeme") == "DB_PASSWORD=[REDACTED:password]"
    assert redact("OPENAI_API_KEY=sk-your-secret-key-here") == "OPENAI_API_KEY=[REDACTED:secret]"


def test_prose_colon_is_kept_but_yaml_at_line_start_is_redacted():
    assert redact("Error: invalid token: expired") == "Error: invalid token: expired"
    assert redact("token: expired") == "token: [REDACTED:secret]"
    assert redact("  password: hunter") == "  password: [REDACTED:password]"
    assert (
        redact("login failed, password: Hunter2!") == "login failed, password: [REDACTED:password]"
    )


def test_a_labelled_token_is_named_by_its_shape():
    value = "ghp_" + rand(ALNUM, 36)
    assert redact(f'token: "{value}"') == 'token: "[REDACTED:github_token]"'
    assert redact(f"Authorization: token {value}") == "Authorization: token [REDACTED:github_token]"


def test_url_password_keeps_user_host_and_port():
    text = "git clone https://x-access-token:abc123XYZ@github.com/octo/widgets.git"
    assert redact(text) == (
        "git clone https://x-access-token:[REDACTED:url_password]@github.com/octo/widgets.git"
    )
    assert redact("postgres://u:${PGPASSWORD}@db/app") == "postgres://u:${PGPASSWORD}@db/app"


def test_a_private_key_block_keeps_the_line_count_and_what_follows():
    text = f"before\n{PRIVATE_KEY}\nafter the key"
    out = redact(text)
    assert out.count("\n") == text.count("\n")
    assert out.startswith("before\n[REDACTED:private_key]\n")
    assert out.endswith("\nafter the key")


@pytest.mark.parametrize(
    "label",
    ["OPENSSH PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY"],
)
def test_every_private_key_label_is_redacted(label):
    body = "\n".join(rand(B64, 64) for _ in range(3))
    text = f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"
    assert redact(text) == "[REDACTED:private_key]\n\n\n\n"


def test_a_pgp_private_key_block_with_headers_is_redacted():
    body = "\n".join(rand(B64, 64) for _ in range(3))
    text = (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nComment: test\n\n"
        f"{body}\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----\ndone"
    )
    out = redact(text)
    assert body.splitlines()[1] not in out
    assert out.endswith("\ndone")


def test_a_private_key_with_ci_timestamps_on_every_line_is_redacted():
    lines = PRIVATE_KEY.splitlines()
    text = "\n".join(f"2024-05-01T10:00:0{i}.000Z {line}" for i, line in enumerate(lines))
    out = redact(text)
    for line in lines[1:-1]:
        assert line not in out
    assert out.startswith("2024-05-01T10:00:00.000Z [REDACTED:private_key]")


def test_a_private_key_cut_off_before_its_end_line_is_still_redacted():
    lines = PRIVATE_KEY.splitlines()[:-2]
    text = "\n".join(lines) + "\n\nlog continues here"
    out = redact(text)
    for line in lines[1:]:
        assert line not in out
    assert out.endswith("\n\nlog continues here")
    assert out.count("\n") == text.count("\n")


def test_the_report_gives_offsets_in_characters_of_the_original_text():
    secret = "ghp_" + rand(ALNUM, 36)
    text = f"héllo wörld ✓ {secret} and password=Hunter2x"
    out, report = redact_with_report(text)
    assert [r.kind for r in report] == ["github_token", "password"]
    assert text[report[0].start : report[0].end] == secret
    assert text[report[1].start : report[1].end] == "Hunter2x"
    assert out == "héllo wörld ✓ [REDACTED:github_token] and password=[REDACTED:password]"
    assert isinstance(report[0], Redaction)


def test_redact_with_report_on_clean_text_reports_nothing():
    assert redact_with_report("") == ("", [])
    assert redact_with_report(CI_LOG) == (CI_LOG, [])


def test_redaction_is_idempotent_on_every_fixture():
    text, _ = _plant(CI_LOG.splitlines() + DIFF.splitlines() + ISSUE.splitlines())
    once = redact(text)
    assert redact(once) == once
    assert redact_with_report(once)[1] == []
    for text in FALSE_POSITIVES:
        assert redact(redact(text)) == redact(text)


@pytest.mark.parametrize(("kind", "secret", "template"), CANARIES, ids=_ids())
def test_redaction_is_idempotent_per_canary(kind, secret, template):
    once = redact(template.format(secret))
    assert redact(once) == once


def test_redact_obj_recurses_and_redacts_values_under_secret_keys():
    token = "ghp_" + rand(ALNUM, 36)
    context = {
        "title": f"push failed with {token}",
        "api_key": "abc123",
        "nested": {"password": "hunter2", "items": [f"Bearer {rand(ALNUM, 30)}", 3, None]},
        "pair": ("postgres://u:pw123@h/db", 1.5),
        "count": 3,
        "token": 12345678,
        "max_tokens": 4096,
        "secret": None,
        "client_secret": "",
        "auth": {"user": "bob", "token": "${TOKEN}"},
        "flags": {"a", f"key {token}"},
    }
    original = json.dumps(context, default=sorted)
    out = redact_obj(context)
    assert out["title"] == "push failed with [REDACTED:github_token]"
    assert out["api_key"] == "[REDACTED:secret]"
    assert out["nested"]["password"] == "[REDACTED:password]"
    assert out["nested"]["items"][0] == "Bearer [REDACTED:bearer_token]"
    assert out["nested"]["items"][1:] == [3, None]
    assert out["pair"] == ("postgres://u:[REDACTED:url_password]@h/db", 1.5)
    assert out["count"] == 3
    assert out["token"] == "[REDACTED:secret]"
    assert out["max_tokens"] == 4096
    assert out["secret"] is None
    assert out["client_secret"] == ""
    assert out["auth"] == {"user": "bob", "token": "${TOKEN}"}
    assert out["flags"] == {"a", "key [REDACTED:github_token]"}
    assert json.dumps(context, default=sorted) == original  # the input is not modified


def test_redact_obj_leaves_other_objects_alone():
    sentinel = object()
    assert redact_obj(sentinel) is sentinel
    assert redact_obj(b"password=hunter2") == b"password=hunter2"
    assert redact_obj(7) == 7


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("password", True),
        ("DB_PASSWORD", True),
        ("apiKey", True),
        ("X-Api-Key", True),
        ("client_secret", True),
        ("GITHUB_TOKEN", True),
        ("AccountKey", True),
        ("max_tokens", False),
        ("token_type", False),
        ("password_validation", False),
        ("primary_key", False),
        ("secrets", False),
        ("author", False),
    ],
)
def test_is_secret_key(key, expected):
    assert is_secret_key(key) is expected


# --- logging ----------------------------------------------------------------------------------


class _ExcFormatter(logging.Formatter):
    """Formats exceptions from exc_info itself, like grimoire.logs.JsonFormatter does."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.getMessage()} extra={getattr(record, 'ctx', None)!r}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


@pytest.fixture
def capture():
    """A logger whose handler carries the RedactingFilter; yields (logger, stream)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(_ExcFormatter())
    logger = logging.getLogger("llmcore.tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_the_filter_redacts_the_message_and_its_args(capture):
    logger, stream = capture
    token = "ghp_" + rand(ALNUM, 36)
    logger.info("calling with %s and %d retries", f"Authorization: token {token}", 3)
    logger.info("direct password=Hunter2x in message")
    logger.info("mapping %(url)s", {"url": "https://u:pw123@h/x"})
    out = stream.getvalue()
    assert token not in out
    assert "Hunter2x" not in out
    assert "pw123" not in out
    assert "calling with Authorization: token [REDACTED:github_token] and 3 retries" in out
    assert "mapping https://u:[REDACTED:url_password]@h/x" in out


def test_the_filter_redacts_extra_values_and_keys(capture):
    logger, stream = capture
    secret = "sk-proj-" + rand(URLSAFE, 40)
    logger.warning("ctx", extra={"ctx": {"prompt": f"use {secret}", "api_key": "abc123"}})
    out = stream.getvalue()
    assert secret not in out
    assert "abc123" not in out
    assert "[REDACTED:openai_key]" in out


def test_the_filter_redacts_exception_messages_and_their_causes(capture):
    logger, stream = capture
    token = "ghp_" + rand(ALNUM, 36)
    password = "Pw0rd" + "99"  # built at run time: traceback source lines show the literal
    try:
        try:
            raise ConnectionError(f"https://bot:{password}@git.example/repo.git refused")
        except ConnectionError as inner:
            raise RuntimeError(f"push failed with {token}") from inner
    except RuntimeError:
        logger.exception("job failed")
    out = stream.getvalue()
    assert token not in out
    assert "Pw0rd99" not in out
    assert "RuntimeError: push failed with [REDACTED:github_token]" in out
    assert "ConnectionError: https://bot:[REDACTED:url_password]@git.example/repo.git" in out
    assert "The above exception was the direct cause" in out
    assert "Traceback (most recent call last)" in out


def test_the_filter_works_with_the_standard_formatter_and_stack_info():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("llmcore.tests.redaction.std")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        secret = "Hunter2x"
        try:
            raise ValueError(f"password={secret}")
        except ValueError:
            logger.error("boom", exc_info=True, stack_info=True)
        record = logging.makeLogRecord(
            {"msg": "s", "exc_text": f"old text password={secret}", "stack_info": "x"}
        )
        RedactingFilter().filter(record)
        assert record.exc_text == "old text password=[REDACTED:password]"
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert secret not in out
    assert "ValueError: password=[REDACTED:password]" in out
    assert "Stack (most recent call last)" in out


def test_a_broken_format_string_is_still_logged_redacted():
    record = logging.makeLogRecord(
        {"msg": "password=Hunter2x %s %s", "args": ("only-one", "Bearer abcDEF123456789")}
    )
    record.args = ("only-one",)  # one argument for two placeholders: formatting fails
    assert RedactingFilter().filter(record) is True
    assert record.msg == "password=[REDACTED:password] %s %s"
    assert record.args == ("only-one",)
    record = logging.makeLogRecord({"msg": "%s %s", "args": ("Bearer abcDEF123456789",)})
    RedactingFilter().filter(record)
    assert record.args == ("Bearer [REDACTED:bearer_token]",)


def test_an_exception_group_is_redacted():
    record = logging.makeLogRecord({"msg": "group"})
    secret = "Hunter" + "2x"  # built at run time: traceback source lines show the literal
    try:
        raise ExceptionGroup("many", [ValueError(f"password={secret}")])
    except ExceptionGroup:
        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    text = logging.Formatter().formatException(record.exc_info)
    assert "Hunter2x" not in text
    assert "[REDACTED:password]" in text


# --- size and hostile input ---------------------------------------------------------------------


def test_a_ten_megabyte_log_is_redacted():
    token = "ghp_" + rand(ALNUM, 36)
    block = CI_LOG + f"2024-05-01T10:00:12.0000000Z using {token}\n"
    text = block * (10_000_000 // len(block) + 1)
    out = redact(text)
    assert token not in out
    assert out.count("[REDACTED:github_token]") == text.count(token)
    assert out.count("\n") == text.count("\n")


@pytest.mark.parametrize(
    "text",
    [
        "a" * 2_000_000,
        "sk-" * 500_000,
        "password=" * 200_000,
        "-----BEGIN RSA PRIVATE KEY-----" * 50_000,
        "Bearer " * 200_000,
        "http://" * 300_000,
        "x" * 1_000_000 + "password=" + "y" * 1_000_000,
        "token: abc\n" * 50_000,
        "é" + "token=abc1 " * 50_000,
        "\r\n" * 1_000_000,
    ],
    ids=[
        "one-long-word",
        "sk-repeated",
        "password-repeated",
        "key-headers",
        "bearer-repeated",
        "scheme-repeated",
        "long-key-and-value",
        "prose-colon-lines",
        "non-ascii-many-matches",
        "crlf",
    ],
)
def test_hostile_inputs_complete(text):
    out = redact(text)
    assert redact(out) == out


def test_non_ascii_values_and_text_around_them_are_handled_by_character():
    text = "ünïcødé ✓ password=pässwörd1 then ghp_" + "a1B2" * 9 + " ✓ end"
    out, report = redact_with_report(text)
    assert out == "ünïcødé ✓ password=[REDACTED:password] then [REDACTED:github_token] ✓ end"
    assert [text[r.start : r.end] for r in report] == ["pässwörd1", "ghp_" + "a1B2" * 9]
