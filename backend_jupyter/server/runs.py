"""Runs of a session and what each execute call takes from them.

A *run* is one execution (``query`` or ``batch``) as the Backend.AI execute loop sees it: records
are collected from the kernel (or a batch job's shell commands) into the run's buffer, and each
``query``/``continue``/``input`` call takes what is there (see :meth:`Run.collect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from ..protocol import CONTINUED, FINISHED, WAITING_INPUT
from .errors import InvalidAPIParameters
from .records import RecordBuffer

COALESCE_SECONDS = 0.010

# Called while a client waits on a run, to end it when its session cannot (see LocalSession.watchdog).
Watchdog = Callable[["Run"], Awaitable[None]]


@dataclass
class RunResult:
    """The answer to one execute call: a run's status and the console records taken."""

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

    def __init__(self, run_id: str, exec_timeout: float, watchdog: Watchdog):
        self.id = run_id
        self.watchdog = watchdog
        self.buffer = RecordBuffer()
        self.changed = asyncio.Event()
        self.lock = asyncio.Lock()
        self.msg_id: str | None = None  # Jupyter execute_request id (query mode)
        self.task: asyncio.Task | None = None  # batch mode worker
        self.done = False
        self.final_status = FINISHED
        self.exit_code: int | None = None
        self.had_error = False
        self.replied = False  # the kernel's execute_reply arrived (shell)
        self.idle = False  # the kernel's final busy → idle arrived (IOPub)
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
        """A status marker in the output (a batch step ended): the execute call taking it ends there."""
        self.buffer.append(("status", status, exit_code))
        self.changed.set()

    def finish(self, exit_code: int | None, status: str = FINISHED) -> None:
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

    async def stop_task(self) -> None:
        """Cancel the run's batch job, if it has one still going, and wait until it has stopped."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task

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
                await self.watchdog(self)
            await self._coalesce()
            return self._take()

    async def _coalesce(self) -> None:
        """A little more output (or the end of the run) usually follows the first piece: wait for
        *changes*, not readiness, since the buffer is already non-empty here."""
        loop = asyncio.get_running_loop()
        end = loop.time() + COALESCE_SECONDS
        while self.buffer and not self.done and self.pending_input is None:
            remaining = end - loop.time()
            if remaining <= 0:
                break
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def _take(self) -> RunResult:
        console, marker = self.buffer.take()
        if marker is not None:
            return RunResult(marker[1], self.id, console, marker[2])
        if self.buffer:
            return RunResult(CONTINUED, self.id, console)
        if self.pending_input is not None and not self.input_announced:
            return self._announce_input(console)
        if self.done:
            return RunResult(self.final_status, self.id, console, self.exit_code)
        return RunResult(CONTINUED, self.id, console)

    def _announce_input(self, console: list) -> RunResult:
        """The input request, with its prompt at the end of the output."""
        prompt, password = self.pending_input
        if prompt:
            if console and console[-1][0] == "stdout":
                console[-1] = ["stdout", console[-1][1] + prompt]
            else:
                console.append(["stdout", prompt])
        self.input_announced = True
        return RunResult(WAITING_INPUT, self.id, console, None, {"is_password": password})

    @property
    def needs_input(self) -> bool:
        """An announced input request is still unanswered and nothing else happened since."""
        return self.pending_input is not None and not self.buffer and not self.done

    @property
    def drained(self) -> bool:
        return self.done and not self.buffer

    def close(self) -> None:
        self.buffer.close()


class Runs:
    """The runs of one session: by run id, and by the kernel request that started each query."""

    def __init__(self, exec_timeout: float, watchdog: Watchdog):
        self.exec_timeout = exec_timeout
        self.watchdog = watchdog
        self.num_queries = 0
        self._by_id: dict[str, Run] = {}
        self._by_msg: dict[str, Run] = {}

    def __iter__(self) -> Iterator[Run]:
        return iter(list(self._by_id.values()))

    @property
    def busy(self) -> bool:
        return any(not run.done for run in self._by_id.values())

    @property
    def busy_since(self) -> float | None:
        """When the oldest run still going started (``time.monotonic()``); None when idle."""
        return min((run.started for run in self._by_id.values() if not run.done), default=None)

    def new(self, run_id: str | None) -> Run:
        """A new run under ``run_id`` (the client's) or a fresh id; drained runs are forgotten."""
        if run_id is None:
            run_id = secrets.token_hex(16)
        elif run_id in self._by_id:
            raise InvalidAPIParameters(f"Run id {run_id!r} is already in use in this session.")
        self._forget_drained()
        run = Run(run_id, self.exec_timeout, self.watchdog)
        self._by_id[run_id] = run
        self.num_queries += 1
        return run

    def _forget_drained(self) -> None:
        for run_id, run in list(self._by_id.items()):
            if run.drained:
                run.close()
                del self._by_id[run_id]

    def get(self, run_id: str) -> Run:
        run = self._by_id.get(run_id)
        if run is None:
            raise InvalidAPIParameters(f"No run {run_id!r} in this session (it may have finished).")
        return run

    def bind(self, run: Run, msg_id: str) -> None:
        """``run`` is the query the kernel runs for its execute request ``msg_id``."""
        run.msg_id = msg_id
        self._by_msg[msg_id] = run

    def for_msg(self, msg_id: str) -> Run | None:
        return self._by_msg.get(msg_id)

    def finish_query(self, run: Run) -> None:
        run.finish(1 if run.had_error else 0)
        if run.msg_id:
            self._by_msg.pop(run.msg_id, None)

    def clear(self) -> None:
        """Forget every run (their clients see them as gone)."""
        self._by_id.clear()
        self._by_msg.clear()

    def close(self) -> None:
        """Forget every run and release its buffer."""
        for run in self._by_id.values():
            run.close()
        self.clear()
