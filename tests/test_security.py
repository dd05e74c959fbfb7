"""Security behaviour: operator-only /auth, signed links, scoped keys, throttling,
key rotation, and no secret in logs, responses or database bytes."""

from __future__ import annotations

import base64
import dataclasses
import logging
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from click.testing import CliRunner
from conftest import CLIENT_SECRET, TOKEN_URL, connect, register

from tokenkeep.bootstrap import build_service, open_repository
from tokenkeep.cli import main
from tokenkeep.config import load_settings, new_encryption_key, write_encryption_keys
from tokenkeep.errors import ConfigError
from tokenkeep.service import TokenService
from tokenkeep.web import create_app


def _link_parts(link: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}


def _pending_count(service: TokenService) -> int:
    return service.repo.db.conn.execute("SELECT COUNT(*) FROM pending_authorizations").fetchone()[0]


def test_signed_link_starts_the_flow_once_without_a_password(client, service):
    register(service)
    link = service.keys.auth_link("acme", 600)
    path = link.removeprefix("http://127.0.0.1:8000")
    first = client.get(path)
    assert first.status_code == 302
    assert first.headers["Location"].startswith("https://provider.test/oauth/authorize")
    again = client.get(path)
    assert again.status_code == 401
    assert _pending_count(service) == 1


@pytest.mark.parametrize(
    "tamper",
    [
        {"sig": "A" * 43},
        {"expires": "9999999999"},
        {"nonce": "another-nonce"},
        {"provider": "bravo"},
        {"expires": "not-a-number"},
        {"sig": ""},
    ],
    ids=["signature", "expiry", "nonce", "provider", "malformed-expiry", "empty-signature"],
)
def test_tampered_signed_link_is_refused_and_starts_nothing(client, service, tamper):
    register(service)
    register(service, "bravo")
    parts = {**_link_parts(service.keys.auth_link("acme", 600)), **tamper}
    response = client.get("/auth", query_string=parts)
    assert response.status_code == 401
    assert _pending_count(service) == 0


def test_expired_signed_link_is_refused(client, service, clock):
    register(service)
    parts = _link_parts(service.keys.auth_link("acme", 600))
    clock.advance(601)
    assert client.get("/auth", query_string=parts).status_code == 401
    assert _pending_count(service) == 0


def test_scoped_key_reads_only_its_providers(client, service):
    register(service)
    register(service, "bravo")
    connect(service)
    connect(service, "bravo")
    key = service.keys.create("billing", ("acme",))
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/token?provider=acme", headers=headers).status_code == 200
    denied = client.get("/api/token?provider=bravo", headers=headers)
    assert denied.status_code == 403
    assert denied.json["error"] == "insufficient_scope"
    refresh = client.post("/api/token/refresh?provider=bravo", headers=headers)
    assert refresh.status_code == 403
    [listed] = service.keys.list()
    assert listed.last_used_at is not None


def test_revoked_scoped_key_is_refused(client, service):
    register(service)
    connect(service)
    key = service.keys.create("billing", None)
    service.keys.revoke("billing")
    response = client.get("/api/token?provider=acme", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401


def test_only_the_hash_of_a_scoped_key_is_stored(service, settings):
    key = service.keys.create("billing", None)
    service.repo.db.conn.execute("PRAGMA wal_checkpoint(FULL)")
    data = settings.database_path.read_bytes()
    assert key.encode() not in data


def test_repeated_failures_are_throttled_but_a_valid_key_never_is(client, service, api_headers):
    register(service)
    connect(service)
    bad = {"Authorization": "Bearer wrong-key"}
    statuses = [client.get("/api/token?provider=acme", headers=bad).status_code for _ in range(12)]
    assert statuses[:10] == [401] * 10
    assert statuses[-1] == 429
    throttled = client.get("/api/token?provider=acme", headers=bad)
    assert int(throttled.headers["Retry-After"]) >= 1
    assert throttled.json["error"] == "too_many_requests"
    assert client.get("/api/token?provider=acme", headers=api_headers).status_code == 200


def test_wrong_admin_passwords_are_throttled_but_credential_less_visits_are_not(client, service):
    register(service)
    bare = [client.get("/auth?provider=acme").status_code for _ in range(12)]
    assert bare == [401] * 12  # a browser's first visit, before the login box
    wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}
    statuses = [client.get("/auth?provider=acme", headers=wrong).status_code for _ in range(12)]
    assert statuses[0] == 401 and statuses[-1] == 429
    assert _pending_count(service) == 0


