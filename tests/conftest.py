"""Shared fixtures: a real embedded server process on 127.0.0.1 and signed HTTP access to it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.signed_http import SignedClient

HERE = Path(__file__).parent


def pytest_terminal_summary(terminalreporter) -> None:
    """One line at the end listing every skip with its reason: what this run did not prove."""
    skipped = terminalreporter.stats.get("skipped", [])
    reasons: dict[str, int] = {}
    for report in skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        listed = "; ".join(f"{reason} (×{n})" if n > 1 else reason for reason, n in reasons.items())
        terminalreporter.write_line(f"NOT RUN: {len(skipped)} skipped: {listed}")
    else:
        terminalreporter.write_line("NOT RUN: nothing (no test was skipped)")


def free_port() -> int:
    """A loopback port nothing listens on now (for a server a test starts, stops and restarts there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_forkserver(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        cmdline = " ".join(proc.cmdline())
        return "multiprocessing.forkserver" in cmdline or "multiprocessing.resource_tracker" in cmdline
    return False


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    endpoint: str
    data_dir: Path
    log_path: Path
    access_key: str
    secret_key: str = field(repr=False)

    def client(self, **kw) -> SignedClient:
        return SignedClient(self.endpoint, self.access_key, self.secret_key, **kw)

    def env(self) -> dict[str, str]:
        """Environment for an SDK process pointed at this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
        env.update(
            BACKEND_ENDPOINT=self.endpoint,
            BACKEND_ACCESS_KEY=self.access_key,
            BACKEND_SECRET_KEY=self.secret_key,
        )
        return env

    def new_keypair(self) -> tuple[str, str]:
        out = subprocess.run(
            [sys.executable, "-m", "backend_jupyter", "keypair", "create", "--data-dir", str(self.data_dir)],
            check=True, capture_output=True, text=True,
        ).stdout
        values = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
        return values["BACKEND_ACCESS_KEY"], values["BACKEND_SECRET_KEY"]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict:
        """``GET /embedded/status`` with the server's default keypair."""
        resp = self.client().request("GET", "/embedded/status")
        assert resp.status == 200, resp.body
        return resp.json()

    def kernel_processes(self) -> list[psutil.Process]:
        """The server's descendants but its forkserver and that one's resource tracker (one each
        per server, started with it: server/forking.py), which are not sessions' processes."""
        try:
            server = psutil.Process(self.proc.pid)
            helpers = [p for p in server.children() if is_forkserver(p)]
            return [p for p in server.children(recursive=True) if p not in helpers]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_server(data_dir: Path, *extra: str, timeout: float = 30.0) -> ServerProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    offset = log_path.stat().st_size if log_path.exists() else 0  # a restart appends to the same log
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend_jupyter", "server", "--port", "0",
         "--data-dir", str(data_dir), *extra],
        stdout=log, stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))},
    )
    log.close()
    deadline = time.monotonic() + timeout
    endpoint = None
    while time.monotonic() < deadline:
        text = log_path.read_bytes()[offset:].decode(errors="replace")
        for line in text.splitlines():
            if "listening on " in line:
                endpoint = line.rsplit(" ", 1)[-1]
        if endpoint or proc.poll() is not None:
            break
        time.sleep(0.05)
    if endpoint is None:
        proc.kill()
        raise RuntimeError(f"server did not start:\n{log_path.read_text(errors='replace')}")
    env_out = subprocess.run(
        [sys.executable, "-m", "backend_jupyter", "env", "--data-dir", str(data_dir)],
        check=True, capture_output=True, text=True,
    ).stdout
    values = dict(line.removeprefix("export ").split("=", 1) for line in env_out.splitlines())
    assert values["BACKEND_ENDPOINT"] == endpoint
    return ServerProcess(proc, endpoint, data_dir, log_path,
                         values["BACKEND_ACCESS_KEY"], values["BACKEND_SECRET_KEY"])


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture
def api(server) -> SignedClient:
    return server.client()


@pytest.fixture
def session_name(request) -> str:
    """A session name unique to the test."""
    return "t-" + re.sub(r"[^\w.-]+", "-", request.node.name)[:50].strip("-_.") + f"-{os.getpid() % 1000}"
