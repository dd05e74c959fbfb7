"""The Flask-free pieces of the HTTP layer, shared by the Flask app and the hot path.

The token payload, parameter parsing, the bearer header, JSON bytes, error
headers and the per-request observation live here once, so both paths answer
the same bytes (tests/test_hotpath.py compares them).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from tokenkeep.errors import (
    AdminRequired,
    InvalidRequest,
    TokenKeepError,
    TooManyRequests,
    UpstreamUnavailable,
)
from tokenkeep.metrics import Metrics
from tokenkeep.models import is_valid_alias, iso8601
from tokenkeep.singleflight import TokenResult

log = logging.getLogger("tokenkeep.web")
access_log = logging.getLogger("tokenkeep.access")
JSON_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}

MAX_MIN_VALID = 86400 * 365
HTML_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
RESERVED_FIELDS = ("access_token", "token_type", "expires_at", "expires_in", "scope", "provider")


def min_valid_param(values: list[str]) -> int | None:
    """Parse `min_valid` (given at most once, whole seconds); InvalidRequest otherwise."""
    if not values:
        return None
    value = values[0]
    if len(values) > 1 or not value.isascii() or not value.isdigit() or len(value) > 9:
        raise InvalidRequest("min_valid must be a whole number of seconds, 0 or more, given once")
    if int(value) > MAX_MIN_VALID:
        raise InvalidRequest(f"min_valid must be at most {MAX_MIN_VALID}")
    return int(value)


def token_body(result: TokenResult, now: float) -> tuple[dict[str, Any], str | None]:
    """The JSON body of a token response and its `Warning` header value, if any."""
    record = result.record
    tokens = record.tokens
    body: dict[str, Any] = {k: v for k, v in tokens.extras.items() if k not in RESERVED_FIELDS}
    body.update(
        {
            "access_token": tokens.access_token,
            "token_type": tokens.token_type,
            "expires_at": iso8601(tokens.expires_at),
            "expires_in": None
            if tokens.expires_at is None
            else max(0, int(tokens.expires_at - now)),
            "scope": tokens.scope,
            "provider": record.alias,
        }
    )
    if not result.warning:
        return body, None
    body["warning"] = result.warning
    return body, f'199 tokenkeep "{header_text(result.warning)}"'


def header_text(text: str, limit: int = 200) -> str:
    """Printable ASCII without quotes or backslashes, safe inside a quoted header value."""
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    cleaned = "".join(c if c.isprintable() and c not in '"\\' else " " for c in ascii_text)
    return cleaned[:limit]


def bearer_key(header: str) -> str | None:
    """The key of an `Authorization: Bearer KEY` header (scheme in any case), else None."""
    scheme, _, key = header.partition(" ")
    key = key.strip(" \t")  # only optional whitespace (RFC 9110 section 5.6.3), no more
    if scheme.lower() != "bearer" or not key:
        return None
    return key


def json_bytes(body: dict[str, Any]) -> bytes:
    """A JSON body serialised exactly as Flask's jsonify does outside debug mode."""
    return (json.dumps(body, separators=(",", ":"), sort_keys=True) + "\n").encode()


def internal_error(exc: Exception, path: str) -> TokenKeepError:
    """Log an unexpected exception (with its traceback, server side only); the public error."""
    log.error("unhandled %s on %s", type(exc).__name__, path, exc_info=exc)
    return TokenKeepError("internal error; see the server log")


def error_headers(error: TokenKeepError) -> dict[str, str]:
    """Headers an error answer carries: Retry-After, WWW-Authenticate."""
    headers: dict[str, str] = {}
    retry_after = getattr(error, "retry_after", None)
    if isinstance(error, TooManyRequests | UpstreamUnavailable) and retry_after:
        headers["Retry-After"] = str(math.ceil(retry_after))
    if isinstance(error, AdminRequired):
        headers["WWW-Authenticate"] = 'Basic realm="TokenKeep", charset="UTF-8"'
    elif error.status == 401:
        headers["WWW-Authenticate"] = f'Bearer realm="TokenKeep", error="{error.code}"'
    return headers


class RequestObserver:
    """Counts every answer for /metrics and, with log_format json, logs one line for it."""

    def __init__(self, metrics: Metrics, *, json_log: bool) -> None:
        self.metrics = metrics
        self.json_log = json_log

    def __call__(
        self, method: str, route: str, alias: str | None, status: int, seconds: float
    ) -> None:
        """Record one answer; `route` is the route template, never the raw path or query."""
        self.metrics.observe_request(method, route, status)
        if self.json_log:
            fields = {
                "method": method,
                "route": route,
                "provider": alias if alias and is_valid_alias(alias) else None,
                "status": status,
                "latency_ms": round(seconds * 1000, 1),
            }
            access_log.info("%s %s %s", method, route, status, extra=fields)
