"""The "Backend.AI Python" wrapper kernel: every cell runs on a Backend.AI compute session.

Built on ``ipykernel.kernelbase.Kernel`` with async handlers (see docs/kernel-notes.md).  This
module answers Jupyter's requests; what cells and ``%backend_*`` commands act on (the client, the
sessions, the kernel's end) is its :class:`~backend_jupyter.kernelhost.KernelHost`.


* ``do_execute`` drives the cell with :func:`backend_jupyter.driver.drive` on the kernel's
  :class:`~backend_jupyter.managed.ManagedSession`; :class:`KernelSink` turns what the run produces
  into IOPub messages: stream text is coalesced (by size and a short interval) so IOPub never
  floods, rich outputs become the message of their type (``execute_result`` with ``Out[n]``,
  ``display_data``, ``update_display_data``, ``clear_output``), and a failed cell publishes one
  ``error`` and replies ``status: error``.  It always returns a reply, whatever happens.
* ``input()``/``getpass()`` use the stdin channel through a wait of our own that never blocks the
  event loop and can be abandoned on interrupt.
* The stop button (``interrupt_mode: message``) interrupts the remote run; restart resets the remote
  session (files stay), or, where the manager cannot (26.09 answers 501) or the session stopped
  answering, replaces our own session with a fresh one; shutdown destroys it unless it was
  attached by name.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fnmatch
import logging
import os
import re
import signal
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import zmq
from ipykernel.kernelbase import Kernel
from traitlets import Bool, Dict, Enum, Float, Unicode

from . import __version__
from .actions import (
    Panel,
    Progress,
    RemoteFailure,
    Rich,
    Say,
    perform,
    requested_settings,
    submit_jobs,
)
from .client import BackendError
from .commands import (
    CommandError,
    command_at,
    complete,
    help_text,
    parse,
    plan_cell,
    split_options,
)
from .config import ConfigError
from .display import RichOutput
from .driver import NO_STDIN, CellRun, drive
from .embedded import EmbeddedServerError
from .execution import InputRequest, StepFinished
from .kernelhost import KernelHost
from .kernelspecs import is_python, language_info
from .managed import (
    ManagedSession,
)
from .remote import inspect_snippet, run_snippet
from .usage import memory, usage_line
from .variables import (
    human_size,
)

log = logging.getLogger("backend_jupyter.kernel")

STREAM_FLUSH_INTERVAL = 0.1
STREAM_FLUSH_BYTES = 64 * 1024
INTERRUPT_GRACE = 5.0
STDIN_POLL = 0.02
HISTORY_LIMIT = 10_000  # inputs kept for history requests (a console's up-arrow, %history in it)
HISTORY_SESSION = 1  # this kernel process's inputs; the remote interpreter's own history stays remote
STUCK_REMEDY = "To replace it with a fresh session, restart the kernel."
STATUS_AFTER = 2.0  # a cell running this long gets the live status line
STATUS_INTERVAL = 1.0  # it is updated at most this often
STATUS_KEEP_AFTER = 60.0  # status_line "auto": a cell this long keeps a summary line


class CellFailed(Exception):
    """A ``%backend_run`` line of the cell failed: the cell stops with its reply."""

    def __init__(self, reply: dict):
        super().__init__(reply.get("ename", "error"))
        self.reply = reply


@dataclass
class Cell(CellRun):
    """What the kernel knows about the cell that is running."""

    task: asyncio.Task | None = None
    input_request: InputRequest | None = None
    stdin_cancel: asyncio.Event = field(default_factory=asyncio.Event)


class KernelSink:
    """Where a run's output goes in the kernel: stream text coalesced into few, larger ``stream``
    messages (IOPub drops floods), rich outputs as the IOPub message of their type, input requests
    to the stdin channel.  A silent execution shows nothing."""

    def __init__(self, kernel: BackendKernel, interval: float, *, silent: bool = False, allow_stdin: bool = False):
        self.kernel = kernel
        self.interval = interval
        self.silent = silent
        self.allow_stdin = allow_stdin
        self.name: str | None = None
        self.parts: list[str] = []
        self.size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._last_flush = float("-inf")
        # The cell's request: messages sent from other tasks (the eager session start) must name
        # it, and ipykernel keeps the current parent in a context variable those tasks lack.
        self.parent = kernel.get_parent("shell")

    def send(self, msg_type: str, content: dict) -> None:
        """An IOPub message of this cell."""
        self.kernel.session.send(self.kernel.iopub_socket, msg_type, content, self.parent)

    def show(self, display_id: str, data: dict, *, first: bool) -> None:
        """A display of the kernel's own, shown (``first``) or updated in place."""
        self.send("display_data" if first else "update_display_data",
                  {"data": data, "metadata": {}, "transient": {"display_id": display_id}})

    def output(self, name: str, text: str) -> None:
        if not text or self.silent:
            return
        if self.name != name:
            self.flush()
            self.name = name
        self.parts.append(text)
        self.size += len(text)
        if self._timer is not None and self.size < STREAM_FLUSH_BYTES:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_flush + self.interval - loop.time()
        if self.size >= STREAM_FLUSH_BYTES or wait <= 0:
            self.flush()  # big enough, or nothing was sent lately: send now (first output is immediate)
        else:
            self._timer = loop.call_later(wait, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.parts and self.name:
            self.send("stream", {"name": self.name, "text": "".join(self.parts)})
            self._last_flush = asyncio.get_running_loop().time()
        self.parts, self.size = [], 0

    def display(self, output: RichOutput) -> None:
        if not self.silent:
            self.send(output.output_type, output.content(self.kernel.execution_count))

    async def ask(self, request: InputRequest, cell: Cell) -> None:
        """Show the front-end's input box (stdin channel); without one, interrupt the run."""
        if not self.allow_stdin:
            request.cancel()
            self.flush()
            self.send("stream", {"name": "stderr", "text": NO_STDIN})
            cell.interrupted = True
            await cell.session.interrupt()
            return
        cell.input_request = request
        try:
            value = await self._read_stdin(request.prompt, request.password, cell.stdin_cancel)
        finally:
            cell.input_request = None
        if value is None:
            request.cancel()
        else:
            request.answer("" if value == "\x04" else value)

    async def _read_stdin(self, prompt: str, password: bool, cancel: asyncio.Event) -> str | None:
        """Ask the front-end for a line without blocking the event loop; None when abandoned.
        Stale replies (to an abandoned request) are purged before each new request."""
        kernel = self.kernel
        socket = kernel.stdin_socket
        while True:
            try:
                socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
        kernel.session.send(socket, "input_request", {"prompt": prompt, "password": password},
                            kernel.get_parent("shell"), ident=kernel._get_shell_context_var(kernel._shell_parent_ident))
        while not cancel.is_set():
            if socket.poll(0):
                _ident, reply = kernel.session.recv(socket, zmq.NOBLOCK)
                if reply is not None and reply.get("msg_type", reply.get("header", {}).get("msg_type")) == "input_reply":
                    return str(reply["content"].get("value", ""))
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(cancel.wait(), STDIN_POLL)
        return None

    def step(self, event: StepFinished) -> None:
        pass  # the kernel runs no batch jobs


class InputHistory:
    """The inputs of this kernel process's stored cells, for history requests (a console's
    up-arrow, ``%history`` in it); the remote interpreter's own history stays remote."""

    def __init__(self, limit: int = HISTORY_LIMIT):
        self.entries: deque[tuple[int, str]] = deque(maxlen=limit)  # (execution count, code)

    def add(self, count: int, code: str) -> None:
        self.entries.append((count, code))

    def query(self, access: str, *, output: bool = False, session=None, start=None, stop=None, n=None,
              pattern=None, unique: bool = False) -> list[tuple]:
        """``tail`` (the last ``n``), ``range`` (execution counts ``start`` to ``stop``, exclusive)
        and ``search`` (a glob ``pattern``), as ``(session, count, input)`` triples."""
        entries = list(self.entries)
        if access == "tail":
            picked = entries[-n:] if n else entries
        elif access == "range":
            first, last = start or 0, stop
            picked = [] if session not in (None, 0, HISTORY_SESSION) else [
                (count, code) for count, code in entries if count >= first and (last is None or count < last)]
        elif access == "search":
            picked = [(count, code) for count, code in entries if fnmatch.fnmatchcase(code, pattern or "*")]
            if unique:
                last_of = {code: count for count, code in picked}
                picked = [(count, code) for count, code in picked if last_of[code] == count]
            picked = picked[-n:] if n else picked
        else:
            picked = []
        return [(HISTORY_SESSION, count, (code, None) if output else code) for count, code in picked]


class LiveStatus:
    """The live status line of a long cell: after ``STATUS_AFTER`` seconds one display, updated in
    place at most once a second, with the elapsed time and the session's live usage; at the end it
    goes away or becomes a one-line summary (see ``BackendKernel.status_line``).  A display of its
    own: it never mixes with the cell's output text."""

    def __init__(self, session, sink: KernelSink, mode: str):
        self.session, self.sink, self.mode = session, sink, mode
        self.display_id = uuid.uuid4().hex
        self.started = time.monotonic()
        self.shown = False
        self.closed = False
        self.peak: float | None = None
        self.task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        await asyncio.sleep(STATUS_AFTER)
        while not self.closed:
            tick = time.monotonic()
            stat = None
            with contextlib.suppress(BackendError, asyncio.TimeoutError):
                stat = await asyncio.wait_for(self.session.live_stat(), STATUS_INTERVAL * 2)
            if self.closed:  # Python 3.11's wait_for can swallow the cancel of a close: check
                return
            used = memory(stat)
            if used is not None:
                self.peak = max(self.peak or 0, used)
            usage = usage_line(stat) if stat else "usage not reported by this server"
            self._show(f"running {_clock(time.monotonic() - self.started)} · {usage}")
            await asyncio.sleep(max(0.0, STATUS_INTERVAL - (time.monotonic() - tick)))

    def _show(self, text: str, *, data: dict | None = None) -> None:
        if not self.shown:
            self.sink.flush()  # the line comes after what the cell printed so far
        self.sink.show(self.display_id, {"text/plain": text} if data is None else data, first=not self.shown)
        self.shown = True

    async def close(self) -> None:
        self.closed = True
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(self.task, STATUS_INTERVAL * 3)
        if not self.shown:
            return
        elapsed = time.monotonic() - self.started
        if self.mode == "summary" or elapsed >= STATUS_KEEP_AFTER:
            peak = f" · peak memory {human_size(int(self.peak))}" if self.peak else ""
            self._show(f"ran {_clock(elapsed)}{peak}")
        else:
            self._show("", data={})  # gone: an empty output renders nothing


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}" if minutes else f"{seconds:.0f} s"


