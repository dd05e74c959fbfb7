"""One test per defect of the PHP original (shared/design.md) that the port fixes.

Defects 2, 8 and 12 belong to the single-flight and security work and are
tested there (test_service.py covers the same-process half of defect 2).
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from click.testing import CliRunner
from conftest import CLIENT_SECRET, TOKEN_URL, connect, register

from tokenkeep.cli import main
from tokenkeep.service import TokenService

pytestmark = pytest.mark.filterwarnings("error")


def test_defect_1_reregistering_a_provider_keeps_its_tokens(client, service, api_headers):
    register(service)
    connect(service, access_token="kept-access")
    register(service, client_secret="a-new-secret-value", scopes=("read", "admin"))
    response = client.get("/api/token?provider=acme", headers=api_headers)
    assert response.status_code == 200
    assert response.json["access_token"] == "kept-access"


def test_defect_3_extra_authorize_params_reach_the_provider(client, service, admin_headers):
    register(service, authorize_params={"access_type": "offline", "prompt": "consent"})
    response = client.get("/auth?provider=acme", headers=admin_headers)
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["access_type"] == ["offline"]
    assert query["prompt"] == ["consent"]


def test_defect_4_client_secret_basic_refreshes_with_http_basic(service: TokenService, clock):
    register(service, auth_method="client_secret_basic")
    connect(service)
    clock.advance(3500)
    with responses.RequestsMock() as rsps:
        rsps.post(TOKEN_URL, json={"access_token": "new", "expires_in": 3600})
        service.get_token("acme")
        request = rsps.calls[0].request
    expected = base64.b64encode(f"client-id:{CLIENT_SECRET}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert "client_secret" not in parse_qs(str(request.body))


def test_defect_5_api_domain_instance_url_and_scope_are_returned(client, service, api_headers):
    register(service)
    extras = {"api_domain": "https://www.zohoapis.eu", "instance_url": "https://x.my.sf.com"}
    connect(service, extras=extras, scope="ZohoCRM.modules.ALL")
    body = client.get("/api/token?provider=acme", headers=api_headers).json
    assert body["api_domain"] == "https://www.zohoapis.eu"
    assert body["instance_url"] == "https://x.my.sf.com"
    assert body["scope"] == "ZohoCRM.modules.ALL"


def test_defect_6_a_token_without_expires_in_does_not_expire_after_an_hour(
    client, service, api_headers, clock
):
    register(service)
    with responses.RequestsMock() as rsps:
        rsps.post(TOKEN_URL, json={"access_token": "forever", "token_type": "bearer"})
        provider = service.repo.get_provider("acme")
        assert provider is not None
        tokens = service.client.exchange_code(
            provider, code="c", redirect_uri="http://127.0.0.1:8000/callback", code_verifier=None
        )
    service.repo.store_authorized("acme", tokens, clock())
    clock.advance(2 * 3600)
    body = client.get("/api/token?provider=acme", headers=api_headers).json
    assert body["access_token"] == "forever"
    assert body["expires_at"] is None and body["expires_in"] is None


def test_defect_7_a_missing_config_never_falls_back_to_the_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    (tmp_path / "config.example.toml").write_text(example.read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKENKEEP_CONFIG", raising=False)
    result = CliRunner().invoke(main, ["providers"])
    assert result.exit_code == 2
    assert "config.toml not found" in result.output
    assert "tokenkeep init" in result.output


def test_defect_9_input_is_escaped_and_exceptions_stay_out_of_responses(
    client, service, api_headers, monkeypatch: pytest.MonkeyPatch
):
    page = client.get("/callback?error=<script>alert(1)</script>&state=x")
    assert b"<script>alert(1)" not in page.data
    assert b"&lt;script&gt;" in page.data

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(service, "get_token", explode)
    response = client.get("/api/token?provider=acme", headers=api_headers)
    assert response.status_code == 500
    assert set(response.json) == {"error", "error_description"}
    assert b"hunter2" not in response.data and b"Traceback" not in response.data


def test_defect_10_callback_finds_the_provider_from_the_state_alone(client, service, admin_headers):
    register(service)
    start = client.get("/auth?provider=acme", headers=admin_headers)
    location = urlsplit(start.headers["Location"])
    query = parse_qs(location.query)
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/callback"]  # no ?provider=
    with responses.RequestsMock() as rsps:
        rsps.post(TOKEN_URL, json={"access_token": "via-state", "expires_in": 3600})
        page = client.get(f"/callback?code=abc&state={query['state'][0]}")
    assert page.status_code == 200
    record = service.repo.get_token("acme")
    assert record is not None and record.tokens.access_token == "via-state"


def test_defect_11_provider_calls_have_timeouts_and_cron_reports_failures(
    config_file: Path,
):
    runner = CliRunner()
    base = ["--config", str(config_file)]
    register_args = [
        "register-provider", "acme", "--client-id", "id", "--client-secret", "secret-value-1",
        "--authorize-url", "https://provider.test/authorize", "--token-url", TOKEN_URL,
    ]  # fmt: skip
    assert runner.invoke(main, base + register_args).exit_code == 0
    from tokenkeep.bootstrap import build_service, open_repository
    from tokenkeep.config import load_settings

    settings = load_settings(config_file, env={})
    service = build_service(settings, repo=open_repository(settings))
    connect(service, expires_in=1800)  # 30 minutes left: outside the default 20-minute window
    with responses.RequestsMock() as rsps:
        rsps.post(TOKEN_URL, json={"error": "invalid_grant"}, status=400)
        result = runner.invoke(main, [*base, "refresh-all", "--within", "3600"])
        timeout = rsps.calls[0].request.req_kwargs["timeout"]
    assert result.exit_code == 1
    assert "failed" in result.output
    assert timeout is not None and all(t and t <= settings.http_timeout_seconds for t in timeout)
