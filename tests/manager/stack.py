"""A real Backend.AI manager (26.9.6 from PyPI) on loopback, without Docker, for conformance tests.

    python -m tests.manager.stack up [--smoke]   # bring the whole stack up (idempotent)
    python -m tests.manager.stack status         # what runs, where, and the logs directory
    python -m tests.manager.stack down           # stop exactly the processes ``up`` started

What ``up`` does, from nothing (every wait is bounded; every PID it starts goes into the state file):

1. Checks the machine (Linux, root, ``unshare -m`` with a tmpfs, Python 3.13 for the venv, a Python with
   ipykernel for the sessions) and installs the Debian packages PostgreSQL, Redis and etcd if missing
   (``apt-get``, only as root or with password-less sudo).  What is missing and cannot be had raises
   :class:`StackUnavailable` with a one-line reason.
2. Builds (once; cached in ``~/.cache/backend_jupyter-tests/manager-26.9.6``) a Python 3.13 venv with
   ``backend.ai-manager``, ``-agent``, ``-client``, ``-kernel`` and ``-storage-proxy`` 26.9.6.
3. Starts PostgreSQL 15, Redis 7 and etcd 3.4 on 127.0.0.1 with private data directories under the
   stack directory (not the system services).
4. Uses the manager's own CLI: ``mgr etcd put``/``put-json`` (its etcd config), ``mgr schema oneshot``,
   ``mgr fixture populate`` of Backend.AI's halfstack fixtures (halfstack/, see its README),
   ``mgr permissions emit`` → populate → ``mgr permissions provision`` (roles); then the manager's own
   backfill migrations give the fixtures' users their personal projects (personal_projects.py: personal
   vfolders are created there).
5. Registers the session image (no registry is reachable) directly in the database, with its alias
   ``python``, and adds it to the permission graph.
6. Starts Backend.AI's storage proxy (``backend.ai-storage-proxy``, one ``vfs`` volume ``volume1`` under
   the stack directory, plain HTTP on both its APIs), wired to the manager through etcd ``volumes``
   (host ``local:volume1``), then the manager and a dummy-mode agent (agent_launcher.py) whose kernels
   are Backend.AI's own kernel runner + an ipykernel on the host, confined to a private mount namespace
   and loopback (the session's vfolders bound in).
7. Adds the admin user to the ``default`` project through the API (the official SDK's CLI), and checks
   that the manager lists the storage proxy's volume (``backend.ai vfolder list-hosts``).

Environment: ``BJ_MANAGER_STACK_DIR`` (default /tmp/backend_jupyter-manager-stack),
``BJ_MANAGER_PORT_BASE`` (default 28100; the stack uses the 200 ports from there),
``BJ_MANAGER_VENV``, ``BJ_HALFSTACK_DIR``, ``BJ_RUNTIME_PYTHON`` (the Python that runs session code;
default: this interpreter).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

VERSION = "26.9.6"
API_VERSION = "v9.20250722"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "backend_jupyter-tests"
VENV = Path(os.environ.get("BJ_MANAGER_VENV", CACHE / f"manager-{VERSION}"))
STACK_DIR = Path(os.environ.get("BJ_MANAGER_STACK_DIR", "/tmp/backend_jupyter-manager-stack"))
PORT_BASE = int(os.environ.get("BJ_MANAGER_PORT_BASE", "28100"))
CONSTRAINTS = HERE / f"constraints-{VERSION}.txt"
PACKAGES = [f"backend.ai-{p}=={VERSION}" for p in ("manager", "agent", "client", "kernel")]
# Installed with the others on a fresh build, in a second pip step into a venv cached before it was added.
STORAGE_PACKAGE = f"backend.ai-storage-proxy=={VERSION}"
DEBIAN_PACKAGES = ["postgresql", "redis-server", "etcd-server"]

ADMIN_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
ADMIN_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ADMIN_EMAIL = "admin@lablup.com"
ADMIN_UUID = "f38dea23-50fa-42a0-b5ae-338f5f4693f4"
DEFAULT_PROJECT_ID = "2de2b969-1d04-48a6-af16-0bc8adb3c831"
DOMAIN_ID = "b9e676dc-e23e-54c6-b350-e83fba4127e9"
IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"
IMAGE_ALIAS = "python"
DB_NAME, DB_USER, DB_PASSWORD = "backend", "postgres", "develove"

# The logging section of every generated component config (the manager also logs its migrations).
_LOG_NS = '''[logging]
level = "INFO"
drivers = ["console"]

[logging.pkg-ns]
"" = "WARNING"
"aiotools" = "INFO"
"aiohttp" = "INFO"
"ai.backend" = "INFO"
'''
_LOG_CONSOLE = '''
[logging.console]
colored = false
format = "verbose"
'''
LOGGING = _LOG_NS + _LOG_CONSOLE
LOGGING_MANAGER = _LOG_NS + '''"alembic" = "INFO"
"sqlalchemy" = "WARNING"
''' + _LOG_CONSOLE

# Bounded waits (seconds).
VENV_TIMEOUT = 1200
APT_TIMEOUT = 900
SERVICE_TIMEOUT = 60
CLI_TIMEOUT = 300
MANAGER_TIMEOUT = 240
AGENT_TIMEOUT = 180
STORAGE_TIMEOUT = 60

# The storage proxy's volume (a ``vfs`` directory under the stack directory) as the manager names it.
VOLUME_NAME = "volume1"
VOLUME_HOST = f"local:{VOLUME_NAME}"
# The manager <-> storage proxy secret (etcd ``volumes/proxies/local/secret`` = the proxy's [api.manager] secret).
STORAGE_MANAGER_SECRET = "some-secret-shared-with-storage-proxy"
STOP_TIMEOUT = 20


class StackUnavailable(Exception):
    """This machine cannot run the stack; ``str()`` is a one-line reason (tests skip with it)."""


class StackError(Exception):
    """Bringing the stack up failed; the message says where and names the log to read."""


@dataclass
class Ports:
    postgres: int
    redis: int
    etcd: int
    etcd_peer: int
    manager: int
    manager_internal: int
    manager_aiomonitor_termui: int
    manager_aiomonitor_webui: int
    agent_rpc: int
    agent_service: int
    agent_sock: int
    agent_watcher: int
    agent_aiomonitor_termui: int
    agent_aiomonitor_webui: int
    agent_metadata: int
    storage_client: int  # the storage proxy: client-facing API (uploads/downloads)
    storage_manager: int  # manager-facing API (plain HTTP; advertised as such in etcd)
    storage_internal: int
    storage_aiomonitor_termui: int
    storage_aiomonitor_webui: int
    container_range: tuple[int, int]

    @classmethod
    def from_base(cls, base: int) -> Ports:
        names = [f for f in cls.__dataclass_fields__ if f != "container_range"]
        return cls(**{n: base + i for i, n in enumerate(names)}, container_range=(base + 100, base + 199))

    def listening(self) -> list[int]:
        return [v for k, v in asdict(self).items() if isinstance(v, int)]


@dataclass
class StackInfo:
    """What the tests need: where the manager is and how to sign for the admin."""

    endpoint: str
    access_key: str
    secret_key: str
    image: str
    image_alias: str
    stack_dir: Path
    logs_dir: Path
    ports: Ports

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
        env.update(BACKEND_ENDPOINT=self.endpoint, BACKEND_ACCESS_KEY=self.access_key,
                   BACKEND_SECRET_KEY=self.secret_key)
        return env

    def psql(self, sql: str) -> list[list[str]]:
        """Rows of ``sql`` run on the manager's database (fields split on ``|``)."""
        return psql(self.ports, sql)