class Shown:
    """What the kernel's own commands show (actions.py events): text into the cell's output
    stream, progress and job panels as one display each, updated in place.  Outside a cell (the
    eager session start) events wait and are shown, at their latest state, in the next cell; a
    display shown already is updated where it is (a job panel after its cell has ended)."""

    def __init__(self, kernel: BackendKernel):
        self.kernel = kernel
        self.sink: KernelSink | None = None
        self.pending: dict[object, Say | Progress | Panel] = {}
        self.shown: dict[int, tuple[str, KernelSink]] = {}  # event → its display id and the cell it is in

    def emit(self, event: Say | Progress | Rich | Panel) -> None:
        if id(event) in self.shown:
            self._display(event)
        elif self.sink is None or self.sink.silent:
            key = id(event) if isinstance(event, (Progress, Panel)) else ("say", len(self.pending))
            self.pending[key] = event
        elif isinstance(event, Say):
            self.sink.output(event.stream, event.shown())
        elif isinstance(event, Rich):
            self.sink.display(event.output)
        else:
            self.sink.flush()  # keep the order of text and displays
            self.shown[id(event)] = (uuid.uuid4().hex, self.sink)
            self._display(event, first=True)

    def _display(self, event: Progress | Panel, first: bool = False) -> None:
        display_id, sink = self.shown[id(event)]
        sink.show(display_id, event.data() if isinstance(event, Panel) else {"text/plain": event.text()}, first=first)
        if (event.done() if isinstance(event, Panel) else event.state != "running"):
            self.shown.pop(id(event), None)

    def attach(self, sink: KernelSink) -> None:
        """A cell starts: what waited is shown in it."""
        self.sink = sink
        pending, self.pending = self.pending, {}
        for event in pending.values():
            self.emit(event)

    def detach(self) -> None:
        if self.sink is not None:
            self.sink.flush()
        self.sink = None


