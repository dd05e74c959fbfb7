-- Scoped caller keys (stored only as SHA-256) and spent one-time auth links.

CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    key_hash     TEXT NOT NULL UNIQUE,   -- hex SHA-256 of the key
    providers    TEXT,                   -- JSON list of aliases; NULL: every provider
    created_at   REAL NOT NULL,
    last_used_at REAL
);

CREATE TABLE used_auth_links (
    nonce_hash TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
