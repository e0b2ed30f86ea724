-- Laboratory service tables (000 §4.1), in schema "lab". Differences from 000, on purpose:
--  * every table carries tenant_id, for the tenant filters and row-level security;
--  * results are a table of their own (lab_results), one row per revision: a correction
--    adds a row and nothing is overwritten, so the history stays;
--  * priority_rank orders the pending list (STAT, URGENT, ROUTINE) through an index;
--  * orders waiting for insurance pre-authorization are marked and left out of it;
--  * diagnosis codes are a JSONB array on the order (000's order_diagnoses holds only a
--    code and whether it is the primary one: the first is).
CREATE TABLE lab_orders (
    order_id UUID PRIMARY KEY,
    tenant_id VARCHAR(50) NOT NULL,
    patient_id UUID NOT NULL,
    mrn VARCHAR(20),
    ordering_provider_id VARCHAR(50) NOT NULL,
    ordering_provider_name VARCHAR(255) NOT NULL,
    priority VARCHAR(20) NOT NULL,
    priority_rank SMALLINT NOT NULL,
    status VARCHAR(20) NOT NULL,
    diagnosis_codes JSONB NOT NULL DEFAULT '[]',
    ordered_at TIMESTAMPTZ NOT NULL,
    collected_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ,
    reported_at TIMESTAMPTZ,
    cancelled_at TIMESTAMPTZ,
    cancel_reason VARCHAR(255),
    awaiting_preauthorization BOOLEAN NOT NULL DEFAULT FALSE,
    preauthorization VARCHAR(50),
    filler_order VARCHAR(50),
    version BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT chk_priority CHECK (priority IN ('STAT', 'URGENT', 'ROUTINE')),
    CONSTRAINT chk_status CHECK (status IN ('PENDING', 'COLLECTED', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED'))
);
CREATE INDEX idx_lab_orders_pending ON lab_orders (tenant_id, priority_rank, ordered_at, order_id)
    WHERE status IN ('PENDING', 'COLLECTED', 'IN_PROGRESS') AND NOT awaiting_preauthorization;
CREATE INDEX idx_lab_orders_patient ON lab_orders (tenant_id, patient_id, ordered_at DESC);
CREATE INDEX idx_lab_orders_filler ON lab_orders (tenant_id, filler_order) WHERE filler_order IS NOT NULL;

CREATE TABLE lab_tests (
    test_id UUID PRIMARY KEY,
    tenant_id VARCHAR(50) NOT NULL,
    order_id UUID NOT NULL REFERENCES lab_orders (order_id) ON DELETE CASCADE,
    position SMALLINT NOT NULL,
    test_code VARCHAR(50) NOT NULL,
    test_name VARCHAR(255) NOT NULL,
    loinc_code VARCHAR(20),
    status VARCHAR(20) NOT NULL,
    CONSTRAINT chk_test_status CHECK (status IN ('PENDING', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED'))
);
CREATE INDEX idx_lab_tests_order ON lab_tests (order_id, position);

CREATE TABLE lab_results (
    result_id UUID PRIMARY KEY,
    tenant_id VARCHAR(50) NOT NULL,
    test_id UUID NOT NULL REFERENCES lab_tests (test_id) ON DELETE CASCADE,
    order_id UUID NOT NULL,
    revision SMALLINT NOT NULL,
    result_value VARCHAR(500) NOT NULL,
    result_unit VARCHAR(50),
    reference_range VARCHAR(100),
    abnormal_flag VARCHAR(10),
    performed_by VARCHAR(100) NOT NULL,
    performed_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    verified_by VARCHAR(100),
    verified_at TIMESTAMPTZ,
    correction BOOLEAN NOT NULL,
    critical_flag VARCHAR(10),
    CONSTRAINT chk_abnormal_flag CHECK (abnormal_flag IN ('L', 'H', 'LL', 'HH', 'N', 'A')),
    CONSTRAINT uq_result_revision UNIQUE (test_id, revision)
);
CREATE INDEX idx_lab_results_order ON lab_results (order_id, test_id, revision);

CREATE TABLE specimens (
    specimen_id UUID PRIMARY KEY,
    tenant_id VARCHAR(50) NOT NULL,
    order_id UUID NOT NULL REFERENCES lab_orders (order_id) ON DELETE CASCADE,
    specimen_type VARCHAR(50) NOT NULL,
    collected_at TIMESTAMPTZ NOT NULL,
    collected_by VARCHAR(100) NOT NULL,
    received_at TIMESTAMPTZ,
    condition VARCHAR(50),
    CONSTRAINT chk_specimen_type CHECK (specimen_type IN ('BLOOD', 'URINE', 'TISSUE', 'SWAB', 'OTHER'))
);
CREATE INDEX idx_specimens_order ON specimens (order_id, collected_at);

-- Tenant isolation by row-level security, as in the patient service (0004 there).
ALTER TABLE lab_orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON lab_orders
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');
ALTER TABLE lab_tests ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON lab_tests
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');
ALTER TABLE lab_results ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON lab_results
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');
ALTER TABLE specimens ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON specimens
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');
