"""Builds (and caches) a separate venv per official backend.ai-client SDK generation.

The SDK is never installed into the project's environment (23.9.10 would downgrade aiohttp,
pyzmq and psutil).  Each generation is pinned to the exact package set it was tested with
(``constraints-<version>.txt``, a ``pip freeze`` of a working venv).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "backend_jupyter-tests"


@dataclass(frozen=True)
class Generation:
    version: str
    pythons: tuple[str, ...]  # interpreter versions to try, in order
    api: str  # what it speaks
    upgrade_pip: str | None = None

    @property
    def constraints(self) -> Path:
        return HERE / f"constraints-{self.version}.txt"


GENERATIONS = {
    "26.9.6": Generation("26.9.6", ("3.13",), "v9.20250722 (negotiates down), /session"),
    "23.9.10": Generation("23.9.10", ("3.11",), "v7.20230615, /session"),
    "19.9.10": Generation("19.9.10", ("3.7", "3.8"), "v4.20190615, /kernel", upgrade_pip="pip<24"),
}


def find_python(version: str) -> str | None:
    """A python<version> interpreter: the running one, pyenv's, or one on PATH."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
        for candidate in sorted(Path(root, "versions").glob(f"{version}.*"), reverse=True):
            exe = candidate / "bin" / "python"
            if exe.exists():
                return str(exe)
    except (OSError, subprocess.CalledProcessError):
        pass
    return shutil.which(f"python{version}")


def ensure_venv(gen: Generation) -> Path:
    """The venv's python for ``gen``, building it on first use; raises LookupError if no
    suitable interpreter exists on this machine."""
    python = next((p for p in map(find_python, gen.pythons) if p), None)
    if python is None:
        raise LookupError(f"backend.ai-client {gen.version} needs Python {' or '.join(gen.pythons)}")
    digest = hashlib.sha256(gen.constraints.read_bytes() + python.encode()).hexdigest()[:12]
    venv = CACHE / f"sdk-{gen.version}-{digest}"
    exe = venv / "bin" / "python"
    marker = venv / ".complete"
    if marker.exists():
        return exe
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(exe), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if gen.upgrade_pip:
        subprocess.run([*pip, gen.upgrade_pip], check=True)
    subprocess.run([*pip, "-c", str(gen.constraints), f"backend.ai-client=={gen.version}"], check=True)
    marker.write_text(gen.version)
    return exe


def venv_or_skip(gen: Generation) -> Path:
    """:func:`ensure_venv` for a test: a generation this machine has no interpreter for is skipped,
    or, with ``BJ_SDK_TESTS=1`` (as in CI), fails: CI cannot pass without every generation."""
    import os

    import pytest

    try:
        return ensure_venv(gen)
    except LookupError as e:
        if os.environ.get("BJ_SDK_TESTS") == "1":
            pytest.fail(f"{e} (BJ_SDK_TESTS=1: every SDK generation must run)")
        pytest.skip(str(e))
