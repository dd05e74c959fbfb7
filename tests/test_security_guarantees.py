"""The security guarantees of issue 4 not pinned elsewhere: state attacks on a live
connection, rotation round trips, file modes, bind address, cache and page headers,
and secrets kept out of logs and CLI output on the refresh and error paths."""

from __future__ import annotations

import base64
import logging
import os
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
from click.testing import CliRunner
from conftest import CLIENT_SECRET, PUBLIC_URL, TOKEN_URL, FakeClock, connect, register, start_auth
from flask import Flask
from flask.testing import FlaskClient
from intact import pending_count, snapshot
from werkzeug.test import TestResponse

from tokenkeep import server
from tokenkeep.bootstrap import build_service, open_repository
from tokenkeep.cli import main
from tokenkeep.config import Settings, load_settings
from tokenkeep.service import TokenService
from tokenkeep.web import create_app

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@pytest.fixture(autouse=True)
def _no_tokenkeep_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOKENKEEP_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`serve` configures the tokenkeep logger; later tests' caplog must still see it."""
    logger = logging.getLogger("tokenkeep")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    yield
    logger.handlers[:] = saved[0]
    logger.propagate = saved[1]
    logger.setLevel(saved[2])


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """The provider, stubbed at the transport; nothing leaves the host."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def assert_page_headers(response: TestResponse) -> None:
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CSP
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


# -- state: expired, reused, foreign browser, on a connected provider ----------------


def test_an_expired_state_keeps_the_live_connection_and_stays_dead(
    client: FlaskClient,
    connected: TokenService,
    admin_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    before = snapshot(connected.repo)
    state = start_auth(client, admin_headers)
    clock.advance(601)

    first = client.get(f"/callback?code=abc&state={state}")
    clock.advance(-601)  # even back inside the window, the state was consumed
    second = client.get(f"/callback?code=abc&state={state}")

    assert first.status_code == 400 and second.status_code == 400
    assert "took too long" in first.get_data(as_text=True)  # the expired-state page
    assert len(rsps.calls) == 0
    assert snapshot(connected.repo) == before


def test_a_reused_state_never_replaces_the_tokens_it_stored(
    client: FlaskClient,
    connected: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    state = start_auth(client, admin_headers)
    cookie = client.get_cookie("tokenkeep_state")
    assert cookie is not None
    rsps.post(TOKEN_URL, json={"access_token": "operator-token", "expires_in": 3600})
    assert client.get(f"/callback?code=operator-code&state={state}").status_code == 200
    after_first = snapshot(connected.repo)
    client.set_cookie("tokenkeep_state", cookie.value)

    replay = client.get(f"/callback?code=attacker-code&state={state}")

    assert replay.status_code == 400
    assert len(rsps.calls) == 1
    assert snapshot(connected.repo) == after_first
    assert after_first[0] == "operator-token"


def test_an_attacker_browser_with_its_own_flow_cannot_use_the_operators_state(
    app: Flask,
    client: FlaskClient,
    connected: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
) -> None:
    before = snapshot(connected.repo)
    operator_state = start_auth(client, admin_headers)
    attacker = app.test_client()
    start_auth(attacker, admin_headers)  # the attacker holds a valid cookie of its own

    response = attacker.get(f"/callback?code=attacker-code&state={operator_state}")

    assert response.status_code == 400
    assert "started in another browser" in response.get_data(as_text=True)
    assert len(rsps.calls) == 0
    assert snapshot(connected.repo) == before
    assert pending_count(connected.repo) == 2  # both flows still usable by their owners


def test_anonymous_auth_is_401_and_starts_nothing_on_both_urls(
    client: FlaskClient, connected: TokenService
) -> None:
    for path in ("/auth?provider=acme", "/auth.php?provider=acme"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
        assert "Set-Cookie" not in response.headers
        assert_page_headers(response)
    assert pending_count(connected.repo) == 0


# -- signed links and rotation ------------------------------------------------------


def test_key_rotation_round_trip_refuses_the_old_key_clearly_and_loses_nothing(
    config_file: Path,
) -> None:
    runner = CliRunner()
    settings = load_settings(config_file, env={})
    service = build_service(settings, repo=open_repository(settings, auto_migrate=True))
    register(service)
    connect(service, access_token="before-rotation", refresh_token="refresh-before")
    scoped = service.keys.create("billing", ("acme",))
    link = service.keys.auth_link("acme", 600)
    old_key = settings.encryption_key

    rotated = runner.invoke(main, ["--config", str(config_file), "rotate-key"])
    assert rotated.exit_code == 0, rotated.output
    assert old_key not in rotated.output

    # A server or cron job still configured with the old key: one clear line, no damage.
    stale = runner.invoke(
        main, ["--config", str(config_file), "providers"], env={"TOKENKEEP_ENCRYPTION_KEY": old_key}
    )
    assert stale.exit_code != 0
    [line] = stale.stderr.strip().splitlines()
    assert line.startswith("Error:") and "cannot be decrypted" in line
    assert "Traceback" not in stale.output

    new_settings = load_settings(config_file, env={})
    app = create_app(new_settings)
    app.config["TESTING"] = True
    web = app.test_client()
    served = web.get("/api/token?provider=acme", headers={"Authorization": f"Bearer {scoped}"})
    assert served.status_code == 200
    assert served.get_json()["access_token"] == "before-rotation"
    fresh = open_repository(new_settings)
    record = fresh.get_token("acme")
    assert record is not None and record.tokens.refresh_token == "refresh-before"
    provider = fresh.get_provider("acme")
    assert provider is not None and provider.client_secret == CLIENT_SECRET
    # Links are signed under a key derived from the encryption key: rotation voids them.
    assert web.get(link.removeprefix(PUBLIC_URL)).status_code == 401


@pytest.mark.parametrize("change", ["missing", "wrong"])
def test_a_missing_or_wrong_key_is_a_clear_start_up_error_for_serve(
    config_file: Path, connected: TokenService, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    before = snapshot(connected.repo)
    text = config_file.read_text()
    lines = [line for line in text.splitlines() if not line.startswith("encryption_key")]
    if change == "wrong":
        lines.append('encryption_key = "' + base64.urlsafe_b64encode(b"w" * 32).decode() + '"')
    broken = config_file.with_name("broken.toml")
    broken.write_text("\n".join(lines) + "\n")
    started: list[Any] = []
    monkeypatch.setattr(server, "serve", lambda *a, **k: started.append(a))

    result = CliRunner().invoke(main, ["--config", str(broken), "serve"])

    assert result.exit_code != 0
    [line] = result.stderr.strip().splitlines()
    assert "encryption_key" in line
    assert started == []  # gunicorn never started
    assert snapshot(connected.repo) == before


# -- files, bind address -------------------------------------------------------------


def test_init_makes_config_database_wal_and_shm_private_whatever_the_umask(
    tmp_path: Path,
) -> None:
    path = tmp_path / "etc" / "config.toml"
    old_umask = os.umask(0o022)
    try:
        assert CliRunner().invoke(main, ["--config", str(path), "init"]).exit_code == 0
        settings = load_settings(path, env={})
        service = build_service(settings, repo=open_repository(settings))
        register(service)  # a write, so SQLite has its -wal and -shm files
        connect(service)
    finally:
        os.umask(old_umask)
    db = settings.database_path
    for file in (path, db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        assert file.exists(), file
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


@pytest.mark.parametrize(("mode", "warned"), [(0o600, False), (0o640, True), (0o644, True)])
def test_serve_warns_when_the_config_is_readable_by_others(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, mode: int, warned: bool
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(server, "serve", lambda settings, **kw: calls.append(kw))
    config_file.chmod(mode)

    result = CliRunner().invoke(main, ["--config", str(config_file), "serve"])

    assert result.exit_code == 0, result.output
    assert ("readable by other users" in result.stderr) is warned
    assert ("chmod 600" in result.stderr) is warned
    assert len(calls) == 1


def test_serve_binds_to_127_0_0_1_by_default(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(server, "serve", lambda settings, **kw: calls.append(kw))

    assert CliRunner().invoke(main, ["--config", str(config_file), "serve"]).exit_code == 0

    assert calls[0]["host"] == "127.0.0.1"
    assert calls[0]["port"] == 8000
    assert tomllib.loads(config_file.read_text())["host"] == "127.0.0.1"


def test_the_gunicorn_bind_option_is_the_configured_loopback_address(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gunicorn.app.base import BaseApplication

    binds: list[list[str]] = []
    monkeypatch.setattr(BaseApplication, "run", lambda self: binds.append(self.cfg.bind))

    server.serve(settings, host=settings.host, port=settings.port, workers=1, threads=1)

    assert binds == [["127.0.0.1:8000"]]


# -- cache headers and page headers ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/token?provider=acme"),
        ("GET", "/api/token.php?provider=acme"),
        ("POST", "/api/token/refresh?provider=acme"),
        ("POST", "/api/token/refresh.php?provider=acme"),
        ("GET", "/api/token?provider=nope"),
        ("GET", "/api/token?provider=bravo"),
    ],
)
def test_token_responses_and_errors_are_never_cached(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
    method: str,
    path: str,
) -> None:
    register(connected, "bravo")  # registered, never authorized: 409
    rsps.post(TOKEN_URL, json={"access_token": "access-2", "expires_in": 3600})
    clock.advance(60)

    response = client.open(path, method=method, headers=api_headers)

    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def test_a_token_served_with_a_warning_is_not_cached_either(
    client: FlaskClient,
    connected: TokenService,
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TOKEN_URL, status=503)
    clock.advance(3600 - 100)

    response = client.get("/api/token?provider=acme", headers=api_headers)

    assert response.status_code == 200 and "warning" in response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def _page(
    kind: str, client: FlaskClient, service: TokenService, admin: dict[str, str], rsps: Any
) -> TestResponse:
    if kind == "auth-redirect":
        return client.get("/auth?provider=acme", headers=admin)
    if kind == "login-401":
        return client.get("/auth?provider=acme")
    if kind == "throttled-429":
        bad = {"Authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}
        for _ in range(11):
            client.get("/auth?provider=acme", headers=bad)
        return client.get("/auth?provider=acme", headers=bad)
    if kind == "unknown-404":
        return client.get("/auth?provider=nope", headers=admin)
    if kind == "bad-alias-400":
        return client.get("/auth.php?provider=ACME", headers=admin)
    if kind == "method-405":
        return client.post("/callback")
    if kind in ("callback-success", "callback-502"):
        state = start_auth(client, admin)
        if kind == "callback-success":
            rsps.post(TOKEN_URL, json={"access_token": "new", "expires_in": 3600})
        else:
            rsps.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
        return client.get(f"/callback?code=abc&state={state}")
    if kind == "denied":
        return client.get(f"/callback?error=access_denied&state={start_auth(client, admin)}")
    assert kind == "state-error-400"
    return client.get("/callback.php?code=abc&state=forged")


PAGES = [
    ("auth-redirect", 302),
    ("login-401", 401),
    ("throttled-429", 429),
    ("unknown-404", 404),
    ("bad-alias-400", 400),
    ("method-405", 405),
    ("callback-success", 200),
    ("callback-502", 502),
    ("denied", 400),
    ("state-error-400", 400),
]


@pytest.mark.parametrize(("kind", "status"), PAGES, ids=[kind for kind, _ in PAGES])
def test_every_html_page_carries_csp_no_referrer_nosniff_and_no_framing(
    client: FlaskClient,
    connected: TokenService,
    admin_headers: dict[str, str],
    rsps: responses.RequestsMock,
    kind: str,
    status: int,
) -> None:
    response = _page(kind, client, connected, admin_headers, rsps)

    assert response.status_code == status
    assert_page_headers(response)


# -- secrets in logs and CLI output ---------------------------------------------------


def test_no_secret_is_logged_at_debug_on_forced_refresh_and_upstream_error_paths(
    client: FlaskClient,
    connected: TokenService,
    admin_headers: dict[str, str],
    api_headers: dict[str, str],
    settings: Settings,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert logging.getLogger("tokenkeep").propagate  # caplog sees TokenKeep's records
    seen = [CLIENT_SECRET, settings.api_secret_token, settings.admin_password, "access-1"]
    seen += ["refresh-1", settings.encryption_key]
    with responses.RequestsMock() as rsps:
        rsps.post(
            TOKEN_URL,
            json={"access_token": "AT-forced", "refresh_token": "RT-forced", "expires_in": 3600},
        )
        clock.advance(60)
        forced = client.post("/api/token/refresh?provider=acme", headers=api_headers)
        assert forced.status_code == 200
    seen += ["AT-forced", "RT-forced"]
    with responses.RequestsMock() as rsps:  # a 5xx that echoes what it was sent
        rsps.post(TOKEN_URL, status=503, body=f"down; got RT-forced and {CLIENT_SECRET}")
        clock.advance(3600 * 2)
        assert client.get("/api/token?provider=acme", headers=api_headers).status_code == 503
    state = start_auth(client, admin_headers)
    with responses.RequestsMock() as rsps:  # a token endpoint that echoes the code
        rsps.post(
            TOKEN_URL,
            status=400,
            json={"error": "invalid_grant", "error_description": "code CODE-echoed is bad"},
        )
        page = client.get(f"/callback?code=CODE-echoed&state={state}")
        verifier = parse_qs(rsps.calls[0].request.body)["code_verifier"][0]
    assert page.status_code == 502
    seen += ["CODE-echoed", verifier]
    bad = client.get("/api/token?provider=acme", headers={"Authorization": "Bearer wrong-key"})
    assert bad.status_code == 401

    for secret in seen:
        assert secret not in caplog.text, secret
        assert secret not in page.get_data(as_text=True), secret


def test_cli_output_never_shows_a_stored_secret(
    config_file: Path, settings: Settings, connected: TokenService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    base = ["--config", str(config_file)]
    with responses.RequestsMock(assert_all_requests_are_fired=False):
        outputs = _run_all(runner, base)

    assert [r.exit_code for r in outputs] == [0] * len(outputs), [r.output for r in outputs]
    for result in outputs:
        text = result.output + result.stderr
        for secret in (
            "new-secret-1",
            CLIENT_SECRET,
            settings.api_secret_token,
            settings.admin_password,
            settings.encryption_key,
            "access-1",
            "refresh-1",
        ):
            assert secret not in text, (secret, text)
            assert secret not in caplog.text


def _run_all(runner: CliRunner, base: list[str]) -> list[Any]:
    return [
        runner.invoke(
            main, [*base, "register-provider", "acme", "--client-secret", "new-secret-1"]
        ),
        runner.invoke(main, [*base, "providers"]),
        runner.invoke(main, [*base, "providers", "--json"]),
        runner.invoke(main, [*base, "keys", "list", "--json"]),
        runner.invoke(main, [*base, "refresh-all", "--json"]),
        runner.invoke(main, [*base, "auth-link", "acme"]),
        runner.invoke(main, [*base, "migrate", "--list"]),
    ]


def test_the_refresh_token_is_never_served_to_a_backend(
    client: FlaskClient,
    service: TokenService,
    admin_headers: dict[str, str],
    api_headers: dict[str, str],
    clock: FakeClock,
    rsps: responses.RequestsMock,
) -> None:
    register(service)
    state = start_auth(client, admin_headers)
    rsps.post(
        TOKEN_URL,
        json={"access_token": "AT", "refresh_token": "RT-never-served", "expires_in": 3600},
    )
    assert client.get(f"/callback?code=abc&state={state}").status_code == 200
    clock.advance(60)

    served = client.get("/api/token?provider=acme", headers=api_headers)
    forced = client.post("/api/token/refresh?provider=acme", headers=api_headers)

    for response in (served, forced):
        assert response.status_code == 200
        assert "refresh_token" not in response.get_json()
        assert b"RT-never-served" not in response.data


def test_security_doc_covers_reach_rfc_9700_rotation_and_tls() -> None:
    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "security.md").read_text(encoding="utf-8")
    for heading in ("## Who can reach what", "## Rotating the encryption key", "## Behind TLS"):
        assert heading in doc, heading
    for section in ("2.1", "4.1", "4.2", "4.7", "4.14"):
        assert f"§{section}" in doc, section
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "docs/security.md" in readme.split("## Security notes")[1].split("\n## ")[0]
