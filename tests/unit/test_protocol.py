"""protocol.py: the name patterns both sides check (docs/protocol.md)."""

from __future__ import annotations

import pytest

from backend_jupyter.protocol import (
    RUN_ID_RE,
    SESSION_NAME_RE,
    STEPS,
    TERMINAL,
    VFOLDER_NAME_RE,
)


@pytest.mark.parametrize("name", ["abcd", "a" * 64, "my-session.1", "s_1-x", "0abc", "a.b-c_d9", "_ab_"])
def test_session_names_accepted(name):
    assert SESSION_NAME_RE.match(name)


@pytest.mark.parametrize("name", [
    "abc",  # too short
    "a" * 65,  # too long
    "-abc", ".abc", "abc-", "abc.",  # must start and end with a letter, digit or '_'
    "ab cd", "ab/cd", "ab:cd",
    "séance", "abcé",  # ASCII only
    "",
])
def test_session_names_refused(name):
    assert not SESSION_NAME_RE.match(name)


@pytest.mark.parametrize("pattern", [SESSION_NAME_RE, RUN_ID_RE, VFOLDER_NAME_RE], ids=["session", "run", "vfolder"])
def test_a_trailing_newline_is_refused(pattern):
    assert not pattern.match("abcd\n")


@pytest.mark.parametrize("run_id", ["a", "3f9c0a1b2c3d4e5f", "x" * 64, "run:1.2-3_4"])
def test_run_ids_accepted(run_id):
    assert RUN_ID_RE.match(run_id)


@pytest.mark.parametrize("run_id", ["", "x" * 65, "a b", "a/b", "ä", "a;b"])
def test_run_ids_refused(run_id):
    assert not RUN_ID_RE.match(run_id)


@pytest.mark.parametrize("name, ok", [
    ("data", True), (".cache", True), ("_x", True), ("a-b.c_d", True), ("x" * 64, True),
    ("-data", False), ("x" * 65, False), ("a b", False), ("a/b", False), ("", False),
])
def test_vfolder_names(name, ok):
    assert bool(VFOLDER_NAME_RE.match(name)) is ok


def test_run_statuses():
    assert TERMINAL == {"finished", "exec-timeout"}
    assert STEPS == {"clean-finished", "build-finished"}
