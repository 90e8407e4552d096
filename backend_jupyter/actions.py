"""What the ``%backend_*`` commands do, written once for both front-ends.

The kernel (commands at the top of a cell) and the magics (a local IPython) parse a command with
commands.py, then :func:`perform` it against a :class:`Host`: the front-end's client, its sessions
and where what it shows goes.  A command acts through the host and emits what to show as events,
:class:`Say` (a line of text) and :class:`Progress` (a step shown in place); the kernel publishes
them on IOPub, the magics print them and draw progress bars on IPython's main thread.
``%backend_run`` is not here: running a cell is the driver's job, each front-end's own glue.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import html
import itertools
import os
import posixpath
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import jobs
from .client import APIClient, ComputeSession, SessionNotFound, VFolder
from .commands import CommandError, help_text, pairs
from .config import Config, ConfigError, parse_mounts, sources, trust_description
from .display import RichOutput
from .embedded import resolve_config
from .journal import ENDED, JOB_NAME_RE, JobExists, JobInfo, Journal, all_journals, find
from .kernelspecs import is_python
from .managed import ManagedSession, Settings
from .remote import ADAPTER_MISSING
from .usage import describe_session
from .variables import human_size

CONFIG_FIELDS = ("endpoints", "access_key", "secret_key", "vfolder_mounts", "api_version", "skip_sslcert_validation",
                 "ca_bundle", "connection_timeout", "read_timeout", "session_name")


@dataclass
class Say:
    """Text to show (a trailing newline is added when missing, unless ``exact``)."""

    text: str
    stream: str = "stdout"
    exact: bool = False  # stream text passed on as it came (a job's output)

    def shown(self) -> str:
        return self.text if self.exact or self.text.endswith("\n") else self.text + "\n"


@dataclass(eq=False)
class Progress:
    """A step shown in place: emitted again each time it advances and when it ends."""

    title: str
    total: int | None = None
    done: int = 0
    item: str = ""
    state: str = "running"  # running | done | failed
    note: str = ""
    started: float = field(default_factory=time.monotonic)

    def advance(self, item: str = "") -> Progress:
        self.done += 1
        self.item = item
        return self

    def end(self, ok: bool = True, note: str = "") -> Progress:
        self.state = "done" if ok else "failed"
        self.note = note or (f"done in {time.monotonic() - self.started:.1f} s" if ok else "failed")
        return self

    def text(self) -> str:
        if self.state != "running":
            return f"{self.title}: {self.note}"
        count = f" {self.done}/{self.total}" if self.total else ""
        return f"{self.title}{count}{': ' + self.item if self.item else ' …'}"


@dataclass(eq=False)
class Panel:
    """Background jobs shown in place, a row each (status, elapsed time, the last line of output):
    emitted again while any runs, at most twice a second (see :func:`watch_panel`)."""

    names: list[str]
    root: Path

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        rows = []
        for name in self.names:
            try:
                journal = find(name, self.root)
                info = journal.info()
            except (KeyError, OSError, ValueError):
                rows.append((name, "", "forgotten", "", ""))
                continue
            last = info.error or last_line(journal)
            rows.append((name, info.params_text, info.status, f"{info.elapsed:.0f} s", last))
        return rows

    def done(self) -> bool:
        """Whether every job has ended (from their info only: no output is read)."""
        for name in self.names:
            try:
                if find(name, self.root).info().status not in ENDED:
                    return False
            except (KeyError, OSError, ValueError):
                continue  # forgotten
        return True

    def data(self) -> dict[str, str]:
        rows = self.rows()
        text = "\n".join(f"{name:20} {status:10} {elapsed:>7}  {params:24} {last}".rstrip()
                         for name, params, status, elapsed, last in rows)
        cells = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(params)}</td><td>{html.escape(status)}</td>"
            f"<td>{elapsed}</td><td><code>{html.escape(last)}</code></td></tr>" for name, params, status, elapsed, last in rows)
        return {"text/plain": text, "text/html": "<table class='backend-jobs'><tr><th>job</th><th>parameters</th>"
                                                  f"<th>status</th><th>elapsed</th><th>last output</th></tr>{cells}</table>"}


def last_line(journal: Journal, window: int = 4096) -> str:
    """The last line of text a job printed (read from the end of its journal only)."""
    start = max(0, journal.size() - window)
    records, _ = journal.read(start, window)
    if start:  # the first line read may be a record's tail
        records = records[1:] if records else records
    for record in reversed(records):
        text = record.get("text", "") if record.get("k") in ("stdout", "stderr") else ""
        lines = [line for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1][:200]
    return ""


async def watch_panel(host: Host, panel: Panel, interval: float = 0.5) -> None:
    """Show ``panel`` again at most every ``interval`` seconds until its jobs have ended."""
    while not panel.done():
        await asyncio.sleep(interval)
        host.emit(panel)


class Host(Protocol):
    """A front-end as the commands see it."""

    where: Path  # local files are read from and written under this directory
    current: str  # the name of the session commands act on by default
    sessions: dict[str, ManagedSession]  # the sessions this front-end opened or attached, by name
    settings: Settings  # what a new session of this front-end starts with
    client_config: Config | None  # the effective configuration, once connected
    board: jobs.Board  # the background jobs this front-end follows
    negotiated_version: str | None  # the API version agreed with the server, once connected

    async def client(self) -> APIClient: ...

    async def open(self, name: str | None = None, *, settings: Settings | None = None, keep: bool = False,
                   create: bool = True, attach: bool = False) -> ManagedSession: ...

    def adopt(self, settings: Settings) -> None:
        """``%backend_session new`` changed the current session's settings: later restarts use them."""

    def forget(self, name: str) -> None:
        """``name`` is gone; if it was the current session, the front-end's default is current again."""

    def emit(self, event: Say | Progress | Rich | Panel) -> None: ...

    async def export_values(self, names: list[str], allow_pickle: bool, dest: Path) -> dict[str, str]:
        """Write the user's variables ``names`` into ``dest`` as valuecodec files: ``{name: format}``
        (CommandError naming the first that cannot be).  The magics' variables are the local
        IPython's; the kernel's are its session's."""

    async def import_values(self, order: dict, base: Path) -> None:
        """Set variables where the user's variables are: ``valuecodec.land(order)`` with the files
        under ``base``."""


