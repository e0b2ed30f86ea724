//! Rows as both backends return them, and their way back into domain types.
//!
//! Values were checked when written; a row that no longer parses means the database was
//! changed behind our back, which is reported as a broken invariant, never shown.

use crate::domain::address::Address;
use crate::domain::identifiers::DateOfBirth;
use crate::domain::insurance::Insurance;
use crate::domain::lab_order::{LabOrder, LabOrderRequest, OrderedTest, PRIORITIES};
use crate::domain::medical_record::{MedicalRecord, RECORD_TYPES};
use crate::domain::timeline::{TimelineEntry, TimelineEvent};
use crate::domain::{Email, Gender, Mrn, Patient, PersonName, Phone, Ssn};
use crate::store::PatientSummary;
use auth::sealing::FieldCipher;
use chrono::{DateTime, NaiveDate, Utc};
use kernel::ids::{LabOrderId, MedicalRecordId, PatientId, TimelineEntryId};
use kernel::{Sensitive, TenantId};
use sqlx::types::Json;
use store::{Backend, DbError};
use uuid::Uuid;

fn broken(what: &'static str) -> DbError {
    DbError::Invariant(what)
}

/// Where a sealed SSN belongs: it opens only in its own row.
pub fn ssn_context(patient: Uuid) -> String {
    format!("patients.ssn/{patient}")
}

pub fn notes_context(record: Uuid) -> String {
    format!("medical_records.notes/{record}")
}

#[derive(Debug, sqlx::FromRow)]
pub struct PatientRow {
    patient_id: Uuid,
    tenant_id: String,
    mrn: String,
    ssn_sealed: Option<String>,
    first_name: String,
    middle_name: Option<String>,
    last_name: String,
    date_of_birth: NaiveDate,
    gender: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    created_by: Option<String>,
    updated_by: Option<String>,
}

pub const PATIENT_COLUMNS: &str = "patient_id, tenant_id, mrn, ssn_sealed, first_name, middle_name, last_name, date_of_birth, gender, phone, email, version, created_at, updated_at, created_by, updated_by";

impl PatientRow {
    pub fn id(&self) -> Uuid {
        self.patient_id
    }

    pub fn into_patient(
        self,
        cipher: &FieldCipher,
        addresses: Vec<Address>,
        insurance: Vec<Insurance>,
    ) -> Result<Patient, DbError> {
        Ok(Patient {
            id: PatientId::from_uuid(self.patient_id),
            tenant: TenantId::parse(&self.tenant_id).map_err(|_| broken("stored tenant id"))?,
            mrn: Mrn::parse(&self.mrn).map_err(|_| broken("stored MRN"))?,
            ssn: self
                .ssn_sealed
                .as_deref()
                .map(|sealed| {
                    let plain = cipher
                        .open(&self.tenant_id, &ssn_context(self.patient_id), sealed)
                        .map_err(|_| broken("a sealed SSN does not open with the keyring"))?;
                    Ssn::parse(&plain).map_err(|_| broken("stored SSN"))
                })
                .transpose()?,
            name: PersonName::parse(
                Some(&self.first_name),
                self.middle_name.as_deref(),
                Some(&self.last_name),
            )
            .map_err(|_| broken("stored name"))?,
            date_of_birth: DateOfBirth::from_storage(self.date_of_birth),
            gender: self
                .gender
                .as_deref()
                .map(Gender::parse)
                .transpose()
                .map_err(|_| broken("stored gender"))?,
            phone: self
                .phone
                .as_deref()
                .map(Phone::parse)
                .transpose()
                .map_err(|_| broken("stored phone"))?,
            email: self
                .email
                .as_deref()
                .map(Email::parse)
                .transpose()
                .map_err(|_| broken("stored email"))?,
            addresses,
            insurance,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: self.created_by.unwrap_or_default(),
            updated_by: self.updated_by.unwrap_or_default(),
        })
    }

