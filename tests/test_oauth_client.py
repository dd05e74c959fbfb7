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
from conftest import AUTHORIZE_URL, CLIENT_SECRET, T0, TOKEN_URL, FakeClock, register

from tokenkeep.config import Settings
from tokenkeep.errors import PermanentUpstreamError, UpstreamError, UpstreamUnavailable
from tokenkeep.models import Provider, TokenSet
from tokenkeep.oauth import ProviderClient, code_challenge_s256, new_code_verifier
from tokenkeep.service import TokenService

Mock = responses.RequestsMock
Client = ProviderClient
REDIRECT_URI = "http://127.0.0.1:8000/callback"
REFRESH_TOKEN = "refresh-token-value-5678"
FORM = "application/x-www-form-urlencoded"


def make_provider(**overrides: Any) -> Provider:
    fields: dict[str, Any] = {
        "alias": "acme",
        "client_id": "client-id",
        "client_secret": CLIENT_SECRET,
        "authorize_url": AUTHORIZE_URL,
        "token_url": TOKEN_URL,
        "scopes": ("read", "write"),
    }
    return Provider(**{**fields, **overrides})


@pytest.fixture
def oauth(clock: FakeClock) -> ProviderClient:
    return ProviderClient(
        requests.Session(), timeout=5, clock=clock, sleep=clock.sleep, jitter=lambda: 0.5
    )


@pytest.fixture
def http() -> Iterator[Mock]:
    with responses.RequestsMock() as mock:  # also fails a test that leaves a stub unused
        yield mock


def stub(http: Mock, status: int = 200, body: Any = "", **kw: Any) -> None:
    """Register one answer: dict/list as JSON, str as HTML, form or plain text, or an exception."""
    if isinstance(body, dict | list):
        http.post(TOKEN_URL, status=status, json=body, **kw)
    elif isinstance(body, str):
        kind = "text/html" if body.startswith("<") else FORM if "=" in body else "text/plain"
        http.post(TOKEN_URL, status=status, body=body, content_type=kind, **kw)
    else:
        http.post(TOKEN_URL, status=status, body=body, **kw)


def stub_outcome(http: Mock, outcome: int | Exception) -> None:
    """A status code with an empty body, or a transport exception."""
    if isinstance(outcome, int):
        stub(http, status=outcome)
    else:
        stub(http, body=outcome)


def sent_form(http: Mock, index: int = 0) -> dict[str, str]:
    return dict(parse_qsl(http.calls[index].request.body))


def authorize(oauth: Client, challenge: str | None = None, **overrides: Any) -> str:
    return oauth.authorization_url(
        make_provider(**overrides), state="st", redirect_uri=REDIRECT_URI, code_challenge=challenge
    )


def query(url: str) -> dict[str, str]:
    parsed = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(values) == 1 for values in parsed.values()), parsed  # no duplicated keys
    return {key: values[0] for key, values in parsed.items()}


def exchange(oauth: Client, provider: Provider | None = None, **kw: Any) -> TokenSet:
    kw.setdefault("code_verifier", "verifier-abc")
    return oauth.exchange_code(
        provider or make_provider(), code="code-123", redirect_uri=REDIRECT_URI, **kw
    )


def refresh(oauth: Client, provider: Provider | None = None, **kw: Any) -> TokenSet:
    return oauth.refresh(provider or make_provider(), REFRESH_TOKEN, **kw)


# -- authorization URL ---------------------------------------------------------


OURS = {
    "state": "st",
    "client_id": "client-id",
    "redirect_uri": REDIRECT_URI,
    "response_type": "code",
}
HOSTILE = dict.fromkeys(OURS, "https://evil.test")
OFFLINE = {"access_type": "offline", "prompt": "consent"}
TENANT_URL = AUTHORIZE_URL + "?tenant=contoso&aud=api"


def test_authorization_url_carries_the_code_flow_parameters(oauth: Client) -> None:
    url = authorize(oauth, challenge="chal")
    assert url.startswith(AUTHORIZE_URL + "?")
    pkce = {"code_challenge": "chal", "code_challenge_method": "S256"}
    assert query(url) == {**OURS, "scope": "read write", **pkce}


AUTHORIZE_CASES: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "space-separated-scopes": ({"scope_separator": " "}, {"scope": "read write"}),
    "comma-separated-scopes": ({"scope_separator": ","}, {"scope": "read,write"}),
    "extra-params-included": ({"authorize_params": OFFLINE}, {**OFFLINE, **OURS}),
    "existing-query-kept": ({"authorize_url": TENANT_URL}, {"tenant": "contoso", "aud": "api"}),
    "extras-cannot-override": ({"authorize_params": HOSTILE}, OURS),
}


