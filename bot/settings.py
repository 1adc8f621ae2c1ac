"""Configuration: one TOML file, overridden by environment variables.

The file is the operator's reviewed, version-controlled description of the
deployment; the environment is where secrets and per-host overrides come from
(containers, systemd ``EnvironmentFile``). Everything is validated up front so a
typo is reported by ``xenbot config check`` before it becomes a 3 a.m. surprise,
and every secret is a ``SecretStr`` so it cannot end up in a log line by accident.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url

DEFAULT_CONFIG_NAME = "xenbot.toml"
DEFAULT_DATABASE_URL = "sqlite:///xenbot.db"

# Environment variables and where they land. Two spellings for the Slack
# secrets: our own prefixed names win over Slack's conventional ones, so an
# operator can run xenbot next to another Bolt app on the same host.
ENVIRONMENT_NAMES: dict[str, tuple[str, ...]] = {
    "XENBOT_DATABASE_URL": ("database_url",),
    "XENBOT_LOG_LEVEL": ("log_level",),
    "XENBOT_SLACK_BOT_TOKEN": ("slack", "bot_token"),
    "XENBOT_SLACK_APP_TOKEN": ("slack", "app_token"),
    "XENBOT_SLACK_SIGNING_SECRET": ("slack", "signing_secret"),
    "XENBOT_SLACK_API_URL": ("slack", "api_url"),
    "SLACK_BOT_TOKEN": ("slack", "bot_token"),
    "SLACK_APP_TOKEN": ("slack", "app_token"),
    "SLACK_SIGNING_SECRET": ("slack", "signing_secret"),
    "XENBOT_ALERTS_WEBHOOK_TOKEN": ("alerts", "webhook_token"),
}

_SLACK_PRINCIPAL = re.compile(r"^[UWS][A-Z0-9]{2,}$")
_SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _mask_userinfo(url: str) -> str:
    from bot.logs import redact_url

    return redact_url(url)


class ConfigError(Exception):
    """A configuration problem, phrased for the operator: which field, and how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolSettings(_Strict):
    """One XenServer / XCP-ng pool. ``url`` may name any member: the gateway follows the master."""

    name: str
    url: str
    username: str = "root"
    password: SecretStr | None = None
    password_file: Path | None = None
    verify_tls: bool = True
    ca_file: Path | None = None
    max_concurrency: int = Field(default=8, ge=1, le=64)
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)

    @field_validator("name")
    @classmethod
    def _name_is_a_word(cls, value: str) -> str:
        if not _POOL_NAME.match(value):
            raise ValueError("use letters, digits, '-', '_' or '.', starting with a letter or digit")
        return value

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must look like https://pool-master.example.com/ (http:// only for the simulator)")
        if parts.username is not None or parts.password is not None:
            # A password in the URL ends up in every place the URL is shown: summaries, logs, errors.
            raise ValueError(
                f"must not carry credentials ({_mask_userinfo(value)}); set 'username' and put the password "
                "in 'password_file'"
            )
        return value

    @field_validator("password_file", "ca_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist or is not a file")
        return value

    @field_validator("password_file")
    @classmethod
    def _password_not_empty(cls, value: Path | None) -> Path | None:
        # An empty file would log in with an empty password, refused by XAPI at 3 a.m.
        if value is not None and not value.read_bytes().strip():
            raise ValueError(f"file {str(value)!r} is empty; write the pool password into it")
        return value

    @model_validator(mode="after")
    def _one_password(self) -> PoolSettings:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("set exactly one of 'password' or 'password_file' (a file readable by xenbot)")
        return self

    def secret(self) -> SecretStr:
        """The password, read from ``password_file`` at use so a rotated secret needs no restart."""
        if self.password is not None:
            return self.password
        assert self.password_file is not None
        return SecretStr(self.password_file.read_text(encoding="utf-8").strip())


