"""Background jobs: a cell run on a session of its own, whose output outlives whoever follows it.

Why the output is kept in the session, not in the execute API: a run's output is handed out once,
to whichever call takes it.  Measured on the embedded server: a follower killed (SIGKILL) after it
had taken a response but before it had written it down lost those lines for good; the next
follower, continuing the same run id, got only what came after.  Backend.AI's execute API has no
acknowledgement or offset to take it again.  So a job runs as a process of its own in its session
(``jobrunner.py``, shipped with ``valuecodec.py`` into ``~/.backend_jupyter/jobs/<name>/`` there
and started by an invisible snippet from the session's IPython, so on the same interpreter),
which appends every output record to ``output.jsonl`` beside it.  A follower reads that file from
a byte offset with another invisible snippet and appends exactly those bytes to the local journal
(journal.py), so the local journal's size *is* the offset to go on from: a follower killed at any
moment loses nothing, and the next one takes up where the journal ends.

The records are the journal's (jobrunner.py lists them); the last, ``end``, also says which
variables the job kept (its ``-o`` ones and its small JSON-able ones): the follower downloads them
into the journal's ``vars/`` before it marks the job ended, for ``%backend_job wait -o``.  A job's
``-i`` values travel the other way, from the journal's ``inputs/`` when its session starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path

from .client import APIClient, BackendError, ComputeSession, SessionNotFound
from .fastjson import dumps, loads
from .journal import ENDED, JobExists, Journal, all_journals, jobs_root
from .managed import Settings
from .remote import run_snippet, snippet

log = logging.getLogger("backend_jupyter.jobs")

POLL_SECONDS = 0.5  # a follower reads the job's output this often
READ_LIMIT = 256 * 1024  # bytes a follower takes per read (one execute call carries them whole)
JOBS_DIR = ".backend_jupyter/jobs"  # in the session's home



def shipped(module: str) -> str:
    """The source of one of this package's self-contained modules, to write into a session."""
    return (Path(__file__).parent / f"{module}.py").read_text(encoding="utf-8")


_START_BODY = """\
    import os, shutil, sys
    d = os.path.join(os.path.expanduser('~'), params['dir'], params['name'])
    os.makedirs(d, exist_ok=True)
    for name, text in params['files'].items():
        with open(os.path.join(d, name), 'w') as f:
            f.write(text)
    if params['inputs']:  # uploaded beside the work dir's other transfers: moved into the job's directory
        shutil.rmtree(os.path.join(d, 'in'), ignore_errors=True)
        os.replace(os.path.join(os.path.expanduser('~'), params['inputs']), os.path.join(d, 'in'))
    open(os.path.join(d, 'output.jsonl'), 'ab').close()
    log = os.open(os.path.join(d, 'runner.log'), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)  # "multi-threaded": the child uses none of them
        pid = os.fork()
    if pid == 0:  # the job's process: this interpreter, IPython imported already, without the kernel
        code = 1
        try:
            import gc, runpy
            gc.freeze()  # what the kernel left is never collected here (its sockets are not this process's)
            os.setsid()
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            import io  # IPython's own open() refuses fd 2
            sys.stdout = sys.stderr = io.open(2, 'w', buffering=1, closefd=False)  # not the kernel's streams
            for fd in [int(f) for f in os.listdir('/proc/self/fd')]:
                if fd > 2:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            sys.path.insert(0, d)
            runpy.run_path(os.path.join(d, 'runner.py'), run_name='__main__')
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()  # into runner.log
        finally:
            os._exit(code)  # nothing of the kernel's to clean up: its atexit would talk to its sockets
    os.close(log)
    with open(os.path.join(d, 'pid'), 'w') as f:
        f.write(str(pid))
    print(marker + json.dumps({'pid': pid}))
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
    import os, signal, time
    d = os.path.join(os.path.expanduser('~'), params['dir'], params['name'])
    try:
        pid = int(open(os.path.join(d, 'pid')).read())
        deadline = time.monotonic() + params['wait']
        # Until its handler is in place a SIGTERM would kill the process without its last word.
        while not os.path.exists(os.path.join(d, 'ready')) and time.monotonic() < deadline:
            if not os.path.exists('/proc/%d' % pid):
                break
            time.sleep(0.02)
        os.kill(pid, signal.SIGTERM)
        print(marker + json.dumps('signalled'))
    except (OSError, ValueError):
        print(marker + json.dumps('gone'))
"""
CANCEL_WAIT = 10.0  # seconds a cancel waits for a starting job's process to take it


def job_session_name(job: str) -> str:
    return f"job-{job}"


