"""A job's journal on local disk: what the job is, and every output record it produced, in order.

A background job (``%%backend_run --bg``) outlives the process that started it, so what it
produced lives in a directory of its own under the Jupyter data directory
(``<data dir>/backend_jupyter/jobs/<name>/``):

* ``job.json``: what the job is (its session, parameters, status, times); replaced atomically.
* ``output.jsonl``: its output, one JSON object per line, appended as it arrives and flushed
  record by record, so a process killed at any moment (SIGKILL included) leaves every record it
  had received readable.  A last line cut short by the kill has no newline: readers stop before
  it, and the next writer cuts it off before appending.
* ``writer.lock``: held (``flock``) by the one process that follows the job and writes its
  journal; whoever finds it free may take over.

Readers take records from a byte offset, a bounded amount at a time, so memory stays flat
whatever the output size.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .fastjson import dumpb, loads

JOB_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
READ_CHUNK = 1 << 20  # bytes a reader takes at a time
STATUSES = ("starting", "running", "finished", "failed", "cancelled")
ENDED = frozenset({"finished", "failed", "cancelled"})


class JobExists(FileExistsError):
    """A job of that name is in the journal already."""


@dataclass
class JobInfo:
    """What ``job.json`` holds."""

    name: str
    session: str  # the session the job runs on
    endpoint: str  # the server the session lives on
    code: str = ""
    params: dict = field(default_factory=dict)  # a sweep's variables for this job
    sweep: str | None = None  # the sweep this job belongs to
    status: str = "starting"
    pid: int | None = None  # the job's process in its session
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    error: str | None = None  # why it failed or was cancelled, in words
    keep: bool = False  # its session outlives its end
    settings: dict = field(default_factory=dict)  # its session's (managed.Settings.to_dict())
    inputs: dict = field(default_factory=dict)  # -i: {variable: format}, the files in inputs/
    outputs: list = field(default_factory=list)  # -o: the variables it keeps whatever their size
    allow_pickle: bool = False
    kept: dict = field(default_factory=dict)  # the variables it kept, in vars/: {name: [format, size] | {"error"}}

    @property
    def params_text(self) -> str:
        """``lr=0.1 depth=2``: the job's sweep values, as the commands show them."""
        return " ".join(f"{k}={v!r}" for k, v in self.params.items())

    @property
    def elapsed(self) -> float:
        return (self.ended or time.time()) - (self.started or self.created)

    @classmethod
    def from_dict(cls, data: dict) -> JobInfo:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def jobs_root() -> Path:
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "backend_jupyter" / "jobs"