def test_state_cookie_is_secure_when_public_url_is_https(settings, service):
    register(service)
    https = dataclasses.replace(settings, public_url="https://tokens.example.com")
    app = create_app(https, service=service)
    basic = base64.b64encode(f"admin:{settings.admin_password}".encode()).decode()
    response = app.test_client().get(
        "/auth?provider=acme", headers={"Authorization": f"Basic {basic}"}
    )
    cookie = response.headers["Set-Cookie"]
    assert "tokenkeep_state=" in cookie
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_rotate_key_reencrypts_everything_and_keeps_tokens_readable(config_file: Path):
    runner = CliRunner()
    base = ["--config", str(config_file)]
    settings = load_settings(config_file, env={})
    service = build_service(settings, repo=open_repository(settings, auto_migrate=True))
    register(service)
    connect(service, access_token="survives-rotation")
    old_key = settings.encryption_key

    result = runner.invoke(main, [*base, "rotate-key"])
    assert result.exit_code == 0, result.output

    config = tomllib.loads(config_file.read_text())
    assert config["encryption_key"] != old_key
    assert "old_encryption_keys" not in config
    assert (config_file.stat().st_mode & 0o777) == 0o600
    rotated = load_settings(config_file, env={})
    fresh = build_service(rotated, repo=open_repository(rotated))
    assert fresh.get_token("acme").record.tokens.access_token == "survives-rotation"
    provider = fresh.repo.get_provider("acme")
    assert provider is not None and provider.client_secret == CLIENT_SECRET
    with pytest.raises(ConfigError, match="encryption_key"):
        open_repository(settings)  # the old key no longer opens the database


def test_a_half_done_rotation_still_opens_with_the_old_key_as_fallback(config_file: Path):
    settings = load_settings(config_file, env={})
    service = build_service(settings, repo=open_repository(settings, auto_migrate=True))
    register(service)
    connect(service)
    write_encryption_keys(config_file, new_encryption_key(), (settings.encryption_key,))
    crashed = load_settings(config_file, env={})  # step 1 done, database not yet rotated
    fresh = build_service(crashed, repo=open_repository(crashed))
    assert fresh.get_token("acme").record.tokens.access_token == "access-1"


def test_no_secret_reaches_logs_responses_or_database_bytes(
    client, service, admin_headers, api_headers, settings, clock, caplog
):
    caplog.set_level(logging.DEBUG)
    register(service)
    secrets_seen: list[str] = [CLIENT_SECRET, settings.api_secret_token, settings.admin_password]
    start = client.get("/auth?provider=acme", headers=admin_headers)
    query = parse_qs(urlsplit(start.headers["Location"]).query)
    state = query["state"][0]
    with responses.RequestsMock() as rsps:
        rsps.post(
            TOKEN_URL,
            json={"access_token": "AT-first-secret", "refresh_token": "RT-first-secret",
                  "expires_in": 3600},
        )  # fmt: skip
        page = client.get(f"/callback?code=CODE-secret-value&state={state}")
        verifier = parse_qs(rsps.calls[0].request.body)["code_verifier"][0]
    assert page.status_code == 200
    clock.advance(3500)
    with responses.RequestsMock() as rsps:
        rsps.post(
            TOKEN_URL,
            json={"access_token": "AT-second-secret", "refresh_token": "RT-second-secret",
                  "expires_in": 3600},
        )  # fmt: skip
        token = client.get("/api/token?provider=acme", headers=api_headers)
    assert token.json["access_token"] == "AT-second-secret"
    clock.advance(3500)
    with responses.RequestsMock() as rsps:
        rsps.post(TOKEN_URL, json={"error": "invalid_grant"}, status=400)
        failed = client.get("/api/token?provider=acme", headers=api_headers)
    assert failed.status_code == 409
    secrets_seen += [
        "AT-first-secret", "RT-first-secret", "CODE-secret-value", verifier, state,
        "AT-second-secret", "RT-second-secret",
    ]  # fmt: skip
    logged = caplog.text
    other_responses = [start, page, failed]
    service.repo.db.conn.execute("PRAGMA wal_checkpoint(FULL)")
    db_bytes = b"".join(
        p.read_bytes()
        for p in (settings.database_path, Path(f"{settings.database_path}-wal"))
        if p.exists()
    )
    for secret in secrets_seen:
        assert secret not in logged, secret
        assert secret.encode() not in db_bytes, secret
        for response in other_responses:
            headers = str(response.headers)
            if secret == state:
                continue  # the state is meant to travel in the provider redirect
            assert secret.encode() not in response.data, secret
            assert secret not in headers, secret
