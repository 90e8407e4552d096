"""Compute sessions of the embedded server: one local Jupyter kernel each.

A :class:`LocalSession` owns a work directory (its ``/home/work``), a :class:`LocalKernel` started
there with jupyter_client, and its runs (see runs.py; batch runs in batch.py).  The kernel's IOPub,
stdin and shell messages are routed to the run whose request they answer.  :class:`SessionRegistry`
holds all sessions of the server, each owned by one access key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from jupyter_client import AsyncKernelManager

from ..config import session_base_environ
from ..protocol import EXEC_TIMEOUT, FINISHED
from .batch import BatchJob
from .errors import (
    InvalidAPIParameters,
    KernelCreationFailed,
    NoSuchSession,
    ServiceUnavailable,
    SessionAlreadyExists,
)
from .forking import ForkProvisioner
from .images import OWN_PYTHON, SPEC_MANAGER, image_kernel
from .records import message_record
from .runs import Run, Runs
from .stats import ProcessStats

log = logging.getLogger("backend_jupyter.server")

KERNEL_READY_TIMEOUT = 60.0
# Run by the session's IPython at start: ipykernel sends unflushed prints on a 0.2 s timer; a
# shorter one makes the first line of a cell arrive promptly (still few messages under floods).
STARTUP_SCRIPT = """\
import sys as _sys
for _stream in (_sys.stdout, _sys.stderr):
    if hasattr(_stream, "flush_interval"):
        _stream.flush_interval = 0.02
