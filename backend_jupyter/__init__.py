"""Run Jupyter notebook cells on Backend.AI compute sessions."""

__version__ = "0.1.0"


def load_ipython_extension(ipython) -> None:
    """``%load_ext backend_jupyter``: register the Backend.AI magics."""
    from .magics import load_ipython_extension as load

    load(ipython)