    pub fn into_summary(self) -> PatientSummary {
        PatientSummary {
            id: PatientId::from_uuid(self.patient_id),
            mrn: self.mrn,
            first_name: self.first_name,
            middle_name: self.middle_name,
            last_name: self.last_name,
            date_of_birth: self.date_of_birth,
            gender: self.gender,
            phone: self.phone,
            email: self.email,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A patient with its addresses and insurance, read in one statement
/// ([`patient_with_lists`]): the lists arrive as JSON arrays the database built.
#[derive(Debug, sqlx::FromRow)]
pub struct PatientWithListsRow {
    #[sqlx(flatten)]
    patient: PatientRow,
    addresses: String,
    insurance: String,
}

impl PatientWithListsRow {
    /// The row of a direct read on SQLite ([`store::SqliteDb::read_direct`]), its columns
    /// in the order [`patient_with_lists`] selects them.
    pub fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            patient: PatientRow {
                patient_id: r.get(0)?,
                tenant_id: r.get(1)?,
                mrn: r.get(2)?,
                ssn_sealed: r.get(3)?,
                first_name: r.get(4)?,
                middle_name: r.get(5)?,
                last_name: r.get(6)?,
                date_of_birth: r.get(7)?,
                gender: r.get(8)?,
                phone: r.get(9)?,
                email: r.get(10)?,
                version: r.get(11)?,
                created_at: store::direct_read::at(r, 12)?,
                updated_at: store::direct_read::at(r, 13)?,
                created_by: r.get(14)?,
                updated_by: r.get(15)?,
            },
            addresses: r.get(16)?,
            insurance: r.get(17)?,
        })
    }

    pub fn into_patient(self, cipher: &FieldCipher) -> Result<Patient, DbError> {
        let (addresses, insurance) = lists(&self.addresses, &self.insurance)?;
        self.patient.into_patient(cipher, addresses, insurance)
    }
}

/// A patient's addresses and insurance from the JSON arrays [`patient_with_lists`] reads,
/// each in `position` order.
fn lists(addresses: &str, insurance: &str) -> Result<(Vec<Address>, Vec<Insurance>), DbError> {
    let mut addresses: Vec<AddressRow> =
        serde_json::from_str(addresses).map_err(|_| broken("stored addresses"))?;
    let mut insurance: Vec<InsuranceRow> =
        serde_json::from_str(insurance).map_err(|_| broken("stored insurance"))?;
    addresses.sort_by_key(|a| a.position);
    insurance.sort_by_key(|i| i.position);
    Ok((
        addresses.into_iter().map(Into::into).collect(),
        insurance.into_iter().map(Into::into).collect(),
    ))
}

/// `SELECT` of a patient's columns and of its addresses and insurance as JSON arrays, each
/// element with its `position`, from `patients` filtered by `filter`: one statement
/// instead of three. The lists are put in order once parsed
/// ([`PatientWithListsRow::into_patient`]): on SQLite an aggregate's `ORDER BY` builds a
/// temporary b-tree, with a page cache of its own, for each list of each read (3 % of the
/// hub's CPU under GET patient).
pub fn patient_with_lists(backend: Backend, filter: &str) -> String {
    let list = |columns: &str, table: &str| {
        let pairs: Vec<String> = columns
            .split(", ")
            .chain(["position"])
            .map(|c| format!("'{c}', {c}"))
            .collect();
        let pairs = pairs.join(", ");
        match backend {
            // Over no rows json_group_array gives `[]`, json_agg NULL.
            Backend::Sqlite => format!(
                "(SELECT json_group_array(json_object({pairs})) FROM {table} WHERE {table}.patient_id = patients.patient_id)"
            ),
            Backend::Postgres => format!(
                "(SELECT COALESCE(json_agg(json_build_object({pairs})), '[]')::text FROM {table} WHERE {table}.patient_id = patients.patient_id)"
            ),
        }
    };
    format!(
        "SELECT {PATIENT_COLUMNS}, {} AS addresses, {} AS insurance FROM patients WHERE {filter}",
        list(ADDRESS_COLUMNS, "patient_addresses"),
        list(INSURANCE_COLUMNS, "patient_insurance"),
    )
}

