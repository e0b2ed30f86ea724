//! Rows as both backends return them, and their way back into the aggregate. Values were
//! checked when written; one that no longer parses means the database was changed behind
//! our back: a broken invariant, never shown.

use crate::domain::{
    AbnormalFlag, LabOrder, LabTest, OrderStatus, Priority, ResultRevision, Specimen, SpecimenType,
    TestStatus,
};
use chrono::{DateTime, Utc};
use kernel::TenantId;
use kernel::ids::{LabOrderId, PatientId};
use sqlx::types::Json;
use store::DbError;
use store::direct_read::{at, maybe_at};
use uuid::Uuid;

fn broken(what: &'static str) -> DbError {
    DbError::Invariant(what)
}

pub const ORDER_COLUMNS: &str = "order_id, tenant_id, patient_id, mrn, ordering_provider_id, ordering_provider_name, priority, status, diagnosis_codes, ordered_at, collected_at, received_at, reported_at, cancelled_at, cancel_reason, awaiting_preauthorization, preauthorization, filler_order, placer_order, version, updated_at";

#[derive(Debug, sqlx::FromRow)]
pub struct OrderRow {
    pub order_id: Uuid,
    tenant_id: String,
    patient_id: Uuid,
    mrn: Option<String>,
    ordering_provider_id: String,
    ordering_provider_name: String,
    priority: String,
    status: String,
    diagnosis_codes: Json<Vec<String>>,
    ordered_at: DateTime<Utc>,
    collected_at: Option<DateTime<Utc>>,
    received_at: Option<DateTime<Utc>>,
    reported_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    cancel_reason: Option<String>,
    awaiting_preauthorization: bool,
    preauthorization: Option<String>,
    filler_order: Option<String>,
    placer_order: Option<String>,
    version: i64,
    updated_at: DateTime<Utc>,
}

pub const TEST_COLUMNS: &str = "test_id, order_id, test_code, test_name, loinc_code, status";

#[derive(Debug, sqlx::FromRow, serde::Deserialize)]
pub struct TestRow {
    test_id: Uuid,
    pub order_id: Uuid,
    test_code: String,
    test_name: String,
    loinc_code: Option<String>,
    status: String,
}

pub const RESULT_COLUMNS: &str = "result_id, test_id, result_value, result_unit, reference_range, abnormal_flag, performed_by, performed_at, recorded_at, verified_by, verified_at, correction, critical_flag";

#[derive(Debug, sqlx::FromRow, serde::Deserialize)]
pub struct ResultRow {
    result_id: Uuid,
    pub test_id: Uuid,
    result_value: String,
    result_unit: Option<String>,
    reference_range: Option<String>,
    abnormal_flag: Option<String>,
    performed_by: String,
    performed_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    verified_by: Option<String>,
    verified_at: Option<DateTime<Utc>>,
    correction: bool,
    critical_flag: Option<String>,
}

pub const SPECIMEN_COLUMNS: &str =
    "specimen_id, order_id, specimen_type, collected_at, collected_by, received_at, condition";

#[derive(Debug, sqlx::FromRow, serde::Deserialize)]
pub struct SpecimenRow {
    specimen_id: Uuid,
    pub order_id: Uuid,
    specimen_type: String,
    collected_at: DateTime<Utc>,
    collected_by: String,
    received_at: Option<DateTime<Utc>>,
    condition: Option<String>,
}

/// An order's row with its children's rows as JSON arrays, read in one statement on
/// PostgreSQL ([`super::sql::ORDER_WITH_CHILDREN`]).
#[derive(Debug, sqlx::FromRow)]
pub struct OrderWithChildrenRow {
    #[sqlx(flatten)]
    pub order: OrderRow,
    tests: String,
    results: String,
    specimens: String,
}

impl OrderWithChildrenRow {
    pub fn into_order(self) -> Result<LabOrder, DbError> {
        let tests = parse_list("stored tests", &self.tests)?;
        let results = parse_list("stored results", &self.results)?;
        let specimens = parse_list("stored specimens", &self.specimens)?;
        assemble(self.order, tests, results, specimens)
    }
}

fn parse_list<T: serde::de::DeserializeOwned>(
    what: &'static str,
    json: &str,
) -> Result<Vec<T>, DbError> {
    serde_json::from_str(json).map_err(|_| broken(what))
}

/// Rows of direct reads on SQLite ([`store::SqliteDb::snapshot`]), their columns in the
/// order the `*_COLUMNS` constants list them.
impl OrderRow {
    pub fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let codes: String = r.get(8)?;
        let codes = serde_json::from_str(&codes).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, Box::new(e))
        })?;
        Ok(Self {
            order_id: r.get(0)?,
            tenant_id: r.get(1)?,
            patient_id: r.get(2)?,
            mrn: r.get(3)?,
            ordering_provider_id: r.get(4)?,
            ordering_provider_name: r.get(5)?,
            priority: r.get(6)?,
            status: r.get(7)?,
            diagnosis_codes: Json(codes),
            ordered_at: at(r, 9)?,
            collected_at: maybe_at(r, 10)?,
            received_at: maybe_at(r, 11)?,
            reported_at: maybe_at(r, 12)?,
            cancelled_at: maybe_at(r, 13)?,
            cancel_reason: r.get(14)?,
            awaiting_preauthorization: r.get(15)?,
            preauthorization: r.get(16)?,
            filler_order: r.get(17)?,
            placer_order: r.get(18)?,
            version: r.get(19)?,
            updated_at: at(r, 20)?,
        })
    }
}

