"""The events command: the token event log, newest first."""

from __future__ import annotations

import json

import click

from tokenkeep.cli_common import State, pass_state
from tokenkeep.models import iso8601


@click.command("events")
@click.argument("alias", required=False)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    metavar="N",
    help="Show at most this many events.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def events(state: State, alias: str | None, limit: int, as_json: bool) -> None:
    """Show the token event log (authorized, refreshed, refresh_failed, ...), newest first.

    Example: tokenkeep events zoho --limit 20
    """
    service = state.service()
    if alias is not None:
        service.check_alias(alias)
    found = service.events.recent(alias, limit)
    if as_json:
        click.echo(json.dumps({"events": [e.to_dict() for e in found]}, indent=2))
        return
    if not found:
        click.echo("No events recorded" + (f" for {alias}." if alias else "."))
    for e in found:
        extra = " ".join(
            part
            for part in (
                e.code or "",
                e.detail or "",
                f"(failure {e.failures})" if e.failures else "",
                f"[{e.duration_ms:g} ms]" if e.duration_ms is not None else "",
            )
            if part
        )
        click.echo(f"{iso8601(e.at)}  {e.provider:<20} {e.kind:<15} {extra}".rstrip())
