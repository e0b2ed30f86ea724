//! The INSERTs of a patient's rows, up to `VALUES`, shared by the sqlx path (one statement
//! for a whole registration on PostgreSQL), the seed's bulk load and the direct SQLite
//! registration; and the binding of an address, an insurance row and a medical record for
//! sqlx.

/// Binds one address row of patient `$id` of `$tenant` at `$position`, in [`INSERT_ADDRESS`]'s order.
macro_rules! bind_address {
    ($query:expr, $tenant:expr, $id:expr, $position:expr, $a:expr) => {
        $query
            .bind(uuid::Uuid::now_v7())
            .bind($tenant)
            .bind($id)
            .bind($position)
            .bind($a.address_type())
            .bind($a.street_line1())
            .bind($a.street_line2())
            .bind($a.city())
            .bind($a.state())
            .bind($a.zip_code())
            .bind($a.country())
            .bind($a.is_primary())
    };
}

/// Binds one insurance row of patient `$id` of `$tenant` at `$position`, in [`INSERT_INSURANCE`]'s order.
macro_rules! bind_insurance {
    ($query:expr, $tenant:expr, $id:expr, $position:expr, $i:expr) => {
        $query
            .bind(uuid::Uuid::now_v7())
            .bind($tenant)
            .bind($id)
            .bind($position)
            .bind($i.policy_number())
            .bind($i.payer_id())
            .bind($i.payer_name())
            .bind($i.group_number())
            .bind($i.policy_holder_name())
            .bind($i.relationship_to_insured())
            .bind($i.effective_date())
            .bind($i.termination_date())
            .bind($i.is_primary())
    };
}

/// Binds medical record `$r` of `$tenant`, its notes as stored (`$notes`), in
/// [`INSERT_RECORD`]'s order.
macro_rules! bind_record {
    ($query:expr, $tenant:expr, $r:expr, $notes:expr) => {
        $query
            .bind($r.id.as_uuid())
            .bind($tenant)
            .bind($r.patient_id.as_uuid())
            .bind($r.record_type)
            .bind($r.record_date)
            .bind(&$r.provider_id)
            .bind(sqlx::types::Json(&$r.diagnosis_codes))
            .bind(sqlx::types::Json(&$r.procedure_codes))
            .bind($notes)
            .bind($r.created_at)
            .bind(&$r.created_by)
    };
}

pub(super) const INSERT_PATIENT: &str =
    "INSERT INTO patients (ssn_sealed, ssn_index, first_name, middle_name, last_name,
    first_name_norm, last_name_norm, date_of_birth, gender, phone, email, email_norm,
    patient_id, tenant_id, mrn, created_at, updated_at, created_by, updated_by, version)";
pub(super) const PATIENT_PARAMS: usize = 20;

pub(super) const INSERT_ADDRESS: &str =
    "INSERT INTO patient_addresses (address_id, tenant_id, patient_id, position, address_type,
    street_line1, street_line2, city, state, zip_code, country, is_primary)";
pub(super) const ADDRESS_PARAMS: usize = 12;

pub(super) const INSERT_INSURANCE: &str =
    "INSERT INTO patient_insurance (insurance_id, tenant_id, patient_id, position, policy_number,
    payer_id, payer_name, group_number, policy_holder_name, relationship_to_insured, effective_date,
    termination_date, is_primary)";
pub(super) const INSURANCE_PARAMS: usize = 13;

pub(super) const INSERT_RECORD: &str =
    "INSERT INTO medical_records (record_id, tenant_id, patient_id, record_type, record_date,
    provider_id, diagnosis_codes, procedure_codes, notes_sealed, created_at, created_by)";
pub(super) const RECORD_PARAMS: usize = 11;

pub(super) const INSERT_TIMELINE: &str = "INSERT INTO patient_timeline (entry_id, tenant_id, patient_id, occurred_at, entry_type, details)";
pub(super) const TIMELINE_PARAMS: usize = 6;

pub(super) const INSERT_IDEMPOTENCY: &str =
    "INSERT INTO idempotency_keys (tenant_id, idempotency_key, operation,
    request_digest, resource_id, created_at)";
pub(super) const IDEMPOTENCY_PARAMS: usize = 6;

/// `insert` with `rows` rows of `columns` parameters, numbered `?1`, `?2`, ... (SQLite).
pub(super) fn numbered(insert: &str, rows: usize, columns: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns)
                .map(|c| format!("?{}", r * columns + c))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect();
    format!("{insert} VALUES {}", values.join(", "))
}