# -- small helpers --------------------------------------------------------------------------------

def log_line(msg: str) -> None:
    print(f"[manager-stack {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what: str, check, timeout: float, *, proc: subprocess.Popen | None = None, log: Path | None = None,
             interval: float = 0.3):
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what}: the process exited with {proc.returncode}" + tail_hint(log))
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported when the wait times out
            last_error = e
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise StackError(f"{what}: not ready after {timeout:.0f} s{detail}" + tail_hint(log))


def tail_hint(log: Path | None, lines: int = 25) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(text)


def proc_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (to tell our process from a later one with the same PID)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_root() -> bool:
    return os.geteuid() == 0


def privileged() -> list[str] | None:
    """The prefix that runs a command as root: [] as root, ["sudo", "-n"] with password-less sudo."""
    if is_root():
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def halfstack_dir() -> Path:
    """Backend.AI's halfstack data (its SOURCE.txt says from where), kept next to this file so that a
    clean clone has it; ``BJ_HALFSTACK_DIR`` points elsewhere."""
    candidates = [os.environ.get("BJ_HALFSTACK_DIR"), HERE / "halfstack"]
    for c in candidates:
        if c and (Path(c) / "fixtures/manager/example-keypairs.json").exists():
            return Path(c)
    raise StackUnavailable(f"the Backend.AI halfstack fixtures are missing (looked in {', '.join(map(str, filter(None, candidates)))})")


def find_python313() -> str | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
        for candidate in sorted(Path(root, "versions").glob("3.13.*"), reverse=True):
            exe = candidate / "bin" / "python"
            if exe.exists():
                return str(exe)
    return shutil.which("python3.13")


def runtime_python() -> str:
    return os.environ.get("BJ_RUNTIME_PYTHON") or sys.executable


def pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return found[0] if found else shutil.which(name)


# -- the machine ----------------------------------------------------------------------------------

def check_machine(install: bool = True, logs: Path | None = None) -> None:
    """Raise StackUnavailable (one line) unless this machine can run the stack; install the Debian
    packages when they are missing and we may."""
    if platform.system() != "Linux":
        raise StackUnavailable("needs Linux (mount namespaces)")
    if not is_root():
        raise StackUnavailable("needs root (kernel runners run in a private mount namespace: unshare -m, mount)")
    if not shutil.which("unshare"):
        raise StackUnavailable("unshare (util-linux) is not installed")
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", "mount -t tmpfs bj-probe /home"],
        capture_output=True, text=True, timeout=30,
    )
    if probe.returncode != 0:
        raise StackUnavailable(f"unshare -m with a tmpfs on /home is not permitted here ({probe.stderr.strip()[:120]})")
    if not (VENV / ".complete").exists() and find_python313() is None:
        raise StackUnavailable("no Python 3.13 (pyenv or python3.13) to build the Backend.AI 26.9.6 venv")
    if subprocess.run([runtime_python(), "-c", "import ipykernel"], capture_output=True).returncode != 0:
        raise StackUnavailable(f"{runtime_python()} has no ipykernel (it runs the sessions' code)")
    missing = [b for b, found in (("postgres", pg_bin("postgres")), ("redis-server", shutil.which("redis-server")),
                                   ("etcd", shutil.which("etcd"))) if not found]
    if missing:
        if not install:
            raise StackUnavailable(f"missing {', '.join(missing)}")
        install_debian_packages(missing, logs)
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackUnavailable("no 'postgres' system user (PostgreSQL refuses to run as root)") from None


