"""The import-php command: move over from the PHP original."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tokenkeep.cli_common import State, pass_state


@click.command("import-php")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def import_php(state: State, path: Path, as_json: bool) -> None:
    """Import providers and tokens from the PHP original's SQLite file (read-only).

    Safe to run twice: what is already imported, or newer in TokenKeep, is kept.

    Example: tokenkeep import-php /var/www/tokenkeep/data/tokens.sqlite
    """
    from tokenkeep.php_import import import_php as run
    from tokenkeep.php_source import read_php_database

    dump = read_php_database(path)  # bad input fails before TokenKeep's database is opened
    service = state.service()
    report = run(service.repo, dump, now=service.clock(), on_import=service.record_import)
    counts = report.summary()
    if as_json:
        rows = [
            {"provider": r.alias, "action": r.action, "detail": r.detail, "notes": list(r.notes)}
            for r in report.results
        ]
        body = {"results": rows, "ignored": report.ignored, "summary": counts}
        click.echo(json.dumps({**body, "changed": report.changed}, indent=2))
        return
    for r in report.results:
        click.echo(f"{r.alias:<20} {r.action:<10} {r.detail}")
        for note in r.notes:
            click.echo(f"{'':<20} note: {note}")
    for line in report.ignored:
        click.echo(f"ignored: {line}")
    click.echo(", ".join(f"{n} {k}" for k, n in counts.items()))
    if not report.changed:
        click.echo("Nothing changed: everything in the source is already in TokenKeep.")
