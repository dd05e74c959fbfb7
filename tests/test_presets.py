"""Preset data and the generic mechanisms it drives: placeholders, regions, quirks, multi-DC."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from conftest import CLIENT_SECRET, FakeClock, connect
from flask.testing import FlaskClient

from tokenkeep.classify import classify_error
from tokenkeep.errors import (
    InvalidRequest,
    PermanentUpstreamError,
    UpstreamError,
    UpstreamUnavailable,
)
from tokenkeep.models import Provider, ProviderChanges
from tokenkeep.oauth import ProviderClient
from tokenkeep.presets import PLACEHOLDER_RE, Preset, get_preset, load_presets, parse_presets
from tokenkeep.quirks import HOST_RE, Quirks
from tokenkeep.service import TokenService

PRESETS = load_presets()
RAW = json.loads((resources.files("tokenkeep") / "presets.json").read_text("utf-8"))
NAMES = sorted(PRESETS)
EXPECTED = {
    "zoho", "pipedrive", "google", "microsoft", "salesforce", "hubspot", "xero", "quickbooks",
    "slack", "github", "github-app", "dropbox", "atlassian", "spotify", "shopify",
}  # fmt: skip
ZOHO_EU_TOKEN = "https://accounts.zoho.eu/oauth/v2/token"
ZOHO_COM_TOKEN = "https://accounts.zoho.com/oauth/v2/token"


def fill(name: str, **params: str) -> dict[str, str]:
    """Placeholder values that fit, for presets that need them."""
    defaults = {"tenant": "common", "shop": "acme"}
    return {k: params.get(k, defaults[k]) for k in PRESETS[name].placeholders if k in defaults}


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


# -- the data ---------------------------------------------------------------------------


def test_the_catalogue_has_the_fifteen_presets_of_issue_5() -> None:
    assert set(PRESETS) == EXPECTED


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_url_is_https_with_only_declared_placeholders(name: str) -> None:
    preset = PRESETS[name]
    for url in (preset.authorize_url, preset.token_url):
        assert url.startswith("https://")
        assert set(PLACEHOLDER_RE.findall(url)) <= set(preset.placeholders)
    changes = preset.resolve(params=fill(name))
    for url in (changes.authorize_url, changes.token_url):
        assert url is not None and url.startswith("https://") and "{" not in url
        assert HOST_RE.fullmatch(urlsplit(url).hostname or "")


@pytest.mark.parametrize("name", NAMES)
def test_every_field_of_every_preset_is_one_the_code_understands(name: str) -> None:
    entry = RAW[name]
    assert set(entry) <= set(Preset.__dataclass_fields__) - {"name"}
    assert set(entry.get("quirks", {})) <= set(Quirks.__dataclass_fields__)
    assert PRESETS[name].quirks == Quirks.from_dict(entry.get("quirks", {}))
    assert PRESETS[name].note and "\n" not in PRESETS[name].note


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"colour": "blue"}, "unknown field 'colour'"),
        ({"quirks": {"retry_forever": True}}, "unknown quirk 'retry_forever'"),
        ({"token_url": "http://x.test/token"}, "not an https URL"),
        ({"auth_method": "private_key_jwt"}, "auth_method must be one of"),
        ({"token_url": "https://{host}/token"}, "placeholders"),
        ({"quirks": {"transient_patterns": ["(unclosed"]}}, "not a valid regex"),
        ({"quirks": {"token_hosts": ["Evil.Test:443"]}}, "lower-case host name"),
        ({"default_region": "mars"}, "default_region"),
        ({"pkce": "false"}, "pkce must be true or false"),
        ({"default_lifetime_seconds": "3600"}, "positive integer"),
        ({"authorize_params": {"prompt": 1}}, "must be strings"),
        ({"quirks": {"issued_at_ms": "yes"}}, "true or false"),
        ({"quirks": {"response_extras": "api_domain"}}, "list of strings"),
        ({"quirks": {"token_host_param": 7}}, "non-empty string"),
    ],
)
def test_preset_data_the_code_does_not_understand_is_refused(
    entry: dict[str, Any], message: str
) -> None:
    base = {
        "title": "T",
        "note": "n",
        "console": "c",
        "authorize_url": "https://x.test/auth",
        "token_url": "https://x.test/token",
        "auth_method": "client_secret_post",
    }
    with pytest.raises(ValueError, match=message):
        parse_presets({"bad": {**base, **entry}})


def test_every_zoho_region_is_on_the_zoho_token_host_allow_list() -> None:
    zoho = PRESETS["zoho"]
    assert set(zoho.regions) == {"us", "eu", "in", "au", "jp", "ca", "sa", "cn", "uk", "ae"}
    for region in zoho.regions:
        host = urlsplit(zoho.resolve(region=region).token_url or "").hostname
        assert host in zoho.quirks.token_hosts


def test_zoho_canada_is_zohocloud_not_zoho_ca() -> None:
    changes = get_preset("zoho").resolve(region="ca")
    assert changes.token_url == "https://accounts.zohocloud.ca/oauth/v2/token"


def test_hubspot_uses_the_versioned_token_endpoint_not_v1() -> None:
    assert get_preset("hubspot").token_url == "https://api.hubapi.com/oauth/2026-09/token"


# -- resolving a preset ------------------------------------------------------------


def test_region_picks_the_zoho_data_centre_for_both_urls() -> None:
    changes = get_preset("zoho").resolve(region="eu")
    assert changes.authorize_url == "https://accounts.zoho.eu/oauth/v2/auth"
    assert changes.token_url == ZOHO_EU_TOKEN
    assert changes.scope_separator == "," and changes.auth_method == "client_secret_post"
    assert changes.authorize_params == {"access_type": "offline", "prompt": "consent"}


def test_zoho_without_region_uses_the_us_data_centre() -> None:
    assert get_preset("zoho").resolve().token_url == ZOHO_COM_TOKEN


def test_placeholder_params_fill_the_urls_and_are_not_sent_as_authorize_params() -> None:
    changes = get_preset("microsoft").resolve(
        params={"tenant": "contoso.onmicrosoft.com", "login_hint": "a@contoso.test"}
    )
    assert changes.token_url == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )
    assert changes.authorize_params == {"login_hint": "a@contoso.test"}


def test_salesforce_defaults_to_login_and_sandbox_region_uses_test() -> None:
    salesforce = get_preset("salesforce")
    assert salesforce.resolve().token_url == "https://login.salesforce.com/services/oauth2/token"
    assert salesforce.resolve(region="sandbox").token_url == (
        "https://test.salesforce.com/services/oauth2/token"
    )
    my_domain = salesforce.resolve(params={"domain": "acme.my.salesforce.com"})
    assert my_domain.authorize_url == "https://acme.my.salesforce.com/services/oauth2/authorize"
    assert my_domain.authorize_params == {}


@pytest.mark.parametrize(("name", "placeholder"), [("microsoft", "tenant"), ("shopify", "shop")])
def test_a_missing_placeholder_value_is_invalid_request_naming_the_param(
    name: str, placeholder: str
) -> None:
    with pytest.raises(InvalidRequest, match=f"needs --param {placeholder}=VALUE"):
        get_preset(name).resolve()


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("shopify", {"shop": "evil.test/x"}),
        ("microsoft", {"tenant": "evil.test/../x"}),
        ("salesforce", {"domain": "evil.test"}),
        ("zoho", {"accounts_host": "accounts.zoho.evil.test"}),
    ],
)
def test_a_placeholder_value_that_does_not_fit_is_refused(
    name: str, params: dict[str, str]
) -> None:
    with pytest.raises(InvalidRequest, match="does not fit preset"):
        get_preset(name).resolve(params=params)


def test_an_unknown_preset_lists_the_valid_names() -> None:
    with pytest.raises(InvalidRequest) as raised:
        get_preset("zohoo")
    assert "unknown preset 'zohoo'" in raised.value.description
    assert all(name in raised.value.description for name in EXPECTED)


def test_an_unknown_region_lists_the_valid_regions() -> None:
    with pytest.raises(InvalidRequest, match=r"unknown region 'mars'.*us, eu, in"):
        get_preset("zoho").resolve(region="mars")


def test_the_operators_scopes_are_added_to_the_presets_own() -> None:
    changes = get_preset("microsoft").resolve(params={"tenant": "common"}, scopes=("Mail.Read",))
    assert changes.scopes == ("offline_access", "Mail.Read")


def test_preset_changes_are_stored_with_the_preset_and_quirks(service: TokenService) -> None:
    changes = get_preset("quickbooks").resolve()
    credentials = ProviderChanges(client_id="id", client_secret=CLIENT_SECRET)
    service.register_provider("qbo", changes.overlay(credentials))
    stored = service.repo.get_provider("qbo")
    assert stored is not None
    assert stored.preset == "quickbooks"
    assert stored.quirks.callback_params == {"realmId": "realm_id"}
    assert CLIENT_SECRET not in repr(stored)


def test_re_registering_from_a_preset_keeps_the_tokens(service: TokenService) -> None:
    credentials = ProviderChanges(client_id="id", client_secret=CLIENT_SECRET)
    service.register_provider("zoho", get_preset("zoho").resolve().overlay(credentials))
    connect(service, "zoho")
    service.register_provider("zoho", get_preset("zoho").resolve(region="eu"))
    record = service.repo.get_token("zoho")
    assert record is not None and record.tokens.access_token == "access-1"
    stored = service.repo.get_provider("zoho")
    assert stored is not None and stored.token_url == ZOHO_EU_TOKEN


# -- Zoho multi-DC: the callback's accounts-server -----------------------------------------


def register_zoho(service: TokenService) -> None:
    credentials = ProviderChanges(client_id="1000.client", client_secret=CLIENT_SECRET)
    changes = get_preset("zoho").resolve(scopes=("ZohoCRM.modules.ALL",))
    service.register_provider("zoho", changes.overlay(credentials))


def start(client: FlaskClient, admin_headers: dict[str, str]) -> str:
    response = client.get("/auth?provider=zoho", headers=admin_headers)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("https://accounts.zoho.com/oauth/v2/auth?")
    return parse_qs(urlsplit(location).query)["state"][0]


def zoho_token(access: str, **fields: Any) -> dict[str, Any]:
    return {"access_token": access, "token_type": "Bearer", "expires_in": 3600, **fields}


def test_zoho_callback_from_eu_exchanges_at_eu_and_later_refreshes_go_there_too(
    client, service, admin_headers, api_headers, rsps, clock: FakeClock
) -> None:
    register_zoho(service)
    state = start(client, admin_headers)
    rsps.post(
        ZOHO_EU_TOKEN,
        json=zoho_token("1000.eu-1", refresh_token="1000.rt", api_domain="https://www.zohoapis.eu"),
    )

    page = client.get(
        f"/callback?code=1000.code&location=eu&accounts-server=https%3A%2F%2Faccounts.zoho.eu"
        f"&state={state}"
    )

    assert page.status_code == 200
    assert rsps.calls[0].request.url == ZOHO_EU_TOKEN
    clock.advance(3600 - 60)
    rsps.post(ZOHO_EU_TOKEN, json=zoho_token("1000.eu-2", api_domain="https://www.zohoapis.eu"))
    body = client.get("/api/token?provider=zoho", headers=api_headers).get_json()
    assert body["access_token"] == "1000.eu-2"
    assert body["api_domain"] == "https://www.zohoapis.eu"
    assert body["accounts_server"] == "https://accounts.zoho.eu"
    assert [call.request.url for call in rsps.calls] == [ZOHO_EU_TOKEN, ZOHO_EU_TOKEN]


def test_zoho_connection_keeps_its_data_centre_when_the_provider_is_re_registered(
    client, service, admin_headers, api_headers, rsps, clock: FakeClock
) -> None:
    register_zoho(service)
    state = start(client, admin_headers)
    rsps.post(ZOHO_EU_TOKEN, json=zoho_token("1000.eu-1", refresh_token="1000.rt"))
    assert client.get(f"/callback?code=c&accounts-server=https://accounts.zoho.eu&state={state}")
    service.register_provider("zoho", get_preset("zoho").resolve())  # region us again
    clock.advance(3600 - 60)
    rsps.post(ZOHO_EU_TOKEN, json=zoho_token("1000.eu-2"))

    assert client.get("/api/token?provider=zoho", headers=api_headers).status_code == 200
    assert rsps.calls[-1].request.url == ZOHO_EU_TOKEN


@pytest.mark.parametrize(
    "server",
    [
        "https://evil.test",
        "https://accounts.zoho.eu.evil.test",
        "http://accounts.zoho.eu",
        "https://accounts.zoho.eu:8443",
        "https://user@accounts.zoho.eu",
        "https://accounts.zoho.eu/steal",
        "accounts.zoho.eu",
        "https://[::1",
    ],
)
def test_zoho_accounts_server_outside_the_allow_list_is_refused_and_no_secret_is_sent(
    client, service, admin_headers, rsps, server: str
) -> None:
    register_zoho(service)
    state = start(client, admin_headers)

    response = client.get(
        "/callback", query_string={"code": "1000.code", "accounts-server": server, "state": state}
    )

    assert response.status_code == 400
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "accounts-server" in page and "not a known server" in page
    assert CLIENT_SECRET not in page
    assert len(rsps.calls) == 0  # nothing was sent anywhere
    assert service.repo.get_token("zoho") is None


def test_zoho_callback_without_accounts_server_exchanges_at_the_registered_url(
    client, service, admin_headers, rsps
) -> None:
    register_zoho(service)
    state = start(client, admin_headers)
    rsps.post(ZOHO_COM_TOKEN, json=zoho_token("1000.us-1", refresh_token="1000.rt"))

    assert client.get(f"/callback?code=c&state={state}").status_code == 200
    record = service.repo.get_token("zoho")
    assert record is not None and record.token_url is None


def test_a_provider_without_the_quirk_ignores_an_accounts_server_parameter(
    client, service, admin_headers, rsps
) -> None:
    credentials = ProviderChanges(client_id="id", client_secret=CLIENT_SECRET)
    service.register_provider("goog", get_preset("google").resolve().overlay(credentials))
    response = client.get("/auth?provider=goog", headers=admin_headers)
    state = parse_qs(urlsplit(response.headers["Location"]).query)["state"][0]
    rsps.post("https://oauth2.googleapis.com/token", json=zoho_token("ya29.x"))

    page = client.get(f"/callback?code=c&accounts-server=https://evil.test&state={state}")

    assert page.status_code == 200
    assert rsps.calls[0].request.url == "https://oauth2.googleapis.com/token"


# -- quirks in the OAuth client and the classifier ------------------------------------------


def provider(**quirks: Any) -> Provider:
    return Provider(
        alias="p",
        client_id="id",
        client_secret=CLIENT_SECRET,
        authorize_url="https://p.test/auth",
        token_url="https://p.test/token",
        default_lifetime_seconds=3600,
        quirks=Quirks(**quirks),
    )


@pytest.fixture
def oauth(clock: FakeClock) -> ProviderClient:
    return ProviderClient(requests.Session(), timeout=5, clock=clock, sleep=clock.sleep)


def test_issued_at_in_milliseconds_is_the_expiry_basis(oauth, rsps, clock: FakeClock) -> None:
    issued = str(int((clock() - 600) * 1000))
    rsps.post("https://p.test/token", json={"access_token": "a", "issued_at": issued})
    tokens = oauth.refresh(provider(issued_at_ms=True), "rt")
    assert tokens.expires_at == pytest.approx(clock() - 600 + 3600)


@pytest.mark.parametrize("offset", [+120, -7200])
def test_issued_at_in_the_future_or_older_than_the_lifetime_falls_back_to_receipt(
    oauth, rsps, clock: FakeClock, offset: int
) -> None:
    issued = str(int((clock() + offset) * 1000))
    rsps.post("https://p.test/token", json={"access_token": "a", "issued_at": issued})
    tokens = oauth.refresh(provider(issued_at_ms=True), "rt")
    assert tokens.expires_at == pytest.approx(clock() + 3600)


def test_without_the_quirk_issued_at_is_ignored(oauth, rsps, clock: FakeClock) -> None:
    issued = str(int((clock() - 600) * 1000))
    rsps.post("https://p.test/token", json={"access_token": "a", "issued_at": issued})
    assert oauth.refresh(provider(), "rt").expires_at == pytest.approx(clock() + 3600)


def test_zoho_legacy_milliseconds_expires_in_uses_expires_in_sec(oauth, rsps, clock) -> None:
    zoho = get_preset("zoho").resolve().overlay(ProviderChanges(client_id="i", client_secret="s"))
    body = {"access_token": "1000.a", "expires_in": 3600000, "expires_in_sec": 3600}
    rsps.post(ZOHO_COM_TOKEN, json={**body, "api_domain": "https://www.zohoapis.com"})
    p = zoho.apply(provider(), clock())
    tokens = oauth.refresh(p, "rt")
    assert tokens.expires_at == pytest.approx(clock() + 3600)
    assert dict(tokens.extras) == {"api_domain": "https://www.zohoapis.com"}


def test_zoho_legacy_milliseconds_expires_in_alone_is_read_as_milliseconds(
    oauth, rsps, clock
) -> None:
    rsps.post("https://p.test/token", json={"access_token": "1000.a", "expires_in": 3600000})
    zoho = provider(**get_preset("zoho").quirks.to_dict())
    assert oauth.refresh(zoho, "rt").expires_at == pytest.approx(clock() + 3600)


def test_long_expires_in_stays_seconds_without_the_quirk(oauth, rsps, clock) -> None:
    rsps.post("https://p.test/token", json={"access_token": "a", "expires_in": 5184000})
    assert oauth.refresh(provider(), "rt").expires_at == pytest.approx(clock() + 5184000)


def test_response_extras_limit_what_is_kept(oauth, rsps) -> None:
    rsps.post("https://p.test/token", json={"access_token": "a", "keep": 1, "drop": 2})
    assert dict(oauth.refresh(provider(response_extras=("keep",)), "rt").extras) == {"keep": 1}


def test_comma_separated_scope_answers_are_normalised_to_spaces(oauth, rsps) -> None:
    rsps.post("https://p.test/token", json={"access_token": "a", "scope": "repo,gist, user"})
    assert oauth.refresh(provider(response_scope_separator=","), "rt").scope == "repo gist user"


def test_scope_answers_are_left_alone_without_the_quirk(oauth, rsps) -> None:
    rsps.post("https://p.test/token", json={"access_token": "a", "scope": "repo,gist"})
    assert oauth.refresh(provider(), "rt").scope == "repo,gist"


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"error": "access_denied"}, 403, PermanentUpstreamError),
        ({"error": "interaction_required"}, 400, PermanentUpstreamError),
        ({"error": "Access Denied"}, 200, UpstreamUnavailable),
        ({"error": "invalid_grant", "error_description": "expired authorization code"}, 400,
         UpstreamUnavailable),
    ],
)  # fmt: skip
def test_quirks_error_overrides_reach_the_classifier(
    body: dict[str, Any], status: int, kind: type
) -> None:
    error = classify_error(
        "p",
        status,
        body,
        None,
        permanent=("access_denied", "interaction_required"),
        transient=("^Access Denied", "expired authorization code"),
    )
    assert type(error) is kind


@pytest.mark.parametrize(
    ("body", "kind"),
    [({"error": "access_denied"}, UpstreamError), ({"error": "Access Denied"}, UpstreamError)],
)
def test_without_overrides_the_classifier_is_unchanged(body: dict[str, Any], kind: type) -> None:
    assert type(classify_error("p", 400, body, None)) is kind


def test_zoho_throttling_waits_the_longest_backoff_not_the_first_one(
    service, rsps, clock: FakeClock, client, api_headers
) -> None:
    register_zoho(service)
    connect(service, "zoho", expires_in=100)
    clock.advance(60)  # inside the margin (half the token's life), still valid
    body = {"error": "Access Denied", "error_description": "You have made too many requests"}
    rsps.post(ZOHO_COM_TOKEN, json=body)  # HTTP 200, no Retry-After

    assert client.get("/api/token?provider=zoho", headers=api_headers).status_code == 200

    record = service.repo.get_token("zoho")
    assert record is not None and record.next_attempt_at is not None
    # Retrying during Zoho's lockout extends it: wait the 600 s quirk, capped by the config.
    assert record.next_attempt_at - clock() == service.settings.refresh_backoff_max_seconds


def test_throttle_wait_applies_only_without_retry_after() -> None:
    given = classify_error("p", 429, {}, 5.0, throttle_wait=600)
    missing = classify_error("p", 429, {}, None, throttle_wait=600)
    outage = classify_error("p", 503, {}, None, throttle_wait=600)
    assert isinstance(given, UpstreamUnavailable) and given.retry_after == 5.0
    assert isinstance(missing, UpstreamUnavailable) and missing.retry_after == 600
    assert isinstance(outage, UpstreamUnavailable) and outage.retry_after is None


def test_hubspot_legacy_bad_refresh_token_body_is_permanent(oauth, rsps) -> None:
    body = {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"}
    rsps.post("https://p.test/token", status=400, json={**body, "correlationId": "c"})
    hubspot = provider(**get_preset("hubspot").quirks.to_dict())
    with pytest.raises(PermanentUpstreamError, match="BAD_REFRESH_TOKEN"):
        oauth.refresh(hubspot, "rt")


def test_quirks_round_trip_through_json() -> None:
    for preset in PRESETS.values():
        assert Quirks.from_dict(json.loads(json.dumps(preset.quirks.to_dict()))) == preset.quirks


# -- docs/providers.md ---------------------------------------------------------------------

DOCS = (Path(__file__).resolve().parents[1] / "docs" / "providers.md").read_text("utf-8")


def doc_section(name: str) -> str:
    match = re.search(rf"^## {re.escape(name)}\n(.*?)(?=^## |\Z)", DOCS, re.M | re.S)
    assert match, f"docs/providers.md has no '## {name}' section"
    return match.group(1)


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_is_documented_with_its_command_redirect_uri_and_extras(name: str) -> None:
    text = doc_section(name)
    assert re.search(rf"tokenkeep register-provider \S+ --preset {re.escape(name)}\b", text)
    assert "PUBLIC_URL/callback" in text
    assert "Limits that bite" in text
    for extra in PRESETS[name].extras():
        assert f"`{extra}`" in text, extra
    for region in PRESETS[name].regions:
        assert f"`{region}`" in text, region


# -- migration 0004 -------------------------------------------------------------------------


def test_migration_0004_keeps_providers_and_tokens_registered_before_it(settings, tmp_path) -> None:
    from tokenkeep.crypto import Cipher
    from tokenkeep.db import Database
    from tokenkeep.migrate import _statements, available_migrations, migrate
    from tokenkeep.repository import Repository

    db = Database(tmp_path / "old.db")
    conn = db.conn
    for migration in available_migrations()[:3]:  # the schema before presets (0004)
        for statement in _statements(migration.sql):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {migration.version:d}")
    cipher = Cipher(settings.encryption_key)
    conn.execute(
        "INSERT INTO providers (alias, client_id, client_secret_enc, authorize_url, token_url,"
        " created_at, updated_at) VALUES ('old', 'id', ?, 'https://p.test/a', 'https://p.test/t',"
        " 0, 0)",
        (cipher.encrypt(CLIENT_SECRET),),
    )
    blob = json.dumps({"a": "at-old", "r": "rt-old", "x": {}})
    conn.execute(
        "INSERT INTO tokens (provider_id, secrets_enc, token_type, obtained_at, authorized_at)"
        " SELECT id, ?, 'Bearer', 0, 0 FROM providers WHERE alias = 'old'",
        (cipher.encrypt(blob),),
    )
    conn.commit()

    assert [m.name for m in migrate(db)] == ["presets"]

    repo = Repository(db, cipher)
    stored = repo.get_provider("old")
    assert stored is not None and stored.preset is None and stored.quirks == Quirks()
    record = repo.get_token("old")
    assert record is not None and record.tokens.refresh_token == "rt-old"
    assert record.token_url is None
    db.close()
