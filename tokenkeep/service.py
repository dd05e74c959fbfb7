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

from tokenkeep.alerts import AlertSender
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
    ReauthorizationRequired,
    TokenKeepError,
    UnknownProvider,
)
from tokenkeep.events import EventLog
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
from tokenkeep.singleflight import Due, SingleFlight, TokenResult  # noqa: F401


@dataclass(frozen=True)
class RefreshOutcome:
    """What refresh-all did for one provider."""

    alias: str
    outcome: str  # refreshed | fresh | skipped | failed
    detail: str
    expires_at: float | None = None


class TokenService(AuthorizationFlow, SingleFlight):
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
        self.events = EventLog(repo.db, clock)
        self.alerts: AlertSender | None = None  # set by bootstrap when alerts are configured
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
        self.events.record(alias, "removed")

    def record_import(self, alias: str, detail: str) -> None:
        """Log that a provider was moved over from the PHP original."""
        self.events.record(alias, "imported", detail=detail)

    def reauthorize_url(self, alias: str) -> str:
        """Where an operator re-authorizes a provider."""
        return f"{self.settings.public_url}/auth?provider={quote(alias)}"

    # -- serving tokens -------------------------------------------------------------

    def get_token(self, alias: str, min_valid: int | None = None) -> TokenResult:
        """A valid token, refreshed first when less than the margin (or min_valid) is left."""
        record = self._record(alias)
        margin = self.settings.refresh_margin_seconds

        just_refreshed = self.settings.force_refresh_min_interval_seconds

        def due(rec: TokenRecord, now: float) -> bool:
            if now - rec.tokens.obtained_at < just_refreshed and rec.is_valid(now):
                # A token this fresh is the best the provider gives: a min_valid
                # above its lifetime must not turn every call into a refresh.
                return False
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

    # -- helpers ------------------------------------------------------------------

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
