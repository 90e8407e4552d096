"""``GET /embedded/status``: the server itself and every session of every keypair, for
``backend-jupyter server --status`` and ``--stop`` (see serverctl.py).  Not part of the manager's
API; only the server's default keypair (the first in keypairs.json) may ask.  Looking does not
count as using a session (its idle time goes on)."""

from __future__ import annotations

import os
import time

from aiohttp import web

from ..errors import GenericForbidden
from ..params import json_response, owner
from ..sessions import LocalSession
from ..state import KEYS, SESSIONS, SETTINGS, STARTED


async def server_status(request: web.Request) -> web.Response:
    if owner(request) != request.app[KEYS].default().access_key:
        raise GenericForbidden("Only the embedded server's default keypair may see its status.")
    settings = request.app[SETTINGS]
    return json_response({
        "pid": os.getpid(),
        "data_dir": str(settings.data_dir),
        "started": request.app[STARTED].isoformat(),
        "idle_timeout": settings.idle_timeout,
        "sessions": [session_status(s) for s in request.app[SESSIONS].sessions.values()],
    })


def session_status(session: LocalSession) -> dict:
    """A session as the status shows it: who made it, what it runs on, and whether it is busy."""
    now = time.monotonic()
    busy_since = session.runs.busy_since
    return {
        "name": session.name,
        "id": str(session.id),
        "owner": session.owner,
        "client": session.spec.client,
        "image": session.spec.image,
        "resources": session.spec.resources,
        "status": session.status,
        "created": session.created_at.isoformat(),
        "busy": busy_since is not None,
        "busy_seconds": None if busy_since is None else round(now - busy_since, 1),
        "idle_seconds": round(now - session.last_used, 1),
        "runs_held": sum(1 for _ in session.runs),  # runs whose output a client may still take
    }


def add_routes(app: web.Application) -> None:
    app.router.add_routes([web.get("/embedded/status", server_status)])
