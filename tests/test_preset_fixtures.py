"""Every preset against its provider's documented answers, stubbed at the HTTP transport.

Shapes follow ../shared/providers.md (values fake). Where the catalogue marks a
shape UNCONFIRMED, the fixture says so and uses the plainest RFC 6749 form;
Google's "Token has been expired or revoked." wording appears only for Google.
Each case runs the code exchange, refreshes with and without rotation, a dead
refresh token and throttling, and checks what the token API then answers.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import responses
from conftest import CLIENT_SECRET, T0, FakeClock
from flask.testing import FlaskClient

from tokenkeep.errors import PermanentUpstreamError, UpstreamUnavailable
from tokenkeep.models import NEEDS_REAUTH, ProviderChanges
from tokenkeep.presets import get_preset, load_presets
from tokenkeep.service import TokenService

FORM = "application/x-www-form-urlencoded"
NOW_MS = "<now in ms>"  # replaced by the clock's time in milliseconds, as a string
Answer = tuple[int, Any, dict[str, str]]  # status, JSON (dict), form (str) or empty (None)
CORE = {"access_token", "token_type", "expires_at", "expires_in", "scope", "provider"}


@dataclass(frozen=True)
class Case:
    """One preset's documented behaviour."""

    preset: str
    token_url: str
    code: Answer
    dead: Answer
    throttle: Answer
    refresh: Answer | None = None  # None: the provider issues no refresh token
    rotates: bool = False  # the documented refresh answer carries a new refresh token
    extras: dict[str, Any] = field(default_factory=dict)
    scope: str | None = None  # the scope the API reports after the exchange
    params: dict[str, str] = field(default_factory=dict)
    callback: dict[str, str] = field(default_factory=dict)
    lifetime: float | None = 3600


def ok(body: Any, **headers: str) -> Answer:
    return (200, body, headers)


GOOGLE_SCOPE = "https://www.googleapis.com/auth/drive.readonly"
SLACK_CODE = {
    "ok": True,
    "access_token": "xoxe.xoxb-1-MIIC",
    "token_type": "bot",
    "scope": "commands,incoming-webhook",
    "bot_user_id": "U0KRQLJ9H",
    "app_id": "A0KRD7HC3",
    "expires_in": 43200,
    "refresh_token": "xoxe-1-My0xLTI0",
    "team": {"name": "Slack Softball Team", "id": "T9TK3CUKW"},
    "enterprise": {"name": "slack-sports", "id": "E12345678"},
    "authed_user": {
        "id": "U1234",
        "scope": "chat:write",
        "access_token": "xoxe.xoxp-1234-user-secret",
        "expires_in": 43200,
        "refresh_token": "xoxe-1-user-refresh-secret",
        "token_type": "user",
    },
}
SALESFORCE_IDS = {
    "instance_url": "https://acme.my.salesforce.com",
    "id": "https://login.salesforce.com/id/00Dxx0000000123/005xx000000456",
}
RETRY_LATER = {"Retry-After": "30"}

