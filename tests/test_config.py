"""Configuration from BACKEND_* (and SORNA_*) variables, with one-line errors."""

from __future__ import annotations

import pytest

from backend_jupyter.config import (
    Config,
    ConfigError,
    Mount,
    parse_mounts,
    session_base_environ,
)


def test_defaults_mean_embedded_server():
    cfg = Config.from_env({})
    assert cfg.uses_embedded_server and cfg.endpoint is None
    assert cfg.connection_timeout == 10.0 and cfg.read_timeout == 0.0
    assert cfg.skip_sslcert_validation is False and cfg.vfolder_mounts == ()


def test_backend_variables_and_sorna_fallbacks():
    cfg = Config.from_env({
        "BACKEND_ENDPOINT": "https://a.example.com/, https://b.example.com",
        "SORNA_ACCESS_KEY": "AKIAOLD", "SORNA_SECRET_KEY": "oldsecret",
        "BACKEND_ACCESS_KEY": "AKIANEW",
        "SORNA_VFOLDER_MOUNTS": "data, models:weights",
        "BACKEND_API_VERSION": "v4.20190615",
        "BACKEND_SKIP_SSLCERT_VALIDATION": "yes",
        "BACKEND_CONNECTION_TIMEOUT": "2.5", "BACKEND_READ_TIMEOUT": "30",
    })
    assert cfg.endpoints == ("https://a.example.com", "https://b.example.com")
    assert cfg.access_key == "AKIANEW" and cfg.secret_key == "oldsecret"
    assert cfg.vfolder_mounts == (Mount("data"), Mount("models", "weights"))
    assert cfg.api_version == "v4.20190615" and cfg.skip_sslcert_validation is True
    assert (cfg.connection_timeout, cfg.read_timeout) == (2.5, 30.0)
    assert not cfg.uses_embedded_server


def test_secret_is_not_in_repr():
    cfg = Config.from_env({"BACKEND_SECRET_KEY": "top-secret-value", "BACKEND_ACCESS_KEY": "AK"})
    assert "top-secret-value" not in repr(cfg)


@pytest.mark.parametrize("env, variable", [
    ({"BACKEND_ENDPOINT": "ftp://x"}, "BACKEND_ENDPOINT"),
    ({"BACKEND_VFOLDER_MOUNTS": "bad name"}, "BACKEND_VFOLDER_MOUNTS"),
    ({"BACKEND_VFOLDER_MOUNTS": "a,a"}, "BACKEND_VFOLDER_MOUNTS"),
    ({"BACKEND_VFOLDER_MOUNTS": "a:"}, "BACKEND_VFOLDER_MOUNTS"),
    ({"BACKEND_VFOLDER_MOUNTS": "a:../up"}, "BACKEND_VFOLDER_MOUNTS"),
    ({"BACKEND_API_VERSION": "9"}, "BACKEND_API_VERSION"),
    ({"BACKEND_SKIP_SSLCERT_VALIDATION": "maybe"}, "BACKEND_SKIP_SSLCERT_VALIDATION"),
    ({"BACKEND_CONNECTION_TIMEOUT": "soon"}, "BACKEND_CONNECTION_TIMEOUT"),
    ({"SORNA_READ_TIMEOUT": "-1"}, "BACKEND_READ_TIMEOUT"),
])
def test_invalid_values_name_the_variable(env, variable):
    with pytest.raises(ConfigError) as err:
        Config.from_env(env)
    message = str(err.value)
    assert message.startswith(variable + ":") and "\n" not in message


def test_mount_parsing():
    assert parse_mounts(" a , b:/home/work/x ,, c.d-e ") == (Mount("a"), Mount("b", "/home/work/x"), Mount("c.d-e"))
    assert str(Mount("b", "x")) == "b:x"


def test_session_base_environ_passes_only_harmless_variables():
    env = session_base_environ({"PATH": "/bin", "LANG": "C.UTF-8", "BACKEND_SECRET_KEY": "s", "HOME": "/root"})
    assert env == {"PATH": "/bin", "LANG": "C.UTF-8"}
