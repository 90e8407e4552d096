"""Runs a Backend.AI agent (26.9.x) in its ``dummy`` mode, with code execution made real.

Run with the manager venv's Python (3.13), never imported by the tests::

    python agent_launcher.py -f agent.toml        (cwd: the directory holding agent.dummy.toml)

The dummy agent registers with the manager and "creates" kernels without Docker, but answers every
execute with ``not-implemented`` and reaps its kernels within a minute because no container backs
them.  Here, before the agent starts (its worker is forked, so the patches carry over):

* each kernel gets a process of Backend.AI's own kernel runner (``ai.backend.kernel``, which runs an
  ipykernel of ``BJ_RUNTIME_PYTHON``) in a private mount namespace (``unshare -m``) whose ``/home``
  is a tmpfs, with ``/home/work`` and ``/home/config`` bound from ``<stack>/kernels/<kernel id>/``;
  its ZeroMQ ports are picked free and bound on 127.0.0.1 (krunner_launcher.py);
* ``execute``, ``interrupt`` and completion go to that runner as the docker backend does;
* the session's vfolders (the stack's storage proxy volume is on this host) are bind-mounted under
  ``/home/work/<name>`` in that namespace, read-only unless mounted ``rw``;
* uploads, downloads and file listings act on the kernel's work directory on the host, as the
  docker backend does on its scratch directory;
* destroy/clean stop the runner; the registry cleanup only reaps kernels whose runner died;
* restart keeps its configuration under the kernel directory, so ``PATCH /session/{name}`` works.

Every runner PID is appended to ``<stack>/runners.pids`` so that the harness can stop them too.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path, PurePosixPath

STACK_DIR = Path(os.environ["BJ_STACK_DIR"])
RUNTIME_PYTHON = os.environ["BJ_RUNTIME_PYTHON"]
KERNELS_DIR = STACK_DIR / "kernels"
RUNNER_PIDS = STACK_DIR / "runners.pids"
JUPYTER_DIR = STACK_DIR / "jupyter"  # a private kernelspec "python3" → RUNTIME_PYTHON's ipykernel
KRUNNER_LAUNCHER = Path(__file__).resolve().with_name("krunner_launcher.py")
RUNNER_START_TIMEOUT = 60.0
RUNNER_STOP_TIMEOUT = 5.0
MAX_ARCHIVE = 1048576  # the docker backend's download limit

from ai.backend.agent.agent import AbstractAgent
from ai.backend.agent.dummy import agent as dummy_agent
from ai.backend.agent.dummy import kernel as dummy_kernel
from ai.backend.agent.types import KernelLifecycleStatus
from ai.backend.common.dto.agent.response import CodeCompletionResp

RUNNERS: dict[str, subprocess.Popen] = {}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _kernel_dir(kernel_id) -> Path:
    return KERNELS_DIR / str(kernel_id)


def _work_dir(kernel_id) -> Path:
    return _kernel_dir(kernel_id) / "work"


def _write_kernelspec() -> None:
    spec = JUPYTER_DIR / "kernels" / "python3" / "kernel.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps({
        "argv": [RUNTIME_PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (backend_jupyter manager tests)",
        "language": "python",
    }))


def _spawn_runner(kernel_id, environ, binds=()) -> tuple[subprocess.Popen, int, int]:
    kdir = _kernel_dir(kernel_id)
    work, config = kdir / "work", kdir / "config"
    work.mkdir(parents=True, exist_ok=True)
    config.mkdir(parents=True, exist_ok=True)
    repl_in, repl_out = _free_port(), _free_port()
    while repl_out == repl_in:
        repl_out = _free_port()
    (config / "intrinsic-ports.json").write_text(json.dumps({"replin": repl_in, "replout": repl_out}))
    (config / "environ.txt").write_text(
        "".join(f"{k}={v}\n" for k, v in (environ or {}).items() if "\n" not in f"{k}{v}")
    )
    script = (
        "set -e; mount -t tmpfs -o mode=0755 bj-kernel-home /home; "
        "mkdir -p /home/work /home/config; "
        f"mount --bind '{work}' /home/work; mount --bind '{config}' /home/config; "
        + "".join(
            f"mkdir -p '{target}'; mount --bind '{source}' '{target}'; "
            + ("" if writable else f"mount -o remount,bind,ro '{target}'; ")
            for source, target, writable in binds
        ) +
        f"cd /home/work; exec '{sys.executable}' '{KRUNNER_LAUNCHER}' python '{RUNTIME_PYTHON}'"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": "/home/work",
        "JUPYTER_PATH": str(JUPYTER_DIR),
        "JUPYTER_PLATFORM_DIRS": "1",
        "BJ_KERNEL_ID": str(kernel_id),
    }
    log = open(kdir / "runner.log", "ab")
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        start_new_session=True, close_fds=True,
    )
    log.close()
    try:  # the start time tells this process from a later one with the same PID
        start = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        start = ""
    with open(RUNNER_PIDS, "a") as f:
        f.write(f"{proc.pid} {start}\n")
    return proc, repl_in, repl_out


def _stop_runner(kernel_id) -> None:
    proc = RUNNERS.pop(str(kernel_id), None)
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, RUNNER_STOP_TIMEOUT), (signal.SIGKILL, RUNNER_STOP_TIMEOUT)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _confined(kernel_id, container_path) -> Path:
    """The host path of ``container_path`` (relative to, or absolute under, /home/work)."""
    home = PurePosixPath("/home/work")
    abspath = PurePosixPath(os.path.normpath(home / str(container_path)))
    if not abspath.is_relative_to(home):
        raise PermissionError("Not allowed to access files outside /home/work")
    return _work_dir(kernel_id).joinpath(*abspath.relative_to(home).parts)


# -- the kernel creation context --------------------------------------------------------------------

async def start_container(self, kernel_obj, cmdargs, resource_opts, preopen_ports, cluster_info):
    kernel_id = str(self.kernel_id)
    _stop_runner(kernel_id)  # a restart re-creates the kernel
    proc, repl_in, repl_out = _spawn_runner(kernel_id, getattr(kernel_obj, "environ", None),
                                            getattr(self, "bj_vfolder_binds", ()))
    RUNNERS[kernel_id] = proc
    deadline = time.monotonic() + RUNNER_START_TIMEOUT
    while not (_listening(repl_in) and _listening(repl_out)):
        if proc.poll() is not None:
            raise RuntimeError(f"the kernel runner exited with {proc.returncode}; see {_kernel_dir(kernel_id)}/runner.log")
        if time.monotonic() > deadline:
            _stop_runner(kernel_id)
            raise RuntimeError(f"the kernel runner did not open its ports in {RUNNER_START_TIMEOUT:.0f} s")
        await asyncio.sleep(0.1)
    return {
        "container_id": f"krunner-{proc.pid}",
        "kernel_host": "127.0.0.1",
        "repl_in_port": repl_in,
        "repl_out_port": repl_out,
        "stdin_port": 0,  # legacy
        "stdout_port": 0,  # legacy
        "host_ports": [repl_in, repl_out],
        "domain_socket_proxies": [],
        "block_service_ports": self.internal_data.get("block_service_ports", False),
    }


async def prepare_container(self, resource_spec, environ, service_ports, cluster_info):
    kernel = await _orig_prepare_container(self, resource_spec, environ, service_ports, cluster_info)
    kernel.environ = dict(environ)
    return kernel


async def process_mounts(self, mounts):
    """The session's vfolders (bind mounts under /home/work, from the storage proxy's volume on this
    host) are bound into the runner's mount namespace like Docker binds them into a container."""
    self.bj_vfolder_binds = [
        (str(m.source), str(m.target), m.permission.value in ("rw", "wd"))
        for m in mounts
        if m.source is not None and str(m.target).startswith("/home/work/") and "'" not in f"{m.source}{m.target}"
    ]


