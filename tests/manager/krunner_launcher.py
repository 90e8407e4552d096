"""Starts Backend.AI's kernel runner (``python -m ai.backend.kernel``) with its sockets on loopback.

Run by the agent launcher, with the manager venv's Python, inside a private mount namespace whose
``/home`` is a tmpfs (``/home/work`` and ``/home/config`` are bind mounts of this kernel's
directories).  The runner binds its ZeroMQ ports as ``tcp://*:<port>``; here every such bind is
forced onto 127.0.0.1, so nothing of a test session listens beyond loopback.

Usage: python krunner_launcher.py python <runtime-python>
"""

import os
import runpy
import sys
from pathlib import Path

import zmq

_bind = zmq.Socket.bind


def _loopback_bind(self, addr, *args, **kwargs):
    if isinstance(addr, bytes):
        addr = addr.decode()
    for wildcard in ("tcp://*:", "tcp://0.0.0.0:", "tcp://[::]:"):
        if addr.startswith(wildcard):
            addr = "tcp://127.0.0.1:" + addr[len(wildcard):]
            break
    return _bind(self, addr, *args, **kwargs)


zmq.Socket.bind = _loopback_bind
# ai.backend.kernel re-executes itself (to rename its process) unless told it already has; that would
# lose the patch above.  Its re-executed form reads its arguments from /tmp/<pid>.krunner-args.
os.environ["BACKEND_REEXECED"] = "1"
Path(f"/tmp/{os.getpid()}.krunner-args").write_text("\0".join(sys.argv[1:]))
sys.argv = ["ai.backend.kernel", *sys.argv[1:]]
runpy.run_module("ai.backend.kernel", run_name="__main__", alter_sys=True)
