"""Shared pieces of the command line: lazy state, the error wrapper, small parsers."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from tokenkeep.config import Settings, load_settings, resolve_config_path
from tokenkeep.errors import InvalidRequest, TokenKeepError

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

    def service(self, *, auto_migrate: bool = True) -> TokenService:
        """Build the service on the configured database, migrating it first.

        Migrations are forward-only and atomic, so applying them from any
        command is safe, and a hand-written config needs no extra step.
        """
        from tokenkeep.bootstrap import build_service, open_repository

        settings = self.settings()
        return build_service(settings, repo=open_repository(settings, auto_migrate=auto_migrate))


class TokenKeepGroup(click.Group):
    """Turns TokenKeep errors into one line on stderr and a non-zero exit."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse the global options; a usage error is one line on stderr as well."""
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            _usage_error(exc, ctx)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; never show a traceback for an expected failure."""
        try:
            return super().invoke(ctx)
        except TokenKeepError as exc:
            _fail(exc.description, exc.exit_code)
        except click.UsageError as exc:  # a sub-command's bad option, argument or value
            _usage_error(exc, ctx)
        except OSError as exc:  # e.g. init or rotate-key cannot write the config
            where = f": {exc.filename}" if exc.filename else ""
            _fail(f"{exc.strerror or type(exc).__name__}{where}", 1)
        except KeyboardInterrupt:
            _fail("interrupted", 130)


def _usage_error(exc: click.UsageError, ctx: click.Context) -> NoReturn:
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        raise exc  # a bare group (`tokenkeep keys`) shows its help, as click does
    where = (exc.ctx or ctx).command_path
    _fail(f"{exc.format_message()} (see '{where} --help')", exc.exit_code)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"Error: {' '.join(message.split())}", err=True)
    sys.exit(code)


pass_state = click.make_pass_decorator(State)


def parse_params(values: tuple[str, ...], flag: str) -> dict[str, str] | None:
    if not values:
        return None
    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"{flag} takes KEY=VALUE, got {item!r}")
        params[key.strip()] = value
    return params


def duration(seconds: int) -> str:
    if seconds < 0:
        return "expired"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
