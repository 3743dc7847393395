"""Anthropic Messages API over httpx (`POST {base}/messages`).

Structured output is tool-forced JSON: one tool whose `input_schema` is the requested schema and
`tool_choice` naming it, so the model must answer with arguments shaped by the schema. The tool's
input becomes the response text (as JSON) so validation works the same for every provider.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from llmcore.providers.base import (
    MODE_NONE,
    MODE_PROMPT,
    MODE_TOOL,
    Provider,
    ProviderResult,
    ProviderSpec,
    as_int,
    join_system,
    register,
    schema_instruction,
    schema_name,
)
from llmcore.types import LLMRequest, Usage

ANTHROPIC_VERSION = "2023-06-01"
# Anthropic requires max_tokens; used when neither the request nor the config sets one.
DEFAULT_MAX_TOKENS = 1024
# Tool input must be an object: other schemas are wrapped in {"result": ...} and unwrapped.
WRAP_KEY = "result"


def _is_object_schema(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "object"


class AnthropicProvider(Provider):
    kind = "anthropic"
    structured_modes = (MODE_TOOL, MODE_PROMPT)

    def url(self) -> str:
        return self.config.base_url.rstrip("/") + "/messages"

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return headers

    def build_payload(self, request: LLMRequest, *, model: str, mode: str) -> dict[str, Any]:
        schema = request.json_schema
        system_parts: list[str | None] = [request.system]
        messages: list[dict[str, Any]] = []
        for m in request.messages:
            if m.role == "system":
                # The Messages API has no system role inside `messages`; it is top-level.
                system_parts.append(m.content)
            else:
                messages.append({"role": m.role, "content": m.content})
        if schema is not None and mode == MODE_PROMPT:
            system_parts.append(schema_instruction(schema))
        payload: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens or self.config.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        system = join_system(*system_parts)
        if system:
            payload["system"] = system
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if schema is not None and mode == MODE_TOOL:
            name = schema_name(request.schema_name)
            input_schema = (
                schema
                if _is_object_schema(schema)
                else {"type": "object", "properties": {WRAP_KEY: schema}, "required": [WRAP_KEY]}
            )
            payload["tools"] = [
                {
                    "name": name,
                    "description": "Record the answer as structured data matching the schema.",
                    "input_schema": input_schema,
                }
            ]
            payload["tool_choice"] = {"type": "tool", "name": name}
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
        body = self.decode(answer, structured_mode=structured_mode)
        content = body.get("content")
        if not isinstance(content, list):
            raise self.malformed("no content blocks", answer)
        stop_reason = body.get("stop_reason")
        texts = [
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        ]
        if stop_reason == "refusal":
            raise self.refusal(" ".join(texts) or "stop_reason=refusal", http_status=answer.status)
        text = "".join(texts)
        if structured_mode == MODE_TOOL and request.json_schema is not None:
            tool_input = next(
                (
                    b.get("input")
                    for b in content
                    if isinstance(b, dict) and b.get("type") == "tool_use"
                ),
                None,
            )
            if tool_input is not None:
                if not _is_object_schema(request.json_schema) and isinstance(tool_input, dict):
                    tool_input = tool_input.get(WRAP_KEY)
                text = json.dumps(tool_input, ensure_ascii=False)
        return ProviderResult(
            text=text,
            model=str(body.get("model") or model),
            usage=self.usage(body.get("usage")),
            structured_mode=structured_mode,
            finish_reason=stop_reason,
            raw=body,
        )

    @staticmethod
    def usage(data: Any) -> Usage:
        if not isinstance(data, dict):
            return Usage()
        # Anthropic's input_tokens excludes cache reads and writes; Usage.input_tokens is the
        # whole prompt, with cache reads as cached_tokens (billed at the cached price).
        cache_read = as_int(data.get("cache_read_input_tokens"))
        cache_write = as_int(data.get("cache_creation_input_tokens"))
        return Usage(
            input_tokens=as_int(data.get("input_tokens")) + cache_read + cache_write,
            output_tokens=as_int(data.get("output_tokens")),
            cached_tokens=cache_read,
        )


register(
    ProviderSpec(
        kind="anthropic",
        factory=AnthropicProvider,
        base_url="https://api.anthropic.com/v1",
        default_model="claude-sonnet-4-5",
        key_envs=("ANTHROPIC_API_KEY",),
    )
)
