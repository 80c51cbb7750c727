"""Settings: seed defaults, parsing, and one clear line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.paths import media_dir
from engine.settings import VARIABLES, load_settings, markdown_table


def test_seed_defaults() -> None:
    s = load_settings({})
    assert s.drachtio_host == "localhost" and s.drachtio_port == 9022
    assert s.drachtio_secret == "cymru"
    assert [str(e) for e in s.rtpengine_endpoints] == ["localhost:2223"]
    assert s.loglevel == "debug" and s.webport == 2999
    assert (s.db_host, s.db_port, s.db_user, s.db_password) == (
        "localhost", 5432, "postgres", "my_password")
    assert s.http_timeout == 30 and s.http_user_agent == "dragonpbx"
    assert s.registration_min_secs == 30 and s.registration_max_secs == 3600
    assert s.default_codecs == ("G722", "PCMA", "PCMU")
    assert s.default_ringtone == "file:/uk.wav"
    assert s.data_source == "api"
    assert s.config_url == "http://127.0.0.1:1337/api/v1/domains"
    assert s.config_token == "dev-admin-token-123"
    assert s.config_ttl == 60 and s.regtrunk_refresh == 60
    assert s.media_path == media_dir()


def test_new_defaults() -> None:
    s = load_settings({})
    assert s.sip_backend == "embedded" and s.sip_host == "0.0.0.0" and s.sip_port == 5060
    assert s.sip_transports == ("udp", "tcp") and s.sip_external_address is None
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.config_file == Path("config.json").resolve()
    assert s.db_name == "dragonpbx"
    assert (s.reghook_timeout, s.callhook_timeout, s.statushook_timeout) == (5, 3, 3)
    assert s.shutdown_grace_secs == 30


@pytest.mark.parametrize(("raw", "expected"), [
    ('["PCMU","PCMA"]', ("PCMU", "PCMA")),
    ("PCMU,PCMA", ("PCMU", "PCMA")),
    (" opus , G722 ", ("opus", "G722")),
    ('["PCMU","DIRECT"]', ("PCMU", "DIRECT")),
])
def test_default_codecs_json_or_comma_list(raw: str, expected: tuple[str, ...]) -> None:
    assert load_settings({"DEFAULT_CODECS": raw}).default_codecs == expected


def test_rtpengine_host_list() -> None:
    s = load_settings({"RTPENGINE_HOST": "10.0.0.1, 10.0.0.2:2300,[::1]:2224,::2",
                       "RTPENGINE_PORT": "2230"})
    assert [(e.host, e.port) for e in s.rtpengine_endpoints] == [
        ("10.0.0.1", 2230), ("10.0.0.2", 2300), ("::1", 2224), ("::2", 2230)]


def test_rtpengine_host_defaults_to_drachtio_host() -> None:
    s = load_settings({"DRACHTIO_HOST": "media.example"})
    assert [str(e) for e in s.rtpengine_endpoints] == ["media.example:2223"]


@pytest.mark.parametrize(("env", "variable", "form"), [
    ({"SIP_PORT": "abc"}, "SIP_PORT", "an integer from 0 to 65535"),
    ({"SIP_PORT": "70000"}, "SIP_PORT", "an integer from 0 to 65535"),
    ({"SIP_BACKEND": "pjsip"}, "SIP_BACKEND", "one of embedded, drachtio"),
    ({"SIP_TRANSPORTS": "udp,sctp"}, "SIP_TRANSPORTS", "a comma list of udp, tcp"),
    ({"DEFAULT_CODECS": "[1,2]"}, "DEFAULT_CODECS", "a JSON list"),
    ({"DEFAULT_CODECS": ""}, "DEFAULT_CODECS", "a JSON list"),
    ({"CONFIG_TTL": "soon"}, "CONFIG_TTL", "a number > 0"),
    ({"CONFIG_TTL": "0"}, "CONFIG_TTL", "a number > 0"),
    ({"REGTRUNKREFRESH": "-1"}, "REGTRUNKREFRESH", "a number > 0"),
    ({"DATA_SOURCE": "mysql"}, "DATA_SOURCE", "one of api, json, pg"),
    ({"REDIS_URL": "localhost:6379"}, "REDIS_URL", "a URL starting with redis://"),
    ({"MEDIA_ALLOW_PRIVATE": "maybe"}, "MEDIA_ALLOW_PRIVATE", "true or false"),
    ({"RTPENGINE_HOST": "a:b"}, "RTPENGINE_HOST", "host[:port]"),
    ({"LOGLEVEL": "chatty"}, "LOGLEVEL", "one of debug"),
    ({"DEFAULT_RINGTONE": "uk.wav"}, "DEFAULT_RINGTONE", "file:<path>"),
])
def test_bad_values_name_the_variable_and_the_form(env: dict[str, str], variable: str,
                                                   form: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env)
    text = str(exc.value)
    assert "\n" not in text
    assert text.startswith(f"{variable}=") and form in text


def test_secret_values_are_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings({"REDIS_URL": "hunter2"})
    assert "hunter2" not in str(exc.value)


def test_min_above_max_is_refused() -> None:
    with pytest.raises(ConfigError, match="REGISTRATION_MIN_SECS"):
        load_settings({"REGISTRATION_MIN_SECS": "600", "REGISTRATION_MAX_SECS": "60"})


def test_default_secret_warning_only_for_non_loopback_peers() -> None:
    assert load_settings({"CONFIG_URL": "http://127.0.0.1:1337/x"}).default_secret_warnings() \
        == []
    warnings = load_settings({"CONFIG_URL": "https://config.example/x"}).default_secret_warnings()
    assert len(warnings) == 1 and "CONFIG_TOKEN" in warnings[0]
    assert load_settings({"CONFIG_URL": "https://config.example/x",
                          "CONFIG_TOKEN": "mine"}).default_secret_warnings() == []
    assert "DB_PASSWORD" in load_settings(
        {"DATA_SOURCE": "pg", "DB_HOST": "db.example"}).default_secret_warnings()[0]


def test_redacted_view_hides_secrets() -> None:
    view = load_settings({"REDIS_URL": "redis://:pw@host:6379/0", "CONFIG_TOKEN": "tok"}
                         ).redacted()
    assert view["CONFIG_TOKEN"] == "***" and view["REDIS_URL"] == "redis://***@host:6379/0"
    assert "pw" not in str(view) and "tok" not in str(view)


def test_markdown_table_lists_every_variable() -> None:
    table = markdown_table()
    for var in VARIABLES:
        assert f"`{var.env}`" in table


def test_readme_variable_table_is_generated_from_the_settings() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert markdown_table() in readme, "run `dragonpbx settings --markdown` into the README"
