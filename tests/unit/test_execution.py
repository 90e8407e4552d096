"""execution.py without a session: console records → events, run statuses → events, the held
traceback, and how a run's end is reported (conclude)."""

from __future__ import annotations

import asyncio

import pytest

from backend_jupyter.client.errors import ServerError, SessionNotFound
from backend_jupyter.execution import (
    Display,
    Finished,
    InputRequest,
    Output,
    RunFailed,
    RunLost,
    StepFinished,
    TracebackHold,
    conclude,
    console_events,
    result_events,
)

# What IPython prints for `1/0` in a session (coloured, as the remote stderr carries it).
IPYTHON_TB = (
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m\n"
    "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)\n"
    "Cell \x1b[0;32mIn[1], line 1\x1b[0m\n"
    "\x1b[0;32m----> 1\x1b[0m \x1b[38;5;241m1\x1b[39m\x1b[38;5;241m/\x1b[39m\x1b[38;5;241m0\x1b[39m\n"
    "\n"
    "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero\n"
)
PLAIN_TB = (
    "Traceback (most recent call last):\n"
    '  File "/home/work/main.py", line 3, in <module>\n'
    "    raise ValueError('bad value: 3')\n"
    "ValueError: bad value: 3\n"
)


def in_loop(fn, *args, **kwargs):
    """Call ``fn`` inside a running event loop (InputRequest creates a future)."""
    async def call():
        return fn(*args, **kwargs)
    return asyncio.run(call())


# -- console_events ---------------------------------------------------------------------------------

def test_console_records_become_events_in_order():
    console = [
        ["stdout", "a\n"],
        ["stderr", "warn\n"],
        ["media", ["image/png", "data:image/png;base64,iVBO"]],
        ["html", "<b>x</b>"],
        ["stdout", "b\n"],
    ]
    events, prompt = console_events(console)
    assert events == [
        Output("stdout", "a\n"),
        Output("stderr", "warn\n"),
        Display("media", ["image/png", "data:image/png;base64,iVBO"]),
        Display("html", "<b>x</b>"),
        Output("stdout", "b\n"),
    ]
    assert prompt == ""


def test_empty_stream_text_and_malformed_records_are_skipped():
    console = [["stdout", ""], "garbage", ["stdout"], ["a", "b", "c"], None, 7, ["stderr", "e"], ("log", [1, 2, 3, 4])]
    events, _ = console_events(console)
    assert events == [Output("stderr", "e"), Display("log", [1, 2, 3, 4])]


def test_prompt_is_the_trailing_partial_stdout_line_on_waiting_input():
    events, prompt = console_events([["stderr", "x\n"], ["stdout", "hello\nworld\nname? "]], waiting_input=True)
    assert prompt == "name? "
    assert events == [Output("stderr", "x\n"), Output("stdout", "hello\nworld\n")]


def test_prompt_without_earlier_lines_leaves_no_empty_output():
    events, prompt = console_events([["stdout", "name? "]], waiting_input=True)
    assert (events, prompt) == ([], "name? ")


def test_no_prompt_when_stdout_ends_with_newline_or_last_record_is_not_stdout():
    assert console_events([["stdout", "line\n"]], waiting_input=True) == ([Output("stdout", "line\n")], "")
    events, prompt = console_events([["stdout", "name? "], ["stderr", "e"]], waiting_input=True)
    assert prompt == "" and events == [Output("stdout", "name? "), Output("stderr", "e")]


def test_prompt_is_not_split_off_unless_waiting_for_input():
    assert console_events([["stdout", "a\npartial"]]) == ([Output("stdout", "a\npartial")], "")


# -- result_events ----------------------------------------------------------------------------------

def test_finished_ends_with_its_exit_code_after_the_console():
    events = result_events({"status": "finished", "exitCode": 3, "console": [["stdout", "x"]]})
    assert events == [Output("stdout", "x"), Finished(3, "finished")]


