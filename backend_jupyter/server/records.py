"""Console records: what a local kernel's IOPub output becomes on the Backend.AI wire.

A record is ``[type, data]`` with type ``stdout``/``stderr`` (text), ``media`` (``[mime, data]``,
images as RFC 2397 data-URIs, XML-based mimes as raw text) or ``html`` (an HTML fragment).
Consecutive stream records of the same name are merged; order is kept.

:class:`RecordBuffer` holds the records of one run between two execute calls.  Beyond a memory
budget it spills to a temporary file, so a client that polls slowly loses nothing and the server's
memory stays bounded whatever the run prints.
"""

from __future__ import annotations

import json
import tempfile
from collections import deque
from typing import Any

Record = list  # [type, data]

IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
XML_MIMES = ("image/svg+xml",)
DRAWING_MIME = "application/x-sorna-drawing"
# Rich mimes in order of preference when a bundle carries several.
_PREFERENCE = (*IMAGE_MIMES, *XML_MIMES, DRAWING_MIME, "text/html")

MAX_CHARS_PER_CALL = 524_288  # stdout/stderr per execute response (Backend.AI user-api docs)


def bundle_to_record(data: dict[str, Any], *, is_result: bool = False) -> Record | None:
    """Pick the richest representation of a Jupyter mime bundle as one console record."""
    for mime in _PREFERENCE:
        if mime in data:
            return _mime_record(mime, data[mime])
    for mime, value in data.items():
        if mime != "text/plain" and not mime.startswith("application/vnd.jupyter"):
            return _mime_record(mime, value)
    text = data.get("text/plain")
    if text is None:
        return None
    text = "".join(text) if isinstance(text, list) else str(text)
    # A bare expression's value arrives without a trailing newline, as on a real manager.
    return ["stdout", text if is_result else text + "\n"]


def _mime_record(mime: str, value: Any) -> Record:
    if mime == "text/html":
        return ["html", _text(value)]
    if mime in IMAGE_MIMES:
        payload = "".join(_text(value).split())
        return ["media", [mime, f"data:{mime};base64,{payload}"]]
    if isinstance(value, (dict, list)) and not (mime in XML_MIMES):
        return ["media", [mime, json.dumps(value)]]
    return ["media", [mime, _text(value)]]


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def record_size(record: Record) -> int:
    data = record[1]
    if isinstance(data, str):
        return len(data)
    return sum(len(x) if isinstance(x, str) else 16 for x in data)


class RecordBuffer:
    """FIFO of console records (plus status markers) with merging and spill-to-disk.

    Items are either records ``[type, data]`` or markers ``("status", name, exit_code)``.
    """

    def __init__(self, memory_budget: int = 8 * 1024 * 1024):
        self.memory_budget = memory_budget
        self._head: deque = deque()  # in memory, oldest first
        self._head_chars = 0
        self._spill: Any = None  # temp file with JSON lines, written after the head is full
        self._spill_read = 0
        self._spill_write = 0
        self._tail_record: Record | None = None  # last in-memory record, for merging

    def __bool__(self) -> bool:
        return bool(self._head) or self._spill_read < self._spill_write

    @property
    def spilled(self) -> bool:
        return self._spill is not None

    def append(self, item) -> None:
        if self._spill is None and isinstance(item, list) and item[0] in ("stdout", "stderr"):
            tail = self._tail_record
            if tail is not None and self._head and self._head[-1] is tail and tail[0] == item[0]:
                tail[1] += item[1]
                self._head_chars += len(item[1])
                self._maybe_spill_tail()
                return
        if self._spill is None and self._head_chars < self.memory_budget:
            item = list(item) if isinstance(item, list) else item
            self._head.append(item)
            self._tail_record = item if isinstance(item, list) else None
            self._head_chars += record_size(item) if isinstance(item, list) else 0
            return
        self._write_spill(item)

    def _maybe_spill_tail(self) -> None:
        if self._head_chars >= self.memory_budget and self._spill is None:
            self._spill = tempfile.TemporaryFile("w+", encoding="utf-8")

    def _write_spill(self, item) -> None:
        if self._spill is None:
            self._spill = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._spill.seek(self._spill_write)
        self._spill.write(json.dumps(list(item) if isinstance(item, tuple) else item) + "\n")
        self._spill_write = self._spill.tell()

    def _pop_spill(self):
        self._spill.seek(self._spill_read)
        line = self._spill.readline()
        self._spill_read = self._spill.tell()
        if self._spill_read >= self._spill_write:
            self._spill.close()
            self._spill = None
            self._spill_read = self._spill_write = 0
        item = json.loads(line)
        return tuple(item) if item and item[0] == "status" else item

    def _peek(self):
        if self._head:
            return self._head[0]
        if self._spill is not None and self._spill_read < self._spill_write:
            item = self._pop_spill()
            self._head.append(item)
            self._head_chars += record_size(item) if isinstance(item, list) else 0
            return item
        return None

    def take(self, max_chars: int = MAX_CHARS_PER_CALL) -> tuple[list[Record], tuple | None]:
        """Records up to ``max_chars`` (merged), stopping at and consuming the first marker."""
        console: list[Record] = []
        used = 0
        while used < max_chars:
            item = self._peek()
            if item is None:
                break
            if isinstance(item, tuple):
                self._head.popleft()
                return console, item
            size = record_size(item)
            if item[0] in ("stdout", "stderr") and used + size > max_chars:
                room = max_chars - used
                piece, item[1] = item[1][:room], item[1][room:]
                self._head_chars -= room
                _merge_into(console, [item[0], piece])
                break
            self._head.popleft()
            if self._tail_record is item:
                self._tail_record = None
            self._head_chars -= size
            used += size
            _merge_into(console, item)
        return console, None

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        self._head.clear()


def _merge_into(console: list[Record], record: Record) -> None:
    if console and record[0] in ("stdout", "stderr") and console[-1][0] == record[0]:
        console[-1] = [record[0], console[-1][1] + record[1]]
    else:
        console.append(record)

