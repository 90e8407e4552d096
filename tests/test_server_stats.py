"""The embedded server's live statistics: a process tree sampled in the shape of an agent's live_stat."""

from __future__ import annotations

import os
import subprocess
import sys

from backend_jupyter.server.stats import ProcessStats
from backend_jupyter.usage import metrics


def test_a_process_tree_in_the_agents_shape():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stats = ProcessStats()
        first = stats.sample(os.getpid())
        assert set(first) == {"cpu_util", "mem", "cpu_used"}
        for entry in first.values():
            assert set(entry) == {"current", "capacity", "pct", "unit_hint", "stats.max"}
            assert all(isinstance(v, str) for v in entry.values())
        assert first["cpu_util"]["unit_hint"] == "millicores" and first["cpu_util"]["capacity"] == "1000"
        assert first["mem"]["unit_hint"] == "bytes" and int(first["mem"]["current"]) > 10_000_000
        sum(range(3_000_000))  # some CPU between the samples
        second = stats.sample(os.getpid())
        assert float(second["cpu_util"]["current"]) > 0
        assert int(second["cpu_used"]["current"]) >= int(first["cpu_used"]["current"])
        assert int(second["mem"]["stats.max"]) >= int(first["mem"]["current"])
        own = ProcessStats().sample(child.pid)["mem"]["current"]
        assert int(first["mem"]["current"]) > int(own)  # the tree counts the child too
        assert [m.label for m in metrics(second)] == ["CPU", "memory"]
    finally:
        child.kill()
        child.wait()


def test_no_process_no_statistics():
    assert ProcessStats().sample(None) is None
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert ProcessStats().sample(gone.pid) is None