async def perform(host: Host, command: str, args: argparse.Namespace) -> None:
    """Carry out ``%command`` (already parsed) on ``host``.  Usage problems raise
    :class:`CommandError`; the client's errors (``BackendError``) pass through."""
    if command == "backend_session":
        await SESSION_COMMANDS[args.subcommand](host, args)
    elif command == "backend_vfolder":
        await vfolder(host, args)
    elif command == "backend_upload":
        await upload(host, args)
    elif command == "backend_download":
        await download(host, args)
    elif command == "backend_config":
        await show_config(host)
    elif command == "backend_help":
        host.emit(Say(help_text(args.command)))
    elif command == "backend_jobs":
        await jobs_list(host, args)
    elif command == "backend_job":
        await JOB_COMMANDS[args.subcommand](host, args)
    else:
        raise CommandError(f"%{command} is not a command of this front-end")


# -- connecting and opening sessions -------------------------------------------------------------------
async def connect(host: Host, config: Config, user_agent: str) -> tuple[APIClient, Config]:
    """A client for ``config``; with no cluster configured, for the embedded server (started if
    needed, and said once)."""
    resolved, server = await asyncio.to_thread(resolve_config, config)
    if server is not None:
        host.emit(Say(server.notice(), "stderr"))
    client = APIClient(resolved, user_agent=user_agent)
    await client.open()
    return client, resolved


def requested_settings(host: Host, args: argparse.Namespace) -> Settings | None:
    """The settings a command's session options ask for on top of the host's; None if it gives none."""
    mounts = tuple(parse_mounts(",".join(args.mount), "-m")) if getattr(args, "mount", None) else None
    environ = pairs(args.env, "-e") if getattr(args, "env", None) else None
    resources = pairs(args.resource, "-r") if getattr(args, "resource", None) else None
    image = getattr(args, "image", None)
    if image is None and mounts is None and environ is None and resources is None:
        return None
    return host.settings.overridden(image=image, mounts=mounts, environ=environ, resources=resources)


