"""Certificates made at test time (with ``cryptography``): a private CA, and server certificates
signed by it or not, valid or not, for 127.0.0.1/localhost or another name.  Used by the TLS tests
and by the benchmark's HTTPS group."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, key, cert: x509.Certificate) -> tuple[Path, Path]:
    path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path.with_suffix(".pem"), path.with_suffix(".key")


def _cert(subject: str, key, issuer_name: x509.Name, issuer_key, *, names: list, ca: bool = False,
          days: tuple[int, int] = (-1, 30)) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + datetime.timedelta(days=days[0]))
               .not_valid_after(NOW + datetime.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    # the key identifiers and usages real certificates carry (Python 3.13 verifies strictly: X509_STRICT)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(d: Path) -> dict[str, tuple[Path, Path]]:
    """name → (certificate, key) files under ``d``: "ca" (the private CA), "good" (signed by it for
    127.0.0.1 and localhost), "self-signed", "expired" and "wrong-name" (for example.invalid)."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Test Private CA", ca_key, _name("Test Private CA"), ca_key, names=[], ca=True, days=(-1, 365))
    local = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    out = {"ca": _write(d / "ca", ca_key, ca)}
    for name, names, days, self_signed in (("good", local, (-1, 30), False), ("self-signed", local, (-1, 30), True),
                                           ("expired", local, (-30, -1), False),
                                           ("wrong-name", [x509.DNSName("example.invalid")], (-1, 30), False)):
        key = ec.generate_private_key(ec.SECP256R1())
        issuer, issuer_key = (_name(name), key) if self_signed else (ca.subject, ca_key)
        out[name] = _write(d / name, key, _cert(name, key, issuer, issuer_key, names=names, days=days))
    return out
