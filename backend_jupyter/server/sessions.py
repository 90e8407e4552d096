"""Compute sessions of the embedded server: one local Jupyter kernel each.

A session owns a work directory (its ``/home/work``), a kernel started there with jupyter_client,
and the runs in flight.  A *run* is one execution (``query`` or ``batch``) as the Backend.AI execute
loop sees it: records are collected from the kernel's IOPub/stdin channels into the run's buffer,
and each ``query``/``continue``/``input`` call takes what is there (see :meth:`Run.collect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel

from ..config import SESSION_NAME_RE, session_base_environ
from .errors import (
    ImageNotFound,
    InvalidAPIParameters,
    KernelCreationFailed,
    ServiceUnavailable,
    SessionAlreadyExists,
    SessionNotFound,
)
from .records import RecordBuffer, bundle_to_record

log = logging.getLogger("backend_jupyter.server")

RUN_ID_RE = re.compile(r"^[\w.:-]{1,64}$", re.ASCII)
OWN_PYTHON = "python"
WRAPPER_KERNEL_PREFIX = "backend"  # the product's own wrapper kernelspecs are never session images
KERNEL_READY_TIMEOUT = 60.0
COALESCE_SECONDS = 0.010
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


class _SpecManager(KernelSpecManager):
    """Kernelspecs offered as images: the server's own Python plus other installed kernels."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == OWN_PYTHON:
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="Python 3 (embedded server)",
                language="python",
                interrupt_mode="signal",
                resource_dir="",
            )
        return super().get_kernel_spec(kernel_name)


SPEC_MANAGER = _SpecManager()


def image_kernel(image: str) -> str:
    """The local kernelspec that serves ``image`` (``python``, ``python:3.11``, ``cr.../python:3.9``)."""
    base = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    if base in ("python", "python3"):
        return OWN_PYTHON
    for candidate in (image, base):
        if candidate.lower().startswith(WRAPPER_KERNEL_PREFIX):
            continue
        try:
            SPEC_MANAGER.get_kernel_spec(candidate)
        except (NoSuchKernel, ValueError, OSError):
            continue
        return candidate
    raise ImageNotFound(f"Unknown image {image!r}; available: {', '.join(available_images())}")


def available_images() -> list[str]:
    names = {OWN_PYTHON}
    for name in SPEC_MANAGER.find_kernel_specs():
        if not name.lower().startswith(WRAPPER_KERNEL_PREFIX) and name != "python3":
            names.add(name)
    return sorted(names)


@dataclass
class RunResult:
    status: str
    run_id: str
    console: list
    exit_code: int | None = None
    options: dict | None = None

    def as_dict(self, *, with_run_id: bool = True) -> dict:
        body = {
            "status": self.status,
            "exitCode": self.exit_code,
            "options": self.options,
            "files": [],
            "console": self.console,
        }
        if with_run_id:
            body = {"runId": self.run_id, **body}
        return body


