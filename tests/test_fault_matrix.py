"""What each upstream fault does to a refresh, through the real server and real sockets.

Every case gets a provider of its own (so one case's backoff cannot hide
another's outcome), a token that is due, and one scripted fault. The token
is either still valid (60 s left, inside the margin) or already expired.

Documented outcomes (README, "Refresh behaviour"):
- transient (5xx, 429, timeouts, connection errors): stored tokens kept; a
  still-valid token is served with a Warning, an expired one is 503
  upstream_unavailable; no new attempt until the backoff window ends.
- unusable answer (HTML, empty, JSON without access_token): the same, but an
  expired token is 502 upstream_error.
- permanent (an error body, even with HTTP 200): needs_reauth, 409
  reauthorization_required with the URL to re-authorize, no more attempts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fakeprovider import Canned, FakeProvider
from serving import Gateway, free_port, serving

pytestmark = pytest.mark.e2e

TIMEOUT = 1  # http_timeout_seconds: a read timeout costs a second, not ten


@dataclass(frozen=True)
class Fault:
    """One scripted upstream fault and what TokenKeep must make of it."""

    replies: tuple[Canned, ...]  # the token endpoint's answers, in order
    requests: int  # token requests the attempt makes (1 + in-attempt retries)
    expired_error: str  # the API's error code when the token has expired
    refuse_connections: bool = False


HTML = {"Content-Type": "text/html"}
FAULTS = {
    "http-500": Fault((Canned(500, b"Internal Server Error"),) * 3, 3, "upstream_unavailable"),
    "http-502": Fault((Canned(502, b"<h1>Bad Gateway</h1>", HTML),) * 3, 3, "upstream_unavailable"),
    "http-503": Fault((Canned(503),) * 3, 3, "upstream_unavailable"),
    "http-429-retry-after": Fault(
        (Canned(429, {"error": "rate_limited"}, {"Retry-After": "120"}),), 1, "upstream_unavailable"
    ),
    "read-timeout": Fault((Canned(200, delay=TIMEOUT + 2),), 1, "upstream_unavailable"),
    "connection-refused": Fault((), 0, "upstream_unavailable", refuse_connections=True),
    "html-body": Fault(
        (Canned(200, b"<!doctype html><title>Sign in</title>", HTML),), 1, "upstream_error"
    ),
    "empty-body": Fault((Canned(200, b""),), 1, "upstream_error"),
    "json-without-access-token": Fault(
        (Canned(200, {"token_type": "Bearer", "expires_in": 3600}),), 1, "upstream_error"
    ),
    "http-200-error-body": Fault(
        (Canned(200, {"error": "invalid_grant", "error_description": "token revoked"}),),
        1,
        "reauthorization_required",
    ),
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: FakeProvider) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("faults")
    settings = {"http_timeout_seconds": str(TIMEOUT)}
    with serving(folder, workers=2, settings=settings, provider=upstream) as gw:
        yield gw


@pytest.mark.parametrize("state", ["valid", "expired"])
@pytest.mark.parametrize("name", list(FAULTS))
def test_upstream_fault_has_its_documented_outcome_and_keeps_the_stored_tokens(
    gateway: Gateway, upstream: FakeProvider, name: str, state: str
) -> None:
    fault = FAULTS[name]
    alias = f"{name}-{state}"
    gateway.connect(alias)
    before = gateway.stored(alias)
    if fault.refuse_connections:  # re-registering keeps the tokens (defect 1)
        dead = f"http://127.0.0.1:{free_port()}/token"
        assert gateway.cli("register-provider", alias, "--token-url", dead).returncode == 0
    gateway.age_token(alias, seconds_left=60 if state == "valid" else -60)
    upstream.script(*fault.replies)
    requests_before = upstream.token_requests

    reply = gateway.token(alias)
    again = gateway.token(alias)

    assert upstream.token_requests - requests_before == fault.requests
    assert again.status == reply.status, "a second call inside the backoff window differs"
    after = gateway.stored(alias)
    assert after.tokens.access_token == before.tokens.access_token
    assert after.tokens.refresh_token == before.tokens.refresh_token
    permanent = fault.expired_error == "reauthorization_required"
    if permanent:
        assert reply.status == 409, reply.text
        assert reply.json()["error"] == "reauthorization_required"
        assert reply.json()["reauthorize_url"].endswith(f"/auth?provider={alias}")
        assert after.status == "needs_reauth"
    elif state == "valid":
        assert reply.status == 200, reply.text
        assert reply.json()["access_token"] == before.tokens.access_token
        assert reply.headers["Warning"].startswith("199 tokenkeep ")
        assert reply.json()["warning"].startswith("refresh failed")
        assert after.status == "connected"
    else:
        expected = 503 if fault.expired_error == "upstream_unavailable" else 502
        assert reply.status == expected, reply.text
        assert reply.json()["error"] == fault.expired_error
        assert "access_token" not in reply.json()
        assert after.status == "connected"
    if name == "http-429-retry-after":
        assert after.next_attempt_at is not None
        assert after.next_attempt_at - time.time() > 100  # Retry-After: 120, not the 10 s backoff
        if state == "expired":
            assert 100 <= int(reply.headers["Retry-After"]) <= 120