class BackendKernel(Kernel):
    implementation = "backend_jupyter"
    implementation_version = __version__
    banner = f"Backend.AI Python — cells run on a Backend.AI compute session (backend_jupyter {__version__})"
    help_links = [{"text": "Backend.AI", "url": "https://docs.backend.ai/"}]

    image = Unicode("python", help="The compute session image (e.g. python, python:3.11).").tag(config=True)
    session_name = Unicode("", help="Attach to this named session (default: BACKEND_SESSION_NAME, "
                                    "else a name derived from the Jupyter kernel id).").tag(config=True)
    endpoint = Unicode("", help="Override BACKEND_ENDPOINT.").tag(config=True)
    access_key = Unicode("", help="Override BACKEND_ACCESS_KEY.").tag(config=True)
    secret_key = Unicode("", help="Override BACKEND_SECRET_KEY.").tag(config=True)
    vfolder_mounts = Unicode("", help="Override BACKEND_VFOLDER_MOUNTS (name or name:alias, comma-separated).").tag(config=True)
    api_version = Unicode("", help="Pin an API version (override BACKEND_API_VERSION).").tag(config=True)
    environ = Dict(value_trait=Unicode(), help="Environment variables of the session this kernel creates.").tag(config=True)
    resources = Dict(help="Resource slots of the session this kernel creates (e.g. {'cpu': 2, 'mem': '4g'}).").tag(config=True)
    transport = Enum(["auto", "ws", "poll"], "auto", help="How runs are streamed: 'auto' is the websocket on a "
                     "session with the display adapter, else polling (see remote.run_transport).").tag(config=True)
    display_adapter = Bool(True, help="Install the display adapter in Python sessions, so rich output "
                                      "arrives whole (see remote.py).").tag(config=True)
    status_line = Enum(["auto", "summary", "off"], "auto", help="The live status line of a cell running over "
                       "2 s (elapsed time, CPU, memory): 'auto' removes it at the end (a cell of a minute or "
                       "more keeps a summary: elapsed, peak memory), 'summary' always keeps the summary, "
                       "'off' shows none.").tag(config=True)
    eager_start = Bool(True, help="Start opening the session when the kernel starts, not at the first "
                                  "cell (a start error still shows in the first cell).").tag(config=True)
    stream_flush_interval = Float(STREAM_FLUSH_INTERVAL, help="Seconds output is coalesced before it is sent.").tag(config=True)

    @property
    def language_info(self) -> dict:
        return language_info(self.image)

    @property
    def python_image(self) -> bool:
        return is_python(self.image)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._cell: Cell | None = None
        self._shown = Shown(self)
        self.host = KernelHost(self)  # the client and the sessions cells and commands act on
        self._shell_loop: asyncio.AbstractEventLoop | None = None
        self._history = InputHistory()
        self._register_comms()
        atexit.register(self.host.destroy_at_exit)
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _register_comms(self) -> None:
        """Give comm messages (JupyterLab opens comms; ipywidgets use them) a handler."""
        try:
            import comm
            from ipykernel.comm import CommManager

            self.comm_manager = CommManager(parent=self, kernel=self)
            comm.get_comm_manager = lambda: self.comm_manager
        except Exception:  # pragma: no cover - very old ipykernel
            return
        for msg_type in ("comm_open", "comm_msg", "comm_close"):
            self.shell_handlers[msg_type] = getattr(self.comm_manager, msg_type)

    def _on_sigterm(self, signum, frame) -> None:
        """Terminated (e.g. JupyterLab killed): destroy our session, then die as asked."""
        self.host.destroy_at_exit()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    # -- what the kernel's own commands show ------------------------------------------------------
    def show(self, event: Say | Progress | Rich | Panel) -> None:
        self._shown.emit(event)

    def start(self) -> None:
        super().start()
        if self.eager_start:
            self.io_loop.add_callback(self._start_eagerly)

    def _start_eagerly(self) -> None:
        self._shell_loop = asyncio.get_running_loop()
        self.host.start_eagerly()

    # -- execute ---------------------------------------------------------------------------------
    async def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False,
                         *, cell_meta=None, cell_id=None):
        self._allow_stdin = allow_stdin
        self._shell_loop = asyncio.get_running_loop()
        if store_history and not silent and code.strip():
            self._history.add(self.execution_count, code)
        cell = Cell(task=asyncio.current_task())
        self._cell = cell
        sink = KernelSink(self, self.stream_flush_interval, silent=silent, allow_stdin=allow_stdin)
        self._shown.attach(sink)
        try:
            return await self._execute(cell, sink, code, silent)
        except asyncio.CancelledError:
            sink.flush()
            return self._error_reply("KeyboardInterrupt", "Interrupted", silent)
        except CommandError as e:
            sink.flush()
            return self._error_reply("UsageError", str(e), silent)
        except CellFailed as e:
            return e.reply
        except RemoteFailure as e:
            sink.flush()
            return self._error_reply(e.ename, e.evalue, silent, e.traceback or None)
        except (BackendError, ConfigError, EmbeddedServerError) as e:
            sink.flush()
            return self._error_reply(type(e).__name__, str(e), silent)
        except Exception as e:  # never leave the front-end without a reply
            log.exception("unexpected error while running a cell")
            sink.flush()
            return self._error_reply(type(e).__name__, f"Internal error in the Backend.AI kernel: {e}", silent)
        finally:
            self._shown.detach()
            if self._cell is cell:
                self._cell = None

    async def _execute(self, cell: Cell, sink: KernelSink, code: str, silent: bool) -> dict:
        plan = plan_cell(code)
        for command, line in plan.commands:
            await self._command(cell, sink, command, line)
        if plan.cell_command is not None:
            command, line, body = plan.cell_command
            return await self._run_command(cell, sink, line, body, silent)
        if not plan.code.strip():
            return self._ok_reply()
        return await self._run(cell, sink, await self.host.open(), plan.code, silent)

    async def _run(self, cell: Cell, sink: KernelSink, managed: ManagedSession, code: str, silent: bool) -> dict:
        status = None if silent or self.status_line == "off" else LiveStatus(managed.session, sink, self.status_line)
        try:
            outcome = await drive(managed, code, sink, cell, remedy=STUCK_REMEDY, transport=self.transport,
                                  reopen=self.host.reopener(managed))
        finally:
            if status is not None:
                await status.close()
        if managed.gone:
            self.host.sessions.pop(managed.name, None)
        if outcome.ok:
            return self._ok_reply()
        return self._error_reply(outcome.ename, outcome.evalue, silent, outcome.traceback or None)

    async def _command(self, cell: Cell, sink: KernelSink, command: str, line: str) -> None:
        """A ``%backend_*`` line of the cell, run here (actions.py); ``%backend_run CODE`` runs CODE."""
        if command == "backend_run":
            options, code = split_options(line, command)
            reply = await self._run_command(cell, sink, options, code, silent=sink.silent)
            if reply["status"] != "ok":
                raise CellFailed(reply)
            return
        await perform(self.host, command, parse(command, line))

    async def _run_command(self, cell: Cell, sink: KernelSink, line: str, code: str, silent: bool) -> dict:
        """``%%backend_run [-s NAME] [session options]``: the body on that session."""
        args = parse("backend_run", line)
        for given, why in ((not args.bg and (args.inputs or args.outputs), "-i/-o move variables between a local "
                            "IPython and a session; this kernel has no local variables (with --bg, -i takes them "
                            "from this kernel's session)"),
                           (args.batch, "--batch is a command of the magics extension (%load_ext backend_jupyter)")):
            if given:
                raise CommandError(f"{why}.")
        if args.code and code:
            raise CommandError(f"Unexpected arguments: {' '.join(args.code)}")
        if args.bg:
            await submit_jobs(self.host, args, code)
            return self._ok_reply()
        managed = await self.host.open(args.name, settings=requested_settings(self.host, args), keep=args.keep)
        if not code.strip():
            return self._ok_reply()
        return await self._run(cell, sink, managed, code, silent)

    def _ok_reply(self) -> dict:
        return {"status": "ok", "execution_count": self.execution_count, "payload": [], "user_expressions": {}}

    def _error_reply(self, ename: str, evalue: str, silent: bool, traceback: list[str] | None = None) -> dict:
        if traceback is None:
            traceback = [f"\x1b[0;31m{ename}\x1b[0m: {evalue}"]
        content = {"ename": ename, "evalue": evalue, "traceback": traceback}
        if not silent:
            self.send_response(self.iopub_socket, "error", content)
        return {"status": "error", "execution_count": self.execution_count, **content}

    # -- interrupt, shutdown ---------------------------------------------------------------------
    async def interrupt_request(self, stream, ident, parent):
        """Runs on the control thread: hop to the shell loop and interrupt the remote run."""
        if self._shell_loop is not None and not self._shell_loop.is_closed():
            self._shell_loop.call_soon_threadsafe(self._interrupt_cell)
        self.session.send(stream, "interrupt_reply", {"status": "ok"}, parent, ident=ident)

    def _interrupt_cell(self) -> None:
        cell = self._cell
        if cell is None:
            return
        cell.interrupted = True
        cell.stdin_cancel.set()
        if cell.session is None:  # still starting the session: just stop waiting
            cell.task.cancel()
            return
        asyncio.ensure_future(self._interrupt_remote(cell))

    async def _interrupt_remote(self, cell: Cell) -> None:
        try:
            await asyncio.wait_for(cell.session.interrupt(), INTERRUPT_GRACE)
        except (BackendError, asyncio.TimeoutError) as e:
            log.warning("remote interrupt failed: %s", e)
            cell.task.cancel()
            return
        await asyncio.sleep(INTERRUPT_GRACE)
        if self._cell is cell and not cell.task.done():  # the run did not end: stop waiting for it
            cell.task.cancel()

    async def do_shutdown(self, restart):
        """Runs on the control thread; the client lives on the shell loop."""
        self.host.restarting = restart
        if self._shell_loop is not None and not self._shell_loop.is_closed() and self.host.connected:
            future = asyncio.run_coroutine_threadsafe(self.host.end(restart), self._shell_loop)
            try:
                await asyncio.wait_for(asyncio.wrap_future(future), 15)
            except Exception as e:
                log.warning("could not %s the remote session: %s", "restart" if restart else "destroy", e)
        return {"status": "ok", "restart": restart}

    # -- history ----------------------------------------------------------------------------------
    async def do_history(self, hist_access_type, output, raw, session=None, start=None, stop=None, n=None,
                         pattern=None, unique=False):
        return {"status": "ok", "history": self._history.query(
            hist_access_type, output=output, session=session, start=start, stop=stop, n=n, pattern=pattern,
            unique=unique)}

    # -- completion, inspection, is_complete -------------------------------------------------------
    async def do_complete(self, code, cursor_pos):
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        local = complete(code, cursor_pos)  # a %backend_* line: completed here
        if local is not None:
            matches, start, end = local
            return {"status": "ok", "matches": matches, "cursor_start": start, "cursor_end": end, "metadata": {}}
        empty = {"status": "ok", "matches": [], "cursor_start": cursor_pos, "cursor_end": cursor_pos, "metadata": {}}
        managed = self.host.sessions.get(self.host.current)
        if managed is None or managed.gone:
            return empty
        try:
            result = await managed.session.complete(code, cursor_pos)
        except BackendError as e:
            log.warning("completion failed: %s", e)
            return empty
        return {"status": "ok", "matches": result["completions"], "cursor_start": result["cursor_start"],
                "cursor_end": result["cursor_end"], "metadata": {}}

    async def do_is_complete(self, code):
        if not self.python_image:
            return {"status": "unknown"}
        from IPython.core.inputtransformer2 import TransformerManager

        status, indent = TransformerManager().check_complete(code)
        reply = {"status": status}
        if status == "incomplete":
            reply["indent"] = " " * (indent or 0)
        return reply

    async def do_inspect(self, code, cursor_pos, detail_level=0, omit_sections=()):
        reply = {"status": "ok", "found": False, "data": {}, "metadata": {}}
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        line_end = code.find("\n", cursor_pos)
        local = command_at(code, len(code) if line_end < 0 else line_end)  # the whole line the cursor is on
        if local is not None:  # Shift+Tab on a %backend_* line: its help
            with contextlib.suppress(CommandError):
                reply.update(found=True, data={"text/plain": help_text(local[1])})
            return reply
        managed = self.host.sessions.get(self.host.current)
        if managed is None or managed.gone or not self.python_image:
            return reply
        name = _name_at(code, cursor_pos)
        if not name:
            return reply
        try:
            data = await run_snippet(managed.session, inspect_snippet(name, detail_level))
        except BackendError:
            return reply
        if isinstance(data, dict) and data:
            reply.update(found=True, data=data)
        return reply


