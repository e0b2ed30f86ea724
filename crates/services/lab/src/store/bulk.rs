//! Bulk loading of synthetic data for benchmarks (`meditrack seed`): the lab's record of
//! seeded patients and their orders, in one transaction per batch. No events or audit
//! entries are written: this is not a path for real orders.

use super::{SqlLabStore, WriteError, insert_order};
use crate::domain::LabOrder;
use chrono::{DateTime, Utc};
use kernel::TenantId;
use kernel::ids::PatientId;
use sqlx::AssertSqlSafe;
use store::bulk::{placeholders, rows_per_statement};
use store::{DbError, Scope, on_tx};

impl SqlLabStore {
    /// The lab learns of `patients` (id and MRN), as `patient.created.v1` would have told
    /// it, and holds `orders` as placed (with whatever results they carry).
    pub async fn bulk_load(
        &self,
        tenant: &TenantId,
        patients: &[(PatientId, String)],
        orders: &[LabOrder],
        at: DateTime<Utc>,
    ) -> Result<(), WriteError> {
        let mut tx = self.db().begin_in(Scope::Tenant(tenant)).await?;
        for chunk in patients.chunks(rows_per_statement(self.db().backend())) {
            let sql = format!(
                "INSERT INTO lab_patients (tenant_id, patient_id, mrn, registered_at) VALUES {}",
                placeholders(tx.backend(), chunk.len(), 4)
            );
            on_tx!(&mut tx, |c| {
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
            insert_order(&mut tx, o).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
