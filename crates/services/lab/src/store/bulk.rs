//! Bulk loading of synthetic data for benchmarks (`meditrack seed`): the lab's record of
//! seeded patients and their orders, in the caller's transaction. No events or audit
//! entries are written: this is not a path for real orders.

use super::{SqlLabStore, WriteError, insert_order};
use crate::domain::LabOrder;
use chrono::{DateTime, Utc};
use kernel::TenantId;
use kernel::ids::PatientId;
use sqlx::AssertSqlSafe;
use store::bulk::{placeholders, rows_per_statement};
use store::{DbError, Tx, on_tx};

/// The tables [`SqlLabStore::bulk_load`] fills: a load into them while they are empty sets
/// their indexes aside (`store::DeferredIndexes`).
pub const BULK_TABLES: [&str; 5] = [
    "lab_patients",
    "lab_orders",
    "lab_tests",
    "lab_results",
    "specimens",
];

impl SqlLabStore {
    /// The lab learns of `patients` (id and MRN), as `patient.created.v1` would have told
    /// it, and holds `orders` as placed (with whatever results they carry), in `tx`, a
    /// transaction of `tenant`'s that the caller commits.
    pub async fn bulk_load(
        tx: &mut Tx,
        tenant: &TenantId,
        patients: &[(PatientId, String)],
        orders: &[LabOrder],
        at: DateTime<Utc>,
    ) -> Result<(), WriteError> {
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
        for o in orders {
            insert_order(tx, o).await?;
        }
        Ok(())
    }
}
