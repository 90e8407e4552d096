"""The embedded server's compute-session API, driven over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import threading
import time

import pytest

from tests.signed_http import merged


@pytest.fixture
def session(api, session_name):
    resp = api.create(session_name)
    assert resp.status == 201, resp.body
    yield session_name
    api.destroy(session_name)


def test_hello_is_unauthenticated_and_names_the_version(api):
    resp = api.request("GET", "/", sign=False)
    assert resp.status == 200
    body = resp.json()
    assert body["version"] == "v7.20230615"
    assert "manager" in body


def test_auth_test_route_echoes(api):
    resp = api.request("GET", "/auth", params={"echo": "hi"})
    assert resp.status == 200
    assert resp.json() == {"authorized": "yes", "echo": "hi"}


def test_create_is_get_or_create(api, session_name):
    first = api.create(session_name)
    assert first.status == 201
    body = first.json()
    assert body["created"] is True and body["status"] == "RUNNING"
    assert body["sessionName"] == session_name and body["servicePorts"] == []
    again = api.create(session_name)
    assert again.status == 200
    assert again.json()["sessionId"] == body["sessionId"] and again.json()["created"] is False
    refused = api.create(session_name, reuseIfExists=False)
    assert refused.status == 400
    assert refused.problem["type"].endswith("/session-already-exists")
    assert refused.problem["data"]["existingSessionId"] == body["sessionId"]
    info = api.request("GET", f"/session/{body['sessionId']}")  # by id, too
    assert info.status == 200 and info.json()["sessionName"] == session_name
    assert api.destroy(session_name).json() == {"stats": {"status": "terminated"}}
    assert api.request("GET", f"/session/{session_name}").status == 404


def test_v4_kernel_family_uses_kernel_paths_and_field_names(api, session_name):
    resp = api.request("POST", "/kernel/create", version="v4.20190615",
                       json={"lang": "python:3.6", "clientSessionToken": session_name})
    assert resp.status == 201
    assert resp.json()["kernelId"] == session_name
    out = api.request("POST", f"/kernel/{session_name}", version="v4.20190615",
                      json={"mode": "query", "code": "print(6*7)", "runId": None})
    assert out.status == 200
    result = out.json()["result"]
    while result["status"] == "continued":
        result = api.request("POST", f"/kernel/{session_name}", version="v4.20190615",
                             json={"mode": "continue", "code": "", "runId": result["runId"]}).json()["result"]
    assert result["status"] == "finished"
    assert api.request("DELETE", f"/kernel/{session_name}", version="v4.20190615").status == 200


def test_legacy_v2_prefix_with_body_hash_signing(api, session_name):
    body = {"lang": "python:3.6", "clientSessionToken": session_name, "config": {}}
    resp = api.request("POST", "/v2/kernel/create", version="v2.20170315", json=body)
    assert resp.status == 201, resp.body
    # The v2 era hashes the body: a signature over a different body must fail.
    tampered = api.request(
        "POST", "/v2/kernel/create", version="v2.20170315", content_type="application/json",
        body=json.dumps({**body, "lang": "other"}).encode(), sign_body=json.dumps(body).encode(),
    )
    assert tampered.status == 401
    assert tampered.problem["type"].endswith("/auth-failed")
    assert api.request("DELETE", f"/v2/kernel/{session_name}", version="v2.20170315").status == 200


def test_query_console_records_in_order(api, session):
    console, results = api.run(session, (
        "import sys\n"
        "print('out1')\n"
        "sys.stdout.flush()\n"
        "print('err1', file=sys.stderr)\n"
        "sys.stderr.flush()\n"
        "print('out2')\n"
        "1 + 1\n"
    ))
    assert results[-1]["exitCode"] == 0
    assert merged(console) == [["stdout", "out1\n"], ["stderr", "err1\n"], ["stdout", "out2\n2"]]
    assert {r["runId"] for r in results} == {results[0]["runId"]}
    assert all(r["files"] == [] for r in results)


def test_media_records(api, session):
    code = (
        "from IPython.display import display, HTML, SVG, Image, JSON\n"
        "import base64\n"
        "png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
        "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')\n"
        "display(Image(data=png, format='png'))\n"
        "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\"/>'))\n"
        "display(HTML('<b>bold</b>'))\n"
        "display({'application/x-sorna-drawing': '{\"a\": 1}', 'text/plain': 'drawing'}, raw=True)\n"
        "display(JSON({'k': 1}))\n"
    )
    console, results = api.run(session, code)
    assert results[-1]["status"] == "finished" and results[-1]["exitCode"] == 0
    kinds = [c[0] for c in console]
    assert kinds == ["media", "media", "html", "media", "media"]
    mime, uri = console[0][1]
    assert mime == "image/png" and uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1])[:4] == b"\x89PNG"
    assert console[1][1][0] == "image/svg+xml" and console[1][1][1].startswith("<svg")
    assert console[2][1] == "<b>bold</b>"
    assert console[3][1] == ["application/x-sorna-drawing", '{"a": 1}']
    assert console[4][1][0] == "application/json" and json.loads(console[4][1][1]) == {"k": 1}


def test_error_goes_to_stderr_with_nonzero_exit(api, session):
    console, results = api.run(session, "print('before')\n1/0\n")
    assert results[-1]["status"] == "finished"
    assert results[-1]["exitCode"] == 1
    out = merged(console)
    assert out[0] == ["stdout", "before\n"]
    assert out[-1][0] == "stderr" and "ZeroDivisionError" in out[-1][1]
    # the session is still usable
    console, results = api.run(session, "print('after')")
    assert merged(console) == [["stdout", "after\n"]] and results[-1]["exitCode"] == 0


def test_input_and_password(api, session):
    code = "import getpass\nname = input('name? ')\npw = getpass.getpass('pw? ')\nprint(name, len(pw))"
    first = api.execute(session, "query", code)
    while first["status"] == "continued":
        first = api.execute(session, "continue", "", first["runId"])
    assert first["status"] == "waiting-input"
    assert first["options"] == {"is_password": False}
    assert merged(first["console"])[-1] == ["stdout", "name? "]
    second = api.execute(session, "input", "alice", first["runId"])
    while second["status"] == "continued":
        second = api.execute(session, "continue", "", first["runId"])
    assert second["status"] == "waiting-input" and second["options"] == {"is_password": True}
    assert merged(second["console"])[-1] == ["stdout", "pw? "]
    third = api.execute(session, "input", "secret", first["runId"])
    console = list(third["console"])
    while third["status"] != "finished":
        third = api.execute(session, "continue", "", first["runId"])
        console += third["console"]
    assert merged(console) == [["stdout", "alice 6\n"]]


def test_output_is_returned_as_it_arrives(api, session):
    first = api.execute(session, "query", "import time\nprint('a', flush=True)\ntime.sleep(3)\nprint('b')")
    # 'a' alone, and the run going on: not held back until the run ends
    assert first["status"] == "continued"
    assert merged(first["console"]) == [["stdout", "a\n"]]
    console, status = list(first["console"]), first["status"]
    while status != "finished":
        result = api.execute(session, "continue", "", first["runId"])
        console += result["console"]
        status = result["status"]
    assert merged(console) == [["stdout", "a\nb\n"]]


def test_big_output_split_across_calls_without_loss(api, session):
    # ~6 MB in 200k lines plus one 3 MB line: several calls, every byte in order.
    code = (
        "import sys\n"
        "for i in range(200000): print(f'line {i:08d} ' + 'x' * 10)\n"
        "_ = sys.stdout.write('Y' * 3_000_000 + '\\n')\n"
    )
    console, results = api.run(session, code)
    text = "".join(d for k, d in console if k == "stdout")
    lines = text.split("\n")
    assert len(lines) == 200002 and lines[-1] == ""
    assert lines[-2] == "Y" * 3_000_000
    for i in (0, 1, 99999, 199999):
        assert lines[i] == f"line {i:08d} " + "x" * 10
    assert all(lines[i] < lines[i + 1] for i in range(0, 199998, 997))
    assert len(results) >= 3  # split across calls
    assert all(sum(len(d) for k, d in r["console"] if isinstance(d, str)) <= 524_288 for r in results)


def test_batch_mode_with_uploaded_files(api, session):
    files = [("main.py", b"import helper\nprint('result', helper.VALUE)\n"),
             ("pkg/helper.py", b"VALUE = 42\n")]
    boundary = "XbOuNdArY"
    parts = []
    for name, data in files:
        parts.append(
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"src\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    resp = api.request("POST", f"/session/{session}/upload", body=body,
                       content_type=f"multipart/form-data; boundary={boundary}")
    assert resp.status == 204, resp.body
    options = {"clean": "rm -rf build", "build": "mkdir -p build && cp pkg/helper.py helper.py && echo built",
               "exec": "python main.py"}
    console, results = api.run(session, "", mode="batch", options=options)
    statuses = [r["status"] for r in results]
    assert "clean-finished" in statuses and "build-finished" in statuses
    assert statuses[-1] == "finished" and results[-1]["exitCode"] == 0
    assert statuses.index("clean-finished") < statuses.index("build-finished")
    out = "".join(d for k, d in console if k == "stdout")
    assert out == "built\nresult 42\n"
    # a failing build skips exec with exit code 127
    console, results = api.run(session, "", mode="batch", options={"build": "exit 3", "exec": "echo never"})
    assert [r["status"] for r in results][-2:] == ["build-finished", "finished"]
    assert results[-2]["exitCode"] == 3 and results[-1]["exitCode"] == 127
    assert "never" not in "".join(d for k, d in console if isinstance(d, str))


def test_interrupt_mid_run_and_continue(api, session):
    first = api.execute(session, "query", "import time\nprint('start', flush=True)\ntime.sleep(30)\nprint('not reached')")
    threading.Timer(0.5, lambda: api.request("POST", f"/session/{session}/interrupt")).start()
    console, status, started = list(first["console"]), first["status"], time.monotonic()
    while status != "finished":
        result = api.execute(session, "continue", "", first["runId"])
        console += result["console"]
        status = result["status"]
        assert time.monotonic() - started < 20  # interrupted (about 1 s), not the 30 s sleep
    text = merged(console)
    assert text[0] == ["stdout", "start\n"]
    assert "KeyboardInterrupt" in text[-1][1] and result["exitCode"] == 1
    console, results = api.run(session, "print('next')")
    assert merged(console) == [["stdout", "next\n"]]


def test_interrupt_while_waiting_for_input(api, session):
    first = api.execute(session, "query", "x = input('? ')")
    assert first["status"] == "waiting-input"
    assert api.request("POST", f"/session/{session}/interrupt").status == 204
    result = api.execute(session, "continue", "", first["runId"])
    console = list(result["console"])
    while result["status"] != "finished":
        result = api.execute(session, "continue", "", first["runId"])
        console += result["console"]
    assert "KeyboardInterrupt" in "".join(d for k, d in console if k == "stderr")


def test_restart_resets_state_and_keeps_files(api, session):
    api.run(session, "x = 5\nopen('kept.txt', 'w').write('still here')")
    assert api.request("PATCH", f"/session/{session}").status == 204
    console, results = api.run(session, "print(open('kept.txt').read())\nprint('x' in dir())")
    assert merged(console) == [["stdout", "still here\nFalse\n"]]


def test_complete_returns_kernel_completions(api, session):
    api.run(session, "my_variable_for_completion = 1")
    resp = api.request("POST", f"/session/{session}/complete",
                       json={"code": "my_variable_for_comp", "options": {"row": 0, "col": 20, "line": "", "post": ""}})
    assert resp.status == 200
    assert "my_variable_for_completion" in resp.json()["result"]["completions"]


def test_files_list_download_and_logs(api, session):
    api.run(session, "import os\nos.makedirs('d/e', exist_ok=True)\nopen('d/e/f.bin','wb').write(bytes(range(256))*4)")
    listing = api.request("GET", f"/session/{session}/files", json={"path": "d/e"})
    assert listing.status == 200
    entries = json.loads(listing.json()["files"])
    assert [(e["filename"], e["size"]) for e in entries] == [("f.bin", 1024)]
    assert entries[0]["mode"].startswith("-rw")
    assert listing.json()["errors"] == ""
    for method, kwargs in (("GET", {"json": {"files": ["d/e/f.bin"]}}),
                           ("POST", {"params": {"files": ["d/e/f.bin"]}})):
        resp = api.request(method, f"/session/{session}/download", **kwargs)
        assert resp.status == 200, resp.body
        assert resp.headers["content-type"].startswith("multipart/mixed")
        boundary = resp.headers["content-type"].split("boundary=")[1].strip('"')
        part = resp.body.split(f"--{boundary}".encode())[1]
        payload = part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
        with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
            assert tar.getnames() == ["f.bin"]
            assert tar.extractfile("f.bin").read() == bytes(range(256)) * 4
    api.run(session, "import os\nos.write(2, b'a line the kernel wrote to its log\\n')")  # below IPython
    logs = api.request("GET", f"/session/{session}/logs")
    assert logs.status == 200 and "a line the kernel wrote to its log\n" in logs.json()["result"]["logs"]


def test_session_environment_is_clean(api, session_name, server):
    resp = api.create(session_name, config={"environ": {"MY_SETTING": "on"}})
    assert resp.status == 201
    try:
        console, _ = api.run(session_name, "import os, json\nprint(json.dumps(dict(os.environ)))")
        env = json.loads("".join(d for k, d in console if k == "stdout"))
        assert env["MY_SETTING"] == "on"
        assert not [k for k in env if k.startswith(("BACKEND_", "SORNA_"))]
        assert server.secret_key not in json.dumps(env)
        cwd, _ = api.run(session_name, "import os\nprint(os.getcwd() == os.environ['HOME'])")
        assert merged(cwd) == [["stdout", "True\n"]]
    finally:
        api.destroy(session_name)


def test_another_key_may_use_the_same_session_name(api, server, session):
    """Names are per key: another key creating the same name gets a separate session, and ours
    stays.  (That another key can neither see nor touch ours: test_server_attacks.py.)"""
    ak, sk = server.new_keypair()
    other = server.client()
    other.access_key, other.secret_key = ak, sk
    resp = other.create(session)
    assert resp.status == 201
    assert resp.json()["sessionId"] != api.request("GET", f"/session/{session}").json()["sessionId"]
    other.destroy(session)
    assert api.request("GET", f"/session/{session}").status == 200


def test_unknown_image_is_a_clear_404(api, session_name):
    resp = api.create(session_name, image="no-such-language:1.0")
    assert resp.status == 404
    assert resp.problem["title"] == "No such environment image."


def test_exec_timeout_is_terminal(tmp_path):
    from tests.conftest import start_server

    srv = start_server(tmp_path / "srv", "--exec-timeout", "1")
    try:
        api = srv.client()
        assert api.create("timeout-test").status == 201
        console, results = api.run("timeout-test", "import time\ntime.sleep(20)")
        assert results[-1]["status"] == "exec-timeout"
        console, results = api.run("timeout-test", "print('ok')")
        assert merged(console) == [["stdout", "ok\n"]]
    finally:
        assert srv.stop() == 0
