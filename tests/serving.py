"""Run the real `tokenkeep serve` (gunicorn) for tests, and play its clients.

Everything stays on 127.0.0.1: TokenKeep runs as a subprocess through the
installed console script, fake providers run in threads of the test process,
and requests sessions play the operator's browser and the backends.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
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

from tokenkeep.bootstrap import open_repository
from tokenkeep.config import load_settings
from tokenkeep.models import TokenRecord

TOKENKEEP = Path(sys.executable).parent / "tokenkeep"
STARTUP_SECONDS = 10.0
PHP_REDIRECT = "/callback.php?provider={alias}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Reply:
    """What a response said, copied out so no socket outlives the call."""

    status: int
    headers: Mapping[str, str]
    text: str
    seconds: float = 0.0

    @classmethod
    def of(cls, response: requests.Response, seconds: float = 0.0) -> Reply:
        """Copy what the tests read out of `response`."""
        with response:
            return cls(response.status_code, response.headers, response.text, seconds)

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.text)


@dataclass
class Gateway:
    """A running TokenKeep server and its config; `provider` is the default upstream."""

    url: str
    config: Path
    env: dict[str, str]
    api_key: str
    admin_password: str
    provider: FakeProvider | None = None

    def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run `tokenkeep --config CONFIG ARGS...` against the same config and database."""
        return subprocess.run(
            [str(TOKENKEEP), "--config", str(self.config), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli_process(self, *args: str) -> subprocess.Popen[str]:
        """Start `tokenkeep --config CONFIG ARGS...` without waiting for it."""
        return subprocess.Popen(
            [str(TOKENKEEP), "--config", str(self.config), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def upstream(self, fake: FakeProvider | None) -> FakeProvider:
        """The given fake provider, else the gateway's default one."""
        chosen = fake or self.provider
        assert chosen is not None, "no fake provider given"
        return chosen

    def register(self, *extra: str, alias: str = "acme", fake: FakeProvider | None = None) -> None:
        """Register `alias` at a fake provider, which learns TokenKeep's redirect URIs."""
        upstream = self.upstream(fake)
        upstream.redirect_uris |= {
            self.url + "/callback",
            self.url + PHP_REDIRECT.format(alias=alias),
        }
        result = self.cli(
            "register-provider",
            alias,
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--authorize-url",
            upstream.authorize_url,
            "--token-url",
            upstream.token_url,
            "--scope",
            "read",
            *extra,
        )
        assert result.returncode == 0, result.stderr

    def authorize(
        self,
        *,
        alias: str = "acme",
        fake: FakeProvider | None = None,
        auth_path: str = "/auth",
        callback_path: str = "/callback",
    ) -> None:
        """Play the operator's browser through /auth, the provider and /callback."""
        upstream = self.upstream(fake)
        with requests.Session() as browser:
            start = browser.get(
                self.url + auth_path,
                params={"provider": alias},
                auth=("admin", self.admin_password),
                allow_redirects=False,
            )
            assert start.status_code == 302, start.text
            assert start.headers["Location"].startswith(upstream.authorize_url + "?")
            assert "tokenkeep_state" in browser.cookies
            consent = browser.get(start.headers["Location"], allow_redirects=False)
            assert consent.status_code == 302, consent.text
            callback = consent.headers["Location"]
            assert callback.startswith(self.url + callback_path)
            page = browser.get(callback, allow_redirects=False)
            assert page.status_code == 200, page.text
            assert page.headers["Content-Type"].startswith("text/html")
            assert f"{alias} is connected" in page.text

    def connect(self, alias: str = "acme", fake: FakeProvider | None = None) -> None:
        """Register and authorize `alias`."""
        self.register(alias=alias, fake=fake)
        self.authorize(alias=alias, fake=fake)

    def api(
        self, method: str, path: str, *, key: bool = True, timeout: float = 60, **params: str
    ) -> Reply:
        """Call TokenKeep as a backend would, with the bearer key unless key=False."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if key else {}
        started = time.monotonic()
        with requests.Session() as backend:
            response = backend.request(
                method, self.url + path, params=params, headers=headers, timeout=timeout
            )
            return Reply.of(response, time.monotonic() - started)

    def token(self, alias: str = "acme", **params: str) -> Reply:
        """GET /api/token for `alias`."""
        return self.api("GET", "/api/token", provider=alias, **params)

    # -- looking at the database directly ------------------------------------------

    def database(self) -> Path:
        """The SQLite file the server uses."""
        return load_settings(self.config, env={}).database_path

    def age_token(self, alias: str, seconds_left: float, lifetime: float = 3600) -> None:
        """Make the stored token one that was issued `lifetime` ago and ends in `seconds_left`.

        The only way to get an "expiring" token from a real process without
        sleeping: the clock cannot be injected into gunicorn workers.
        """
        now = time.time()
        with contextlib.closing(sqlite3.connect(self.database(), timeout=10)) as conn, conn:
            conn.execute(
                "UPDATE tokens SET expires_at = ?, obtained_at = ?"
                " WHERE provider_id = (SELECT id FROM providers WHERE alias = ?)",
                (now + seconds_left, now + seconds_left - lifetime, alias),
            )

    def lease_owner_pid(self, alias: str) -> int | None:
        """The pid of the process holding `alias`'s refresh lease, if one does."""
        with contextlib.closing(sqlite3.connect(self.database(), timeout=10)) as conn:
            row = conn.execute(
                "SELECT lease_owner FROM tokens"
                " WHERE provider_id = (SELECT id FROM providers WHERE alias = ?)",
                (alias,),
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0].split("-")[0])

    def stored(self, alias: str) -> TokenRecord:
        """The token record as stored (decrypted with the configured key)."""
        repo = open_repository(load_settings(self.config, env={}))
        try:
            record = repo.get_token(alias)
        finally:
            repo.db.close()
        assert record is not None, f"{alias} has no stored token"
        return record


def accepted_by(fake: FakeProvider, access_token: str) -> bool:
    """True when the fake provider's resource endpoint accepts `access_token`."""
    with requests.Session() as client:
        answer = client.get(fake.resource_url, headers={"Authorization": f"Bearer {access_token}"})
        return answer.status_code == 200


def wait_until_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
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
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or too slow on a loaded machine: poll again
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


@contextlib.contextmanager
def serving(
    folder: Path,
    *,
    workers: int = 2,
    settings: Mapping[str, str] | None = None,
    provider: FakeProvider | None = None,
) -> Iterator[Gateway]:
    """`tokenkeep init` a config in `folder` on a free port, then `tokenkeep serve` it.

    `settings` become TOKENKEEP_<KEY> environment overrides for the server and
    for every CLI call made through the yielded Gateway.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = folder / "config.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENKEEP_")}
    env.update({f"TOKENKEEP_{k.upper()}": v for k, v in (settings or {}).items()})
    # gunicorn >= 25.1 opens a control socket in $XDG_RUNTIME_DIR, else ~/.gunicorn/:
    # keep it per test, out of the home folder and away from parallel runs.
    env["XDG_RUNTIME_DIR"] = str(folder)
    subprocess.run(
        [str(TOKENKEEP), "--config", str(config), "init", "--public-url", url],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        timeout=30,
    )
    secrets_ = tomllib.loads(config.read_text())
    log = folder / "server.log"
    serve = [str(TOKENKEEP), "--config", str(config), "serve", "--port", str(port)]
    serve += ["--workers", str(workers)]
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            serve, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        wait_until_healthy(url, server, log)
        yield Gateway(
            url=url,
            config=config,
            env=env,
            api_key=secrets_["api_secret_token"],
            admin_password=secrets_["admin_password"],
            provider=provider,
        )
    finally:
        _stop(server)
        print(f"--- tokenkeep serve output ---\n{log.read_text()}")  # shown on failure
