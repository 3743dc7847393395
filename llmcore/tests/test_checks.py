from __future__ import annotations

from llmcore.checks import check_llm_providers


def test_default_configuration_passes(monkeypatch):
    monkeypatch.delenv("LLM_PROVIDERS", raising=False)
    assert check_llm_providers() == []


def test_naming_a_provider_without_its_key_is_an_error(monkeypatch):
    monkeypatch.setenv("LLM_PROVIDERS", "anthropic")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    errors = check_llm_providers()
    assert [e.id for e in errors] == ["llmcore.E001"]
    assert "anthropic" in errors[0].msg.lower()


def test_bad_price_json_is_an_error(monkeypatch):
    monkeypatch.setenv("LLM_PRICES", "{not json")
    assert [e.id for e in check_llm_providers()] == ["llmcore.E002"]