def test_exec_timeout_finishes_without_exit_code():
    assert result_events({"status": "exec-timeout", "exitCode": 1, "console": []}) == [Finished(None, "exec-timeout")]


@pytest.mark.parametrize("status", ["clean-finished", "build-finished"])
def test_batch_steps(status):
    events = result_events({"status": status, "exitCode": 2, "console": [["stdout", "built\n"]]})
    assert events == [Output("stdout", "built\n"), StepFinished(status, 2)]


def test_continued_adds_nothing_and_tolerates_missing_console():
    assert result_events({"status": "continued", "console": [["stdout", "x"]]}) == [Output("stdout", "x")]
    assert result_events({"status": "continued", "console": None}) == []
    assert result_events({"status": "continued"}) == []


def test_waiting_input_asks_with_the_prompt_and_password_flag():
    events = in_loop(result_events, {"status": "waiting-input", "console": [["stdout", "hi\nPassword: "]],
                                     "options": {"is_password": True}})
    assert events[0] == Output("stdout", "hi\n")
    assert len(events) == 2 and isinstance(events[1], InputRequest)
    assert (events[1].prompt, events[1].password) == ("Password: ", True)

    plain = in_loop(result_events, {"status": "waiting-input", "console": [["stdout", "name? "]], "options": None})
    assert len(plain) == 1 and (plain[0].prompt, plain[0].password) == ("name? ", False)


def test_input_request_answer_and_cancel():
    async def scenario():
        first = InputRequest("p", False)
        first.answer("alice")
        first.answer("bob")  # the first answer stands
        second = InputRequest("p", False)
        second.cancel()
        second.answer("late")
        return await first.wait(), await second.wait()
    assert asyncio.run(scenario()) == ("alice", None)


@pytest.mark.parametrize("status", ["bogus", None, "error"])
def test_unknown_status_fails_the_run_as_lost(status):
    events = result_events({"status": status, "console": [["stdout", "x"]]})
    assert events[0] == Output("stdout", "x")
    assert len(events) == 2 and isinstance(events[1], RunFailed)
    assert isinstance(events[1].error, RunLost) and repr(status) in events[1].error.message


# -- TracebackHold ----------------------------------------------------------------------------------

def test_plain_stderr_passes_through():
    hold = TracebackHold()
    assert hold.feed("warning: x\n") == "warning: x\n"
    assert hold.feed("File not found: a.txt\n") == "File not found: a.txt\n"  # not a traceback frame
    assert hold.release() == ""


