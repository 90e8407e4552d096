"""The embedded server's HTTP application: Backend.AI REST routes over local kernels.

:func:`make_app` assembles it: the shared state (see state.py), the middlewares, each resource's
routes (see routes/), and the lifecycle: an idle reaper while the server runs, open streams told
when it shuts down, every session's kernel stopped at cleanup.  The routes follow the manager's
API, described in docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web

from . import forking
from .keys import KeyStore
from .middleware import MIDDLEWARES, server_header
from .params import MAX_JSON_BODY
from .routes import (
    files,
    graphql,
    sessions,
    status,
    stream,
    system,
    transfers,
    vfolders,
)
from .sessions import SessionRegistry
from .state import FOLDERS, KEYS, SESSIONS, SETTINGS, STARTED, ServerSettings
from .vfolders import FolderStore

__all__ = ["ServerSettings", "make_app"]

log = logging.getLogger("backend_jupyter.server")

RESOURCES = (system, status, sessions, files, stream, vfolders, transfers, graphql)


def make_app(settings: ServerSettings) -> web.Application:
    """The application serving ``settings.data_dir`` (created if missing)."""
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    app = web.Application(client_max_size=MAX_JSON_BODY, middlewares=MIDDLEWARES)
    app.on_response_prepare.append(server_header)
    app[SETTINGS] = settings
    app[STARTED] = datetime.now(timezone.utc)
    app[KEYS] = KeyStore(data_dir)
    app[FOLDERS] = FolderStore(data_dir)
    app[SESSIONS] = SessionRegistry(
        data_dir / "sessions", idle_timeout=settings.idle_timeout, exec_timeout=settings.exec_timeout,
    )
    app[transfers.TOKENS] = {}
    app[stream.STREAMS] = set()
    for resource in RESOURCES:
        resource.add_routes(app)
    app.cleanup_ctx.append(_sessions_lifetime)
    app.on_shutdown.append(stream.close_streams)
    return app


async def _sessions_lifetime(app: web.Application) -> AsyncIterator[None]:
    """The reaper runs while the server does; at cleanup it stops, then every session is destroyed."""
    reaper = asyncio.create_task(_reap(app))
    warming = asyncio.create_task(asyncio.to_thread(forking.warm))  # the first session need not wait for it
    yield
    warming.cancel()
    reaper.cancel()
    with contextlib.suppress(BaseException):
        await reaper
    await app[SESSIONS].close()


async def _reap(app: web.Application) -> None:
    """Every ``reap_interval``: destroy idle and dead sessions, forget expired transfer tokens."""
    while True:
        await asyncio.sleep(app[SETTINGS].reap_interval)
        try:
            for name in await app[SESSIONS].reap_idle():
                log.info("reaped idle session %s", name)
            transfers.expire_tokens(app[transfers.TOKENS])
        except Exception:
            log.exception("reaping idle sessions failed")
