"""Background jobs on the embedded server: a job's output is kept in its session and copied into
the local journal by whoever follows it, so a follower killed with SIGKILL loses nothing and the
next one goes on where the journal ends; a job ends as finished, failed (with its error) or
cancelled, and its session goes at the end.  The same survival on the real manager is in
tests/manager/test_real_manager.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
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


async def started_job(api: APIClient, tmp_path: Path, name: str, code: str) -> Journal:
    """A job started and led by this process (its follower)."""
    journal = new_journal(tmp_path, name, api.endpoint)
    assert journal.lead()
    journal.update(code=code)
    await jobs.start(api, journal)
    return journal


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
    assert records[-1] == {"k": "end", "status": "failed", "vars": {"i": ["json", 2]}}  # n is a parameter
    info = journal.info()
    assert info.status == "failed" and info.started and info.ended >= info.started
    assert not session_exists(env, info.session)  # all of its output is in the journal: the session went


def test_cancel_and_a_process_that_dies_are_ends_too(server, tmp_path):
    env = server.env()

    async def scenario():
        async with APIClient(Config.from_env(env)) as api:
            long = await started_job(api, tmp_path, "long", "import time\nprint('up', flush=True)\ntime.sleep(60)")
            following = asyncio.create_task(jobs.follow(api, long, poll=0.2))
            while "up" not in "".join(r.get("text", "") for r in long.records()):
                await asyncio.sleep(0.1)
            await jobs.cancel(api, long)
            assert await asyncio.wait_for(following, 30) == "cancelled"

            dying = await started_job(api, tmp_path, "dying", "import os\nprint('bye', flush=True)\nos._exit(3)")
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
            journal = await started_job(api, tmp_path, "orphan", "import time\ntime.sleep(60)")
            await ComputeSession(api, journal.info().session).destroy()
            return await asyncio.wait_for(jobs.follow(api, journal, poll=0.2), 30), journal.info()

    status, info = asyncio.run(scenario())
    assert status == "failed" and info.error == f"its session {info.session} is gone"


# -- the commands, in the kernel and in the magics -------------------------------------------------------

def kernel_env(server, tmp_path: Path) -> dict:
    return {**server.env(), "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data")}  # the journals go there


@contextlib.contextmanager
def ipython_with_magics(server, tmp_path: Path, setup: str = ""):
    """A local IPython kernel with the extension loaded (and ``setup`` run), shut down after."""
    from tests.kernel_driver import KernelDriver

    ipy = KernelDriver(kernel_env(server, tmp_path), kernel_name="python3", cwd=tmp_path)
    try:
        assert ipy.execute("%load_ext backend_jupyter\n" + setup).status == "ok"
        yield ipy
    finally:
        ipy.shutdown()


def test_kernel_jobs_return_at_once_and_are_followed(server, tmp_path):
    from tests.kernel_driver import KernelDriver

    driver = KernelDriver(kernel_env(server, tmp_path), cwd=tmp_path)
    try:
        started = time.monotonic()
        submit = driver.execute("%%backend_run --bg --name k1\nimport time\nfor i in range(8):\n    print(i)\n"
                                "    time.sleep(0.25)", timeout=60)
        assert submit.status == "ok" and "Job k1: starting on session job-k1." in submit.stream()
        assert driver.execute("print('meanwhile')").stream() == "meanwhile\n"  # other cells run meanwhile
        listing = driver.execute("%backend_jobs").stream().splitlines()
        assert listing[1].split()[:2] == ["k1", "starting"] or listing[1].split()[:2] == ["k1", "running"]
        assert time.monotonic() - started < 10
        output = driver.execute("%backend_job output k1", timeout=60)
        assert output.stream() == "".join(f"{i}\n" for i in range(8))  # replayed, then live, in order
        assert output.stream("stderr").startswith("[job k1 finished after ")
        assert driver.execute("%backend_job wait k1").stream().startswith("Job k1 finished in ")

        failing = driver.execute("%%backend_run --bg --name k2\nraise ValueError('bad value')")
        assert failing.status == "ok"
        waited = driver.execute("%backend_job wait k2", timeout=60)
        assert waited.status == "error" and waited.reply["content"]["ename"] == "ValueError"
        assert waited.reply["content"]["evalue"] == "bad value"

        sweep = driver.execute("%%backend_run --bg --name sw --sweep lr=0.1,0.01 --sweep depth=2,4 --parallel 2\n"
                               "print(lr * depth)")
        assert sweep.status == "ok" and "Job sw-4 (lr=0.01 depth=4)" in sweep.stream()
        outputs = [driver.execute(f"%backend_job output sw-{i}", timeout=60).stream() for i in range(1, 5)]
        assert outputs == ["0.2\n", "0.4\n", "0.02\n", "0.04\n"]

        long = driver.execute("%%backend_run --bg --name k3\nimport time\ntime.sleep(60)")
        assert long.status == "ok"
        cancelled = driver.execute("%backend_job cancel k3", timeout=60)
        assert cancelled.stream() == "Job k3: cancelled.\n"
        # a sweep at once: the ones waiting their turn never start, the running one is stopped
        driver.execute("%%backend_run --bg --name cs --sweep k=1,2,3 --parallel 1\nimport time\ntime.sleep(60)")
        cancelled = driver.execute("%backend_job cancel cs", timeout=60)
        assert sorted(cancelled.stream().splitlines()) == [f"Job cs-{k}: cancelled." for k in (1, 2, 3)]
        for name in ("k1", "k2", "sw-1", "sw-4", "k3", "cs-1", "cs-2", "cs-3"):
            assert not session_exists(server.env(), f"job-{name}"), name
        assert driver.execute("%backend_job clean").stream() == "Forgot 10 ended jobs.\n"
        assert driver.execute("%backend_jobs").stream() == "No jobs. Start one with %%backend_run --bg.\n"
    finally:
        driver.shutdown()


def test_kernel_job_commands_refuse_bad_input(server, tmp_path):
    from tests.kernel_driver import KernelDriver

    driver = KernelDriver(kernel_env(server, tmp_path), cwd=tmp_path)
    try:
        assert driver.execute("%%backend_run --bg --name taken\nprint(1)", timeout=60).status == "ok"
        cases = {
            "%%backend_run --bg --sweep lr=\nx": "--sweep 'lr=': give one or more values",
            "%%backend_run --bg --sweep =1\nx": "--sweep '=1': use VAR=V1,V2,...",
            "%%backend_run --bg --sweep lr=1,2 --parallel 0\nx": "--parallel 0: run at least 1 job at a time",
            "%%backend_run --bg --name taken\nx": "A job named 'taken' exists already",
            "%%backend_run --bg --name ../up\nx": "--name '../up': letters, digits",
            "%%backend_run --bg": "--bg needs the job's code",
            "%backend_job output nope": "No job named 'nope'",
            "%backend_job wait": "the following arguments are required: NAME",
        }
        for code, message in cases.items():
            result = driver.execute(code)
            assert result.status == "error" and result.reply["content"]["ename"] == "UsageError", code
            assert message in result.reply["content"]["evalue"], (code, result.reply["content"]["evalue"])
        assert [line.split()[0] for line in driver.execute("%backend_jobs").stream().splitlines()[1:]] == ["taken"]
        assert driver.execute("%backend_job wait taken", timeout=60).status == "ok"  # and its session goes
        assert not session_exists(server.env(), "job-taken")
    finally:
        driver.shutdown()


def test_a_kernel_killed_mid_job_then_a_new_kernel_replays_and_follows(server, tmp_path):
    from tests.kernel_driver import KernelDriver

    env = kernel_env(server, tmp_path)
    first = KernelDriver(env, cwd=tmp_path)
    try:
        first.execute("%%backend_run --bg --name longrun\nimport time\nfor i in range(40):\n    print(i)\n"
                      "    time.sleep(0.1)", timeout=60)
        journal = Journal(tmp_path / "jupyter-data" / "backend_jupyter" / "jobs" / "longrun")
        deadline = time.monotonic() + 60
        while len(stdout_lines(journal)) < 5:
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.1)
        os.kill(first.km.provisioner.pid, signal.SIGKILL)
    finally:
        first.kc.stop_channels()
        first.km.cleanup_resources()
    second = KernelDriver(env, cwd=tmp_path)
    try:
        output = second.execute("%backend_job output longrun", timeout=60)
        assert output.stream() == "".join(f"{i}\n" for i in range(40))
        assert output.stream("stderr").startswith("[job longrun finished")
    finally:
        second.shutdown()
    assert not session_exists(server.env(), "job-longrun")


def test_magics_run_a_job_in_the_background(server, tmp_path):
    with ipython_with_magics(server, tmp_path) as ipy:
        submit = ipy.execute("%%backend_run --bg --name m1 -e GREETING=hi\nimport os\nprint(os.environ['GREETING'])",
                             timeout=60)
        assert submit.status == "ok" and "Job m1: starting on session job-m1." in submit.stream()
        assert ipy.execute("%backend_job wait m1", timeout=60).stream().startswith("Job m1 finished in ")
        assert ipy.execute("%backend_job output m1").stream() == "hi\n"
        assert ipy.execute("%backend_jobs").stream().splitlines()[1].split()[:2] == ["m1", "finished"]
        missing = ipy.execute("%backend_job output nope")
        assert missing.status == "error" and "No job named 'nope'" in missing.reply["content"]["evalue"]


# -- variables: -i into a job, -o and a sweep's table back -----------------------------------------

def most_at_once(journals: list[Journal]) -> int:
    """How many of these jobs ran at the same time, at most (from their start and end times)."""
    spans = [(j.info().started, j.info().ended) for j in journals]
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def test_kernel_job_variables_in_and_out_and_a_sweep_table(server, tmp_path):
    from tests.kernel_driver import KernelDriver

    driver = KernelDriver(kernel_env(server, tmp_path), cwd=tmp_path)
    try:
        assert driver.execute("x = 7\nsecret = object()").status == "ok"  # in the kernel's own session
        submit = driver.execute("%%backend_run --bg --name v1 -i x -o big\nimport numpy\n"
                                "big = numpy.arange(100_000) * x\ny = {'twice': x * 2}\nhuge = list(range(100_000))",
                                timeout=60)
        assert submit.status == "ok", submit.reply["content"]
        waited = driver.execute("%backend_job wait v1 -o y -o big -o huge -o nope", timeout=60)
        assert waited.status == "ok", waited.reply["content"]
        assert waited.stream().splitlines()[1] == "y (13 B), big (800.1 kB) set."
        assert waited.stream("stderr").splitlines() == [
            "-o huge: v1 did not keep it (a job keeps what --bg -o names, and its small JSON-able variables)",
            "-o nope: v1 did not keep it (a job keeps what --bg -o names, and its small JSON-able variables)"]
        check = driver.execute("print(y, int(big.sum()), big.dtype, 'huge' in dir())")
        assert check.stream() == f"{{'twice': 14}} {7 * sum(range(100_000))} int64 False\n"

        refused = driver.execute("%%backend_run --bg --name v2 -i secret\nprint(secret)")
        assert refused.status == "error" and "-i secret: a object cannot be moved safely" in \
            refused.reply["content"]["evalue"]

        sweep = driver.execute("%%backend_run --bg --name sw --sweep lr=0.1,0.01 --sweep depth=2,4 --parallel 2\n"
                               "import time\ntime.sleep(0.5)\nacc = lr * depth", timeout=60)
        assert sweep.status == "ok"
        table = driver.execute("%backend_job wait sw -o acc", timeout=120)
        assert table.stream().splitlines()[-2:] == ["sw_results: 4 rows (job, lr, depth, status, acc)",
                                                    "The 4 jobs of sw finished."]
        rows = driver.execute("print(type(sw_results).__name__, sw_results.to_dict('records'))").stream()
        assert rows == ("DataFrame [" + ", ".join(
            f"{{'job': 'sw-{i}', 'lr': {lr}, 'depth': {d}, 'status': 'finished', 'acc': {lr * d}}}"
            for i, (lr, d) in enumerate(((0.1, 2), (0.1, 4), (0.01, 2), (0.01, 4)), 1)) + "]\n")
        jobs_dir = tmp_path / "jupyter-data" / "backend_jupyter" / "jobs"
        assert most_at_once([Journal(jobs_dir / f"sw-{i}") for i in range(1, 5)]) == 2
    finally:
        driver.shutdown()


def test_magics_job_variables_and_a_sweep_dataframe(server, tmp_path):
    with ipython_with_magics(server, tmp_path, "import numpy\nweights = numpy.ones(3) / 2") as ipy:
        submit = ipy.execute("%%backend_run --bg --name sw --sweep lr=0.1,0.2,0.3,0.4 --parallel 2 -i weights\n"
                             "import time\ntime.sleep(0.5)\nloss = float((weights * lr).sum())\nprint(loss)",
                             timeout=60)
        assert submit.status == "ok", submit.reply["content"]
        waited = ipy.execute("%backend_job wait sw -o loss --into results", timeout=120)
        assert waited.status == "ok", waited.reply["content"]
        rows = ipy.execute("print(type(results).__name__, results[['job', 'lr', 'loss']].values.tolist())").stream()
        assert rows == ("DataFrame [['sw-1', 0.1, 0.15000000000000002], ['sw-2', 0.2, 0.30000000000000004], "
                        "['sw-3', 0.3, 0.44999999999999996], ['sw-4', 0.4, 0.6000000000000001]]\n")
        jobs_dir = tmp_path / "jupyter-data" / "backend_jupyter" / "jobs"
        assert most_at_once([Journal(jobs_dir / f"sw-{i}") for i in range(1, 5)]) == 2
        # One job of a sweep failing: the table still comes, with its status, then its error.
        ipy.execute("%%backend_run --bg --name half --sweep k=1,0\nq = 1 / k", timeout=60)
        failed = ipy.execute("%backend_job wait half -o q", timeout=120)
        assert failed.status == "error" and failed.reply["content"]["ename"] == "RemoteError"
        assert failed.reply["content"]["evalue"].startswith("ZeroDivisionError: division by zero")
        assert "1 of 2 jobs of half did not finish: half-2 failed" in failed.stream("stderr")
        assert ipy.execute("print(half_results[['k', 'status', 'q']].values.tolist())").stream() == \
            "[[1, 'finished', 1.0], [0, 'failed', nan]]\n"  # missing: NaN, as pandas has it


# -- the live panel ----------------------------------------------------------------------------------

def panel_updates_after(driver, submit, timeout: float = 60) -> list[dict]:
    """The job panel's updates that arrive after the submitting cell has ended, under its parent,
    until one says every job has ended."""
    parent = submit.reply["parent_header"]["msg_id"]
    [panel] = [c for c in submit.of("display_data") if "text/html" in c["data"]]
    display_id = panel["transient"]["display_id"]
    updates = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = driver.kc.get_iopub_msg(timeout=1)
        except Exception:  # queue.Empty
            continue
        if msg["msg_type"] == "update_display_data" and msg["content"]["transient"]["display_id"] == display_id:
            assert msg["parent_header"]["msg_id"] == parent  # routed to the cell that started the jobs
            updates.append({**msg["content"]["data"], "at": time.monotonic()})
            if "running" not in msg["content"]["data"]["text/plain"] \
                    and "starting" not in msg["content"]["data"]["text/plain"]:
                return updates
    raise AssertionError(f"the panel did not reach the jobs' end: {updates[-1:] if updates else 'no update'}")


def test_the_panel_of_a_sweep_updates_in_place_after_its_cell_ended(server, tmp_path):
    from tests.kernel_driver import KernelDriver

    driver = KernelDriver(kernel_env(server, tmp_path), cwd=tmp_path)
    try:
        submit = driver.execute("%%backend_run --bg --name pan --sweep k=1,2\nimport time\nfor i in range(6):\n"
                                "    print('step', i, 'of job', k, flush=True)\n    time.sleep(0.4)", timeout=60)
        assert submit.status == "ok"
        [panel] = [c["data"] for c in submit.of("display_data") if "text/html" in c["data"]]
        rows = panel["text/plain"].splitlines()
        assert [r.split()[:2] for r in rows] == [["pan-1", "starting"], ["pan-2", "starting"]]
        assert "<th>last output</th>" in panel["text/html"]
        updates = panel_updates_after(driver, submit)
        texts = [u["text/plain"] for u in updates]
        assert any("running" in t and "step" in t for t in texts)  # status and the last line, live
        assert [r.split()[:2] for r in texts[-1].splitlines()] == [["pan-1", "finished"], ["pan-2", "finished"]]
        assert texts[-1].splitlines()[1].endswith("step 5 of job 2")
        gaps = [b["at"] - a["at"] for a, b in zip(updates, updates[1:], strict=False)]
        assert gaps and min(gaps) > 0.4  # at most twice a second
        watch = driver.execute("%backend_jobs --watch")
        assert watch.stream() == "No job is running.\n"
    finally:
        driver.shutdown()


def test_jobs_watch_shows_a_new_live_panel(server, tmp_path):
    from tests.kernel_driver import KernelDriver

    driver = KernelDriver(kernel_env(server, tmp_path), cwd=tmp_path)
    try:
        driver.execute("%%backend_run --bg --name w1\nimport time\nfor i in range(8):\n    print(i, flush=True)\n"
                       "    time.sleep(0.3)", timeout=60)
        watch = driver.execute("%backend_jobs --watch", timeout=60)
        lines = [c["data"]["text/plain"] for c in watch.of("display_data") + watch.of("update_display_data")]
        assert lines[0].split()[0] == "w1" and lines[-1].split()[:2] == ["w1", "finished"]
    finally:
        driver.shutdown()


def test_the_magics_panel_updates_after_its_cell_ended(server, tmp_path):
    with ipython_with_magics(server, tmp_path) as ipy:
        submit = ipy.execute("%%backend_run --bg --name mp\nimport time\nfor i in range(5):\n    print(i, flush=True)\n"
                             "    time.sleep(0.4)", timeout=60)
        assert submit.status == "ok"
        assert ipy.execute("print('meanwhile')").stream() == "meanwhile\n"
        updates = panel_updates_after(ipy, submit)
        assert updates[-1]["text/plain"].split()[:2] == ["mp", "finished"]