@pytest.mark.parametrize(
    ("overrides", "expected"), list(AUTHORIZE_CASES.values()), ids=list(AUTHORIZE_CASES)
)
def test_authorization_url_follows_the_provider_settings(
    oauth: Client, overrides: dict[str, Any], expected: dict[str, str]
) -> None:
    url = authorize(oauth, challenge="chal", **overrides)
    assert url.startswith(AUTHORIZE_URL + "?")
    params = query(url)
    assert {key: params.get(key) for key in expected} == expected


def test_authorization_url_without_challenge_or_scopes_omits_them(oauth: Client) -> None:
    params = query(authorize(oauth, challenge=None, scopes=()))
    assert not {"code_challenge", "code_challenge_method", "scope"} & set(params)


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


# -- token requests ------------------------------------------------------------


def test_exchange_code_posts_the_authorization_code_grant(oauth: Client, http: Mock) -> None:
    stub(http, body={"access_token": "at"})
    exchange(oauth)
    body = sent_form(http)
    assert body["grant_type"] == "authorization_code"
    assert (body["code"], body["redirect_uri"]) == ("code-123", REDIRECT_URI)
    assert body["code_verifier"] == "verifier-abc"
    request = http.calls[0].request
    assert request.headers["Accept"] == "application/json"
    timeout = request.req_kwargs["timeout"]  # type: ignore[attr-defined]
    assert timeout is not None and max(timeout) <= 5  # defect 11: never without a timeout


def test_exchange_code_without_verifier_sends_no_code_verifier(oauth: Client, http: Mock) -> None:
    stub(http, body={"access_token": "at"})
    exchange(oauth, code_verifier=None)
    assert "code_verifier" not in sent_form(http)


def test_refresh_posts_the_refresh_token_grant(oauth: Client, http: Mock) -> None:
    stub(http, body={"access_token": "at"})
    refresh(oauth)
    body = sent_form(http)
    assert (body["grant_type"], body["refresh_token"]) == ("refresh_token", REFRESH_TOKEN)
    assert http.calls[0].request.headers["Accept"] == "application/json"


def test_client_secret_basic_form_encodes_id_and_secret_and_keeps_them_out_of_the_body(
    oauth: Client, http: Mock
) -> None:
    stub(http, body={"access_token": "at"})
    exchange(oauth, make_provider(client_id="id:with&chars", client_secret="sec:ret&x=y/z"))
    header = http.calls[0].request.headers["Authorization"]
    assert header.startswith("Basic ")
    # RFC 6749 section 2.3.1: each part form-encoded, then joined by ':' and base64'd.
    assert base64.b64decode(header[6:]).decode() == "id%3Awith%26chars:sec%3Aret%26x%3Dy%2Fz"
    assert "client_secret" not in sent_form(http)
    assert "sec:ret" not in str(http.calls[0].request.body)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("client_secret_post", {"client_id": "client-id", "client_secret": CLIENT_SECRET}),
        ("none", {"client_id": "client-id"}),
    ],
)
def test_body_client_auth_sends_credentials_in_the_body_and_no_basic_header(
    oauth: Client, http: Mock, method: str, expected: dict[str, str]
) -> None:
    stub(http, body={"access_token": "at"})
    exchange(oauth, make_provider(auth_method=method))
    body = sent_form(http)
    assert {k: body[k] for k in ("client_id", "client_secret") if k in body} == expected
    assert "Authorization" not in http.calls[0].request.headers


def test_token_params_are_merged_but_cannot_replace_the_grant(oauth: Client, http: Mock) -> None:
    stub(http, body={"access_token": "at"})
    exchange(oauth, make_provider(token_params={"expiring": "1", "grant_type": "password"}))
    assert sent_form(http)["expiring"] == "1"
    assert sent_form(http)["grant_type"] == "authorization_code"


def test_unsupported_auth_method_fails_without_calling_the_provider(
    oauth: Client, http: Mock
) -> None:
    with pytest.raises(UpstreamError):
        exchange(oauth, make_provider(auth_method="private_key_jwt"))
    assert len(http.calls) == 0


# -- parsing -------------------------------------------------------------------


