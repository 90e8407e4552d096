"""Kernelspecs: shipped by pip, generated from data, managed by `backend-jupyter install`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from backend_jupyter.kernelspecs import language_info, spec
from tests.kernel_driver import KernelDriver

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


PROFILE = ["--display-name", "Backend.AI PyTorch · 1 GPU", "--image", "cr.backend.ai/stable/python-pytorch:2.1",
           "--resource", "cpu=2", "-r", "mem=4g", "-r", "cuda.shares=1", "--mount", "data",
           "-m", "models:/home/work/models", "--env", "OMP_NUM_THREADS=4", "-e", "HF_TOKEN=not-shown-in-list"]


def test_profile_kernelspec_json_list_and_remove(tmp_path):
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path / "share/jupyter")}
    out = cli("install", *PROFILE, "--prefix", str(tmp_path), env=env)
    assert out.returncode == 0, out.stderr
    spec_file = tmp_path / "share/jupyter/kernels/backend-pytorch-1-gpu/kernel.json"  # named after the display name
    data = json.loads(spec_file.read_text())
    assert data["display_name"] == "Backend.AI PyTorch · 1 GPU" and data["language"] == "python"
    assert data["argv"][5:] == [
        "--BackendKernel.image=cr.backend.ai/stable/python-pytorch:2.1",
        "--BackendKernel.environ=OMP_NUM_THREADS=4", "--BackendKernel.environ=HF_TOKEN=not-shown-in-list",
        "--BackendKernel.resources=cpu=2", "--BackendKernel.resources=mem=4g",
        "--BackendKernel.resources=cuda.shares=1",
        "--BackendKernel.vfolder_mounts=data,models:/home/work/models",
    ]
    assert data["metadata"]["backend_jupyter"] == {
        "image": "cr.backend.ai/stable/python-pytorch:2.1", "resources": {"cpu": "2", "mem": "4g", "cuda.shares": "1"},
        "mounts": ["data", "models:/home/work/models"], "environ": ["HF_TOKEN", "OMP_NUM_THREADS"],
    }
    line = next(x for x in cli("install", "--list", env=env).stdout.splitlines() if "backend-pytorch-1-gpu" in x)
    assert "'Backend.AI PyTorch · 1 GPU'" in line and "resources=cpu=2,mem=4g,cuda.shares=1" in line
    assert "mounts=data,models:/home/work/models" in line and "env=HF_TOKEN,OMP_NUM_THREADS" in line
    assert "not-shown-in-list" not in line  # environment values may be secrets
    named = cli("install", "--name", "small", "-r", "cpu=1", "--prefix", str(tmp_path), env=env)
    small = json.loads((tmp_path / "share/jupyter/kernels/backend-small/kernel.json").read_text())
    assert named.returncode == 0 and "--BackendKernel.image=python" in small["argv"]
    assert small["display_name"] == "Backend.AI python"
    assert cli("install", "--remove", "pytorch-1-gpu", env=env).returncode == 0
    assert not spec_file.exists()


@pytest.mark.parametrize("option, error", [
    (["-r", "GPU!=1"], "error: --resource: 'GPU!' is not a resource slot name (e.g. cpu, mem, cuda.shares, cuda.device)"),
    (["-r", "mem=lots"], "error: --resource: mem='lots' is not a number or a size (e.g. cpu=2, mem=4g, cuda.shares=0.5)"),
    (["-r", "cpu"], "error: --resource 'cpu': use KEY=VALUE"),
    (["-m", "bad name"], "error: --mount: 'bad name' is not a valid vfolder name "
                         "(use letters, digits, '_', '.', '-'; e.g. 'data' or 'data:/home/work/input')"),
    (["-m", "data:x/../y"], "error: --mount: alias 'x/../y' must not contain '..' or NUL"),
    (["--name", "a b"], "error: --name: 'a b' is not a kernelspec name (letters, digits, '.', '_', '-')"),
])
def test_profile_refuses_bad_slots_and_folders(tmp_path, option, error):
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path / "share/jupyter")}
    out = cli("install", "--display-name", "Backend.AI Bad", *option, "--prefix", str(tmp_path), env=env)
    assert out.returncode == 2 and out.stderr.splitlines() == [error]
    assert not (tmp_path / "share/jupyter/kernels").exists()  # nothing installed


def test_profile_kernelspec_launches_with_its_settings(server, tmp_path):
    """The generated kernelspec, launched by jupyter_client, opens a session with its settings."""
    api = server.client()
    assert api.request("POST", "/folders", json={"name": "profile-data"}).status == 201
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path / "share/jupyter")}
    out = cli("install", "--display-name", "Backend.AI Test · small", "-r", "cpu=1", "-r", "mem=1g",
              "-m", "profile-data:input", "-e", "PROFILE_FLAG=from-the-profile", "--prefix", str(tmp_path), env=env)
    assert out.returncode == 0, out.stderr
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "share/jupyter/kernels")])
    driver = KernelDriver(server.env(), kernel_name="backend-test-small", kernel_spec_manager=specs)
    try:
        result = driver.execute("import os\nprint(os.environ['PROFILE_FLAG'], os.path.isdir('input'))\n"
                                "print(os.environ['BACKENDAI_SESSION_NAME'])")
        assert result.status == "ok", result.reply
        flag_and_mount, name = result.stream().splitlines()
        assert flag_and_mount == "from-the-profile True"
        info = api.request("GET", f"/session/{name}").json()
        assert info["image"] == "python" and info["mounts"] == ["profile-data"]
        assert json.loads(info["occupiedSlots"]) == {"cpu": "1", "mem": "1g"}
    finally:
        driver.shutdown()
        api.request("DELETE", "/folders/profile-data")