CASES = [
    Case(
        preset="zoho",
        token_url="https://accounts.zoho.com/oauth/v2/token",
        code=ok(
            {
                "access_token": "1000.2deaf8d0c268e3c85daa2a013a843b10",
                "refresh_token": "1000.18e983526f0ca8575ea9c53b0cd5bb58",
                "api_domain": "https://www.zohoapis.com",
                "token_type": "Bearer",
                "expires_in": 3600,
            }
        ),
        refresh=ok(
            {
                "access_token": "1000.new6a5f7d0c268e3c85daa2a013a843",
                "expires_in": 3600,
                "api_domain": "https://www.zohoapis.com",
                "token_type": "Bearer",
            }
        ),
        dead=ok({"error": "invalid_code"}),  # Zoho answers a dead grant with HTTP 200
        throttle=ok(
            {
                "error": "Access Denied",
                "error_description": "You have made too many requests continuously. "
                "Please try again after some time.",
            }
        ),
        extras={
            "api_domain": "https://www.zohoapis.com",
            "accounts_server": "https://accounts.zoho.com",
        },
        callback={"accounts-server": "https://accounts.zoho.com", "location": "us"},
    ),
    Case(
        preset="pipedrive",
        token_url="https://oauth.pipedrive.com/oauth/token",
        code=ok(
            {
                "access_token": "v1u:AQIBAHj-access",
                "token_type": "Bearer",
                "refresh_token": "10001:20002:refresh-1",
                "scope": "deals:read deals:write",
                "expires_in": 3599,
                "api_domain": "https://acme.pipedrive.com",
            }
        ),
        refresh=ok(
            {
                "access_token": "v1u:AQIBAHj-new",
                "token_type": "Bearer",
                "refresh_token": "10001:20002:refresh-2",
                "scope": "deals:read deals:write",
                "expires_in": 3599,
                "api_domain": "https://acme.pipedrive.com",
            }
        ),
        rotates=True,
        # UNCONFIRMED shape: community evidence only says "Invalid grant".
        dead=(400, {"error": "invalid_grant", "error_description": "Invalid grant"}, {}),
        throttle=(429, None, RETRY_LATER),  # UNCONFIRMED: plain 429
        extras={"api_domain": "https://acme.pipedrive.com"},
        scope="deals:read deals:write",
        lifetime=3599,
    ),
    Case(
        preset="google",
        token_url="https://oauth2.googleapis.com/token",
        code=ok(
            {
                "access_token": "ya29.a0AfH6SM-access",
                "expires_in": 3599,
                "refresh_token": "1//0gLrefresh",
                "scope": GOOGLE_SCOPE,
                "token_type": "Bearer",
                "id_token": "eyJhbGciOiJSUzI1NiJ9.e30.sig",
            }
        ),
        refresh=ok(
            {
                "access_token": "ya29.a0AfH6SM-new",
                "expires_in": 3599,
                "scope": GOOGLE_SCOPE,
                "token_type": "Bearer",
            }
        ),
        dead=(
            400,
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
            {},
        ),
        throttle=(429, None, RETRY_LATER),  # UNCONFIRMED: token-endpoint limits undocumented
        extras={"id_token": "eyJhbGciOiJSUzI1NiJ9.e30.sig"},
        scope=GOOGLE_SCOPE,
        lifetime=3599,
    ),
    Case(
        preset="microsoft",
        params={"tenant": "contoso.onmicrosoft.com"},
        token_url="https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
        code=ok(
            {
                "token_type": "Bearer",
                "scope": "https://graph.microsoft.com/mail.read",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": "eyJ0eXAiOiJKV1Q-access",
                "refresh_token": "AwABAAAA-refresh-1",
                "id_token": "eyJ0eXAiOiJKV1Q-id",
            }
        ),
        refresh=ok(
            {
                "token_type": "Bearer",
                "scope": "https://graph.microsoft.com/mail.read",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": "eyJ0eXAiOiJKV1Q-new",
                "refresh_token": "AwABAAAA-refresh-2",
            }
        ),
        rotates=True,
        dead=(
            400,
            {
                "error": "invalid_grant",
                "error_description": "AADSTS700082: The refresh token has expired due to "
                "inactivity.\r\nTrace ID: 0000\r\nCorrelation ID: 1111\r\nTimestamp: 2027-01-15",
                "error_codes": [700082],
                "timestamp": "2027-01-15 08:00:00Z",
                "trace_id": "0000",
                "correlation_id": "1111",
            },
            {},
        ),
        # Entra's throttling wears invalid_grant: AADSTS50196 must not force re-authorization.
        throttle=(
            400,
            {
                "error": "invalid_grant",
                "error_description": "AADSTS50196: The server terminated an operation because "
                "it encountered a loop while processing a request.",
                "error_codes": [50196],
            },
            {},
        ),
        extras={"id_token": "eyJ0eXAiOiJKV1Q-id", "ext_expires_in": 3599},
        scope="https://graph.microsoft.com/mail.read",
        lifetime=3599,
    ),
    Case(
        preset="salesforce",
        token_url="https://login.salesforce.com/services/oauth2/token",
        code=ok(
            {
                "access_token": "00Dxx0000000123!AR8AQJ-access",
                "refresh_token": "5Aep861-refresh",
                "signature": "abc123XYZ=",
                "scope": "refresh_token api id",
                **SALESFORCE_IDS,
                "token_type": "Bearer",
                "issued_at": NOW_MS,
            }
        ),
        refresh=ok(
            {
                "access_token": "00Dxx0000000123!AR8AQJ-new",
                "signature": "def456XYZ=",
                "scope": "refresh_token api id",
                **SALESFORCE_IDS,
                "token_type": "Bearer",
                "issued_at": NOW_MS,
            }
        ),
        dead=(
            400,
            {"error": "invalid_grant", "error_description": "expired access/refresh token"},
            {},
        ),
        # Summer '24: a concurrent refresh with the same token is refused this way; retryable.
        throttle=(
            400,
            {"error": "invalid_grant", "error_description": "expired authorization code"},
            {},
        ),
        extras={**SALESFORCE_IDS, "signature": "abc123XYZ=", "issued_at": str(int(T0 - 2) * 1000)},
        scope="refresh_token api id",
        lifetime=3600 - 2,  # the preset's default lifetime from issued_at, 2 s before receipt
    ),
    Case(
        preset="hubspot",
        token_url="https://api.hubapi.com/oauth/2026-09/token",
        code=ok(
            {
                "token_type": "bearer",
                "refresh_token": "na1-aaaa-bbbb-cccc",
                "access_token": "CJSP5qf1-access",
                "expires_in": 1800,
                "hub_id": 1234567,
                "scopes": ["oauth", "crm.objects.contacts.read"],
                "token_use": "access_token",
            }
        ),
        refresh=ok(
            {
                "token_type": "bearer",
                "refresh_token": "na1-aaaa-bbbb-cccc",
                "access_token": "CJSP5qf1-new",
                "expires_in": 1800,
                "hub_id": 1234567,
                "scopes": ["oauth", "crm.objects.contacts.read"],
                "token_use": "access_token",
            }
        ),
        dead=(
            400,
            {
                "error": "invalid_grant",
                "error_description": "refresh token is invalid, expired or revoked",
                "status": "BAD_REFRESH_TOKEN",
                "message": "refresh token is invalid, expired or revoked",
            },
            {},
        ),
        throttle=(429, None, RETRY_LATER),  # UNCONFIRMED: token-endpoint limit undocumented
        extras={"hub_id": 1234567},
        scope="oauth crm.objects.contacts.read",
        lifetime=1800,
    ),
    Case(
        preset="xero",
        token_url="https://identity.xero.com/connect/token",
        code=ok(
            {
                "id_token": "eyJhbGciOi-id",
                "access_token": "eyJhbGciOi-access",
                "expires_in": 1800,
                "token_type": "Bearer",
                "refresh_token": "fd3b-refresh-1",
                "scope": "openid profile email accounting.transactions offline_access",
            }
        ),
        refresh=ok(
            {
                "access_token": "eyJhbGciOi-new",
                "expires_in": 1800,
                "token_type": "Bearer",
                "refresh_token": "fd3b-refresh-2",
                "scope": "openid profile email accounting.transactions offline_access",
            }
        ),
        rotates=True,
        dead=(400, {"error": "invalid_grant"}, {}),  # Xero: bare, no description
        throttle=(429, None, RETRY_LATER),  # UNCONFIRMED
        extras={"id_token": "eyJhbGciOi-id"},
        scope="openid profile email accounting.transactions offline_access",
        lifetime=1800,
    ),
    Case(
        preset="quickbooks",
        token_url="https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
        code=ok(
            {
                "token_type": "bearer",
                "expires_in": 3600,
                "refresh_token": "AB11-refresh-1",
                "x_refresh_token_expires_in": 8726400,
                "access_token": "eyJlbmMiOi-access",
            }
        ),
        refresh=ok(
            {
                "token_type": "bearer",
                "expires_in": 3600,
                "refresh_token": "AB11-refresh-2",
                "x_refresh_token_expires_in": 8639999,
                "access_token": "eyJlbmMiOi-new",
            }
        ),
        rotates=True,
        dead=(400, {"error": "invalid_grant"}, {"intuit_tid": "1-abc-def"}),
        throttle=(429, None, RETRY_LATER),  # UNCONFIRMED
        extras={"x_refresh_token_expires_in": 8726400, "realm_id": "9130350000000000"},
        callback={"realmId": "9130350000000000"},
    ),
    Case(
        preset="slack",
        token_url="https://slack.com/api/oauth.v2.access",
        code=ok(SLACK_CODE),
        refresh=ok(
            {
                "ok": True,
                "access_token": "xoxe.xoxb-1-NEW",
                "token_type": "bot",
                "expires_in": 43200,
                "refresh_token": "xoxe-1-My0xLTI1",
                "team": {"name": "Slack Softball Team", "id": "T9TK3CUKW"},
            }
        ),
        rotates=True,
        dead=ok({"ok": False, "error": "invalid_refresh_token"}),  # HTTP 200, ok: false
        throttle=(429, {"ok": False, "error": "ratelimited"}, RETRY_LATER),
        extras={
            "team": SLACK_CODE["team"],
            "enterprise": SLACK_CODE["enterprise"],
            "bot_user_id": "U0KRQLJ9H",
            "app_id": "A0KRD7HC3",
        },
        scope="commands incoming-webhook",
        lifetime=43200,
    ),
    Case(
        preset="github-app",
        token_url="https://github.com/login/oauth/access_token",
        code=ok(
            {
                "access_token": "ghu_16C7e42F292c6912E7710c838347Ae178B4a",
                "expires_in": 28800,
                "refresh_token": "ghr_1B4a2e77838347a7E420ce178F2E7c6912E1",
                "refresh_token_expires_in": 15897600,
                "scope": "",
                "token_type": "bearer",
            }
        ),
        refresh=ok(
            {
                "access_token": "ghu_new2e42F292c6912E7710c838347Ae178B4a",
                "expires_in": 28800,
                "refresh_token": "ghr_new2a2e77838347a7E420ce178F2E7c6912E",
                "refresh_token_expires_in": 15897600,
                "scope": "",
                "token_type": "bearer",
            }
        ),
        rotates=True,
        dead=ok(  # GitHub answers errors with HTTP 200
            {
                "error": "bad_refresh_token",
                "error_description": "The refresh token passed is incorrect or expired.",
                "error_uri": "https://docs.github.com/apps/troubleshooting",
            }
        ),
        throttle=(429, None, RETRY_LATER),  # UNCONFIRMED
        extras={"refresh_token_expires_in": 15897600},
        scope="",
        lifetime=28800,
    ),
    Case(
        preset="dropbox",
        token_url="https://api.dropboxapi.com/oauth2/token",
        code=ok(
            {
                "access_token": "sl.AbX9y6Fe-access",
                "token_type": "bearer",
                "expires_in": 14400,
                "refresh_token": "nBiM85-refresh",
                "scope": "account_info.read files.content.read",
                "account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc",
                "uid": "12345",
            }
        ),
        refresh=ok(
            {"access_token": "sl.AbX9y6Fe-new", "token_type": "bearer", "expires_in": 14400}
        ),
        # The SDK keys on error == invalid_grant; the description is UNCONFIRMED.
        dead=(400, {"error": "invalid_grant", "error_description": "refresh token is invalid"}, {}),
        throttle=(429, None, RETRY_LATER),  # UNCONFIRMED
        extras={"account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc", "uid": "12345"},
        scope="account_info.read files.content.read",
        lifetime=14400,
    ),
    Case(
        preset="atlassian",
        token_url="https://auth.atlassian.com/oauth/token",
        code=ok(
            {
                "access_token": "eyJraWQi-access",
                "expires_in": 3600,
                "token_type": "Bearer",
                "refresh_token": "eyJraWQi-refresh-1",
                "scope": "read:jira-work offline_access",
            }
        ),
        refresh=ok(
            {
                "access_token": "eyJraWQi-new",
                "expires_in": 3600,
                "token_type": "Bearer",
                "refresh_token": "eyJraWQi-refresh-2",
                "scope": "read:jira-work offline_access",
            }
        ),
        rotates=True,
        # Atlassian answers a dead refresh token with 403, not 400.
        dead=(
            403,
            {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."},
            {},
        ),
        throttle=(429, None, RETRY_LATER),  # UNCONFIRMED
        scope="read:jira-work offline_access",
    ),
    Case(
        preset="spotify",
        token_url="https://accounts.spotify.com/api/token",
        code=ok(
            {
                "access_token": "BQDxyz-access",
                "token_type": "Bearer",
                "scope": "user-read-email",
                "expires_in": 3600,
                "refresh_token": "AQCabc-refresh",
            }
        ),
        # Spotify may omit refresh_token from a refresh answer: the old one stays.
        refresh=ok(
            {
                "access_token": "BQDxyz-new",
                "token_type": "Bearer",
                "scope": "user-read-email",
                "expires_in": 3600,
            }
        ),
        # invalid_grant with HTTP 400 (community); the description is UNCONFIRMED.
        dead=(400, {"error": "invalid_grant", "error_description": "Refresh token revoked"}, {}),
        throttle=(429, None, RETRY_LATER),
        scope="user-read-email",
    ),
    Case(
        preset="shopify",
        params={"shop": "acme"},
        token_url="https://acme.myshopify.com/admin/oauth/access_token",
        code=ok(
            {
                "access_token": "shpca_access",
                "expires_in": 3600,
                "refresh_token": "shprt_refresh-1",
                "scope": "write_orders,read_customers",
            }
        ),
        refresh=ok(
            {
                "access_token": "shpca_new",
                "expires_in": 3600,
                "refresh_token": "shprt_refresh-2",
                "scope": "write_orders,read_customers",
            }
        ),
        rotates=True,
        dead=(400, {"error": "invalid_grant"}, {}),  # UNCONFIRMED: refresh error shape
        throttle=(429, None, RETRY_LATER),  # UNCONFIRMED
        extras={"shop": "acme.myshopify.com"},
        callback={"shop": "acme.myshopify.com", "hmac": "x", "host": "YWNtZQ", "timestamp": "1"},
        scope="write_orders read_customers",
    ),
]
REFRESHING = [c for c in CASES if c.refresh is not None]


def ids(case: Case) -> str:
    return case.preset


# -- helpers ---------------------------------------------------------------------


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:  # unmatched requests fail; nothing leaves the host
        yield mock


def materialise(body: Any, clock: FakeClock) -> Any:
    body = copy.deepcopy(body)
    if isinstance(body, dict):
        for key, value in body.items():
            if value == NOW_MS:
                body[key] = str(int((clock() - 2) * 1000))  # issued 2 s before receipt
    return body


def stub(rsps: responses.RequestsMock, url: str, answer: Answer, clock: FakeClock) -> None:
    status, body, headers = answer
    if body is None:
        rsps.post(url, status=status, body="", headers=headers)
    elif isinstance(body, str):
        rsps.post(url, status=status, body=body, content_type=FORM, headers=headers)
    else:
        rsps.post(url, status=status, json=materialise(body, clock), headers=headers)


def register(service: TokenService, case: Case) -> None:
    changes = get_preset(case.preset).resolve(params=case.params, scopes=("example.scope",))
    credentials = ProviderChanges(client_id="client-id", client_secret=CLIENT_SECRET)
    service.register_provider(case.preset, changes.overlay(credentials))


def authorize(service: TokenService, rsps: responses.RequestsMock, case: Case, clock: FakeClock):
    register(service, case)
    start = service.start_authorization(case.preset)
    state = parse_qs(urlsplit(start.url).query)["state"][0]
    pending = service.take_state(state, start.browser_binding)
    stub(rsps, case.token_url, case.code, clock)
    service.complete_authorization(pending, "code-123", {"code": "code-123", **case.callback})
    record = service.repo.get_token(case.preset)
    assert record is not None
    return record


def sent(rsps: responses.RequestsMock, index: int = -1) -> dict[str, str]:
    return dict(parse_qsl(rsps.calls[index].request.body))  # type: ignore[arg-type]


def api(client: FlaskClient, headers: dict[str, str], case: Case):
    return client.get(f"/api/token?provider={case.preset}", headers=headers)


def refresh_answer(case: Case, **changes: Any) -> Answer:
    assert case.refresh is not None
    status, body, headers = case.refresh
    body = {k: v for k, v in body.items() if k != "refresh_token"}
    body.update({k: v for k, v in changes.items() if v is not None})
    return (status, body, headers)


def near_expiry(service: TokenService, case: Case, clock: FakeClock) -> None:
    """Move the clock inside the refresh margin; the access token is still valid."""
    record = service.repo.get_token(case.preset)
    assert record is not None and record.tokens.expires_at is not None
    clock.now = record.tokens.expires_at - 60


# -- the code exchange -------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_code_exchange_at_the_presets_endpoint_is_served_with_the_providers_extras(
    service, rsps, clock, client, api_headers, case: Case
):
    record = authorize(service, rsps, case, clock)

    request = rsps.calls[0].request
    assert request.url == case.token_url
    form = sent(rsps, 0)
    assert form["grant_type"] == "authorization_code" and form["code"] == "code-123"
    preset = get_preset(case.preset)
    if preset.auth_method == "client_secret_basic":
        assert request.headers["Authorization"].startswith("Basic ")
        assert "client_secret" not in form
    else:
        assert form["client_secret"] == CLIENT_SECRET
    assert ("code_verifier" in form) is preset.pkce
    for key, value in preset.token_params.items():
        assert form[key] == value
    response = api(client, api_headers, case)
    assert response.status_code == 200
    body = response.get_json()
    assert body["access_token"] == materialise(case.code[1], clock)["access_token"]
    assert {k: v for k, v in body.items() if k not in CORE} == case.extras
    assert body["scope"] == case.scope
    if case.lifetime is None:
        assert body["expires_at"] is None
    else:
        assert record.tokens.expires_at == pytest.approx(clock() + case.lifetime)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_exchange_sends_the_presets_authorize_parameters_and_needs_no_extra_flags(
    service, rsps, clock, case: Case
):
    register(service, case)
    url = service.start_authorization(case.preset).url
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    preset = get_preset(case.preset)

    assert url.startswith("https://") and "{" not in url and "%7B" not in url
    for key, value in preset.authorize_params.items():
        assert query[key] == value
    for scope in preset.scopes:
        assert scope in query["scope"].split(preset.scope_separator)
    assert not set(case.params) & set(query)  # placeholder values fill URLs, never params


