"""Bad-input battery for the command line.

Every case runs `tokenkeep` with a bad alias, URL, --param, number or option
against a config whose database holds a connected provider, and asserts:
a non-zero exit, exactly one `Error:` line on stderr, no traceback, no secret
echoed, and the stored connection (tokens and registration) unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import CLIENT_SECRET, register
from intact import snapshot

from tokenkeep.cli import main
from tokenkeep.config import Settings
from tokenkeep.service import TokenService

NEW = "newp"  # a provider the bad commands try to create; it must not appear
URLS = ["--authorize-url", "https://p.test/auth", "--token-url", "https://p.test/token"]
CREATE = ["register-provider", NEW, "--client-id", "id", "--client-secret", "s3cret-value", *URLS]


@pytest.fixture(autouse=True)
def _no_tokenkeep_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOKENKEEP_"):
            monkeypatch.delenv(name)


def run(config: Path, args: list[str]) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def assert_failed_cleanly(result: Result, settings: Settings) -> str:
    """Non-zero exit, one `Error:` line on stderr, no traceback, no secret."""
    assert result.exit_code not in (0, None), result.output
    assert not isinstance(result.exception, AssertionError)
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    everything = result.output + result.stderr
    assert "Traceback" not in everything
    for secret in (
        CLIENT_SECRET,
        settings.api_secret_token,
        settings.admin_password,
        settings.encryption_key,
        "access-1",
        "refresh-1",
    ):
        assert secret not in everything
    return lines[0]


def check(config_file: Path, settings: Settings, service: TokenService, args: list[str]) -> str:
    before = snapshot(service.repo)
    line = assert_failed_cleanly(run(config_file, args), settings)
    assert snapshot(service.repo) == before
    assert service.repo.get_provider(NEW) is None
    assert len(service.repo.list_statuses()) == 1
    return line


BAD_ALIASES = [
    pytest.param("Acme", id="capitalised"),
    pytest.param("ACME", id="upper"),
    pytest.param("acme ", id="trailing-space"),
    pytest.param(" acme", id="leading-space"),
    pytest.param("ac me", id="inner-space"),
    pytest.param("acme\t", id="tab"),
    pytest.param("acme\n", id="newline"),
    pytest.param("_acme", id="leading-underscore"),
    pytest.param("a" * 65, id="65-chars"),
    pytest.param("a" * 10_000, id="10kB"),
    pytest.param("\u0430cme", id="cyrillic-lookalike"),
    pytest.param("\uff41\uff43\uff4d\uff45", id="fullwidth-lookalike"),
    pytest.param("acme/../x", id="traversal"),
    pytest.param("acme;rm -rf", id="shell"),
    pytest.param("\U0001f525", id="emoji"),
    pytest.param("acme.php", id="dot"),
]
ALIAS_COMMANDS = {
    "refresh": lambda a: ["refresh", a],
    "remove-provider": lambda a: ["remove-provider", a, "--yes"],
    "auth-link": lambda a: ["auth-link", a],
    "register-provider": lambda a: ["register-provider", a, "--client-id", "x"],
    "keys-create": lambda a: ["keys", "create", "billing", "--provider", a],
}


@pytest.mark.parametrize("alias", BAD_ALIASES)
@pytest.mark.parametrize("command", sorted(ALIAS_COMMANDS))
def test_a_malformed_alias_is_one_line_and_changes_nothing(
    config_file: Path, settings: Settings, connected: TokenService, command: str, alias: str
) -> None:
    line = check(config_file, settings, connected, ALIAS_COMMANDS[command](alias))

    assert "alias" in line
    assert connected.keys.list() == []  # keys create made no key either


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["refresh", "nope"], id="refresh"),
        pytest.param(["remove-provider", "nope", "--yes"], id="remove-provider"),
        pytest.param(["auth-link", "nope"], id="auth-link"),
    ],
)
def test_an_unknown_provider_is_one_line_and_changes_nothing(
    config_file: Path, settings: Settings, connected: TokenService, args: list[str]
) -> None:
    assert "nope" in check(config_file, settings, connected, args)


BAD_URLS = [
    pytest.param("not a url", id="words"),
    pytest.param("p.test/token", id="no-scheme"),
    pytest.param("ftp://p.test/token", id="ftp"),
    pytest.param("file:///etc/passwd", id="file"),
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("http://p.test/token", id="plain-http-remote"),
    pytest.param("https://", id="no-host"),
    pytest.param("https:///token", id="empty-host"),
    pytest.param("//p.test/token", id="scheme-relative"),
    pytest.param("https://p.test/token#frag", id="fragment"),
    pytest.param("https://user:pw@p.test/token", id="credentials"),
    pytest.param("https://p.test:99999/token", id="bad-port"),
    pytest.param("https://p.test:abc/token", id="non-numeric-port"),
    pytest.param("https://[::1/token", id="unclosed-ipv6"),
    pytest.param("https://p.test/to ken", id="space"),
    pytest.param("https://p.test/token\n", id="newline"),
]


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("flag", ["--authorize-url", "--token-url", "--redirect-uri"])
def test_a_bad_url_on_an_existing_provider_is_refused_and_changes_nothing(
    config_file: Path, settings: Settings, connected: TokenService, flag: str, url: str
) -> None:
    line = check(config_file, settings, connected, ["register-provider", "acme", flag, url])

    assert "URL" in line or "URI" in line


@pytest.mark.parametrize("url", BAD_URLS[:6])
def test_a_bad_url_on_a_new_provider_creates_nothing(
    config_file: Path, settings: Settings, connected: TokenService, url: str
) -> None:
    args = [*CREATE[: CREATE.index("--token-url") + 1], url]

    check(config_file, settings, connected, args)


BAD_PARAMS = [
    pytest.param("noequals", id="no-equals"),
    pytest.param("=value", id="empty-key"),
    pytest.param(" =value", id="blank-key"),
    pytest.param("", id="empty"),
    pytest.param("state=fixed", id="reserved-state"),
    pytest.param("client_id=other", id="reserved-client-id"),
    pytest.param("redirect_uri=https://evil.example/cb", id="reserved-redirect-uri"),
    pytest.param("response_type=token", id="reserved-response-type"),
    pytest.param("code_challenge=x", id="reserved-code-challenge"),
]


@pytest.mark.parametrize("param", BAD_PARAMS)
def test_a_bad_param_is_refused_and_changes_nothing(
    config_file: Path, settings: Settings, connected: TokenService, param: str
) -> None:
    check(config_file, settings, connected, ["register-provider", "acme", "--param", param])


@pytest.mark.parametrize("param", BAD_PARAMS[:4])
def test_a_bad_token_param_is_refused_and_changes_nothing(
    config_file: Path, settings: Settings, connected: TokenService, param: str
) -> None:
    args = ["register-provider", "acme", "--token-param", param]

    check(config_file, settings, connected, args)


BAD_VALUES = [
    pytest.param(["register-provider", "acme", "--client-id", " id "], id="client-id-spaces"),
    pytest.param(["register-provider", "acme", "--client-id", "a\nb"], id="client-id-newline"),
    pytest.param(["register-provider", "acme", "--client-secret", " s "], id="secret-spaces"),
    pytest.param(["register-provider", "acme", "--scope", "a b"], id="scope-with-space"),
    pytest.param(["register-provider", "acme", "--scope", ""], id="empty-scope"),
    pytest.param(["register-provider", "acme", "--auth-method", "bogus"], id="auth-method"),
    pytest.param(["register-provider", "acme", "--auth-method", ""], id="empty-auth-method"),
    pytest.param(["register-provider", NEW, "--client-id", "id"], id="new-missing-fields"),
    pytest.param(["register-provider"], id="no-alias-no-tty"),
    pytest.param(["keys", "create", ""], id="empty-key-name"),
    pytest.param(["keys", "create", "a b"], id="key-name-space"),
    pytest.param(["keys", "create", "x" * 65], id="key-name-65"),
    pytest.param(["keys", "create", "name!"], id="key-name-bang"),
    pytest.param(["keys", "revoke", "nosuch"], id="revoke-unknown-key"),
]


@pytest.mark.parametrize("args", BAD_VALUES)
def test_a_bad_value_is_one_line_and_changes_nothing(
    config_file: Path, settings: Settings, connected: TokenService, args: list[str]
) -> None:
    check(config_file, settings, connected, args)
    assert connected.keys.list() == []


BAD_NUMBERS = [
    pytest.param(["auth-link", "acme", "--ttl", "abc"], id="ttl-word"),
    pytest.param(["auth-link", "acme", "--ttl", ""], id="ttl-empty"),
    pytest.param(["auth-link", "acme", "--ttl", "0"], id="ttl-0"),
    pytest.param(["auth-link", "acme", "--ttl", "59"], id="ttl-59"),
    pytest.param(["auth-link", "acme", "--ttl", "-60"], id="ttl-negative"),
    pytest.param(["auth-link", "acme", "--ttl", "604801"], id="ttl-over-a-week"),
    pytest.param(["auth-link", "acme", "--ttl", "1e3"], id="ttl-exponent"),
    pytest.param(["auth-link", "acme", "--ttl", "3600.5"], id="ttl-decimal"),
    pytest.param(["auth-link", "acme", "--ttl", "9" * 30], id="ttl-huge"),
    pytest.param(["auth-link", "acme", "--ttl", "\uff16"], id="ttl-fullwidth-6"),
    pytest.param(["refresh-all", "--within", "-1"], id="within-negative"),
    pytest.param(["refresh-all", "--within", "soon"], id="within-word"),
    pytest.param(["refresh-all", "--concurrency", "0"], id="concurrency-0"),
    pytest.param(["refresh-all", "--concurrency", "65"], id="concurrency-65"),
    pytest.param(["refresh-all", "--keep-alive-days", "0"], id="keep-alive-0"),
    pytest.param(["refresh-all", "--keep-alive-days", "-1"], id="keep-alive-negative"),
    pytest.param(["refresh-all", "--keep-alive-days", "nan"], id="keep-alive-nan"),
    pytest.param(["refresh-all", "--keep-alive-days", "inf"], id="keep-alive-inf"),
    pytest.param(["serve", "--port", "0"], id="port-0"),
    pytest.param(["serve", "--port", "65536"], id="port-65536"),
    pytest.param(["serve", "--port", "http"], id="port-word"),
    pytest.param(["serve", "--workers", "0"], id="workers-0"),
    pytest.param(["serve", "--workers", "65"], id="workers-65"),
    pytest.param(["serve", "--threads", "0"], id="threads-0"),
    pytest.param(["serve", "--threads", "257"], id="threads-257"),
    pytest.param(["register-provider", "acme", "--default-lifetime", "0"], id="lifetime-0"),
    pytest.param(["register-provider", "acme", "--default-lifetime", "-5"], id="lifetime-neg"),
    pytest.param(["register-provider", "acme", "--default-lifetime", "1h"], id="lifetime-word"),
]


@pytest.mark.parametrize("args", BAD_NUMBERS)
def test_a_bad_number_is_one_line_and_changes_nothing(
    config_file: Path, settings: Settings, connected: TokenService, args: list[str]
) -> None:
    line = check(config_file, settings, connected, args)

    assert args[-2] in line or "--ttl" in line  # the line names the option at fault


UNKNOWN = [
    pytest.param(["--frobnicate"], id="global-unknown-option"),
    pytest.param(["--config"], id="config-without-value"),
    pytest.param(["nosuch"], id="unknown-command"),
    pytest.param(["Refresh", "acme"], id="command-case"),
    pytest.param(["refresh"], id="missing-argument"),
    pytest.param(["refresh", "acme", "extra"], id="extra-argument"),
    pytest.param(["refresh", "acme", "--force"], id="unknown-sub-option"),
    pytest.param(["providers", "--jsonx"], id="misspelt-flag"),
    pytest.param(["providers", "--json=yes"], id="flag-with-value"),
    pytest.param(["refresh-all", "--within"], id="option-without-value"),
    pytest.param(["keys", "nosuch"], id="unknown-keys-command"),
    pytest.param(["keys", "create"], id="keys-create-without-name"),
    pytest.param(["keys", "revoke"], id="keys-revoke-without-name"),
    pytest.param(["migrate", "--lis"], id="truncated-flag"),
    pytest.param(["remove-provider", "acme", "--yes", "--yes=no"], id="flag-value-on-yes"),
]


@pytest.mark.parametrize("args", UNKNOWN)
def test_an_unknown_option_command_or_argument_is_one_line_and_changes_nothing(
    config_file: Path, settings: Settings, connected: TokenService, args: list[str]
) -> None:
    line = check(config_file, settings, connected, args)

    assert "--help" in line  # points at the help, on the same line


def test_a_rejected_update_keeps_a_second_provider_too(
    config_file: Path, settings: Settings, connected: TokenService
) -> None:
    register(connected, "bravo")
    before = snapshot(connected.repo)
    result = run(config_file, ["register-provider", "bravo", "--token-url", "ftp://x"])

    assert_failed_cleanly(result, settings)
    assert snapshot(connected.repo) == before
    provider = connected.repo.get_provider("bravo")
    assert provider is not None and provider.token_url.startswith("https://")


@pytest.mark.parametrize(
    ("where", "args"),
    [
        pytest.param("UNDER-A-FILE", ["init"], id="config-under-a-file"),
        pytest.param("/proc/tokenkeep-test/config.toml", ["init"], id="unwritable-folder"),
        pytest.param("EXISTING", ["init"], id="config-exists"),
        pytest.param("NEW", ["init", "--public-url", "ftp://tokens.example.com"], id="ftp-url"),
        pytest.param("NEW", ["init", "--public-url", "not a url"], id="words-url"),
        pytest.param("NEW", ["init", "--public-url", "https://t.example/?q=1"], id="query-url"),
        pytest.param("NEW", ["init", "--public-urlx", "https://t.example"], id="misspelt"),
    ],
)
def test_init_in_a_bad_place_or_with_a_bad_url_is_one_line_and_leaves_nothing(
    tmp_path: Path,
    config_file: Path,
    settings: Settings,
    connected: TokenService,
    where: str,
    args: list[str],
) -> None:
    target = {
        "UNDER-A-FILE": str(config_file / "config.toml"),
        "EXISTING": str(config_file),
        "NEW": str(tmp_path / "new" / "config.toml"),
    }.get(where, where)
    before = snapshot(connected.repo)
    config_bytes = config_file.read_bytes()

    result = CliRunner().invoke(main, ["--config", target, *args])

    assert_failed_cleanly(result, settings)
    assert not (tmp_path / "new" / "config.toml").exists()
    assert config_file.read_bytes() == config_bytes
    assert snapshot(connected.repo) == before
