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

PREFIX = "backend-"
LOGO_DIR = Path(__file__).parent / "logos"

# The kernelspecs pip installs: key -> (image, display name).
IMAGES: dict[str, tuple[str, str]] = {
    "python": ("python", "Backend.AI Python"),
}

# language_info by image base name (``cr.backend.ai/stable/python-pytorch:2.0`` -> ``python-pytorch``
# -> first matching prefix).  One kernel class serves them all.
LANGUAGES: dict[str, dict] = {
    "python": {"name": "python", "version": "3", "mimetype": "text/x-python", "file_extension": ".py",
               "pygments_lexer": "ipython3", "codemirror_mode": {"name": "ipython", "version": 3},
               "nbconvert_exporter": "python"},
    "r": {"name": "R", "mimetype": "text/x-r-source", "file_extension": ".r", "pygments_lexer": "r",
          "codemirror_mode": "r"},
    "julia": {"name": "julia", "mimetype": "application/julia", "file_extension": ".jl",
              "pygments_lexer": "julia", "codemirror_mode": "julia"},
    "nodejs": {"name": "javascript", "mimetype": "application/javascript", "file_extension": ".js",
               "pygments_lexer": "javascript", "codemirror_mode": "javascript"},
    "lua": {"name": "lua", "mimetype": "text/x-lua", "file_extension": ".lua", "pygments_lexer": "lua",
            "codemirror_mode": "lua"},
}


def image_base(image: str) -> str:
    return image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0].lower()


def language_info(image: str) -> dict:
    base = image_base(image)
    for key, info in LANGUAGES.items():
        if base == key or base.startswith(key + "-") or base.startswith(key):
            return dict(info)
    return {"name": base or "text", "mimetype": "text/plain", "file_extension": ".txt"}


def is_python(image: str) -> bool:
    return language_info(image)["name"] == "python"


def spec(key: str, image: str | None = None, display_name: str | None = None,
         environ: dict[str, str] | None = None) -> dict:
    default_image, default_name = IMAGES.get(key, (key, f"Backend.AI {key}"))
    image = image or default_image
    argv = ["python", "-m", "backend_jupyter.kernel", "-f", "{connection_file}", f"--BackendKernel.image={image}"]
    argv += [f"--BackendKernel.environ={k}={v}" for k, v in (environ or {}).items()]
    return {
        "argv": argv,
        "display_name": display_name or default_name,
        "language": language_info(image)["name"],
        "interrupt_mode": "message",
        "metadata": {"debugger": False, "backend_jupyter": {"image": image}},
    }


def write_spec(directory: Path, key: str, **kw) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kernel.json").write_text(json.dumps(spec(key, **kw), indent=2) + "\n")
    for logo in LOGO_DIR.glob("logo-*.png"):
        shutil.copy(logo, directory / logo.name)
    return directory


def install(key: str = "python", *, user: bool = False, prefix: str | None = None, image: str | None = None,
            display_name: str | None = None, environ: dict[str, str] | None = None) -> str:
    """Install the kernelspec ``backend-<key>``; returns where it went."""
    prefix = None if user else (prefix or sys.prefix)
    name = key if key.startswith(PREFIX) else PREFIX + key
    with tempfile.TemporaryDirectory() as tmp:
        src = write_spec(Path(tmp) / name, key, image=image, display_name=display_name, environ=environ)
        return KernelSpecManager().install_kernel_spec(str(src), name, user=user, prefix=prefix)


def installed() -> dict[str, str]:
    """Our kernelspecs: name -> directory."""
    return {name: path for name, path in KernelSpecManager().find_kernel_specs().items() if name.startswith(PREFIX)}


def remove(name: str) -> str:
    name = name if name.startswith(PREFIX) else PREFIX + name
    specs = installed()
    if name not in specs:
        raise KeyError(f"no Backend.AI kernelspec named {name!r} (installed: {', '.join(sorted(specs)) or 'none'})")
    KernelSpecManager().remove_kernel_spec(name)
    return specs[name]


if __name__ == "__main__":  # regenerate the shipped specs: python -m backend_jupyter.kernelspecs
    root = Path(__file__).resolve().parent.parent / "share" / "jupyter" / "kernels"
    for key in IMAGES:
        print(write_spec(root / (PREFIX + key), key))
