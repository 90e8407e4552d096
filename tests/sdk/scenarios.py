"""Conformance scenarios, run *inside* an official backend.ai-client SDK venv.

Usage: python scenarios.py <workdir>   (BACKEND_ENDPOINT/ACCESS_KEY/SECRET_KEY in the environment;
BJ_OTHER_SECRET_KEY holds a wrong secret for the bad-key scenario).  Prints one JSON report:
{scenario: {"ok": bool, ...observations} }.  Each scenario is independent, so one failure does not
hide the others.  Written for Python 3.7+ and SDK generations 19.09 (API v4, ``Kernel``),
23.09 and 26.09 (``ComputeSession``).
"""

import asyncio
import json
import os
import sys
import time
import traceback
import uuid

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import AsyncSession, Session
from data import PNG_B64  # noqa: E402  (this script's own directory)

try:
    from ai.backend.client import __version__ as SDK_VERSION
except ImportError:  # pragma: no cover
    SDK_VERSION = "?"

REPORT = {}
WORK = sys.argv[1]
UNIQ = uuid.uuid4().hex[:6]


def scenario(fn):
    name = fn.__name__
    started = time.monotonic()
    try:
        result = fn() or {}
        result["ok"] = True
    except Exception as e:
        result = {"ok": False, "error": "".join(traceback.format_exception(type(e), e, e.__traceback__))[-3000:]}
    result["seconds"] = round(time.monotonic() - started, 3)
    REPORT[name] = result
    return fn


def sessions_api(sess):
    return getattr(sess, "ComputeSession", None) or sess.Kernel


def get_or_create(sess, name, **kw):
    api = sessions_api(sess)
    if hasattr(sess, "ComputeSession"):
        return api.get_or_create("python", name=name, **kw)
    return api.get_or_create("python", client_token=name, **kw)


def run_loop(cs, code, inputs=(), mode="query", opts=None):
    """The synchronous execute loop, as the SDK's own CLI (exec_loop_sync) does it."""
    inputs = list(inputs)
    console, statuses, exit_codes, options = [], [], [], []
    run_id = None
    result = cs.execute(run_id, code, mode=mode, opts=opts)
    for _ in range(2000):
        run_id = result["runId"]
        console.extend([list(x) for x in result["console"]])
        statuses.append(result["status"])
        exit_codes.append(result["exitCode"])
        options.append(result["options"])
        status = result["status"]
        if status in ("finished", "exec-timeout"):
            break
        if status == "waiting-input":
            result = cs.execute(run_id, inputs.pop(0), mode="input")
        else:
            result = cs.execute(run_id, "", mode="continue")
    return {"console": console, "statuses": statuses, "exit_codes": exit_codes, "options": options,
            "run_id": run_id}


def stdout_of(console, kind="stdout"):
    return "".join(d for k, d in console if k == kind)


