"""Shared pieces of the benchmark suite: statistics, machine info, the embedded server, a
jupyter_client kernel driver, process sampling (RSS, open fds), and the table row type.

Every wait here is bounded; every process started here is stopped by the context manager that
started it.  The server's secret key only ever goes into child environments, never into output.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import zmq
from jupyter_client import KernelManager

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``tests.sdk.venvs`` and ``backend_jupyter`` from the checkout
    sys.path.insert(0, str(ROOT))

from backend_jupyter.embedded import ensure_server

WARMUP = 5  # untimed cells before every timed series
IDLE_GRACE = 5.0  # seconds to wait for ``idle`` after the reply (IOPub may drop it under a flood)
READY_TIMEOUT = 60.0
CELL_TIMEOUT = 120.0
SHUTDOWN_WAIT = 5.0  # jupyter_client: shutdown_request, then SIGTERM at half, SIGKILL at the end


# -- statistics ------------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 1]."""
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(seconds: Sequence[float], *, samples: bool = False) -> dict:
    """min/p50/p95/max in milliseconds (and the samples, if asked)."""
    ms = [x * 1000 for x in seconds]
    out = {"n": len(ms), "min_ms": round(min(ms), 3), "p50_ms": round(percentile(ms, 0.5), 3),
           "p95_ms": round(percentile(ms, 0.95), 3), "max_ms": round(max(ms), 3)}
    if samples:
        out["samples_ms"] = [round(x, 3) for x in ms]
    return out


def rate(seconds: float, nbytes: int) -> dict:
    """Seconds and MB/s of ``nbytes`` passed in ``seconds``."""
    return {"seconds": round(seconds, 3), "mb_per_s": round(nbytes / 1e6 / seconds, 2)}


def ms(value: float) -> str:
    """A duration in ms, with sensible precision."""
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def p50_p95(summary: dict) -> str:
    return f"p50 {ms(summary['p50_ms'])} · p95 {ms(summary['p95_ms'])}"


def ratio(value: float, floor: float | None) -> str:
    return f"{value / floor:.2f}×" if floor else ""


# -- the report's rows -----------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the suite's table; ``met`` is None for rows without a target."""

    group: str
    measurement: str
    n: int | str
    result: str
    vs_local: str = ""
    target: str = ""
    met: bool | None = None


# -- machine and environment -----------------------------------------------------------------------

