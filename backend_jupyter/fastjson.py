"""JSON for the wire, fast where it matters: orjson, with the standard library where orjson refuses.

Console output travels as JSON strings, megabytes at a time; orjson encodes and decodes them several
times faster than :mod:`json`.  It refuses a few things the standard library accepts, and those fall
back to :mod:`json` so that nothing is lost: lone surrogates (a Python ``str`` may hold them, JSON
carries them as ``\\udXXX`` escapes), integers beyond 64 bits, non-string keys.  (NaN and infinity
become ``null``, which is valid JSON, where :mod:`json` would write the invalid ``NaN``.)
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumpb(obj: Any) -> bytes:
    """``obj`` as UTF-8 JSON bytes."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj).encode()


def dumps(obj: Any) -> str:
    """``obj`` as a JSON string (the signature aiohttp's ``dumps=`` arguments expect)."""
    return dumpb(obj).decode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode JSON (bytes in any UTF encoding JSON allows, or ``str``)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
