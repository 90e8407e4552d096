"""The signing module: the known-answer vectors of docs/protocol.md, the era rules, tampering,
and header parsing.  The tests from ``KNOWN`` to ``test_date_parsing_and_window`` moved here from
tests/test_signing.py unchanged (the comparison with the official SDKs, which needs their venvs,
stays there)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from backend_jupyter import signing

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DATE = "2024-03-15T09:12:33.123456+00:00"
HOST = "127.0.0.1:8081"

# The test vectors A, B, C of docs/protocol.md, "Signing".
KNOWN = [
    ("POST", "/session", "application/json", "v6.20220315", b"",
     "bf69a7222b19c09467067311832c089232bb7463440f2688735b230d77996ae9"),
    ("GET", "/folders/myvf/files?path=.", "text/plain", "v6.20220315", b"",
     "4161e48da392551a31396a0b66a6982477a18d8960c4102a9faf381be8b713b1"),
    ("POST", "/v2/kernel/create", "application/json", "v2.20170315",
     b'{"lang": "python:3.6", "clientSessionToken": "abcd1234"}',
     "f722d9fbcad98ad1ef272cb28d7da255009dda7d24f12ffd3ed5252032e9bcb0"),
]


@pytest.mark.parametrize("method, path, ctype, version, body, expected", KNOWN)
def test_known_answer_vectors(method, path, ctype, version, body, expected):
    date = signing.parse_date(DATE)
    headers = signing.sign_request(method=method, rel_url=path, date=date, host=HOST, content_type=ctype,
                                   api_version=version, access_key=AK, secret_key=SK, body=body)
    assert headers["Authorization"] == f"BackendAI signMethod=HMAC-SHA256, credential={AK}:{expected}"
    assert headers["Date"] == DATE and headers["X-BackendAI-Version"] == version


def verify(sig, *, method="POST", path="/session", ctype="application/json", version="v6.20220315",
           body=b"", host=HOST, secret=SK, raw_date=DATE):
    cred = signing.Credential("sha256", AK, sig)
    return signing.verify(cred, secret, method=method, rel_urls=[path], raw_date=raw_date,
                          date=signing.parse_date(raw_date), hosts=[host], content_type=ctype,
                          api_version=version, version_header="x-backendai-version", body=body)


def test_verify_accepts_and_tampering_fails():
    good = KNOWN[0][-1]
    assert verify(good)
    assert not verify(good, method="PUT")
    assert not verify(good, path="/session/other")
    assert not verify(good, ctype="text/plain")
    assert not verify(good, version="v7.20230615")
    assert not verify(good, host="127.0.0.1:8082")
    assert not verify(good, secret=SK[:-1] + "X")
    assert not verify(good, raw_date="2024-03-15T09:12:34.123456+00:00")
    assert not verify(good[:-1] + ("0" if good[-1] != "0" else "1"))
    assert verify(good.upper())  # hex case does not matter
    # v2 era hashes the body: same signature, other body → rejected
    legacy = KNOWN[2]
    assert verify(legacy[-1], path=legacy[1], version=legacy[3], body=legacy[4])
    assert not verify(legacy[-1], path=legacy[1], version=legacy[3], body=legacy[4] + b" ")


@pytest.mark.parametrize("header, expected", [
    ("BackendAI signMethod=HMAC-SHA256, credential=AK:abc", ("sha256", "AK", "abc")),
    ("Sorna signMethod=HMAC-SHA1, credential=AK:abc", ("sha1", "AK", "abc")),
    ("BackendAI credential=AK:ab:c , signMethod=HMAC-SHA512", ("sha512", "AK", "ab:c")),
])
def test_parse_authorization(header, expected):
    cred = signing.parse_authorization(header)
    assert (cred.hash_type, cred.access_key, cred.signature) == expected


@pytest.mark.parametrize("header", ["", "Basic abc", "BackendAI", "BackendAI signMethod=HMAC-SHA256",
                                    "BackendAI signMethod=SHA256, credential=a:b",
                                    "BackendAI signMethod=HMAC-MD99, credential=a:b"])
def test_parse_authorization_rejects(header):
    with pytest.raises(signing.SignatureError):
        signing.parse_authorization(header)


def test_date_parsing_and_window():
    assert signing.parse_date("Fri, 15 Mar 2024 09:12:33 GMT") == datetime(2024, 3, 15, 9, 12, 33, tzinfo=timezone.utc)
    assert signing.parse_date("2024-03-15T09:12:33Z").tzinfo is not None
    assert signing.parse_date("2024-03-15T09:12:33").tzinfo == timezone.utc
    with pytest.raises(signing.SignatureError):
        signing.parse_date("yesterday")
    with pytest.raises(signing.SignatureError):
        signing.check_date_window(signing.parse_date(DATE))


# -- the documented string to sign and the era rules ---------------------------------------------

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_string_to_sign_of_vector_a_is_the_documented_one():
    assert signing.string_to_sign("post", "/session", DATE, HOST, "Application/JSON", "v6.20220315") == (
        "POST\n/session\n2024-03-15T09:12:33.123456+00:00\nhost:127.0.0.1:8081\n"
        "content-type:application/json\nx-backendai-version:v6.20220315\n" + EMPTY_SHA256)
    legacy = signing.string_to_sign("GET", "/p", DATE, HOST, "text/plain", "v2.20170315", version_header="x-sorna-version")
    assert legacy.split("\n")[5] == "x-sorna-version:v2.20170315"


def test_vector_c_body_hash_is_the_documented_one():
    assert hashlib.sha256(KNOWN[2][4]).hexdigest() == "8e433c15ada6acb31501cb7d28e3a8e3cd394951bda70ee420e964da724a2014"


@pytest.mark.parametrize("version, ctype, hashed", [
    ("v2.20170315", "application/json", True),
    ("v3.20170615", "text/plain", True),
    ("v4.20181214", "application/json", True),
    ("v4.20181215", "application/json", False),  # the cutoff itself hashes nothing
    ("v4.20190615", "application/json", False),
    ("v9.20250722", "application/json", False),
    ("v2.20170315", "multipart/form-data", False),  # multipart never
    ("v6.20220315", "multipart/form-data", False),
])
def test_body_hash_era_rules(version, ctype, hashed):
    body = b'{"x": 1}'
    assert signing.body_for_hash(version, ctype, body) == (body if hashed else b"")


def test_from_the_cutoff_on_the_body_does_not_change_the_signature():
    date = signing.parse_date(DATE)

    def sig(version, body, ctype="application/json"):
        return signing.sign_request(method="POST", rel_url="/session", date=date, host=HOST, content_type=ctype,
                                    api_version=version, access_key=AK, secret_key=SK, body=body)["Authorization"]

    assert sig("v6.20220315", b'{"a": 1}') == sig("v6.20220315", b"") == f"BackendAI signMethod=HMAC-SHA256, credential={AK}:{KNOWN[0][-1]}"
    assert sig("v4.20181215", b"one") == sig("v4.20181215", b"two")
    assert sig("v4.20180101", b"one") != sig("v4.20180101", b"two")
    assert sig("v2.20170315", b"one", "multipart/form-data") == sig("v2.20170315", b"two", "multipart/form-data")


def test_verify_tries_every_path_and_host_spelling():
    cred = signing.Credential("sha256", AK, KNOWN[1][-1])
    kw = {"method": "GET", "raw_date": DATE, "date": signing.parse_date(DATE), "content_type": "text/plain",
          "api_version": "v6.20220315", "version_header": "x-backendai-version", "body": b""}
    assert signing.verify(cred, SK, rel_urls=["/folders/myvf/files", "/folders/myvf/files?path=."],
                          hosts=["127.0.0.1", HOST], **kw)
    assert not signing.verify(cred, SK, rel_urls=["/folders/myvf/files"], hosts=["127.0.0.1", HOST], **kw)


def test_signatures_are_compared_in_constant_time_every_spelling_of_them(monkeypatch):
    """Each (path, host) spelling is compared with hmac.compare_digest, none skipped once one
    matched (an early exit would tell which spelling the server expected), and only the right
    signature passes."""
    calls = []
    real = signing.hmac.compare_digest
    monkeypatch.setattr(signing.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    right = KNOWN[1][-1]  # signed for /folders/myvf/files?path=. at HOST
    kw = {"method": "GET", "raw_date": DATE, "date": signing.parse_date(DATE), "content_type": "text/plain",
          "api_version": "v6.20220315", "version_header": "x-backendai-version", "body": b"",
          "rel_urls": ["/folders/myvf/files?path=.", "/folders/myvf/files"], "hosts": [HOST, "127.0.0.1"]}
    for sig, accepted in ((right, True), ("0" * 64, False), (right[:-1] + "0", False)):
        calls.clear()
        assert signing.verify(signing.Credential("sha256", AK, sig), SK, **kw) is accepted
        assert len(calls) == 4 and all(b == sig.encode() for _, b in calls)


def test_other_hash_types_sign_and_verify():
    date = signing.parse_date(DATE)
    headers = signing.sign_request(method="GET", rel_url="/", date=date, host=HOST, content_type="text/plain",
                                   api_version="v7.20230615", access_key=AK, secret_key=SK, hash_type="sha1")
    cred = signing.parse_authorization(headers["Authorization"])
    assert headers["Authorization"].startswith("BackendAI signMethod=HMAC-SHA1, credential=")
    assert cred.hash_type == "sha1" and len(cred.signature) == 40
    assert signing.verify(cred, SK, method="GET", rel_urls=["/"], raw_date=DATE, date=date, hosts=[HOST],
                          content_type="text/plain", api_version="v7.20230615",
                          version_header="x-backendai-version", body=b"")


def test_shake_hashes_are_refused():
    with pytest.raises(signing.SignatureError, match="shake_128"):
        signing.parse_authorization("BackendAI signMethod=HMAC-SHAKE_128, credential=a:b")


def test_date_window_is_fifteen_minutes_either_side():
    now = signing.parse_date(DATE)
    for minutes in (-14.9, 0, 14.9):
        signing.check_date_window(now + timedelta(minutes=minutes), now)
    for minutes in (-15, 15, 60):
        with pytest.raises(signing.SignatureError):
            signing.check_date_window(now + timedelta(minutes=minutes), now)
