"""GET /metrics (Prometheus text format) and the per-request JSON log line."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
import responses
from conftest import CLIENT_SECRET, TOKEN_URL, FakeClock, connect, register
from flask.testing import FlaskClient

from tokenkeep.config import Settings
from tokenkeep.logs import JsonFormatter, configure_logging
from tokenkeep.service import TokenService
from tokenkeep.web import create_app


def metric_lines(client: FlaskClient, headers: dict[str, str]) -> list[str]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.data
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return response.get_data(as_text=True).splitlines()


def value(lines: list[str], series: str) -> float:
    [line] = [line for line in lines if line.rsplit(" ", 1)[0] == series]
    return float(line.rsplit(" ", 1)[1])


def test_metrics_need_a_bearer_key(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"


def test_metrics_refuse_a_scoped_key_with_insufficient_scope(
    client: FlaskClient, service: TokenService
) -> None:
    key = service.keys.create("everything", None)  # even a key for every provider
    response = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403
    assert response.json["error"] == "insufficient_scope"


def test_metrics_count_requests_by_route_and_status(
    client: FlaskClient, connected: TokenService, api_headers: dict[str, str]
) -> None:
    client.get("/api/token?provider=acme&code=secret-code", headers=api_headers)
    client.get("/api/token?provider=acme", headers=api_headers)
    client.get("/api/token?provider=nope", headers=api_headers)
    client.get("/no/such/page")
    lines = metric_lines(client, api_headers)
    prefix = 'tokenkeep_http_requests_total{method="GET",'
    assert value(lines, prefix + 'route="/api/token",status="200"}') == 2
    assert value(lines, prefix + 'route="/api/token",status="404"}') == 1
    assert value(lines, prefix + 'route="unmatched",status="404"}') == 1
    assert "# TYPE tokenkeep_http_requests_total counter" in lines
    assert not any("secret-code" in line for line in lines)


def test_metrics_show_providers_by_state(
    client: FlaskClient, service: TokenService, api_headers: dict[str, str]
) -> None:
    for alias in ("a", "b", "c", "d"):
        register(service, alias)
    connect(service, "a")
    connect(service, "b")
    service.repo.record_failure(
        "b", "x", error="gone", code="x", now=0, next_attempt_at=None, needs_reauth=True
    )
    lines = metric_lines(client, api_headers)
    assert value(lines, 'tokenkeep_providers{state="connected"}') == 1
    assert value(lines, 'tokenkeep_providers{state="needs_reauth"}') == 1
    assert value(lines, 'tokenkeep_providers{state="not_connected"}') == 2


@responses.activate
def test_metrics_count_refreshes_by_outcome_and_time_them(
    client: FlaskClient, connected: TokenService, clock: FakeClock, api_headers: dict[str, str]
) -> None:
    clock.advance(3600)
    responses.post(TOKEN_URL, json={"access_token": "a-2", "expires_in": 3600})
    assert client.get("/api/token?provider=acme", headers=api_headers).status_code == 200
    clock.advance(3600)
    responses.replace(responses.POST, TOKEN_URL, json={"error": "server_error"}, status=500)
    assert client.get("/api/token?provider=acme", headers=api_headers).status_code == 503
    lines = metric_lines(client, api_headers)
    assert value(lines, 'tokenkeep_refreshes_total{provider="acme",outcome="refreshed"}') == 1
    assert value(lines, 'tokenkeep_refreshes_total{provider="acme",outcome="failed"}') == 1
    assert value(lines, "tokenkeep_refresh_duration_seconds_count") == 2
    assert value(lines, 'tokenkeep_refresh_duration_seconds_bucket{le="+Inf"}') == 2
    assert "# TYPE tokenkeep_refresh_duration_seconds histogram" in lines


def test_refresh_counts_come_from_the_database_so_every_process_sees_them(
    client: FlaskClient, service: TokenService, api_headers: dict[str, str]
) -> None:
    service.events.record("acme", "refreshed")  # as cron's refresh-all would, elsewhere
    lines = metric_lines(client, api_headers)
    assert value(lines, 'tokenkeep_refreshes_total{provider="acme",outcome="refreshed"}') == 1


@pytest.fixture
def json_app_client(settings: Settings, service: TokenService) -> FlaskClient:
    app = create_app(replace(settings, log_format="json"), service=service)
    return app.test_client()


def test_json_logging_writes_one_line_per_request_without_secrets(
    json_app_client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tokenkeep.access")
    json_app_client.get("/api/token?provider=acme&code=the-code", headers=api_headers)
    json_app_client.get("/api/token?provider=Bad%20Alias", headers=api_headers)
    records = [r for r in caplog.records if r.name == "tokenkeep.access"]
    assert len(records) == 2
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    assert {k: lines[0][k] for k in ("method", "route", "provider", "status")} == {
        "method": "GET",
        "route": "/api/token",
        "provider": "acme",
        "status": 200,
    }
    assert isinstance(lines[0]["latency_ms"], float)
    assert lines[1]["provider"] is None and lines[1]["status"] == 400
    text = json.dumps(lines)
    for secret in ("the-code", "access-1", CLIENT_SECRET, settings.api_secret_token):
        assert secret not in text


def test_text_logging_writes_no_request_lines(
    client: FlaskClient, connected: TokenService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokenkeep.access")
    client.get("/healthz")
    assert [r for r in caplog.records if r.name == "tokenkeep.access"] == []


def test_configured_json_logging_prints_the_request_line_on_stderr(
    json_app_client: FlaskClient,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(replace(settings, log_format="json"))
    try:
        json_app_client.get("/healthz")
    finally:
        root = logging.getLogger("tokenkeep")
        root.handlers.clear()
        root.propagate = True
        root.setLevel(logging.NOTSET)
    [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert (
        line["route"] == "/healthz"
        and line["status"] == 200
        and line["logger"] == "tokenkeep.access"
    )
