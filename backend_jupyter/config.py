"""Client configuration, read the way the official Backend.AI SDK reads it.

This is the only module that reads the process environment.  Every setting comes from a
``BACKEND_*`` variable, falling back to the legacy ``SORNA_*`` spelling, and can be overridden
in code (``Config(...)``/``dataclasses.replace``) or by traitlets config in the front-ends.
Invalid values raise :class:`ConfigError` with a one-line message naming the variable.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

from .protocol import SESSION_NAME_RE, VFOLDER_NAME_RE

API_VERSION_RE = re.compile(r"^v(\d+)\.(\d{8})$")
# A resource slot: ``cpu``, ``mem``, ``cuda.shares``, ``cuda.device``; its value a number or a size.
SLOT_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)?\Z")
SLOT_VALUE_RE = re.compile(r"^\d+(\.\d+)?([kmgtpe](i?b)?)?\Z", re.IGNORECASE)
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable and the fix."""


@dataclass(frozen=True)
class Mount:
    """A vfolder to mount into a session: ``name`` or ``name:alias``."""

    name: str
    alias: str | None = None

    def __str__(self) -> str:
        return f"{self.name}:{self.alias}" if self.alias else self.name


@dataclass(frozen=True)
class Config:
    endpoints: tuple[str, ...] = ()
    access_key: str = ""
    secret_key: str = field(default="", repr=False)
    vfolder_mounts: tuple[Mount, ...] = ()
    api_version: str | None = None
    skip_sslcert_validation: bool = False
    connection_timeout: float = 10.0
    read_timeout: float = 0.0  # 0 = no read timeout, as in the SDK
    domain: str = "default"
    group: str = "default"
    session_name: str | None = None  # attach to this named session instead of creating our own
    ca_bundle: str | None = None  # a PEM file or a directory of certificates trusted besides the system's

    @property
    def uses_tls(self) -> bool:
        """Some endpoint is ``https://``: certificates are verified (see :func:`tls_context`)."""
        return any(e.startswith("https:") for e in self.endpoints)

    @property
    def endpoint(self) -> str | None:
        return self.endpoints[0] if self.endpoints else None

    @property
    def uses_embedded_server(self) -> bool:
        """True when nothing points at a cluster: the product then starts its own server."""
        return not self.endpoints and not self.access_key and not self.secret_key

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        get = lambda name: _get(env, name)  # noqa: E731
        return cls(
            endpoints=parse_endpoints(get("ENDPOINT")),
            access_key=(get("ACCESS_KEY") or "").strip(),
            secret_key=(get("SECRET_KEY") or "").strip(),
            vfolder_mounts=parse_mounts(get("VFOLDER_MOUNTS") or "", "BACKEND_VFOLDER_MOUNTS"),
            api_version=parse_api_version(get("API_VERSION"), "BACKEND_API_VERSION"),
            skip_sslcert_validation=parse_bool(
                get("SKIP_SSLCERT_VALIDATION"), "BACKEND_SKIP_SSLCERT_VALIDATION"
            ),
            ca_bundle=parse_ca_bundle(get("CA_BUNDLE"), "BACKEND_CA_BUNDLE"),
            connection_timeout=parse_seconds(
                get("CONNECTION_TIMEOUT"), "BACKEND_CONNECTION_TIMEOUT", 10.0
            ),
            read_timeout=parse_seconds(get("READ_TIMEOUT"), "BACKEND_READ_TIMEOUT", 0.0),
            domain=(get("DOMAIN") or "default").strip(),
            group=(get("GROUP") or "default").strip(),
            session_name=parse_session_name(get("SESSION_NAME"), "BACKEND_SESSION_NAME"),
        )


FIELDS_BY_VARIABLE = {
    "endpoints": "ENDPOINT", "access_key": "ACCESS_KEY", "secret_key": "SECRET_KEY",
    "vfolder_mounts": "VFOLDER_MOUNTS", "api_version": "API_VERSION",
    "skip_sslcert_validation": "SKIP_SSLCERT_VALIDATION", "ca_bundle": "CA_BUNDLE",
    "connection_timeout": "CONNECTION_TIMEOUT",
    "read_timeout": "READ_TIMEOUT", "domain": "DOMAIN", "group": "GROUP", "session_name": "SESSION_NAME",
}


