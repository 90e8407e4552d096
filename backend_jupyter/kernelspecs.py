"""Kernelspecs of the wrapper kernel: images are data, not classes.

Each entry of :data:`IMAGES` becomes a kernelspec ``backend-<key>`` whose kernel runs cells on
that image.  A *profile* is a kernelspec with session settings of its own (image, resource slots,
vfolder mounts, environment), which its argv passes to the kernel as traitlets.
``share/jupyter/kernels/`` in the repository holds the rendered specs that ``pip install`` ships (so
"Backend.AI Python" appears with no extra step); ``backend-jupyter install`` writes them (or
profiles) into a chosen Jupyter data directory.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

from .config import ConfigError, Mount

PREFIX = "backend-"
KEY_RE = re.compile(r"^[A-Za-z0-9._-]+\Z")  # what Jupyter accepts as a kernelspec name
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
         environ: dict[str, str] | None = None, resources: dict[str, str] | None = None,
         mounts: Sequence[Mount] = ()) -> dict:
    """The kernelspec: its argv passes the session settings to the kernel as traitlets, and its
    metadata repeats them (but no environment values) for ``backend-jupyter install --list``."""
    default_image, default_name = IMAGES.get(key, (key, f"Backend.AI {key}"))
    image = image or default_image
    argv = ["python", "-m", "backend_jupyter.kernel", "-f", "{connection_file}", f"--BackendKernel.image={image}"]
    argv += [f"--BackendKernel.environ={k}={v}" for k, v in (environ or {}).items()]
    argv += [f"--BackendKernel.resources={k}={v}" for k, v in (resources or {}).items()]
    if mounts:
        argv.append(f"--BackendKernel.vfolder_mounts={','.join(map(str, mounts))}")
    settings = {"image": image, "resources": dict(resources or {}), "mounts": list(map(str, mounts)),
                "environ": sorted(environ or {})}
    return {
        "argv": argv,
        "display_name": display_name or default_name,
        "language": language_info(image)["name"],
        "interrupt_mode": "message",
        "metadata": {"debugger": False, "backend_jupyter": {k: v for k, v in settings.items() if v}},
    }


def kernelspec_key(name: str | None, display_name: str | None, image: str | None) -> str:
    """A profile's kernelspec key: ``name`` (checked), else one derived from its display name
    (without "Backend.AI"), else from its image: ``Backend.AI PyTorch · 1 GPU`` -> ``pytorch-1-gpu``."""
    if name:
        if not KEY_RE.match(name):
            raise ConfigError(f"--name: {name!r} is not a kernelspec name (letters, digits, '.', '_', '-')")
        return name
    shown = re.sub(r"^\s*backend\.?ai\b", "", display_name or "", flags=re.IGNORECASE)
    for text in (shown, (image or "").rsplit("/", 1)[-1]):
        key = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
        if key:
            return key
    return "python"


def write_spec(directory: Path, key: str, **kw) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kernel.json").write_text(json.dumps(spec(key, **kw), indent=2) + "\n")
    for logo in LOGO_DIR.glob("logo-*.png"):
        shutil.copy(logo, directory / logo.name)
    return directory


def install(key: str = "python", *, user: bool = False, prefix: str | None = None, **settings) -> str:
    """Install the kernelspec ``backend-<key>`` (``settings``: those of :func:`spec`); returns where
    it went."""
    prefix = None if user else (prefix or sys.prefix)
    name = key if key.startswith(PREFIX) else PREFIX + key
    with tempfile.TemporaryDirectory() as tmp:
        src = write_spec(Path(tmp) / name, key, **settings)
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
