"""server/records.py: a Jupyter mime bundle → one console record, and the run buffer (order,
merging, markers, per-take limits, spill to disk)."""

from __future__ import annotations

import json

import pytest

from backend_jupyter.protocol import OUTPUT_MARK, OUTPUT_MIME
from backend_jupyter.server.records import RecordBuffer, bundle_to_record
from tests.signed_http import merged

# -- bundle_to_record -------------------------------------------------------------------------------

def test_richest_type_wins():
    bundle = {"text/plain": "<Figure>", "text/html": "<b>f</b>", "image/svg+xml": "<svg/>",
              "image/png": "iVBO\nRw==\n"}
    assert bundle_to_record(bundle) == ["media", ["image/png", "data:image/png;base64,iVBORw=="]]
    del bundle["image/png"]
    assert bundle_to_record(bundle) == ["media", ["image/svg+xml", "<svg/>"]]
    del bundle["image/svg+xml"]
    assert bundle_to_record(bundle) == ["html", "<b>f</b>"]


def test_images_of_each_kind_become_data_uris():
    for mime in ("image/jpeg", "image/gif", "image/webp", "image/bmp"):
        assert bundle_to_record({mime: ["AAAA", "BBBB"], "text/html": "x"}) == \
            ["media", [mime, f"data:{mime};base64,AAAABBBB"]]


def test_svg_list_is_joined_and_drawing_kept():
    assert bundle_to_record({"image/svg+xml": ["<svg>", "</svg>"]}) == ["media", ["image/svg+xml", "<svg></svg>"]]
    drawing = [["c", "canvas", 10, 10, "#fff", "#000"]]
    assert bundle_to_record({"application/x-sorna-drawing": drawing, "text/html": "x"}) == \
        ["media", ["application/x-sorna-drawing", json.dumps(drawing)]]


def test_other_rich_types_json_encoded_jupyter_internal_types_skipped():
    assert bundle_to_record({"application/json": {"a": 1}, "text/plain": "{}"}) == \
        ["media", ["application/json", '{"a": 1}']]
    assert bundle_to_record({"text/markdown": "# T", "text/plain": "T"}) == ["media", ["text/markdown", "# T"]]
    assert bundle_to_record({"application/vnd.jupyter.widget-view+json": {"model_id": "m"}, "text/plain": "W"}) == \
        ["stdout", "W\n"]


def test_plain_text_is_stdout_with_a_newline_except_for_a_result():
    assert bundle_to_record({"text/plain": "42"}) == ["stdout", "42\n"]
    assert bundle_to_record({"text/plain": "42"}, is_result=True) == ["stdout", "42"]
    assert bundle_to_record({"text/plain": ["a", "b"]}) == ["stdout", "ab\n"]
    assert bundle_to_record({}) is None


def envelope(data) -> str:
    return json.dumps({"type": OUTPUT_MIME, "data": data})


ADAPTED = {"output_type": "execute_result", "data": {"text/html": "<table/>", "text/plain": "df"},
           "metadata": {}, "execution_count": 3}


def test_the_adapter_envelope_passes_through_as_its_media_record():
    assert bundle_to_record({"text/html": envelope(ADAPTED)}, {OUTPUT_MARK: 1}) == ["media", [OUTPUT_MIME, ADAPTED]]
    # the HTML may arrive as a list of lines
    text = envelope(ADAPTED)
    assert bundle_to_record({"text/html": [text[:10], text[10:]]}, {OUTPUT_MARK: 1}) == \
        ["media", [OUTPUT_MIME, ADAPTED]]


@pytest.mark.parametrize("data, metadata", [
    ({"text/html": envelope(ADAPTED)}, None),  # not marked: ordinary HTML
    ({"text/html": envelope(ADAPTED)}, {OUTPUT_MARK: 0}),
    ({"text/html": envelope(ADAPTED)}, {"other": 1}),
    ({"text/html": json.dumps({"type": "text/plain", "data": "x"})}, {OUTPUT_MARK: 1}),  # another type
    ({"text/html": json.dumps({"type": OUTPUT_MIME})}, {OUTPUT_MARK: 1}),  # no data
    ({"text/html": "<b>not json</b>"}, {OUTPUT_MARK: 1}),
])
def test_without_mark_or_envelope_html_stays_html(data, metadata):
    assert bundle_to_record(data, metadata) == ["html", data["text/html"]]