class Journal:
    """One job's directory: its info, its output records, its writer's lock."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.name = self.dir.name
        self._out = None  # the append handle, while this process writes
        self._lock = None

    @property
    def info_path(self) -> Path:
        return self.dir / "job.json"

    @property
    def output_path(self) -> Path:
        return self.dir / "output.jsonl"

    @property
    def inputs_dir(self) -> Path:
        return self.dir / "inputs"

    @property
    def vars_dir(self) -> Path:
        return self.dir / "vars"

    # -- info --------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, info: JobInfo) -> Journal:
        """A new journal for ``info``; :class:`JobExists` if the name is taken."""
        if not JOB_NAME_RE.match(info.name):
            raise ValueError(f"{info.name!r} is not a job name: letters, digits, '.', '_' and '-', up to 63")
        root.mkdir(parents=True, exist_ok=True)
        directory = root / info.name
        try:
            directory.mkdir(mode=0o700)  # its code, values and session settings are the user's own
        except FileExistsError:
            raise JobExists(f"A job named {info.name!r} exists already (%backend_job clean removes ended ones)") from None
        journal = cls(directory)
        journal.output_path.touch()
        journal.write_info(info)
        return journal

    def info(self) -> JobInfo:
        return JobInfo.from_dict(loads(self.info_path.read_bytes()))

    def write_info(self, info: JobInfo) -> None:
        """Replace ``job.json`` at once (a reader sees the old or the new one, never half)."""
        tmp = self.dir / f".job.json.{os.getpid()}"
        tmp.write_bytes(dumpb(asdict(info)))
        os.replace(tmp, self.info_path)

    def update(self, **changes) -> JobInfo:
        info = self.info()
        for key, value in changes.items():
            setattr(info, key, value)
        self.write_info(info)
        return info

    # -- writing ------------------------------------------------------------------------------------
    def lead(self) -> bool:
        """Become the job's one writer if nobody is (non-blocking); True when this process is."""
        if self._lock is not None:
            return True
        handle = open(self.dir / "writer.lock", "a+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock = handle
        self._open_for_append()
        return True

    def _open_for_append(self) -> None:
        """Open the output for appending, cutting off a last line a killed writer left unfinished."""
        self._out = open(self.output_path, "r+b")
        size = self._out.seek(0, os.SEEK_END)
        if size:
            back = min(size, READ_CHUNK)
            self._out.seek(size - back)
            tail = self._out.read(back)
            cut = tail.rfind(b"\n") + 1
            if cut < len(tail):
                self._out.truncate(size - back + cut)
            self._out.seek(0, os.SEEK_END)

    def append(self, records: Iterable[dict]) -> None:
        """Append records, each a line, flushed before returning (survives a kill of this process)."""
        if self._out is None:
            raise RuntimeError(f"this process does not write the journal of {self.name} (see lead())")
        data = b"".join(dumpb(record) + b"\n" for record in records)
        if data:
            self._out.write(data)
            self._out.flush()

    def append_raw(self, data: bytes) -> None:
        """Append lines already in the journal's form (complete lines), flushed before returning."""
        if self._out is None:
            raise RuntimeError(f"this process does not write the journal of {self.name} (see lead())")
        if data:
            if not data.endswith(b"\n"):
                raise ValueError("a journal takes whole lines only")
            self._out.write(data)
            self._out.flush()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    # -- reading ------------------------------------------------------------------------------------
    def size(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            return self.output_path.stat().st_size
        return 0

    def read(self, offset: int = 0, limit: int = READ_CHUNK) -> tuple[list[dict], int]:
        """The complete records from ``offset`` (up to about ``limit`` bytes) and the offset after them."""
        with open(self.output_path, "rb") as f:
            f.seek(offset)
            chunk = f.read(limit)
            end = chunk.rfind(b"\n") + 1
            if end == 0 and len(chunk) == limit:  # one record longer than limit: take it whole
                chunk += f.readline()
                end = len(chunk) if chunk.endswith(b"\n") else 0
        return [loads(line) for line in chunk[:end].splitlines() if line], offset + end

    def records(self, offset: int = 0) -> Iterator[dict]:
        """Every complete record from ``offset``, a chunk at a time."""
        while True:
            batch, offset = self.read(offset)
            if not batch:
                return
            yield from batch

    def last_record(self, window: int = READ_CHUNK) -> dict | None:
        """The journal's last complete record (None if it has none within ``window`` bytes of its end)."""
        size = self.size()
        with open(self.output_path, "rb") as f:
            f.seek(max(0, size - window))
            lines = f.read(window).split(b"\n")[:-1]  # what follows the last newline is unfinished
        for line in reversed(lines):
            with contextlib.suppress(ValueError):
                return loads(line)
        return None

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def all_journals(root: Path | None = None) -> list[Journal]:
    """Every job's journal, oldest first."""
    root = root or jobs_root()
    if not root.is_dir():
        return []
    found = []
    for directory in root.iterdir():
        journal = Journal(directory)
        with contextlib.suppress(OSError, ValueError):
            found.append((journal.info().created, journal))
    return [journal for _, journal in sorted(found, key=lambda pair: pair[0])]


def find(name: str, root: Path | None = None) -> Journal:
    journal = Journal((root or jobs_root()) / name)
    if not journal.info_path.is_file():
        raise KeyError(name)
    return journal
