"""ProviderClient against token endpoints stubbed at the HTTP transport (responses)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests
import responses
from conftest import AUTHORIZE_URL, CLIENT_SECRET, T0, TOKEN_URL, FakeClock

from tokenkeep.errors import PermanentUpstreamError, UpstreamError, UpstreamUnavailable
from tokenkeep.models import Provider, TokenSet
from tokenkeep.oauth import ProviderClient, code_challenge_s256, new_code_verifier

REDIRECT_URI = "http://127.0.0.1:8000/callback"
REFRESH_TOKEN = "refresh-token-value-5678"
FORM = "application/x-www-form-urlencoded"
ZOHO_THROTTLE = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. "
    "Please try again after some time.",
}


def make_provider(**overrides: Any) -> Provider:
    fields: dict[str, Any] = {
        "alias": "acme",
        "client_id": "client-id",
        "client_secret": CLIENT_SECRET,
        "authorize_url": AUTHORIZE_URL,
        "token_url": TOKEN_URL,
        "scopes": ("read", "write"),
    }
    fields.update(overrides)
    return Provider(**fields)


@pytest.fixture
def oauth(clock: FakeClock) -> ProviderClient:
    return ProviderClient(
        requests.Session(), timeout=5, clock=clock, sleep=clock.sleep, jitter=lambda: 0.5
    )


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def stub(http: responses.RequestsMock, status: int = 200, body: Any = "", **kw: Any) -> None:
    """Register one answer: dict/list as JSON, str as HTML, form or plain text, or an exception."""
    if isinstance(body, dict | list):
        http.post(TOKEN_URL, status=status, json=body, **kw)
    elif isinstance(body, str) and "content_type" not in kw:
        kind = "text/html" if body.startswith("<") else FORM if "=" in body else "text/plain"
        http.post(TOKEN_URL, status=status, body=body, content_type=kind, **kw)
    else:
        http.post(TOKEN_URL, status=status, body=body, **kw)


def sent_form(http: responses.RequestsMock, index: int = 0) -> dict[str, str]:
    return dict(parse_qsl(http.calls[index].request.body))


def query(url: str) -> dict[str, str]:
    parsed = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(values) == 1 for values in parsed.values()), parsed
    return {key: values[0] for key, values in parsed.items()}


def exchange(oauth: ProviderClient, provider: Provider | None = None, **kw: Any) -> TokenSet:
    kw.setdefault("code_verifier", "verifier-abc")
    return oauth.exchange_code(
        provider or make_provider(), code="code-123", redirect_uri=REDIRECT_URI, **kw
    )


def refresh(oauth: ProviderClient, provider: Provider | None = None, **kw: Any) -> TokenSet:
    return oauth.refresh(provider or make_provider(), REFRESH_TOKEN, **kw)


# -- authorization URL ---------------------------------------------------------


def test_authorization_url_carries_the_code_flow_parameters(oauth: ProviderClient) -> None:
    url = oauth.authorization_url(
        make_provider(), state="state-xyz", redirect_uri=REDIRECT_URI, code_challenge="chal"
    )
    assert url.startswith(AUTHORIZE_URL + "?")
    assert query(url) == {
        "response_type": "code",
        "client_id": "client-id",
        "redirect_uri": REDIRECT_URI,
        "scope": "read write",
        "state": "state-xyz",
        "code_challenge": "chal",
        "code_challenge_method": "S256",
    }


@pytest.mark.parametrize(
    ("separator", "scopes", "expected"),
    [
        (" ", ("openid", "email"), "openid email"),
        (
            ",",
            ("ZohoCRM.modules.ALL", "ZohoCRM.users.READ"),
            "ZohoCRM.modules.ALL,ZohoCRM.users.READ",
        ),
    ],
    ids=["space", "comma"],
)
def test_authorization_url_joins_scopes_with_the_provider_separator(
    oauth: ProviderClient, separator: str, scopes: tuple[str, ...], expected: str
) -> None:
    provider = make_provider(scopes=scopes, scope_separator=separator)
    url = oauth.authorization_url(
        provider, state="s", redirect_uri=REDIRECT_URI, code_challenge=None
    )
    assert query(url)["scope"] == expected


def test_authorization_url_without_challenge_or_scopes_omits_them(oauth: ProviderClient) -> None:
    url = oauth.authorization_url(
        make_provider(scopes=()), state="s", redirect_uri=REDIRECT_URI, code_challenge=None
    )
    assert not {"code_challenge", "code_challenge_method", "scope"} & set(query(url))


def test_authorization_url_includes_extra_authorize_params(oauth: ProviderClient) -> None:
    provider = make_provider(authorize_params={"access_type": "offline", "prompt": "consent"})
    url = oauth.authorization_url(
        provider, state="s", redirect_uri=REDIRECT_URI, code_challenge=None
    )
    assert query(url)["access_type"] == "offline"
    assert query(url)["prompt"] == "consent"


def test_authorization_url_preserves_an_existing_query_string(oauth: ProviderClient) -> None:
    provider = make_provider(authorize_url="https://login.test/t/authorize?tenant=contoso&aud=api")
    url = oauth.authorization_url(
        provider, state="s", redirect_uri=REDIRECT_URI, code_challenge=None
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "login.test", "/t/authorize")
    assert query(url)["tenant"] == "contoso"
    assert query(url)["aud"] == "api"
    assert query(url)["state"] == "s"


def test_extra_authorize_params_cannot_override_protocol_parameters(oauth: ProviderClient) -> None:
    hostile = {
        "state": "attacker",
        "client_id": "other-client",
        "redirect_uri": "https://evil.test/cb",
        "response_type": "token",
    }
    provider = make_provider(authorize_params=hostile)
    url = oauth.authorization_url(
        provider, state="ours", redirect_uri=REDIRECT_URI, code_challenge="c"
    )
    params = query(url)
    assert params["state"] == "ours"
    assert params["client_id"] == "client-id"
    assert params["redirect_uri"] == REDIRECT_URI
    assert params["response_type"] == "code"


# -- PKCE (RFC 7636) -----------------------------------------------------------


def test_code_challenge_matches_rfc_7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge_s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_new_code_verifier_is_43_to_128_unreserved_characters_and_fresh() -> None:
    verifiers = {new_code_verifier() for _ in range(20)}
    assert len(verifiers) == 20
    for verifier in verifiers:
        assert 43 <= len(verifier) <= 128
        assert re.fullmatch(r"[A-Za-z0-9._~-]+", verifier)


# -- code exchange: request ----------------------------------------------------


def test_exchange_code_posts_the_authorization_code_grant_as_json_client(
    oauth: ProviderClient, http: responses.RequestsMock
) -> None:
    stub(http, body={"access_token": "at", "token_type": "Bearer"})
    exchange(oauth)
    body = sent_form(http)
    assert body["grant_type"] == "authorization_code"
    assert body["code"] == "code-123"
    assert body["redirect_uri"] == REDIRECT_URI
    assert body["code_verifier"] == "verifier-abc"
    request = http.calls[0].request
    assert request.headers["Accept"] == "application/json"
    timeout = request.req_kwargs["timeout"]  # type: ignore[attr-defined]
    assert timeout is not None and max(timeout) <= 5


def test_exchange_code_without_verifier_sends_no_code_verifier(
    oauth: ProviderClient, http: responses.RequestsMock
) -> None:
    stub(http, body={"access_token": "at"})
    exchange(oauth, code_verifier=None)
    assert "code_verifier" not in sent_form(http)


def test_client_secret_basic_form_encodes_id_and_secret_and_keeps_them_out_of_the_body(
    oauth: ProviderClient, http: responses.RequestsMock
) -> None:
    stub(http, body={"access_token": "at"})
    provider = make_provider(client_id="id:with&chars", client_secret="sec:ret&x=y/z")
    exchange(oauth, provider)
    header = http.calls[0].request.headers["Authorization"]
    assert header.startswith("Basic ")
    # RFC 6749 section 2.3.1: each part form-encoded, then joined by ':' and base64'd.
    assert base64.b64decode(header[6:]).decode() == "id%3Awith%26chars:sec%3Aret%26x%3Dy%2Fz"
    assert "client_secret" not in sent_form(http)
    assert "sec:ret" not in str(http.calls[0].request.body)


def test_client_secret_post_puts_credentials_in_the_body_only(
    oauth: ProviderClient, http: responses.RequestsMock
) -> None:
    stub(http, body={"access_token": "at"})
    exchange(oauth, make_provider(auth_method="client_secret_post"))
    body = sent_form(http)
    assert (body["client_id"], body["client_secret"]) == ("client-id", CLIENT_SECRET)
    assert "Authorization" not in http.calls[0].request.headers


def test_auth_method_none_sends_only_the_client_id(
    oauth: ProviderClient, http: responses.RequestsMock
) -> None:
    stub(http, body={"access_token": "at"})
    exchange(oauth, make_provider(auth_method="none"))
    assert sent_form(http)["client_id"] == "client-id"
    assert "client_secret" not in sent_form(http)
    assert "Authorization" not in http.calls[0].request.headers


def test_token_params_are_merged_but_cannot_replace_the_grant(
    oauth: ProviderClient, http: responses.RequestsMock
) -> None:
    stub(http, body={"access_token": "at"})
    exchange(oauth, make_provider(token_params={"expiring": "1", "grant_type": "password"}))
    assert sent_form(http)["expiring"] == "1"
    assert sent_form(http)["grant_type"] == "authorization_code"


@pytest.mark.parametrize("outcome", [503, requests.ConnectionError("reset")], ids=["503", "reset"])
def test_exchange_code_is_never_retried(
    oauth: ProviderClient, http: responses.RequestsMock, clock: FakeClock, outcome: Any
) -> None:
    if isinstance(outcome, int):
        stub(http, status=outcome)
    else:
        stub(http, body=outcome)
    with pytest.raises(UpstreamUnavailable):
        exchange(oauth)
    assert len(http.calls) == 1
    assert clock.slept == []


def test_unsupported_auth_method_fails_without_calling_the_provider(
    oauth: ProviderClient, http: responses.RequestsMock
) -> None:
    with pytest.raises(UpstreamError):
        exchange(oauth, make_provider(auth_method="private_key_jwt"))
    assert len(http.calls) == 0


# -- parsing -------------------------------------------------------------------


def test_json_response_becomes_a_token_set_with_absolute_expiry_and_extras(
    oauth: ProviderClient, http: responses.RequestsMock, clock: FakeClock
) -> None:
    clock.advance(1000)
    body = {
        "access_token": "1000.at",
        "refresh_token": "1000.rt",
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "ZohoCRM.modules.ALL",
        "api_domain": "https://www.zohoapis.eu",
    }
    stub(http, body=body)
    tokens = exchange(oauth)
    assert (tokens.access_token, tokens.refresh_token) == ("1000.at", "1000.rt")
    assert tokens.obtained_at == T0 + 1000
    assert tokens.expires_at == T0 + 1000 + 3600
    assert tokens.scope == "ZohoCRM.modules.ALL"
    assert dict(tokens.extras) == {"api_domain": "https://www.zohoapis.eu"}


def test_form_encoded_github_response_is_parsed(
    oauth: ProviderClient, http: responses.RequestsMock
) -> None:
    body = "access_token=gho_x&scope=repo%2Cgist&token_type=bearer"
    stub(http, body=body)
    tokens = exchange(oauth)
    assert tokens.access_token == "gho_x"
    assert tokens.scope == "repo,gist"
    assert tokens.token_type == "Bearer"
    assert (tokens.expires_at, tokens.refresh_token) == (None, None)


@pytest.mark.parametrize(
    ("fields", "default_lifetime", "lifetime"),
    [
        ({"expires_in": 3600}, None, 3600),
        ({"expires_in": "3599"}, None, 3599),
        ({"expires_in": 3600000, "expires_in_sec": 3600}, None, 3600),
        ({}, None, None),
        ({}, 7200, 7200),
        ({"expires_in": 1800}, 7200, 1800),
    ],
    ids=["number", "numeric-string", "zoho-legacy-ms", "absent", "absent-default", "explicit-wins"],
)
def test_expiry_is_computed_from_expires_in_or_the_provider_default(
    oauth: ProviderClient,
    http: responses.RequestsMock,
    fields: dict[str, Any],
    default_lifetime: int | None,
    lifetime: int | None,
) -> None:
    stub(http, body={"access_token": "at", **fields})
    tokens = exchange(oauth, make_provider(default_lifetime_seconds=default_lifetime))
    assert tokens.expires_at == (None if lifetime is None else T0 + lifetime)


@pytest.mark.parametrize("token_type", ["bearer", "BEARER", "Bearer", None])
def test_token_type_bearer_is_normalised(
    oauth: ProviderClient, http: responses.RequestsMock, token_type: str | None
) -> None:
    body: dict[str, Any] = {"access_token": "at"}
    if token_type is not None:
        body["token_type"] = token_type
    stub(http, body=body)
    assert exchange(oauth).token_type == "Bearer"


def test_list_valued_scope_is_joined(oauth: ProviderClient, http: responses.RequestsMock) -> None:
    stub(http, body={"access_token": "at", "scope": ["read", "write"]})
    assert exchange(oauth).scope == "read write"


def test_unknown_fields_are_kept_as_extras_and_standard_fields_are_not(
    oauth: ProviderClient, http: responses.RequestsMock
) -> None:
    body = {
        "access_token": "at",
        "refresh_token": "rt",
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "api refresh_token",
        "instance_url": "https://acme.my.salesforce.com",
        "id_token": "eyJ.id.token",
        "api_domain": "https://api.example",
    }
    stub(http, body=body)
    assert dict(exchange(oauth).extras) == {
        "instance_url": "https://acme.my.salesforce.com",
        "id_token": "eyJ.id.token",
        "api_domain": "https://api.example",
    }


def test_refresh_response_without_refresh_token_yields_none_for_the_caller_to_keep_the_old(
    oauth: ProviderClient, http: responses.RequestsMock
) -> None:
    stub(http, body={"access_token": "new-at", "expires_in": 3599})
    tokens = refresh(oauth)
    assert (tokens.access_token, tokens.refresh_token) == ("new-at", None)
    body = sent_form(http)
    assert (body["grant_type"], body["refresh_token"]) == ("refresh_token", REFRESH_TOKEN)


# -- errors --------------------------------------------------------------------

Permanent, Unavailable, Error = PermanentUpstreamError, UpstreamUnavailable, UpstreamError
HTML = "<!DOCTYPE html>\n<html lang=\"en\"><body><a href='/?a=b'>Sign in</a></body></html>"
HUBSPOT = {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"}
ATLASSIAN = {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}
ENTRA_EXPIRED = {"error": "invalid_grant", "error_description": "AADSTS700082: inactive"}
ENTRA_LOOP_CODES = {"error": "invalid_grant", "error_description": "loop", "error_codes": [50196]}
ENTRA_LOOP_TEXT = {"error": "invalid_grant", "error_description": "AADSTS50196: loop detected"}
ERROR_CASES: dict[str, tuple[int, Any, type[Exception]]] = {
    "invalid-grant-400": (400, {"error": "invalid_grant"}, Permanent),
    "invalid-client-401": (401, {"error": "invalid_client"}, Permanent),
    "zoho-200-invalid-code": (200, {"error": "invalid_code"}, Permanent),
    "slack-200-ok-false": (200, {"ok": False, "error": "invalid_refresh_token"}, Permanent),
    "github-200-json": (200, {"error": "bad_refresh_token"}, Permanent),
    "github-200-form": (200, "error=bad_verification_code&error_description=x+y", Permanent),
    "hubspot-legacy-400": (400, HUBSPOT, Permanent),
    "atlassian-403": (403, ATLASSIAN, Permanent),
    "entra-700082-expired": (400, ENTRA_EXPIRED, Permanent),
    "entra-50196-error-codes": (400, ENTRA_LOOP_CODES, Unavailable),
    "entra-50196-description": (400, ENTRA_LOOP_TEXT, Unavailable),
    "zoho-throttled-200": (200, ZOHO_THROTTLE, Unavailable),
    "zoho-throttled-400": (400, ZOHO_THROTTLE, Unavailable),
    "slack-ratelimited": (200, {"ok": False, "error": "ratelimited"}, Unavailable),
    "temporarily-unavailable": (400, {"error": "temporarily_unavailable"}, Unavailable),
    "429-empty": (429, "", Unavailable),
    "500-json": (500, {"error": "server_error"}, Unavailable),
    "502-html": (502, HTML, Unavailable),
    "503-empty": (503, "", Unavailable),
    "200-html": (200, HTML, Error),
    "200-empty": (200, "", Error),
    "200-plain-text": (200, "OK", Error),
    "json-without-access-token": (200, {"token_type": "bearer"}, Error),
    "empty-access-token": (200, {"access_token": ""}, Error),
    "json-list": (200, [{"access_token": "at"}], Error),
    "invalid-request": (400, {"error": "invalid_request"}, Error),
    "redirect-not-followed": (302, "", Error),
}


@pytest.mark.parametrize("flow", [exchange, refresh], ids=["exchange", "refresh"])
@pytest.mark.parametrize(
    ("status", "body", "expected"), list(ERROR_CASES.values()), ids=list(ERROR_CASES)
)
def test_error_answers_are_classified(
    oauth: ProviderClient,
    http: responses.RequestsMock,
    flow: Any,
    status: int,
    body: Any,
    expected: type[Exception],
) -> None:
    stub(http, status=status, body=body, headers={"Location": "https://elsewhere.test/"})
    with pytest.raises(Exception) as caught:
        flow(oauth)
    assert type(caught.value) is expected, caught.value
    assert CLIENT_SECRET not in str(caught.value)
    assert REFRESH_TOKEN not in str(caught.value)
    assert all(call.request.url == TOKEN_URL for call in http.calls)


@pytest.mark.parametrize(
    ("status", "retry_after", "seconds"),
    [(429, "30", 30.0), (503, "30", 30.0), (429, formatdate(T0 + 120, usegmt=True), 120.0)],
    ids=["429-seconds", "503-seconds", "429-http-date"],
)
def test_retry_after_is_reported_on_unavailable(
    oauth: ProviderClient,
    http: responses.RequestsMock,
    status: int,
    retry_after: str,
    seconds: float,
) -> None:
    stub(http, status=status, body={"error": "rate_limited"}, headers={"Retry-After": retry_after})
    with pytest.raises(UpstreamUnavailable) as caught:
        exchange(oauth)
    assert caught.value.retry_after == pytest.approx(seconds)


def test_provider_error_text_is_cleaned_and_truncated(
    oauth: ProviderClient, http: responses.RequestsMock
) -> None:
    description = "line one\r\nline two\x00\x1b[31m" + "x" * 5000
    stub(http, status=400, body={"error": "invalid_request", "error_description": description})
    with pytest.raises(UpstreamError) as caught:
        exchange(oauth)
    text = caught.value.description
    assert "line one line two" in text
    assert not re.search(r"[\x00-\x1f\x7f]", text)
    assert len(text) < 400


@pytest.mark.parametrize(
    "body",
    [
        {"error": "invalid_grant", "error_description": f"refresh token {REFRESH_TOKEN} revoked"},
        {"error": "invalid_client", "error_description": f"bad secret {CLIENT_SECRET}"},
    ],
    ids=["refresh-token-echoed", "secret-echoed"],
)
def test_exception_description_never_contains_the_secret_or_refresh_token(
    oauth: ProviderClient, http: responses.RequestsMock, body: dict[str, str]
) -> None:
    stub(http, status=400, body=body)
    with pytest.raises((UpstreamError, UpstreamUnavailable)) as caught:
        refresh(oauth)
    rendered = f"{caught.value} {caught.value.to_dict()}"
    assert REFRESH_TOKEN not in rendered
    assert CLIENT_SECRET not in rendered


def test_transport_exception_text_never_reaches_the_description(
    oauth: ProviderClient, http: responses.RequestsMock
) -> None:
    stub(http, body=requests.ConnectionError(f"refused for {REFRESH_TOKEN} {CLIENT_SECRET}"))
    with pytest.raises(UpstreamUnavailable) as caught:
        refresh(oauth)
    assert REFRESH_TOKEN not in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)


# -- transport: retries, deadline, timeouts -----------------------------------


def test_refresh_retries_5xx_then_succeeds_with_injected_sleep(
    oauth: ProviderClient, http: responses.RequestsMock, clock: FakeClock
) -> None:
    stub(http, status=503)
    stub(http, status=503)
    stub(http, body={"access_token": "at-after-retry"})
    assert refresh(oauth).access_token == "at-after-retry"
    assert len(http.calls) == 3
    assert len(clock.slept) == 2
    assert all(0 < delay <= 2 for delay in clock.slept)


def test_refresh_retries_connection_errors_then_succeeds(
    oauth: ProviderClient, http: responses.RequestsMock, clock: FakeClock
) -> None:
    stub(http, body=requests.ConnectionError("reset by peer"))
    stub(http, body={"access_token": "at"})
    assert refresh(oauth).access_token == "at"
    assert len(http.calls) == 2
    assert len(clock.slept) == 1


@pytest.mark.parametrize(
    "outcome",
    [503, requests.ConnectionError("[Errno 111] Connection refused")],
    ids=["503", "connection-refused"],
)
def test_refresh_gives_up_after_the_retries(
    oauth: ProviderClient, http: responses.RequestsMock, clock: FakeClock, outcome: Any
) -> None:
    if isinstance(outcome, int):
        stub(http, status=outcome)
    else:
        stub(http, body=outcome)
    with pytest.raises(UpstreamUnavailable):
        refresh(oauth)
    assert len(http.calls) == 1 + oauth.retries
    assert len(clock.slept) == oauth.retries


def test_refresh_stops_retrying_when_the_deadline_would_pass(
    oauth: ProviderClient, http: responses.RequestsMock, clock: FakeClock
) -> None:
    stub(http, status=503)
    deadline = clock() + 0.05  # shorter than any backoff delay
    with pytest.raises(UpstreamUnavailable):
        refresh(oauth, deadline=deadline)
    assert len(http.calls) == 1
    assert clock.slept == []
    assert clock() <= deadline


def test_refresh_is_not_retried_after_a_read_timeout(
    oauth: ProviderClient, http: responses.RequestsMock, clock: FakeClock
) -> None:
    # The provider may have rotated the refresh token before the answer was lost.
    stub(http, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(UpstreamUnavailable):
        refresh(oauth)
    assert len(http.calls) == 1
    assert clock.slept == []
