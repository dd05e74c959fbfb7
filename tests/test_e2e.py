"""End to end: `tokenkeep serve` (real gunicorn, 2 workers) against a fake provider.

Everything runs on 127.0.0.1: the fake provider in a thread of this process,
TokenKeep as a subprocess started through the installed console script, and
a requests.Session playing the operator's browser.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from fakeprovider import CLIENT_ID, CLIENT_SECRET, FakeProvider

pytestmark = pytest.mark.e2e

TOKENKEEP = Path(sys.executable).parent / "tokenkeep"
STARTUP_SECONDS = 10.0
API_DOMAIN = "https://api.acme.test"
PHP_REDIRECT = "/callback.php?provider=acme"


@dataclass
class Gateway:
    """A running TokenKeep server, its config, and the fake provider behind it."""

    url: str
    config: Path
    env: dict[str, str]
    api_key: str
    admin_password: str
    provider: FakeProvider

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `tokenkeep --config CONFIG ARGS...` against the same config and database."""
        return subprocess.run(
            [str(TOKENKEEP), "--config", str(self.config), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def register(self, *extra: str) -> None:
        """Register provider `acme` at the fake provider."""
        result = self.cli(
            "register-provider",
            "acme",
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--authorize-url",
            self.provider.authorize_url,
            "--token-url",
            self.provider.token_url,
            "--scope",
            "read",
            *extra,
        )
        assert result.returncode == 0, result.stderr

    def api(self, method: str, path: str, *, key: bool = True, **params: str) -> Reply:
        """Call TokenKeep as a backend would, with the bearer key unless key=False."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if key else {}
        with requests.Session() as backend:
            return Reply.of(
                backend.request(method, self.url + path, params=params, headers=headers)
            )


@dataclass(frozen=True)
class Reply:
    """What a response said, copied out so no socket outlives the call."""

    status: int
    headers: Mapping[str, str]
    text: str

    @classmethod
    def of(cls, response: requests.Response) -> Reply:
        """Copy what the tests read out of `response`."""
        with response:
            return cls(response.status_code, response.headers, response.text)

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.text)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Poll /healthz every 50 ms until it answers 200; fail if the process dies or stalls."""
    deadline = time.monotonic() + STARTUP_SECONDS
    with requests.Session() as probe:
        while True:
            if server.poll() is not None:
                pytest.fail(f"tokenkeep serve exited with {server.returncode}:\n{log.read_text()}")
            try:
                # Connection: close, so no kept-alive probe connection delays the stop.
                answer = probe.get(url + "/healthz", timeout=1, headers={"Connection": "close"})
                if answer.status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"tokenkeep serve not healthy in {STARTUP_SECONDS} s:\n{log.read_text()}"
                )
            time.sleep(0.05)


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """`tokenkeep init` a config on a free port, then `tokenkeep serve --workers 2` it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp_path / "config.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENKEEP_")}
    # Lets a test force two refreshes in a row; also proves env overrides reach the server.
    env["TOKENKEEP_FORCE_REFRESH_MIN_INTERVAL_SECONDS"] = "0"
    # gunicorn >= 25.1 opens a control socket in $XDG_RUNTIME_DIR, else ~/.gunicorn/:
    # keep it per test, out of the home folder and away from parallel runs.
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    subprocess.run(
        [str(TOKENKEEP), "--config", str(config), "init", "--public-url", url],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        timeout=30,
    )
    secrets_ = tomllib.loads(config.read_text())
    redirects = [url + "/callback", url + PHP_REDIRECT]
    log = tmp_path / "server.log"
    serve = [str(TOKENKEEP), "--config", str(config), "serve", "--port", str(port)]
    serve += ["--workers", "2"]
    with FakeProvider(redirect_uris=redirects, extra_fields={"api_domain": API_DOMAIN}) as fake:
        with log.open("wb") as log_file:
            server = subprocess.Popen(
                serve,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_until_healthy(url, server, log)
            yield Gateway(
                url=url,
                config=config,
                env=env,
                api_key=secrets_["api_secret_token"],
                admin_password=secrets_["admin_password"],
                provider=fake,
            )
        finally:
            _stop(server)
            print(f"--- tokenkeep serve output ---\n{log.read_text()}")  # shown on failure


def _authorize(gw: Gateway, auth_path: str = "/auth", callback_path: str = "/callback") -> None:
    """Play the operator's browser through /auth, the provider and /callback."""
    with requests.Session() as browser:
        start = browser.get(
            gw.url + auth_path,
            params={"provider": "acme"},
            auth=("admin", gw.admin_password),
            allow_redirects=False,
        )
        assert start.status_code == 302, start.text
        assert start.headers["Location"].startswith(gw.provider.authorize_url + "?")
        assert "tokenkeep_state" in browser.cookies
        consent = browser.get(start.headers["Location"], allow_redirects=False)
        assert consent.status_code == 302, consent.text
        callback = consent.headers["Location"]
        assert callback.startswith(gw.url + callback_path)
        page = browser.get(callback, allow_redirects=False)
        assert page.status_code == 200, page.text
        assert page.headers["Content-Type"].startswith("text/html")
        assert "acme is connected" in page.text


def _accepted_by_provider(gw: Gateway, access_token: str) -> bool:
    with requests.Session() as client:
        answer = client.get(
            gw.provider.resource_url, headers={"Authorization": f"Bearer {access_token}"}
        )
        return answer.status_code == 200


@pytest.mark.parametrize(
    ("auth_path", "token_path", "redirect_path"),
    [("/auth", "/api/token", "/callback"), ("/auth.php", "/api/token.php", PHP_REDIRECT)],
    ids=["current-urls", "php-urls"],
)
def test_operator_authorizes_once_and_a_backend_gets_a_token_the_provider_accepts(
    gateway: Gateway, auth_path: str, token_path: str, redirect_path: str
) -> None:
    gateway.register("--redirect-uri", gateway.url + redirect_path)
    assert gateway.api("GET", token_path, provider="acme").json()["error"] == "not_connected"

    _authorize(gateway, auth_path, redirect_path)

    sent = gateway.provider.authorize_requests[-1]
    assert sent["redirect_uri"] == gateway.url + redirect_path
    assert sent["scope"] == "read"
    assert sent["code_challenge_method"] == "S256"
    assert gateway.provider.code_exchanges == 1
    response = gateway.api("GET", token_path, provider="acme")
    assert response.status == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["access_token"] == gateway.provider.issued_access_tokens[-1]
    assert body["token_type"] == "Bearer"
    assert body["provider"] == "acme"
    assert body["scope"] == "read"
    assert body["api_domain"] == API_DOMAIN
    assert 3500 < body["expires_in"] <= 3600
    assert _accepted_by_provider(gateway, body["access_token"])
    assert gateway.provider.refresh_requests == 0


def test_the_api_refuses_a_request_without_the_bearer_key(gateway: Gateway) -> None:
    health = gateway.api("GET", "/healthz", key=False)
    response = gateway.api("GET", "/api/token", key=False, provider="acme")

    assert health.json() == {"status": "ok"}
    assert response.status == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_with_less_life_left_than_needed_is_refreshed_with_the_rotated_token(
    gateway: Gateway,
) -> None:
    gateway.provider.expires_in = 120  # shorter than the 300 s margin: refreshed at half life
    gateway.register()
    _authorize(gateway)

    first = gateway.api("GET", "/api/token", provider="acme").json()
    # min_valid above the lifetime: with the fixture's minimum refresh interval of 0 (the
    # default 5 s would serve a token this fresh as it is), every such call refreshes.
    assert gateway.provider.refresh_requests == 0, "a fresh short-lived token was refreshed"
    second = gateway.api("GET", "/api/token", provider="acme", min_valid="300").json()
    third = gateway.api("GET", "/api/token", provider="acme", min_valid="300").json()

    assert gateway.provider.refresh_requests == 2
    assert not gateway.provider.replay_detected
    assert len({first["access_token"], second["access_token"], third["access_token"]}) == 3
    assert third["access_token"] == gateway.provider.issued_access_tokens[-1]
    assert third["api_domain"] == API_DOMAIN
    assert _accepted_by_provider(gateway, third["access_token"])


def test_forced_refreshes_use_each_rotated_refresh_token_once(gateway: Gateway) -> None:
    gateway.register()
    _authorize(gateway)

    tokens = []
    for _ in range(2):
        response = gateway.api("POST", "/api/token/refresh", provider="acme")
        assert response.status == 200, response.text
        tokens.append(response.json()["access_token"])

    assert gateway.provider.refresh_requests == 2
    assert not gateway.provider.replay_detected
    assert tokens == gateway.provider.issued_access_tokens[-2:]
    served = gateway.api("GET", "/api/token", provider="acme").json()
    assert served["access_token"] == tokens[-1]
    assert _accepted_by_provider(gateway, served["access_token"])


def test_refresh_all_from_cron_shares_the_database_with_the_running_server(
    gateway: Gateway,
) -> None:
    gateway.register()
    _authorize(gateway)
    before = gateway.api("GET", "/api/token", provider="acme").json()["access_token"]

    result = gateway.cli("refresh-all", "--force", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(r["provider"], r["outcome"]) for r in report["results"]] == [("acme", "refreshed")]
    assert report["summary"]["failed"] == 0
    assert gateway.provider.refresh_requests == 1
    served = gateway.api("GET", "/api/token", provider="acme").json()["access_token"]
    assert served != before
    assert served == gateway.provider.issued_access_tokens[-1]
    # The server now refreshes with the refresh token the cron run rotated in.
    forced = gateway.api("POST", "/api/token/refresh", provider="acme")
    assert forced.status == 200, forced.text
    assert gateway.provider.refresh_requests == 2
    assert not gateway.provider.replay_detected
    assert _accepted_by_provider(gateway, forced.json()["access_token"])