del _sys, _stream
"""
# The session's IPython profile: input history in memory (``%history``, ``In``, ``_i`` work for the
# session's life) instead of a SQLite file committed after every cell, which cost as much CPU per
# trivial cell as running it.
PROFILE_CONFIG = """\
c.HistoryManager.hist_file = ":memory:"
"""
LOST_IDLE_GRACE = 1.0
OUTPUT_MESSAGES = frozenset({"stream", "display_data", "update_display_data", "execute_result", "error"})

Handler = Callable[[dict], None]


def parent_id(msg: dict) -> str:
    """The id of the request a kernel message answers."""
    return msg.get("parent_header", {}).get("msg_id", "")


class LocalKernel:
    """A session's kernel process and the channels the server listens on.

    Its own requests (kernel_info and the stdin probe while starting, completions) are answered
    here; every IOPub, stdin and shell message also goes to the session's handler for it.
    """

    def __init__(self, kernel_name: str, label: str, *, iopub: Handler, stdin: Handler, shell: Handler):
        self.kernel_name = kernel_name
        self.label = label  # the session's name, for the log
        self._handlers = {"iopub": iopub, "stdin": stdin, "shell": shell}
        self.km: AsyncKernelManager | None = None
        self.kc = None
        self._pumps: list[asyncio.Task] = []
        self._shell_waiters: dict[str, asyncio.Future] = {}
        self._iopub_probes: dict[str, asyncio.Future] = {}

    async def start(self, cwd: Path, env: dict[str, str], log_file: IO[bytes]) -> None:
        """Start the kernel in ``cwd``, its output to ``log_file``, and listen on its channels."""
        self.km = AsyncKernelManager(kernel_name=self.kernel_name, kernel_spec_manager=SPEC_MANAGER)
        if self.kernel_name == OWN_PYTHON:  # forked from a process with ipykernel imported (forking.py)
            self.km.kernel_id = str(uuid.uuid4())
            self.km.provisioner = ForkProvisioner(kernel_id=self.km.kernel_id, kernel_spec=self.km.kernel_spec,
                                                  provisioner_config={}, parent=self.km)
        await self.km.start_kernel(cwd=str(cwd), env=env, stdout=log_file, stderr=log_file)
        self.kc = self.km.client()
        self.kc.start_channels()
        self._pumps = [
            asyncio.create_task(self._pump(self.kc.iopub_channel, self._on_iopub)),
            asyncio.create_task(self._pump(self.kc.stdin_channel, self._handlers["stdin"])),
            asyncio.create_task(self._pump(self.kc.shell_channel, self._on_shell)),
        ]

    async def stop(self) -> None:
        for task in self._pumps:
            task.cancel()
        for task in self._pumps:
            with contextlib.suppress(BaseException):
                await task
        self._pumps = []
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None:
            with contextlib.suppress(Exception):
                await self.km.shutdown_kernel(now=True)

    async def restart(self) -> None:
        await self.km.restart_kernel(now=False)

    @property
    def pid(self) -> int | None:
        provisioner = self.km.provisioner if self.km is not None else None
        return getattr(provisioner, "pid", None)

    async def interrupt(self) -> None:
        if self.km is not None and await self.km.is_alive():
            await self.km.interrupt_kernel()

    async def died(self) -> bool:
        """The kernel was started and is no longer running."""
        return self.km is not None and not await self.km.is_alive()

    def execute(self, code: str) -> str:
        """Send ``code`` to run; the request's message id."""
        return self.kc.execute(code, allow_stdin=True, stop_on_error=False)

    def input(self, text: str) -> None:
        self.kc.input(text)

    async def complete(self, code: str, cursor: int, timeout: float) -> dict:
        """The kernel's complete_reply content (``asyncio.TimeoutError`` if it does not answer)."""
        reply = await self._shell_request(self.kc.complete(code, cursor), timeout)
        return reply["content"]

    async def wait_ready(self) -> bool:
        """Wait until the kernel answers on shell *and* its IOPub output reaches us; False if it
        does not in time, or dies.

        A kernel_info_request makes the kernel publish busy/idle on IOPub; seeing that proves the
        subscription is live (right after a (re)start, a SUB socket may still be connecting and
        would silently miss the first cell's output).
        """
        deadline = time.monotonic() + KERNEL_READY_TIMEOUT
        while time.monotonic() < deadline:
            msg_id = self.kc.kernel_info()
            seen = asyncio.get_running_loop().create_future()
            self._iopub_probes[msg_id] = seen
            try:
                await self._shell_request(msg_id, 1.0)
                await asyncio.wait_for(seen, 0.5)
                if await self._probe_stdin():
                    return True
            except asyncio.TimeoutError:
                if not await self.km.is_alive():
                    break
            finally:
                self._iopub_probes.pop(msg_id, None)
        return False

    async def _probe_stdin(self) -> bool:
        """Check that an input request reaches us.  The kernel's stdin ROUTER drops messages for a
        peer whose connection is not up yet, which would leave the first ``input()`` hanging; a
        silent ``input()`` (answered by the session's stdin handler) proves the route."""
        msg_id = self.kc.execute("input()", silent=True, store_history=False, allow_stdin=True)
        try:
            await self._shell_request(msg_id, 0.3)
            return True
        except asyncio.TimeoutError:
            log.info("session %s: the stdin probe got no input request; retrying", self.label)
            await self.km.interrupt_kernel()  # unblock the unanswered input() and try again
            with contextlib.suppress(asyncio.TimeoutError):
                await self._shell_request(msg_id, 1.0)
            return False

    async def _shell_request(self, msg_id: str, timeout: float) -> dict:
        waiter = asyncio.get_running_loop().create_future()
        self._shell_waiters[msg_id] = waiter
        try:
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._shell_waiters.pop(msg_id, None)

    # -- channels --------------------------------------------------------------------------------
    async def _pump(self, channel, handler: Handler) -> None:
        while True:
            try:
                msg = await channel.get_msg()
            except asyncio.CancelledError:
                raise
            except Exception:  # a closed socket while shutting down
                log.debug("channel pump stopped", exc_info=True)
                return
            try:
                handler(msg)
            except Exception:
                log.exception("could not handle a kernel message")

    def _on_iopub(self, msg: dict) -> None:
        probe = self._iopub_probes.get(parent_id(msg))
        if probe is not None and not probe.done():
            probe.set_result(True)
        self._handlers["iopub"](msg)

    def _on_shell(self, msg: dict) -> None:
        waiter = self._shell_waiters.pop(parent_id(msg), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)
        self._handlers["shell"](msg)