def test_a_marked_bundle_with_more_types_is_not_an_envelope():
    data = {"text/html": envelope(ADAPTED), "text/plain": "x"}
    assert bundle_to_record(data, {OUTPUT_MARK: 1}) == ["html", envelope(ADAPTED)]


# -- RecordBuffer -----------------------------------------------------------------------------------

def drain(buf: RecordBuffer, max_chars: int) -> tuple[list, list]:
    console, markers = [], []
    while buf:
        records, marker = buf.take(max_chars=max_chars)
        console.extend(records)
        if marker:
            markers.append(marker)
    return console, markers


def test_order_kept_and_consecutive_stream_text_merged():
    buf = RecordBuffer()
    for item in (["stdout", "a"], ["stdout", "b"], ["stderr", "c"], ["stderr", "d"], ["html", "<i/>"],
                 ["stdout", "e"], ["media", ["image/png", "data:,"]], ["stdout", "f"]):
        buf.append(item)
    assert buf.take() == ([["stdout", "ab"], ["stderr", "cd"], ["html", "<i/>"], ["stdout", "e"],
                           ["media", ["image/png", "data:,"]], ["stdout", "f"]], None)
    assert not buf and buf.take() == ([], None)


def test_a_marker_stops_take_and_is_consumed():
    buf = RecordBuffer()
    buf.append(["stdout", "cleaning\n"])
    buf.append(("status", "clean-finished", 0))
    buf.append(("status", "build-finished", 2))
    buf.append(["stdout", "running\n"])
    assert buf.take() == ([["stdout", "cleaning\n"]], ("status", "clean-finished", 0))
    assert buf.take() == ([], ("status", "build-finished", 2))
    assert buf.take() == ([["stdout", "running\n"]], None)
    assert not buf


def test_max_chars_splits_text_across_takes_without_loss():
    buf = RecordBuffer()
    text = "".join(f"{i:04d}" for i in range(250))  # 1000 characters, each position distinct
    buf.append(["stdout", text])
    buf.append(["stderr", "tail"])
    first, _ = buf.take(max_chars=300)
    second, _ = buf.take(max_chars=300)
    rest, _ = buf.take(max_chars=10_000)
    assert first == [["stdout", text[:300]]] and second == [["stdout", text[300:600]]]
    assert rest == [["stdout", text[600:]], ["stderr", "tail"]]
    assert not buf


def test_a_rich_record_is_never_cut():
    buf = RecordBuffer()
    html = "<p>" + "x" * 5000 + "</p>"
    buf.append(["stdout", "ab"])
    buf.append(["html", html])
    buf.append(["stdout", "cd"])
    assert buf.take(max_chars=100) == ([["stdout", "ab"], ["html", html]], None)
    assert buf.take(max_chars=100) == ([["stdout", "cd"]], None)


def test_big_stream_records_are_kept_whole_across_pieces():
    big = "".join(chr(0x41 + i % 26) for i in range(3 * RecordBuffer.PIECE + 123)) + "é✓"
    buf = RecordBuffer()
    buf.append(["stdout", big])
    assert buf.take() == ([["stdout", big]], None)
    assert not buf


def test_spill_to_disk_and_back_without_loss():
    buf = RecordBuffer(memory_budget=1000)
    expected, big = [], "é" * (RecordBuffer.PIECE + 10)
    for i in range(400):
        record = ["stdout" if i % 3 else "stderr", f"{i:05d}\n"]
        buf.append(record)
        expected.append(list(record))
        if i == 150:
            buf.append(("status", "build-finished", 0))
        if i == 200:
            buf.append(["stdout", big])
            expected.append(["stdout", big])
            buf.append(["html", "<b>rich</b>"])
            expected.append(["html", "<b>rich</b>"])
    assert buf.spilled
    console, markers = drain(buf, max_chars=700)
    assert merged(console) == merged(expected)
    assert markers == [("status", "build-finished", 0)]
    assert not buf.spilled and not buf


