"""Configuration from BACKEND_* (and SORNA_*) variables, with one-line errors.

The tests down to ``test_session_base_environ_passes_only_harmless_variables`` moved here from
tests/test_config.py unchanged."""

from __future__ import annotations

import pytest

from backend_jupyter.config import (
    Config,
    ConfigError,
    Mount,
    parse_api_version,
    parse_bool,
    parse_endpoints,
    parse_mounts,
    parse_resources,
    parse_seconds,
    parse_session_name,
    session_base_environ,
    sources,
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


# -- Config.from_env ------------------------------------------------------------------------------

def test_every_default():
    cfg = Config.from_env({})
    assert cfg == Config()
    assert (cfg.endpoints, cfg.access_key, cfg.secret_key, cfg.api_version, cfg.session_name) == ((), "", "", None, None)
    assert (cfg.domain, cfg.group) == ("default", "default")


def test_every_setting_from_sorna_variables_alone():
    cfg = Config.from_env({
        "SORNA_ENDPOINT": "http://old.example.com:8081/", "SORNA_ACCESS_KEY": " AK ", "SORNA_SECRET_KEY": "SK\n",
        "SORNA_VFOLDER_MOUNTS": "d", "SORNA_API_VERSION": "v2.20170315", "SORNA_SKIP_SSLCERT_VALIDATION": "1",
        "SORNA_CONNECTION_TIMEOUT": "1", "SORNA_READ_TIMEOUT": "2", "SORNA_DOMAIN": " dom ",
        "SORNA_GROUP": "grp", "SORNA_SESSION_NAME": "shared-1",
    })
    assert cfg == Config(("http://old.example.com:8081",), "AK", "SK", (Mount("d"),), "v2.20170315", True,
                         1.0, 2.0, "dom", "grp", "shared-1")


def test_backend_variable_wins_even_when_empty():
    cfg = Config.from_env({"BACKEND_DOMAIN": "", "SORNA_DOMAIN": "old", "BACKEND_GROUP": "new", "SORNA_GROUP": "old"})
    assert (cfg.domain, cfg.group) == ("default", "new")


@pytest.mark.parametrize("env, embedded", [
    ({}, True),
    ({"BACKEND_ENDPOINT": "  "}, True),
    ({"BACKEND_DOMAIN": "d", "BACKEND_VFOLDER_MOUNTS": "x"}, True),
    ({"BACKEND_ENDPOINT": "https://api.example.com"}, False),
    ({"SORNA_ACCESS_KEY": "AK"}, False),
    ({"BACKEND_SECRET_KEY": "SK"}, False),
])
def test_embedded_server_only_when_nothing_points_at_a_cluster(env, embedded):
    assert Config.from_env(env).uses_embedded_server is embedded


def test_replace_keeps_the_rest():
    cfg = Config.from_env({"BACKEND_ENDPOINT": "https://a.example.com", "BACKEND_DOMAIN": "d"})
    other = cfg.replace(endpoints=("https://b.example.com",))
    assert other.endpoint == "https://b.example.com" and other.domain == "d" and cfg.endpoint == "https://a.example.com"


# -- the parsers -----------------------------------------------------------------------------------

def test_parse_endpoints():
    assert parse_endpoints(None) == () and parse_endpoints(" ") == ()
    assert parse_endpoints("https://a.example.com/,,http://127.0.0.1:8081//") == \
        ("https://a.example.com", "http://127.0.0.1:8081")
    with pytest.raises(ConfigError, match=r"^MY_VAR: 'a.example.com' is not an http\(s\) URL"):
        parse_endpoints("a.example.com", "MY_VAR")
    with pytest.raises(ConfigError, match="^BACKEND_ENDPOINT: "):
        parse_endpoints("https://")


def test_parse_mounts_names_and_aliases():
    assert parse_mounts("") == ()
    assert parse_mounts("data") == (Mount("data"),)
    assert parse_mounts("data:/home/work/in, .cache : c, _x") == \
        (Mount("data", "/home/work/in"), Mount(".cache", "c"), Mount("_x"))
    assert [str(m) for m in parse_mounts("a:b,c")] == ["a:b", "c"]


@pytest.mark.parametrize("raw, fragment", [
    ("-data", "'-data' is not a valid vfolder name"),
    ("da/ta", "'da/ta' is not a valid vfolder name"),
    ("x" * 65, "is not a valid vfolder name"),
    (":alias", "'' is not a valid vfolder name"),
    ("a:", "'a:' has an empty alias"),
    ("a:x/../y", "must not contain '..'"),
    ("a:x\x00", "must not contain '..' or NUL"),
    ("a, b, a:c", "'a' is listed twice"),
])
def test_parse_mounts_errors_name_the_variable(raw, fragment):
    with pytest.raises(ConfigError) as err:
        parse_mounts(raw, "MOUNTS_VAR")
    assert str(err.value).startswith("MOUNTS_VAR: ") and fragment in str(err.value)


def test_parse_mounts_allows_dots_inside_an_alias():
    assert parse_mounts("a:x/..y/z.") == (Mount("a", "x/..y/z."),)


def test_parse_resources_accepts_numbers_and_sizes():
    slots = {"cpu": "2", "mem": "4g", "cuda.shares": "0.5", "cuda.device": "1", "shmem": "512MiB",
             "rocm-x.device": "1", "mem2": "1.5GB"}
    assert parse_resources(slots, "--resource") == slots
    assert parse_resources({}, "--resource") == {}


@pytest.mark.parametrize("slot, value, fragment", [
    ("GPU!", "1", "'GPU!' is not a resource slot name (e.g. cpu, mem, cuda.shares, cuda.device)"),
    ("Cpu", "1", "'Cpu' is not a resource slot name"),
    ("cuda..shares", "1", "is not a resource slot name"),
    ("cuda.shares.x", "1", "is not a resource slot name"),
    ("cpu\n", "1", "is not a resource slot name"),
    ("", "1", "'' is not a resource slot name"),
    ("cpu", "lots", "cpu='lots' is not a number or a size (e.g. cpu=2, mem=4g, cuda.shares=0.5)"),
    ("cpu", "-1", "cpu='-1' is not a number or a size"),
    ("mem", "4 g", "mem='4 g' is not a number or a size"),
    ("mem", "4x", "mem='4x' is not a number or a size"),
    ("mem", "", "mem='' is not a number or a size"),
    ("cpu", "2\n", "is not a number or a size"),
])
def test_parse_resources_errors_are_one_line_naming_the_option(slot, value, fragment):
    with pytest.raises(ConfigError) as err:
        parse_resources({slot: value}, "--resource")
    message = str(err.value)
    assert message.startswith("--resource: ") and fragment in message and "\n" not in message


@pytest.mark.parametrize("raw", ["1", "true", "YES", " on ", "y", "T"])
def test_parse_bool_true(raw):
    assert parse_bool(raw, "V") is True


@pytest.mark.parametrize("raw", [None, "", "0", "False", "no", "off", "n", " f "])
def test_parse_bool_false(raw):
    assert parse_bool(raw, "V") is False


def test_parse_bool_rejects_other_words():
    with pytest.raises(ConfigError, match="^V: '2' is not a boolean"):
        parse_bool("2", "V")


def test_parse_seconds():
    assert parse_seconds(None, "V", 7.0) == 7.0 and parse_seconds("  ", "V", 7.0) == 7.0
    assert parse_seconds("0", "V", 7.0) == 0.0 and parse_seconds(" 1.5 ", "V", 7.0) == 1.5
    assert parse_seconds("1e3", "V", 7.0) == 1000.0
    for bad in ("-0.1", "nan", "inf", "abc"):
        with pytest.raises(ConfigError, match="^V: "):
            parse_seconds(bad, "V", 7.0)


def test_parse_session_name():
    assert parse_session_name(None) is None and parse_session_name("  ") is None
    assert parse_session_name("  my-session.1 ") == "my-session.1"
    for bad in ("abc", "-abcd", "abcd-", "ab cd", "x" * 65, "séance"):
        with pytest.raises(ConfigError, match="^BACKEND_SESSION_NAME: "):
            parse_session_name(bad)


def test_parse_api_version():
    assert parse_api_version(None) is None and parse_api_version("") is None
    assert parse_api_version(" v9.20250722 ") == "v9.20250722"
    for bad in ("9.20250722", "v9", "v9.2025072", "v9.202507221", "vX.20250722"):
        with pytest.raises(ConfigError, match="^BACKEND_API_VERSION: "):
            parse_api_version(bad)


def test_sources_name_the_variable_that_set_each_field():
    found = sources({"BACKEND_ENDPOINT": "https://a.example.com", "SORNA_ENDPOINT": "https://old.example.com",
                     "SORNA_ACCESS_KEY": "AK", "BACKEND_READ_TIMEOUT": "", "UNRELATED": "x"})
    assert found["endpoints"] == "BACKEND_ENDPOINT"
    assert found["access_key"] == "SORNA_ACCESS_KEY"
    assert found["read_timeout"] == "BACKEND_READ_TIMEOUT"  # set, even if empty
    assert found["secret_key"] == "default" and found["session_name"] == "default"
    assert set(found) == {f.name for f in Config.__dataclass_fields__.values()}
