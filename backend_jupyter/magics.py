"""IPython magics: run cells on Backend.AI from any local IPython kernel or terminal.

``%load_ext backend_jupyter`` registers ``%%backend_run``/``%backend_run``, ``%backend_session``,
``%backend_vfolder``, ``%backend_upload``, ``%backend_download``, ``%backend_config`` and
``%backend_help``.  Their arguments and help come from one table (commands.py); the connection,
the sessions and the running of cells live in console.py; this module is the IPython glue.
"""

from __future__ import annotations

import atexit
import sys
import tempfile
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from traitlets import Bool

from .actions import (
    RemoteFailure,
    local_files,
    requested_settings,
    send_files,
    submit_jobs,
)
from .commands import CommandError, parse, split_options
from .config import ConfigError
from .console import Console
from .embedded import EmbeddedServerError
from .managed import ManagedSession
from .variables import (
    REMOTE_DIR,
    VariableError,
    decode,
    human_size,
    load_snippet,
    parse_saved,
    save_snippet,
)


class RemoteError(Exception):
    """A cell that failed on the remote session; shows the remote traceback once."""

    def __init__(self, ename: str, evalue: str, traceback: list[str]):
        super().__init__(f"{ename}: {evalue}")
        self.ename, self.evalue, self.remote_traceback = ename, evalue, traceback

    def _render_traceback_(self) -> list[str]:
        return self.remote_traceback or [f"\x1b[0;31m{self.ename}\x1b[0m: {self.evalue}"]


def raise_for(outcome) -> None:
    if not outcome.ok:
        raise RemoteError(outcome.ename, outcome.evalue, outcome.traceback)


def _args(command: str, line: str | list[str]):
    try:
        return parse(command, line)
    except CommandError as e:
        raise UsageError(str(e)) from None