@dataclass
class SessionSpec:
    owner: str
    name: str
    image: str
    type: str = "interactive"
    tag: str | None = None
    environ: dict[str, str] = field(default_factory=dict)
    mounts: dict[str, Path] = field(default_factory=dict)  # mount point (relative) → folder dir
    mount_names: list[str] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    client: str = ""  # the User-Agent of the request that created it


class LocalSession:
    """A compute session served by a local kernel in its own work directory."""

    def __init__(self, spec: SessionSpec, root: Path, exec_timeout: float = 0.0):
        self.spec = spec
        self.id = uuid.uuid4()
        self.kernel_name = image_kernel(spec.image)
        self.root = root / str(self.id)
        self.workdir = self.root / "work"
        self.log_path = self.root / "kernel.log"
        self.exec_timeout = exec_timeout
        self.created_at = datetime.now(timezone.utc)
        self.last_used = time.monotonic()
        self.status = "PENDING"
        self.runs = Runs(exec_timeout, self.watchdog)
        self.kernel = LocalKernel(self.kernel_name, spec.name, iopub=self._on_iopub,
                                  stdin=self._on_stdin, shell=self._on_shell)
        self._log_file: IO[bytes] | None = None
        self.start_task: asyncio.Task | None = None
        self._stats = ProcessStats()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def owner(self) -> str:
        return self.spec.owner

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def live_stat(self) -> dict | None:
        """The kernel process tree's CPU and memory, as an agent reports a container's."""
        return self._stats.sample(self.kernel.pid) if self.status == "RUNNING" else None

    @property
    def busy(self) -> bool:
        return self.runs.busy

    def mount_roots(self) -> list[Path]:
        return list(self.spec.mounts.values())

    # -- life cycle ------------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        env = session_base_environ()
        env.update(
            HOME=str(self.workdir),
            IPYTHONDIR=str(self.root / "ipython"),
            MPLCONFIGDIR=str(self.root / "mpl"),
            PYTHONUNBUFFERED="1",
            BACKENDAI_SESSION_ID=str(self.id),
            BACKENDAI_SESSION_NAME=self.name,
        )
        env.update(self.spec.environ)
        return env

    def _prepare_home(self) -> None:
        """The work directory with the mounted folders linked in, and the IPython profile."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        profile = self.root / "ipython" / "profile_default"
        (profile / "startup").mkdir(parents=True, exist_ok=True)
        (profile / "startup" / "00-backend-jupyter.py").write_text(STARTUP_SCRIPT)
        (profile / "ipython_config.py").write_text(PROFILE_CONFIG)
        for point, folder in self.spec.mounts.items():
            link = self.workdir / point
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                raise InvalidAPIParameters(f"Mount point {point!r} already exists in the session.")
            link.symlink_to(folder, target_is_directory=True)

    async def start(self) -> None:
        self._prepare_home()
        self._log_file = open(self.log_path, "ab")
        try:
            await self.kernel.start(self.workdir, self.environment(), self._log_file)
            await self._wait_ready()
        except Exception as e:
            log.exception("session %s: the %s kernel did not start", self.name, self.kernel_name)
            await self.destroy()
            reason = str(e) or type(e).__name__  # a bare TimeoutError has no text of its own
            raise KernelCreationFailed(f"The {self.kernel_name!r} kernel did not start: {reason}") from e
        self.status = "RUNNING"

    async def _wait_ready(self) -> None:
        if not await self.kernel.wait_ready():
            self.status = "ERROR"
            raise KernelCreationFailed("The kernel did not become ready.")

    async def destroy(self) -> None:
        self.status = "TERMINATED"
        for run in self.runs:
            if run.task:
                run.task.cancel()
            run.finish(130)
        await self.kernel.stop()
        if self._log_file is not None:
            self._log_file.close()
        self.runs.close()
        shutil.rmtree(self.root, ignore_errors=True)

    async def restart(self) -> None:
        """Reset the interpreter state; the work directory and its files stay."""
        for run in self.runs:
            await run.stop_task()
            run.emit(["stderr", "The session was restarted.\n"])
            run.finish(130)
        self.runs.clear()
        await self.kernel.restart()
        await self._wait_ready()

    async def interrupt(self) -> None:
        for run in self.runs:
            await run.stop_task()
        await self.kernel.interrupt()

    # -- kernel messages -------------------------------------------------------------------------
    def _on_iopub(self, msg: dict) -> None:
        run = self.runs.for_msg(parent_id(msg))
        if run is None:
            return
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind in OUTPUT_MESSAGES:
            if kind == "error":
                run.had_error = True
            record = message_record(kind, content)
            if record is not None:
                run.emit(record)
        elif kind == "status" and content.get("execution_state") == "idle":
            # Done, once the reply is in too: it travels on another socket and may come second,
            # and only it says whether the run failed (a UsageError publishes no error message).
            run.idle = True
            if run.replied:
                self.runs.finish_query(run)
        else:
            run.last_output = time.monotonic()

    def _on_stdin(self, msg: dict) -> None:
        if msg["header"]["msg_type"] != "input_request":
            return
        run = self.runs.for_msg(parent_id(msg))
        if run is None:  # nobody can answer: unblock the kernel
            self.kernel.input("")
            return
        content = msg["content"]
        run.ask_input(content.get("prompt", ""), bool(content.get("password")))

    def _on_shell(self, msg: dict) -> None:
        run = self.runs.for_msg(parent_id(msg))
        if run is not None and msg["header"]["msg_type"] == "execute_reply":
            run.replied = True
            if msg["content"].get("status") != "ok":
                run.had_error = True
            if run.idle:
                self.runs.finish_query(run)

    async def watchdog(self, run: Run) -> None:
        """Called while a client waits on ``run``: end it if the kernel died, time ran out, or
        the kernel's reply or its final IOPub ``idle`` was lost."""
        if run.done:
            return
        now = time.monotonic()
        if run.deadline is not None and now > run.deadline:
            await self.interrupt()
            run.emit(["stderr", f"Execution timed out after {self.exec_timeout:g} s.\n"])
            run.finish(None, EXEC_TIMEOUT)
        elif run.task is None and await self.kernel.died():
            run.emit(["stderr", "The session's kernel died unexpectedly; it will be replaced.\n"])
            run.finish(130)
            self.status = "ERROR"
        elif (run.replied or run.idle) and now - run.last_output > LOST_IDLE_GRACE:
            self.runs.finish_query(run)

    # -- requests --------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        return self.runs.get(run_id)

    def start_query(self, code: str, run_id: str | None) -> Run:
        run = self.runs.new(run_id)
        self.runs.bind(run, self.kernel.execute(code))
        return run

    def send_input(self, run: Run, text: str) -> None:
        if run.pending_input is None:
            raise InvalidAPIParameters("This run is not waiting for input.")
        run.pending_input = None
        self.kernel.input(text)

    def start_batch(self, options: dict, run_id: str | None) -> Run:
        run = self.runs.new(run_id)
        job = BatchJob(run, options, workdir=self.workdir, environ=self.environment,
                       kernel_name=self.kernel_name)
        run.task = asyncio.create_task(job())
        return run

    async def complete(self, code: str, cursor: int, timeout: float = 10.0) -> dict:
        try:
            content = await self.kernel.complete(code, cursor, timeout)
        except asyncio.TimeoutError:
            return {"status": FINISHED, "completions": []}
        return {
            "status": FINISHED,
            "completions": content.get("matches", []),
            "cursor_start": content.get("cursor_start", cursor),
            "cursor_end": content.get("cursor_end", cursor),
        }

    def logs(self, limit: int = 1 << 20) -> str:
        """The end of the kernel's own stdout/stderr (at most ``limit`` bytes)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class SessionRegistry:
    """All sessions of the server, found by (owner access key, name or id)."""

    def __init__(self, root: Path, *, idle_timeout: float = 3600.0, exec_timeout: float = 0.0):
        self.root = root
        self.idle_timeout = idle_timeout
        self.exec_timeout = exec_timeout
        self.sessions: dict[uuid.UUID, LocalSession] = {}
        self._create_lock = asyncio.Lock()

    def list(self, owner: str) -> list[LocalSession]:
        return [s for s in self.sessions.values() if s.owner == owner]

    def find(self, owner: str, name: str) -> LocalSession | None:
        for session in self.sessions.values():
            if session.owner == owner and (session.name == name or str(session.id) == name):
                return session
        return None

    def get(self, owner: str, name: str) -> LocalSession:
        """A running session of ``owner``; a dead one is dropped and reported gone."""
        session = self.find(owner, name)
        if session is None or session.status == "TERMINATED":
            raise NoSuchSession(f"No session named {name!r}.")
        if session.status == "ERROR":  # its kernel died: gone, as on a real cluster
            self.sessions.pop(session.id, None)
            asyncio.create_task(session.destroy())
            raise NoSuchSession(f"Session {name!r} has terminated (its kernel died).")
        if session.status == "PENDING":
            raise ServiceUnavailable(f"Session {name!r} is still starting; retry in a moment.")
        session.touch()
        return session

    async def get_or_create(self, spec: SessionSpec, *, reuse: bool = True) -> tuple[LocalSession, bool]:
        """The session ``spec`` names, started if new; and whether it was created."""
        async with self._create_lock:
            session = await self._reusable(spec, reuse)
            created = session is None
            if session is None:
                session = LocalSession(spec, self.root, self.exec_timeout)
                self.sessions[session.id] = session
                session.start_task = asyncio.create_task(self._start(session))
        # Shielded: a client that gives up waiting must not leave a half-started session behind,
        # and a second caller for the same name waits for the same start.
        await asyncio.shield(session.start_task)
        session.touch()
        return session, created

    async def _reusable(self, spec: SessionSpec, reuse: bool) -> LocalSession | None:
        """The live session already named ``spec.name`` (None if there is none); a 400 if the
        client asked not to reuse one, or it runs another image."""
        existing = self.find(spec.owner, spec.name)
        if existing is not None and existing.status == "ERROR":
            self.sessions.pop(existing.id, None)
            await existing.destroy()
            existing = None
        if existing is None:
            return None
        same_image = image_kernel(spec.image) == existing.kernel_name
        if not reuse or not same_image:
            raise SessionAlreadyExists(
                f"Session {spec.name!r} already exists"
                + ("" if same_image else f" with image {existing.spec.image!r}") + ".",
                data={"existingSessionId": str(existing.id)},
            )
        return existing

    async def _start(self, session: LocalSession) -> None:
        try:
            await session.start()
        except BaseException:
            self.sessions.pop(session.id, None)
            raise

    async def destroy(self, session: LocalSession) -> None:
        self.sessions.pop(session.id, None)
        await session.destroy()

    async def reap_idle(self) -> list[str]:
        """Destroy the sessions idle longer than the idle timeout, and those whose kernel died."""
        now = time.monotonic()
        reaped = []
        for session in list(self.sessions.values()):
            idle = now - session.last_used
            if session.status == "ERROR" or (
                self.idle_timeout > 0 and idle > self.idle_timeout and not session.busy
            ):
                reaped.append(session.name)
                await self.destroy(session)
        return reaped

    async def close(self) -> None:
        sessions = list(self.sessions.values())
        self.sessions.clear()
        await asyncio.gather(*(s.destroy() for s in sessions), return_exceptions=True)
