"""Web tests: the HTTP API, the authorization pages and their security headers."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from conftest import (
    AUTHORIZE_URL,
    CLIENT_SECRET,
    PUBLIC_URL,
    TOKEN_URL,
    FakeClock,
    connect,
    register,
    start_auth,
)
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tokenkeep.repository import Repository
from tokenkeep.service import TokenService, browser_binding

ERROR_KEYS = {"error", "error_description"}
T0_PLUS_HOUR = "2027-01-15T09:00:00Z"  # conftest.T0 + 3600 s


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """Provider HTTP stubbed at the transport; unmatched requests fail the test."""
    with responses.RequestsMock() as mock:
        yield mock


def assert_clean(response: TestResponse) -> None:
    """No traceback, raw exception text or client secret ever reaches a response."""
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    assert CLIENT_SECRET not in text


def assert_error(
    response: TestResponse, status: int, code: str, extra: tuple[str, ...] = ()
) -> dict[str, object]:
    """The one documented JSON error shape, with exactly these keys."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == ERROR_KEYS | set(extra)
    assert body["error"] == code
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert_clean(response)
    return body  # type: ignore[no-any-return]


def assert_html_security_headers(response: TestResponse) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp
    assert response.headers.get("Referrer-Policy") == "no-referrer"
    assert response.headers.get("X-Content-Type-Options") == "nosniff"


def form(request_body: object) -> dict[str, str]:
    """Decode a form-encoded request body captured by responses."""
    if isinstance(request_body, bytes):
        request_body = request_body.decode()
    assert isinstance(request_body, str)
    return {k: v[0] for k, v in parse_qs(request_body, keep_blank_values=True).items()}


def token_body(access: str = "access-2", **fields: object) -> dict[str, object]:
    return {"access_token": access, "token_type": "bearer", "expires_in": 3600, **fields}


def pending_count(repo: Repository) -> int:
    row = repo.db.conn.execute("SELECT COUNT(*) FROM pending_authorizations").fetchone()
    return int(row[0])


# -- GET /api/token ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/token", "/api/token.php"])
def test_token_api_returns_the_stored_token_with_core_fields_and_extras(
    client: FlaskClient, service: TokenService, api_headers: dict[str, str], path: str
) -> None:
    register(service)
    connect(
        service,
        extras={
            "api_domain": "https://www.zohoapis.eu",
            "instance_url": "https://acme.my.salesforce.com",
            "access_token": "forged",
            "provider": "forged",
            "expires_in": 1,
        },
    )

    response = client.get(f"{path}?provider=acme", headers=api_headers)

    assert response.status_code == 200
    assert response.get_json() == {
        "access_token": "access-1",
        "token_type": "Bearer",
        "expires_at": T0_PLUS_HOUR,
        "expires_in": 3600,
        "scope": "read write",
        "provider": "acme",
        "api_domain": "https://www.zohoapis.eu",
        "instance_url": "https://acme.my.salesforce.com",
    }
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def test_token_api_reports_remaining_lifetime_as_the_clock_moves(
    client: FlaskClient, connected: TokenService, api_headers: dict[str, str], clock: FakeClock
) -> None:
    clock.advance(1000)

    body = client.get("/api/token?provider=acme", headers=api_headers).get_json()

    assert body["expires_in"] == 2600
    assert body["expires_at"] == T0_PLUS_HOUR


def test_token_api_refreshes_first_when_less_than_the_margin_is_left(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TOKEN_URL, json=token_body(api_domain="https://api.example"))
    clock.advance(3600 - 299)

    response = client.get("/api/token?provider=acme", headers=api_headers)

    assert response.status_code == 200
    body = response.get_json()
    assert body["access_token"] == "access-2"
    assert body["expires_in"] == 3600
    assert body["api_domain"] == "https://api.example"
    assert len(rsps.calls) == 1
    sent = form(rsps.calls[0].request.body)
    assert sent["grant_type"] == "refresh_token"
    assert sent["refresh_token"] == "refresh-1"
    stored = connected.repo.get_token("acme")
    assert stored is not None
    assert stored.tokens.access_token == "access-2"
    assert stored.tokens.refresh_token == "refresh-1"  # kept: the answer had none


