"""Batch runs: the ``clean``, ``build`` and ``exec`` steps of ``mode: "batch"``, as shell commands.

Each step runs with ``bash -c`` in the session's work directory and environment (with the server's
Python first on ``PATH``); its stdout and stderr become the run's output.  After ``clean``, and after
``build`` when an ``exec`` follows, the run's output carries a status marker (``clean-finished``,
``build-finished``) so the client sees where one step ends.  A failed build skips ``exec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from ..protocol import BUILD_FINISHED, CLEAN_FINISHED
from .images import OWN_PYTHON
from .runs import Run

READ_SIZE = 64 * 1024
KILL_GRACE = 2.0  # seconds between SIGINT and SIGKILL when a step is interrupted


def default_build(kernel_name: str) -> str | None:
    """``build: "*"``: the image's default build step."""
    if kernel_name == OWN_PYTHON:
        return (
            "if [ -f requirements.txt ]; then python -m pip install -q -r requirements.txt; fi && "
            f"{sys.executable} -m compileall -q ."
        )
    return None


class BatchJob:
    """One batch run's steps; awaiting the job runs them and finishes the run."""

    def __init__(self, run: Run, options: dict, *, workdir: Path,
                 environ: Callable[[], dict[str, str]], kernel_name: str):
        self.run = run
        self.options = options
        self.workdir = workdir
        self.environ = environ
        self.kernel_name = kernel_name

    async def __call__(self) -> None:
        try:
            self.run.finish(await self._steps())
        except asyncio.CancelledError:
            self.run.emit(["stderr", "Interrupted.\n"])
            self.run.finish(130)
            raise
        except Exception as e:  # a command that cannot even start
            self.run.emit(["stderr", f"Batch execution failed: {e}\n"])
            self.run.finish(1)

    async def _steps(self) -> int:
        """Run the steps; returns the exit code the run ends with."""
        exec_cmd = self.options.get("exec")
        last = 0
        for command, status in ((self.options.get("clean"), CLEAN_FINISHED),
                                (self.options.get("build"), BUILD_FINISHED)):
            if command == "*":
                command = default_build(self.kernel_name) if status == BUILD_FINISHED else None
            if not command:
                continue
            last = await self._shell(command)
            if status == BUILD_FINISHED and last != 0 and exec_cmd:
                self.run.mark(status, last)
                return 127
            if exec_cmd or status == CLEAN_FINISHED:
                self.run.mark(status, last)
        if exec_cmd:
            last = await self._shell(exec_cmd)
        return last

    async def _shell(self, command: str) -> int:
        """Run ``command``, relaying its output; its exit code.  Cancelled, it is stopped first."""
        env = self.environ()
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", command, cwd=str(self.workdir), env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            await asyncio.gather(self._relay(proc.stdout, "stdout"), self._relay(proc.stderr, "stderr"))
            return await proc.wait()
        except asyncio.CancelledError:
            await _stop(proc)
            raise

    async def _relay(self, stream: asyncio.StreamReader, name: str) -> None:
        while chunk := await stream.read(READ_SIZE):
            self.run.emit([name, chunk.decode("utf-8", "replace")])


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Interrupt the command's process group, then kill it if it does not stop in time."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