# -- refreshing ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", REFRESHING, ids=ids)
def test_refresh_in_the_documented_shape_serves_the_new_token(
    service, rsps, clock, client, api_headers, case: Case
):
    before = authorize(service, rsps, case, clock)
    assert case.refresh is not None
    near_expiry(service, case, clock)
    stub(rsps, case.token_url, case.refresh, clock)

    response = api(client, api_headers, case)

    assert response.status_code == 200
    assert response.get_json()["access_token"] == case.refresh[1]["access_token"]
    assert sent(rsps)["refresh_token"] == before.tokens.refresh_token
    after = service.repo.get_token(case.preset)
    assert after is not None
    if case.rotates:
        assert after.tokens.refresh_token == case.refresh[1]["refresh_token"]
        assert after.tokens.refresh_token != before.tokens.refresh_token
    else:
        assert after.tokens.refresh_token == before.tokens.refresh_token


@pytest.mark.parametrize("case", REFRESHING, ids=ids)
def test_refresh_with_a_new_refresh_token_replaces_the_old_one_for_the_next_refresh(
    service, rsps, clock, client, api_headers, case: Case
):
    authorize(service, rsps, case, clock)
    near_expiry(service, case, clock)
    stub(rsps, case.token_url, refresh_answer(case, refresh_token="rotated-rt-1"), clock)
    assert api(client, api_headers, case).status_code == 200
    near_expiry(service, case, clock)
    stub(rsps, case.token_url, refresh_answer(case, refresh_token="rotated-rt-2"), clock)

    assert api(client, api_headers, case).status_code == 200

    assert sent(rsps)["refresh_token"] == "rotated-rt-1"
    record = service.repo.get_token(case.preset)
    assert record is not None and record.tokens.refresh_token == "rotated-rt-2"


