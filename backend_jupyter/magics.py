"""IPython magics: run cells on Backend.AI from any local IPython kernel or terminal.

``%load_ext backend_jupyter`` registers ``%%backend_run``/``%backend_run``, ``%backend_session``,
``%backend_vfolder``, ``%backend_upload``, ``%backend_download``, ``%backend_config`` and
``%backend_help``.  The asyncio client runs on a background thread of its own (the IPython kernel's
event loop is busy running the cell); events come back to the main thread, which prints them,
displays rich output and asks the user for input, so output lands in the right cell and
Ctrl-C / the stop button arrive where they should.
"""

from __future__ import annotations

import asyncio
import atexit
import getpass
import queue
import re
import secrets
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    line_magic,
    magics_class,
)
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import clear_output, display
from traitlets import Bool

from .client import APIClient, BackendError, ComputeSession, VFolder
from .config import Config, ConfigError, parse_mounts, sources
from .display import RichOutput, record_output
from .embedded import EmbeddedServerError, resolve_config
from .execution import (
    PROBE_TIMEOUT,
    Display,
    Finished,
    InputRequest,
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
from .kernelspecs import is_python
from .remote import ADAPTER_MISSING, INSTALL_TIMEOUT, install_adapter, run_transport
from .variables import (
    REMOTE_DIR,
    VariableError,
    decode,
    encode,
    human_size,
    load_snippet,
    parse_saved,
    save_snippet,
)
from .widgets import Progress

DONE = object()
DRAIN_SECONDS = 15.0
HELP = """\
Backend.AI magics (backend_jupyter)

  %%backend_run [-s NAME] [--image IMAGE] [-m FOLDER[:ALIAS]]... [-e KEY=VALUE]... [-r SLOT=VALUE]...
                [-i VAR]... [-o VAR]... [--allow-pickle] [--keep]
      Run the cell on a Backend.AI session (created on first use, reused after), streaming its
      output; input()/getpass() show an input box; the stop button interrupts the remote run.
      -i VAR sends a local value, -o VAR brings a remote value back (JSON-able values, bytes,
      NumPy arrays, pandas DataFrames; pickle only with --allow-pickle).
  %%backend_run --batch [-u PATH]... [--clean CMD] [--build CMD] [--exec CMD]
      Upload files (directories recursively), then run the batch steps; the cell body, if any, is
      the exec command when --exec is not given.  '--build "*"' uses the image's default build.
  %backend_run CODE                       the same for one line

  %backend_session list | info [NAME] | new NAME [--image I] [-m F]... [-e K=V]... [--keep]
                   | attach NAME | use NAME | restart [NAME] | destroy NAME | logs [NAME]
  %backend_vfolder list | create NAME | delete NAME | ls NAME [PATH] | mkdir NAME PATH
                   | upload NAME FILE... [--dest DIR] | download NAME FILE... [--dest DIR]
  %backend_upload FILE... [-s NAME]       copy local files into the session's work dir
  %backend_download FILE... [-s NAME] [--dest DIR]
  %backend_config                         effective configuration and where each value came from
  %backend_help                           this text

Sessions this extension creates are destroyed when IPython exits, unless created with --keep;
attached sessions are never destroyed.  Every new session mounts BACKEND_VFOLDER_MOUNTS plus -m.
"""


class RemoteError(Exception):
    """A cell that failed on the remote session; shows the remote traceback once."""

    def __init__(self, ename: str, evalue: str, traceback: list[str]):
        super().__init__(f"{ename}: {evalue}")
        self.ename, self.evalue, self.remote_traceback = ename, evalue, traceback

    def _render_traceback_(self) -> list[str]:
        return self.remote_traceback or [f"\x1b[0;31m{self.ename}\x1b[0m: {self.evalue}"]


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


@dataclass
class Entry:
    session: ComputeSession
    owned: bool  # created by this extension: destroyed at exit unless keep
    keep: bool = False
    stuck: bool = False  # stopped answering after a run broke off: runs are refused until replaced
    adapter: bool = False  # the remote display adapter runs in it (see remote.py)


def show_output(output: RichOutput) -> None:
    """A remote rich output, shown in this IPython as the remote one showed it."""
    if output.output_type == "clear_output":
        clear_output(wait=output.wait)
        return
    display(output.data, raw=True, metadata=output.metadata or None, display_id=output.display_id,
            update=output.output_type == "update_display_data")


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r}: use KEY=VALUE")
        out[key] = value
    return out


