"""The running embedded server in plain view: ``backend-jupyter server --status`` and ``--stop``,
and doctor's line about it.

A running server records where it runs in ``DATA_DIR/server.json`` (endpoint and pid; see
server/main.py).  Its status comes from ``GET /embedded/status`` (server/routes/status.py), signed
with the data dir's default keypair.  Stopping is the server's own SIGTERM path: it stops every
session's kernel, then removes its state file, which is what the stop waits for.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import __version__
from .client import APIClient, BackendError
from .config import Config
from .embedded import EmbeddedServer
from .server.main import running_state

STATUS_TIMEOUT = 10.0
STOP_TIMEOUT = 30.0


@dataclass
class ServerStatus:
    endpoint: str
    pid: int
    data_dir: str
    started: datetime
    idle_timeout: float
    sessions: list[dict]  # as server/routes/status.py describes each

    @property
    def busy(self) -> list[dict]:
        return [s for s in self.sessions if s["busy"]]

    @property
    def count(self) -> str:
        return f"{_plural(len(self.sessions), 'session')}, {len(self.busy)} busy"

    def lines(self) -> list[str]:
        age = _duration((datetime.now(self.started.tzinfo) - self.started).total_seconds())
        reaping = f"sessions idle for {self.idle_timeout:g} s are reaped" if self.idle_timeout > 0 else "no reaping"
        return [
            f"Embedded server at {self.endpoint} (pid {self.pid})",
            f"  data dir: {self.data_dir}",
            f"  running since {self.started.astimezone():%Y-%m-%d %H:%M:%S %Z} ({age}); {reaping}",
            f"  {self.count}" + (":" if self.sessions else ""),
            *(session_line(s) for s in self.sessions),
        ]


def session_line(session: dict) -> str:
    """One session: name, status, busy or idle, image, slots, owner (and the client that made it)."""
    doing = (f"busy for {_duration(session['busy_seconds'])}" if session["busy"]
             else f"idle for {_duration(session['idle_seconds'])}")
    slots = ",".join(f"{k}={v}" for k, v in session["resources"].items())
    client = f" via {session['client']}" if session["client"] else ""
    return (f"    {session['name']}  {session['status']}  {doing}  image={session['image']}"
            + (f"  resources={slots}" if slots else "") + f"  owner={session['owner']}{client}")


def fetch_status(state: dict, data_dir: Path) -> ServerStatus:
    """The status of the server ``state`` (its ``server.json``) describes; a BackendError when it
    does not answer."""
    return asyncio.run(_fetch(EmbeddedServer(state["endpoint"], Path(data_dir), None)))


async def _fetch(server: EmbeddedServer) -> ServerStatus:
    async with APIClient(server.config(Config()), user_agent=f"backend_jupyter-cli/{__version__}") as api:
        body = await api.request("GET", "/embedded/status", read_timeout=STATUS_TIMEOUT)
    return ServerStatus(server.endpoint, body["pid"], body["data_dir"], datetime.fromisoformat(body["started"]),
                        body["idle_timeout"], body["sessions"])


def status_command(data_dir: Path) -> int:
    """``server --status``: 0 and the status when a server runs, else 1 and a line saying so."""
    state = running_state(data_dir)
    if state is None:
        print(f"No embedded server is running on {data_dir} "
              "(it starts with the first cell of a Backend.AI kernel, or `backend-jupyter server`).")
        return 1
    try:
        status = fetch_status(state, data_dir)
    except BackendError as e:
        return _not_answering(state, e)
    print("\n".join(status.lines()))
    return 0


def stop_command(data_dir: Path, *, force: bool = False) -> int:
    """``server --stop``: 0 once stopped; 1 when none runs, or (unless ``force``) while a session
    is busy running code or the server does not answer."""
    state = running_state(data_dir)
    if state is None:
        print(f"error: no embedded server is running on {data_dir}", file=sys.stderr)
        return 1
    try:
        status = fetch_status(state, data_dir)
    except BackendError as e:
        if not force:
            return _not_answering(state, e)
    else:
        if status.busy and not force:
            print(f"error: not stopped: {_plural(len(status.busy), 'session')} busy running code "
                  "(`backend-jupyter server --stop --force` stops it anyway):", file=sys.stderr)
            print("\n".join(map(session_line, status.busy)), file=sys.stderr)
            return 1
    return _terminate(state, data_dir)


def _terminate(state: dict, data_dir: Path) -> int:
    """SIGTERM the server and wait until it has stopped its sessions and removed its state file."""
    try:
        os.kill(state["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_TIMEOUT
    while running_state(data_dir) is not None:
        if time.monotonic() > deadline:
            print(f"error: the embedded server (pid {state['pid']}) did not stop within {STOP_TIMEOUT:g} s; "
                  f"see {Path(data_dir) / 'server.log'}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"Stopped the embedded server at {state['endpoint']} (pid {state['pid']}).")
    return 0


def _not_answering(state: dict, error: BackendError) -> int:
    print(f"error: the embedded server (pid {state['pid']}) at {state['endpoint']} does not answer: "
          f"{error.message}; `backend-jupyter server --stop --force` stops it anyway", file=sys.stderr)
    return 1


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
