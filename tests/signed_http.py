"""A deliberately low-level signed HTTP client for protocol tests.

It builds requests byte by byte (http.client), so tests can send exactly what an SDK of any
generation sends, and also what a broken or hostile client would send.
"""

from __future__ import annotations

import http.client
import json as jsonlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit

from backend_jupyter import signing

NEWEST = "v7.20230615"


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return jsonlib.loads(self.body)

    @property
    def problem(self) -> dict:
        assert self.headers.get("content-type", "").startswith("application/problem+json"), self
        return self.json()


@dataclass
class SignedClient:
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    version: str = NEWEST
    timeout: float = 60.0

    @property
    def netloc(self) -> str:
        return urlsplit(self.endpoint).netloc

    def request(
        self,
        method: str,
        path: str,
        *,
        json=None,
        body: bytes | None = None,
        params: dict | None = None,
        content_type: str | None = None,
        headers: dict | None = None,
        sign: bool = True,
        date: datetime | None = None,
        version: str | None = None,
        secret_key: str | None = None,
        sign_path: str | None = None,
        sign_method: str | None = None,
        sign_body: bytes | None = None,
    ) -> Response:
        version = version or self.version
        if params:
            path = f"{path}?{urlencode(params, doseq=True)}"
        if json is not None:
            body = jsonlib.dumps(json).encode()
            content_type = content_type or "application/json"
        content_type = content_type or "text/plain"
        hdrs = {"Content-Type": content_type, "Host": self.netloc}
        if sign:
            hdrs.update(signing.sign_request(
                method=sign_method or method, rel_url=sign_path or path,
                date=date or datetime.now(timezone.utc), host=self.netloc,
                content_type=content_type.split(";")[0], api_version=version,
                access_key=self.access_key, secret_key=secret_key or self.secret_key,
                body=(body or b"") if sign_body is None else sign_body,
            ))
        hdrs.update(headers or {})
        hdrs = {k: v for k, v in hdrs.items() if v is not None}
        host, port = self.netloc.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    # conveniences for the common session calls
    def create(self, name: str, image: str = "python", **extra) -> Response:
        return self.request("POST", "/session", json={"name": name, "image": image, **extra})

    def execute(self, name: str, mode: str, code: str = "", run_id: str | None = None, **extra) -> dict:
        resp = self.request("POST", f"/session/{name}",
                            json={"mode": mode, "code": code, "runId": run_id, **extra})
        assert resp.status == 200, (resp.status, resp.body)
        return resp.json()["result"]

    def run(self, name: str, code: str, inputs=(), mode: str = "query", options=None,
            max_calls: int = 10_000) -> tuple[list, list]:
        """The whole execute loop; returns (all console records, results)."""
        inputs = list(inputs)
        results = []
        console = []
        result = self.execute(name, mode, code, None, options=options)
        for _ in range(max_calls):
            results.append(result)
            console.extend(result["console"])
            status = result["status"]
            if status in ("finished", "exec-timeout"):
                return console, results
            if status == "waiting-input":
                result = self.execute(name, "input", inputs.pop(0), result["runId"])
            else:
                result = self.execute(name, "continue", "", result["runId"])
        raise AssertionError("the run did not finish")

    def destroy(self, name: str) -> Response:
        return self.request("DELETE", f"/session/{name}")


def merged(console: list) -> list:
    """Console records with consecutive same-stream records merged (as a reader sees them)."""
    out: list = []
    for kind, data in console:
        if out and kind in ("stdout", "stderr") and out[-1][0] == kind:
            out[-1] = [kind, out[-1][1] + data]
        else:
            out.append([kind, data])
    return out
