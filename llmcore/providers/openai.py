"""OpenAI Chat Completions over httpx (`POST {base}/chat/completions`).

The OpenAI-compatible presets (openai_compat.py) reuse this adapter with their own base URL,
auth and quirks, so anything OpenAI-shaped lives here once.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx

from llmcore.providers.base import (
    MODE_JSON_OBJECT,
    MODE_JSON_OBJECT_SCHEMA,
    MODE_JSON_SCHEMA,
    MODE_NONE,
    MODE_PROMPT,
    ErrorInfo,
    Provider,
    ProviderResult,
    ProviderSpec,
    as_int,
    classify_http_error,
    error_info,
    join_system,
    register,
    schema_instruction,
    schema_name,
)
from llmcore.types import LLMRequest, ProviderError, Usage

# (provider name, model, parameter) a server refused as unsupported, e.g. `temperature` on
# reasoning models: learned once per process, then left out of the payload.
_DROPPED_PARAMS: set[tuple[str, str, str]] = set()
_DROPPABLE = ("temperature",)


def is_strict_compatible(schema: Any) -> bool:
    """OpenAI strict mode needs every object closed and every property required."""
    if isinstance(schema, dict):
        props = schema.get("properties")
        if schema.get("type") == "object" or isinstance(props, dict):
            if schema.get("additionalProperties", True) is not False:
                return False
            if set(props or {}) != set(schema.get("required") or []):
                return False
        return all(is_strict_compatible(v) for v in schema.values())
    if isinstance(schema, list):
        return all(is_strict_compatible(v) for v in schema)
    return True


class OpenAIProvider(Provider):
    kind = "openai"
    structured_modes = (MODE_JSON_SCHEMA, MODE_JSON_OBJECT, MODE_PROMPT)
    # Newer OpenAI models reject max_tokens; most compatible servers only know max_tokens.
    max_tokens_field: ClassVar[str] = "max_completion_tokens"

    def url(self) -> str:
        return self.config.base_url.rstrip("/") + "/chat/completions"

    def headers(self) -> dict[str, str]:
        if self.config.api_key:
            return {"authorization": f"Bearer {self.config.api_key}"}
        return {}

    def build_payload(self, request: LLMRequest, *, model: str, mode: str) -> dict[str, Any]:
        schema = request.json_schema
        instruction = None
        if schema is not None and mode in (MODE_JSON_OBJECT, MODE_JSON_OBJECT_SCHEMA, MODE_PROMPT):
            # JSON mode needs the word "JSON" in the prompt, and the model needs the shape.
            instruction = schema_instruction(schema)
        messages: list[dict[str, str]] = []
        system = join_system(request.system, instruction)
        if system:
            messages.append({"role": "system", "content": system})
        messages.extend({"role": m.role, "content": m.content} for m in request.messages)
        payload: dict[str, Any] = {"model": model, "messages": messages}
        max_tokens = request.max_tokens or self.config.max_tokens
        if max_tokens:
            payload[self.max_tokens_field] = max_tokens
        if (
            request.temperature is not None
            and (self.name, model, "temperature") not in _DROPPED_PARAMS
        ):
            payload["temperature"] = request.temperature
        if schema is not None:
            if mode == MODE_JSON_SCHEMA:
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": schema_name(request.schema_name),
                        "schema": schema,
                        "strict": is_strict_compatible(schema),
                    },
                }
            elif mode == MODE_JSON_OBJECT_SCHEMA:
                payload["response_format"] = {"type": "json_object", "schema": schema}
            elif mode == MODE_JSON_OBJECT:
                payload["response_format"] = {"type": "json_object"}
        return payload

    def send(
        self,
        request: LLMRequest,
        *,
        client: httpx.Client,
        structured_mode: str = MODE_NONE,
    ) -> ProviderResult:
        model = self.model_for(request)
        payload = self.build_payload(request, model=model, mode=structured_mode)
        answer = self.post_json(client, self.url(), payload, self.headers())
        try:
            body = self.decode(answer, structured_mode=structured_mode)
        except ProviderError as exc:
            dropped = self._droppable_param(exc, answer, payload)
            if dropped is None:
                raise
            # Not a retry of a failure: the same request made acceptable. Learned once.
            _DROPPED_PARAMS.add((self.name, model, dropped))
            payload.pop(dropped, None)
            answer = self.post_json(client, self.url(), payload, self.headers())
            body = self.decode(answer, structured_mode=structured_mode)
        return self.parse(body, answer=answer, model=model, mode=structured_mode)

    def _droppable_param(
        self, exc: ProviderError, answer: Any, payload: dict[str, Any]
    ) -> str | None:
        if exc.kind != "fatal" or exc.http_status not in (400, 422):
            return None
        try:
            info = error_info(answer.json())
        except ValueError:
            return None
        for param in _DROPPABLE:
            if param not in payload:
                continue
            msg = info.message.lower()
            mentions = info.param == param or param in msg
            unsupported = info.code == "unsupported_value" or any(
                w in msg for w in ("unsupported", "not supported", "does not support")
            )
            if mentions and unsupported:
                return param
        return None

    def parse(self, body: dict[str, Any], *, answer: Any, model: str, mode: str) -> ProviderResult:
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            if body.get("error") or body.get("errors"):
                # Some compatible servers answer 200 with an error body.
                info = error_info(body)
                status = self._status_from(info)
                raise classify_http_error(
                    provider=self.name,
                    status=status,
                    info=info,
                    headers=answer.headers,
                    structured_mode=mode,
                    now=self.wall_clock,
                )
            raise self.malformed("no choices in the answer", answer)
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message")
        if not isinstance(message, dict):
            raise self.malformed("no message in the first choice", answer)
        refusal = message.get("refusal")
        if refusal:
            raise self.refusal(str(refusal), http_status=answer.status)
        finish_reason = choice.get("finish_reason")
        content = message.get("content")
        if finish_reason == "content_filter" and not content:
            raise self.refusal("the answer was withheld by the provider's content filter")
        if isinstance(content, list):
            # A few servers return content parts even for plain text.
            content = "".join(
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
        if content is None:
            content = self._tool_arguments(message) or ""
        return ProviderResult(
            text=str(content),
            model=str(body.get("model") or model),
            usage=self.usage(body.get("usage")),
            structured_mode=mode,
            finish_reason=finish_reason,
            raw=body,
        )

    @staticmethod
    def _tool_arguments(message: dict[str, Any]) -> str | None:
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            fn = calls[0].get("function") if isinstance(calls[0], dict) else None
            if isinstance(fn, dict):
                args = fn.get("arguments")
                return args if isinstance(args, str) else json.dumps(args)
        return None

    @staticmethod
    def _status_from(info: ErrorInfo) -> int:
        try:
            status = int(info.code)
        except ValueError:
            return 500
        return status if 400 <= status <= 599 else 500

    @staticmethod
    def usage(data: Any) -> Usage:
        if not isinstance(data, dict):
            return Usage()
        details = data.get("prompt_tokens_details")
        cached = as_int(details.get("cached_tokens")) if isinstance(details, dict) else 0
        return Usage(
            input_tokens=as_int(data.get("prompt_tokens")),
            output_tokens=as_int(data.get("completion_tokens")),
            cached_tokens=cached,
        )


register(
    ProviderSpec(
        kind="openai",
        factory=OpenAIProvider,
        base_url="https://api.openai.com/v1",
        default_model="gpt-4o-mini",
        key_envs=("OPENAI_API_KEY",),
    )
)
