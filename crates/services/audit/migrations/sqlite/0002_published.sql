-- The trail is its own outbox: see migrations/postgres/0003_published.sql.
CREATE TABLE audit_published (
    tenant_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
INSERT INTO audit_published (tenant_id, seq)
SELECT h.tenant_id,
       h.seq - (SELECT COUNT(*) FROM outbox o WHERE o.tenant_id = h.tenant_id AND o.published_at IS NULL)
FROM audit_heads h;
DELETE FROM outbox WHERE published_at IS NULL;
