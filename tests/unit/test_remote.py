"""remote.py without a session: the snippets are valid Python with their parameters, the transport
choice, and the display adapter's message rewriting run against a small stand-in for IPython."""

from __future__ import annotations

import ast
import json
import threading
import types

import pytest

from backend_jupyter.display import record_output
from backend_jupyter.protocol import OUTPUT_LIMIT, OUTPUT_MARK, OUTPUT_MIME
from backend_jupyter.remote import (
    ADAPTER,
    ADAPTER_VERSION,
    SNIPPET_MARKER,
    inspect_snippet,
    run_transport,
    snippet,
)
from backend_jupyter.server.records import bundle_to_record


def snippet_defaults(code: str) -> dict:
    """The default arguments (params, marker) of the snippet's function, read from its AST."""
    tree = ast.parse(code)
    (func,) = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert func.name == "__bj_snippet"
    names = [a.arg for a in func.args.args]
    return dict(zip(names, (ast.literal_eval(d) for d in func.args.defaults), strict=True))


def test_snippet_is_valid_python_with_its_parameters():
    code = snippet("    print(params['x'])\n", {"x": [1, "two"]})
    assert snippet_defaults(code) == {"params": {"x": [1, "two"]}, "marker": SNIPPET_MARKER}
    tree = ast.parse(code)
    assert isinstance(tree.body[-1], ast.Delete)  # the function does not stay in the user's namespace
    assert "__BJ_" not in code


def test_adapter_embeds_its_parameters():
    assert snippet_defaults(ADAPTER) == {
        "params": {"version": ADAPTER_VERSION, "mime": OUTPUT_MIME, "mark": OUTPUT_MARK, "limit": OUTPUT_LIMIT},
        "marker": SNIPPET_MARKER,
    }


@pytest.mark.parametrize("name", ["np.linalg.norm", "x'); import os; ('", 'a"""b', "\\n"])
def test_inspect_snippet_quotes_any_name(name):
    assert snippet_defaults(inspect_snippet(name, 1)) == {"params": {"name": name, "level": 1}, "marker": SNIPPET_MARKER}
    assert snippet_defaults(inspect_snippet(name, True))["params"]["level"] == 1


@pytest.mark.parametrize("configured, adapter, expected", [
    ("auto", True, "auto"),
    ("auto", False, "poll"),
    ("ws", False, "ws"),
    ("ws", True, "ws"),
    ("poll", True, "poll"),
    ("poll", False, "poll"),
])
def test_run_transport(configured, adapter, expected):
    assert run_transport(configured, adapter) == expected


# -- the snippets run against a stand-in for the session's IPython ------------------------------------

class FakeEvents:
    def __init__(self):
        self.callbacks: dict[str, list] = {}

    def register(self, event, fn):
        self.callbacks.setdefault(event, []).append(fn)

    def unregister(self, event, fn):
        self.callbacks[event].remove(fn)


class FakeDisplayPub:
    """ipykernel's ZMQDisplayPublisher keeps its hooks in a thread-local list."""

    def __init__(self):
        self._thread_local = threading.local()
        self._thread_local.hooks = []

    @property
    def _hooks(self):
        if not hasattr(self._thread_local, "hooks"):
            self._thread_local.hooks = []
        return self._thread_local.hooks

    def register_hook(self, hook):
        self._hooks.append(hook)


class FakeDisplayHook:
    def __init__(self):
        self.msg = None
        self.finished_with: list = []

    def finish_displayhook(self):
        self.finished_with.append(self.msg)
        self.msg = None


class FakeIPython:
    def __init__(self):
        self.display_pub = FakeDisplayPub()
        self.displayhook = FakeDisplayHook()
        self.events = FakeEvents()
        self.execution_count = 5
        self.user_ns = {"_i": "previous", "_ii": "older", "_i5": "<the snippet>"}
        self.history_manager = types.SimpleNamespace(
            input_hist_parsed=["", "a = 1", "<the snippet>"], input_hist_raw=["", "a = 1", "<the snippet>"],
            db_input_cache_lock=threading.Lock(), db_input_cache=[(4, "a = 1", "a = 1"), (5, "<the snippet>", "")],
            enabled=False, session_number=1,
        )
        self.inspected: list = []

    def object_inspect_mime(self, name, detail_level=0):
        self.inspected.append((name, detail_level))
        return {"text/plain": f"Docstring of {name}"}


def run_in(ip: FakeIPython, code: str, capsys) -> str:
    exec(compile(code, "<snippet>", "exec"), {"get_ipython": lambda: ip})  # noqa: S102 - our own snippet
    return capsys.readouterr().out


@pytest.fixture
def ip():
    return FakeIPython()


@pytest.fixture
def adapt(ip, capsys):
    assert run_in(ip, ADAPTER, capsys) == SNIPPET_MARKER + '"installed"\n'
    (hook,) = ip.display_pub._hooks
    return hook


def test_adapter_installs_once(ip, capsys, adapt):
    assert ip._backend_jupyter_adapter == ADAPTER_VERSION
    assert run_in(ip, ADAPTER, capsys) == SNIPPET_MARKER + '"installed"\n'
    assert ip.display_pub._hooks == [adapt]  # the second install changed nothing


def test_adapter_hook_serves_every_thread(ip, adapt):
    seen = []
    thread = threading.Thread(target=lambda: seen.append(list(ip.display_pub._hooks)))
    thread.start()
    thread.join()
    assert seen == [[adapt]]


