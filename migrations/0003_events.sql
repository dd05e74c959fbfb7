-- The token event log and its running totals. Forward-only: never edit once released.
-- Events never hold a secret: a kind, an error code and a short text at most.
-- The log is pruned to the newest rows per provider; the totals are never
-- pruned, so /metrics can serve them as monotonic counters for every process.

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    provider    TEXT NOT NULL,      -- the alias; kept after the provider is removed
    kind        TEXT NOT NULL CHECK (kind IN ('authorized', 'refreshed', 'refresh_failed',
                                              'needs_reauth', 'removed', 'imported')),
    at          REAL NOT NULL,
    code        TEXT,               -- error code of refresh_failed / needs_reauth
    detail      TEXT,               -- short human text, never a secret
    failures    INTEGER,            -- consecutive failures so far (refresh_failed)
    duration_ms REAL                -- how long the refresh took (refreshed, refresh_failed)
);

CREATE INDEX events_by_provider ON events (provider, id);

CREATE TABLE event_totals (
    provider TEXT NOT NULL,
    kind     TEXT NOT NULL,
    total    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, kind)
);
