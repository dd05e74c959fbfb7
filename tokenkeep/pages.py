"""What the operator's HTML pages say, as plain data: status rows and failure explanations.

The templates only lay these out; keeping the wording and the time arithmetic
here lets them be tested without a web framework.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from tokenkeep.errors import StateError, TokenKeepError, UpstreamError, UpstreamUnavailable
from tokenkeep.models import CONNECTED, NEEDS_REAUTH, ProviderStatus, iso8601

STATUS_LABELS = {
    CONNECTED: "Connected",
    NEEDS_REAUTH: "Needs re-authorization",
}
NOT_CONNECTED_LABEL = "Not connected"
MAX_ERROR_CHARS = 300
NOTHING_STORED = "Nothing was stored, and an existing connection is unchanged."


def duration(seconds: float) -> str:
    """A short human duration: "less than a minute", "42 min", "3 h 5 min", "2 d 4 h"."""
    seconds = abs(seconds)
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def until(ts: float, now: float) -> str:
    """ "in 42 min", or "expired 3 min ago" once `ts` has passed."""
    if ts > now:
        return f"in {duration(ts - now)}"
    return f"expired {duration(now - ts)} ago"


def since(ts: float, now: float) -> str:
    """ "3 min ago" (or "just now")."""
    if now - ts < 60:
        return "just now"
    return f"{duration(now - ts)} ago"


@dataclass(frozen=True)
class Moment:
    """A point in time as the page shows it: relative text plus the exact ISO 8601 time."""

    text: str
    iso: str  # for the datetime attribute
    exact: str  # "2027-01-15 09:00 UTC", for people


@dataclass(frozen=True)
class StatusRow:
    """One provider on the status page."""

    alias: str
    status: str  # connected | needs_reauth | not_connected: also the CSS class
    label: str
    connected: bool
    needs_reauth: bool
    expires: Moment | None
    never_expires: bool
    has_refresh_token: bool
    last_refresh: Moment | None
    last_error: str | None
    last_error_at: Moment | None
    refreshing: bool

    @property
    def action(self) -> str:
        """The button's verb: Connect a provider never authorized, else Reconnect."""
        return "Reconnect" if self.connected else "Connect"


def _moment(ts: float | None, now: float, *, future: bool) -> Moment | None:
    if ts is None:
        return None
    text = until(ts, now) if future else since(ts, now)
    exact = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Moment(text=text, iso=iso8601(ts) or "", exact=exact)


def status_rows(statuses: Iterable[ProviderStatus], now: float) -> list[StatusRow]:
    """The status page's rows, in the order given (by alias)."""
    rows = []
    for s in statuses:
        connected = s.status in STATUS_LABELS
        error = s.last_error
        if error is not None and len(error) > MAX_ERROR_CHARS:
            error = error[: MAX_ERROR_CHARS - 1] + "…"
        rows.append(
            StatusRow(
                alias=s.alias,
                status=s.status if connected else "not_connected",
                label=STATUS_LABELS.get(s.status, NOT_CONNECTED_LABEL),
                connected=connected,
                needs_reauth=s.status == NEEDS_REAUTH,
                expires=_moment(s.expires_at, now, future=True) if connected else None,
                never_expires=connected and s.expires_at is None,
                has_refresh_token=s.has_refresh_token,
                last_refresh=_moment(s.obtained_at, now, future=False) if connected else None,
                last_error=error,
                last_error_at=_moment(s.last_error_at, now, future=False),
                refreshing=s.refreshing,
            )
        )
    return rows


@dataclass(frozen=True)
class Failure:
    """A failure page: what happened, what it means, and where to start again."""

    title: str
    explanation: str
    alias: str | None = None  # known provider: offer /auth?provider=ALIAS, else the status page
    code: str | None = None
    provider_said: str | None = None
    details: str | None = None
    note: str | None = None


STATE_EXPLANATIONS = {
    "expired": (
        "This authorization took too long",
        "The sign-in at the provider has to finish within a few minutes of starting it. "
        "This one started too long ago, so TokenKeep did not use it.",
    ),
    "unknown": (
        "This authorization was already used or is unknown",
        "Each authorization completes once. Reloading the result page, going back to "
        "it, or opening an old callback link lands here.",
    ),
    "foreign": (
        "This authorization was started in another browser",
        "The callback must arrive in the browser that opened /auth (TokenKeep checks a "
        "cookie set then). It may also mean the browser dropped that cookie.",
    ),
    "mismatch": (
        "This authorization belongs to another provider",
        "The callback names a different provider than the one the authorization was "
        "started for, so TokenKeep did not use it.",
    ),
    "missing": (
        "This callback is incomplete",
        "The provider sent the browser back without the state parameter TokenKeep "
        "needs to recognise the authorization.",
    ),
}


GENERIC_TITLES = {
    401: "Log in required",
    404: "No such provider",
    429: "Too many failed attempts",
}


def denied(error: str, description: str, alias: str | None) -> Failure:
    """The provider redirected back with ?error=... instead of a code."""
    if error == "access_denied":
        title = "Access was denied at the provider"
        explanation = (
            "The consent was declined (or cancelled) at the provider, so no token was issued."
        )
    else:
        title = "The provider refused the authorization request"
        explanation = (
            "The provider sent the browser back with an error instead of an authorization "
            "code. Check the provider's registration (scopes, redirect URI, extra parameters)."
        )
    return Failure(
        title=title,
        explanation=explanation,
        alias=alias,
        provider_said=error[:100],
        details=description[:MAX_ERROR_CHARS] or None,
        note=NOTHING_STORED,
    )


def failure_for(
    error: TokenKeepError, alias: str | None = None, *, callback: bool = False
) -> Failure:
    """The page for an error on a browser route; `alias` when the provider is known."""
    if isinstance(error, StateError):
        title, explanation = STATE_EXPLANATIONS.get(
            error.reason, ("This authorization is not valid", error.description)
        )
        return Failure(title, explanation, alias=error.alias, code=error.code, note=NOTHING_STORED)
    if isinstance(error, UpstreamError | UpstreamUnavailable):
        return Failure(
            "The provider did not issue a token",
            "The provider accepted the sign-in, but when TokenKeep exchanged the "
            "authorization code for a token, it answered with an error or not at all. "
            "A code can be used only once, so start again.",
            alias=alias,
            code=error.code,
            provider_said=error.provider_error,
            details=error.description,
            note=NOTHING_STORED,
        )
    title = GENERIC_TITLES.get(error.status, "Something went wrong")
    note = NOTHING_STORED if callback else None
    return Failure(title, error.description, alias=alias, code=error.code, note=note)
