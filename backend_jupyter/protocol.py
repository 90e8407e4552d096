"""The vocabulary both sides share: the client (execution, display, config) and the embedded server
import their run statuses, MIME types and name patterns from here (see docs/protocol.md)."""

from __future__ import annotations

import re

# -- the execute loop ------------------------------------------------------------------------------
FINISHED = "finished"
CONTINUED = "continued"
WAITING_INPUT = "waiting-input"
EXEC_TIMEOUT = "exec-timeout"
CLEAN_FINISHED = "clean-finished"  # a batch run's steps
BUILD_FINISHED = "build-finished"
TERMINAL = frozenset({FINISHED, EXEC_TIMEOUT})  # the run is over
STEPS = frozenset({CLEAN_FINISHED, BUILD_FINISHED})  # a batch step is over, the run goes on
EXECUTE_MODES = frozenset({"query", "batch", "continue", "input", "complete"})
MAX_CHARS_PER_CALL = 524_288  # stdout/stderr text in one execute response

# -- console records -------------------------------------------------------------------------------
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")  # base64 in a bundle
SVG_MIME = "image/svg+xml"
DRAWING_MIME = "application/x-sorna-drawing"  # drawing commands of Backend.AI's Python kernel

# The remote display adapter (see remote.py) sends every rich output of a session's IPython as one
# console record ``["media", [OUTPUT_MIME, {"output_type": ..., "data": {...}, ...}]]``.
OUTPUT_MIME = "application/vnd.backend-jupyter.output+json"
# ... and marks the display_data message that carries it (as its only type, ``text/html``, the one
# Backend.AI's kernel runner hands to the agent as JSON) with this metadata key.
OUTPUT_MARK = "backend_jupyter"
# One output larger than this (its JSON, in characters) arrives as a note with its size instead.
OUTPUT_LIMIT = 16 * 1024 * 1024

# -- names -----------------------------------------------------------------------------------------
# (``\Z``, not ``$``: a name may not end in a newline)
SESSION_NAME_RE = re.compile(r"^(?=.{4,64}\Z)\w[\w.-]*\w\Z", re.ASCII)
VFOLDER_NAME_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}\Z")
RUN_ID_RE = re.compile(r"^[\w.:-]{1,64}\Z", re.ASCII)
