"""The asyncio client and the execute loop against a real embedded server process on 127.0.0.1,
at a v4 version (/kernel) and at the newest version (/session), over polling and websocket."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import secrets
import time
import warnings

import pytest

from backend_jupyter.client import (
    APIClient,
    AuthenticationFailed,
    ComputeSession,
    RequestTimeout,
    ServerError,
    ServerUnreachable,
    SessionNotFound,
    VFolder,
    VFolderNotFound,
)
from backend_jupyter.config import Config
from backend_jupyter.display import record_bundle
from backend_jupyter.execution import (
    Finished,
    InputRequest,
    Output,
    RunFailed,
    StepFinished,
    run_cell,
)
from tests.fault_proxy import FaultProxy
from tests.sdk.data import PNG_B64

VERSIONS = {"session": None, "kernel": "v4.20190615"}
TRANSPORTS = ("poll", "ws")


def arun(coro, timeout: float = 120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def config_for(server, **changes) -> Config:
    return Config(endpoints=(server.endpoint,), access_key=server.access_key,
                  secret_key=server.secret_key).replace(**changes)


async def collect(session, code, answers=(), **kw):
    """Events of one run, answering input requests from ``answers``."""
    answers = list(answers)
    events = []
    async for event in run_cell(session, code, **kw):
        events.append(event)
        if isinstance(event, InputRequest):
            event.answer(answers.pop(0))
    return events


def text_of(events, stream="stdout"):
    return "".join(e.text for e in events if isinstance(e, Output) and e.stream == stream)


@pytest.fixture(params=list(VERSIONS))
def family(request):
    return request.param


@pytest.fixture(params=TRANSPORTS)
def transport(request):
    return request.param


def with_session(server, family, body, **session_kw):
    async def go():
        async with APIClient(config_for(server, api_version=VERSIONS[family])) as api:
            assert api.session_prefix == family
            session = await ComputeSession.get_or_create(api, "python", name=f"c-{secrets.token_hex(4)}", **session_kw)
            try:
                return await body(api, session)
            finally:
                await session.destroy()
    return arun(go())


def test_negotiates_the_newest_version(server):
    async def go():
        async with APIClient(config_for(server)) as api:
            return api.api_version, api.session_prefix
    assert arun(go()) == ("v7.20230615", "session")


def test_records_in_order(server, family, transport):
    code = (
        "import sys\nfrom IPython.display import display, HTML, Image\nimport base64\n"
        "print('one'); sys.stdout.flush()\nprint('two', file=sys.stderr); sys.stderr.flush()\n"
        f"display(Image(data=base64.b64decode('{PNG_B64}'), format='png'))\n"
        "display(HTML('<p>h</p>'))\nprint('three')\n"
    )

    async def body(api, session):
        return await collect(session, code, transport=transport)

    events = with_session(server, family, body)
    shape = [(type(e).__name__, getattr(e, "stream", getattr(e, "kind", None))) for e in events]
    assert shape == [("Output", "stdout"), ("Output", "stderr"), ("Display", "media"), ("Display", "html"),
                     ("Output", "stdout"), ("Finished", None)]
    assert [e.text for e in events if isinstance(e, Output)] == ["one\n", "two\n", "three\n"]
    assert record_bundle(events[2].kind, events[2].data)["image/png"] == PNG_B64
    assert record_bundle(events[3].kind, events[3].data)["text/html"] == "<p>h</p>"
    assert events[-1].exit_code == 0


def test_input_and_password(server, family, transport):
    code = "import getpass\na = input('first? ')\nb = getpass.getpass('pw? ')\nprint(a, b)"

    async def body(api, session):
        return await collect(session, code, ["x1", "y2"], transport=transport)

    events = with_session(server, family, body)
    requests = [e for e in events if isinstance(e, InputRequest)]
    assert [(r.prompt, r.password) for r in requests] == [("first? ", False), ("pw? ", True)]
    assert text_of(events) == "x1 y2\n"  # prompts are not repeated as output
    assert isinstance(events[-1], Finished) and events[-1].exit_code == 0


def test_error_exit_code(server, transport):
    async def body(api, session):
        return await collect(session, "raise KeyError('nope')", transport=transport)

    events = with_session(server, "session", body)
    assert "KeyError" in text_of(events, "stderr")
    assert events[-1] == Finished(1, "finished")


def test_batch_mode(server, family, transport, tmp_path):
    (tmp_path / "job.py").write_text("print('job ran')\n")

    async def body(api, session):
        await session.upload(["job.py"], basedir=tmp_path)
        return await collect(session, "", mode="batch", transport=transport,
                             options={"clean": "true", "build": "echo build-step", "exec": "python job.py"})

    events = with_session(server, family, body)
    steps = [e.status for e in events if isinstance(e, StepFinished)]
    assert steps == ["clean-finished", "build-finished"]
    assert text_of(events) == "build-step\njob ran\n"
    assert events[-1] == Finished(0, "finished")


def test_interrupt_mid_run(server, family, transport):
    async def body(api, session):
        events = []
        async for event in run_cell(session, "import time\nprint('go', flush=True)\ntime.sleep(30)", transport=transport):
            events.append(event)
            if isinstance(event, Output):
                await session.interrupt()
        after = await collect(session, "print('next')", transport=transport)
        return events, after

    events, after = with_session(server, family, body)
    assert "KeyboardInterrupt" in text_of(events, "stderr")
    assert isinstance(events[-1], Finished)
    assert text_of(after) == "next\n"


def test_cancelling_the_consumer_interrupts_the_run(server, transport):
    async def body(api, session):
        seen = asyncio.Event()

        async def consume():
            async for event in run_cell(session, "import time\nprint('x', flush=True)\ntime.sleep(300)",
                                        transport=transport):
                if isinstance(event, Output):
                    seen.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(seen.wait(), 20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        started = time.monotonic()
        after = await collect(session, "print('alive')", transport=transport)
        return after, time.monotonic() - started

    after, waited = with_session(server, "session", body)
    assert text_of(after) == "alive\n"
    # Not interrupted, the next cell would wait out the 300 s sleep; interrupted, it runs in about 1 s.
    assert waited < 30, waited


def test_restart_and_complete(server, family):
    async def body(api, session):
        await collect(session, "unique_name_for_completion = 3")
        completion = await session.complete("x = unique_name_for_comp")
        await session.restart()
        after = await collect(session, "print('unique_name_for_completion' in dir())")
        return completion, after

    completion, after = with_session(server, family, body)
    assert "unique_name_for_completion" in completion["completions"]
    assert completion["cursor_end"] == len("x = unique_name_for_comp")
    assert text_of(after) == "False\n"


def test_upload_download_round_trip(server, family, tmp_path):
    payload = os.urandom(700_000)
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "deep").mkdir()
    (tmp_path / "up" / "deep" / "blob.bin").write_bytes(payload)

    async def body(api, session):
        names = await session.upload(["deep/blob.bin"], basedir=tmp_path / "up")
        listing = await session.list_files("deep")
        got = await session.download(["deep/blob.bin"], dest=tmp_path / "down")
        return names, listing, got

    names, listing, got = with_session(server, family, body)
    assert names == ["deep/blob.bin"]
    assert [(e.name, e.size) for e in listing] == [("blob.bin", len(payload))]
    assert got == ["blob.bin"]
    assert (tmp_path / "down" / "blob.bin").read_bytes() == payload


@pytest.mark.parametrize("version", [None, "v5.20191215", "v8.20240915"])
def test_vfolder_lifecycle(server, tmp_path, version):
    """v7 (tus / token download), v5 (multipart) and v8 (id-keyed paths)."""
    name = f"cvf-{secrets.token_hex(3)}"
    payload = os.urandom(300_000)
    (tmp_path / "src" / "d").mkdir(parents=True)
    (tmp_path / "src" / "d" / "f.bin").write_bytes(payload)

    async def go():
        async with APIClient(config_for(server, api_version=version)) as api:
            await VFolder.create(api, name)
            folder = VFolder(api, name)
            try:
                assert name in [f["name"] for f in await VFolder.list(api)]
                await folder.mkdir("made/here")
                await folder.upload(["d/f.bin"], basedir=tmp_path / "src")
                entries = await folder.list_files("d")
                await folder.download(["d/f.bin"], dest=tmp_path / "dst")
                session = await ComputeSession.get_or_create(api, "python", name=f"m-{name}", mounts=[f"{name}:mnt"])
                try:
                    events = await collect(session, "import os\nprint(sorted(os.listdir('mnt')), os.path.getsize('mnt/d/f.bin'))")
                finally:
                    await session.destroy()
                await folder.delete_files(["made"], recursive=True)
                remaining = [e["name"] for e in await folder.list_files(".")]
                info = await folder.info()
            finally:
                await folder.delete()
            gone = not await VFolder(api, name).exists()
            return entries, events, remaining, info, gone

    entries, events, remaining, info, gone = arun(go())
    assert [(e["name"], e["size"]) for e in entries] == [("f.bin", len(payload))]
    assert (tmp_path / "dst" / "d" / "f.bin").read_bytes() == payload
    assert text_of(events) == f"['d', 'made'] {len(payload)}\n"
    assert remaining == ["d"] and info["name"] == name and gone


def test_typed_errors(server, tmp_path):
    async def go():
        errors = {}
        async with APIClient(config_for(server, secret_key="z" * 40)) as bad:
            try:
                await ComputeSession(bad, "whatever").info()
            except AuthenticationFailed as e:
                errors["auth"] = e
        async with APIClient(config_for(server)) as api:
            try:
                await ComputeSession(api, "no-such-session").info()
            except SessionNotFound as e:
                errors["session"] = e
            try:
                await VFolder(api, "no-such-folder").info()
            except VFolderNotFound as e:
                errors["folder"] = e
            try:
                await ComputeSession.get_or_create(api, "python", name="mounts-missing", mounts=["no-such-folder"])
            except VFolderNotFound as e:
                errors["mount"] = e
        return errors

    errors = arun(go())
    assert errors["auth"].status == 401 and "BACKEND_ACCESS_KEY" in str(errors["auth"])
    assert errors["session"].status == 404 and errors["session"].title == "No such session."
    assert errors["folder"].error_code == "vfolder_read_not-found"
    assert "no-such-folder" in errors["mount"].msg
    for error in errors.values():
        assert "z" * 40 not in str(error) and server.secret_key not in str(error)


def test_secret_is_never_in_repr(server):
    async def go():
        async with APIClient(config_for(server)) as api:
            return repr(api), repr(api.config)
    for text in arun(go()):
        assert server.secret_key not in text


def test_server_unreachable_and_failover(server):
    dead = "http://127.0.0.1:9"

    async def go():
        with pytest.raises(ServerUnreachable) as err:
            async with APIClient(Config(endpoints=(dead,), access_key="a", secret_key="b")):
                pass
        async with APIClient(config_for(server, endpoints=(dead, server.endpoint))) as api:
            session = await ComputeSession.get_or_create(api, "python", name=f"fo-{secrets.token_hex(3)}")
            events = await collect(session, "print('failover ok')")
            await session.destroy()
        return err.value, events

    error, events = arun(go())
    assert "127.0.0.1:9" in str(error) and "BACKEND_ENDPOINT" in str(error)
    assert text_of(events) == "failover ok\n"


@pytest.fixture
def proxy(server):
    p = FaultProxy(server.endpoint).start()
    yield p
    p.stop()


def test_503_then_recovering_is_retried_for_idempotent_calls_only(server, proxy):
    async def go():
        async with APIClient(config_for(server, endpoints=(proxy.endpoint,))) as api:
            session = await ComputeSession.get_or_create(api, "python", name=f"r-{secrets.token_hex(3)}")
            proxy.inject(2, status=503, match="GET /session/")
            info = await session.info()  # retried twice, then answered
            proxy.inject(1, status=503, match="POST /session/")
            proxy.seen.clear()
            events = await collect(session, "print('ran')", transport="poll")
            executes = [s for s in proxy.seen if s[0] == "POST"]
            after = await collect(session, "print('ran again')", transport="poll")
            await session.destroy()
            return info, events, executes, after

    info, events, executes, after = arun(go())
    assert info["status"] == "RUNNING"
    assert isinstance(events[-1], RunFailed) and isinstance(events[-1].error, ServerError)
    assert len(executes) == 1  # the execute was not re-sent
    assert text_of(after) == "ran again\n"


def test_500_mid_run_then_session_still_usable(server, proxy):
    """The 26.9.6 manager answers 500 in the middle of a run (HTML display): clear error, usable after."""
    async def go():
        async with APIClient(config_for(server, endpoints=(proxy.endpoint,))) as api:
            session = await ComputeSession.get_or_create(api, "python", name=f"h-{secrets.token_hex(3)}")
            proxy.seen.clear()
            proxy.inject(1, status=500, match="POST /session/", skip=1)  # the query passes, a continue fails
            events = await collect(session, "import time\nprint('a', flush=True)\ntime.sleep(0.3)\nprint('b')",
                                   transport="poll")
            await asyncio.sleep(0.5)  # the remote run ends meanwhile
            after = await collect(session, "print('still here')", transport="poll")
            bodies = [b for m, _, b in proxy.seen if m == "POST" and b]
            await session.destroy()
            return events, after, bodies

    events, after, bodies = arun(go())
    assert isinstance(events[-1], RunFailed)
    assert "HTTP 500" in str(events[-1].error)
    assert text_of(after) == "still here\n"
    assert all(b.get("runId") == b.get("run_id") for b in bodies)


def test_run_id_is_sent_under_both_keys(server, proxy):
    async def go():
        async with APIClient(config_for(server, endpoints=(proxy.endpoint,))) as api:
            session = await ComputeSession.get_or_create(api, "python", name=f"k-{secrets.token_hex(3)}")
            proxy.seen.clear()
            await collect(session, "x = input('?')\nprint(x)", ["v"], transport="poll")
            await session.destroy()
            return [b for m, _, b in proxy.seen if m == "POST" and b and b.get("mode") in ("input", "continue")]

    bodies = arun(go())
    assert bodies and all(b["runId"] and b["runId"] == b["run_id"] for b in bodies)


def test_read_timeout(server, proxy):
    async def go():
        async with APIClient(config_for(server, endpoints=(proxy.endpoint,), read_timeout=0.5)) as api:
            proxy.inject(10, delay=2.0, match="GET /folders")
            with pytest.raises(RequestTimeout):
                await VFolder.list(api)

    arun(go())


def test_no_unclosed_session_warnings(server):
    async def go():
        async with APIClient(config_for(server)) as api:
            await VFolder.list(api)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arun(go())
        gc.collect()
    assert not [w for w in caught if "Unclosed" in str(w.message)]


def test_display_mapping():
    assert record_bundle("media", ["image/svg+xml", "<svg/>"])["image/svg+xml"] == "<svg/>"
    uri = "data:image/png;base64," + PNG_B64
    assert record_bundle("media", ["image/png", uri])["image/png"] == PNG_B64
    svg_uri = "data:image/svg+xml;base64," + base64.b64encode(b"<svg id='b'/>").decode()
    assert record_bundle("media", ["image/svg+xml", svg_uri])["image/svg+xml"] == "<svg id='b'/>"
    assert record_bundle("html", "<i>x</i>")["text/html"] == "<i>x</i>"
    unknown = record_bundle("media", ["application/x-weird", "payload"])
    assert unknown == {"text/plain": "[application/x-weird] payload"}
    assert "[log]" in record_bundle("log", "raw")["text/plain"]
    drawing = '[[0, "canvas", 100, 50, "#ffffffff", "#000000ff"], [0, "obj", 0, ["line", 1, 2, 30, 40, "#ff0000ff"]], ' \
              '[0, "obj", 1, ["circle", 10, 10, 5, "#000000ff", "#00ff00ff", 0]], [0, "update", 1, "x", 20]]'
    svg = record_bundle("media", ["application/x-sorna-drawing", drawing])["image/svg+xml"]
    assert svg.startswith("<svg") and '<line x1="1"' in svg and '<circle cx="20"' in svg
    # the current kernels send base64 msgpack: [[0, "canvas", 10, 10, "#fff", "#000"]]
    packed = bytes([0x91, 0x96, 0x00, 0xA6]) + b"canvas" + bytes([0x0A, 0x0A, 0xA4]) + b"#fff" + bytes([0xA4]) + b"#000"
    svg = record_bundle("media", ["application/x-sorna-drawing", base64.b64encode(packed).decode()])["image/svg+xml"]
    assert 'width="10"' in svg and 'fill="#fff"' in svg
    broken = record_bundle("media", ["application/x-sorna-drawing", "!!notdata"])
    assert "could not be rendered" in broken["text/plain"]
