-- TokenKeep schema, version 1. Forward-only: never edit once released.
-- Secrets (client secrets, tokens, PKCE verifiers) are stored encrypted
-- (columns ending in _enc); OAuth state is stored only as a SHA-256 hash.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE providers (
    id                       INTEGER PRIMARY KEY,
    alias                    TEXT NOT NULL UNIQUE,
    client_id                TEXT NOT NULL,
    client_secret_enc        TEXT NOT NULL,
    authorize_url            TEXT NOT NULL,
    token_url                TEXT NOT NULL,
    scopes                   TEXT NOT NULL DEFAULT '[]',   -- JSON list
    scope_separator          TEXT NOT NULL DEFAULT ' ',
    auth_method              TEXT NOT NULL DEFAULT 'client_secret_basic',
    pkce                     INTEGER NOT NULL DEFAULT 1,
    redirect_uri             TEXT,                          -- NULL: public_url + /callback
    authorize_params         TEXT NOT NULL DEFAULT '{}',    -- JSON object
    token_params             TEXT NOT NULL DEFAULT '{}',    -- JSON object
    default_lifetime_seconds INTEGER,
    created_at               REAL NOT NULL,
    updated_at               REAL NOT NULL
);

-- One row per connected provider. The refresh lease (lease_owner,
-- lease_until) makes refreshes single-flight across threads and processes.
CREATE TABLE tokens (
    provider_id      INTEGER PRIMARY KEY REFERENCES providers(id) ON DELETE CASCADE,
    secrets_enc      TEXT NOT NULL,       -- access token, refresh token, extras
    token_type       TEXT NOT NULL,
    scope            TEXT,
    expires_at       REAL,                -- NULL: the provider gave no expiry
    has_refresh      INTEGER NOT NULL DEFAULT 0,
    obtained_at      REAL NOT NULL,
    authorized_at    REAL NOT NULL,
    status           TEXT NOT NULL DEFAULT 'connected'
                     CHECK (status IN ('connected', 'needs_reauth')),
    last_error       TEXT,
    last_error_code  TEXT,
    last_error_at    REAL,
    failure_count    INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL,
    lease_owner      TEXT,
    lease_until      REAL,
    version          INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE pending_authorizations (
    state_hash        TEXT PRIMARY KEY,
    provider_id       INTEGER NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    code_verifier_enc TEXT,
    redirect_uri      TEXT NOT NULL,
    created_at        REAL NOT NULL,
    expires_at        REAL NOT NULL
);

CREATE INDEX pending_authorizations_expiry ON pending_authorizations (expires_at);
