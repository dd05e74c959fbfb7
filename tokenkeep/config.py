"""Load settings from a TOML file plus `TOKENKEEP_<KEY>` environment overrides.

Every problem is a ConfigError whose message names the key and the fix; there
is never a silent fallback to example values (defect 7 of the PHP original).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import os
import re
import secrets
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tokenkeep.errors import ConfigError

ENV_PREFIX = "TOKENKEEP_"
CONFIG_ENV = "TOKENKEEP_CONFIG"
DEFAULT_CONFIG = "config.toml"
SECRET_KEYS = ("api_secret_token", "admin_password", "encryption_key")
PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "replace-me")
MIN_SECRET_LENGTH = {"api_secret_token": 24, "admin_password": 12}


@dataclass(frozen=True)
class Settings:
    """Validated, immutable configuration."""

    public_url: str
    api_secret_token: str = field(repr=False)
    admin_password: str = field(repr=False)
    encryption_key: str = field(repr=False)
    old_encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    database_path: Path = Path("tokenkeep.db")
    refresh_margin_seconds: int = 300
    http_timeout_seconds: float = 10.0
    log_format: str = "text"
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    threads: int = 8
    force_refresh_min_interval_seconds: int = 5
    refresh_backoff_seconds: int = 10
    refresh_backoff_max_seconds: int = 300
    state_ttl_seconds: int = 600
    alert_webhook_url: str = field(default="", repr=False)  # its path may hold a token
    alert_webhook_secret: str = field(default="", repr=False)
    alert_after_failures: int = 3
    config_path: Path | None = field(default=None, compare=False)

    @property
    def redirect_uri(self) -> str:
        """The default redirect URI registered at providers."""
        return self.public_url + "/callback"

    @property
    def secure_cookies(self) -> bool:
        """Mark cookies Secure when the public URL is https."""
        return self.public_url.startswith("https://")


# A setting's type, read from its annotation: adding a field to Settings is enough.
_ANNOTATION_TYPES = {"str": str, "int": int, "float": float, "Path": Path, "tuple[str, ...]": tuple}
_TYPES: dict[str, type] = {
    f.name: _ANNOTATION_TYPES[str(f.type)] for f in fields(Settings) if f.name != "config_path"
}
_REQUIRED = ("public_url", *SECRET_KEYS)
_KNOWN = {f.name for f in fields(Settings)} - {"config_path"}


def resolve_config_path(cli_path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """Pick the config file: --config, else TOKENKEEP_CONFIG, else ./config.toml."""
    if cli_path:
        return Path(cli_path)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return Path(DEFAULT_CONFIG)


def load_settings(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration; raise ConfigError on any problem."""
    env = os.environ if env is None else env
    raw = _read_toml(path)
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {unknown[0]!r}; valid keys are listed in config.example.toml"
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        values[key] = _coerce(key, value, f"{path}: {key}")
    for key in _KNOWN:
        env_name = ENV_PREFIX + key.upper()
        if env_name in env:
            values[key] = _coerce(key, env[env_name], f"environment variable {env_name}")
    for key in _REQUIRED:
        if not values.get(key):
            raise ConfigError(
                f"{path}: missing required key {key!r}; run `tokenkeep init` to generate a "
                f"config, or set it in the file or as {ENV_PREFIX}{key.upper()}"
            )
    db_path = Path(values.get("database_path", "tokenkeep.db"))
    if not db_path.is_absolute():
        db_path = path.resolve().parent / db_path
    values["database_path"] = db_path
    settings = Settings(**values, config_path=path)
    _validate(settings, path)
    return settings


def config_is_world_readable(path: Path) -> bool:
    """True when users other than the owner can read the config file."""
    try:
        return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def generate_config(public_url: str = "http://127.0.0.1:8000") -> tuple[str, dict[str, str]]:
    """Return the text of a fresh config with random secrets, and those secrets."""
    secrets_ = {
        "api_secret_token": secrets.token_urlsafe(32),
        "admin_password": secrets.token_urlsafe(18),
        "encryption_key": new_encryption_key(),
    }
    text = f"""# TokenKeep configuration, written by `tokenkeep init`. Keep it private (mode 0600).
# Every key can be overridden by an environment variable TOKENKEEP_<KEY>.
# See config.example.toml for every setting and its meaning.

public_url = "{public_url}"
api_secret_token = "{secrets_["api_secret_token"]}"
admin_password = "{secrets_["admin_password"]}"
encryption_key = "{secrets_["encryption_key"]}"
database_path = "tokenkeep.db"
refresh_margin_seconds = 300
http_timeout_seconds = 10
log_format = "text"
host = "127.0.0.1"
port = 8000
workers = 2
threads = 8
"""
    return text, secrets_