def test_token_api_serves_without_refresh_while_more_than_the_margin_is_left(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    clock.advance(3600 - 301)

    body = client.get("/api/token?provider=acme", headers=api_headers).get_json()

    assert body["access_token"] == "access-1"
    assert len(rsps.calls) == 0


def test_token_api_refreshes_when_less_than_min_valid_is_left(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    clock.advance(2600)  # 1000 s left: outside the 300 s margin
    untouched = client.get("/api/token?provider=acme&min_valid=900", headers=api_headers)
    assert untouched.get_json()["access_token"] == "access-1"
    assert len(rsps.calls) == 0

    rsps.post(TOKEN_URL, json=token_body())
    refreshed = client.get("/api/token?provider=acme&min_valid=1200", headers=api_headers)

    assert refreshed.status_code == 200
    assert refreshed.get_json()["access_token"] == "access-2"
    assert len(rsps.calls) == 1


@pytest.mark.parametrize(
    "query",
    [
        "min_valid=-1",
        "min_valid=abc",
        "min_valid=1.5",
        "min_valid=",
        "min_valid=99999999999",
        "min_valid=%C2%B2",  # a superscript two: a digit to str.isdigit, not a number
        "min_valid=10&min_valid=20",
    ],
)
def test_token_api_rejects_min_valid_that_is_not_one_non_negative_integer(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    rsps: responses.RequestsMock,
    query: str,
) -> None:
    response = client.get(f"/api/token?provider=acme&{query}", headers=api_headers)

    assert_error(response, 400, "invalid_request")
    assert len(rsps.calls) == 0


def test_token_api_accepts_min_valid_zero(
    client: FlaskClient, connected: TokenService, api_headers: dict[str, str]
) -> None:
    response = client.get("/api/token?provider=acme&min_valid=0", headers=api_headers)

    assert response.status_code == 200
    assert response.get_json()["access_token"] == "access-1"


def test_token_without_expiry_is_served_with_null_expiry_and_never_refreshed(
    client: FlaskClient,
    service: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    connect(service, expires_in=None)
    clock.advance(86400 * 30)

    response = client.get("/api/token?provider=acme&min_valid=600", headers=api_headers)

    assert response.status_code == 200
    body = response.get_json()
    assert body["access_token"] == "access-1"
    assert body["expires_at"] is None
    assert body["expires_in"] is None
    assert len(rsps.calls) == 0


# -- API errors -------------------------------------------------------------------


def test_token_api_without_provider_is_invalid_request(
    client: FlaskClient, api_headers: dict[str, str]
) -> None:
    assert_error(client.get("/api/token", headers=api_headers), 400, "invalid_request")


def test_token_api_with_provider_given_twice_is_invalid_request(
    client: FlaskClient, connected: TokenService, api_headers: dict[str, str]
) -> None:
    response = client.get("/api/token?provider=acme&provider=acme", headers=api_headers)

    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "alias",
    ["Acme", "acme%21", "a" * 65, "%20acme", "acme%20", "%00", "-acme", "_acme", "acme%0A", ""],
    ids=[
        "upper",
        "bang",
        "too-long",
        "leading-space",
        "trailing-space",
        "nul",
        "dash",
        "us",
        "lf",
        "empty",
    ],
)
def test_token_api_rejects_invalid_alias_characters(
    client: FlaskClient, connected: TokenService, api_headers: dict[str, str], alias: str
) -> None:
    response = client.get(f"/api/token?provider={alias}", headers=api_headers)

    assert_error(response, 400, "invalid_request")


def test_token_api_accepts_a_64_character_alias(
    client: FlaskClient, service: TokenService, api_headers: dict[str, str]
) -> None:
    alias = "a" + "b_-9" * 15 + "zzz"
    assert len(alias) == 64
    register(service, alias)
    connect(service, alias)

    response = client.get(f"/api/token?provider={alias}", headers=api_headers)

    assert response.status_code == 200
    assert response.get_json()["provider"] == alias


def test_token_api_for_an_unknown_provider_is_404(
    client: FlaskClient, connected: TokenService, api_headers: dict[str, str]
) -> None:
    assert_error(
        client.get("/api/token?provider=nope", headers=api_headers), 404, "unknown_provider"
    )


def test_token_api_for_a_registered_but_never_authorized_provider_is_409(
    client: FlaskClient, service: TokenService, api_headers: dict[str, str]
) -> None:
    register(service)

    response = client.get("/api/token?provider=acme", headers=api_headers)

    # not_connected also says where to authorize, like reauthorization_required does.
    body = assert_error(response, 409, "not_connected", extra=("authorize_url",))
    assert body["authorize_url"] == f"{PUBLIC_URL}/auth?provider=acme"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-key",
        "KEY",
        "Token KEY",
        "Bearer KEY extra",
        "Bearer KEYKEY",
        "Bearer \xe4KEY",
        "BASIC",
    ],
    ids=[
        "missing",
        "empty",
        "scheme-only",
        "scheme-and-space",
        "wrong-key",
        "no-scheme",
        "other-scheme",
        "trailing-junk",
        "key-twice",
        "non-ascii",
        "basic-instead",
    ],
)
def test_token_api_without_a_valid_bearer_key_is_401(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    admin_headers: dict[str, str],
    authorization: str | None,
) -> None:
    key = api_headers["Authorization"].removeprefix("Bearer ")
    headers: dict[str, str] = {}
    if authorization == "BASIC":
        headers = admin_headers  # right password, wrong scheme
    elif authorization is not None:
        headers = {"Authorization": authorization.replace("KEY", key)}

    response = client.get("/api/token?provider=acme", headers=headers)

    body = assert_error(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "access-1" not in str(body)


def test_token_api_checks_the_key_before_saying_whether_a_provider_exists(
    client: FlaskClient,
) -> None:
    response = client.get("/api/token?provider=nope", headers={"Authorization": "Bearer x"})

    assert_error(response, 401, "invalid_token")


def test_upstream_error_on_a_due_refresh_of_an_expired_token_is_502_and_keeps_tokens(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TOKEN_URL, status=400, json={"error": "invalid_scope"})
    clock.advance(3700)

    response = client.get("/api/token?provider=acme", headers=api_headers)

    assert_error(response, 502, "upstream_error")
    stored = connected.repo.get_token("acme")
    assert stored is not None
    assert stored.tokens.access_token == "access-1"
    assert stored.tokens.refresh_token == "refresh-1"


@pytest.mark.parametrize(
    "stub",
    [
        {"body": "<html>Bad gateway</html>", "status": 200, "content_type": "text/html"},
        {"json": {"token_type": "bearer", "expires_in": 3600}, "status": 200},
        {"json": {"ok": False, "error": "invalid_auth"}, "status": 200},
    ],
    ids=["non-json", "no-access-token", "ok-false"],
)
def test_unusable_token_endpoint_answer_on_refresh_is_502_and_keeps_tokens(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
    stub: dict[str, object],
) -> None:
    rsps.post(TOKEN_URL, **stub)  # type: ignore[arg-type]
    clock.advance(3700)

    response = client.get("/api/token?provider=acme", headers=api_headers)

    assert_error(response, 502, "upstream_error")
    stored = connected.repo.get_token("acme")
    assert stored is not None
    assert stored.tokens.access_token == "access-1"


def test_provider_503_on_refresh_of_an_expired_token_is_503(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TOKEN_URL, status=503, body="down for maintenance")
    clock.advance(3700)

    response = client.get("/api/token?provider=acme", headers=api_headers)

    assert_error(response, 503, "upstream_unavailable")
    stored = connected.repo.get_token("acme")
    assert stored is not None
    assert stored.tokens.access_token == "access-1"


def test_invalid_grant_requires_reauthorization_and_stops_calling_the_provider(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    clock.advance(3700)

    first = client.get("/api/token?provider=acme", headers=api_headers)
    clock.advance(3600)
    second = client.get("/api/token?provider=acme", headers=api_headers)

    for response in (first, second):
        body = assert_error(response, 409, "reauthorization_required", extra=("reauthorize_url",))
        assert body["reauthorize_url"] == f"{PUBLIC_URL}/auth?provider=acme"
    assert len(rsps.calls) == 1


def test_transient_failure_while_the_token_is_valid_serves_it_with_a_warning(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TOKEN_URL, status=503, body="busy")
    clock.advance(3600 - 100)

    response = client.get("/api/token?provider=acme", headers=api_headers)

    assert response.status_code == 200
    body = response.get_json()
    assert body["access_token"] == "access-1"
    assert 0 < body["expires_in"] <= 100  # retries with backoff advance the fake clock
    assert isinstance(body["warning"], str) and body["warning"]
    assert response.headers["Warning"].startswith("199 ")
    assert response.headers["Cache-Control"] == "no-store"
    assert_clean(response)


@pytest.mark.parametrize(
    "description",
    ["x" * 400, "Сервис временно недоступен", "caf\u00e9 \u2026 \U0001f525"],
    ids=["long", "cyrillic", "mixed"],
)
def test_warning_header_stays_a_valid_http_header_whatever_the_provider_said(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
    description: str,
) -> None:
    # PEP 3333 header values must be latin-1; gunicorn answers 500 for anything else.
    rsps.post(
        TOKEN_URL,
        status=503,
        json={"error": "temporarily_unavailable", "error_description": description},
    )
    clock.advance(3600 - 100)

    response = client.get("/api/token?provider=acme", headers=api_headers)

    assert response.status_code == 200
    assert response.get_json()["access_token"] == "access-1"
    warning = response.headers["Warning"]
    assert warning.startswith("199 ")
    warning.encode("latin-1")  # raises UnicodeEncodeError when not a valid header value
    assert "\n" not in warning and "\r" not in warning


def test_unknown_route_is_a_json_404(client: FlaskClient) -> None:
    response = client.get("/no/such/route")

    body = assert_error(response, 404, "not_found")
    assert body["error"] == "not_found"


def test_wrong_method_is_a_json_405(client: FlaskClient, api_headers: dict[str, str]) -> None:
    response = client.post("/api/token?provider=acme", headers=api_headers)

    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_unexpected_exception_is_a_500_without_traceback_or_secret(
    client: FlaskClient,
    service: TokenService,
    api_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(alias: str, min_valid: int | None = None) -> None:
        raise RuntimeError(f"boom with {CLIENT_SECRET} inside")

    monkeypatch.setattr(service, "get_token", explode)

    response = client.get("/api/token?provider=acme", headers=api_headers)

    body = assert_error(response, 500, "server_error")
    assert "boom" not in body["error_description"]
    assert "RuntimeError" not in response.get_data(as_text=True)


# -- POST /api/token/refresh ----------------------------------------------------


def test_forced_refresh_gets_a_new_token_then_reuses_it_within_the_minimum_interval(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TOKEN_URL, json=token_body("access-2"))
    clock.advance(60)

    first = client.post("/api/token/refresh?provider=acme", headers=api_headers)
    assert first.status_code == 200
    assert first.get_json()["access_token"] == "access-2"
    assert first.headers["Cache-Control"] == "no-store"
    assert len(rsps.calls) == 1

    clock.advance(4)
    second = client.post("/api/token/refresh?provider=acme", headers=api_headers)
    assert second.status_code == 200
    assert second.get_json()["access_token"] == "access-2"
    assert len(rsps.calls) == 1

    rsps.replace(responses.POST, TOKEN_URL, json=token_body("access-3"))
    clock.advance(2)
    third = client.post("/api/token/refresh?provider=acme", headers=api_headers)
    assert third.get_json()["access_token"] == "access-3"
    assert len(rsps.calls) == 2


def test_forced_refresh_needs_the_bearer_key(
    client: FlaskClient, connected: TokenService, rsps: responses.RequestsMock
) -> None:
    response = client.post("/api/token/refresh?provider=acme")

    assert_error(response, 401, "invalid_token")
    assert len(rsps.calls) == 0


def test_forced_refresh_failing_upstream_is_an_error_not_the_old_token(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    clock.advance(60)

    response = client.post("/api/token/refresh?provider=acme", headers=api_headers)

    assert_error(response, 409, "reauthorization_required", extra=("reauthorize_url",))


# -- /healthz -----------------------------------------------------------------------


def test_healthz_is_ok_when_the_database_answers(client: FlaskClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_is_503_when_the_database_fails(
    client: FlaskClient, service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise OSError(f"disk I/O error at /secret/path {CLIENT_SECRET}")

    monkeypatch.setattr(service.repo, "ping", broken)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.get_json()["status"] != "ok"
    assert "disk I/O" not in response.get_data(as_text=True)
    assert_clean(response)


# -- /auth ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/auth", "/auth.php"])
@pytest.mark.parametrize(
    "authorization",
    [None, "wrong-password", "wrong-user", "bearer-key", "garbage", "non-ascii"],
)
def test_auth_without_admin_credentials_is_401_and_stores_nothing(
    client: FlaskClient,
    service: TokenService,
    repo: Repository,
    api_headers: dict[str, str],
    admin_headers: dict[str, str],
    path: str,
    authorization: str | None,
) -> None:
    register(service)
    password = base64.b64decode(admin_headers["Authorization"].split()[1]).decode()
    password = password.partition(":")[2]
    headers = {
        None: {},
        "wrong-password": {"Authorization": _basic("admin", password + "x")},
        "wrong-user": {"Authorization": _basic("root", password)},
        "bearer-key": api_headers,
        "garbage": {"Authorization": "Basic !!!not-base64!!!"},
        "non-ascii": {"Authorization": "Basic \xe4\xe4\xe4\xe4"},
    }[authorization]

    response = client.get(f"{path}?provider=acme", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert "Location" not in response.headers
    assert pending_count(repo) == 0
    assert client.get_cookie("tokenkeep_state") is None
    assert_clean(response)


@pytest.mark.parametrize("path", ["/auth", "/auth.php"])
def test_auth_redirects_the_operator_to_the_provider(
    client: FlaskClient,
    service: TokenService,
    repo: Repository,
    admin_headers: dict[str, str],
    path: str,
) -> None:
    register(service, authorize_params={"access_type": "offline", "prompt": "consent"})

    response = client.get(f"{path}?provider=acme", headers=admin_headers)

    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == AUTHORIZE_URL
    query = parse_qs(location.query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == ["client-id"]
    assert query["redirect_uri"] == [f"{PUBLIC_URL}/callback"]
    assert query["scope"] == ["read write"]
    assert len(query["state"][0]) >= 32
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["access_type"] == ["offline"]
    assert query["prompt"] == ["consent"]
    assert pending_count(repo) == 1
    cookies = [c for c in response.headers.getlist("Set-Cookie") if "tokenkeep_state=" in c]
    assert len(cookies) == 1
    attributes = {part.strip().lower() for part in cookies[0].split(";")}
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert_html_security_headers(response)


def test_auth_uses_the_providers_own_redirect_uri_when_registered(
    client: FlaskClient, service: TokenService, admin_headers: dict[str, str]
) -> None:
    register(service, redirect_uri="https://tokens.example.com/oauth/cb")

    response = client.get("/auth?provider=acme", headers=admin_headers)

    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["redirect_uri"] == ["https://tokens.example.com/oauth/cb"]


def test_auth_without_pkce_sends_no_code_challenge(
    client: FlaskClient, service: TokenService, admin_headers: dict[str, str]
) -> None:
    register(service, pkce=False)

    response = client.get("/auth?provider=acme", headers=admin_headers)

    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert "code_challenge" not in query
    assert "code_challenge_method" not in query
    assert query["response_type"] == ["code"]


def test_auth_gives_a_fresh_state_each_time(
    client: FlaskClient, service: TokenService, admin_headers: dict[str, str]
) -> None:
    register(service)

    states = {start_auth(client, admin_headers) for _ in range(3)}

    assert len(states) == 3


def test_auth_for_an_unknown_provider_is_a_404_page(
    client: FlaskClient, repo: Repository, admin_headers: dict[str, str]
) -> None:
    response = client.get("/auth?provider=nope", headers=admin_headers)

    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert pending_count(repo) == 0
    assert_html_security_headers(response)
    assert_clean(response)


def test_auth_redirect_never_depends_on_the_host_header(
    client: FlaskClient, service: TokenService, admin_headers: dict[str, str]
) -> None:
    register(service)

    response = client.get(
        "/auth?provider=acme",
        headers={**admin_headers, "Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )

    assert response.status_code == 302
    location = response.headers["Location"]
    assert "evil.example" not in location
    query = parse_qs(urlsplit(location).query)
    assert query["redirect_uri"] == [f"{PUBLIC_URL}/callback"]


# -- /callback --------------------------------------------------------------------


@pytest.mark.parametrize("auth_path", ["/auth", "/auth.php"])
def test_callback_exchanges_the_code_and_stores_the_tokens(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
    auth_path: str,
) -> None:
    register(service)
    redirect = client.get(f"{auth_path}?provider=acme", headers=admin_headers)
    query = parse_qs(urlsplit(redirect.headers["Location"]).query)
    state, challenge = query["state"][0], query["code_challenge"][0]
    rsps.post(TOKEN_URL, json=token_body("access-new", refresh_token="refresh-new"))

    response = client.get(f"/callback?code=abc&state={state}")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "acme" in page
    assert T0_PLUS_HOUR in page
    assert_html_security_headers(response)
    assert_clean(response)
    assert "access-new" not in page and "refresh-new" not in page
    stored = service.repo.get_token("acme")
    assert stored is not None
    assert stored.tokens.access_token == "access-new"
    assert stored.tokens.refresh_token == "refresh-new"
    assert len(rsps.calls) == 1
    sent = form(rsps.calls[0].request.body)
    assert sent["grant_type"] == "authorization_code"
    assert sent["code"] == "abc"
    assert sent["redirect_uri"] == f"{PUBLIC_URL}/callback"
    digest = hashlib.sha256(sent["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge
    assert CLIENT_SECRET not in rsps.calls[0].request.url


def test_callback_then_token_api_serves_the_new_token(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    api_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    rsps.post(TOKEN_URL, json=token_body("access-new", api_domain="https://api.example"))
    assert client.get(f"/callback?code=abc&state={state}").status_code == 200

    body = client.get("/api/token?provider=acme", headers=api_headers).get_json()

    assert body["access_token"] == "access-new"
    assert body["api_domain"] == "https://api.example"


def test_legacy_callback_php_with_provider_parameter_works(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers, "/auth.php")
    rsps.post(TOKEN_URL, json=token_body("access-legacy"))

    response = client.get(f"/callback.php?provider=acme&code=abc&state={state}")

    assert response.status_code == 200
    stored = service.repo.get_token("acme")
    assert stored is not None
    assert stored.tokens.access_token == "access-legacy"


def test_callback_uses_the_redirect_uri_sent_in_auth(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service, redirect_uri="https://tokens.example.com/oauth/cb", pkce=False)
    state = start_auth(client, admin_headers)
    rsps.post(TOKEN_URL, json=token_body())

    assert client.get(f"/callback?code=abc&state={state}").status_code == 200

    sent = form(rsps.calls[0].request.body)
    assert sent["redirect_uri"] == "https://tokens.example.com/oauth/cb"
    assert "code_verifier" not in sent


def _assert_rejected_callback(
    response: TestResponse, service: TokenService, rsps: responses.RequestsMock
) -> None:
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert_html_security_headers(response)
    assert_clean(response)
    assert service.repo.get_token("acme") is None
    assert len(rsps.calls) == 0


@pytest.mark.parametrize("path", ["/callback", "/callback.php"])
def test_callback_without_state_is_rejected(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
    path: str,
) -> None:
    register(service)
    start_auth(client, admin_headers)

    _assert_rejected_callback(client.get(f"{path}?code=abc"), service, rsps)


def test_callback_with_unknown_state_is_rejected(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    start_auth(client, admin_headers)
    # A cookie that matches the forged state, so only the state lookup can refuse it.
    client.set_cookie("tokenkeep_state", browser_binding("forged-state"))

    response = client.get("/callback?code=abc&state=forged-state")

    _assert_rejected_callback(response, service, rsps)


def test_callback_with_a_reused_state_is_rejected(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    cookie = client.get_cookie("tokenkeep_state")
    assert cookie is not None
    rsps.post(TOKEN_URL, json=token_body("access-first"))
    assert client.get(f"/callback?code=abc&state={state}").status_code == 200
    client.set_cookie("tokenkeep_state", cookie.value)  # replay the whole request

    response = client.get(f"/callback?code=other&state={state}")

    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert len(rsps.calls) == 1
    stored = service.repo.get_token("acme")
    assert stored is not None
    assert stored.tokens.access_token == "access-first"


def test_callback_with_an_expired_state_is_rejected(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    clock.advance(601)

    _assert_rejected_callback(client.get(f"/callback?code=abc&state={state}"), service, rsps)


def test_callback_just_before_the_state_expires_is_accepted(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    clock.advance(599)
    rsps.post(TOKEN_URL, json=token_body())

    assert client.get(f"/callback?code=abc&state={state}").status_code == 200


def test_callback_from_a_different_browser_is_rejected_and_leaves_the_state_usable(
    app: Flask,
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    other_browser = app.test_client()

    response = other_browser.get(f"/callback?code=attacker-code&state={state}")

    _assert_rejected_callback(response, service, rsps)
    rsps.post(TOKEN_URL, json=token_body("access-operator"))
    assert client.get(f"/callback?code=abc&state={state}").status_code == 200
    assert form(rsps.calls[0].request.body)["code"] == "abc"


def test_callback_with_a_provider_hint_of_another_provider_is_rejected(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    register(service, "other")
    state = start_auth(client, admin_headers)

    response = client.get(f"/callback.php?provider=other&code=abc&state={state}")

    _assert_rejected_callback(response, service, rsps)
    assert service.repo.get_token("other") is None


def test_callback_with_access_denied_shows_a_page_and_keeps_existing_tokens(
    client: FlaskClient,
    connected: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    state = start_auth(client, admin_headers)

    response = client.get(
        f"/callback?error=access_denied&error_description=The+user+said+no&state={state}"
    )

    assert response.status_code == 400
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "access_denied" in page
    assert "Access was denied at the provider" in page
    assert "The user said no" in page
    assert 'href="/auth?provider=acme"' in page  # a way to start again
    assert_html_security_headers(response)
    stored = connected.repo.get_token("acme")
    assert stored is not None
    assert stored.tokens.access_token == "access-1"
    assert stored.tokens.refresh_token == "refresh-1"
    assert len(rsps.calls) == 0


def test_callback_with_access_denied_and_no_state_still_says_so(
    client: FlaskClient, service: TokenService, rsps: responses.RequestsMock
) -> None:
    register(service)

    response = client.get("/callback?error=access_denied")

    assert response.status_code == 400
    assert "access_denied" in response.get_data(as_text=True)
    assert service.repo.get_token("acme") is None


@pytest.mark.parametrize(
    "stub",
    [
        {"status": 400, "json": {"error": "invalid_grant", "error_description": "code used"}},
        {"status": 200, "json": {"error": "invalid_client"}},
        {"status": 200, "body": "<html>login page</html>", "content_type": "text/html"},
        {"status": 200, "json": {"token_type": "bearer", "expires_in": 3600}},
    ],
    ids=["error-400", "error-in-200", "non-json", "no-access-token"],
)
def test_callback_when_the_token_endpoint_fails_shows_502_and_stores_nothing(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
    stub: dict[str, object],
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    rsps.post(TOKEN_URL, **stub)  # type: ignore[arg-type]

    response = client.get(f"/callback?code=abc&state={state}")

    assert response.status_code == 502
    assert response.mimetype == "text/html"
    assert_html_security_headers(response)
    assert_clean(response)
    assert service.repo.get_token("acme") is None


def test_callback_failure_keeps_the_tokens_of_an_already_connected_provider(
    client: FlaskClient,
    connected: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    state = start_auth(client, admin_headers)
    rsps.post(TOKEN_URL, json={"token_type": "bearer"})

    response = client.get(f"/callback?code=abc&state={state}")

    assert response.status_code == 502
    stored = connected.repo.get_token("acme")
    assert stored is not None
    assert stored.tokens.access_token == "access-1"
    assert stored.tokens.refresh_token == "refresh-1"
    assert stored.status == "connected"


def test_callback_without_a_code_is_rejected_and_stores_nothing(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)

    _assert_rejected_callback(client.get(f"/callback?state={state}"), service, rsps)


# -- HTML security --------------------------------------------------------------


def test_provider_error_text_is_escaped_on_the_denied_page(client: FlaskClient) -> None:
    response = client.get(
        "/callback",
        query_string={
            "error": "<script>alert(1)</script>",
            "error_description": "<img src=x onerror=alert(2)>",
        },
    )

    page = response.get_data(as_text=True)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "<img" not in page
    assert "&lt;img" in page
    assert_html_security_headers(response)


def test_provider_error_description_from_the_token_endpoint_is_escaped(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    rsps.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_request", "error_description": "<script>alert(1)</script>"},
    )

    response = client.get(f"/callback?code=abc&state={state}")

    page = response.get_data(as_text=True)
    assert response.status_code == 502
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize(
    "path",
    [
        "/auth?provider=%3Cscript%3Ealert(1)%3C/script%3E",
        "/auth.php?provider=%3Csvg%20onload%3Dalert(1)%3E",
        "/callback.php?provider=%3Cscript%3Ealert(1)%3C/script%3E&code=abc&state=x",
    ],
)
def test_alias_from_the_url_is_never_echoed_unescaped(
    client: FlaskClient, admin_headers: dict[str, str], path: str
) -> None:
    response = client.get(path, headers=admin_headers)

    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "<script" not in page
    assert "<svg" not in page
    assert_html_security_headers(response)


@pytest.mark.parametrize(
    "path",
    ["/callback?code=abc", "/callback?error=access_denied", "/auth?provider=nope", "/auth"],
)
def test_html_pages_carry_the_security_headers(
    client: FlaskClient, admin_headers: dict[str, str], path: str
) -> None:
    response = client.get(path, headers=admin_headers)

    assert response.mimetype == "text/html"
    assert_html_security_headers(response)
    assert response.headers["Cache-Control"] == "no-store"