def install_debian_packages(missing: list[str], logs: Path | None) -> None:
    prefix = privileged()
    if prefix is None or not shutil.which("apt-get"):
        raise StackUnavailable(f"missing {', '.join(missing)} and no apt-get as root to install {' '.join(DEBIAN_PACKAGES)}")
    log_line(f"installing Debian packages {' '.join(DEBIAN_PACKAGES)} (missing: {', '.join(missing)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    out = open(logs / "apt.log", "ab") if logs else subprocess.DEVNULL
    try:
        # policy-rc.d keeps the packages' own services from starting (we run private instances).
        policy = Path("/usr/sbin/policy-rc.d")
        added_policy = False
        if is_root() and not policy.exists():
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
            added_policy = True
        try:
            for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *DEBIAN_PACKAGES]):
                r = subprocess.run([*prefix, *cmd], stdout=out, stderr=subprocess.STDOUT, env=env, timeout=APT_TIMEOUT)
                if r.returncode != 0:
                    raise StackUnavailable(f"`{' '.join(cmd)}` failed (exit {r.returncode})"
                                           + (f"; see {logs / 'apt.log'}" if logs else ""))
        finally:
            if added_policy:
                policy.unlink(missing_ok=True)
    finally:
        if logs:
            out.close()
    if not (pg_bin("postgres") and shutil.which("redis-server") and shutil.which("etcd")):
        raise StackUnavailable("PostgreSQL/Redis/etcd are still missing after apt-get install")


