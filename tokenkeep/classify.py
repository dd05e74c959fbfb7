"""Classify a provider's error answer: permanent, transient, or just an error.

Permanent errors mean the grant or the client is gone: retrying cannot help
and an operator must re-authorize. Transient ones (outages, throttling, even
when dressed as `invalid_grant`) keep the stored tokens and are retried after
a backoff. Shapes and sources: ../shared/providers.md.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tokenkeep.errors import PermanentUpstreamError, TokenKeepError, UpstreamError
from tokenkeep.errors import UpstreamUnavailable as Unavailable

# RFC 6749 section 5.2 plus provider spellings (Zoho, Slack, GitHub, HubSpot, Google),
# compared case-insensitively (HubSpot says BAD_REFRESH_TOKEN).
PERMANENT_ERRORS = frozenset(
    {
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "invalid_code",
        "invalid_refresh_token",
        "bad_refresh_token",
        "bad_verification_code",
        "incorrect_client_credentials",
        "bad_client_secret",
        "invalid_client_id",
        "deleted_client",
        "token_revoked",
        "token_expired",
        "bad_client_id",
    }
)
TRANSIENT_ERRORS = frozenset(
    {"temporarily_unavailable", "server_error", "slow_down", "ratelimited", "rate_limited"}
)
# Throttling that wears a permanent-looking code: Microsoft Entra AADSTS50196
# comes as invalid_grant; Zoho says "Access Denied ... too many requests".
_THROTTLE_RE = re.compile(r"AADSTS50196|too many requests|rate limit", re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")


def clean_text(value: str, limit: int = 200) -> str:
    """Collapse control characters and cut a provider string to a safe length."""
    text = _CONTROL_RE.sub(" ", value).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after_seconds(header: str | None, now: float) -> float | None:
    """Parse Retry-After as seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace any secret the provider echoed back (at least 4 characters long)."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


def classify_error(
    alias: str,
    status: int,
    body: Mapping[str, Any],
    retry_after: float | None,
    secrets: Iterable[str] = (),
    *,
    permanent: Iterable[str] = (),
    transient: Iterable[str] = (),
    throttle_wait: float | None = None,
) -> TokenKeepError:
    """Turn an error answer from a token endpoint into the right exception.

    `permanent` adds a provider's own dead-grant codes; `transient` adds regular
    expressions over "code description" that mean throttling; `throttle_wait` is
    how long to wait after throttling that came without Retry-After (all quirks).
    """
    secrets = tuple(secrets)
    code = clean_text(redact(_error_code(body), secrets), 80)
    description = body.get("error_description") or body.get("message") or ""
    description = clean_text(redact(str(description), secrets)) if description else ""
    codes = body.get("error_codes")
    text = f"{code} {description}"
    throttled = (
        bool(_THROTTLE_RE.search(text))
        or (isinstance(codes, list) and 50196 in codes)
        or any(re.search(pattern, text, re.IGNORECASE) for pattern in transient)
    )
    label = code or f"HTTP {status}"
    detail = f"{label} ({description})" if description else label
    if status >= 500 or status == 429 or throttled or code in TRANSIENT_ERRORS:
        if retry_after is None and (throttled or status == 429):
            retry_after = throttle_wait
        return Unavailable(
            f"{alias}: the provider is unavailable or throttling: {detail}",
            retry_after=retry_after,
            provider_error=code or None,
        )
    if code.lower() in PERMANENT_ERRORS or code.lower() in {p.lower() for p in permanent}:
        return PermanentUpstreamError(
            f"{alias}: the provider rejected the grant: {detail}", provider_error=code
        )
    return UpstreamError(f"{alias}: the provider answered an error: {detail}", provider_error=code)


def _error_code(body: Mapping[str, Any]) -> str:
    error = body.get("error")
    if isinstance(error, Mapping):  # Dropbox's union errors: {".tag": "..."}
        error = error.get(".tag")
    if not error and isinstance(body.get("status"), str):  # HubSpot's legacy shape
        error = body["status"]
    return str(error) if error else ""
