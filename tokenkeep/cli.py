"""The `tokenkeep` command line: thin commands over the service.

Heavy modules (Flask, requests, cryptography) are imported inside commands so
`tokenkeep --help` stays fast.
"""

from __future__ import annotations

import os

import click

from tokenkeep.cli_common import State, TokenKeepGroup, pass_state
from tokenkeep.errors import ConfigError


@click.group(cls=TokenKeepGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    metavar="PATH",
    help="Config file (default: $TOKENKEEP_CONFIG, else ./config.toml).",
)
@click.version_option(package_name="tokenkeep")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """TokenKeep: authorize OAuth2 providers once, serve fresh access tokens.

    Example: tokenkeep --config /etc/tokenkeep/config.toml providers
    """
    ctx.obj = State(config)


@main.command()
@click.option(
    "--public-url",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="URL where browsers and providers reach TokenKeep.",
)
@pass_state
def init(state: State, public_url: str) -> None:
    """Write a config with fresh random secrets (mode 0600) and create the database.

    Example: tokenkeep --config config.toml init --public-url https://tokens.example.com
    """
    from tokenkeep.bootstrap import open_repository
    from tokenkeep.config import generate_config

    path = state.config_path
    if path.exists():
        raise ConfigError(f"{path} already exists; remove it first or use another --config")
    text, secrets_ = generate_config(public_url.rstrip("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    try:
        settings = state.settings()
    except ConfigError:
        path.unlink()
        raise
    open_repository(settings, auto_migrate=True)
    click.echo(f"Wrote {path} (mode 0600) and created {settings.database_path}.")
    click.echo("These secrets are shown once; they are also in the config file:")
    click.echo(f"  API key (Authorization: Bearer ...): {secrets_['api_secret_token']}")
    click.echo(f"  admin password (user 'admin', for /auth): {secrets_['admin_password']}")
    click.echo("Next: register a provider with `tokenkeep register-provider ALIAS`")
    click.echo("(`.venv/bin/tokenkeep` in a checkout), start the server (`make run` or")
    click.echo(f"`tokenkeep serve`), then open {settings.public_url}/auth?provider=ALIAS.")


@main.command()
@click.option("--list", "list_", is_flag=True, help="Show migrations and whether each is applied.")
@pass_state
def migrate(state: State, list_: bool) -> None:
    """Apply pending database migrations (safe to run at any time).

    Example: tokenkeep migrate --list
    """
    from tokenkeep.db import Database
    from tokenkeep.migrate import available_migrations, current_version
    from tokenkeep.migrate import migrate as apply

    db = Database(state.settings().database_path)
    if list_:
        version = current_version(db)
        for m in available_migrations():
            mark = "applied" if m.version <= version else "pending"
            click.echo(f"{m.version:04d}_{m.name}  {mark}")
        return
    applied = apply(db)
    for m in applied:
        click.echo(f"applied {m.version:04d}_{m.name}")
    click.echo(f"database is at version {current_version(db)}")


@main.command()
@click.option("--host", help="Address to bind (default from config: 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default from config: 8000).")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes.")
@click.option("--threads", type=click.IntRange(1, 256), help="Threads per worker.")
@pass_state
def serve(
    state: State, host: str | None, port: int | None, workers: int | None, threads: int | None
) -> None:
    """Serve the HTTP API and the authorization pages with gunicorn.

    Example: tokenkeep serve --port 8000 --workers 2
    """
    from tokenkeep.config import config_is_world_readable
    from tokenkeep.logs import configure_logging
    from tokenkeep.server import serve as run

    settings = state.settings()
    configure_logging(settings)
    state.service(auto_migrate=True)  # fail fast: schema, key and database checked here
    if config_is_world_readable(state.config_path):
        click.echo(
            f"Warning: {state.config_path} is readable by other users; chmod 600 it", err=True
        )
    run(
        settings,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        threads=threads or settings.threads,
    )


def _add_commands() -> None:
    from tokenkeep import cli_events, cli_import, cli_keys, cli_providers, cli_refresh

    for command in (
        cli_providers.register_provider,
        cli_providers.providers_,
        cli_providers.remove_provider,
        cli_providers.presets_,
        cli_refresh.refresh,
        cli_refresh.refresh_all,
        cli_keys.keys,
        cli_keys.auth_link,
        cli_keys.rotate_key,
        cli_import.import_php,
        cli_events.events,
    ):
        main.add_command(command)


_add_commands()