async def open_session(host: Host, name: str, settings: Settings, *, adapter: bool, keep: bool = False,
                       attach: bool = False) -> ManagedSession:
    """Open ``name`` with ``settings`` (``attach``: a running session, never ours), showing progress."""
    api = await host.client()
    missing = [m.name for m in settings.mounts if not await VFolder(api, m.name).exists()]
    if missing:
        raise CommandError(f"No such vfolder: {', '.join(missing)} (create it with %backend_vfolder create NAME)")
    progress = Progress(f"{'Attaching to' if attach else 'Starting'} session {name} ({settings.image})")
    host.emit(progress)
    try:
        managed = await ManagedSession.open(api, name, settings, adapter=adapter, keep=keep, attach=attach)
    except BaseException:
        host.emit(progress.end(ok=False))
        raise
    if attach:
        note = f"attached ({managed.session.image}); never destroyed from here"
    else:
        note = (f"started in {time.monotonic() - progress.started:.1f} s" if managed.session.created
                else "attached to the running session")
    host.emit(progress.end(note=note))
    if is_python(settings.image) and adapter and not managed.adapter:
        host.emit(Say(ADAPTER_MISSING, "stderr"))
    host.sessions[name] = managed
    return managed


# -- %backend_session -------------------------------------------------------------------------------
async def session_list(host: Host, args) -> None:
    api = await host.client()
    try:
        rows = await ComputeSession.list(api)
    except Exception:  # a real manager lists sessions only through GraphQL: show the ones we know
        rows = []
    listed = {row.get("name") for row in rows}
    rows += [{"name": n, "status": "?"} for n in host.sessions if n not in listed]
    for row in rows:
        mark = "*" if row.get("name") == host.current else " "
        known = host.sessions.get(row.get("name"))
        owner = "ours" if known is not None and known.owned else ""
        host.emit(Say(f"{mark} {row.get('name', ''):40} {row.get('status', ''):10} "
                      f"{row.get('image', '') or '':12} {owner}".rstrip()))


async def _known_or_named(host: Host, name: str) -> tuple[ManagedSession | None, ComputeSession]:
    """The session ``name``: the front-end's own record of it if it has one, else by name alone."""
    managed = host.sessions.get(name)
    return managed, managed.session if managed is not None else ComputeSession(await host.client(), name)


async def session_info(host: Host, args) -> None:
    name = args.name or host.current
    managed, session = await _known_or_named(host, name)
    try:
        info = await session.info()
    except SessionNotFound:
        raise CommandError(f"No session {name!r} (it starts with the first cell that runs)") from None
    session.id = session.id or info.get("sessionId")
    if session.id and not info.get("sessionId"):  # 26.09 leaves it out: the create response had it
        info = {**info, "sessionId": session.id}
    stat = await session.live_stat()
    host.emit(Say(describe_session(info, stat, endpoint=session.client.endpoint, managed=managed)))


async def session_logs(host: Host, args) -> None:
    name = args.name or host.current
    _, session = await _known_or_named(host, name)
    logs = await session.logs()
    host.emit(Say(logs if logs.strip() else f"(the kernel log of {name} is empty)"))


async def session_restart(host: Host, args) -> None:
    name = args.name or host.current
    managed = await host.open(name, create=False)
    result = await managed.restart()
    if result == "replaced":
        host.sessions.pop(name, None)
        host.emit(Say(f"This manager cannot restart sessions, so {name} was destroyed; the next run starts a "
                      "fresh session under that name (its variables and files are gone)."))
    elif result == "kept":
        host.emit(Say(f"This manager cannot restart sessions and {name} is not ours to replace: its state is kept."))
    else:
        host.emit(Say(f"Restarted {name}: its state is reset, its files are kept."))


async def session_new(host: Host, args) -> None:
    """Start a session with the given settings and make it current.  Without a name, or with the
    current one, the current session is replaced: it is destroyed first (its variables are lost)
    and the new settings hold for its later restarts."""
    settings = requested_settings(host, args) or host.settings
    name = args.name or host.current
    if name == host.current:
        old = host.sessions.get(name)
        if old is not None and not old.gone:
            if not old.owned:
                raise CommandError(f"{name} was attached, not started here: it is not ours to replace")
            host.emit(Say(f"Replacing {name}: its variables are lost (files in its vfolders stay).", "stderr"))
            await old.destroy()
            await old.session.wait_gone(30)
            host.sessions.pop(name, None)
        host.adopt(settings)
    await host.open(name, settings=settings, keep=args.keep)
    host.current = name


