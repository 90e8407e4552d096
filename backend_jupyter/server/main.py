"""Running the embedded server in the foreground, and finding a running one."""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import json
import logging
import os
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web
from jupyter_core.paths import jupyter_data_dir

from .app import ServerSettings, make_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8091
STATE_FILE = "server.json"
log = logging.getLogger("backend_jupyter.server")


def default_data_dir() -> Path:
    return Path(jupyter_data_dir()) / "backend_jupyter"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def running_state(data_dir: Path) -> dict | None:
    """``{"endpoint", "pid"}`` of the server running on ``data_dir``, if one is."""
    try:
        state = json.loads((Path(data_dir) / STATE_FILE).read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def running_endpoint(data_dir: Path) -> str | None:
    state = running_state(data_dir)
    return state.get("endpoint") if state else None


async def serve(settings: ServerSettings, host: str, port: int, *, ready=None,
                tls: ssl.SSLContext | None = None) -> None:
    """Serve (HTTPS with ``tls``) until SIGINT/SIGTERM; then stop every session kernel and return."""
    runner = web.AppRunner(make_app(settings), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
    shown_host = f"[{host}]" if ":" in host else host
    endpoint = f"{'https' if tls else 'http'}://{shown_host}:{bound[1]}"
    state_path = Path(settings.data_dir) / STATE_FILE
    state_path.write_text(json.dumps({"endpoint": endpoint, "pid": os.getpid()}))
    if not is_loopback(host):
        log.warning("listening on %s, which is reachable from other machines; "
                    "anyone who can reach it and holds a keypair can run code here", host)
        if tls is None:
            log.warning("and in plain HTTP: request signatures, all cell code and its output cross the network "
                        "unencrypted; serve HTTPS with --certfile CERT.pem --keyfile KEY.pem")
    print(f"Backend.AI-compatible server listening on {endpoint}", flush=True)
    print(f"Data directory: {settings.data_dir}", flush=True)
    if ready is not None:
        ready(endpoint)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        print("Shutting down: stopping all sessions...", flush=True)
        await runner.cleanup()
        try:
            if json.loads(state_path.read_text()).get("pid") == os.getpid():
                state_path.unlink()
        except (OSError, ValueError):
            pass


def server_tls(certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext | None:
    """The HTTPS context for ``--certfile/--keyfile`` (None: plain HTTP); ValueError in one line."""
    if certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"--certfile {certfile} / --keyfile {keyfile}: {getattr(e, 'strerror', None) or e}") from None
    return context


def run(host: str, port: int, data_dir: Path, *, idle_timeout: float, exec_timeout: float,
        verbose: bool = False, certfile: Path | None = None, keyfile: Path | None = None) -> int:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    logging.getLogger("traitlets").setLevel(logging.WARNING)
    settings = ServerSettings(
        Path(data_dir), idle_timeout=idle_timeout, exec_timeout=exec_timeout,
        reap_interval=max(0.5, min(30.0, idle_timeout / 4)) if idle_timeout > 0 else 30.0,
    )
    try:
        tls = server_tls(certfile, keyfile)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = open(settings.data_dir / "server.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        running = running_endpoint(settings.data_dir) or "(starting)"
        print(f"error: a server already runs on {settings.data_dir} at {running}", file=sys.stderr)
        return 1
    try:
        asyncio.run(serve(settings, host, port, tls=tls))
    except OSError as e:
        print(f"error: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        lock.close()
    return 0
