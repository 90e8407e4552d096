"""TLS end to end with real certificates made here: a private CA and a server certificate signed by
it, a self-signed one, an expired one and one for another name.  The embedded server serves HTTPS
(``--certfile/--keyfile``); the client verifies by default, REST and websocket (``wss://``) and
the vfolder transfer URLs alike; a refused certificate is one sentence naming the host, why, and
the two fixes; ``BACKEND_CA_BUNDLE``, ``SSL_CERT_FILE`` and the skip switch work; the kernel and the
magics run cells over HTTPS."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend_jupyter.client import APIClient, CertificateNotTrusted, ComputeSession
from backend_jupyter.config import Config, ConfigError
from backend_jupyter.execution import Finished, Output, run_cell
from backend_jupyter.filesystem import BackendAIFileSystem
from tests.conftest import start_server
from tests.pki import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """name → (certificate, key) files; "ca" is the private CA's."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def servers(pki, tmp_path_factory):
    """An HTTPS embedded server per certificate."""
    started = {}
    try:
        for name in ("good", "self-signed", "expired", "wrong-name"):
            cert, key = pki[name]
            started[name] = start_server(tmp_path_factory.mktemp(f"tls-{name}"), "--certfile", str(cert),
                                         "--keyfile", str(key))
        yield started
    finally:
        for srv in started.values():
            srv.stop()


def config(srv, **kw) -> Config:
    return Config(endpoints=(srv.endpoint,), access_key=srv.access_key, secret_key=srv.secret_key, **kw)


async def one_cell(cfg: Config, transport: str) -> str:
    async with APIClient(cfg) as api:
        session = await ComputeSession.get_or_create(api, "python", name=f"tls-{transport}")
        try:
            out, code = [], None
            async for event in run_cell(session, "print('over', 'TLS')", transport=transport):
                if isinstance(event, Output):
                    out.append(event.text)
                elif isinstance(event, Finished):
                    code = event.exit_code
            return f"{''.join(out)}exit {code}"
        finally:
            await session.destroy()


def test_the_server_serves_https_and_the_env_command_says_so(servers):
    assert servers["good"].endpoint.startswith("https://127.0.0.1:")


def test_a_private_ca_is_trusted_for_rest_websocket_and_transfers(servers, pki):
    cfg = config(servers["good"], ca_bundle=str(pki["ca"][0]))
    assert asyncio.run(one_cell(cfg, "poll")) == "over TLS\nexit 0"
    assert asyncio.run(one_cell(cfg, "ws")) == "over TLS\nexit 0"  # wss://
    fs = BackendAIFileSystem(config=cfg, skip_instance_cache=True)
    fs.mkdir("tls-data")
    fs.pipe_file("tls-data/x.bin", b"\x00\x01" * 1000)  # the tus upload URL is https too
    assert fs.cat_file("tls-data/x.bin", start=1, end=3) == b"\x01\x00"


def test_a_ca_bundle_directory_is_trusted_too(servers, pki, tmp_path):
    (tmp_path / "cas").mkdir()
    (tmp_path / "cas" / "README").write_text("the company's CAs")
    (tmp_path / "cas" / "private-ca.pem").write_bytes(pki["ca"][0].read_bytes())
    cfg = Config.from_env({**servers["good"].env(), "BACKEND_CA_BUNDLE": str(tmp_path / "cas")})
    assert asyncio.run(one_cell(cfg, "poll")) == "over TLS\nexit 0"


