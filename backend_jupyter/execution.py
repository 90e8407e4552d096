"""The execute loop, written once for every front-end.

:func:`run_cell` drives one run on a compute session and yields typed events; it knows the
protocol (``query``/``batch`` → ``continue`` while ``continued``/``*-finished`` → ``input`` on
``waiting-input`` → done on ``finished``/``exec-timeout``) and nothing about Jupyter.  It streams
over the websocket where the server offers it and falls back to polling; both give the same events.

    async for event in run_cell(session, "print(input('name? '))"):
        if isinstance(event, InputRequest):
            event.answer(await ask_user(event.prompt, password=event.password))
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .client.errors import (
    AuthenticationFailed,
    BackendAPIError,
    BackendError,
    RequestTimeout,
    ServerError,
    ServerUnreachable,
    SessionNotFound,
)
from .client.session import ComputeSession
from .display import find_traceback, may_start_traceback, parse_traceback
from .fastjson import dumps, loads
from .protocol import CONTINUED, EXEC_TIMEOUT, FINISHED, STEPS, TERMINAL, WAITING_INPUT

log = logging.getLogger("backend_jupyter.execution")

DRAIN_SECONDS = 10.0
PROBE_TIMEOUT = 10.0  # after a run broke off: how long the session may take to answer ``pass``
REPROBE_TIMEOUT = 5.0  # before each later run, while the session did not answer
RELEASE_TIMEOUT = 10.0  # after a server error mid-run: how long freeing the run may take


class RunLost(BackendError):
    hint = "the session is usually still there: run the cell again"


class RunBroken(BackendError):
    hint = ("on Backend.AI 26.x this is how an HTML output (a DataFrame, for one) breaks a run on a session "
            "without the display adapter: use a Python image, where the adapter is installed, or print such "
            "outputs as text (print(df.to_string()))")


class SessionUnresponsive(BackendError):
    hint = "restart the kernel (or the session) to replace it; its variables are lost"


# -- events ----------------------------------------------------------------------------------------

@dataclass
class Output:
    """Text on ``stdout`` or ``stderr``."""

    stream: str
    text: str


@dataclass
class Display:
    """A rich console record (``media`` ``[mime, data]``, ``html``, ``log``, ...); see display.py."""

    kind: str
    data: Any


@dataclass
class InputRequest:
    """The run waits for a line of input.  Call :meth:`answer` (or :meth:`cancel` when the user
    interrupted instead of answering: the loop then keeps reading the run's output)."""

    prompt: str
    password: bool
    _reply: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future(), repr=False)

    def answer(self, text: str) -> None:
        if not self._reply.done():
            self._reply.set_result(text)

    def cancel(self) -> None:
        if not self._reply.done():
            self._reply.set_result(None)

    async def wait(self) -> str | None:
        return await self._reply


@dataclass
class StepFinished:
    """A batch step ended (``clean-finished`` / ``build-finished``) with its exit code."""

    status: str
    exit_code: int | None


@dataclass
class Finished:
    """The run ended: ``status`` is ``finished`` or ``exec-timeout`` (then ``exit_code`` is None)."""

    exit_code: int | None
    status: str = FINISHED


@dataclass
class RunFailed:
    """The run could not be carried on (server error, lost connection, ...)."""

    error: BackendError


Event = Output | Display | InputRequest | StepFinished | Finished | RunFailed


def console_events(console: list, *, waiting_input: bool = False) -> tuple[list[Event], str]:
    """Events for one response's console records; on ``waiting-input`` the trailing partial line
    of stdout is the prompt (a real manager sends the prompt as stdout) and is returned apart."""
    events: list[Event] = []
    prompt = ""
    if waiting_input and console and console[-1][0] == "stdout":
        text = console[-1][1]
        cut = text.rfind("\n") + 1
        prompt = text[cut:]
        console = console[:-1] + ([["stdout", text[:cut]]] if cut else [])
    for record in console:
        if not isinstance(record, (list, tuple)) or len(record) != 2:
            continue
        kind, data = record
        if kind in ("stdout", "stderr"):
            if data:
                events.append(Output(kind, data))
        else:
            events.append(Display(kind, data))
    return events, prompt


