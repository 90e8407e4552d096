"""Images of the embedded server: which local Jupyter kernelspec serves a session's image.

``python`` (with any registry or tag: ``cr.backend.ai/stable/python:3.11``) is the server's own
Python; any other installed kernelspec is offered under its own name, except the product's wrapper
kernels (``backend*``), which would only call the server back.
"""

from __future__ import annotations

import sys

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel

from .errors import ImageNotFound

OWN_PYTHON = "python"
WRAPPER_KERNEL_PREFIX = "backend"  # the product's own wrapper kernelspecs are never session images


class _SpecManager(KernelSpecManager):
    """Kernelspecs offered as images: the server's own Python plus other installed kernels."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == OWN_PYTHON:
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="Python 3 (embedded server)",
                language="python",
                interrupt_mode="signal",
                resource_dir="",
            )
        return super().get_kernel_spec(kernel_name)


SPEC_MANAGER = _SpecManager()


def image_kernel(image: str) -> str:
    """The local kernelspec that serves ``image`` (``python``, ``python:3.11``, ``cr.../python:3.9``)."""
    base = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    if base in ("python", "python3"):
        return OWN_PYTHON
    for candidate in (image, base):
        if candidate.lower().startswith(WRAPPER_KERNEL_PREFIX):
            continue
        try:
            SPEC_MANAGER.get_kernel_spec(candidate)
        except (NoSuchKernel, ValueError, OSError):
            continue
        return candidate
    raise ImageNotFound(f"Unknown image {image!r}; available: {', '.join(available_images())}")


def available_images() -> list[str]:
    names = {OWN_PYTHON}
    for name in SPEC_MANAGER.find_kernel_specs():
        if not name.lower().startswith(WRAPPER_KERNEL_PREFIX) and name != "python3":
            names.add(name)
    return sorted(names)
