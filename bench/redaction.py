"""Throughput of llmcore.redaction.redact on a large generated CI log with scattered secrets.

    .venv/bin/python bench/redaction.py [--mb 50] [--secret-every 2000] [--repeat 3]

The log mixes realistic CI lines (timestamps, pytest/npm/docker/git output, SHAs, UUIDs, paths,
key=value pairs that are not secrets) with a planted secret every N lines (provider keys, GitHub
tokens, AWS keys, URLs with passwords, bearer headers, .env lines, a private key block now and
then). Figures (best of --repeat runs, each on the whole text):

- redact(): MB/s, and the ratio against the floor;
- floor: a bare `str.splitlines()` pass over the same text in the same run (what any line-based
  consumer pays just to look at the log);
- a non-ASCII variant of the same log (a few accented words per hundred lines), which takes the
  slower offset-translation path;
- a check that every planted secret is gone.

No dataset needed: the log is generated, deterministically (seeded).
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmcore.redaction import redact

ALNUM = string.ascii_letters + string.digits

NORMAL = [
    "{ts} ##[group]Run actions/checkout@v4",
    "{ts} HEAD is now at {sha} Merge pull request #{n} from octo/feature-{n}",
    "{ts} Collecting requests==2.{n}.0 (from -r requirements.txt (line {n}))",
    "{ts} tests/test_api.py::test_case_{n} PASSED                                  [ {n}%]",
    "{ts} tests/test_models.py::test_save_{n} FAILED",
    "{ts} E       AssertionError: assert {n} == {m}",
    "{ts} npm WARN deprecated inflight@1.0.6: This module is not supported",
    "{ts} Step {n}/12 : RUN pip install --no-cache-dir -r /app/requirements.txt",
    "{ts}  ---> Using cache sha256:{sha}{sha2}",
    "{ts} request {uuid} completed in {n}.{m}ms (max_tokens=4096, token_type=bearer)",
    "{ts} /home/runner/work/widgets/widgets/src/module_{n}.py:{m}: DeprecationWarning: x",
    "{ts} docker run --rm -u 1000:1000 -v /home/runner/work:/src image:{n}",
    "{ts} Error: invalid token: expired (attempt {n} of {m})",
    "{ts} GITHUB_TOKEN: ***",
    "{ts} Downloading https://files.pythonhosted.org/packages/{sha}/pkg-{n}.{m}.tar.gz",
]


def _rand(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n - 1)) + "7"


def _secret_line(rng: random.Random, ts: str) -> tuple[str, str]:
    kind = rng.randrange(9)
    if kind == 0:
        s = "sk-proj-" + _rand(rng, 60)
        return f"{ts} OPENAI_API_KEY={s}", s
    if kind == 1:
        s = "ghp_" + _rand(rng, 36)
        return f"{ts} remote: Invalid username or token {s}", s
    if kind == 2:
        s = "AKIA" + _rand(rng, 16, string.ascii_uppercase + string.digits)
        return f"{ts} aws_access_key_id = {s}", s
    if kind == 3:
        s = "Pw" + _rand(rng, 12)
        return f"{ts} Cloning into 'x'... https://ci:{s}@git.example.com/repo.git", s
    if kind == 4:
        s = _rand(rng, 40)
        return f"{ts} > Authorization: Bearer {s}", s
    if kind == 5:
        s = _rand(rng, 24)
        return f"{ts} DB_PASSWORD={s}", s
    if kind == 6:
        s = "sk-ant-api03-" + _rand(rng, 90)
        return f'{ts} {{"api_key": "{s}", "model": "claude"}}', s
    if kind == 7:
        s = "xoxb-123456789012-" + _rand(rng, 24)
        return f"{ts} slack notify with {s}", s
    body = "\n".join(_rand(rng, 64, ALNUM + "+/") for _ in range(5))
    s = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----"
    return f"{ts} key:\n{s}", s


def generate(target_bytes: int, secret_every: int, seed: int = 7) -> tuple[str, list[str]]:
    rng = random.Random(seed)
    lines: list[str] = []
    secrets: list[str] = []
    size = 0
    i = 0
    while size < target_bytes:
        ts = f"2024-05-01T10:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}0000Z"
        if i % secret_every == secret_every - 1:
            line, secret = _secret_line(rng, ts)
            secrets.append(secret)
        else:
            line = rng.choice(NORMAL).format(
                ts=ts,
                sha=f"{rng.getrandbits(160):040x}",
                sha2=f"{rng.getrandbits(96):024x}",
                uuid=f"{rng.getrandbits(128):032x}",
                n=rng.randrange(100),
                m=rng.randrange(1000),
            )
        lines.append(line)
        size += len(line) + 1
        i += 1
    return "\n".join(lines) + "\n", secrets


def best_of(repeat: int, fn, arg) -> tuple[float, object]:
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(arg)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="log size in MB (default 50)")
    parser.add_argument("--secret-every", type=int, default=2000, help="one secret per N lines")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; best is kept")
    args = parser.parse_args()

    text, secrets = generate(int(args.mb * 1_000_000), args.secret_every)
    mb = len(text.encode()) / 1_000_000
    print(f"log: {mb:.1f} MB, {text.count(chr(10)):,} lines, {len(secrets):,} planted secrets")

    floor_s, _ = best_of(args.repeat, str.splitlines, text)
    redact_s, redacted = best_of(args.repeat, redact, text)
    leaked = [s for s in secrets if s in redacted]  # type: ignore[operator]

    # Same log with a few accented words: the non-ASCII path translates byte offsets.
    accented = text.replace("Collecting", "Récupération", 2000)
    accented_s, accented_out = best_of(args.repeat, redact, accented)
    leaked += [s for s in secrets if s in accented_out]  # type: ignore[operator]

    print(f"floor  str.splitlines():      {mb / floor_s:8.1f} MB/s  ({floor_s:.3f} s)")
    print(
        f"redact() ASCII log:           {mb / redact_s:8.1f} MB/s  ({redact_s:.3f} s)"
        f"  ratio vs floor: {redact_s / floor_s:.2f}x the time"
    )
    print(
        f"redact() non-ASCII log:       {mb / accented_s:8.1f} MB/s  ({accented_s:.3f} s)"
        f"  ratio vs floor: {accented_s / floor_s:.2f}x the time"
    )
    print(f"secrets left after redaction: {len(leaked)} of {len(secrets) * 2}")
    return 1 if leaked else 0


if __name__ == "__main__":
    sys.exit(main())