/// A boolean column inside JSON the database built: SQLite stores booleans as 0 and 1.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }
    Ok(match <Flag as serde::Deserialize>::deserialize(d)? {
        Flag::Bool(b) => b,
        Flag::Int(i) => i != 0,
    })
}

#[derive(Debug, sqlx::FromRow, serde::Deserialize)]
pub struct AddressRow {
    address_type: String,
    street_line1: String,
    street_line2: Option<String>,
    city: String,
    state: String,
    zip_code: String,
    country: String,
    #[serde(deserialize_with = "flag")]
    is_primary: bool,
    #[sqlx(default)]
    position: i32,
}

pub const ADDRESS_COLUMNS: &str =
    "address_type, street_line1, street_line2, city, state, zip_code, country, is_primary";

impl From<AddressRow> for Address {
    fn from(r: AddressRow) -> Self {
        Address::from_storage(
            &r.address_type,
            r.street_line1,
            r.street_line2,
            r.city,
            r.state,
            r.zip_code,
            r.country,
            r.is_primary,
        )
    }
}

#[derive(Debug, sqlx::FromRow, serde::Deserialize)]
pub struct InsuranceRow {
    policy_number: String,
    payer_id: String,
    payer_name: String,
    group_number: Option<String>,
    policy_holder_name: Option<String>,
    relationship_to_insured: Option<String>,
    effective_date: NaiveDate,
    termination_date: Option<NaiveDate>,
    #[serde(deserialize_with = "flag")]
    is_primary: bool,
    #[sqlx(default)]
    position: i32,
}

pub const INSURANCE_COLUMNS: &str = "policy_number, payer_id, payer_name, group_number, policy_holder_name, relationship_to_insured, effective_date, termination_date, is_primary";