class SlackSettings(_Strict):
    bot_token: SecretStr | None = None
    app_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    api_url: str | None = None
    # Per Web API call; a call that times out is retried once (Slack may then show a message twice).
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    command: str = "/xen"
    operators: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    allowed_channels: list[str] = Field(default_factory=list)
    approvals_channel: str | None = None
    alert_channels: list[str] = Field(default_factory=list)
    allow_self_approval: bool = False
    approval_ttl_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    required_approvals: int = Field(default=1, ge=1, le=10)
    # Tries to apply (or, after a crash, finish) an approved change that do not reach an end
    # (pool not answering, target gone, an error) before the request fails with the reason.
    # Tries are about a heartbeat lease (90 s) apart, so 5 gives a pool about 7 minutes.
    apply_attempts: int = Field(default=5, ge=1, le=100)

    @field_validator("command")
    @classmethod
    def _command_has_slash(cls, value: str) -> str:
        if not re.fullmatch(r"/[a-z0-9_-]{1,31}", value):
            raise ValueError("a slash command such as '/xen' (lower case, no spaces)")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be a Web API base URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("operators", "approvers")
    @classmethod
    def _principals(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not _SLACK_PRINCIPAL.match(v)]
        if bad:
            raise ValueError(
                f"{bad} are not Slack user ids (U…/W…) or user-group ids (S…); "
                "copy them from the member's or group's profile"
            )
        return values

    @field_validator("allowed_channels", "alert_channels")
    @classmethod
    def _channels(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not _SLACK_CHANNEL.match(v)]
        if bad:
            raise ValueError(f"{bad} are not Slack channel ids (C…/G…); use the id, not the #name")
        return values

    @field_validator("approvals_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not _SLACK_CHANNEL.match(value):
            raise ValueError(f"{value!r} is not a Slack channel id (C…/G…); use the id, not the #name")
        return value


class PolicySettings(_Strict):
    """Offload policies: where drift goes, and the optional daily compliance summary."""

    watch: bool = True
    report_channel: str | None = None
    compliance_channel: str | None = None
    compliance_hour_utc: int | None = Field(default=None, ge=0, le=23)
    poll_seconds: float = Field(default=25.0, ge=0.5, le=300)
    lease_seconds: float = Field(default=60.0, ge=2, le=3600)

    @field_validator("report_channel", "compliance_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not _SLACK_CHANNEL.match(value):
            raise ValueError(f"{value!r} is not a Slack channel id (C…/G…); use the id, not the #name")
        return value


class AlertSettings(_Strict):
    """Discard alerts: who counts as a monitoring sender, what repeats mean, and the JSON webhooks.

    ``sources`` lists the senders whose messages in an alert channel are alerts:
    bot ids (B…), app ids (A…) or the usernames classic integrations post
    under ("Alertmanager"). Empty means any bot or integration, never a person;
    people count only with ``accept_people``. Events from another workspace
    (Slack Connect) are ignored unless its team id is in ``allowed_teams``, and
    externally shared channels unless ``allow_shared_channels``.
    """

    rules_files: list[Path] = Field(default_factory=list)
    mute_hours: int = Field(default=168, ge=1, le=24 * 365)
    sources: list[str] = Field(default_factory=list)
    accept_people: bool = False
    allowed_teams: list[str] = Field(default_factory=list)
    allow_shared_channels: bool = False
    # This Slack app's id (A…); events delivered for another app id are ignored. Learned from
    # bots.info when unset.
    app_id: str | None = None
    # A firing after this long without hearing of the alert is a new alert (Alertmanager's
    # send_resolved defaults to false, so many resolutions are never posted).
    refire_after_hours: float = Field(default=24.0, gt=0, le=24 * 365)
    # A resolution for an alert xenbot never saw fire: one short line ("note") or nothing ("silent").
    unseen_resolved: Literal["note", "silent"] = "note"
    # POST /alerts/alertmanager and /alerts/grafana: the bearer token, and the channel the alerts go to.
    webhook_token: SecretStr | None = None
    webhook_channel: str | None = None
    webhook_max_bytes: int = Field(default=256 * 1024, ge=1024, le=8 * 1024 * 1024)

    @field_validator("rules_files")
    @classmethod
    def _files_exist(cls, values: list[Path]) -> list[Path]:
        missing = [str(v) for v in values if not v.is_file()]
        if missing:
            raise ValueError(f"rule file(s) {missing} do not exist")
        return values

    @field_validator("webhook_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not _SLACK_CHANNEL.match(value):
            raise ValueError(f"{value!r} is not a Slack channel id (C…/G…); use the id, not the #name")
        return value

    @field_validator("allowed_teams")
    @classmethod
    def _teams(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not re.match(r"^[TE][A-Z0-9]{2,}$", v)]
        if bad:
            raise ValueError(f"{bad} are not Slack team ids (T…) or enterprise ids (E…)")
        return values

    @field_validator("webhook_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("use a random token of at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value


class AuditSettings(_Strict):
    """The audit log's key and its anchor (``bot/db/audit.py``, docs/security.md).

    ``key_file`` holds the HMAC key of the hash chain: outside the database, so the bot's own
    database role cannot recompute hashes after editing a row. At least 32 bytes, e.g.
    ``head -c 32 /dev/urandom | base64 > /etc/xenbot/audit.key``. The head of the chain (hash
    and row count) is logged, and posted to ``channel`` when set, every ``anchor_minutes`` and
    at shutdown; ``xenbot audit verify --anchor HASH:COUNT`` checks the log still reaches it.
    """

    key_file: Path | None = None
    channel: str | None = None
    anchor_minutes: float = Field(default=15.0, ge=1, le=24 * 60)

    @field_validator("key_file")
    @classmethod
    def _key_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist or is not a file")
        try:
            text = value.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            raise ValueError(f"{str(value)!r} is not text; store the key base64-encoded") from None
        if len(text) < 32:
            raise ValueError(f"{str(value)!r} holds fewer than 32 bytes; "
                             "make a key with: head -c 32 /dev/urandom | base64 > FILE")
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not _SLACK_CHANNEL.match(value):
            raise ValueError(f"{value!r} is not a Slack channel id (C…/G…); use the id, not the #name")
        return value

    def key(self) -> SecretStr | None:
        """The chain key, read from ``key_file`` (never stored in the database or printed)."""
        if self.key_file is None:
            return None
        return SecretStr(self.key_file.read_text(encoding="utf-8").strip())


class ServingSettings(_Strict):
    """How ``xenbot serve`` shares its capacity, and what it tolerates from clients (``[serving]``)."""

    # Threads for slash commands and button clicks; alerts never use them.
    workers: int = Field(default=6, ge=1, le=64)
    # Threads for alert-channel messages, apart from commands and clicks.
    alert_workers: int = Field(default=2, ge=1, le=32)
    # Alerts waiting per alert channel; past that they are counted and summarised in one message.
    alert_queue_per_channel: int = Field(default=50, ge=1, le=10_000)
    # A command or click still waiting for a worker after this long is told its answer is delayed.
    delay_notice_seconds: float = Field(default=3.0, gt=0, le=60)
    # HTTP mode: a client must send its request's headers, and then its body, within these.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # HTTP mode: open connections at most (kept below the process's file-descriptor limit).
    max_connections: int = Field(default=1000, ge=10, le=100_000)


class _NamedEnvironment(PydanticBaseSettingsSource):
    """Reads exactly the documented environment names, nothing implicit."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ builds the whole mapping

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        # Conventional names first so the XENBOT_ spellings overwrite them.
        for name in sorted(ENVIRONMENT_NAMES, key=lambda n: n.startswith("XENBOT_")):
            value = self._environ.get(name)
            if value is None or value == "":
                continue
            *parents, leaf = ENVIRONMENT_NAMES[name]
            node = found
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = value
        return found


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    # How long an apply keeps its results in memory for an unreachable database (restart,
    # failover) before giving them up to whoever resumes the request.
    database_outage_seconds: float = Field(default=300.0, ge=1, le=3600)
    # ``xenbot serve`` applies approved changes in this many child processes, so a pool-wide
    # apply does not compete with acks for the GIL; 0 applies inside the serving process.
    apply_processes: int = Field(default=2, ge=0, le=16)
    log_level: str = "INFO"
    pools: list[PoolSettings] = Field(default_factory=list)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    policies: PolicySettings = Field(default_factory=PolicySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    config_path: Path | None = Field(default=None, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Init kwargs carry the config file; the environment overrides it.
        return (_NamedEnvironment(settings_cls, os.environ), init_settings)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("use sqlite:///path/to/xenbot.db or postgresql://user@host/dbname")
        sqlite = make_url(value) if value.startswith("sqlite") else None
        if sqlite is not None and sqlite.database and sqlite.database != ":memory:" \
                and not sqlite.database.startswith("file:"):
            folder = Path(sqlite.database).expanduser().parent
            if not folder.is_dir():
                raise ValueError(f"folder {str(folder)!r} does not exist; create it, writable by the xenbot user")
        if value.startswith("postgresql://"):
            # psycopg 3 is the driver we ship; SQLAlchemy would otherwise look for psycopg2.
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("one of DEBUG, INFO, WARNING, ERROR")
        return upper

    @model_validator(mode="after")
    def _pool_names_unique(self) -> Settings:
        seen: set[str] = set()
        for pool in self.pools:
            key = pool.name.lower()
            if key in seen:
                raise ValueError(f"pool name {pool.name!r} is used twice; give each [[pools]] entry its own name")
            seen.add(key)
        return self

    def long_poll_problems(self) -> list[str]:
        """Pools whose socket timeout would cut the policy watcher's ``event.from`` long-poll.

        XAPI holds an ``event.from`` call open for up to its ``timeout`` argument (plus a 50 ms
        batching delay) before answering; the watcher passes ``policies.poll_seconds``. A pool's
        ``timeout_seconds`` at or below that makes every idle poll end in a socket timeout, seen as
        "pool unreachable", and the watcher re-reads the pool each time. Checked by ``config
        check`` (not at load: tests and tools set short timeouts with watchers off)."""
        if not self.policies.watch:
            return []
        poll = self.policies.poll_seconds
        return [
            f"policies.poll_seconds ({poll:g}) must be below the timeout_seconds ({p.timeout_seconds:g}) of pool "
            f"{p.name!r}: the event.from long-poll would time out on every idle poll; lower poll_seconds or "
            "raise timeout_seconds (keep a few seconds between them)"
            for p in self.pools
            if poll >= p.timeout_seconds
        ]

    def pool(self, name: str) -> PoolSettings:
        for pool in self.pools:
            if pool.name.lower() == name.lower():
                return pool
        raise KeyError(name)


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    """``--config`` wins, then ``$XENBOT_CONFIG``, then ``./xenbot.toml`` if it exists."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("XENBOT_CONFIG")
    if from_env:
        return Path(from_env)
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None


def load_settings(config: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read, merge and validate the configuration, or raise :class:`ConfigError` with fixes."""
    path = resolve_config_path(config)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            problem = f"config file {str(path)!r} not found; pass --config PATH or set XENBOT_CONFIG"
            raise ConfigError([problem]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None
        from bot.settings_explain import resolve_paths

        resolve_paths(data, path.parent)
    data.update(overrides)
    from pydantic import ValidationError

    try:
        return Settings(**data, config_path=path)
    except ValidationError as exc:
        from bot.settings_explain import explain

        raise ConfigError(explain(exc, data)) from None


def load_for_command(config: str | os.PathLike[str] | None) -> Settings | None:
    """For CLI commands: the settings, or None after printing each problem (callers exit 2)."""
    import sys

    try:
        return load_settings(config)
    except ConfigError as exc:
        print("xenbot: the configuration has problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return None