def machine_info() -> dict:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ("backend_jupyter", "ipykernel", "jupyter_client", "pyzmq", "aiohttp", "ipython"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def base_env() -> dict[str, str]:
    """Our environment without any Backend.AI endpoint or keys."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}


# -- the embedded server ---------------------------------------------------------------------------

class Server:
    """A private embedded server on a fresh data dir; stopped on exit."""

    def __init__(self, workdir: Path, *, tls: tuple[Path, Path] | None = None):
        self.workdir = Path(workdir)
        self.tls = tls  # (certificate, key): serve HTTPS
        self.embedded = None

    def __enter__(self) -> Server:
        self.embedded = ensure_server(self.workdir / "server", tls=self.tls)
        if self.embedded.process is None:
            raise RuntimeError("expected a new embedded server, found a running one")
        self.config = self.embedded.config()
        self.process = psutil.Process(self.embedded.process.pid)
        return self

    def __exit__(self, *exc) -> None:
        if self.embedded is not None:
            self.embedded.stop(timeout=15)

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    def env(self) -> dict[str, str]:
        """Environment of a client process (wrapper kernel, SDK) pointed at this server."""
        return dict(base_env(), BACKEND_ENDPOINT=self.config.endpoint, BACKEND_ACCESS_KEY=self.config.access_key,
                    BACKEND_SECRET_KEY=self.config.secret_key)

    def children(self) -> list[psutil.Process]:
        """The server's session kernels (and whatever they started)."""
        with contextlib.suppress(psutil.Error):
            return self.process.children(recursive=True)
        return []


# -- kernels ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelKind:
    key: str
    label: str
    kernel_name: str
    transport: str | None = None  # the wrapper's ``--BackendKernel.transport``
    adapter: bool = True  # the wrapper's ``--BackendKernel.display_adapter``

    @property
    def wrapper(self) -> bool:
        return self.transport is not None

    eager: bool = False  # the wrapper's ``--BackendKernel.eager_start`` (off: a session's processes
    # appear at the first cell, which is how first_cell() tells whose they are)

    def extra_arguments(self) -> list[str]:
        if not self.transport:
            return []
        return [f"--BackendKernel.transport={self.transport}", f"--BackendKernel.eager_start={self.eager}"] + (
            [] if self.adapter else ["--BackendKernel.display_adapter=False"])


LOCAL = KernelKind("local", "local ipykernel", "python3")
WRAPPER_POLL = KernelKind("wrapper_poll", "wrapper, poll", "backend-python", "poll")
WRAPPER_WS = KernelKind("wrapper_ws", "wrapper, ws", "backend-python", "ws")
WRAPPER_AUTO = KernelKind("wrapper_auto", "wrapper, auto", "backend-python", "auto")
KINDS = (LOCAL, WRAPPER_POLL, WRAPPER_WS)
# Trivial cell only: the same websocket wrapper without the remote display adapter (its cost).
WRAPPER_WS_PLAIN = KernelKind("wrapper_ws_plain", "wrapper, ws, without the display adapter", "backend-python", "ws",
                              adapter=False)
# Trivial cell only, as a diagnostic: what ipykernel's messaging costs any wrapper (noop_kernel.py).
NOOP = KernelKind("noop", "no-op wrapper kernel (diagnostic: ipykernel's own cost)", "bj-bench-noop")


@dataclass
class CellRun:
    """What one execute_request brought: reply status, idle, and this request's IOPub output
    with arrival times in seconds since the request."""

    seconds: float
    status: str
    idle: bool
    streams: list[tuple[float, str, str]] = field(default_factory=list)  # (t, name, text)
    displays: list[tuple[float, dict]] = field(default_factory=list)  # (t, mime bundle)
    errors: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.idle

    def stdout(self) -> str:
        return "".join(text for _, name, text in self.streams if name == "stdout")

    def value(self) -> str:
        """What the cell showed as its value: its result's (or, without the display adapter, its
        stdout's) text."""
        results = [bundle.get("text/plain", "") for _, bundle in self.displays]
        return results[-1] if results else self.stdout()

    def first_stream(self, needle: str) -> float | None:
        return next((t for t, _, text in self.streams if needle in text), None)


START_FAILURES: list[str] = []  # kernels that died while starting and were started again


class KernelDriver:
    """One kernel process driven through jupyter_client's blocking client, on one thread.

    ``start()`` launches the process; ``wait_ready()`` waits for it (separate, so many kernels
    can start at once).  Use as a context manager: the kernel is always shut down.
    """

    def __init__(self, kind: KernelKind, env: dict[str, str], log_path: Path | None = None):
        self.kind = kind
        self.env = env
        self.log_path = log_path
        self.km: KernelManager | None = None
        self.kc = None
        self.ready_s: float | None = None
        self.stray: list[str] = []  # stream text of no request of ours (late or foreign output)

    def start(self) -> KernelDriver:
        self._t0 = time.perf_counter()
        self.km = KernelManager(kernel_name=self.kind.kernel_name)
        self.km.shutdown_wait_time = SHUTDOWN_WAIT
        with open(self.log_path or os.devnull, "ab") as log:
            self.km.start_kernel(env=self.env, stderr=log, stdout=log, extra_arguments=self.kind.extra_arguments())
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> KernelDriver:
        """Wait until the kernel answers.  One that died while starting is started once more (the
        benchmark measures running kernels; starting them is the tests' business) and the death
        is kept in :data:`START_FAILURES`, with the end of its log, for the report."""
        for attempt in (1, 2):
            self.kc = self.km.client()
            self.kc.start_channels()
            try:
                self.kc.wait_for_ready(timeout=timeout)
                break
            except (RuntimeError, TimeoutError) as e:  # say which kernel, and why it says it died
                failure = f"{self.kind.label}: {e}; the end of its log:\n{self.log_tail()}"
                if attempt == 2 or self.km.is_alive():  # alive but silent, or dead twice: give up
                    raise RuntimeError(failure) from None
                START_FAILURES.append(failure)
                self.shutdown()
                self.start()
        self.ready_s = time.perf_counter() - self._t0
        self.process = psutil.Process(self.km.provisioner.process.pid)
        self.poller = zmq.Poller()
        for channel in (self.kc.shell_channel, self.kc.iopub_channel):
            self.poller.register(channel.socket, zmq.POLLIN)
        return self

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:] if self.log_path else ""
        except OSError as e:
            return f"(unreadable: {e})"

    def __enter__(self) -> KernelDriver:
        try:
            if self.km is None:
                self.start()
            if self.kc is None:
                self.wait_ready()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def run(self, code: str, timeout: float = CELL_TIMEOUT) -> CellRun:
        """Execute ``code``; done at the execute_reply plus the ``idle`` of this request (at most
        IDLE_GRACE s after the reply).  Raises TimeoutError without a reply within ``timeout``."""
        shell, iopub = self.kc.shell_channel, self.kc.iopub_channel
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code)
        deadline, reply, idle = t0 + timeout, None, False
        run = CellRun(0.0, "", False)
        while not (reply and idle):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            events = dict(self.poller.poll(remaining * 1000))
            while iopub.msg_ready():
                msg, now = iopub.get_msg(timeout=0), time.perf_counter()
                mtype, content = msg["msg_type"], msg["content"]
                if msg["parent_header"].get("msg_id") != msg_id:
                    if mtype == "stream":
                        self.stray.append(content["text"])
                    continue
                if mtype == "stream":
                    run.streams.append((now - t0, content["name"], content["text"]))
                elif mtype in ("display_data", "update_display_data", "execute_result"):
                    run.displays.append((now - t0, content["data"]))
                elif mtype == "error":
                    run.errors.append(content)
                elif mtype == "status" and content["execution_state"] == "idle":
                    idle = True
            if shell.socket in events and reply is None:
                msg = shell.get_msg(timeout=0)
                if msg["parent_header"].get("msg_id") == msg_id:
                    reply = msg
                    deadline = min(deadline, time.perf_counter() + IDLE_GRACE)
        if reply is None:
            raise TimeoutError(f"{self.kind.label}: no execute_reply within {timeout:g} s for {code[:60]!r}")
        run.seconds = time.perf_counter() - t0
        run.status = reply["content"]["status"]
        run.idle = idle
        return run

    def run_ok(self, code: str, timeout: float = CELL_TIMEOUT) -> CellRun:
        run = self.run(code, timeout)
        if not run.ok:
            detail = run.errors[0].get("evalue") if run.errors else ""
            raise RuntimeError(f"{self.kind.label}: {code[:60]!r} ended {run.status}, idle={run.idle} {detail}")
        return run

    def timed(self, code: str, n: int, warmup: int = WARMUP) -> list[float]:
        for _ in range(warmup):
            self.run_ok(code)
        return [self.run_ok(code).seconds for _ in range(n)]

    def shutdown(self) -> None:
        if self.kc is not None:
            with contextlib.suppress(Exception):
                self.kc.stop_channels()
        if self.km is not None and self.km.has_kernel:
            try:
                # Graceful, so the wrapper destroys its remote session; bounded by SHUTDOWN_WAIT.
                self.km.shutdown_kernel(now=not self.kind.wrapper)
            except Exception:  # noqa: BLE001 - then by force
                with contextlib.suppress(Exception):
                    self.km.shutdown_kernel(now=True)
        self.km = None