@pytest.mark.parametrize("case", REFRESHING, ids=ids)
def test_refresh_without_a_refresh_token_keeps_the_old_one_and_the_extras(
    service, rsps, clock, client, api_headers, case: Case
):
    before = authorize(service, rsps, case, clock)
    near_expiry(service, case, clock)
    stub(rsps, case.token_url, refresh_answer(case), clock)

    response = api(client, api_headers, case)

    assert response.status_code == 200
    record = service.repo.get_token(case.preset)
    assert record is not None and record.tokens.refresh_token == before.tokens.refresh_token
    body = response.get_json()
    for key in case.extras:
        assert key in body


@pytest.mark.parametrize("case", REFRESHING, ids=ids)
def test_dead_refresh_token_in_the_providers_shape_requires_reauthorization(
    service, rsps, clock, client, api_headers, case: Case
):
    before = authorize(service, rsps, case, clock)
    near_expiry(service, case, clock)
    stub(rsps, case.token_url, case.dead, clock)

    response = api(client, api_headers, case)

    assert response.status_code == 409, response.get_json()
    body = response.get_json()
    assert body["error"] == "reauthorization_required"
    assert body["reauthorize_url"].endswith(f"/auth?provider={case.preset}")
    assert CLIENT_SECRET not in response.get_data(as_text=True)
    record = service.repo.get_token(case.preset)
    assert record is not None and record.status == NEEDS_REAUTH
    assert record.tokens.refresh_token == before.tokens.refresh_token
    calls = len(rsps.calls)
    assert api(client, api_headers, case).status_code == 409
    assert len(rsps.calls) == calls  # no more attempts with a dead grant


