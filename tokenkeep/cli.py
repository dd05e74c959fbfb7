"""The `tokenkeep` command line: thin commands over the service.

Heavy modules (Flask, requests, cryptography) are imported inside commands so
`tokenkeep --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

import click

from tokenkeep.config import Settings, load_settings, resolve_config_path
from tokenkeep.errors import ConfigError, InvalidRequest, TokenKeepError
from tokenkeep.models import AUTH_METHODS, ProviderChanges, iso8601

if TYPE_CHECKING:
    from tokenkeep.service import TokenService


class State:
    """Per-invocation state: the config path and lazily built collaborators."""

    def __init__(self, config: str | None) -> None:
        self.config_path = resolve_config_path(config, os.environ)
        self._settings: Settings | None = None

    def settings(self) -> Settings:
        """Load (once) and validate the configuration."""
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    def service(self, *, auto_migrate: bool = False) -> TokenService:
        """Build the service on the configured database."""
        from tokenkeep.bootstrap import build_service, open_repository

        settings = self.settings()
        return build_service(settings, repo=open_repository(settings, auto_migrate=auto_migrate))


class TokenKeepGroup(click.Group):
    """Turns TokenKeep errors into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; never show a traceback for an expected failure."""
        try:
            return super().invoke(ctx)
        except TokenKeepError as exc:
            _fail(exc.description, exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


pass_state = click.make_pass_decorator(State)


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
    click.echo("Next: register a provider with `tokenkeep register-provider ALIAS`, run")
    click.echo(f"`tokenkeep serve`, then open {settings.public_url}/auth?provider=ALIAS.")


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


def _parse_params(values: tuple[str, ...], flag: str) -> dict[str, str] | None:
    if not values:
        return None
    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"{flag} takes KEY=VALUE, got {item!r}")
        params[key.strip()] = value
    return params


@main.command("register-provider")
@click.argument("alias", required=False)
@click.option("--client-id", help="OAuth client id.")
@click.option("--client-secret", help="OAuth client secret (prompted, hidden, if omitted).")
@click.option("--authorize-url", help="The provider's authorization endpoint.")
@click.option("--token-url", help="The provider's token endpoint.")
@click.option("--scope", "scopes", multiple=True, help="A scope to request (repeatable).")
@click.option("--scope-separator", help="How scopes are joined (default: a space).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra authorize parameter, e.g. access_type=offline (repeatable).",
)
@click.option(
    "--token-param",
    "token_params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra token request parameter (repeatable).",
)
@click.option(
    "--auth-method",
    type=click.Choice(AUTH_METHODS),
    help="How the client authenticates at the token endpoint.",
)
@click.option("--pkce/--no-pkce", default=None, help="Send a PKCE S256 challenge (default: on).")
@click.option("--redirect-uri", help="Override the redirect URI (default: PUBLIC_URL/callback).")
@click.option(
    "--default-lifetime",
    type=click.IntRange(1),
    metavar="SECONDS",
    help="Token lifetime to assume when the provider sends no expires_in.",
)
@pass_state
def register_provider(state: State, /, alias: str | None, **opts: Any) -> None:
    """Register a provider, or update one (its tokens are kept).

    Prompts for whatever a new provider still needs when run interactively.

    Example: tokenkeep register-provider zoho --client-id ID --authorize-url
    https://accounts.zoho.com/oauth/v2/auth --token-url https://accounts.zoho.com/oauth/v2/token
    --scope ZohoCRM.modules.ALL --scope-separator , --param access_type=offline
    --param prompt=consent --auth-method client_secret_post
    """
    service = state.service()
    try:
        if not alias:
            alias = click.prompt("Provider alias (e.g. zoho)")
        assert alias is not None
        service.check_alias(alias)
        exists = service.repo.get_provider(alias) is not None
        if not exists:
            for key, label in (
                ("client_id", "Client ID"),
                ("authorize_url", "Authorize URL"),
                ("token_url", "Token URL"),
            ):
                if not opts[key]:
                    opts[key] = click.prompt(label)
            if not opts["client_secret"]:
                opts["client_secret"] = click.prompt("Client secret", hide_input=True)
            if not opts["scopes"] and sys.stdin.isatty():
                answer = click.prompt(
                    "Scopes (space separated, empty for none)", default="", show_default=False
                )
                opts["scopes"] = tuple(answer.split())
    except click.Abort:
        raise InvalidRequest(
            "missing values for a new provider: pass --client-id, --client-secret, "
            "--authorize-url and --token-url (or run interactively)"
        ) from None
    changes = ProviderChanges(
        client_id=opts["client_id"],
        client_secret=opts["client_secret"],
        authorize_url=opts["authorize_url"],
        token_url=opts["token_url"],
        scopes=tuple(opts["scopes"]) or None,
        scope_separator=opts["scope_separator"],
        auth_method=opts["auth_method"],
        pkce=opts["pkce"],
        redirect_uri=opts["redirect_uri"],
        authorize_params=_parse_params(opts["params"], "--param"),
        token_params=_parse_params(opts["token_params"], "--token-param"),
        default_lifetime_seconds=opts["default_lifetime"],
    )
    provider, created = service.register_provider(alias, changes)
    verb = "Registered" if created else "Updated"
    redirect = provider.redirect_uri or state.settings().redirect_uri
    click.echo(f"{verb} {provider.alias}.")
    click.echo(f"Redirect URI to register at the provider: {redirect}")
    click.echo(f"Authorize it in a browser: {service.reauthorize_url(provider.alias)}")


@main.command("providers")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def providers_(state: State, as_json: bool) -> None:
    """Show every provider: connected or not, expiry, last refresh, last error.

    Example: tokenkeep providers --json
    """
    service = state.service()
    now = time.time()
    rows = [s.to_dict(now) for s in service.repo.list_statuses()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No providers registered. Add one with `tokenkeep register-provider`.")
        return
    click.echo(
        f"{'PROVIDER':<20} {'STATUS':<14} {'EXPIRES IN':<12} {'LAST REFRESH':<21} LAST ERROR"
    )
    for r in rows:
        expires = "-" if r["expires_in"] is None else _duration(r["expires_in"])
        if r["status"] != "not_connected" and r["expires_in"] is None:
            expires = "never"
        click.echo(
            f"{r['provider']:<20} {r['status']:<14} {expires:<12} "
            f"{r['last_refresh'] or '-':<21} {r['last_error'] or '-'}"
        )


@main.command("remove-provider")
@click.argument("alias")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def remove_provider(state: State, alias: str, yes: bool) -> None:
    """Delete a provider and its stored tokens.

    Example: tokenkeep remove-provider zoho --yes
    """
    service = state.service()
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete {alias} and its tokens?", abort=True)
    service.remove_provider(alias)
    click.echo(f"Removed {alias}.")


@main.command()
@click.argument("alias")
@pass_state
def refresh(state: State, alias: str) -> None:
    """Refresh a provider's token now (within the minimum interval, reuse the last one).

    Example: tokenkeep refresh zoho
    """
    result = state.service().force_refresh(alias)
    expires = iso8601(result.record.tokens.expires_at) or "never"
    click.echo(f"{alias}: token valid until {expires}")


@main.command("refresh-all")
@click.option("--force", is_flag=True, help="Refresh every connected provider, due or not.")
@click.option(
    "--within",
    type=click.IntRange(0),
    default=1200,
    show_default=True,
    metavar="SECONDS",
    help="Refresh tokens expiring within this many seconds.",
)
@click.option(
    "--keep-alive-days",
    type=click.FloatRange(0, min_open=True),
    metavar="DAYS",
    help="Also refresh tokens not refreshed for this many days.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Refreshes run at once.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def refresh_all(
    state: State,
    force: bool,
    within: int,
    keep_alive_days: float | None,
    concurrency: int,
    as_json: bool,
) -> None:
    """Refresh due tokens (for cron); exit status 1 when any refresh failed.

    Example crontab line: */15 * * * * tokenkeep --config /etc/tokenkeep/config.toml refresh-all
    """
    outcomes = state.service().refresh_all(
        within=within, force=force, keep_alive_days=keep_alive_days, concurrency=concurrency
    )
    counts = {
        k: sum(o.outcome == k for o in outcomes)
        for k in ("refreshed", "fresh", "skipped", "failed")
    }
    if as_json:
        rows = [
            {
                "provider": o.alias,
                "outcome": o.outcome,
                "detail": o.detail,
                "expires_at": iso8601(o.expires_at),
            }
            for o in outcomes
        ]
        click.echo(json.dumps({"results": rows, "summary": counts}, indent=2))
    else:
        for o in outcomes:
            click.echo(f"{o.alias:<20} {o.outcome:<10} {o.detail}")
        click.echo(", ".join(f"{n} {k}" for k, n in counts.items()))
    if counts["failed"]:
        sys.exit(1)


def _duration(seconds: int) -> str:
    if seconds < 0:
        return "expired"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
