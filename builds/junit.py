"""Test failures from JUnit XML reports (pytest, Surefire, Gradle, Jest, go-junit-report, ...).

Streaming: the report is fed to expat in chunks and only the failure being read is held, so a
report of any size parses in constant memory (message bodies are cut to a few KB).

Defused: JUnit XML never needs a DTD, so any ``<!DOCTYPE``, entity declaration or external
entity reference is refused before it can expand (billion laughs, quadratic blowup, XXE). This
is what ``defusedxml`` does with ``forbid_dtd=True``, done directly on ``xml.parsers.expat`` so
the project needs no extra dependency.

No Django in here.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from xml.parsers import expat

from builds.logparse import MAX_TEXT_CHARS, TestFailure

__all__ = ["JUnitError", "iter_junit_failures", "looks_like_junit", "parse_junit"]

_CHUNK = 64 * 1024
_MAX_BODY = 8 * 1024  # characters of a failure body kept while reading


class JUnitError(ValueError):
    """The document is not well-formed XML, or uses DTD features a test report never needs."""


def looks_like_junit(head: bytes) -> bool:
    """Cheap sniff of the first bytes of a file: is this a JUnit XML report?"""
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:4096]
    return head.startswith(b"<") and (b"<testsuite" in head or b"<testsuites" in head)


class _Reader:
    def __init__(self) -> None:
        self.parser = expat.ParserCreate()
        self.parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self.parser.StartDoctypeDeclHandler = self._forbid_doctype
        self.parser.EntityDeclHandler = self._forbid_entity
        self.parser.UnparsedEntityDeclHandler = self._forbid_entity
        self.parser.ExternalEntityRefHandler = self._forbid_external
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.CharacterDataHandler = self._text
        self.ready: list[TestFailure] = []
        self._case: dict[str, str] | None = None
        self._failure: dict[str, str] | None = None
        self._failure_line = 0
        self._body: list[str] = []
        self._body_len = 0
        self._suite_file: list[str | None] = []

    # Refusals raise from inside expat; the exception propagates out of Parse().
    def _forbid_doctype(self, name: str, *args: object) -> None:
        raise JUnitError(f"DOCTYPE declarations are not allowed in a test report ({name!r})")

    def _forbid_entity(self, name: str, *args: object) -> None:
        raise JUnitError(f"entity declarations are not allowed in a test report ({name!r})")

    def _forbid_external(self, *args: object) -> int:
        raise JUnitError("external entities are not allowed in a test report")

    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "testsuite":
            self._suite_file.append(attrs.get("file") or attrs.get("filepath"))
        elif tag == "testcase":
            self._case = attrs
        elif tag in ("failure", "error") and self._case is not None and self._failure is None:
            self._failure = attrs
            self._failure_line = self.parser.CurrentLineNumber
            self._body = []
            self._body_len = 0

    def _text(self, data: str) -> None:
        if self._failure is not None and self._body_len < _MAX_BODY:
            self._body.append(data)
            self._body_len += len(data)

    def _end(self, tag: str) -> None:
        if tag in ("failure", "error") and self._failure is not None and self._case is not None:
            self.ready.append(self._build(self._case, self._failure, "".join(self._body)))
            self._failure = None
        elif tag == "testcase":
            self._case = None
            self._failure = None
        elif tag == "testsuite" and self._suite_file:
            self._suite_file.pop()

    def _build(self, case: dict[str, str], failure: dict[str, str], body: str) -> TestFailure:
        name = case.get("name", "").strip()
        classname = case.get("classname", "").strip()
        test = (
            f"{classname}.{name}"
            if classname and name and not name.startswith(classname)
            else (name or classname)
        )
        message = (failure.get("message") or "").strip()
        kind = (failure.get("type") or "").strip()
        if not message:
            message = next((ln.strip() for ln in body.splitlines() if ln.strip()), "")
        if kind and kind not in message:
            message = f"{kind}: {message}" if message else kind
        file = case.get("file") or (self._suite_file[-1] if self._suite_file else None)
        return TestFailure(
            "junit", test or "(unnamed test)", message[:MAX_TEXT_CHARS], self._failure_line, file
        )

    def feed(self, data: bytes, final: bool = False) -> None:
        try:
            self.parser.Parse(data, final)
        except expat.ExpatError as exc:
            raise JUnitError(f"not well-formed XML: {exc}") from exc


def iter_junit_failures(stream: BinaryIO) -> Iterator[TestFailure]:
    """Yield the failed and errored test cases of a JUnit XML report, reading it in chunks.

    ``line`` is the line of the ``<failure>``/``<error>`` element in the report. Raises
    :class:`JUnitError` for malformed XML and for DTDs/entities.
    """
    reader = _Reader()
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        reader.feed(chunk)
        yield from reader.ready
        reader.ready.clear()
    reader.feed(b"", final=True)
    yield from reader.ready


def parse_junit(
    source: str | Path | bytes | BinaryIO, *, max_failures: int = 1000
) -> list[TestFailure]:
    """Failures of a JUnit XML report given as a path, bytes or a binary stream."""
    if isinstance(source, bytes):
        stream: BinaryIO = io.BytesIO(source)
        return _take(iter_junit_failures(stream), max_failures)
    if isinstance(source, (str, Path)):
        with open(source, "rb") as fh:
            return _take(iter_junit_failures(fh), max_failures)
    return _take(iter_junit_failures(source), max_failures)


def _take(failures: Iterator[TestFailure], limit: int) -> list[TestFailure]:
    out: list[TestFailure] = []
    for failure in failures:
        if len(out) >= limit:
            continue  # keep reading: a malformed tail must still be reported
        out.append(failure)
    return out
