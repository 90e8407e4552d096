"""Code the front-ends run in a session's IPython, out of the user's sight.

Each snippet is one cell that undoes its own traces once it has run (its history entry, the
execution count it used, the ``_i`` variables), so the user's ``In[n]``/``Out[n]`` numbering and
``%history`` stay as if it never ran.

* :data:`ADAPTER` — **the remote display adapter** (see docs/rich-output.md).  Backend.AI's kernel
  runner keeps only the first non-``text/plain`` type of each output, turns ``execute_result`` into
  plain stdout, drops Markdown, LaTeX, JSON, display updates and ``clear_output``, and sends HTML raw
  where the agent expects JSON (which breaks the run).  The adapter rewrites every rich output
  message of the session's IPython into one ``display_data`` whose only type is ``text/html`` and
  whose value is the JSON ``{"type": OUTPUT_MIME, "data": {output_type, data, metadata, display_id,
  execution_count, wait}}``: the runner passes that string on, the agent parses it into the console
  record ``["media", [OUTPUT_MIME, {...}]]``, and the front-end renders the whole output again.
* :data:`INSPECT` — Shift+Tab: the inspection bundle of a name, printed after a marker.
"""

from __future__ import annotations

import asyncio
import json
import logging

from .client.errors import BackendError
from .client.session import ComputeSession
from .execution import Finished, Output, run_cell
from .protocol import OUTPUT_LIMIT, OUTPUT_MARK, OUTPUT_MIME

log = logging.getLogger("backend_jupyter.remote")

SNIPPET_MARKER = "\x1eBACKEND_JUPYTER\x1e"
ADAPTER_VERSION = 1
INSTALL_TIMEOUT = 30.0

# The frame of every snippet: ``__bj_invisible()`` registers the undo of this cell's traces.
_FRAME = """\
def __bj_snippet(params=__BJ_PARAMS__, marker=__BJ_MARKER__):
    import json
    ip = get_ipython()

    def __bj_invisible():
        ns = ip.user_ns
        saved = {k: ns[k] for k in ('_i', '_ii', '_iii') if k in ns}
        count = ip.execution_count

        def undo(result=None):
            ip.events.unregister('post_run_cell', undo)
            info = getattr(result, 'info', None)
            if info is not None and not getattr(info, 'store_history', True):
                return  # nothing was recorded
            hm = ip.history_manager
            for hist in (hm.input_hist_parsed, hm.input_hist_raw):
                if hist:
                    hist.pop()
            with hm.db_input_cache_lock:  # not yet written: drop it; written already: delete the row
                mine = [entry for entry in hm.db_input_cache if entry[0] == count]
                for entry in mine:
                    hm.db_input_cache.remove(entry)
                if not mine and hm.enabled:
                    try:
                        with hm.db:
                            hm.db.execute('DELETE FROM history WHERE session = ? AND line = ?',
                                          (hm.session_number, count))
                    except Exception:
                        pass
            ns.pop('_i%d' % count, None)
            ns.update(saved)
            ip.execution_count = count
        ip.events.register('post_run_cell', undo)

    __bj_invisible()
__BJ_BODY__
__bj_snippet()
del __bj_snippet
"""

