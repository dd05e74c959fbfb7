"""load_settings (TOML + TOKENKEEP_* overrides, validation) and resolve_config_path."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PUBLIC_URL

from tokenkeep.config import (
    config_is_world_readable,
    generate_config,
    load_settings,
    resolve_config_path,
)
from tokenkeep.errors import ConfigError

REQUIRED_ONLY = """
public_url = "https://tokens.example.com"
api_secret_token = "an-api-key-that-is-long-enough-0123456789"
admin_password = "a-long-admin-password"
encryption_key = "{key}"
""".format(key=base64.urlsafe_b64encode(b"k" * 32).decode())


def config_text(changes: dict[str, str | None]) -> tuple[str, dict[str, str]]:
    """generate_config() output with keys set to a TOML literal, or removed when None."""
    text, secrets = generate_config(PUBLIC_URL)
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line and not line.startswith("#") else ""
        if key not in changes:
            lines.append(line)
    lines += [f"{key} = {value}" for key, value in changes.items() if value is not None]
    return "\n".join(lines) + "\n", secrets


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


def load_error(path: Path, env: dict[str, str] | None = None) -> str:
    """The ConfigError message, with the file path removed so it cannot name a key by chance."""
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={} if env is None else env)
    return str(caught.value).replace(str(path), "<path>")


# -- the file itself -----------------------------------------------------------


def _missing(folder: Path) -> Path:
    return folder / "absent.toml"


def _directory(folder: Path) -> Path:
    (folder / "conf.d").mkdir()
    return folder / "conf.d"


def _bad_toml(folder: Path) -> Path:
    return write(folder / "bad.toml", 'public_url = "http://unterminated\n')


def _not_utf8(folder: Path) -> Path:
    path = folder / "latin1.toml"
    path.write_bytes(b'public_url = "http://caf\xe9.example"\n')
    return path


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        pytest.param(_missing, "absent.toml", id="missing-file"),
        pytest.param(_directory, "conf.d", id="directory"),
        pytest.param(_bad_toml, "bad.toml", id="bad-toml"),
        pytest.param(_not_utf8, "latin1.toml", id="not-utf8"),
    ],
)
def test_unusable_config_file_raises_config_error_naming_the_file(
    tmp_path: Path, make: Callable[[Path], Path], needle: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(make(tmp_path), env={})
    assert needle in str(caught.value)


# -- invalid values: one row per problem -------------------------------------

PLACEHOLDER = '"CHANGE-ME-to-a-long-random-value-0123456789"'
SHORT_KEY = base64.urlsafe_b64encode(b"k" * 16).decode()
INVALID = [
    pytest.param({"colour": '"blue"'}, "colour", id="unknown-key"),
    pytest.param({"port": '"abc"'}, "port", id="port-string"),
    pytest.param({"port": "8000.5"}, "port", id="port-float"),
    pytest.param({"workers": "true"}, "workers", id="workers-bool"),
    pytest.param({"http_timeout_seconds": '"x"'}, "http_timeout_seconds", id="timeout-string"),
    pytest.param({"public_url": "5"}, "public_url", id="public-url-number"),
    pytest.param({"public_url": None}, "public_url", id="missing-public-url"),
    pytest.param({"api_secret_token": None}, "api_secret_token", id="missing-api-secret"),
    pytest.param({"admin_password": None}, "admin_password", id="missing-admin-password"),
    pytest.param({"encryption_key": None}, "encryption_key", id="missing-encryption-key"),
    pytest.param({"api_secret_token": '""'}, "api_secret_token", id="empty-api-secret"),
    pytest.param({"api_secret_token": PLACEHOLDER}, "api_secret_token", id="placeholder-api"),
    pytest.param({"admin_password": PLACEHOLDER}, "admin_password", id="placeholder-admin"),
    pytest.param({"encryption_key": PLACEHOLDER}, "encryption_key", id="placeholder-key"),
    pytest.param({"api_secret_token": '"tooshort"'}, "api_secret_token", id="short-api-key"),
    pytest.param({"admin_password": '"short"'}, "admin_password", id="short-admin-password"),
    pytest.param({"encryption_key": '"not a fernet key!"'}, "encryption_key", id="bad-key"),
    pytest.param({"encryption_key": f'"{SHORT_KEY}"'}, "encryption_key", id="16-byte-key"),
    pytest.param({"old_encryption_keys": '["nope"]'}, "old_encryption_keys", id="bad-old-key"),
    pytest.param({"public_url": '"ftp://tokens.example.com"'}, "public_url", id="ftp-url"),
    pytest.param({"public_url": '"tokens.example.com"'}, "public_url", id="no-scheme"),
    pytest.param({"public_url": '"https://tokens.example.com/"'}, "public_url", id="slash"),
    pytest.param({"log_format": '"xml"'}, "log_format", id="log-format"),
    pytest.param({"refresh_margin_seconds": "-1"}, "refresh_margin_seconds", id="neg-margin"),
    pytest.param({"port": "70000"}, "port", id="port-70000"),
    pytest.param({"port": "0"}, "port", id="port-0"),
    pytest.param({"threads": "0"}, "threads", id="threads-0"),
    pytest.param({"http_timeout_seconds": "-1"}, "http_timeout_seconds", id="timeout-neg"),
    pytest.param({"http_timeout_seconds": "nan"}, "http_timeout_seconds", id="timeout-nan"),
    pytest.param({"http_timeout_seconds": "inf"}, "http_timeout_seconds", id="timeout-inf"),
]


@pytest.mark.parametrize(("changes", "key"), INVALID)
def test_invalid_config_raises_config_error_naming_the_key(
    tmp_path: Path, changes: dict[str, str | None], key: str
) -> None:
    text, secrets = config_text(changes)
    message = load_error(write(tmp_path / "config.toml", text))
    assert re.search(rf"\b{key}\b", message), message
    for value in secrets.values():
        assert value not in message
    assert "CHANGE-ME" not in message  # the rejected secret is not echoed either


# -- environment overrides ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("TOKENKEEP_PORT", "9001", "port", 9001),
        ("TOKENKEEP_PUBLIC_URL", "https://tk.example.com", "public_url", "https://tk.example.com"),
        ("TOKENKEEP_HTTP_TIMEOUT_SECONDS", "2.5", "http_timeout_seconds", 2.5),
        ("TOKENKEEP_WORKERS", "4", "workers", 4),
        ("TOKENKEEP_LOG_FORMAT", "json", "log_format", "json"),
    ],
)
def test_environment_overrides_the_file_with_typed_values(
    config_file: Path, name: str, value: str, attribute: str, expected: object
) -> None:
    settings = load_settings(config_file, env={name: value})
    assert getattr(settings, attribute) == expected
    assert type(getattr(settings, attribute)) is type(expected)


def test_public_url_override_changes_the_redirect_uri(config_file: Path) -> None:
    settings = load_settings(config_file, env={"TOKENKEEP_PUBLIC_URL": "https://tk.example.com"})
    assert settings.redirect_uri == "https://tk.example.com/callback"


def test_load_settings_reads_the_process_environment_by_default(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENKEEP_PORT", "9100")
    assert load_settings(config_file).port == 9100


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOKENKEEP_PORT", "abc"),
        ("TOKENKEEP_PORT", "1.5"),
        ("TOKENKEEP_PORT", "--5"),
        ("TOKENKEEP_WORKERS", ""),
        ("TOKENKEEP_HTTP_TIMEOUT_SECONDS", "fast"),
    ],
)
def test_environment_override_of_the_wrong_type_names_the_variable(
    config_file: Path, name: str, value: str
) -> None:
    assert name in load_error(config_file, env={name: value})


def test_environment_overrides_are_validated_too(config_file: Path) -> None:
    assert "port" in load_error(config_file, env={"TOKENKEEP_PORT": "70000"})


def test_a_required_secret_may_come_from_the_environment_only(tmp_path: Path) -> None:
    text, _ = config_text({"api_secret_token": None})
    token = "env-provided-api-key-0123456789abcdef"
    env = {"TOKENKEEP_API_SECRET_TOKEN": token, "TOKENKEEP_NOT_A_KEY": "ignored"}
    settings = load_settings(write(tmp_path / "config.toml", text), env=env)
    assert settings.api_secret_token == token


# -- paths and defaults --------------------------------------------------------


def test_relative_database_path_is_resolved_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, _ = config_text({"database_path": '"data/tk.db"'})
    write(tmp_path / "etc" / "config.toml", text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    settings = load_settings(Path("etc/config.toml"), env={})
    monkeypatch.chdir(elsewhere)
    assert settings.database_path == tmp_path.resolve() / "etc" / "data" / "tk.db"


def test_absolute_database_path_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "db" / "tokens.db"
    text, _ = config_text({"database_path": f'"{target}"'})
    settings = load_settings(write(tmp_path / "etc" / "config.toml", text), env={})
    assert settings.database_path == target


def test_defaults_apply_when_only_required_keys_are_given(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "config.toml", REQUIRED_ONLY), env={})
    assert settings.refresh_margin_seconds == 300
    assert settings.http_timeout_seconds == 10
    assert settings.host == "127.0.0.1"
    assert (settings.port, settings.workers, settings.threads) == (8000, 2, 8)
    assert settings.log_format == "text"
    assert settings.database_path == tmp_path.resolve() / "tokenkeep.db"


@pytest.mark.parametrize(
    ("cli", "env", "expected"),
    [
        ("cli.toml", {"TOKENKEEP_CONFIG": "env.toml"}, "cli.toml"),
        (None, {"TOKENKEEP_CONFIG": "env.toml"}, "env.toml"),
        (None, {}, "./config.toml"),
        (None, {"TOKENKEEP_CONFIG": ""}, "./config.toml"),
    ],
    ids=["cli-beats-env", "env-beats-default", "default", "empty-env-ignored"],
)
def test_resolve_config_path_precedence(
    cli: str | None, env: dict[str, str], expected: str
) -> None:
    assert resolve_config_path(cli, env) == Path(expected)


# -- secrets -------------------------------------------------------------------


def test_repr_of_settings_never_contains_a_secret(tmp_path: Path) -> None:
    old_key = base64.urlsafe_b64encode(b"o" * 32).decode()
    text, secrets = config_text({"old_encryption_keys": f'["{old_key}"]'})
    secrets["old_encryption_keys"] = old_key
    settings = load_settings(write(tmp_path / "config.toml", text), env={})
    for value in secrets.values():
        assert value not in repr(settings)
        assert value not in str(settings)
    assert PUBLIC_URL in repr(settings)  # the repr is still useful


def test_generated_config_loads_with_its_fresh_secrets(tmp_path: Path) -> None:
    text, secrets = generate_config("https://tokens.example.com")
    settings = load_settings(write(tmp_path / "config.toml", text), env={})
    assert settings.public_url == "https://tokens.example.com"
    assert settings.api_secret_token == secrets["api_secret_token"]
    assert settings.admin_password == secrets["admin_password"]
    assert settings.encryption_key == secrets["encryption_key"]
    assert generate_config()[1]["api_secret_token"] != secrets["api_secret_token"]


@pytest.mark.parametrize(
    ("mode", "readable"),
    [(0o600, False), (0o400, False), (0o640, True), (0o604, True), (0o644, True)],
)
def test_config_is_world_readable_reports_group_or_other_read(
    tmp_path: Path, mode: int, readable: bool
) -> None:
    path = write(tmp_path / "config.toml", REQUIRED_ONLY)
    path.chmod(mode)
    assert config_is_world_readable(path) is readable


def test_config_is_world_readable_is_false_for_a_missing_file(tmp_path: Path) -> None:
    assert config_is_world_readable(tmp_path / "absent.toml") is False
