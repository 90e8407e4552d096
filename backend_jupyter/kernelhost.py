"""The sessions of one "Backend.AI Python" kernel: the kernel's :class:`~backend_jupyter.actions.Host`.

The kernel (``kernel.py``) speaks Jupyter's protocol; this room holds what its cells and
``%backend_*`` commands act on, as ``console.Console`` does for the magics:

* the client and its configuration (``BACKEND_*`` overridden by the kernel's traitlets);
* the sessions by name, one of them current.  The kernel's *own* session is named after the Jupyter
  kernel id, so a restarted kernel process finds it again; it starts when the kernel starts (eager
  start) and is reopened when it vanished before a cell ran;
* where the user's variables are (the own session: ``-i``/``-o`` go through it);
* at the end: restart (reset the own session, drop the others) or shutdown (destroy what is ours),
  also from exit paths the kernel cannot see coming (``atexit``, SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .actions import Panel, Progress, Rich, Say, connect, open_session
from .client import APIClient
from .commands import CommandError
from .config import Config, ConfigError, parse_endpoints, parse_mounts
from .jobs import Board
from .managed import (
    ManagedSession,
    Settings,
    destroy_at_exit,
    forget_settings,
    save_settings,
    saved_settings,
)
from .variables import VariableError, export_from_session, import_into_session

if TYPE_CHECKING:
    from .kernel import BackendKernel

log = logging.getLogger("backend_jupyter.kernel")


class KernelHost:
    """The client, the kernel's sessions by name (its own first), and their ends."""

    def __init__(self, kernel: BackendKernel):
        self.kernel = kernel  # its traitlets configure us; what commands show goes to its cells
        self._client: APIClient | None = None
        self.client_config: Config | None = None
        self.sessions: dict[str, ManagedSession] = {}  # ours first, then those commands opened
        self.own_name = self._own_name()
        self.current = self.own_name
        self.settings = saved_settings(self.kernel_id()) or Settings(
            kernel.image, environ=dict(kernel.environ), resources={k: str(v) for k, v in kernel.resources.items()})
        self._opening: asyncio.Future | None = None  # the eager start of our session
        self.board = Board()  # background jobs this kernel follows
        self.restarting = False

    # -- configuration ---------------------------------------------------------------------------
    def kernel_id(self) -> str:
        """A name for our session that survives restarts: the Jupyter kernel id (from the
        ``kernel-<id>.json`` connection file), else a digest of the connection file path."""
        connection_file = ""
        with contextlib.suppress(Exception):
            from ipykernel.kernelapp import IPKernelApp

            if IPKernelApp.initialized():
                connection_file = IPKernelApp.instance().abs_connection_file
        match = re.match(r"kernel-([\w-]+)\.json$", os.path.basename(connection_file))
        if match:
            return match.group(1)
        if connection_file:
            return hashlib.sha1(connection_file.encode()).hexdigest()[:20]
        return uuid.uuid4().hex

    def resolved_config(self) -> Config:
        """``BACKEND_*`` with what the kernel's traitlets set (an empty trait overrides nothing)."""
        k = self.kernel
        given = {"endpoints": k.endpoint and parse_endpoints(k.endpoint, "BackendKernel.endpoint"),
                 "access_key": k.access_key, "secret_key": k.secret_key,
                 "vfolder_mounts": k.vfolder_mounts and parse_mounts(k.vfolder_mounts, "BackendKernel.vfolder_mounts"),
                 "api_version": k.api_version, "session_name": k.session_name}
        return Config.from_env().replace(**{key: value for key, value in given.items() if value})

    def _own_name(self) -> str:
        """Our session's name: the configured one (then attached, never ours), else one derived
        from the Jupyter kernel id, which survives restarts."""
        with contextlib.suppress(ConfigError):
            configured = self.resolved_config().session_name
            if configured:
                return configured
        return f"jupyter-{self.kernel_id()}"

    # -- the Host of actions.py ------------------------------------------------------------------
    @property
    def where(self) -> Path:
        return Path.cwd()  # Jupyter starts a kernel in its notebook's directory

    @property
    def negotiated_version(self) -> str | None:
        return self._client.api_version if self._client is not None else None

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def client(self) -> APIClient:
        if self._client is None:
            self._client, self.client_config = await connect(self, self.resolved_config(),
                                                             f"backend_jupyter-kernel/{__version__}")
        return self._client

    async def open(self, name: str | None = None, *, settings: Settings | None = None, keep: bool = False,
                   create: bool = True, attach: bool = False) -> ManagedSession:
        name = name or self.current
        managed = self.sessions.get(name)
        if managed is not None and not managed.gone and not attach:
            return managed
        if name == self.own_name and self._opening is not None and not attach:
            return await self._eager_result()
        if not create:
            raise CommandError(f"No session {name!r} in this kernel; see %backend_session list")
        return await self._create(name, settings, keep=keep, attach=attach)

    async def _create(self, name: str, settings: Settings | None = None, *, keep: bool = False,
                      attach: bool = False) -> ManagedSession:
        await self.client()
        own = name == self.own_name and self.client_config.session_name is None
        attach = attach or (name == self.own_name and not own)  # named by configuration: never ours
        managed = await open_session(self, name, settings or self.settings, adapter=self.kernel.display_adapter,
                                     keep=keep, attach=attach)
        if own:
            managed.owned = True  # also when a restarted kernel process finds it running
        return managed

    def adopt(self, settings: Settings) -> None:
        self.settings = settings
        save_settings(self.kernel_id(), settings)

    async def export_values(self, names: list[str], allow_pickle: bool, dest: Path) -> dict[str, str]:
        managed = await self.open()  # this kernel's variables live in its session
        try:
            return await export_from_session(managed.session, names, allow_pickle, dest)
        except VariableError as e:
            raise CommandError(f"-i {e}") from None

    async def import_values(self, order: dict, base: Path) -> None:
        managed = await self.open()
        try:
            await import_into_session(managed.session, order, base)
        except VariableError as e:
            raise CommandError(f"-o: {e}") from None

    def emit(self, event: Say | Progress | Rich | Panel) -> None:
        self.kernel.show(event)

    def forget(self, name: str) -> None:
        self.sessions.pop(name, None)
        if name == self.current and name != self.own_name:
            self.current = self.own_name
            self.emit(Say(f"The current session is this kernel's own again ({self.own_name})."))

    # -- our session -----------------------------------------------------------------------------
    def start_eagerly(self) -> None:
        """Start opening our session now (on the running loop), so that the first cell waits only
        for what is left."""
        self._opening = asyncio.ensure_future(self._create(self.own_name))
        self._opening.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen by _eager_result

    async def _eager_result(self) -> ManagedSession:
        """The eager start's session; its error, if it failed, once (the next open tries afresh)."""
        opening = self._opening
        try:
            return await asyncio.shield(opening)
        finally:
            if opening.done():
                self._opening = None

    def reopener(self, managed: ManagedSession):
        """What the cell driver calls when ``managed`` vanished before the code ran: a new current
        session under the same name (None for a session other than the current one: not ours to renew)."""
        if managed.name != self.current:
            return None

        async def reopen() -> ManagedSession:
            self.sessions.pop(self.current, None)
            return await self.open()

        return reopen

    # -- the end ---------------------------------------------------------------------------------
    async def end(self, restart: bool) -> None:
        """Restart: reset our session's interpreter, which the next kernel process reattaches to
        by name (or, where it cannot be reset, replace it: see ManagedSession.restart).
        Shutdown: destroy our session.  Either way, the other sessions this kernel started go."""
        try:
            if self._opening is not None:  # still starting: let it finish, so that it can be cleaned up
                with contextlib.suppress(Exception):
                    await self._eager_result()
            own = self.sessions.get(self.own_name)
            if own is not None and restart and await own.restart() == "replaced":
                log.info("session %s was replaced by a fresh one", own.name)
            for managed in self._leaving(restart):
                await managed.destroy()
            if not restart:
                forget_settings(self.kernel_id())
        finally:
            if self._client is not None:
                await self._client.close()
            self._client = None

    def _leaving(self, restart: bool) -> list[ManagedSession]:
        """The sessions that go with this kernel process: ours unless kept or attached, and on a
        restart all but our own (which the restarted process takes over)."""
        return [m for m in self.sessions.values() if m.owned and not m.keep and not m.gone
                and not (restart and m.name == self.own_name)]

    def destroy_at_exit(self) -> None:
        """Exit paths the kernel cannot see coming (SIGTERM, a crash of the front-end, ...): don't
        leak our sessions, including one still being started."""
        names = [m.name for m in self._leaving(self.restarting)]
        if self._opening is not None and not self.restarting and self.own_name not in self.sessions \
                and self.client_config is not None and self.client_config.session_name is None:
            names.append(self.own_name)  # its creation may be under way
        destroy_at_exit(self.client_config, names)  # no configuration yet: nothing was created
