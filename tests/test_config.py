"""Configuration: file, environment overrides, validation messages, secrets hygiene."""

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from t2ctl import config
from t2ctl.errors import ConfigError


def test_zero_config_is_sandbox_on_a_local_sqlite_file() -> None:
    settings = config.load(None, env={})
    assert settings.sandbox_mode and settings.mode == "sandbox"
    assert settings.database.url == "sqlite:///t2ctl.db"
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.webhooks.retry_schedule[0] == timedelta(seconds=5)
    assert settings.webhooks.retry_schedule[-1] == timedelta(hours=10)
    assert settings.schedule.timezone == "Africa/Lagos"


def test_environment_overrides_the_file_and_parses_values_as_toml(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n')
    env = {
        "T2CTL_SERVER__PORT": "9100",
        "T2CTL_WEBHOOKS__RETRY_SCHEDULE": '["1s", "2m"]',
        "T2CTL_WEBHOOKS__ALLOW_PRIVATE_NETWORKS": '["10.8.0.0/16"]',
        "T2CTL_DATABASE__URL": "sqlite:////var/lib/t2ctl/t2ctl.db",
    }
    settings = config.load(path, env=env)
    assert settings.server.port == 9100
    assert settings.server.host == "0.0.0.0"
    assert settings.webhooks.retry_schedule == [timedelta(seconds=1), timedelta(minutes=2)]
    assert str(settings.webhooks.allow_private_networks[0]) == "10.8.0.0/16"
    assert settings.database.sqlite_path == Path("/var/lib/t2ctl/t2ctl.db")


def test_config_path_comes_from_T2CTL_CONFIG(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text("[worker]\nconcurrency = 9\n")
    assert config.load(None, env={"T2CTL_CONFIG": str(path)}).worker.concurrency == 9


def test_every_problem_is_named_with_its_key_and_source(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[server]\nport = "eighty"\n[zoho]\nretry_for = "forever"\n')
    with pytest.raises(ConfigError) as caught:
        config.load(
            path, env={"T2CTL_SCHEDULE__TIMEZONE": "Mars/Olympus", "T2CTL_SERVER__PORTT": "1"}
        )
    text = str(caught.value)
    assert (
        f"server.port: Input should be a valid integer, unable to parse string as an integer"
        f" (from {path})" in text
    )
    assert "zoho.retry_for" in text and "not a duration" in text
    assert "schedule.timezone: unknown time zone 'Mars/Olympus'" in text
    assert "(from T2CTL_SCHEDULE__TIMEZONE)" in text
    assert "server.portt: unknown key (from T2CTL_SERVER__PORTT)" in text


def test_malformed_toml_and_missing_file_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad, env={})
    with pytest.raises(ConfigError, match="no such file"):
        config.load(tmp_path / "missing.toml", env={})


def test_zoho_mode_needs_credentials_and_a_master_key() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(None, env={"T2CTL_ZOHO__ENABLED": "true"})
    text = str(caught.value)
    assert "zoho.client_id, zoho.client_secret, zoho.refresh_token, zoho.organization_id" in text


def test_postgres_needs_a_master_key() -> None:
    with pytest.raises(ConfigError, match=r"security\.master_key is required"):
        config.load(None, env={"T2CTL_DATABASE__URL": "postgresql://db.internal/t2ctl"})


def test_a_file_holding_secrets_must_not_be_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[security]\nmaster_key = "{Fernet.generate_key().decode()}"\n')
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by others.*chmod o-r"):
        config.load(path, env={})
    path.chmod(0o640)
    assert config.load(path, env={}).security.master_keys


def test_redacted_view_hides_every_secret() -> None:
    key = Fernet.generate_key().decode()
    settings = config.load(
        None,
        env={
            "T2CTL_SECURITY__MASTER_KEY": key,
            "T2CTL_DATABASE__URL": "postgresql://t2:hunter2@db.internal:5432/t2ctl",
            "T2CTL_DATABASE__LISTEN_URL": "postgresql://t2:direct%2Fpass@db.direct:5432/t2ctl",
            "T2CTL_ZOHO__ENABLED": "true",
            "T2CTL_ZOHO__CLIENT_ID": "1000.ABC",
            "T2CTL_ZOHO__CLIENT_SECRET": "zoho-client-secret",
            "T2CTL_ZOHO__REFRESH_TOKEN": "1000.refresh",
            "T2CTL_ZOHO__ORGANIZATION_ID": "123",
        },
    )
    shown = str(settings.redacted())
    for secret in (key, "hunter2", "direct%2Fpass", "direct/pass", "zoho-client-secret"):
        assert secret not in shown
        assert secret in settings.secret_values(), "the log filter masks it too"
    assert "1000.refresh" not in shown
    database = settings.redacted()["database"]
    assert database["url"] == "postgresql://t2:********@db.internal:5432/t2ctl"
    assert database["listen_url"] == "postgresql://t2:********@db.direct:5432/t2ctl"
    assert settings.redacted()["webhooks"]["retry_schedule"] == [
        "5s",
        "5m",
        "30m",
        "2h",
        "5h",
        "10h",
        "10h",
    ]


def test_secrets_from_the_environment_do_not_taint_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[server]\nport = 8081\n")
    path.chmod(0o644)
    env = {"T2CTL_SECURITY__MASTER_KEY": Fernet.generate_key().decode()}
    assert config.load(path, env=env).security.master_keys


def test_an_empty_master_key_counts_as_none() -> None:
    # An EnvironmentFile line `T2CTL_SECURITY__MASTER_KEY=` left blank.
    assert config.load(None, env={"T2CTL_SECURITY__MASTER_KEY": ""}).security.master_key is None
    with pytest.raises(ConfigError, match=r"security\.master_key is required unless"):
        config.load(
            None,
            env={
                "T2CTL_SECURITY__MASTER_KEY": " ",
                "T2CTL_DATABASE__URL": "postgresql://db.internal/t2ctl",
            },
        )


def test_environment_text_is_typed_by_its_key_not_guessed() -> None:
    settings = config.load(
        None,
        env={
            "T2CTL_ZOHO__CLIENT_ID": "1e5",
            "T2CTL_ZOHO__ENABLED": "false",
            "T2CTL_WEBHOOKS__TIMEOUT_SECONDS": "2.5",
        },
    )
    assert settings.zoho.client_id == "1e5"
    assert settings.zoho.enabled is False
    assert settings.webhooks.timeout_seconds == 2.5


def test_a_section_that_is_not_a_table_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('security = "x"\n')
    with pytest.raises(ConfigError, match="security: Input should be a valid dictionary"):
        config.load(path, env={})


def test_a_password_in_the_url_query_is_redacted_too() -> None:
    settings = config.load(
        None,
        env={
            "T2CTL_SECURITY__MASTER_KEY": Fernet.generate_key().decode(),
            "T2CTL_DATABASE__URL": "postgresql://t2@db/t2ctl?sslmode=require&password=hunter2",
        },
    )
    assert "hunter2" not in settings.database.redacted_url()
    assert "sslmode=require" in settings.database.redacted_url()


def test_a_sqlite_url_is_shown_as_written() -> None:
    for url in ("sqlite:///t2ctl.db", "sqlite:////var/lib/t2ctl/t2ctl.db"):
        assert config.DatabaseSettings(url=url).redacted_url() == url


def test_rate_limit_storage_is_memory_or_redis_and_a_bad_one_is_named_not_echoed() -> None:
    assert config.load(None, env={}).server.rate_limit_storage == "memory://"
    for good in ("redis://127.0.0.1:6379/0", "rediss://:pw@cache.internal:6380/2", "redis://c"):
        env = {"T2CTL_SERVER__RATE_LIMIT_STORAGE": good}
        assert config.load(None, env=env).server.rate_limit_storage == good
    for bad in (
        "memcached://:hunter2@cache:11211",
        "hunter2",
        "redis://:hunter2@cache:99999/0",
        "redis://:hunter2@cache:6379/zero",
        "redis://:hunter2@/0",
    ):
        with pytest.raises(ConfigError) as caught:
            config.load(None, env={"T2CTL_SERVER__RATE_LIMIT_STORAGE": bad})
        (problem,) = caught.value.problems
        assert problem.startswith("server.rate_limit_storage: "), problem
        assert problem.endswith("(from T2CTL_SERVER__RATE_LIMIT_STORAGE)"), problem
        assert "hunter2" not in problem
    assert "must be memory:// or redis://HOST:PORT/DB" in str(caught.value)


def test_a_redis_password_is_redacted_and_masked_in_logs() -> None:
    settings = config.load(
        None, env={"T2CTL_SERVER__RATE_LIMIT_STORAGE": "redis://t2:hunter2@cache:6379/0"}
    )
    shown = settings.redacted()["server"]["rate_limit_storage"]
    assert shown == "redis://t2:********@cache:6379/0"
    assert "hunter2" in settings.secret_values()
    assert config.ServerSettings().redacted_rate_limit_storage() == "memory://"


def test_connection_handling_has_internet_defaults_shown_as_written() -> None:
    server = config.load(None, env={}).server
    assert (server.connection_limit, server.max_header_bytes) == (1000, 16384)
    assert server.idle_timeout == server.read_timeout == timedelta(seconds=30)
    shown = config.load(None, env={"T2CTL_SERVER__READ_TIMEOUT": "1m"}).redacted()["server"]
    assert (shown["idle_timeout"], shown["read_timeout"]) == ("30s", "1m")


def test_bad_connection_settings_are_refused_with_the_key_named(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[server]\nconnection_limit = 0\nidle_timeout = "0s"\nmax_header_bytes = 10\n')
    with pytest.raises(ConfigError) as caught:
        config.load(path, env={"T2CTL_SERVER__READ_TIMEOUT": "soon"})
    text = str(caught.value)
    assert "server.connection_limit: Input should be greater than or equal to 1" in text
    assert f"server.idle_timeout: must be at least 1s (from {path})" in text
    assert "server.max_header_bytes: Input should be greater than or equal to 1024" in text
    assert "server.read_timeout: 'soon' is not a duration" in text
    assert "(from T2CTL_SERVER__READ_TIMEOUT)" in text


def test_a_listen_url_needs_postgresql_on_both_sides() -> None:
    for env in (
        {"T2CTL_DATABASE__LISTEN_URL": "postgresql://db.direct/t2ctl"},  # url is SQLite
        {
            "T2CTL_DATABASE__URL": "postgresql://pgbouncer:6432/t2ctl",
            "T2CTL_DATABASE__LISTEN_URL": "db.direct:5432",
            "T2CTL_SECURITY__MASTER_KEY": Fernet.generate_key().decode(),
        },
    ):
        with pytest.raises(ConfigError, match=r"database\.listen_url must be a postgresql://"):
            config.load(None, env=env)