def sources(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where each setting comes from: the variable that set it, or ``default``."""
    env = os.environ if environ is None else environ
    found = {}
    for name, suffix in FIELDS_BY_VARIABLE.items():
        found[name] = next((p + suffix for p in ("BACKEND_", "SORNA_") if env.get(p + suffix) is not None), "default")
    return found


def _get(env: Mapping[str, str], suffix: str) -> str | None:
    """``BACKEND_<suffix>``, else ``SORNA_<suffix>``, else None."""
    for prefix in ("BACKEND_", "SORNA_"):
        value = env.get(prefix + suffix)
        if value is not None:
            return value
    return None


def parse_endpoints(raw: str | None, variable: str = "BACKEND_ENDPOINT") -> tuple[str, ...]:
    if not raw or not raw.strip():
        return ()
    endpoints = []
    for item in raw.split(","):
        item = item.strip().rstrip("/")
        if not item:
            continue
        if not re.match(r"^https?://[^/\s]+", item):
            raise ConfigError(
                f"{variable}: {item!r} is not an http(s) URL (expected e.g. https://api.example.com)"
            )
        endpoints.append(item)
    return tuple(endpoints)


def parse_mounts(raw: str, variable: str = "BACKEND_VFOLDER_MOUNTS") -> tuple[Mount, ...]:
    """Parse ``name`` / ``name:alias`` items, comma-separated."""
    mounts: list[Mount] = []
    seen: set[str] = set()
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, alias = item.partition(":")
        name, alias = name.strip(), alias.strip()
        if not VFOLDER_NAME_RE.match(name):
            raise ConfigError(
                f"{variable}: {name!r} is not a valid vfolder name "
                "(use letters, digits, '_', '.', '-'; e.g. 'data' or 'data:/home/work/input')"
            )
        if sep and not alias:
            raise ConfigError(f"{variable}: {item!r} has an empty alias after ':'")
        if "\x00" in alias or ".." in alias.split("/"):
            raise ConfigError(f"{variable}: alias {alias!r} must not contain '..' or NUL")
        if name in seen:
            raise ConfigError(f"{variable}: vfolder {name!r} is listed twice")
        seen.add(name)
        mounts.append(Mount(name, alias or None))
    return tuple(mounts)


def parse_resources(slots: Mapping[str, str], variable: str) -> dict[str, str]:
    """Resource slots (``{"cpu": "2", "mem": "4g"}``), each name and value checked."""
    for name, value in slots.items():
        if not SLOT_NAME_RE.match(name):
            raise ConfigError(
                f"{variable}: {name!r} is not a resource slot name (e.g. cpu, mem, cuda.shares, cuda.device)"
            )
        if not SLOT_VALUE_RE.match(value):
            raise ConfigError(
                f"{variable}: {name}={value!r} is not a number or a size (e.g. cpu=2, mem=4g, cuda.shares=0.5)"
            )
    return dict(slots)


def parse_api_version(raw: str | None, variable: str = "BACKEND_API_VERSION") -> str | None:
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    if not API_VERSION_RE.match(raw):
        raise ConfigError(f"{variable}: {raw!r} is not an API version like 'v9.20250722' or 'v4.20190615'")
    return raw


def parse_session_name(raw: str | None, variable: str = "BACKEND_SESSION_NAME") -> str | None:
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    if not SESSION_NAME_RE.match(raw):
        raise ConfigError(f"{variable}: {raw!r} is not a session name (4-64 letters, digits, '_', '.', '-')")
    return raw


def parse_bool(raw: str | None, variable: str) -> bool:
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{variable}: {raw!r} is not a boolean (use true/false, 1/0, yes/no)")


def parse_seconds(raw: str | None, variable: str, default: float) -> float:
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{variable}: {raw!r} is not a number of seconds") from None
    if value < 0 or value != value or value == float("inf"):
        raise ConfigError(f"{variable}: {raw!r} must be a finite number of seconds >= 0")
    return value


# Variables a compute session of the embedded server inherits from the server process; nothing else
# (in particular no BACKEND_*/SORNA_* keys) leaks into user code.
SESSION_ENV_PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM", "SYSTEMROOT")


def session_base_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {k: env[k] for k in SESSION_ENV_PASSTHROUGH if k in env}


def parse_ca_bundle(raw: str | None, variable: str) -> str | None:
    """A PEM file, or a directory of them, to trust; checked now, so that a bad path is one line
    naming the variable rather than a TLS failure later."""
    if raw is None or not raw.strip():
        return None
    path = os.path.expanduser(raw.strip())
    if not os.path.exists(path):
        raise ConfigError(f"{variable}: {path!r} does not exist (give a PEM file of CA certificates, or a directory)")
    try:
        _load_ca_bundle(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), path)  # a bare context: only the bundle is read
    except (ssl.SSLError, ValueError, OSError) as e:
        raise ConfigError(f"{variable}: {path!r} holds no PEM certificate that loads ({e})") from None
    return path


def _load_ca_bundle(context: ssl.SSLContext, path: str) -> None:
    """Trust the certificates of a PEM file, or of every PEM file in a directory (and its hashed
    links, as OpenSSL's ``capath`` reads them)."""
    if not os.path.isdir(path):
        context.load_verify_locations(cafile=path)
        return
    context.load_verify_locations(capath=path)
    loaded = 0
    for name in sorted(os.listdir(path)):
        file = os.path.join(path, name)
        if os.path.isfile(file) and not os.path.islink(file):
            try:
                context.load_verify_locations(cafile=file)
                loaded += 1
            except ssl.SSLError:
                continue  # not a certificate (a README, a key)
    if not loaded:
        raise ValueError("the directory holds no PEM certificate")


def tls_context(config: Config) -> ssl.SSLContext | bool:
    """What aiohttp is given as ``ssl=``: False when validation is skipped, else a context that
    trusts the system's CAs (``SSL_CERT_FILE``/``SSL_CERT_DIR`` included) and ``BACKEND_CA_BUNDLE``."""
    if config.skip_sslcert_validation:
        return False
    return _verifying_context(config.ca_bundle, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _verifying_context(ca_bundle: str | None, cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """One context per trust setting and process: reading the system's CAs costs ~20 ms, which
    every client's first request (the kernel's, the filesystem's, each job follower's) paid anew.
    ``cert_file``/``cert_dir`` are only the cache's key: ``create_default_context`` reads them
    from the environment.  (A bundle edited on disk is read again by the next process.)"""
    context = ssl.create_default_context()
    if ca_bundle:
        _load_ca_bundle(context, ca_bundle)
    return context


def trust_description(config: Config) -> str:
    """Which certificates are trusted, in words (``%backend_config``, ``doctor``)."""
    if config.skip_sslcert_validation:
        return "none: certificates are not verified (BACKEND_SKIP_SSLCERT_VALIDATION)"
    parts = ["the system's CAs"]
    for variable in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        if os.environ.get(variable):
            parts.append(f"{variable}={os.environ[variable]}")
    if config.ca_bundle:
        parts.append(f"BACKEND_CA_BUNDLE={config.ca_bundle}")
    return ", ".join(parts)
