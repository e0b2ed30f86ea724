-- HL7 v2 over MLLP. Every message received is kept as received (for audit and replay),
-- with what became of it and the ACK it was answered with; a message sent again with the
-- same control id (MSH-10) by the same sender (MSH-3/MSH-4) is answered with that ACK and
-- has no second effect. A message that could not be read has no sender or control id.
CREATE TABLE hl7_messages (
    message_id UUID PRIMARY KEY,
    tenant_id VARCHAR(50) NOT NULL,
    sender VARCHAR(255),
    control_id VARCHAR(200),
    message_type VARCHAR(20),
    received_at TIMESTAMPTZ NOT NULL,
    status VARCHAR(20) NOT NULL,
    ack_code VARCHAR(2) NOT NULL,
    error_code VARCHAR(10),
    error_location VARCHAR(50),
    error_text VARCHAR(500),
    raw TEXT NOT NULL,
    ack TEXT NOT NULL,
    CONSTRAINT chk_hl7_status CHECK (status IN ('APPLIED', 'UNMATCHED', 'PARTLY_UNMATCHED', 'REJECTED'))
);
CREATE UNIQUE INDEX idx_hl7_messages_control ON hl7_messages (tenant_id, sender, control_id);
CREATE INDEX idx_hl7_messages_received ON hl7_messages (tenant_id, received_at DESC, message_id DESC);

-- Results no order could be found for (by placer or filler number, or by patient and test):
-- never dropped, kept here until someone reconciles them with an order.
CREATE TABLE hl7_unmatched_results (
    unmatched_id UUID PRIMARY KEY,
    tenant_id VARCHAR(50) NOT NULL,
    message_id UUID NOT NULL REFERENCES hl7_messages (message_id),
    position SMALLINT NOT NULL,
    reason VARCHAR(100) NOT NULL,
    patient_identifier VARCHAR(100),
    placer_order VARCHAR(100),
    filler_order VARCHAR(100),
    service_code VARCHAR(100),
    observations JSONB NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'OPEN',
    reconciled_order UUID,
    reconciled_at TIMESTAMPTZ,
    reconciled_by VARCHAR(255),
    CONSTRAINT chk_unmatched_status CHECK (status IN ('OPEN', 'RECONCILED'))
);
CREATE INDEX idx_unmatched_open ON hl7_unmatched_results (tenant_id, status, received_at DESC, unmatched_id DESC);

-- Orders an EHR placed over HL7 carry its number (ORC-2), so a repeat is recognized.
ALTER TABLE lab_orders ADD COLUMN placer_order VARCHAR(50);
CREATE UNIQUE INDEX idx_lab_orders_placer ON lab_orders (tenant_id, placer_order) WHERE placer_order IS NOT NULL;

ALTER TABLE hl7_messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON hl7_messages
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');
ALTER TABLE hl7_unmatched_results ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON hl7_unmatched_results
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');
