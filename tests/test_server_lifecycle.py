"""The server process: start-up files, logging hygiene, idle reaping, clean shutdown, websocket."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from datetime import datetime, timezone

import aiohttp
import psutil
import pytest

from backend_jupyter import signing
from tests.conftest import start_server


def test_keypair_file_is_private_and_env_prints_exports(server):
    mode = stat.S_IMODE(os.stat(server.data_dir / "keypairs.json").st_mode)
    assert mode == 0o600
    out = subprocess.run([sys.executable, "-m", "backend_jupyter", "env", "--data-dir", str(server.data_dir)],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        f"export BACKEND_ENDPOINT={server.endpoint}",
        f"export BACKEND_ACCESS_KEY={server.access_key}",
        f"export BACKEND_SECRET_KEY={server.secret_key}",
    ]


def test_new_keypair_works_immediately(server):
    ak, sk = server.new_keypair()
    other = server.client()
    other.access_key, other.secret_key = ak, sk
    assert other.request("GET", "/auth").status == 200
    assert ak != server.access_key


def test_env_without_server_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "backend_jupyter", "env", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "no embedded server is running" in proc.stderr


def test_log_has_one_line_per_request_and_no_secret(server, api):
    before = server.log_text().splitlines()
    api.request("GET", "/auth", params={"echo": "log-probe"})
    api.request("GET", "/auth", secret_key="Q" * 40)
    api.request("GET", "/folders/_/hosts")
    text = server.log_text()
    assert server.secret_key not in text
    assert "Q" * 40 not in text
    added = text.splitlines()[len(before):]
    # exactly one line per request, in order: method, path (no query string), status, time
    assert [line.split()[3:6] for line in added] == [["GET", "/auth", "200"], ["GET", "/auth", "401"],
                                                     ["GET", "/folders/_/hosts", "200"]], added
    assert all(line.rstrip().endswith("ms") for line in added)
    assert "log-probe" not in text  # query strings are not logged


def test_idle_sessions_are_reaped(tmp_path):
    srv = start_server(tmp_path / "srv", "--idle-timeout", "1")
    try:
        api = srv.client()
        assert api.create("idle-one").status == 201
        deadline = time.monotonic() + 20
        while api.request("GET", "/session/idle-one").status == 200:
            assert time.monotonic() < deadline, "idle session was not reaped"
            time.sleep(1.8)  # looking at a session counts as use: poll less often than the timeout
        assert "reaped idle session idle-one" in srv.log_text()
    finally:
        srv.stop()


def test_sigterm_stops_every_kernel(tmp_path):
    srv = start_server(tmp_path / "srv")
    api = srv.client()
    for i in range(2):
        assert api.create(f"shutdown-{i}").status == 201
    kids = srv.kernel_processes()
    assert len(kids) >= 2
    started = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - started < 20
    gone, alive = psutil.wait_procs(kids, timeout=5)
    assert not alive, alive
    assert not (srv.data_dir / "server.json").exists()
    assert "Shutting down" in srv.log_text()


def test_non_loopback_bind_warns(tmp_path):
    srv = start_server(tmp_path / "srv", "--host", "0.0.0.0")
    try:
        assert "reachable from other machines" in srv.log_text()
    finally:
        srv.stop()


def ws_headers(api, path):
    return signing.sign_request(
        method="GET", rel_url=path, date=datetime.now(timezone.utc), host=api.netloc,
        content_type="application/octet-stream", api_version=api.version,
        access_key=api.access_key, secret_key=api.secret_key,
    )


@pytest.mark.parametrize("family, version", [("session", "v7.20230615"), ("kernel", "v4.20190615")])
def test_websocket_stream_execute(api, session_name, family, version):
    assert api.create(session_name).status == 201
    api.version = version
    path = f"/stream/{family}/{session_name}/execute"

    async def go():
        frames = []
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(api.endpoint + path, headers=ws_headers(api, path)) as ws:
                await ws.send_str(json.dumps({"code": "import time\nprint('a', flush=True)\ntime.sleep(0.5)\n"
                                                      "x = input('q? ')\nprint('got', x)", "mode": "query", "options": {}}))
                async for msg in ws:
                    data = json.loads(msg.data)
                    frames.append((time.monotonic(), data))
                    if data["status"] == "waiting-input":
                        await ws.send_str("yes")
                    if data["status"] == "finished":
                        break
        return frames

    try:
        frames = asyncio.run(asyncio.wait_for(go(), 30))
    finally:
        api.version = "v7.20230615"
        api.destroy(session_name)
    statuses = [f["status"] for _, f in frames]
    assert statuses[-1] == "finished" and "waiting-input" in statuses
    assert all("runId" not in f for _, f in frames)
    out = "".join(d for _, f in frames for k, d in f["console"] if k == "stdout")
    assert out == "a\nq? got yes\n"
    # 'a' arrived in its own frame before the sleep ended
    assert frames[0][1]["console"] == [["stdout", "a\n"]]


def test_websocket_rejects_bad_first_message(api, session_name):
    assert api.create(session_name).status == 201
    path = f"/stream/session/{session_name}/execute"

    async def go():
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(api.endpoint + path, headers=ws_headers(api, path)) as ws:
                await ws.send_str('{"mode": "nonsense"}')
                return json.loads((await ws.receive()).data)

    try:
        reply = asyncio.run(asyncio.wait_for(go(), 30))
    finally:
        api.destroy(session_name)
    assert reply["status"] == "error" and "Invalid API parameters" in reply["msg"]
