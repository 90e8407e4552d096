"""The server's REST resources, one module each; every module's ``add_routes(app)`` mounts its
routes and app.py mounts them all.

- system: ``GET /`` (public) and the ``/auth`` test route
- status: ``GET /embedded/status``, the embedded server's own status and all its sessions (not
  the manager's API: for ``backend-jupyter server --status/--stop``; its default keypair only)
- sessions: ``/session`` (API v5+) and ``/kernel`` (v4, also under ``/v2``-``/v4``): create, match,
  info, destroy, restart, interrupt, complete, logs and the REST execute loop
- files: a session's files (upload, download, listing), under the same prefixes
- stream: ``/stream/{session,kernel}/{name}/execute``, the websocket execute loop
- vfolders: ``/folders`` (also under ``/v2``-``/v4``), by name or id
- transfers: ``/storage/{upload,download}``, the token URLs that ``request-upload`` and
  ``request-download`` hand out (public: the token is the credential)
"""

from __future__ import annotations

from aiohttp import web


def under(prefix: str, routes: list[web.RouteDef]) -> list[web.RouteDef]:
    """``routes`` (paths relative to a prefix) under ``prefix``."""
    return [web.RouteDef(r.method, prefix + r.path, r.handler, r.kwargs) for r in routes]
