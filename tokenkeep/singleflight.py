"""Single-flight refresh: at most one refresh per provider in flight, anywhere.

A refresher claims the row's lease with one conditional UPDATE, re-reads the
row, calls the provider outside any transaction, then writes the new tokens
and releases the lease in one transaction. Threads of one process queue on a
per-provider lock; other processes poll the row until the lease clears or
expires (a crashed owner's lease lapses a little after its HTTP timeout).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from tokenkeep.config import Settings
from tokenkeep.errors import (
    PermanentUpstreamError,
    ReauthorizationRequired,
    TokenKeepError,
    UpstreamError,
    UpstreamUnavailable,
)
from tokenkeep.events import EventLog
from tokenkeep.models import NEEDS_REAUTH, Clock, Provider, TokenRecord
from tokenkeep.oauth import ProviderClient
from tokenkeep.repository import Repository

Due = Callable[[TokenRecord, float], bool]
POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class TokenResult:
    """A token to hand out, with a warning when it is served after a failed refresh."""

    record: TokenRecord
    warning: str | None = None
    refreshed: bool = False  # True only for the caller that refreshed it upstream


class SingleFlight:
    """The refresh machinery; mixed into TokenService."""

    repo: Repository
    client: ProviderClient
    settings: Settings
    clock: Clock
    sleep: Callable[[float], None]
    owner: str
    lease_seconds: float
    events: EventLog
    _locks: dict[str, threading.Lock]
    _locks_guard: threading.Lock

    def _record(self, alias: str) -> TokenRecord:
        raise NotImplementedError

    def _provider(self, alias: str) -> Provider:
        raise NotImplementedError

    def _reauth_error(self, alias: str, reason: str) -> TokenKeepError:
        raise NotImplementedError

    def refresh_when(self, alias: str, due: Due, *, serve_stale: bool) -> TokenResult:
        """Refresh `alias` if `due` still holds once this caller may refresh.

        With `serve_stale`, a failed refresh hands back the still-valid token
        with a warning instead of raising.
        """
        deadline = self.clock() + self.lease_seconds + 2
        lock = self._lock_for(alias)
        if not lock.acquire(timeout=max(0.0, deadline - self.clock())):
            return self._fallback(self._record(alias), serve_stale, "a refresh is taking too long")
        try:
            while True:
                now = self.clock()
                record = self._record(alias)
                if not due(record, now):
                    return TokenResult(record)
                if record.tokens.refresh_token is None:
                    return self._no_refresh_token(record, now)
                if record.next_attempt_at is not None and now < record.next_attempt_at:
                    return self._fallback(record, serve_stale, None)
                free = record.lease_until is None or record.lease_until < now
                if free and self.repo.claim_lease(alias, self.owner, now, now + self.lease_seconds):
                    return self._refresh_owned(alias, due, serve_stale)
                if self.clock() >= deadline:
                    return self._fallback(record, serve_stale, "a refresh is taking too long")
                self.sleep(POLL_INTERVAL)
        finally:
            lock.release()

    def _refresh_owned(self, alias: str, due: Due, serve_stale: bool) -> TokenResult:
        started = self.clock()
        try:
            record = self.repo.get_token(alias)
            now = self.clock()
            if record is None or record.status == NEEDS_REAUTH or not due(record, now):
                self.repo.release_lease(alias, self.owner)
                return TokenResult(self._record(alias))
            provider = self._provider(alias)
            if record.token_url:  # the callback moved this connection (Zoho's accounts-server)
                provider = replace(provider, token_url=record.token_url)
            assert record.tokens.refresh_token is not None
            tokens = self.client.refresh(
                provider,
                record.tokens.refresh_token,
                deadline=now + self.settings.http_timeout_seconds,
            )
        except PermanentUpstreamError as exc:
            self.repo.record_failure(
                alias,
                self.owner,
                error=exc.description,
                code=ReauthorizationRequired.code,
                now=self.clock(),
                next_attempt_at=None,
                needs_reauth=True,
            )
            code = exc.provider_error or exc.code
            self.events.record(alias, "needs_reauth", code=code, detail=exc.description)
            raise self._reauth_error(alias, exc.description) from None
        except (UpstreamError, UpstreamUnavailable) as exc:
            assert record is not None
            failures = record.failure_count + 1
            base = self.settings.refresh_backoff_seconds
            backoff = min(self.settings.refresh_backoff_max_seconds, base * 2 ** (failures - 1))
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                backoff = max(backoff, min(retry_after, self.settings.refresh_backoff_max_seconds))
            now = self.clock()
            self.repo.record_failure(
                alias,
                self.owner,
                error=exc.description,
                code=exc.code,
                now=now,
                next_attempt_at=now + backoff,
                needs_reauth=False,
            )
            self.events.record(
                alias,
                "refresh_failed",
                code=getattr(exc, "provider_error", None) or exc.code,
                detail=exc.description,
                failures=failures,
                duration=now - started,
            )
            return self._fallback(self._record(alias), serve_stale, None)
        except BaseException:
            self.repo.release_lease(alias, self.owner)
            raise
        self.repo.complete_refresh(alias, self.owner, tokens.merged_with_previous(record.tokens))
        self.events.record(alias, "refreshed", duration=self.clock() - started)
        return TokenResult(self._record(alias), refreshed=True)

    def _fallback(self, record: TokenRecord, serve_stale: bool, reason: str | None) -> TokenResult:
        """After a failed (or backed-off) refresh: the still-valid token, or the error."""
        now = self.clock()
        if reason is None:
            reason = record.last_error or "the last refresh failed"
        if serve_stale and record.is_valid(now):
            return TokenResult(
                record, warning=f"refresh failed, serving the current token: {reason}"
            )
        retry_after = None
        if record.next_attempt_at is not None:
            retry_after = max(1.0, record.next_attempt_at - now)
        if record.last_error_code == UpstreamError.code and record.next_attempt_at is not None:
            raise UpstreamError(reason)
        raise UpstreamUnavailable(reason, retry_after=retry_after)

    def _no_refresh_token(self, record: TokenRecord, now: float) -> TokenResult:
        if record.is_valid(now):
            return TokenResult(
                record, warning="the provider issued no refresh token; re-authorize before expiry"
            )
        reason = "the token expired and the provider issued no refresh token"
        self.repo.record_failure(
            record.alias,
            self.owner,
            error=reason,
            code=ReauthorizationRequired.code,
            now=now,
            next_attempt_at=None,
            needs_reauth=True,
        )
        self.events.record(record.alias, "needs_reauth", code="no_refresh_token", detail=reason)
        raise self._reauth_error(record.alias, reason)

    def _lock_for(self, alias: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(alias, threading.Lock())
