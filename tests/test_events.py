"""The token event log: written where things happen, pruned, shown by `tokenkeep events`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from click.testing import CliRunner
from conftest import CLIENT_SECRET, TOKEN_URL, FakeClock, connect, register

from tokenkeep.cli import main
from tokenkeep.errors import ReauthorizationRequired, UpstreamUnavailable
from tokenkeep.events import EventLog
from tokenkeep.service import TokenService


@pytest.fixture(autouse=True)
def _no_tokenkeep_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOKENKEEP_"):
            monkeypatch.delenv(name)


def kinds(service: TokenService, alias: str | None = None) -> list[str]:
    return [e.kind for e in service.events.recent(alias)]


def expire(service: TokenService, clock: FakeClock) -> None:
    """Move past the stored token's expiry so the next request refreshes it."""
    clock.advance(3600)


@responses.activate
def test_a_completed_authorization_is_recorded(service: TokenService) -> None:
    register(service)
    start = service.start_authorization("acme")
    state = parse_qs(urlsplit(start.url).query)["state"][0]
    responses.post(TOKEN_URL, json={"access_token": "a-1", "refresh_token": "r-1"})
    pending = service.take_state(state, start.browser_binding)
    service.complete_authorization(pending, "the-code")
    assert kinds(service) == ["authorized"]


@responses.activate
def test_a_refresh_is_recorded_with_its_duration(service: TokenService, clock: FakeClock) -> None:
    register(service)
    connect(service)
    expire(service, clock)
    responses.post(TOKEN_URL, json={"access_token": "a-2", "expires_in": 3600})
    service.get_token("acme")
    [event] = service.events.recent("acme")
    assert event.kind == "refreshed" and event.duration_ms is not None
    assert event.at == clock()


@responses.activate
def test_a_transient_failure_is_recorded_with_code_text_and_count_but_no_secret(
    service: TokenService, clock: FakeClock
) -> None:
    register(service)
    connect(service, refresh_token="refresh-secret-xyz")
    expire(service, clock)
    body = {"error": "temporarily_unavailable", "error_description": "refresh-secret-xyz down"}
    responses.post(TOKEN_URL, json=body, status=503)
    with pytest.raises(UpstreamUnavailable):
        service.get_token("acme")
    [event] = service.events.recent("acme")
    assert event.kind == "refresh_failed"
    assert event.code and event.detail and event.failures == 1
    text = json.dumps(event.to_dict())
    for secret in ("refresh-secret-xyz", CLIENT_SECRET, "access-1"):
        assert secret not in text


@responses.activate
def test_a_rejected_grant_is_recorded_as_needs_reauth(
    service: TokenService, clock: FakeClock
) -> None:
    register(service)
    connect(service)
    expire(service, clock)
    responses.post(TOKEN_URL, json={"error": "invalid_grant"}, status=400)
    with pytest.raises(ReauthorizationRequired):
        service.get_token("acme")
    [event] = service.events.recent("acme")
    assert (event.kind, event.code) == ("needs_reauth", "invalid_grant")


def test_an_expired_token_without_refresh_token_is_recorded_as_needs_reauth(
    service: TokenService, clock: FakeClock
) -> None:
    register(service)
    connect(service, refresh_token=None)
    expire(service, clock)
    with pytest.raises(ReauthorizationRequired):
        service.get_token("acme")
    assert [(e.kind, e.code) for e in service.events.recent()] == [
        ("needs_reauth", "no_refresh_token")
    ]


def test_removing_a_provider_is_recorded_and_its_events_are_kept(service: TokenService) -> None:
    register(service)
    service.events.record("acme", "authorized")
    service.remove_provider("acme")
    assert kinds(service, "acme") == ["removed", "authorized"]


def test_the_log_keeps_the_newest_events_per_provider_and_counts_them_all(
    service: TokenService,
) -> None:
    log = EventLog(service.repo.db, service.clock, keep_per_provider=3)
    for n in range(5):
        log.record("acme", "refreshed", detail=f"n={n}")
    log.record("other", "refreshed")
    assert [e.detail for e in log.recent("acme")] == ["n=4", "n=3", "n=2"]
    assert len(log.recent("other")) == 1
    assert log.totals()[("acme", "refreshed")] == 5


def test_a_failing_listener_or_store_never_reaches_the_caller(service: TokenService) -> None:
    heard = []

    def broken(event: object) -> None:
        raise RuntimeError("listener bug")

    service.events.listeners[:] = [broken, heard.append]
    service.events.record("acme", "refreshed")
    service.repo.db.conn.execute("DROP TABLE events")
    service.events.record("acme", "refreshed")  # the store fails: logged, not raised
    assert len(heard) == 2


def test_unknown_event_kinds_are_refused(service: TokenService) -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        service.events.record("acme", "exploded")


def test_the_events_command_shows_newest_first_filters_and_limits(
    runner: CliRunner, config_file: Path, service: TokenService, clock: FakeClock
) -> None:
    for alias, kind in (("acme", "authorized"), ("zoho", "imported"), ("acme", "refreshed")):
        service.events.record(alias, kind)
        clock.advance(60)
    service.events.record("acme", "refresh_failed", code="http_503", detail="down", failures=2)
    result = runner.invoke(main, ["--config", str(config_file), "events"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[2] for line in lines] == [
        "refresh_failed",
        "refreshed",
        "imported",
        "authorized",
    ]
    assert "http_503 down (failure 2)" in lines[0]
    only = runner.invoke(main, ["--config", str(config_file), "events", "acme", "--limit", "2"])
    assert [line.split()[1:3] for line in only.stdout.splitlines()] == [
        ["acme", "refresh_failed"],
        ["acme", "refreshed"],
    ]
    body = json.loads(
        runner.invoke(main, ["--config", str(config_file), "events", "zoho", "--json"]).stdout
    )
    assert [(e["provider"], e["event"]) for e in body["events"]] == [("zoho", "imported")]
    assert body["events"][0]["at"].endswith("Z")


def test_the_events_command_rejects_a_bad_alias_in_one_line(
    runner: CliRunner, config_file: Path
) -> None:
    result = runner.invoke(main, ["--config", str(config_file), "events", "Bad Alias"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_events_command_says_when_there_is_nothing(
    runner: CliRunner, config_file: Path
) -> None:
    result = runner.invoke(main, ["--config", str(config_file), "events"])
    assert result.stdout.strip() == "No events recorded."
