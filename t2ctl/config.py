"""Settings: ``config.toml`` plus ``T2CTL_<SECTION>__<KEY>`` overrides, validated once.

Loading either returns a complete, typed ``Settings`` or raises ``ConfigError`` listing every
problem, each naming its key (and the environment variable, when that is where it came from).
Nothing else in t2ctl reads the environment or the config file.
"""

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from t2ctl import clock, urls
from t2ctl.errors import ConfigError, ConfigNotFound

ENV_PREFIX = "T2CTL_"
CONFIG_ENV = "T2CTL_CONFIG"
SYSTEM_CONFIG = Path("/etc/t2ctl/config.toml")
SECRET_KEYS = ("security.master_key", "zoho.client_secret", "zoho.refresh_token")


def _duration(value: Any) -> timedelta:
    return clock.parse_duration(value) if isinstance(value, str) else value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class DatabaseSettings(_Section):
    url: str = "sqlite:///t2ctl.db"
    # PostgreSQL only. A direct session for LISTEN when ``url`` goes through a pooler in
    # transaction mode; empty: LISTEN on ``url`` (not attempted when ``url`` is a pooler's).
    listen_url: str = ""
    # False behind PgBouncer in transaction mode before 1.21 (or without
    # max_prepared_statements): there psycopg's prepared statements break.
    prepared_statements: bool = True

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        scheme = urlsplit(url).scheme
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return url

    @model_validator(mode="after")
    def _listen_on_postgres(self) -> "DatabaseSettings":
        if self.listen_url and (
            self.is_sqlite or urlsplit(self.listen_url).scheme not in ("postgresql", "postgres")
        ):
            raise ValueError(
                "database.listen_url must be a postgresql:// URL, beside a PostgreSQL "
                "database.url (leave it empty on SQLite)"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return urls.sqlite_path(self.url) is not None

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, relative to the working directory unless the URL has four slashes;
        None on PostgreSQL."""
        path = urls.sqlite_path(self.url)
        return Path(path) if path is not None else None

    def redacted_url(self) -> str:
        """The URL with any password, in the user part or the query, replaced."""
        return urls.scrubbed(self.url, dsn=True)

    def redacted_listen_url(self) -> str:
        return urls.scrubbed(self.listen_url, dsn=True) if self.listen_url else ""


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    threads: int = Field(8, ge=1, le=256)
    rate_limit_per_minute: int = Field(100, ge=1)
    # Where the rate limits are counted: memory:// (each process alone) or redis://… (shared).
    rate_limit_storage: str = "memory://"
    # Reverse proxies whose X-Forwarded-For is believed; from anyone else it is ignored.
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    # Open connections; at the limit the idle and slow ones are closed to make room.
    connection_limit: int = Field(1000, ge=1, le=100_000)
    # Silence allowed on a connection (between requests, or in the middle of one).
    idle_timeout: Duration = timedelta(seconds=30)
    # Time allowed from a request's first byte until its headers and body have all arrived.
    read_timeout: Duration = timedelta(seconds=30)
    # The request line and headers together; more is answered 431.
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)

    @field_validator("idle_timeout", "read_timeout")
    @classmethod
    def _at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _known_storage(cls, uri: str) -> str:
        """memory://, or a Redis URI redis-py can read; never echoed, as it may hold a password."""
        if uri == "memory://":
            return uri
        parts = urlsplit(uri)
        try:
            host, _port = parts.hostname, parts.port  # the port raises if not a number in range
        except ValueError:
            raise ValueError("the port in the redis:// URI is not a port number") from None
        if parts.scheme not in ("redis", "rediss") or not host:
            raise ValueError("must be memory:// or redis://HOST:PORT/DB (rediss:// for TLS)")
        if not re.fullmatch(r"/?\d*", parts.path):
            raise ValueError("the database in the redis:// URI must be a number, as in /0")
        return uri

    @property
    def shares_rate_limits(self) -> bool:
        """True when every daemon pointed at this storage shares one count per key."""
        return self.rate_limit_storage != "memory://"

    def redacted_rate_limit_storage(self) -> str:
        """The storage URI with any password replaced."""
        if not self.shares_rate_limits:
            return self.rate_limit_storage
        return urls.scrubbed(self.rate_limit_storage, dsn=True)


class WorkerSettings(_Section):
    concurrency: int = Field(4, ge=1, le=256)
    lease_seconds: int = Field(30, ge=5)
    shutdown_grace: Duration = timedelta(seconds=20)
    job_retention: Duration = timedelta(days=7)


class SandboxSettings(_Section):
    """Sandbox provisioning, for rehearsing slow and failing orders without Zoho."""

    provision_delay: Duration = timedelta(0)
    decline_products: list[str] = Field(default_factory=list)


class SecuritySettings(_Section):
    master_key: SecretStr | None = None

    @field_validator("master_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        """``T2CTL_SECURITY__MASTER_KEY=`` (an empty line in an EnvironmentFile) means no key."""
        return None if isinstance(value, str) and not value.strip(" ,") else value

    @property
    def master_keys(self) -> list[str]:
        """The configured keys, newest first (the first encrypts, any decrypts)."""
        if self.master_key is None:
            return []
        return [k.strip() for k in self.master_key.get_secret_value().split(",") if k.strip()]


class ZohoSettings(_Section):
    enabled: bool = False
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    organization_id: str | None = None
    accounts_url: str = "https://accounts.zoho.com"
    api_url: str = "https://www.zohoapis.com/inventory/v1"
    currency: str = Field("NGN", pattern=r"^[A-Z]{3}$")
    requests_per_minute: int = Field(80, ge=1, le=100)
    # The period requests_per_minute counts over: a minute against Zoho; a test against a
    # stand-in whose limit is compressed the same way shortens it.
    rate_period: Duration = Field(timedelta(minutes=1), ge=timedelta(seconds=1))
    retry_for: Duration = timedelta(hours=24)
    timeout_seconds: float = Field(30, gt=0, le=300)

    @model_validator(mode="after")
    def _credentials_when_enabled(self) -> "ZohoSettings":
        required = ("client_id", "client_secret", "refresh_token", "organization_id")
        missing = [f"zoho.{name}" for name in required if self.enabled and not getattr(self, name)]
        if missing:
            raise ValueError(f"zoho.enabled is true but {', '.join(missing)} is not set")
        return self


class WebhookSettings(_Section):
    timeout_seconds: float = Field(10, gt=0, le=120)
    retry_schedule: list[Duration] = Field(
        default_factory=lambda: [
            clock.parse_duration(d) for d in ("5s", "5m", "30m", "2h", "5h", "10h", "10h")
        ],
        min_length=1,
        max_length=50,
    )
    allow_private_networks: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    retention_days: int = Field(30, ge=1)
    # A CA bundle for partners whose certificate a private CA signed (one reached over a VPN).
    ca_file: Path | None = None

    @field_validator("ca_file")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{path}: no such file")
        return path


class ScheduleSettings(_Section):
    timezone: str = "Africa/Lagos"
    expiry_reminders_at: ClockTime = "02:00"
    expiry_check_at: ClockTime = "03:00"
    reminder_days: int = Field(7, ge=1, le=365)
    # The daily reconcile with Zoho (the last 30 days' orders), at this time; unset: never.
    reconcile_at: ClockTime | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (use an IANA name)") from None
        return name


class OrdersSettings(_Section):
    # How long after fulfilment an order may still be cancelled (a payment reversed).
    cancel_window: Duration = Field(timedelta(days=7), ge=timedelta(0))


class LogSettings(_Section):
    # auto: text on a terminal, one JSON object a line elsewhere (journald, files, pipes)
    format: Literal["auto", "json", "text"] = "auto"
    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"],
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = "INFO"


class MetricsSettings(_Section):
    """Prometheus ``/metrics`` on its own listener, apart from the partner API."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    server: ServerSettings = ServerSettings()
    worker: WorkerSettings = WorkerSettings()
    security: SecuritySettings = SecuritySettings()
    zoho: ZohoSettings = ZohoSettings()
    webhooks: WebhookSettings = WebhookSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    orders: OrdersSettings = OrdersSettings()
    sandbox: SandboxSettings = SandboxSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    source: Path | None = Field(None, exclude=True)
    # Where each key that is not a default came from: the file, or the T2CTL_* variable.
    origins: dict[str, str] = Field(default_factory=dict, exclude=True)

    def origin(self, key: str) -> str:
        """Where ``key`` (``database.url``) was set, for messages that say what to change."""
        return self.origins.get(key, "the built-in default")

    @property
    def sandbox_mode(self) -> bool:
        """Sandbox mode: no Zoho, simulated provisioning, http webhooks allowed."""
        return not self.zoho.enabled

    @property
    def mode(self) -> str:
        return "sandbox" if self.sandbox_mode else "zoho"

    @model_validator(mode="after")
    def _master_key_where_needed(self) -> "Settings":
        if self.security.master_key is None and not (self.sandbox_mode and self.database.is_sqlite):
            raise ValueError(
                "security.master_key is required unless in sandbox mode on SQLite "
                "(generate one with `t2ctl secrets generate-master-key`)"
            )
        return self

    def secret_values(self) -> list[str]:
        """The plain value of every configured secret, for the log filter to mask."""
        values = list(self.security.master_keys)  # the list, split: each key alone
        for dotted in SECRET_KEYS:
            section, key = dotted.split(".")
            secret = getattr(getattr(self, section), key)
            if secret is not None and dotted != "security.master_key":
                values.append(secret.get_secret_value())
        for url in (self.database.url, self.database.listen_url, self.server.rate_limit_storage):
            values += urls.passwords(url)
        return values

    def redacted(self) -> dict[str, Any]:
        """The effective settings as plain data, every secret replaced by a marker."""
        data = self.model_dump(mode="json")
        for dotted in SECRET_KEYS:
            section, key = dotted.split(".")
            if data[section][key] is not None:
                data[section][key] = "********"
        data["database"]["url"] = self.database.redacted_url()
        data["database"]["listen_url"] = self.database.redacted_listen_url()
        data["server"]["rate_limit_storage"] = self.server.redacted_rate_limit_storage()
        data["webhooks"]["retry_schedule"] = [
            clock.format_duration(d) for d in self.webhooks.retry_schedule
        ]
        for section, key in (
            ("server", "idle_timeout"),
            ("server", "read_timeout"),
            ("zoho", "rate_period"),
            ("zoho", "retry_for"),
            ("orders", "cancel_window"),
            ("worker", "shutdown_grace"),
            ("worker", "job_retention"),
            ("sandbox", "provision_delay"),
        ):
            data[section][key] = clock.format_duration(getattr(getattr(self, section), key))
        return data


def search_path(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where a config file is looked for when none is named, first found wins: the working
    directory (a checkout, a trial), the user's (XDG), then the host's (an installed daemon)."""
    env = os.environ if env is None else env
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    xdg = Path(env.get("XDG_CONFIG_HOME") or "")
    user = xdg if xdg.is_absolute() else home / ".config"  # a relative one is ignored (XDG)
    return [Path("config.toml").absolute(), user / "t2ctl" / "config.toml", SYSTEM_CONFIG]


def resolve_path(path: Path | None, env: Mapping[str, str]) -> Path | None:
    """``--config``, else ``T2CTL_CONFIG``, else the first of ``search_path`` that exists,
    else none (the built-in defaults); absolute, as every message names it."""
    if path is not None:
        return path.absolute()
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).absolute()
    return next((found for found in search_path(env) if _present(found)), None)


def _present(path: Path) -> bool:
    """A file there, or one this user may not see (/etc/t2ctl is the daemon's group's):
    reading it then says "permission denied" rather than quietly using the defaults."""
    try:
        return path.is_file()
    except PermissionError:
        return True


def load(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration; raise ConfigError naming every bad key."""
    env = os.environ if env is None else env
    path = resolve_path(path, env)
    data = _read_file(path) if path is not None else {}
    problems = _check_secret_file(path, data) if path is not None else []
    origins = {
        f"{section}.{key}": str(path)
        for section, values in data.items()
        if path is not None and isinstance(values, dict)
        for key in values
    }
    problems += _apply_env(data, env, origins)
    if problems:
        raise ConfigError(problems)
    try:
        return Settings.model_validate({**data, "source": path, "origins": origins})
    except ValidationError as exc:
        raise ConfigError([_describe(err, origins, path) for err in exc.errors()]) from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigNotFound([f"config file {path}: no such file"]) from None
    except PermissionError:
        raise ConfigError(
            [
                f"config file {path}: permission denied (run t2ctl as a user who may "
                "read it: the daemon's, as the README's Operations section shows)"
            ]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def _apply_env(data: dict[str, Any], env: Mapping[str, str], origins: dict[str, str]) -> list[str]:
    """Overlay ``T2CTL_SECTION__KEY`` variables; values are read as TOML, else as plain text."""
    problems = []
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        section, sep, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if not sep or not key:
            problems.append(f"{name}: not of the form T2CTL_<SECTION>__<KEY>")
            continue
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            problems.append(f"{name}: [{section}] is not a table in the config file")
            continue
        target[key] = _env_value(raw)
        origins[f"{section}.{key}"] = name
    return problems


def _env_value(raw: str) -> Any:
    """A list or a quoted string is read as TOML; anything else stays text for pydantic to
    convert by the key's type, so ``T2CTL_ZOHO__CLIENT_ID=1e5`` stays ``"1e5"``."""
    if raw.lstrip()[:1] in ("[", '"', "'"):
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            pass
    return raw


def _check_secret_file(path: Path, data: dict[str, Any]) -> list[str]:
    """A file holding secrets must not be readable by others: refuse rather than leak."""
    held = []
    for dotted in SECRET_KEYS:
        section, key = dotted.split(".")
        if isinstance(data.get(section), dict) and data[section].get(key):
            held.append(dotted)
    if held and path.stat().st_mode & stat.S_IROTH:
        return [
            f"{path} holds {', '.join(held)} but is readable by others; "
            f"run `chmod o-r {path}` or move the secrets to the environment"
        ]
    return []


def _describe(err: Mapping[str, Any], origins: Mapping[str, str], path: Path | None) -> str:
    key = ".".join(str(part) for part in err["loc"] if not isinstance(part, int))
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    where = origins.get(key) or (str(path) if path is not None else None)
    return f"{key or 'config'}: {message}" + (f" (from {where})" if where else "")
