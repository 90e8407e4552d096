"""The IPython magics in a real local ipykernel (python3), driven by jupyter_client, against the
embedded server."""

from __future__ import annotations

import secrets
import threading
import time

import pytest

from tests.kernel_driver import KernelDriver


@pytest.fixture(scope="module")
def vfolder(server):
    api = server.client()
    name = f"mounted-{secrets.token_hex(3)}"
    assert api.request("POST", "/folders", json={"name": name}).status == 201
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"src\"; filename=\"hello.txt\"\r\n\r\n"
            f"from the vfolder\r\n--{boundary}--\r\n").encode()
    assert api.request("POST", f"/folders/{name}/upload", body=body,
                       content_type=f"multipart/form-data; boundary={boundary}").status == 201
    yield name
    api.request("DELETE", f"/folders/{name}")


@pytest.fixture(scope="module")
def ipy(server, vfolder):
    driver = KernelDriver({**server.env(), "BACKEND_VFOLDER_MOUNTS": f"{vfolder}:data"}, kernel_name="python3")
    assert driver.execute("%load_ext backend_jupyter").status == "ok"
    yield driver
    driver.shutdown()


def test_streaming_order_and_rich_output(ipy):
    result = ipy.execute(
        "%%backend_run\nimport sys, time\nprint('one', flush=True)\ntime.sleep(1)\n"
        "print('two', file=sys.stderr)\nsys.stderr.flush()\n"
        "from IPython.display import HTML, display\ndisplay(HTML('<b>rich</b>'))\nprint('three')"
    )
    assert result.status == "ok", result.reply
    kinds = [(m["msg_type"], m["content"].get("name")) for m in result.messages
             if m["msg_type"] in ("stream", "display_data")
             and "Backend.AI" not in str(m["content"].get("text", ""))
             and "application/vnd.jupyter.widget-view+json" not in m["content"].get("data", {})]
    texts = [m["content"].get("text") for m in result.messages if m["msg_type"] == "stream"]
    assert "one\n" in texts and "three\n" in texts
    assert kinds.index(("stream", "stdout")) < kinds.index(("stream", "stderr")) < kinds.index(("display_data", None))
    html = [m["content"]["data"]["text/html"] for m in result.messages if m["msg_type"] == "display_data"
            and "text/html" in m["content"]["data"]]
    assert html == ["<b>rich</b>"]
    one = next(t for m, t in zip(result.messages, result.arrivals, strict=True) if m["content"].get("text") == "one\n")
    three = next(t for m, t in zip(result.messages, result.arrivals, strict=True) if m["content"].get("text") == "three\n")
    assert three - one > 0.5  # 'one' arrived live, before the sleep ended


def test_line_magic(ipy):
    assert ipy.execute("%backend_run print(6 * 7)").stream() == "42\n"


def test_input_and_password(ipy):
    result = ipy.execute("%%backend_run\nimport getpass\nu = input('user: ')\np = getpass.getpass('pw: ')\nprint(u, p[::-1])",
                         inputs=["ann", "terces"])
    assert result.status == "ok"
    assert [(r["prompt"], r["password"]) for r in result.input_requests] == [("user: ", False), ("pw: ", True)]
    assert result.stream() == "ann secret\n"


def test_failing_cell_raises_locally_with_the_remote_traceback(ipy):
    result = ipy.execute("%%backend_run\ndef g():\n    raise KeyError('missing-key')\ng()")
    assert result.status == "error"
    assert result.reply["content"]["ename"] == "RemoteError"
    tb = "\n".join(result.reply["content"]["traceback"])
    assert "KeyError" in tb and "missing-key" in tb
    assert "magics.py" not in tb  # the local machinery is not shown
    assert "KeyError" not in result.stream("stderr")  # once, not twice


def test_interrupt(ipy):
    threading.Timer(1.5, ipy.interrupt).start()
    started = time.monotonic()
    result = ipy.execute("%%backend_run\nimport time\nprint('start', flush=True)\ntime.sleep(60)")
    assert result.status == "error" and result.reply["content"]["ename"] == "KeyboardInterrupt"
    assert time.monotonic() - started < 30  # interrupted (about 2 s), not the 60 s sleep
    assert ipy.execute("%backend_run print('after')").stream() == "after\n"


