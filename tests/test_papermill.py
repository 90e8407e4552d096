"""papermill with the Backend.AI kernel on the embedded server: the parameters cell injected and run
remotely, a failing cell a non-zero exit with the remote traceback in the output notebook, and
notebooks read from and written to backendai:// paths."""

from __future__ import annotations

import re
import subprocess
import sys

import nbformat
import pytest

from backend_jupyter.config import Config
from backend_jupyter.filesystem import BackendAIFileSystem


def notebook(*cells: tuple[str, list[str]]) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source, metadata={"tags": tags}) for source, tags in cells]
    nb.metadata["kernelspec"] = {"name": "backend-python", "display_name": "Backend.AI Python", "language": "python"}
    return nbformat.writes(nb)


def papermill(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "papermill", *args, "-k", "backend-python", "--no-progress-bar"],
                          env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture
def fs(server):
    fs = BackendAIFileSystem(config=Config.from_env(server.env()), skip_instance_cache=True)
    if not fs.exists("nb"):
        fs.mkdir("nb")
    return fs


TRAIN = notebook(("lr = 0.1\nepochs = 2", ["parameters"]),
                 ("import socket\nprint(f'lr={lr} epochs={epochs}')\nloss = lr * epochs\nloss", []))


def test_parameters_are_injected_and_run_remotely(server, tmp_path):
    (tmp_path / "in.ipynb").write_text(TRAIN)
    done = papermill(server.env(), str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), "-p", "lr", "0.01")
    assert done.returncode == 0, done.stderr[-2000:]
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "lr = 0.01" in injected[0].source
    last = out.cells[-1]
    assert [o.get("text") for o in last.outputs if o.output_type == "stream"] == ["lr=0.01 epochs=2\n"]
    assert [o.data["text/plain"] for o in last.outputs if o.output_type == "execute_result"] == ["0.02"]


def test_a_failing_cell_fails_papermill_with_the_remote_traceback(server, tmp_path):
    (tmp_path / "in.ipynb").write_text(notebook(("x = 1", ["parameters"]), ("print('before')\n1 / (x - 1)", []),
                                                ("print('never')", [])))
    done = papermill(server.env(), str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"))
    assert done.returncode != 0
    assert "ZeroDivisionError" in done.stderr
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    errors = [o for c in out.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert [e.ename for e in errors] == ["ZeroDivisionError"]
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in errors[0].traceback]
    assert "----> 2 1 / (x - 1)" in plain  # the remote traceback, with the code
    assert out.cells[-1].get("outputs") == []  # the cell after it never ran


def test_notebooks_in_and_out_of_a_vfolder(server, fs):
    fs.pipe_file("nb/train.ipynb", TRAIN.encode())
    done = papermill(server.env(), "backendai://nb/train.ipynb", "backendai://nb/runs/lr-0.5.ipynb",
                     "-p", "lr", "0.5")
    assert done.returncode == 0, done.stderr[-2000:]
    out = nbformat.reads(fs.cat_file("nb/runs/lr-0.5.ipynb").decode(), as_version=4)
    assert [o.get("text") for o in out.cells[-1].outputs if o.output_type == "stream"] == ["lr=0.5 epochs=2\n"]
