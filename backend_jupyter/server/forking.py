"""Session kernels of the server's own Python, forked from a process that has imported ipykernel.

A new interpreter importing ipykernel and IPython costs about 0.7 CPU-seconds: a burst of eight
sessions (a sweep of background jobs) kept both cores of a small machine busy for 2.5 s before any
of them ran a line.  The standard library's forkserver (``multiprocessing``) imports them once, in
a server process of its own started from a clean state (not a fork of this threaded, asyncio
server), and forks each kernel from it in milliseconds.  The child then becomes what
``python -m ipykernel_launcher -f CONNECTION_FILE`` would have been: its own process group, the
session's working directory, environment and log file, ``''`` and ``PYTHONPATH`` on ``sys.path``.

:class:`ForkProvisioner` is jupyter_client's local provisioner with only the launch replaced;
signals, polling, waiting and killing work on the child as on a ``Popen``.  Anything but the
server's own ``ipykernel_launcher`` command, or a forkserver that cannot start, is launched the
usual way.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
from multiprocessing import forkserver
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

log = logging.getLogger("backend_jupyter.server")

PRELOAD = ["ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger",
           "IPython.core.interactiveshell",
           "jupyter_client.session", "zmq", "tornado.ioloop"]
_failed = False  # the forkserver could not start once: launch as usual from then on


def context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def warm() -> None:
    """Start the forkserver now (it imports ipykernel once: about a second), not at the first session."""
    global _failed
    try:
        context()
        forkserver.ensure_running()
    except Exception as e:  # noqa: BLE001 - kernels are then launched the usual way
        _failed = True
        log.warning("kernels will be started as new processes (the forkserver did not start: %s)", e)


class ForkedKernel:
    """The forked kernel process, with the part of ``Popen``'s interface a provisioner uses."""

    stdin = stdout = stderr = None

    def __init__(self, process: multiprocessing.process.BaseProcess):
        self.process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int | None:
        self.process.join(timeout)
        return self.process.exitcode

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _kernel_main(argv: list[str], cwd: str, env: dict[str, str], log_path: str) -> None:
    """In the forked child: become ``python -m ipykernel_launcher ARGV`` in ``cwd`` with ``env``."""
    os.setsid()  # a process group of its own: interrupts and kills reach it and its children only
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    os.environ["JPY_PARENT_PID"] = str(os.getppid())  # it watches the forkserver, which ends with the server
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = ["", *extra, *(p for p in sys.path if p and p != os.getcwd())]
    sys.argv = [sys.executable, *argv]
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance(argv=argv)


def spawn(argv: list[str], cwd: str, env: dict[str, str], log_path: str) -> ForkedKernel:
    process = context().Process(target=_kernel_main, args=(argv, cwd, env, log_path), name="session-kernel")
    process.start()
    return ForkedKernel(process)


def forkable(cmd: list[str]) -> list[str] | None:
    """The kernel's arguments when ``cmd`` is this interpreter's ``-m ipykernel_launcher ...``."""
    if len(cmd) > 3 and cmd[0] == sys.executable and cmd[1:3] == ["-m", "ipykernel_launcher"]:
        return cmd[3:]
    return None


class ForkProvisioner(LocalProvisioner):
    """The local provisioner, launching the server's own Python kernels by forking (see above)."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        argv = forkable(cmd)
        log_path = getattr(kwargs.get("stdout"), "name", None)
        if _failed or argv is None or not isinstance(log_path, str):
            return await super().launch_kernel(cmd, **kwargs)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        env = dict(kwargs.get("env") or os.environ)
        self.process = await asyncio.to_thread(spawn, argv, cwd, env, log_path)
        self.pid = self.process.pid
        self.pgid = self.pid  # after its setsid(); until then killpg fails and the signal goes to the pid
        self.cwd = cwd
        return self.connection_info
