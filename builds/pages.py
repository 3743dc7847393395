"""The staff log view: ANSI stripped, error lines highlighted, the failure excerpt marked."""

from __future__ import annotations

import re

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from builds import logstore
from builds.models import Build

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
MAX_LINES = 20_000


@staff_member_required
def build_log_page(request: HttpRequest, build_id) -> HttpResponse:
    build = get_object_or_404(Build, pk=build_id)
    summary = build.summary or {}
    errors = {e.get("line") for e in summary.get("errors", [])}
    warnings = {w.get("line") for w in summary.get("warnings", [])}
    primary = (summary.get("primary_error") or {}).get("line")
    excerpt = summary.get("excerpt") or {}
    start, end = excerpt.get("start") or 0, excerpt.get("end") or -1
    # Around the excerpt when the log is long: that is where the reader wants to be.
    first = max(1, start - 200) if build.total_lines > MAX_LINES and start else 1
    lines = []
    for number, text in enumerate(logstore.iter_log_lines(build.pk), start=1):
        if number < first:
            continue
        if len(lines) >= MAX_LINES:
            break
        text = ANSI.sub("", text).rsplit("\r", 1)[-1]
        css = []
        if number in errors:
            css.append("err")
        elif number in warnings:
            css.append("warn")
        if start <= number <= end:
            css.append("excerpt")
        if number == primary:
            css.append("primary")
        lines.append((number, text, " ".join(css)))
    return render(
        request,
        "builds/log.html",
        {
            **admin.site.each_context(request),
            "build": build,
            "lines": lines,
            "truncated": len(lines) >= MAX_LINES,
            "first": first,
            "summary": summary,
        },
    )
