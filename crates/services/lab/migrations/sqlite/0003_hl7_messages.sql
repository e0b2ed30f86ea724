-- HL7 v2 over MLLP (see migrations/postgres).
CREATE TABLE hl7_messages (
    message_id BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    sender TEXT,
    control_id TEXT,
    message_type TEXT,
    received_at TEXT NOT NULL,
    status TEXT NOT NULL,
    ack_code TEXT NOT NULL,
    error_code TEXT,
    error_location TEXT,
    error_text TEXT,
    raw TEXT NOT NULL,
    ack TEXT NOT NULL,
    CONSTRAINT chk_hl7_status CHECK (status IN ('APPLIED', 'UNMATCHED', 'PARTLY_UNMATCHED', 'REJECTED'))
);
CREATE UNIQUE INDEX idx_hl7_messages_control ON hl7_messages (tenant_id, sender, control_id);
CREATE INDEX idx_hl7_messages_received ON hl7_messages (tenant_id, received_at DESC, message_id DESC);

CREATE TABLE hl7_unmatched_results (
    unmatched_id BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    message_id BLOB NOT NULL REFERENCES hl7_messages (message_id),
    position INTEGER NOT NULL,
    reason TEXT NOT NULL,
    patient_identifier TEXT,
    placer_order TEXT,
    filler_order TEXT,
    service_code TEXT,
    observations TEXT NOT NULL,
    received_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'OPEN',
    reconciled_order BLOB,
    reconciled_at TEXT,
    reconciled_by TEXT,
    CONSTRAINT chk_unmatched_status CHECK (status IN ('OPEN', 'RECONCILED'))
);
CREATE INDEX idx_unmatched_open ON hl7_unmatched_results (tenant_id, status, received_at DESC, unmatched_id DESC);

ALTER TABLE lab_orders ADD COLUMN placer_order TEXT;
CREATE UNIQUE INDEX idx_lab_orders_placer ON lab_orders (tenant_id, placer_order) WHERE placer_order IS NOT NULL;
