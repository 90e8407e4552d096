"""Group 12: what HTTPS costs.  The trivial cell ``1`` on wrapper kernels of the same kind, one
set pointed at the suite's plain-HTTP embedded server and one at a second embedded server serving
HTTPS (``--certfile/--keyfile``, a certificate from a private CA made here, trusted through
``BACKEND_CA_BUNDLE``), over polling and over the websocket (``wss://``), interleaved in blocks so
that load drift hits every kernel alike."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

from . import latency
from .common import (
    READY_TIMEOUT,
    WRAPPER_POLL,
    WRAPPER_WS,
    KernelDriver,
    Row,
    Server,
    p50_p95,
    parallel,
    ratio,
)

KINDS = (WRAPPER_POLL, WRAPPER_WS)


def tls_group(server: Server, workdir: Path, n: int) -> dict:
    """``{"http": {kind: summary}, "https": {kind: summary}, "endpoints": {scheme: url}}`` of ``n``
    trivial cells each."""
    # certificates made at run time (cryptography, a test extra)
    from tests.pki import make_pki

    pki = make_pki(workdir / "pki")
    with Server(workdir / "https", tls=pki["good"]) as https, contextlib.ExitStack() as stack:
        envs = {"http": server.env(), "https": dict(https.env(), BACKEND_CA_BUNDLE=str(pki["ca"][0]))}
        drivers = {}
        for scheme, env in envs.items():
            for kind in KINDS:
                key = f"{scheme}_{kind.key}"
                driver = KernelDriver(replace(kind, key=key), env, workdir / f"{key}.log").start()
                stack.callback(driver.shutdown)
                drivers[key] = driver
        parallel(lambda d: d.wait_ready(READY_TIMEOUT), drivers.values(), READY_TIMEOUT + 10)
        times = latency.trivial(drivers, n)
    result = {scheme: {kind.key: times[f"{scheme}_{kind.key}"] for kind in KINDS} for scheme in envs}
    return {**result, "endpoints": {scheme: env["BACKEND_ENDPOINT"] for scheme, env in envs.items()}}


def rows(results: dict) -> list[Row]:
    out = []
    for kind in KINDS:
        plain, secure = results["http"][kind.key], results["https"][kind.key]
        out.append(Row("12", f"`1` round trip over HTTPS (private CA) — {kind.label}", secure["n"],
                       f"{p50_p95(secure)}; plain HTTP {p50_p95(plain)}",
                       f"{ratio(secure['p50_ms'], plain['p50_ms'])} of HTTP"))
    return out
