"""CLI tests: every `tokenkeep` command through click's CliRunner, on a real SQLite file.

The CLI builds its own service with the real clock, so tokens that must be
"due" are stored with expiry times near the real time.time().
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import responses
from click.testing import CliRunner, Result
from conftest import AUTHORIZE_URL, CLIENT_SECRET, PUBLIC_URL, TOKEN_URL, register

from tokenkeep.cli import main
from tokenkeep.config import load_settings
from tokenkeep.models import TokenSet
from tokenkeep.repository import Repository
from tokenkeep.service import TokenService

GOOD_TOKEN_URL = "https://good.test/oauth/token"
BAD_TOKEN_URL = "https://bad.test/oauth/token"


@pytest.fixture(autouse=True)
def _no_tokenkeep_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test's config file only, never from the caller's env."""
    for name in list(os.environ):
        if name.startswith("TOKENKEEP_"):
            monkeypatch.delenv(name)


def run(runner: CliRunner, config: Path, *args: str, input: str | None = None) -> Result:
    return runner.invoke(main, ["--config", str(config), *args], input=input)


def assert_one_line_error(result: Result, exit_code: int, *fragments: str) -> str:
    """A failed command: this exit status, one 'Error:' line on stderr, no traceback."""
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error:")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def store_tokens(
    repo: Repository,
    alias: str,
    *,
    expires_in: float | None = 3600,
    obtained_ago: float = 60,
    access: str = "access-1",
    refresh: str | None = "refresh-1",
) -> None:
    """Store tokens obtained `obtained_ago` seconds ago (real time) for `alias`."""
    now = time.time()
    obtained = now - obtained_ago
    repo.store_authorized(
        alias,
        TokenSet(
            access_token=access,
            refresh_token=refresh,
            expires_at=None if expires_in is None else now + expires_in,
            scope="read",
            obtained_at=obtained,
        ),
        obtained,
    )


def register_flags(alias: str = "acme", token_url: str = TOKEN_URL) -> list[str]:
    return [
        "register-provider",
        alias,
        "--client-id",
        "client-id",
        "--client-secret",
        CLIENT_SECRET,
        "--authorize-url",
        AUTHORIZE_URL,
        "--token-url",
        token_url,
    ]


def providers_json(runner: CliRunner, config: Path) -> dict[str, dict[str, object]]:
    result = run(runner, config, "providers", "--json")
    assert result.exit_code == 0, result.output
    return {row["provider"]: row for row in json.loads(result.stdout)}