def result_events(result: dict) -> list[Event]:
    """The events of one execution result: its console records, then what its status means."""
    status = result.get("status")
    events, prompt = console_events(result.get("console") or [], waiting_input=status == WAITING_INPUT)
    if status in TERMINAL:
        events.append(Finished(result.get("exitCode") if status == FINISHED else None, status))
    elif status in STEPS:
        events.append(StepFinished(status, result.get("exitCode")))
    elif status == WAITING_INPUT:
        events.append(InputRequest(prompt, bool((result.get("options") or {}).get("is_password"))))
    elif status != CONTINUED:
        events.append(RunFailed(RunLost(f"The server answered with an unknown run status {status!r}")))
    return events


# -- the loop --------------------------------------------------------------------------------------

async def run_cell(
    session: ComputeSession,
    code: str,
    *,
    mode: str = "query",
    options: Mapping[str, Any] | None = None,
    transport: str = "auto",
) -> AsyncIterator[Event]:
    """Run ``code`` (``mode="query"``) or a batch job (``mode="batch"``, ``options`` with
    ``clean``/``build``/``exec``) and yield its events, ending with :class:`Finished` or
    :class:`RunFailed`.  ``transport``: ``"auto"`` (websocket, else polling), ``"ws"`` or ``"poll"``."""
    if transport not in ("auto", "ws", "poll"):
        raise ValueError("transport must be 'auto', 'ws' or 'poll'")
    ws = None
    if transport in ("auto", "ws"):
        try:
            ws = await session.stream()
        except (AuthenticationFailed, ServerUnreachable, SessionNotFound) as e:
            yield RunFailed(e)
            return
        except BackendError as e:
            if transport == "ws":
                yield RunFailed(e)
                return
            log.info("websocket execution unavailable (%s); polling instead", e)
    if ws is not None:
        async for event in _run_ws(session, ws, code, mode, options):
            yield event
    else:
        async for event in _run_poll(session, code, mode, options):
            yield event


async def _answered(result: dict, answers: list[str]) -> AsyncIterator[Event]:
    """The events of one execution result; waits for the front-end to answer an input request
    and puts the answer in ``answers`` (none when it was cancelled)."""
    for event in result_events(result):
        yield event
        if isinstance(event, InputRequest):
            answer = await event.wait()
            if answer is not None:
                answers.append(answer)


async def _run_poll(session: ComputeSession, code: str, mode: str, options) -> AsyncIterator[Event]:
    # Our own run id (the protocol lets the client choose it): known even when the first call fails.
    run_id = secrets.token_hex(8)
    call: tuple[str, str, Any] = (mode, code, options)
    started = False
    try:
        while True:
            try:
                result = await session.execute(call[0], call[1], run_id, call[2])
            except ServerError as e:
                yield RunFailed(await _release(session, run_id, e))
                return
            except BackendError as e:  # once the run started, a lost connection loses the run
                lost = started and not isinstance(e, BackendAPIError)
                yield RunFailed(RunLost(f"Lost contact with the run: {e.message}") if lost else e)
                return
            started = True
            run_id = result.get("runId") or run_id
            answers: list[str] = []
            async for event in _answered(result, answers):
                yield event
                if isinstance(event, (Finished, RunFailed)):
                    return
            call = ("input", answers[-1], None) if answers else ("continue", "", None)
    except asyncio.CancelledError:
        await asyncio.shield(_abort_poll(session, run_id))
        raise


