"""display.py: console records → Jupyter mime bundles, data-URIs, drawings, tracebacks, and the
outputs of the remote display adapter (RichOutput)."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from backend_jupyter.display import (
    RichOutput,
    adapted_output,
    find_traceback,
    media_bundle,
    parse_data_uri,
    parse_traceback,
    record_bundle,
    record_output,
    strip_ansi,
)
from backend_jupyter.protocol import DRAWING_MIME, OUTPUT_MIME


def msgpack(value) -> bytes:
    """A small msgpack encoder (the package is not a dependency) for drawing commands."""
    if value is None:
        return b"\xc0"
    if isinstance(value, bool):
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        if 0 <= value <= 0x7F:
            return bytes([value])
        if -32 <= value < 0:
            return bytes([value + 0x100])
        if 0 <= value <= 0xFFFF:
            return b"\xcd" + struct.pack(">H", value)
        return b"\xd2" + struct.pack(">i", value)
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, str):
        raw = value.encode()
        return (bytes([0xA0 | len(raw)]) if len(raw) < 32 else b"\xd9" + bytes([len(raw)])) + raw
    if isinstance(value, list):
        head = bytes([0x90 | len(value)]) if len(value) < 16 else b"\xdc" + struct.pack(">H", len(value))
        return head + b"".join(msgpack(v) for v in value)
    if isinstance(value, dict):
        return bytes([0x80 | len(value)]) + b"".join(msgpack(k) + msgpack(v) for k, v in value.items())
    raise TypeError(value)


# -- record_bundle / media_bundle ---------------------------------------------------------------

def test_png_data_uri_becomes_its_base64_payload():
    bundle = record_bundle("media", ["image/png", "data:image/png;base64,iVBO\nRw0K\n"])
    assert bundle == {"image/png": "iVBORw0K", "text/plain": "[image/png image]"}


def test_image_mime_taken_from_the_uri_when_the_record_has_none():
    assert record_bundle("media", ["", "data:image/gif;base64,R0lGOD"]) == \
        {"image/gif": "R0lGOD", "text/plain": "[image/gif image]"}


def test_raw_image_bytes_are_base64_encoded():
    bundle = media_bundle("image/jpeg", "\xff\xd8\xff")
    assert base64.b64decode(bundle["image/jpeg"]) == b"\xff\xd8\xff"


@pytest.mark.parametrize("data", [
    "<svg xmlns='http://www.w3.org/2000/svg'/>",
    "data:image/svg+xml;charset=utf-8,%3Csvg%20xmlns%3D'http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg'%2F%3E",
    "data:image/svg+xml;base64," + base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode(),
], ids=["raw", "percent-encoded", "base64"])
def test_svg_in_every_spelling_becomes_the_xml(data):
    assert record_bundle("media", ["image/svg+xml", data]) == \
        {"image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg'/>", "text/plain": "[image/svg+xml]"}


def test_html_record():
    assert record_bundle("html", "<table><tr><td>1</td></tr></table>") == \
        {"text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "[HTML output]"}


def test_json_media_is_parsed():
    assert record_bundle("media", ["application/json", '{"a": [1, 2]}']) == \
        {"application/json": {"a": [1, 2]}, "text/plain": '{"a": [1, 2]}'}
    assert record_bundle("media", ["application/json", {"b": None}]) == \
        {"application/json": {"b": None}, "text/plain": '{"b": null}'}
    assert record_bundle("media", ["application/json", "{not json"]) == {"text/plain": "{not json"}


def test_text_types_keep_their_mime():
    assert record_bundle("media", ["text/markdown", "# Title"]) == {"text/markdown": "# Title", "text/plain": "[text/markdown]"}
    assert record_bundle("media", ["text/plain", "data:,hello%20world"]) == {"text/plain": "hello world"}


def test_undecodable_base64_text_is_reported_not_dropped():
    bundle = record_bundle("media", ["text/markdown", "data:text/markdown;base64,//79"])
    assert bundle == {"text/plain": "[text/markdown: binary data, 3 bytes]"}


def test_log_records():
    assert record_bundle("log", ["WARNING", "2024-01-01T00:00:00", "my.logger", "careful"]) == \
        {"text/plain": "[WARNING] 2024-01-01T00:00:00 my.logger: careful"}
    assert record_bundle("log", "odd") == {"text/plain": "[log] odd"}


def test_unknown_kinds_and_mimes_are_shown_as_text():
    assert record_bundle("weird", {"k": 1}) == {"text/plain": '[weird] {"k": 1}'}
    assert record_bundle("media", ["application/x-thing", "payload"]) == {"text/plain": "[application/x-thing] payload"}
    assert record_bundle("media", "not a pair") == {"text/plain": "[media] not a pair"}
    long = record_bundle("weird", "x" * 5000)["text/plain"]
    assert long.startswith("[weird] xxx") and long.endswith("… (5000 characters)") and len(long) < 2100


DRAWING = [
    ["c1", "canvas", 640, 480, "#eeeeee", "#000000"],
    ["c1", "obj", "l", ["line", 0, 0, 10, 20, "#ff0000"]],
    ["c1", "obj", "c", ["circle", 50, 60, 5, "#000000", "#00ff00", 0]],
    ["c1", "obj", "r", ["rect", 1, 2, 30, 40, "#000000", "#0000ff", 10]],
    ["c1", "update", "l", "color", "#123456"],
    ["c1", "update", "r", "rotate", 35],  # adds to the angle
    ["c1", "bgcolor", "#abcdef"],
    ["c2", "obj", "t", ["triangle", 0, 0, 10, 10, "#111111", "#222222", 0]],
    ["c1", "update", "missing", "x", 1],  # an update of an unknown object is ignored
]
SVG_1 = ('<svg xmlns="http://www.w3.org/2000/svg" width="640" height="480" viewBox="0 0 640 480">'
         '<rect width="100%" height="100%" fill="#abcdef"/>'
         '<line x1="0" y1="0" x2="10" y2="20" stroke="#123456"/>'
         '<circle cx="50" cy="60" r="5" stroke="#000000" fill="#00ff00"/>'
         '<rect x="1" y="2" width="30" height="40" stroke="#000000" fill="#0000ff" transform="rotate(45 1 2)"/>'
         '</svg>')
SVG_2 = ('<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300" viewBox="0 0 400 300">'
         '<rect width="100%" height="100%" fill="#ffffff"/>'
         '<polygon points="0,10 5.0,0 10,10" stroke="#111111" fill="#222222"/></svg>')


@pytest.mark.parametrize("encode", [
    lambda cmds: json.dumps(cmds),
    lambda cmds: cmds,
    lambda cmds: base64.b64encode(msgpack(cmds)).decode(),
], ids=["json-text", "list", "base64-msgpack"])
def test_drawings_render_to_one_svg_per_canvas(encode):
    bundle = record_bundle("media", [DRAWING_MIME, encode(DRAWING)])
    assert bundle == {"image/svg+xml": SVG_1 + "\n" + SVG_2, "text/plain": "[drawing]"}


def test_msgpack_drawing_with_wider_types():
    cmds = [["canvas-with-a-rather-long-identifier", "canvas", 1000, 500.5, "fff", "000"],
            ["canvas-with-a-rather-long-identifier", "obj", 1, ["circle", -3, 70000, 2, "000", "fff", None]]]
    svg = record_bundle("media", [DRAWING_MIME, base64.b64encode(msgpack(cmds)).decode()])["image/svg+xml"]
    assert 'width="1000" height="500.5"' in svg and 'fill="#fff"' in svg
    assert '<circle cx="-3" cy="70000" r="2" stroke="#000" fill="#fff"/>' in svg


def test_drawing_colours_are_escaped():
    svg = record_bundle("media", [DRAWING_MIME, [["c", "bgcolor", '"><script>']]])["image/svg+xml"]
    assert "<script>" not in svg and "&quot;&gt;&lt;script&gt;" in svg


@pytest.mark.parametrize("data", ["garbage!", base64.b64encode(msgpack({"not": "a list"})).decode(), "[[1]]"])
def test_unrenderable_drawings_are_shown_as_text(data):
    bundle = record_bundle("media", [DRAWING_MIME, data])
    assert list(bundle) == ["text/plain"] and "could not be rendered" in bundle["text/plain"]


# -- parse_data_uri -------------------------------------------------------------------------------

@pytest.mark.parametrize("uri, expected", [
    ("data:image/png;base64,iVBO", ("image/png", "iVBO", True)),
    ("data:,hello%20world", ("text/plain", "hello world", False)),
    ("data:text/plain;charset=utf-8;base64,aGk=", ("text/plain", "aGk=", True)),
    ("data:text/html;charset=utf-8,%3Cb%3E%C3%A9%3C%2Fb%3E", ("text/html", "<b>é</b>", False)),
    ("data:text/plain,a,b", ("text/plain", "a,b", False)),
])
def test_parse_data_uri(uri, expected):
    assert parse_data_uri(uri) == expected


# -- tracebacks ----------------------------------------------------------------------------------

def test_strip_ansi():
    assert strip_ansi("\x1b[0;31mValueError\x1b[0m: \x1b[38;5;241mx\x1b[39m") == "ValueError: x"


@pytest.mark.parametrize("text, expected", [
    ("no traceback here\n", None),
    ("out\nTraceback (most recent call last):\n  File \"x\"\nE: v\n", 4),
    ("a\n\x1b[0;31m" + "-" * 75 + "\x1b[0m\nE\n", 2),
    ("ab\n  File \"y.py\", line 1\n", 3),
    ("x\nCell \x1b[0;32mIn[3], line 2\x1b[0m\n", 2),
    ("----- short rule\n", None),
])
def test_find_traceback_gives_the_raw_offset(text, expected):
    assert find_traceback(text) == expected


def test_find_traceback_offset_counts_ansi_codes_before_it():
    text = "\x1b[1mbold\x1b[0m\nTraceback (most recent call last):\n"
    assert text[find_traceback(text):].startswith("Traceback")


def test_parse_traceback():
    ename, evalue, lines = parse_traceback("Traceback (most recent call last):\n  File \"x\", line 1\n"
                                           "\x1b[0;31mKeyError\x1b[0m: 'k'\n\n")
    assert (ename, evalue) == ("KeyError", "'k'")
    assert lines == ["Traceback (most recent call last):", '  File "x", line 1', "\x1b[0;31mKeyError\x1b[0m: 'k'"]
    assert parse_traceback("Traceback (most recent call last):\nKeyboardInterrupt\n")[:2] == ("KeyboardInterrupt", "")
    assert parse_traceback("Traceback:\nmod.sub.Err: a: b")[:2] == ("mod.sub.Err", "a: b")
    # a traceback cut off inside a frame: no exception line
    ename, evalue, _ = parse_traceback("Traceback (most recent call last):\n  File \"x\", line 1\n")
    assert (ename, evalue) == ("RemoteError", 'File "x", line 1')


# -- the display adapter's outputs --------------------------------------------------------------

def adapter_record(output):
    return "media", [OUTPUT_MIME, output]


def test_execute_result_keeps_every_type_and_its_count():
    out = record_output(*adapter_record({
        "output_type": "execute_result", "execution_count": 4,
        "data": {"text/plain": "   a\n0  1", "text/html": "<table/>"}, "metadata": {"isolated": True},
    }))
    assert out == RichOutput("execute_result", {"text/plain": "   a\n0  1", "text/html": "<table/>"},
                             {"isolated": True}, None, 4)
    assert out.content() == {"data": out.data, "metadata": {"isolated": True}, "execution_count": 4}
    assert out.content(execution_count=9)["execution_count"] == 9  # the front-end's own count wins
    assert "transient" not in out.content()


def test_display_data_with_and_without_display_id():
    out = record_output(*adapter_record({"output_type": "display_data", "data": {"text/markdown": "# x"},
                                         "metadata": {}, "display_id": "d1"}))
    assert (out.output_type, out.display_id, out.data) == ("display_data", "d1", {"text/markdown": "# x"})
    assert out.content() == {"data": {"text/markdown": "# x"}, "metadata": {}, "transient": {"display_id": "d1"}}
    bare = record_output(*adapter_record({"output_type": "display_data", "data": {"text/latex": "$x$"}}))
    assert bare.content() == {"data": {"text/latex": "$x$"}, "metadata": {}, "transient": {}}
    assert "execution_count" not in bare.content()


def test_update_display_data():
    out = adapted_output({"output_type": "update_display_data", "data": {"text/plain": "2"}, "display_id": "d1"})
    assert (out.output_type, out.display_id) == ("update_display_data", "d1")
    assert out.content()["transient"] == {"display_id": "d1"}
    # without a display id there is nothing to update: shown as a new display
    orphan = adapted_output({"output_type": "update_display_data", "data": {"text/plain": "2"}})
    assert (orphan.output_type, orphan.display_id) == ("display_data", None)
    assert adapted_output({"output_type": "update_display_data", "data": {"text/plain": "2"},
                           "display_id": 5}).output_type == "display_data"


def test_clear_output():
    assert adapted_output({"output_type": "clear_output", "wait": True}).content() == {"wait": True}
    assert adapted_output({"output_type": "clear_output"}).content() == {"wait": False}


def test_adapter_outputs_with_bad_fields_are_repaired():
    out = adapted_output({"output_type": "execute_result", "data": {}, "metadata": "x", "execution_count": "3"})
    assert (out.data, out.metadata, out.execution_count) == ({"text/plain": ""}, {}, None)


@pytest.mark.parametrize("output", ["a string", None, [1, 2], {"output_type": "stream", "text": "x"}, {"data": {}}])
def test_malformed_adapter_outputs_are_shown_as_text(output):
    out = record_output(*adapter_record(output))
    assert out.output_type == "display_data"
    assert list(out.data) == ["text/plain"] and out.data["text/plain"].startswith(f"[{OUTPUT_MIME}] ")
    assert json.dumps(output) in out.data["text/plain"] or str(output) in out.data["text/plain"]


def test_other_records_become_display_data():
    out = record_output("html", "<i>x</i>")
    assert out == RichOutput("display_data", {"text/html": "<i>x</i>", "text/plain": "[HTML output]"})
    assert out.content() == {"data": out.data, "metadata": {}, "transient": {}}
