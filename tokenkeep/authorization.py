"""The authorization code flow: single-use, browser-bound state and PKCE.

State is 256 random bits stored only as a hash, expires after
`state_ttl_seconds`, can be used once, and is bound to the browser that
started the flow by a cookie (RFC 9700 section 4.7; RFC 6749 section 10.12).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit, urlunsplit

from tokenkeep.classify import clean_text
from tokenkeep.config import Settings
from tokenkeep.errors import InvalidRequest, StateError
from tokenkeep.events import EventLog
from tokenkeep.models import Clock, PendingAuthorization, Provider, TokenRecord
from tokenkeep.oauth import ProviderClient, code_challenge_s256, new_code_verifier
from tokenkeep.repository import Repository


@dataclass(frozen=True)
class AuthorizationStart:
    """Where to send the browser, and the value binding the flow to that browser."""

    url: str
    browser_binding: str


def state_hash(state: str) -> str:
    """The key a state is stored under; the state itself is never stored."""
    return hashlib.sha256(b"tokenkeep-state:" + state.encode()).hexdigest()


def browser_binding(state: str) -> str:
    """The cookie value that ties a state to the browser that started the flow."""
    return hashlib.sha256(b"tokenkeep-browser:" + state.encode()).hexdigest()


class AuthorizationFlow:
    """Starts and completes authorizations; mixed into TokenService."""

    repo: Repository
    client: ProviderClient
    settings: Settings
    clock: Clock
    events: EventLog

    def _provider(self, alias: str) -> Provider:
        raise NotImplementedError

    def start_authorization(self, alias: str) -> AuthorizationStart:
        """Create a single-use state (and PKCE verifier) and build the provider URL."""
        provider = self._provider(alias)
        now = self.clock()
        state = secrets.token_urlsafe(32)  # 256 bits (RFC 9700 section 4.7)
        verifier = new_code_verifier() if provider.pkce else None
        redirect_uri = provider.redirect_uri or self.settings.redirect_uri
        self.repo.save_pending(
            PendingAuthorization(
                state_hash=state_hash(state),
                alias=alias,
                code_verifier=verifier,
                redirect_uri=redirect_uri,
                created_at=now,
                expires_at=now + self.settings.state_ttl_seconds,
            ),
            now,
        )
        url = self.client.authorization_url(
            provider,
            state=state,
            redirect_uri=redirect_uri,
            code_challenge=None if verifier is None else code_challenge_s256(verifier),
        )
        return AuthorizationStart(url=url, browser_binding=browser_binding(state))

    def take_state(
        self, state: str | None, binding: str | None, provider_hint: str | None = None
    ) -> PendingAuthorization:
        """Consume a callback's state: known, unexpired, unused and from this browser."""
        if not state:
            raise StateError(
                "the callback carries no state; start again from /auth", reason="missing"
            )
        expected = browser_binding(state).encode()
        # Bytes, not str: compare_digest raises TypeError on a non-ASCII cookie value.
        if not binding or not hmac.compare_digest(binding.encode("utf-8", "replace"), expected):
            # Checked before the state is consumed: a foreign browser changes nothing.
            raise StateError(
                "this authorization was started in a different browser (or its cookie "
                "was lost); start again from /auth in this browser",
                reason="foreign",
            )
        pending = self.repo.take_pending(state_hash(state))
        if pending is None:
            raise StateError(
                "unknown or already used state; start again from /auth", reason="unknown"
            )
        if pending.expires_at < self.clock():
            raise StateError(
                "this authorization expired; start again from /auth",
                reason="expired",
                alias=pending.alias,
            )
        if provider_hint is not None and provider_hint != pending.alias:
            raise StateError(
                "the state belongs to another provider; start again from /auth",
                reason="mismatch",
            )
        return pending

    def complete_authorization(
        self,
        pending: PendingAuthorization,
        code: str | None,
        callback: Mapping[str, str] | None = None,
    ) -> tuple[Provider, TokenRecord]:
        """Exchange the code and store the tokens; nothing is stored on failure.

        `callback` holds the callback's query parameters: the provider's quirks
        may keep some as extras, or name the server to exchange the code at.
        """
        if not code:
            raise InvalidRequest("the callback carries no authorization code")
        callback = callback or {}
        provider = self._provider(pending.alias)
        # Checked before any request: the client secret only goes to allowed hosts.
        token_url = callback_token_url(provider, callback)
        tokens = self.client.exchange_code(
            replace(provider, token_url=token_url or provider.token_url),
            code=code,
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
        )
        kept = {
            extra: clean_text(callback[param], 300)
            for param, extra in provider.quirks.callback_params.items()
            if callback.get(param)
        }
        if kept:
            tokens = replace(tokens, extras={**tokens.extras, **kept})
        self.repo.store_authorized(provider.alias, tokens, self.clock(), token_url)
        self.events.record(provider.alias, "authorized")
        record = self.repo.get_token(provider.alias)
        assert record is not None
        return provider, record


def callback_token_url(provider: Provider, callback: Mapping[str, str]) -> str | None:
    """The token URL a callback moves this connection to (Zoho's accounts-server), or None.

    The server must be https on a host of the provider's allow-list; anything
    else is refused before the code (or the client secret) is sent anywhere.
    """
    param = provider.quirks.token_host_param
    value = callback.get(param) if param else None
    if not value:
        return None
    shown = clean_text(value, 100)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), None
    host = (parts.hostname or "").lower()
    if (
        parts.scheme != "https"
        or host not in provider.quirks.token_hosts
        or port not in (None, 443)
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise InvalidRequest(
            f"the callback's {param} {shown!r} is not a known server of {provider.alias}; "
            "the client secret was not sent there. Start again from /auth"
        )
    path = urlsplit(provider.token_url).path
    return urlunsplit(("https", host, path, "", ""))
