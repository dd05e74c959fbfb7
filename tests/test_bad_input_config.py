"""Bad-input battery for the configuration: broken files and bad environment overrides.

Every case starts TokenKeep (the web app factory and a CLI command) with a
broken config next to a database holding a connected provider, and asserts:
a ConfigError (a clear start-up error, one line, no traceback, no secret),
the CLI's one `Error:` line and non-zero exit, and the stored connection
intact: the good config still opens the database and serves the same tokens.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import CLIENT_SECRET
from intact import snapshot

from tokenkeep.bootstrap import build_service, open_repository
from tokenkeep.cli import main
from tokenkeep.config import Settings, load_settings, new_encryption_key
from tokenkeep.errors import ConfigError
from tokenkeep.service import TokenService
from tokenkeep.web import create_app

PLACEHOLDER = "CHANGE-ME-to-a-long-random-value-0123456789"


@pytest.fixture(autouse=True)
def _no_tokenkeep_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOKENKEEP_"):
            monkeypatch.delenv(name)


def variant(config_file: Path, changes: dict[str, str | None]) -> str:
    """The good config with keys set to a TOML literal, or removed when None."""
    lines = []
    for line in config_file.read_text().splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line and not line.startswith("#") else ""
        if key not in changes:
            lines.append(line)
    lines += [f"{key} = {value}" for key, value in changes.items() if value is not None]
    return "\n".join(lines) + "\n"


def assert_refused_and_intact(
    path: Path, config_file: Path, settings: Settings, service: TokenService
) -> None:
    """Start-up fails clearly through every entry point; nothing stored is touched."""
    before = snapshot(service.repo)
    config_bytes = config_file.read_bytes()
    secrets = (settings.api_secret_token, settings.admin_password, settings.encryption_key)

    with pytest.raises(ConfigError) as caught:
        create_app(config_path=str(path))
    message = str(caught.value)
    assert "\n" not in message.strip() and "Traceback" not in message
    for secret in (*secrets, CLIENT_SECRET, "access-1", "refresh-1"):
        assert secret not in message

    result = CliRunner().invoke(main, ["--config", str(path), "providers"])
    assert result.exit_code not in (0, None), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    for secret in (*secrets, CLIENT_SECRET, "access-1", "refresh-1"):
        assert secret not in result.output + result.stderr

    assert snapshot(service.repo) == before
    assert config_file.read_bytes() == config_bytes
    good = load_settings(config_file, env={})
    fresh = build_service(good, repo=open_repository(good))
    assert fresh.get_token("acme").record.tokens.access_token == "access-1"
    fresh.repo.db.close()


BAD_SYNTAX = [
    pytest.param('public_url = "http://unterminated\n', id="unterminated-string"),
    pytest.param("port =\n", id="missing-value"),
    pytest.param("port = 8000\nport = 8001\n", id="duplicate-key"),
    pytest.param("[\n", id="broken-table"),
    pytest.param("hello\n", id="bare-word"),
    pytest.param("public_url = http://127.0.0.1:8000\n", id="unquoted-url"),
    pytest.param("port = 8000 # ok\nworkers = 2 2\n", id="two-values"),
    pytest.param("port = 0x\n", id="bad-hex"),
    pytest.param("port = 8_000_\n", id="bad-underscore"),
    pytest.param('api_secret_token = """never closed\n', id="unterminated-multiline"),
    pytest.param("x" * 10_000 + "\n", id="10kB-garbage"),
    pytest.param('public_url = "\x00"\n', id="nul-in-string"),
    pytest.param("[server]\nport = 1\n[server]\n", id="duplicate-table"),
]


@pytest.mark.parametrize("text", BAD_SYNTAX)
def test_a_config_that_is_not_valid_toml_is_refused(
    tmp_path: Path, config_file: Path, settings: Settings, connected: TokenService, text: str
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(config_file.read_text() + text)

    assert_refused_and_intact(path, config_file, settings, connected)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"public_url = 'caf\xe9'\n", id="latin1-bytes"),
        pytest.param(b"\xff\xfe" + "port = 1\n".encode("utf-16-le"), id="utf16"),
        pytest.param(b"\x00" * 100, id="nul-bytes"),
        pytest.param(b"", id="empty-file"),
        pytest.param(b"# only a comment\n", id="only-comments"),
    ],
)
def test_a_config_with_broken_bytes_is_refused(
    tmp_path: Path, config_file: Path, settings: Settings, connected: TokenService, data: bytes
) -> None:
    path = tmp_path / "broken.toml"
    path.write_bytes(data)

    assert_refused_and_intact(path, config_file, settings, connected)


