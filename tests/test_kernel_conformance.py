"""Message-spec conformance of the wrapper kernel (jupyter_kernel_test validates every message),
and notebooks executed headless with nbclient."""

from __future__ import annotations

import jupyter_kernel_test
import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.kernel_driver import KERNEL_NAME

jupyter_kernel_test.TIMEOUT = 60  # a remote kernel: the first cell also creates the session


class TestBackendKernelMessageSpec(jupyter_kernel_test.KernelTests):
    kernel_name = KERNEL_NAME
    env: dict = {}
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    completion_samples = [{"text": "zi", "matches": {"zip"}}]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    code_generate_error = "raise ValueError('boom')"
    code_display_data = [
        {"code": "from IPython.display import HTML, display; display(HTML('<b>test</b>'))", "mime": "text/html"},
        {"code": "from IPython.display import SVG, display; display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"/>'))",
         "mime": "image/svg+xml"},
    ]
    code_inspect_sample = "zip"
    # Through the remote display adapter: a cell's last expression is an execute_result, and
    # clear_output reaches the front-end.
    code_execute_result = [
        {"code": "6 * 7", "result": "42"},
        {"code": "import pandas as pd; pd.DataFrame({'a': [1, 2]})", "mime": "text/html"},
    ]
    code_clear_output = "from IPython.display import clear_output; print('gone'); clear_output()"
    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "6 *"

    @classmethod
    def setUpClass(cls) -> None:
        cls.km, cls.kc = start_new_kernel(kernel_name=cls.kernel_name, env=cls.env)
        # create the remote session before the timed message tests
        cls.kc.execute_interactive("None", timeout=120)


@pytest.fixture(scope="module", autouse=True)
def _point_kernels_at_the_server(server):
    TestBackendKernelMessageSpec.env = server.env()


def notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Backend.AI Python", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    return nb


def run_notebook(nb, server, **kw):
    client = NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=120, startup_timeout=60, **kw)
    client.km = client.create_kernel_manager()
    return client.execute(env=server.env())


def test_nbclient_runs_a_notebook(server):
    nb = run_notebook(notebook(
        "print('from nbclient')",
        "from IPython.display import HTML\ndisplay(HTML('<i>rich</i>'))",
        "x = 21\nprint(x * 2)",
    ), server)
    outputs = [cell.outputs for cell in nb.cells]
    assert "session" in outputs[0][0]["data"]["text/plain"]  # start-up progress, in the first cell only
    assert outputs[0][1]["text"] == "from nbclient\n"
    assert outputs[1][0]["data"]["text/html"] == "<i>rich</i>"
    assert outputs[2][0]["text"] == "42\n"


def test_nbclient_stops_at_a_failing_cell(server):
    nb = notebook("print('ran')", "1/0", "print('must not run')")
    with pytest.raises(CellExecutionError) as err:
        run_notebook(nb, server)
    assert "ZeroDivisionError" in str(err.value)
    assert nb.cells[0].outputs[-1]["text"] == "ran\n"
    assert nb.cells[1].outputs[0]["output_type"] == "error"
    assert nb.cells[2].outputs == []