async def _release(session: ComputeSession, run_id: str, error: ServerError) -> BackendError:
    """A call of the run failed on the server's side (HTTP 5xx).  On Backend.AI 26.x that is how an
    output the kernel runner sends in a form the agent cannot read breaks a run (raw HTML): the
    records of that moment are lost, the run's end with them, and the session would wait for that
    run forever.  A new ``query`` under the *same* run id is taken as the continuation and frees
    it.  Returns :class:`RunBroken` when the session answers again, else the original error (also
    for any other 5xx, which says nothing about the run)."""
    if error.status != 500:
        return error
    try:
        result = await asyncio.wait_for(session.execute("query", "pass", run_id), RELEASE_TIMEOUT)
    except (BackendError, asyncio.TimeoutError):
        return error
    if result.get("status") not in TERMINAL:
        return error  # still busy with the run itself: the usual probe decides
    return RunBroken(f"The Backend.AI server failed while passing on this run's output ({error.message}); "
                     "what the run printed at that moment is lost. The session was released and takes the next cell")


async def _abort_poll(session: ComputeSession, run_id: str | None) -> None:
    """The caller went away mid-run: interrupt it remotely and drain what it still prints."""
    with contextlib.suppress(BackendError, asyncio.TimeoutError):
        await asyncio.wait_for(session.interrupt(), DRAIN_SECONDS)
        if run_id is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while loop.time() < deadline:
            result = await asyncio.wait_for(session.execute("continue", "", run_id), DRAIN_SECONDS)
            if result.get("status") in TERMINAL:
                return
            if result.get("status") == WAITING_INPUT:
                await session.interrupt()


async def _run_ws(session: ComputeSession, ws: aiohttp.ClientWebSocketResponse, code: str, mode: str,
                  options) -> AsyncIterator[Event]:
    try:
        await ws.send_str(dumps({"code": code, "mode": mode, "options": dict(options or {})}))
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = loads(msg.data)
            status = data.get("status")
            if status in ("error", "server-restarting"):
                yield RunFailed(RunLost(f"The server stopped the run: {data.get('msg') or status}"))
                return
            answers: list[str] = []
            async for event in _answered(data, answers):
                yield event
                if isinstance(event, (Finished, RunFailed)):
                    return
            for answer in answers:
                await ws.send_str(answer)
        yield RunFailed(RunLost("The connection to the run closed before it finished"))
    except asyncio.CancelledError:
        await asyncio.shield(_abort_ws(session, ws))
        raise
    except (aiohttp.ClientError, ValueError) as e:
        yield RunFailed(RunLost(f"The connection to the run broke: {e}"))
    finally:
        await ws.close()


async def _abort_ws(session: ComputeSession, ws: aiohttp.ClientWebSocketResponse) -> None:
    with contextlib.suppress(BackendError, asyncio.TimeoutError, aiohttp.ClientError):
        await asyncio.wait_for(session.interrupt(), DRAIN_SECONDS)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while loop.time() < deadline:
            msg = await asyncio.wait_for(ws.receive(), max(0.1, deadline - loop.time()))
            if msg.type != aiohttp.WSMsgType.TEXT or loads(msg.data).get("status") in TERMINAL:
                return


# -- is the session still answering? ---------------------------------------------------------------

def stuck_note(name: str, remedy: str) -> str:
    """What a front-end says when :func:`probe` found the session ``unresponsive``.  It may also
    just be busy: a real manager queues new runs behind one whose stream was lost."""
    return (f"The Backend.AI session {name} has not answered for {PROBE_TIMEOUT:.0f} s since this error: it is "
            f"stuck, or still busy with the run that broke off. Cells are not sent to it until it answers "
            f"again. {remedy}\n")


