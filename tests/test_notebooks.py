"""The example notebooks, executed headless through nbclient against the embedded server."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(name: str, server) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=180, startup_timeout=60, kernel_name=nb.metadata.kernelspec.name)
    client.km = client.create_kernel_manager()
    return client.execute(env=server.env())


def outputs(nb, index):
    return nb.cells[index].outputs


def text(nb, index, name="stdout"):
    return "".join(o.get("text", "") for o in outputs(nb, index) if o.get("name") == name)


def errors(nb):
    return [(i, o.ename) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.outputs if o.output_type == "error"]


# 01-getting-started.ipynb runs through `backend-jupyter demo` (tests/test_cli.py), cell by cell checked.


def test_02_magics(server):
    nb = execute("02-magics.ipynb", server)
    assert "remote step 2" in text(nb, 4)
    assert outputs(nb, 8)[0]["data"]["text/plain"] == "{'label': 'squares', 'total': 385}"
    assert text(nb, 10) == "4950\n"
    assert [e for _, e in errors(nb)] == ["RemoteError"]


def test_03_vfolders_and_files(server):
    nb = execute("03-vfolders-and-files.ipynb", server)
    assert "rows: 3 sum of x*y: 44" in text(nb, 6)
    assert text(nb, 7) == "sum of x*y = 44\n\n"
    assert "x,y" in text(nb, 10)
    assert errors(nb) == []


def test_04_batch_mode(server):
    nb = execute("04-batch-mode.ipynb", server)
    assert "mean = 2.5" in text(nb, 3)
    assert "failing on purpose" in text(nb, 5)
    assert [e for _, e in errors(nb)] == ["RemoteError"]


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
