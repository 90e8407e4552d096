"""The real-manager stack for the tests in this directory (marker ``manager``).

One session-scoped fixture brings the stack up (or finds it up) and tears down what it started.
If this machine cannot run it, every test here is skipped with a one-line reason.

* they run only with ``BJ_MANAGER_TESTS=1`` (bringing the stack up from nothing takes ~9 minutes
  and ~700 MB, beyond the normal test command's budget); otherwise they are skipped;
* ``BJ_MANAGER_KEEP=1`` leaves a stack this session started running afterwards
  (``python -m tests.manager.stack down`` stops it).

Concurrent pytest runs on one machine share one stack: bring-up is serialised by an exclusive
file lock, each run then holds a shared lock, and only the run that started the stack and finds
no other holder tears it down.
"""

from __future__ import annotations

import fcntl
import os
import time

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


def pytest_configure(config):
    config.addinivalue_line("markers", "manager: conformance tests against a real Backend.AI manager 26.9.6")


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


@pytest.fixture(scope="session")
def manager_stack() -> StackInfo:
    if os.environ.get("BJ_MANAGER_TESTS", "0") != "1":
        pytest.skip("real-manager tests run with BJ_MANAGER_TESTS=1 (a ~9 minute stack bring-up)")
    LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _lock(fd, fcntl.LOCK_EX, LOCK_WAIT):
            pytest.skip(f"the manager stack is busy (lock {LOCK_PATH} held for {LOCK_WAIT // 60} min)")
        stack = Stack()
        started_here = not stack.is_up()
        try:
            info = stack.up()
        except StackUnavailable as e:
            pytest.skip(f"no real manager on this machine: {e}")
        except StackError as e:
            first = str(e).splitlines()[0]
            pytest.skip(f"the real-manager stack did not come up: {first} (logs: {stack.logs})")
        fcntl.flock(fd, fcntl.LOCK_SH)  # others may use it now; nobody tears it down under us
        yield info
        if started_here and os.environ.get("BJ_MANAGER_KEEP") != "1" and _lock(fd, fcntl.LOCK_EX, 0):
            stack.down()
    finally:
        os.close(fd)
