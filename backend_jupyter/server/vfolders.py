"""Virtual folders of the embedded server: directories owned by one access key each.

Metadata lives in ``<data-dir>/vfolders.json``; contents in ``<data-dir>/vfolders/<id>/``.
Folders outlive sessions and server restarts.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..protocol import VFOLDER_NAME_RE
from .errors import InvalidAPIParameters, NoSuchFolder, VFolderAlreadyExists

HOST = "local"


@dataclass
class LocalFolder:
    """A virtual folder's metadata (its files are in the store's directory for it)."""

    id: str  # 32 hex digits, as the manager reports folder ids
    name: str
    owner: str
    created_at: str
    permission: str = "rw"
    usage_mode: str = "general"
    cloneable: bool = False

    def summary(self, path: Path) -> dict:
        """The fields of a folder in list/create/info answers (all API generations)."""
        return {
            "id": self.id,
            "name": self.name,
            "host": HOST,
            "quota_scope_id": f"user:{self.owner}",
            "usage_mode": self.usage_mode,
            "created_at": self.created_at,
            "created": self.created_at,
            "is_owner": True,
            "permission": self.permission,
            "user": self.owner,
            "group": None,
            "creator": self.owner,
            "user_email": None,
            "group_name": None,
            "ownership_type": "user",
            "type": "user",
            "unmanaged_path": None,
            "cloneable": self.cloneable,
            "max_files": 0,
            "max_size": None,
            "status": "ready",
        }


class FolderStore:
    """All virtual folders of the server, each owned by one access key."""

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir) / "vfolders"
        self.meta_path = Path(data_dir) / "vfolders.json"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._folders: dict[str, LocalFolder] = {}
        if self.meta_path.exists():
            for item in json.loads(self.meta_path.read_text()).get("vfolders", []):
                folder = LocalFolder(**item)
                self._folders[folder.id] = folder

    def _save(self) -> None:
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"vfolders": [asdict(f) for f in self._folders.values()]}, indent=2))
        os.replace(tmp, self.meta_path)

    def path(self, folder: LocalFolder) -> Path:
        return self.root / folder.id

    def list(self, owner: str) -> list[LocalFolder]:
        return [f for f in self._folders.values() if f.owner == owner]

    def get(self, owner: str, name_or_id: str) -> LocalFolder:
        """A folder of ``owner`` by name or id (hex, with or without dashes)."""
        key = name_or_id.replace("-", "") if len(name_or_id) in (32, 36) else None
        for folder in self._folders.values():
            if folder.owner == owner and (folder.name == name_or_id or folder.id == key):
                return folder
        raise NoSuchFolder(f"No virtual folder named {name_or_id!r}.")

    def create(self, owner: str, name: str, permission: str = "rw", usage_mode: str = "general",
               cloneable: bool = False) -> LocalFolder:
        if not isinstance(name, str) or not VFOLDER_NAME_RE.match(name) or name in (".", ".."):
            raise InvalidAPIParameters(
                "Invalid vfolder name: use 1-64 letters, digits, '_', '.' or '-'."
            )
        if permission not in ("ro", "rw", "wd"):
            raise InvalidAPIParameters("Invalid permission: use 'ro', 'rw' or 'wd'.")
        if usage_mode not in ("general", "model", "data"):
            raise InvalidAPIParameters("Invalid usage_mode: use 'general', 'model' or 'data'.")
        with self._lock:
            if any(f.owner == owner and f.name == name for f in self._folders.values()):
                raise VFolderAlreadyExists(f"A virtual folder named {name!r} already exists.")
            folder = LocalFolder(
                uuid.uuid4().hex, name, owner, datetime.now(timezone.utc).isoformat(),
                permission, usage_mode, bool(cloneable),
            )
            self.path(folder).mkdir(parents=True)
            self._folders[folder.id] = folder
            self._save()
        return folder

    def delete(self, folder: LocalFolder) -> None:
        with self._lock:
            self._folders.pop(folder.id, None)
            self._save()
        shutil.rmtree(self.path(folder), ignore_errors=True)

    def usage(self, folder: LocalFolder) -> tuple[int, int]:
        files = size = 0
        for dirpath, _dirs, names in os.walk(self.path(folder)):
            for name in names:
                files += 1
                try:
                    size += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass
        return files, size
