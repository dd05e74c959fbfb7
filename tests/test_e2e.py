"""End to end: `tokenkeep serve` (real gunicorn, 2 workers) against a fake provider.

Everything runs on 127.0.0.1: the fake provider in a thread of this process,
TokenKeep as a subprocess started through the installed console script, and
a requests.Session playing the operator's browser.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeprovider import FakeProvider
from serving import PHP_REDIRECT, Gateway, accepted_by, serving

pytestmark = pytest.mark.e2e

API_DOMAIN = "https://api.acme.test"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """`tokenkeep serve --workers 2` in front of one fake provider."""
    # A minimum refresh interval of 0 lets a test force two refreshes in a row; it
    # also proves that environment overrides reach the server.
    with (
        FakeProvider(extra_fields={"api_domain": API_DOMAIN}) as fake,
        serving(
            tmp_path, settings={"force_refresh_min_interval_seconds": "0"}, provider=fake
        ) as gw,
    ):
        yield gw


@pytest.mark.parametrize(
    ("auth_path", "token_path", "redirect_path"),
    [
        ("/auth", "/api/token", "/callback"),
        ("/auth.php", "/api/token.php", PHP_REDIRECT.format(alias="acme")),
    ],
    ids=["current-urls", "php-urls"],
)
def test_operator_authorizes_once_and_a_backend_gets_a_token_the_provider_accepts(
    gateway: Gateway, auth_path: str, token_path: str, redirect_path: str
) -> None:
    gateway.register("--redirect-uri", gateway.url + redirect_path)
    assert gateway.api("GET", token_path, provider="acme").json()["error"] == "not_connected"

    gateway.authorize(auth_path=auth_path, callback_path=redirect_path)

    sent = gateway.provider.authorize_requests[-1]
    assert sent["redirect_uri"] == gateway.url + redirect_path
    assert sent["scope"] == "read"
    assert sent["code_challenge_method"] == "S256"
    assert gateway.provider.code_exchanges == 1
    response = gateway.api("GET", token_path, provider="acme")
    assert response.status == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["access_token"] == gateway.provider.issued_access_tokens[-1]
    assert body["token_type"] == "Bearer"
    assert body["provider"] == "acme"
    assert body["scope"] == "read"
    assert body["api_domain"] == API_DOMAIN
    assert 3500 < body["expires_in"] <= 3600
    assert accepted_by(gateway.provider, body["access_token"])
    assert gateway.provider.refresh_requests == 0


def test_the_api_refuses_a_request_without_the_bearer_key(gateway: Gateway) -> None:
    health = gateway.api("GET", "/healthz", key=False)
    response = gateway.api("GET", "/api/token", key=False, provider="acme")

    assert health.json() == {"status": "ok"}
    assert response.status == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_with_less_life_left_than_needed_is_refreshed_with_the_rotated_token(
    gateway: Gateway,
) -> None:
    gateway.provider.expires_in = 120  # shorter than the 300 s margin: refreshed at half life
    gateway.register()
    gateway.authorize()

    first = gateway.api("GET", "/api/token", provider="acme").json()
    # min_valid above the lifetime: with the fixture's minimum refresh interval of 0 (the
    # default 5 s would serve a token this fresh as it is), every such call refreshes.
    assert gateway.provider.refresh_requests == 0, "a fresh short-lived token was refreshed"
    second = gateway.api("GET", "/api/token", provider="acme", min_valid="300").json()
    third = gateway.api("GET", "/api/token", provider="acme", min_valid="300").json()

    assert gateway.provider.refresh_requests == 2
    assert not gateway.provider.replay_detected
    assert len({first["access_token"], second["access_token"], third["access_token"]}) == 3
    assert third["access_token"] == gateway.provider.issued_access_tokens[-1]
    assert third["api_domain"] == API_DOMAIN
    assert accepted_by(gateway.provider, third["access_token"])


def test_forced_refreshes_use_each_rotated_refresh_token_once(gateway: Gateway) -> None:
    gateway.register()
    gateway.authorize()

    tokens = []
    for _ in range(2):
        response = gateway.api("POST", "/api/token/refresh", provider="acme")
        assert response.status == 200, response.text
        tokens.append(response.json()["access_token"])

    assert gateway.provider.refresh_requests == 2
    assert not gateway.provider.replay_detected
    assert tokens == gateway.provider.issued_access_tokens[-2:]
    served = gateway.api("GET", "/api/token", provider="acme").json()
    assert served["access_token"] == tokens[-1]
    assert accepted_by(gateway.provider, served["access_token"])


def test_refresh_all_from_cron_shares_the_database_with_the_running_server(
    gateway: Gateway,
) -> None:
    gateway.register()
    gateway.authorize()
    before = gateway.api("GET", "/api/token", provider="acme").json()["access_token"]

    result = gateway.cli("refresh-all", "--force", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(r["provider"], r["outcome"]) for r in report["results"]] == [("acme", "refreshed")]
    assert report["summary"]["failed"] == 0
    assert gateway.provider.refresh_requests == 1
    served = gateway.api("GET", "/api/token", provider="acme").json()["access_token"]
    assert served != before
    assert served == gateway.provider.issued_access_tokens[-1]
    # The server now refreshes with the refresh token the cron run rotated in.
    forced = gateway.api("POST", "/api/token/refresh", provider="acme")
    assert forced.status == 200, forced.text
    assert gateway.provider.refresh_requests == 2
    assert not gateway.provider.replay_detected
    assert accepted_by(gateway.provider, forced.json()["access_token"])
