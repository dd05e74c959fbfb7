"""The composition root: build the concrete service from settings."""

from __future__ import annotations

import time
from collections.abc import Callable

from tokenkeep.alerts import Alerter, AlertSender, PostSession
from tokenkeep.config import Settings
from tokenkeep.crypto import Cipher
from tokenkeep.db import Database
from tokenkeep.errors import ConfigError
from tokenkeep.migrate import migrate, pending_migrations
from tokenkeep.models import Clock
from tokenkeep.oauth import ProviderClient, Session, new_session
from tokenkeep.repository import Repository
from tokenkeep.service import TokenService


def open_repository(settings: Settings, *, auto_migrate: bool = False) -> Repository:
    """Open the database, check its schema and that the key can read it."""
    db = Database(settings.database_path)
    try:
        if auto_migrate:
            migrate(db)
        elif pending_migrations(db):
            raise ConfigError(
                f"the database {settings.database_path} needs migrating; run `tokenkeep migrate`"
            )
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"cannot open the database {settings.database_path} "
            f"({type(exc).__name__}); check database_path and its folder's permissions"
        ) from None
    repo = Repository(db, Cipher(settings.encryption_key, *settings.old_encryption_keys))
    repo.check_key()
    return repo


def build_service(
    settings: Settings,
    *,
    repo: Repository | None = None,
    session: Session | None = None,
    alert_session: PostSession | None = None,
    clock: Clock = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> TokenService:
    """Wire repository, provider client and service together."""
    if repo is None:
        repo = open_repository(settings)
    if session is None:
        session = new_session()
    client = ProviderClient(
        session, timeout=settings.http_timeout_seconds, clock=clock, sleep=sleep
    )
    service = TokenService(repo, client, settings, clock=clock, sleep=sleep)
    if settings.alert_webhook_url:
        # A session of its own: the webhook thread never shares the provider calls' pool.
        service.alerts = AlertSender(
            alert_session or new_session(),
            settings.alert_webhook_url,
            settings.alert_webhook_secret,
            timeout=settings.http_timeout_seconds,
            clock=clock,
            sleep=sleep,
        )
        alerter = Alerter(
            service.alerts,
            after_failures=settings.alert_after_failures,
            reauthorize_url=service.reauthorize_url,
        )
        service.events.listeners.append(alerter.on_event)
    return service
