"""A compute session as a front-end holds it: the session plus what the front-end knows about it.

Both front-ends (the kernel and the magics) keep their sessions as :class:`ManagedSession`:
whether they created it (and so destroy it), whether it is kept past exit, whether it stopped
answering, whether the display adapter runs in it.  Opening (create or attach, then the adapter),
restart-or-replace and destroy-at-exit are written here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from .client import (
    APIClient,
    BackendError,
    ComputeSession,
    NotSupported,
    SessionNotFound,
)
from .client.session import REPLACE_TIMEOUT
from .config import Config, Mount
from .kernelspecs import is_python
from .remote import install_adapter, run_transport

log = logging.getLogger("backend_jupyter.managed")

EXIT_DESTROY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Settings:
    """What a new session is started with (besides the name): its image, the vfolders it mounts
    on top of ``BACKEND_VFOLDER_MOUNTS``, its environment and its resource slots."""

    image: str = "python"
    mounts: tuple[Mount, ...] = ()
    environ: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)

    def overridden(self, *, image: str | None = None, mounts: tuple[Mount, ...] | None = None,
                   environ: dict | None = None, resources: dict | None = None) -> Settings:
        """These settings with each given one replaced (``None``: kept as it is)."""
        changes = {"image": image, "mounts": mounts, "environ": environ, "resources": resources}
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return {"image": self.image, "mounts": [str(m) for m in self.mounts], "environ": self.environ,
                "resources": self.resources}

    @classmethod
    def from_dict(cls, data: dict) -> Settings:
        """Settings from :meth:`to_dict`; KeyError, TypeError or ValueError if it is not one."""
        mounts = tuple(Mount(*m.split(":", 1)) for m in data["mounts"])
        return cls(str(data["image"]), mounts, dict(data["environ"]), dict(data["resources"]))

    def describe(self) -> str:
        parts = [self.image]
        parts += [f"-m {m}" for m in self.mounts]
        parts += [f"-r {k}={v}" for k, v in self.resources.items()]
        parts += [f"-e {k}=…" for k in self.environ]  # values may be secrets
        return " ".join(parts)


@dataclass
class ManagedSession:
    session: ComputeSession
    owned: bool  # created by this front-end: destroyed by it (at exit unless kept)
    keep: bool = False  # survives the front-end's exit
    stuck: bool = False  # stopped answering after a run broke off: runs are refused until it answers
    adapter: bool = False  # the remote display adapter runs in it (see remote.py)
    gone: bool = False  # it no longer exists: the front-end opens a new one
    settings: Settings = field(default_factory=Settings)  # what it was opened with

    @property
    def name(self) -> str:
        return self.session.name

    def transport(self, configured: str = "auto") -> str:
        return run_transport(configured, self.adapter)

    @classmethod
    async def open(cls, api: APIClient, name: str, settings: Settings, *, adapter: bool = True,
                   keep: bool = False, attach: bool = False) -> ManagedSession:
        """Create the session ``name`` (or reuse the running one of that name; ``attach``: it must
        exist and is never ours), then install the display adapter on a Python image."""
        if attach:
            session = ComputeSession(api, name)
            info = await session.info()
            session.image = info.get("image") or settings.image
        else:
            session = await cls._create(api, name, settings)
            if not session.created and not await session.exists():
                # Reused, but on its way out (a restart replacing it, say): not that one, a fresh one.
                await session.wait_gone(REPLACE_TIMEOUT)
                session = await cls._create(api, name, settings)
        managed = cls(session, owned=session.created and not attach, keep=keep, settings=settings)
        managed.adapter = is_python(settings.image) and adapter and await install_adapter(session)
        return managed

    @staticmethod
    async def _create(api: APIClient, name: str, settings: Settings) -> ComputeSession:
        return await ComputeSession.get_or_create(api, settings.image, name=name, mounts=list(settings.mounts),
                                                  environ=settings.environ, resources=settings.resources)

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


# -- the settings a kernel's session was given by ``%backend_session new`` ------------------------------
def _settings_path(kernel_id: str) -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / f"backend-jupyter-{kernel_id}.json"


def save_settings(kernel_id: str, settings: Settings) -> None:
    """Keep ``settings`` for the kernel's next process (a Jupyter restart starts a new one)."""
    path = _settings_path(kernel_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = settings.to_dict()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # environment values may be secrets
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)


def saved_settings(kernel_id: str) -> Settings | None:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return Settings.from_dict(json.loads(_settings_path(kernel_id).read_text()))
    return None


def forget_settings(kernel_id: str) -> None:
    with contextlib.suppress(OSError):
        _settings_path(kernel_id).unlink()
