"""Benchmark state: a config from `tokenkeep init`; providers and tokens stored by the library."""

from __future__ import annotations

import os
import subprocess
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness import TOKENKEEP

from tokenkeep.bootstrap import build_service, open_repository
from tokenkeep.config import load_settings
from tokenkeep.models import ProviderChanges, TokenSet


@dataclass(frozen=True)
class Deployment:
    """A TokenKeep config and database, ready to serve."""

    config: Path
    url: str
    port: int
    api_key: str
    env: dict[str, str]

    def serve_command(self, workers: int) -> list[str]:
        """`tokenkeep serve` for this deployment."""
        port, count = str(self.port), str(workers)
        return [
            str(TOKENKEEP),
            "--config",
            str(self.config),
            "serve",
            "--port",
            port,
            "--workers",
            count,
        ]


def deploy(folder: Path, port: int, **settings: str) -> Deployment:
    """`tokenkeep init` in `folder`; `settings` become TOKENKEEP_* overrides."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENKEEP_")}
    env.update({f"TOKENKEEP_{k.upper()}": v for k, v in settings.items()})
    env["XDG_RUNTIME_DIR"] = str(folder)
    subprocess.run(
        [str(TOKENKEEP), "--config", str(config), "init", "--public-url", url],
        env=env,
        capture_output=True,
        check=True,
    )
    secrets_ = tomllib.loads(config.read_text())
    return Deployment(config, url, port, secrets_["api_secret_token"], env)


def connect(
    deployment: Deployment,
    aliases: Iterable[str],
    *,
    token_url: str,
    seconds_left: float = 86400,
    lifetime: float = 3600 * 24,
    bulk: bool = False,
) -> int:
    """Register `aliases` at `token_url` and store a token for each; how many."""
    settings = load_settings(deployment.config, env={})
    repo = open_repository(settings, auto_migrate=True)
    if bulk:
        # Setting up 10,000 providers, not serving them: skip the per-commit fsync.
        repo.db.conn.execute("PRAGMA synchronous = OFF")
    service = build_service(settings, repo=repo)
    now = time.time()
    count = 0
    for alias in aliases:
        service.register_provider(
            alias,
            ProviderChanges(
                client_id=f"client-{alias}",
                client_secret=f"secret-{alias}-0123456789",
                authorize_url=token_url.replace("/token", "/authorize"),
                token_url=token_url,
                scopes=("read",),
            ),
        )
        repo.store_authorized(
            alias,
            TokenSet(
                access_token=f"access-{alias}-{os.urandom(12).hex()}",
                refresh_token=f"refresh-{alias}-{os.urandom(12).hex()}",
                expires_at=now + seconds_left,
                scope="read",
                extras={"api_domain": "https://api.example.test"},
                obtained_at=now + seconds_left - lifetime,
            ),
            now,
        )
        count += 1
    repo.db.close()
    return count


def database_bytes(deployment: Deployment) -> int:
    """The size of the database file and its WAL."""
    path = load_settings(deployment.config, env={}).database_path
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
