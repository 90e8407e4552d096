"""Group 10: background jobs (``%%backend_run --bg``) on the embedded server.

*submit*: the ``--bg`` cell's round trip in the wrapper kernel (target < 1 s: it returns before the
job's session has started).  *sweep*: 8 jobs each sleeping 2 s, all at once (``--parallel 8``),
from the submit to the last one's end (target < 4 s).  *journal*: appending 10 MB of output
records to a job's journal and reading them back (journal.py), the local cost of keeping a job's
output.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from backend_jupyter.journal import JobInfo, Journal

from .common import KernelDriver, Row, Server, ms, summarize
from .eager import LAZY

SUBMIT_TARGET_MS = 1000.0
SWEEP_TARGET_S = 4.0
JOURNAL_MB = 10


def submit_and_sweep(server: Server, workdir: Path, submits: int, sweep: int) -> dict:
    env = dict(server.env(), JUPYTER_DATA_DIR=str(Path(workdir) / "jobs-data"))
    driver = KernelDriver(LAZY, env, Path(workdir) / "jobs-kernel.log")
    with driver:
        driver.run_ok("None", timeout=120)
        times = [driver.run_ok(f"%%backend_run --bg --name bench-{i}\npass", timeout=60).seconds for i in range(submits)]
        for i in range(submits):  # their sessions gone before the sweep starts: it has the machine
            driver.run_ok(f"%backend_job wait bench-{i}", timeout=120)
        t0 = time.perf_counter()
        values = ",".join(str(i) for i in range(1, sweep + 1))
        driver.run_ok(f"%%backend_run --bg --name sweep --sweep i={values} --parallel {sweep}\nimport time\n"
                      "time.sleep(2)", timeout=60)
        driver.run_ok("%backend_job wait sweep", timeout=120)
        sweep_s = time.perf_counter() - t0
        root = Path(workdir) / "jobs-data" / "backend_jupyter" / "jobs"
        timeline = [Journal(root / f"sweep-{i}").info() for i in range(1, sweep + 1)]
        phases = {"to_started": summarize([i.started - i.created for i in timeline]),
                  "to_ended": summarize([i.ended - i.started for i in timeline])}
    return {"submit": summarize(times, samples=True), "sweep_s": round(sweep_s, 2), "sweep_jobs": sweep,
            "sweep_phases": phases}


def journal_throughput(mb: int = JOURNAL_MB) -> dict:
    record = {"k": "stdout", "text": "x" * 99 + "\n"}
    count = mb * 1_000_000 // 120
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal.create(Path(tmp), JobInfo(name="bench", session="s", endpoint="e"))
        journal.lead()
        t0 = time.perf_counter()
        for start in range(0, count, 100):  # a follower appends what one read brings, about so many
            journal.append([record] * min(100, count - start))
        write_s = time.perf_counter() - t0
        size = journal.size()
        t0 = time.perf_counter()
        read = sum(1 for _ in journal.records())
        read_s = time.perf_counter() - t0
        journal.close()
    assert read == count
    return {"bytes": size, "write_mb_s": round(size / write_s / 1e6, 1), "read_mb_s": round(size / read_s / 1e6, 1)}


def jobs_group(server: Server, workdir: Path, submits: int, sweep: int) -> dict:
    return {**submit_and_sweep(server, workdir, submits, sweep), "journal": journal_throughput()}


def rows(results: dict) -> list[Row]:
    submit, journal = results["submit"], results["journal"]
    return [
        Row("10", "job submit (%%backend_run --bg), kernel round trip", submit["n"],
            f"p50 {ms(submit['p50_ms'])} · max {ms(submit['max_ms'])}", "", f"< {SUBMIT_TARGET_MS / 1000:g} s",
            submit["max_ms"] < SUBMIT_TARGET_MS),
        Row("10", f"sweep of {results['sweep_jobs']} jobs × sleep 2 s, all at once: submit → all ended", 1,
            f"{results['sweep_s']:.2f} s",
            "", f"< {SWEEP_TARGET_S:g} s", results["sweep_s"] < SWEEP_TARGET_S),
        Row("10", f"job journal, {journal['bytes'] / 1e6:.0f} MB of output records", 1,
            f"write {journal['write_mb_s']} MB/s · read {journal['read_mb_s']} MB/s"),
    ]

