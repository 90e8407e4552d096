"""A wrapper kernel that does nothing: the floor of any wrapper built on ipykernel's ``Kernel``.

It answers every execute like a kernel that evaluated ``1`` (an ``execute_result``, then the reply)
without running anything, so its round trip is what ipykernel's own messaging costs a wrapper
(busy, execute_input, the result, idle, the reply).  The benchmark shows it next to the local
ipykernel and the "Backend.AI Python" wrapper as a diagnostic row.

    python benchmarks/noop_kernel.py -f CONNECTION_FILE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ipykernel.kernelbase import Kernel

KERNEL_NAME = "bj-bench-noop"


class NoopKernel(Kernel):
    implementation = "noop"
    implementation_version = "0"
    banner = "does nothing"
    language_info = {"name": "python", "mimetype": "text/x-python", "file_extension": ".py"}

    async def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False,
                         *, cell_meta=None, cell_id=None):
        if not silent:
            self.send_response(self.iopub_socket, "execute_result", {
                "data": {"text/plain": "1"}, "metadata": {}, "execution_count": self.execution_count})
        return {"status": "ok", "execution_count": self.execution_count, "payload": [], "user_expressions": {}}


def install(jupyter_dir: Path) -> str:
    """Write this kernel's kernelspec under ``jupyter_dir/kernels`` (put ``jupyter_dir`` on
    ``JUPYTER_PATH``); returns its name."""
    spec = Path(jupyter_dir) / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(Path(__file__).resolve()), "-f", "{connection_file}"],
        "display_name": "no-op wrapper (benchmark)", "language": "python",
    }))
    return KERNEL_NAME


if __name__ == "__main__":
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance(kernel_class=NoopKernel)