async def session_attach(host: Host, args) -> None:
    try:
        managed = await host.open(args.name, attach=True)
    except SessionNotFound:
        raise CommandError(f"No session named {args.name!r} to attach to") from None
    host.current = args.name
    host.emit(Say(f"Attached to {args.name} ({managed.session.image}); it will not be destroyed from here."))


async def session_use(host: Host, args) -> None:
    await host.open(args.name, create=False)
    host.current = args.name


async def session_destroy(host: Host, args) -> None:
    name = args.name
    _, session = await _known_or_named(host, name)
    try:
        await session.destroy()
    except SessionNotFound:
        raise CommandError(f"No session {name!r} to destroy") from None
    host.emit(Say(f"Destroyed {name}."))
    host.forget(name)


SESSION_COMMANDS = {"list": session_list, "info": session_info, "logs": session_logs, "restart": session_restart,
                    "new": session_new, "attach": session_attach, "use": session_use, "destroy": session_destroy}


# -- files --------------------------------------------------------------------------------------------
def remote_path(path: str, what: str) -> str:
    """A path in the session's work directory or a vfolder: relative, without ``..``."""
    clean = posixpath.normpath(path.replace("\\", "/")) if path else "."
    if path.startswith(("/", "~")) or clean == ".." or clean.startswith("../"):
        raise CommandError(f"{what} {path!r}: give a path relative to the work directory, without '..'")
    return "" if clean == "." else clean


def local_dir(base: Path, dest: str | None) -> Path:
    """A local destination directory inside ``base``'s tree."""
    target = (base / (dest or ".")).resolve()
    if not target.is_relative_to(base.resolve()):
        raise CommandError(f"--dest {dest!r} is outside {base}; downloads stay under the notebook's directory")
    return target


def local_files(base: Path, paths: list[str]) -> list[Path]:
    """The files ``paths`` name (directories recursively), all checked before anything is sent."""
    base = base.resolve()
    found: list[Path] = []
    for raw in paths:
        path = (base / raw).resolve()
        if not path.exists():
            raise CommandError(f"No such file or directory: {raw}")
        if not path.is_relative_to(base):
            raise CommandError(f"{raw} is outside {base}; uploads keep paths relative to it")
        found += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    unreadable = [str(p.relative_to(base)) for p in found if not os.access(p, os.R_OK)]
    if unreadable:
        raise CommandError(f"Cannot read {', '.join(unreadable)}: nothing was uploaded")
    return found


async def upload(host: Host, args) -> None:
    files = local_files(host.where, args.files)
    dest = remote_path(args.dest, "--dest") if args.dest else ""
    managed = await host.open(args.name)
    await send_files(host, managed.session, files, dest, f"Uploading to {managed.name}")


async def send_files(host: Host, target: ComputeSession | VFolder, files: list[Path], dest: str, title: str) -> None:
    """Upload ``files`` (paths under ``host.where``) one by one, with progress and sizes."""
    base = host.where.resolve()
    progress = Progress(title, total=len(files))
    host.emit(progress)
    sent = 0
    try:
        for path in files:
            await target.upload([path], basedir=base, dest=dest)
            size = path.stat().st_size
            sent += size
            host.emit(progress.advance(f"{path.relative_to(base)} ({human_size(size)})"))
    except BaseException:
        host.emit(progress.end(ok=False))
        raise
    host.emit(progress.end(note=f"{len(files)} file{'s' * (len(files) != 1)}, {human_size(sent)} in "
                                f"{time.monotonic() - progress.started:.1f} s"))


async def download(host: Host, args) -> None:
    names = [remote_path(p, "PATH") for p in args.files]
    dest = local_dir(host.where, args.dest)
    managed = await host.open(args.name, create=args.name is None)
    await fetch_files(host, managed.session, names, dest, f"Downloading from {managed.name}")


