"""Background jobs: a cell run on a session of its own, whose output outlives whoever follows it.

Why the output is kept in the session, not in the execute API: a run's output is handed out once,
to whichever call takes it.  Measured on the embedded server: a follower killed (SIGKILL) after it
had taken a response but before it had written it down lost those lines for good; the next
follower, continuing the same run id, got only what came after.  Backend.AI's execute API has no
acknowledgement or offset to take it again.  So a job runs as a process of its own in its session
(started by an invisible snippet from the session's IPython, so on the same interpreter), which
appends every output record to ``~/.backend_jupyter/jobs/<name>/output.jsonl`` there.  A follower
reads that file from a byte offset with another invisible snippet and appends exactly those bytes
to the local journal (journal.py), so the local journal's size *is* the offset to go on from:
a follower killed at any moment loses nothing, and the next one takes up where the journal ends.

The records are the journal's: ``{"k": "stdout"|"stderr", "text"}``, ``{"k": "display", "data",
"metadata", "display_id", "update"}``, ``{"k": "clear", "wait"}``, ``{"k": "error", "ename",
"evalue", "traceback"}`` and, last, ``{"k": "end", "status": "finished"|"failed"|"cancelled"}``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .client import APIClient, BackendError, ComputeSession, SessionNotFound
from .fastjson import loads
from .journal import ENDED, Journal
from .managed import Settings
from .remote import run_snippet, snippet

log = logging.getLogger("backend_jupyter.jobs")

POLL_SECONDS = 0.5  # a follower reads the job's output this often
READ_LIMIT = 256 * 1024  # bytes a follower takes per read (one execute call carries them whole)
JOBS_DIR = ".backend_jupyter/jobs"  # in the session's home

# The job's own process: the cell in a fresh IPython shell whose output goes to the job's file.
RUNNER = r'''
import json, os, signal, sys, time
d = sys.argv[1]
out = open(os.path.join(d, "output.jsonl"), "ab", buffering=0)

def rec(obj):
    out.write((json.dumps(obj) + "\n").encode("ascii"))

class Stream:
    encoding = "utf-8"
    def __init__(self, name):
        self.name, self.parts, self.last = name, [], time.monotonic()
    def write(self, text):
        self.parts.append(text)
        if "\n" in text or sum(map(len, self.parts)) > 65536 or time.monotonic() - self.last > 0.2:
            self.flush()
        return len(text)
    def flush(self):
        if self.parts:
            rec({"k": self.name, "text": "".join(self.parts)})
            self.parts = []
        self.last = time.monotonic()
    def isatty(self):
        return False
    def fileno(self):
        raise OSError("no file descriptor")

sys.stdout, sys.stderr = Stream("stdout"), Stream("stderr")

def cancel(signum, frame):
    raise KeyboardInterrupt("cancelled")

signal.signal(signal.SIGTERM, cancel)
code = open(os.path.join(d, "code.py")).read()
params = json.load(open(os.path.join(d, "params.json")))
status = "failed"
try:
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kw):
            sys.stdout.flush(); sys.stderr.flush()
            rec({"k": "display", "data": data, "metadata": metadata or {},
                 "display_id": (transient or {}).get("display_id"), "update": bool(update)})
        def clear_output(self, wait=False):
            sys.stdout.flush(); sys.stderr.flush()
            rec({"k": "clear", "wait": bool(wait)})

    shell = InteractiveShell.instance(display_pub_class=Publisher)
    errors = []

    def show(etype=None, evalue=None, tb=None, tb_offset=None, exception_only=False, running_compiled_code=False):
        etype, evalue, tb = sys.exc_info() if etype is None else (etype, evalue, tb)
        stb = shell.InteractiveTB.structured_traceback(etype, evalue, tb, tb_offset=tb_offset)
        errors.append({"k": "error", "ename": etype.__name__, "evalue": str(evalue), "traceback": stb})

    shell.showtraceback = show
    shell.showsyntaxerror = lambda *a, **k: show()
    shell.user_ns.update(params)
    try:
        result = shell.run_cell(code, store_history=False)
        status = "finished" if result.success else "failed"
    except KeyboardInterrupt:
        status = "cancelled"
    sys.stdout.flush(); sys.stderr.flush()
    for error in errors:
        if error["ename"] == "KeyboardInterrupt":
            status = "cancelled"
        rec(error)
except ImportError:  # no IPython in this image: plain Python
    import traceback
    namespace = dict(params, __name__="__main__")
    try:
        exec(compile(code, "<job>", "exec"), namespace)
        status = "finished"
    except KeyboardInterrupt:
        status = "cancelled"
    except BaseException as e:
        sys.stdout.flush(); sys.stderr.flush()
        rec({"k": "error", "ename": type(e).__name__, "evalue": str(e),
             "traceback": traceback.format_exc().splitlines()})
sys.stdout.flush(); sys.stderr.flush()
rec({"k": "end", "status": status})
'''

_START_BODY = """\
    import os, subprocess, sys
    d = os.path.join(os.path.expanduser('~'), params['dir'], params['name'])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, 'code.py'), 'w') as f:
        f.write(params['code'])
    with open(os.path.join(d, 'params.json'), 'w') as f:
        json.dump(params['params'], f)
    open(os.path.join(d, 'output.jsonl'), 'ab').close()
    log = open(os.path.join(d, 'runner.log'), 'ab')
    p = subprocess.Popen([sys.executable, '-c', params['runner'], d], stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
    with open(os.path.join(d, 'pid'), 'w') as f:
        f.write(str(p.pid))
    print(marker + json.dumps({'pid': p.pid}))
"""

_READ_BODY = """\
    import os
    d = os.path.join(os.path.expanduser('~'), params['dir'], params['name'])
    with open(os.path.join(d, 'output.jsonl'), 'rb') as f:
        f.seek(params['offset'])
        data = f.read(params['limit'])
    data = data[:data.rfind(b'\\n') + 1]
    exit_path = os.path.join(d, 'exit')
    code = None
    if os.path.exists(exit_path):
        code = int(open(exit_path).read())
    else:
        pid = int(open(os.path.join(d, 'pid')).read())
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status) if hasattr(os, 'waitstatus_to_exitcode') else status
        except ChildProcessError:  # not this interpreter's child (it was restarted): ask the system
            code = None if os.path.exists('/proc/%d' % pid) else -1
        if code is not None:
            with open(exit_path, 'w') as f:
                f.write(str(code))
    print(marker + json.dumps({'data': data.decode('ascii'), 'exit': code}))
