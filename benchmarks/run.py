"""The benchmark suite: the "Backend.AI Python" wrapper kernel, its server and client, side by side
with a plain local ipykernel in the same run.

    python benchmarks/run.py [--quick] [--no-sdk] [--only GROUPS] [--output PATH]

Groups (modules): 1 ``trivial`` and 2 ``first_output`` (latency.py), 3 ``throughput`` and
4 ``display``/``html_table`` (output.py) on each kernel — local ipykernel, wrapper over polling,
wrapper over the websocket (``trivial`` also without the display adapter); 5 ``session_create`` (sessions.py); 6 ``concurrency``; 7 ``soak``; 8 ``clients``
(our client and the official SDK, clients.py); 10 ``jobs`` (background jobs and their journal,
jobs.py); 11 ``filesystem`` (backendai://: 200 MB written and read, filesystem.py); 12 ``tls`` (the
trivial cell over HTTPS beside plain HTTP, tls.py); 9 ``eager_start`` (the first cell some seconds after
the kernel started, eager.py; also on a real manager with ``--manager``: the loopback 26.9.6 stack
of tests/manager/, which must be up: ``python -m tests.manager.stack up``).  One private embedded server (temporary data
dir) serves everything; every kernel and the server are stopped whatever happens, and every wait
is bounded (plus an overall time limit).

Prints one markdown table (targets and whether they are met) and writes JSON with machine info,
settings, every measurement, the table rows and any error (default benchmarks/results/latest.json).
Exits 1 if a group could not run to its end; missed targets are reported, not fatal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the suite as the ``benchmarks`` package
    _here = Path(__file__).resolve().parent
    sys.path[:] = [str(_here.parent), *(p for p in sys.path if p != str(_here))]

from benchmarks import (
    clients,
    concurrency,
    eager,
    filesystem,
    jobs,
    latency,
    noop_kernel,
    output,
    sessions,
    soak,
    tls,
)
from benchmarks.common import (
    KINDS,
    NOOP,
    READY_TIMEOUT,
    START_FAILURES,
    WRAPPER_WS_PLAIN,
    Row,
    Server,
    first_cell,
    machine_info,
    parallel,
    start_kernel,
    wrapper_probes,
)

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
GROUPS = ("trivial", "first_output", "throughput", "display", "html_table", "session_create", "concurrency", "soak",
          "clients", "eager_start", "jobs", "filesystem", "tls")
KERNEL_GROUPS = GROUPS[:5]


@dataclass
class Settings:
    quick: bool
    trivial_n: int  # `1` cells per kernel (groups 1 and 8)
    ttfo_runs: int
    ttfo_warmup: int
    throughput_runs: int
    png_runs: int
    cold_creates: int
    warm_creates: int
    concurrency_kernels: int
    concurrency_cells: int
    soak_cells: int
    eager_delay_s: float  # the first cell is sent this long after the kernel started
    job_submits: int
    sweep_jobs: int
    fs_mb: int  # the file written and read through backendai://
    sdk_versions: list[str]
    time_limit_s: float

    @classmethod
    def for_args(cls, args) -> Settings:
        s = QUICK if args.quick else FULL
        return replace(s, sdk_versions=[] if args.no_sdk else list(s.sdk_versions), trivial_n=args.n or s.trivial_n,
                       time_limit_s=args.time_limit or s.time_limit_s)


FULL = Settings(quick=False, trivial_n=500, ttfo_runs=5, ttfo_warmup=1, throughput_runs=3, png_runs=5, cold_creates=5,
                warm_creates=20, concurrency_kernels=20, concurrency_cells=50, soak_cells=2000, eager_delay_s=15.0, job_submits=10, sweep_jobs=8,
                fs_mb=200, sdk_versions=["23.9.10", "26.9.6"], time_limit_s=900.0)
QUICK = Settings(quick=True, trivial_n=20, ttfo_runs=1, ttfo_warmup=0, throughput_runs=1, png_runs=2, cold_creates=2,
                 warm_creates=5, concurrency_kernels=3, concurrency_cells=8, soak_cells=100, eager_delay_s=1.0, job_submits=2, sweep_jobs=2,
                 fs_mb=20, sdk_versions=["23.9.10"], time_limit_s=150.0)


class Suite:
    """Runs the selected groups, keeping each one's results or error."""

    def __init__(self, settings: Settings, groups: list[str], manager: dict[str, str] | None = None):
        self.s = settings
        self.groups = groups
        self.manager = manager  # environment of a kernel pointed at a real manager (--manager)
        self.results: dict[str, dict] = {}
        self.kernels: dict[str, dict] = {}
        self.errors: dict[str, str] = {}
        self.secrets: list[str] = []  # never printed: scrubbed from the output (e.g. an SDK's stderr)

    def step(self, name: str, fn, *args):
        """``fn(*args)``; an exception becomes ``errors[name]`` (the suite carries on)."""
        t0 = time.perf_counter()
        try:
            return fn(*args)
        except TimeLimit:
            raise
        except Exception as e:  # noqa: BLE001 - reported in the table and the JSON
            self.errors[name] = f"{type(e).__name__}: {e}"
            print(self.scrub(traceback.format_exc()), file=sys.stderr)
            return None
        finally:
            print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    def run(self, workdir: Path) -> None:
        with Server(workdir) as server:
            self.secrets.append(server.config.secret_key)
            if set(self.groups) & set(KERNEL_GROUPS):
                self.step("kernels", self.kernel_groups, server, workdir)
            if "session_create" in self.groups:
                self.keep("session_create", sessions.session_create, server, self.s.cold_creates, self.s.warm_creates)
            if "concurrency" in self.groups:
                self.keep("concurrency", concurrency.concurrency, server, workdir, self.s.concurrency_kernels,
                          self.s.concurrency_cells)
            if "soak" in self.groups:
                self.keep("soak", soak.soak, server, workdir, self.s.soak_cells)
            if "clients" in self.groups:
                self.keep("clients", clients.reference_clients, server, self.s.trivial_n, self.s.sdk_versions,
                          self.errors)
            if "eager_start" in self.groups:
                targets = {"embedded server": server.env(), **({"real manager": self.manager} if self.manager else {})}
                self.keep("eager_start", eager.eager_start, targets, self.s.eager_delay_s, workdir)
            if "jobs" in self.groups:
                self.keep("jobs", jobs.jobs_group, server, workdir, self.s.job_submits, self.s.sweep_jobs)
            if "filesystem" in self.groups:
                self.keep("filesystem", filesystem.filesystem_group, server, workdir, self.s.fs_mb)
            if "tls" in self.groups:
                self.keep("tls", tls.tls_group, server, workdir, self.s.trivial_n)

    def keep(self, name: str, fn, *args) -> None:
        result = self.step(name, fn, *args)
        if result is not None:
            self.results[name] = result

    def kernel_groups(self, server: Server, workdir: Path) -> None:
        """Groups 1-4 on the three kernels (local, wrapper poll, wrapper ws), alive side by side;
        group 1 also on the no-op wrapper kernel (a diagnostic floor)."""
        with contextlib.ExitStack() as stack:
            drivers = {}
            for kind in KINDS:
                drivers[kind.key] = driver = start_kernel(kind, server, workdir)
                stack.callback(driver.shutdown)
                driver.start()
            extra = {}  # trivial cell only: the diagnostic floor and the wrapper without the adapter
            if "trivial" in self.groups:
                os.environ["JUPYTER_PATH"] = os.pathsep.join(
                    filter(None, [str(workdir / "jupyter"), os.environ.get("JUPYTER_PATH")]))
                noop_kernel.install(workdir / "jupyter")
                for kind, srv in ((NOOP, None), (WRAPPER_WS_PLAIN, server)):
                    extra[kind.key] = driver = start_kernel(kind, srv, workdir)
                    stack.callback(driver.shutdown)
                    driver.start()
            parallel(lambda d: d.wait_ready(READY_TIMEOUT), [*drivers.values(), *extra.values()], READY_TIMEOUT + 10)
            probes = {}
            for kind in KINDS:
                driver = drivers[kind.key]
                first_s, session_kernels = first_cell(driver, server)  # one by one: whose session is whose
                self.kernels[kind.key] = {"ready_s": round(driver.ready_s, 3), "first_cell_s": round(first_s, 3)}
                probes[kind.key] = (wrapper_probes(driver, server, session_kernels) if kind.wrapper
                                    else {"kernel": lambda d=driver: [d.process]})
            plan = {
                "trivial": lambda: latency.trivial({**drivers, **extra}, self.s.trivial_n),
                "first_output": lambda: latency.first_output(drivers, self.s.ttfo_runs, self.s.ttfo_warmup),
                "throughput": lambda: output.throughput(drivers, probes, self.s.throughput_runs),
                "display": lambda: output.png_display(drivers, self.s.png_runs),
                "html_table": lambda: output.html_display(drivers, self.s.png_runs),
            }
            for group, fn in plan.items():
                if group in self.groups:
                    self.keep(group, fn)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<secret key>")
        return text

    def rows(self) -> list[Row]:
        r, labels = self.results, {k.key: k.label for k in (*KINDS, NOOP, WRAPPER_WS_PLAIN)}
        local_trivial = r.get("trivial", {}).get("local", {}).get("p50_ms")
        builders = [
            ("trivial", lambda x: latency.trivial_rows(x, labels)),
            ("first_output", lambda x: latency.first_output_rows(x, labels)),
            ("throughput", lambda x: output.throughput_rows(x, labels)),
            ("display", lambda x: output.png_rows(x, labels)),
            ("html_table", lambda x: output.html_rows(x, labels)),
            ("session_create", sessions.rows),
            ("concurrency", concurrency.rows),
            ("soak", soak.rows),
            ("clients", lambda x: clients.rows(x, local_trivial, r.get("throughput", {}).get("local", {}))),
            ("eager_start", eager.rows),
            ("jobs", jobs.rows),
            ("filesystem", filesystem.rows),
            ("tls", tls.rows),
        ]
        rows = []
        for group, build in builders:
            if group in r:
                rows += build(r[group])
        if self.kernels:
            rows.append(Row("5", "kernel start → ready; first cell (a wrapper creates its session)", 1,
                            "; ".join(f"{labels[k]} {v['ready_s']:.2f} s, {v['first_cell_s']:.2f} s"
                                      for k, v in self.kernels.items())))
        for failure in START_FAILURES:
            rows.append(Row("!", "a kernel died while starting and was started again", "",
                            failure.replace("\n", " ")[:300]))
        for name, message in self.errors.items():
            rows.append(Row("!", f"ERROR in {name}", "", message.replace("\n", " ")[:300], "", "runs", False))
        return rows