def test_vfolder_from_env_is_mounted(ipy):
    assert ipy.execute("%backend_run print(open('data/hello.txt').read())").stream() == "from the vfolder\n"


def test_batch_with_upload(ipy, tmp_path):
    ipy.execute(f"import os\nos.chdir({str(tmp_path)!r})\nos.makedirs('proj', exist_ok=True)\n"
                "open('proj/app.py', 'w').write('print(\"app says\", 7 * 6)')\n")
    result = ipy.execute("%backend_run --batch -u proj --build 'echo building' --exec 'python proj/app.py'")
    assert result.status == "ok", result.reply
    assert "building\n" in result.stream() and "app says 42\n" in result.stream()
    failed = ipy.execute("%%backend_run --batch\nexit 3")  # the cell body is the exec command
    assert failed.status == "error" and "exit code 3" in failed.stream("stderr") + str(failed.reply["content"])


def test_variables_round_trip(ipy):
    setup = ipy.execute(
        "import numpy as np, pandas as pd\n"
        "j = {'a': [1, 2.5, None], 's': 'text', 'nested': {'t': True}}\n"
        "b = bytes(range(256))\n"
        "arr = np.arange(12, dtype='float32').reshape(3, 4)\n"
        "df = pd.DataFrame({'x': [1, 2, 3], 'y': ['a', 'b', 'c']})\n"
    )
    assert setup.status == "ok"
    result = ipy.execute(
        "%%backend_run -i j -i b -i arr -i df -o j2 -o b2 -o arr2 -o df2\n"
        "j2 = dict(j, added=1)\nb2 = b[::-1]\narr2 = arr * 2\ndf2 = df.assign(z=df.x * 10)\n"
    )
    assert result.status == "ok", result.reply
    notes = result.stream("stderr")
    assert "-i j: json" in notes and "-i arr: npy" in notes and "-o df2: pandas" in notes
    check = ipy.execute(
        "assert j2 == dict(j, added=1)\nassert b2 == b[::-1]\n"
        "assert isinstance(arr2, np.ndarray) and arr2.dtype == np.float32 and (arr2 == arr * 2).all()\n"
        "assert list(df2.columns) == ['x', 'y', 'z'] and list(df2.z) == [10, 20, 30]\nprint('all equal')"
    )
    assert check.stream() == "all equal\n", check.reply


def test_unsafe_values_need_allow_pickle(ipy):
    ipy.execute("class Thing:\n    pass\nthing = Thing()")
    refused = ipy.execute("%%backend_run -i thing\npass")
    assert refused.status == "error" and "--allow-pickle" in str(refused.reply["content"])
    out = ipy.execute("%%backend_run -o remote_set\nremote_set = {1, 2}")
    assert "cannot be moved safely" in out.stream("stderr")
    allowed = ipy.execute("%%backend_run -o remote_set --allow-pickle\nremote_set = {1, 2}")
    assert allowed.status == "ok"
    assert ipy.execute("print(sorted(remote_set))").stream() == "[1, 2]\n"


def test_sessions_list_attach_use_destroy(ipy, server):
    api = server.client()
    assert api.create("magic-attach-target").status == 201
    api.run("magic-attach-target", "marker = 'attached ok'")
    assert ipy.execute("%backend_session attach magic-attach-target").status == "ok"
    assert ipy.execute("%backend_run print(marker)").stream() == "attached ok\n"
    listing = ipy.execute("%backend_session list").stream()
    assert "* magic-attach-target" in listing
    new = ipy.execute("%backend_session new magic-second --keep")
    assert new.status == "ok"
    assert ipy.execute("%backend_run print('in second')").stream() == "in second\n"
    assert ipy.execute("%backend_session destroy magic-second").status == "ok"
    assert api.request("GET", "/session/magic-second").status == 404
    info = ipy.execute("%backend_session info magic-attach-target").stream()
    assert "magic-attach-target" in info and "RUNNING" in info
    api.destroy("magic-attach-target")