@pytest.mark.parametrize("case", REFRESHING, ids=ids)
def test_throttling_keeps_the_tokens_and_serves_the_valid_one_with_a_warning(
    service, rsps, clock, client, api_headers, case: Case
):
    before = authorize(service, rsps, case, clock)
    near_expiry(service, case, clock)
    stub(rsps, case.token_url, case.throttle, clock)

    response = api(client, api_headers, case)

    assert response.status_code == 200
    body = response.get_json()
    assert body["access_token"] == before.tokens.access_token
    assert "warning" in body and response.headers["Warning"].startswith("199 tokenkeep")
    record = service.repo.get_token(case.preset)
    assert record is not None and record.status == "connected"
    assert record.tokens.refresh_token == before.tokens.refresh_token
    assert record.next_attempt_at is not None and record.next_attempt_at > clock()


@pytest.mark.parametrize("case", REFRESHING, ids=ids)
def test_throttling_once_the_token_expired_answers_503_and_keeps_the_tokens(
    service, rsps, clock, client, api_headers, case: Case
):
    before = authorize(service, rsps, case, clock)
    assert before.tokens.expires_at is not None
    clock.now = before.tokens.expires_at + 10
    stub(rsps, case.token_url, case.throttle, clock)

    response = api(client, api_headers, case)

    assert response.status_code == 503
    assert response.get_json()["error"] == "upstream_unavailable"
    record = service.repo.get_token(case.preset)
    assert record is not None and record.status == "connected"
    assert record.tokens.refresh_token == before.tokens.refresh_token


