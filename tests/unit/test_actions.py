"""What the commands do, in their pure parts: paths checked before anything is sent, the settings
of a new session, a session described (its slots and live usage as a manager sends them)."""

from __future__ import annotations

import os

import pytest

from backend_jupyter.actions import Progress, local_dir, local_files, remote_path
from backend_jupyter.commands import CommandError
from backend_jupyter.config import Mount
from backend_jupyter.managed import Settings
from backend_jupyter.usage import describe_session, memory, metrics, usage_line

# -- paths ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [("a.csv", "a.csv"), ("out/./r.txt", "out/r.txt"), (".", ""),
                                            ("a/../b", "b"), ("", "")])
def test_remote_paths_are_relative(path, expected):
    assert remote_path(path, "PATH") == expected


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "..", "~/x"])
def test_remote_paths_outside_the_work_directory_are_refused_by_name(path):
    with pytest.raises(CommandError, match=f"PATH {path!r}: give a path relative"):
        remote_path(path, "PATH")


def test_local_destination_stays_under_the_notebook_directory(tmp_path):
    assert local_dir(tmp_path, None) == tmp_path.resolve()
    assert local_dir(tmp_path, "results/run1") == (tmp_path / "results" / "run1").resolve()
    for outside in ("..", "../sibling", "/tmp", "a/../../b"):
        with pytest.raises(CommandError, match="is outside"):
            local_dir(tmp_path, outside)


def test_local_files_are_all_checked_first(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_text("b")
    (tmp_path / "d" / "sub" / "a.txt").write_text("a")
    (tmp_path / "top.csv").write_text("t")
    found = local_files(tmp_path, ["top.csv", "d"])
    assert [p.relative_to(tmp_path.resolve()).as_posix() for p in found] == ["top.csv", "d/b.txt", "d/sub/a.txt"]
    with pytest.raises(CommandError, match="No such file or directory: missing"):
        local_files(tmp_path, ["top.csv", "missing"])
    with pytest.raises(CommandError, match="is outside"):
        local_files(tmp_path / "d", ["../top.csv"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_stops_the_upload_before_it_starts(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    secret.chmod(0)
    with pytest.raises(CommandError, match="Cannot read secret.txt: nothing was uploaded"):
        local_files(tmp_path, ["secret.txt"])


def test_progress_text():
    p = Progress("Uploading to s", total=2)
    assert p.text() == "Uploading to s 0/2 …"
    assert p.advance("a.csv (8 B)").text() == "Uploading to s 1/2: a.csv (8 B)"
    assert p.end(note="2 files").text() == "Uploading to s: 2 files"
    assert Progress("Starting").end(ok=False).text() == "Starting: failed"


# -- settings -------------------------------------------------------------------------------------------

def test_settings_given_replace_the_others_stay():
    base = Settings("python", (Mount("data"),), {"A": "1"}, {"cpu": "1"})
    assert base.overridden(image="pytorch") == Settings("pytorch", (Mount("data"),), {"A": "1"}, {"cpu": "1"})
    assert base.overridden(resources={"cuda.shares": "1"}).resources == {"cuda.shares": "1"}
    assert base.overridden() == base
    assert base.describe() == "python -m data -r cpu=1 -e A=…"  # values of the environment are not shown


# -- a session described --------------------------------------------------------------------------------

LIVE_STAT = {  # as a 26.09 manager's GraphQL live_stat, decoded (values are strings)
    "cpu_util": {"current": "1975.0", "capacity": "1000", "pct": "197.50", "unit_hint": "millicores"},
    "mem": {"current": "224395264", "capacity": "335544320", "pct": "66.87", "unit_hint": "bytes",
            "stats.max": "300000000"},
    "cpu_used": {"current": "123456", "capacity": "9223372036854775807", "unit_hint": "msec"},
    "cuda_util": {"current": "57", "capacity": "100", "pct": "57.00", "unit_hint": "percent"},
    "cuda_mem": {"current": "536870912", "capacity": "8589934592", "unit_hint": "bytes"},
}


def test_live_usage_in_words():
    assert usage_line(LIVE_STAT) == "CPU 198 %, memory 224.4 MB of 335.5 MB, GPU 57 %, GPU memory 536.9 MB of 8.6 GB"
    assert memory(LIVE_STAT) == 300_000_000  # the recent peak where the server gives one
    assert [m.label for m in metrics(LIVE_STAT)] == ["CPU", "memory", "GPU", "GPU memory"]  # counters left out
    assert usage_line(None) == usage_line({}) == "not reported by this server (it keeps no live statistics for the session)"
    assert metrics({"mem": {"current": "n/a"}}) == []


def test_a_26_09_session_described():
    info = {"sessionName": "s", "sessionId": "0a1b", "image": "cr.backend.ai/stable/python:3.9-ubuntu20.04",
            "status": "RUNNING", "age": 3_725_000, "mounts": ["data"],
            "occupiedSlots": "{'cpu': Decimal('1.000000'), 'mem': Decimal('335544320.000000')}"}
    fields = dict(line.split(None, 1) for line in describe_session(info, LIVE_STAT, endpoint="http://e").splitlines())
    assert fields == {"name": "s", "id": "0a1b", "image": "cr.backend.ai/stable/python:3.9-ubuntu20.04",
                      "status": "RUNNING", "age": "1 h 2 min 5 s", "endpoint": "http://e",
                      "resources": "cpu=1, mem=335.5 MB", "mounts": "data", "usage": usage_line(LIVE_STAT)}
    json_slots = dict(line.split(None, 1) for line in describe_session(
        {"occupiedSlots": '{"cpu": "2", "cuda.shares": "0.5"}'}, None, endpoint="e").splitlines())
    assert json_slots["resources"] == "cpu=2, cuda.shares=0.5" and json_slots["usage"].startswith("not reported")
