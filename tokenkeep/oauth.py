"""ProviderClient: the OAuth2 protocol against one provider's endpoints.

Builds authorization URLs (with PKCE, RFC 7636), exchanges codes and
refreshes tokens (RFC 6749 sections 4.1 and 6), and turns every answer into a
TokenSet or a classified error. It is handed its HTTP session, clock and
sleep function, and never stores anything.
"""

from __future__ import annotations

import base64
import hashlib
import random
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import requests

from tokenkeep.classify import classify_error, clean_text, retry_after_seconds
from tokenkeep.errors import UpstreamError, UpstreamUnavailable
from tokenkeep.models import Clock, Provider, TokenSet

_STANDARD_FIELDS = frozenset(
    {"access_token", "refresh_token", "token_type", "expires_in", "expires_in_sec", "scope"}
)


Session = requests.Session
# requests applies the connect and the read timeout one after the other, so an
# attempt may take both. A reachable provider connects in well under a second
# (3 s allows two SYN retransmits); capping the connect keeps one attempt inside
# the refresh lease (http_timeout_seconds + 5), so no other caller takes over a
# refresh that is still in flight.
CONNECT_TIMEOUT_SECONDS = 3.0


def new_session() -> requests.Session:
    """The HTTP session used for provider calls in production."""
    session = requests.Session()
    session.headers["User-Agent"] = "TokenKeep"
    return session


def new_code_verifier() -> str:
    """A PKCE code verifier: 43 characters from 32 random bytes (RFC 7636 section 4.1)."""
    return secrets.token_urlsafe(32)


