-- Patient service tables (000 §4.1) for the embedded store. Same tables, constraints and
-- indexes as migrations/postgres; ids are 16-byte BLOBs, times RFC 3339 UTC text, JSON text.
CREATE TABLE patients (
    patient_id BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    mrn TEXT NOT NULL,
    ssn TEXT,
    first_name TEXT NOT NULL,
    middle_name TEXT,
    last_name TEXT NOT NULL,
    first_name_norm TEXT NOT NULL,
    last_name_norm TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    gender TEXT,
    phone TEXT,
    email TEXT,
    email_norm TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT,
    updated_by TEXT,
    version INTEGER NOT NULL DEFAULT 1,
    deleted_at TEXT,
    CONSTRAINT chk_gender CHECK (gender IN ('MALE', 'FEMALE', 'OTHER', 'UNKNOWN'))
);

CREATE UNIQUE INDEX idx_patients_mrn ON patients (tenant_id, mrn);
CREATE UNIQUE INDEX idx_patients_ssn ON patients (tenant_id, ssn) WHERE deleted_at IS NULL AND ssn IS NOT NULL;
-- Search indexes end in the sort columns, so an equality filter both narrows and orders:
-- no index walk over a whole tenant, no sort. A first-name-only search sorts by first name.
CREATE INDEX idx_patients_name ON patients (tenant_id, last_name_norm, first_name_norm, patient_id) WHERE deleted_at IS NULL;
CREATE INDEX idx_patients_first_name ON patients (tenant_id, first_name_norm, last_name_norm, patient_id) WHERE deleted_at IS NULL;
CREATE INDEX idx_patients_dob ON patients (tenant_id, date_of_birth, last_name_norm, first_name_norm, patient_id) WHERE deleted_at IS NULL;
CREATE INDEX idx_patients_phone ON patients (tenant_id, phone, last_name_norm, first_name_norm, patient_id) WHERE deleted_at IS NULL;
CREATE INDEX idx_patients_email ON patients (tenant_id, email_norm, last_name_norm, first_name_norm, patient_id) WHERE deleted_at IS NULL;

CREATE TABLE patient_addresses (
    address_id BLOB PRIMARY KEY,
    patient_id BLOB NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    address_type TEXT NOT NULL,
    street_line1 TEXT NOT NULL,
    street_line2 TEXT,
    city TEXT NOT NULL,
    state TEXT NOT NULL,
    zip_code TEXT NOT NULL,
    country TEXT NOT NULL DEFAULT 'USA',
    is_primary BOOLEAN NOT NULL DEFAULT FALSE,
    CONSTRAINT chk_address_type CHECK (address_type IN ('HOME', 'WORK', 'BILLING'))
);
CREATE INDEX idx_addresses_patient ON patient_addresses (patient_id, position);

CREATE TABLE patient_insurance (
    insurance_id BLOB PRIMARY KEY,
    patient_id BLOB NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    policy_number TEXT NOT NULL,
    payer_id TEXT NOT NULL,
    payer_name TEXT NOT NULL,
    group_number TEXT,
    policy_holder_name TEXT,
    relationship_to_insured TEXT,
    effective_date TEXT NOT NULL,
    termination_date TEXT,
    is_primary BOOLEAN NOT NULL DEFAULT FALSE,
    CONSTRAINT chk_relationship CHECK (relationship_to_insured IN ('SELF', 'SPOUSE', 'CHILD', 'OTHER'))
);
CREATE INDEX idx_insurance_patient ON patient_insurance (patient_id, position);

CREATE TABLE medical_records (
    record_id BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    patient_id BLOB NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,
    record_type TEXT NOT NULL,
    record_date TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    diagnosis_codes TEXT NOT NULL DEFAULT '[]',
    procedure_codes TEXT NOT NULL DEFAULT '[]',
    notes TEXT,
    attachments TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT,
    CONSTRAINT chk_record_type CHECK (record_type IN ('VISIT', 'LAB', 'IMAGING', 'PROCEDURE', 'MEDICATION'))
);
CREATE INDEX idx_medical_records_patient ON medical_records (patient_id, record_date DESC, record_id DESC);
CREATE INDEX idx_medical_records_date ON medical_records (record_date DESC);

CREATE TABLE lab_order_requests (
    order_id BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    patient_id BLOB NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,
    priority TEXT NOT NULL,
    ordering_provider_id TEXT NOT NULL,
    ordering_provider_name TEXT NOT NULL,
    tests TEXT NOT NULL,
    diagnosis_codes TEXT NOT NULL DEFAULT '[]',
    ordered_at TEXT NOT NULL,
    created_by TEXT,
    CONSTRAINT chk_priority CHECK (priority IN ('STAT', 'URGENT', 'ROUTINE'))
);
CREATE INDEX idx_lab_order_requests_patient ON lab_order_requests (patient_id, ordered_at DESC);

CREATE TABLE patient_timeline (
    entry_id BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    patient_id BLOB NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,
    occurred_at TEXT NOT NULL,
    entry_type TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX idx_timeline_patient ON patient_timeline (patient_id, occurred_at DESC, entry_id DESC);

CREATE TABLE mrn_counters (
    tenant_id TEXT PRIMARY KEY,
    last_value INTEGER NOT NULL
);
