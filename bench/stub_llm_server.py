"""A tiny local LLM server with OpenAI- and Anthropic-shaped answers, latency and fault injection.

For benchmarks and fault tests: nothing leaves the machine.

    python bench/stub_llm_server.py --port 0 --latency-ms 500 --fail-rate 0.1
    # prints http://127.0.0.1:PORT/v1 on the first line of stdout, then serves until killed

Endpoints: POST /v1/chat/completions (OpenAI), POST /v1/messages (Anthropic), GET /health,
GET /stats (request and fault counters as JSON). With a JSON schema in the request
(`response_format` json_schema / json_object+schema, or an Anthropic tool) the answer is a
deterministic instance valid against it.

Faults, each drawn per request with a seeded RNG: `--rate-429` (with `retry-after`),
`--rate-500`, `--rate-malformed` (a 200 whose JSON is cut short), `--rate-drop` (the connection is
closed without an answer), `--rate-invalid` (valid JSON that does not match the schema).
`--fail-rate X` spreads X evenly over 429, 500, malformed and drop.

From Python: `server = start_stub(latency_ms=5, rate_500=0.1)`, then `server.url`,
`server.stats()`, `server.stop()`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmcore.providers.offline import build_instance

MODEL = "stub-model"


@dataclass
class StubConfig:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_malformed: float = 0.0
    rate_drop: float = 0.0
    rate_invalid: float = 0.0
    retry_after: float = 1.0
    reply: str = "Stub answer: pin the dependency and re-run the build."
    seed: int | None = None

    def faults(self) -> list[tuple[str, float]]:
        return [
            ("429", self.rate_429),
            ("500", self.rate_500),
            ("malformed", self.rate_malformed),
            ("drop", self.rate_drop),
            ("invalid", self.rate_invalid),
        ]


class StubState:
    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)  # fault injection, not security
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {"requests": 0, "ok": 0}
        self.instances: dict[str, str] = {}

    def draw(self) -> str:
        with self.lock:
            self.counts["requests"] += 1
            roll = self.rng.random()
            jitter = self.rng.random()
        edge = 0.0
        fault = "ok"
        for name, rate in self.config.faults():
            edge += rate
            if roll < edge:
                fault = name
                break
        with self.lock:
            self.counts[fault] = self.counts.get(fault, 0) + 1
        delay = (self.config.latency_ms + jitter * self.config.jitter_ms) / 1000.0
        if delay > 0:
            time.sleep(delay)
        return fault

    def instance_text(self, schema: dict[str, Any], prompt: str) -> str:
        key = json.dumps(schema, sort_keys=True) + "\0" + prompt[:200]
        text = self.instances.get(key)
        if text is None:
            value = build_instance(schema, prompt)
            text = json.dumps(value).replace("[offline]", "[stub]")
            self.instances[key] = text
        return text


def _schema_of(payload: dict[str, Any]) -> dict[str, Any] | None:
    fmt = payload.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            return (fmt.get("json_schema") or {}).get("schema")
        if fmt.get("type") == "json_object" and isinstance(fmt.get("schema"), dict):
            return fmt["schema"]
    tools = payload.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[0], dict):
        return tools[0].get("input_schema")
    return None


def _prompt_of(payload: dict[str, Any]) -> str:
    messages = payload.get("messages") or []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real providers
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms on Linux loopback), which would swamp every measurement.
    disable_nagle_algorithm = True
    server_version = "StubLLM/1.0"
    state: StubState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send_json(200, {"status": "ok"})
        elif self.path == "/stats":
            with self.state.lock:
                counts = dict(self.state.counts)
            self._send_json(200, {"counts": counts, "config": asdict(self.state.config)})
        else:
            self._send_json(404, {"error": {"message": "not found", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(
                400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}}
            )
            return
        path = self.path.rstrip("/")
        if path.endswith("/chat/completions"):
            anthropic = False
        elif path.endswith("/messages"):
            anthropic = True
        else:
            self._send_json(
                404, {"error": {"message": f"no route {self.path}", "type": "not_found"}}
            )
            return
        fault = self.state.draw()
        if fault == "drop":
            self._drop()
            return
        if fault == "429":
            self._error(
                anthropic,
                429,
                "rate_limit_error",
                "Rate limit reached (stub)",
                {"retry-after": f"{self.state.config.retry_after:g}"},
            )
            return
        if fault == "500":
            self._error(anthropic, 500, "api_error", "The server had an error (stub)")
            return
        if fault == "malformed":
            self._send_json(200, b'{"id": "chatcmpl-stub", "choices": [{"index": 0, "mess')
            return
        schema = _schema_of(payload)
        prompt = _prompt_of(payload)
        if schema is None:
            text = self.state.config.reply
        elif fault == "invalid":
            text = "{}"
        else:
            text = self.state.instance_text(schema, prompt)
        tokens_in = max(1, len(raw) // 4)
        tokens_out = max(1, len(text) // 4)
        if anthropic:
            self._send_json(200, self._anthropic_body(payload, schema, text, tokens_in, tokens_out))
        else:
            self._send_json(200, self._openai_body(payload, text, tokens_in, tokens_out))

    def _error(
        self,
        anthropic: bool,
        status: int,
        type_: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        if anthropic:
            body = {"type": "error", "error": {"type": type_, "message": message}}
        else:
            body = {"error": {"message": message, "type": type_, "param": None, "code": None}}
        self._send_json(status, body, headers)

    @staticmethod
    def _openai_body(
        payload: dict[str, Any], text: str, tokens_in: int, tokens_out: int
    ) -> dict[str, Any]:
        return {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.get("model") or MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        }

    @staticmethod
    def _anthropic_body(
        payload: dict[str, Any], schema: Any, text: str, tokens_in: int, tokens_out: int
    ) -> dict[str, Any]:
        if schema is not None and payload.get("tools"):
            content = [
                {
                    "type": "tool_use",
                    "id": "toolu_stub",
                    "name": payload["tools"][0].get("name", "result"),
                    "input": json.loads(text),
                }
            ]
            stop_reason = "tool_use"
        else:
            content = [{"type": "text", "text": text}]
            stop_reason = "end_turn"
        return {
            "id": "msg_stub",
            "type": "message",
            "role": "assistant",
            "model": payload.get("model") or MODEL,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
        }


class _Server(ThreadingHTTPServer):
    # The listen backlog is fixed when the socket starts listening (in __init__), so it must be a
    # class attribute: set on the instance afterwards it stays at 5 and bursts get resets.
    request_queue_size = 256
    daemon_threads = True


class StubServer:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, config: StubConfig | None = None
    ) -> None:
        self.state = StubState(config or StubConfig())
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = _Server((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def stats(self) -> dict[str, int]:
        with self.state.lock:
            return dict(self.state.counts)

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> StubServer:
        self.thread = threading.Thread(target=self.serve_forever, name="stub-llm", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_stub(host: str = "127.0.0.1", port: int = 0, **config: Any) -> StubServer:
    """Start a stub in a background thread of this process (tests, in-process benchmarks)."""
    return StubServer(host, port, StubConfig(**config)).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="extra uniform random latency")
    parser.add_argument(
        "--fail-rate", type=float, default=0.0, help="spread evenly over 429, 500, malformed, drop"
    )
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--rate-500", type=float, default=0.0)
    parser.add_argument("--rate-malformed", type=float, default=0.0)
    parser.add_argument("--rate-drop", type=float, default=0.0)
    parser.add_argument(
        "--rate-invalid", type=float, default=0.0, help="schema-invalid JSON answers"
    )
    parser.add_argument("--retry-after", type=float, default=1.0, help="seconds sent with 429s")
    parser.add_argument("--reply", default=StubConfig.reply)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    share = args.fail_rate / 4
    config = StubConfig(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        rate_429=args.rate_429 + share,
        rate_500=args.rate_500 + share,
        rate_malformed=args.rate_malformed + share,
        rate_drop=args.rate_drop + share,
        rate_invalid=args.rate_invalid,
        retry_after=args.retry_after,
        reply=args.reply,
        seed=args.seed,
    )
    if sum(rate for _, rate in config.faults()) > 1:
        parser.error("fault rates add up to more than 1")
    server = StubServer(args.host, args.port, config)
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
