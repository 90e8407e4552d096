"""Console records: what a local kernel's IOPub output becomes on the Backend.AI wire.

A record is ``[type, data]`` with type ``stdout``/``stderr`` (text), ``media`` (``[mime, data]``,
images as RFC 2397 data-URIs, SVG as raw text) or ``html`` (an HTML fragment).
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

from ..fastjson import dumpb, loads
from ..protocol import (
    DRAWING_MIME,
    IMAGE_MIMES,
    MAX_CHARS_PER_CALL,
    OUTPUT_MARK,
    OUTPUT_MIME,
    SVG_MIME,
)

Record = list  # [type, data]

# Rich mimes in order of preference when a bundle carries several.
_PREFERENCE = (*IMAGE_MIMES, SVG_MIME, DRAWING_MIME, "text/html")


def bundle_to_record(data: dict[str, Any], metadata: dict[str, Any] | None = None, *,
                     is_result: bool = False) -> Record | None:
    """Pick the richest representation of a Jupyter mime bundle as one console record.

    An output of the remote display adapter (marked in its metadata, see remote.py) carries a JSON
    ``{"type", "data"}`` object as its only type: it becomes ``["media", [type, data]]``, the record
    Backend.AI's agent makes of the same message, so it passes through unchanged."""
    if metadata and metadata.get(OUTPUT_MARK) and set(data) == {"text/html"}:
        envelope = _envelope(data["text/html"])
        if envelope is not None:
            return ["media", envelope]
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


def message_record(kind: str, content: dict[str, Any]) -> Record | None:
    """The console record of an IOPub output message (``stream``, ``error``, ``execute_result``,
    ``display_data``, ``update_display_data``); None for a bundle with nothing to show."""
    if kind == "stream":
        return [content.get("name", "stdout"), content.get("text", "")]
    if kind == "error":
        traceback = "\n".join(content.get("traceback") or [])
        if not traceback:
            traceback = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"
        return ["stderr", traceback + "\n"]
    return bundle_to_record(content.get("data", {}), content.get("metadata"),
                            is_result=kind == "execute_result")


def _envelope(text: Any) -> list | None:
    try:
        value = loads(_text(text))
    except ValueError:
        return None
    if isinstance(value, dict) and value.get("type") == OUTPUT_MIME and "data" in value:
        return [OUTPUT_MIME, value["data"]]
    return None


def _mime_record(mime: str, value: Any) -> Record:
    if mime == "text/html":
        return ["html", _text(value)]
    if mime in IMAGE_MIMES:
        payload = "".join(_text(value).split())
        return ["media", [mime, f"data:{mime};base64,{payload}"]]
    if isinstance(value, (dict, list)) and mime != SVG_MIME:
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
    """FIFO of console records (plus status markers) with spill-to-disk.

    Items are either records ``[type, data]`` or markers ``("status", name, exit_code)``.  Stream
    text is stored in pieces of at most :attr:`PIECE` characters and merged only when taken, so
    neither many tiny writes nor one huge line costs more than linear time.
    """

    PIECE = 64 * 1024
    OVERHEAD = 64  # bytes of bookkeeping per buffered item, counted against the memory budget

    def __init__(self, memory_budget: int = 8 * 1024 * 1024):
        self.memory_budget = memory_budget
        self._head: deque = deque()  # in memory, oldest first
        self._head_cost = 0
        self._spill: Any = None  # temp file of JSON lines (binary), used once the head is full
        self._spill_read = 0
        self._spill_write = 0
        self.closed = False

    def __bool__(self) -> bool:
        return bool(self._head) or self._spill_read < self._spill_write

    @property
    def spilled(self) -> bool:
        return self._spill is not None

    @staticmethod
    def _cost(item) -> int:
        return (record_size(item) if isinstance(item, list) else 0) + RecordBuffer.OVERHEAD

    def append(self, item) -> None:
        if self.closed:
            return
        if isinstance(item, list) and item[0] in ("stdout", "stderr") and len(item[1]) > self.PIECE:
            text = item[1]
            for i in range(0, len(text), self.PIECE):
                self.append([item[0], text[i:i + self.PIECE]])
            return
        item = list(item) if isinstance(item, list) else item
        if self._spill is None and self._head_cost < self.memory_budget:
            self._head.append(item)
            self._head_cost += self._cost(item)
            return
        self._write_spill(item)

    def _write_spill(self, item) -> None:
        if self._spill is None:
            self._spill = tempfile.TemporaryFile("w+b")  # binary: tell() on a text file is slow
        self._spill.seek(self._spill_write)
        self._spill.write(dumpb(list(item) if isinstance(item, tuple) else item) + b"\n")
        self._spill_write = self._spill.tell()

    def _pop_spill(self):
        self._spill.seek(self._spill_read)
        line = self._spill.readline()
        self._spill_read = self._spill.tell()
        if self._spill_read >= self._spill_write:
            self._spill.close()
            self._spill = None
            self._spill_read = self._spill_write = 0
        item = loads(line)
        return tuple(item) if item and item[0] == "status" else item

    def _peek(self):
        if self._head:
            return self._head[0]
        if self._spill is not None and self._spill_read < self._spill_write:
            item = self._pop_spill()
            self._head.append(item)
            self._head_cost += self._cost(item)
            return item
        return None

    def _pop(self, item) -> None:
        self._head.popleft()
        self._head_cost -= self._cost(item)

    def take(self, max_chars: int = MAX_CHARS_PER_CALL) -> tuple[list[Record], tuple | None]:
        """Records up to ``max_chars`` (consecutive stream text merged), stopping at and
        consuming the first marker."""
        console: list[Record] = []
        parts: list[str] = []  # text of the stream record being assembled
        kind = None
        used = 0

        def close_stream():
            if parts:
                console.append([kind, "".join(parts)])
                parts.clear()

        marker = None
        while used < max_chars:
            item = self._peek()
            if item is None:
                break
            if isinstance(item, tuple):
                self._pop(item)
                marker = item
                break
            size = record_size(item)
            if item[0] in ("stdout", "stderr"):
                if kind != item[0]:
                    close_stream()
                    kind = item[0]
                if used + size > max_chars:  # take part of a piece (at most PIECE characters)
                    room = max_chars - used
                    parts.append(item[1][:room])
                    self._head_cost -= room
                    item[1] = item[1][room:]
                    used = max_chars
                    break
                parts.append(item[1])
            else:
                close_stream()
                kind = None
                console.append(item)
            self._pop(item)
            used += size
        close_stream()
        return console, marker

    def close(self) -> None:
        """Release the memory and the spill file; the buffer is empty for good (what is appended
        later, say a marker of a run its session's end cut short, is dropped, not spilled anew)."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        self._head.clear()
        self._head_cost = self._spill_read = self._spill_write = 0
        self.closed = True
