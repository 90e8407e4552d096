"""Drives a real kernel process through jupyter_client, the way a front-end does."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field

from jupyter_client import KernelManager

KERNEL_NAME = "backend-python"


@dataclass
class Result:
    reply: dict
    messages: list[dict] = field(default_factory=list)  # IOPub messages of this request (no status)
    input_requests: list[dict] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # seconds from the request, per message

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    def of(self, msg_type: str) -> list[dict]:
        return [m["content"] for m in self.messages if m["msg_type"] == msg_type]

    def stream(self, name: str = "stdout") -> str:
        return "".join(c["text"] for c in self.of("stream") if c["name"] == name)


class KernelDriver:
    def __init__(self, env: dict[str, str], kernel_name: str = KERNEL_NAME, extra_arguments: list[str] = (),
                 kernel_spec_manager=None, cwd=None):
        """``kernel_spec_manager``: where to find ``kernel_name`` (default: the Jupyter paths);
        ``cwd``: the kernel's directory (a notebook's kernel starts in the notebook's)."""
        spec_manager = {"kernel_spec_manager": kernel_spec_manager} if kernel_spec_manager else {}
        self.km = KernelManager(kernel_name=kernel_name, **spec_manager)
        self.km.start_kernel(env=env, extra_arguments=list(extra_arguments), **({"cwd": str(cwd)} if cwd else {}))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def execute(self, code: str, *, inputs=None, allow_stdin: bool | None = None, timeout: float = 120,
                on_message=None) -> Result:
        """Run ``code``; answer input requests from ``inputs`` (a list, or a callable(request) -> str|None)."""
        pending = list(inputs) if isinstance(inputs, (list, tuple)) else None
        allow = (inputs is not None) if allow_stdin is None else allow_stdin
        started = time.monotonic()
        msg_id = self.kc.execute(code, allow_stdin=allow)
        result = Result(reply={})
        deadline = started + timeout
        reply = None
        idle = False
        while time.monotonic() < deadline and not (reply is not None and idle):
            try:
                msg = self.kc.get_iopub_msg(timeout=0.02)
                if msg["parent_header"].get("msg_id") == msg_id:
                    if msg["msg_type"] == "status":
                        idle = idle or msg["content"]["execution_state"] == "idle"
                    elif msg["msg_type"] != "execute_input":
                        result.messages.append(msg)
                        result.arrivals.append(time.monotonic() - started)
                        if on_message:
                            on_message(msg)
            except queue.Empty:
                pass
            try:
                req = self.kc.get_stdin_msg(timeout=0.001)
                result.input_requests.append(req["content"])
                answer = pending.pop(0) if pending is not None else (inputs(req["content"]) if inputs else None)
                if answer is not None:
                    self.kc.input(answer)
            except queue.Empty:
                pass
            if reply is None:
                try:
                    msg = self.kc.get_shell_msg(timeout=0.001)
                    if msg["parent_header"].get("msg_id") == msg_id:
                        reply = msg
                        idle_deadline = time.monotonic() + 5
                        deadline = min(deadline, idle_deadline)  # the idle status may be dropped; don't wait forever
                except queue.Empty:
                    pass
        if reply is None:
            raise TimeoutError(f"no execute_reply within {timeout}s for {code[:60]!r}")
        result.reply = reply
        return result

    def request(self, method: str, *args, timeout: float = 60, **kwargs) -> dict:
        msg_id = getattr(self.kc, method)(*args, **kwargs)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.kc.get_shell_msg(timeout=deadline - time.monotonic())
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]
        raise TimeoutError(method)

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    def shutdown(self, restart: bool = False) -> None:
        if restart:
            self.km.restart_kernel(now=False)
            self.kc.wait_for_ready(timeout=60)
            return
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)