async def fetch_files(host: Host, source: ComputeSession | VFolder, names: list[str], dest: Path, title: str) -> None:
    """Download ``names`` into ``dest`` through a scratch directory, so that a missing file leaves
    nothing behind locally."""
    progress = Progress(title, total=len(names))
    host.emit(progress)
    received = 0
    try:
        with tempfile.TemporaryDirectory(prefix="backend-download-") as tmp:
            for name in names:
                await source.download([name], dest=tmp)
                progress.advance(name)
                host.emit(progress)
            dest.mkdir(parents=True, exist_ok=True)
            for item in sorted(Path(tmp).iterdir()):
                received += sum(f.stat().st_size for f in item.rglob("*") if f.is_file()) if item.is_dir() \
                    else item.stat().st_size
                _move(item, dest / item.name)
    except BaseException:
        host.emit(progress.end(ok=False))
        raise
    host.emit(progress.end(note=f"{human_size(received)} into {dest}"))


def _move(item: Path, target: Path) -> None:
    if target.is_dir() and item.is_dir():
        for child in item.iterdir():
            _move(child, target / child.name)
        return
    if target.is_dir():
        shutil.rmtree(target)
    shutil.move(str(item), str(target))


# -- %backend_vfolder ---------------------------------------------------------------------------------
async def vfolder(host: Host, args) -> None:
    api = await host.client()
    if args.subcommand == "list":
        for f in await VFolder.list(api, trashed=False):
            host.emit(Say(f"{f['name']:30} {f.get('permission', ''):4} {f.get('usage_mode', '')}".rstrip()))
        return
    folder = VFolder(api, args.folder)
    if args.subcommand == "create":
        await VFolder.create(api, args.folder)
        host.emit(Say(f"Created vfolder {args.folder}."))
    elif args.subcommand == "delete":
        await folder.delete()
        host.emit(Say(f"Deleted vfolder {args.folder}."))
    elif args.subcommand == "ls":
        for entry in await folder.list_files(remote_path(args.path, "PATH") or "."):
            kind = "d" if entry.get("type") == "DIRECTORY" else "-"
            host.emit(Say(f"{kind} {entry.get('size', 0):>12} {entry['name']}"))
    elif args.subcommand == "mkdir":
        await folder.mkdir(remote_path(args.path, "PATH"))
    elif args.subcommand == "upload":
        files = local_files(host.where, args.files)
        dest = remote_path(args.dest, "--dest") if args.dest else ""
        await send_files(host, folder, files, dest, f"Uploading to vfolder {args.folder}")
    else:  # download
        names = [remote_path(p, "FILE") for p in args.files]
        await fetch_files(host, folder, names, local_dir(host.where, args.dest),
                          f"Downloading from vfolder {args.folder}")


# -- %backend_config ----------------------------------------------------------------------------------
async def show_config(host: Host) -> None:
    try:
        env_config = Config.from_env()
    except ConfigError as e:
        raise CommandError(str(e)) from None
    origin = sources()
    effective = host.client_config or env_config
    lines = []
    for name in CONFIG_FIELDS:
        value = getattr(effective, name)
        if name == "secret_key":
            value = (value[:2] + "*" * 6) if value else ""
        elif name in ("vfolder_mounts", "endpoints"):
            value = ",".join(str(m) for m in value)
        where = origin[name]
        if env_config.uses_embedded_server and name in ("endpoints", "access_key", "secret_key"):
            where = "embedded server" if host.client_config else "embedded server (started on first use)"
        lines.append(f"{name:25} {value!s:50} {where}")
    if effective.uses_tls:
        lines.append(f"{'TLS certificates trusted':25} {trust_description(effective)}")
    if host.negotiated_version:
        lines.append(f"{'negotiated API version':25} {host.negotiated_version}")
    lines.append(f"{'new sessions':25} {host.settings.describe()}")
    lines.append(f"{'current session':25} {host.current}")
    host.emit(Say("\n".join(lines)))


# -- background jobs (jobs.py) -------------------------------------------------------------------------
@dataclass
class Rich:
    """A rich output to show (a job's display, replayed)."""

    output: RichOutput


class RemoteFailure(Exception):
    """What a job failed with, for the front-end to show as a cell's error."""

    def __init__(self, ename: str, evalue: str, traceback: list[str] | None = None):
        super().__init__(f"{ename}: {evalue}")
        self.ename, self.evalue, self.traceback = ename, evalue, traceback or []