def _session_options(fn):
    fn = argument("-r", "--resource", action="append", metavar="SLOT=VALUE", help="resource slot (repeatable)")(fn)
    fn = argument("-e", "--env", action="append", metavar="KEY=VALUE", help="environment variable (repeatable)")(fn)
    fn = argument("-m", "--mount", action="append", metavar="FOLDER[:ALIAS]", help="mount a vfolder (repeatable)")(fn)
    fn = argument("--image", default=None, help="session image (default: python)")(fn)
    fn = argument("--keep", action="store_true", help="keep the session when IPython exits")(fn)
    return fn


@magics_class
class BackendMagics(Magics):
    display_adapter = Bool(True, help="Install the display adapter in Python sessions, so rich output "
                                      "arrives whole (see remote.py).").tag(config=True)

    def __init__(self, shell):
        super().__init__(shell)
        self.runner = LoopThread()
        self.client: APIClient | None = None
        self.client_config: Config | None = None
        self.sessions: dict[str, Entry] = {}
        self.default_name = f"ipython-{secrets.token_hex(4)}"
        self.current = self.default_name
        self.image = "python"
        atexit.register(self.close)

    # -- plumbing ------------------------------------------------------------------------------
    def api(self) -> APIClient:
        if self.client is None:
            config, server = resolve_config(Config.from_env())
            if server is not None:
                print(f"Using the embedded Backend.AI server at {server.endpoint} "
                      "(set BACKEND_ENDPOINT and keys to use a cluster).", file=sys.stderr)
            client = APIClient(config, user_agent="backend_jupyter-magics")
            self.runner.run(client.open(), timeout=60)
            self.client, self.client_config = client, config
        return self.client

    def call(self, coro: Coroutine, timeout: float | None = 600):
        """Run a client coroutine; errors become one readable line (no local traceback)."""
        try:
            return self.runner.run(coro, timeout)
        except KeyboardInterrupt:
            raise
        except (BackendError, VariableError) as e:
            raise UsageError(str(e)) from None

    def session(self, name: str | None = None, *, image: str | None = None, mounts: list[str] | None = None,
                environ: dict | None = None, resources: dict | None = None, keep: bool = False,
                create: bool = True) -> ComputeSession:
        name = name or self.current
        entry = self.sessions.get(name)
        if entry is not None:
            return entry.session
        if not create:
            raise UsageError(f"No session {name!r} in this IPython; see %backend_session list")
        api = self.api()
        extra = list(parse_mounts(",".join(mounts or []), "-m"))
        missing = [m.name for m in extra if not self.call(VFolder(api, m.name).exists())]
        if missing:
            raise UsageError(f"No such vfolder: {', '.join(missing)} (create it with %backend_vfolder create NAME)")
        progress = Progress(f"Starting session {name}")
        try:
            session = self.call(ComputeSession.get_or_create(
                api, image or self.image, name=name, mounts=extra, environ=environ, resources=resources,
            ))
        except BaseException:
            progress.finish(ok=False)
            raise
        progress.finish(note=("started" if session.created else "attached to existing session")
                        + f" ({session.image})")
        self.sessions[name] = Entry(session, owned=session.created, keep=keep,
                                    adapter=self._install_adapter(session, image or self.image))
        return session

    def _install_adapter(self, session: ComputeSession, image: str | None) -> bool:
        """The display adapter in a session on a Python image (see remote.py), False elsewhere."""
        if not self.display_adapter or not is_python(image or ""):
            return False
        installed = self.runner.run(install_adapter(session), INSTALL_TIMEOUT + 5)
        if not installed:
            print(ADAPTER_MISSING, file=sys.stderr)
        return installed

    def _entry(self, session: ComputeSession) -> Entry | None:
        return next((entry for entry in self.sessions.values() if entry.session is session), None)

    def close(self) -> None:
        """At exit: destroy the sessions we created (unless --keep), close the client."""
        if self.client is None:
            self.runner.stop()
            return

        async def shutdown():
            for entry in list(self.sessions.values()):
                if entry.owned and not entry.keep:
                    try:
                        await entry.session.destroy()
                    except BackendError:
                        pass
            await self.client.close()

        try:
            self.runner.run(shutdown(), timeout=30)
        except Exception:
            pass
        self.sessions.clear()
        self.client = None
        self.runner.stop()

    # -- running code ----------------------------------------------------------------------------
    def stream(self, session: ComputeSession, code: str, *, mode: str = "query", options=None,
               show: bool = True) -> tuple[Any, str]:
        """Run and relay events on this (the main) thread; returns (outcome, captured stdout)."""
        entry = self._entry(session)
        if entry is not None and entry.stuck:
            refused = self.runner.run(refusal(session, hint=f"replace it with %backend_session restart {session.name}"),
                                      PROBE_TIMEOUT)
            if refused is not None:
                raise UsageError(str(refused))
            entry.stuck = False
        events: queue.Queue = queue.Queue()

        async def produce():
            try:
                transport = run_transport("auto", entry is not None and entry.adapter)
                async for event in run_cell(session, code, mode=mode, options=options, transport=transport):
                    events.put(event)
            finally:
                events.put(DONE)

        future = self.runner.submit(produce())
        hold = TracebackHold()
        finished = failure = None
        captured: list[str] = []
        interrupted = False
        deadline = None
        while True:
            try:
                event = events.get(timeout=0.1)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    future.cancel()  # the remote run did not stop: stop waiting for it
                    break
                continue
            except KeyboardInterrupt:
                interrupted = True
                deadline = self._interrupt(session)
                continue
            if event is DONE:
                break
            try:
                if isinstance(event, Output):
                    if not show:
                        if event.stream == "stdout":
                            captured.append(event.text)
                    elif event.stream == "stdout":
                        sys.stdout.write(event.text)
                        sys.stdout.flush()
                    else:
                        sys.stderr.write(hold.feed(event.text))
                        sys.stderr.flush()
                elif isinstance(event, Display):
                    sys.stderr.write(hold.release())
                    if show:
                        show_output(record_output(event.kind, event.data))
                elif isinstance(event, InputRequest):
                    sys.stderr.write(hold.release())
                    self._answer(session, event)
                elif isinstance(event, StepFinished):
                    print(f"[{event.status}: exit code {event.exit_code}]", file=sys.stderr, flush=True)
                elif isinstance(event, Finished):
                    finished = event
                elif isinstance(event, RunFailed):
                    failure = event.error
            except KeyboardInterrupt:
                interrupted = True
                deadline = self._interrupt(session, event if isinstance(event, InputRequest) else None)
        outcome = conclude(finished, failure, hold.release(), interrupted=interrupted)
        if outcome.stderr:
            sys.stderr.write(outcome.stderr)
        state = ("ok" if failure is None  # (no hop to the client thread for a run that went well)
                 else self.runner.run(check_after(session, failure, interrupted=interrupted), PROBE_TIMEOUT + 5))
        outcome.session_gone = outcome.session_gone or state == "gone"
        if state == "unresponsive":
            owned = entry is not None and entry.owned
            if entry is not None:
                entry.stuck = True
            sys.stderr.write(stuck_note(session.name, f"To replace it, run: %backend_session restart {session.name}"
                                        if owned else "If it stays so, ask its owner to restart it."))
        if outcome.session_gone:
            self.sessions = {k: v for k, v in self.sessions.items() if v.session is not session}
        if interrupted and not outcome.ok:
            raise KeyboardInterrupt("Interrupted: the remote run was stopped")
        return outcome, "".join(captured)

    def _answer(self, session: ComputeSession, request: InputRequest) -> None:
        try:
            text = getpass.getpass(request.prompt) if request.password else input(request.prompt)
        except StdinNotImplementedError:
            self.runner.call(request.cancel)
            self.call(session.interrupt())
            print("This front-end cannot answer input requests: the remote input() was interrupted.",
                  file=sys.stderr)
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
        return time.monotonic() + DRAIN_SECONDS

    def raise_for(self, outcome) -> None:
        if not outcome.ok:
            raise RemoteError(outcome.ename, outcome.evalue, outcome.traceback)

    # -- %%backend_run ---------------------------------------------------------------------------
    @magic_arguments()
    @argument("-s", "--session", dest="name", default=None, help="session name (default: this IPython's session)")
    @_session_options
    @argument("-i", "--input", dest="inputs", action="append", metavar="VAR", help="send a local variable")
    @argument("-o", "--output", dest="outputs", action="append", metavar="VAR", help="bring a remote variable back")
    @argument("--allow-pickle", action="store_true", help="allow pickle for values that have no safe format")
    @argument("--batch", action="store_true", help="batch mode: upload, build, exec")
    @argument("-u", "--upload", action="append", metavar="PATH", help="file or directory to upload (batch)")
    @argument("--clean", default=None, help="batch clean command")
    @argument("--build", default=None, help="batch build command ('*' = the image's default)")
    @argument("--exec", dest="exec_", default=None, help="batch exec command")
    @argument("code", nargs="*", help="code to run (line magic)")
    @line_cell_magic
    def backend_run(self, line: str, cell: str | None = None):
        """Run code on a Backend.AI compute session.  See %backend_help."""
        if cell is None:  # line magic: options first, then the code, taken verbatim
            line, code = _split_options(line, self.backend_run.parser)
        args = _parse(self.backend_run, line)
        if cell is not None:
            code = cell
            if args.code:
                raise UsageError(f"Unexpected arguments: {' '.join(args.code)}")
        try:
            session = self.session(args.name, image=args.image, mounts=args.mount, keep=args.keep,
                                   environ=_pairs(args.env, "-e"), resources=_pairs(args.resource, "-r"))
        except (ConfigError, EmbeddedServerError) as e:
            raise UsageError(str(e)) from None
        if args.batch:
            return self._batch(session, args, code)
        if not code.strip():
            return None
        if args.inputs:
            self._send_variables(session, args.inputs, args.allow_pickle)
        outcome, _ = self.stream(session, code)
        self.raise_for(outcome)
        if args.outputs:
            self._receive_variables(session, args.outputs, args.allow_pickle)
        return None

    def _batch(self, session: ComputeSession, args, body: str):
        paths = [Path(p) for p in args.upload or []]
        self._upload(session, paths)
        exec_cmd = args.exec_ or (body.strip() or None)
        options = {"clean": args.clean, "build": args.build, "exec": exec_cmd, "buildLog": True}
        if not any((args.clean, args.build, exec_cmd)):
            raise UsageError("--batch needs at least one of --clean, --build, --exec (or a cell body)")
        outcome, _ = self.stream(session, "", mode="batch", options=options)
        if outcome.ok:
            print("[batch finished: exit code 0]", file=sys.stderr)
        else:
            print(f"[batch failed: {outcome.evalue}]", file=sys.stderr)
            self.raise_for(outcome)

    def _upload(self, session: ComputeSession, paths: list[Path], dest_note: str = "") -> None:
        files: list[Path] = []
        for path in paths:
            if path.is_dir():
                files += sorted(p for p in path.rglob("*") if p.is_file())
            elif path.is_file():
                files.append(path)
            else:
                raise UsageError(f"No such file or directory: {path}")
        if not files:
            return
        base = Path.cwd()
        for f in files:
            if not f.resolve().is_relative_to(base):
                raise UsageError(f"{f} is outside the current directory; uploads keep paths relative to it")
        with Progress("Uploading", total=len(files)) as progress:
            for f in files:
                self.call(session.upload([f.resolve()], basedir=base))
                progress.advance(f"{f} ({human_size(f.stat().st_size)})")

    def _send_variables(self, session: ComputeSession, names: list[str], allow_pickle: bool) -> None:
        formats = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                if name not in self.shell.user_ns:
                    raise UsageError(f"-i {name}: no such local variable")
                fmt, data = encode(name, self.shell.user_ns[name], allow_pickle=allow_pickle)
                path = Path(tmp, REMOTE_DIR, "in", f"{name}.{fmt}")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                formats[name] = fmt
                print(f"-i {name}: {fmt}, {human_size(len(data))}", file=sys.stderr)
            files = [str(Path(REMOTE_DIR, "in", f"{n}.{f}")) for n, f in formats.items()]
            self.call(session.upload(files, basedir=tmp))
        outcome, _ = self.stream(session, load_snippet(formats), show=False)
        self.raise_for(outcome)

    def _receive_variables(self, session: ComputeSession, names: list[str], allow_pickle: bool) -> None:
        outcome, stdout = self.stream(session, save_snippet(names, allow_pickle), show=False)
        self.raise_for(outcome)
        report = parse_saved(stdout)
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                info = report.get(name)
                if isinstance(info, dict):
                    print(f"-o {name}: {info.get('error')}", file=sys.stderr)
                    continue
                fmt, size = info
                remote = f"{REMOTE_DIR}/out/{name}.{fmt}"
                self.call(session.download([remote], dest=tmp))
                data = Path(tmp, f"{name}.{fmt}").read_bytes()
                try:
                    self.shell.user_ns[name] = decode(name, fmt, data, allow_pickle=allow_pickle)
                except VariableError as e:
                    print(f"-o {e}", file=sys.stderr)
                    continue
                print(f"-o {name}: {fmt}, {human_size(size)}", file=sys.stderr)

    # -- sessions ----------------------------------------------------------------------------------
    @line_magic
    def backend_session(self, line: str):
        """Manage sessions: list | info [NAME] | new NAME [...] | attach NAME | use NAME |
        restart [NAME] | destroy NAME | logs [NAME]."""
        words = shlex.split(line)
        if not words:
            raise UsageError("usage: %backend_session list|info|new|attach|use|restart|destroy|logs ...")
        command, rest = words[0], words[1:]
        api = self.api()
        if command == "list":
            try:
                rows = self.call(ComputeSession.list(api))
            except UsageError:
                rows = []
            # A real manager lists sessions only through GraphQL (its REST listing is empty): show
            # at least the ones this IPython knows.
            listed = {row.get("name") for row in rows}
            rows += [{"name": n, "status": "?"} for n in self.sessions if n not in listed]
            for row in rows:
                mark = "*" if row.get("name") == self.current else " "
                owner = "ours" if row.get("name") in self.sessions and self.sessions[row["name"]].owned else ""
                print(f"{mark} {row.get('name', ''):40} {row.get('status', ''):10} {row.get('image', '') or '':12} {owner}")
            return None
        if command == "new":
            if not rest:
                raise UsageError("usage: %backend_session new NAME [--image I] [-m F]... [-e K=V]... [--keep]")
            opts = _parse_new(rest[1:])
            self.session(rest[0], image=opts.image, mounts=opts.mount, environ=_pairs(opts.env, "-e"),
                         resources=_pairs(opts.resource, "-r"), keep=opts.keep)
            self.current = rest[0]
            return None
        if command == "attach":
            name = _one(rest, "%backend_session attach NAME")
            session = ComputeSession(api, name)
            try:
                info = self.call(session.info())
            except UsageError:
                raise UsageError(f"No session named {name!r} to attach to") from None
            session.image = info.get("image")
            self.sessions[name] = Entry(session, owned=False, adapter=self._install_adapter(session, session.image))
            self.current = name
            print(f"Attached to {name} ({info.get('status')}); it will not be destroyed by this IPython.")
            return None
        if command == "use":
            name = _one(rest, "%backend_session use NAME")
            self.session(name, create=False)
            self.current = name
            return None
        name = rest[0] if rest else self.current
        if command == "info":
            info = self.call(self.session(name, create=False).info())
            for key in ("sessionName", "sessionId", "image", "status", "age", "numQueriesExecuted", "mounts"):
                if key in info:
                    print(f"{key:20} {info[key]}")
            return None
        if command == "restart":
            session = self.session(name, create=False)
            entry = self._entry(session)
            if self.call(session.reset(replace=entry is not None and entry.owned)):
                del self.sessions[name]
                print(f"This manager cannot restart sessions, so {name} was destroyed; the next run starts a "
                      "fresh session under that name (its variables and files are gone).")
            else:
                if entry is not None:
                    entry.stuck = False  # a restarted interpreter answers again
                    entry.adapter = entry.adapter and self._install_adapter(session, session.image or self.image)
                print(f"Restarted {name}: its state is reset, its files are kept.")
            return None
        if command == "destroy":
            session = self.sessions.pop(name).session if name in self.sessions else ComputeSession(api, name)
            try:
                self.call(session.destroy())
            except UsageError as e:
                raise UsageError(f"Could not destroy {name!r}: {e}") from None
            print(f"Destroyed {name}.")
            if name == self.current:
                self.current = self.default_name
                print(f"The current session is now {self.current} (created on the next run).")
            return None
        if command == "logs":
            print(self.call(self.session(name, create=False).logs()))
            return None
        raise UsageError(f"Unknown %backend_session command {command!r}; see %backend_help")

    # -- vfolders and files ------------------------------------------------------------------------
    @line_magic
    def backend_vfolder(self, line: str):
        """Manage vfolders: list | create NAME | delete NAME | ls NAME [PATH] | mkdir NAME PATH |
        upload NAME FILE... [--dest D] | download NAME FILE... [--dest D]."""
        words = shlex.split(line)
        if not words:
            raise UsageError("usage: %backend_vfolder list|create|delete|ls|mkdir|upload|download ...")
        command, rest = words[0], words[1:]
        dest, rest = _take_option(rest, "--dest")
        api = self.api()
        if command == "list":
            for f in self.call(VFolder.list(api)):
                print(f"{f['name']:30} {f.get('permission', ''):4} {f.get('usage_mode', '')}")
            return None
        name = _one(rest[:1], f"%backend_vfolder {command} NAME ...")
        folder = VFolder(api, name)
        if command == "create":
            self.call(VFolder.create(api, name))
            print(f"Created vfolder {name}.")
        elif command == "delete":
            self.call(folder.delete())
            print(f"Deleted vfolder {name}.")
        elif command == "ls":
            for entry in self.call(folder.list_files(rest[1] if len(rest) > 1 else ".")):
                kind = "d" if entry.get("type") == "DIRECTORY" else "-"
                print(f"{kind} {entry.get('size', 0):>12} {entry['name']}")
        elif command == "mkdir":
            self.call(folder.mkdir(_one(rest[1:], "%backend_vfolder mkdir NAME PATH")))
        elif command == "upload":
            files = rest[1:]
            if not files:
                raise UsageError("usage: %backend_vfolder upload NAME FILE... [--dest DIR]")
            with Progress(f"Uploading to {name}", total=len(files)) as progress:
                for f in files:
                    self.call(folder.upload([Path(f).resolve()], basedir=Path.cwd(), dest=dest or ""))
                    progress.advance(f)
        elif command == "download":
            files = rest[1:]
            with Progress(f"Downloading from {name}", total=len(files)) as progress:
                for f in files:
                    self.call(folder.download([f], dest=dest or "."))
                    progress.advance(f)
        else:
            raise UsageError(f"Unknown %backend_vfolder command {command!r}; see %backend_help")
        return None

    @line_magic
    def backend_upload(self, line: str):
        """%backend_upload FILE... [-s NAME]: copy local files into the session's work dir."""
        name, rest = _take_option(shlex.split(line), "-s")
        if not rest:
            raise UsageError("usage: %backend_upload FILE... [-s NAME]")
        self._upload(self.session(name), [Path(p) for p in rest])

    @line_magic
    def backend_download(self, line: str):
        """%backend_download FILE... [-s NAME] [--dest DIR]: copy files from the session's work dir."""
        words = shlex.split(line)
        name, words = _take_option(words, "-s")
        dest, words = _take_option(words, "--dest")
        if not words:
            raise UsageError("usage: %backend_download FILE... [-s NAME] [--dest DIR]")
        session = self.session(name, create=False) if name else self.session()
        with Progress("Downloading", total=len(words)) as progress:
            for f in words:
                self.call(session.download([f], dest=dest or "."))
                progress.advance(f)

    # -- configuration and help --------------------------------------------------------------------
    @line_magic
    def backend_config(self, line: str):
        """Show the effective configuration and where each value came from (secret masked)."""
        try:
            env_config = Config.from_env()
        except ConfigError as e:
            raise UsageError(str(e)) from None
        origin = sources()
        effective = self.client_config or env_config
        embedded = env_config.uses_embedded_server
        for field_name in ("endpoints", "access_key", "secret_key", "vfolder_mounts", "api_version",
                           "skip_sslcert_validation", "connection_timeout", "read_timeout", "session_name"):
            value = getattr(effective, field_name)
            if field_name == "secret_key":
                value = (value[:2] + "*" * 6) if value else ""
            elif field_name == "vfolder_mounts":
                value = ",".join(str(m) for m in value)
            elif field_name == "endpoints":
                value = ",".join(value)
            where = origin[field_name]
            if embedded and field_name in ("endpoints", "access_key", "secret_key"):
                where = "embedded server" if self.client_config else "embedded server (started on first use)"
            print(f"{field_name:25} {value!s:50} {where}")
        if self.client is not None:
            print(f"{'negotiated API version':25} {self.client.api_version}")
        print(f"{'current session':25} {self.current}")

    @line_magic
    def backend_help(self, line: str):
        """Show help for the Backend.AI magics."""
        print(HELP)