def venv_pip(exe: Path) -> list[str]:
    pip = [str(exe), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    if CONSTRAINTS.exists():
        pip += ["-c", str(CONSTRAINTS)]
    return pip


def ensure_venv(logs: Path) -> Path:
    """The venv's python (built on first use, ~85 s and ~700 MB); a venv cached before the storage
    proxy joined gets it in a second pip step (its marker: ``.storage-proxy``)."""
    exe = VENV / "bin" / "python"
    marker = VENV / ".complete"
    if marker.exists() and exe.exists():
        ensure_storage_proxy(exe, logs)
        return exe
    python = find_python313()
    if python is None:
        raise StackUnavailable("no Python 3.13 (pyenv or python3.13) to build the Backend.AI 26.9.6 venv")
    log_line(f"building the Backend.AI {VERSION} venv in {VENV} (one-off, ~1.5 min)")
    started = time.monotonic()
    shutil.rmtree(VENV, ignore_errors=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(logs / "venv.log", "ab") as out:
        try:
            subprocess.run([python, "-m", "venv", str(VENV)], check=True, stdout=out, stderr=subprocess.STDOUT,
                           timeout=VENV_TIMEOUT)
            subprocess.run([*venv_pip(exe), *PACKAGES, STORAGE_PACKAGE], check=True, stdout=out,
                           stderr=subprocess.STDOUT, timeout=VENV_TIMEOUT)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise StackError(f"building the venv failed ({e})" + tail_hint(logs / "venv.log")) from None
    (VENV / ".storage-proxy").write_text(f"{STORAGE_PACKAGE}\n")
    marker.write_text(f"{VERSION} {time.monotonic() - started:.0f}s\n")
    log_line(f"venv built in {time.monotonic() - started:.0f} s")
    return exe


def ensure_storage_proxy(exe: Path, logs: Path) -> None:
    marker = VENV / ".storage-proxy"
    if marker.exists() and marker.read_text().strip() == STORAGE_PACKAGE:
        return
    log_line(f"installing {STORAGE_PACKAGE} into the cached venv {VENV}")
    started = time.monotonic()
    with open(logs / "venv.log", "ab") as out:
        try:
            subprocess.run([*venv_pip(exe), STORAGE_PACKAGE], check=True, stdout=out, stderr=subprocess.STDOUT,
                           timeout=VENV_TIMEOUT)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise StackError(f"installing the storage proxy failed ({e})" + tail_hint(logs / "venv.log")) from None
    marker.write_text(f"{STORAGE_PACKAGE}\n")
    log_line(f"storage proxy installed in {time.monotonic() - started:.0f} s")


# -- state ----------------------------------------------------------------------------------------

def state_path() -> Path:
    return STACK_DIR / "state.json"


def read_state() -> dict:
    try:
        return json.loads(state_path().read_text())
    except (OSError, ValueError):
        return {}


def write_state(state: dict) -> None:
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    tmp = state_path().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_path())


def recorded_processes(state: dict) -> list[tuple[str, int, int | None]]:
    procs = [(name, p["pid"], p.get("start")) for name, p in state.get("procs", {}).items()]
    runners = STACK_DIR / "runners.pids"
    if runners.exists():
        for line in runners.read_text().split("\n"):
            parts = line.split()
            if parts:
                procs.append(("kernel-runner", int(parts[0]), int(parts[1]) if len(parts) > 1 else None))
    return procs


def alive(pid: int, start: int | None) -> bool:
    now = proc_start_time(pid)
    if now is None:
        return False
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except OSError:
        return False
    return start is None or now == start


# -- the stack ------------------------------------------------------------------------------------

class Stack:
    def __init__(self, stack_dir: Path = STACK_DIR, port_base: int = PORT_BASE):
        self.dir = stack_dir
        self.logs = stack_dir / "logs"
        self.ports = Ports.from_base(port_base)
        self.state: dict = {}
        self.venv_python = VENV / "bin" / "python"
        self.bai = VENV / "bin" / "backend.ai"
        self.procs: dict[str, subprocess.Popen] = {}

    # -- public -------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.manager}"

    def info(self) -> StackInfo:
        return StackInfo(self.endpoint, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, IMAGE, IMAGE_ALIAS, self.dir,
                         self.logs, self.ports)

    def is_up(self) -> bool:
        state = read_state()
        if state.get("status") != "up" or state.get("port_base") != self.ports.postgres:
            return False
        if "storage-proxy" not in state.get("procs", {}):  # brought up by a harness without it: redo
            return False
        if not all(alive(pid, start) for name, pid, start in recorded_processes(state) if name != "kernel-runner"):
            return False
        with contextlib.suppress(Exception):
            return self.hello().get("version") == API_VERSION
        return False

    def hello(self) -> dict:
        with urllib.request.urlopen(self.endpoint + "/", timeout=5) as resp:
            return json.loads(resp.read())

    def up(self, *, smoke: bool = False) -> StackInfo:
        """Bring everything up (or find it up); raises StackUnavailable / StackError."""
        if self.is_up():
            log_line(f"already up: {self.endpoint} (logs: {self.logs})")
            return self.info()
        self.down(quiet=True)
        started = time.monotonic()
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.logs.mkdir(parents=True)
        log_line(f"bringing up Backend.AI {VERSION} on 127.0.0.1; logs: {self.logs}")
        check_machine(logs=self.logs)
        ensure_venv(self.logs)
        busy = [p for p in self.ports.listening() if not port_free(p)]
        if busy:
            raise StackError(f"ports already in use on 127.0.0.1: {busy} (set BJ_MANAGER_PORT_BASE)")
        self.state = {"status": "starting", "version": VERSION, "port_base": self.ports.postgres,
                      "endpoint": self.endpoint, "logs": str(self.logs), "procs": {}, "timings": {}}
        write_state(self.state)
        try:
            self._step("postgres", self.start_postgres)
            self._step("redis", self.start_redis)
            self._step("etcd", self.start_etcd)
            self._step("configure", self.configure)
            self._step("storage-proxy", self.start_storage_proxy)
            self._step("manager", self.start_manager)
            self._step("agent", self.start_agent)
            self._step("project", self.join_project)
            self._step("volume", self.check_volume)
            if smoke:
                self._step("smoke", self.smoke)
        except BaseException:
            log_line(f"bring-up failed; stopping what was started (logs: {self.logs})")
            self.down(quiet=True, keep_dir=True)
            raise
        self.state["status"] = "up"
        self.state["timings"]["total"] = round(time.monotonic() - started, 1)
        write_state(self.state)
        log_line(f"up in {time.monotonic() - started:.0f} s: {self.endpoint} (logs: {self.logs})")
        return self.info()

    def down(self, *, quiet: bool = False, keep_dir: bool = True) -> list[str]:
        """Stop exactly the processes recorded in the state file (and the kernel runners the agent
        recorded), newest first."""
        state = read_state()
        stopped = []
        for name, pid, start in reversed(recorded_processes(state)):
            if alive(pid, start):
                stop_process(pid, start)
                stopped.append(f"{name}({pid})")
        for proc in self.procs.values():  # reap our children
            with contextlib.suppress(Exception):
                proc.wait(0.1)
        if state:
            state["status"] = "down"
            state["procs"] = {}
            write_state(state)
            (self.dir / "runners.pids").unlink(missing_ok=True)
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        if not quiet:
            log_line(f"stopped {', '.join(stopped) or 'nothing'}")
        return stopped

    # -- steps --------------------------------------------------------------------------------
    def _step(self, name: str, fn) -> None:
        t = time.monotonic()
        fn()
        self.state["timings"][name] = round(time.monotonic() - t, 1)
        write_state(self.state)
        log_line(f"{name}: ok ({time.monotonic() - t:.1f} s)")

    def spawn(self, name: str, argv: list, *, cwd: Path | None = None, env: dict | None = None,
              user: str | None = None) -> subprocess.Popen:
        log = self.logs / f"{name}.log"
        out = open(log, "ab")
        proc = subprocess.Popen(
            [str(a) for a in argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, user=user, close_fds=True,
        )
        out.close()
        self.procs[name] = proc
        self.state["procs"][name] = {"pid": proc.pid, "start": proc_start_time(proc.pid), "argv": [str(a) for a in argv]}
        write_state(self.state)
        return proc

    def run(self, name: str, argv: list, *, cwd: Path | None = None, env: dict | None = None, user: str | None = None,
            timeout: float = CLI_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            out.write(f"\n$ {' '.join(map(str, argv))}\n".encode())
            out.flush()
            try:
                r = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, user=user, stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise StackError(f"`{' '.join(map(str, argv))}` did not finish in {timeout:.0f} s"
                                 + tail_hint(log)) from None
            out.write(r.stdout + r.stderr)
        if check and r.returncode != 0:
            raise StackError(f"`{' '.join(map(str, argv[:6]))} ...` failed (exit {r.returncode})" + tail_hint(log, 40))
        return r

    def start_postgres(self) -> None:
        data, sock = self.dir / "postgres/data", self.dir / "postgres/sock"
        sock.mkdir(parents=True)
        shutil.chown(self.dir / "postgres", "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
        self.run("postgres-init", [pg_bin("initdb"), "-D", data, "-U", DB_USER, "-A", "trust", "-E", "UTF8",
                                   "--no-locale"], user="postgres", timeout=120)
        proc = self.spawn("postgres", [
            pg_bin("postgres"), "-D", data, "-p", self.ports.postgres, "-k", sock, "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200",
        ], user="postgres")
        wait_for("postgres", lambda: port_open(self.ports.postgres) and self.run(
            "postgres-init", [pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", self.ports.postgres], check=False,
            timeout=10).returncode == 0, SERVICE_TIMEOUT, proc=proc, log=self.logs / "postgres.log")
        self.run("postgres-init", ["psql", "-h", "127.0.0.1", "-p", self.ports.postgres, "-U", DB_USER, "-v",
                                   "ON_ERROR_STOP=1", "-c", f"ALTER USER {DB_USER} PASSWORD '{DB_PASSWORD}'",
                                   "-c", f"CREATE DATABASE {DB_NAME}"], timeout=60)

    def start_redis(self) -> None:
        data = self.dir / "redis"
        data.mkdir()
        proc = self.spawn("redis", [
            shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", self.ports.redis, "--dir", data,
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
        ])
        wait_for("redis", lambda: port_open(self.ports.redis), SERVICE_TIMEOUT, proc=proc, log=self.logs / "redis.log")

    def start_etcd(self) -> None:
        p, pp = self.ports.etcd, self.ports.etcd_peer
        proc = self.spawn("etcd", [
            shutil.which("etcd"), "--name", "bj", "--data-dir", self.dir / "etcd",
            "--listen-client-urls", f"http://127.0.0.1:{p}", "--advertise-client-urls", f"http://127.0.0.1:{p}",
            "--listen-peer-urls", f"http://127.0.0.1:{pp}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{pp}",
            "--initial-cluster", f"bj=http://127.0.0.1:{pp}", "--initial-cluster-state", "new",
        ], env={**os.environ, "ETCD_UNSUPPORTED_ARCH": platform.machine()})

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{p}/health", timeout=2) as r:
                return json.loads(r.read()).get("health") == "true"

        wait_for("etcd", healthy, SERVICE_TIMEOUT, proc=proc, log=self.logs / "etcd.log")

    # -- configuration ------------------------------------------------------------------------
    def mgr(self, *args, timeout: float = CLI_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("manager-cli", [self.bai, "mgr", "-f", "manager.toml", *args], cwd=self.dir / "manager",
                        env=self.manager_env(), timeout=timeout, check=check)

    def populate(self, fixtures: list[str]) -> None:
        """``mgr fixture populate`` for each file, in one process (see populate.py)."""
        self.run("manager-cli", [VENV / "bin" / "python", Path(__file__).with_name("populate.py"), "127.0.0.1",
                                 self.ports.postgres, DB_NAME, DB_USER, *fixtures],
                 cwd=self.dir / "manager", env={**self.manager_env(), "PGPASSWORD": DB_PASSWORD})

    def manager_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
        # The manager wants a Docker host even though nothing here uses Docker.
        env.update(DOCKER_HOST=f"unix://{self.dir}/no-docker.sock", PYTHONUNBUFFERED="1")
        return env

    def configure(self) -> None:
        half = halfstack_dir()
        mdir, adir = self.dir / "manager", self.dir / "agent"
        for d in (mdir, adir):
            shutil.copytree(half / "fixtures", d / "fixtures")
            for f in (d / "fixtures").rglob("*"):
                f.chmod(0o700 if f.is_dir() else 0o600)
        (mdir / "manager.toml").write_text(self.manager_toml())
        (mdir / "alembic.ini").write_text((half / "halfstack.alembic.ini").read_text().replace(
            "localhost:8100", f"127.0.0.1:{self.ports.postgres}"))
        volumes = json.loads((half / "sample.etcd.volumes.json").read_text())
        volumes["proxies"]["local"]["client_api"] = f"http://127.0.0.1:{self.ports.storage_client}"
        volumes["proxies"]["local"]["manager_api"] = f"http://127.0.0.1:{self.ports.storage_manager}"
        volumes["proxies"]["local"]["secret"] = STORAGE_MANAGER_SECRET
        volumes["default_host"] = VOLUME_HOST
        (mdir / "etcd.volumes.json").write_text(json.dumps(volumes))
        sdir = self.dir / "storage-proxy"
        (sdir / VOLUME_NAME).mkdir(parents=True)
        # The vfolder layout version the proxy expects (else it logs "an old vfolder structure (v2)").
        (sdir / VOLUME_NAME / "version.txt").write_text("3\n")
        (sdir / "storage-proxy.toml").write_text(self.storage_proxy_toml())
        shutil.copy(half / "sample.etcd.redis-helper.json", mdir / "etcd.redis-helper.json")
        (adir / "agent.toml").write_text(self.agent_toml())
        (adir / "agent.dummy.toml").write_text(self.agent_dummy_toml(half))

        self.mgr("etcd", "put", "config/redis/addr", f"127.0.0.1:{self.ports.redis}")
        self.mgr("etcd", "put-json", "config/redis/redis_helper_config", "etcd.redis-helper.json")
        self.mgr("etcd", "put-json", "volumes", "etcd.volumes.json")
        self.mgr("schema", "oneshot", "-f", "alembic.ini")
        fixtures = mdir / "fixtures/manager"
        ordered = ["patched-users.json", "example-keypairs.json", "patched-resource-presets.json",
                   "example-container-registries-harbor.json", "example-resource-slot-types.json",
                   "example-runtime-variants.json", "example-runtime-variant-presets.json",
                   "example-prometheus-query-preset-categories.json", "example-prometheus-query-presets.json"]
        ordered = [n for n in ordered if (fixtures / n).exists()]
        rest = sorted(p.name for p in fixtures.glob("*.json") if p.name not in ordered)
        self.populate([f"fixtures/manager/{name}" for name in ordered + rest])
        self.mgr("permissions", "emit", "--repository", mdir)
        self.populate(["fixtures/manager/example-role-presets.json"])
        self.mgr("permissions", "provision")
        self.personal_projects()
        self.register_image()

    def personal_projects(self) -> None:
        """Personal vfolders live in their owner's personal project, which the fixtures' users lack:
        the manager's own backfill migrations give them one (see personal_projects.py)."""
        self.run("manager-cli", [VENV / "bin" / "python", Path(__file__).with_name("personal_projects.py"),
                                 "127.0.0.1", self.ports.postgres, DB_NAME, DB_USER],
                 cwd=self.dir / "manager", env={**self.manager_env(), "PGPASSWORD": DB_PASSWORD})

    def register_image(self) -> None:
        """No registry is reachable: the image row (and alias) go into the database directly."""
        registry, rest = IMAGE.split("/", 1)
        project, name_tag = rest.rsplit("/", 1)
        image_name, tag = name_tag.split(":", 1)
        labels = {
            "ai.backend.kernelspec": "1",
            "ai.backend.features": "batch query uid-match user-input",
            "ai.backend.base-distro": "ubuntu20.04",
            "ai.backend.runtime-type": "python",
            "ai.backend.runtime-path": runtime_python(),
            "ai.backend.resource.min.cpu": "1",
            "ai.backend.resource.min.mem": "256m",
            "ai.backend.service-ports": "",
        }
        sql = f"""
        WITH reg AS (SELECT id FROM container_registries WHERE registry_name = '{registry}' LIMIT 1)
        INSERT INTO images (name, project, image, tag, registry, registry_id, architecture, config_digest,
                            size_bytes, type, labels, resources)
        SELECT '{IMAGE}', '{project}', '{project}/{image_name}', '{tag}', '{registry}', reg.id, 'x86_64',
               'sha256:{'0' * 64}', 1000000, 'COMPUTE', '{json.dumps(labels)}'::json,
               '{{"cpu": {{"min": "1", "max": null}}, "mem": {{"min": "268435456", "max": null}}}}'::jsonb
        FROM reg RETURNING id;
        """
        rows = psql(self.ports, sql)
        if not rows:
            raise StackError("registering the image: no container registry row for " + registry)
        image_id = rows[0][0]
        psql(self.ports, f"INSERT INTO image_aliases (alias, image) VALUES ('{IMAGE_ALIAS}', '{image_id}')")
        self.state["image_id"] = image_id
        self.add_image_to_permission_graph(image_id)

    def add_image_to_permission_graph(self, image_id: str) -> None:
        """Give the image its node in the RBAC graph the way 26.9's migrations place images: a
        member of (and bound to) itself, the registry it came from and, the registry being global,
        ``public`` (models/alembic/versions/f1c47b92e3a6, d17b4e9c25a8)."""
        psql(self.ports, f"""
        INSERT INTO virtual_entities (entity_type, entity_id) VALUES ('image', '{image_id}')
            ON CONFLICT DO NOTHING;
        WITH img AS (SELECT id FROM virtual_entities WHERE entity_type = 'image' AND entity_id = '{image_id}'),
             scopes AS (
                SELECT id FROM img
                UNION SELECT ve.id FROM virtual_entities ve JOIN images i ON i.registry_id = ve.entity_id
                      WHERE ve.entity_type = 'container_registry' AND i.id = '{image_id}'
                UNION SELECT ve.id FROM virtual_entities ve JOIN global_entities ge ON ve.entity_id = ge.id
                      WHERE ve.entity_type = 'global' AND ge.name = 'public'),
             m AS (INSERT INTO entity_memberships (virtual_entity_id, member_entity_id, capped)
                   SELECT scopes.id, img.id, FALSE FROM scopes, img ON CONFLICT DO NOTHING)
        INSERT INTO scope_bindings (virtual_entity_id, scope_entity_id, permission_cap)
            SELECT img.id, scopes.id, NULL FROM scopes, img ON CONFLICT DO NOTHING;
        """)

    def manager_toml(self) -> str:
        p = self.ports
        return f"""\
{self.etcd_toml()}
[db]
type = "postgresql"
addr = {{ host = "127.0.0.1", port = {p.postgres} }}
name = "{DB_NAME}"
user = "{DB_USER}"
password = "{DB_PASSWORD}"
pool-recycle = 50
pool-pre-ping = false

[manager]
num-proc = 1
service-addr = {{ host = "127.0.0.1", port = {p.manager} }}
internal-addr = {{ host = "127.0.0.1", port = {p.manager_internal} }}
ssl-enabled = false
heartbeat-timeout = 40.0
pid-file = "{self.dir}/manager/manager.pid"
ipc-base-path = "{self.dir}/manager/ipc"
rpc-auth-manager-keypair = "{self.dir}/manager/fixtures/manager/manager.key_secret"
aiomonitor-termui-port = {p.manager_aiomonitor_termui}
aiomonitor-webui-port = {p.manager_aiomonitor_webui}
disabled-plugins = []
hide-agents = true
agent-selection-resource-priority = ["cuda", "rocm", "tpu", "cpu", "mem"]

[docker-registry]
ssl-verify = false

[pyroscope]
enabled = false

{LOGGING_MANAGER}
[debug]
enabled = false

[otel]
enabled = false

[artifact-registry]
model-registry = "huggingface-hub"

[reservoir]
storage-name = "minio-storage"
enable-approve-process = false

[reservoir.config]
type = "object_storage"
bucket-name = "backendai-storage"
"""

    def etcd_toml(self) -> str:
        """The ``[etcd]`` section of the components' configs."""
        return f"""\
[etcd]
namespace = "local"
addr = {{ host = "127.0.0.1", port = {self.ports.etcd} }}
user = ""
password = ""
"""

    def storage_proxy_toml(self) -> str:
        """From Backend.AI's halfstack storage-proxy config (halfstack/storage-proxy.halfstack.toml):
        loopback ports, plain HTTP on both APIs, one ``vfs`` volume under the stack directory, no
        artifact registries/storages (nothing here reaches them)."""
        p = self.ports
        d = self.dir / "storage-proxy"
        return f"""\
{self.etcd_toml()}
[storage-proxy]
node-id = "i-bj-storage-proxy"
num-proc = 1
pid-file = "{d}/storage-proxy.pid"
event-loop = "asyncio"
ipc-base-path = "{d}/ipc"
scandir-limit = 1000
max-upload-size = "100g"
secret = "bj-storage-proxy-session-token-secret"
session-expire = "1d"
aiomonitor-termui-port = {p.storage_aiomonitor_termui}
aiomonitor-webui-port = {p.storage_aiomonitor_webui}
use-watcher = false

[api.client]
service-addr = {{ host = "127.0.0.1", port = {p.storage_client} }}
ssl-enabled = false

[api.manager]
service-addr = {{ host = "127.0.0.1", port = {p.storage_manager} }}
internal-addr = {{ host = "127.0.0.1", port = {p.storage_internal} }}
ssl-enabled = false
secret = "{STORAGE_MANAGER_SECRET}"

[pyroscope]
enabled = false

[debug]
enabled = false

{LOGGING}
[volume.{VOLUME_NAME}]
backend = "vfs"
path = "{d / VOLUME_NAME}"

[otel]
enabled = false
"""

    def agent_toml(self) -> str:
        p = self.ports
        d = self.dir / "agent"
        return f"""\
{self.etcd_toml()}
[agent]
mode = "dummy"
rpc-listen-addr = {{ host = "127.0.0.1", port = {p.agent_rpc} }}
service-addr = {{ host = "127.0.0.1", port = {p.agent_service} }}
ssl-enabled = false
agent-sock-port = {p.agent_sock}
id = "i-bj-dummy"
initial-resource-group-name = "default"
pid-file = "{d}/agent.pid"
event-loop = "asyncio"
ipc-base-path = "{d}/ipc"
var-base-path = "{d}/var"
image-commit-path = "{d}/commit"
mount-path = "{d}/vfroot"
cohabiting-storage-proxy = false
aiomonitor-termui-port = {p.agent_aiomonitor_termui}
aiomonitor-webui-port = {p.agent_aiomonitor_webui}
metadata-server-bind-host = "127.0.0.1"
metadata-server-port = {p.agent_metadata}
rpc-auth-manager-public-key = "{d}/fixtures/manager/manager.key"
rpc-auth-agent-keypair = "{d}/fixtures/agent/agent.key_secret"

[container]
port-range = [{p.container_range[0]}, {p.container_range[1]}]
kernel-uid = -1
kernel-gid = -1
bind-host = "127.0.0.1"
advertised-host = "127.0.0.1"
sandbox-type = "docker"
scratch-type = "hostdir"
scratch-root = "{d}/scratches"
scratch-size = "1G"

[watcher]
service-addr = {{ host = "127.0.0.1", port = {p.agent_watcher} }}
ssl-enabled = false
target-service = "backendai-agent.service"
soft-reset-available = false

[pyroscope]
enabled = false

{LOGGING}
[resource]
reserved-cpu = 0
reserved-mem = "0"
reserved-disk = "0"

[debug]
enabled = false
skip-container-deletion = false

[otel]
enabled = false
"""

    def agent_dummy_toml(self, half: Path) -> str:
        text = (half / "sample-dummy-config.toml").read_text()
        text = text.replace("use-fake-code-runner = true", "use-fake-code-runner = false")
        text = text.replace("start-container = 2.0", "start-container = 0.1")
        text = text.replace('already-have = []', f'already-have = ["{IMAGE}"]')
        return text

    # -- services -----------------------------------------------------------------------------
    def storage_hello(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports.storage_manager}/", timeout=5) as resp:
            return json.loads(resp.read())

    def start_storage_proxy(self) -> None:
        """Backend.AI's storage proxy on the stack's etcd/Redis; ready when its manager-facing API
        answers with its version and the client-facing one accepts connections."""
        log = self.logs / "storage-proxy.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
        env.update(PYTHONUNBUFFERED="1")
        proc = self.spawn("storage-proxy", [self.venv_python, "-m", "ai.backend.storage.server", "-f",
                                            "storage-proxy.toml"], cwd=self.dir / "storage-proxy", env=env)
        wait_for("storage proxy (GET / on its manager API)",
                 lambda: self.storage_hello().get("storage-proxy") == VERSION and port_open(self.ports.storage_client),
                 STORAGE_TIMEOUT, proc=proc, log=log, interval=0.5)

    def check_volume(self) -> None:
        """The manager reaches the storage proxy: its volume is among the admin's vfolder hosts."""
        env = self.info().env()
        env["BACKEND_ENDPOINT_TYPE"] = "api"
        r = self.run("client-cli", [self.bai, "vfolder", "list-hosts"], env=env, timeout=60, check=False)
        if VOLUME_HOST.encode() not in r.stdout:
            raise StackError(f"the manager does not list the vfolder host {VOLUME_HOST}"
                             + tail_hint(self.logs / "client-cli.log", 20) + tail_hint(self.logs / "storage-proxy.log"))

    def start_manager(self) -> None:
        log = self.logs / "manager.log"
        proc = self.spawn("manager", [self.bai, "mgr", "start-server", "-f", "manager.toml"], cwd=self.dir / "manager",
                          env=self.manager_env())
        wait_for("manager (GET /)", lambda: self.hello().get("version"), MANAGER_TIMEOUT, proc=proc, log=log,
                 interval=1.0)

    def start_agent(self) -> None:
        log = self.logs / "agent.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
        env.update(BJ_STACK_DIR=str(self.dir), BJ_RUNTIME_PYTHON=runtime_python(), PYTHONUNBUFFERED="1",
                   DOCKER_HOST=f"unix://{self.dir}/no-docker.sock")
        proc = self.spawn("agent", [self.venv_python, HERE / "agent_launcher.py", "-f", "agent.toml"],
                          cwd=self.dir / "agent", env=env)

        def registered() -> bool:
            rows = psql(self.ports, "SELECT status FROM agents WHERE id = 'i-bj-dummy'")
            return bool(rows) and rows[0][0] == "ALIVE"

        wait_for("agent registration (agents.status = ALIVE)", registered, AGENT_TIMEOUT, proc=proc, log=log,
                 interval=1.0)

    def official_cli(self, *args, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        env = self.info().env()
        env["BACKEND_ENDPOINT_TYPE"] = "api"
        return self.run("client-cli", [self.bai, *args], env=env, timeout=timeout, check=check)

    def join_project(self) -> None:
        """Project membership is enforced: the admin joins ``default`` through the API."""
        self.official_cli("admin", "group", "add-users", DEFAULT_PROJECT_ID, ADMIN_UUID)

    def smoke(self) -> None:
        name = f"bj-smoke-{uuid.uuid4().hex[:6]}"
        r = self.official_cli("run", "--rm", "--name", name, IMAGE_ALIAS, "-c", "print(6*7)", timeout=180, check=False)
        if b"42" not in r.stdout:
            raise StackError("smoke run (backend.ai run) did not print 42" + tail_hint(self.logs / "client-cli.log", 40))


def stop_process(pid: int, start: int | None) -> None:
    """SIGTERM the process group of ``pid`` (each recorded process leads its own), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive(pid, start):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                os.kill(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if not alive(pid, start):
                return
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)


def psql(ports: Ports, sql: str) -> list[list[str]]:
    r = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(ports.postgres), "-U", DB_USER, "-d", DB_NAME, "-X", "-q", "-A", "-t",
         "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PGPASSWORD": DB_PASSWORD},
    )
    if r.returncode != 0:
        raise StackError(f"psql failed: {r.stderr.strip()}\nSQL: {sql.strip()[:500]}")
    return [line.split("|") for line in r.stdout.splitlines() if line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.manager.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--smoke", action="store_true", help="after up, run one cell with the official CLI")
    parser.add_argument("--purge", action="store_true", help="with down: also delete the stack directory")
    args = parser.parse_args(argv)
    stack = Stack()
    if args.command == "up":
        try:
            info = stack.up(smoke=args.smoke)
        except StackUnavailable as e:
            print(f"unavailable: {e}", file=sys.stderr)
            return 2
        except StackError as e:
            print(f"failed: {e}", file=sys.stderr)
            return 1
        print(json.dumps({"endpoint": info.endpoint, "access_key": info.access_key, "secret_key": info.secret_key,
                          "image": info.image, "logs": str(info.logs_dir), "timings": read_state().get("timings")},
                         indent=2))
        return 0
    if args.command == "down":
        stack.down(keep_dir=not args.purge)
        return 0
    state = read_state()
    up = stack.is_up()
    print(json.dumps({"up": up, "status": state.get("status"), "endpoint": state.get("endpoint"),
                      "logs": state.get("logs"), "timings": state.get("timings"),
                      "processes": {f"{n}:{pid}": alive(pid, s) for n, pid, s in recorded_processes(state)}}, indent=2))
    return 0 if up else 3


if __name__ == "__main__":
    sys.exit(main())
