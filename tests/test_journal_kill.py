"""A journal writer killed with SIGKILL in the middle of its output leaves every record it had
appended readable, in order, and the next writer goes on after them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from backend_jupyter.journal import JobInfo, Journal

WRITER = """
import sys
from pathlib import Path
from backend_jupyter.journal import Journal
journal = Journal(Path(sys.argv[1]))
assert journal.lead()
i = 0
while True:
    journal.append([{"k": "stdout", "text": f"{i}\\n" + "x" * (i % 700)}])
    i += 1
"""


def test_sigkill_leaves_every_appended_record(tmp_path):
    journal = Journal.create(tmp_path, JobInfo(name="killed", session="s", endpoint="e"))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(journal.dir)])
    try:
        deadline = time.monotonic() + 30
        while journal.size() < 2_000_000:
            assert writer.poll() is None and time.monotonic() < deadline, "the writer did not write"
            time.sleep(0.05)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait(10)
    records = list(journal.records())
    assert len(records) > 1000
    assert [int(r["text"].split("\n")[0]) for r in records] == list(range(len(records)))
    assert all(r["text"].endswith("\n" + "x" * (i % 700)) for i, r in enumerate(records))
    assert journal.lead()  # the killed writer's lock is free
    journal.append([{"k": "stdout", "text": "after\n"}])
    assert list(journal.records())[-1] == {"k": "stdout", "text": "after\n"}
    assert len(list(journal.records())) == len(records) + 1