class Run:
    """One execution and the output it has produced but nobody has taken yet."""

    def __init__(self, session: ComputeSession, run_id: str, exec_timeout: float):
        self.session = session
        self.id = run_id
        self.buffer = RecordBuffer()
        self.changed = asyncio.Event()
        self.lock = asyncio.Lock()
        self.msg_id: str | None = None  # Jupyter execute_request id (query mode)
        self.task: asyncio.Task | None = None  # batch mode worker
        self.done = False
        self.final_status = "finished"
        self.exit_code: int | None = None
        self.had_error = False
        self.replied = False
        self.last_output = time.monotonic()
        self.pending_input: tuple[str, bool] | None = None
        self.input_announced = False
        self.started = time.monotonic()
        self.deadline = self.started + exec_timeout if exec_timeout > 0 else None

    # -- producers -------------------------------------------------------------------------------
    def emit(self, record: list) -> None:
        if self.done:
            return
        self.buffer.append(record)
        self.last_output = time.monotonic()
        self.changed.set()

    def mark(self, status: str, exit_code: int | None) -> None:
        self.buffer.append(("status", status, exit_code))
        self.changed.set()

    def finish(self, exit_code: int | None, status: str = "finished") -> None:
        if self.done:
            return
        self.done = True
        self.exit_code = exit_code
        self.final_status = status
        self.pending_input = None
        self.changed.set()

    def ask_input(self, prompt: str, password: bool) -> None:
        self.pending_input = (prompt, password)
        self.input_announced = False
        self.changed.set()

    # -- the consumer: one execute call ----------------------------------------------------------
    def _ready(self) -> bool:
        return bool(self.buffer) or self.done or (
            self.pending_input is not None and not self.input_announced
        )

    async def _wait(self, timeout: float) -> None:
        self.changed.clear()
        if self._ready():
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)

    async def collect(self, flush_timeout: float) -> RunResult:
        """Wait for output (or the end, or an input request) and take it."""
        async with self.lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + flush_timeout
            while not self._ready():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await self._wait(min(remaining, 0.5))
                await self.session.watchdog(self)
            # Coalesce: a little more output (or the end of the run) usually follows the first
            # piece.  Wait for *changes*, not readiness: the buffer is already non-empty here.
            end = loop.time() + COALESCE_SECONDS
            while self.buffer and not self.done and self.pending_input is None:
                remaining = end - loop.time()
                if remaining <= 0:
                    break
                self.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), remaining)
            return self._take()

    def _take(self) -> RunResult:
        console, marker = self.buffer.take()
        if marker is not None:
            return RunResult(marker[1], self.id, console, marker[2])
        if self.buffer:
            return RunResult("continued", self.id, console)
        if self.pending_input is not None and not self.input_announced:
            prompt, password = self.pending_input
            if prompt:
                if console and console[-1][0] == "stdout":
                    console[-1] = ["stdout", console[-1][1] + prompt]
                else:
                    console.append(["stdout", prompt])
            self.input_announced = True
            return RunResult("waiting-input", self.id, console, None, {"is_password": password})
        if self.done:
            return RunResult(self.final_status, self.id, console, self.exit_code)
        return RunResult("continued", self.id, console)

    @property
    def needs_input(self) -> bool:
        """An announced input request is still unanswered and nothing else happened since."""
        return self.pending_input is not None and not self.buffer and not self.done

    @property
    def drained(self) -> bool:
        return self.done and not self.buffer

    def close(self) -> None:
        self.buffer.close()


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


