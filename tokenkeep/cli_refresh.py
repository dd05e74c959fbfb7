"""Refresh commands: refresh one provider now, refresh-all for cron."""

from __future__ import annotations

import json
import math
import sys

import click

from tokenkeep.cli_common import State, pass_state
from tokenkeep.models import iso8601


def _finite(value: float | None, flag: str) -> float | None:
    """Refuse nan and inf, which FloatRange lets through (no comparison is true for nan)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number of days", param_hint=flag)
    return value


@click.command()
@click.argument("alias")
@pass_state
def refresh(state: State, alias: str) -> None:
    """Refresh a provider's token now (within the minimum interval, reuse the last one).

    Example: tokenkeep refresh zoho
    """
    result = state.service().force_refresh(alias)
    expires = iso8601(result.record.tokens.expires_at) or "never"
    click.echo(f"{alias}: token valid until {expires}")


@click.command("refresh-all")
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
    callback=lambda ctx, param, value: _finite(value, "--keep-alive-days"),
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