impl From<InsuranceRow> for Insurance {
    fn from(r: InsuranceRow) -> Self {
        Insurance {
            policy_number: r.policy_number,
            payer_id: r.payer_id,
            payer_name: r.payer_name,
            group_number: r.group_number,
            policy_holder_name: r.policy_holder_name,
            relationship_to_insured: Insurance::relationship_from_storage(
                r.relationship_to_insured.as_deref(),
            ),
            effective_date: r.effective_date,
            termination_date: r.termination_date,
            is_primary: r.is_primary,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct MedicalRecordRow {
    record_id: Uuid,
    patient_id: Uuid,
    record_type: String,
    record_date: DateTime<Utc>,
    provider_id: String,
    diagnosis_codes: Json<Vec<String>>,
    procedure_codes: Json<Vec<String>>,
    notes_sealed: Option<String>,
    created_at: DateTime<Utc>,
    created_by: Option<String>,
}

pub const MEDICAL_RECORD_COLUMNS: &str = "record_id, patient_id, record_type, record_date, provider_id, diagnosis_codes, procedure_codes, notes_sealed, created_at, created_by";

impl MedicalRecordRow {
    pub fn into_record(
        self,
        tenant: &TenantId,
        cipher: &FieldCipher,
    ) -> Result<MedicalRecord, DbError> {
        let r = self;
        let notes = match &r.notes_sealed {
            None => None,
            Some(sealed) => Some(Sensitive::new(
                cipher
                    .open(tenant.as_str(), &notes_context(r.record_id), sealed)
                    .map_err(|_| broken("sealed notes do not open with the keyring"))?,
            )),
        };
        Ok(MedicalRecord {
            id: MedicalRecordId::from_uuid(r.record_id),
            patient_id: PatientId::from_uuid(r.patient_id),
            record_type: RECORD_TYPES
                .iter()
                .find(|t| **t == r.record_type)
                .copied()
                .ok_or(broken("stored record type"))?,
            record_date: r.record_date,
            provider_id: r.provider_id,
            diagnosis_codes: r.diagnosis_codes.0,
            procedure_codes: r.procedure_codes.0,
            notes,
            created_at: r.created_at,
            created_by: r.created_by.unwrap_or_default(),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct TimelineRow {
    entry_id: Uuid,
    patient_id: Uuid,
    occurred_at: DateTime<Utc>,
    details: Json<TimelineEvent>,
}

pub const TIMELINE_COLUMNS: &str = "entry_id, patient_id, occurred_at, details";

impl From<TimelineRow> for TimelineEntry {
    fn from(r: TimelineRow) -> Self {
        TimelineEntry {
            id: TimelineEntryId::from_uuid(r.entry_id),
            patient_id: PatientId::from_uuid(r.patient_id),
            occurred_at: r.occurred_at,
            event: r.details.0,
        }
    }
}

/// A test of a lab order, as stored in `lab_order_requests.tests`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredTest {
    pub test_code: String,
    pub test_name: String,
    pub loinc_code: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct LabOrderRow {
    order_id: Uuid,
    patient_id: Uuid,
    priority: String,
    ordering_provider_id: String,
    ordering_provider_name: String,
    tests: Json<Vec<StoredTest>>,
    diagnosis_codes: Json<Vec<String>>,
    ordered_at: DateTime<Utc>,
}

pub const LAB_ORDER_COLUMNS: &str = "order_id, patient_id, priority, ordering_provider_id, ordering_provider_name, tests, diagnosis_codes, ordered_at";

impl TryFrom<LabOrderRow> for LabOrder {
    type Error = DbError;

    fn try_from(r: LabOrderRow) -> Result<Self, DbError> {
        Ok(LabOrder {
            id: LabOrderId::from_uuid(r.order_id),
            patient_id: PatientId::from_uuid(r.patient_id),
            request: LabOrderRequest {
                tests: r
                    .tests
                    .0
                    .into_iter()
                    .map(|t| OrderedTest {
                        test_code: t.test_code,
                        test_name: t.test_name,
                        loinc_code: t.loinc_code,
                    })
                    .collect(),
                priority: PRIORITIES
                    .iter()
                    .find(|p| **p == r.priority)
                    .copied()
                    .ok_or(broken("stored priority"))?,
                ordering_provider_id: r.ordering_provider_id,
                ordering_provider_name: r.ordering_provider_name,
                diagnosis_codes: r.diagnosis_codes.0,
            },
            ordered_at: r.ordered_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct IdempotencyRow {
    pub operation: String,
    pub request_digest: String,
    pub resource_id: Uuid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_insurance_come_in_position_order_whatever_order_the_json_has() {
        let address = |city: &str, position: i32| {
            format!(
                r#"{{"address_type":"HOME","street_line1":"1 Main St","street_line2":null,"city":"{city}","state":"MA","zip_code":"02101","country":"US","is_primary":0,"position":{position}}}"#
            )
        };
        let policy = |number: &str, position: i32| {
            format!(
                r#"{{"policy_number":"{number}","payer_id":"P1","payer_name":"Payer","group_number":null,"policy_holder_name":null,"relationship_to_insured":null,"effective_date":"2024-01-01","termination_date":null,"is_primary":1,"position":{position}}}"#
            )
        };
        let (addresses, insurance) = lists(
            &format!(
                "[{},{},{}]",
                address("C", 2),
                address("A", 0),
                address("B", 1)
            ),
            &format!("[{},{}]", policy("second", 1), policy("first", 0)),
        )
        .unwrap();
        let cities: Vec<&str> = addresses.iter().map(|a| a.city.as_str()).collect();
        assert_eq!(cities, ["A", "B", "C"]);
        let numbers: Vec<&str> = insurance.iter().map(|i| i.policy_number.as_str()).collect();
        assert_eq!(numbers, ["first", "second"]);
    }
}