class ComputeSession:
    """A compute session: a local kernel in its own work directory."""

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
        self.num_queries = 0
        self.runs: dict[str, Run] = {}
        self._runs_by_msg: dict[str, Run] = {}
        self._shell_waiters: dict[str, asyncio.Future] = {}
        self._iopub_probes: dict[str, asyncio.Future] = {}
        self._pumps: list[asyncio.Task] = []
        self._log_file = None
        self.km: AsyncKernelManager | None = None
        self.kc = None
        self.start_task: asyncio.Task | None = None
        self.starting = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def owner(self) -> str:
        return self.spec.owner

    def touch(self) -> None:
        self.last_used = time.monotonic()

    @property
    def busy(self) -> bool:
        return any(not run.done for run in self.runs.values())

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

    async def start(self) -> None:
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
        self._log_file = open(self.log_path, "ab")
        self.km = AsyncKernelManager(kernel_name=self.kernel_name, kernel_spec_manager=SPEC_MANAGER)
        try:
            await self.km.start_kernel(
                cwd=str(self.workdir), env=self.environment(),
                stdout=self._log_file, stderr=self._log_file,
            )
            self.kc = self.km.client()
            self.kc.start_channels()
            self._pumps = [
                asyncio.create_task(self._pump(self.kc.iopub_channel, self._on_iopub)),
                asyncio.create_task(self._pump(self.kc.stdin_channel, self._on_stdin)),
                asyncio.create_task(self._pump(self.kc.shell_channel, self._on_shell)),
            ]
            await self._wait_ready()
        except Exception as e:
            await self.destroy()
            raise KernelCreationFailed(f"The {self.kernel_name!r} kernel did not start: {e}") from e
        self.status = "RUNNING"

    async def destroy(self) -> None:
        self.status = "TERMINATED"
        for run in list(self.runs.values()):
            if run.task:
                run.task.cancel()
            run.finish(130)
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
        if self._log_file is not None:
            self._log_file.close()
        for run in self.runs.values():
            run.close()
        self.runs.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    async def restart(self) -> None:
        """Reset the interpreter state; the work directory and its files stay."""
        for run in list(self.runs.values()):
            await self._stop_batch(run)
            run.emit(["stderr", "The session was restarted.\n"])
            run.finish(130)
        self.runs.clear()
        self._runs_by_msg.clear()
        await self.km.restart_kernel(now=False)
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        """Wait until the kernel answers on shell *and* its IOPub output reaches us.

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
                    return
            except asyncio.TimeoutError:
                if not await self.km.is_alive():
                    break
            finally:
                self._iopub_probes.pop(msg_id, None)
        self.status = "ERROR"
        raise KernelCreationFailed("The kernel did not become ready.")

    async def _probe_stdin(self) -> bool:
        """Check that an input request reaches us.  The kernel's stdin ROUTER drops messages for a
        peer whose connection is not up yet, which would leave the first ``input()`` hanging; a
        silent ``input()`` (answered by :meth:`_on_stdin`) proves the route."""
        msg_id = self.kc.execute("input()", silent=True, store_history=False, allow_stdin=True)
        try:
            await self._shell_request(msg_id, 0.3)
            return True
        except asyncio.TimeoutError:
            log.info("session %s: the stdin probe got no input request; retrying", self.name)
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

    async def interrupt(self) -> None:
        for run in self.runs.values():
            await self._stop_batch(run)
        if self.km is not None and await self.km.is_alive():
            await self.km.interrupt_kernel()

    async def _stop_batch(self, run: Run) -> None:
        if run.task is not None and not run.task.done():
            run.task.cancel()
            with contextlib.suppress(BaseException):
                await run.task

    # -- kernel channels -------------------------------------------------------------------------
    async def _pump(self, channel, handler) -> None:
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
        parent = msg.get("parent_header", {}).get("msg_id", "")
        probe = self._iopub_probes.get(parent)
        if probe is not None and not probe.done():
            probe.set_result(True)
        run = self._runs_by_msg.get(parent)
        if run is None:
            return
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "stream":
            run.emit([content.get("name", "stdout"), content.get("text", "")])
        elif kind in ("display_data", "update_display_data", "execute_result"):
            record = bundle_to_record(content.get("data", {}), content.get("metadata"),
                                      is_result=kind == "execute_result")
            if record is not None:
                run.emit(record)
        elif kind == "error":
            run.had_error = True
            traceback = "\n".join(content.get("traceback") or [])
            if not traceback:
                traceback = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"
            run.emit(["stderr", traceback + "\n"])
        elif kind == "status" and content.get("execution_state") == "idle":
            self._finish_query(run)
        else:
            run.last_output = time.monotonic()

    def _finish_query(self, run: Run) -> None:
        run.finish(1 if run.had_error else 0)
        if run.msg_id:
            self._runs_by_msg.pop(run.msg_id, None)

    def _on_stdin(self, msg: dict) -> None:
        if msg["header"]["msg_type"] != "input_request":
            return
        run = self._runs_by_msg.get(msg.get("parent_header", {}).get("msg_id", ""))
        if run is None:  # nobody can answer: unblock the kernel
            self.kc.input("")
            return
        content = msg["content"]
        run.ask_input(content.get("prompt", ""), bool(content.get("password")))

    def _on_shell(self, msg: dict) -> None:
        parent = msg.get("parent_header", {}).get("msg_id", "")
        waiter = self._shell_waiters.pop(parent, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)
        run = self._runs_by_msg.get(parent)
        if run is not None and msg["header"]["msg_type"] == "execute_reply":
            run.replied = True
            if msg["content"].get("status") != "ok":
                run.had_error = True

    async def watchdog(self, run: Run) -> None:
        """Called while a client waits on ``run``: end it if the kernel died, time ran out, or
        the kernel replied but its final IOPub ``idle`` was lost."""
        if run.done:
            return
        now = time.monotonic()
        if run.deadline is not None and now > run.deadline:
            await self.interrupt()
            run.emit(["stderr", f"Execution timed out after {self.exec_timeout:g} s.\n"])
            run.finish(None, "exec-timeout")
        elif run.task is None and self.km is not None and not await self.km.is_alive():
            run.emit(["stderr", "The session's kernel died unexpectedly; it will be replaced.\n"])
            run.finish(130)
            self.status = "ERROR"
        elif run.replied and now - run.last_output > LOST_IDLE_GRACE:
            self._finish_query(run)

    # -- requests --------------------------------------------------------------------------------
    def _new_run(self, run_id: str | None) -> Run:
        if run_id is None:
            run_id = secrets.token_hex(16)
        elif run_id in self.runs:
            raise InvalidAPIParameters(f"Run id {run_id!r} is already in use in this session.")
        self._forget_drained_runs()
        run = Run(self, run_id, self.exec_timeout)
        self.runs[run_id] = run
        self.num_queries += 1
        return run

    def _forget_drained_runs(self) -> None:
        for run_id, run in list(self.runs.items()):
            if run.drained:
                run.close()
                del self.runs[run_id]

    def get_run(self, run_id: str) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise InvalidAPIParameters(f"No run {run_id!r} in this session (it may have finished).")
        return run

    def start_query(self, code: str, run_id: str | None) -> Run:
        run = self._new_run(run_id)
        run.msg_id = self.kc.execute(code, allow_stdin=True, stop_on_error=False)
        self._runs_by_msg[run.msg_id] = run
        return run

    def send_input(self, run: Run, text: str) -> None:
        if run.pending_input is None:
            raise InvalidAPIParameters("This run is not waiting for input.")
        run.pending_input = None
        self.kc.input(text)

    def start_batch(self, options: dict, run_id: str | None) -> Run:
        run = self._new_run(run_id)
        run.task = asyncio.create_task(self._batch(run, options))
        return run

    async def _batch(self, run: Run, options: dict) -> None:
        steps = [(options.get("clean"), "clean-finished"), (options.get("build"), "build-finished")]
        exec_cmd = options.get("exec")
        try:
            last = 0
            for command, status in steps:
                if not command:
                    continue
                if command == "*":
                    command = self.default_build() if status == "build-finished" else None
                    if command is None:
                        continue
                last = await self._shell(run, command)
                if status == "build-finished" and last != 0 and exec_cmd:
                    run.mark(status, last)
                    run.finish(127)
                    return
                if exec_cmd or status == "clean-finished":
                    run.mark(status, last)
            if exec_cmd:
                last = await self._shell(run, exec_cmd)
            run.finish(last)
        except asyncio.CancelledError:
            run.emit(["stderr", "Interrupted.\n"])
            run.finish(130)
            raise
        except Exception as e:  # a command that cannot even start
            run.emit(["stderr", f"Batch execution failed: {e}\n"])
            run.finish(1)

    def default_build(self) -> str | None:
        """``build: "*"``: the image's default build step."""
        if self.kernel_name == OWN_PYTHON:
            return (
                "if [ -f requirements.txt ]; then python -m pip install -q -r requirements.txt; fi && "
                f"{sys.executable} -m compileall -q ."
            )
        return None

    async def _shell(self, run: Run, command: str) -> int:
        env = self.environment()
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", command, cwd=str(self.workdir), env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )

        async def relay(stream, name):
            while chunk := await stream.read(64 * 1024):
                run.emit([name, chunk.decode("utf-8", "replace")])

        try:
            await asyncio.gather(relay(proc.stdout, "stdout"), relay(proc.stderr, "stderr"))
            return await proc.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            raise

    async def complete(self, code: str, cursor: int, timeout: float = 10.0) -> dict:
        try:
            reply = await self._shell_request(self.kc.complete(code, cursor), timeout)
        except asyncio.TimeoutError:
            return {"status": "finished", "completions": []}
        content = reply["content"]
        return {
            "status": "finished",
            "completions": content.get("matches", []),
            "cursor_start": content.get("cursor_start", cursor),
            "cursor_end": content.get("cursor_end", cursor),
        }

    def info(self) -> dict:
        age_ms = int((datetime.now(timezone.utc) - self.created_at).total_seconds() * 1000)
        return {
            "sessionId": str(self.id),
            "sessionName": self.name,
            "domainName": "default",
            "groupId": None,
            "userId": None,
            "lang": self.spec.image,
            "image": self.spec.image,
            "architecture": os.uname().machine,
            "registry": "local",
            "tag": self.spec.tag,
            "type": self.spec.type,
            "containerId": None,
            "occupiedSlots": "{}",
            "occupiedShares": "{}",
            "environ": "{}",
            "mounts": self.spec.mount_names,
            "status": self.status,
            "statusInfo": None,
            "statusData": None,
            "age": age_ms,
            "creationTime": self.created_at.isoformat(),
            "terminationTime": None,
            "numQueriesExecuted": self.num_queries,
            "lastStat": None,
            # v4 (1.4.x/19.09) field names
            "queryTimeout": -1,
            "idleTimeout": -1,
            "memoryLimit": 0,
            "maxCpuCredit": -1,
            "idle": -1,
            "memoryUsed": -1,
            "cpuCreditUsed": -1,
        }

    def logs(self, limit: int = 1 << 20) -> str:
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
        self.sessions: dict[uuid.UUID, ComputeSession] = {}
        self._create_lock = asyncio.Lock()

    def list(self, owner: str) -> list[ComputeSession]:
        return [s for s in self.sessions.values() if s.owner == owner]

    def find(self, owner: str, name: str) -> ComputeSession | None:
        for session in self.sessions.values():
            if session.owner == owner and (session.name == name or str(session.id) == name):
                return session
        return None

    def get(self, owner: str, name: str) -> ComputeSession:
        session = self.find(owner, name)
        if session is None or session.status == "TERMINATED":
            raise SessionNotFound(f"No session named {name!r}.")
        if session.status == "ERROR":  # its kernel died: gone, as on a real cluster
            self.sessions.pop(session.id, None)
            asyncio.create_task(session.destroy())
            raise SessionNotFound(f"Session {name!r} has terminated (its kernel died).")
        if session.status == "PENDING":
            raise ServiceUnavailable(f"Session {name!r} is still starting; retry in a moment.")
        session.touch()
        return session

    async def get_or_create(self, spec: SessionSpec, *, reuse: bool = True) -> tuple[ComputeSession, bool]:
        async with self._create_lock:
            existing = self.find(spec.owner, spec.name)
            if existing is not None and existing.status == "ERROR":
                self.sessions.pop(existing.id, None)
                await existing.destroy()
                existing = None
            if existing is not None:
                same_image = image_kernel(spec.image) == existing.kernel_name
                if not reuse or not same_image:
                    raise SessionAlreadyExists(
                        f"Session {spec.name!r} already exists"
                        + ("" if same_image else f" with image {existing.spec.image!r}") + ".",
                        data={"existingSessionId": str(existing.id)},
                    )
                created = False
                session = existing
            else:
                session = ComputeSession(spec, self.root, self.exec_timeout)
                self.sessions[session.id] = session
                session.start_task = asyncio.create_task(self._start(session))
                created = True
        # Shielded: a client that gives up waiting must not leave a half-started session behind,
        # and a second caller for the same name waits for the same start.
        await asyncio.shield(session.start_task)
        session.touch()
        return session, created

    async def _start(self, session: ComputeSession) -> None:
        try:
            await session.start()
        except BaseException:
            self.sessions.pop(session.id, None)
            raise

    async def destroy(self, session: ComputeSession) -> None:
        self.sessions.pop(session.id, None)
        await session.destroy()

    async def reap_idle(self) -> list[str]:
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


def validate_session_name(name: Any) -> str:
    if not isinstance(name, str) or not SESSION_NAME_RE.match(name):
        raise InvalidAPIParameters(
            "Invalid session name: use 4-64 letters, digits, '_', '.' or '-' "
            "(starting and ending with a letter or digit)."
        )
    return name


def validate_run_id(run_id: Any) -> str | None:
    if run_id is None:
        return None
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise InvalidAPIParameters("Invalid runId: use at most 64 letters, digits, '_', '.', ':' or '-'.")
    return run_id
