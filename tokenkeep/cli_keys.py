"""Security commands: scoped API keys, signed auth links, encryption key rotation."""

from __future__ import annotations

import json
import os

import click

from tokenkeep.cli_common import State, pass_state
from tokenkeep.errors import ConfigError, UnknownProvider
from tokenkeep.models import iso8601


@click.group()
def keys() -> None:
    """Manage scoped API keys for backends (the master key stays in the config).

    Example: tokenkeep keys create billing --provider zoho
    """


@keys.command("create")
@click.argument("name")
@click.option(
    "--provider",
    "providers",
    multiple=True,
    metavar="ALIAS",
    help="A provider this key may read (repeatable; none: every provider).",
)
@pass_state
def keys_create(state: State, name: str, providers: tuple[str, ...]) -> None:
    """Create a key and print it once; only its SHA-256 is stored.

    Example: tokenkeep keys create billing --provider zoho --provider pipedrive
    """
    key = state.service().keys.create(name, providers or None)
    click.echo(key)
    scope = ", ".join(providers) if providers else "every provider"
    click.echo(f"Created key {name!r} for {scope}. It is shown only this once.", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def keys_list(state: State, as_json: bool) -> None:
    """Show each key's name, providers, creation and last use (never the key).

    Example: tokenkeep keys list
    """
    rows = [
        {
            "name": k.name,
            "providers": list(k.providers) if k.providers is not None else None,
            "created_at": iso8601(k.created_at),
            "last_used_at": iso8601(k.last_used_at),
        }
        for k in state.service().keys.list()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No scoped keys. Create one with `tokenkeep keys create NAME`.")
        return
    click.echo(f"{'NAME':<20} {'PROVIDERS':<30} {'CREATED':<21} LAST USED")
    for r in rows:
        providers = ",".join(r["providers"]) if r["providers"] is not None else "*"
        click.echo(
            f"{r['name']:<20} {providers:<30} {r['created_at']:<21} {r['last_used_at'] or 'never'}"
        )


@keys.command("revoke")
@click.argument("name")
@pass_state
def keys_revoke(state: State, name: str) -> None:
    """Delete a key; requests using it fail from now on.

    Example: tokenkeep keys revoke billing
    """
    state.service().keys.revoke(name)
    click.echo(f"Revoked key {name!r}.")


@click.command("auth-link")
@click.argument("alias")
@click.option(
    "--ttl",
    type=int,
    default=3600,
    show_default=True,
    metavar="SECONDS",
    help="How long the link stays valid (60 s to 7 days).",
)
@pass_state
def auth_link(state: State, alias: str, ttl: int) -> None:
    """Print a signed one-time link that starts the authorization for ALIAS.

    Send it to the person who owns the provider account; it needs no password,
    works once and expires. The URL is printed alone on one line of stdout.

    Example: tokenkeep auth-link zoho --ttl 86400
    """
    service = state.service()
    service.check_alias(alias)
    if service.repo.get_provider(alias) is None:
        raise UnknownProvider(f"no provider is registered as {alias!r}")
    click.echo(service.keys.auth_link(alias, ttl))


@click.command("rotate-key")
@pass_state
def rotate_key(state: State) -> None:
    """Re-encrypt every stored secret under a new encryption key.

    The new key is written to the config file. Crash-safe: the config keeps
    the old key as a decryption fallback until the database is re-encrypted
    in one transaction. Restart running servers afterwards.

    Example: tokenkeep rotate-key
    """
    from tokenkeep.config import new_encryption_key, write_encryption_keys
    from tokenkeep.crypto import Cipher
    from tokenkeep.keystore import KeyStore

    if "TOKENKEEP_ENCRYPTION_KEY" in os.environ:
        raise ConfigError(
            "encryption_key comes from TOKENKEEP_ENCRYPTION_KEY; rotate it where that "
            "variable is set (this command rewrites only the config file)"
        )
    settings = state.settings()
    service = state.service()
    if any(s.refreshing for s in service.repo.list_statuses()):
        raise ConfigError(
            "a refresh is in progress; stop `tokenkeep serve` and cron, then run rotate-key"
        )
    old = (settings.encryption_key, *settings.old_encryption_keys)
    new = new_encryption_key()
    path = state.config_path
    write_encryption_keys(path, new, old)  # step 1: new key, old ones still decrypt
    count = KeyStore(service.repo.db).reencrypt_all(Cipher(*old), Cipher(new))  # step 2
    write_encryption_keys(path, new, ())  # step 3: forget the old keys
    click.echo(f"Re-encrypted {count} secrets under a new key written to {path}.")
    click.echo("Restart running TokenKeep servers so they load the new key.")
