"""The magics' side of a Backend.AI connection, in a local IPython: the client, its sessions, and
cells run through the driver.

The asyncio client runs on a background thread of its own (the IPython kernel's event loop is busy
running the cell).  :meth:`Console.run` drives a cell there with :func:`backend_jupyter.driver.drive`;
the driver's sink hands every output, display and input request back to the main thread, which
prints, displays and asks the user, so output lands in the right cell and Ctrl-C / the stop button
arrive where they should.
"""

from __future__ import annotations

import asyncio
import getpass
import queue
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path

from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.display import clear_output, display

from . import valuecodec
from .actions import Panel, Rich, Say, connect, open_session, perform
from .client import APIClient, BackendError, ComputeSession
from .commands import CommandError
from .config import Config
from .display import RichOutput
from .driver import NO_STDIN, CellRun, drive
from .execution import InputRequest, Outcome, StepFinished
from .jobs import Board
from .managed import ManagedSession, Settings, destroy_at_exit
from .variables import VariableError, encode
from .widgets import Progress

DONE = object()
STOP_WAIT_SECONDS = 15.0  # after Ctrl-C: how long the remote run may take to stop before we stop waiting


class LoopThread:
    """An asyncio loop on a daemon thread; ``run`` submits a coroutine and waits for it."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="backend-jupyter-client", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine, timeout: float | None = None):
        return self.submit(coro).result(timeout)

    def call(self, fn, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


_BARS: dict[int, Progress] = {}  # progress events → their bar, while shown


def _show_event(event) -> None:
    """What a command shows, on the main thread: text printed, progress as a bar (widgets.py)."""
    if isinstance(event, Say):
        target = sys.stdout if event.stream == "stdout" else sys.stderr
        target.write(event.shown())
        target.flush()
        return
    if isinstance(event, Rich):
        show_output(event.output)
        return
    if isinstance(event, Panel):
        _show_panel(event)
        return
    bar = _BARS.get(id(event))
    if bar is None:
        bar = _BARS[id(event)] = Progress(event.title, total=event.total)
    while bar.done_count < event.done:
        bar.advance(event.item)
    if event.state != "running":
        bar.finish(ok=event.state == "done", note=event.note)
        _BARS.pop(id(event), None)


_PANELS: dict[int, tuple[str, dict]] = {}  # job panels shown: display id and the cell they are in


def _show_panel(panel: Panel) -> None:
    """A job panel: shown in the cell that started the jobs, then updated there, from whichever
    thread, under that cell's parent (ipykernel keeps it per thread).  A terminal gets the first
    and the last state only."""
    from IPython import get_ipython

    publisher = getattr(get_ipython(), "display_pub", None)
    entry = _PANELS.get(id(panel))
    done = panel.done()
    if entry is None:
        entry = _PANELS[id(panel)] = (uuid.uuid4().hex, dict(getattr(publisher, "parent_header", {}) or {}))
        display(panel.data(), raw=True, display_id=entry[0])
    elif hasattr(publisher, "set_thread_parent"):
        token = publisher.set_thread_parent(entry[1])
        try:
            display(panel.data(), raw=True, display_id=entry[0], update=True)
        finally:
            publisher.reset_thread_parent(token)
    elif done:
        display(panel.data(), raw=True)
    if done:
        _PANELS.pop(id(panel), None)


def show_output(output: RichOutput) -> None:
    """A remote rich output, shown in this IPython as the remote one showed it."""
    if output.output_type == "clear_output":
        clear_output(wait=output.wait)
        return
    display(output.data, raw=True, metadata=output.metadata or None, display_id=output.display_id,
            update=output.output_type == "update_display_data")


class QueueSink:
    """The driver's sink here: called on the client thread, it queues everything, in order, for
    the main thread (see :meth:`Console.run`)."""

    def __init__(self, events: queue.Queue):
        self.events = events

    def output(self, stream: str, text: str) -> None:
        if text:
            self.events.put(("output", stream, text))

    def display(self, output: RichOutput) -> None:
        self.events.put(("display", output))

    async def ask(self, request: InputRequest, run: CellRun) -> None:
        self.events.put(("ask", request))  # answered from the main thread; the run waits for it

    def step(self, event: StepFinished) -> None:
        self.events.put(("output", "stderr", f"[{event.status}: exit code {event.exit_code}]\n"))

    def flush(self) -> None:
        pass


class Console:
    """The client, the sessions of this IPython by name (one of them current), commands and cells
    run on them: the magics' :class:`~backend_jupyter.actions.Host`.  Its coroutines run on the
    client thread; what they show is relayed to the main thread.  Errors of the client become one
    readable line (:class:`UsageError`)."""

    def __init__(self, *, display_adapter=lambda: True):
        self.runner = LoopThread()
        self._client: APIClient | None = None
        self.client_config: Config | None = None
        self.sessions: dict[str, ManagedSession] = {}
        self.default_name = f"ipython-{secrets.token_hex(4)}"
        self.current = self.default_name
        self.settings = Settings()
        self.display_adapter = display_adapter  # read when a session opens (a traitlet of the magics)
        self._events: queue.Queue | None = None  # where emit() sends, while a command or cell runs
        self.board = Board()
        self.namespace: dict = {}  # the local IPython's variables (-i, -o of jobs)

    # -- the Host of actions.py (called on the client thread) ----------------------------------
    @property
    def where(self) -> Path:
        return Path.cwd()

    @property
    def negotiated_version(self) -> str | None:
        return self._client.api_version if self._client is not None else None

    async def client(self) -> APIClient:
        if self._client is None:
            self._client, self.client_config = await connect(self, Config.from_env(), "backend_jupyter-magics")
        return self._client

    async def open(self, name: str | None = None, *, settings: Settings | None = None, keep: bool = False,
                   create: bool = True, attach: bool = False) -> ManagedSession:
        """The session ``name`` (default: the current one), opened on first use unless ``create``
        is False; ``attach``: a running session that is never ours."""
        name = name or self.current
        managed = self.sessions.get(name)
        if managed is not None and not managed.gone and not attach:
            return managed
        if not create:
            raise CommandError(f"No session {name!r} in this IPython; see %backend_session list")
        return await open_session(self, name, settings or self.settings, adapter=self.display_adapter(),
                                  keep=keep, attach=attach)

    def adopt(self, settings: Settings) -> None:
        self.settings = settings

    async def export_values(self, names: list[str], allow_pickle: bool, dest: Path) -> dict[str, str]:
        formats = {}
        for name in names:
            if name not in self.namespace:
                raise CommandError(f"-i {name}: no such local variable")
            try:
                fmt, data = encode(name, self.namespace[name], allow_pickle=allow_pickle)
            except VariableError as e:
                raise CommandError(f"-i {e}") from None
            (dest / f"{name}.{fmt}").write_bytes(data)
            formats[name] = fmt
        return formats

    async def import_values(self, order: dict, base: Path) -> None:
        try:
            valuecodec.land(self.namespace, order, str(base))
        except ImportError as e:
            raise CommandError(f"-o: these values need {e.name or e}, which is not installed here") from None

    def emit(self, event) -> None:
        if isinstance(event, Panel) and id(event) in _PANELS:
            _show_panel(event)  # an update of a shown panel: where it is, whatever runs now
        elif self._events is not None:
            self._events.put(event)
        else:  # nothing is relaying (cannot happen from a command): still show it
            _show_event(event)

    # -- on the main thread ----------------------------------------------------------------------
    def perform(self, command: str, args) -> None:
        """Carry out a parsed ``%backend_*`` command (actions.py), showing what it says here."""
        self.call(perform(self, command, args))

    def session(self, name: str | None = None, *, settings: Settings | None = None, keep: bool = False,
                create: bool = True, attach: bool = False) -> ManagedSession:
        return self.call(self.open(name, settings=settings, keep=keep, create=create, attach=attach))

    def call(self, coro: Coroutine, timeout: float | None = 600):
        """Run a coroutine on the client thread, relaying what it shows; errors of the client
        become one readable line (no local traceback)."""
        events: queue.Queue = queue.Queue()
        self._events = events
        future = self.runner.submit(coro)
        future.add_done_callback(lambda _: events.put(DONE))
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while (item := events.get(timeout=_remaining(deadline))) is not DONE:
                _show_event(item)
            return future.result()
        except queue.Empty:
            future.cancel()
            raise UsageError(f"No answer within {timeout:g} s") from None
        except KeyboardInterrupt:
            future.cancel()
            raise
        except (BackendError, VariableError, CommandError) as e:
            raise UsageError(str(e)) from None
        finally:
            self._events = None

    def forget(self, name: str) -> None:
        self.sessions.pop(name, None)
        if name == self.current:
            self.current = self.default_name
            self.emit(Say(f"The current session is now {self.current} (created on the next run)."))

    def close(self) -> None:
        """At exit: destroy the sessions we created (unless kept), close the client."""
        if self._client is not None:
            names = [m.name for m in self.sessions.values() if m.owned and not m.keep and not m.gone]
            destroy_at_exit(self.client_config, names)
            try:
                self.runner.run(self._client.close(), timeout=10)
            except Exception:
                pass
        self.sessions.clear()
        self._client = None
        self.runner.stop()

    # -- running code ----------------------------------------------------------------------------
    def run(self, managed: ManagedSession, code: str, *, mode: str = "query", options=None,
            show: bool = True) -> tuple[Outcome, str]:
        """Run and relay on this (the main) thread; returns (outcome, stdout if not ``show``)."""
        events: queue.Queue = queue.Queue()
        cell = CellRun()
        remedy = (f"To replace it, run: %backend_session restart {managed.name}" if managed.owned
                  else "If it stays so, ask its owner to restart it.")
        future = self.runner.submit(drive(managed, code, QueueSink(events), cell, remedy=remedy, mode=mode,
                                          options=options, refusal_hint=f"replace it with %backend_session "
                                          f"restart {managed.name}"))
        future.add_done_callback(lambda _: events.put(DONE))
        captured: list[str] = []
        deadline = None
        request = None
        while True:
            try:
                item = events.get(timeout=0.1)
                if item is DONE:
                    break
                request = item[1] if item[0] == "ask" else None
                self._relay(item, managed.session, show, captured)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    future.cancel()  # the remote run did not stop: stop waiting for it
                    break
            except KeyboardInterrupt:
                cell.interrupted = True
                deadline = self._interrupt(managed.session, request)
        if future.cancelled() or not future.done():
            outcome = Outcome(False, "KeyboardInterrupt", "Interrupted")
        else:
            outcome = future.result()
        if managed.gone:
            self.sessions = {k: v for k, v in self.sessions.items() if v is not managed}
        if cell.interrupted and not outcome.ok:
            raise KeyboardInterrupt("Interrupted: the remote run was stopped")
        return outcome, "".join(captured)

    def _relay(self, item: tuple, session: ComputeSession, show: bool, captured: list[str]) -> None:
        kind, value = item[0], item[-1]
        if kind == "output":
            stream = item[1]
            if stream == "stdout" and not show:
                captured.append(value)
            else:
                target = sys.stdout if stream == "stdout" else sys.stderr
                target.write(value)
                target.flush()
        elif kind == "display":
            if show:
                show_output(value)
        elif kind == "ask":
            self._answer(session, value)

    def _answer(self, session: ComputeSession, request: InputRequest) -> None:
        try:
            text = getpass.getpass(request.prompt) if request.password else input(request.prompt)
        except StdinNotImplementedError:
            self.runner.call(request.cancel)
            self.call(session.interrupt())
            print(NO_STDIN, end="", file=sys.stderr)
            return
        except (KeyboardInterrupt, EOFError):
            self.runner.call(request.cancel)
            raise KeyboardInterrupt from None
        self.runner.call(request.answer, text)

    def _interrupt(self, session: ComputeSession, request: InputRequest | None = None) -> float:
        if request is not None:
            self.runner.call(request.cancel)
        try:
            self.runner.run(session.interrupt(), timeout=10)
        except Exception as e:
            print(f"Could not interrupt the remote run: {e}", file=sys.stderr)
        return time.monotonic() + STOP_WAIT_SECONDS
