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

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from .errors import FileNotFound, InvalidAPIParameters, RequestTooLarge
from .params import MAX_UPLOAD, check_upload_length

WORK_DIR = PurePosixPath("/home/work")
CHUNK = 256 * 1024
NAME_MAX = 255  # bytes in one path component (Linux)
PATH_MAX = 4095  # bytes in a whole path handed to the OS (Linux, without the NUL)


def check_path_text(path: str) -> None:
    """Refuse path text the file system cannot take: NUL, unencodable characters (lone
    surrogates) and components or paths longer than the OS allows."""
    if not isinstance(path, str) or "\x00" in path:
        raise InvalidAPIParameters("Invalid path: it must be a string without NUL characters.")
    try:
        raw = os.fsencode(path)
    except UnicodeError:
        raise InvalidAPIParameters("Invalid path: it is not valid Unicode text.") from None
    if len(raw) > PATH_MAX or any(len(part) > NAME_MAX for part in raw.replace(b"\\", b"/").split(b"/")):
        raise InvalidAPIParameters(
            f"Invalid path: at most {NAME_MAX} bytes per name and {PATH_MAX} bytes in all."
        )


def confined(
    root: Path,
    path: str,
    *,
    extra_roots: Iterable[Path] = (),
    allow_work_prefix: bool = True,
    must_exist: bool = False,
) -> Path:
    """``root / path``, refusing anything that could reach outside ``root`` (and ``extra_roots``)."""
    check_path_text(path)
    pure = PurePosixPath(path.replace("\\", "/")) if path else PurePosixPath(".")
    if pure.is_absolute():
        if allow_work_prefix and (pure == WORK_DIR or WORK_DIR in pure.parents):
            pure = pure.relative_to(WORK_DIR)
        else:
            raise InvalidAPIParameters(f"Invalid path {path!r}: absolute paths are not allowed.")
    if ".." in pure.parts:
        raise InvalidAPIParameters(f"Invalid path {path!r}: '..' is not allowed.")
    target = root.joinpath(*pure.parts)
    check_path_text(str(target))
    real_root = root.resolve()
    allowed = [real_root, *(r.resolve() for r in extra_roots)]
    # Resolve through symlinks; the parent of a not-yet-existing target must itself be inside.
    try:
        real = target.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        raise InvalidAPIParameters(f"Invalid path {path!r}: it cannot be resolved (symlink loop?).") from None
    if not any(real == a or a in real.parents for a in allowed):
        raise InvalidAPIParameters(f"Invalid path {path!r}: it points outside the allowed directory.")
    if must_exist and not target.exists():
        raise FileNotFound(f"{path!r} does not exist.")
    return target


def make_parents(target: Path, name: str) -> None:
    """Create the directories above ``target`` (a clear 400 when a file is in the way)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidAPIParameters(f"Cannot create the directories of {name!r}: {e.strerror or e}.") from None


def partial_path(target: Path) -> Path:
    """Where an upload to ``target`` is written until it is complete (then it replaces ``target``)."""
    return target.with_name(f".{target.name}.uploading")


def open_new(path: Path, mode: int = 0o644) -> int:
    """A fresh regular file at ``path`` for writing (an fd).  Whatever was there is removed first
    and symlinks are never followed, so a planted link cannot redirect the write elsewhere."""
    try:
        if path.is_symlink() or path.exists():
            path.unlink()
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as e:
        raise InvalidAPIParameters(f"Cannot write {path.name!r}: {e.strerror or e}.") from None


def open_append(path: Path) -> int | None:
    """An fd appending to the regular file ``path``; None if it is missing or not a regular file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def regular_size(path: Path) -> int | None:
    """Size of ``path`` if it is a regular file (not following symlinks), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


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
        make_parents(dest, filename)
        confined(root, filename, extra_roots=extra_roots)  # re-check after mkdir
        tmp = partial_path(dest)
        fd = open_new(tmp)
        try:
            with os.fdopen(fd, "wb") as f:
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


async def save_request_uploads(request: web.Request, root: Path, *, extra_roots: Iterable[Path] = ()) -> list[str]:
    """:func:`save_uploads` of the request's body; a malformed body is the client's 400."""
    check_upload_length(request)
    try:
        return await save_uploads(await request.multipart(), root, extra_roots=extra_roots, max_total=MAX_UPLOAD)
    except (ValueError, HttpProcessingError) as e:
        detail = getattr(e, "message", None) or str(e)
        raise InvalidAPIParameters(f"Malformed multipart body: {str(detail)[:200]}") from None


def display_name(name: str) -> str:
    """``name`` as text for an HTTP header: bytes that are not UTF-8 become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def quoted_filename(name: str) -> str:
    """``name`` as a quoted-string for ``Content-Disposition`` (no control characters)."""
    text = "".join("_" if ord(c) < 32 or ord(c) == 127 else c for c in display_name(name))
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
