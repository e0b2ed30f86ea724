-- Laboratory service tables (000 §4.1) for the embedded store: the same tables, constraints
-- and indexes as migrations/postgres (see there for why they differ from 000); ids are
-- 16-byte BLOBs, times RFC 3339 UTC text, JSON text.
CREATE TABLE lab_orders (
    order_id BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    patient_id BLOB NOT NULL,
    mrn TEXT,
    ordering_provider_id TEXT NOT NULL,
    ordering_provider_name TEXT NOT NULL,
    priority TEXT NOT NULL,
    priority_rank INTEGER NOT NULL,
    status TEXT NOT NULL,
    diagnosis_codes TEXT NOT NULL DEFAULT '[]',
    ordered_at TEXT NOT NULL,
    collected_at TEXT,
    received_at TEXT,
    reported_at TEXT,
    cancelled_at TEXT,
    cancel_reason TEXT,
    awaiting_preauthorization BOOLEAN NOT NULL DEFAULT FALSE,
    preauthorization TEXT,
    filler_order TEXT,
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT chk_priority CHECK (priority IN ('STAT', 'URGENT', 'ROUTINE')),
    CONSTRAINT chk_status CHECK (status IN ('PENDING', 'COLLECTED', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED'))
);
CREATE INDEX idx_lab_orders_pending ON lab_orders (tenant_id, priority_rank, ordered_at, order_id)
    WHERE status IN ('PENDING', 'COLLECTED', 'IN_PROGRESS') AND NOT awaiting_preauthorization;
CREATE INDEX idx_lab_orders_patient ON lab_orders (tenant_id, patient_id, ordered_at DESC);
CREATE INDEX idx_lab_orders_filler ON lab_orders (tenant_id, filler_order) WHERE filler_order IS NOT NULL;

CREATE TABLE lab_tests (
    test_id BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    order_id BLOB NOT NULL REFERENCES lab_orders (order_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    test_code TEXT NOT NULL,
    test_name TEXT NOT NULL,
    loinc_code TEXT,
    status TEXT NOT NULL,
    CONSTRAINT chk_test_status CHECK (status IN ('PENDING', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED'))
);
CREATE INDEX idx_lab_tests_order ON lab_tests (order_id, position);

CREATE TABLE lab_results (
    result_id BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    test_id BLOB NOT NULL REFERENCES lab_tests (test_id) ON DELETE CASCADE,
    order_id BLOB NOT NULL,
    revision INTEGER NOT NULL,
    result_value TEXT NOT NULL,
    result_unit TEXT,
    reference_range TEXT,
    abnormal_flag TEXT,
    performed_by TEXT NOT NULL,
    performed_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    verified_by TEXT,
    verified_at TEXT,
    correction BOOLEAN NOT NULL,
    critical_flag TEXT,
    CONSTRAINT chk_abnormal_flag CHECK (abnormal_flag IN ('L', 'H', 'LL', 'HH', 'N', 'A')),
    CONSTRAINT uq_result_revision UNIQUE (test_id, revision)
);
CREATE INDEX idx_lab_results_order ON lab_results (order_id, test_id, revision);

CREATE TABLE specimens (
    specimen_id BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    order_id BLOB NOT NULL REFERENCES lab_orders (order_id) ON DELETE CASCADE,
    specimen_type TEXT NOT NULL,
    collected_at TEXT NOT NULL,
    collected_by TEXT NOT NULL,
    received_at TEXT,
    condition TEXT,
    CONSTRAINT chk_specimen_type CHECK (specimen_type IN ('BLOOD', 'URINE', 'TISSUE', 'SWAB', 'OTHER'))
);
CREATE INDEX idx_specimens_order ON specimens (order_id, collected_at);
