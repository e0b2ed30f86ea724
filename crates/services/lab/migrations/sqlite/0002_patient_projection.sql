-- The patients the lab service has heard of (see migrations/postgres).
CREATE TABLE lab_patients (
    tenant_id TEXT NOT NULL,
    patient_id BLOB NOT NULL,
    mrn TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, patient_id)
);
CREATE UNIQUE INDEX idx_lab_patients_mrn ON lab_patients (tenant_id, mrn);
