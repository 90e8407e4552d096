"""What the server's handlers share: its settings and stores, each behind a typed application key.

:func:`app.make_app` creates them; a handler reaches one as ``request.app[SESSIONS]``.  State that
belongs to one resource only is keyed in that resource's route module (transfer tokens, streams).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from aiohttp import web

from .keys import KeyStore
from .sessions import SessionRegistry
from .vfolders import FolderStore


@dataclass
class ServerSettings:
    data_dir: Path
    flush_timeout: float = 2.0  # longest an execute call waits when there is no output
    stream_flush_timeout: float = 0.5
    idle_timeout: float = 3600.0
    exec_timeout: float = 0.0
    reap_interval: float = 30.0


SETTINGS = web.AppKey("settings", ServerSettings)
KEYS = web.AppKey("keys", KeyStore)
SESSIONS = web.AppKey("sessions", SessionRegistry)
FOLDERS = web.AppKey("folders", FolderStore)
STARTED = web.AppKey("started", datetime)  # when the application was made (the server's start)