def start_kernel(kind: KernelKind, server: Server | None, workdir: Path) -> KernelDriver:
    """A driver (not yet started) for ``kind``; wrappers point at ``server``."""
    env = server.env() if kind.wrapper else base_env()
    return KernelDriver(kind, env, Path(workdir) / f"{kind.key}-{os.urandom(3).hex()}.log")


def parallel(fn: Callable[[Any], Any], items: Iterable[Any], timeout: float) -> list[Any]:
    """``fn(item)`` for every item on its own thread; results in order.  Raises the first error,
    or TimeoutError when not all finished within ``timeout`` seconds."""
    items = list(items)
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=len(items))
    try:
        futures = [pool.submit(fn, item) for item in items]
        deadline = time.monotonic() + timeout
        return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# -- processes: RSS and open fds -------------------------------------------------------------------

Probes = dict[str, Callable[[], list[psutil.Process]]]


def snapshot(probes: Probes) -> dict[str, dict]:
    """RSS (MiB) and open fds, summed over each probe's processes (gone ones count 0)."""
    out = {}
    for name, procs in probes.items():
        rss = fds = count = 0
        for p in procs():
            try:
                rss += p.memory_info().rss
                fds += p.num_fds()
                count += 1
            except psutil.Error:
                continue
        out[name] = {"rss_mb": round(rss / 2**20, 1), "fds": fds, "processes": count}
    return out


class PeakSampler:
    """Samples RSS every ``interval`` s while the block runs: ``before``, ``peak``, ``after`` MiB."""

    def __init__(self, probes: Probes, interval: float = 0.05):
        self.probes, self.interval = probes, interval
        self._done = threading.Event()

    def __enter__(self) -> PeakSampler:
        self.before = {k: v["rss_mb"] for k, v in snapshot(self.probes).items()}
        self.peak = dict(self.before)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            for k, v in snapshot(self.probes).items():
                self.peak[k] = max(self.peak[k], v["rss_mb"])

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(5)
        self.after = {k: v["rss_mb"] for k, v in snapshot(self.probes).items()}

    def result(self) -> dict[str, dict]:
        return {k: {"before_mb": self.before[k], "peak_mb": self.peak[k], "after_mb": self.after[k],
                    "growth_mb": round(self.peak[k] - self.before[k], 1)} for k in self.probes}


def wrapper_probes(driver: KernelDriver, server: Server, session_kernels: list[psutil.Process]) -> Probes:
    """Wrapper kernel, server, and the server's kernel(s) serving this wrapper's session."""
    return {"kernel": lambda: [driver.process], "server": lambda: [server.process],
            "session kernel": lambda: session_kernels}


def new_children(server: Server, before: Iterable[psutil.Process]) -> list[psutil.Process]:
    known = {p.pid for p in before}
    return [p for p in server.children() if p.pid not in known]


def first_cell(driver: KernelDriver, server: Server | None) -> tuple[float, list[psutil.Process]]:
    """Run the first cell (a wrapper creates its remote session there): its seconds and the
    server processes that appeared for it (none for a local kernel)."""
    remote = server is not None and driver.kind.wrapper
    before = server.children() if remote else []
    seconds = driver.run_ok("1", timeout=READY_TIMEOUT).seconds
    return seconds, (new_children(server, before) if remote else [])