def _parse(magic, line: str):
    """The magic's arguments, split like a shell does (IPython's own splitting keeps quotes)."""
    try:
        return magic.parser.parse_args(shlex.split(line))
    except ValueError as e:
        raise UsageError(f"Cannot parse the arguments: {e}") from None


_TOKEN = re.compile(r"""(?:'[^']*'|"[^"]*"|[^\s'"])+""")


def _split_options(line: str, parser) -> tuple[str, str]:
    """``--image x -m f print('hi')`` -> (``--image x -m f``, ``print('hi')``)."""
    takes_value = {opt for action in parser._actions if action.nargs is None and action.option_strings
                   for opt in action.option_strings}
    expect_value = False
    for match in _TOKEN.finditer(line):
        token = match.group(0)
        if expect_value:
            expect_value = False
        elif token.startswith("-"):
            expect_value = token in takes_value
        else:
            return line[: match.start()], line[match.start():]
    return line, ""


def _one(words: list[str], usage: str) -> str:
    if len(words) != 1:
        raise UsageError(f"usage: {usage}")
    return words[0]


def _take_option(words: list[str], flag: str) -> tuple[str | None, list[str]]:
    if flag in words:
        i = words.index(flag)
        if i + 1 >= len(words):
            raise UsageError(f"{flag} needs a value")
        return words[i + 1], words[:i] + words[i + 2:]
    return None, words


def _parse_new(words: list[str]):
    import argparse

    parser = argparse.ArgumentParser(prog="%backend_session new", add_help=False)
    parser.add_argument("--image")
    parser.add_argument("-m", "--mount", action="append")
    parser.add_argument("-e", "--env", action="append")
    parser.add_argument("-r", "--resource", action="append")
    parser.add_argument("--keep", action="store_true")
    try:
        return parser.parse_args(words)
    except SystemExit:
        raise UsageError("usage: %backend_session new NAME [--image I] [-m F]... [-e K=V]... [--keep]") from None


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(BackendMagics(ipython))