async def probe(session: ComputeSession, timeout: float) -> str:
    """Check a session after a run broke off (server error, stream closed): run ``pass`` and
    say ``"ok"`` (it answered, even if only ``continued`` because an older run is still busy),
    ``"gone"`` (the session no longer exists), ``"unresponsive"`` (no answer within ``timeout``:
    a wedged session, seen on Backend.AI 26.09 after a failed HTML display) or ``"unknown"``
    (the server itself cannot be reached, which says nothing about the session)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        result = await asyncio.wait_for(session.execute("query", "pass"), timeout)
    except SessionNotFound:
        return "gone"
    except (ServerUnreachable, AuthenticationFailed):
        return "unknown"
    except (asyncio.TimeoutError, BackendError):
        return "unresponsive"
    with contextlib.suppress(asyncio.TimeoutError, BackendError):  # best effort: let the probe end
        while result.get("status") == CONTINUED and loop.time() < deadline:
            result = await asyncio.wait_for(session.execute("continue", "", result.get("runId")),
                                            max(0.1, deadline - loop.time()))
    return "ok"


async def check_after(session: ComputeSession, failure: BackendError | None, *, interrupted: bool) -> str:
    """After a run: :func:`probe` the session if the run broke off in a way that may have left it
    stuck (a server error, a lost stream, no answer), else ``"ok"``."""
    if interrupted or not isinstance(failure, (ServerError, RunLost, RequestTimeout)):
        return "ok"
    return await probe(session, PROBE_TIMEOUT)


async def refusal(session: ComputeSession, *, hint: str | None = None) -> SessionUnresponsive | None:
    """Before a run on a session that was found unresponsive: None if it answers again, else the
    error to report instead of sending the code into the void."""
    if await probe(session, REPROBE_TIMEOUT) != "unresponsive":
        return None
    return SessionUnresponsive(
        f"The Backend.AI session {session.name} still does not answer, so this cell was not sent", hint=hint)


# -- how a run ended, for front-ends --------------------------------------------------------------

class TracebackHold:
    """Stderr passes through, except from where a Python traceback starts: that part is held
    until the run's end says whether it is the cell's error (shown once, as the error) or just
    output."""

    def __init__(self):
        self.held = ""

    def feed(self, text: str) -> str:
        text = self.held + text
        start = find_traceback(text)
        if start is None:
            # A line still being written may be a traceback's first (output arrives in pieces
            # cut anywhere): keep it back until its end shows which.
            line_start = text.rfind("\n") + 1
            start = line_start if line_start < len(text) and may_start_traceback(text[line_start:]) else len(text)
        self.held = text[start:]
        return text[:start]

    def release(self) -> str:
        text, self.held = self.held, ""
        return text


@dataclass
class Outcome:
    """The end of a run as a front-end reports it: ``ok``, or an error with its parts."""

    ok: bool
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = field(default_factory=list)
    stderr: str = ""  # held stderr that is ordinary output: show it before the error
    session_gone: bool = False  # the remote session no longer exists: start a new one next time


def conclude(finished: Finished | None, failure: BackendError | None, held: str, *,
             interrupted: bool = False) -> Outcome:
    if failure is None and finished is not None and finished.status == FINISHED and finished.exit_code == 0:
        return Outcome(True, stderr=held)
    if failure is not None:
        return Outcome(False, type(failure).__name__, str(failure), stderr=held,
                       session_gone=isinstance(failure, SessionNotFound))
    if finished is not None and finished.status == EXEC_TIMEOUT:
        return Outcome(False, "TimeoutError", "The execution time limit of the session was exceeded", stderr=held)
    start = find_traceback(held)
    if start is not None:
        ename, evalue, lines = parse_traceback(held[start:])
        if interrupted and ename == "RemoteError":
            ename = "KeyboardInterrupt"
        return Outcome(False, ename, evalue, lines, stderr=held[:start])
    exit_code = finished.exit_code if finished is not None else None
    if interrupted:
        return Outcome(False, "KeyboardInterrupt", "Interrupted", stderr=held)
    if exit_code == 130:  # the session's kernel vanished mid-run
        return Outcome(False, "RemoteSessionDied", "The remote session died; the next run starts a new one",
                       stderr=held, session_gone=True)
    return Outcome(False, "RemoteError", f"The run failed on the remote session (exit code {exit_code})", stderr=held)