def test_every_preset_has_a_fixture_case() -> None:
    covered = {case.preset for case in CASES} | {"github"}  # the OAuth App: tests below
    assert covered == set(load_presets())


# -- GitHub OAuth App: no refresh token, form-encoded answers ------------------------

GITHUB = Case(
    preset="github",
    token_url="https://github.com/login/oauth/access_token",
    # When `Accept: application/json` is not honoured, GitHub answers form-encoded.
    code=ok(
        "access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a&scope=repo%2Cgist&token_type=bearer"
    ),
    dead=ok(
        "error=bad_verification_code&error_description=The+code+passed+is+incorrect+or+expired."
    ),
    throttle=(429, None, RETRY_LATER),
    scope="repo gist",
    lifetime=None,
)


def test_github_form_encoded_answer_with_comma_scopes_is_a_token_that_never_expires(
    service, rsps, clock, client, api_headers
):
    record = authorize(service, rsps, GITHUB, clock)
    assert record.tokens.expires_at is None and record.tokens.refresh_token is None
    clock.advance(86400 * 365)

    body = api(client, api_headers, GITHUB).get_json()

    assert body["access_token"] == "gho_16C7e42F292c6912E7710c838347Ae178B4a"
    assert body["scope"] == "repo gist"
    assert body["expires_at"] is None and body["token_type"] == "Bearer"
    assert len(rsps.calls) == 1  # nothing to refresh


