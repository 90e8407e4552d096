"""Finding or starting the embedded server, for front-ends run without a configured cluster."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .server.keys import KeyStore
from .server.main import default_data_dir, running_endpoint, running_state

START_TIMEOUT = 30.0


class EmbeddedServerError(RuntimeError):
    pass


@dataclass
class EmbeddedServer:
    endpoint: str
    data_dir: Path
    process: subprocess.Popen | None  # None when an already running server was reused

    def config(self, base: Config | None = None) -> Config:
        """``base`` (default: the environment's) pointed at this server with its default keypair."""
        keypair = KeyStore(self.data_dir).default()
        return (base or Config()).replace(
            endpoints=(self.endpoint,), access_key=keypair.access_key, secret_key=keypair.secret_key
        )

    def notice(self) -> str:
        """What a front-end says the first time it uses the embedded server."""
        return (f"Using the embedded Backend.AI server at {self.endpoint} "
                "(set BACKEND_ENDPOINT and keys to use a cluster).")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def ensure_server(data_dir: Path | None = None, *, idle_timeout: float = 3600.0,
                  log_path: Path | None = None, tls: tuple[Path, Path] | None = None) -> EmbeddedServer:
    """The embedded server on ``data_dir``: the running one, else a new background process
    (on a free loopback port; it keeps running for other kernels until stopped).  ``tls``: the
    (certificate, key) files a new one serves HTTPS with (clients must trust its CA)."""
    data_dir = Path(data_dir or default_data_dir())
    endpoint = running_endpoint(data_dir)
    if endpoint:
        return EmbeddedServer(endpoint, data_dir, None)
    data_dir.mkdir(parents=True, exist_ok=True)
    # One starter at a time: two kernels starting together share one server.
    with open(data_dir / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        endpoint = running_endpoint(data_dir)
        if endpoint:
            return EmbeddedServer(endpoint, data_dir, None)
        return _start(data_dir, idle_timeout, log_path or data_dir / "server.log", tls)


def _start(data_dir: Path, idle_timeout: float, log_path: Path, tls: tuple[Path, Path] | None) -> EmbeddedServer:
    https = ["--certfile", str(tls[0]), "--keyfile", str(tls[1])] if tls else []
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend_jupyter", "server", "--port", "0", "--data-dir", str(data_dir),
             "--idle-timeout", str(idle_timeout), *https],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedServerError(
                f"The embedded server exited at start-up (code {process.returncode}); see {log_path}"
            )
        state = running_state(data_dir)
        if state and state.get("pid") == process.pid:
            return EmbeddedServer(state["endpoint"], data_dir, process)
        time.sleep(0.05)
    process.kill()
    raise EmbeddedServerError(f"The embedded server did not start within {START_TIMEOUT:g} s; see {log_path}")


def resolve_config(config: Config | None = None, *, data_dir: Path | None = None) -> tuple[Config, EmbeddedServer | None]:
    """The configuration to use: the cluster's when one is configured, else the embedded server's
    (started if needed)."""
    config = config or Config.from_env()
    if not config.uses_embedded_server:
        return config, None
    server = ensure_server(data_dir)
    return server.config(config), server
