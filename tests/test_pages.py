"""The operator's HTML pages: status page, result page and failure pages, through Flask."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest
import responses
from conftest import CLIENT_SECRET, TOKEN_URL, FakeClock, connect, register, start_auth
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tokenkeep.config import Settings
from tokenkeep.errors import InvalidRequest, StateError, UpstreamError
from tokenkeep.models import ProviderStatus
from tokenkeep.pages import duration, failure_for, since, status_rows, until
from tokenkeep.service import TokenService

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """Provider HTTP stubbed at the transport; unmatched requests fail the test."""
    with responses.RequestsMock() as mock:
        yield mock


def html(response: TestResponse, status: int) -> str:
    """Assert an HTML page with the security headers; return its text."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = response.get_data(as_text=True)
    assert page.startswith("<!doctype html>")
    assert '<html lang="en">' in page
    assert page.count("<h1") == 1
    assert "<script" not in page and "style=" not in page  # the CSP would block both
    assert "Traceback" not in page
    return page


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()}


def text_of(page: str) -> str:
    """The page's words: tags dropped (inline ones join their neighbours), spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", "", page).split())


# -- the status page ------------------------------------------------------------------


def test_status_page_without_credentials_is_401_asking_for_basic_auth(
    client: FlaskClient, service: TokenService
) -> None:
    register(service)
    connect(service)

    response = client.get("/")

    page = html(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert "Log in required" in page
    assert "acme" not in page


def test_status_page_with_a_wrong_password_is_401_then_throttled(
    client: FlaskClient, service: TokenService
) -> None:
    register(service)

    statuses = [client.get("/", headers=basic("guess")).status_code for _ in range(12)]

    assert statuses[:10] == [401] * 10
    assert statuses[-1] == 429
    throttled = client.get("/", headers=basic("guess"))
    assert int(throttled.headers["Retry-After"]) >= 1
    assert "acme" not in throttled.get_data(as_text=True)


def test_status_page_visits_without_credentials_are_never_throttled(
    client: FlaskClient, service: TokenService
) -> None:
    assert [client.get("/").status_code for _ in range(15)] == [401] * 15


def test_status_page_does_not_accept_the_api_key(
    client: FlaskClient, service: TokenService, api_headers: dict[str, str]
) -> None:
    assert client.get("/", headers=api_headers).status_code == 401


def test_status_page_lists_every_provider_with_its_state_and_a_connect_button(
    client: FlaskClient, service: TokenService, admin_headers: dict[str, str], clock: FakeClock
) -> None:
    register(service, "acme")
    register(service, "billing")
    register(service, "crm")
    connect(service, "acme", expires_in=3600)
    connect(service, "crm", refresh_token=None, expires_in=None)
    clock.advance(600)

    page = html(client.get("/", headers=admin_headers), 200)

    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)[1:]  # after the header row
    assert [re.search(r"<code>([^<]+)</code>", row).group(1) for row in rows] == [  # type: ignore[union-attr]
        "acme",
        "billing",
        "crm",
    ]
    acme, billing, crm = (text_of(row) for row in rows)
    assert "Connected" in acme
    assert "in 50 min" in acme and "2027-01-15 09:00 UTC" in acme
    assert '<time datetime="2027-01-15T09:00:00Z">in 50 min</time>' in page
    assert "10 min ago" in acme  # last refresh: when the tokens were obtained
    assert "Reconnect acme" in acme
    assert "Not connected" in billing and "Connect billing" in billing
    assert "Reconnect" not in billing
    assert "never" in crm and "no refresh token" in crm
    assert 'href="/auth?provider=acme"' in page
    assert 'href="/auth?provider=billing"' in page
    for header in ("Provider", "Status", "Access token expires", "Last refresh", "Last error"):
        assert f'<th scope="col">{header}</th>' in page
    assert '<th scope="col">Needs re&#8209;authorization</th>' in page
    assert page.count('<th scope="row">') == 3


def test_status_page_shows_a_provider_that_needs_reauthorization_and_its_escaped_error(
    client: FlaskClient, service: TokenService, admin_headers: dict[str, str], clock: FakeClock
) -> None:
    register(service)
    connect(service)
    service.repo.record_failure(
        "acme",
        "someone",
        error=f"invalid_grant: {HOSTILE}",
        code="invalid_grant",
        now=clock(),
        next_attempt_at=None,
        needs_reauth=True,
    )
    clock.advance(180)

    page = html(client.get("/", headers=admin_headers), 200)

    row = text_of(re.findall(r"<tr>(.*?)</tr>", page, re.S)[1])
    assert "Needs re-authorization" in row
    assert "Yes" in row
    assert "3 min ago" in row
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Reconnect acme" in row


def test_status_page_never_shows_a_secret(
    client: FlaskClient,
    service: TokenService,
    settings: Settings,
    admin_headers: dict[str, str],
) -> None:
    register(service)
    connect(service, access_token="access-secret-1", refresh_token="refresh-secret-1")

    page = html(client.get("/", headers=admin_headers), 200)

    for secret in (
        "access-secret-1",
        "refresh-secret-1",
        CLIENT_SECRET,
        settings.api_secret_token,
        settings.admin_password,
        settings.encryption_key,
    ):
        assert secret not in page


def test_status_page_without_providers_says_how_to_register_one(
    client: FlaskClient, service: TokenService, admin_headers: dict[str, str]
) -> None:
    page = html(client.get("/", headers=admin_headers), 200)

    assert "No provider is registered yet" in page
    assert "tokenkeep register-provider" in page
    assert "<table" not in page


# -- the result page ----------------------------------------------------------------


def test_result_page_names_provider_scopes_expiry_refresh_token_and_a_curl_example(
    client: FlaskClient,
    service: TokenService,
    settings: Settings,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    rsps.post(
        TOKEN_URL,
        json={
            "access_token": "access-secret-2",
            "refresh_token": "refresh-secret-2",
            "token_type": "bearer",
            "expires_in": 3600,
            "scope": "read write",
        },
    )

    page = html(client.get(f"/callback?code=abc&state={state}"), 200)

    words = text_of(page)
    assert "acme is connected" in words
    assert "<li><code>read</code></li><li><code>write</code></li>" in page
    assert "in 1 h (2027-01-15T09:00:00Z)" in words
    assert "Refresh token received" in words
    assert "$TOKENKEEP_API_KEY" in page
    assert f"{settings.public_url}/api/token?provider=acme" in page
    for secret in ("access-secret-2", "refresh-secret-2", settings.api_secret_token):
        assert secret not in page


def test_result_page_warns_when_no_refresh_token_came(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    rsps.post(TOKEN_URL, json={"access_token": "a", "token_type": "bearer"})

    words = text_of(html(client.get(f"/callback?code=abc&state={state}"), 200))

    assert "none issued: re-authorize before the access token expires" in words
    assert "never (the provider gave no expiry)" in words
    assert "not stated by the provider" in words


# -- failure pages ---------------------------------------------------------------------


def test_denied_at_the_provider_explains_and_offers_to_start_again(
    client: FlaskClient, service: TokenService, admin_headers: dict[str, str]
) -> None:
    register(service)
    state = start_auth(client, admin_headers)

    page = html(client.get(f"/callback?error=access_denied&state={state}"), 400)

    assert "Access was denied at the provider" in page
    assert "Nothing was stored" in page
    assert 'href="/auth?provider=acme"' in page


def test_another_provider_error_is_shown_escaped_with_a_link_to_the_status_page(
    client: FlaskClient,
) -> None:
    page = html(
        client.get("/callback", query_string={"error": HOSTILE, "error_description": HOSTILE}),
        400,
    )

    assert "The provider refused the authorization request" in page
    assert "&lt;script&gt;" in page
    assert 'href="/"' in page
    assert "/auth?provider" not in page


def test_expired_state_explains_and_offers_to_start_again_for_that_provider(
    client: FlaskClient, service: TokenService, admin_headers: dict[str, str], clock: FakeClock
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    clock.advance(601)

    page = html(client.get(f"/callback?code=abc&state={state}"), 400)

    assert "This authorization took too long" in page
    assert 'href="/auth?provider=acme"' in page
    assert service.repo.get_token("acme") is None


def test_reused_state_explains_and_links_to_the_status_page(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    cookie = client.get_cookie("tokenkeep_state")
    assert cookie is not None
    rsps.post(TOKEN_URL, json={"access_token": "a", "token_type": "bearer"})
    assert client.get(f"/callback?code=abc&state={state}").status_code == 200
    client.set_cookie("tokenkeep_state", cookie.value)

    page = html(client.get(f"/callback?code=abc&state={state}"), 400)

    assert "This authorization was already used or is unknown" in page
    assert 'href="/"' in page
    assert len(rsps.calls) == 1


def test_a_callback_in_another_browser_explains_the_cookie(
    client: FlaskClient, service: TokenService, admin_headers: dict[str, str]
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    client.delete_cookie("tokenkeep_state")

    page = html(client.get(f"/callback?code=abc&state={state}"), 400)

    assert "started in another browser" in page


def test_hostile_provider_hint_is_escaped_and_never_offered_as_a_link(
    client: FlaskClient,
) -> None:
    response = client.get("/callback.php", query_string={"provider": HOSTILE, "code": "x"})

    page = html(response, 400)  # html() also checks that no <script appears
    assert "This callback is incomplete" in page
    assert "/auth?provider" not in page


def test_provider_error_at_code_exchange_explains_and_offers_to_start_again(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    rsps.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": HOSTILE})

    page = html(client.get(f"/callback?code=abc&state={state}"), 502)

    assert "The provider did not issue a token" in page
    assert "invalid_grant" in page
    assert "&lt;script&gt;" in page
    assert 'href="/auth?provider=acme"' in page
    assert CLIENT_SECRET not in page
    assert service.repo.get_token("acme") is None


def test_provider_unreachable_at_code_exchange_is_a_503_page(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    rsps.post(TOKEN_URL, status=503, body="busy")

    page = html(client.get(f"/callback?code=abc&state={state}"), 503)

    assert "The provider did not issue a token" in page
    assert 'href="/auth?provider=acme"' in page


def test_auth_for_an_unknown_provider_is_a_page_linking_to_the_status_page(
    client: FlaskClient, admin_headers: dict[str, str]
) -> None:
    page = html(client.get("/auth?provider=nope", headers=admin_headers), 404)

    assert "No such provider" in page
    assert 'href="/"' in page


# -- the wording, without the web layer -----------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "less than a minute"),
        (59, "less than a minute"),
        (60, "1 min"),
        (3599, "59 min"),
        (3600, "1 h"),
        (3600 + 5 * 60, "1 h 5 min"),
        (86400, "1 d"),
        (2 * 86400 + 4 * 3600 + 59, "2 d 4 h"),
    ],
)
def test_durations_read_as_short_human_text(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_times_read_relative_to_now() -> None:
    assert until(1000 + 600, 1000) == "in 10 min"
    assert until(1000 - 120, 1000) == "expired 2 min ago"
    assert since(1000 - 30, 1000) == "just now"
    assert since(1000 - 7200, 1000) == "2 h ago"


def test_a_long_last_error_is_shortened_on_the_status_page() -> None:
    status = ProviderStatus(
        alias="acme",
        status="connected",
        expires_at=None,
        obtained_at=0.0,
        has_refresh_token=True,
        last_error="x" * 1000,
        last_error_at=0.0,
        token_url=TOKEN_URL,
        auth_method="client_secret_basic",
    )

    (row,) = status_rows([status], now=0.0)

    assert row.last_error is not None and len(row.last_error) == 300
    assert row.never_expires and row.action == "Reconnect"


@pytest.mark.parametrize(
    ("error", "alias", "link"),
    [
        (StateError("x", reason="expired", alias="acme"), None, "acme"),
        (StateError("x", reason="unknown"), None, None),
        (UpstreamError("x", provider_error="invalid_grant"), "acme", "acme"),
        (InvalidRequest("the callback carries no authorization code"), "acme", "acme"),
    ],
)
def test_every_failure_page_offers_a_way_to_start_again(
    error: Exception, alias: str | None, link: str | None
) -> None:
    assert isinstance(error, InvalidRequest | StateError | UpstreamError)
    failure = failure_for(error, alias, callback=True)

    assert failure.alias == link
    assert failure.title and failure.explanation
    assert failure.note is not None and "Nothing was stored" in failure.note
