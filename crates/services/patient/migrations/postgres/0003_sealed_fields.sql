-- SSNs and medical-record notes are stored sealed (AES-256-GCM, auth::sealing), and SSNs are
-- found and kept unique through a keyed hash (ssn_index), never through plaintext.
-- The plaintext columns ssn and notes stay only so that rows written before this migration
-- can be sealed when the service starts, which then empties them; nothing writes them.
ALTER TABLE patients ADD COLUMN ssn_sealed TEXT;
ALTER TABLE patients ADD COLUMN ssn_index VARCHAR(64);
DROP INDEX idx_patients_ssn;
CREATE UNIQUE INDEX idx_patients_ssn_index ON patients (tenant_id, ssn_index) WHERE deleted_at IS NULL AND ssn_index IS NOT NULL;
ALTER TABLE medical_records ADD COLUMN notes_sealed TEXT;

-- Which keys the sealed data needs, by public fingerprint: a hub started with the wrong
-- keyring refuses to start instead of writing data no one can read back.
CREATE TABLE sealing_keys (
    key_name VARCHAR(20) PRIMARY KEY,
    fingerprint VARCHAR(64) NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL
);
