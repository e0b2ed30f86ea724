-- The audit trail, in schema "audit". Each tenant's entries form a hash chain: seq counts
-- from 1 with no gaps, and hash = SHA-256(content, prev_hash), so an edited, deleted or
-- reordered entry breaks the chain where it happened (`meditrack audit verify`).
CREATE TABLE audit_log (
    tenant_id VARCHAR(50) NOT NULL,
    seq BIGINT NOT NULL,
    entry_id UUID NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    actor VARCHAR(255) NOT NULL,
    roles VARCHAR(255) NOT NULL,
    action VARCHAR(20) NOT NULL,
    resource_type VARCHAR(50) NOT NULL,
    resource_id VARCHAR(100),
    patient_id UUID,
    outcome VARCHAR(10) NOT NULL,
    request_id VARCHAR(128),
    source_ip VARCHAR(64),
    prev_hash CHAR(64) NOT NULL,
    hash CHAR(64) NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX idx_audit_patient ON audit_log (tenant_id, patient_id, seq) WHERE patient_id IS NOT NULL;
CREATE INDEX idx_audit_actor ON audit_log (tenant_id, actor, seq);
CREATE INDEX idx_audit_time ON audit_log (recorded_at);

-- The last entry of each chain: a deleted tail is caught, and appends find where to go.
CREATE TABLE audit_heads (
    tenant_id VARCHAR(50) PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash CHAR(64) NOT NULL
);

-- Where each chain starts after retention removed its oldest entries.
CREATE TABLE audit_anchors (
    tenant_id VARCHAR(50) PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash CHAR(64) NOT NULL,
    purged_at TIMESTAMPTZ NOT NULL
);

-- Entries older than purge_before may be deleted (retention); nothing may be changed.
CREATE TABLE audit_policy (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    purge_before TIMESTAMPTZ NOT NULL
);
INSERT INTO audit_policy (id, purge_before) VALUES (1, '1970-01-01T00:00:00Z');

CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'audit entries cannot be changed';
    END IF;
    IF OLD.recorded_at >= (SELECT purge_before FROM audit_policy WHERE id = 1) THEN
        RAISE EXCEPTION 'audit entries are kept until their retention ends';
    END IF;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
