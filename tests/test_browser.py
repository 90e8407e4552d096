"""JupyterLab in headless Chromium: the real user path, with a screenshot of each step.

Needs Debian's chromium (``.ci/run`` installs it) and Playwright for Python (no browser download:
it drives /usr/bin/chromium).  Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def lab(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-root")
    port = free_port()
    log = open(root / "jupyterlab.log", "wb")
    env = {**server.env(), "JUPYTER_CONFIG_DIR": str(root / ".jupyter-config"),
           "JUPYTER_DATA_DIR": str(root / ".jupyter-data")}  # the jobs' journals of this run only
    proc = subprocess.Popen(  # as users start it: the kernelspec, the server and the vfolders drive ready
        [sys.executable, "-m", "backend_jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=",
         "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/api/status", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError((root / "jupyterlab.log").read_text())
    yield url
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        yield page
        context.close()
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def run_cell(page, code: str) -> None:
    """Type ``code`` into the notebook's last (empty) cell and run it (Shift+Enter)."""
    editor = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell.jp-CodeCell .cm-content").last
    editor.click()
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")


def last_output(page, index: int):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell.jp-CodeCell").nth(index).locator(".jp-OutputArea")


def test_jupyterlab_end_to_end(page, lab):
    page.goto(lab + "/lab")
    card = page.locator('.jp-LauncherCard[title*="Backend.AI Python"]').first
    card.wait_for()
    shot(page, "01-launcher")
    card.click()
    no_news = page.get_by_role("button", name="No")
    if no_news.count():
        no_news.first.click()
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for()
    # the status bar says when the kernel process is up (slow on a loaded machine)
    page.get_by_text("Backend.AI Python | Idle").first.wait_for(timeout=120_000)
    shot(page, "02-new-notebook")

    run_cell(page, "print('hello from', 'Backend.AI')")
    last_output(page, 0).get_by_text("hello from Backend.AI").wait_for()
    shot(page, "03-print")

    run_cell(page, "import matplotlib.pyplot as plt; plt.plot([1, 3, 2]); plt.show()")
    last_output(page, 1).locator("img").wait_for()
    shot(page, "04-matplotlib")

    run_cell(page, "name = input('name? '); print('hello', name)")
    box = page.locator(".jp-Stdin-input").first
    box.wait_for()
    shot(page, "05-input-box")
    box.fill("Ada")
    box.press("Enter")
    last_output(page, 2).get_by_text("hello Ada").wait_for()
    shot(page, "06-input-answered")

    run_cell(page, "import time; time.sleep(60)")
    time.sleep(1.5)
    started = time.monotonic()
    stop = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) jp-button[data-command="notebook:interrupt-kernel"], '
                        '.jp-NotebookPanel:not(.lm-mod-hidden) button[data-command="notebook:interrupt-kernel"]').first
    shot(page, "07a-running")
    stop.click()
    last_output(page, 3).get_by_text("KeyboardInterrupt").first.wait_for(timeout=30_000)
    assert time.monotonic() - started < 30  # interrupted (a few s here), not the 60 s sleep
    shot(page, "07-interrupted")

    run_cell(page, "state = 'before restart'; print(state)")
    last_output(page, 4).get_by_text("before restart").wait_for()
    page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").click()
    page.locator(".lm-Menu-itemLabel", has_text="Restart Kernel…").first.click()
    page.locator(".jp-Dialog-button.jp-mod-accept").click()
    time.sleep(1)
    page.get_by_text("Backend.AI Python | Idle").first.wait_for(timeout=120_000)
    run_cell(page, "print('state' in dir())")
    last_output(page, 5).get_by_text("False").wait_for(timeout=60_000)
    shot(page, "08-after-restart")

    # Rich output through the display adapter: a DataFrame as the cell's result is a table with Out[n].
    run_cell(page, "import pandas as pd; pd.DataFrame({'col_a': [1, 2], 'col_b': ['x', 'y']})")
    table = last_output(page, 6).locator("table.dataframe")
    table.wait_for(timeout=60_000)
    assert table.locator("th", has_text="col_b").count() == 1 and table.locator("td", has_text="y").count() == 1
    prompt = last_output(page, 6).locator(".jp-OutputPrompt").first.inner_text()
    assert prompt.startswith("[") and prompt.rstrip(":").strip("[]").isdigit(), prompt  # Out[n]: an execute_result
    shot(page, "09-dataframe")

    # A long cell shows the live status line under what it printed; it goes away when the cell ends.
    run_cell(page, "import time; print('working', flush=True); time.sleep(5); print('slept')")
    status = last_output(page, 7).get_by_text("running 2 s")
    status.wait_for(timeout=30_000)
    assert "running 2 s · CPU " in status.inner_text() and "memory" in status.inner_text()
    shot(page, "10-status-line")
    last_output(page, 7).get_by_text("slept").wait_for(timeout=30_000)
    deadline = time.monotonic() + 10
    while "running" in last_output(page, 7).inner_text():
        if time.monotonic() > deadline:
            shot(page, "10b-status-line-stayed")
        assert time.monotonic() < deadline, f"the status line stayed after the cell: {last_output(page, 7).inner_text()!r}"
        time.sleep(0.2)
    assert last_output(page, 7).inner_text().split() == ["working", "slept"]

    # Tab completes a kernel command locally; the command then runs in the kernel.
    editor = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell.jp-CodeCell .cm-content").last
    editor.click()
    page.keyboard.type("%backend_se")
    page.keyboard.press("Tab")
    completer = page.locator(".jp-Completer-item", has_text="%backend_session")
    completer.wait_for(timeout=15_000)  # the kernel's own match, without the session
    shot(page, "11-tab-completion")
    page.keyboard.press("Enter")
    page.wait_for_function("() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) "
                           ".jp-CodeCell .cm-content')].pop().innerText.startsWith('%backend_session')",
                           timeout=15_000)
    page.keyboard.type(" info")
    page.keyboard.press("Shift+Enter")
    info = last_output(page, 8).get_by_text("usage")
    info.wait_for(timeout=30_000)
    assert "CPU" in last_output(page, 8).inner_text()
    shot(page, "12-session-info")

    # A background job: the cell returns at once, and its panel keeps updating in place after it.
    run_cell(page, "%%backend_run --bg --name browser-job\nimport time\nfor i in range(60):\n"
                   "    print('tick', i, flush=True); time.sleep(0.5)")
    panel = last_output(page, 9).locator("table", has_text="browser-job")
    try:
        panel.wait_for(timeout=30_000)
    finally:
        shot(page, "13a-job-submitted")
    page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea table')].pop().innerText"
                           ".includes('tick')", timeout=30_000)
    first = tick_of(panel.inner_text())
    time.sleep(2.5)
    assert tick_of(panel.inner_text()) > first  # updated after its cell had ended
    shot(page, "13-job-panel")

    # Saved, and the page reloaded: is the old panel updated again?  (Its display id is not saved
    # with the notebook, so JupyterLab cannot route updates to it.)  %backend_jobs --watch shows it anew.
    page.locator(".lm-MenuBar-itemLabel", has_text="File").click()
    page.locator(".lm-Menu-itemLabel", has_text="Save Notebook").first.click()
    time.sleep(1)
    dialog = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    if dialog.count():  # JupyterLab asks to name an untitled notebook on its first save
        dialog.first.click()
    page.wait_for_function("() => !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)')"
                           ".title?.className?.includes?.('jp-mod-dirty') && "
                           "![...document.querySelectorAll('.lm-TabBar-tab.jp-mod-dirty')].length", timeout=15_000)
    page.reload()
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for()
    page.get_by_text("Backend.AI Python | Idle").first.wait_for(timeout=60_000)
    shot(page, "14-after-reload")
    reloaded = page.locator(".jp-OutputArea table", has_text="browser-job").first  # untrusted now: no class
    reloaded.wait_for(timeout=30_000)
    before = tick_of(reloaded.inner_text())
    time.sleep(2.5)
    stale = tick_of(reloaded.inner_text()) == before
    run_cell(page, "%backend_jobs --watch")
    watch = last_output(page, 10).locator("table", has_text="browser-job")
    watch.wait_for(timeout=30_000)
    page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea table')].pop().innerText"
                           ".includes('tick')", timeout=30_000)
    watched = tick_of(watch.inner_text())
    time.sleep(2.5)
    assert tick_of(watch.inner_text()) > watched  # live again
    shot(page, "15-jobs-watch")
    assert stale, "the old panel advanced after a reload: the README can say so"
    page.keyboard.press("Escape")
    stop = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) jp-button[data-command="notebook:interrupt-kernel"], '
                        '.jp-NotebookPanel:not(.lm-mod-hidden) button[data-command="notebook:interrupt-kernel"]').first
    stop.click()  # stop watching; the job goes on (cancelled below, so that nothing is left)
    run_cell(page, "%backend_job cancel browser-job")
    page.get_by_text("Job browser-job: cancelled.").wait_for(timeout=60_000)


