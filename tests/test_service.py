"""TokenService with a fake provider client, a real SQLite file and an injected clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from conftest import FakeClock, connect, register

from tokenkeep.errors import (
    NotConnected,
    PermanentUpstreamError,
    ReauthorizationRequired,
    UnknownProvider,
    UpstreamError,
    UpstreamUnavailable,
)
from tokenkeep.models import NEEDS_REAUTH, Provider, TokenSet
from tokenkeep.service import TokenService


@dataclass
class FakeClient:
    """Stands in for ProviderClient at our own seam; scripted refresh outcomes."""

    clock: FakeClock
    outcomes: list[object] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    on_call: Callable[[], None] | None = None
    counter: int = 0

    def refresh(self, provider: Provider, refresh_token: str, *, deadline: float) -> TokenSet:
        self.calls.append(refresh_token)
        if self.on_call:
            self.on_call()
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, Exception):
            raise outcome
        self.counter += 1
        if isinstance(outcome, TokenSet):
            return outcome
        now = self.clock()
        return TokenSet(
            access_token=f"access-new-{self.counter}",
            refresh_token=f"refresh-new-{self.counter}",
            expires_at=now + 3600,
            obtained_at=now,
        )


@pytest.fixture
def fake(service: TokenService, clock: FakeClock) -> FakeClient:
    client = FakeClient(clock)
    service.client = client  # type: ignore[assignment]
    register(service)
    return client


def test_fresh_token_is_served_without_calling_the_provider(service, fake):
    connect(service)
    result = service.get_token("acme")
    assert result.record.tokens.access_token == "access-1"
    assert result.warning is None
    assert fake.calls == []


def test_token_inside_the_margin_is_refreshed_before_it_is_served(service, fake, clock):
    connect(service, expires_in=3600)
    clock.advance(3600 - 299)
    result = service.get_token("acme")
    assert result.record.tokens.access_token == "access-new-1"
    assert fake.calls == ["refresh-1"]


def test_token_just_outside_the_margin_is_not_refreshed(service, fake, clock):
    connect(service, expires_in=3600)
    clock.advance(3600 - 301)
    assert service.get_token("acme").record.tokens.access_token == "access-1"
    assert fake.calls == []


def test_min_valid_larger_than_the_margin_triggers_a_refresh(service, fake, clock):
    connect(service, expires_in=3600)
    clock.advance(1000)
    assert service.get_token("acme", min_valid=3000).record.tokens.access_token == "access-new-1"


def test_short_lived_token_is_refreshed_at_half_its_life_not_on_every_call(service, fake, clock):
    connect(service, expires_in=120)  # shorter than the 300 s margin
    clock.advance(30)
    assert service.get_token("acme").record.tokens.access_token == "access-1"
    clock.advance(31)
    assert service.get_token("acme").record.tokens.access_token == "access-new-1"
    assert len(fake.calls) == 1


def test_refresh_without_new_refresh_token_keeps_the_old_one(service, fake, clock):
    connect(service, extras={"api_domain": "https://www.zohoapis.eu"})
    fake.outcomes = [TokenSet(access_token="a2", expires_at=clock() + 3600, obtained_at=clock())]
    clock.advance(3500)
    record = service.get_token("acme").record
    assert record.tokens.access_token == "a2"
    assert record.tokens.refresh_token == "refresh-1"
    assert record.tokens.extras["api_domain"] == "https://www.zohoapis.eu"
    assert record.tokens.scope == "read write"


def test_rotated_refresh_token_is_stored_and_used_next_time(service, fake, clock):
    connect(service)
    clock.advance(3500)
    service.get_token("acme")
    clock.advance(3500)
    service.get_token("acme")
    assert fake.calls == ["refresh-1", "refresh-new-1"]


def test_token_without_expiry_is_never_refreshed(service, fake, clock):
    connect(service, expires_in=None, refresh_token=None)
    clock.advance(10 * 365 * 86400)
    result = service.get_token("acme")
    assert result.record.tokens.access_token == "access-1"
    assert result.record.tokens.expires_at is None
    assert fake.calls == []


def test_permanent_failure_marks_needs_reauth_and_stops_calling_the_provider(service, fake, clock):
    connect(service)
    fake.outcomes = [PermanentUpstreamError("acme: invalid_grant", provider_error="invalid_grant")]
    clock.advance(3500)
    with pytest.raises(ReauthorizationRequired) as first:
        service.get_token("acme")
    assert first.value.extra["reauthorize_url"] == "http://127.0.0.1:8000/auth?provider=acme"
    with pytest.raises(ReauthorizationRequired):
        service.get_token("acme")
    assert len(fake.calls) == 1
    record = service.repo.get_token("acme")
    assert record is not None and record.status == NEEDS_REAUTH
    assert record.tokens.access_token == "access-1"  # nothing overwritten
    assert "invalid_grant" in (record.last_error or "")


def test_transient_failure_serves_the_still_valid_token_with_a_warning(service, fake, clock):
    connect(service)
    fake.outcomes = [UpstreamUnavailable("acme: HTTP 503")]
    clock.advance(3500)
    result = service.get_token("acme")
    assert result.record.tokens.access_token == "access-1"
    assert result.warning and "503" in result.warning


def test_backoff_allows_one_upstream_attempt_per_window(service, fake, clock):
    connect(service)
    fake.outcomes = [UpstreamUnavailable("down"), UpstreamUnavailable("down")]
    clock.advance(3500)
    for _ in range(5):
        service.get_token("acme")
    assert len(fake.calls) == 1
    clock.advance(10)  # refresh_backoff_seconds
    service.get_token("acme")
    assert len(fake.calls) == 2
    clock.advance(10)  # second failure doubled the window to 20 s
    service.get_token("acme")
    assert len(fake.calls) == 2
    clock.advance(10)
    assert service.get_token("acme").record.tokens.access_token == "access-new-1"
    assert service.repo.get_token("acme").failure_count == 0  # type: ignore[union-attr]


def test_retry_after_longer_than_the_backoff_is_honoured(service, fake, clock):
    connect(service)
    fake.outcomes = [UpstreamUnavailable("429", retry_after=60)]
    clock.advance(3500)
    service.get_token("acme")
    clock.advance(30)
    service.get_token("acme")
    assert len(fake.calls) == 1
    clock.advance(31)
    service.get_token("acme")
    assert len(fake.calls) == 2


def test_transient_failure_on_an_expired_token_is_503(service, fake, clock):
    connect(service)
    fake.outcomes = [UpstreamUnavailable("acme: timed out")]
    clock.advance(3700)
    with pytest.raises(UpstreamUnavailable):
        service.get_token("acme")
    assert service.repo.get_token("acme").tokens.access_token == "access-1"  # type: ignore[union-attr]


def test_bad_provider_answer_on_an_expired_token_is_502_and_keeps_the_tokens(service, fake, clock):
    connect(service)
    fake.outcomes = [UpstreamError("acme: no access_token")]
    clock.advance(3700)
    with pytest.raises(UpstreamError):
        service.get_token("acme")
    with pytest.raises(UpstreamError):  # within the backoff: the recorded error again
        service.get_token("acme")
    assert len(fake.calls) == 1
    assert service.repo.get_token("acme").tokens.refresh_token == "refresh-1"  # type: ignore[union-attr]


def test_expired_token_without_refresh_token_requires_reauthorization(service, fake, clock):
    connect(service, refresh_token=None, expires_in=900)
    clock.advance(700)
    assert service.get_token("acme").warning  # inside the margin, still valid: served
    clock.advance(201)
    with pytest.raises(ReauthorizationRequired):
        service.get_token("acme")
    assert fake.calls == []


def test_force_refresh_within_the_minimum_interval_returns_the_last_refresh(service, fake, clock):
    connect(service)
    clock.advance(6)
    first = service.force_refresh("acme")
    clock.advance(2)
    second = service.force_refresh("acme")
    assert first.record.tokens.access_token == second.record.tokens.access_token == "access-new-1"
    assert len(fake.calls) == 1
    clock.advance(5)
    assert service.force_refresh("acme").record.tokens.access_token == "access-new-2"


def test_force_refresh_failure_is_an_error_not_a_stale_token(service, fake, clock):
    connect(service)
    clock.advance(6)
    fake.outcomes = [UpstreamUnavailable("down")]
    with pytest.raises(UpstreamUnavailable):
        service.force_refresh("acme")


def test_unknown_and_unauthorized_providers_are_told_apart(service, fake):
    with pytest.raises(UnknownProvider):
        service.get_token("nope")
    with pytest.raises(NotConnected) as exc:
        service.get_token("acme")
    assert exc.value.extra["authorize_url"].endswith("/auth?provider=acme")


def test_concurrent_callers_in_one_process_share_one_refresh(service, fake, clock):
    connect(service)
    clock.advance(3500)
    gate = threading.Event()
    fake.on_call = lambda: gate.wait(2)
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(service.get_token, "acme") for _ in range(32)]
        gate.set()
        tokens = {f.result().record.tokens.access_token for f in futures}
    assert tokens == {"access-new-1"}
    assert fake.calls == ["refresh-1"]


def test_waiter_polls_while_another_process_holds_the_lease_then_serves_its_token(
    service, fake, clock
):
    connect(service)
    clock.advance(3500)
    assert service.repo.claim_lease("acme", "other-process", clock(), clock() + 15)
    polls = 0

    def other_process_finishes(seconds: float) -> None:
        nonlocal polls
        polls += 1
        clock.now += seconds
        if polls == 3:
            new = TokenSet(
                access_token="from-other",
                refresh_token="r-other",
                expires_at=clock() + 3600,
                obtained_at=clock(),
            )
            service.repo.complete_refresh("acme", "other-process", new)

    service.sleep = other_process_finishes
    result = service.get_token("acme")
    assert result.record.tokens.access_token == "from-other"
    assert fake.calls == []
    assert polls == 3


def test_lease_of_a_crashed_owner_expires_and_the_next_caller_takes_over(service, fake, clock):
    connect(service)
    clock.advance(3500)
    assert service.repo.claim_lease("acme", "crashed-worker", clock(), clock() + 15)
    result = service.get_token("acme")  # sleeps (fake clock) until the lease lapses
    assert result.record.tokens.access_token == "access-new-1"
    assert fake.calls == ["refresh-1"]
    assert sum(service.sleep.__self__.slept) >= 15  # type: ignore[attr-defined]
    record = service.repo.get_token("acme")
    assert record is not None and record.lease_owner is None


def test_the_lease_is_released_after_a_refresh_and_after_a_failure(service, fake, clock):
    connect(service)
    clock.advance(3500)
    service.get_token("acme")
    assert service.repo.get_token("acme").lease_owner is None  # type: ignore[union-attr]
    clock.advance(3500)
    fake.outcomes = [UpstreamUnavailable("down")]
    service.get_token("acme")
    assert service.repo.get_token("acme").lease_owner is None  # type: ignore[union-attr]


def test_refresh_all_refreshes_due_skips_unauthorized_and_isolates_failures(service, fake, clock):
    register(service, "bravo")
    register(service, "charlie")
    register(service, "delta")
    connect(service, "acme", expires_in=600)
    connect(service, "bravo", expires_in=7200)
    connect(service, "charlie", expires_in=600, refresh_token="refresh-c")
    fake.outcomes = []

    def fail_for_charlie() -> None:
        if fake.calls[-1] == "refresh-c":
            fake.outcomes.insert(0, PermanentUpstreamError("invalid_grant"))

    fake.on_call = fail_for_charlie
    outcomes = {o.alias: o for o in service.refresh_all(within=1200, concurrency=4)}
    assert outcomes["acme"].outcome == "refreshed"
    assert outcomes["bravo"].outcome == "fresh"
    assert outcomes["charlie"].outcome == "failed"
    assert outcomes["delta"].outcome == "skipped"
    assert outcomes["delta"].detail == "never authorized"
    forced = {o.alias: o.outcome for o in service.refresh_all(force=True)}
    assert forced["bravo"] == "refreshed"
    assert forced["charlie"] == "failed"  # needs re-authorization now


def test_refresh_all_keep_alive_refreshes_idle_long_lived_tokens(service, fake, clock):
    connect(service, expires_in=None)
    clock.advance(31 * 86400)
    outcomes = service.refresh_all(keep_alive_days=30)
    assert [o.outcome for o in outcomes] == ["refreshed"]
    assert fake.calls == ["refresh-1"]


def test_reregistering_a_provider_keeps_its_tokens(service, fake):
    connect(service)
    register(service, scopes=("read",), client_secret="rotated-secret-value")
    assert service.get_token("acme").record.tokens.access_token == "access-1"
    provider = service.repo.get_provider("acme")
    assert provider is not None and provider.client_secret == "rotated-secret-value"


def test_refresh_all_does_not_claim_a_refresh_another_caller_made_meanwhile(
    service, fake, clock, monkeypatch
):
    connect(service, expires_in=600)
    listed_before_the_other_refresh = service.repo.list_statuses()
    clock.advance(10)
    service.force_refresh("acme")  # another cron run or a lazy refresh gets there first
    monkeypatch.setattr(service.repo, "list_statuses", lambda: listed_before_the_other_refresh)

    (outcome,) = service.refresh_all(within=1200)

    assert (outcome.outcome, outcome.detail) == ("fresh", "refreshed meanwhile by another caller")
    assert fake.calls == ["refresh-1"]  # only the other caller's refresh went upstream


def test_only_the_caller_that_refreshed_upstream_is_told_it_did(service, fake, clock):
    connect(service, expires_in=60)
    clock.advance(40)  # inside the margin (half the 60 s life)

    first = service.get_token("acme")
    second = service.get_token("acme")

    assert first.refreshed and not second.refreshed
    assert fake.calls == ["refresh-1"]
