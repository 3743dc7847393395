"""Secret redaction for text that leaves the process (prompts) or reaches the logs.

`redact(text)` replaces API keys, tokens, passwords, private keys and similar credentials with
`[REDACTED:<kind>]` and keeps everything around them, so a redacted log line still says what
happened. It never changes the number of lines (a private key block keeps its line breaks), so line
numbers computed on redacted text match the original.

How it stays fast and safe on hostile input: every rule is part of ONE RE2 regex, compiled once.
RE2 runs in time linear in the input whatever the pattern (no backtracking), and the whole text is
scanned in a single pass; Python code runs only on the rare matches, to check them and build the
replacement. Nothing here can take quadratic time on a long line.

Decisions (documented because each is a trade-off between leaking and over-redacting):

- Prefixed credentials (`sk-proj-…`, `ghp_…`, `AKIA…`, `xoxb-…`, JWTs, …) are redacted wherever they
  appear. The bare `sk-…` form must look random (a digit, or upper and lower case letters), so
  kebab-case words such as `sk-learn-…` are left alone.
- A value is redacted when its key names a secret (`password`, `DB_PASSWORD`, `api_key`,
  `X-Auth-Token`, `client_secret`, `AccountKey`, `sig`, …; the key must END with the secret word, so
  `max_tokens=4096`, `token_type`, `password_validation` and `secrets:` are not secrets). The
  separators understood are `=`, `:`, `:=` and `=>`, with optional quotes around key and value
  (`.env`, YAML, INI, JSON, Python/JS literals, query strings, connection strings).
- Such a value is KEPT when it cannot be a secret: empty or without a letter or digit (`""`, `***`),
  a reference to a secret rather than the secret (`${{ secrets.X }}`, `$VAR`, `${VAR}`, `{{ var }}`,
  `%(var)s`, `<your-token>`, `process.env.X`, `os.environ[...]`), code (`get_token()`,
  `self.password`, `password=password`, `token=access_token`), a type or literal (`str`, `string`,
  `None`, `null`, `true`, …), or an earlier redaction marker (which makes `redact` idempotent).
  Literal placeholders such as `changeme` or `your-key-here` ARE redacted: a default password is still
  a password somewhere, and redacting one costs the reader nothing.
- `token: expired` in the middle of a sentence is prose, not YAML: with a `:` separator, a bare
  secret word as key (`token`, `password`, …) that is not at the start of its line, and a purely
  alphabetic value, the value is kept. `password: hunter` at the start of a line is redacted.
- Not covered: space-separated CLI flags (`--password hunter2`, `mysql -p…`), `.netrc`
  (`password hunter2`), XML elements, and unlabelled high-entropy strings (they are indistinguishable
  from git SHAs and hashes).
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any, NamedTuple

import re2

MARKER_PREFIX = "[REDACTED"


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


class Redaction(NamedTuple):
    """One replaced span: its kind and its [start, end) offsets in the ORIGINAL text."""

    kind: str
    start: int
    end: int


# --- the rules ------------------------------------------------------------------------------------
#
# Order matters: RE2 picks the leftmost match and, at the same position, the first alternative that
# matches. Context-bearing rules (headers, key=value, URLs) come before bare token shapes so the
# surrounding label is kept and the kind is as specific as possible.

# Words a key must END with to name a secret (case-insensitive). Qualified forms of "key" only: a
# bare `key`, `primary_key` or `cache_key` is not a credential.
_LABEL_WORDS = (
    r"passwords?|passwd|passphrase|pwd|secret|token|"
    r"(?:api|access|secret|private|account|signing|encryption|master|client|session|auth|app|"
    r"license|shared[_.-]?access|consumer|service[_.-]?account)[_.-]?key|"
    r"credentials?|auth|sessionid|session[_.-]id|signature|sig|dsn|"
    r"connection[_.-]?string|conn[_.-]?str"
)

# An unquoted value runs to whitespace or one of these; quoted values run to the closing quote.
_VALUE = (
    r'"(?:[^"\\\r\n]|\\.)*"'
    r"|'(?:[^'\\\r\n]|\\.)*'"
    r"|`[^`\r\n]*`"
    # Unquoted: must hold a letter or digit, so `***` and `[` never become matches at all (every
    # match costs a call into Python; rejecting in the pattern is free).
    # A value never starts with ':' so Rust/C++ paths (`auth::jwt::test`) are not `auth: …`.
    r"|(?:[^\s\"'`;,&<>=:A-Za-z0-9][^\s\"'`;,&<>A-Za-z0-9]*)?[A-Za-z0-9][^\s\"'`;,&<>]*"
)

_TOKEN_RULES: list[tuple[str, str]] = [
    ("anthropic_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    ("openai_key", r"\bsk-[A-Za-z0-9_-]{20,}"),
    ("groq_key", r"\bgsk_[A-Za-z0-9]{20,}"),
    ("huggingface_token", r"\bhf_[A-Za-z0-9]{30,}"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{30,}"),
    ("google_oauth_token", r"\bya29\.[0-9A-Za-z_-]{20,}"),
    ("google_client_secret", r"\bGOCSPX-[0-9A-Za-z_-]{20,}"),
    ("slack_token", r"\bxox[abeoprs]-[0-9A-Za-z-]{10,}|\bxapp-[0-9]-[0-9A-Za-z-]{10,}"),
    ("stripe_key", r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}|\bwhsec_[0-9A-Za-z]{20,}"),
    ("npm_token", r"\bnpm_[A-Za-z0-9]{36,}"),
    ("pypi_token", r"\bpypi-[A-Za-z0-9_-]{50,}"),
    ("grimoire_token", r"\bgmr_[A-Za-z0-9_-]{20,}"),
    ("github_token", r"\bgh[pousr]_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{40,}"),
    ("gitlab_token", r"\bgl(?:pat|dt|rt|cbt|ptt)-[A-Za-z0-9_-]{20,}"),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    ("sendgrid_key", r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
    ("digitalocean_token", r"\bdo[opr]_v1_[a-f0-9]{64}"),
    ("shopify_token", r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("databricks_token", r"\bdapi[a-f0-9]{32}"),
    ("age_secret_key", r"\bAGE-SECRET-KEY-1[0-9A-Z]{58}"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
]

_RULES: list[tuple[str, str]] = [
    (
        "private_key",
        # A whole block, or (log cut short) the header and the base64-looking lines after it.
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)"
        r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"|-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----[^\r\n]*"
        r"(?:\r?\n[^\r\n]*[A-Za-z0-9+/=]{32}[^\r\n]*)*",
    ),
    (
        "authorization",
        r"(?i:\b(?:proxy-)?authorization)[\"']?[ \t]*[:=][ \t]*[\"']?"
        r"(?P<authorization_scheme>(?i:bearer|basic|token|bot|apikey|sso-key|negotiate|ntlm|"
        r"digest|aws4-hmac-sha256|gitlab-ci-token)[ \t]+)?"
        # GitHub Actions logs print `AUTHORIZATION: basic ***`: a value needs a letter or digit.
        r"(?P<authorization_value>[^\s\"',;A-Za-z0-9]*[A-Za-z0-9][^\s\"',;]*)",
    ),
    ("cookie", r"(?i:\b(?:set-)?cookie)[ \t]*:[ \t]*(?P<cookie_value>[^\r\n\"']+)"),
    ("bearer", r"(?i:\bbearer)[ \t]+(?P<bearer_value>[A-Za-z0-9._~+/-]+=*)"),
    (
        "slack_webhook",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<slack_webhook_value>[A-Za-z0-9/_-]+)",
    ),
    (
        "url_password",
        # scheme://user:password@host. The password may hold ':' or '@'; it ends at the last '@'
        # before the path, so `user:p@ss@host` loses all of `p@ss`.
        r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@\"'<>]*:(?P<url_password_value>[^\s/?#\"'<>]+)@",
    ),
    (
        "curl_user",
        # `pip install --user git+https://…` is a URL, not user:password: no '/' after the colon.
        r"\B(?:--user[ \t=]+|-u[ \t]*)[\"']?[^\s:\"'/]+:"
        r"(?P<curl_user_value>[^\s\"'/][^\s\"']*)",
    ),
    (
        "kv",
        r"(?P<kv_key>[A-Za-z0-9_.-]*(?i:" + _LABEL_WORDS + r"))"
        r"(?P<kv_sep>[\"']?[ \t]*(?:=>|:=|=|:)[ \t]*)"
        r"(?P<kv_value>" + _VALUE + r")",
    ),
    *((f"t_{kind}", f"(?:{pattern})") for kind, pattern in _TOKEN_RULES),
]


def _compile() -> tuple[Any, list[tuple[str, int]], dict[str, int]]:
    alternatives = [f"(?P<{name}>{pattern})" for name, pattern in _RULES]
    options = re2.Options()
    # Headroom for the DFA state cache of this large pattern: when RE2 runs out of it, it falls back
    # to its NFA, still linear but several times slower.
    options.max_mem = 64 << 20
    compiled = re2.compile("|".join(alternatives), options)
    index = compiled.groupindex
    return compiled, [(name, index[name]) for name, _ in _RULES], dict(index)


_PATTERN, _RULE_GROUPS, _GROUP = _compile()
# The bare token shapes again, to name the kind of a labelled value (`token: ghp_…` is a GitHub
# token). These checks run on one short value at a time with Python's `re`: each alternative starts
# with a literal and has a single unambiguous repetition, so a fullmatch is linear, and it avoids the
# RE2 wrapper's per-call overhead.
_TOKEN_SHAPE = re.compile(
    "|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _TOKEN_RULES), re.ASCII
)

# --- judging a candidate value -------------------------------------------------------------------

# Literals and type names that sit where a secret could, in code, configs and schemas.
_NOT_SECRET_WORDS = frozenset(
    {
        "true",
        "false",
        "null",
        "none",
        "nil",
        "undefined",
        "yes",
        "no",
        "on",
        "off",
        "required",
        "optional",
        "str",
        "string",
        "bytes",
        "int",
        "integer",
        "bool",
        "boolean",
        "number",
        "any",
        "object",
        "dict",
        "list",
        "array",
        "include",
        "omit",
        "same-origin",
        "inherit",
        "redacted",
        "masked",
        "hidden",
        "secretstr",
    }
)
_CODE_EXPR = re.compile(
    # attribute access or a call/subscript: self.password, os.environ[, get_token(, env("X")
    r"[A-Za-z_$][A-Za-z0-9_$]*(?:(?:\.|::|->)[A-Za-z_$][A-Za-z0-9_$]*)*(?:\(.*|\[.*)?",
    re.ASCII,
)
_SECRET_KEY_RE = re.compile(r"[A-Za-z0-9_.-]*(?:" + _LABEL_WORDS + r")", re.ASCII | re.IGNORECASE)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BARE_KEYS = frozenset(
    {"password", "passwd", "passphrase", "secret", "token", "auth", "credentials", "credential"}
)


def _has_alnum(value: str) -> bool:
    return any(ch.isalnum() for ch in value)


def _looks_random(value: str) -> bool:
    has_digit = any(ch.isdigit() for ch in value)
    has_upper = any(ch.isupper() for ch in value)
    has_lower = any(ch.islower() for ch in value)
    return has_digit or (has_upper and has_lower)


def _is_reference(value: str) -> bool:
    """A pointer to a secret ($VAR, ${{ secrets.X }}, {{ var }}, <your-key>), not a secret."""
    v = value.strip()
    if not v:
        return True
    if v.startswith(MARKER_PREFIX):
        return True
    if v[0] == "$" and (len(v) == 1 or v[1] in "{(" or v[1].isalpha() or v[1] == "_"):
        return True
    if v.startswith(("{{", "{%", "%(", "%{", "#{", "<%")):
        return True
    if v[0] == "<" and v.endswith(">"):
        return True
    # printf/format placeholders: "password=%s" % pw, f"token={token}"
    if v in ("%s", "%r", "%d") or (v[0] == "{" and v.endswith("}")):
        return True
    return v.startswith(("process.env", "os.environ", "os.getenv", "ENV[", "env(", "secrets."))


def _is_code(value: str, key: str) -> bool:
    """An expression in source code (a variable, attribute, call) rather than a literal."""
    if value[0] in "[({" and any(ch in value for ch in "(.=,"):
        return True  # a list/dict/tuple literal or call in code: `input_signature=[tf.Spec(…)]`
    if not _CODE_EXPR.fullmatch(value):
        return False
    if "(" in value or "[" in value:
        return True
    if "." in value or "::" in value or "->" in value:
        # `self.password`, `settings.SECRET_KEY`; but a dotted value whose later part starts with a
        # digit ("Summer.2024") never matches _CODE_EXPR, so it stays a candidate secret.
        return True
    # A bare identifier that is itself a secret-ish name: `password=password`, `token=access_token`.
    return value.lower() == key.lower() or is_secret_key(value)


def _unquote(value: str) -> tuple[str, str, str]:
    if len(value) >= 2 and value[0] in "\"'`" and value[-1] == value[0]:
        return value[0], value[1:-1], value[-1]
    return "", value, ""


def _is_openai_name(value: str) -> bool:
    """`sk-` + a kebab-case word is a name (`sk-learn-…`), not a key; real keys look random."""
    return not value.startswith(("sk-proj-", "sk-svcacct-", "sk-admin-")) and not _looks_random(
        value[3:]
    )


def _shape_kind(value: str) -> str | None:
    m = _TOKEN_SHAPE.fullmatch(value)
    if m is None or (m.lastgroup == "openai_key" and _is_openai_name(value)):
        return None
    return m.lastgroup


def _kv_kind(key: str, value: str) -> str:
    shaped = _shape_kind(value)
    if shaped:
        return shaped
    low = key.lower()
    if "aws" in low and "secret" in low:
        return "aws_secret_key"
    if "cloudflare" in low or low.startswith(("cf_", "cf-")):
        return "cloudflare_token"
    if "pass" in low or "pwd" in low:
        return "password"
    return "secret"


def _line_prefix(text: str, pos: int) -> str:
    # Look back a bounded distance only: an unbounded rfind per match is quadratic on long lines.
    floor = max(0, pos - 200)
    start = max(text.rfind("\n", floor, pos), text.rfind("\r", floor, pos)) + 1
    return text[max(start, floor) : pos]


def _is_prose(text: str, key_start: int, key: str, sep: str, value: str) -> bool:
    """`invalid token: expired` is a sentence; `token: abc` at the start of a line is YAML."""
    if ":" not in sep or "=" in sep or key.lower() not in _BARE_KEYS:
        return False
    if not value.isalpha():
        return False
    prefix = _line_prefix(text, key_start).strip(" \t-*>#")
    return bool(prefix) and not prefix.endswith(("{", ",", "(", "[", "|"))


def _keep_value(key: str, value: str) -> bool:
    """True when a labelled value cannot be a secret (see the module docstring)."""
    if not _has_alnum(value) or _is_reference(value):
        return True
    if _shape_kind(value):
        return False
    if value.lower() in _NOT_SECRET_WORDS:
        return True
    if _is_code(value, key):
        return True
    # `PWD=/home/runner/work` is the shell's working directory, not a password.
    return key.lower() in ("pwd", "oldpwd") and value.startswith(("/", "~", "."))


# --- the substitution -----------------------------------------------------------------------------


class _Hit:
    """One match of the combined pattern, read through spans into the original str.

    The scan always runs over UTF-8 bytes: RE2 works on bytes, and letting its wrapper translate
    every group's offsets to characters costs more than the match itself. For ASCII text byte and
    character offsets are equal; otherwise only the offsets a handler asks for are translated, by
    decoding the few bytes between the match start and the group.
    """

    __slots__ = ("bstart", "data", "end", "m", "report", "start", "text")

    def __init__(self, text: str, data: bytes | None, report: list[Redaction] | None) -> None:
        self.text = text
        self.data = data  # None when the text is ASCII (offsets need no translation)
        self.report = report
        self.m: Any = None
        self.start = self.end = self.bstart = 0

    def group(self, name: str) -> tuple[str, int, int]:
        bstart, bend = self.m.span(_GROUP[name])
        if bstart < 0:
            return "", -1, -1
        data = self.data
        if data is None:
            return self.text[bstart:bend], bstart, bend
        value = data[bstart:bend].decode()
        start = self.start + len(data[self.bstart : bstart].decode())
        return value, start, start + len(value)

    def whole(self) -> str:
        return self.text[self.start : self.end]

    def add(self, kind: str, start: int, end: int) -> str:
        if self.report is not None:
            self.report.append(Redaction(kind, start, end))
        return marker(kind)

    def replace_span(self, kind: str, start: int, end: int) -> str:
        """The match with only [start, end) replaced, keeping the label around it."""
        text = self.text
        return text[self.start : start] + self.add(kind, start, end) + text[end : self.end]

    def replace_group(self, name: str, kind: str) -> str:
        _, start, end = self.group(name)
        return self.replace_span(kind, start, end)


def _on_private_key(h: _Hit) -> str:
    # Keep the line breaks so line numbers computed after redaction still match the original.
    breaks = "".join(_LINE_BREAK.findall(h.whole()))
    return h.add("private_key", h.start, h.end) + breaks


def _on_authorization(h: _Hit) -> str:
    value, _, _ = h.group("authorization_value")
    scheme, _, _ = h.group("authorization_scheme")
    if _is_reference(value) or value.lower() in _NOT_SECRET_WORDS:
        return h.whole()
    # Without a scheme the value must look like a credential: `authorization: Bearer` with the
    # token elsewhere, or `authorization: for admins only`, is not one.
    if not scheme and (len(value) < 8 or not _looks_random(value)):
        return h.whole()
    kind = _shape_kind(value) or (
        "bearer_token" if scheme.strip().lower() == "bearer" else "authorization"
    )
    return h.replace_group("authorization_value", kind)


def _on_cookie(h: _Hit) -> str:
    value, _, _ = h.group("cookie_value")
    if not value.strip() or _is_reference(value) or "=" not in value:
        return h.whole()
    return h.replace_group("cookie_value", "cookie")


def _on_bearer(h: _Hit) -> str:
    value, _, _ = h.group("bearer_value")
    # "Bearer tokens are sent in a header" is prose; a token is long and random-looking.
    if len(value) < 8 or not _looks_random(value):
        return h.whole()
    return h.replace_group("bearer_value", _shape_kind(value) or "bearer_token")


def _on_url_password(h: _Hit) -> str:
    value, _, _ = h.group("url_password_value")
    if _is_reference(value) or not _has_alnum(value):
        return h.whole()
    return h.replace_group("url_password_value", "url_password")


def _on_curl_user(h: _Hit) -> str:
    value, _, _ = h.group("curl_user_value")
    # `docker run -u 1000:1000` is a uid:gid pair, not a login.
    if _is_reference(value) or not _has_alnum(value) or value.isdigit():
        return h.whole()
    return h.replace_group("curl_user_value", "password")


def _on_slack_webhook(h: _Hit) -> str:
    return h.replace_group("slack_webhook_value", "slack_webhook")


def _on_kv(h: _Hit) -> str:
    key, key_start, _ = h.group("kv_key")
    sep, _, _ = h.group("kv_sep")
    raw, start, end = h.group("kv_value")
    open_q, value, close_q = _unquote(raw)
    if open_q:
        # A quoted literal is data, not code: only references and empty values are kept.
        if not _has_alnum(value) or _is_reference(value):
            return h.whole()
    elif _keep_value(key, value) or _is_prose(h.text, key_start, key, sep, value):
        return h.whole()
    # `signature`/`sig` also label non-secrets (Maven's `org.codehaus.mojo.signature:java18:1.0`,
    # `input_signature=[…]`); a URL signature worth hiding is long and its key is not dotted.
    if key.lower().endswith(("sig", "signature")) and (len(value) < 16 or "." in key):
        return h.whole()
    return h.replace_span(_kv_kind(key, value), start + len(open_q), end - len(close_q))


def _on_token(kind: str) -> Any:
    def handler(h: _Hit) -> str:
        value = h.whole()
        if kind == "openai_key" and _is_openai_name(value):
            return value
        return h.add(kind, h.start, h.end)

    return handler


_HANDLERS: dict[str, Any] = {
    "private_key": _on_private_key,
    "authorization": _on_authorization,
    "cookie": _on_cookie,
    "bearer": _on_bearer,
    "slack_webhook": _on_slack_webhook,
    "url_password": _on_url_password,
    "curl_user": _on_curl_user,
    "kv": _on_kv,
    **{f"t_{kind}": _on_token(kind) for kind, _ in _TOKEN_RULES},
}
# Exactly one rule's group takes part in a match, so the order of these checks only matters for
# speed: the labelled key=value rule is by far the most frequent match, then the bare tokens.
_DISPATCH = sorted(
    ((idx, _HANDLERS[name]) for name, idx in _RULE_GROUPS),
    key=lambda item: item[0] != _GROUP["kv"],
)


def _substitute(text: str, report: list[Redaction] | None) -> str:
    ascii_only = text.isascii()
    data = text.encode("ascii") if ascii_only else text.encode("utf-8")
    hit = _Hit(text, None if ascii_only else data, report)
    pieces: list[str] = []
    last = 0
    # Where the previous match ended, in bytes and in characters (for non-ASCII text).
    cursor_b = cursor_c = 0
    for m in _PATTERN.finditer(data):
        bstart, bend = m.span()
        if ascii_only:
            start, end = bstart, bend
        else:
            start = cursor_c + len(data[cursor_b:bstart].decode())
            end = start + len(data[bstart:bend].decode())
            cursor_b, cursor_c = bend, end
        hit.m, hit.start, hit.end, hit.bstart = m, start, end, bstart
        for idx, handler in _DISPATCH:
            if m.span(idx)[0] >= 0:
                replacement = handler(hit)
                break
        else:  # pragma: no cover - some alternative always matched
            replacement = text[start:end]
        if start > last:
            pieces.append(text[last:start])
        pieces.append(replacement)
        last = end
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


# --- public API -----------------------------------------------------------------------------------


def redact(text: str) -> str:
    """`text` with every secret replaced by `[REDACTED:<kind>]`. Idempotent; keeps line count."""
    if not text:
        return text
    return _substitute(text, None)


def redact_with_report(text: str) -> tuple[str, list[Redaction]]:
    """Like `redact`, plus what was replaced (kinds and spans in the original text, in order)."""
    report: list[Redaction] = []
    if not text:
        return text, report
    return _substitute(text, report), report


def is_secret_key(key: str) -> bool:
    """True when a mapping key / variable name names a secret (`api_key`, `DB_PASSWORD`, …)."""
    # Names are short; the length cap keeps the backtracking fullmatch cheap on hostile input.
    return len(key) <= 200 and bool(_SECRET_KEY_RE.fullmatch(key))


def _redact_keyed(key: Any, value: Any) -> Any:
    if isinstance(key, str) and is_secret_key(key):
        if isinstance(value, str):
            if value and (_shape_kind(value) or not _keep_value(key, value)):
                return marker(_kv_kind(key, value))
            return redact(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return marker(_kv_kind(key, str(value)))
    return redact_obj(value)


def redact_obj(obj: Any) -> Any:
    """A copy of `obj` with every string redacted, recursing into dicts, lists, tuples and sets.

    A value stored under a secret-looking key (`{"api_key": "abc"}`) is redacted whole, since the
    text rules alone cannot see the label. Other objects are returned unchanged.
    """
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact_obj(k): _redact_keyed(k, v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_obj(v) for v in obj]
    if isinstance(obj, tuple):
        items = [redact_obj(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, set | frozenset):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


# --- logging --------------------------------------------------------------------------------------

_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _redacted_exception(exc: BaseException, depth: int = 0) -> BaseException:
    """An exception that prints like `exc` but with its message (and chain) redacted.

    Formatters call `formatException(record.exc_info)` themselves, so the exception object is what
    has to be safe; its traceback frames are reused as they are.
    """
    cls = type(exc)
    if isinstance(exc, BaseExceptionGroup):
        # Sub-exceptions print from the group object itself: fold them into the message.
        message = redact("".join(traceback.format_exception(exc)).rstrip())
    else:
        message = redact(str(exc))
    namespace = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__str__": lambda self: message,
        "__repr__": lambda self: f"{cls.__qualname__}({message!r})",
    }
    fake_cls = type(cls.__name__, (Exception,), namespace)
    fake = fake_cls()
    fake.__traceback__ = exc.__traceback__
    notes = getattr(exc, "__notes__", None)
    if notes:
        fake.__notes__ = [redact(str(n)) for n in notes]
    if depth < 20:
        if exc.__cause__ is not None:
            fake.__cause__ = _redacted_exception(exc.__cause__, depth + 1)
        elif exc.__context__ is not None and not exc.__suppress_context__:
            fake.__context__ = _redacted_exception(exc.__context__, depth + 1)
    fake.__suppress_context__ = exc.__suppress_context__
    return fake


class RedactingFilter(logging.Filter):
    """Redact a record's message, arguments, `extra=` values, exception and stack before output.

    The message is formatted once (`msg % args`), redacted, and stored back with `args` cleared, so
    every handler and formatter sees only the redacted text. Attach it to handlers (a logger filter
    does not run for records propagated from child loggers).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must still be logged, redacted
            record.msg = redact(str(record.msg))
            record.args = redact_obj(record.args) if record.args else record.args
        else:
            record.msg = redact(message)
            record.args = None
        if "message" in record.__dict__:
            record.message = redact(str(record.message))
        for key, value in list(record.__dict__.items()):
            if key in _RECORD_ATTRS or key.startswith("_"):
                continue
            setattr(record, key, _redact_keyed(key, value))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fake = _redacted_exception(exc)
            record.exc_info = (type(fake), fake, exc.__traceback__)
            record.exc_text = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