WRONG_TYPES = [
    pytest.param({"port": "8000.5"}, id="port-float"),
    pytest.param({"port": "true"}, id="port-bool"),
    pytest.param({"port": "[8000]"}, id="port-list"),
    pytest.param({"port": "{ value = 8000 }"}, id="port-table"),
    pytest.param({"port": "2027-01-15"}, id="port-date"),
    pytest.param({"port": '"eight thousand"'}, id="port-words"),
    pytest.param({"port": "99999999999999999999"}, id="port-huge"),
    pytest.param({"port": "-1"}, id="port-negative"),
    pytest.param({"workers": '"two"'}, id="workers-string"),
    pytest.param({"workers": "0"}, id="workers-zero"),
    pytest.param({"threads": "1e3"}, id="threads-float"),
    pytest.param({"http_timeout_seconds": '"ten"'}, id="timeout-string"),
    pytest.param({"http_timeout_seconds": "true"}, id="timeout-bool"),
    pytest.param({"http_timeout_seconds": "nan"}, id="timeout-nan"),
    pytest.param({"http_timeout_seconds": "-inf"}, id="timeout-minus-inf"),
    pytest.param({"http_timeout_seconds": "0"}, id="timeout-zero"),
    pytest.param({"refresh_margin_seconds": "-300"}, id="margin-negative"),
    pytest.param({"state_ttl_seconds": "0"}, id="state-ttl-zero"),
    pytest.param({"refresh_backoff_seconds": "-5"}, id="backoff-negative"),
    pytest.param({"database_path": "5"}, id="database-path-number"),
    pytest.param({"database_path": '["a.db"]'}, id="database-path-list"),
    pytest.param({"public_url": "5"}, id="public-url-number"),
    pytest.param({"public_url": '"ftp://tokens.example.com"'}, id="public-url-ftp"),
    pytest.param({"public_url": '"tokens.example.com"'}, id="public-url-no-scheme"),
    pytest.param({"public_url": '"https://tokens.example.com/"'}, id="public-url-slash"),
    pytest.param({"public_url": '"https://t.example.com/?a=1"'}, id="public-url-query"),
    pytest.param({"public_url": '"https://t.example.com/#x"'}, id="public-url-fragment"),
    pytest.param({"api_secret_token": "123456789012345678901234567890"}, id="api-key-number"),
    pytest.param({"admin_password": "true"}, id="admin-password-bool"),
    pytest.param({"encryption_key": '["key"]'}, id="encryption-key-list"),
    pytest.param({"old_encryption_keys": '"not-a-key"'}, id="old-keys-string"),
    pytest.param({"old_encryption_keys": "[1, 2]"}, id="old-keys-numbers"),
    pytest.param({"log_format": "1"}, id="log-format-number"),
    pytest.param({"log_format": '"xml"'}, id="log-format-xml"),
    pytest.param({"log_level": '"TRACE"'}, id="log-level-trace"),
    pytest.param({"host": "127"}, id="host-number"),
]


