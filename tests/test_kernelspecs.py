"""Kernelspecs: shipped by pip, generated from data, managed by `backend-jupyter install`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

from backend_jupyter.kernelspecs import language_info, spec

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_spec_matches_the_template():
    shipped = json.loads((ROOT / "share/jupyter/kernels/backend-python/kernel.json").read_text())
    assert shipped == spec("python")
    assert shipped["display_name"] == "Backend.AI Python" and shipped["interrupt_mode"] == "message"
    assert (ROOT / "share/jupyter/kernels/backend-python/logo-64x64.png").read_bytes()[:4] == b"\x89PNG"


def test_pip_install_made_it_visible():
    assert "backend-python" in KernelSpecManager().find_kernel_specs()


def test_language_info_is_data_keyed_by_image():
    assert language_info("python")["name"] == "python"
    assert language_info("cr.backend.ai/stable/python-pytorch:2.1-py311")["pygments_lexer"] == "ipython3"
    assert language_info("r-base:4.3")["name"] == "R"
    assert language_info("julia:1.9")["file_extension"] == ".jl"
    assert language_info("something-else:1")["mimetype"] == "text/plain"


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "backend_jupyter", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_install_list_remove(tmp_path):
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path / "share/jupyter")}
    out = cli("install", "--image", "cr.backend.ai/stable/r-base:4.3", "--name", "r", "--env", "LANG=C.UTF-8",
              "--prefix", str(tmp_path), env=env)
    assert out.returncode == 0, out.stderr
    spec_file = tmp_path / "share/jupyter/kernels/backend-r/kernel.json"
    data = json.loads(spec_file.read_text())
    assert data["language"] == "R" and "--BackendKernel.image=cr.backend.ai/stable/r-base:4.3" in data["argv"]
    assert "--BackendKernel.environ=LANG=C.UTF-8" in data["argv"]
    listing = cli("install", "--list", env=env)
    assert "backend-r" in listing.stdout and "image=cr.backend.ai/stable/r-base:4.3" in listing.stdout
    assert cli("install", "--remove", "r", env=env).returncode == 0
    assert not spec_file.exists()
    missing = cli("install", "--remove", "nope", env=env)
    assert missing.returncode == 1 and "no Backend.AI kernelspec named 'backend-nope'" in missing.stderr
    bad = cli("install", "--env", "novalue", "--prefix", str(tmp_path), env=env)
    assert bad.returncode == 2
