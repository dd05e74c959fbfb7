"""Shared fixtures: a temp-file SQLite per test, an injected clock, the app and CLI."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from tokenkeep.bootstrap import build_service, open_repository
from tokenkeep.config import Settings, generate_config, load_settings
from tokenkeep.models import ProviderChanges, TokenSet
from tokenkeep.repository import Repository
from tokenkeep.service import TokenService
from tokenkeep.web import create_app

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
PUBLIC_URL = "http://127.0.0.1:8000"
AUTHORIZE_URL = "https://provider.test/oauth/authorize"
TOKEN_URL = "https://provider.test/oauth/token"
CLIENT_SECRET = "client-secret-value-1234"


class FakeClock:
    """A clock tests move by hand; sleeping advances it instead of waiting."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A complete config with fresh secrets, as `tokenkeep init` writes it."""
    text, _ = generate_config(PUBLIC_URL)
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture
def settings(config_file: Path) -> Settings:
    return load_settings(config_file, env={})


@pytest.fixture
def repo(settings: Settings) -> Iterator[Repository]:
    repository = open_repository(settings, auto_migrate=True)
    yield repository
    repository.db.close()


@pytest.fixture
def service(settings: Settings, repo: Repository, clock: FakeClock) -> TokenService:
    return build_service(
        settings, repo=repo, session=requests.Session(), clock=clock, sleep=clock.sleep
    )


@pytest.fixture
def app(settings: Settings, service: TokenService) -> Flask:
    application = create_app(settings, service=service)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def api_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.api_secret_token}"}


@pytest.fixture
def admin_headers(settings: Settings) -> dict[str, str]:
    raw = base64.b64encode(f"admin:{settings.admin_password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def register(service: TokenService, alias: str = "acme", **overrides: object) -> None:
    """Register a provider at provider.test with sensible defaults."""
    fields: dict[str, object] = {
        "client_id": "client-id",
        "client_secret": CLIENT_SECRET,
        "authorize_url": AUTHORIZE_URL,
        "token_url": TOKEN_URL,
        "scopes": ("read", "write"),
    }
    fields.update(overrides)
    service.register_provider(alias, ProviderChanges(**fields))  # type: ignore[arg-type]


def connect(
    service: TokenService,
    alias: str = "acme",
    *,
    access_token: str = "access-1",
    refresh_token: str | None = "refresh-1",
    expires_in: float | None = 3600,
    extras: dict[str, object] | None = None,
    scope: str | None = "read write",
) -> None:
    """Store tokens for `alias` as if an authorization had just completed."""
    now = service.clock()
    tokens = TokenSet(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=None if expires_in is None else now + expires_in,
        scope=scope,
        extras=extras or {},
        obtained_at=now,
    )
    service.repo.store_authorized(alias, tokens, now)


@pytest.fixture
def registered(service: TokenService) -> Callable[..., None]:
    return lambda alias="acme", **kw: register(service, alias, **kw)


@pytest.fixture
def connected(service: TokenService) -> TokenService:
    """A service with provider `acme` registered and holding fresh tokens."""
    register(service)
    connect(service)
    return service


def start_auth(client: FlaskClient, admin_headers: dict[str, str], path: str = "/auth") -> str:
    """Start the flow for `acme` as the operator's browser; return the state from the redirect."""
    response = client.get(f"{path}?provider=acme", headers=admin_headers)
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["Location"]).query)["state"][0]
