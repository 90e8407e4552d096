"""``backend-jupyter demo``: run the getting-started notebook headless through the kernel.

It starts (or reuses) the embedded server unless ``BACKEND_*`` point at a cluster, executes
``01-getting-started.ipynb`` with the "Backend.AI Python" kernel, writes the executed notebook and
an HTML rendering, and prints one line per cell.  Exit status 1 if any cell failed unexpectedly
(cells tagged ``raises-exception`` are expected to fail).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from importlib import resources
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from .config import ConfigError
from .embedded import EmbeddedServerError, resolve_config
from .kernelspecs import PREFIX, install, installed

DEMO_NOTEBOOK = "01-getting-started.ipynb"


def notebook_path(name: str = DEMO_NOTEBOOK) -> Path:
    """The shipped example notebook (inside the package), else the repository's copy."""
    shipped = resources.files("backend_jupyter") / "notebooks" / name
    if shipped.is_file():
        return Path(str(shipped))
    return Path(__file__).resolve().parent.parent / "notebooks" / name


def _seconds(cell) -> float | None:
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def summarize(nb: nbformat.NotebookNode) -> tuple[list[str], int]:
    """One line per code cell (index, status, output kinds, seconds) and the count of failures."""
    lines, failures = [], 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        kinds = []
        status = "ok" if cell.get("execution_count") is not None else "not run"
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                kinds.append(out.name)
            elif out.output_type in ("display_data", "execute_result"):
                kinds.append(next((m for m in out.data if m != "text/plain"), "text/plain"))
            elif out.output_type == "error":
                expected = "raises-exception" in cell.metadata.get("tags", [])
                status = f"error ({out.ename}{', expected' if expected else ''})"
                failures += not expected
        seconds = _seconds(cell)
        first_line = cell.source.strip().splitlines()[0][:40] if cell.source.strip() else ""
        shown = f"{seconds:6.2f}s" if seconds is not None else "     - "
        lines.append(f"  [{index:2}] {status:36} {shown}  {', '.join(dict.fromkeys(kinds)) or '-':28} {first_line}")
    return lines, failures


def run_demo(output_dir: Path | None = None, notebook: Path | None = None) -> int:
    notebook = notebook or notebook_path()
    output_dir = Path(output_dir or Path.cwd() / "backend-jupyter-demo")
    try:
        config, server = resolve_config()
    except (ConfigError, EmbeddedServerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if server is not None:
        print(f"Embedded Backend.AI server: {server.endpoint} (data in {server.data_dir})")
    else:
        print(f"Backend.AI cluster: {config.endpoint}")
    if PREFIX + "python" not in installed():
        print(f"Installing the kernelspec: {install('python', user=True)}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    env.update(BACKEND_ENDPOINT=",".join(config.endpoints), BACKEND_ACCESS_KEY=config.access_key,
               BACKEND_SECRET_KEY=config.secret_key)
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=600, startup_timeout=120, kernel_name=PREFIX + "python",
                            resources={"metadata": {"path": str(output_dir)}})
    client.km = client.create_kernel_manager()
    output_dir.mkdir(parents=True, exist_ok=True)
    print(f"Running {notebook.name} on the Backend.AI Python kernel ...")
    try:
        return _execute(client, nb, notebook, output_dir, env)
    finally:
        if server is not None:
            server.stop()  # only a server this command started itself


def _execute(client: NotebookClient, nb, notebook: Path, output_dir: Path, env: dict) -> int:
    started = time.monotonic()
    crashed = None
    try:
        client.execute(env=env)
    except CellExecutionError as e:
        crashed = e
    except Exception as e:  # kernel failed to start, timeout, ...
        print(f"error: the notebook could not run: {e}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    executed = output_dir / notebook.name.replace(".ipynb", ".executed.ipynb")
    nbformat.write(nb, executed)
    html = executed.with_suffix(".html")
    try:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        html.write_text(body, encoding="utf-8")
    except ImportError:
        html = None
    lines, failures = summarize(nb)
    print(f"\n  cell {'status':36} {'time':>7}  {'outputs':28} source")
    print("\n".join(lines))
    print(f"\nRan {sum(c.cell_type == 'code' for c in nb.cells)} cells in {elapsed:.1f} s.")
    print(f"Executed notebook: {executed}")
    if html is not None:
        print(f"HTML rendering:    {html}")
    if crashed is not None or failures:
        print(f"{failures or 1} cell(s) failed unexpectedly.", file=sys.stderr)
        return 1
    print("All cells ran as expected.")
    return 0