def sweep_params(sweeps: list[str] | None) -> list[dict]:
    """``--sweep lr=0.1,0.01 --sweep depth=2,4`` → one dict per combination (values as Python
    literals where they are, else strings)."""
    axes: list[tuple[str, list]] = []
    for item in sweeps or []:
        name, sep, values = item.partition("=")
        if not sep or not name.isidentifier():
            raise CommandError(f"--sweep {item!r}: use VAR=V1,V2,... with VAR a Python name")
        parts = [v.strip() for v in values.split(",")]
        if not values.strip() or "" in parts:
            raise CommandError(f"--sweep {item!r}: give one or more values, comma-separated")
        axes.append((name, [_literal(v) for v in parts]))
    names = [name for name, _ in axes]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(vals for _, vals in axes))]


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


async def submit_jobs(host: Host, args, code: str) -> None:
    """``%%backend_run --bg``: the cell as a job (one per sweep combination) on a session of its
    own; returns before the sessions have started."""
    if not code.strip():
        raise CommandError("--bg needs the job's code (the cell's body)")
    if args.parallel is not None and args.parallel < 1:
        raise CommandError(f"--parallel {args.parallel}: run at least 1 job at a time")
    combos = sweep_params(args.sweep)
    base = args.name or f"job-{secrets.token_hex(3)}"
    if not JOB_NAME_RE.match(base):
        raise CommandError(f"--name {base!r}: letters, digits, '.', '_' and '-', up to 63")
    if any(j.info().sweep == base for j in all_journals(host.board.where)):
        raise CommandError(f"--name {base!r}: a sweep of that name exists already (%backend_job clean removes ended ones)")
    for name in args.outputs or []:
        if not name.isidentifier():
            raise CommandError(f"-o {name!r}: not a Python name")
    names = [base] if len(combos) == 1 else [f"{base}-{i + 1}" for i in range(len(combos))]
    api = await host.client()
    settings = requested_settings(host, args) or host.settings
    with tempfile.TemporaryDirectory() as staging:
        inputs = await host.export_values(args.inputs, args.allow_pickle, Path(staging)) if args.inputs else {}
        infos = [JobInfo(name=name, session=jobs.job_session_name(name), endpoint=api.endpoint, code=code,
                         params=params, sweep=base if len(combos) > 1 else None, keep=args.keep,
                         settings=settings.to_dict(), inputs=inputs, outputs=list(args.outputs or []),
                         allow_pickle=args.allow_pickle)
                 for name, params in zip(names, combos, strict=True)]
        try:
            host.board.submit(api, infos, args.parallel or len(infos), inputs=Path(staging))
        except JobExists as e:
            raise CommandError(str(e)) from None
    for info in infos:
        params = f" ({info.params_text})" if info.params else ""
        host.emit(Say(f"Job {info.name}{params}: starting on session {info.session}."))
    what = f"%backend_job wait {base} -o VAR" if len(combos) > 1 else f"%backend_job output {base}"
    host.emit(Say(f"Then: {what}; every job: %backend_jobs"))
    panel = Panel(names, host.board.where)
    host.emit(panel)
    host.board.watch(watch_panel(host, panel))


def _journal(name: str, board) -> Journal:
    try:
        return find(name, board.where)
    except KeyError:
        raise CommandError(f"No job named {name!r} (see %backend_jobs)") from None


async def jobs_list(host: Host, args) -> None:
    board = host.board
    board.adopt(await host.client())
    journals = all_journals(board.where)
    if args.watch:  # the live panel anew (after a reload of the page, say), until they have ended
        running = [j.name for j in journals if j.info().status not in ENDED]
        if not running:
            host.emit(Say("No job is running."))
            return
        panel = Panel(running, board.where)
        host.emit(panel)
        await watch_panel(host, panel)
        return
    if not journals:
        host.emit(Say("No jobs. Start one with %%backend_run --bg."))
        return
    rows = [f"{'name':24} {'status':10} {'elapsed':>9} {'output':>9}  {'session':30} parameters"]
    for journal in journals:
        info = journal.info()
        rows.append(f"{info.name:24} {info.status:10} {info.elapsed:8.1f}s {human_size(journal.size()):>9}  "
                    f"{info.session:30} {info.params_text}".rstrip())
    host.emit(Say("\n".join(rows)))


