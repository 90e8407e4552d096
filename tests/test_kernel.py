"""The "Backend.AI Python" wrapper kernel as a real process, driven like a front-end drives it."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.fault_proxy import FaultProxy
from tests.kernel_driver import KernelDriver


@pytest.fixture(scope="module")
def kernel_env(server):
    return server.env()


@pytest.fixture(scope="module")
def kernel(kernel_env):
    driver = KernelDriver(kernel_env)
    assert driver.execute("None").status == "ok"  # the first cell also creates the session
    yield driver
    driver.shutdown()


def sessions_of(server) -> list[str]:
    resp = server.client().request("GET", "/session/_/match", params={"id": ""})
    return [m["name"] for m in resp.json()["matches"]]


def test_stdout_streams_live_and_reply_ok(kernel):
    result = kernel.execute("import time\nprint('a', flush=True)\ntime.sleep(5)\nprint('b')")
    assert result.status == "ok"
    assert result.stream() == "a\nb\n"
    arrivals = [t for m, t in zip(result.messages, result.arrivals, strict=True) if m["msg_type"] == "stream"]
    # 'a' arrives while the cell still sleeps: seconds before 'b' (held to the end, they would come together)
    assert arrivals[-1] - arrivals[0] > 2.5, arrivals


def test_stderr_and_display_data(kernel):
    code = (
        "import sys\nfrom IPython.display import display, HTML, SVG\n"
        "print('warn', file=sys.stderr)\n"
        "display(HTML('<b>bold</b>'))\n"
        "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"2\" height=\"2\"/>'))\n"
    )
    result = kernel.execute(code)
    assert result.status == "ok"
    assert result.stream("stderr") == "warn\n"
    bundles = [c["data"] for c in result.of("display_data")]
    assert bundles[0]["text/html"] == "<b>bold</b>"
    assert bundles[1]["image/svg+xml"].startswith("<svg")


def test_matplotlib_figure_arrives_as_png(kernel):
    pytest.importorskip("matplotlib")
    result = kernel.execute("import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
                            "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    assert result.status == "ok"
    assert any("image/png" in c["data"] for c in result.of("display_data"))


def test_error_is_one_error_message_and_status_error(kernel):
    result = kernel.execute("print('before')\ndef f():\n    raise ValueError('bad value')\nf()")
    assert result.status == "error"
    assert result.reply["content"]["ename"] == "ValueError"
    assert result.reply["content"]["evalue"] == "bad value"
    errors = result.of("error")
    assert len(errors) == 1 and errors[0]["ename"] == "ValueError"
    assert any("bad value" in line for line in errors[0]["traceback"])
    assert result.stream() == "before\n"
    assert "ValueError" not in result.stream("stderr")  # shown once, as the error


def test_input_and_getpass(kernel):
    result = kernel.execute("import getpass\nn = input('Name: ')\np = getpass.getpass('Pass: ')\nprint(n, len(p))",
                            inputs=["Ada", "secret"])
    assert result.status == "ok"
    assert result.input_requests == [{"prompt": "Name: ", "password": False}, {"prompt": "Pass: ", "password": True}]
    assert result.stream() == "Ada 6\n"


def test_input_without_stdin_is_a_clear_error(kernel):
    started = time.monotonic()
    result = kernel.execute("x = input('never answered? ')", allow_stdin=False, timeout=30)
    assert time.monotonic() - started < 20
    assert result.status == "error"
    assert "cannot answer input requests" in result.stream("stderr")
    after = kernel.execute("print('next works')")
    assert after.stream() == "next works\n"


def test_interrupt_running_cell(kernel):
    timer = threading.Timer(1.0, kernel.interrupt)
    timer.start()
    started = time.monotonic()
    result = kernel.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(300)", timeout=120)
    elapsed = time.monotonic() - started
    assert result.status == "error" and result.reply["content"]["ename"] == "KeyboardInterrupt"
    assert elapsed < 30, elapsed  # interrupted (about 1 s after the click here), not the 300 s sleep
    assert kernel.execute("print('after')").stream() == "after\n"


def test_interrupt_while_waiting_for_input(kernel):
    asked = threading.Event()

    def on_request(_req):
        asked.set()
        threading.Timer(0.3, kernel.interrupt).start()
        return None  # never answered: the user clicks stop instead

    started = time.monotonic()
    result = kernel.execute("x = input('stuck? ')", inputs=on_request)
    assert asked.is_set()
    assert result.status == "error" and result.reply["content"]["ename"] == "KeyboardInterrupt"
    assert time.monotonic() - started < 5
    # the abandoned request must not swallow the next answer
    nxt = kernel.execute("print(input('again? '))", inputs=["yes"])
    assert nxt.stream() == "yes\n"


def test_output_flood_is_coalesced_and_complete(kernel):
    result = kernel.execute("for i in range(200000):\n    print(i)", timeout=180)
    assert result.status == "ok"
    text = result.stream()
    assert text == "".join(f"{i}\n" for i in range(200000))
    assert len(result.of("stream")) < 500  # few, large messages: nothing dropped by IOPub


def test_completion_is_complete_and_inspect(kernel):
    kernel.execute("completion_target_variable = 42")
    reply = kernel.request("complete", "completion_target_var", 21)
    assert "completion_target_variable" in reply["matches"]
    assert reply["cursor_start"] == 0 and reply["cursor_end"] == 21
    assert kernel.request("is_complete", "for i in range(3):")["status"] == "incomplete"
    assert kernel.request("is_complete", "x = 1")["status"] == "complete"
    assert kernel.request("is_complete", "x = (")["status"] == "incomplete"
    before = kernel.execute("print(len(In), _i)")
    inspected = kernel.request("inspect", "len(", 3, detail_level=0)
    assert inspected["found"] is True and "text/plain" in inspected["data"]
    after = kernel.execute("print(len(In), _ii)")
    # inspect left no trace: one more entry (the print itself), and _ii is the previous print
    n_before = int(before.stream().split()[0])
    assert after.stream() == f"{n_before + 1} print(len(In), _i)\n"
    for _ in range(3):  # the history database took no duplicate line numbers either
        kernel.request("inspect", "print(", 5, detail_level=0)
        assert kernel.execute("print('clean')").stream() == "clean\n"


def test_session_input_history_lives_in_memory(server, kernel):
    """The embedded server's sessions keep IPython's input history in memory (no SQLite commit per
    cell): ``In`` and ``%history`` still work, and no history database is written."""
    kernel.execute("marker_for_history = 41")
    result = kernel.execute("print(In[-2])\n%history -l 2")
    assert result.status == "ok"
    assert result.stream().splitlines()[0] == "marker_for_history = 41"
    assert "marker_for_history = 41" in result.stream().splitlines()[1:]
    assert not list((server.data_dir / "sessions").glob("**/history.sqlite"))


def test_history_requests_answer_with_this_kernels_inputs(kernel):
    """A console's up-arrow and ``%history`` there ask the kernel: tail, range, search (glob)."""
    codes = ["hist_a = 1", "hist_b = hist_a + 1", "hist_a = 1"]
    for code in codes:
        assert kernel.execute(code).status == "ok"
    tail = kernel.request("history", hist_access_type="tail", n=3, output=False, raw=True)
    assert tail["status"] == "ok" and [h[2] for h in tail["history"]] == codes
    session, first = tail["history"][0][:2]
    assert [h[1] for h in tail["history"]] == [first, first + 1, first + 2]

    ranged = kernel.request("history", hist_access_type="range", session=session, start=first + 1, stop=first + 2,
                            output=True, raw=True)
    assert ranged["history"] == [[session, first + 1, [codes[1], None]]]

    found = kernel.request("history", hist_access_type="search", pattern="hist_a*", output=False, raw=True)
    assert [h[2] for h in found["history"]][-2:] == ["hist_a = 1", "hist_a = 1"]
    unique = kernel.request("history", hist_access_type="search", pattern="hist_a*", unique=True, output=False,
                            raw=True)
    assert [h[2] for h in unique["history"]] == ["hist_a = 1"] and unique["history"][0][1] == first + 2