async def start(api: APIClient, journal: Journal) -> None:
    """Create the job's session (with the settings it was submitted with), send its inputs and
    start its process there; the journal says ``running`` after."""
    info = journal.info()
    settings = Settings.from_dict(info.settings) if info.settings else Settings()
    session = await ComputeSession.get_or_create(api, settings.image, name=info.session, mounts=list(settings.mounts),
                                                 environ=settings.environ, resources=settings.resources)
    inputs = ""
    if info.inputs:
        inputs = f"{JOBS_DIR}/.inputs-{info.name}"
        await session.upload([f"{name}.{fmt}" for name, fmt in info.inputs.items()], basedir=journal.inputs_dir,
                             dest=inputs)
    spec = {"params": info.params, "inputs": info.inputs, "outputs": info.outputs, "allow_pickle": info.allow_pickle}
    files = {"runner.py": shipped("jobrunner"), "valuecodec.py": shipped("valuecodec"), "cell.py": info.code,
             "spec.json": dumps(spec)}
    answer = await run_snippet(session, snippet(_START_BODY, {"dir": JOBS_DIR, "name": info.name, "files": files,
                                                             "inputs": inputs}))
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
    """Follow a job to its end, writing its journal (this process must lead it: Journal.lead()),
    then take the variables it kept.  Returns the final status; the session is destroyed at the
    end unless the job is kept."""
    info = journal.info()
    session = ComputeSession(api, info.session)
    last = journal.last_record()  # a follower killed after taking the end but before acting on it
    end, exit_code = (last if last and last.get("k") == "end" else None), None
    try:
        while end is None:
            records, exit_code = await read_once(session, journal)
            end = next((r for r in records if r.get("k") == "end"), None)
            if end is None and exit_code is not None and not records:  # gone without its last word (killed)
                journal.update(status="failed", ended=time.time(), exit_code=exit_code,
                               error=f"the job's process ended without finishing (exit code {exit_code})")
                break
            if not records:
                await asyncio.sleep(poll)
        if end is not None:
            kept = await fetch_kept(session, journal, end.get("vars") or {})
            journal.update(status=end.get("status", "finished"), ended=time.time(), exit_code=exit_code, kept=kept)
    except SessionNotFound:
        journal.update(status="failed", ended=time.time(), error=f"its session {info.session} is gone")
        return "failed"
    if not info.keep:
        with contextlib.suppress(SessionNotFound):
            await session.destroy()
    return journal.info().status


async def fetch_kept(session: ComputeSession, journal: Journal, report: dict) -> dict:
    """Download the variables the job kept (its end record's report) into the journal's vars/."""
    files = {name: f"{JOBS_DIR}/{journal.name}/vars/{name}.{entry[0]}" for name, entry in report.items()
             if isinstance(entry, list)}
    if files:
        try:
            await session.download(list(files.values()), dest=journal.vars_dir)
        except BackendError as e:
            log.warning("job %s: its variables could not be fetched: %s", journal.name, e)
            return {name: {"error": f"could not be fetched from its session: {e}"} if name in files else entry
                    for name, entry in report.items()}
    return report


async def cancel(api: APIClient, journal: Journal) -> None:
    """Stop the job's process (it records ``cancelled``); following it then ends it."""
    session = ComputeSession(api, journal.info().session)
    await run_snippet(session, snippet(_CANCEL_BODY, {"dir": JOBS_DIR, "name": journal.name, "wait": CANCEL_WAIT}))


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

    def submit(self, api: APIClient, infos: list, parallel: int, inputs: Path | None = None) -> list[Journal]:
        """Create the jobs' journals (all names checked first; the files of their ``-i`` values
        copied from ``inputs``) and start following each: at most ``parallel`` run at once, the
        others wait their turn as ``starting``."""
        taken = [info.name for info in infos if Journal(self.where / info.name).info_path.exists()]
        if taken:
            raise JobExists(f"A job named {taken[0]!r} exists already (%backend_job clean removes ended ones)")
        journals = [Journal.create(self.where, info) for info in infos]
        for journal, info in zip(journals, infos, strict=True):
            for name, fmt in info.inputs.items():
                journal.inputs_dir.mkdir(exist_ok=True)
                shutil.copyfile(inputs / f"{name}.{fmt}", journal.inputs_dir / f"{name}.{fmt}")
        turn = asyncio.Semaphore(parallel)
        for journal in journals:
            journal.lead()
            self.tasks[journal.name] = asyncio.ensure_future(self._run(api, journal, turn))
        return journals

    async def _run(self, api: APIClient, journal: Journal, turn: asyncio.Semaphore | None) -> None:
        try:
            info = journal.info()
            if info.pid is None:  # not started yet (or its starter exited before it could)
                self.waiting.add(journal.name)
                async with turn or contextlib.nullcontext():
                    self.waiting.discard(journal.name)
                    await start(api, journal)
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

    def adopt(self, api: APIClient) -> None:
        """Follow the jobs nobody follows (their starter exited, restarted or was killed)."""
        for journal in all_journals(self.where):
            task = self.tasks.get(journal.name)
            if (task is None or task.done()) and journal.info().status not in ENDED and journal.lead():
                self.tasks[journal.name] = asyncio.ensure_future(self._run(api, journal, None))
