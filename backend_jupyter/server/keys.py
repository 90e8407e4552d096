"""Keypairs of the embedded server, kept in ``<data-dir>/keypairs.json`` (mode 0600)."""

from __future__ import annotations

import json
import os
import secrets
import string
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

KEYPAIRS_FILE = "keypairs.json"
_AK_ALPHABET = string.ascii_uppercase + string.digits
_SK_ALPHABET = string.ascii_letters + string.digits + "/+"


@dataclass(frozen=True)
class Keypair:
    access_key: str
    secret_key: str = field(repr=False)
    created: str = ""

    def exports(self, endpoint: str) -> str:
        """Shell lines that configure the SDK (and this product) for this keypair."""
        return (
            f"export BACKEND_ENDPOINT={endpoint}\n"
            f"export BACKEND_ACCESS_KEY={self.access_key}\n"
            f"export BACKEND_SECRET_KEY={self.secret_key}\n"
        )


def new_keypair() -> Keypair:
    access_key = "AKIA" + "".join(secrets.choice(_AK_ALPHABET) for _ in range(16))
    secret_key = "".join(secrets.choice(_SK_ALPHABET) for _ in range(40))
    return Keypair(access_key, secret_key, datetime.now(timezone.utc).isoformat())


class KeyStore:
    """The server's keypairs; the file is created (with one keypair) on first use."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / KEYPAIRS_FILE
        self._lock = threading.Lock()
        self._keys: dict[str, Keypair] = {}
        self._mtime: float | None = None
        self.reload()

    def reload(self) -> None:
        with self._lock:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._write([new_keypair()])
            os.chmod(self.path, 0o600)
            data = json.loads(self.path.read_text())
            self._keys = {
                k["access_key"]: Keypair(k["access_key"], k["secret_key"], k.get("created", ""))
                for k in data.get("keypairs", [])
            }
            self._mtime = self.path.stat().st_mtime

    def _write(self, keypairs: list[Keypair]) -> None:
        payload = {
            "keypairs": [
                {"access_key": k.access_key, "secret_key": k.secret_key, "created": k.created}
                for k in keypairs
            ]
        }
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, self.path)

    def add(self) -> Keypair:
        self.reload()
        keypair = new_keypair()
        with self._lock:
            self._write([*self._keys.values(), keypair])
        self.reload()
        return keypair

    def default(self) -> Keypair:
        return next(iter(self._keys.values()))

    def secret_for(self, access_key: str) -> str | None:
        """The secret key of ``access_key``; picks up keypairs added by another process."""
        keypair = self._keys.get(access_key)
        if keypair is None and self.path.exists() and self.path.stat().st_mtime != self._mtime:
            self.reload()
            keypair = self._keys.get(access_key)
        return keypair.secret_key if keypair else None
