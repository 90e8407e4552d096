"""``backend-jupyter lab`` and ``backend-jupyter doctor``."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path

from .client import APIClient, AuthenticationFailed, BackendError
from .client.api import MIN_API_VERSION
from .config import Config, ConfigError, trust_description
from .embedded import EmbeddedServerError, resolve_config
from .kernelspecs import PREFIX, install, installed
from .server.main import default_data_dir, running_endpoint, running_state
from .serverctl import fetch_status

KERNELSPEC = PREFIX + "python"


def backend_env(config: Config) -> dict[str, str]:
    """This process's environment pointed at ``config``'s server (for kernels started from it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    env.update(BACKEND_ENDPOINT=",".join(config.endpoints), BACKEND_ACCESS_KEY=config.access_key,
               BACKEND_SECRET_KEY=config.secret_key)
    for name in ("BACKEND_VFOLDER_MOUNTS", "BACKEND_API_VERSION", "BACKEND_SKIP_SSLCERT_VALIDATION",
                 "BACKEND_CONNECTION_TIMEOUT", "BACKEND_READ_TIMEOUT"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def run_lab(lab_args: list[str]) -> int:
    if importlib.util.find_spec("jupyterlab") is None:
        print("error: JupyterLab is not installed; install it with: pip install 'backend_jupyter[lab]'",
              file=sys.stderr)
        return 1
    if KERNELSPEC not in installed():
        print(f"Installing the kernelspec: {install('python', user=True)}")
    try:
        config, server = resolve_config()
    except (ConfigError, EmbeddedServerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    where = f"the embedded server at {server.endpoint}" if server else f"the cluster at {config.endpoint}"
    print(f'Starting JupyterLab; "Backend.AI Python" notebooks run on {where}.', flush=True)
    env = backend_env(config)
    if importlib.util.find_spec("jupyterfs") is not None:
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
            p for p in (str(drive_config()), os.environ.get("JUPYTER_CONFIG_PATH", "")) if p)
        print(f'Your vfolders are the "{DRIVE_NAME}" drive of the file browser (jupyter-fs).', flush=True)
    argv = [sys.executable, "-m", "jupyterlab", *lab_args]
    os.execve(sys.executable, argv, env)
    return 0  # not reached


DRIVE_NAME = "Backend.AI vfolders"


def drive_config() -> Path:
    """A Jupyter config dir that shows the vfolders as a drive of the file browser: jupyter-fs's
    contents manager and server extension, with ``backendai://`` (filesystem.py) as its resource.
    Put first on ``JUPYTER_CONFIG_PATH``, it is read before the user's own configuration."""
    from jupyter_core.paths import jupyter_data_dir

    directory = Path(jupyter_data_dir()) / "backend_jupyter" / "lab-config"
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "ServerApp": {"jpserver_extensions": {"jupyterfs.extension": True},
                      "contents_manager_class": "jupyterfs.metamanager.MetaManager"},
        "JupyterFs": {"resources": [{"name": DRIVE_NAME, "url": "backendai://", "type": "fsspec", "auth": "none"}]},
    }
    (directory / "jupyter_server_config.json").write_text(json.dumps(config, indent=2))
    return directory


def doctor() -> int:
    """One line per check, with the fix for each failure; exit status 1 if any check failed."""
    failures = 0

    def report(ok: bool | None, what: str, fix: str = "") -> None:
        nonlocal failures
        mark = {True: " ok ", False: "FAIL", None: "note"}[ok]
        failures += ok is False
        print(f"[{mark}] {what}" + (f"\n       fix: {fix}" if fix and ok is not True else ""))

    try:
        config = Config.from_env()
        report(True, "configuration is valid")
    except ConfigError as e:
        report(False, f"configuration: {e}", "correct the variable named above")
        return 1
    _report_embedded(report, in_use=config.uses_embedded_server)
    if not config.uses_embedded_server:
        report(True, f"cluster endpoint(s): {', '.join(config.endpoints)}")
        if not (config.access_key and config.secret_key):
            report(False, "BACKEND_ACCESS_KEY / BACKEND_SECRET_KEY are not both set",
                   "export the keypair of your Backend.AI account")
    try:
        resolved, _server = resolve_config(config) if config.uses_embedded_server and running_endpoint(
            default_data_dir()) else (config, None)
    except (EmbeddedServerError, ConfigError) as e:
        report(False, f"embedded server: {e}", "see the server log named above")
        resolved = None
    if resolved is not None and resolved.endpoints:
        asyncio.run(_check_server(resolved, report))
    specs = installed()
    if KERNELSPEC in specs:
        report(True, f'kernelspec "{KERNELSPEC}" installed in {specs[KERNELSPEC]}')
    else:
        report(False, f'kernelspec "{KERNELSPEC}" is not installed', "backend-jupyter install --user")
    if importlib.util.find_spec("jupyterlab") is None:
        report(None, "JupyterLab is not installed (needed for `backend-jupyter lab`)",
               "pip install 'backend_jupyter[lab]'")
    else:
        report(True, "JupyterLab is installed")
    print("All checks passed." if not failures else f"{failures} check(s) failed.")
    return 1 if failures else 0


def _report_embedded(report, *, in_use: bool) -> None:
    """Whether the embedded server of the default data dir runs: where, its pid, its sessions (a
    note only, when a cluster is configured instead)."""
    data_dir = default_data_dir()
    state = running_state(data_dir)
    if state is None:
        if in_use:
            report(None, "no BACKEND_ENDPOINT: the embedded server is used, and it is not running now",
                   "it starts on demand with the first cell; `backend-jupyter server` runs it in the foreground")
        return
    try:
        status = fetch_status(state, data_dir)
    except BackendError as e:
        report(False if in_use else None,
               f"the embedded server (pid {state['pid']}) at {state['endpoint']} does not answer: {e.message}",
               "`backend-jupyter server --stop --force`; it starts again on demand")
        return
    running = f"embedded server running at {status.endpoint} (pid {status.pid}, {status.count})"
    if in_use:
        report(True, running)
    else:
        report(None, f"{running}; not used while BACKEND_ENDPOINT is set", "`backend-jupyter server --stop` stops it")


async def _check_server(config: Config, report) -> None:
    """Reachability, API version and keys (``report`` counts the failures)."""
    if config.uses_tls:
        report(True, f"TLS: certificates trusted: {trust_description(config)}")
    client = APIClient(config)
    try:
        await client.open()
    except BackendError as e:
        report(False, f"server: {e.message}", e.hint or "check BACKEND_ENDPOINT")
        return
    try:
        version = client.api_version
        manager = client.server_info.get("manager", "?")
        report(True, f"server at {client.endpoint} answers: API {version} (manager {manager}); "
                     f"this client needs {MIN_API_VERSION} or newer")
        try:
            await client.request("GET", "/auth", params={"echo": "doctor"})
            report(True, f"keypair {config.access_key} is accepted")
        except AuthenticationFailed as e:
            report(False, f"keypair rejected: {e.message}", e.hint)
        except BackendError as e:
            report(False, f"signed request failed: {e.message}", e.hint or "")
    finally:
        await client.close()
