"""The hot path in front of Flask answers exactly what the Flask route answers.

Every scenario is sent twice: through the full app (where the fast path
handles GET /api/token) and straight to Flask's own wsgi_app behind it.
Status, headers and body bytes must match, and a counter on the Flask side
shows which path answered.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from conftest import FakeClock, connect, register
from flask import Flask
from werkzeug.test import EnvironBuilder

from tokenkeep.config import Settings
from tokenkeep.errors import UpstreamUnavailable
from tokenkeep.service import TokenService

Answer = tuple[str, dict[str, str], bytes]


def call(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> Answer:
    """Run a WSGI app on `environ`: status line, headers, body."""
    started: list[Any] = []
    body = b"".join(
        app(environ, lambda status, headers, exc=None: started.extend([status, headers]))
    )
    return started[0], dict(started[1]), body


class Paths:
    """Both ways into the app, and how often Flask itself answered."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        fast = app.wsgi_app
        self.flask = fast.app  # type: ignore[attr-defined]
        self.flask_calls = 0

        def counted(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            self.flask_calls += 1
            return self.flask(environ, start_response)

        fast.app = counted  # type: ignore[attr-defined]

    def both(
        self, path: str, headers: dict[str, str], method: str = "GET"
    ) -> tuple[Answer, Answer]:
        """The answer through the full app, then from Flask alone."""
        environ = lambda: EnvironBuilder(path=path, method=method, headers=headers).get_environ()  # noqa: E731
        return call(self.app, environ()), call(self.flask, environ())


@pytest.fixture
def paths(app: Flask) -> Paths:
    return Paths(app)


@pytest.fixture
def scoped_headers(service: TokenService) -> dict[str, str]:
    register(service, "other")
    key = service.keys.create("reporting", ("other",))
    return {"Authorization": f"Bearer {key}"}


def _fail_refreshes(service: TokenService) -> None:
    def refresh(*args: object, **kwargs: object) -> None:
        raise UpstreamUnavailable("acme: the token endpoint answered HTTP 503", retry_after=None)

    service.client.refresh = refresh  # type: ignore[assignment, method-assign]


SCENARIOS: dict[str, tuple[str, Callable[[TokenService, FakeClock], None]]] = {
    "fresh token": ("/api/token?provider=acme", lambda s, c: None),
    "php url": ("/api/token.php?provider=acme", lambda s, c: None),
    "min_valid": ("/api/token?provider=acme&min_valid=60", lambda s, c: None),
    "min_valid too large": ("/api/token?provider=acme&min_valid=999999999", lambda s, c: None),
    "unknown provider": ("/api/token?provider=nobody", lambda s, c: None),
    "never authorized": ("/api/token?provider=fresh", lambda s, c: register(s, "fresh")),
    "needs re-authorization": (
        "/api/token?provider=acme",
        lambda s, c: s.repo.record_failure(
            "acme",
            "x",
            error="invalid_grant",
            code="reauthorization_required",
            now=c(),
            next_attempt_at=None,
            needs_reauth=True,
        ),
    ),
    "stale token after a failed refresh": (
        "/api/token?provider=acme",
        lambda s, c: (_fail_refreshes(s), c.advance(3600 - 60), s.get_token("acme")),
    ),
    "expired token during the backoff": (
        "/api/token?provider=acme",
        lambda s, c: (_fail_refreshes(s), c.advance(3600 + 1), _swallow(s.get_token, "acme")),
    ),
}


def _swallow(fn: Callable[[str], object], alias: str) -> None:
    with contextlib.suppress(UpstreamUnavailable):
        fn(alias)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fast_path_answers_the_same_bytes_as_the_flask_route(
    paths: Paths,
    service: TokenService,
    clock: FakeClock,
    api_headers: dict[str, str],
    name: str,
) -> None:
    register(service)
    connect(service, extras={"api_domain": "https://api.acme.test"})
    path, setup = SCENARIOS[name]
    setup(service, clock)

    fast, flask = paths.both(path, api_headers)

    assert fast == flask
    assert paths.flask_calls == 0, "the fast path handed this request to Flask"


def test_a_scoped_key_outside_its_scope_is_403_on_both_paths(
    paths: Paths, service: TokenService, scoped_headers: dict[str, str]
) -> None:
    register(service)
    connect(service)

    fast, flask = paths.both("/api/token?provider=acme", scoped_headers)

    assert fast == flask
    assert fast[0] == "403 FORBIDDEN" or fast[0].startswith("403")
    assert paths.flask_calls == 0


def test_an_unexpected_exception_is_the_same_500_on_both_paths(
    paths: Paths, service: TokenService, api_headers: dict[str, str], monkeypatch: Any
) -> None:
    register(service)
    monkeypatch.setattr(service.repo, "get_token", lambda alias: 1 / 0)

    fast, flask = paths.both("/api/token?provider=acme", api_headers)

    assert fast == flask
    assert fast[0].startswith("500")
    assert b"ZeroDivisionError" not in fast[2]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/token?provider=acme", {"Authorization": "Bearer wrong-key-000000000000"}),
        ("/api/token?provider=acme", {}),
        ("/api/token?provider=acme", {"Authorization": "Basic YWRtaW46eA=="}),
        ("/api/token?provider=acme&provider=acme", None),
        ("/api/token?min_valid=5&provider=acme", None),
        ("/api/token?provider=ACME", None),
        ("/api/token?provider=acme&x=1", None),
        ("/api/token?provider=acme%20", None),
        ("/api/token", None),
    ],
)
def test_anything_unusual_is_left_to_the_flask_route(
    paths: Paths,
    service: TokenService,
    api_headers: dict[str, str],
    path: str,
    headers: dict[str, str] | None,
) -> None:
    register(service)
    connect(service)

    fast, flask = paths.both(path, api_headers if headers is None else headers)

    assert paths.flask_calls == 1, "the fast path answered a request it should hand over"
    assert fast[0] == flask[0]