"""

_CANCEL_BODY = """\
    import os, signal
    d = os.path.join(os.path.expanduser('~'), params['dir'], params['name'])
    try:
        os.kill(int(open(os.path.join(d, 'pid')).read()), signal.SIGTERM)
        print(marker + json.dumps('signalled'))
    except (OSError, ValueError):
        print(marker + json.dumps('gone'))
"""


def job_session_name(job: str) -> str:
    return f"job-{job}"


async def start(api: APIClient, journal: Journal, settings: Settings, *, code: str, params: dict) -> None:
    """Create the job's session and start its process there; the journal says ``running`` after."""
    info = journal.info()
    session = await ComputeSession.get_or_create(api, settings.image, name=info.session, mounts=list(settings.mounts),
                                                 environ=settings.environ, resources=settings.resources)
    answer = await run_snippet(session, snippet(_START_BODY, {"dir": JOBS_DIR, "name": info.name, "code": code,
                                                             "params": params, "runner": RUNNER}))
    if not isinstance(answer, dict) or "pid" not in answer:
        raise BackendError(f"The job {info.name} could not be started in its session")
    journal.update(status="running", started=time.time(), pid=int(answer["pid"]))


async def read_once(session: ComputeSession, journal: Journal) -> tuple[list[dict], int | None]:
    """Take what the job wrote since the journal's end into the journal: the new records and the
    job process's exit code (None while it runs)."""
    answer = await run_snippet(session, snippet(_READ_BODY, {"dir": JOBS_DIR, "name": journal.name,
                                                            "offset": journal.size(), "limit": READ_LIMIT}))
    if not isinstance(answer, dict):
        if not await session.exists():
            raise SessionNotFound(404, {"title": f"No session {session.name}"})
        raise BackendError(f"Could not read the output of job {journal.name}")
    data = answer["data"].encode("ascii")
    journal.append_raw(data)
    return [loads(line) for line in data.splitlines() if line], answer.get("exit")


async def follow(api: APIClient, journal: Journal, on_records=None, *, poll: float = POLL_SECONDS) -> str:
    """Follow a job to its end, writing its journal (this process must lead it: Journal.lead());
    ``on_records(records)`` sees each batch.  Returns the final status; the session is destroyed
    at the end unless the job is kept."""
    info = journal.info()
    session = ComputeSession(api, info.session)
    status = info.status
    while status not in ENDED:
        try:
            records, exit_code = await read_once(session, journal)
        except SessionNotFound:
            journal.update(status="failed", ended=time.time(), error=f"its session {info.session} is gone")
            return "failed"
        if on_records is not None and records:
            on_records(records)
        end = next((r for r in records if r.get("k") == "end"), None)
        if end is not None:
            status = end.get("status", "finished")
            journal.update(status=status, ended=time.time(), exit_code=exit_code)
        elif exit_code is not None and not records:  # gone without its last word (killed, out of memory)
            status = "failed"
            journal.update(status=status, ended=time.time(), exit_code=exit_code,
                           error=f"the job's process ended without finishing (exit code {exit_code})")
        elif not records:
            await asyncio.sleep(poll)
    if not info.keep:
        try:
            await session.destroy()
        except SessionNotFound:
            pass
    return status


async def cancel(api: APIClient, journal: Journal) -> None:
    """Stop the job's process (it records ``cancelled``); following it then ends it."""
    session = ComputeSession(api, journal.info().session)
    await run_snippet(session, snippet(_CANCEL_BODY, {"dir": JOBS_DIR, "name": journal.name}))
