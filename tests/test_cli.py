"""The command line: demo, doctor, lab, and the embedded server's --status and --stop."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import nbformat

from tests.conftest import start_server


def cli(*args, env, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "backend_jupyter", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def test_demo_runs_the_notebook_and_writes_html(server, tmp_path):
    out = cli("demo", "--output-dir", str(tmp_path / "demo"), env=server.env())
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All cells ran as expected." in out.stdout
    assert "error (ZeroDivisionError, expected)" in out.stdout
    executed = tmp_path / "demo" / "01-getting-started.executed.ipynb"
    nb = nbformat.reads(executed.read_text(), as_version=4)  # (strings joined, as the notebook meant them)
    # what each cell of the getting-started notebook showed (this is its only run in the suite)
    outputs = [c.get("outputs", []) for c in nb["cells"]]

    def text(i: int) -> str:
        return "".join(o.get("text", "") for o in outputs[i] if o.get("name") == "stdout")

    assert "Hello from" in text(1)
    assert text(3) == "".join(f"step {i}\n" for i in range(5))
    assert any("image/png" in o.get("data", {}) for o in outputs[5])
    assert any("<table>" in o.get("data", {}).get("text/html", "") for o in outputs[7])
    assert [(i, o["ename"]) for i, out in enumerate(outputs) for o in out if o["output_type"] == "error"] == \
        [(9, "ZeroDivisionError")]
    assert "1,1" in text(11) and "results.csv" in text(12)
    assert "<html" in executed.with_suffix(".html").read_text()[:2000].lower()
    assert server.secret_key not in out.stdout + out.stderr


def test_demo_fails_when_a_cell_fails(server, tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "backend-python", "display_name": "Backend.AI Python"}
    nb.cells = [nbformat.v4.new_code_cell("raise SystemError('unexpected')")]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    out = cli("demo", "--notebook", str(path), "--output-dir", str(tmp_path / "out"), env=server.env())
    assert out.returncode == 1 and "failed unexpectedly" in out.stderr


def test_doctor_all_good(server):
    out = cli("doctor", env=server.env())
    assert out.returncode == 0, out.stdout
    assert f"keypair {server.access_key} is accepted" in out.stdout
    assert "API v7.20230615" in out.stdout and "All checks passed." in out.stdout


def test_doctor_explains_failures(server):
    bad_key = cli("doctor", env={**server.env(), "BACKEND_SECRET_KEY": "s" * 40})
    assert bad_key.returncode == 1
    assert "[FAIL] keypair rejected" in bad_key.stdout and "BACKEND_ACCESS_KEY" in bad_key.stdout
    unreachable = cli("doctor", env={**server.env(), "BACKEND_ENDPOINT": "http://127.0.0.1:9"})
    assert unreachable.returncode == 1 and "BACKEND_ENDPOINT" in unreachable.stdout
    invalid = cli("doctor", env={**server.env(), "BACKEND_API_VERSION": "nine"})
    assert invalid.returncode == 1 and "BACKEND_API_VERSION" in invalid.stdout


def test_lab_passes_arguments_to_jupyterlab(server):
    out = cli("lab", "--version", env=server.env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1][0].isdigit()  # JupyterLab's version
    assert "notebooks run on the cluster at " + server.endpoint in out.stdout


def control(*args, data_dir):
    """``backend-jupyter server --status/--stop`` on ``data_dir``."""
    return cli("server", *args, "--data-dir", str(data_dir), env=dict(os.environ), timeout=60)


def test_server_status_and_stop_without_a_server(tmp_path):
    status = control("--status", data_dir=tmp_path)
    assert status.returncode == 1
    assert status.stdout.startswith(f"No embedded server is running on {tmp_path} (it starts with the first cell")
    stop = control("--stop", data_dir=tmp_path)
    assert stop.returncode == 1 and stop.stderr == f"error: no embedded server is running on {tmp_path}\n"


def test_server_status_shows_where_since_and_the_sessions_with_their_owners(tmp_path):
    srv = start_server(tmp_path / "srv")
    try:
        api = srv.client()
        created = api.request("POST", "/session", headers={"User-Agent": "status-test/1"},
                              json={"name": "status-one", "image": "python", "config": {"resources": {"cpu": "1"}}})
        assert created.status == 201
        out = control("--status", data_dir=srv.data_dir)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[:2] == [f"Embedded server at {srv.endpoint} (pid {srv.proc.pid})", f"  data dir: {srv.data_dir}"]
        assert lines[2].startswith("  running since ") and "sessions idle for 3600 s are reaped" in lines[2]
        assert lines[3] == "  1 session, 0 busy:"
        assert lines[4].startswith("    status-one  RUNNING  idle for ")
        assert lines[4].endswith(f"image=python  resources=cpu=1  owner={srv.access_key} via status-test/1")
        assert srv.secret_key not in out.stdout + out.stderr
        other = srv.client()
        other.access_key, other.secret_key = srv.new_keypair()
        assert other.request("GET", "/embedded/status").status == 403  # the server's own keypair only
    finally:
        srv.stop()


def assert_stopped(srv, kernels) -> None:
    """Once ``--stop`` has returned: the session kernels are gone, the state file too, and the
    server exits cleanly."""
    assert kernels and not [k for k in kernels if k.is_running() and k.status() != "zombie"]
    assert not (srv.data_dir / "server.json").exists()
    assert srv.proc.wait(10) == 0


def test_server_stop_is_refused_while_a_cell_runs_then_forced(tmp_path):
    srv = start_server(tmp_path / "srv")
    try:
        api = srv.client()
        assert api.create("busy-one").status == 201
        kernels = srv.kernel_processes()
        assert api.execute("busy-one", "query", "import time; time.sleep(30)", "long-run")["status"] == "continued"
        refused = control("--stop", data_dir=srv.data_dir)
        assert refused.returncode == 1
        first, busy = refused.stderr.splitlines()
        assert first == ("error: not stopped: 1 session busy running code "
                         "(`backend-jupyter server --stop --force` stops it anyway):")
        assert busy.startswith("    busy-one  RUNNING  busy for ") and f"owner={srv.access_key}" in busy
        assert srv.proc.poll() is None and api.request("GET", "/session/busy-one").status == 200
        started = time.monotonic()
        forced = control("--stop", "--force", data_dir=srv.data_dir)
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout == f"Stopped the embedded server at {srv.endpoint} (pid {srv.proc.pid}).\n"
        assert time.monotonic() - started < 15  # not after the 30 s cell
        assert_stopped(srv, kernels)
    finally:
        srv.stop()


def test_server_stop_when_idle(tmp_path):
    srv = start_server(tmp_path / "srv")
    try:
        assert srv.client().create("idle-one").status == 201
        kernels = srv.kernel_processes()
        stopped = control("--stop", data_dir=srv.data_dir)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout == f"Stopped the embedded server at {srv.endpoint} (pid {srv.proc.pid}).\n"
        assert_stopped(srv, kernels)
        assert control("--status", data_dir=srv.data_dir).returncode == 1
    finally:
        srv.stop()


def test_doctor_reports_the_embedded_server(tmp_path):
    srv = start_server(tmp_path / "jupyter-data" / "backend_jupyter")  # the default data dir below
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "jupyter-data")
    try:
        assert srv.client().create("doctor-one").status == 201
        running = cli("doctor", env=env, timeout=60).stdout.splitlines()
        assert f"[ ok ] embedded server running at {srv.endpoint} (pid {srv.proc.pid}, 1 session, 0 busy)" in running
    finally:
        srv.stop()
    stopped = cli("doctor", env=env, timeout=60).stdout
    assert "[note] no BACKEND_ENDPOINT: the embedded server is used, and it is not running now" in stopped
