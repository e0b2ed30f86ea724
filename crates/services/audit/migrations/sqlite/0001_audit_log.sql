-- The audit trail: see migrations/postgres/0001_audit_log.sql.
CREATE TABLE audit_log (
    tenant_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entry_id BLOB NOT NULL,
    recorded_at TEXT NOT NULL,
    actor TEXT NOT NULL,
    roles TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT,
    patient_id BLOB,
    outcome TEXT NOT NULL,
    request_id TEXT,
    source_ip TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX idx_audit_patient ON audit_log (tenant_id, patient_id, seq) WHERE patient_id IS NOT NULL;
CREATE INDEX idx_audit_actor ON audit_log (tenant_id, actor, seq);
CREATE INDEX idx_audit_time ON audit_log (recorded_at);

CREATE TABLE audit_heads (
    tenant_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);

CREATE TABLE audit_anchors (
    tenant_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    purged_at TEXT NOT NULL
);

CREATE TABLE audit_policy (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    purge_before TEXT NOT NULL
);
INSERT INTO audit_policy (id, purge_before) VALUES (1, '1970-01-01T00:00:00Z');

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit entries cannot be changed');
END;

CREATE TRIGGER audit_log_no_early_delete BEFORE DELETE ON audit_log
WHEN OLD.recorded_at >= (SELECT purge_before FROM audit_policy WHERE id = 1)
BEGIN
    SELECT RAISE(ABORT, 'audit entries are kept until their retention ends');
END;
