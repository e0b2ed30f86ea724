//! Bulk loading of synthetic data for benchmarks (`meditrack seed`): the lab's record of
//! seeded patients and their orders, in the caller's transaction. No events or audit
//! entries are written: this is not a path for real orders.

use super::sql::child_writes;
use super::{SqlLabStore, WriteError, insert_order};
use crate::domain::LabOrder;
use chrono::{DateTime, Utc};
use kernel::TenantId;
use kernel::ids::PatientId;
use sqlx::AssertSqlSafe;
use store::bulk::{Batch, placeholders, rows_per_statement};
use store::copy_text::{CopyLoad, CopyRows, JsonText};
use store::{Backend, DbError, Tx, on_tx};

/// The tables [`SqlLabStore::bulk_write`] fills: a load into them while they are empty sets
/// their indexes aside (`store::DeferredIndexes`).
pub const BULK_TABLES: [&str; 5] = [
    "lab_patients",
    "lab_orders",
    "lab_tests",
    "lab_results",
    "specimens",
];

/// A batch of [`SqlLabStore::bulk_write`]: patients (id and MRN) and orders.
pub type BulkBatch = Batch<(Vec<(PatientId, String)>, Vec<LabOrder>)>;

impl SqlLabStore {
    /// Prepares what the lab learns of `patients` (id and MRN), as `patient.created.v1`
    /// would have told it, and `orders` as placed (with whatever results they carry), for
    /// [`Self::bulk_write`] on `backend`: on PostgreSQL this encodes every row, work for a
    /// thread other than the one that writes.
    pub fn bulk_batch(
        backend: Backend,
        tenant: &TenantId,
        patients: Vec<(PatientId, String)>,
        orders: Vec<LabOrder>,
        at: DateTime<Utc>,
    ) -> BulkBatch {
        Batch::prepare(backend, (patients, orders), |(p, o)| {
            encode_copy(tenant, p, o, at)
        })
    }

    /// Writes `batch` in `tx`, a transaction of `tenant`'s that the caller commits.
    pub async fn bulk_write(
        tx: &mut Tx,
        tenant: &TenantId,
        batch: BulkBatch,
        at: DateTime<Utc>,
    ) -> Result<(), WriteError> {
        let Some((patients, orders)) = batch.copy_or_rows(tx).await? else {
            return Ok(());
        };
        for chunk in patients.chunks(rows_per_statement(tx.backend())) {
            let sql = format!(
                "INSERT INTO lab_patients (tenant_id, patient_id, mrn, registered_at) VALUES {}",
                placeholders(tx.backend(), chunk.len(), 4)
            );
            on_tx!(&mut *tx, |c| {
                let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
                for (id, mrn) in chunk {
                    q = q
                        .bind(tenant.as_str())
                        .bind(id.as_uuid())
                        .bind(mrn)
                        .bind(at);
                }
                q.execute(c).await.map(|r| r.rows_affected())
            })
            .map_err(DbError::from)?;
        }
        for o in &orders {
            insert_order(tx, o).await?;
        }
        Ok(())
    }
}

const COPY_PATIENTS: &str =
    "COPY lab_patients (tenant_id, patient_id, mrn, registered_at) FROM STDIN";
const COPY_ORDERS: &str = "COPY lab_orders (status, collected_at, received_at, reported_at,
    cancelled_at, cancel_reason, awaiting_preauthorization, preauthorization, filler_order, version,
    updated_at, tenant_id, order_id, priority, priority_rank, patient_id, mrn, ordering_provider_id,
    ordering_provider_name, diagnosis_codes, ordered_at, placer_order) FROM STDIN";
const COPY_TESTS: &str = "COPY lab_tests (test_id, tenant_id, order_id, position, test_code,
    test_name, loinc_code, status) FROM STDIN";
const COPY_RESULTS: &str = "COPY lab_results (result_id, tenant_id, test_id, order_id, revision,
    result_value, result_unit, reference_range, abnormal_flag, performed_by, performed_at,
    recorded_at, verified_by, verified_at, correction, critical_flag) FROM STDIN";
const COPY_SPECIMENS: &str = "COPY specimens (specimen_id, tenant_id, order_id, specimen_type,
    collected_at, collected_by, received_at, condition) FROM STDIN";

/// The `COPY` rows of the lab's share, one statement per table instead of a few
/// statements per order.
fn encode_copy(
    tenant: &TenantId,
    patients: &[(PatientId, String)],
    orders: &[LabOrder],
    at: DateTime<Utc>,
) -> CopyLoad {
    let tenant = tenant.as_str();
    let mut known = CopyRows::with_capacity(patients.len() * 80);
    for (id, mrn) in patients {
        known
            .value(tenant)
            .value(id.as_uuid())
            .value(mrn)
            .value(at)
            .end_row();
    }
    let mut placed = CopyRows::with_capacity(orders.len() * 300);
    let mut tests = CopyRows::with_capacity(orders.len() * 120);
    let mut results = CopyRows::with_capacity(orders.len() * 200);
    let mut specimens = CopyRows::default();
    for o in orders {
        placed
            .value(o.status.as_str())
            .value(o.collected_at)
            .value(o.received_at)
            .value(o.reported_at)
            .value(o.cancelled_at)
            .value(o.cancel_reason.as_ref())
            .value(o.awaiting_preauthorization)
            .value(o.preauthorization.as_ref())
            .value(o.filler_order.as_ref())
            .value(o.version)
            .value(o.updated_at)
            .value(tenant)
            .value(o.id.as_uuid())
            .value(o.priority.as_str())
            .value(o.priority.rank())
            .value(o.patient_id.as_uuid())
            .value(o.mrn.as_ref())
            .value(&o.ordering_provider_id)
            .value(&o.ordering_provider_name)
            .value(JsonText(&o.diagnosis_codes))
            .value(o.ordered_at)
            .value(o.placer_order.as_ref())
            .end_row();
        let writes = child_writes(o, None);
        for (position, t) in writes.tests {
            tests
                .value(t.id)
                .value(tenant)
                .value(o.id.as_uuid())
                .value(position)
                .value(&t.test_code)
                .value(&t.test_name)
                .value(t.loinc_code.as_ref())
                .value(t.status.as_str())
                .end_row();
        }
        for (t, revision, r) in writes.results {
            results
                .value(r.id)
                .value(tenant)
                .value(t.id)
                .value(o.id.as_uuid())
                .value(revision)
                .value(&r.value)
                .value(r.unit.as_ref())
                .value(r.reference_range.as_ref())
                .value(r.abnormal_flag.map(|f| f.as_str()))
                .value(&r.performed_by)
                .value(r.performed_at)
                .value(r.recorded_at)
                .value(r.verified_by.as_ref())
                .value(r.verified_at)
                .value(r.correction)
                .value(r.critical.map(|f| f.as_str()))
                .end_row();
        }
        for sp in writes.specimens {
            specimens
                .value(sp.id)
                .value(tenant)
                .value(o.id.as_uuid())
                .value(sp.specimen_type.as_str())
                .value(sp.collected_at)
                .value(&sp.collected_by)
                .value(sp.received_at)
                .value(sp.condition.as_ref())
                .end_row();
        }
    }
    CopyLoad::new([
        (known, COPY_PATIENTS),
        (placed, COPY_ORDERS),
        (tests, COPY_TESTS),
        (results, COPY_RESULTS),
        (specimens, COPY_SPECIMENS),
    ])
}
