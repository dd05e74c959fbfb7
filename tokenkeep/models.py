"""Plain data: providers, token sets, token records and pending authorizations.

Times are float seconds since the epoch, always taken from an injected clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from tokenkeep.quirks import Quirks

Clock = Callable[[], float]

ALIAS_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
CONNECTED = "connected"
NEEDS_REAUTH = "needs_reauth"
NOT_CONNECTED = "not_connected"


def is_valid_alias(alias: str) -> bool:
    """True for an exact, case-sensitive match of the documented alias pattern."""
    return ALIAS_RE.fullmatch(alias) is not None


def iso8601(ts: float | None) -> str | None:
    """Format an epoch time as ISO 8601 UTC with a trailing Z, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Provider:
    """A registered OAuth2 provider (an external account to keep tokens for)."""

    alias: str
    client_id: str
    client_secret: str = field(repr=False)
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    auth_method: str = "client_secret_basic"
    pkce: bool = True
    redirect_uri: str | None = None
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    token_params: Mapping[str, str] = field(default_factory=dict)
    default_lifetime_seconds: int | None = None
    preset: str | None = None
    quirks: Quirks = field(default_factory=Quirks)
    created_at: float = 0.0
    updated_at: float = 0.0

    def scope_string(self) -> str:
        """The scopes joined with this provider's separator (RFC 6749 section 3.3)."""
        return self.scope_separator.join(self.scopes)


@dataclass(frozen=True)
class ProviderChanges:
    """Fields to set on (re-)registration; None means "keep what is stored"."""

    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    authorize_url: str | None = None
    token_url: str | None = None
    scopes: tuple[str, ...] | None = None
    scope_separator: str | None = None
    auth_method: str | None = None
    pkce: bool | None = None
    redirect_uri: str | None = None
    authorize_params: Mapping[str, str] | None = None
    token_params: Mapping[str, str] | None = None
    default_lifetime_seconds: int | None = None
    preset: str | None = None
    quirks: Quirks | None = None

    def apply(self, provider: Provider, now: float) -> Provider:
        """Return `provider` with every given field replaced."""
        given = {k: v for k, v in self.__dict__.items() if v is not None}
        return replace(provider, **given, updated_at=now)

    def overlay(self, other: ProviderChanges) -> ProviderChanges:
        """These changes with every field `other` gives taking precedence."""
        given = {k: v for k, v in other.__dict__.items() if v is not None}
        return replace(self, **given)


@dataclass(frozen=True)
class TokenSet:
    """Tokens as parsed from one token-endpoint response, with an absolute expiry."""

    access_token: str = field(repr=False)
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    scope: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict, repr=False)
    obtained_at: float = 0.0

    def merged_with_previous(self, previous: TokenSet) -> TokenSet:
        """Keep the previous refresh token (and scope) when the refresh omitted them.

        RFC 6749 section 6: the server MAY issue a new refresh token; when it
        does not, the old one stays valid.
        """
        return replace(
            self,
            refresh_token=self.refresh_token or previous.refresh_token,
            scope=self.scope if self.scope is not None else previous.scope,
            extras={**previous.extras, **self.extras},
        )


@dataclass(frozen=True)
class TokenRecord:
    """The stored state of one provider's connection."""

    alias: str
    tokens: TokenSet
    status: str
    authorized_at: float
    last_error: str | None = None
    last_error_code: str | None = None
    last_error_at: float | None = None
    failure_count: int = 0
    next_attempt_at: float | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    version: int = 0
    token_url: str | None = None  # where this connection refreshes, when not the provider's

    def remaining(self, now: float) -> float | None:
        """Seconds of validity left (may be negative), or None when it never expires."""
        if self.tokens.expires_at is None:
            return None
        return self.tokens.expires_at - now

    def is_valid(self, now: float) -> bool:
        """True while the access token has not expired."""
        left = self.remaining(now)
        return left is None or left > 0

    def effective_margin(self, margin: float) -> float:
        """The refresh margin, shrunk for tokens whose whole life is shorter than it.

        A token that lives 60 s with a 300 s margin would otherwise be
        refreshed on every call; refresh it at half its life instead.
        """
        if self.tokens.expires_at is None:
            return margin
        lifetime = self.tokens.expires_at - self.tokens.obtained_at
        if lifetime <= 0:
            return margin
        return min(margin, lifetime / 2)

    def needs_refresh(self, now: float, margin: float, min_valid: float | None = None) -> bool:
        """True when less than the margin (or the caller's min_valid) is left."""
        left = self.remaining(now)
        if left is None:
            return False
        wanted = self.effective_margin(margin)
        if min_valid is not None:
            wanted = max(wanted, min_valid)
        return left < wanted


@dataclass(frozen=True)
class PendingAuthorization:
    """A started authorization waiting for its callback; keyed by the state's hash."""

    state_hash: str
    alias: str
    code_verifier: str | None = field(repr=False)
    redirect_uri: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class ProviderStatus:
    """One line of `tokenkeep providers`: a provider and its connection state."""

    alias: str
    status: str
    expires_at: float | None
    obtained_at: float | None
    has_refresh_token: bool
    last_error: str | None
    last_error_at: float | None
    token_url: str
    auth_method: str
    refreshing: bool = False  # a refresh lease is held right now

    def to_dict(self, now: float) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "provider": self.alias,
            "status": self.status,
            "expires_at": iso8601(self.expires_at),
            "expires_in": None if self.expires_at is None else int(self.expires_at - now),
            "last_refresh": iso8601(self.obtained_at),
            "has_refresh_token": self.has_refresh_token,
            "last_error": self.last_error,
            "last_error_at": iso8601(self.last_error_at),
        }


@dataclass(frozen=True)
class ApiKey:
    """A scoped caller key as stored (the key itself is never stored)."""

    name: str
    providers: tuple[str, ...] | None
    created_at: float
    last_used_at: float | None
