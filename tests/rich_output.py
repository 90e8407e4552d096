"""Rich-output scenarios, shared by the embedded-server tests (test_rich_output.py) and their
real-manager twins (manager/test_real_manager.py): the same cells, the same expectations.

Each check takes a :class:`tests.kernel_driver.Result` of the cell and asserts what a local IPython
kernel would have sent.
"""

from __future__ import annotations

DATAFRAME = "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})\ndf"
MARKDOWN_LATEX_JSON = ("from IPython.display import JSON, Latex, Markdown, display\n"
                       "display(Markdown('**bold**'))\ndisplay(Latex(r'$x^2$'))\ndisplay(JSON({'k': [1, 2]}))")
UPDATED_HANDLE = "h = display('v0', display_id=True)\nfor i in range(1, 4):\n    h.update(f'v{i}')"
CLEAR_LOOP = ("from IPython.display import clear_output\nimport time\nfor i in range(5):\n"
              "    clear_output(wait=True)\n    print(f'step {i}', flush=True)\n    time.sleep(0.05)")
# A 1.1 MB HTML table: 24,000 rows of 46 characters (the checks count them).
BIG_TABLE_ROWS = 24_000
BIG_TABLE = ("from IPython.display import HTML, display\n"
             f"rows = ''.join(f'<tr><td>{{i:07d}}</td><td>{{i * i:012d}}</td></tr>' for i in range({BIG_TABLE_ROWS}))\n"
             "display(HTML('<table>' + rows + '</table>'))")
TOO_BIG = "from IPython.display import HTML, display\ndisplay(HTML('<p>' + 'x' * (17 * 1024 * 1024) + '</p>'))"


def outputs(result) -> list[tuple[str, dict]]:
    """The cell's output messages in order, as (msg_type, content), without the session's start-up
    progress display."""
    out = []
    for m in result.messages:
        kind, content = m["msg_type"], m["content"]
        text = str(content.get("data", {}).get("text/plain", ""))
        if "Backend.AI session" in text or "Backend.AI server" in text:
            continue
        if kind in ("stream", "display_data", "update_display_data", "execute_result", "clear_output", "error"):
            out.append((kind, content))
    return out


def check_dataframe(result, execution_count: int) -> None:
    assert result.status == "ok", result.reply
    results = result.of("execute_result")
    assert len(results) == 1, outputs(result)
    data = results[0]["data"]
    assert "<table" in data["text/html"] and "dataframe" in data["text/html"]
    assert data["text/plain"].split() == ["a", "b", "0", "1", "x", "1", "2", "y"]
    assert results[0]["execution_count"] == execution_count == result.reply["content"]["execution_count"]
    assert result.stream() == "" and not result.of("display_data")


def check_markdown_latex_json(result) -> None:
    assert result.status == "ok", result.reply
    shown = [c["data"] for c in result.of("display_data")]
    assert [d.get("text/markdown") for d in shown] == ["**bold**", None, None], shown
    assert shown[1]["text/latex"] == "$x^2$"
    assert shown[2]["application/json"] == {"k": [1, 2]}
    assert all("text/plain" in d for d in shown)


def check_updated_handle(result) -> None:
    """One display, then three updates of it: a front-end shows one output, the last value."""
    assert result.status == "ok", result.reply
    kinds = [(kind, c["transient"]["display_id"], c["data"]["text/plain"]) for kind, c in outputs(result)]
    display_id = kinds[0][1]
    assert display_id and kinds == [("display_data", display_id, "'v0'"),
                                    *[("update_display_data", display_id, f"'v{i}'") for i in (1, 2, 3)]]
    assert final_view(outputs(result)) == [("display", "'v3'")]


def check_clear_loop(result) -> None:
    assert result.status == "ok", result.reply
    kinds = [kind for kind, _ in outputs(result)]
    assert kinds.count("clear_output") == 5 and all(c["wait"] for c in result.of("clear_output"))
    assert final_view(outputs(result)) == [("stream", "step 4\n")]


def check_big_table(result) -> None:
    assert result.status == "ok", result.reply
    [html] = [c["data"]["text/html"] for c in result.of("display_data")]
    assert len(html) > 1_000_000 and html.count("<tr>") == BIG_TABLE_ROWS
    assert f"<td>{BIG_TABLE_ROWS - 1:07d}</td>" in html


def check_too_big(result) -> None:
    assert result.status == "ok", result.reply
    [shown] = [c["data"] for c in result.of("display_data")]
    assert list(shown) == ["text/plain"] and "(17.00 MiB) is larger than the 16 MiB" in shown["text/plain"]


def final_view(messages: list[tuple[str, dict]]) -> list[tuple[str, str]]:
    """What a front-end shows after replaying the messages (Jupyter's output-area rules):
    ``clear_output(wait=True)`` clears when the next output arrives, an update replaces the
    display of its id in place."""
    shown: list[list] = []
    pending_clear = False
    for kind, c in messages:
        if kind == "clear_output":
            if c.get("wait"):
                pending_clear = True
            else:
                shown = []
            continue
        if kind == "update_display_data":
            for item in shown:
                if item[2] == c["transient"]["display_id"]:
                    item[1] = c["data"]["text/plain"]
            continue
        if pending_clear:
            shown, pending_clear = [], False
        if kind == "stream":
            if shown and shown[-1][0] == "stream":
                shown[-1][1] += c["text"]
            else:
                shown.append(["stream", c["text"], None])
        elif kind in ("display_data", "execute_result"):
            shown.append(["display", c["data"].get("text/plain", ""), c.get("transient", {}).get("display_id")])
    return [(kind, text) for kind, text, _ in shown]