@pytest.mark.parametrize("changes", WRONG_TYPES)
def test_a_value_of_the_wrong_type_or_range_is_refused(
    tmp_path: Path,
    config_file: Path,
    settings: Settings,
    connected: TokenService,
    changes: dict[str, str],
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(variant(config_file, changes))

    assert_refused_and_intact(path, config_file, settings, connected)


UNKNOWN_KEYS = [
    pytest.param("colour = 'blue'\n", id="unknown"),
    pytest.param("PORT = 8000\n", id="upper-case-key"),
    pytest.param("public-url = 'https://x.example'\n", id="dashed-key"),
    pytest.param("databse_path = 'x.db'\n", id="misspelt-key"),
    pytest.param("api_key = 'x'\n", id="php-era-name"),
    pytest.param('"port " = 8000\n', id="key-with-space"),
    pytest.param("[server]\nport = 8000\n", id="table"),
    pytest.param("config_path = 'elsewhere.toml'\n", id="internal-field"),
]


@pytest.mark.parametrize("text", UNKNOWN_KEYS)
def test_an_unknown_key_is_refused(
    tmp_path: Path, config_file: Path, settings: Settings, connected: TokenService, text: str
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(config_file.read_text() + text)

    assert_refused_and_intact(path, config_file, settings, connected)


@pytest.mark.parametrize("key", ["api_secret_token", "admin_password", "encryption_key"])
@pytest.mark.parametrize(
    "value",
    [
        pytest.param(f'"{PLACEHOLDER}"', id="CHANGE-ME"),
        pytest.param('"changeme-changeme-changeme-0123"', id="changeme"),
        pytest.param('"please-replace-me-with-a-long-value"', id="replace-me"),
        pytest.param('"change_me_0123456789abcdefghijkl"', id="change_me"),
        pytest.param('""', id="empty"),
        pytest.param('"short"', id="short"),
        pytest.param(None, id="missing"),
    ],
)
def test_a_placeholder_short_or_missing_secret_is_refused(
    tmp_path: Path,
    config_file: Path,
    settings: Settings,
    connected: TokenService,
    key: str,
    value: str | None,
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(variant(config_file, {key: value}))

    assert_refused_and_intact(path, config_file, settings, connected)


BAD_ENV = [
    pytest.param("TOKENKEEP_PORT", "abc", id="port-word"),
    pytest.param("TOKENKEEP_PORT", "", id="port-empty"),
    pytest.param("TOKENKEEP_PORT", " ", id="port-space"),
    pytest.param("TOKENKEEP_PORT", "1.5", id="port-decimal"),
    pytest.param("TOKENKEEP_PORT", "99999", id="port-out-of-range"),
    pytest.param("TOKENKEEP_PORT", "\uff18\uff10\uff10\uff10", id="port-fullwidth"),
    pytest.param("TOKENKEEP_WORKERS", "\u0662", id="workers-arabic-indic"),
    pytest.param("TOKENKEEP_HTTP_TIMEOUT_SECONDS", "\uff11\uff10", id="timeout-fullwidth"),
    pytest.param("TOKENKEEP_WORKERS", "0", id="workers-zero"),
    pytest.param("TOKENKEEP_THREADS", "-1", id="threads-negative"),
    pytest.param("TOKENKEEP_HTTP_TIMEOUT_SECONDS", "nan", id="timeout-nan"),
    pytest.param("TOKENKEEP_HTTP_TIMEOUT_SECONDS", "inf", id="timeout-inf"),
    pytest.param("TOKENKEEP_HTTP_TIMEOUT_SECONDS", "fast", id="timeout-word"),
    pytest.param("TOKENKEEP_PUBLIC_URL", "ftp://tokens.example.com", id="public-url-ftp"),
    pytest.param("TOKENKEEP_PUBLIC_URL", "not a url", id="public-url-words"),
    pytest.param("TOKENKEEP_PUBLIC_URL", "", id="public-url-empty"),
    pytest.param("TOKENKEEP_API_SECRET_TOKEN", PLACEHOLDER, id="api-key-placeholder"),
    pytest.param("TOKENKEEP_API_SECRET_TOKEN", "short", id="api-key-short"),
    pytest.param("TOKENKEEP_ADMIN_PASSWORD", "", id="admin-password-empty"),
    pytest.param("TOKENKEEP_ENCRYPTION_KEY", "not-a-fernet-key", id="encryption-key-bad"),
    pytest.param("TOKENKEEP_ENCRYPTION_KEY", "NEW-KEY", id="encryption-key-wrong"),
    pytest.param("TOKENKEEP_OLD_ENCRYPTION_KEYS", "bad,also-bad", id="old-keys-bad"),
    pytest.param("TOKENKEEP_LOG_FORMAT", "xml", id="log-format"),
    pytest.param("TOKENKEEP_LOG_LEVEL", "loud", id="log-level"),
    pytest.param("TOKENKEEP_STATE_TTL_SECONDS", "0", id="state-ttl-zero"),
    pytest.param("TOKENKEEP_DATABASE_PATH", "CONFIG/sub.db", id="database-under-a-file"),
    pytest.param("TOKENKEEP_DATABASE_PATH", "CONFIG", id="database-is-the-config"),
    pytest.param("TOKENKEEP_DATABASE_PATH", "DIR", id="database-is-a-directory"),
]


@pytest.mark.parametrize(("name", "value"), BAD_ENV)
def test_a_bad_environment_override_is_refused(
    tmp_path: Path,
    config_file: Path,
    settings: Settings,
    connected: TokenService,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
) -> None:
    value = (
        value.replace("NEW-KEY", new_encryption_key())
        .replace("CONFIG", str(config_file))
        .replace("DIR", str(tmp_path))
    )
    monkeypatch.setenv(name, value)

    assert_refused_and_intact(config_file, config_file, settings, connected)


def test_a_wrong_encryption_key_in_the_file_is_a_clear_start_up_error(
    tmp_path: Path, config_file: Path, settings: Settings, connected: TokenService
) -> None:
    path = tmp_path / "other-key.toml"
    path.write_text(variant(config_file, {"encryption_key": f'"{new_encryption_key()}"'}))

    assert_refused_and_intact(path, config_file, settings, connected)
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        open_repository(load_settings(path, env={}))


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_a_config_that_cannot_be_read_is_refused(
    tmp_path: Path, config_file: Path, settings: Settings, connected: TokenService, make: str
) -> None:
    path = tmp_path / "absent.toml"
    if make == "directory":
        path.mkdir()

    assert_refused_and_intact(path, config_file, settings, connected)