def test_adapter_refuses_an_ipython_without_hooks(capsys):
    bare = FakeIPython()
    bare.display_pub = object()
    assert run_in(bare, ADAPTER, capsys) == SNIPPET_MARKER + '"unsupported"\n'
    assert not hasattr(bare, "_backend_jupyter_adapter")


def test_snippet_undoes_its_traces_after_the_cell(ip, adapt):
    (undo,) = ip.events.callbacks["post_run_cell"]
    ip.execution_count = 6  # IPython counted the snippet's cell
    ip.user_ns.update(_i="<the snippet>", _ii="previous", _iii="older")
    undo(types.SimpleNamespace(info=types.SimpleNamespace(store_history=True)))
    hm = ip.history_manager
    assert ip.execution_count == 5
    assert hm.input_hist_parsed == ["", "a = 1"] and hm.input_hist_raw == ["", "a = 1"]
    assert hm.db_input_cache == [(4, "a = 1", "a = 1")]
    assert "_i5" not in ip.user_ns and (ip.user_ns["_i"], ip.user_ns["_ii"]) == ("previous", "older")
    assert ip.events.callbacks["post_run_cell"] == []


def test_snippet_not_stored_in_history_leaves_history_alone(ip, adapt):
    (undo,) = ip.events.callbacks["post_run_cell"]
    undo(types.SimpleNamespace(info=types.SimpleNamespace(store_history=False)))
    assert len(ip.history_manager.input_hist_raw) == 3 and ip.events.callbacks["post_run_cell"] == []


def message(kind, content):
    return {"header": {"msg_type": kind}, "msg_type": kind, "content": content, "metadata": {}}


def arrived(msg):
    """What the front-end makes of an adapted message after the embedded server and agent."""
    assert msg["msg_type"] == msg["header"]["msg_type"] == "display_data"
    assert msg["content"]["metadata"] == {OUTPUT_MARK: 1} and msg["content"]["transient"] == {}
    assert list(msg["content"]["data"]) == ["text/html"]
    record = bundle_to_record(msg["content"]["data"], msg["content"]["metadata"])
    assert record[0] == "media" and record[1][0] == OUTPUT_MIME
    return record_output(*record)


def test_stream_and_other_messages_pass_unchanged(adapt):
    for kind in ("stream", "error", "status"):
        msg = message(kind, {"name": "stdout", "text": "x"})
        assert adapt(msg) is msg and msg == message(kind, {"name": "stdout", "text": "x"})


def test_display_data_with_every_type_and_display_id(adapt):
    data = {"text/plain": "T", "text/markdown": "# T", "text/latex": "$T$", "application/json": {"a": [1]}}
    msg = adapt(message("display_data", {"data": data, "metadata": {"isolated": True},
                                         "transient": {"display_id": "d1"}}))
    envelope = json.loads(msg["content"]["data"]["text/html"])
    assert envelope == {"type": OUTPUT_MIME, "data": {"output_type": "display_data", "data": data,
                                                      "metadata": {"isolated": True}, "display_id": "d1"}}
    out = arrived(msg)
    assert out.content() == {"data": data, "metadata": {"isolated": True}, "transient": {"display_id": "d1"}}


def test_update_display_data_and_clear_output(adapt):
    out = arrived(adapt(message("update_display_data", {"data": {"text/plain": "2"}, "metadata": {},
                                                        "transient": {"display_id": "d1"}})))
    assert (out.output_type, out.display_id, out.data) == ("update_display_data", "d1", {"text/plain": "2"})
    clear = arrived(adapt(message("clear_output", {"wait": True})))
    assert clear.output_type == "clear_output" and clear.content() == {"wait": True}


def test_bytes_travel_as_base64(adapt):
    out = arrived(adapt(message("display_data", {"data": {"image/png": b"\x89PNG"}, "metadata": {}})))
    assert out.data == {"image/png": "iVBORw=="}


def test_execute_result_through_the_displayhook(ip, adapt):
    hook = ip.displayhook
    hook.msg = message("execute_result", {"data": {"text/plain": "42", "text/html": "<b>42</b>"},
                                          "metadata": {}, "execution_count": 3})
    hook.finish_displayhook()
    (sent,) = hook.finished_with
    out = arrived(sent)
    assert (out.output_type, out.execution_count) == ("execute_result", 3)
    assert out.content(execution_count=8) == {"data": {"text/plain": "42", "text/html": "<b>42</b>"},
                                              "metadata": {}, "execution_count": 8}
    # a result with nothing to show is left alone
    hook.msg = message("execute_result", {"data": {}, "metadata": {}, "execution_count": 4})
    hook.finish_displayhook()
    assert hook.finished_with[-1]["msg_type"] == "execute_result"


def test_an_output_over_the_limit_becomes_a_note(adapt):
    huge = "x" * (OUTPUT_LIMIT + 1)
    out = arrived(adapt(message("display_data", {"data": {"text/plain": huge}, "metadata": {"m": 1},
                                                 "transient": {"display_id": "big"}})))
    assert out.display_id == "big" and out.metadata == {}
    (note,) = out.data.values()
    assert list(out.data) == ["text/plain"]
    assert note.startswith("[This output (16.00 MiB) is larger than the 16 MiB a Backend.AI session sends")


def test_inspect_snippet_prints_the_bundle_after_the_marker(ip, capsys):
    out = run_in(ip, inspect_snippet("np.linalg.norm", 1), capsys)
    assert ip.inspected == [("np.linalg.norm", 1)]
    assert out == SNIPPET_MARKER + json.dumps({"text/plain": "Docstring of np.linalg.norm"}) + "\n"
