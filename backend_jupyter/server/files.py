"""File routes' common ground: confined paths, uploads, tar archives and listings.

Every user-supplied path goes through :func:`confined`: NUL bytes, ``..`` components and absolute
paths outside ``/home/work`` are refused, and after resolving symlinks the target must still be
inside the session's work directory (or one of the vfolders mounted into it).
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from aiohttp import BodyPartReader, MultipartReader

from .errors import FileNotFound, InvalidAPIParameters, RequestTooLarge

WORK_DIR = PurePosixPath("/home/work")
CHUNK = 256 * 1024


def confined(
    root: Path,
    path: str,
    *,
    extra_roots: Iterable[Path] = (),
    allow_work_prefix: bool = True,
    must_exist: bool = False,
) -> Path:
    """``root / path``, refusing anything that could reach outside ``root`` (and ``extra_roots``)."""
    if not isinstance(path, str) or "\x00" in path:
        raise InvalidAPIParameters("Invalid path: it must be a string without NUL characters.")
    pure = PurePosixPath(path.replace("\\", "/")) if path else PurePosixPath(".")
    if pure.is_absolute():
        if allow_work_prefix and (pure == WORK_DIR or WORK_DIR in pure.parents):
            pure = pure.relative_to(WORK_DIR)
        else:
            raise InvalidAPIParameters(f"Invalid path {path!r}: absolute paths are not allowed.")
    if ".." in pure.parts:
        raise InvalidAPIParameters(f"Invalid path {path!r}: '..' is not allowed.")
    target = root.joinpath(*pure.parts)
    real_root = root.resolve()
    allowed = [real_root, *(r.resolve() for r in extra_roots)]
    # Resolve through symlinks; the parent of a not-yet-existing target must itself be inside.
    real = target.resolve()
    if not any(real == a or a in real.parents for a in allowed):
        raise InvalidAPIParameters(f"Invalid path {path!r}: it points outside the allowed directory.")
    if must_exist and not target.exists():
        raise FileNotFound(f"{path!r} does not exist.")
    return target


async def save_uploads(
    reader: MultipartReader,
    root: Path,
    *,
    field_name: str = "src",
    extra_roots: Iterable[Path] = (),
    max_files: int = 1000,
    max_total: int = 1024**3,
) -> list[str]:
    """Store each ``src`` part of a multipart upload under ``root/<filename>``; returns the names."""
    saved: list[str] = []
    total = 0
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise InvalidAPIParameters("Nested multipart bodies are not supported.")
        if part.name != field_name or not part.filename:
            await part.release()
            continue
        # Newer aiohttp clients percent-encode the name ("lib%2Futil.py"); 19.09 sends filename*.
        filename = unquote(part.filename)
        if len(saved) >= max_files:
            raise InvalidAPIParameters(f"Too many files (at most {max_files} per request).")
        dest = confined(root, filename, extra_roots=extra_roots)
        if dest.is_dir() or dest == root:
            raise InvalidAPIParameters(f"Invalid file name {filename!r}: it is a directory.")
        dest.parent.mkdir(parents=True, exist_ok=True)
        confined(root, filename, extra_roots=extra_roots)  # re-check after mkdir
        tmp = dest.with_name(f".{dest.name}.uploading")
        try:
            with open(tmp, "wb") as f:
                while chunk := await part.read_chunk(CHUNK):
                    total += len(chunk)
                    if total > max_total:
                        raise RequestTooLarge(f"Uploads are limited to {max_total} bytes per request.")
                    f.write(chunk)
            if dest.is_symlink():
                dest.unlink()
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        saved.append(filename)
    return saved


def tar_bytes(path: Path) -> bytes:
    """A tar archive holding ``path`` (a file or a directory) under its base name; symlinks stay links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(path), arcname=path.name, recursive=True)
    return buf.getvalue()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def listing(directory: Path) -> list[dict]:
    """Entries of a directory, in the shapes both API generations use (see :func:`files_json`)."""
    entries = []
    with os.scandir(directory) as it:
        for entry in sorted(it, key=lambda e: e.name):
            st = entry.stat(follow_symlinks=False)
            if entry.is_symlink():
                kind = "SYMLINK"
                try:  # a mounted vfolder is a link to a directory: show it as one
                    if entry.is_dir(follow_symlinks=True):
                        kind = "DIRECTORY"
                        st = entry.stat(follow_symlinks=True)
                except OSError:
                    pass
            elif entry.is_dir(follow_symlinks=False):
                kind = "DIRECTORY"
            else:
                kind = "FILE"
            entries.append({"name": entry.name, "type": kind, "stat": st})
    return entries


def files_json(entries: list[dict]) -> str:
    """The ``files`` field: a JSON *string* of ``[{filename, size, mode, ctime, mtime, atime}]``."""
    return json.dumps([
        {
            "filename": e["name"],
            "size": e["stat"].st_size,
            "mode": stat.filemode(e["stat"].st_mode),
            "ctime": e["stat"].st_ctime,
            "mtime": e["stat"].st_mtime,
            "atime": e["stat"].st_atime,
        }
        for e in entries
    ])


def items(entries: list[dict]) -> list[dict]:
    """The ``items`` field of vfolder listings (API v6+)."""
    return [
        {
            "name": e["name"],
            "type": e["type"],
            "size": e["stat"].st_size,
            "mode": oct(stat.S_IMODE(e["stat"].st_mode))[2:],
            "created": _iso(e["stat"].st_ctime),
            "modified": _iso(e["stat"].st_mtime),
        }
        for e in entries
    ]
