"""Progress for slow steps (session start, file transfers): an ipywidgets bar in notebooks,
a plain text line in terminal IPython."""

from __future__ import annotations

import sys
import time


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        ip = get_ipython()
        return ip is not None and getattr(ip, "kernel", None) is not None and type(ip).__name__ != "TerminalInteractiveShell"
    except Exception:
        return False


class Progress:
    """``with Progress("Uploading", total=3) as p: p.advance("a.csv")``.  ``total=None`` is a
    step without a known length (shown as a full pulsing bar while it runs)."""

    def __init__(self, description: str, total: int | None = None, *, widget: bool | None = None):
        self.description = description
        self.total = total
        self.done_count = 0
        self.started = time.monotonic()
        self.use_widget = _in_notebook() if widget is None else widget
        self._bar = self._label = self._box = None
        if self.use_widget:
            try:
                import ipywidgets
                from IPython.display import display

                self._bar = ipywidgets.IntProgress(
                    value=0 if total else 1, min=0, max=total or 1, bar_style="info",
                    description=description[:20],
                )
                self._label = ipywidgets.HTML(value="")
                self._box = ipywidgets.HBox([self._bar, self._label])
                display(self._box)
            except Exception:  # no widget support: fall back to text
                self.use_widget = False
        if not self.use_widget:
            print(f"{description}…", file=sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(ok=exc_type is None)

    def advance(self, item: str = "") -> None:
        self.done_count += 1
        if self._bar is not None:
            self._bar.value = self.done_count
            self._label.value = item
        elif item:
            shown = f"{self.done_count}/{self.total}" if self.total else str(self.done_count)
            print(f"  {shown} {item}", file=sys.stderr, flush=True)

    def finish(self, ok: bool = True, note: str = "") -> None:
        seconds = time.monotonic() - self.started
        text = note or (f"done in {seconds:.1f} s" if ok else "failed")
        if self._bar is not None:
            self._bar.value = self._bar.max
            self._bar.bar_style = "success" if ok else "danger"
            self._label.value = text
        else:
            print(f"{self.description}: {text}", file=sys.stderr, flush=True)
