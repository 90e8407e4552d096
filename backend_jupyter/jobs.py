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
import contextlib
import logging
import time
from pathlib import Path

from .client import APIClient, BackendError, ComputeSession, SessionNotFound
from .fastjson import loads
from .journal import ENDED, JobExists, Journal, all_journals, jobs_root
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
        self.name, self.parts = name, []
    def write(self, text):
        self.parts.append(text)
        if "\n" in text or sum(map(len, self.parts)) > 65536:  # line by line, as a terminal shows it
            self.flush()
        return len(text)
    def flush(self):
        if self.parts:
            rec({"k": self.name, "text": "".join(self.parts)})
            self.parts = []
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


def run():
    """The cell, in a fresh IPython shell where there is one: its status."""
    try:
        from IPython.core.displaypub import DisplayPublisher
        from IPython.core.interactiveshell import InteractiveShell
    except ImportError:  # no IPython in this image: plain Python
        import traceback
        try:
            exec(compile(code, "<job>", "exec"), dict(params, __name__="__main__"))
            return "finished"
        except KeyboardInterrupt:
            return "cancelled"
        except BaseException as e:
            sys.stdout.flush(); sys.stderr.flush()
            rec({"k": "error", "ename": type(e).__name__, "evalue": str(e),
                 "traceback": traceback.format_exc().splitlines()})
            return "failed"

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kw):
            sys.stdout.flush(); sys.stderr.flush()
            rec({"k": "display", "data": data, "metadata": metadata or {},
                 "display_id": (transient or {}).get("display_id"), "update": bool(update)})
        def clear_output(self, wait=False):
            sys.stdout.flush(); sys.stderr.flush()
            rec({"k": "clear", "wait": bool(wait)})

    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False  # no history database in the session's profile
    shell = InteractiveShell.instance(config=config, display_pub_class=Publisher)
    errors = []

    def show(etype=None, evalue=None, tb=None, tb_offset=None, exception_only=False, running_compiled_code=False):
        etype, evalue, tb = sys.exc_info() if etype is None else (etype, evalue, tb)
        stb = shell.InteractiveTB.structured_traceback(etype, evalue, tb, tb_offset=tb_offset)
        errors.append({"k": "error", "ename": etype.__name__, "evalue": str(evalue), "traceback": stb})

    shell.showtraceback = show
    shell.showsyntaxerror = lambda *a, **k: show()
    shell.user_ns.update(params)
    status = "finished" if shell.run_cell(code, store_history=False).success else "failed"
    sys.stdout.flush(); sys.stderr.flush()
    for error in errors:
        rec(error)
        if error["ename"] == "KeyboardInterrupt":
            status = "cancelled"
    return status


status = "failed"
try:
    status = run()
except KeyboardInterrupt:  # cancelled before or after the cell itself
    status = "cancelled"
finally:
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
    # First whether the process has ended, then the file: once it has, all it wrote is there.
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
    with open(os.path.join(d, 'output.jsonl'), 'rb') as f:
        f.seek(params['offset'])
        data = f.read(params['limit'])
        if data and b'\\n' not in data:  # one record longer than the limit: take it whole
            data += f.readline()
    data = data[:data.rfind(b'\\n') + 1]
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


async def follow(api: APIClient, journal: Journal, *, poll: float = POLL_SECONDS) -> str:
    """Follow a job to its end, writing its journal (this process must lead it: Journal.lead()).
    Returns the final status; the session is destroyed at the end unless the job is kept."""
    info = journal.info()
    session = ComputeSession(api, info.session)
    status = info.status
    while status not in ENDED:
        try:
            records, exit_code = await read_once(session, journal)
        except SessionNotFound:
            journal.update(status="failed", ended=time.time(), error=f"its session {info.session} is gone")
            return "failed"
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


class Board:
    """The jobs this process follows, each a task on the front-end's event loop: those it started,
    and those it took up from the journal because nobody followed them (their starter exited)."""

    def __init__(self, root=None):
        self.root = root
        self.tasks: dict[str, asyncio.Task] = {}
        self.waiting: set[str] = set()  # jobs waiting for their turn (--parallel): nothing started yet
        self.watchers: set[asyncio.Task] = set()  # the live panels being updated

    def watch(self, coro) -> None:
        """Keep updating a panel in the background (held here until it is done)."""
        task = asyncio.ensure_future(coro)
        self.watchers.add(task)
        task.add_done_callback(self.watchers.discard)

    @property
    def where(self) -> Path:
        return self.root or jobs_root()

    def submit(self, api: APIClient, infos: list, settings: Settings, parallel: int) -> list[Journal]:
        """Create the jobs' journals (all names checked first) and start following each: at most
        ``parallel`` run at once, the others wait their turn as ``starting``."""
        taken = [info.name for info in infos if Journal(self.where / info.name).info_path.exists()]
        if taken:
            raise JobExists(f"A job named {taken[0]!r} exists already (%backend_job clean removes ended ones)")
        journals = [Journal.create(self.where, info) for info in infos]
        turn = asyncio.Semaphore(parallel)
        for journal in journals:
            journal.lead()
            self.tasks[journal.name] = asyncio.ensure_future(self._run(api, journal, settings, turn))
        return journals

    async def _run(self, api: APIClient, journal: Journal, settings: Settings, turn: asyncio.Semaphore | None) -> None:
        try:
            info = journal.info()
            if info.pid is None:  # not started yet (or its starter exited before it could)
                self.waiting.add(journal.name)
                async with turn or contextlib.nullcontext():
                    self.waiting.discard(journal.name)
                    await start(api, journal, settings, code=info.code, params=info.params)
                    await follow(api, journal)
            else:
                await follow(api, journal)
        except asyncio.CancelledError:
            raise  # this process goes away: the job goes on, the next process follows it
        except Exception as e:  # noqa: BLE001 - the job's end, in words
            log.warning("job %s: %s", journal.name, e)
            with contextlib.suppress(OSError):
                journal.update(status="failed", ended=time.time(), error=str(e))
        finally:
            self.waiting.discard(journal.name)
            journal.close()

    def adopt(self, api: APIClient, settings: Settings) -> None:
        """Follow the jobs nobody follows (their starter exited, restarted or was killed)."""
        for journal in all_journals(self.where):
            task = self.tasks.get(journal.name)
            if (task is None or task.done()) and journal.info().status not in ENDED and journal.lead():
                self.tasks[journal.name] = asyncio.ensure_future(self._run(api, journal, settings, None))
