-- The built-in issuer's accounts (people and service accounts) and refresh tokens.
-- Passwords and client secrets are stored as Argon2id hashes; refresh tokens as the
-- SHA-256 of the token (they are 256 random bits, so a fast hash is enough), never in clear.
CREATE TABLE users (
    user_id UUID PRIMARY KEY,
    username VARCHAR(100) NOT NULL,
    tenant_id VARCHAR(50) NOT NULL,
    kind VARCHAR(10) NOT NULL CHECK (kind IN ('person', 'service')),
    password_hash TEXT NOT NULL,
    -- Realm role names, space-separated, as the token carries them.
    roles TEXT NOT NULL,
    patient_id UUID,
    provider_id VARCHAR(50),
    created_at TIMESTAMPTZ NOT NULL,
    disabled_at TIMESTAMPTZ,
    CONSTRAINT users_username_key UNIQUE (username)
);

-- One row per refresh token ever issued. A token is used once: refreshing marks it used
-- and issues the next of its family. Presenting a used token again means it was stolen
-- (or replayed), and the whole family is revoked (OAuth 2.0 Security BCP §4.14).
CREATE TABLE refresh_tokens (
    token_hash CHAR(64) PRIMARY KEY,
    family_id UUID NOT NULL,
    user_id UUID NOT NULL REFERENCES users (user_id),
    issued_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    session_expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
