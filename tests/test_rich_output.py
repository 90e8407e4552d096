"""Rich output through the remote display adapter, on the embedded server: the kernel and the magics
show every output as a local IPython kernel would (twins on the real manager in
manager/test_real_manager.py)."""

from __future__ import annotations

import pytest

from tests import rich_output as rich
from tests.kernel_driver import KernelDriver


@pytest.fixture(scope="module")
def kernel(server):
    driver = KernelDriver(server.env())
    assert driver.execute("None").status == "ok"  # creates the session and installs the adapter
    yield driver
    driver.shutdown()


@pytest.fixture(scope="module")
def ipy(server):
    driver = KernelDriver(server.env(), kernel_name="python3")
    assert driver.execute("%load_ext backend_jupyter").status == "ok"
    assert driver.execute("%%backend_run\nNone").status == "ok"
    yield driver
    driver.shutdown()


def test_kernel_dataframe_is_an_execute_result_with_html_and_text(kernel):
    before = kernel.execute("pass").reply["content"]["execution_count"]
    rich.check_dataframe(kernel.execute(rich.DATAFRAME), execution_count=before + 1)
    assert kernel.execute("print('next')").stream() == "next\n"


def test_kernel_expression_result_and_out_numbers(kernel):
    first = kernel.execute("6 * 7")
    second = kernel.execute("'%d' % 43")
    for result, text in ((first, "42"), (second, "'43'")):
        [shown] = result.of("execute_result")
        assert shown["data"] == {"text/plain": text}
        assert shown["execution_count"] == result.reply["content"]["execution_count"]
        assert result.stream() == ""
    assert second.reply["content"]["execution_count"] == first.reply["content"]["execution_count"] + 1


def test_kernel_markdown_latex_json(kernel):
    rich.check_markdown_latex_json(kernel.execute(rich.MARKDOWN_LATEX_JSON))


def test_kernel_display_handle_updates_in_place(kernel):
    rich.check_updated_handle(kernel.execute(rich.UPDATED_HANDLE))


def test_kernel_clear_output_loop_leaves_one_output(kernel):
    rich.check_clear_loop(kernel.execute(rich.CLEAR_LOOP))


def test_kernel_one_megabyte_html_table_arrives_whole(kernel):
    rich.check_big_table(kernel.execute(rich.BIG_TABLE, timeout=120))


def test_kernel_output_over_the_limit_is_a_note(kernel):
    rich.check_too_big(kernel.execute(rich.TOO_BIG, timeout=120))
    assert kernel.execute("print('still here')").stream() == "still here\n"


def test_kernel_adapter_is_invisible(server):
    """The adapter's install cell used no execution count and left no trace in the remote history."""
    driver = KernelDriver(server.env())
    try:
        result = driver.execute("print(get_ipython().execution_count, len(In), any('__' + 'bj_snippet' in c for c in In), "
                                "sorted(k for k in globals() if 'bj' in k))")
        assert result.stream() == "1 2 False []\n", result.messages
        [shown] = driver.execute("'x'").of("execute_result")
        assert shown["execution_count"] == 2
    finally:
        driver.shutdown()


def test_magics_dataframe_shows_as_a_table(ipy):
    result = ipy.execute("%%backend_run\n" + rich.DATAFRAME)
    assert result.status == "ok", result.reply
    tables = [c["data"] for c in result.of("display_data") if "text/html" in c["data"]]
    assert len(tables) == 1 and "<table" in tables[0]["text/html"]
    assert tables[0]["text/plain"].split() == ["a", "b", "0", "1", "x", "1", "2", "y"]


def test_magics_markdown_updates_and_clear_output(ipy):
    rich.check_markdown_latex_json(ipy.execute("%%backend_run\n" + rich.MARKDOWN_LATEX_JSON))
    rich.check_updated_handle(ipy.execute("%%backend_run\n" + rich.UPDATED_HANDLE))
    rich.check_clear_loop(ipy.execute("%%backend_run\n" + rich.CLEAR_LOOP))
