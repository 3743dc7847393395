"""Show an LLM output safely in a page: HTML sanitized, Markdown rendered without raw HTML,
JSON pretty-printed, text escaped. Never trust model output: it may carry <script>."""

from __future__ import annotations

import json

import nh3
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

from llmcore.models import LLMOutput, OutputFormat

# Raw HTML inside Markdown is escaped ("html": False); links are checked by nh3 afterwards.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}


def sanitize_html(html: str) -> SafeString:
    clean = nh3.clean(
        html, url_schemes=_ALLOWED_URL_SCHEMES, link_rel="noopener noreferrer nofollow"
    )
    return mark_safe(clean)  # noqa: S308  (nh3 just removed everything unsafe)


def render_markdown(text: str) -> SafeString:
    return sanitize_html(_markdown.render(text))


def render_output(output: LLMOutput) -> SafeString:
    text = output.raw_response or ""
    if output.output_format == OutputFormat.HTML:
        return sanitize_html(text)
    if output.output_format == OutputFormat.MARKDOWN:
        return render_markdown(text)
    if output.output_format == OutputFormat.JSON or output.parsed is not None:
        value = output.parsed if output.parsed is not None else text
        pretty = (
            json.dumps(value, indent=2, ensure_ascii=False) if output.parsed is not None else value
        )
        return mark_safe(f"<pre class='json'>{escape(pretty)}</pre>")  # noqa: S308  (escaped)
    return mark_safe(f"<pre class='text'>{escape(text)}</pre>")  # noqa: S308  (escaped)
