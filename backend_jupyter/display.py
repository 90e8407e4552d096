"""Console records → Jupyter mime bundles: the one place that knows both.

* ``media`` ``[mime, data]``: data-URIs become base64 payloads (binary images) or text (SVG and
  other text types); raw SVG XML stays ``image/svg+xml``; ``application/x-sorna-drawing`` (JSON or
  base64-msgpack drawing commands from Backend.AI's Python kernel) is rendered to SVG.
* ``html`` → ``text/html``; ``log`` → text.
* ``media`` ``[OUTPUT_MIME, {...}]`` (from the remote display adapter, see remote.py) → the whole
  output as a local IPython kernel sends it: ``execute_result``, ``display_data``,
  ``update_display_data`` or ``clear_output``, with every type of its bundle.
* Anything unknown is shown as text, never dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import unquote_to_bytes

from .protocol import DRAWING_MIME, IMAGE_MIMES, OUTPUT_MIME

TEXT_PREVIEW = 2000


@dataclass
class RichOutput:
    """One rich output as a Jupyter front-end shows it."""

    output_type: str  # display_data | update_display_data | execute_result | clear_output
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    display_id: str | None = None
    execution_count: int | None = None  # of the remote cell, for an execute_result
    wait: bool = False  # for clear_output

    def content(self, execution_count: int | None = None) -> dict[str, Any]:
        """The IOPub message content (``execution_count``: the front-end's own, for a result)."""
        if self.output_type == "clear_output":
            return {"wait": self.wait}
        content = {"data": self.data, "metadata": self.metadata}
        if self.output_type == "execute_result":
            content["execution_count"] = execution_count if execution_count is not None else self.execution_count
        else:
            content["transient"] = {"display_id": self.display_id} if self.display_id else {}
        return content


OUTPUT_TYPES = ("display_data", "update_display_data", "execute_result", "clear_output")


def record_output(kind: str, data: Any) -> RichOutput:
    """The rich output of one console record."""
    if kind == "media" and isinstance(data, (list, tuple)) and len(data) == 2 and data[0] == OUTPUT_MIME:
        return adapted_output(data[1])
    return RichOutput("display_data", record_bundle(kind, data))


def adapted_output(output: Any) -> RichOutput:
    """An output the remote display adapter sent whole; a malformed one is shown as text."""
    if not isinstance(output, dict) or output.get("output_type") not in OUTPUT_TYPES:
        return RichOutput("display_data", {"text/plain": f"[{OUTPUT_MIME}] {_preview(output)}"})
    kind = output["output_type"]
    if kind == "clear_output":
        return RichOutput(kind, wait=bool(output.get("wait")))
    data = output.get("data")
    if not isinstance(data, dict) or not data:
        data = {"text/plain": ""}
    metadata = output.get("metadata") if isinstance(output.get("metadata"), dict) else {}
    display_id = output.get("display_id") if isinstance(output.get("display_id"), str) else None
    if kind == "update_display_data" and display_id is None:
        kind = "display_data"
    count = output.get("execution_count")
    return RichOutput(kind, data, metadata, display_id, count if isinstance(count, int) else None)


def record_bundle(kind: str, data: Any) -> dict[str, Any]:
    """The mime bundle (``{mime: data}``, always with a text/plain fallback) for one record."""
    if kind == "html":
        return {"text/html": str(data), "text/plain": "[HTML output]"}
    if kind == "media" and isinstance(data, (list, tuple)) and len(data) == 2:
        return media_bundle(str(data[0]), data[1])
    if kind == "log":
        return {"text/plain": _log_text(data)}
    return {"text/plain": f"[{kind}] {_preview(data)}"}


def media_bundle(mime: str, data: Any) -> dict[str, Any]:
    if mime == DRAWING_MIME:
        try:
            svgs = drawing_to_svg(data)
        except (ValueError, TypeError, KeyError, IndexError, struct.error):
            return {"text/plain": f"[{mime}: drawing commands that could not be rendered] {_preview(data)}"}
        return {"image/svg+xml": "\n".join(svgs), "text/plain": "[drawing]"}
    if not isinstance(data, str):
        data = json.dumps(data)
    payload_mime, payload, is_base64 = parse_data_uri(data) if data.startswith("data:") else (mime, data, False)
    mime = mime or payload_mime
    if mime in IMAGE_MIMES:
        b64 = payload if is_base64 else base64.b64encode(payload.encode("latin-1")).decode()
        return {mime: "".join(b64.split()), "text/plain": f"[{mime} image]"}
    if is_base64:
        try:
            payload = base64.b64decode(payload).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return {"text/plain": f"[{mime}: binary data, {len(payload) * 3 // 4} bytes]"}
    if mime == "application/json":
        try:
            return {mime: json.loads(payload), "text/plain": payload}
        except ValueError:
            return {"text/plain": payload}
    if mime == "image/svg+xml" or mime.startswith("text/") or mime in (
        "application/javascript", "application/vnd.vegalite.v5+json", "application/pdf",
    ):
        return {mime: payload, "text/plain": f"[{mime}]" if mime != "text/plain" else payload}
    return {"text/plain": f"[{mime}] {_preview(payload)}"}


def parse_data_uri(uri: str) -> tuple[str, str, bool]:
    """``data:[mime][;params][;base64],payload`` → (mime, payload text, is_base64)."""
    header, _, payload = uri[5:].partition(",")
    parts = header.split(";")
    mime = parts[0] or "text/plain"
    is_base64 = "base64" in parts[1:]
    if not is_base64:
        payload = unquote_to_bytes(payload).decode("utf-8", "replace")
    return mime, payload, is_base64


def _preview(data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    return text if len(text) <= TEXT_PREVIEW else text[:TEXT_PREVIEW] + f"… ({len(text)} characters)"


def _log_text(data: Any) -> str:
    if isinstance(data, (list, tuple)) and len(data) == 4:  # [level, timestamp, logger, message]
        level, ts, logger, msg = data
        return f"[{level}] {ts} {logger}: {msg}"
    return f"[log] {_preview(data)}"


# -- drawings ------------------------------------------------------------------------------------

def decode_drawing(data: Any) -> list:
    """Drawing commands: a JSON list (old kernels) or base64 msgpack (current kernels)."""
    if isinstance(data, list):
        return data
    text = str(data).strip()
    if text.startswith("["):
        return json.loads(text)
    value, _ = _unpack(base64.b64decode(text), 0)
    if not isinstance(value, list):
        raise ValueError("drawing data is not a command list")
    return value


def _unpack(buf: bytes, i: int) -> tuple[Any, int]:
    """A small msgpack decoder: the types drawing commands use (and the rest of the format)."""
    b = buf[i]
    i += 1
    if b <= 0x7F:
        return b, i
    if b >= 0xE0:
        return b - 0x100, i
    if 0xA0 <= b <= 0xBF:
        n = b & 0x1F
        return buf[i:i + n].decode("utf-8"), i + n
    if 0x90 <= b <= 0x9F:
        return _unpack_array(buf, i, b & 0x0F)
    if 0x80 <= b <= 0x8F:
        return _unpack_map(buf, i, b & 0x0F)
    simple = {0xC0: None, 0xC2: False, 0xC3: True}
    if b in simple:
        return simple[b], i
    fixed = {0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
             0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
    if b in fixed:
        fmt = fixed[b]
        size = struct.calcsize(fmt)
        return struct.unpack_from(fmt, buf, i)[0], i + size
    sized = {0xD9: (">B", "str"), 0xDA: (">H", "str"), 0xDB: (">I", "str"),
             0xC4: (">B", "bin"), 0xC5: (">H", "bin"), 0xC6: (">I", "bin"),
             0xDC: (">H", "array"), 0xDD: (">I", "array"), 0xDE: (">H", "map"), 0xDF: (">I", "map")}
    if b in sized:
        fmt, kind = sized[b]
        n = struct.unpack_from(fmt, buf, i)[0]
        i += struct.calcsize(fmt)
        if kind == "str":
            return buf[i:i + n].decode("utf-8"), i + n
        if kind == "bin":
            return bytes(buf[i:i + n]), i + n
        return (_unpack_array if kind == "array" else _unpack_map)(buf, i, n)
    raise ValueError(f"unsupported msgpack type byte 0x{b:02x}")


def _unpack_array(buf: bytes, i: int, n: int) -> tuple[list, int]:
    out = []
    for _ in range(n):
        value, i = _unpack(buf, i)
        out.append(value)
    return out, i


def _unpack_map(buf: bytes, i: int, n: int) -> tuple[dict, int]:
    out = {}
    for _ in range(n):
        key, i = _unpack(buf, i)
        out[key], i = _unpack(buf, i)
    return out, i


def _color(value: Any) -> str:
    text = str(value)
    return escape(text if text.startswith("#") else "#" + text, quote=True)


def drawing_to_svg(data: Any) -> list[str]:
    """Replay drawing commands (canvas/obj/update/bgcolor/...) into one SVG per canvas."""
    canvases: dict[Any, dict[str, Any]] = {}
    for cmd in decode_drawing(data):
        cid, op = cmd[0], cmd[1]
        if op == "canvas":
            canvases[cid] = {"w": cmd[2], "h": cmd[3], "bg": cmd[4], "fg": cmd[5], "objs": {}}
            continue
        canvas = canvases.setdefault(cid, {"w": 400, "h": 300, "bg": "#ffffff", "fg": "#000000", "objs": {}})
        if op == "obj":
            canvas["objs"][cmd[2]] = list(cmd[3])
        elif op == "update":
            _update(canvas["objs"].get(cmd[2]), cmd[3], cmd[4])
        elif op == "bgcolor":
            canvas["bg"] = cmd[2]
    return [_svg(c) for c in canvases.values()]


_FIELDS = {
    "line": {"x1": 1, "y1": 2, "x2": 3, "y2": 4, "color": 5},
    "circle": {"x": 1, "y": 2, "radius": 3, "border": 4, "fill": 5, "angle": 6},
    "rect": {"x": 1, "y": 2, "border": 5, "fill": 6, "angle": 7},
    "triangle": {"x": 1, "y": 2, "border": 5, "fill": 6, "angle": 7},
}


def _update(obj: list | None, prop: str, value: Any) -> None:
    if obj is None:
        return
    index = _FIELDS.get(obj[0], {}).get(prop)
    if index is not None:
        obj[index] = value
    elif prop == "rotate" and obj[0] in ("circle", "rect", "triangle"):
        obj[-1] = (obj[-1] or 0) + value


def _svg(canvas: dict[str, Any]) -> str:
    w, h = float(canvas["w"]), float(canvas["h"])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:g}" height="{h:g}" viewBox="0 0 {w:g} {h:g}">',
             f'<rect width="100%" height="100%" fill="{_color(canvas["bg"])}"/>']
    for obj in canvas["objs"].values():
        kind = obj[0]
        if kind == "line":
            _, x1, y1, x2, y2, color = obj[:6]
            parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{_color(color)}"/>')
        elif kind == "circle":
            _, x, y, r, border, fill, angle = obj[:7]
            parts.append(f'<circle cx="{x}" cy="{y}" r="{r}" stroke="{_color(border)}" fill="{_color(fill)}"/>')
        elif kind in ("rect", "triangle"):
            _, x, y, rw, rh, border, fill, angle = obj[:8]
            rot = f' transform="rotate({angle} {x} {y})"' if angle else ""
            if kind == "rect":
                parts.append(f'<rect x="{x}" y="{y}" width="{rw}" height="{rh}" stroke="{_color(border)}" '
                             f'fill="{_color(fill)}"{rot}/>')
            else:
                points = f"{x},{y + rh} {x + rw / 2},{y} {x + rw},{y + rh}"
                parts.append(f'<polygon points="{points}" stroke="{_color(border)}" fill="{_color(fill)}"{rot}/>')
    parts.append("</svg>")
    return "".join(parts)


# -- remote tracebacks -----------------------------------------------------------------------------

ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TRACEBACK_START = re.compile(
    r"^(?:-{20,}|Traceback \(most recent call last\):)\s*$|^\s*File \"|^\s*Cell In\[\d+\], line \d+", re.M
)
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


def find_traceback(stderr: str) -> int | None:
    """Where a Python traceback starts in ``stderr`` (IPython's coloured one or the plain one)."""
    match = _TRACEBACK_START.search(strip_ansi(stderr))
    if match is None:
        return None
    # Map the position in the stripped text back onto the raw text, line by line.
    line_no = strip_ansi(stderr)[: match.start()].count("\n")
    lines = stderr.split("\n")
    return sum(len(line) + 1 for line in lines[:line_no])


_START_PREFIXES = ("Traceback (most recent call last):", 'File "', "Cell In[")
_PARTIAL_ANSI = re.compile(r"\x1b(?:\[[0-9;]*)?\Z")


def may_start_traceback(partial_line: str) -> bool:
    """Whether an unfinished last line (no newline yet) may become the first line of a traceback
    (see :func:`find_traceback`) once the rest of it arrives: so far only indentation and colour
    codes (maybe cut inside one), or a beginning of ``Traceback (most recent call last):``, of the
    dashes IPython starts with, of ``File "`` or ``Cell In[``.  Other unfinished lines, such as a
    progress bar's ``\\r`` updates, need not wait."""
    plain = _PARTIAL_ANSI.sub("", strip_ansi(partial_line)).lstrip()
    return not plain or set(plain) == {"-"} or any(start.startswith(plain) or plain.startswith(start)
                                                   for start in _START_PREFIXES)


def parse_traceback(text: str) -> tuple[str, str, list[str]]:
    """``(ename, evalue, traceback lines)`` of a remote Python traceback; the lines keep their
    ANSI colours (front-ends render them)."""
    lines = text.rstrip("\n").split("\n")
    for line in reversed(lines):
        plain = strip_ansi(line).strip()
        if not plain:
            continue
        match = _EXCEPTION_LINE.match(plain)
        if match and not plain.startswith(("File ", "Cell ")):
            return match.group(1), match.group(2) or "", lines
        break
    last = next((strip_ansi(line).strip() for line in reversed(lines) if line.strip()), "")
    return "RemoteError", last, lines
