"""The real-manager stack for the tests in this directory (marker ``manager``).

They are part of the normal test command: when any of them is selected, the stack is brought up in
a background thread as soon as collection ends (venv ~1.5 min on a fresh machine, bring-up ~1 min),
so that it overlaps the rest of the suite; these tests are moved to the end of the run, and the
first of them waits for the stack.  If this machine cannot run it (no root for the Debian packages,
no Python 3.13, no ``unshare``, ...) every test here is skipped with a one-line reason.

* ``BJ_MANAGER_TESTS=0`` skips them; ``=1`` turns "cannot run here" into a failure instead of a skip;
* ``BJ_MANAGER_KEEP=1`` leaves a stack this session started running afterwards
  (``python -m tests.manager.stack down`` stops it).

Concurrent pytest runs on one machine share one stack: bring-up is serialised by an exclusive
file lock, each run then holds a shared lock, and only the run that started the stack and finds
no other holder tears it down.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from tests.manager.stack import (
    STACK_DIR,
    Stack,
    StackError,
    StackInfo,
    StackUnavailable,
)

LOCK_PATH = STACK_DIR.parent / (STACK_DIR.name + ".lock")
LOCK_WAIT = 30 * 60  # another run may be building the venv and starting the stack
HERE = Path(__file__).parent


def mode() -> str:
    return os.environ.get("BJ_MANAGER_TESTS", "auto")


def _lock(fd: int, mode: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(1.0)


class Lease:
    """This run's use of the stack: brought up (or found up) in a background thread, released at
    the end of the run (torn down if this run started it and no other run holds it)."""

    def __init__(self):
        self.thread: threading.Thread | None = None
        self.info: StackInfo | None = None
        self.unavailable = ""  # why the tests cannot run here (a skip)
        self.failed = ""  # why the bring-up failed (an error)
        self.stack: Stack | None = None
        self.started_here = False
        self.fd: int | None = None

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._up, name="manager-stack", daemon=True)
            self.thread.start()

    def _up(self) -> None:
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
        if not _lock(self.fd, fcntl.LOCK_EX, LOCK_WAIT):
            self.unavailable = f"the manager stack is busy (lock {LOCK_PATH} held for {LOCK_WAIT // 60} min)"
            return
        self.stack = Stack()
        self.started_here = not self.stack.is_up()
        try:
            self.info = self.stack.up()
        except StackUnavailable as e:
            self.unavailable = f"no real manager on this machine: {e}"
        except StackError as e:
            self.failed = f"the real-manager stack did not come up: {str(e).splitlines()[0]} (logs: {self.stack.logs})"
        except Exception as e:  # never leave the waiting tests without an answer
            self.failed = f"the real-manager stack did not come up: {type(e).__name__}: {e}"
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_SH)  # others may use it now; nobody tears it down under us

    def wait(self) -> StackInfo:
        self.start()
        self.thread.join()
        if self.unavailable:
            if mode() == "1":
                pytest.fail(self.unavailable)
            pytest.skip(self.unavailable)
        if self.failed:
            pytest.fail(self.failed)
        return self.info

    def release(self) -> None:
        if self.thread is None:
            return
        self.thread.join(60)  # the run may end (or be interrupted) while the stack still comes up
        if self.thread.is_alive():
            if self.stack is not None and self.started_here:
                self.stack.down(quiet=True)  # what was started so far; the bring-up then fails
            return
        if (self.info is not None and self.started_here and os.environ.get("BJ_MANAGER_KEEP") != "1"
                and _lock(self.fd, fcntl.LOCK_EX, 0)):
            self.stack.down()
        if self.fd is not None:
            os.close(self.fd)


LEASE = Lease()


def _is_manager_test(item) -> bool:
    return HERE in Path(str(item.fspath)).parents


def pytest_configure(config):
    config.addinivalue_line("markers", "manager: conformance tests against a real Backend.AI manager 26.9.6")


def pytest_collection_modifyitems(session, config, items):
    """Run these tests last, so that the stack comes up while the rest of the suite runs."""
    items.sort(key=_is_manager_test)  # stable: the order within each part is kept


def pytest_collection_finish(session):
    if (mode() != "0" and not session.config.option.collectonly
            and any(_is_manager_test(item) for item in session.items)):
        LEASE.start()


def pytest_sessionfinish(session, exitstatus):
    LEASE.release()


@pytest.fixture(scope="session")
def manager_stack() -> StackInfo:
    if mode() == "0":
        pytest.skip("real-manager tests are off (BJ_MANAGER_TESTS=0)")
    return LEASE.wait()
