"""One cell, start to end, for both front-ends.

:func:`drive` runs code on a :class:`~backend_jupyter.managed.ManagedSession` and relays what
happens to a :class:`Sink`: refuse at once if the session was found stuck and still does not
answer → run (re-opening a session that vanished before the code ran) → hold a traceback on stderr
until the run's end says whether it is the cell's error → conclude → probe a session the run broke
off from → mark it stuck or gone.  It returns the :class:`~backend_jupyter.execution.Outcome`.

The kernel and the magics are thin adapters around it: their sinks only say where output, rich
displays and input requests go (IOPub and the stdin channel, or IPython's display machinery).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .client import BackendError, ComputeSession, SessionNotFound
from .display import RichOutput, record_output
from .execution import (
    Display,
    Finished,
    InputRequest,
    Outcome,
    Output,
    RunFailed,
    StepFinished,
    TracebackHold,
    check_after,
    conclude,
    refusal,
    run_cell,
    stuck_note,
)
from .managed import ManagedSession

NO_STDIN = "This front-end cannot answer input requests: the remote input() was interrupted.\n"


class Sink(Protocol):
    """Where a front-end puts what a run produces (called on the driver's event loop)."""

    def output(self, stream: str, text: str) -> None: ...

    def display(self, output: RichOutput) -> None: ...

    async def ask(self, request: InputRequest, run: CellRun) -> None:
        """Answer (or cancel) ``request``; may return before the user has answered."""

    def step(self, event: StepFinished) -> None: ...

    def flush(self) -> None: ...


@dataclass
class CellRun:
    """The cell being driven, as the front-end's interrupt handling sees it."""

    session: ComputeSession | None = None
    interrupted: bool = False


async def drive(managed: ManagedSession, code: str, sink: Sink, run: CellRun, *, remedy: str,
                mode: str = "query", options: Mapping[str, Any] | None = None, transport: str = "auto",
                reopen: Callable[[], Awaitable[ManagedSession]] | None = None,
                refusal_hint: str | None = None) -> Outcome:
    """Run ``code`` and relay it; ``remedy`` is what the stuck-session note tells the user to do,
    ``reopen`` gives a new session when this one vanished before the code ran (None: don't)."""
    if managed.stuck:
        refused = await refusal(managed.session, hint=refusal_hint)
        if refused is not None:
            return Outcome(False, type(refused).__name__, str(refused))
        managed.stuck = False
    hold = TracebackHold()
    finished, failure, started = await _relay(managed, code, sink, run, hold, mode, options, transport)
    if reopen is not None and not started and isinstance(failure, SessionNotFound):
        # The session vanished (idle timeout, server restart) and the code never ran: running it
        # on a new session is safe.
        managed = await reopen()
        hold = TracebackHold()
        finished, failure, started = await _relay(managed, code, sink, run, hold, mode, options, transport)
    outcome = conclude(finished, failure, hold.release(), interrupted=run.interrupted)
    sink.output("stderr", outcome.stderr)
    sink.flush()
    state = "ok" if failure is None else await check_after(managed.session, failure, interrupted=run.interrupted)
    if state == "gone":
        outcome.session_gone = True
    elif state == "unresponsive":
        managed.stuck = True
        sink.output("stderr", stuck_note(managed.name, remedy))
        sink.flush()
    managed.gone = managed.gone or outcome.session_gone
    return outcome


async def _relay(managed: ManagedSession, code: str, sink: Sink, run: CellRun, hold: TracebackHold, mode: str,
                 options, transport: str) -> tuple[Finished | None, BackendError | None, bool]:
    """One run's events to the sink; returns (finished, failure, whether anything came back)."""
    run.session = managed.session
    finished: Finished | None = None
    failure: BackendError | None = None
    started = False
    async for event in run_cell(managed.session, code, mode=mode, options=options,
                                transport=managed.transport(transport)):
        if isinstance(event, RunFailed):
            failure = event.error
            continue
        started = True
        if isinstance(event, Output):
            sink.output(event.stream, hold.feed(event.text) if event.stream == "stderr" else event.text)
        elif isinstance(event, (Display, InputRequest)):
            sink.output("stderr", hold.release())
            sink.flush()
            if isinstance(event, InputRequest):
                await sink.ask(event, run)
            else:
                sink.display(record_output(event.kind, event.data))
        elif isinstance(event, StepFinished):
            sink.step(event)
        elif isinstance(event, Finished):
            finished = event
    return finished, failure, started