def parse_iso(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def token_body(access: str = "access-2", expires_in: int = 3600) -> dict[str, object]:
    return {"access_token": access, "token_type": "bearer", "expires_in": expires_in}


# -- init --------------------------------------------------------------------------


def test_init_writes_a_private_config_and_the_database_and_prints_the_secrets(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "fresh" / "config.toml"

    result = run(runner, path, "init")

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = tomllib.loads(path.read_text())
    assert config["api_secret_token"] in result.stdout
    assert config["admin_password"] in result.stdout
    settings = load_settings(path, env={})
    assert settings.database_path.exists()
    assert settings.database_path.parent == path.parent


def test_init_generates_different_secrets_each_time(runner: CliRunner, tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "config.toml", tmp_path / "b" / "config.toml"
    assert run(runner, first, "init").exit_code == 0
    assert run(runner, second, "init").exit_code == 0

    a, b = tomllib.loads(first.read_text()), tomllib.loads(second.read_text())

    for key in ("api_secret_token", "admin_password", "encryption_key"):
        assert a[key] != b[key]


def test_init_config_is_immediately_usable(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    assert run(runner, path, "init").exit_code == 0

    result = run(runner, path, "providers")

    assert result.exit_code == 0, result.output
    assert "No providers registered" in result.stdout


def test_init_refuses_to_overwrite_an_existing_config(runner: CliRunner, config_file: Path) -> None:
    before = config_file.read_bytes()

    result = run(runner, config_file, "init")

    assert result.exit_code != 0
    assert_one_line_error(result, result.exit_code, str(config_file))
    assert config_file.read_bytes() == before


# -- register-provider -------------------------------------------------------------


def test_register_provider_by_flags_shows_up_as_not_connected(
    runner: CliRunner, config_file: Path, repo: Repository
) -> None:
    result = run(
        runner,
        config_file,
        *register_flags(),
        "--scope",
        "read",
        "--scope",
        "write",
        "--param",
        "access_type=offline",
        "--auth-method",
        "client_secret_post",
        "--no-pkce",
    )

    assert result.exit_code == 0, result.output
    assert "Registered acme" in result.stdout
    assert f"{PUBLIC_URL}/callback" in result.stdout
    assert CLIENT_SECRET not in result.output
    rows = providers_json(runner, config_file)
    assert rows["acme"]["status"] == "not_connected"
    assert rows["acme"]["expires_in"] is None
    provider = repo.get_provider("acme")
    assert provider is not None
    assert provider.client_secret == CLIENT_SECRET
    assert provider.scopes == ("read", "write")
    assert dict(provider.authorize_params) == {"access_type": "offline"}
    assert provider.auth_method == "client_secret_post"
    assert provider.pkce is False


def test_register_provider_with_own_redirect_uri_prints_it(
    runner: CliRunner, config_file: Path, repo: Repository
) -> None:
    result = run(
        runner, config_file, *register_flags(), "--redirect-uri", "https://tokens.example.com/cb"
    )

    assert result.exit_code == 0, result.output
    assert "https://tokens.example.com/cb" in result.stdout
    provider = repo.get_provider("acme")
    assert provider is not None
    assert provider.redirect_uri == "https://tokens.example.com/cb"


def test_reregistering_only_the_scope_keeps_everything_else_and_the_tokens(
    runner: CliRunner, config_file: Path, repo: Repository
) -> None:
    first = run(
        runner,
        config_file,
        *register_flags(),
        "--scope",
        "read",
        "--param",
        "access_type=offline",
        "--auth-method",
        "client_secret_post",
    )
    assert first.exit_code == 0, first.output
    store_tokens(repo, "acme")

    result = run(
        runner, config_file, "register-provider", "acme", "--scope", "write", "--scope", "admin"
    )

    assert result.exit_code == 0, result.output
    assert "Updated acme" in result.stdout
    provider = repo.get_provider("acme")
    assert provider is not None
    assert provider.scopes == ("write", "admin")
    assert provider.client_id == "client-id"
    assert provider.client_secret == CLIENT_SECRET
    assert provider.token_url == TOKEN_URL
    assert provider.auth_method == "client_secret_post"
    assert dict(provider.authorize_params) == {"access_type": "offline"}
    record = repo.get_token("acme")
    assert record is not None
    assert record.tokens.access_token == "access-1"
    assert record.tokens.refresh_token == "refresh-1"
    assert providers_json(runner, config_file)["acme"]["status"] == "connected"


def test_register_provider_prompts_for_what_is_missing_and_hides_the_secret(
    runner: CliRunner, config_file: Path, repo: Repository
) -> None:
    typed_secret = "typed-secret-value-5678"
    answers = f"acme\nclient-id\n{AUTHORIZE_URL}\n{TOKEN_URL}\n{typed_secret}\n"

    result = run(runner, config_file, "register-provider", input=answers)

    assert result.exit_code == 0, result.output
    assert "Client secret" in result.output
    assert typed_secret not in result.output
    provider = repo.get_provider("acme")
    assert provider is not None
    assert provider.client_id == "client-id"
    assert provider.authorize_url == AUTHORIZE_URL
    assert provider.token_url == TOKEN_URL
    assert provider.client_secret == typed_secret


def test_register_provider_prompts_only_for_the_missing_secret(
    runner: CliRunner, config_file: Path, repo: Repository
) -> None:
    flags = [f for f in register_flags() if f not in ("--client-secret", CLIENT_SECRET)]

    result = run(runner, config_file, *flags, input=f"{CLIENT_SECRET}\n")

    assert result.exit_code == 0, result.output
    assert CLIENT_SECRET not in result.output
    provider = repo.get_provider("acme")
    assert provider is not None
    assert provider.client_secret == CLIENT_SECRET


def test_register_provider_without_a_terminal_and_missing_flags_fails_in_one_line(
    runner: CliRunner, config_file: Path, repo: Repository
) -> None:
    result = run(runner, config_file, "register-provider", "acme", "--client-id", "x")

    assert_one_line_error(result, 2)
    assert repo.get_provider("acme") is None


@pytest.mark.parametrize(
    "alias", ["Acme", "acme!", "-acme", "_acme", "a" * 65, " acme", "acme ", "ac me", "acmé"]
)
def test_register_provider_rejects_an_invalid_alias(
    runner: CliRunner, config_file: Path, repo: Repository, alias: str
) -> None:
    flags = register_flags()[2:]  # without the alias; '--' keeps "-acme" an argument
    result = run(runner, config_file, "register-provider", *flags, "--", alias)

    assert_one_line_error(result, 2, "alias")
    assert repo.list_statuses() == []


@pytest.mark.parametrize(
    ("flag", "url"),
    [
        ("--authorize-url", "ftp://provider.test/oauth/authorize"),
        ("--authorize-url", "http://example.com/oauth/authorize"),
        ("--authorize-url", "not a url"),
        ("--token-url", "ftp://provider.test/oauth/token"),
        ("--token-url", "http://example.com/oauth/token"),
        ("--token-url", "not a url"),
        ("--token-url", "https://provider.test/token#fragment"),
        ("--token-url", "https://user:pw@provider.test/token"),
        ("--redirect-uri", "http://tokens.example.com/callback"),
    ],
)
def test_register_provider_rejects_an_invalid_url(
    runner: CliRunner, config_file: Path, repo: Repository, flag: str, url: str
) -> None:
    args = register_flags()
    if flag in args:
        args[args.index(flag) + 1] = url
    else:
        args += [flag, url]

    result = run(runner, config_file, *args)

    assert_one_line_error(result, 2)
    assert repo.get_provider("acme") is None


def test_register_provider_accepts_plain_http_on_loopback(
    runner: CliRunner, config_file: Path, repo: Repository
) -> None:
    args = register_flags(token_url="http://127.0.0.1:9999/token")

    result = run(runner, config_file, *args)

    assert result.exit_code == 0, result.output
    assert repo.get_provider("acme") is not None


@pytest.mark.parametrize("param", ["access_type", "=offline", ""])
def test_register_provider_rejects_a_param_without_key_and_value(
    runner: CliRunner, config_file: Path, repo: Repository, param: str
) -> None:
    result = run(runner, config_file, *register_flags(), "--param", param)

    assert_one_line_error(result, 2, "--param")
    assert repo.get_provider("acme") is None


# -- configuration errors -------------------------------------------------------


@pytest.mark.parametrize("command", [["providers"], ["refresh-all"], ["migrate"]])
def test_missing_config_file_fails_with_a_hint_to_run_init(
    runner: CliRunner, tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "nope" / "config.toml"

    result = run(runner, missing, *command)

    assert_one_line_error(result, 2, "tokenkeep init")
    assert not missing.exists()


@pytest.mark.parametrize("key", ["api_secret_token", "admin_password", "encryption_key"])
def test_placeholder_secret_in_config_is_refused(
    runner: CliRunner, config_file: Path, key: str
) -> None:
    lines = [
        f'{key} = "change-me-change-me-change-me-1234"' if line.startswith(f"{key} ") else line
        for line in config_file.read_text().splitlines()
    ]
    config_file.write_text("\n".join(lines) + "\n")

    result = run(runner, config_file, "providers")

    assert_one_line_error(result, 2, key)


# -- providers ----------------------------------------------------------------------


@pytest.fixture
def three_providers(service: TokenService, repo: Repository) -> None:
    """alpha connected, beta never authorized, gamma needing re-authorization."""
    register(service, "alpha")
    register(service, "beta")
    register(service, "gamma")
    store_tokens(repo, "alpha", expires_in=3600, obtained_ago=60)
    store_tokens(repo, "gamma", expires_in=-10, obtained_ago=3700)
    repo.record_failure(
        "gamma",
        "someone",
        error="gamma: the provider rejected the grant: invalid_grant",
        code="reauthorization_required",
        now=time.time(),
        next_attempt_at=None,
        needs_reauth=True,
    )


@pytest.mark.usefixtures("three_providers")
def test_providers_json_shows_status_expiry_last_refresh_and_last_error(
    runner: CliRunner, config_file: Path
) -> None:
    rows = providers_json(runner, config_file)

    assert sorted(rows) == ["alpha", "beta", "gamma"]
    alpha, beta, gamma = rows["alpha"], rows["beta"], rows["gamma"]
    assert alpha["status"] == "connected"
    assert isinstance(alpha["expires_in"], int) and 3500 < alpha["expires_in"] <= 3600
    assert isinstance(alpha["last_refresh"], str)
    assert abs(parse_iso(alpha["last_refresh"]) - (time.time() - 60)) < 5
    assert alpha["last_error"] is None
    assert beta["status"] == "not_connected"
    assert beta["expires_in"] is None
    assert beta["last_refresh"] is None
    assert gamma["status"] == "needs_reauth"
    assert "invalid_grant" in str(gamma["last_error"])
    for row in rows.values():
        assert {"provider", "status", "expires_in", "last_refresh", "last_error"} <= set(row)


@pytest.mark.usefixtures("three_providers")
def test_providers_table_has_one_line_per_provider(runner: CliRunner, config_file: Path) -> None:
    result = run(runner, config_file, "providers")

    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.strip().splitlines()
    assert "PROVIDER" in header and "STATUS" in header and "LAST ERROR" in header
    by_alias = {line.split()[0]: line for line in lines}
    assert sorted(by_alias) == ["alpha", "beta", "gamma"]
    assert "connected" in by_alias["alpha"].split()
    assert "59m" in by_alias["alpha"] or "1h" in by_alias["alpha"]
    assert "not_connected" in by_alias["beta"]
    assert "needs_reauth" in by_alias["gamma"]
    assert "invalid_grant" in by_alias["gamma"]
    assert CLIENT_SECRET not in result.output
    assert "access-1" not in result.output


def test_providers_without_any_says_how_to_add_one(
    runner: CliRunner, config_file: Path, repo: Repository
) -> None:
    result = run(runner, config_file, "providers")

    assert result.exit_code == 0
    assert "register-provider" in result.stdout
    assert json.loads(run(runner, config_file, "providers", "--json").stdout) == []


# -- remove-provider ------------------------------------------------------------------


def test_remove_provider_deletes_it_and_its_tokens_then_unknown_fails(
    runner: CliRunner, config_file: Path, service: TokenService, repo: Repository
) -> None:
    register(service)
    store_tokens(repo, "acme")

    result = run(runner, config_file, "remove-provider", "acme", "--yes")

    assert result.exit_code == 0, result.output
    assert repo.get_provider("acme") is None
    assert repo.get_token("acme") is None
    assert providers_json(runner, config_file) == {}
    again = run(runner, config_file, "remove-provider", "acme", "--yes")
    assert again.exit_code != 0
    assert_one_line_error(again, again.exit_code, "acme")


# -- refresh ----------------------------------------------------------------------------


def test_refresh_forces_a_new_token_and_prints_its_expiry(
    runner: CliRunner, config_file: Path, service: TokenService, repo: Repository
) -> None:
    register(service)
    store_tokens(repo, "acme", expires_in=3000, obtained_ago=600)

    with responses.RequestsMock() as rsps:
        rsps.post(TOKEN_URL, json=token_body("access-2", expires_in=7200))
        result = run(runner, config_file, "refresh", "acme")
        sent = parse_qs(str(rsps.calls[0].request.body))

    assert result.exit_code == 0, result.output
    assert sent["refresh_token"] == ["refresh-1"]
    line = result.stdout.strip()
    assert line.startswith("acme: token valid until ")
    expiry = parse_iso(line.rsplit(" ", 1)[1])
    assert abs(expiry - (time.time() + 7200)) < 10
    record = repo.get_token("acme")
    assert record is not None
    assert record.tokens.access_token == "access-2"
    assert record.tokens.refresh_token == "refresh-1"


def test_refresh_rejected_for_good_fails_in_one_line_and_marks_reauth(
    runner: CliRunner, config_file: Path, service: TokenService, repo: Repository
) -> None:
    register(service)
    store_tokens(repo, "acme", obtained_ago=600)

    with responses.RequestsMock() as rsps:
        rsps.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
        result = run(runner, config_file, "refresh", "acme")

    assert result.exit_code != 0
    assert_one_line_error(result, result.exit_code, "acme")
    assert providers_json(runner, config_file)["acme"]["status"] == "needs_reauth"


@pytest.mark.parametrize("alias", ["Acme", "nope"])
def test_refresh_of_an_invalid_or_unknown_alias_fails_in_one_line(
    runner: CliRunner, config_file: Path, repo: Repository, alias: str
) -> None:
    result = run(runner, config_file, "refresh", alias)

    assert result.exit_code != 0
    assert_one_line_error(result, result.exit_code)


# -- refresh-all -------------------------------------------------------------------------


def test_refresh_all_skips_never_authorized_providers_and_exits_0(
    runner: CliRunner, config_file: Path, service: TokenService, repo: Repository
) -> None:
    register(service, "fresh")
    register(service, "idle")
    store_tokens(repo, "fresh", expires_in=3600)

    with responses.RequestsMock() as rsps:
        result = run(runner, config_file, "refresh-all")
        assert len(rsps.calls) == 0

    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.stdout.strip().splitlines()[:-1]}
    assert lines["idle"][1] == "skipped"
    assert lines["fresh"][1] == "fresh"
    assert "0 failed" in result.stdout.strip().splitlines()[-1]


def test_refresh_all_refreshes_a_due_provider_and_leaves_a_fresh_one(
    runner: CliRunner, config_file: Path, service: TokenService, repo: Repository
) -> None:
    register(service, "due", token_url=GOOD_TOKEN_URL)
    register(service, "fresh", token_url=BAD_TOKEN_URL)
    store_tokens(repo, "due", expires_in=100, obtained_ago=3500)
    store_tokens(repo, "fresh", expires_in=3600)

    with responses.RequestsMock() as rsps:
        rsps.post(GOOD_TOKEN_URL, json=token_body("access-due-2"))
        result = run(runner, config_file, "refresh-all")

    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.stdout.strip().splitlines()[:-1]}
    assert lines["due"][1] == "refreshed"
    assert lines["fresh"][1] == "fresh"
    assert result.stdout.strip().splitlines()[-1] == "1 refreshed, 1 fresh, 0 skipped, 0 failed"
    due = repo.get_token("due")
    fresh = repo.get_token("fresh")
    assert due is not None and due.tokens.access_token == "access-due-2"
    assert fresh is not None and fresh.tokens.access_token == "access-1"


def test_refresh_all_within_widens_what_counts_as_due(
    runner: CliRunner, config_file: Path, service: TokenService, repo: Repository
) -> None:
    register(service)
    store_tokens(repo, "acme", expires_in=3000)

    with responses.RequestsMock() as rsps:
        default = run(runner, config_file, "refresh-all", "--json")
        assert len(rsps.calls) == 0
        rsps.post(TOKEN_URL, json=token_body())
        wide = run(runner, config_file, "refresh-all", "--within", "3600", "--json")
        assert len(rsps.calls) == 1

    assert json.loads(default.stdout)["results"][0]["outcome"] == "fresh"
    assert json.loads(wide.stdout)["results"][0]["outcome"] == "refreshed"
    record = repo.get_token("acme")
    assert record is not None and record.tokens.access_token == "access-2"


def test_refresh_all_force_refreshes_a_fresh_token_but_skips_never_authorized(
    runner: CliRunner, config_file: Path, service: TokenService, repo: Repository
) -> None:
    register(service)
    register(service, "idle")
    store_tokens(repo, "acme", expires_in=86400)

    with responses.RequestsMock() as rsps:
        rsps.post(TOKEN_URL, json=token_body())
        result = run(runner, config_file, "refresh-all", "--force", "--json")
        assert len(rsps.calls) == 1

    assert result.exit_code == 0, result.output
    outcomes = {r["provider"]: r["outcome"] for r in json.loads(result.stdout)["results"]}
    assert outcomes == {"acme": "refreshed", "idle": "skipped"}


def test_refresh_all_json_has_results_and_a_summary(
    runner: CliRunner, config_file: Path, service: TokenService, repo: Repository
) -> None:
    register(service, "due")
    register(service, "idle")
    store_tokens(repo, "due", expires_in=60, obtained_ago=3540)

    with responses.RequestsMock() as rsps:
        rsps.post(TOKEN_URL, json=token_body())
        result = run(runner, config_file, "refresh-all", "--json")

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == {"results", "summary"}
    assert body["summary"] == {"refreshed": 1, "fresh": 0, "skipped": 1, "failed": 0}
    rows = {r["provider"]: r for r in body["results"]}
    assert set(rows) == {"due", "idle"}
    for row in rows.values():
        assert {"provider", "outcome", "detail", "expires_at"} <= set(row)
    assert abs(parse_iso(rows["due"]["expires_at"]) - (time.time() + 3600)) < 10
    assert rows["idle"]["expires_at"] is None


def test_refresh_all_exits_1_when_one_fails_for_good_while_another_succeeds(
    runner: CliRunner, config_file: Path, service: TokenService, repo: Repository
) -> None:
    register(service, "bad", token_url=BAD_TOKEN_URL)
    register(service, "good", token_url=GOOD_TOKEN_URL)
    store_tokens(repo, "bad", expires_in=60, obtained_ago=3540)
    store_tokens(repo, "good", expires_in=60, obtained_ago=3540)

    with responses.RequestsMock() as rsps:
        rsps.post(BAD_TOKEN_URL, status=400, json={"error": "invalid_grant"})
        rsps.post(GOOD_TOKEN_URL, json=token_body("access-good-2"))
        result = run(runner, config_file, "refresh-all", "--json")

    assert result.exit_code == 1, result.output
    body = json.loads(result.stdout)
    outcomes = {r["provider"]: r["outcome"] for r in body["results"]}
    assert outcomes == {"bad": "failed", "good": "refreshed"}
    assert body["summary"]["failed"] == 1
    assert body["summary"]["refreshed"] == 1
    good = repo.get_token("good")
    bad = repo.get_token("bad")
    assert good is not None and good.tokens.access_token == "access-good-2"
    assert bad is not None and bad.tokens.access_token == "access-1"
    assert bad.status == "needs_reauth"
    assert "Traceback" not in result.output


def test_refresh_all_text_output_exits_1_on_failure(
    runner: CliRunner, config_file: Path, service: TokenService, repo: Repository
) -> None:
    register(service)
    store_tokens(repo, "acme", expires_in=60, obtained_ago=3540)

    with responses.RequestsMock() as rsps:
        rsps.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
        result = run(runner, config_file, "refresh-all")

    assert result.exit_code == 1
    first, summary = result.stdout.strip().splitlines()
    assert first.split()[:2] == ["acme", "failed"]
    assert summary.endswith("1 failed")
    assert CLIENT_SECRET not in result.output


# -- migrate ---------------------------------------------------------------------------


def test_migrate_applies_pending_migrations_once_and_list_shows_their_state(
    runner: CliRunner, config_file: Path
) -> None:
    before = run(runner, config_file, "migrate", "--list")
    assert before.exit_code == 0, before.output
    assert "0001_initial" in before.stdout
    assert "pending" in before.stdout

    applied = run(runner, config_file, "migrate")
    assert applied.exit_code == 0, applied.output
    assert "applied 0001_initial" in applied.stdout

    after = run(runner, config_file, "migrate", "--list")
    assert after.exit_code == 0
    marks = dict(line.split() for line in after.stdout.strip().splitlines())
    assert marks["0001_initial"] == "applied"
    assert set(marks.values()) == {"applied"}

    again = run(runner, config_file, "migrate")
    assert again.exit_code == 0
    assert "applied 0001" not in again.stdout
    assert "database is at version" in again.stdout
    assert run(runner, config_file, "providers").exit_code == 0


# -- help --------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help_that_works_without_a_config(
    runner: CliRunner, tmp_path: Path, command: str
) -> None:
    result = run(runner, tmp_path / "missing.toml", command, "--help")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage:")
    assert f" {command} " in result.stdout.splitlines()[0] + " "
    assert "Example" in result.stdout


def test_top_level_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])

    assert result.exit_code == 0
    for command in main.commands:
        assert command in result.stdout
    assert "--config" in result.stdout


def test_python_dash_m_tokenkeep_help_works() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "tokenkeep", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert "Usage:" in completed.stdout
    assert "refresh-all" in completed.stdout
