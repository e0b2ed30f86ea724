-- Idempotency-Key: one row per key and tenant, written in the transaction of the change it
-- produced. It holds a digest of the request and the id of what was created, never the
-- request or the response (which would be PHI).
CREATE TABLE idempotency_keys (
    tenant_id VARCHAR(50) NOT NULL,
    idempotency_key VARCHAR(255) NOT NULL,
    operation VARCHAR(50) NOT NULL,
    request_digest CHAR(64) NOT NULL,
    resource_id UUID NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (tenant_id, idempotency_key)
);
