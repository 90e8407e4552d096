"""Conformance against a REAL Backend.AI manager 26.9.6 (see stack.py): the project's client, its
execute loop, the wrapper kernel and the magics, end to end.

The stack's agent is the dummy one with execution handed to Backend.AI's own kernel runner, so what
is checked here is what a user of a real cluster sees, except the parts only Docker provides (service
ports).  Vfolders go through Backend.AI's own storage proxy (a ``vfs`` volume, ``local:volume1``).
Known manager/agent bugs are pinned as observations; known client bugs are ``xfail(strict=True)`` so
that fixing them turns the test red until the marker goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from yarl import URL

from backend_jupyter.client import (
    AlreadyExists,
    APIClient,
    AuthenticationFailed,
    BackendAPIError,
    ComputeSession,
    NotSupported,
    SessionNotFound,
    VFolder,
    VFolderNotFound,
)
from backend_jupyter.config import Config, parse_mounts
from backend_jupyter.display import strip_ansi
from backend_jupyter.execution import (
    PROBE_TIMEOUT,
    REPROBE_TIMEOUT,
    Display,
    Finished,
    InputRequest,
    Output,
    RunBroken,
    RunFailed,
    RunLost,
    probe,
    run_cell,
)
from tests import rich_output as rich
from tests.manager.stack import API_VERSION, VERSION, VOLUME_HOST, StackInfo
from tests.signed_http import SignedClient

# Generous: the first test also waits for the stack (venv build ~1.5 min, bring-up ~2.5 min).
pytestmark = [pytest.mark.manager, pytest.mark.timeout(1200)]

TRANSPORTS = ["poll", "ws"]
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="2" height="2"/>'
HTML_CELL = "from IPython.display import HTML, display\nprint('before', flush=True)\ndisplay(HTML('<b>bold</b>'))\nprint('after')"
CREATE_TIMEOUT = 90
TERMINATE_TIMEOUT = 30


# -- helpers ------------------------------------------------------------------------------------

def arun(coro, timeout: float = 300):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro
    return asyncio.run(bounded())


def unique(prefix: str) -> str:
    return f"bj-{prefix}-{uuid.uuid4().hex[:8]}"


def config(stack: StackInfo, **changes) -> Config:
    return Config(endpoints=(stack.endpoint,), access_key=stack.access_key, secret_key=stack.secret_key).replace(**changes)


async def collect(session: ComputeSession, code: str, transport: str, *, answers=(), timeout: float = 60,
                  on_event=None) -> list:
    """All events of one run (answers fed to input requests); a run still going at ``timeout``
    ends the list with the string "TIMEOUT"."""
    answers = list(answers)
    events: list = []
    try:
        async with asyncio.timeout(timeout):
            async for event in run_cell(session, code, transport=transport):
                events.append(event)
                if isinstance(event, InputRequest):
                    event.answer(answers.pop(0))
                if on_event:
                    await on_event(event)
    except TimeoutError:
        events.append("TIMEOUT")
    return events


def stdout(events) -> str:
    return "".join(e.text for e in events if isinstance(e, Output) and e.stream == "stdout")


def stderr(events) -> str:
    return "".join(e.text for e in events if isinstance(e, Output) and e.stream == "stderr")


def finished(events) -> Finished:
    ends = [e for e in events if isinstance(e, Finished)]
    assert ends, f"the run did not finish: {events!r}"
    return ends[-1]


def live_sessions(stack: StackInfo, name: str) -> list[str]:
    """Statuses of ``name``'s sessions in the manager's database that are not over."""
    rows = stack.psql(f"SELECT status FROM sessions WHERE name = '{name}' AND status NOT IN ('TERMINATED', 'CANCELLED')")
    return [r[0] for r in rows]


def wait_terminated(stack: StackInfo, name: str, timeout: float = TERMINATE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while live_sessions(stack, name):
        assert time.monotonic() < deadline, f"session {name} still {live_sessions(stack, name)} after {timeout}s"
        time.sleep(0.3)
    assert stack.psql(f"SELECT count(*) FROM sessions WHERE name = '{name}'")[0][0] != "0", "never created"


async def new_session(stack: StackInfo, api: APIClient, prefix: str, image: str | None = None) -> ComputeSession:
    return await asyncio.wait_for(
        ComputeSession.get_or_create(api, image or stack.image_alias, name=unique(prefix)), CREATE_TIMEOUT)


@pytest.fixture(scope="module")
def shared(manager_stack):
    """One session for the execute tests (name, id); destroyed at the end of the module."""
    async def create():
        async with APIClient(config(manager_stack)) as api:
            s = await new_session(manager_stack, api, "shared")
            return s.name, s.id
    name, sid = arun(create())
    yield name, sid

    async def destroy():
        async with APIClient(config(manager_stack)) as api:
            await ComputeSession(api, name).destroy()
    arun(destroy())
    wait_terminated(manager_stack, name)


def on_shared(stack: StackInfo, shared, fn):
    """Run ``fn(session)`` (a coroutine function) with a fresh client on the shared session."""
    async def go():
        async with APIClient(config(stack)) as api:
            return await fn(ComputeSession(api, shared[0], id=shared[1]))
    return arun(go())


# -- version negotiation ------------------------------------------------------------------------

def test_negotiates_v9_with_the_real_manager(manager_stack):
    async def go():
        async with APIClient(config(manager_stack)) as api:
            return api.api_version, api.server_info, api.session_prefix
    version, info, prefix = arun(go())
    assert version == API_VERSION == "v9.20250722"
    assert info == {"version": API_VERSION, "manager": VERSION}
    assert prefix == "session"


def test_hello_is_unsigned_and_says_server_backendai(manager_stack):
    r = SignedClient(manager_stack.endpoint, manager_stack.access_key, manager_stack.secret_key).request(
        "GET", "/", sign=False)
    assert r.status == 200 and r.json() == {"version": API_VERSION, "manager": VERSION}
    assert r.headers.get("server") == "BackendAI"


# -- session life cycle -------------------------------------------------------------------------

def test_create_reuse_and_destroy(manager_stack):
    """Create, create again (same name, the image's alias: reused), destroy.  Observed difference:
    after DELETE the session stays TERMINATING for a few seconds (GET still 200, DELETE again 200
    ``{"stats": {}}``), then every call is 404 ``session_read_not-found``.  ``exists()`` says False
    from the DELETE on, and ``wait_gone()`` waits for the 404."""
    async def go():
        async with APIClient(config(manager_stack)) as api:
            name = unique("life")
            started = time.monotonic()
            first = await asyncio.wait_for(
                ComputeSession.get_or_create(api, manager_stack.image, name=name), CREATE_TIMEOUT)
            create_seconds = time.monotonic() - started
            again = await ComputeSession.get_or_create(api, manager_stack.image_alias, name=name)
            info = await first.info()
            destroyed = await first.destroy()
            right_after = (await first.info())["status"]
            exists_after = await first.exists()
            second = await first.destroy()
            assert await first.wait_gone(TERMINATE_TIMEOUT)
            with pytest.raises(SessionNotFound) as gone:
                await first.info()
            with pytest.raises(SessionNotFound):
                await first.destroy()
            return (name, first, again, info, destroyed, create_seconds, right_after, exists_after, second,
                    gone.value)
    name, first, again, info, destroyed, create_seconds, right_after, exists_after, second, gone = arun(go())
    assert first.created and first.status == "RUNNING" and uuid.UUID(first.id)
    assert create_seconds < CREATE_TIMEOUT
    # Same name, the alias of the same image: the running session is reused.
    assert not again.created and again.id == first.id
    assert info["image"] == manager_stack.image and info["status"] == "RUNNING"
    assert info["groupId"] == "2de2b969-1d04-48a6-af16-0bc8adb3c831"
    assert destroyed == {"stats": {"status": "terminated"}}
    assert right_after in ("TERMINATING", "TERMINATED") and exists_after is False
    assert second in ({"stats": {}}, {"stats": {"status": "terminated"}})
    assert gone.status == 404 and gone.error_code == "session_read_not-found"
    assert "does not exist" in str(gone) and "run the cell again" in str(gone)
    wait_terminated(manager_stack, name)


def test_restart_is_not_supported_by_26_9(manager_stack, shared):
    """PATCH /session/{name} → 501 ``api_generic_not-implemented`` (the embedded server: 204)."""
    async def go(s):
        with pytest.raises(NotSupported) as e:
            await s.restart()
        return e.value
    err = on_shared(manager_stack, shared, go)
    assert err.status == 501 and err.error_code == "api_generic_not-implemented"
    assert "Session restart is no longer supported" in str(err)


def test_project_membership_is_enforced(manager_stack):
    """A keypair whose user is not in the project cannot create sessions there (400 with a plain
    message) — the reason the harness adds the admin to ``default`` through the API."""
    async def go():
        async with APIClient(config(manager_stack, group="model-store-not-a-member-xyz")) as api:
            with pytest.raises(BackendAPIError) as e:
                await ComputeSession.get_or_create(api, manager_stack.image_alias, name=unique("nogroup"))
            return e.value
    err = arun(go())
    assert err.status in (400, 404)
    assert err.error_code and str(err)


# -- the execute loop -----------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_query_results(manager_stack, shared, transport):
    async def go(s):
        return {code: await collect(s, code, transport) for code in (
            "print(1+1)", "1+1", "raise ValueError('boom')",
            f"from IPython.display import SVG, display\ndisplay(SVG({SVG!r}))",
            "print('ünïcode ✓ 日本')",
        )}
    runs = on_shared(manager_stack, shared, go)
    assert stdout(runs["print(1+1)"]) == "2\n" and finished(runs["print(1+1)"]).exit_code == 0
    assert stdout(runs["1+1"]) == "2"  # a bare expression: its repr, no newline
    boom = runs["raise ValueError('boom')"]
    assert finished(boom).exit_code == 1
    assert "ValueError: boom" in strip_ansi(stderr(boom)) and "\x1b[" in stderr(boom)  # IPython-coloured
    svg = [e for e in runs[next(k for k in runs if "SVG" in k)] if isinstance(e, Display)]
    assert svg and svg[0].kind == "media" and svg[0].data == ["image/svg+xml", SVG]
    assert stdout(runs["print('ünïcode ✓ 日本')"]) == "ünïcode ✓ 日本\n"


def test_polling_batches_output_per_continue(manager_stack, shared):
    """REST: the manager answers ``continued`` after ~2 s with what was printed so far."""
    code = "import time\nfor i in range(5):\n    print(i, flush=True); time.sleep(1)"
    stamps: list[tuple[float, str]] = []
    started = time.monotonic()

    async def note(event):
        if isinstance(event, Output):
            stamps.append((time.monotonic() - started, event.text))

    events = on_shared(manager_stack, shared, lambda s: collect(s, code, "poll", on_event=note))
    assert stdout(events) == "0\n1\n2\n3\n4\n" and finished(events).exit_code == 0
    assert len(stamps) >= 2, stamps  # at least one `continue` round
    assert stamps[0][0] > 1.5, stamps  # the first answer waited for the flush timeout
    assert stamps[0][1].count("\n") >= 2, stamps


def test_websocket_streams_each_line(manager_stack, shared):
    code = "import time\nfor i in range(4):\n    print(i, flush=True); time.sleep(0.5)"
    stamps: list[float] = []
    started = time.monotonic()

    async def note(event):
        if isinstance(event, Output):
            stamps.append(time.monotonic() - started)

    events = on_shared(manager_stack, shared, lambda s: collect(s, code, "ws", on_event=note))
    assert stdout(events) == "0\n1\n2\n3\n"
    assert len(stamps) >= 3 and stamps[0] < 1.0, stamps  # streamed, not batched


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_input_and_password(manager_stack, shared, transport):
    async def go(s):
        plain = await collect(s, "x = input('name? ')\nprint('hi', x)", transport, answers=["bob"])
        secret = await collect(s, "import getpass\np = getpass.getpass('pw: ')\nprint(p[::-1])", transport,
                               answers=["s3cret"])
        return plain, secret
    plain, secret = on_shared(manager_stack, shared, go)
    asks = [e for e in plain if isinstance(e, InputRequest)]
    assert [(a.prompt, a.password) for a in asks] == [("name? ", False)]  # the prompt arrived as stdout
    assert stdout(plain) == "hi bob\n"
    asks = [e for e in secret if isinstance(e, InputRequest)]
    assert [(a.prompt, a.password) for a in asks] == [("pw: ", True)]
    assert stdout(secret) == "terc3s\n"


def test_run_id_goes_under_run_id_for_26_9(manager_stack, shared):
    """The manager reads only ``run_id``: the SDK's ``runId`` alone fails continue/input with 500."""
    client = SignedClient(manager_stack.endpoint, manager_stack.access_key, manager_stack.secret_key,
                          version=API_VERSION)
    name = shared[0]
    first = client.request("POST", f"/session/{name}", json={"mode": "query", "code": "x = input('? ')",
                                                              "runId": None})
    assert first.status == 200, first
    run_id = first.json()["result"]["runId"]
    assert first.json()["result"]["status"] == "waiting-input"
    sdk_style = client.request("POST", f"/session/{name}", json={"mode": "input", "code": "v", "runId": run_id})
    assert sdk_style.status == 500, sdk_style
    assert sdk_style.json()["error_code"] == "session_read_invalid-data-format"
    ours = client.request("POST", f"/session/{name}",
                          json={"mode": "input", "code": "v", "runId": run_id, "run_id": run_id})
    assert ours.status == 200 and ours.json()["result"]["status"] == "finished", ours


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_interrupt(manager_stack, shared, transport):
    code = "import time\nfor i in range(60):\n    print(i, flush=True); time.sleep(0.5)"

    async def go(s):
        started = time.monotonic()
        sent = False

        async def interrupt_later(event):
            nonlocal sent
            if not sent and isinstance(event, Output) and time.monotonic() - started > 1.0:
                sent = True
                await s.interrupt()

        events = await collect(s, code, transport, on_event=interrupt_later, timeout=60)
        after = await collect(s, "print('after')", transport)
        return events, after, time.monotonic() - started
    events, after, seconds = on_shared(manager_stack, shared, go)
    assert "TIMEOUT" not in events and seconds < 30
    assert "KeyboardInterrupt" in strip_ansi(stderr(events))
    assert finished(events).exit_code == 1
    assert stdout(after) == "after\n"


def test_completion_is_empty_on_26_9(manager_stack, shared):
    """The kernel runner never completes ("TODO" upstream) and answers
    ``{"result": {"status": "finished", "error": null, "suggestions": []}}`` — key ``suggestions``."""
    client = SignedClient(manager_stack.endpoint, manager_stack.access_key, manager_stack.secret_key,
                          version=API_VERSION)
    raw = client.request("POST", f"/session/{shared[0]}/complete",
                         json={"code": "import o", "options": {"row": 0, "col": 8, "line": "import o", "post": ""}})
    assert raw.status == 200 and raw.json() == {"result": {"status": "finished", "error": None, "suggestions": []}}
    result = on_shared(manager_stack, shared, lambda s: s.complete("import o"))
    assert result == {"completions": [], "cursor_start": 7, "cursor_end": 8}


# -- errors in plain words ------------------------------------------------------------------------

def test_errors_carry_error_code_in_plain_words(manager_stack):
    async def go():
        async with APIClient(config(manager_stack)) as api:
            with pytest.raises(SessionNotFound) as missing:
                await ComputeSession(api, "no-such-session-" + uuid.uuid4().hex[:6]).info()
            events = [e async for e in run_cell(ComputeSession(api, "no-such-session-xyz"), "1", transport="poll")]
        bad = config(manager_stack, secret_key="x" * 40)
        async with APIClient(bad) as api:
            with pytest.raises(AuthenticationFailed) as wrong_secret:
                await ComputeSession(api, "whatever").info()
        async with APIClient(config(manager_stack, access_key="AKIANOSUCHKEYEXAMPLE")) as api:
            with pytest.raises(AuthenticationFailed) as unknown_key:
                await ComputeSession(api, "whatever").info()
        return missing.value, events, wrong_secret.value, unknown_key.value
    missing, events, wrong_secret, unknown_key = arun(go())
    assert missing.status == 404 and missing.error_code == "session_read_not-found"
    assert str(missing).startswith("The compute session does not exist")
    assert isinstance(events[-1], RunFailed) and isinstance(events[-1].error, SessionNotFound)
    assert wrong_secret.status == 401 and "HMAC signature mismatch" in str(wrong_secret)
    assert "BACKEND_SECRET_KEY" in str(wrong_secret)  # the fix, in words
    assert unknown_key.status == 401 and "Access key not found" in str(unknown_key)
    for err in (missing, wrong_secret, unknown_key):
        assert manager_stack.secret_key not in str(err) and "x" * 40 not in str(err)


def test_raw_html_breaks_a_run_polling_releases_it_the_websocket_cannot(manager_stack):
    """26.9.6, on a session *without* the display adapter: the kernel runner sends HTML raw where the
    agent expects JSON, so the execute call that would carry it fails with a 500, the run's end is
    lost with it, and the session waits for that run forever.  Polling knows the run id (the client
    chose it) and frees the session with a ``query`` under the same id: the cell reports
    :class:`RunBroken` and the session answers the next run.  Over the websocket the manager picks
    the run id and never tells it, so the session stays stuck: :func:`probe` tells within its
    timeout instead of hanging."""
    async def go():
        async with APIClient(config(manager_stack)) as api:
            s = await new_session(manager_stack, api, "html")
            try:
                polled = await collect(s, HTML_CELL, "poll")
                after_poll = await collect(s, "print('answers')", "poll")
                streamed = await collect(s, HTML_CELL, "ws")
                started = time.monotonic()
                state = await probe(s, PROBE_TIMEOUT)
                return s.name, polled, after_poll, streamed, state, time.monotonic() - started
            finally:
                await s.destroy()
    name, polled, after_poll, streamed, state, probe_seconds = arun(go())
    assert isinstance(polled[-1], RunFailed), polled
    err = polled[-1].error
    assert isinstance(err, RunBroken), err
    assert "(HTTP 500, backendai_generic_internal-error)" in str(err) and "The session was released" in str(err)
    assert "print such outputs as text" in str(err)
    assert stdout(after_poll) == "answers\n" and finished(after_poll).exit_code == 0
    assert isinstance(streamed[-1], RunFailed) and isinstance(streamed[-1].error, RunLost), streamed
    assert "TIMEOUT" not in polled + streamed
    assert state == "unresponsive" and PROBE_TIMEOUT <= probe_seconds < PROBE_TIMEOUT + 5
    wait_terminated(manager_stack, name)


# -- files and folders ------------------------------------------------------------------------------

def test_session_files_upload_and_list(manager_stack, shared, tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("bee")

    async def go(s):
        uploaded = await s.upload(["a.txt", "sub/b.txt"], basedir=tmp_path)
        listing = await s.list_files(".")
        sub = await s.list_files("sub")
        seen = await collect(s, "print(open('a.txt').read(), open('sub/b.txt').read())", "poll")
        return uploaded, listing, sub, seen
    uploaded, listing, sub, seen = on_shared(manager_stack, shared, go)
    assert uploaded == ["a.txt", "sub/b.txt"]
    names = {e.name: e for e in listing}
    assert names["a.txt"].size == 5 and not names["a.txt"].is_dir and names["sub"].is_dir
    assert stdout(seen) == "hello bee\n"
    assert {e.name for e in sub} == {"b.txt"}  # the path is honoured (sent as a query parameter)


def test_session_files_raw_listing_reads_the_query(manager_stack, shared):
    """26.9.6 reads the listing path from the query string only; a JSON body (what the client and the
    older SDKs send on this GET) is ignored, so the home directory is listed instead."""
    on_shared(manager_stack, shared, lambda s: s.execute("query", "import os; os.makedirs('d1/d2', exist_ok=True)"))
    client = SignedClient(manager_stack.endpoint, manager_stack.access_key, manager_stack.secret_key,
                          version=API_VERSION)
    by_query = client.request("GET", f"/session/{shared[0]}/files", params={"path": "d1"})
    by_body = client.request("GET", f"/session/{shared[0]}/files", json={"path": "d1"})
    assert by_query.status == by_body.status == 200
    assert [f["filename"] for f in json.loads(by_query.json()["files"])] == ["d2"]
    assert by_query.json()["abspath"] == "d1"
    assert "d1" in [f["filename"] for f in json.loads(by_body.json()["files"])]  # the body was ignored
    assert by_body.json()["abspath"] == "."
    missing = client.request("GET", f"/session/{shared[0]}/files", params={"path": "no/such"})
    assert missing.status == 200 and missing.json()["files"] == "" and "No such file" in missing.json()["errors"]


def test_session_list_files_of_a_subdirectory(manager_stack, shared):
    async def go(s):
        await s.execute("query", "import os; os.makedirs('e1/e2', exist_ok=True)")
        return [e.name for e in await s.list_files("e1")]
    assert on_shared(manager_stack, shared, go) == ["e2"]


def test_session_file_listing_error_is_reported(manager_stack, shared):
    async def go(s):
        with pytest.raises(BackendAPIError) as e:
            await s.list_files("no/such/dir")
        return e.value
    err = on_shared(manager_stack, shared, go)
    assert "No such file or directory" in str(err)


def test_session_download_raw_shapes(manager_stack, shared):
    """26.9.6 serves downloads on POST with query parameters; GET with a JSON body is 405."""
    on_shared(manager_stack, shared, lambda s: s.execute("query", "open('made.txt', 'w').write('remote made')"))
    client = SignedClient(manager_stack.endpoint, manager_stack.access_key, manager_stack.secret_key,
                          version=API_VERSION)
    name = shared[0]
    get_json = client.request("GET", f"/session/{name}/download", json={"files": ["made.txt"]})
    assert get_json.status == 405 and get_json.json()["error_code"] == "api_access_forbidden"
    post = client.request("POST", f"/session/{name}/download", params={"files": "made.txt"})
    assert post.status == 200 and post.headers["content-type"].startswith("multipart/mixed")
    tar_bytes = post.body.split(b"\r\n\r\n", 1)[1]
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        assert tar.extractfile("made.txt").read() == b"remote made"
    single = client.request("POST", f"/session/{name}/download_single", params={"file": "made.txt"})
    assert single.status == 200 and single.body == b"remote made"


def test_session_download_with_the_client(manager_stack, shared, tmp_path):
    async def go(s):
        await s.execute("query", "open('made2.txt', 'w').write('remote two')")
        return await s.download(["made2.txt"], tmp_path)
    assert on_shared(manager_stack, shared, go) == ["made2.txt"]
    assert (tmp_path / "made2.txt").read_text() == "remote two"


def test_session_logs(manager_stack, shared):
    logs = on_shared(manager_stack, shared, lambda s: s.logs())
    assert "python-kernel" in logs  # the kernel runner's own log


# -- vfolders through Backend.AI's storage proxy ----------------------------------------------------

USER_ACCESS_KEY = "AKIANABBDUSEREXAMPLE"  # the halfstack fixtures' plain user (example-keypairs.json)
USER_SECRET_KEY = "C8qnIo29EZvXkPK_MXcuAakYTy4NYrxwmCEyNPlf"


@pytest.fixture(scope="session")
def storage_proxy(manager_stack):
    """The stack's storage proxy, reachable and known to the manager. Not a skip: the stack brings
    it up, so a stack without it is a broken stack."""
    url = f"http://127.0.0.1:{manager_stack.ports.storage_manager}/"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            hello = json.loads(resp.read())
    except OSError as e:
        pytest.fail(f"the storage proxy does not answer at {url}: {e} (logs: {manager_stack.logs_dir})")
    assert hello.get("storage-proxy") == VERSION, hello

    async def hosts():
        async with APIClient(config(manager_stack)) as api:
            return await api.request("GET", "/folders/_/hosts")
    data = arun(hosts(), 60)
    if VOLUME_HOST not in data.get("allowed", []):
        pytest.fail(f"the manager does not offer {VOLUME_HOST}: {data}")
    return data


async def purge(api: APIClient, name: str) -> None:
    """Delete (26.9: into the trash, status delete-pending) and purge a folder, whatever state it is in."""
    folder = VFolder(api, name)
    with contextlib.suppress(BackendAPIError):
        await folder.delete()
    with contextlib.suppress(BackendAPIError):
        if folder.id is None:
            rows = [f for f in await VFolder.list(api) if f["name"] == name]
            folder.id = rows[0]["id"] if rows else None
        if folder.id is not None:
            await api.request("POST", "/folders/purge", json={"id": folder.id}, expect="none")


@pytest.fixture
def vfolder_name(manager_stack, storage_proxy):
    """A fresh folder name; the folder (if created) is deleted and purged afterwards."""
    name = unique("vf")
    yield name

    async def cleanup():
        async with APIClient(config(manager_stack)) as api:
            await purge(api, name)
    arun(cleanup(), 60)


def test_vfolder_hosts_are_the_storage_proxys_volume(manager_stack, storage_proxy):
    assert storage_proxy["default"] == VOLUME_HOST
    assert storage_proxy["volume_info"][VOLUME_HOST]["backend"] == "vfs"


@pytest.mark.parametrize("who", ["admin", "user"])
def test_vfolder_create_list_info_delete(manager_stack, storage_proxy, who):
    cfg = config(manager_stack) if who == "admin" else config(manager_stack, access_key=USER_ACCESS_KEY,
                                                                        secret_key=USER_SECRET_KEY)
    name = unique("vf")

    async def go():
        async with APIClient(cfg) as api:
            try:
                created = await VFolder.create(api, name)
                listed = [f for f in await VFolder.list(api) if f["name"] == name]
                folder = VFolder(api, name)
                info = await folder.info()
                with pytest.raises(AlreadyExists):
                    await VFolder.create(api, name)
                await folder.delete()
                trashed = await VFolder(api, name).info()  # the name still resolves, to the trashed folder
                after = [f for f in await VFolder.list(api) if f["name"] == name]
                async with APIClient(config(manager_stack)) as admin:  # purging is for admins (403 for a user)
                    await admin.request("POST", "/folders/purge", json={"id": folder.id}, expect="none")
                purged = [f for f in await VFolder.list(api) if f["name"] == name]
                with pytest.raises(VFolderNotFound):
                    await VFolder(api, name).info()
                return created, listed, info, trashed, after, purged
            finally:
                if who == "admin":
                    await purge(api, name)
    created, listed, info, trashed, after, purged = arun(go(), 120)
    assert created["name"] == name and created["host"] == VOLUME_HOST and created["status"] == "ready"
    assert created["ownership_type"] == "user" and created["permission"] == "rw"
    assert len(listed) == 1 and listed[0]["id"] == created["id"] and listed[0]["status"] == "ready"
    assert info["name"] == name and info["host"] == VOLUME_HOST and info["numFiles"] == 0
    assert info["is_owner"] is True
    # 26.9: a deleted folder goes to the trash (still listed, status delete-pending) until purged.
    assert [f["status"] for f in after] == ["delete-pending"] and trashed["status"] == "delete-pending"
    assert purged == []


def test_vfolder_upload_and_download_byte_exact(manager_stack, vfolder_name, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    big = os.urandom(3 * 1024 * 1024 + 17)
    (src / "sub" / "big.bin").write_bytes(big)
    (src / "empty.txt").write_bytes(b"")
    timings = {}

    async def go():
        async with APIClient(config(manager_stack)) as api:
            await VFolder.create(api, vfolder_name)
            folder = VFolder(api, vfolder_name)
            t = time.monotonic()
            remote = await folder.upload(["sub/big.bin", "empty.txt"], basedir=src, dest="in")
            timings["upload"] = time.monotonic() - t
            top = await folder.list_files("in")
            sub = await folder.list_files("in/sub")
            t = time.monotonic()
            written = await folder.download(["in/sub/big.bin", "in/empty.txt"], dest=tmp_path / "dst")
            timings["download"] = time.monotonic() - t
            url = await folder.download_url("in/sub/big.bin")
            ranged = await folder.read(url, 1000, 1010)
            past = await folder.read(url, len(big) + 10, None)
            info = await folder.info()
            return remote, top, sub, written, ranged, past, info
    remote, top, sub, written, ranged, past, info = arun(go(), 240)
    print(f"3 MiB upload {timings['upload']:.2f} s, download {timings['download']:.2f} s")
    assert remote == ["in/sub/big.bin", "in/empty.txt"]
    assert {(e["name"], e["type"]) for e in top} == {("sub", "DIRECTORY"), ("empty.txt", "FILE")}
    assert [(e["name"], e["type"], e["size"]) for e in sub] == [("big.bin", "FILE", len(big))]
    assert [p.read_bytes() for p in written] == [big, b""]
    assert ranged == big[1000:1010]  # the download URL honours Range (206)
    assert past == b""  # 416 past the end
    assert info["numFiles"] >= 2


def test_vfolder_tus_head_reports_the_offset(manager_stack, vfolder_name):
    """The client resumes a broken upload from the proxy's offset: HEAD on the upload URL answers it."""
    async def go():
        async with APIClient(config(manager_stack)) as api:
            await VFolder.create(api, vfolder_name)
            folder = VFolder(api, vfolder_name)
            grant = await api.request("POST", await folder._path("/request-upload"),
                                      json={"path": "part.bin", "size": 10}, idempotent=True)
            url = URL(grant["url"]).with_query({"token": grant["token"]})
            before = await folder._tus_offset(url, "part.bin")
            headers = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream",
                       "Upload-Offset": "0"}
            async with api.http.patch(url, data=b"01234", headers=headers) as resp:
                status = resp.status
            after = await folder._tus_offset(url, "part.bin")
            return before, status, after
    before, status, after = arun(go(), 60)
    assert (before, status, after) == (0, 204, 5)


def test_vfolder_fsspec_filesystem(manager_stack, vfolder_name, tmp_path):
    import fsspec  # noqa: F401 - the filesystem is an fsspec one

    from backend_jupyter.filesystem import BackendAIFileSystem

    fs = BackendAIFileSystem(config=config(manager_stack), skip_instance_cache=True)
    root = vfolder_name
    fs.mkdir(root)  # a folder at the root is a vfolder
    assert root in fs.ls("", detail=False)
    assert fs.info(root)["type"] == "directory"
    assert fs.ls(root) == []  # the proxy's .upload directory is not shown

    data = os.urandom(300_000)
    fs.pipe(f"{root}/a/b.bin", data)  # parents are made by the upload
    assert fs.cat(f"{root}/a/b.bin") == data
    assert fs.cat_file(f"{root}/a/b.bin", start=1000, end=2000) == data[1000:2000]
    assert fs.cat_file(f"{root}/a/b.bin", start=-10) == data[-10:]
    info = fs.info(f"{root}/a/b.bin")
    assert info["type"] == "file" and info["size"] == len(data) and info["mtime"]
    assert fs.ls(f"{root}/a", detail=False) == [f"{root}/a/b.bin"]
    assert fs.ls(f"{root}/a/b.bin", detail=False) == [f"{root}/a/b.bin"]  # a file lists as itself
    with fs.open(f"{root}/a/b.bin", "rb", block_size=65536) as f:
        f.seek(200_000)
        assert f.read(5000) == data[200_000:205_000]

    local = tmp_path / "up.txt"
    local.write_text("put through fsspec\n")
    fs.put(str(local), f"{root}/up.txt")
    fs.get(f"{root}/up.txt", str(tmp_path / "down.txt"))
    assert (tmp_path / "down.txt").read_text() == "put through fsspec\n"
    with fs.open(f"{root}/written.txt", "wb") as f:
        f.write(b"line 1\n")
        f.write(b"line 2\n")
    assert fs.cat(f"{root}/written.txt") == b"line 1\nline 2\n"

    fs.mkdir(f"{root}/d1/d2")
    assert fs.info(f"{root}/d1/d2")["type"] == "directory"
    with pytest.raises(FileExistsError):
        fs.mkdir(f"{root}/d1/d2")
    with pytest.raises(FileNotFoundError):
        fs.mkdir(f"{root}/nope/x", create_parents=False)

    with pytest.raises(FileNotFoundError):
        fs.cat(f"{root}/missing.txt")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{root}/missing.txt")
    with pytest.raises(FileNotFoundError):
        fs.ls(f"{root}/missing-dir")
    with pytest.raises(FileNotFoundError):
        fs.rm(f"{root}/missing.txt")
    assert not fs.exists(f"{root}/missing.txt")
    with pytest.raises(IsADirectoryError):
        fs.cat_file(f"{root}/a")
    with pytest.raises(IsADirectoryError):
        fs.rm(f"{root}/d1")

    fs.rm(f"{root}/up.txt")
    fs.invalidate_cache()
    assert not fs.exists(f"{root}/up.txt")
    fs.rm(f"{root}/d1", recursive=True)
    fs.invalidate_cache()
    assert sorted(fs.ls(root, detail=False)) == [f"{root}/a", f"{root}/written.txt"]


def test_vfolder_mounted_in_a_session(manager_stack, vfolder_name, tmp_path):
    """A session created with the folder mounted (BACKEND_VFOLDER_MOUNTS: the config's vfolder_mounts)
    reads the uploaded file under /home/work/NAME, and what it writes there comes back through the proxy."""
    payload = os.urandom(4096)
    (tmp_path / "seen.bin").write_bytes(payload)
    cfg = config(manager_stack, vfolder_mounts=parse_mounts(vfolder_name))
    code = (f"import hashlib, os; p = '/home/work/{vfolder_name}/seen.bin'; "
            f"print(hashlib.sha256(open(p, 'rb').read()).hexdigest(), os.path.getsize(p)); "
            f"_ = open('/home/work/{vfolder_name}/from-session.txt', 'w').write('written in the session')")

    async def go():
        async with APIClient(cfg) as api:
            await VFolder.create(api, vfolder_name)
            folder = VFolder(api, vfolder_name)
            await folder.upload_file(tmp_path / "seen.bin", "seen.bin")
            session = await new_session(manager_stack, api, "vfmount")
            try:
                events = await collect(session, code, "poll")
                written = await folder.read(await folder.download_url("from-session.txt"))
            finally:
                await session.destroy()
            return session.name, events, written
    name, events, written = arun(go(), 240)
    wait_terminated(manager_stack, name)
    assert stdout(events).split() == [hashlib.sha256(payload).hexdigest(), "4096"], events
    assert written == b"written in the session"


def test_vfolder_magics(manager_stack, vfolder_name, tmp_path):
    from tests.kernel_driver import KernelDriver

    (tmp_path / "data").mkdir()
    payload = os.urandom(200_000)
    (tmp_path / "data" / "blob.bin").write_bytes(payload)
    ipy = KernelDriver(manager_stack.env(), kernel_name="python3", cwd=tmp_path)
    try:
        assert ipy.execute("%load_ext backend_jupyter").status == "ok"
        created = ipy.execute(f"%backend_vfolder create {vfolder_name}")
        assert f"Created vfolder {vfolder_name}." in created.stream(), created.messages
        assert vfolder_name in ipy.execute("%backend_vfolder list").stream()
        up = ipy.execute(f"%backend_vfolder upload {vfolder_name} data --dest in")
        assert up.status == "ok", up.messages
        listing = ipy.execute(f"%backend_vfolder ls {vfolder_name} in/data").stream()
        assert re.search(r"^- +200000 blob\.bin$", listing, re.MULTILINE), listing
        down = ipy.execute(f"%backend_vfolder download {vfolder_name} in/data/blob.bin --dest out")
        assert down.status == "ok", down.messages
        assert (tmp_path / "out" / "in" / "data" / "blob.bin").read_bytes() == payload
        deleted = ipy.execute(f"%backend_vfolder delete {vfolder_name}")
        assert f"Deleted vfolder {vfolder_name}." in deleted.stream()
        assert vfolder_name not in ipy.execute("%backend_vfolder list").stream()  # in the trash, not listed
    finally:
        ipy.shutdown()


# -- the wrapper kernel ----------------------------------------------------------------------------

def start_kernel(manager_stack, *, extra_arguments: list[str] | None = None, cwd=None):
    """The installed ``backend-python`` kernelspec (image ``python``, the alias the stack registers)."""
    from tests.kernel_driver import KernelDriver

    return KernelDriver(manager_stack.env(), kernel_name="backend-python", extra_arguments=extra_arguments or [],
                        cwd=cwd)


def kernel_session_name(driver) -> str:
    """The kernel names its session after its connection file (``kernel-<id>.json``, else a digest
    of its path)."""
    path = str(Path(driver.km.connection_file).resolve())
    match = re.match(r"kernel-([\w-]+)\.json$", Path(path).name)
    return f"jupyter-{match.group(1) if match else hashlib.sha1(path.encode()).hexdigest()[:20]}"


class TestOneKernel:
    """Three tests on one Backend.AI Python kernel (a session start costs ~9 s here); the class
    scope ends it, and so its session, before the tests that check nothing is left behind."""

    @pytest.fixture(scope="class")
    def kernel(self, manager_stack):
        """The kernel, with the image given as an extra argument after the kernelspec's own
        ``--BackendKernel.image=python`` (the last one wins).  Its shutdown destroys its session on
        the manager."""
        driver = start_kernel(manager_stack, extra_arguments=[f"--BackendKernel.image={manager_stack.image}"])
        name = kernel_session_name(driver)
        try:
            yield driver
        finally:
            driver.shutdown()
        wait_terminated(manager_stack, name)

    def test_kernel_end_to_end(self, manager_stack, kernel):
        driver, name = kernel, kernel_session_name(kernel)
        first = driver.execute("print(6 * 7)", timeout=CREATE_TIMEOUT + 30)
        assert first.status == "ok" and first.stream() == "42\n"
        assert live_sessions(manager_stack, name) == ["RUNNING"]
        expr = driver.execute("21 * 2")  # an Out[n] through the display adapter
        assert expr.stream() == "" and [c["data"] for c in expr.of("execute_result")] == [{"text/plain": "42"}]
        svg = driver.execute(f"from IPython.display import SVG, display\ndisplay(SVG({SVG!r}))")
        assert [c["data"].get("image/svg+xml") for c in svg.of("display_data")] == [SVG]
        err = driver.execute("def f():\n    raise KeyError('missing-key')\nf()")
        assert err.status == "error" and err.reply["content"]["ename"] == "KeyError"
        assert len(err.of("error")) == 1 and "KeyError" not in err.stream("stderr")
        asked = driver.execute("import getpass\nu = input('user: ')\np = getpass.getpass('pw: ')\nprint(u, p[::-1])",
                               inputs=["ann", "xyz"])
        assert [(r["prompt"], r["password"]) for r in asked.input_requests] == [("user: ", False), ("pw: ", True)]
        assert asked.stream() == "ann zyx\n"
        flood = driver.execute("for i in range(3000):\n    print(i)")
        assert flood.stream().splitlines() == [str(i) for i in range(3000)]
        completion = driver.request("complete", "import o", 8)
        assert completion["status"] == "ok" and completion["matches"] == []  # the runner never completes


    def test_kernel_image_from_extra_arguments_and_interrupt(self, manager_stack, kernel):
        """The image from extra arguments (after the kernelspec's own ``--BackendKernel.image``: the
        last one wins), then the stop button in the middle of a streaming cell."""
        driver, name = kernel, kernel_session_name(kernel)
        assert driver.execute("print(1)", timeout=CREATE_TIMEOUT + 30).stream() == "1\n"
        images = manager_stack.psql(f"SELECT images FROM sessions WHERE name = '{name}' AND status = 'RUNNING'")
        assert images == [[f"{{{manager_stack.image}}}"]], images  # a PostgreSQL array of one
        started = time.monotonic()
        sent = []

        def on_message(msg):
            if not sent and msg["msg_type"] == "stream":
                sent.append(time.monotonic())
                driver.interrupt()

        result = driver.execute("import time\nfor i in range(120):\n    print(i, flush=True); time.sleep(0.5)",
                                on_message=on_message, timeout=60)
        assert sent and time.monotonic() - started < 30
        assert result.status == "error" and result.reply["content"]["ename"] == "KeyboardInterrupt"
        assert driver.execute("print('alive')").stream() == "alive\n"


    def test_kernel_rich_output_through_the_display_adapter(self, kernel):
        """Twin of test_rich_output.py: the kernel installs the display adapter in the real runner's
        IPython, and every rich output arrives as a local IPython kernel sends it."""
        driver = kernel
        before = driver.execute("print('ready')", timeout=CREATE_TIMEOUT + 30)
        assert before.stream() == "ready\n"
        count = before.reply["content"]["execution_count"]
        rich.check_dataframe(driver.execute(rich.DATAFRAME), execution_count=count + 1)
        assert driver.execute("print('after df')").stream() == "after df\n"
        [result] = driver.execute("1 + 1").of("execute_result")
        assert result["data"] == {"text/plain": "2"} and result["execution_count"] == count + 3
        rich.check_markdown_latex_json(driver.execute(rich.MARKDOWN_LATEX_JSON))
        rich.check_updated_handle(driver.execute(rich.UPDATED_HANDLE))
        rich.check_clear_loop(driver.execute(rich.CLEAR_LOOP))
        rich.check_big_table(driver.execute(rich.BIG_TABLE))
        rich.check_too_big(driver.execute(rich.TOO_BIG))
        html = driver.execute(HTML_CELL)
        assert html.status == "ok" and html.stream() == "before\nafter\n"
        assert [c["data"]["text/html"] for c in html.of("display_data")] == ["<b>bold</b>"]
        assert driver.execute("print(len(In) - 1)").stream() == f"{count + 10}\n"  # no cell of ours in In


def test_kernel_without_the_adapter_reports_a_broken_run_and_goes_on(manager_stack):
    """``display_adapter=False`` (or a session the adapter cannot enter): an HTML output breaks the
    run on 26.9.6; the kernel polls, so it frees the session and says what happened and the fix."""
    driver = start_kernel(manager_stack, extra_arguments=["--BackendKernel.display_adapter=False"])
    name = kernel_session_name(driver)
    try:
        assert driver.execute("x = 1", timeout=CREATE_TIMEOUT + 30).status == "ok"
        result = driver.execute(HTML_CELL, timeout=60)
        content = result.reply["content"]
        assert result.status == "error" and content["ename"] == "RunBroken", content
        assert "The session was released and takes the next cell" in content["evalue"]
        assert "display adapter" in content["evalue"] and "print(df.to_string())" in content["evalue"]
        assert "has not answered" not in result.stream("stderr")
        assert driver.execute("print(x)").stream() == "1\n"  # same session, state kept
    finally:
        driver.shutdown()
    wait_terminated(manager_stack, name)


def test_kernel_html_display_500_then_stuck_session_then_restart(manager_stack):
    """Without the adapter and over the websocket, an HTML display breaks the run (the manager closes
    the stream: RunLost) and leaves the session stuck.  The kernel probes it, says so in the cell,
    refuses later cells at once instead of hanging, and a restart replaces the session with a fresh
    one under the same name."""
    driver = start_kernel(manager_stack, extra_arguments=["--BackendKernel.display_adapter=False",
                                                         "--BackendKernel.transport=ws"])
    name = kernel_session_name(driver)
    try:
        assert driver.execute("pass", timeout=CREATE_TIMEOUT + 30).status == "ok"
        before = session_ids(manager_stack, name)
        result = driver.execute(HTML_CELL, timeout=60 + PROBE_TIMEOUT)
        assert result.status == "error"
        content = result.reply["content"]
        # The output of the same flush window ('before') is lost with the failed aggregation.
        assert content["ename"] == "RunLost" and "closed before it finished" in content["evalue"], content
        assert len(result.of("error")) == 1
        assert "has not answered for 10 s" in result.stream("stderr")
        assert "To replace it with a fresh session, restart the kernel." in result.stream("stderr")

        started = time.monotonic()
        refused = driver.execute("print('next')", timeout=30)
        assert refused.status == "error" and refused.reply["content"]["ename"] == "SessionUnresponsive"
        assert "restart the kernel" in refused.reply["content"]["evalue"]
        assert time.monotonic() - started < REPROBE_TIMEOUT + 5

        driver.shutdown(restart=True)
        assert driver.execute("print('next')", timeout=CREATE_TIMEOUT).stream() == "next\n"
        after = session_ids(manager_stack, name)
        assert len(after) == 1 and after != before
    finally:
        driver.interrupt()
        driver.shutdown()
        arun(_destroy(manager_stack, name))
    wait_terminated(manager_stack, name)


def session_ids(stack: StackInfo, name: str) -> list[str]:
    return [r[0] for r in stack.psql(f"SELECT id FROM sessions WHERE name = '{name}' AND status = 'RUNNING'")]


async def _destroy(stack, name):
    async with APIClient(config(stack)) as api:
        try:
            await ComputeSession(api, name).destroy()
        except SessionNotFound:
            pass


def test_kernel_restart_replaces_the_session(manager_stack):
    """26.9.6 cannot restart a session (PATCH → 501), so a Jupyter restart destroys the kernel's own
    session, waits until its name is free, and the restarted kernel process starts a fresh one under
    the same name: the remote interpreter state is gone, as after a local restart."""
    driver = start_kernel(manager_stack)
    name = kernel_session_name(driver)
    try:
        assert driver.execute("marker = 'kept'", timeout=CREATE_TIMEOUT + 30).status == "ok"
        before = session_ids(manager_stack, name)
        driver.shutdown(restart=True)
        result = driver.execute("print(marker)", timeout=CREATE_TIMEOUT)
        assert result.status == "error" and result.reply["content"]["ename"] == "NameError"
        after = session_ids(manager_stack, name)
        assert len(before) == len(after) == 1 and before != after
        assert live_sessions(manager_stack, name) == ["RUNNING"]
    finally:
        driver.shutdown()
    wait_terminated(manager_stack, name)


def wait_running(stack: StackInfo, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while live_sessions(stack, name) != ["RUNNING"]:
        assert time.monotonic() < deadline, f"{name} did not start within {timeout:g} s"
        time.sleep(0.5)


def test_kernel_commands_on_the_real_manager(manager_stack, tmp_path):
    """Twin of test_kernel_commands.py: the session starts with the kernel, before any cell (eager
    start), then upload, download, info and new inside the kernel; shutdown destroys the session."""
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    driver = start_kernel(manager_stack, cwd=tmp_path)
    name = kernel_session_name(driver)
    try:
        wait_running(manager_stack, name, CREATE_TIMEOUT + 30)
        up = driver.execute("%backend_upload data.csv --dest in\nprint(open('in/data.csv').read(), end='')",
                            timeout=CREATE_TIMEOUT + 30)
        assert up.status == "ok", up.reply["content"]
        assert up.stream() == "a,b\n1,2\n"
        updates = [c["data"]["text/plain"] for c in up.of("update_display_data")]
        assert any(u.endswith("1/1: data.csv (8 B)") for u in updates), updates
        assert driver.execute("open('result.txt', 'w').write('from the cluster')").status == "ok"
        down = driver.execute("%backend_download result.txt --dest results")
        assert down.status == "ok", down.reply["content"]
        assert (tmp_path / "results" / "result.txt").read_text() == "from the cluster"
        missing = driver.execute("%backend_download no-such.txt --dest nothing")
        assert missing.status == "error" and not (tmp_path / "nothing").exists()

        info = dict(line.split(None, 1) for line in driver.execute("%backend_session info").stream().splitlines())
        assert (info["name"], info["status"]) == (name, "RUNNING")
        assert info["image"].startswith("cr.backend.ai/") and "python" in info["image"], info
        assert info["endpoint"] == manager_stack.endpoint
        assert sorted(info["resources"].split(", ")) == ["cpu=1", "mem=335.5 MB"], info  # the stack's default
        assert info["id"] == session_ids(manager_stack, name)[0]
        # the loopback agent keeps no statistics: said plainly, not an error
        assert info["usage"] == "not reported by this server (it keeps no live statistics for the session)"

        before = session_ids(manager_stack, name)
        new = driver.execute("%backend_session new -e STAGE=two\nimport os\nprint(os.environ['STAGE'])",
                             timeout=CREATE_TIMEOUT + 30)
        assert new.status == "ok", new.reply["content"]
        assert new.stream() == "two\n" and "its variables are lost" in new.stream("stderr")
        after = session_ids(manager_stack, name)
        assert len(after) == 1 and after != before
        slow = driver.execute("import time; time.sleep(3.2)")
        lines = [c["data"].get("text/plain") for c in slow.of("display_data") + slow.of("update_display_data")]
        assert lines[0] == "running 2 s · usage not reported by this server" and slow.of("update_display_data")
    finally:
        driver.shutdown()
    wait_terminated(manager_stack, name)


# -- background jobs -------------------------------------------------------------------------------

def test_a_job_outlives_its_killed_follower_on_the_real_manager(manager_stack, tmp_path):
    """Twin of test_jobs.py: a job's output is kept in its session; its follower is SIGKILLed
    midway and a new one copies every line, once and in order, then the end; the session goes."""
    from tests.test_jobs import stdout_lines, survive_a_killed_follower

    journal = survive_a_killed_follower(manager_stack.env(), tmp_path, unique("survivor"))
    assert stdout_lines(journal) == list(range(60))
    kinds = [r["k"] for r in journal.records() if r["k"] != "stdout"]
    assert kinds == ["display", "error", "end"]
    wait_terminated(manager_stack, journal.info().session)


def test_a_sweep_of_jobs_on_the_real_manager(manager_stack, tmp_path):
    """Twin of test_jobs.py's sweeps: two jobs at once, each with its parameter and an input
    value, each to its end, the variables they kept brought back, their sessions gone."""
    from backend_jupyter import valuecodec
    from backend_jupyter.jobs import Board, job_session_name
    from backend_jupyter.journal import JobInfo
    from backend_jupyter.managed import Settings

    base = unique("sweep")
    infos = [JobInfo(name=f"{base}-{i}", session=job_session_name(f"{base}-{i}"), endpoint=manager_stack.endpoint,
                     code="import time\ntime.sleep(1)\nacc = lr * w\nprint(acc)", params={"lr": lr}, sweep=base,
                     settings=Settings(manager_stack.image_alias).to_dict(), inputs={"w": "json"})
             for i, lr in enumerate((0.1, 0.2), 1)]

    async def sweep():
        async with APIClient(config(manager_stack)) as api:
            board = Board(tmp_path / "jobs")
            staging = tmp_path / "inputs"  # -i w: uploaded into each job's session when it starts
            staging.mkdir()
            (staging / "w.json").write_text("10")
            journals = board.submit(api, infos, parallel=2, inputs=staging)
            await asyncio.wait_for(asyncio.gather(*board.tasks.values()), CREATE_TIMEOUT * 2 + 60)
            return [(j.info().status, "".join(r.get("text", "") for r in j.records())) for j in journals]

    assert arun(sweep()) == [("finished", "1.0\n"), ("finished", "2.0\n")]
    # what %backend_job wait -o builds from the variables each job kept (downloaded from its session)
    rows = [{"columns": {"job": i.name, "lr": i.params["lr"]}, "values": {"acc": f"{i.name}/vars/acc.json"}}
            for i in infos]
    ns = {}
    valuecodec.land(ns, {"table": "t", "rows": rows}, str(tmp_path / "jobs"))
    assert ns["t"].to_dict("records") == [{"job": infos[0].name, "lr": 0.1, "acc": 1.0},
                                          {"job": infos[1].name, "lr": 0.2, "acc": 2.0}]
    for info in infos:
        wait_terminated(manager_stack, info.session)


# -- the magics ------------------------------------------------------------------------------------

def test_magics_end_to_end(manager_stack, tmp_path):
    from tests.kernel_driver import KernelDriver

    ipy = KernelDriver(manager_stack.env(), kernel_name="python3")
    names: list[str] = []
    try:
        assert ipy.execute("%load_ext backend_jupyter").status == "ok"
        image = manager_stack.image
        first = ipy.execute(f"%%backend_run --image {image}\nprint(6 * 7)", timeout=CREATE_TIMEOUT + 30)
        assert first.status == "ok" and "42\n" in first.stream(), first.messages
        # The manager's REST listing is empty; the magic still shows the session it knows, marked current.
        listing = ipy.execute("%backend_session list").stream()
        assert re.search(r"^\* \S+ +\?", listing, re.M), listing
        asked = ipy.execute(f"%%backend_run --image {image}\nimport getpass\nu = input('user: ')\n"
                            "p = getpass.getpass('pw: ')\nprint(u, p[::-1])", inputs=["ann", "xyz"])
        assert [(r["prompt"], r["password"]) for r in asked.input_requests] == [("user: ", False), ("pw: ", True)]
        assert "ann zyx\n" in asked.stream()
        err = ipy.execute(f"%%backend_run --image {image}\ndef g():\n    raise KeyError('missing-key')\ng()")
        assert err.status == "error" and "KeyError" in err.reply["content"]["ename"] + err.reply["content"]["evalue"]
        streamed = ipy.execute(f"%%backend_run --image {image}\nimport time\nfor i in range(3):\n"
                               "    print(i, flush=True); time.sleep(0.5)")
        assert "0\n1\n2\n" in streamed.stream()
        info = ipy.execute("%backend_session info")
        text = info.stream() + "".join(str(c.get("data", {})) for c in info.of("display_data"))
        names += re.findall(r"(bj[\w.-]+|ipython[\w.-]+|magic[\w.-]+|jupyter[\w.-]+)", text)
        # Rich output through the display adapter (twin of test_rich_output.py's magics tests).
        table = ipy.execute(f"%%backend_run --image {image}\n" + rich.DATAFRAME)
        assert table.status == "ok", table.reply
        [shown] = [c["data"] for c in table.of("display_data") if "text/html" in c["data"]]
        assert "<table" in shown["text/html"] and shown["text/plain"].split()[:2] == ["a", "b"]
        rich.check_markdown_latex_json(ipy.execute(f"%%backend_run --image {image}\n" + rich.MARKDOWN_LATEX_JSON))
        rich.check_updated_handle(ipy.execute(f"%%backend_run --image {image}\n" + rich.UPDATED_HANDLE))
        rich.check_clear_loop(ipy.execute(f"%%backend_run --image {image}\n" + rich.CLEAR_LOOP))
        html = ipy.execute(f"%%backend_run --image {image}\n" + HTML_CELL)
        assert html.status == "ok" and [c["data"]["text/html"] for c in html.of("display_data")
                                        if "text/html" in c["data"]] == ["<b>bold</b>"]
        # Without the adapter (a new session after %config): the broken run is reported with the
        # fix, the session is freed, and a restart on 26.9 replaces it.
        other = unique("magic-plain")
        assert ipy.execute("%config BackendMagics.display_adapter = False").status == "ok"
        broken = ipy.execute(f"%%backend_run -s {other} --image {image}\n" + HTML_CELL, timeout=CREATE_TIMEOUT + 60)
        assert broken.status == "error", broken.reply
        assert "RunBroken" in broken.reply["content"]["ename"] + broken.reply["content"]["evalue"]
        assert "The session was released" in broken.reply["content"]["evalue"], broken.reply
        assert "has not answered" not in broken.stream("stderr")
        assert "freed" in ipy.execute(f"%%backend_run -s {other}\nprint('freed')").stream()
        replaced = ipy.execute(f"%backend_session restart {other}", timeout=30)
        assert "cannot restart sessions" in replaced.stream() and "fresh session" in replaced.stream()
        again = ipy.execute(f"%%backend_run -s {other} --image {image}\nprint('fresh')", timeout=CREATE_TIMEOUT)
        assert again.status == "ok" and "fresh\n" in again.stream(), again.messages
    finally:
        ipy.shutdown()
    # The IPython kernel's session goes when that kernel exits.
    deadline = time.monotonic() + TERMINATE_TIMEOUT
    while manager_stack.psql("SELECT count(*) FROM sessions WHERE status NOT IN ('TERMINATED', 'CANCELLED') "
                             "AND name NOT LIKE 'bj-shared-%'")[0][0] != "0":
        assert time.monotonic() < deadline, manager_stack.psql(
            "SELECT name, status FROM sessions WHERE status NOT IN ('TERMINATED', 'CANCELLED')")
        time.sleep(0.5)


def test_no_session_left_behind(manager_stack):
    """Runs last in this module: only the shared session (destroyed after the module) may remain."""
    deadline = time.monotonic() + TERMINATE_TIMEOUT
    while True:
        rows = manager_stack.psql("SELECT name, status FROM sessions WHERE status NOT IN ('TERMINATED', 'CANCELLED')")
        if all(name.startswith("bj-shared-") for name, _ in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.5)
