-- The trail is its own outbox: each entry goes out on `audit-events` from audit_log itself,
-- in chain order, and this table says how far each chain has been published. (An outbox
-- row per entry doubled the writes of every audited request, and its JSON and its update
-- when published cost more than the entry.)
CREATE TABLE audit_published (
    tenant_id VARCHAR(50) PRIMARY KEY,
    seq BIGINT NOT NULL
);

-- Entries appended before this table existed had their events in the outbox. Those not
-- published yet are each chain's newest (one tenant's appends take turns, so its outbox
-- rows are in chain order): they are published from the trail instead.
INSERT INTO audit_published (tenant_id, seq)
SELECT h.tenant_id,
       h.seq - (SELECT COUNT(*) FROM outbox o WHERE o.tenant_id = h.tenant_id AND o.published_at IS NULL)
FROM audit_heads h;
DELETE FROM outbox WHERE published_at IS NULL;

ALTER TABLE audit_published ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON audit_published
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');
