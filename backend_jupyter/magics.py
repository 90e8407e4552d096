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

from .client import ComputeSession, VFolder
from .commands import CommandError, help_text, pairs, parse, split_options
from .config import Config, ConfigError, sources
from .console import Console
from .embedded import EmbeddedServerError
from .managed import ManagedSession
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

CONFIG_FIELDS = ("endpoints", "access_key", "secret_key", "vfolder_mounts", "api_version", "skip_sslcert_validation",
                 "connection_timeout", "read_timeout", "session_name")


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


def _pairs(items, flag: str) -> dict[str, str]:
    try:
        return pairs(items, flag)
    except CommandError as e:
        raise UsageError(str(e)) from None


@magics_class
class BackendMagics(Magics):
    display_adapter = Bool(True, help="Install the display adapter in Python sessions, so rich output "
                                      "arrives whole (see remote.py).").tag(config=True)

    def __init__(self, shell):
        super().__init__(shell)
        self.console = Console(display_adapter=lambda: self.display_adapter)
        atexit.register(self.console.close)

    def _open(self, args) -> ManagedSession:
        """The session a run's (or ``new``'s) options name, opened with those options."""
        try:
            return self.console.session(args.name, image=args.image, mounts=args.mount, keep=args.keep,
                                        environ=_pairs(args.env, "-e"), resources=_pairs(args.resource, "-r"))
        except (ConfigError, EmbeddedServerError) as e:
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
        self._upload(managed.session, [Path(p) for p in args.upload or []])
        options = {"clean": args.clean, "build": args.build, "exec": exec_cmd, "buildLog": True}
        outcome, _ = self.console.run(managed, "", mode="batch", options=options)
        if outcome.ok:
            print("[batch finished: exit code 0]", file=sys.stderr)
        else:
            print(f"[batch failed: {outcome.evalue}]", file=sys.stderr)
            raise_for(outcome)

    def _upload(self, session: ComputeSession, paths: list[Path]) -> None:
        files: list[Path] = []
        for path in paths:
            if path.is_dir():
                files += sorted(p for p in path.rglob("*") if p.is_file())
            elif path.is_file():
                files.append(path)
            else:
                raise UsageError(f"No such file or directory: {path}")
        base = Path.cwd()
        for f in files:
            if not f.resolve().is_relative_to(base):
                raise UsageError(f"{f} is outside the current directory; uploads keep paths relative to it")
        if not files:
            return
        with Progress("Uploading", total=len(files)) as progress:
            for f in files:
                self.console.call(session.upload([f.resolve()], basedir=base))
                progress.advance(f"{f} ({human_size(f.stat().st_size)})")

    def _send_variables(self, managed: ManagedSession, names: list[str], allow_pickle: bool) -> None:
        formats = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                if name not in self.shell.user_ns:
                    raise UsageError(f"-i {name}: no such local variable")
                try:
                    fmt, data = encode(name, self.shell.user_ns[name], allow_pickle=allow_pickle)
                except VariableError as e:
                    raise UsageError(str(e)) from None
                path = Path(tmp, REMOTE_DIR, "in", f"{name}.{fmt}")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                formats[name] = fmt
                print(f"-i {name}: {fmt}, {human_size(len(data))}", file=sys.stderr)
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

    # -- %backend_session ----------------------------------------------------------------------------
    @line_magic
    def backend_session(self, line: str):
        """Manage sessions.  See %backend_help backend_session."""
        args = _args("backend_session", line)
        getattr(self, f"_session_{args.subcommand}")(args)

    def _session_list(self, args) -> None:
        console = self.console
        try:
            rows = console.call(ComputeSession.list(console.api()))
        except UsageError:
            rows = []
        # A real manager lists sessions only through GraphQL (its REST listing is empty): show at
        # least the ones this IPython knows.
        listed = {row.get("name") for row in rows}
        rows += [{"name": n, "status": "?"} for n in console.sessions if n not in listed]
        for row in rows:
            mark = "*" if row.get("name") == console.current else " "
            known = console.sessions.get(row.get("name"))
            owner = "ours" if known is not None and known.owned else ""
            print(f"{mark} {row.get('name', ''):40} {row.get('status', ''):10} {row.get('image', '') or '':12} {owner}")

    def _session_new(self, args) -> None:
        self._open(args)
        self.console.current = args.name

    def _session_attach(self, args) -> None:
        try:
            managed = self.console.session(args.name, attach=True)
        except UsageError:
            raise UsageError(f"No session named {args.name!r} to attach to") from None
        self.console.current = args.name
        print(f"Attached to {args.name} ({managed.session.image}); it will not be destroyed by this IPython.")

    def _session_use(self, args) -> None:
        self.console.session(args.name, create=False)
        self.console.current = args.name

    def _session_info(self, args) -> None:
        info = self.console.call(self.console.session(args.name, create=False).session.info())
        for key in ("sessionName", "sessionId", "image", "status", "age", "numQueriesExecuted", "mounts"):
            if key in info:
                print(f"{key:20} {info[key]}")

    def _session_restart(self, args) -> None:
        name = args.name or self.console.current
        managed = self.console.session(name, create=False)
        result = self.console.call(managed.restart())
        if result == "replaced":
            self.console.sessions.pop(name, None)
            print(f"This manager cannot restart sessions, so {name} was destroyed; the next run starts a "
                  "fresh session under that name (its variables and files are gone).")
        elif result == "kept":
            print(f"This manager cannot restart sessions and {name} is not ours to replace: its state is kept.")
        else:
            print(f"Restarted {name}: its state is reset, its files are kept.")

    def _session_destroy(self, args) -> None:
        name = args.name
        known = self.console.sessions.get(name)
        session = known.session if known is not None else ComputeSession(self.console.api(), name)
        try:
            self.console.call(session.destroy())
        except UsageError as e:
            raise UsageError(f"Could not destroy {name!r}: {e}") from None
        print(f"Destroyed {name}.")
        self.console.forget(name)

    def _session_logs(self, args) -> None:
        print(self.console.call(self.console.session(args.name, create=False).session.logs()))

    # -- vfolders and files ------------------------------------------------------------------------
    @line_magic
    def backend_vfolder(self, line: str):
        """Manage vfolders.  See %backend_help backend_vfolder."""
        args = _args("backend_vfolder", line)
        api, call = self.console.api(), self.console.call
        if args.subcommand == "list":
            for f in call(VFolder.list(api)):
                print(f"{f['name']:30} {f.get('permission', ''):4} {f.get('usage_mode', '')}")
            return
        folder = VFolder(api, args.folder)
        if args.subcommand == "create":
            call(VFolder.create(api, args.folder))
            print(f"Created vfolder {args.folder}.")
        elif args.subcommand == "delete":
            call(folder.delete())
            print(f"Deleted vfolder {args.folder}.")
        elif args.subcommand == "ls":
            for entry in call(folder.list_files(args.path)):
                kind = "d" if entry.get("type") == "DIRECTORY" else "-"
                print(f"{kind} {entry.get('size', 0):>12} {entry['name']}")
        elif args.subcommand == "mkdir":
            call(folder.mkdir(args.path))
        elif args.subcommand == "upload":
            with Progress(f"Uploading to {args.folder}", total=len(args.files)) as progress:
                for f in args.files:
                    call(folder.upload([Path(f).resolve()], basedir=Path.cwd(), dest=args.dest or ""))
                    progress.advance(f)
        else:  # download
            self._download(folder, args.files, args.dest, f"Downloading from {args.folder}")

    def _download(self, source: ComputeSession | VFolder, files: list[str], dest: str | None, title: str) -> None:
        with Progress(title, total=len(files)) as progress:
            for f in files:
                self.console.call(source.download([f], dest=dest or "."))
                progress.advance(f)

    @line_magic
    def backend_upload(self, line: str):
        """Copy local files into the session's work dir.  See %backend_help backend_upload."""
        args = _args("backend_upload", line)
        self._upload(self.console.session(args.name).session, [Path(p) for p in args.files])

    @line_magic
    def backend_download(self, line: str):
        """Copy files from the session's work dir.  See %backend_help backend_download."""
        args = _args("backend_download", line)
        managed = self.console.session(args.name, create=False) if args.name else self.console.session()
        self._download(managed.session, args.files, args.dest, "Downloading")

    # -- configuration and help --------------------------------------------------------------------
    @line_magic
    def backend_config(self, line: str):
        """Show the effective configuration and where each value came from (secret masked)."""
        _args("backend_config", line)
        try:
            env_config = Config.from_env()
        except ConfigError as e:
            raise UsageError(str(e)) from None
        origin, console = sources(), self.console
        effective = console.config or env_config
        for field_name in CONFIG_FIELDS:
            value = getattr(effective, field_name)
            if field_name == "secret_key":
                value = (value[:2] + "*" * 6) if value else ""
            elif field_name in ("vfolder_mounts", "endpoints"):
                value = ",".join(str(m) for m in value)
            where = origin[field_name]
            if env_config.uses_embedded_server and field_name in ("endpoints", "access_key", "secret_key"):
                where = "embedded server" if console.config else "embedded server (started on first use)"
            print(f"{field_name:25} {value!s:50} {where}")
        if console.client is not None:
            print(f"{'negotiated API version':25} {console.client.api_version}")
        print(f"{'current session':25} {console.current}")

    @line_magic
    def backend_help(self, line: str):
        """Show help for the Backend.AI magics."""
        args = _args("backend_help", line)
        try:
            print(help_text(args.command))
        except CommandError as e:
            raise UsageError(str(e)) from None


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(BackendMagics(ipython))