def show_record(host: Host, record: dict) -> None:
    """One journal record, shown as the job showed it."""
    kind = record.get("k")
    if kind in ("stdout", "stderr"):
        host.emit(Say(record.get("text", ""), kind, exact=True))
    elif kind == "display":
        host.emit(Rich(RichOutput("update_display_data" if record.get("update") else "display_data",
                                  record.get("data") or {}, record.get("metadata") or {}, record.get("display_id"))))
    elif kind == "clear":
        host.emit(Rich(RichOutput("clear_output", {}, wait=bool(record.get("wait")))))
    elif kind == "error":
        host.emit(Say("\n".join(record.get("traceback") or [f"{record.get('ename')}: {record.get('evalue')}"]),
                      "stderr"))


async def job_output(host: Host, args) -> None:
    """Replay a job's journal, then follow it live until it ends (an interrupt stops the watching only)."""
    journal = _journal(args.name, host.board)
    host.board.adopt(await host.client())
    records = list(journal.records())
    for record in records[-args.tail:] if args.tail else records:
        show_record(host, record)
    offset = journal.size()
    while journal.info().status not in ENDED:
        await asyncio.sleep(WATCH_SECONDS)
        batch, offset = journal.read(offset)
        for record in batch:
            show_record(host, record)
    for record in journal.records(offset):
        show_record(host, record)
    await _settled(host, args.name)
    info = journal.info()
    host.emit(Say(f"[job {info.name} {info.status} after {info.elapsed:.1f} s"
                  f"{': ' + info.error if info.error else ''}]", "stderr"))


def _group(name: str, board) -> list[Journal]:
    """A job by name, or the jobs of a sweep by the sweep's name."""
    with contextlib.suppress(CommandError):
        return [_journal(name, board)]
    members = [j for j in all_journals(board.where) if j.info().sweep == name]
    if not members:
        raise CommandError(f"No job or sweep named {name!r} (see %backend_jobs)")
    return members


async def job_wait(host: Host, args) -> None:
    """Wait for a job (or every job of a sweep), bring back the variables asked for, raise a failure."""
    group = _group(args.name, host.board)
    host.board.adopt(await host.client())
    while any(j.info().status not in ENDED for j in group):
        await asyncio.sleep(WATCH_SECONDS)
    for journal in group:
        await _settled(host, journal.name)
    infos = [j.info() for j in group]
    if len(group) == 1 and group[0].name == args.name:
        info = infos[0]
        if info.status == "finished":
            host.emit(Say(f"Job {info.name} finished in {info.elapsed:.1f} s."))
            if args.outputs:
                await _bring_back(host, args, group[0], info)
            return
        raise _failure(group[0], info)
    await _sweep_table(host, args, group, infos)
    failed = [info for info in infos if info.status != "finished"]
    if failed:
        host.emit(Say(f"{len(failed)} of {len(infos)} jobs of {args.name} did not finish: "
                      + ", ".join(f"{i.name} {i.status}" for i in failed), "stderr"))
        raise _failure(next(j for j in group if j.name == failed[0].name), failed[0])
    host.emit(Say(f"The {len(infos)} jobs of {args.name} finished."))


def _failure(journal: Journal, info: JobInfo) -> RemoteFailure:
    error = next((r for r in journal.records() if r.get("k") == "error"), None)
    if error is not None:
        return RemoteFailure(error.get("ename", "Error"), error.get("evalue", ""), error.get("traceback"))
    return RemoteFailure("JobFailed" if info.status == "failed" else "JobCancelled",
                         f"Job {info.name} {info.status}{': ' + info.error if info.error else ''}")


def _kept(info: JobInfo, name: str, allow_pickle: bool) -> str | None:
    """The format of variable ``name`` the job kept; None when it is not to be had (see _not_kept)."""
    entry = info.kept.get(name)
    if isinstance(entry, list):
        if entry[0] == "pickle" and not allow_pickle:
            return None
        return entry[0]
    return None


def _not_kept(info: JobInfo, name: str, allow_pickle: bool) -> str:
    entry = info.kept.get(name)
    if isinstance(entry, dict):
        return f"-o {name}: {info.name} did not keep it: {entry.get('error')}"
    if isinstance(entry, list):
        return f"-o {name}: {info.name} kept it pickled; --allow-pickle accepts it (this unpickles remote data)"
    return (f"-o {name}: {info.name} did not keep it (a job keeps what --bg -o names, and its small "
            "JSON-able variables)")


