"""The Flask-free pieces of the HTTP layer: the token payload, parameters, page headers."""

from __future__ import annotations

from typing import Any

from tokenkeep.errors import InvalidRequest
from tokenkeep.models import iso8601
from tokenkeep.singleflight import TokenResult

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
