"""A compute session as a front-end holds it: the session plus what the front-end knows about it.

Both front-ends (the kernel and the magics) keep their sessions as :class:`ManagedSession`:
whether they created it (and so destroy it), whether it is kept past exit, whether it stopped
answering, whether the display adapter runs in it.  Opening (create or attach, then the adapter),
restart-or-replace and destroy-at-exit are written here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from .client import (
    APIClient,
    BackendError,
    ComputeSession,
    NotSupported,
    SessionNotFound,
)
from .config import Config, Mount
from .remote import install_adapter, run_transport

log = logging.getLogger("backend_jupyter.managed")

EXIT_DESTROY_TIMEOUT = 10.0


@dataclass
class ManagedSession:
    session: ComputeSession
    owned: bool  # created by this front-end: destroyed by it (at exit unless kept)
    keep: bool = False  # survives the front-end's exit
    stuck: bool = False  # stopped answering after a run broke off: runs are refused until it answers
    adapter: bool = False  # the remote display adapter runs in it (see remote.py)
    gone: bool = False  # it no longer exists: the front-end opens a new one

    @property
    def name(self) -> str:
        return self.session.name

    def transport(self, configured: str = "auto") -> str:
        return run_transport(configured, self.adapter)

    @classmethod
    async def open(cls, api: APIClient, image: str, name: str, *, python: bool, adapter: bool = True,
                   mounts: Iterable[Mount] = (), environ: dict | None = None,
                   resources: dict | None = None, keep: bool = False, attach: bool = False) -> ManagedSession:
        """Create the session ``name`` (or reuse the running one of that name; ``attach``: it must
        exist and is never ours), then install the display adapter on a Python image."""
        if attach:
            session = ComputeSession(api, name)
            info = await session.info()
            session.image = info.get("image") or image
        else:
            session = await ComputeSession.get_or_create(api, image, name=name, mounts=list(mounts),
                                                         environ=environ, resources=resources)
        managed = cls(session, owned=session.created and not attach, keep=keep)
        managed.adapter = python and adapter and await install_adapter(session)
        return managed

    async def restart(self) -> str:
        """Reset the remote interpreter (files stay): ``"restarted"``.  Where the manager cannot
        (26.09 answers 501) or the session stopped answering, a session of ours is destroyed
        instead and its name freed, so that the next open starts a fresh one: ``"replaced"``.
        An attached session a manager cannot restart keeps its state: ``"kept"``."""
        try:
            if self.stuck and self.owned:
                await self.session.replace()
                replaced = True
            else:
                replaced = await self.session.reset(replace=self.owned)
        except NotSupported:
            log.warning("session %s was attached and this manager cannot restart it: its state is kept", self.name)
            return "kept"
        if replaced:
            self.gone = True
            return "replaced"
        self.stuck = False  # a restarted interpreter answers again
        if self.adapter:
            self.adapter = await install_adapter(self.session)
        return "restarted"

    async def destroy(self) -> None:
        try:
            await self.session.destroy()
        except SessionNotFound:
            pass
        self.gone = True


def destroy_at_exit(config: Config | None, names: list[str]) -> None:
    """Destroy sessions by name from a fresh thread and event loop (at interpreter exit, from a
    signal handler: wherever the front-end's own loop may be gone or busy).  Bounded."""
    if config is None or not names:
        return

    async def destroy():
        async with APIClient(config) as api:
            for name in names:
                with contextlib.suppress(BackendError):
                    await ComputeSession(api, name).destroy()

    def run():
        with contextlib.suppress(Exception):
            asyncio.run(asyncio.wait_for(destroy(), EXIT_DESTROY_TIMEOUT))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(EXIT_DESTROY_TIMEOUT + 2)