_orig_prepare_container = dummy_agent.DummyKernelCreationContext.prepare_container
dummy_agent.DummyKernelCreationContext.process_mounts = process_mounts
dummy_agent.DummyKernelCreationContext.start_container = start_container
dummy_agent.DummyKernelCreationContext.prepare_container = prepare_container


# -- the kernel -----------------------------------------------------------------------------------

async def interrupt_kernel(self):
    await self.runner.feed_interrupt()
    return {"status": "finished"}


async def get_completions(self, text, opts):
    return CodeCompletionResp(result=await self.runner.feed_and_get_completion(text, opts))


async def get_logs(self):
    path = _kernel_dir(self.kernel_id) / "runner.log"
    try:
        return {"logs": path.read_text(errors="replace")[-100_000:]}
    except FileNotFoundError:
        return {"logs": ""}


async def accept_file(self, container_path, filedata):
    target = _confined(self.kernel_id, container_path)

    def write():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(filedata)

    await asyncio.get_running_loop().run_in_executor(None, write)


def _tar_of(path: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(path, arcname=path.name)
    if buf.tell() > MAX_ARCHIVE:
        raise ValueError("Too large archive file exceeding 1 MiB")
    return buf.getvalue()


async def download_file(self, container_path):
    target = _confined(self.kernel_id, container_path)
    if not target.exists():
        raise RuntimeError(f"Could not download the archive to: {container_path}")
    return await asyncio.get_running_loop().run_in_executor(None, _tar_of, target)


async def download_single(self, container_path):
    target = _confined(self.kernel_id, container_path)
    if not target.is_file():
        raise RuntimeError(f"Could not download the archive to: {container_path}")
    return await asyncio.get_running_loop().run_in_executor(None, target.read_bytes)


async def list_files(self, container_path):
    target = _confined(self.kernel_id, container_path)

    def scan():
        files = []
        for entry in os.scandir(target):
            st = entry.stat(follow_symlinks=False)
            files.append({"mode": stat.filemode(st.st_mode), "size": st.st_size, "ctime": st.st_ctime,
                          "mtime": st.st_mtime, "atime": st.st_atime, "filename": entry.name})
        return json.dumps(files)

    try:
        out, err = await asyncio.get_running_loop().run_in_executor(None, scan), ""
    except OSError as e:
        out, err = "", f"{type(e).__name__}: {e}\n"
    return {"files": out, "errors": err, "abspath": str(container_path)}


for _name, _fn in {
    "interrupt_kernel": interrupt_kernel, "get_completions": get_completions, "get_logs": get_logs,
    "accept_file": accept_file, "download_file": download_file, "download_single": download_single,
    "list_files": list_files,
}.items():
    setattr(dummy_kernel.DummyKernel, _name, _fn)
# Talk to the runner through real ZeroMQ sockets (the config says so too; this makes sure).
dummy_kernel.DummyFakeCodeRunner = dummy_kernel.DummyCodeRunner


# -- the agent ------------------------------------------------------------------------------------

async def destroy_kernel(self, kernel_id, container_id):
    await asyncio.get_running_loop().run_in_executor(None, _stop_runner, kernel_id)


async def clean_kernel(self, kernel_id, container_id, restarting):
    await asyncio.get_running_loop().run_in_executor(None, _stop_runner, kernel_id)
    if not restarting:
        import shutil

        shutil.rmtree(_kernel_dir(kernel_id), ignore_errors=True)


async def restart_kernel__load_config(self, kernel_id, name):
    return (_kernel_dir(kernel_id) / "agent-config" / name).read_bytes()


async def restart_kernel__store_config(self, kernel_id, name, data):
    path = _kernel_dir(kernel_id) / "agent-config" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def _clean_kernel_registry_loop(self):
    """As upstream, except that a kernel is alive while its runner process is."""
    tasks: set[asyncio.Task] = set()
    while True:
        await asyncio.sleep(60.0)
        try:
            dangling = {
                kid for kid, kernel in self.kernel_registry.items()
                if kernel.state == KernelLifecycleStatus.RUNNING
                and (RUNNERS.get(str(kid)) is None or RUNNERS[str(kid)].poll() is not None)
            }
            if dangling:
                task = asyncio.create_task(asyncio.wait_for(self.clean_kernel_objects(dangling), 30.0))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except Exception:
            pass


Agent = dummy_agent.DummyAgent
Agent.execute = AbstractAgent.execute
Agent.destroy_kernel = destroy_kernel
Agent.clean_kernel = clean_kernel
Agent.restart_kernel__load_config = restart_kernel__load_config
Agent.restart_kernel__store_config = restart_kernel__store_config
Agent._clean_kernel_registry_loop = _clean_kernel_registry_loop


def _stop_all(*_):
    for kernel_id in list(RUNNERS):
        _stop_runner(kernel_id)


if __name__ == "__main__":
    import atexit

    KERNELS_DIR.mkdir(parents=True, exist_ok=True)
    _write_kernelspec()
    atexit.register(_stop_all)
    from ai.backend.agent.cli.start_server import main

    sys.exit(main(sys.argv[1:], standalone_mode=True))
