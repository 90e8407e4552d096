"""A job's journal: info replaced whole, records appended in order, one writer at a time, a cut
last line left by a killed writer skipped by readers and cut off by the next writer."""

from __future__ import annotations

import pytest

from backend_jupyter.journal import JobExists, JobInfo, Journal, all_journals, find


def info(name="train", **kw) -> JobInfo:
    return JobInfo(name=name, session=f"job-{name}", endpoint="http://127.0.0.1:1", **kw)


def test_create_read_update(tmp_path):
    journal = Journal.create(tmp_path, info(params={"lr": 0.1}))
    assert journal.info().params == {"lr": 0.1} and journal.info().status == "starting"
    assert journal.update(status="running", pid=42).status == "running"
    assert journal.info().pid == 42
    with pytest.raises(JobExists, match="A job named 'train' exists already"):
        Journal.create(tmp_path, info())
    with pytest.raises(ValueError, match="is not a job name"):
        Journal.create(tmp_path, info(name="../escape"))
    assert find("train", tmp_path).info().name == "train"
    with pytest.raises(KeyError):
        find("nope", tmp_path)


def test_records_in_order_read_in_bounded_chunks(tmp_path):
    journal = Journal.create(tmp_path, info())
    assert journal.lead()
    lines = [{"k": "stdout", "text": f"{i}\n"} for i in range(5000)]
    for start in range(0, 5000, 100):
        journal.append(lines[start:start + 100])
    batch, offset = journal.read(0, limit=4096)
    assert 0 < len(batch) < 5000 and batch == lines[:len(batch)]
    rest = list(journal.records(offset))
    assert batch + rest == lines
    assert list(journal.records(journal.size())) == []
    before = journal.size()
    huge = {"k": "stdout", "text": "x" * 100_000}
    journal.append([huge])
    assert journal.read(before, limit=10) == ([huge], journal.size())  # a record longer than the limit: whole


def test_one_writer_at_a_time(tmp_path):
    Journal.create(tmp_path, info())
    first, second = Journal(tmp_path / "train"), Journal(tmp_path / "train")
    assert first.lead() and not second.lead()
    with pytest.raises(RuntimeError, match="does not write the journal"):
        second.append([{"k": "stdout", "text": "x"}])
    first.close()
    assert second.lead()  # the lock went with its holder
    second.close()


def test_a_cut_last_line_is_skipped_then_cut_off(tmp_path):
    journal = Journal.create(tmp_path, info())
    assert journal.lead()
    journal.append([{"k": "stdout", "text": "whole\n"}])
    journal.close()
    with open(journal.output_path, "ab") as f:
        f.write(b'{"k": "stdout", "te')  # a writer killed in the middle of a record
    assert list(journal.records()) == [{"k": "stdout", "text": "whole\n"}]
    assert journal.lead()
    journal.append([{"k": "stdout", "text": "next\n"}])
    assert list(journal.records()) == [{"k": "stdout", "text": "whole\n"}, {"k": "stdout", "text": "next\n"}]


def test_all_journals_oldest_first(tmp_path):
    for name, created in (("b", 2.0), ("a", 3.0), ("c", 1.0)):
        Journal.create(tmp_path, info(name, created=created))
    (tmp_path / "stray").mkdir()  # not a job
    assert [j.name for j in all_journals(tmp_path)] == ["c", "b", "a"]
    find("b", tmp_path).remove()
    assert [j.name for j in all_journals(tmp_path)] == ["c", "a"]
    assert all_journals(tmp_path / "none") == []