@pytest.mark.parametrize("traceback", [IPYTHON_TB, PLAIN_TB], ids=["ipython", "plain"])
def test_a_traceback_is_held_until_release(traceback):
    hold = TracebackHold()
    assert hold.feed("before\n") == "before\n"
    head, tail = traceback[: len(traceback) // 2], traceback[len(traceback) // 2:]
    cut = head.rfind("\n") + 1  # feed whole lines, as the server sends them
    head, tail = head[:cut], head[cut:] + tail
    assert hold.feed("more\n" + head) == "more\n"
    assert hold.feed(tail) == ""
    assert hold.feed("after\n") == ""  # once held, everything after stays with it
    assert hold.release() == traceback + "after\n"
    assert hold.release() == ""
    assert hold.feed("next\n") == "next\n"


@pytest.mark.parametrize("traceback", [IPYTHON_TB, PLAIN_TB], ids=["ipython", "plain"])
def test_a_traceback_cut_anywhere_is_held_whole(traceback):
    """Output arrives in pieces cut at any byte, also inside the traceback's first line or one of
    its colour codes: none of the traceback leaks out as plain stderr."""
    text = "before\n" + traceback
    for cut in range(len("before\n") + 1, len(text)):
        hold = TracebackHold()
        shown = hold.feed(text[:cut]) + hold.feed(text[cut:])
        assert shown == "before\n", (cut, shown)
        assert hold.release() == traceback


def test_unfinished_lines_that_cannot_start_a_traceback_pass_at_once():
    hold = TracebackHold()
    assert hold.feed(" 10%|█         | 1/10\r 20%|██        | 2/10") == " 10%|█         | 1/10\r 20%|██        | 2/10"
    assert hold.feed("\rdone\nTrace") == "\rdone\n"  # may be "Traceback (most recent call last):"
    assert hold.feed("s of a run\n") == "Traces of a run\n"  # it was not
    assert hold.feed("Fil") == "" and hold.feed("e saved\n") == "File saved\n"
    assert hold.feed("\x1b[0;3") == ""  # cut inside a colour code
    assert hold.feed("2mwarning\n") == "\x1b[0;32mwarning\n"
    assert hold.release() == ""


# -- conclude -----------------------------------------------------------------------------------------

def test_ok_run_keeps_held_stderr_as_output():
    outcome = conclude(Finished(0), None, PLAIN_TB)
    assert outcome.ok and outcome.stderr == PLAIN_TB and outcome.ename == "" and not outcome.session_gone


def test_failure_is_the_error():
    failure = ServerError(503, {"title": "busy"})
    outcome = conclude(Finished(0), failure, "held\n")
    assert not outcome.ok
    assert (outcome.ename, outcome.evalue, outcome.stderr) == ("ServerError", str(failure), "held\n")
    assert not outcome.session_gone
    gone = conclude(None, SessionNotFound(404, {"title": "no such session"}), "")
    assert gone.ename == "SessionNotFound" and gone.session_gone


def test_exec_timeout():
    outcome = conclude(Finished(None, "exec-timeout"), None, "partial\n")
    assert not outcome.ok and outcome.ename == "TimeoutError"
    assert "time limit" in outcome.evalue and outcome.stderr == "partial\n"


def test_held_ipython_traceback_becomes_the_error_and_earlier_stderr_is_kept():
    outcome = conclude(Finished(1), None, "loading...\n" + IPYTHON_TB)
    assert not outcome.ok
    assert (outcome.ename, outcome.evalue) == ("ZeroDivisionError", "division by zero")
    assert outcome.stderr == "loading...\n"
    assert outcome.traceback == IPYTHON_TB.rstrip("\n").split("\n")  # colours kept for the front-end
    assert "\x1b[0;31m" in outcome.traceback[0]


def test_held_plain_traceback():
    outcome = conclude(Finished(1), None, "noise\n" + PLAIN_TB)
    assert (outcome.ename, outcome.evalue, outcome.stderr) == ("ValueError", "bad value: 3", "noise\n")
    assert outcome.traceback[0] == "Traceback (most recent call last):"


def test_interrupted_run():
    cut_short = "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
    assert conclude(Finished(1), None, cut_short, interrupted=True).ename == "KeyboardInterrupt"
    assert conclude(Finished(1), None, cut_short).ename == "RemoteError"
    # a real exception in the traceback keeps its name even when interrupted
    assert conclude(Finished(1), None, PLAIN_TB, interrupted=True).ename == "ValueError"
    outcome = conclude(None, None, "partial\n", interrupted=True)
    assert (outcome.ename, outcome.evalue, outcome.stderr) == ("KeyboardInterrupt", "Interrupted", "partial\n")


def test_exit_code_130_means_the_session_died():
    outcome = conclude(Finished(130), None, "")
    assert not outcome.ok and outcome.ename == "RemoteSessionDied" and outcome.session_gone


@pytest.mark.parametrize("exit_code", [1, 2, 137, None])
def test_other_exit_codes_are_remote_errors(exit_code):
    outcome = conclude(Finished(exit_code), None, "stderr\n")
    assert not outcome.ok and outcome.ename == "RemoteError" and not outcome.session_gone
    assert f"exit code {exit_code}" in outcome.evalue and outcome.stderr == "stderr\n"