def _kept_files(host: Host, args, info: JobInfo, prefix: str = "", *, say: bool = True) -> dict[str, str]:
    """``{VAR: prefix + file}`` of the ``-o`` variables the job kept; each one not to be had is
    named, with why (when ``say``)."""
    files = {}
    for name in args.outputs or []:
        fmt = _kept(info, name, args.allow_pickle)
        if fmt is not None:
            files[name] = f"{prefix}{name}.{fmt}"
        elif say:
            host.emit(Say(_not_kept(info, name, args.allow_pickle), "stderr"))
    return files


async def _bring_back(host: Host, args, journal: Journal, info: JobInfo) -> None:
    """``wait NAME -o VAR...`` of one job: each VAR where the user's variables are."""
    found = _kept_files(host, args, info)
    if found:
        await host.import_values({"vars": found}, journal.vars_dir)
        host.emit(Say(", ".join(f"{name} ({human_size(info.kept[name][1])})" for name in found) + " set."))


async def _sweep_table(host: Host, args, group: list[Journal], infos: list[JobInfo]) -> None:
    """``wait SWEEP [-o VAR...]``: a table, one row per job (its name, parameters, status and each
    VAR), as a pandas DataFrame (a list of dicts without pandas) in ``--into`` or ``SWEEP_results``."""
    into = args.into or re.sub(r"\W", "_", args.name) + "_results"
    if not into.isidentifier():
        into = "_" + into
    rows = []
    for journal, info in zip(group, infos, strict=True):
        # (a job that did not finish kept nothing: its row says so by its status)
        values = _kept_files(host, args, info, f"{journal.name}/vars/", say=info.status == "finished")
        rows.append({"columns": {"job": info.name, **info.params, "status": info.status,
                                 **{name: None for name in args.outputs or []}}, "values": values})
    await host.import_values({"table": into, "rows": rows}, host.board.where)
    columns = list(rows[0]["columns"]) if rows else []
    host.emit(Say(f"{into}: {len(rows)} rows ({', '.join(columns)})"))


async def job_cancel(host: Host, args) -> None:
    """Cancel a job, or every job of a sweep (those waiting their turn first, so none takes it)."""
    group = _group(args.name, host.board)
    api = await host.client()
    host.board.adopt(api)
    group.sort(key=lambda journal: journal.name not in host.board.waiting)
    await asyncio.gather(*(_cancel(host, api, journal) for journal in group))


async def _cancel(host: Host, api: APIClient, journal: Journal) -> None:
    name = journal.name
    if journal.info().status in ENDED:
        host.emit(Say(f"Job {name} has ended already ({journal.info().status})."))
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANCEL_SECONDS
    if name in host.board.waiting:  # still waiting its turn: it never starts
        host.board.tasks[name].cancel()
        journal.update(status="cancelled", ended=time.time())
    else:
        while journal.info().pid is None and journal.info().status not in ENDED and loop.time() < deadline:
            await asyncio.sleep(WATCH_SECONDS)  # its session is being started: stop it once it runs
        if journal.info().status not in ENDED:
            await jobs.cancel(api, journal)
    while journal.info().status not in ENDED and loop.time() < deadline:
        await asyncio.sleep(WATCH_SECONDS)
    await _settled(host, name)
    host.emit(Say(f"Job {name}: {journal.info().status}."))


async def _settled(host: Host, name: str) -> None:
    """Wait (bounded) until this process's follower of an ended job is done: its session is gone."""
    task = host.board.tasks.get(name)
    if task is not None and not task.done():
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), CANCEL_SECONDS)


async def job_clean(host: Host, args) -> None:
    journals = [(j, j.info().status in ENDED) for j in all_journals(host.board.where)]
    ended = [j for j, over in journals if over]
    running = [j.name for j, over in journals if not over]
    for journal in ended:
        journal.remove()
    host.emit(Say(f"Forgot {len(ended)} ended job{'s' * (len(ended) != 1)}"
                  + (f"; still running: {', '.join(running)}" if running else "") + "."))


JOB_COMMANDS = {"output": job_output, "wait": job_wait, "cancel": job_cancel, "clean": job_clean}
WATCH_SECONDS = 0.3
CANCEL_SECONDS = 30.0
