"""Vocabulary shared by the client side and the embedded server: names both sides must agree on."""

from __future__ import annotations

# The remote display adapter (see remote.py) sends every rich output of a session's IPython as one
# console record ``["media", [OUTPUT_MIME, {"output_type": ..., "data": {...}, ...}]]``.
OUTPUT_MIME = "application/vnd.backend-jupyter.output+json"
# ... and marks the display_data message that carries it (as its only type, ``text/html``, the one
# Backend.AI's kernel runner hands to the agent as JSON) with this metadata key.
OUTPUT_MARK = "backend_jupyter"
# One output larger than this (its JSON, in characters) arrives as a note with its size instead.
OUTPUT_LIMIT = 16 * 1024 * 1024
