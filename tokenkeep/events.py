"""The token event log: what happened to each connection, with running totals.

Written where things happen (authorization, refresh, removal, import); read
by `tokenkeep events` and /metrics. Listeners (alerts, metrics) hear every
event. Recording never fails the caller: a token request matters more than
its log line.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenkeep.db import Database
from tokenkeep.models import Clock, iso8601

log = logging.getLogger("tokenkeep.events")

KINDS = ("authorized", "refreshed", "refresh_failed", "needs_reauth", "removed", "imported")
KEEP_PER_PROVIDER = 1000
DETAIL_LIMIT = 200


@dataclass(frozen=True)
class Event:
    """One thing that happened to a provider's connection; never holds a secret."""

    provider: str
    kind: str
    at: float
    code: str | None = None
    detail: str | None = None
    failures: int | None = None
    duration_ms: float | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "id": self.id,
            "at": iso8601(self.at),
            "provider": self.provider,
            "event": self.kind,
            "code": self.code,
            "detail": self.detail,
            "failures": self.failures,
            "duration_ms": self.duration_ms,
        }


Listener = Callable[[Event], None]


class EventLog:
    """Stores events (pruned per provider) and tells listeners about them."""

    def __init__(
        self, db: Database, clock: Clock, *, keep_per_provider: int = KEEP_PER_PROVIDER
    ) -> None:
        self.db = db
        self.clock = clock
        self.keep = keep_per_provider
        self.listeners: list[Listener] = []

    def record(
        self,
        provider: str,
        kind: str,
        *,
        code: str | None = None,
        detail: str | None = None,
        failures: int | None = None,
        duration: float | None = None,
    ) -> None:
        """Store an event and notify the listeners; errors are logged, never raised."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        event = Event(
            provider=provider,
            kind=kind,
            at=self.clock(),
            code=code,
            detail=None if detail is None else detail[:DETAIL_LIMIT],
            failures=failures,
            duration_ms=None if duration is None else round(duration * 1000, 1),
        )
        try:
            self._store(event)
        except Exception as exc:
            log.error("could not record %s event for %s (%s)", kind, provider, type(exc).__name__)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception as exc:
                log.error("event listener failed (%s)", type(exc).__name__)

    def _store(self, e: Event) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO events (provider, kind, at, code, detail, failures, duration_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (e.provider, e.kind, e.at, e.code, e.detail, e.failures, e.duration_ms),
            )
            conn.execute(
                "INSERT INTO event_totals (provider, kind, total) VALUES (?, ?, 1)"
                " ON CONFLICT(provider, kind) DO UPDATE SET total = total + 1",
                (e.provider, e.kind),
            )
            # Keep the newest rows per provider so the table cannot grow without bound.
            conn.execute(
                "DELETE FROM events WHERE provider = ? AND id <= (SELECT id FROM events"
                " WHERE provider = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (e.provider, e.provider, self.keep),
            )

    def recent(self, provider: str | None = None, limit: int = 50) -> list[Event]:
        """The newest events first, of one provider or all."""
        where, args = ("WHERE provider = ?", (provider,)) if provider else ("", ())
        rows = self.db.conn.execute(
            f"SELECT * FROM events {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
            (*args, limit),
        ).fetchall()
        return [_event(r) for r in rows]

    def totals(self) -> dict[tuple[str, str], int]:
        """How many events of each (provider, kind) were ever recorded."""
        rows = self.db.conn.execute("SELECT provider, kind, total FROM event_totals").fetchall()
        return {(r["provider"], r["kind"]): int(r["total"]) for r in rows}


def _event(row: sqlite3.Row) -> Event:
    return Event(
        provider=row["provider"],
        kind=row["kind"],
        at=row["at"],
        code=row["code"],
        detail=row["detail"],
        failures=row["failures"],
        duration_ms=row["duration_ms"],
        id=row["id"],
    )
