"""When the embedded server ends a run: the kernel's execute_reply (shell) and its final idle
(IOPub) travel on different sockets and may arrive in either order; only the reply says whether a
run without an ``error`` message failed (IPython's UsageError for an unknown magic)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backend_jupyter.server.sessions import LocalSession, SessionSpec


def message(msg_type: str, parent: str, **content) -> dict:
    return {"header": {"msg_type": msg_type}, "parent_header": {"msg_id": parent}, "content": content}


@pytest.fixture
def session(tmp_path: Path):
    async def make():  # Run objects hold asyncio events: made inside a loop
        s = LocalSession(SessionSpec(owner="ak", name="s", image="python"), tmp_path)
        run = s.runs.new("r1")
        s.runs.bind(run, "m1")
        return s, run
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete(make())
    loop.close()


REPLY_ERROR = message("execute_reply", "m1", status="error", ename="UsageError", evalue="no magic")
IDLE = message("status", "m1", execution_state="idle")


@pytest.mark.parametrize("order", [(IDLE, REPLY_ERROR), (REPLY_ERROR, IDLE)], ids=["idle first", "reply first"])
def test_a_failed_reply_fails_the_run_in_either_order(session, order):
    s, run = session
    first, second = order
    handler = {"status": s._on_iopub, "execute_reply": s._on_shell}
    handler[first["header"]["msg_type"]](first)
    assert not run.done  # one of the two is not an end
    handler[second["header"]["msg_type"]](second)
    assert run.done and run.exit_code == 1


def test_a_good_reply_ends_the_run_with_exit_code_0(session):
    s, run = session
    s._on_iopub(IDLE)
    s._on_shell(message("execute_reply", "m1", status="ok"))
    assert run.done and run.exit_code == 0
