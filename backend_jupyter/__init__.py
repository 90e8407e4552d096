"""Run Jupyter notebook cells on Backend.AI compute sessions."""

__version__ = "0.1.0"