def test_ssl_cert_file_is_honoured(servers, pki, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"][0]))
    assert asyncio.run(one_cell(config(servers["good"]), "poll")) == "over TLS\nexit 0"


@pytest.mark.parametrize(("name", "trust_ca", "why"), [
    ("good", False, "its certificate is signed by a CA this machine does not trust"),  # the CA not given
    ("self-signed", False, "its certificate is self-signed"),
    ("expired", True, "its certificate has expired"),  # the CA trusted: what is left is its dates
    ("wrong-name", True, "its certificate is for another address"),  # ... or its name (we dial 127.0.0.1)
])
def test_verification_is_on_by_default_and_a_refusal_says_why_and_how(servers, pki, name, trust_ca, why):
    srv = servers[name]
    host = srv.endpoint.removeprefix("https://")
    cfg = config(srv, ca_bundle=str(pki["ca"][0]) if trust_ca else None)
    with pytest.raises(CertificateNotTrusted) as caught:
        asyncio.run(one_cell(cfg, "poll"))
    assert str(caught.value) == (
        f"The TLS certificate of {host} was refused: {why} — trust its CA with BACKEND_CA_BUNDLE=/path/to/ca.pem "
        "(SSL_CERT_FILE works too), or, knowingly, set BACKEND_SKIP_SSLCERT_VALIDATION=true")


def test_the_skip_switch_skips(servers):
    assert asyncio.run(one_cell(config(servers["self-signed"], skip_sslcert_validation=True), "ws")) == \
        "over TLS\nexit 0"


def test_a_bad_ca_bundle_is_one_line_naming_the_variable(tmp_path):
    with pytest.raises(ConfigError, match=r"^BACKEND_CA_BUNDLE: '.*nope.pem' does not exist"):
        Config.from_env({"BACKEND_CA_BUNDLE": str(tmp_path / "nope.pem")})
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^BACKEND_CA_BUNDLE: '.*junk.pem' holds no PEM certificate"):
        Config.from_env({"BACKEND_CA_BUNDLE": str(tmp_path / "junk.pem")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"^BACKEND_CA_BUNDLE: '.*empty' holds no PEM certificate"):
        Config.from_env({"BACKEND_CA_BUNDLE": str(tmp_path / "empty")})


def test_the_kernel_and_the_magics_over_https(servers, pki, tmp_path):
    from tests.kernel_driver import KernelDriver

    env = {**servers["good"].env(), "BACKEND_CA_BUNDLE": str(pki["ca"][0])}
    kernel = KernelDriver(env, cwd=tmp_path)
    try:
        assert kernel.execute("print('kernel', 'over TLS')", timeout=120).stream() == "kernel over TLS\n"
    finally:
        kernel.shutdown()
    ipy = KernelDriver(env, kernel_name="python3", cwd=tmp_path)
    try:
        assert ipy.execute("%load_ext backend_jupyter").status == "ok"
        assert ipy.execute("%%backend_run\nprint('magics', 'over TLS')", timeout=120).stream() == "magics over TLS\n"
        [trust] = [line for line in ipy.execute("%backend_config").stream().splitlines()
                   if line.startswith("TLS certificates trusted")]
        assert trust.split(None, 3)[3].startswith("the system's CAs, ")  # (and SSL_CERT_FILE/DIR if set)
        assert trust.endswith(f", BACKEND_CA_BUNDLE={pki['ca'][0]}")
    finally:
        ipy.shutdown()
    untrusted = KernelDriver(servers["good"].env(), cwd=tmp_path)
    try:
        failed = untrusted.execute("print(1)", timeout=120)
        assert failed.status == "error"
        assert "was refused: its certificate is signed by a CA this machine does not trust" in \
            failed.reply["content"]["evalue"]
    finally:
        untrusted.shutdown()


SDK_SCRIPT = """
from ai.backend.client.session import Session
with Session() as sess:
    cs = sess.ComputeSession.get_or_create("python", name="sdk-over-tls")
    result, run_id, out = cs.execute(None, "print('sdk over TLS')", mode="query"), None, []
    for _ in range(200):
        out += [d for k, d in result["console"] if k == "stdout"]
        if result["status"] == "finished":
            break
        result = cs.execute(result["runId"], "", mode="continue")
    cs.destroy()
    print("".join(out), end="")
"""


@pytest.mark.sdk
def test_the_official_sdk_over_https_with_the_ca_trusted(servers, pki):
    """The official backend.ai-client (26.9.6, its own venv) verifies by default; given the CA the
    usual way (SSL_CERT_FILE) it runs a cell on the HTTPS embedded server."""
    from tests.sdk.venvs import GENERATIONS, venv_or_skip

    python = venv_or_skip(GENERATIONS["26.9.6"])
    env = {**servers["good"].env(), "SSL_CERT_FILE": str(pki["ca"][0])}
    done = subprocess.run([str(python), "-c", SDK_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "sdk over TLS\n"
    env.pop("SSL_CERT_FILE")
    refused = subprocess.run([str(python), "-c", SDK_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr


def test_doctor_says_which_trust_applies_and_why_a_certificate_was_refused(servers, pki):
    env = servers["good"].env()
    refused = subprocess.run([sys.executable, "-m", "backend_jupyter", "doctor"], env=env, capture_output=True,
                             text=True, timeout=60)
    host = servers["good"].endpoint.removeprefix("https://")
    assert refused.returncode == 1
    assert (f"[FAIL] server: The TLS certificate of {host} was refused: its certificate is signed by a CA this "
            "machine does not trust\n       fix: trust its CA with BACKEND_CA_BUNDLE=") in refused.stdout
    trusted = subprocess.run([sys.executable, "-m", "backend_jupyter", "doctor"], capture_output=True, text=True,
                             env={**env, "BACKEND_CA_BUNDLE": str(pki["ca"][0])}, timeout=60)
    assert "[ ok ] TLS: certificates trusted: the system's CAs" in trusted.stdout
    assert f"[ ok ] server at {servers['good'].endpoint} answers" in trusted.stdout


def test_plain_http_on_a_network_address_is_warned_about(tmp_path):
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "backend_jupyter", "server", "--host", "0.0.0.0", "--port", "0",
                                 "--data-dir", str(tmp_path / "data")], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = log.read_text()
        assert "request signatures, all cell code and its output cross the network unencrypted; " \
               "serve HTTPS with --certfile CERT.pem --keyfile KEY.pem" in text
    finally:
        proc.terminate()
        proc.wait(30)
