"""The signing module against the official SDKs' own signatures (each SDK in its own venv).

The known-answer vectors, tampering and header parsing are in tests/unit/test_signing.py."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime

import pytest

from backend_jupyter import signing
from tests.sdk.venvs import GENERATIONS, HERE, ensure_venv

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

VECTORS = [
    {"method": m, "rel_url": p, "content_type": c, "version": v, "body": b,
     "endpoint": e, "date": d, "access_key": AK, "secret_key": SK, "hash_type": h}
    for (m, p, c, v, b) in [
        ("POST", "/session", "application/json", "v7.20230615", ""),
        ("GET", "/folders/vf/files?path=a%20b", "text/plain", "v7.20230615", ""),
        ("POST", "/kernel/create", "application/json", "v4.20190615", '{"lang": "python"}'),
        ("POST", "/session/s/upload", "multipart/form-data", "v6.20220315", ""),
        ("GET", "/stream/session/s/execute", "application/octet-stream", "v9.20250722", ""),
    ]
    for e in ("http://127.0.0.1:8081", "http://localhost:9999/")
    for d in ("2026-11-26T10:00:00.000001+00:00",)
    for h in ("sha256", "sha1")
]


@pytest.mark.sdk
@pytest.mark.parametrize("generation", ["26.9.6", "23.9.10", "19.9.10"])
def test_signatures_match_the_official_sdk(generation):
    try:
        python = ensure_venv(GENERATIONS[generation])
    except LookupError as e:
        pytest.skip(str(e))
    proc = subprocess.run([str(python), str(HERE / "sign_vectors.py")], input=json.dumps(VECTORS),
                          capture_output=True, text=True, timeout=120, check=True)
    theirs = json.loads(proc.stdout)
    assert len(theirs) == len(VECTORS)
    for vector, sig in zip(VECTORS, theirs, strict=True):
        host = vector["endpoint"].split("//", 1)[1].rstrip("/")
        date = datetime.fromisoformat(vector["date"])
        ours = signing.sign_request(
            method=vector["method"], rel_url=vector["rel_url"], date=date, host=host,
            content_type=vector["content_type"], api_version=vector["version"], access_key=AK,
            secret_key=SK, body=vector["body"].encode(), hash_type=vector["hash_type"],
        )
        assert ours["Authorization"].endswith(":" + sig), vector
        cred = signing.parse_authorization(ours["Authorization"])
        assert signing.verify(cred, SK, method=vector["method"], rel_urls=[vector["rel_url"]],
                              raw_date=vector["date"], date=date, hosts=[host],
                              content_type=vector["content_type"], api_version=vector["version"],
                              version_header="x-backendai-version", body=vector["body"].encode())
