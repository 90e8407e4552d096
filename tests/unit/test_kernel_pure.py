"""The kernel's pure parts: the name Shift+Tab asks about, the argv clean-up, the input history."""

from __future__ import annotations

import pytest

from backend_jupyter.kernel import (
    HISTORY_SESSION,
    InputHistory,
    _name_at,
    last_option_wins,
)


def at_bar(text: str) -> str:
    """``_name_at`` with the cursor where ``|`` is (at the end without one)."""
    cursor = text.find("|")
    if cursor < 0:
        return _name_at(text, len(text))
    return _name_at(text.replace("|", "", 1), cursor)


@pytest.mark.parametrize("text, name", [
    ("np.linalg.no|rm(x)", "np.linalg.norm"),
    ("np.linalg.norm(", "np.linalg.norm"),  # after the open parenthesis
    ("len(  ", "len"),
    ("a.b(c.d(", "c.d"),  # the innermost call
    ("x = foo.bar", "foo.bar"),
    ("print(a, b", "b"),
    ("os.", "os"),  # a trailing dot is dropped
    ("|x_1.y", "x_1.y"),  # at the start of the name
    ("obj.me|thod(arg).attr", "obj.method"),
    ("import os\nos.path.jo", "os.path.jo"),  # the cursor's line only
    ("imp|ort os\nos.path.join", "import"),
    ("f(x)  ", ""),
    ("1 + ", ""),
    ("", ""),
])
def test_name_at_the_cursor(text, name):
    assert at_bar(text) == name


def test_last_option_wins_keeps_order_and_adding_options():
    argv = ["prog", "-f", "conn.json",
            "--BackendKernel.image=python:3.9", "--BackendKernel.environ=A=1",
            "--BackendKernel.resources=cpu=1", "--BackendKernel.transport=ws",
            "--BackendKernel.image=python:3.11", "--BackendKernel.environ=B=2",
            "--BackendKernel.resources=mem=2g", "--other=1", "--other=2"]
    assert last_option_wins(argv) == [
        "prog", "-f", "conn.json",
        "--BackendKernel.environ=A=1", "--BackendKernel.resources=cpu=1", "--BackendKernel.transport=ws",
        "--BackendKernel.image=python:3.11", "--BackendKernel.environ=B=2",
        "--BackendKernel.resources=mem=2g", "--other=1", "--other=2",
    ]
    assert last_option_wins([]) == []


# -- InputHistory ------------------------------------------------------------------------------------

@pytest.fixture
def history() -> InputHistory:
    h = InputHistory()
    for count, code in [(1, "a = 1"), (2, "print(a)"), (3, "a = 1"), (5, "b = 2"), (6, "print(b)")]:
        h.add(count, code)
    return h


def triples(*pairs):
    return [(HISTORY_SESSION, count, code) for count, code in pairs]


def test_tail(history):
    assert history.query("tail", n=2) == triples((5, "b = 2"), (6, "print(b)"))
    assert history.query("tail", n=None) == triples((1, "a = 1"), (2, "print(a)"), (3, "a = 1"),
                                                    (5, "b = 2"), (6, "print(b)"))
    assert history.query("tail", n=10) == history.query("tail")


def test_range_stop_is_exclusive(history):
    assert history.query("range", start=2, stop=5) == triples((2, "print(a)"), (3, "a = 1"))
    assert history.query("range", start=5) == triples((5, "b = 2"), (6, "print(b)"))
    assert history.query("range", stop=2) == triples((1, "a = 1"))
    assert [c for _, c, _ in history.query("range", session=0)] == [1, 2, 3, 5, 6]
    assert [c for _, c, _ in history.query("range", session=HISTORY_SESSION, start=6)] == [6]


@pytest.mark.parametrize("session", [2, -1])
def test_range_of_another_session_is_empty(history, session):
    assert history.query("range", session=session, start=1, stop=10) == []


def test_search(history):
    assert history.query("search", pattern="print*") == triples((2, "print(a)"), (6, "print(b)"))
    assert history.query("search", pattern="a = ?") == triples((1, "a = 1"), (3, "a = 1"))
    assert history.query("search", pattern="a = ?", unique=True) == triples((3, "a = 1"))
    assert history.query("search", pattern="*", n=2) == triples((5, "b = 2"), (6, "print(b)"))
    assert history.query("search", pattern="*", unique=True, n=3) == triples((3, "a = 1"), (5, "b = 2"), (6, "print(b)"))
    assert history.query("search", pattern="A*") == []  # case-sensitive
    assert len(history.query("search")) == 5  # no pattern: everything


def test_output_shape(history):
    assert history.query("tail", n=1, output=True) == [(HISTORY_SESSION, 6, ("print(b)", None))]
    assert history.query("range", start=1, stop=2, output=True) == [(HISTORY_SESSION, 1, ("a = 1", None))]


def test_unknown_access_and_limit():
    h = InputHistory(limit=2)
    for i in range(1, 5):
        h.add(i, f"x{i}")
    assert h.query("tail") == triples((3, "x3"), (4, "x4"))
    assert h.query("nonsense") == []
