-- The built-in issuer's accounts and refresh tokens: see migrations/postgres/0001_identity.sql.
CREATE TABLE users (
    user_id BLOB PRIMARY KEY,
    username TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    patient_id BLOB,
    provider_id TEXT,
    created_at TEXT NOT NULL,
    disabled_at TEXT
);
CREATE UNIQUE INDEX users_username_key ON users (username);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id BLOB NOT NULL,
    user_id BLOB NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    session_expires_at TEXT NOT NULL,
    used_at TEXT,
    revoked_at TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
