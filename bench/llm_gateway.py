"""How much latency the LLM gateway adds per call, against a bare httpx call, same stub, same run.

    .venv/bin/python bench/llm_gateway.py [--calls 2000] [--latency-ms 0] [--store memory|django]

Starts bench/stub_llm_server.py in its own process (so the server does not share our GIL), then
for every call alternates, in a rotating order:
- baseline: a bare `httpx.Client.post()` of the very payload the gateway would send, plus
  `json.loads` of the answer (what any caller does at minimum);
- gateway: `Router.complete()` with a JSON schema: cooldown check, payload building, the
  streamed read under a total deadline, response parsing, schema validation, cost.
Both use one keep-alive httpx client on loopback. Storage (the LLMOutput row) is not on the timed
path. Prints p50/p99 of both, the added p50/p99, the ratio, and checks the goal:
added p50 < 1 ms and added p99 < 5 ms.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmcore.providers import make_provider  # noqa: E402
from llmcore.providers.base import MODE_JSON_SCHEMA, ProviderConfig, make_client  # noqa: E402
from llmcore.router import MemoryCooldownStore, Router  # noqa: E402
from llmcore.types import LLMRequest, Message  # noqa: E402

GOAL_P50_MS = 1.0
GOAL_P99_MS = 5.0

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 100},
        "description": {"type": "string"},
        "solution_code": {"type": "string"},
        "confidence_score": {"type": "integer", "minimum": 0, "maximum": 100},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
    },
    "required": ["title", "description", "solution_code", "confidence_score"],
    "additionalProperties": False,
}

PROMPT = """A CI build failed. Write a spell (a reusable fix) for it.
Error type: ImportError
Message: numpy.core.multiarray failed to import
Context:
  File "app/stats.py", line 3, in <module>
    import pandas as pd
  ImportError: numpy.core.multiarray failed to import (compiled against numpy 1.x, running 2.0)
Repository: acme/analytics, PR #412, files changed: requirements.txt, app/stats.py
"""


def validator_for_bench():
    """llmcore.structured.validate_json when present, else a jsonschema stand-in."""
    try:
        from llmcore.structured import validate_json
    except ImportError:
        from jsonschema import Draft202012Validator

        compiled = Draft202012Validator(SCHEMA)

        def validate_json(text: str, schema: dict[str, Any]) -> tuple[Any | None, list[str]]:
            try:
                value = json.loads(text)
            except ValueError as exc:
                return None, [str(exc)]
            errors = [e.message for e in compiled.iter_errors(value)]
            return (None, errors) if errors else (value, [])

        return validate_json, "jsonschema stand-in"
    return validate_json, "llmcore.structured.validate_json"


def cooldown_store(kind: str):
    if kind == "memory":
        return MemoryCooldownStore(), "in-process memory"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grimoire.settings")
    import django

    django.setup()
    from django.core.cache import cache

    try:
        cache.get("llmcore:bench-probe")
    except Exception as exc:
        sys.exit(
            f"--store django: the configured cache does not work here ({exc}); run migrate/createcachetable first"
        )
    return cache, f"django cache ({type(cache).__name__})"


def start_stub(latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "stub_llm_server.py"),
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        sys.exit(f"stub server did not start (printed {url!r})")
    return proc, url


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LLM gateway added latency vs bare httpx")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="stub server latency per call"
    )
    parser.add_argument(
        "--store", choices=["memory", "django"], default="memory", help="cooldown store"
    )
    args = parser.parse_args(argv)

    proc, url = start_stub(args.latency_ms)
    try:
        validate, validator_name = validator_for_bench()
        store, store_name = cooldown_store(args.store)
        client = make_client()
        config = ProviderConfig(
            name="custom", kind="custom", base_url=url, model="stub-model", timeout_total=30.0
        )
        provider = make_provider(config)
        # Priced like a real model so the cost path runs (and no "unknown price" warning).
        prices = {"custom": {"stub-model": {"input": 0.15, "output": 0.60}}}
        router = Router(
            [provider],
            cooldown_store=store,
            validator=validate,
            client=client,
            mode_memory={},
            price_overrides=prices,
        )
        request = LLMRequest(
            messages=[Message("user", PROMPT)],
            system="You write spells.",
            json_schema=SCHEMA,
            schema_name="spell",
            temperature=0.2,
            max_tokens=800,
        )

        # The baseline sends the very bytes the gateway sends.
        body = json.dumps(
            provider.build_payload(request, model="stub-model", mode=MODE_JSON_SCHEMA)
        ).encode()
        endpoint = url.rstrip("/") + "/chat/completions"
        headers = {"content-type": "application/json"}

        def bare() -> None:
            response = client.post(endpoint, content=body, headers=headers)
            response.raise_for_status()
            json.loads(response.content)

        def gateway() -> None:
            result = router.complete(request)
            if result.parsed is None:
                raise RuntimeError("gateway returned no parsed output")

        for _ in range(args.warmup):
            bare()
            gateway()

        bare_ms: list[float] = []
        gateway_ms: list[float] = []
        paired: list[float] = []
        gc.collect()
        clock = time.perf_counter_ns
        for i in range(args.calls):
            order = (bare, gateway) if i % 2 == 0 else (gateway, bare)
            took: dict[Any, float] = {}
            for fn in order:
                t0 = clock()
                fn()
                took[fn] = (clock() - t0) / 1e6
            bare_ms.append(took[bare])
            gateway_ms.append(took[gateway])
            paired.append(took[gateway] - took[bare])
        stats = proc_stats(client, url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    b50, b99 = pct(bare_ms, 50), pct(bare_ms, 99)
    g50, g99 = pct(gateway_ms, 50), pct(gateway_ms, 99)
    add50, add99 = g50 - b50, g99 - b99
    print(
        f"LLM gateway added latency: {args.calls} calls each, stub latency {args.latency_ms:g} ms, loopback"
    )
    print(f"  validator: {validator_name}; cooldown store: {store_name}; stub answered {stats}")
    print(
        f"  baseline (bare httpx post + json.loads): p50 {b50:.3f} ms  p99 {b99:.3f} ms  mean {statistics.fmean(bare_ms):.3f} ms"
    )
    print(
        f"  gateway  (Router.complete + validation): p50 {g50:.3f} ms  p99 {g99:.3f} ms  mean {statistics.fmean(gateway_ms):.3f} ms"
    )
    print(
        f"  added: p50 {add50:.3f} ms  p99 {add99:.3f} ms  (paired per-call median {statistics.median(paired):.3f} ms)"
    )
    print(f"  ratio gateway/baseline: p50 {g50 / b50:.2f}x  p99 {g99 / b99:.2f}x")
    ok = add50 < GOAL_P50_MS and add99 < GOAL_P99_MS
    verdict = "MET" if ok else "MISSED"
    print(f"  goal added p50 < {GOAL_P50_MS:g} ms and p99 < {GOAL_P99_MS:g} ms: {verdict}")
    return 0 if ok else 1


def proc_stats(client: httpx.Client, url: str) -> dict[str, int]:
    base = url.rsplit("/v1", 1)[0]
    try:
        return client.get(base + "/stats").json()["counts"]
    except (httpx.HTTPError, ValueError, KeyError):
        return {}


if __name__ == "__main__":
    raise SystemExit(main())