_ADAPTER_BODY = """\
    import base64, types
    if getattr(ip, '_backend_jupyter_adapter', None) == params['version']:
        print(marker + json.dumps('installed'))
        return
    mime, mark, limit = params['mime'], params['mark'], params['limit']
    kinds = ('display_data', 'update_display_data', 'execute_result', 'clear_output')

    def default(value):
        if isinstance(value, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(value)).decode('ascii')
        return str(value)

    def size(n):
        return '%.2f MiB' % (n / 2**20)

    def envelope(output):
        text = json.dumps({'type': mime, 'data': output}, default=default)
        if len(text) > limit:
            note = ('[This output (%s) is larger than the %s a Backend.AI session sends for one output; '
                    'it was not sent. Save it to a file and download it, or show a part of it.]'
                    % (size(len(text)), '%g MiB' % (limit / 2**20)))
            output = dict(output, data={'text/plain': note}, metadata={})
            text = json.dumps({'type': mime, 'data': output}, default=default)
        return text

    def adapt(msg):
        header = msg.get('header') or {}
        kind = header.get('msg_type') or msg.get('msg_type')
        if kind not in kinds:
            return msg
        content = msg.get('content') or {}
        output = {'output_type': kind}
        if kind == 'clear_output':
            output['wait'] = bool(content.get('wait'))
        else:
            output['data'] = content.get('data') or {}
            output['metadata'] = content.get('metadata') or {}
            display_id = (content.get('transient') or {}).get('display_id')
            if display_id:
                output['display_id'] = display_id
            if kind == 'execute_result':
                output['execution_count'] = content.get('execution_count')
        header['msg_type'] = msg['msg_type'] = 'display_data'
        msg['content'] = {'data': {'text/html': envelope(output)}, 'metadata': {mark: 1}, 'transient': {}}
        return msg

    pub, hook = ip.display_pub, ip.displayhook
    if not hasattr(pub, 'register_hook') or not hasattr(hook, 'finish_displayhook'):
        print(marker + json.dumps('unsupported'))
        return
    local = getattr(pub, '_thread_local', None)
    if local is not None and not isinstance(local, types.SimpleNamespace):
        # one hook list for every thread: displays from worker threads are adapted too
        pub._thread_local = types.SimpleNamespace(hooks=list(getattr(local, 'hooks', [])))
    pub.register_hook(adapt)
    finish = hook.finish_displayhook

    def finish_displayhook():
        msg = getattr(hook, 'msg', None)
        if msg and (msg.get('content') or {}).get('data'):
            hook.msg = adapt(msg)
        finish()
    hook.finish_displayhook = finish_displayhook
    ip._backend_jupyter_adapter = params['version']
    print(marker + json.dumps('installed'))
"""

_INSPECT_BODY = """\
    try:
        data = ip.object_inspect_mime(params['name'], detail_level=params['level'])
    except Exception:
        data = {}
    print(marker + json.dumps(data))
"""


def snippet(body: str, params: dict) -> str:
    """One invisible cell running ``body`` (indented for the frame's function) with ``params``."""
    return (_FRAME.replace("__BJ_BODY__", body.rstrip("\n"))
            .replace("__BJ_PARAMS__", repr(params)).replace("__BJ_MARKER__", repr(SNIPPET_MARKER)))


ADAPTER = snippet(_ADAPTER_BODY, {"version": ADAPTER_VERSION, "mime": OUTPUT_MIME, "mark": OUTPUT_MARK,
                                  "limit": OUTPUT_LIMIT})


def inspect_snippet(name: str, level: int) -> str:
    return snippet(_INSPECT_BODY, {"name": name, "level": int(level)})


async def run_snippet(session: ComputeSession, code: str) -> object | None:
    """Run a snippet and return the JSON value it printed after :data:`SNIPPET_MARKER` (None if it failed
    or printed none).  Polling, so the answer comes in one request on a real manager too."""
    out: list[str] = []
    ok = False
    async for event in run_cell(session, code, transport="poll"):
        if isinstance(event, Output) and event.stream == "stdout":
            out.append(event.text)
        elif isinstance(event, Finished):
            ok = event.exit_code == 0
    text = "".join(out)
    if not ok or SNIPPET_MARKER not in text:
        return None
    try:
        return json.loads(text.split(SNIPPET_MARKER, 1)[1].strip().splitlines()[0])
    except (ValueError, IndexError):
        return None


async def install_adapter(session: ComputeSession) -> bool:
    """Install the display adapter in the session's IPython (idempotent); False where it cannot
    be (not an IPython session, a very old ipykernel, no answer within :data:`INSTALL_TIMEOUT`)."""
    try:
        answer = await asyncio.wait_for(run_snippet(session, ADAPTER), INSTALL_TIMEOUT)
    except (BackendError, asyncio.TimeoutError) as e:
        log.warning("the display adapter could not be installed on %s: %s", session.name, e)
        return False
    if answer != "installed":
        log.warning("the display adapter could not be installed on %s (%s)", session.name, answer or "no answer")
    return answer == "installed"

ADAPTER_MISSING = ("Rich output: the display adapter could not be installed in this session, so outputs arrive as "
                   "Backend.AI's kernel runner sends them (one type each; no Markdown, LaTeX, JSON or display "
                   "updates; on Backend.AI 26.x an HTML output such as a DataFrame breaks the run).")


def run_transport(configured: str, adapter: bool) -> str:
    """The transport of a user's run: ``auto`` is the websocket where the display adapter runs in
    the session, else polling: a run that the kernel runner breaks (raw HTML on Backend.AI 26.x)
    can then be released under its run id, which the websocket path never tells the client."""
    if configured != "auto":
        return configured
    return "auto" if adapter else "poll"