def test_empty_cell_does_not_touch_the_session(kernel, server):
    assert kernel.execute("None").status == "ok"  # the session is up and this kernel idle
    requests = lambda: len(server.log_path.read_text().splitlines())  # noqa: E731 - one line per request
    before = requests()
    for empty in ("", "   \n", "\n\n"):
        reply = kernel.execute(empty)
        assert reply.status == "ok" and not reply.stream()
    time.sleep(0.5)  # a request sent anyway would be logged by now
    assert requests() == before


def test_restart_resets_state_keeps_files_and_session(server, kernel_env):
    driver = KernelDriver(kernel_env)
    try:
        driver.execute("state = 1\nopen('kept.txt', 'w').write('kept')")
        before = sessions_of(server)
        driver.shutdown(restart=True)
        result = driver.execute("print('state' in dir(), open('kept.txt').read())")
        assert result.stream() == "False kept\n"
        assert sorted(sessions_of(server)) == sorted(before)  # no second session
    finally:
        driver.shutdown()


def test_stuck_session_is_reported_refused_then_replaced_by_restart(server, kernel_env):
    """What a 26.09 manager does after an HTML display, played by a proxy: a 500 in the middle of a
    run, then no answer at all.  The cell says the session is stuck, the next cell is refused at once
    (not sent into the void), and a restart replaces the session with a fresh one."""
    proxy = FaultProxy(server.endpoint).start()
    driver = KernelDriver({**kernel_env, "BACKEND_ENDPOINT": proxy.endpoint},
                          extra_arguments=["--BackendKernel.transport=poll"])
    try:
        assert driver.execute("state = 1\nprint('ready')").stream() == "ready\n"
        proxy.inject(1, status=500, match="POST /session/", skip=1)  # the run's first continue fails
        proxy.inject(100, delay=60, match="POST /session/", skip=1)  # then executes get no answer
        failed = driver.execute("import time\nprint('a', flush=True)\ntime.sleep(1)\nprint('b')", timeout=60)
        assert failed.status == "error" and failed.reply["content"]["ename"] == "ServerError"
        assert "has not answered for 10 s since this error: it is stuck" in failed.stream("stderr")
        assert "To replace it with a fresh session, restart the kernel." in failed.stream("stderr")

        started = time.monotonic()
        refused = driver.execute("print('never sent')", timeout=30)
        assert refused.status == "error" and refused.reply["content"]["ename"] == "SessionUnresponsive"
        assert "still does not answer, so this cell was not sent" in refused.reply["content"]["evalue"]
        assert time.monotonic() - started < 10
        assert not any(body and body.get("code") == "print('never sent')" for _, _, body in proxy.seen)

        proxy.faults.clear()
        driver.shutdown(restart=True)
        fresh = driver.execute("print('state' in dir())")
        assert fresh.status == "ok" and fresh.stream() == "False\n"
    finally:
        driver.shutdown()
        proxy.stop()


