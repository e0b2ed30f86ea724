-- Patient service tables (000 §4.1), in schema "patient".
-- Differences from 000, on purpose:
--  * tenant-scoped uniqueness: an MRN is unique per tenant (never reused, deleted or not);
--    an SSN is unique among a tenant's live patients.
--  * soft delete (deleted_at), and *_norm columns in the "C" collation so that
--    case-insensitive prefix search is a B-tree range scan.
--  * codes are JSONB arrays rather than TEXT[], so one statement serves SQLite too.
--  * version is BIGINT and starts at 1 (ETag "1").
CREATE TABLE patients (
    patient_id UUID PRIMARY KEY,
    tenant_id VARCHAR(50) NOT NULL,
    mrn VARCHAR(20) NOT NULL,
    ssn VARCHAR(11),
    first_name VARCHAR(100) NOT NULL,
    middle_name VARCHAR(100),
    last_name VARCHAR(100) NOT NULL,
    first_name_norm VARCHAR(100) COLLATE "C" NOT NULL,
    last_name_norm VARCHAR(100) COLLATE "C" NOT NULL,
    date_of_birth DATE NOT NULL,
    gender VARCHAR(20),
    phone VARCHAR(20),
    email VARCHAR(255),
    email_norm VARCHAR(255) COLLATE "C",
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    created_by VARCHAR(100),
    updated_by VARCHAR(100),
    version BIGINT NOT NULL DEFAULT 1,
    deleted_at TIMESTAMPTZ,
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
    address_id UUID PRIMARY KEY,
    patient_id UUID NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,
    position SMALLINT NOT NULL,
    address_type VARCHAR(20) NOT NULL,
    street_line1 VARCHAR(255) NOT NULL,
    street_line2 VARCHAR(255),
    city VARCHAR(100) NOT NULL,
    state VARCHAR(50) NOT NULL,
    zip_code VARCHAR(10) NOT NULL,
    country VARCHAR(50) NOT NULL DEFAULT 'USA',
    is_primary BOOLEAN NOT NULL DEFAULT FALSE,
    CONSTRAINT chk_address_type CHECK (address_type IN ('HOME', 'WORK', 'BILLING'))
);
CREATE INDEX idx_addresses_patient ON patient_addresses (patient_id, position);

CREATE TABLE patient_insurance (
    insurance_id UUID PRIMARY KEY,
    patient_id UUID NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,
    position SMALLINT NOT NULL,
    policy_number VARCHAR(50) NOT NULL,
    payer_id VARCHAR(50) NOT NULL,
    payer_name VARCHAR(255) NOT NULL,
    group_number VARCHAR(50),
    policy_holder_name VARCHAR(255),
    relationship_to_insured VARCHAR(20),
    effective_date DATE NOT NULL,
    termination_date DATE,
    is_primary BOOLEAN NOT NULL DEFAULT FALSE,
    CONSTRAINT chk_relationship CHECK (relationship_to_insured IN ('SELF', 'SPOUSE', 'CHILD', 'OTHER'))
);
CREATE INDEX idx_insurance_patient ON patient_insurance (patient_id, position);

CREATE TABLE medical_records (
    record_id UUID PRIMARY KEY,
    tenant_id VARCHAR(50) NOT NULL,
    patient_id UUID NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,
    record_type VARCHAR(50) NOT NULL,
    record_date TIMESTAMPTZ NOT NULL,
    provider_id VARCHAR(50) NOT NULL,
    diagnosis_codes JSONB NOT NULL DEFAULT '[]',
    procedure_codes JSONB NOT NULL DEFAULT '[]',
    notes TEXT,
    attachments JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    created_by VARCHAR(100),
    CONSTRAINT chk_record_type CHECK (record_type IN ('VISIT', 'LAB', 'IMAGING', 'PROCEDURE', 'MEDICATION'))
);
CREATE INDEX idx_medical_records_patient ON medical_records (patient_id, record_date DESC, record_id DESC);
CREATE INDEX idx_medical_records_date ON medical_records (record_date DESC);

CREATE TABLE lab_order_requests (
    order_id UUID PRIMARY KEY,
    tenant_id VARCHAR(50) NOT NULL,
    patient_id UUID NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,
    priority VARCHAR(20) NOT NULL,
    ordering_provider_id VARCHAR(50) NOT NULL,
    ordering_provider_name VARCHAR(255) NOT NULL,
    tests JSONB NOT NULL,
    diagnosis_codes JSONB NOT NULL DEFAULT '[]',
    ordered_at TIMESTAMPTZ NOT NULL,
    created_by VARCHAR(100),
    CONSTRAINT chk_priority CHECK (priority IN ('STAT', 'URGENT', 'ROUTINE'))
);
CREATE INDEX idx_lab_order_requests_patient ON lab_order_requests (patient_id, ordered_at DESC);

CREATE TABLE patient_timeline (
    entry_id UUID PRIMARY KEY,
    tenant_id VARCHAR(50) NOT NULL,
    patient_id UUID NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,
    occurred_at TIMESTAMPTZ NOT NULL,
    entry_type VARCHAR(40) NOT NULL,
    details JSONB NOT NULL
);
CREATE INDEX idx_timeline_patient ON patient_timeline (patient_id, occurred_at DESC, entry_id DESC);

-- The last MRN generated for each tenant.
CREATE TABLE mrn_counters (
    tenant_id VARCHAR(50) PRIMARY KEY,
    last_value BIGINT NOT NULL
);