def _name_at(code: str, cursor: int) -> str:
    """The dotted name around ``cursor`` (what Shift+Tab asks about)."""
    line_start = code.rfind("\n", 0, cursor) + 1
    line_end = code.find("\n", cursor)
    line = code[line_start: len(code) if line_end < 0 else line_end]
    col = cursor - line_start
    best = ""
    for match in re.finditer(r"[A-Za-z_][\w.]*", line):
        if match.start() <= col <= match.end() or (match.end() < col and line[match.end():col].strip() in ("(", "")):
            best = match.group(0).rstrip(".")
    return best


def last_option_wins(argv: list[str]) -> list[str]:
    """Drop earlier repeats of ``--BackendKernel.<option>=...`` (a kernelspec's argv plus extra
    arguments may both set one; traitlets refuses two values).  ``environ`` and ``resources``
    entries add up, so they are all kept."""
    seen: set[str] = set()
    kept: list[str] = []
    for arg in reversed(argv):
        match = re.match(r"--BackendKernel\.(\w+)=", arg)
        if match and match.group(1) not in ("environ", "resources"):
            if match.group(1) in seen:
                continue
            seen.add(match.group(1))
        kept.append(arg)
    return kept[::-1]


def main() -> None:
    import sys

    from ipykernel.kernelapp import IPKernelApp

    sys.argv = last_option_wins(sys.argv)
    app = IPKernelApp.instance(kernel_class=BackendKernel)
    # The connection to the front-end is local; this warning would show in every demo/test run.
    # (Debug records, one per message, pass untouched: formatting them would cost every cell.)
    app.log.addFilter(lambda record: record.levelno < logging.WARNING or "without encryption" not in record.getMessage())
    app.initialize()
    app.start()


if __name__ == "__main__":
    main()
