"""Webhook alerts: signed, retried, never blocking a token request, never carrying a token."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import requests
import responses
from conftest import CLIENT_SECRET, TOKEN_URL, FakeClock, connect, register

from tokenkeep.alerts import Alerter, AlertSender, sign
from tokenkeep.bootstrap import build_service
from tokenkeep.config import Settings
from tokenkeep.errors import ConfigError
from tokenkeep.events import Event
from tokenkeep.repository import Repository
from tokenkeep.service import TokenService
from tokenkeep.web import create_app

HOOK = "http://127.0.0.1:9/hooks/tokenkeep"
HOOK_SECRET = "webhook-secret-0123456789"


@dataclass
class Answer:
    status_code: int


@dataclass
class FakeSession:
    """Records posts; answers with scripted statuses (or raises), optionally blocking."""

    statuses: list[int | Exception] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    gate: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)

    def post(self, url: str, *, data: bytes, headers: dict[str, str], timeout: float) -> Answer:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "the test never released the webhook"
        self.posts.append({"url": url, "data": data, "headers": headers, "timeout": timeout})
        outcome = self.statuses.pop(0) if self.statuses else 200
        if isinstance(outcome, Exception):
            raise outcome
        return Answer(outcome)


def sender(session: FakeSession, clock: FakeClock) -> AlertSender:
    return AlertSender(session, HOOK, HOOK_SECRET, timeout=5, clock=clock, sleep=clock.sleep)


PAYLOAD = {"event": "needs_reauth", "provider": "acme", "detail": "invalid_grant"}


def test_alerts_are_signed_with_hmac_sha256_over_the_raw_body(clock: FakeClock) -> None:
    session = FakeSession()
    assert sender(session, clock).deliver(PAYLOAD)
    [post] = session.posts
    expected = hmac.new(HOOK_SECRET.encode(), post["data"], hashlib.sha256).hexdigest()
    assert post["headers"]["X-TokenKeep-Signature"] == f"sha256={expected}"
    assert post["headers"]["X-TokenKeep-Timestamp"] == str(int(clock()))
    assert post["headers"]["Content-Type"] == "application/json"
    assert json.loads(post["data"]) == PAYLOAD
    assert sign("other-secret", post["data"]) != post["headers"]["X-TokenKeep-Signature"]


def test_a_failed_delivery_is_retried_with_backoff_then_delivered(clock: FakeClock) -> None:
    session = FakeSession(statuses=[500, requests.ConnectionError("down"), 200])
    assert sender(session, clock).deliver(PAYLOAD)
    assert len(session.posts) == 3
    assert clock.slept == [1.0, 2.0]
    ids = {p["headers"]["X-TokenKeep-Delivery"] for p in session.posts}
    assert len(ids) == 1  # one delivery id across retries, so receivers can dedupe


def test_delivery_gives_up_after_five_attempts_and_on_a_refusal(clock: FakeClock) -> None:
    failing = FakeSession(statuses=[503] * 10)
    assert not sender(failing, clock).deliver(PAYLOAD)
    assert len(failing.posts) == 5 and clock.slept == [1.0, 2.0, 4.0, 8.0]
    refused = FakeSession(statuses=[403])
    assert not sender(refused, clock).deliver(PAYLOAD)
    assert len(refused.posts) == 1


def test_a_full_queue_drops_the_alert_instead_of_waiting(clock: FakeClock) -> None:
    gate = threading.Event()
    session = FakeSession(gate=gate)
    alerts = AlertSender(session, HOOK, HOOK_SECRET, timeout=5, clock=clock, queue_size=1)
    assert alerts.submit(PAYLOAD)  # taken by the thread, which blocks on the gate
    assert session.entered.wait(5)
    assert alerts.submit(PAYLOAD)  # waits in the queue
    assert not alerts.submit(PAYLOAD)  # no room: dropped, not blocking
    gate.set()
    assert alerts.flush(5)
    assert alerts.delivered == 2 and alerts.dropped == 1


def test_the_alerter_fires_on_needs_reauth_and_once_when_failures_reach_the_threshold(
    clock: FakeClock,
) -> None:
    queued: list[dict[str, Any]] = []
    fake = AlertSender(FakeSession(), HOOK, HOOK_SECRET, timeout=5, clock=clock)
    fake.submit = queued.append  # type: ignore[method-assign,assignment]
    alerter = Alerter(
        fake, after_failures=3, reauthorize_url=lambda a: f"https://tk/auth?provider={a}"
    )
    for n in range(1, 6):
        alerter.on_event(Event("acme", "refresh_failed", clock(), code="http_500", failures=n))
    alerter.on_event(Event("acme", "refreshed", clock()))
    alerter.on_event(Event("acme", "needs_reauth", clock(), code="invalid_grant"))
    assert [(q["event"], q["failures"]) for q in queued] == [
        ("refresh_failing", 3),
        ("needs_reauth", None),
    ]
    assert queued[1]["reauthorize_url"] == "https://tk/auth?provider=acme"


@pytest.fixture
def alerting(
    settings: Settings, repo: Repository, clock: FakeClock
) -> tuple[TokenService, FakeSession]:
    session = FakeSession(gate=threading.Event())
    configured = replace(settings, alert_webhook_url=HOOK, alert_webhook_secret=HOOK_SECRET)
    service = build_service(
        configured,
        repo=repo,
        session=requests.Session(),
        alert_session=session,
        clock=clock,
        sleep=clock.sleep,
    )
    register(service)
    connect(service, access_token="access-secret-1", refresh_token="refresh-secret-1")
    return service, session


@responses.activate
def test_a_token_request_returns_while_the_webhook_is_stuck_and_no_token_is_sent(
    alerting: tuple[TokenService, FakeSession], settings: Settings, clock: FakeClock
) -> None:
    service, session = alerting
    client = create_app(settings, service=service).test_client()
    clock.advance(3600)
    responses.post(TOKEN_URL, json={"error": "invalid_grant"}, status=400)
    headers = {"Authorization": f"Bearer {settings.api_secret_token}"}
    response = client.get("/api/token?provider=acme", headers=headers)
    assert response.status_code == 409  # answered while the webhook post hangs
    assert session.entered.wait(5) and session.posts == []
    assert session.gate is not None
    session.gate.set()
    assert service.alerts is not None and service.alerts.flush(5)
    [post] = session.posts
    body = json.loads(post["data"])
    assert (body["event"], body["provider"], body["code"]) == (
        "needs_reauth",
        "acme",
        "invalid_grant",
    )
    raw = post["data"].decode() + json.dumps(post["headers"])
    for secret in ("access-secret-1", "refresh-secret-1", CLIENT_SECRET, HOOK_SECRET):
        assert secret not in raw
    assert settings.api_secret_token not in raw


def test_a_webhook_url_without_a_secret_is_a_config_error(settings: Settings, config_file) -> None:
    from tokenkeep.config import load_settings

    env = {"TOKENKEEP_ALERT_WEBHOOK_URL": HOOK}
    with pytest.raises(ConfigError, match="needs alert_webhook_secret"):
        load_settings(config_file, env=env)
    env["TOKENKEEP_ALERT_WEBHOOK_SECRET"] = HOOK_SECRET
    assert load_settings(config_file, env=env).alert_webhook_url == HOOK
    with pytest.raises(ConfigError, match="absolute http"):
        load_settings(config_file, env={**env, "TOKENKEEP_ALERT_WEBHOOK_URL": "hooks.test/x"})
    assert HOOK_SECRET not in repr(load_settings(config_file, env=env))


def test_without_a_webhook_no_alert_sender_is_built(service: TokenService) -> None:
    assert service.alerts is None
