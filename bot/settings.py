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
        return value

    @field_validator("password_file", "ca_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist or is not a file")
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
    data.update(overrides)
    from pydantic import ValidationError

    try:
        return Settings(**data, config_path=path)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, data)) from None


_KNOWN_KEYS: dict[tuple[str, ...], list[str]] = {
    (): [n for n in Settings.model_fields if n != "config_path"],
    ("pools",): list(PoolSettings.model_fields),
    ("slack",): list(SlackSettings.model_fields),
    ("policies",): list(PolicySettings.model_fields),
    ("alerts",): list(AlertSettings.model_fields),
}


def _explain(exc: Any, data: Mapping[str, Any]) -> list[str]:
    """Turn pydantic's errors into one line per problem: where, what, and the fix."""
    import difflib

    problems: list[str] = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        where = _location(loc, data)
        if error["type"] == "extra_forbidden":
            section = tuple(p for p in loc[:-1] if not p.isdigit())
            known = _KNOWN_KEYS.get(section, [])
            close = difflib.get_close_matches(loc[-1], known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            problems.append(f"{where}: unknown key; {hint}")
        elif error["type"] == "missing":
            problems.append(f"{where}: required; add it to the config file")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
    return problems


def _location(loc: list[str], data: Mapping[str, Any]) -> str:
    """``pools[1].url`` reads better as ``pools[1] ('lab').url`` when the pool has a name."""
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if item.isdigit() and isinstance(node, list):
            index = int(item)
            label = f"[{index}]"
            if index < len(node) and isinstance(node[index], dict) and "name" in node[index]:
                label += f" ({node[index]['name']!r})"
            parts[-1] += label
            node = node[index] if index < len(node) else None
        else:
            parts.append(item)
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


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
