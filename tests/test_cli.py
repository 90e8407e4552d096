"""The command line: demo, doctor, lab."""

from __future__ import annotations

import json
import subprocess
import sys


def cli(*args, env, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "backend_jupyter", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def test_demo_runs_the_notebook_and_writes_html(server, tmp_path):
    out = cli("demo", "--output-dir", str(tmp_path / "demo"), env=server.env())
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All cells ran as expected." in out.stdout
    assert "error (ZeroDivisionError, expected)" in out.stdout
    executed = tmp_path / "demo" / "01-getting-started.executed.ipynb"
    nb = json.loads(executed.read_text())
    assert any("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
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
