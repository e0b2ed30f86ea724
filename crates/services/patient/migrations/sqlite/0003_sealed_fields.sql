-- Sealed SSNs and notes: see migrations/postgres/0003_sealed_fields.sql.
ALTER TABLE patients ADD COLUMN ssn_sealed TEXT;
ALTER TABLE patients ADD COLUMN ssn_index TEXT;
DROP INDEX idx_patients_ssn;
CREATE UNIQUE INDEX idx_patients_ssn_index ON patients (tenant_id, ssn_index) WHERE deleted_at IS NULL AND ssn_index IS NOT NULL;
ALTER TABLE medical_records ADD COLUMN notes_sealed TEXT;

CREATE TABLE sealing_keys (
    key_name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    registered_at TEXT NOT NULL
);
