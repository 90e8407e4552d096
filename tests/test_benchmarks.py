"""The benchmark suite runs end to end (quick, without the SDK): every group reports its
measurements, whole and consistent, and the behaviour rows (errors, isolation, exact output) are
met.  The figures themselves (how fast, how much memory) are the benchmark's to report, not this
test's to bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ("local", "wrapper_poll", "wrapper_ws")


def sane_latency(summary: dict, n: int) -> None:
    """A latency summary of ``n`` samples, its order statistics in order."""
    assert summary["n"] == n
    assert 0 < summary["min_ms"] <= summary["p50_ms"] <= summary["p95_ms"] <= summary["max_ms"], summary


def test_quick_suite(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--no-sdk", "--output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| # | measurement |" in proc.stdout
    data = json.loads(out.read_text())
    assert data["errors"] == {}
    machine, settings, r = data["machine"], data["settings"], data["results"]
    assert machine["cpus"] and machine["cpu_model"] and machine["python"] and machine["date"]
    assert settings["quick"] and settings["sdk_versions"] == []
    assert set(r) == {"trivial", "first_output", "throughput", "display", "html_table", "session_create",
                      "concurrency", "soak", "clients", "eager_start", "jobs", "filesystem", "tls"}

    sane_latency(r["trivial"]["noop"], settings["trivial_n"])  # the no-op wrapper's diagnostic row
    sane_latency(r["trivial"]["wrapper_ws_plain"], settings["trivial_n"])  # without the display adapter
    for kernel in KERNELS:
        sane_latency(r["trivial"][kernel], settings["trivial_n"])
        for variant in ("print", "print_flush"):  # 'a' comes before the 1 s sleep
            sane_latency(r["first_output"][kernel][variant], settings["ttfo_runs"])
        for cell in ("lines", "bigline"):
            t = r["throughput"][kernel][cell]
            assert t["status"] == "ok" and t["idle"] and t["exact"], t
            assert t["bytes_received"] == t["bytes_expected"] > 10_000_000
            assert all(0 < v["before_mb"] <= v["peak_mb"] for v in t["rss"].values()), t["rss"]
        png = r["display"][kernel]
        sane_latency(png, settings["png_runs"])
        assert png["bytes_match"] and png["png_bytes"] > 1_000_000
        html = r["html_table"][kernel]
        sane_latency(html, settings["png_runs"])
        assert html["whole"], html
    assert set(r["throughput"]["wrapper_ws"]["lines"]["rss"]) == {"kernel", "server", "session kernel"}

    sane_latency(r["session_create"]["cold"], settings["cold_creates"])
    sane_latency(r["session_create"]["warm"], settings["warm_creates"])

    c = r["concurrency"]
    assert c["errors"] == 0, c["error_samples"]
    assert c["isolation_ok"] and c["crossed"] == []
    assert c["cells_ok"] == settings["concurrency_kernels"] * settings["concurrency_cells"] == c["latency"]["n"]

    s = r["soak"]
    assert s["errors"] == 0 and s["latency"]["n"] == settings["soak_cells"]
    for when in ("start", "end"):
        for name in ("kernel", "server", "session kernel"):
            assert s[when][name]["processes"] >= 1 and s[when][name]["rss_mb"] > 0 and s[when][name]["fds"] > 0

    assert set(r["clients"]) == {"ours_poll", "ours_ws"}
    for client in r["clients"].values():
        sane_latency(client["trivial"], settings["trivial_n"])
        assert client["lines"]["exact"] and client["bigline"]["exact"]

    eager = r["eager_start"]["embedded server"]
    assert eager["wrapper_eager"]["delay_s"] == settings["eager_delay_s"] > 0
    for kind in ("wrapper_eager", "wrapper_lazy"):
        assert 0 < eager[kind]["warm_ms"] and eager[kind]["first_ms"] > 0, eager

    j = r["jobs"]
    sane_latency(j["submit"], settings["job_submits"])
    assert j["sweep_jobs"] == settings["sweep_jobs"] and j["sweep_s"] > 2  # each job sleeps 2 s
    assert set(j["sweep_phases"]) == {"to_started", "to_ended"}
    assert j["journal"]["bytes"] > 9_000_000

    f = r["filesystem"]  # the file went in and came back byte-exact (the group checks its digest)
    assert f["bytes"] == settings["fs_mb"] * 1_000_000
    assert set(f) == {"bytes", "local_copy", "write", "get", "read"}

    assert [r["tls"]["endpoints"][s].split(":")[0] for s in ("http", "https")] == ["http", "https"]
    for scheme in ("http", "https"):  # the same cells over plain HTTP and over HTTPS (wss://)
        for kernel in ("wrapper_poll", "wrapper_ws"):
            sane_latency(r["tls"][scheme][kernel], settings["trivial_n"])

    checks = [row for row in data["rows"] if row["target"] in ("0", "no foreign token", "image arrives intact",
                                                               "exact text", "0 errors")]
    assert checks and all(row["met"] for row in checks), checks
