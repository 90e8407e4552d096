"""Console records: mime bundles → records, and the run buffer (merging, limits, spill to disk)."""

from __future__ import annotations

from backend_jupyter.server.records import RecordBuffer, bundle_to_record
from tests.signed_http import merged


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
