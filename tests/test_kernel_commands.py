"""The kernel steers its own session: ``%backend_*`` lines run in the kernel, the rest remotely.

A real kernel process, in a directory of its own (the notebook's directory), against the
embedded server; the same flows on the real manager are in tests/manager/test_real_manager.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.fault_proxy import FaultProxy
from tests.kernel_driver import KernelDriver

CREATE_TIMEOUT = 60


@pytest.fixture(scope="module")
def notebook_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("notebook")


@pytest.fixture(scope="module")
def kernel(server, notebook_dir):
    driver = KernelDriver(server.env(), cwd=notebook_dir)
    driver.first = driver.execute("None", timeout=CREATE_TIMEOUT)  # sent at once: the eager start is under way
    assert driver.first.status == "ok"
    yield driver
    driver.shutdown()


def session_names(server) -> list[str]:
    resp = server.client().request("GET", "/session/_/match", params={"id": ""})
    return [m["name"] for m in resp.json()["matches"]]


def session_name(kernel) -> str:
    [line] = [line for line in kernel.execute("%backend_session info").stream().splitlines()
              if line.startswith("name ")]
    return line.split()[-1]


def texts(result) -> list[str]:
    """The text of every display and display update, in order."""
    return [c["data"].get("text/plain", "") for c in result.of("display_data") + result.of("update_display_data")]


def usage_error(result) -> str:
    assert result.status == "error", result.reply["content"]
    content = result.reply["content"]
    assert content["ename"] == "UsageError", content
    assert [e["evalue"] for e in result.of("error")] == [content["evalue"]]
    return content["evalue"]


def test_the_first_cell_shows_the_session_start_it_waited_for(kernel):
    """The start began before the cell (eager start) and ends during it: both show in the cell, as
    one display updated in place."""
    lines = kernel.first.of("display_data") + kernel.first.of("update_display_data")
    assert len({c["transient"]["display_id"] for c in lines}) == 1
    assert lines[0]["data"]["text/plain"].startswith("Starting session jupyter-")
    assert " (python): started in " in lines[-1]["data"]["text/plain"]


def test_upload_then_code_in_one_cell(kernel, notebook_dir):
    (notebook_dir / "data").mkdir()
    (notebook_dir / "data" / "train.csv").write_text("a,b\n1,2\n")
    (notebook_dir / "data" / "sub").mkdir()
    (notebook_dir / "data" / "sub" / "more.txt").write_text("x" * 1500)
    result = kernel.execute("%backend_upload data --dest inputs\n"
                            "import os\nprint(open('inputs/data/train.csv').read(), end='')\n"
                            "print(os.path.getsize('inputs/data/sub/more.txt'))")
    assert result.status == "ok", result.reply["content"]
    assert result.stream() == "a,b\n1,2\n1500\n"
    shown = texts(result)
    assert shown[0].startswith("Uploading to ") and shown[0].endswith("0/2 …")
    assert any("1/2: data/sub/more.txt (1.5 kB)" in t or "1/2: data/train.csv (8 B)" in t for t in shown)
    assert shown[-1].endswith(": 2 files, 1.5 kB in " + shown[-1].rsplit(" in ", 1)[1])


def test_download_brings_a_result_file_back(kernel, notebook_dir):
    result = kernel.execute("import os\nos.makedirs('out', exist_ok=True)\n"
                            "open('out/result.txt', 'w').write('forty-two')\n"
                            "%backend_download out/result.txt --dest results")
    # the %backend_ line is not at the top: it went to the session's IPython as code
    assert result.status == "error", [(m["msg_type"], m["content"]) for m in result.messages]
    assert "Line magic function `%backend_download` not found" in result.stream("stderr")
    result = kernel.execute("%backend_download out/result.txt --dest results")
    assert result.status == "ok", result.reply["content"]
    assert (notebook_dir / "results" / "result.txt").read_text() == "forty-two"  # a file lands by its name
    assert texts(result)[-1].endswith(f"9 B into {notebook_dir / 'results'}")


def test_bad_commands_are_usage_errors_and_nothing_runs(kernel, notebook_dir):
    kernel.execute("marker = 0")
    cases = {
        "%backend_nope x": "No command '%backend_nope'",
        "%backend_upload --bogus a.txt": "unrecognized arguments: --bogus",
        "%backend_upload missing.csv": "No such file or directory: missing.csv",
        "%backend_upload /etc/hostname": "is outside",
        "%backend_upload data --dest /abs": "--dest '/abs': give a path relative to the work directory",
        "%backend_download ../secret": "PATH '../secret': give a path relative to the work directory",
        "%backend_download /etc/passwd": "PATH '/etc/passwd': give a path relative",
        "%backend_download out/result.txt --dest ../elsewhere": "is outside",
        "%backend_session launch": "invalid choice: 'launch'",
        "%%backend_session info": "%%backend_session is not a cell command",
    }
    for line, message in cases.items():
        error = usage_error(kernel.execute(f"{line}\nmarker = 1"))
        assert message in error, (line, error)
    assert "usage: %backend_upload" in usage_error(kernel.execute("%backend_upload --bogus a.txt"))
    assert kernel.execute("print(marker)").stream() == "0\n"  # no code after a failed command ran
    assert not (notebook_dir.parent / "elsewhere").exists()


def test_downloading_a_missing_file_leaves_nothing_behind(kernel, notebook_dir):
    result = kernel.execute("%backend_download no/such.txt --dest fresh")
    assert result.status == "error"
    assert "no/such.txt" in result.reply["content"]["evalue"]
    assert not (notebook_dir / "fresh").exists()
    assert not list(notebook_dir.rglob("such.txt"))


def test_ipython_magics_and_shell_escapes_still_run_remotely(kernel):
    result = kernel.execute("%env BJ_PROBE=remote\n!echo \"$BJ_PROBE from the shell\"")
    assert result.status == "ok", result.reply["content"]
    assert result.stream().splitlines()[-1] == "remote from the shell"


def test_session_info_shows_the_session_and_its_live_usage(kernel):
    info = kernel.execute("%backend_session info")
    assert info.status == "ok"
    fields = dict(line.split(None, 1) for line in info.stream().splitlines())
    assert fields["image"] == "python" and fields["status"] == "RUNNING"
    assert fields["name"].startswith("jupyter-")
    assert fields["endpoint"].startswith("http://127.0.0.1:")
    assert fields["usage"].startswith("CPU ") and "%, memory " in fields["usage"] and " MB of " in fields["usage"]
    assert fields["ours"].startswith("yes")


def test_config_and_help_inside_the_kernel(kernel):
    config = kernel.execute("%backend_config").stream()
    assert "secret_key" in config and "wJal" not in config
    assert "current session" in config and "jupyter-" in config
    assert kernel.execute("%backend_help backend_upload").stream().startswith("usage: %backend_upload")


def test_cell_command_runs_on_another_session_which_goes_with_the_kernel(server, notebook_dir):
    driver = KernelDriver(server.env(), cwd=notebook_dir)
    try:
        assert driver.execute("x = 'own'", timeout=CREATE_TIMEOUT).status == "ok"
        other = driver.execute("%%backend_run -s side-session\nx = 'side'\nprint(x)", timeout=CREATE_TIMEOUT)
        assert other.status == "ok", other.reply["content"]
        assert other.stream() == "side\n"
        assert driver.execute("print(x)").stream() == "own\n"
        assert driver.execute("%backend_run -s side-session print(x * 2)").stream() == "sideside\n"
        assert usage_error(driver.execute("%%backend_run -i x\npass")).startswith("-i/-o move variables")
        assert "side-session" in session_names(server)
    finally:
        driver.shutdown()
    deadline = time.monotonic() + 15
    while "side-session" in session_names(server):
        assert time.monotonic() < deadline, "the kernel's other session outlived it"
        time.sleep(0.3)


def test_session_new_replaces_the_session_with_new_settings(server, notebook_dir):
    driver = KernelDriver(server.env(), cwd=notebook_dir)
    try:
        assert driver.execute("before = 1", timeout=CREATE_TIMEOUT).status == "ok"
        result = driver.execute("%backend_session new -e STAGE=two -r cpu=1\nimport os\nprint(os.environ['STAGE'])",
                                timeout=CREATE_TIMEOUT)
        assert result.status == "ok", result.reply["content"]
        assert "its variables are lost" in result.stream("stderr")
        assert result.stream() == "two\n"
        assert driver.execute("print('before' in dir())").stream() == "False\n"
        info = dict(line.split(None, 1) for line in driver.execute("%backend_session info").stream().splitlines())
        assert info["resources"] == "cpu=1"
        # the settings hold for the kernel's restarts (the next process reads them)
        driver.shutdown(restart=True)
        assert driver.execute("import os; print(os.environ.get('STAGE'))", timeout=CREATE_TIMEOUT).stream() == "two\n"
        assert "-e STAGE=…" in driver.execute("%backend_config").stream()
        info = dict(line.split(None, 1) for line in driver.execute("%backend_session info").stream().splitlines())
        assert info["ours"].startswith("yes"), info  # the restarted process owns it as the first did
    finally:
        driver.shutdown()
    wait_for(lambda: info["name"] not in session_names(server), 15, "the restarted kernel's session outlived it")


def test_tab_completes_and_shift_tab_explains_commands(kernel):
    def complete(code):
        msg_id = kernel.kc.complete(code, len(code))
        reply = kernel.kc.get_shell_msg(timeout=10)
        assert reply["parent_header"]["msg_id"] == msg_id
        return reply["content"]

    found = complete("%backend_se")
    assert found["matches"] == ["%backend_session"] and (found["cursor_start"], found["cursor_end"]) == (0, 11)
    assert "info" in complete("%backend_session ")["matches"]
    assert complete("%backend_session new --im")["matches"] == ["--image"]
    assert complete("x = 1\n%%backend_")["matches"] == ["%%backend_run"]
    msg_id = kernel.kc.inspect("%backend_upload a.csv", 3)
    reply = kernel.kc.get_shell_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["found"]
    assert reply["content"]["data"]["text/plain"].startswith("usage: %backend_upload")


def test_long_cell_shows_a_live_status_line_that_goes_away(kernel):
    result = kernel.execute("import time\nprint('start', flush=True)\ntime.sleep(3.6)\nprint('end')")
    assert result.status == "ok"
    kinds = [m["msg_type"] for m in result.messages]
    first = kinds.index("display_data")
    assert kinds[:first] == ["stream"]  # the line comes after what was printed before it
    lines = result.of("display_data") + result.of("update_display_data")
    ids = {c["transient"]["display_id"] for c in lines}
    assert len(ids) == 1
    live = [c["data"]["text/plain"] for c in lines[:-1]]
    assert live[0].startswith("running 2 s · CPU ") and "memory" in live[0]
    assert 2 <= len(live) <= 3  # at most once a second
    assert lines[-1]["data"] == {}  # 'auto': gone at the end
    assert result.stream() == "start\nend\n"


def test_status_line_summary_and_off(server, notebook_dir):
    drivers = {mode: KernelDriver(server.env(), cwd=notebook_dir, extra_arguments=[f"--BackendKernel.status_line={mode}"])
               for mode in ("summary", "off")}
    try:
        results = {}
        threads = [threading.Thread(target=lambda m=mode, d=driver: results.__setitem__(
            m, d.execute("import time; time.sleep(2.8)", timeout=CREATE_TIMEOUT))) for mode, driver in drivers.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(CREATE_TIMEOUT + 10)
        last = results["summary"].of("update_display_data")[-1]["data"]["text/plain"]
        assert last.startswith("ran 3 s · peak memory ") and last.endswith("MB")
        assert drivers["summary"].execute("print('quick')").of("display_data") == []  # short cells: no line
        assert not any(t.startswith("running") for t in texts(results["off"]))
        assert drivers["off"].execute("import time; time.sleep(2.5)").messages == []
    finally:
        for driver in drivers.values():
            driver.shutdown()


# -- eager start --------------------------------------------------------------------------------------
def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_the_session_starts_with_the_kernel_and_goes_with_it_unused(server, notebook_dir):
    before = set(session_names(server))
    driver = KernelDriver(server.env(), cwd=notebook_dir)
    new = lambda: set(session_names(server)) - before  # noqa: E731
    try:
        wait_for(new, CREATE_TIMEOUT, "no session was started before the first cell")
        [name] = new()
    finally:
        driver.shutdown()
    wait_for(lambda: name not in session_names(server), 15, "the unused kernel's session was leaked")


def test_a_killed_kernel_destroys_the_session_it_started(server, notebook_dir):
    before = set(session_names(server))
    driver = KernelDriver(server.env(), cwd=notebook_dir)
    try:
        wait_for(lambda: set(session_names(server)) - before, CREATE_TIMEOUT, "no eager session")
        [name] = set(session_names(server)) - before
        os.kill(driver.km.provisioner.pid, signal.SIGTERM)
        wait_for(lambda: name not in session_names(server), 15, "SIGTERM leaked the session")
    finally:
        driver.kc.stop_channels()
        driver.km.cleanup_resources()


def test_a_start_error_shows_in_the_first_cell_and_the_next_retries(server, notebook_dir):
    proxy = FaultProxy(server.endpoint).start()
    proxy.inject(1, status=403, match="POST /session")  # the eager start is refused, once
    env = {**server.env(), "BACKEND_ENDPOINT": proxy.endpoint}
    driver = KernelDriver(env, cwd=notebook_dir)
    try:
        first = driver.execute("print(1)", timeout=CREATE_TIMEOUT)
        assert first.status == "error" and first.reply["content"]["ename"] == "Forbidden", first.reply["content"]
        assert texts(first)[-1].endswith(": failed")
        second = driver.execute("print(2)", timeout=CREATE_TIMEOUT)
        assert second.status == "ok" and second.stream() == "2\n"
        creates = [path for method, path, _ in proxy.seen if method == "POST" and path.startswith("/session")
                   and path.count("/") == 1]
        assert len(creates) == 2, proxy.seen
    finally:
        driver.shutdown()
        proxy.stop()