impl TestRow {
    pub fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            test_id: r.get(0)?,
            order_id: r.get(1)?,
            test_code: r.get(2)?,
            test_name: r.get(3)?,
            loinc_code: r.get(4)?,
            status: r.get(5)?,
        })
    }
}

impl ResultRow {
    pub fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            result_id: r.get(0)?,
            test_id: r.get(1)?,
            result_value: r.get(2)?,
            result_unit: r.get(3)?,
            reference_range: r.get(4)?,
            abnormal_flag: r.get(5)?,
            performed_by: r.get(6)?,
            performed_at: at(r, 7)?,
            recorded_at: at(r, 8)?,
            verified_by: r.get(9)?,
            verified_at: maybe_at(r, 10)?,
            correction: r.get(11)?,
            critical_flag: r.get(12)?,
        })
    }
}

impl SpecimenRow {
    pub fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            specimen_id: r.get(0)?,
            order_id: r.get(1)?,
            specimen_type: r.get(2)?,
            collected_at: at(r, 3)?,
            collected_by: r.get(4)?,
            received_at: maybe_at(r, 5)?,
            condition: r.get(6)?,
        })
    }
}

impl TestRow {
    pub fn id(&self) -> Uuid {
        self.test_id
    }
}

fn flag(s: Option<String>) -> Result<Option<AbnormalFlag>, DbError> {
    s.map(|f| AbnormalFlag::parse(&f).ok_or_else(|| broken("an unknown abnormal flag")))
        .transpose()
}

impl ResultRow {
    fn into_revision(self) -> Result<ResultRevision, DbError> {
        Ok(ResultRevision {
            id: self.result_id,
            value: self.result_value,
            unit: self.result_unit,
            reference_range: self.reference_range,
            abnormal_flag: flag(self.abnormal_flag)?,
            performed_by: self.performed_by,
            performed_at: self.performed_at,
            recorded_at: self.recorded_at,
            verified_by: self.verified_by,
            verified_at: self.verified_at,
            correction: self.correction,
            critical: flag(self.critical_flag)?,
        })
    }
}

impl SpecimenRow {
    fn into_specimen(self) -> Result<Specimen, DbError> {
        Ok(Specimen {
            id: self.specimen_id,
            specimen_type: SpecimenType::parse(&self.specimen_type)
                .ok_or_else(|| broken("an unknown specimen type"))?,
            collected_at: self.collected_at,
            collected_by: self.collected_by,
            received_at: self.received_at,
            condition: self.condition,
        })
    }
}

/// An order from its row and its children's rows (in their stored order).
pub fn assemble(
    o: OrderRow,
    tests: Vec<TestRow>,
    results: Vec<ResultRow>,
    specimens: Vec<SpecimenRow>,
) -> Result<LabOrder, DbError> {
    let mut results = results;
    let tests = tests
        .into_iter()
        .map(|t| {
            let (mine, rest): (Vec<ResultRow>, Vec<ResultRow>) =
                results.drain(..).partition(|r| r.test_id == t.test_id);
            results = rest;
            Ok(LabTest {
                id: t.test_id,
                test_code: t.test_code,
                test_name: t.test_name,
                loinc_code: t.loinc_code,
                status: TestStatus::parse(&t.status)
                    .ok_or_else(|| broken("an unknown test status"))?,
                results: mine
                    .into_iter()
                    .map(ResultRow::into_revision)
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(LabOrder {
        id: LabOrderId::from_uuid(o.order_id),
        tenant: TenantId::parse(&o.tenant_id).map_err(|_| broken("a bad tenant id"))?,
        patient_id: PatientId::from_uuid(o.patient_id),
        mrn: o.mrn,
        ordering_provider_id: o.ordering_provider_id,
        ordering_provider_name: o.ordering_provider_name,
        priority: Priority::parse(&o.priority).ok_or_else(|| broken("an unknown priority"))?,
        status: OrderStatus::parse(&o.status).ok_or_else(|| broken("an unknown status"))?,
        tests,
        diagnosis_codes: o.diagnosis_codes.0,
        specimens: specimens
            .into_iter()
            .map(SpecimenRow::into_specimen)
            .collect::<Result<_, _>>()?,
        ordered_at: o.ordered_at,
        collected_at: o.collected_at,
        received_at: o.received_at,
        reported_at: o.reported_at,
        cancelled_at: o.cancelled_at,
        cancel_reason: o.cancel_reason,
        awaiting_preauthorization: o.awaiting_preauthorization,
        preauthorization: o.preauthorization,
        filler_order: o.filler_order,
        placer_order: o.placer_order,
        version: o.version,
        updated_at: o.updated_at,
    })
}