def test_files_and_vfolder_magics(ipy, tmp_path):
    ipy.execute(f"import os\nos.chdir({str(tmp_path)!r})\nopen('local.txt', 'w').write('local data')")
    assert ipy.execute("%backend_upload local.txt").status == "ok"
    assert ipy.execute("%backend_run print(open('local.txt').read())").stream() == "local data\n"
    ipy.execute("%backend_run _ = open('made.txt', 'w').write('remote data')")
    assert ipy.execute("%backend_download made.txt --dest got").status == "ok"
    assert ipy.execute("print(open('got/made.txt').read())").stream() == "remote data\n"
    name = f"mvf-{secrets.token_hex(3)}"
    assert ipy.execute(f"%backend_vfolder create {name}").status == "ok"
    assert ipy.execute(f"%backend_vfolder upload {name} local.txt").status == "ok"
    assert "local.txt" in ipy.execute(f"%backend_vfolder ls {name}").stream()
    assert ipy.execute(f"%backend_vfolder download {name} local.txt --dest back").status == "ok"
    assert ipy.execute("print(open('back/local.txt').read())").stream() == "local data\n"
    assert name in ipy.execute("%backend_vfolder list").stream()
    assert ipy.execute(f"%backend_vfolder delete {name}").status == "ok"
    missing = ipy.execute("%backend_download no-such.txt --dest nothing")  # the kernel's commands' code
    assert missing.status == "error" and "no-such.txt" in missing.reply["content"]["evalue"]
    assert ipy.execute("print(os.path.exists('nothing'))").stream() == "False\n"
    outside = ipy.execute("%backend_download made.txt --dest ../x")
    assert outside.status == "error" and "is outside" in outside.reply["content"]["evalue"]


def test_session_info_and_new_replacing_the_current_session(ipy):
    ipy.execute("%backend_run before = 1")
    info = dict(line.split(None, 1) for line in ipy.execute("%backend_session info").stream().splitlines())
    assert info["name"].startswith("ipython-") and info["usage"].startswith("CPU ")
    replaced = ipy.execute("%backend_session new -e STAGE=two")
    assert replaced.status == "ok" and "its variables are lost" in replaced.stream("stderr")
    assert ipy.execute("%backend_run import os; print(os.environ['STAGE'], 'before' in dir())").stream() == \
        "two False\n"
    assert "-e STAGE=…" in ipy.execute("%backend_config").stream()


def test_config_masks_the_secret(ipy, server):
    out = ipy.execute("%backend_config").stream()
    assert server.secret_key not in out
    assert "BACKEND_ENDPOINT" in out and "negotiated API version" in out


def test_missing_mount_is_an_error_before_code_runs(ipy):
    result = ipy.execute("%%backend_run -s other-session-x -m no-such-folder\nprint('must not run')")
    assert result.status == "error"
    assert "no-such-folder" in str(result.reply["content"]) + result.stream("stderr")
    assert "must not run" not in result.stream()


def test_wrong_keys_and_unreachable_endpoint(server):
    for env, expected in (({"BACKEND_SECRET_KEY": "w" * 40}, "BACKEND_ACCESS_KEY"),
                          ({"BACKEND_ENDPOINT": "http://127.0.0.1:9"}, "BACKEND_ENDPOINT")):
        driver = KernelDriver({**server.env(), **env}, kernel_name="python3")
        try:
            driver.execute("%load_ext backend_jupyter")
            result = driver.execute("%backend_run print(1)")
            assert result.status == "error"
            text = str(result.reply["content"]) + result.stream("stderr")
            assert expected in text and "w" * 40 not in text
        finally:
            driver.shutdown()


def session_names(server) -> set[str]:
    return {m["name"] for m in server.client().request("GET", "/session/_/match", params={"id": ""}).json()["matches"]}


def test_no_leaked_sessions_after_the_kernel_exits(server):
    before = session_names(server)
    driver = KernelDriver(server.env(), kernel_name="python3")
    driver.execute("%load_ext backend_jupyter")
    driver.execute("%backend_run x = 1")
    driver.execute("%backend_session new kept-after-exit --keep")
    ours = session_names(server) - before - {"kept-after-exit"}
    assert len(ours) == 1
    driver.shutdown()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and ours & session_names(server):
        time.sleep(0.3)
    names = session_names(server)
    assert not ours & names, "sessions created by the magics outlived the kernel"
    assert "kept-after-exit" in names
    server.client().destroy("kept-after-exit")