def table(rows: list[Row]) -> str:
    out = ["| # | measurement | n | result | vs local ipykernel | target | met |",
           "|---|---|---:|---|---:|---|---|"]
    order = {g: i for i, g in enumerate([*map(str, range(1, 11)), "!"])}
    for row in sorted(rows, key=lambda x: order.get(x.group, 99)):  # stable: keeps each group's order
        met = "" if row.met is None else "yes" if row.met else "**NO**"
        cells = [row.group, row.measurement, str(row.n), row.result, row.vs_local, row.target, met]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


class TimeLimit(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise TimeLimit in the main thread after ``seconds`` (the finally blocks then clean up)."""
    def expire(signum, frame):
        raise TimeLimit(f"the suite exceeded its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (under a minute), SDK 23.9.10 only")
    parser.add_argument("--no-sdk", action="store_true", help="skip the official SDK (group 8 keeps our client)")
    parser.add_argument("--only", default="", help=f"comma-separated groups (default all): {','.join(GROUPS)}")
    parser.add_argument("--n", type=int, default=0, help="trivial-cell repetitions (default 500; 20 with --quick)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    parser.add_argument("--time-limit", type=float, default=0, help="overall seconds (default 900; 150 with --quick)")
    parser.add_argument("--manager", action="store_true", help="group 9 also on the real manager of tests/manager/ "
                        "(bring it up first: python -m tests.manager.stack up)")
    args = parser.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()] or list(GROUPS)
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    return args, groups


def main(argv=None) -> int:
    args, groups = parse_args(argv)
    settings = Settings.for_args(args)
    suite = Suite(settings, groups, manager_env() if args.manager else None)
    machine = machine_info()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bj-bench-", ignore_cleanup_errors=True) as tmp:
        try:
            with time_limit(settings.time_limit_s):
                suite.run(Path(tmp))
        except TimeLimit as e:
            suite.errors["suite"] = str(e)
    machine["duration_s"] = round(time.perf_counter() - started, 1)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    rows = suite.rows()
    text = suite.scrub(table(rows))
    print(f"{machine['cpus']} × {machine['cpu_model']}, Python {machine['python']}, {machine['date']}, "
          f"{'quick' if settings.quick else 'full'} run in {machine['duration_s']:.0f} s, load average "
          f"{machine['load_average'][0]:.1f} at start, {machine['load_average_end'][0]:.1f} at end\n")
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(suite.scrub(json.dumps({
        "machine": machine, "settings": asdict(settings), "groups_run": groups, "results": suite.results,
        "kernels": suite.kernels, "errors": suite.errors, "kernel_start_failures": START_FAILURES,
        "rows": [asdict(r) for r in rows], "table": text,
    }, indent=1)) + "\n")
    print(f"\nwrote {args.output}")
    return 1 if suite.errors else 0


def manager_env() -> dict[str, str]:
    """A kernel's environment pointed at the loopback manager stack (which must be up)."""
    from benchmarks.common import base_env
    from tests.manager.stack import Stack

    stack = Stack()
    if not stack.is_up():
        raise SystemExit("--manager: the manager stack is not up (python -m tests.manager.stack up)")
    info = stack.info()
    return dict(base_env(), BACKEND_ENDPOINT=info.endpoint, BACKEND_ACCESS_KEY=info.access_key,
                BACKEND_SECRET_KEY=info.secret_key)


def subset(only: str, output_name: str) -> None:
    """Entry point of the single-purpose scripts kept from before the suite (kernel.py, roundtrip.py)."""
    sys.exit(main(["--only", only, "--output", str(RESULTS.with_name(output_name)), *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
