"""Background jobs on the embedded server: a job's output is kept in its session and copied into
the local journal by whoever follows it, so a follower killed with SIGKILL loses nothing and the
next one goes on where the journal ends; a job ends as finished, failed (with its error) or
cancelled, and its session goes at the end.  The same survival on the real manager is in
tests/manager/test_real_manager.py."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from backend_jupyter import jobs
from backend_jupyter.client import APIClient, ComputeSession
from backend_jupyter.config import Config
from backend_jupyter.journal import JobInfo, Journal

ROOT = Path(__file__).resolve().parent.parent
NUMBERED = ("import time\nfrom IPython.display import display, HTML\nfor i in range(n):\n    print(i)\n"
            "    time.sleep(0.05)\ndisplay(HTML('<b>done</b>'))\n1/0")


def new_journal(tmp_path: Path, name: str, endpoint: str) -> Journal:
    return Journal.create(tmp_path / "jobs", JobInfo(name=name, session=jobs.job_session_name(name), endpoint=endpoint))


def follower(env: dict, journal: Journal, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.job_follower", str(journal.dir), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)


def stdout_lines(journal: Journal) -> list[int]:
    return [int(x) for x in "".join(r["text"] for r in journal.records() if r["k"] == "stdout").split()]


def session_exists(env: dict, name: str) -> bool:
    async def check():
        async with APIClient(Config.from_env(env)) as api:
            return await ComputeSession(api, name).exists()
    return asyncio.run(check())


def survive_a_killed_follower(env: dict, tmp_path: Path, name: str, lines: int = 60) -> Journal:
    """Start a job printing ``lines`` numbered lines, SIGKILL its follower midway, follow it anew."""
    journal = new_journal(tmp_path, name, env["BACKEND_ENDPOINT"])
    first = follower(env, journal, "start", NUMBERED, f'{{"n": {lines}}}')
    deadline = time.monotonic() + 120
    while len(stdout_lines(journal)) < 10:
        assert first.poll() is None and time.monotonic() < deadline, "the first follower did not get going"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert len(stdout_lines(journal)) < lines  # killed while the job ran
    second = follower(env, journal, "follow")
    out, _ = second.communicate(timeout=120)
    assert out.strip() == "failed"
    return journal


def test_a_job_outlives_its_follower_and_loses_nothing(server, tmp_path):
    env = server.env()
    journal = survive_a_killed_follower(env, tmp_path, "survivor")
    assert stdout_lines(journal) == list(range(60))  # every line once, in order
    records = list(journal.records())
    assert [r["k"] for r in records if r["k"] != "stdout"] == ["display", "error", "end"]
    assert records[-3]["data"]["text/html"] == "<b>done</b>"
    assert (records[-2]["ename"], records[-2]["evalue"]) == ("ZeroDivisionError", "division by zero")
    assert records[-1] == {"k": "end", "status": "failed"}
    info = journal.info()
    assert info.status == "failed" and info.started and info.ended >= info.started
    assert not session_exists(env, info.session)  # all of its output is in the journal: the session went


def test_cancel_and_a_process_that_dies_are_ends_too(server, tmp_path):
    env = server.env()

    async def scenario():
        async with APIClient(Config.from_env(env)) as api:
            from backend_jupyter.managed import Settings

            long = new_journal(tmp_path, "long", env["BACKEND_ENDPOINT"])
            assert long.lead()
            await jobs.start(api, long, Settings(), code="import time\nprint('up', flush=True)\ntime.sleep(60)",
                             params={})
            following = asyncio.create_task(jobs.follow(api, long, poll=0.2))
            while "up" not in "".join(r.get("text", "") for r in long.records()):
                await asyncio.sleep(0.1)
            await jobs.cancel(api, long)
            assert await asyncio.wait_for(following, 30) == "cancelled"

            dying = new_journal(tmp_path, "dying", env["BACKEND_ENDPOINT"])
            assert dying.lead()
            await jobs.start(api, dying, Settings(), code="import os\nprint('bye', flush=True)\nos._exit(3)", params={})
            assert await asyncio.wait_for(jobs.follow(api, dying, poll=0.2), 30) == "failed"
            return long.info(), dying.info()

    long, dying = asyncio.run(scenario())
    assert long.status == "cancelled"
    assert dying.status == "failed" and dying.exit_code == 3
    assert dying.error == "the job's process ended without finishing (exit code 3)"
    assert not session_exists(env, long.session) and not session_exists(env, dying.session)


def test_a_job_whose_session_is_gone_is_failed_with_the_reason(server, tmp_path):
    env = server.env()

    async def scenario():
        async with APIClient(Config.from_env(env)) as api:
            from backend_jupyter.managed import Settings

            journal = new_journal(tmp_path, "orphan", env["BACKEND_ENDPOINT"])
            assert journal.lead()
            await jobs.start(api, journal, Settings(), code="import time\ntime.sleep(60)", params={})
            await ComputeSession(api, journal.info().session).destroy()
            return await asyncio.wait_for(jobs.follow(api, journal, poll=0.2), 30), journal.info()

    status, info = asyncio.run(scenario())
    assert status == "failed" and info.error == f"its session {info.session} is gone"