def test_buffer_is_usable_after_a_spill_was_drained():
    buf = RecordBuffer(memory_budget=200)
    for i in range(50):
        buf.append(["stdout", f"{i}\n"])
    assert buf.spilled
    drain(buf, max_chars=10_000)
    buf.append(["stdout", "again\n"])
    assert buf.take() == ([["stdout", "again\n"]], None)
    assert not buf.spilled


def test_close_discards_everything():
    buf = RecordBuffer(memory_budget=100)
    for i in range(20):
        buf.append(["stdout", f"{i}\n"])
    assert buf.spilled
    buf.take(max_chars=5)  # closed in the middle of reading the spill back
    buf.close()
    assert buf.take() == ([], None) and not buf.spilled and not buf
    buf.append(("status", "finished", 130))  # a late marker of a run its session's end cut short
    buf.append(["stdout", "late\n"])
    assert not buf.spilled and not buf and buf.take() == ([], None)  # dropped, no spill file reopened


# -- moved from tests/test_records.py ---------------------------------------------------------

def test_bundle_preference():
    assert bundle_to_record({"image/png": "iVBO\nRw==", "text/plain": "<Figure>"}) == \
        ["media", ["image/png", "data:image/png;base64,iVBORw=="]]
    assert bundle_to_record({"image/svg+xml": "<svg/>", "text/plain": "x"}) == ["media", ["image/svg+xml", "<svg/>"]]
    assert bundle_to_record({"text/html": "<b>t</b>", "text/plain": "t"}) == ["html", "<b>t</b>"]
    assert bundle_to_record({"application/json": {"a": 1}, "text/plain": "{}"}) == ["media", ["application/json", '{"a": 1}']]
    assert bundle_to_record({"text/plain": "42"}, is_result=True) == ["stdout", "42"]
    assert bundle_to_record({"text/plain": "42"}) == ["stdout", "42\n"]
    assert bundle_to_record({}) is None


def test_buffer_merges_and_keeps_order():
    buf = RecordBuffer()
    for item in (["stdout", "a"], ["stdout", "b"], ["stderr", "c"], ["html", "<i/>"], ["stdout", "d"]):
        buf.append(item)
    console, marker = buf.take()
    assert console == [["stdout", "ab"], ["stderr", "c"], ["html", "<i/>"], ["stdout", "d"]]
    assert marker is None and not buf


def test_buffer_stops_at_markers():
    buf = RecordBuffer()
    buf.append(["stdout", "cleaning\n"])
    buf.append(("status", "clean-finished", 0))
    buf.append(["stdout", "building\n"])
    assert buf.take() == ([["stdout", "cleaning\n"]], ("status", "clean-finished", 0))
    assert buf.take() == ([["stdout", "building\n"]], None)


def test_buffer_limits_each_take():
    buf = RecordBuffer()
    buf.append(["stdout", "x" * 1000])
    first, _ = buf.take(max_chars=300)
    second, _ = buf.take(max_chars=300)
    rest, _ = buf.take(max_chars=10_000)
    assert [len(c[1]) for c in first + second + rest] == [300, 300, 400]
    assert not buf


def test_buffer_spills_to_disk_without_loss():
    buf = RecordBuffer(memory_budget=1000)
    expected = []
    for i in range(500):
        record = ["stdout" if i % 3 else "stderr", f"{i:05d}\n"]
        buf.append(record)
        expected.append(list(record))
        if i == 250:
            buf.append(("status", "build-finished", 0))
    assert buf.spilled
    got, markers = [], []
    while buf:
        console, marker = buf.take(max_chars=700)
        got.extend(console)
        if marker:
            markers.append(marker)
    assert merged(got) == merged(expected)  # every byte, in order
    assert markers == [("status", "build-finished", 0)]
    assert not buf.spilled
