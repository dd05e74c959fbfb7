"""Bad-input battery for the HTTP API and the browser pages.

Every case sends something odd (badly encoded, oversized, duplicated, the
wrong method, a mangled Authorization header) at an app holding a connected
provider, and asserts: no 500 and no traceback; the documented JSON error
shape with the right code on the API (the HTML error page on browser
routes); no call to the provider; and the stored connection intact, still
served as before.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import responses
from conftest import CLIENT_SECRET, connect, register
from flask.testing import FlaskClient
from intact import Snapshot, pending_count, snapshot
from werkzeug.test import TestResponse

from tokenkeep.config import Settings
from tokenkeep.service import TokenService, browser_binding

API_GET = ["/api/token", "/api/token.php"]
API_POST = ["/api/token/refresh", "/api/token/refresh.php"]
AUTH = ["/auth", "/auth.php"]
CALLBACK = ["/callback", "/callback.php"]
ROUTES = {
    **dict.fromkeys(API_GET, "GET"),
    **dict.fromkeys(API_POST, "POST"),
    **dict.fromkeys(AUTH, "GET"),
    **dict.fromkeys(CALLBACK, "GET"),
    "/healthz": "GET",
}
BROWSER = set(AUTH) | set(CALLBACK)
ERROR_KEYS = {"error", "error_description"}
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@pytest.fixture
def world(connected: TokenService) -> Iterator[tuple[TokenService, Snapshot]]:
    """A connected `acme` (and `bravo`); no request may reach a provider."""
    register(connected, "bravo")
    connect(connected, "bravo", access_token="bravo-access", refresh_token="bravo-refresh")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield connected, snapshot(connected.repo)
        assert len(rsps.calls) == 0, "a bad request reached the provider"


def assert_intact(client: FlaskClient, service: TokenService, before: Snapshot, key: str) -> None:
    """The stored connection is unchanged, and still served as before."""
    assert snapshot(service.repo) == before
    served = client.get("/api/token?provider=acme", headers={"Authorization": f"Bearer {key}"})
    assert served.status_code == 200
    assert served.get_json()["access_token"] == "access-1"
    assert snapshot(service.repo) == before


def assert_clean(response: TestResponse) -> str:
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    assert CLIENT_SECRET not in text
    assert "access-1" not in text and "refresh-1" not in text
    return text


def assert_json_error(response: TestResponse, status: int, code: str) -> None:
    """The documented error shape `{"error", "error_description"}` with this code."""
    assert_clean(response)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"authorize_url", "reauthorize_url"}
    assert body["error"] == code
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"


def assert_html_error(response: TestResponse, status: int) -> None:
    """The HTML error page of the browser routes, with every security header."""
    text = assert_clean(response)
    assert response.status_code == status, text[:500]
    assert response.mimetype == "text/html"
    if response.request.method != "HEAD":
        assert "<html" in text
    assert_html_headers(response)


def assert_html_headers(response: TestResponse) -> None:
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


# -- the provider parameter ---------------------------------------------------------

BAD_ALIASES = [
    pytest.param("%ff", id="invalid-utf8-ff"),
    pytest.param("%fe%ff", id="invalid-utf8-bom"),
    pytest.param("ac%c3me", id="truncated-utf8"),
    pytest.param("%00", id="nul"),
    pytest.param("acme%00", id="trailing-nul"),
    pytest.param("%00acme", id="leading-nul"),
    pytest.param("a" * 10_000, id="10kB"),
    pytest.param("a" * 65, id="65-chars"),
    pytest.param("ACME", id="upper"),
    pytest.param("Acme", id="capitalised"),
    pytest.param("acmE", id="last-upper"),
    pytest.param(quote("\u0430cme"), id="cyrillic-a-lookalike"),
    pytest.param(quote("\uff41\uff43\uff4d\uff45"), id="fullwidth-lookalike"),
    pytest.param(quote("acme\u200b"), id="zero-width-space"),
    pytest.param(quote("ac\u00adme"), id="soft-hyphen"),
    pytest.param(quote("acmé"), id="accent"),
    pytest.param(quote("🔥"), id="emoji"),
    pytest.param("acme%20", id="trailing-space"),
    pytest.param("%20acme", id="leading-space"),
    pytest.param("acme+", id="trailing-plus-space"),
    pytest.param("acme%09", id="tab"),
    pytest.param("acme%0d%0a", id="crlf"),
    pytest.param("acme%0d%0aX-Injected:%201", id="header-injection"),
    pytest.param("acme.", id="dot"),
    pytest.param("acme/", id="slash"),
    pytest.param("..%2f..%2fetc%2fpasswd", id="traversal"),
    pytest.param("acme%27%20OR%201=1", id="sql-quote"),
    pytest.param("%3Cscript%3Ealert(1)%3C%2Fscript%3E", id="script"),
    pytest.param("%", id="lone-percent"),
    pytest.param("%zz", id="bad-escape"),
    pytest.param("acme%", id="trailing-percent"),
    pytest.param("-acme", id="leading-dash"),
    pytest.param("_acme", id="leading-underscore"),
    pytest.param("acme%2Cbravo", id="comma-list"),
]


@pytest.mark.parametrize("alias", BAD_ALIASES)
@pytest.mark.parametrize("path", API_GET + API_POST)
def test_api_rejects_a_malformed_alias_with_invalid_request(
    client: FlaskClient, world, api_headers: dict[str, str], settings: Settings, path: str, alias
) -> None:
    service, before = world

    response = client.open(f"{path}?provider={alias}", method=ROUTES[path], headers=api_headers)

    assert_json_error(response, 400, "invalid_request")
    assert "X-Injected" not in response.headers
    assert_intact(client, service, before, settings.api_secret_token)


ODD_QUERIES = [
    pytest.param("", 400, "invalid_request", id="no-provider"),
    pytest.param("provider=", 400, "invalid_request", id="empty-provider"),
    pytest.param("provider", 400, "invalid_request", id="provider-without-equals"),
    pytest.param("provider=acme&provider=acme", 400, "invalid_request", id="repeated-same"),
    pytest.param("provider=acme&provider=bravo", 400, "invalid_request", id="repeated-other"),
    pytest.param("provider=&provider=acme", 400, "invalid_request", id="empty-then-valid"),
    pytest.param("provider[]=acme", 400, "invalid_request", id="php-array"),
    pytest.param("Provider=acme", 400, "invalid_request", id="capitalised-key"),
    pytest.param("PROVIDER=acme", 400, "invalid_request", id="upper-key"),
    pytest.param("provider%00=acme", 400, "invalid_request", id="nul-in-key"),
    pytest.param("alias=acme", 400, "invalid_request", id="wrong-key"),
    pytest.param("provider=nope", 404, "unknown_provider", id="unknown-provider"),
    pytest.param("provider=" + "z" * 64, 404, "unknown_provider", id="unknown-64-chars"),
]
EXTRA_QUERIES = [
    pytest.param("provider=acme&" + "x=1&" * 500, id="500-extra-params"),
    pytest.param("provider=acme&junk=" + "%ff" * 3000, id="10kB-junk-param"),
    pytest.param("provider=acme&access_token=forged&scope=admin", id="reserved-names"),
    pytest.param("provider=acme&Provider=bravo", id="case-variant-key-ignored"),
]


@pytest.mark.parametrize(("query", "status", "code"), ODD_QUERIES)
@pytest.mark.parametrize("path", API_GET + API_POST)
def test_api_handles_missing_repeated_and_odd_parameters(
    client: FlaskClient,
    world,
    api_headers: dict[str, str],
    settings: Settings,
    path: str,
    query: str,
    status: int,
    code: str,
) -> None:
    service, before = world

    response = client.open(f"{path}?{query}", method=ROUTES[path], headers=api_headers)

    assert_json_error(response, status, code)
    assert_intact(client, service, before, settings.api_secret_token)


@pytest.mark.parametrize("query", EXTRA_QUERIES)
@pytest.mark.parametrize("path", API_GET)
def test_api_ignores_unknown_extra_parameters(
    client: FlaskClient, world, api_headers: dict[str, str], settings: Settings, path: str, query
) -> None:
    service, before = world

    response = client.get(f"{path}?{query}", headers=api_headers)

    assert response.status_code == 200
    assert response.get_json()["access_token"] == "access-1"
    assert response.get_json()["provider"] == "acme"
    assert_intact(client, service, before, settings.api_secret_token)


BAD_MIN_VALID = [
    pytest.param("-1", id="negative"),
    pytest.param("-0", id="minus-zero"),
    pytest.param("+5", id="plus"),
    pytest.param("1e3", id="exponent"),
    pytest.param("0x10", id="hex"),
    pytest.param("1.0", id="decimal"),
    pytest.param("%205", id="leading-space"),
    pytest.param("5%20", id="trailing-space"),
    pytest.param(quote("\u0665"), id="arabic-indic-digit"),
    pytest.param(quote("\uff15"), id="fullwidth-digit"),
    pytest.param("%ff", id="invalid-utf8"),
    pytest.param("5%00", id="nul"),
    pytest.param("9" * 10_000, id="10kB-digits"),
    pytest.param("31536001", id="above-a-year"),
    pytest.param("NaN", id="nan"),
    pytest.param("5&min_valid=5", id="repeated"),
]


@pytest.mark.parametrize("value", BAD_MIN_VALID)
@pytest.mark.parametrize("path", API_GET)
def test_api_rejects_a_malformed_min_valid(
    client: FlaskClient, world, api_headers: dict[str, str], settings: Settings, path: str, value
) -> None:
    service, before = world

    response = client.get(f"{path}?provider=acme&min_valid={value}", headers=api_headers)

    assert_json_error(response, 400, "invalid_request")
    assert_intact(client, service, before, settings.api_secret_token)


# -- the Authorization header -----------------------------------------------------

BAD_BEARER = [
    pytest.param(None, id="missing"),
    pytest.param("", id="empty"),
    pytest.param("Bearer", id="scheme-only"),
    pytest.param("Bearer ", id="scheme-and-space"),
    pytest.param("Bearer\tKEY", id="tab-separator"),
    pytest.param("BearerKEY", id="no-separator"),
    pytest.param("Bearer: KEY", id="colon"),
    pytest.param("Bearer KEY[:-1]", id="truncated-by-one"),
    pytest.param("Bearer KEY[:8]", id="truncated-prefix"),
    pytest.param("Bearer KEYx", id="one-extra-char"),
    pytest.param("Bearer xKEY", id="one-leading-char"),
    pytest.param("Bearer KEY KEY", id="key-twice"),
    pytest.param("Bearer KEY,", id="trailing-comma"),
    pytest.param('Bearer "KEY"', id="quoted"),
    pytest.param("Bearer KEY\x00", id="trailing-nul"),
    pytest.param("Bearer KEY\xa0", id="trailing-nbsp"),
    pytest.param("Bearer KEY\x0b", id="trailing-vertical-tab"),
    pytest.param("Bearer KEY[upper]", id="key-upper-cased"),
    pytest.param("Bearer \xe4\xf6\xfc", id="latin1-key"),
    pytest.param("Bearer " + "ключ".encode().decode("latin-1"), id="utf8-bytes-key"),
    pytest.param("Bearer " + "k" * 10_000, id="10kB-key"),
    pytest.param("Bearer tk_", id="scoped-prefix-only"),
    pytest.param("Bearer tk_KEY", id="master-with-scoped-prefix"),
    pytest.param("Bearer Bearer KEY", id="scheme-twice"),
    pytest.param("Token KEY", id="other-scheme"),
    pytest.param("Basic KEY", id="basic-with-key"),
    pytest.param("BASIC-ADMIN", id="basic-admin-credentials"),
    pytest.param("KEY", id="key-without-scheme"),
    pytest.param("Bearer wrong, Bearer KEY", id="two-headers-joined"),
    pytest.param("Bearer KEY, Bearer KEY", id="same-header-twice-joined"),
]


def _bearer_header(template: str | None, key: str, admin_password: str) -> dict[str, str]:
    if template is None:
        return {}
    if template == "BASIC-ADMIN":
        return {"Authorization": basic(b"admin", admin_password.encode())}
    value = (
        template.replace("KEY[:-1]", key[:-1])
        .replace("KEY[:8]", key[:8])
        .replace("KEY[upper]", key.upper())
        .replace("KEY", key)
    )
    return {"Authorization": value}


@pytest.mark.parametrize("authorization", BAD_BEARER)
@pytest.mark.parametrize("path", API_GET + API_POST)
def test_api_without_a_well_formed_valid_bearer_key_is_401(
    client: FlaskClient, world, settings: Settings, path: str, authorization: str | None
) -> None:
    service, before = world
    key = settings.api_secret_token
    headers = _bearer_header(authorization, key, settings.admin_password)

    response = client.open(f"{path}?provider=acme", method=ROUTES[path], headers=headers)

    assert_json_error(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert_intact(client, service, before, key)


@pytest.mark.parametrize("suffix", ["\n", "\r", "\r\n"], ids=["newline", "carriage-return", "crlf"])
@pytest.mark.parametrize("path", API_GET)
def test_api_key_with_a_trailing_line_break_is_refused(
    client: FlaskClient, world, settings: Settings, path: str, suffix: str
) -> None:
    # The test client refuses line breaks in headers; a raw WSGI environ does not.
    service, before = world
    environ = {"HTTP_AUTHORIZATION": f"Bearer {settings.api_secret_token}{suffix}"}

    response = client.get(f"{path}?provider=acme", environ_overrides=environ)

    assert_json_error(response, 401, "invalid_token")
    assert_intact(client, service, before, settings.api_secret_token)


@pytest.mark.parametrize(
    "template",
    ["bearer KEY", "BEARER KEY", "bEaReR KEY", "Bearer  KEY", "Bearer KEY ", "Bearer KEY\t"],
    ids=[
        "lower-scheme",
        "upper-scheme",
        "mixed-scheme",
        "two-spaces",
        "trailing-sp",
        "trailing-tab",
    ],
)
@pytest.mark.parametrize("path", API_GET)
def test_api_accepts_the_valid_key_with_any_scheme_case_and_optional_whitespace(
    client: FlaskClient, world, settings: Settings, path: str, template: str
) -> None:
    # RFC 9110 section 11.1: the scheme is case-insensitive; 5.6.3: optional whitespace.
    service, before = world
    headers = {"Authorization": template.replace("KEY", settings.api_secret_token)}

    response = client.get(f"{path}?provider=acme", headers=headers)

    assert response.status_code == 200
    assert response.get_json()["access_token"] == "access-1"
    assert_intact(client, service, before, settings.api_secret_token)


@pytest.mark.parametrize("path", API_GET + API_POST)
@pytest.mark.parametrize("alias", ["bravo", "nope"])
def test_scoped_key_outside_its_scope_is_403_insufficient_scope(
    client: FlaskClient, world, settings: Settings, path: str, alias: str
) -> None:
    service, before = world
    key = service.keys.create("billing", ("acme",))

    response = client.open(
        f"{path}?provider={alias}", method=ROUTES[path], headers={"Authorization": f"Bearer {key}"}
    )

    assert_json_error(response, 403, "insufficient_scope")
    assert_intact(client, service, before, settings.api_secret_token)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"Host": "evil.example"}, id="foreign-host"),
        pytest.param({"Host": "x" * 10_000}, id="10kB-host"),
        pytest.param({"X-Forwarded-For": "1.2.3.4, 5.6.7.8"}, id="forwarded-for"),
        pytest.param({"Cookie": "tokenkeep_state=" + "c" * 10_000}, id="10kB-cookie"),
        pytest.param({"Cookie": "tokenkeep_state=\xe4\xf6"}, id="non-ascii-cookie"),
        pytest.param({"Content-Type": "application/json"}, id="json-content-type"),
        pytest.param({"Accept": "text/html"}, id="accepts-html"),
        pytest.param({"X-Unicode": "caf\xe9 \xff"}, id="latin1-header"),
    ],
)
@pytest.mark.parametrize("path", API_GET)
def test_odd_extra_headers_change_nothing_on_the_api(
    client: FlaskClient,
    world,
    api_headers: dict[str, str],
    settings: Settings,
    path: str,
    header: dict[str, str],
) -> None:
    service, before = world

    response = client.get(f"{path}?provider=acme", headers={**api_headers, **header})

    if "Host" in header and len(header["Host"]) > 255:  # werkzeug refuses an invalid host
        assert_json_error(response, 400, "invalid_request")
        assert_intact(client, service, before, settings.api_secret_token)
        return
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json()["access_token"] == "access-1"
    assert_intact(client, service, before, settings.api_secret_token)


def test_a_garbage_body_on_a_forced_refresh_is_ignored_not_parsed(
    client: FlaskClient, world, settings: Settings
) -> None:
    service, before = world

    response = client.post(
        "/api/token/refresh?provider=%ff",
        data=b"\xff\xfe{not json" * 1000,
        headers={
            "Authorization": f"Bearer {settings.api_secret_token}",
            "Content-Type": "application/json",
        },
    )

    assert_json_error(response, 400, "invalid_request")
    assert_intact(client, service, before, settings.api_secret_token)


# -- every method on every route ---------------------------------------------------

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("path", sorted(ROUTES))
def test_every_method_on_every_route_without_credentials(
    client: FlaskClient, world, settings: Settings, path: str, method: str
) -> None:
    service, before = world
    allowed = ROUTES[path]

    response = client.open(f"{path}?provider=acme", method=method)

    assert_clean(response)
    if method == "OPTIONS":
        assert response.status_code == 200
        assert allowed in response.headers["Allow"]
        assert response.get_data() == b""
    elif method not in (allowed, "HEAD") or (method == "HEAD" and allowed == "POST"):
        assert response.status_code == 405
        assert allowed in response.headers["Allow"]
        if path in BROWSER:
            assert_html_error(response, 405)
        elif method != "HEAD":
            assert_json_error(response, 405, "method_not_allowed")
    else:
        expected = {"/healthz": 200, "/callback": 400, "/callback.php": 400}.get(path, 401)
        assert response.status_code == expected
        if method == "HEAD":
            assert response.get_data() == b""
        elif path in BROWSER:
            assert_html_error(response, expected)
        elif expected == 401:
            assert_json_error(response, 401, "invalid_token")
    assert pending_count(service.repo) == 0
    assert_intact(client, service, before, settings.api_secret_token)


@pytest.mark.parametrize(
    "path",
    [
        "/api/token/",
        "/API/TOKEN",
        "/api/token.PHP",
        "/api//token",
        "/api/token%00",
        "/api/token.php.bak",
        "/auth/",
        "/callback/x",
        "/healthz/",
        "/static/..%2fconfig.toml",
        "/static/%2e%2e/%2e%2e/config.toml",
        "/static/tokenkeep.css%00",
        "/static//tokenkeep.css",
        "//api/token",
        "/%ff",
        "/" + "a" * 10_000,
    ],
)
def test_unknown_paths_are_a_json_404(
    client: FlaskClient, world, api_headers: dict[str, str], settings: Settings, path: str
) -> None:
    service, before = world

    response = client.get(path, headers=api_headers)

    assert_json_error(response, 404, "not_found")
    assert_intact(client, service, before, settings.api_secret_token)


# -- /auth ---------------------------------------------------------------------------

AUTH_ALIASES = [
    pytest.param("%ff", id="invalid-utf8"),
    pytest.param("acme%00", id="nul"),
    pytest.param("a" * 10_000, id="10kB"),
    pytest.param("ACME", id="upper"),
    pytest.param(quote("\u0430cme"), id="cyrillic-lookalike"),
    pytest.param("acme%20", id="trailing-space"),
    pytest.param("acme%0d%0aSet-Cookie:%20x=1", id="header-injection"),
    pytest.param("", id="empty"),
    pytest.param("acme&provider=acme", id="repeated"),
    pytest.param("acme&provider=bravo", id="repeated-other"),
]


@pytest.mark.parametrize("alias", AUTH_ALIASES)
@pytest.mark.parametrize("path", AUTH)
def test_auth_as_admin_with_a_malformed_alias_is_a_400_page_and_starts_nothing(
    client: FlaskClient, world, admin_headers: dict[str, str], settings: Settings, path: str, alias
) -> None:
    service, before = world

    response = client.get(f"{path}?provider={alias}", headers=admin_headers)

    assert_html_error(response, 400)
    assert "Location" not in response.headers
    assert "Set-Cookie" not in response.headers
    assert pending_count(service.repo) == 0
    assert_intact(client, service, before, settings.api_secret_token)


BAD_BASIC = [
    pytest.param(None, id="anonymous"),
    pytest.param("", id="empty"),
    pytest.param("Basic", id="scheme-only"),
    pytest.param("Basic ", id="scheme-and-space"),
    pytest.param("Basic !!!", id="not-base64"),
    pytest.param("Basic YWRtaW46", id="empty-password"),
    pytest.param("Basic YWRtaW4=", id="no-colon"),
    pytest.param("Basic YWRtaW46cGFzcw", id="bad-padding"),
    pytest.param("USER:admin PW:PASSWORD\n", id="password-with-newline"),
    pytest.param("USER:ADMIN PW:PASSWORD", id="upper-user"),
    pytest.param("USER:admin PW:PASSWORD[upper]", id="upper-password"),
    pytest.param("USER:admin PW:PASSWORD[:-1]", id="truncated-password"),
    pytest.param("USER:admin PW:\xff\xfe", id="non-utf8-password"),
    pytest.param("USER: admin PW:PASSWORD", id="space-in-user"),
    pytest.param("USER:admin\x00 PW:PASSWORD", id="nul-in-user"),
    pytest.param("RAW:Basic \xe4\xe4\xe4\xe4", id="latin1-header"),
    pytest.param("RAW:Bearer APIKEY", id="api-key-as-bearer"),
    pytest.param("RAW:Basic PASSWORD", id="bare-password"),
    pytest.param("RAW:Digest username=admin", id="digest"),
]


def _basic_header(template: str | None, password: str, api_key: str) -> dict[str, str]:
    if template is None:
        return {}
    if template.startswith("RAW:"):
        value = template[4:].replace("PASSWORD", password).replace("APIKEY", api_key)
        return {"Authorization": value}
    if not template.startswith("USER:"):
        return {"Authorization": template}
    user, _, pw = template[5:].partition(" PW:")
    pw = (
        pw.replace("PASSWORD[upper]", password.upper())
        .replace("PASSWORD[:-1]", password[:-1])
        .replace("PASSWORD", password)
    )
    return {"Authorization": basic(user.encode("latin-1"), pw.encode("latin-1"))}


@pytest.mark.parametrize("authorization", BAD_BASIC)
@pytest.mark.parametrize("path", AUTH)
def test_auth_without_the_admin_login_is_a_401_page_and_starts_nothing(
    client: FlaskClient, world, settings: Settings, path: str, authorization: str | None
) -> None:
    service, before = world
    headers = _basic_header(authorization, settings.admin_password, settings.api_secret_token)

    response = client.get(f"{path}?provider=acme", headers=headers)

    assert_html_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert "Location" not in response.headers
    assert client.get_cookie("tokenkeep_state") is None
    assert pending_count(service.repo) == 0
    assert_intact(client, service, before, settings.api_secret_token)


@pytest.mark.parametrize("scheme", ["basic", "BASIC", "Basic"])
def test_auth_accepts_the_admin_login_with_any_scheme_case(
    client: FlaskClient, world, settings: Settings, scheme: str
) -> None:
    service, before = world
    raw = base64.b64encode(f"admin:{settings.admin_password}".encode()).decode()

    response = client.get("/auth?provider=acme", headers={"Authorization": f"{scheme} {raw}"})

    assert response.status_code == 302
    assert_html_headers(response)
    assert pending_count(service.repo) == 1
    assert_intact(client, service, before, settings.api_secret_token)  # starting changes nothing


BAD_LINKS = [
    pytest.param({"expires": quote("\u00b2")}, id="superscript-expiry"),
    pytest.param({"expires": quote("\u0661\u0662\u0663")}, id="arabic-indic-expiry"),
    pytest.param({"expires": "9" * 5000}, id="5000-digit-expiry"),
    pytest.param({"expires": "-1"}, id="negative-expiry"),
    pytest.param({"expires": "1e10"}, id="exponent-expiry"),
    pytest.param({"expires": ""}, id="empty-expiry"),
    pytest.param({"expires": "%ff"}, id="invalid-utf8-expiry"),
    pytest.param({"nonce": ""}, id="empty-nonce"),
    pytest.param({"nonce": "%00"}, id="nul-nonce"),
    pytest.param({"nonce": "n" * 10_000}, id="10kB-nonce"),
    pytest.param({"sig": ""}, id="empty-sig"),
    pytest.param({"sig": "%ff%fe"}, id="invalid-utf8-sig"),
    pytest.param({"sig": "s" * 10_000}, id="10kB-sig"),
    pytest.param({"sig": quote("\u0455ig")}, id="lookalike-sig"),
]


@pytest.mark.parametrize("change", BAD_LINKS)
@pytest.mark.parametrize("path", AUTH)
def test_a_malformed_signed_link_is_a_401_page_and_starts_nothing(
    client: FlaskClient, world, settings: Settings, path: str, change: dict[str, str]
) -> None:
    service, before = world
    parts = {"provider": "acme", "expires": "1900000000", "nonce": "nonce", "sig": "sig"}
    parts.update(change)
    query = "&".join(f"{k}={v}" for k, v in parts.items())

    response = client.get(f"{path}?{query}")

    assert_html_error(response, 401)
    assert "Location" not in response.headers
    assert pending_count(service.repo) == 0
    assert_intact(client, service, before, settings.api_secret_token)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda q: "sig=x&" + q, id="sig-repeated"),
        pytest.param(lambda q: q.replace("provider=acme", "provider=ACME"), id="upper-alias"),
        pytest.param(lambda q: q.replace("provider=acme", "provider=bravo"), id="other-alias"),
        pytest.param(lambda q: q + "&provider=acme", id="provider-repeated"),
    ],
)
def test_a_valid_link_with_a_mangled_query_starts_nothing(
    client: FlaskClient, world, settings: Settings, mangle
) -> None:
    service, before = world
    link = service.keys.auth_link("acme", 600)
    query = link.partition("?")[2]

    response = client.get(f"/auth?{mangle(query)}")

    assert response.status_code in (400, 401)
    assert_html_error(response, response.status_code)
    assert pending_count(service.repo) == 0
    assert_intact(client, service, before, settings.api_secret_token)


# -- /callback -----------------------------------------------------------------------

BAD_CALLBACKS = [
    pytest.param("", None, id="nothing"),
    pytest.param("code=abc", None, id="no-state"),
    pytest.param("state=&code=abc", None, id="empty-state"),
    pytest.param("state=%ff&code=abc", "MATCH", id="invalid-utf8-state"),
    pytest.param("state=%00&code=abc", "MATCH", id="nul-state"),
    pytest.param("state=" + "s" * 10_000 + "&code=abc", "MATCH", id="10kB-state"),
    pytest.param("state=abc&state=def&code=abc", "MATCH", id="repeated-state"),
    pytest.param("state=abc&code=abc", None, id="no-cookie"),
    pytest.param("state=abc&code=abc", "\xe4\xf6\xfc", id="non-ascii-cookie"),
    pytest.param("state=abc&code=abc", "%FF%FE", id="percent-encoded-cookie"),
    pytest.param("state=abc&code=abc", "x" * 10_000, id="10kB-cookie"),
    pytest.param("state=abc&code=abc", "MATCH-UPPER", id="upper-cased-cookie"),
    pytest.param("state=abc", "MATCH", id="no-code"),
    pytest.param("state=abc&code=" + "c" * 10_000, "MATCH", id="unknown-state-10kB-code"),
    pytest.param("error=" + "e" * 10_000, None, id="10kB-error"),
    pytest.param("error=%ff%00&error_description=%ff" * 2, None, id="invalid-utf8-error"),
    pytest.param("error=access_denied&error_description=" + "d" * 10_000, None, id="10kB-desc"),
    pytest.param("error=access_denied&state=abc", "\xe4", id="denied-non-ascii-cookie"),
    pytest.param("error=&code=abc&state=abc", "MATCH", id="empty-error"),
    pytest.param("provider=%ff&state=abc&code=abc", "MATCH", id="invalid-utf8-hint"),
    pytest.param("provider=ACME&state=abc&code=abc", "MATCH", id="upper-hint"),
]


@pytest.mark.parametrize(("query", "cookie"), BAD_CALLBACKS)
@pytest.mark.parametrize("path", CALLBACK)
def test_a_bad_callback_is_a_400_page_and_stores_nothing(
    client: FlaskClient, world, settings: Settings, path: str, query: str, cookie: str | None
) -> None:
    service, before = world
    if cookie == "MATCH":
        cookie = browser_binding("abc")
    elif cookie == "MATCH-UPPER":
        cookie = browser_binding("abc").upper()
    headers = {} if cookie is None else {"Cookie": f"tokenkeep_state={cookie}"}

    response = client.get(f"{path}?{query}", headers=headers)

    assert_html_error(response, 400)
    assert_intact(client, service, before, settings.api_secret_token)


def test_a_started_flow_survives_a_callback_with_a_non_ascii_cookie(
    client: FlaskClient, world, admin_headers: dict[str, str], settings: Settings
) -> None:
    service, before = world
    started = client.get("/auth?provider=acme", headers=admin_headers)
    state = started.headers["Location"].split("state=")[1].split("&")[0]
    client.delete_cookie("tokenkeep_state")

    response = client.get(
        f"/callback?code=abc&state={state}", headers={"Cookie": "tokenkeep_state=\xe4"}
    )

    assert_html_error(response, 400)
    assert pending_count(service.repo) == 1  # refused before the state was consumed
    assert_intact(client, service, before, settings.api_secret_token)