def test_github_bad_verification_code_with_http_200_stores_nothing(service, rsps, clock):
    register(service, GITHUB)
    start = service.start_authorization("github")
    state = parse_qs(urlsplit(start.url).query)["state"][0]
    pending = service.take_state(state, start.browser_binding)
    stub(rsps, GITHUB.token_url, GITHUB.dead, clock)

    with pytest.raises(PermanentUpstreamError, match="bad_verification_code") as raised:
        service.complete_authorization(pending, "code-123", {})

    assert raised.value.status == 502
    assert service.repo.get_token("github") is None


def test_github_app_refresh_answered_form_encoded_rotates_the_refresh_token(
    service, rsps, clock, client, api_headers
):
    case = next(c for c in CASES if c.preset == "github-app")
    authorize(service, rsps, case, clock)
    near_expiry(service, case, clock)
    form_answer = (
        "access_token=ghu_form&expires_in=28800&refresh_token=ghr_form"
        "&refresh_token_expires_in=15897600&scope=&token_type=bearer"
    )
    stub(rsps, case.token_url, ok(form_answer), clock)

    body = api(client, api_headers, case).get_json()

    assert body["access_token"] == "ghu_form"
    record = service.repo.get_token("github-app")
    assert record is not None and record.tokens.refresh_token == "ghr_form"
    assert record.tokens.expires_at == pytest.approx(clock() + 28800)