def tick_of(text: str) -> int:
    import re

    ticks = re.findall(r"tick (\d+)", text)
    return int(ticks[-1]) if ticks else -1


def test_vfolders_are_a_drive_of_the_file_browser(page, lab, server, tmp_path):
    """``backend-jupyter lab`` shows the vfolders as a drive (jupyter-fs on backendai://): a CSV
    stored in a vfolder opens in the CSV viewer, and a notebook stored there is edited and saved
    back into the vfolder."""
    import nbformat

    from backend_jupyter.config import Config
    from backend_jupyter.filesystem import BackendAIFileSystem

    fs = BackendAIFileSystem(config=Config.from_env(server.env()), skip_instance_cache=True)
    fs.mkdir("lab-data")
    fs.pipe_file("lab-data/train.csv", b"x,y\n1,2\n3,4\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    fs.pipe_file("lab-data/analysis.ipynb", nbformat.writes(nb).encode())

    page.goto(lab + "/lab")
    page.locator('.lm-TabBar-tab[title="Backend.AI vfolders"]').click()
    drive = page.locator("#jp-left-stack .lm-StackedPanel-child:not(.lm-mod-hidden)")
    drive.get_by_text("lab-data/").wait_for()
    drive.get_by_text("lab-data/").locator("xpath=..").get_by_text("add").click()  # unfold the folder
    drive.get_by_text("train.csv").dblclick()
    viewer = page.locator(".jp-CSVViewer")
    viewer.wait_for()
    assert page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current").inner_text() == "train.csv"
    # what the viewer was given: the drive's file through the server's contents API, as the page fetches it
    drives = page.evaluate("async () => (await (await fetch('/jupyterfs/resources')).json()).map(r => r.drive)")
    model = page.evaluate(f"async () => (await fetch('/api/contents/{drives[0]}:lab-data/train.csv?content=1'))"
                          ".json()")
    assert model["content"] == "x,y\n1,2\n3,4\n"
    shot(page, "20-vfolder-csv")

    drive.get_by_text("analysis.ipynb").dblclick()
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Cell .cm-content").first.click()
    page.keyboard.type("edited_in_the_browser = True")
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while "edited_in_the_browser" not in fs.cat_file("lab-data/analysis.ipynb").decode():
        assert time.monotonic() < deadline, "the notebook was not saved into the vfolder"
        time.sleep(0.5)
    saved = nbformat.reads(fs.cat_file("lab-data/analysis.ipynb").decode(), as_version=4)
    assert saved.cells[0].source == "edited_in_the_browser = True"
    shot(page, "21-vfolder-notebook-saved")

    # upload a file into the folder with the drive's upload button
    local = tmp_path / "from-the-browser.txt"
    local.write_text("uploaded through the browser\n")
    drive.get_by_text("lab-data/").click()  # the folder the upload goes to (the drive's panel is still open)
    with page.expect_file_chooser() as chooser:
        drive.locator('[title="Upload Files"]').click()
    chooser.value.set_files(str(local))
    overwrite = page.get_by_role("button", name="Overwrite")  # jupyter-fs reports a missing file as
    with contextlib.suppress(Exception):  # an empty one, so JupyterLab asks first
        overwrite.click(timeout=5_000)
    deadline = time.monotonic() + 30
    while "lab-data/from-the-browser.txt" not in fs.ls("lab-data", detail=False, refresh=True):
        assert time.monotonic() < deadline, "the upload did not reach the vfolder"
        time.sleep(0.5)
    assert fs.cat_file("lab-data/from-the-browser.txt") == b"uploaded through the browser\n"
    shot(page, "22-vfolder-upload")
