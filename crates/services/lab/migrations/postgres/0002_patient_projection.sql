-- The patients the lab service has heard of (patient.created.v1): enough to match an HL7
-- result's PID-3 (MRN) to a patient, and to fill in an order's MRN. Demographics stay with
-- the patient service.
CREATE TABLE lab_patients (
    tenant_id VARCHAR(50) NOT NULL,
    patient_id UUID NOT NULL,
    mrn VARCHAR(20) NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, patient_id)
);
CREATE UNIQUE INDEX idx_lab_patients_mrn ON lab_patients (tenant_id, mrn);

ALTER TABLE lab_patients ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON lab_patients
    USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');
