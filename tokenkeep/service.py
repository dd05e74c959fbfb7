"""TokenService: authorization, lazy single-flight refresh, forced refresh, refresh-all.

Single flight (see ../shared/design.md): a refresher claims the row's lease
with one conditional UPDATE, re-reads the row, calls the provider outside any
transaction, then writes the new tokens and releases the lease in one
transaction. Threads of one process queue on a per-provider lock; other
processes poll the row until the lease clears or expires.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from tokenkeep.authorization import (  # noqa: F401 - re-exported
    AuthorizationFlow,
    AuthorizationStart,
    browser_binding,
    state_hash,
)
from tokenkeep.config import Settings
from tokenkeep.errors import (
    InvalidRequest,
    NotConnected,
    PermanentUpstreamError,
    ReauthorizationRequired,
    TokenKeepError,
    UnknownProvider,
    UpstreamError,
    UpstreamUnavailable,
)
from tokenkeep.keys import KeyRing
from tokenkeep.keystore import KeyStore
from tokenkeep.models import (
    NEEDS_REAUTH,
    Clock,
    Provider,
    ProviderChanges,
    TokenRecord,
    is_valid_alias,
)
from tokenkeep.oauth import ProviderClient
from tokenkeep.registration import build_provider
from tokenkeep.repository import Repository

Due = Callable[[TokenRecord, float], bool]
POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class TokenResult:
    """A token to hand out, with a warning when it is served after a failed refresh."""

    record: TokenRecord
    warning: str | None = None


@dataclass(frozen=True)
class RefreshOutcome:
    """What refresh-all did for one provider."""

    alias: str
    outcome: str  # refreshed | fresh | skipped | failed
    detail: str
    expires_at: float | None = None


class TokenService(AuthorizationFlow):
    """The application's use cases; the web and CLI layers only translate."""

    def __init__(
        self,
        repo: Repository,
        client: ProviderClient,
        settings: Settings,
        *,
        clock: Clock = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.repo = repo
        self.client = client
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        # A crashed owner's lease expires a little after its HTTP call must have ended.
        self.lease_seconds = settings.http_timeout_seconds + 5
        self.keys = KeyRing(
            KeyStore(repo.db),
            master_key=settings.api_secret_token,
            encryption_key=settings.encryption_key,
            public_url=settings.public_url,
            clock=clock,
        )
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # -- providers --------------------------------------------------------------

    def register_provider(self, alias: str, changes: ProviderChanges) -> tuple[Provider, bool]:
        """Create or update a provider; an update keeps its tokens. True when created."""
        self.check_alias(alias)
        existing = self.repo.get_provider(alias)
        provider = build_provider(alias, existing, changes, self.clock())
        self.repo.save_provider(provider)
        return provider, existing is None

    def remove_provider(self, alias: str) -> None:
        """Delete a provider and everything stored for it."""
        self.check_alias(alias)
        if not self.repo.delete_provider(alias):
            raise UnknownProvider(f"no provider is registered as {alias!r}")

    def reauthorize_url(self, alias: str) -> str:
        """Where an operator re-authorizes a provider."""
        return f"{self.settings.public_url}/auth?provider={quote(alias)}"

    # -- serving tokens -------------------------------------------------------------

    def get_token(self, alias: str, min_valid: int | None = None) -> TokenResult:
        """A valid token, refreshed first when less than the margin (or min_valid) is left."""
        record = self._record(alias)
        margin = self.settings.refresh_margin_seconds

        def due(rec: TokenRecord, now: float) -> bool:
            return rec.needs_refresh(now, margin, min_valid)

        if not due(record, self.clock()):
            return TokenResult(record)
        return self.refresh_when(alias, due, serve_stale=True)

    def force_refresh(self, alias: str) -> TokenResult:
        """Refresh now, unless a refresh succeeded within the minimum interval."""
        self._record(alias)
        interval = self.settings.force_refresh_min_interval_seconds

        def due(rec: TokenRecord, now: float) -> bool:
            return now - rec.tokens.obtained_at >= interval

        return self.refresh_when(alias, due, serve_stale=False)

    def refresh_all(
        self,
        *,
        within: float = 1200,
        force: bool = False,
        keep_alive_days: float | None = None,
        concurrency: int = 8,
    ) -> list[RefreshOutcome]:
        """Refresh every connected provider that is due, in parallel, each isolated."""
        from tokenkeep.refresh_all import run_refresh_all

        return run_refresh_all(
            self,
            within=within,
            force=force,
            keep_alive_days=keep_alive_days,
            concurrency=concurrency,
        )

    # -- single flight ----------------------------------------------------------------

    def refresh_when(self, alias: str, due: Due, *, serve_stale: bool) -> TokenResult:
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
        try:
            record = self.repo.get_token(alias)
            now = self.clock()
            if record is None or record.status == NEEDS_REAUTH or not due(record, now):
                self.repo.release_lease(alias, self.owner)
                return TokenResult(self._record(alias))
            provider = self._provider(alias)
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
            return self._fallback(self._record(alias), serve_stale, None)
        except BaseException:
            self.repo.release_lease(alias, self.owner)
            raise
        self.repo.complete_refresh(alias, self.owner, tokens.merged_with_previous(record.tokens))
        return TokenResult(self._record(alias))

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
        raise self._reauth_error(record.alias, reason)

    # -- helpers ------------------------------------------------------------------

    def _lock_for(self, alias: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(alias, threading.Lock())

    def check_alias(self, alias: str | None) -> str:
        """Return the alias if it matches the documented pattern, else InvalidRequest."""
        if not alias:
            raise InvalidRequest("the provider parameter is required")
        if not is_valid_alias(alias):
            raise InvalidRequest(
                "a provider alias is 1-64 characters: lower-case letters, digits, '_' and '-', "
                "starting with a letter or digit"
            )
        return alias

    def _provider(self, alias: str) -> Provider:
        self.check_alias(alias)
        provider = self.repo.get_provider(alias)
        if provider is None:
            raise UnknownProvider(f"no provider is registered as {alias!r}")
        return provider

    def _record(self, alias: str) -> TokenRecord:
        self.check_alias(alias)
        record = self.repo.get_token(alias)
        if record is None:
            if self.repo.get_provider(alias) is None:
                raise UnknownProvider(f"no provider is registered as {alias!r}")
            raise NotConnected(
                f"{alias} is registered but not authorized yet; an operator must open "
                f"{self.reauthorize_url(alias)}",
                authorize_url=self.reauthorize_url(alias),
            )
        if record.status == NEEDS_REAUTH:
            raise self._reauth_error(alias, record.last_error or "the grant is no longer valid")
        return record

    def _reauth_error(self, alias: str, reason: str) -> TokenKeepError:
        url = self.reauthorize_url(alias)
        return ReauthorizationRequired(
            f"{alias} needs to be re-authorized by an operator at {url}: {reason}",
            reauthorize_url=url,
        )
