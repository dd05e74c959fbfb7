"""CLI tests for `tokenkeep presets` and `register-provider --preset/--region`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import CLIENT_SECRET, PUBLIC_URL

from tokenkeep.cli import main
from tokenkeep.models import TokenSet
from tokenkeep.presets import load_presets
from tokenkeep.repository import Repository

NAMES = list(load_presets())
CREDENTIALS = ("--client-id", "client-id", "--client-secret", CLIENT_SECRET)


@pytest.fixture(autouse=True)
def _no_tokenkeep_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOKENKEEP_"):
            monkeypatch.delenv(name)


def run(runner: CliRunner, config: Path, *args: str) -> Result:
    return runner.invoke(main, ["--config", str(config), *args])


def register(runner: CliRunner, config: Path, *args: str) -> Result:
    return run(runner, config, "register-provider", *args, *CREDENTIALS)


def assert_one_line_error(result: Result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# -- tokenkeep presets ------------------------------------------------------------------


def test_presets_lists_every_preset_with_a_one_line_note(runner, config_file) -> None:
    result = run(runner, config_file, "presets")

    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    zoho = next(line for line in lines if line.startswith("zoho "))
    assert "Regions: us, eu, in, au, jp, ca, sa, cn, uk, ae" in zoho


def test_presets_json_is_a_list_with_names_notes_and_extras(runner, config_file) -> None:
    result = run(runner, config_file, "presets", "--json")

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == NAMES
    by_name = {row["name"]: row for row in rows}
    assert all(row["note"] for row in rows)
    assert by_name["quickbooks"]["extras"] == ["x_refresh_token_expires_in", "id_token", "realm_id"]
    assert by_name["microsoft"]["placeholders"] == ["tenant"]
    assert by_name["hubspot"]["token_url"] == "https://api.hubapi.com/oauth/2026-09/token"


def test_presets_needs_no_config_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["--config", str(tmp_path / "missing.toml"), "presets"])
    assert result.exit_code == 0, result.output


# -- register-provider --preset ------------------------------------------------------------


def test_register_with_a_preset_and_region_fills_everything_and_defaults_the_alias(
    runner, config_file, repo: Repository
) -> None:
    result = register(
        runner, config_file, "--preset", "zoho", "--region", "eu", "--scope", "ZohoCRM.modules.ALL"
    )

    assert result.exit_code == 0, result.output
    assert "Registered zoho." in result.stdout
    assert f"{PUBLIC_URL}/callback" in result.stdout
    assert CLIENT_SECRET not in result.output
    provider = repo.get_provider("zoho")
    assert provider is not None
    assert provider.authorize_url == "https://accounts.zoho.eu/oauth/v2/auth"
    assert provider.token_url == "https://accounts.zoho.eu/oauth/v2/token"
    assert provider.scopes == ("ZohoCRM.modules.ALL",)
    assert provider.scope_separator == ","
    assert provider.auth_method == "client_secret_post" and provider.pkce is False
    assert dict(provider.authorize_params) == {"access_type": "offline", "prompt": "consent"}
    assert provider.preset == "zoho"
    assert "accounts.zoho.eu" in provider.quirks.token_hosts


def test_register_with_a_preset_under_another_alias(runner, config_file, repo) -> None:
    result = register(runner, config_file, "crm-eu", "--preset", "zoho", "--region", "eu")
    assert result.exit_code == 0, result.output
    assert repo.get_provider("crm-eu") is not None and repo.get_provider("zoho") is None


def test_flags_override_what_the_preset_sets(runner, config_file, repo) -> None:
    result = register(
        runner,
        config_file,
        "--preset",
        "google",
        "--auth-method",
        "client_secret_basic",
        "--no-pkce",
        "--token-url",
        "https://override.test/token",
        "--param",
        "prompt=select_account",
        "--param",
        "login_hint=ops@example.com",
        "--default-lifetime",
        "1800",
    )

    assert result.exit_code == 0, result.output
    provider = repo.get_provider("google")
    assert provider is not None
    assert provider.auth_method == "client_secret_basic" and provider.pkce is False
    assert provider.token_url == "https://override.test/token"
    assert provider.authorize_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert dict(provider.authorize_params) == {
        "access_type": "offline",
        "prompt": "select_account",
        "login_hint": "ops@example.com",
    }
    assert provider.default_lifetime_seconds == 1800


def test_placeholder_param_fills_the_url_and_is_not_stored_as_an_authorize_param(
    runner, config_file, repo
) -> None:
    result = register(
        runner, config_file, "graph", "--preset", "microsoft", "--param", "tenant=contoso.com"
    )

    assert result.exit_code == 0, result.output
    provider = repo.get_provider("graph")
    assert provider is not None
    assert provider.token_url == "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
    assert "tenant" not in provider.authorize_params
    assert provider.scopes == ("offline_access",)


def test_shopify_preset_sends_expiring_on_token_requests(runner, config_file, repo) -> None:
    result = register(runner, config_file, "--preset", "shopify", "--param", "shop=acme")
    assert result.exit_code == 0, result.output
    provider = repo.get_provider("shopify")
    assert provider is not None
    assert provider.token_url == "https://acme.myshopify.com/admin/oauth/access_token"
    assert dict(provider.token_params) == {"expiring": "1"}


def test_re_registering_with_the_preset_keeps_tokens_and_scopes(runner, config_file, repo) -> None:
    first = register(runner, config_file, "--preset", "xero", "--scope", "accounting.transactions")
    assert first.exit_code == 0, first.output
    now = time.time()
    repo.store_authorized("xero", TokenSet(access_token="at-1", obtained_at=now), now)

    result = run(runner, config_file, "register-provider", "xero", "--preset", "xero")

    assert result.exit_code == 0, result.output
    assert "Updated xero." in result.stdout
    record = repo.get_token("xero")
    assert record is not None and record.tokens.access_token == "at-1"
    provider = repo.get_provider("xero")
    assert provider is not None
    assert provider.scopes == ("offline_access", "accounting.transactions")


# -- errors ---------------------------------------------------------------------------------


def test_unknown_preset_is_one_line_exit_2_listing_the_valid_names(runner, config_file) -> None:
    line = assert_one_line_error(
        register(runner, config_file, "--preset", "zohoo"), "unknown preset 'zohoo'"
    )
    assert all(name in line for name in NAMES)


def test_unknown_region_is_one_line_exit_2_listing_the_valid_regions(runner, config_file) -> None:
    assert_one_line_error(
        register(runner, config_file, "--preset", "zoho", "--region", "mars"),
        "unknown region 'mars'",
        "us, eu, in, au, jp, ca, sa, cn, uk, ae",
    )


def test_region_for_a_preset_without_regions_is_refused(runner, config_file) -> None:
    assert_one_line_error(
        register(runner, config_file, "--preset", "google", "--region", "eu"),
        "valid regions: none",
    )


def test_region_without_preset_is_refused(runner, config_file) -> None:
    assert_one_line_error(register(runner, config_file, "x", "--region", "eu"), "--preset")


@pytest.mark.parametrize(("name", "param"), [("microsoft", "tenant"), ("shopify", "shop")])
def test_missing_placeholder_is_one_line_exit_2(runner, config_file, repo, name, param) -> None:
    assert_one_line_error(
        register(runner, config_file, "--preset", name), f"needs --param {param}=VALUE"
    )
    assert repo.get_provider(name) is None


def test_placeholder_value_that_does_not_fit_is_one_line_exit_2(runner, config_file) -> None:
    assert_one_line_error(
        register(runner, config_file, "--preset", "shopify", "--param", "shop=evil.test/x"),
        "does not fit preset shopify",
    )


def test_preset_without_credentials_and_no_terminal_names_only_what_is_missing(
    runner, config_file
) -> None:
    line = assert_one_line_error(
        run(runner, config_file, "register-provider", "--preset", "spotify"), "--client-id"
    )
    assert "--token-url" not in line


def test_preset_prompts_only_for_the_client_credentials(runner, config_file, repo) -> None:
    result = runner.invoke(
        main,
        ["--config", str(config_file), "register-provider", "--preset", "spotify"],
        input=f"client-id\n{CLIENT_SECRET}\n",
    )

    assert result.exit_code == 0, result.output
    assert "Client ID" in result.output and "Authorize URL" not in result.output
    provider = repo.get_provider("spotify")
    assert provider is not None and provider.client_secret == CLIENT_SECRET
    assert provider.token_url == "https://accounts.spotify.com/api/token"


def test_missing_placeholder_fails_before_any_prompt(runner, config_file) -> None:
    result = runner.invoke(
        main,
        ["--config", str(config_file), "register-provider", "--preset", "microsoft"],
        input=f"client-id\n{CLIENT_SECRET}\n",
    )

    assert_one_line_error(result, "needs --param tenant=VALUE")
    assert "Client ID" not in result.output
