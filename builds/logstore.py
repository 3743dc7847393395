"""Build logs as compressed chunks in the database: append as an INSERT, read as a stream.

Logs of hundreds of MB never sit in memory: uploads are read and compressed a chunk at a time,
and readers decompress one chunk at a time.
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from django.db import transaction
from django.db.models import F

from builds.models import Build, BuildLogChunk

CHUNK_BYTES = 1 << 20  # uncompressed bytes per stored chunk
MAX_LOG_BYTES = 2 << 30  # 2 GiB uncompressed: beyond this a "log" is a mistake or an attack


class LogTooLargeError(ValueError):
    pass


class BadCompressionError(ValueError):
    pass


def iter_stream(stream: BinaryIO, *, block: int = 256 * 1024) -> Iterator[bytes]:
    while True:
        data = stream.read(block)
        if not data:
            return
        yield data


def gunzip(blocks: Iterable[bytes], *, limit: int = MAX_LOG_BYTES) -> Iterator[bytes]:
    """Decompress gzip (or zlib) blocks incrementally; bounded output defuses gzip bombs."""
    decoder = zlib.decompressobj(wbits=47)  # 32 + 15: auto-detect gzip or zlib header
    produced = 0
    try:
        for data in blocks:
            while data:
                out = decoder.decompress(data, CHUNK_BYTES)
                produced += len(out)
                if produced > limit:
                    raise LogTooLargeError(f"log is larger than {limit} bytes uncompressed")
                if out:
                    yield out
                data = decoder.unconsumed_tail
                if decoder.eof and decoder.unused_data:
                    # Concatenated gzip members (appended logs): start the next member.
                    data = decoder.unused_data
                    decoder = zlib.decompressobj(wbits=47)
        tail = decoder.flush()
    except zlib.error as exc:
        raise BadCompressionError(f"not valid gzip data: {exc}") from exc
    if not decoder.eof:
        # zlib accepts a stream cut off before its end marker; an upload cut short is an error,
        # not a shorter log.
        raise BadCompressionError("gzip data is truncated (no end-of-stream marker)")
    if tail:
        yield tail


def _rechunk(blocks: Iterable[bytes]) -> Iterator[bytes]:
    buffer = bytearray()
    for data in blocks:
        buffer += data
        while len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer[:CHUNK_BYTES])
            del buffer[:CHUNK_BYTES]
    if buffer:
        yield bytes(buffer)


@transaction.atomic
def append_log(build: Build, blocks: Iterable[bytes]) -> int:
    """Append raw log bytes to `build`; returns the bytes added. Locks the build while appending,
    so concurrent appends to one build queue instead of colliding on chunk numbers."""
    locked = (
        Build.objects.select_for_update().only("pk", "log_bytes", "log_chunks").get(pk=build.pk)
    )
    seq, total, added = locked.log_chunks, locked.log_bytes, 0
    for piece in _rechunk(blocks):
        if total + added + len(piece) > MAX_LOG_BYTES:
            raise LogTooLargeError(f"log is larger than {MAX_LOG_BYTES} bytes")
        BuildLogChunk.objects.create(
            build_id=build.pk, seq=seq, data=zlib.compress(piece, 6), raw_size=len(piece)
        )
        seq += 1
        added += len(piece)
    if added:
        Build.objects.filter(pk=build.pk).update(
            log_bytes=F("log_bytes") + added, log_chunks=F("log_chunks") + (seq - locked.log_chunks)
        )
        build.log_bytes = total + added
        build.log_chunks = seq
    return added


def iter_log_bytes(build_id) -> Iterator[bytes]:
    rows = (
        BuildLogChunk.objects.filter(build_id=build_id)
        .order_by("seq")
        .values_list("data", flat=True)
    )
    for data in rows.iterator(chunk_size=4):
        yield zlib.decompress(bytes(data))


def iter_log_lines(build_id) -> Iterator[str]:
    """The log's lines (without line endings), decoded as UTF-8 with replacement."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for data in iter_log_bytes(build_id):
        text = pending + decoder.decode(data)
        lines = text.split("\n")
        pending = lines.pop()
        yield from lines
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def read_log_text(build_id, *, limit: int | None = None) -> tuple[str, bool]:
    """The log as text, at most `limit` bytes of it; returns (text, truncated)."""
    parts: list[bytes] = []
    size = 0
    truncated = False
    for data in iter_log_bytes(build_id):
        if limit is not None and size + len(data) > limit:
            parts.append(data[: limit - size])
            truncated = True
            break
        parts.append(data)
        size += len(data)
    return b"".join(parts).decode("utf-8", errors="replace"), truncated