@magics_class
class BackendMagics(Magics):
    display_adapter = Bool(True, help="Install the display adapter in Python sessions, so rich output "
                                      "arrives whole (see remote.py).").tag(config=True)

    def __init__(self, shell):
        super().__init__(shell)
        self.console = Console(display_adapter=lambda: self.display_adapter)
        self.console.namespace = self.shell.user_ns if self.shell is not None else {}
        atexit.register(self.console.close)

    def _open(self, args) -> ManagedSession:
        """The session a run's (or ``new``'s) options name, opened with those options."""
        try:
            return self.console.session(args.name, settings=requested_settings(self.console, args), keep=args.keep)
        except (ConfigError, EmbeddedServerError, CommandError) as e:
            raise UsageError(str(e)) from None

    # -- %%backend_run ---------------------------------------------------------------------------
    @line_cell_magic
    def backend_run(self, line: str, cell: str | None = None):
        """Run code on a Backend.AI compute session.  See %backend_help backend_run."""
        if cell is None:  # line magic: options first, then the code, taken verbatim
            line, code = split_options(line, "backend_run")
        args = _args("backend_run", line)
        if cell is not None:
            code = cell
            if args.code:
                raise UsageError(f"Unexpected arguments: {' '.join(args.code)}")
        if args.bg:
            self.console.call(submit_jobs(self.console, args, code))  # usage errors become UsageError there
            return None
        managed = self._open(args)
        if args.batch:
            return self._batch(managed, args, code)
        if not code.strip():
            return None
        if args.inputs:
            self._send_variables(managed, args.inputs, args.allow_pickle)
        outcome, _ = self.console.run(managed, code)
        raise_for(outcome)
        if args.outputs:
            self._receive_variables(managed, args.outputs, args.allow_pickle)
        return None

    def _batch(self, managed: ManagedSession, args, body: str):
        exec_cmd = args.exec_ or (body.strip() or None)
        if not any((args.clean, args.build, exec_cmd)):
            raise UsageError("--batch needs at least one of --clean, --build, --exec (or a cell body)")
        if args.upload:
            try:
                files = local_files(self.console.where, args.upload)
            except CommandError as e:
                raise UsageError(str(e)) from None
            self.console.call(send_files(self.console, managed.session, files, "", f"Uploading to {managed.name}"))
        options = {"clean": args.clean, "build": args.build, "exec": exec_cmd, "buildLog": True}
        outcome, _ = self.console.run(managed, "", mode="batch", options=options)
        if outcome.ok:
            print("[batch finished: exit code 0]", file=sys.stderr)
        else:
            print(f"[batch failed: {outcome.evalue}]", file=sys.stderr)
            raise_for(outcome)

    def _send_variables(self, managed: ManagedSession, names: list[str], allow_pickle: bool) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            staging = Path(tmp, REMOTE_DIR, "in")
            staging.mkdir(parents=True)
            formats = self.console.call(self.console.export_values(names, allow_pickle, staging))
            for name, fmt in formats.items():
                print(f"-i {name}: {fmt}, {human_size((staging / f'{name}.{fmt}').stat().st_size)}", file=sys.stderr)
            files = [str(Path(REMOTE_DIR, "in", f"{n}.{f}")) for n, f in formats.items()]
            self.console.call(managed.session.upload(files, basedir=tmp))
        outcome, _ = self.console.run(managed, load_snippet(formats), show=False)
        raise_for(outcome)

    def _receive_variables(self, managed: ManagedSession, names: list[str], allow_pickle: bool) -> None:
        outcome, stdout = self.console.run(managed, save_snippet(names, allow_pickle), show=False)
        raise_for(outcome)
        report = parse_saved(stdout)
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                info = report.get(name)
                if isinstance(info, dict):
                    print(f"-o {name}: {info.get('error')}", file=sys.stderr)
                    continue
                fmt, size = info
                self.console.call(managed.session.download([f"{REMOTE_DIR}/out/{name}.{fmt}"], dest=tmp))
                data = Path(tmp, f"{name}.{fmt}").read_bytes()
                try:
                    self.shell.user_ns[name] = decode(name, fmt, data, allow_pickle=allow_pickle)
                except VariableError as e:
                    print(f"-o {e}", file=sys.stderr)
                    continue
                print(f"-o {name}: {fmt}, {human_size(size)}", file=sys.stderr)

    # -- the other commands (actions.py, shared with the kernel) ------------------------------------
    def _perform(self, command: str, line: str) -> None:
        try:
            self.console.perform(command, _args(command, line))
        except (ConfigError, EmbeddedServerError) as e:
            raise UsageError(str(e)) from None
        except RemoteFailure as e:
            raise RemoteError(e.ename, e.evalue, e.traceback) from None

    @line_magic
    def backend_jobs(self, line: str):
        """Every background job.  See %backend_help backend_jobs."""
        self._perform("backend_jobs", line)

    @line_magic
    def backend_job(self, line: str):
        """One background job: output, wait, cancel; clean.  See %backend_help backend_job."""
        self._perform("backend_job", line)

    @line_magic
    def backend_session(self, line: str):
        """Manage sessions.  See %backend_help backend_session."""
        self._perform("backend_session", line)

    @line_magic
    def backend_vfolder(self, line: str):
        """Manage vfolders.  See %backend_help backend_vfolder."""
        self._perform("backend_vfolder", line)

    @line_magic
    def backend_upload(self, line: str):
        """Copy local files into the session's work dir.  See %backend_help backend_upload."""
        self._perform("backend_upload", line)

    @line_magic
    def backend_download(self, line: str):
        """Copy files from the session's work dir.  See %backend_help backend_download."""
        self._perform("backend_download", line)

    @line_magic
    def backend_config(self, line: str):
        """Show the effective configuration and where each value came from (secret masked)."""
        self._perform("backend_config", line)

    @line_magic
    def backend_help(self, line: str):
        """Show help for the Backend.AI magics."""
        self._perform("backend_help", line)


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(BackendMagics(ipython))