def test_only_get_of_the_token_routes_takes_the_fast_path(
    paths: Paths, service: TokenService, api_headers: dict[str, str]
) -> None:
    register(service)
    connect(service)

    paths.both("/api/token/refresh?provider=acme", api_headers, method="POST")
    paths.both("/healthz", {})

    assert paths.flask_calls == 2


def test_a_lowercase_bearer_scheme_with_extra_spaces_is_served_by_the_fast_path(
    paths: Paths, service: TokenService, settings: Settings
) -> None:
    register(service)
    connect(service)
    headers = {"Authorization": f"bearer   {settings.api_secret_token}"}

    fast, flask = paths.both("/api/token?provider=acme", headers)

    assert fast == flask
    assert fast[0].startswith("200")
    assert paths.flask_calls == 0


def test_failed_keys_are_still_throttled_with_the_fast_path_in_front(
    app: Flask, service: TokenService, settings: Settings
) -> None:
    register(service)
    connect(service)
    client = app.test_client()
    bad = {"Authorization": "Bearer wrong-key-000000000000"}

    statuses = [client.get("/api/token?provider=acme", headers=bad).status_code for _ in range(30)]
    good = client.get(
        "/api/token?provider=acme", headers={"Authorization": f"Bearer {settings.api_secret_token}"}
    )

    assert 429 in statuses
    assert good.status_code == 200


def test_basic_auth_header_value_is_not_mistaken_for_a_bearer_key() -> None:
    from tokenkeep.payloads import bearer_key

    assert bearer_key("Basic " + base64.b64encode(b"admin:x").decode()) is None
    assert bearer_key("Bearer\tkey") is None
    assert bearer_key("Bearer  key ") == "key"
    assert bearer_key("BEARER key") == "key"
    assert bearer_key("Bearer ") is None


@pytest.mark.parametrize("host", ["x" * 64, "x" * 10_000, "exa mple", ""])
def test_a_host_flask_might_refuse_is_left_to_flask(
    paths: Paths, service: TokenService, api_headers: dict[str, str], host: str
) -> None:
    register(service)
    connect(service)

    fast, flask = paths.both("/api/token?provider=acme", {**api_headers, "Host": host})

    assert paths.flask_calls == 1
    assert fast[0] == flask[0]