def is_fernet_key(key: str) -> bool:
    """True for 32 bytes in url-safe base64."""
    try:
        return len(base64.urlsafe_b64decode(key.encode())) == 32
    except (ValueError, binascii.Error):
        return False


def new_encryption_key() -> str:
    """A fresh random encryption key."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found; run `tokenkeep init` to create one, "
            f"or point --config / {CONFIG_ENV} at it"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"config path {path} is a directory, not a TOML file") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable by this user") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8; save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc}); fix the syntax") from None


def _coerce(key: str, value: Any, where: str) -> Any:
    kind = _TYPES[key]
    if kind is tuple:
        if isinstance(value, str):  # from the environment: comma-separated
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(value)
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a whole number, got a boolean")
        if isinstance(value, int):
            return value
        # ASCII digits only: full-width or Arabic-Indic digits are not silently a port.
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,18}\s*", value, re.ASCII):
            return int(value)
        raise ConfigError(f"{where}: expected a whole number, got {type(value).__name__}")
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got a boolean")
        number: float | None = None
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str) and value.isascii():
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None and math.isfinite(number):
            return number
        raise ConfigError(f"{where}: expected a number, got {type(value).__name__}")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
    return Path(value) if kind is Path else value


def _validate(s: Settings, path: Path) -> None:
    parts = urlsplit(s.public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"{path}: public_url must be an absolute http(s) URL such as "
            f"https://tokens.example.com (got {s.public_url!r})"
        )
    if s.public_url.endswith("/"):
        raise ConfigError(f"{path}: public_url must not end with '/' (got {s.public_url!r})")
    for key in SECRET_KEYS:
        value: str = getattr(s, key)
        lowered = value.lower()
        if any(marker in lowered for marker in PLACEHOLDER_MARKERS):
            raise ConfigError(
                f"{path}: {key} still holds the example placeholder; run `tokenkeep init` "
                "for a config with fresh secrets, or set a random value"
            )
        minimum = MIN_SECRET_LENGTH.get(key)
        if minimum and len(value) < minimum:
            raise ConfigError(
                f"{path}: {key} is too short ({minimum} characters at least); "
                "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
    for name, key in [("encryption_key", s.encryption_key)] + [
        ("old_encryption_keys", k) for k in s.old_encryption_keys
    ]:
        if not is_fernet_key(key):
            raise ConfigError(
                f"{path}: {name} must be 32 bytes in url-safe base64 (a Fernet key); "
                "`tokenkeep init` generates one"
            )
    if s.log_format not in ("text", "json"):
        raise ConfigError(f"{path}: log_format must be 'text' or 'json' (got {s.log_format!r})")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{path}: log_level must be DEBUG, INFO, WARNING or ERROR")
    _validate_alerts(s, path)
    positive = ("port", "workers", "threads", "http_timeout_seconds", "state_ttl_seconds")
    for key in positive:
        if getattr(s, key) <= 0:
            raise ConfigError(f"{path}: {key} must be greater than 0")
    non_negative = (
        "refresh_margin_seconds",
        "force_refresh_min_interval_seconds",
        "refresh_backoff_seconds",
        "refresh_backoff_max_seconds",
    )
    for key in non_negative:
        if getattr(s, key) < 0:
            raise ConfigError(f"{path}: {key} must not be negative")
    if s.port > 65535:
        raise ConfigError(f"{path}: port must be at most 65535")


def _validate_alerts(s: Settings, path: Path) -> None:
    if s.alert_after_failures <= 0:
        raise ConfigError(f"{path}: alert_after_failures must be greater than 0")
    if not s.alert_webhook_url:
        return
    parts = urlsplit(s.alert_webhook_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{path}: alert_webhook_url must be an absolute http(s) URL")
    if len(s.alert_webhook_secret) < 16 or any(
        marker in s.alert_webhook_secret.lower() for marker in PLACEHOLDER_MARKERS
    ):
        raise ConfigError(
            f"{path}: alert_webhook_url needs alert_webhook_secret, a random value of 16 "
            "characters or more that signs each alert"
        )


def write_encryption_keys(path: Path, primary: str, old: tuple[str, ...]) -> None:
    """Rewrite `encryption_key` and `old_encryption_keys` in the config file atomically.

    Other lines, comments included, are kept; the file stays mode 0600.
    """
    lines = path.read_text("utf-8").splitlines()
    kept = [
        line for line in lines if not re.match(r"\s*(encryption_key|old_encryption_keys)\s*=", line)
    ]
    kept.append(f'encryption_key = "{primary}"')
    if old:
        kept.append("old_encryption_keys = [" + ", ".join(f'"{k}"' for k in old) + "]")
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(kept) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