def test_shutdown_destroys_the_session(server, kernel_env):
    api = server.client()
    assert api.create("bystander-shutdown").status == 201  # another session of the same key
    before = set(sessions_of(server))
    driver = KernelDriver(kernel_env)
    driver.execute("1")
    (mine,) = set(sessions_of(server)) - before  # this kernel's session, by name
    driver.shutdown()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and mine in sessions_of(server):
        time.sleep(0.2)
    assert mine not in sessions_of(server), "the kernel's session survived its shutdown"
    assert "bystander-shutdown" in sessions_of(server)  # only its own
    api.request("DELETE", "/session/bystander-shutdown")


def test_attached_session_survives_shutdown(server, kernel_env):
    api = server.client()
    assert api.create("shared-named-session").status == 201
    api.run("shared-named-session", "shared_value = 'from before'")
    driver = KernelDriver({**kernel_env, "BACKEND_SESSION_NAME": "shared-named-session"})
    try:
        assert driver.execute("print(shared_value)").stream() == "from before\n"
    finally:
        driver.shutdown()
    assert api.request("GET", "/session/shared-named-session").status == 200
    api.destroy("shared-named-session")


def test_sigterm_of_the_kernel_destroys_its_session(server, kernel_env):
    api = server.client()
    assert api.create("bystander-sigterm").status == 201
    before = set(sessions_of(server))
    driver = KernelDriver(kernel_env)
    driver.execute("1")
    (mine,) = set(sessions_of(server)) - before  # this kernel's session, by name
    os.kill(driver.km.provisioner.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and mine in sessions_of(server):
        time.sleep(0.2)
    assert mine not in sessions_of(server)
    assert "bystander-sigterm" in sessions_of(server)
    api.request("DELETE", "/session/bystander-sigterm")
    driver.kc.stop_channels()
    driver.km.cleanup_resources()


def test_unreachable_server_explains_and_next_cell_retries(server, kernel_env):
    """Nothing listens at the endpoint: the cell says so; then a server appears there (a proxy to the
    test server on that port) and the next cell runs, so the failure was not remembered."""
    from tests.fault_proxy import FaultProxy

    port = free_port()
    driver = KernelDriver({**kernel_env, "BACKEND_ENDPOINT": f"http://127.0.0.1:{port}"})
    proxy = None
    try:
        result = driver.execute("print(1)")
        assert result.status == "error"
        assert result.reply["content"]["ename"] == "ServerUnreachable"
        assert "BACKEND_ENDPOINT" in result.reply["content"]["evalue"]
        assert server.secret_key not in json.dumps(result.reply["content"])
        proxy = FaultProxy(server.endpoint, port=port).start()
        again = driver.execute("print('reached')", timeout=120)
        assert again.status == "ok" and again.stream() == "reached\n"
        assert any(path.startswith("/session") for _, path, _ in proxy.seen)
    finally:
        driver.shutdown()
        if proxy is not None:
            proxy.stop()


def test_invalid_configuration_is_one_line(server, kernel_env):
    driver = KernelDriver({**kernel_env, "BACKEND_VFOLDER_MOUNTS": "bad name"})
    try:
        result = driver.execute("print(1)")
        assert result.status == "error" and result.reply["content"]["ename"] == "ConfigError"
        assert result.reply["content"]["evalue"].startswith("BACKEND_VFOLDER_MOUNTS:")
    finally:
        driver.shutdown()


def test_ansi_and_non_ascii_text_intact(kernel):
    text = "héllo wörld — 日本語 ✓ \x1b[1;31mred\x1b[0m"
    result = kernel.execute(f"print({text!r})")
    assert result.stream() == text + "\n"


def test_session_environ_from_traitlets(server, kernel_env, tmp_path):
    """A kernelspec installed with an environment (as `backend-jupyter install --env` does) is
    launched as Jupyter launches it, and its session sees the variable."""
    from jupyter_client.kernelspec import KernelSpecManager

    from backend_jupyter.kernelspecs import install

    where = install("flagged", image="python", prefix=str(tmp_path / "prefix"), environ={"MY_FLAG": "from-kernelspec"})
    specs = KernelSpecManager(kernel_dirs=[str(Path(where).parent)])
    assert "--BackendKernel.environ=MY_FLAG=from-kernelspec" in specs.get_kernel_spec("backend-flagged").argv
    driver = KernelDriver(kernel_env, kernel_name="backend-flagged", kernel_spec_manager=specs)
    try:
        assert driver.execute("import os\nprint(os.environ['MY_FLAG'])").stream() == "from-kernelspec\n"
    finally:
        driver.shutdown()


def test_embedded_server_is_the_default_and_shared(tmp_path, kernel_env):
    """No BACKEND_* at all: two kernels started together share one embedded server, started on demand."""
    env = {k: v for k, v in kernel_env.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "jupyter-data")
    drivers = [KernelDriver(env), KernelDriver(env)]
    try:
        results = [None, None]

        def first_cell(i):
            results[i] = drivers[i].execute("print('on the embedded server')")

        threads = [threading.Thread(target=first_cell, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for result in results:
            assert result.status == "ok" and result.stream() == "on the embedded server\n"
            assert "Using the embedded Backend.AI server at http://127.0.0.1:" in result.stream("stderr")
        second = drivers[0].execute("print(2)")
        assert not second.of("display_data") and not second.stream("stderr")  # said once, in the first cell
        state = json.loads((tmp_path / "jupyter-data" / "backend_jupyter" / "server.json").read_text())
        servers = [p for p in __import__("psutil").process_iter(["cmdline"])
                   if p.info["cmdline"] and "server" in p.info["cmdline"] and str(tmp_path) in " ".join(p.info["cmdline"])]
        assert [p.pid for p in servers] == [state["pid"]]
    finally:
        for d in drivers:
            d.shutdown()
        state_file = tmp_path / "jupyter-data" / "backend_jupyter" / "server.json"
        if state_file.exists():
            os.kill(json.loads(state_file.read_text())["pid"], signal.SIGTERM)
