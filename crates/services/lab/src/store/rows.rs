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

#[derive(Debug, sqlx::FromRow)]
pub struct TestRow {
    test_id: Uuid,
    pub order_id: Uuid,
    test_code: String,
    test_name: String,
    loinc_code: Option<String>,
    status: String,
}

pub const RESULT_COLUMNS: &str = "result_id, test_id, result_value, result_unit, reference_range, abnormal_flag, performed_by, performed_at, recorded_at, verified_by, verified_at, correction, critical_flag";

#[derive(Debug, sqlx::FromRow)]
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

#[derive(Debug, sqlx::FromRow)]
pub struct SpecimenRow {
    specimen_id: Uuid,
    pub order_id: Uuid,
    specimen_type: String,
    collected_at: DateTime<Utc>,
    collected_by: String,
    received_at: Option<DateTime<Utc>>,
    condition: Option<String>,
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