with Session() as sess:
    NAME = "conf-" + UNIQ
    state = {}

    @scenario
    def hello():
        api_version = getattr(sess, "api_version", None)
        return {"api_version": list(api_version) if api_version else None, "sdk": SDK_VERSION}

    @scenario
    def create():
        cs = get_or_create(sess, NAME)
        again = get_or_create(sess, NAME)
        state["cs"] = cs
        return {"created": cs.created, "again_created": again.created, "status": getattr(cs, "status", None),
                "id": str(getattr(cs, "id", "") or getattr(cs, "kernel_id", ""))}

    @scenario
    def query_outputs():
        code = (
            "import sys, base64\n"
            "from IPython.display import display, HTML, Image\n"
            "print('hello stdout')\n"
            "sys.stdout.flush()\n"
            "print('hello stderr', file=sys.stderr)\n"
            "sys.stderr.flush()\n"
            "display(Image(data=base64.b64decode('%s'), format='png'))\n"
            "display(HTML('<i>it</i>'))\n" % PNG_B64
        )
        return run_loop(state["cs"], code)

    @scenario
    def error_exit_code():
        return run_loop(state["cs"], "raise ValueError('boom')")

    @scenario
    def input_and_getpass():
        code = "import getpass\na = input('who? ')\nb = getpass.getpass('pass? ')\nprint(a, b[::-1])"
        return run_loop(state["cs"], code, inputs=["ann", "drowssap"])

    @scenario
    def batch_with_uploads():
        src = os.path.join(WORK, "batch")
        os.makedirs(os.path.join(src, "lib"), exist_ok=True)
        with open(os.path.join(src, "main.py"), "w") as f:
            f.write("from lib.util import twice\nprint('twice', twice(21))\n")
        with open(os.path.join(src, "lib", "util.py"), "w") as f:
            f.write("def twice(x):\n    return 2 * x\n")
        with open(os.path.join(src, "lib", "__init__.py"), "w") as f:
            f.write("")
        cwd = os.getcwd()
        os.chdir(src)
        try:
            state["cs"].upload(["main.py", "lib/util.py", "lib/__init__.py"])
        finally:
            os.chdir(cwd)
        opts = {"clean": "rm -rf out", "build": "mkdir -p out && echo building", "exec": "python main.py",
                "buildLog": True}
        return run_loop(state["cs"], "", mode="batch", opts=opts)

    @scenario
    def interrupt():
        import threading

        cs = state["cs"]

        def interrupt_from_another_thread():
            # An API session of its own, as a user's second thread needs: 23.09+ keep the session
            # per thread (a ContextVar), and 19.9's runs one call at a time on a worker thread that
            # hands results back in order to whichever caller asks first, so a second thread
            # sharing it could take the execute's answer and leave the execute the interrupt's None.
            with Session() as other:
                if hasattr(other, "ComputeSession"):
                    other.ComputeSession(NAME).interrupt()
                else:
                    other.Kernel(cs.kernel_id).interrupt()

        timer = threading.Timer(0.7, interrupt_from_another_thread)
        timer.start()
        started = time.monotonic()
        out = run_loop(cs, "import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
        out["elapsed"] = time.monotonic() - started
        out["after"] = run_loop(cs, "print('alive')")
        return out

    @scenario
    def restart():
        cs = state["cs"]
        run_loop(cs, "zz = 1\nopen('restart-proof.txt', 'w').write('kept')")
        cs.restart()
        return run_loop(cs, "print('zz' in dir(), open('restart-proof.txt').read())")

    @scenario
    def download_and_list_files():
        cs = state["cs"]
        run_loop(cs, "import os\nos.makedirs('out', exist_ok=True)\nopen('out/data.bin','wb').write(bytes(range(256))*8)")
        dest = os.path.join(WORK, "downloaded")
        os.makedirs(dest, exist_ok=True)
        cs.download(["out/data.bin"], dest=dest)
        with open(os.path.join(dest, "data.bin"), "rb") as f:
            data = f.read()
        listing = cs.list_files("out")
        files = json.loads(listing["files"])
        return {"equal": data == bytes(range(256)) * 8, "files": [[e["filename"], e["size"]] for e in files],
                "errors": listing.get("errors")}

    @scenario
    def complete():
        cs = state["cs"]
        run_loop(cs, "conformance_variable = 1")
        result = cs.complete("conformance_var", opts={"row": 0, "col": 15, "line": "conformance_var", "post": ""})
        return {"result": result}

    @scenario
    def info_and_logs():
        cs = state["cs"]
        info = cs.get_info()
        run_loop(cs, "import os\nos.write(2, b'marker-for-the-sdk-logs\\n')")  # into the kernel's log
        logs = cs.get_logs().get("result", {}).get("logs")
        return {"status": info.get("status"), "logs_type": type(logs).__name__,
                "marker_in_logs": isinstance(logs, str) and "marker-for-the-sdk-logs\n" in logs}

    @scenario
    def missing_session_error():
        api = sessions_api(sess)
        ghost = api("no-such-session-" + UNIQ) if hasattr(sess, "ComputeSession") else api("no-such-session-" + UNIQ)
        try:
            ghost.get_info()
        except BackendAPIError as e:
            return {"status": e.status, "title": e.data.get("title"), "type": e.data.get("type")}
        raise AssertionError("no error raised")

    @scenario
    def vfolder_lifecycle():
        vf_name = "confvf-" + UNIQ
        created = sess.VFolder.create(vf_name)
        src = os.path.join(WORK, "vfsrc")
        os.makedirs(src, exist_ok=True)
        payload = os.urandom(300000)
        with open(os.path.join(src, "blob.bin"), "wb") as f:
            f.write(payload)
        cwd = os.getcwd()
        os.chdir(src)
        try:
            sess.VFolder(vf_name).upload(["blob.bin"])
        finally:
            os.chdir(cwd)
        listed = [f["name"] for f in sess.VFolder.list()]
        files = sess.VFolder(vf_name).list_files(".")
        names = [e["filename"] for e in json.loads(files["files"])] if "files" in files else \
            [e["name"] for e in files["items"]]
        dest = os.path.join(WORK, "vfdest")
        os.makedirs(dest, exist_ok=True)
        os.chdir(dest)
        try:
            sess.VFolder(vf_name).download(["blob.bin"])
        finally:
            os.chdir(cwd)
        with open(os.path.join(dest, "blob.bin"), "rb") as f:
            downloaded = f.read()
        # a session that mounts it reads the file
        mname = "confmount-" + UNIQ
        cs = get_or_create(sess, mname, mounts=[vf_name])
        try:
            out = run_loop(cs, "import hashlib\nprint(hashlib.sha256(open('%s/blob.bin','rb').read()).hexdigest())" % vf_name)
        finally:
            cs.destroy()
        import hashlib
        sess.VFolder(vf_name).delete()
        after = [f["name"] for f in sess.VFolder.list()]
        return {"created_name": created.get("name"), "listed": vf_name in listed, "files": names,
                "equal": downloaded == payload, "mounted_read": stdout_of(out["console"]).strip(),
                "expected_hash": hashlib.sha256(payload).hexdigest(), "deleted": vf_name not in after}

    @scenario
    def stream_execute():
        if not hasattr(sess, "ComputeSession"):
            return {"skipped": "stream_execute is exercised for the 23.09+ SDKs"}

        async def go():
            async with AsyncSession() as asess:
                cs = asess.ComputeSession(NAME)
                if hasattr(cs, "id") and state["cs"].id is not None:
                    cs.id = state["cs"].id
                console, statuses = [], []
                async with cs.stream_execute("x = input('ws? ')\nprint('got', x)", mode="query") as ws:
                    async for msg in ws:
                        data = json.loads(msg.data)
                        statuses.append(data["status"])
                        console.extend(data.get("console") or [])
                        if data["status"] == "waiting-input":
                            await ws.send_str("via-ws")
                        elif data["status"] == "finished":
                            break
                return {"console": console, "statuses": statuses}

        return asyncio.get_event_loop().run_until_complete(go()) if sys.version_info < (3, 10) else asyncio.run(go())

    @scenario
    def destroy():
        state["cs"].destroy()
        try:
            state["cs"].get_info()
        except BackendAPIError as e:
            return {"after_status": e.status}
        raise AssertionError("session still there after destroy")

    @scenario
    def bad_key_error():
        from ai.backend.client.config import APIConfig

        cfg = APIConfig(endpoint=os.environ["BACKEND_ENDPOINT"], access_key=os.environ["BACKEND_ACCESS_KEY"],
                        secret_key=os.environ["BJ_OTHER_SECRET_KEY"])
        try:
            with Session(config=cfg) as bad:
                sessions_api(bad).get_or_create("python", **({"name": "never-" + UNIQ}
                                                              if hasattr(bad, "ComputeSession")
                                                              else {"client_token": "never-" + UNIQ}))
        except BackendAPIError as e:
            return {"status": e.status, "title": e.data.get("title"), "type": e.data.get("type")}
        raise AssertionError("no error raised")

print(json.dumps(REPORT))
