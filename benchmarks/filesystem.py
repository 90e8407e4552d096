"""Group 11: ``backendai://`` (filesystem.py) on the embedded server.

A file of random bytes (200 MB; 20 with ``--quick``) written into a vfolder with ``put_file``
(tus), read back with ``get_file`` (one streamed GET) and with ``open(...).read()`` in 4 MiB
blocks (HTTP ranges), each beside a plain local file copy of the same file (``shutil.copyfile``,
the page cache warm), with the peak RSS of this process (the client) and of the server.  Target:
≥ 50% of the local copy's rate.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import psutil

from backend_jupyter.filesystem import BackendAIFileSystem

from .common import PeakSampler, Row, Server

TARGET = 0.5
BLOCK = 4 * 1024 * 1024


def filesystem_group(server: Server, workdir: Path, megabytes: int) -> dict:
    src = Path(workdir) / "fs-src.bin"
    with open(src, "wb") as f:
        for _ in range(megabytes):
            f.write(os.urandom(1_000_000))
    size = src.stat().st_size
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    fs = BackendAIFileSystem(config=server.config, skip_instance_cache=True)
    if not fs.exists("bench"):
        fs.mkdir("bench")
    probes = {"client": lambda: [psutil.Process()], "server": lambda: [server.process]}

    def timed(fn) -> dict:
        with PeakSampler(probes) as peak:
            t0 = time.perf_counter()
            fn()
            seconds = time.perf_counter() - t0
        return {"seconds": round(seconds, 3), "mb_s": round(size / seconds / 1e6, 1), "memory": peak.result()}

    local = timed(lambda: shutil.copyfile(src, Path(workdir) / "fs-copy.bin"))
    write = timed(lambda: fs.put_file(str(src), "bench/data.bin"))
    get = timed(lambda: fs.get_file("bench/data.bin", str(Path(workdir) / "fs-back.bin")))
    assert hashlib.sha256((Path(workdir) / "fs-back.bin").read_bytes()).hexdigest() == digest

    def read_blocks():
        with fs.open("bench/data.bin", "rb", block_size=BLOCK) as f:
            while f.read(BLOCK):
                pass

    read = timed(read_blocks)
    for name in ("fs-src.bin", "fs-copy.bin", "fs-back.bin"):
        (Path(workdir) / name).unlink(missing_ok=True)
    fs.rm("bench/data.bin")
    return {"bytes": size, "local_copy": local, "write": write, "get": get, "read": read}


def rows(results: dict) -> list[Row]:
    local = results["local_copy"]["mb_s"]
    mb = results["bytes"] / 1e6
    out = []
    for key, what in (("write", "write (put_file, tus)"), ("get", "read (get_file, one GET)"),
                      ("read", "read (open().read(), 4 MiB ranges)")):
        r = results[key]
        memory = r["memory"]
        out.append(Row("11", f"backendai:// {what}, {mb:.0f} MB", 1,
                       f"{r['mb_s']:.0f} MB/s; peak RSS client +{memory['client']['growth_mb']:.0f} MB, "
                       f"server +{memory['server']['growth_mb']:.0f} MB",
                       f"{r['mb_s'] / local:.0%} of a local copy ({local:.0f} MB/s)", f"≥ {TARGET:.0%}",
                       r["mb_s"] >= TARGET * local))
    return out