def test_slack_user_tokens_under_authed_user_never_reach_api_callers(
    service, rsps, clock, client, api_headers
):
    case = next(c for c in CASES if c.preset == "slack")
    authorize(service, rsps, case, clock)

    text = api(client, api_headers, case).get_data(as_text=True)

    assert "user-secret" not in text and "user-refresh-secret" not in text


def test_basic_client_auth_presets_send_the_credentials_only_in_the_header(service, rsps, clock):
    for case in CASES:
        if get_preset(case.preset).auth_method != "client_secret_basic":
            continue
        authorize(service, rsps, case, clock)
        header = rsps.calls[-1].request.headers["Authorization"]
        assert base64.b64decode(header[6:]).decode() == f"client-id:{CLIENT_SECRET}"


def test_github_throttled_code_exchange_is_503_and_stores_nothing(service, rsps, clock):
    register(service, GITHUB)
    start = service.start_authorization("github")
    state = parse_qs(urlsplit(start.url).query)["state"][0]
    pending = service.take_state(state, start.browser_binding)
    stub(rsps, GITHUB.token_url, GITHUB.throttle, clock)

    with pytest.raises(UpstreamUnavailable, match="HTTP 429"):
        service.complete_authorization(pending, "code-123", {})

    assert service.repo.get_token("github") is None
    assert len(rsps.calls) == 1  # a code is single use: never retried