def test_json_response_becomes_a_token_set_with_absolute_expiry_and_extras(
    oauth: Client, http: Mock, clock: FakeClock
) -> None:
    clock.advance(1000)
    body = {"access_token": "1000.at", "refresh_token": "1000.rt", "token_type": "Bearer"}
    body |= {"expires_in": 3600, "scope": "ZohoCRM.ALL", "api_domain": "https://www.zohoapis.eu"}
    stub(http, body=body)
    tokens = exchange(oauth)
    assert (tokens.access_token, tokens.refresh_token) == ("1000.at", "1000.rt")
    assert tokens.obtained_at == T0 + 1000
    assert tokens.expires_at == T0 + 1000 + 3600
    assert tokens.scope == "ZohoCRM.ALL"
    assert dict(tokens.extras) == {"api_domain": "https://www.zohoapis.eu"}


def test_form_encoded_github_response_is_parsed(oauth: Client, http: Mock) -> None:
    stub(http, body="access_token=gho_x&scope=repo%2Cgist&token_type=bearer")
    tokens = exchange(oauth)
    assert (tokens.access_token, tokens.scope, tokens.token_type) == (
        "gho_x",
        "repo,gist",
        "Bearer",
    )
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
def test_expiry_comes_from_expires_in_or_the_provider_default(
    oauth: Client,
    http: Mock,
    fields: dict[str, Any],
    default_lifetime: int | None,
    lifetime: int | None,
) -> None:
    stub(http, body={"access_token": "at", **fields})
    tokens = exchange(oauth, make_provider(default_lifetime_seconds=default_lifetime))
    assert tokens.expires_at == (None if lifetime is None else T0 + lifetime)


@pytest.mark.parametrize("token_type", ["bearer", "BEARER", "Bearer", None])
def test_token_type_bearer_is_normalised(oauth: Client, http: Mock, token_type: str | None) -> None:
    body = {"access_token": "at"} | ({} if token_type is None else {"token_type": token_type})
    stub(http, body=body)
    assert exchange(oauth).token_type == "Bearer"


def test_list_valued_scope_is_joined(oauth: Client, http: Mock) -> None:
    stub(http, body={"access_token": "at", "scope": ["read", "write"]})
    assert exchange(oauth).scope == "read write"


def test_unknown_fields_are_kept_as_extras_and_standard_fields_are_not(
    oauth: Client, http: Mock
) -> None:
    extras = {
        "instance_url": "https://acme.my.salesforce.com",
        "id_token": "eyJ.x",
        "api_domain": "d",
    }
    standard = {"access_token": "at", "refresh_token": "rt", "token_type": "Bearer"}
    stub(http, body={**standard, "expires_in": 3600, "scope": "api", **extras})
    assert dict(exchange(oauth).extras) == extras


def test_refresh_response_without_refresh_token_yields_none_for_the_caller_to_keep_the_old(
    oauth: Client, http: Mock
) -> None:
    stub(http, body={"access_token": "new-at", "expires_in": 3599})
    tokens = refresh(oauth)
    assert (tokens.access_token, tokens.refresh_token) == ("new-at", None)


# -- errors --------------------------------------------------------------------

Permanent, Unavailable, Error = PermanentUpstreamError, UpstreamUnavailable, UpstreamError
HTML = "<!DOCTYPE html>\n<html lang=\"en\"><body><a href='/?a=b'>Sign in</a></body></html>"
HUBSPOT = {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"}
ATLASSIAN = {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}
ENTRA_EXPIRED = {"error": "invalid_grant", "error_description": "AADSTS700082: inactive"}
ENTRA_LOOP_CODES = {"error": "invalid_grant", "error_description": "loop", "error_codes": [50196]}
ENTRA_LOOP_TEXT = {"error": "invalid_grant", "error_description": "AADSTS50196: loop detected"}
ZOHO_THROTTLE = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. "
    "Please try again after some time.",
}
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


@pytest.mark.parametrize("flow", [exchange, refresh])
@pytest.mark.parametrize(
    ("status", "body", "expected"), list(ERROR_CASES.values()), ids=list(ERROR_CASES)
)
def test_error_answers_are_classified(
    oauth: Client, http: Mock, flow: Any, status: int, body: Any, expected: type[Exception]
) -> None:
    stub(http, status=status, body=body, headers={"Location": "https://elsewhere.test/"})
    with pytest.raises(Exception) as caught:
        flow(oauth)
    assert type(caught.value) is expected, caught.value
    assert all(call.request.url == TOKEN_URL for call in http.calls)  # redirects not followed


