"""Provider commands: register-provider, providers, remove-provider."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from typing import Any

import click

from tokenkeep.cli_common import State, duration, parse_params, pass_state
from tokenkeep.errors import InvalidRequest
from tokenkeep.models import AUTH_METHODS, ProviderChanges
from tokenkeep.presets import get_preset, load_presets


@click.command("register-provider")
@click.argument("alias", required=False)
@click.option(
    "--preset", metavar="NAME", help="Start from a known provider (see `tokenkeep presets`)."
)
@click.option(
    "--region", metavar="REGION", help="The preset's region or data centre, e.g. eu for Zoho."
)
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
    With --preset NAME the endpoints and quirks come from the preset (the alias
    defaults to NAME); any flag given still overrides them.

    Example: tokenkeep register-provider zoho --preset zoho --region eu --client-id ID
    --scope ZohoCRM.modules.ALL

    Example: tokenkeep register-provider zoho --client-id ID --authorize-url
    https://accounts.zoho.com/oauth/v2/auth --token-url https://accounts.zoho.com/oauth/v2/token
    --scope ZohoCRM.modules.ALL --scope-separator , --param access_type=offline
    --param prompt=consent --auth-method client_secret_post
    """
    preset = get_preset(opts["preset"]) if opts["preset"] else None
    if opts["region"] and preset is None:
        raise InvalidRequest("--region needs --preset NAME")
    params = parse_params(opts["params"], "--param")
    token_params = parse_params(opts["token_params"], "--token-param")
    base = ProviderChanges()
    if preset is not None:
        # Before any prompt: a missing placeholder or unknown region fails at once.
        # The preset merges the repeatable options into its own values.
        base = preset.resolve(
            region=opts["region"],
            params=params,
            token_params=token_params,
            scopes=tuple(opts["scopes"]),
        )
        params = token_params = None
    service = state.service()
    try:
        if not alias:
            alias = preset.name if preset else click.prompt("Provider alias (e.g. zoho)")
        assert alias is not None
        service.check_alias(alias)
        exists = service.repo.get_provider(alias) is not None
        if not exists:
            asked = [("client_id", "Client ID")]
            if preset is None:
                asked += [("authorize_url", "Authorize URL"), ("token_url", "Token URL")]
            for key, label in asked:
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
        needed = "--client-id and --client-secret"
        if preset is None:
            needed = "--client-id, --client-secret, --authorize-url and --token-url"
        raise InvalidRequest(
            f"missing values for a new provider: pass {needed} (or run interactively)"
        ) from None
    if preset is not None:
        given = tuple(opts["scopes"] or ())  # from --scope or the prompt
        if given:
            base = replace(base, scopes=tuple(dict.fromkeys((*preset.scopes, *given))))
        elif exists:
            base = replace(base, scopes=None)  # an update without --scope keeps the stored ones
        opts["scopes"] = None  # merged into `base`
    changes = base.overlay(
        ProviderChanges(
            client_id=opts["client_id"],
            client_secret=opts["client_secret"],
            authorize_url=opts["authorize_url"],
            token_url=opts["token_url"],
            scopes=tuple(opts["scopes"] or ()) or None,
            scope_separator=opts["scope_separator"],
            auth_method=opts["auth_method"],
            pkce=opts["pkce"],
            redirect_uri=opts["redirect_uri"],
            authorize_params=params,
            token_params=token_params,
            default_lifetime_seconds=opts["default_lifetime"],
        )
    )
    provider, created = service.register_provider(alias, changes)
    verb = "Registered" if created else "Updated"
    redirect = provider.redirect_uri or state.settings().redirect_uri
    click.echo(f"{verb} {provider.alias}.")
    click.echo(f"Redirect URI to register at the provider: {redirect}")
    click.echo(f"Authorize it in a browser: {service.reauthorize_url(provider.alias)}")


@click.command("providers")
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
        expires = "-" if r["expires_in"] is None else duration(r["expires_in"])
        if r["status"] != "not_connected" and r["expires_in"] is None:
            expires = "never"
        click.echo(
            f"{r['provider']:<20} {r['status']:<14} {expires:<12} "
            f"{r['last_refresh'] or '-':<21} {r['last_error'] or '-'}"
        )


@click.command("remove-provider")
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


@click.command("presets")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def presets_(as_json: bool) -> None:
    """List the provider presets for `register-provider --preset NAME`, one line each.

    Example: tokenkeep presets --json
    """
    presets = load_presets()
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in presets.values()], indent=2))
        return
    width = max(len(name) for name in presets) + 2
    for preset in presets.values():
        regions = f" Regions: {', '.join(preset.regions)}." if preset.regions else ""
        click.echo(f"{preset.name:<{width}}{preset.title}: {preset.note}{regions}")