def code_challenge_s256(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _basic(provider: Provider, data: dict[str, str], headers: dict[str, str]) -> None:
    # RFC 6749 section 2.3.1: form-encode id and secret before base64.
    raw = f"{quote(provider.client_id, safe='')}:{quote(provider.client_secret, safe='')}"
    headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode("ascii")


def _post(provider: Provider, data: dict[str, str], headers: dict[str, str]) -> None:
    data["client_id"] = provider.client_id
    data["client_secret"] = provider.client_secret


def _none(provider: Provider, data: dict[str, str], headers: dict[str, str]) -> None:
    data["client_id"] = provider.client_id


CLIENT_AUTH: dict[str, Callable[[Provider, dict[str, str], dict[str, str]], None]] = {
    "client_secret_basic": _basic,
    "client_secret_post": _post,
    "none": _none,
}


class ProviderClient:
    """Speaks OAuth2 to providers over an injected requests.Session."""

    def __init__(
        self,
        session: requests.Session,
        *,
        timeout: float,
        clock: Clock = time.time,
        sleep: Callable[[float], None] = time.sleep,
        retries: int = 2,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.session = session
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep
        self.retries = retries
        self.jitter = jitter

    def authorization_url(
        self, provider: Provider, *, state: str, redirect_uri: str, code_challenge: str | None
    ) -> str:
        """The provider URL that starts the authorization code flow (RFC 6749 4.1.1)."""
        parts = urlsplit(provider.authorize_url)
        params: dict[str, str] = dict(parse_qsl(parts.query, keep_blank_values=True))
        params.update(provider.authorize_params)
        params.update(
            {
                "response_type": "code",
                "client_id": provider.client_id,
                "redirect_uri": redirect_uri,
                "state": state,
            }
        )
        if provider.scopes:
            params["scope"] = provider.scope_string()
        if code_challenge is not None:
            params["code_challenge"] = code_challenge
            params["code_challenge_method"] = "S256"
        return urlunsplit(parts._replace(query=urlencode(params, quote_via=quote)))

    def exchange_code(
        self, provider: Provider, *, code: str, redirect_uri: str, code_verifier: str | None
    ) -> TokenSet:
        """Trade an authorization code for tokens. Never retried: codes are single use."""
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier is not None:
            data["code_verifier"] = code_verifier
        response = self._send(provider, data, deadline=self.clock() + self.timeout, retries=0)
        return self._parse(provider, response, (code, code_verifier or ""))

    def refresh(
        self, provider: Provider, refresh_token: str, *, deadline: float | None = None
    ) -> TokenSet:
        """Use a refresh token (RFC 6749 section 6); the result may lack a refresh token."""
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        deadline = self.clock() + self.timeout if deadline is None else deadline
        response = self._send(provider, data, deadline=deadline, retries=self.retries)
        return self._parse(provider, response, (refresh_token,))

    # -- transport --------------------------------------------------------------

    def _send(
        self, provider: Provider, data: dict[str, str], *, deadline: float, retries: int
    ) -> requests.Response:
        data = {**provider.token_params, **data}
        headers = {"Accept": "application/json"}
        auth = CLIENT_AUTH.get(provider.auth_method)
        if auth is None:
            raise UpstreamError(f"unsupported client auth method {provider.auth_method!r}")
        auth(provider, data, headers)
        attempt = 0
        while True:
            budget = max(0.5, min(self.timeout, deadline - self.clock()))
            try:
                response = self.session.post(
                    provider.token_url,
                    data=data,
                    headers=headers,
                    timeout=(min(budget, CONNECT_TIMEOUT_SECONDS), budget),
                    allow_redirects=False,
                )
            except requests.ReadTimeout:
                # The provider may have processed it (and rotated): no retry.
                raise UpstreamUnavailable(
                    f"{provider.alias}: the token endpoint did not answer within {budget:.0f} s"
                ) from None
            except requests.ConnectionError:
                failure: UpstreamUnavailable = UpstreamUnavailable(
                    f"{provider.alias}: could not connect to the token endpoint"
                )
            except requests.RequestException:
                raise UpstreamUnavailable(
                    f"{provider.alias}: the request to the token endpoint failed"
                ) from None
            else:
                if response.status_code < 500 or attempt >= retries:
                    return response
                failure = UpstreamUnavailable(
                    f"{provider.alias}: the token endpoint answered HTTP {response.status_code}"
                )
            if attempt >= retries:
                raise failure
            # Exponential backoff with full jitter, only while the budget allows.
            delay = min(2.0, 0.2 * 2**attempt) * (0.5 + self.jitter() / 2)
            if self.clock() + delay >= deadline:
                raise failure
            self.sleep(delay)
            attempt += 1

    # -- parsing ----------------------------------------------------------------

    def _parse(
        self, provider: Provider, response: requests.Response, sent: tuple[str, ...]
    ) -> TokenSet:
        body = _decode(response)
        status = response.status_code
        retry_after = retry_after_seconds(response.headers.get("Retry-After"), self.clock())
        if body is None:
            if status >= 500 or status == 429:
                raise UpstreamUnavailable(
                    f"{provider.alias}: the token endpoint answered HTTP {status}",
                    retry_after=retry_after,
                )
            raise UpstreamError(
                f"{provider.alias}: the token endpoint answered HTTP {status} with a body "
                "that is neither JSON nor form-encoded"
            )
        failed = status >= 400 or "error" in body or body.get("ok") is False
        if failed:
            secrets_sent = (*sent, provider.client_secret)
            raise classify_error(
                provider.alias,
                status,
                body,
                retry_after,
                secrets_sent,
                permanent=provider.quirks.permanent_errors,
                transient=provider.quirks.transient_patterns,
                throttle_wait=provider.quirks.throttle_wait_seconds,
            )
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise UpstreamError(f"{provider.alias}: the token response has no access_token")
        return self._token_set(provider, body)

    def _token_set(self, provider: Provider, body: Mapping[str, Any]) -> TokenSet:
        now = self.clock()
        quirks = provider.quirks
        lifetime = _lifetime(body, quirks.expires_in_ms_above)
        basis = now
        if lifetime is None:
            lifetime = provider.default_lifetime_seconds
            if lifetime is not None and quirks.issued_at_ms:
                basis = _issued_at(body, now, lifetime)
        refresh_token = body.get("refresh_token")
        token_type = str(body.get("token_type") or "Bearer")
        if token_type.lower() == "bearer":
            token_type = "Bearer"  # noqa: S105 - a token type, not a secret
        # HubSpot answers a `scopes` list instead of a `scope` string.
        scope_field = "scope" if "scope" in body or "scopes" not in body else "scopes"
        scope = body.get(scope_field)
        if isinstance(scope, list):
            scope = " ".join(str(s) for s in scope)
        elif isinstance(scope, str) and quirks.response_scope_separator:
            # RFC 6749 section 3.3: scopes are space-delimited; some answer with commas.
            parts = scope.replace(quirks.response_scope_separator, " ").split()
            scope = " ".join(parts)
        extras = {k: v for k, v in body.items() if k not in _STANDARD_FIELDS | {scope_field}}
        if quirks.response_extras is not None:
            extras = {k: v for k, v in extras.items() if k in quirks.response_extras}
        return TokenSet(
            access_token=str(body["access_token"]),
            token_type=token_type,
            refresh_token=refresh_token
            if isinstance(refresh_token, str) and refresh_token
            else None,
            expires_at=None if lifetime is None else basis + lifetime,
            scope=None if scope is None else clean_text(str(scope), 2000),
            extras=extras,
            obtained_at=now,
        )


def _decode(response: requests.Response) -> dict[str, Any] | None:
    """Parse a JSON or form-encoded body into a dict; None when it is neither."""
    text = response.text
    if not text.strip():
        return None
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded" or (
        "json" not in content_type and "=" in text and not text.lstrip().startswith(("<", "{"))
    ):
        pairs = parse_qsl(text.strip(), keep_blank_values=True)
        return dict(pairs) if pairs else None
    try:
        parsed = response.json()
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _lifetime(body: Mapping[str, Any], ms_above: int | None = None) -> float | None:
    """Seconds until expiry from `expires_in` (number or numeric string), if present.

    Legacy Zoho answers put milliseconds in `expires_in` and seconds in
    `expires_in_sec`; the latter wins when both are present. With `ms_above`
    (a quirk), an `expires_in` above it alone is taken as milliseconds.
    """
    for key in ("expires_in_sec", "expires_in"):
        value = body.get(key)
        if isinstance(value, bool) or value is None:
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if key == "expires_in" and ms_above is not None and seconds > ms_above:
            seconds /= 1000
        if seconds > 0:
            return seconds
    return None


def _issued_at(body: Mapping[str, Any], now: float, lifetime: float) -> float:
    """The expiry basis from an `issued_at` in epoch milliseconds (Salesforce sends a string).

    A value in the future or older than the lifetime means the clocks disagree;
    then the moment of receipt is the safer basis.
    """
    try:
        issued = float(body["issued_at"]) / 1000
    except (KeyError, TypeError, ValueError):
        return now
    return issued if now - lifetime < issued <= now else now