@pytest.mark.parametrize(
    ("status", "retry_after", "seconds"),
    [(429, "30", 30.0), (503, "30", 30.0), (429, formatdate(T0 + 120, usegmt=True), 120.0)],
    ids=["429-seconds", "503-seconds", "429-http-date"],
)
def test_retry_after_is_reported_on_unavailable(
    oauth: Client, http: Mock, status: int, retry_after: str, seconds: float
) -> None:
    stub(http, status=status, body={"error": "rate_limited"}, headers={"Retry-After": retry_after})
    with pytest.raises(UpstreamUnavailable) as caught:
        exchange(oauth)
    assert caught.value.retry_after == pytest.approx(seconds)


def test_provider_error_text_is_cleaned_and_truncated(oauth: Client, http: Mock) -> None:
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
        {"error": "invalid_grant", "message": f"{CLIENT_SECRET}/{REFRESH_TOKEN}"},
        {"error": f"invalid_grant:{REFRESH_TOKEN}"},
        requests.ConnectionError(f"refused for {REFRESH_TOKEN} {CLIENT_SECRET}"),
    ],
    ids=["token-echoed", "secret-echoed", "message-field", "in-error-code", "transport-text"],
)
def test_exception_description_never_contains_the_secret_or_refresh_token(
    oauth: Client, http: Mock, body: Any
) -> None:
    stub(http, status=400, body=body)
    with pytest.raises((UpstreamError, UpstreamUnavailable)) as caught:
        refresh(oauth)
    rendered = f"{caught.value} {caught.value.to_dict()}"
    assert REFRESH_TOKEN not in rendered
    assert CLIENT_SECRET not in rendered


# -- transport: retries, deadline, timeouts -----------------------------------


@pytest.mark.parametrize(
    "failures",
    [[503, 503], [requests.ConnectionError("reset by peer")], [502, requests.ConnectTimeout()]],
    ids=["503-503", "connection-error", "502-connect-timeout"],
)
def test_refresh_retries_transient_failures_then_succeeds_with_injected_sleep(
    oauth: Client, http: Mock, clock: FakeClock, failures: list[Any]
) -> None:
    for failure in failures:
        stub_outcome(http, failure)
    stub(http, body={"access_token": "at-after-retry"})
    assert refresh(oauth).access_token == "at-after-retry"
    assert len(http.calls) == len(failures) + 1
    assert len(clock.slept) == len(failures)
    assert all(0 < delay <= 2 for delay in clock.slept)


@pytest.mark.parametrize(
    "outcome",
    [503, requests.ConnectionError("[Errno 111] Connection refused")],
    ids=["503", "connection-refused"],
)
def test_refresh_gives_up_after_the_retries(
    oauth: Client, http: Mock, clock: FakeClock, outcome: Any
) -> None:
    stub_outcome(http, outcome)
    with pytest.raises(UpstreamUnavailable):
        refresh(oauth)
    assert len(http.calls) == 1 + oauth.retries
    assert len(clock.slept) == oauth.retries


def test_refresh_stops_retrying_when_the_deadline_would_pass(
    oauth: Client, http: Mock, clock: FakeClock
) -> None:
    stub(http, status=503)
    deadline = clock() + 0.05  # shorter than any backoff delay
    with pytest.raises(UpstreamUnavailable):
        refresh(oauth, deadline=deadline)
    assert len(http.calls) == 1
    assert clock.slept == []
    assert clock() <= deadline


@pytest.mark.parametrize(
    ("flow", "outcome"),
    [
        (refresh, requests.ReadTimeout("read timed out")),  # the provider may have rotated
        (exchange, 503),  # authorization codes are single use
        (exchange, requests.ConnectionError("[Errno 111] Connection refused")),
    ],
    ids=["refresh-read-timeout", "exchange-503", "exchange-connection-refused"],
)
def test_not_retried_when_a_retry_could_replay_a_used_grant(
    oauth: Client, http: Mock, clock: FakeClock, flow: Any, outcome: Any
) -> None:
    stub_outcome(http, outcome)
    with pytest.raises(UpstreamUnavailable):
        flow(oauth)
    assert len(http.calls) == 1
    assert clock.slept == []


def test_connect_and_read_timeouts_together_fit_inside_the_refresh_lease(
    http: Mock, service: TokenService, settings: Settings
) -> None:
    from tokenkeep.oauth import CONNECT_TIMEOUT_SECONDS

    register(service)
    http.post(TOKEN_URL, json={"access_token": "a", "expires_in": 3600})
    provider = service.repo.get_provider("acme")
    assert provider is not None

    service.client.refresh(provider, "refresh-1")

    connect, read = http.calls[0].request.req_kwargs["timeout"]
    assert connect <= CONNECT_TIMEOUT_SECONDS
    assert read <= settings.http_timeout_seconds
    assert connect + read < service.lease_seconds
