"""Kernelspecs of the wrapper kernel: images are data, not classes.

Each entry of :data:`IMAGES` becomes a kernelspec ``backendai-<key>`` whose kernel runs cells on
that image.  ``share/jupyter/kernels/`` in the repository holds the rendered specs that ``pip install``
ships (so "Backend.AI Python" appears with no extra step); ``backend-jupyter install`` writes them
(or specs for other images) into a chosen Jupyter data directory.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

PREFIX = "backendai-"
LOGO_DIR = Path(__file__).parent / "logos"

# key -> (image, display name, language)
IMAGES: dict[str, tuple[str, str, str]] = {
    "python": ("python", "Backend.AI Python", "python"),
}


def spec(key: str, image: str | None = None, display_name: str | None = None, language: str | None = None) -> dict:
    default_image, default_name, default_language = IMAGES.get(key, (key, f"Backend.AI {key}", key))
    return {
        "argv": ["python", "-m", "backend_jupyter.kernel", "-f", "{connection_file}",
                 f"--BackendKernel.image={image or default_image}"],
        "display_name": display_name or default_name,
        "language": language or default_language,
        "interrupt_mode": "message",
        "metadata": {"debugger": False, "backend_jupyter": {"image": image or default_image}},
    }


def write_spec(directory: Path, key: str, **kw) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kernel.json").write_text(json.dumps(spec(key, **kw), indent=2) + "\n")
    for logo in LOGO_DIR.glob("logo-*.png"):
        shutil.copy(logo, directory / logo.name)
    return directory


def install(key: str = "python", *, user: bool = False, prefix: str | None = None, image: str | None = None,
            display_name: str | None = None) -> str:
    """Install the kernelspec ``backendai-<key>``; returns where it went."""
    prefix = None if user else (prefix or sys.prefix)
    with tempfile.TemporaryDirectory() as tmp:
        src = write_spec(Path(tmp) / (PREFIX + key), key, image=image, display_name=display_name)
        return KernelSpecManager().install_kernel_spec(str(src), PREFIX + key, user=user, prefix=prefix)


def installed() -> dict[str, str]:
    return {name: path for name, path in KernelSpecManager().find_kernel_specs().items() if name.startswith(PREFIX)}


if __name__ == "__main__":  # regenerate the shipped specs: python -m backend_jupyter.kernelspecs
    root = Path(__file__).resolve().parent.parent / "share" / "jupyter" / "kernels"
    for key in IMAGES:
        print(write_spec(root / (PREFIX + key), key))
