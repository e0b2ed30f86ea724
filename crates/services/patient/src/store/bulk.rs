//! Bulk loading of synthetic data for benchmarks (`meditrack seed`): many patients with
//! their addresses, insurance and medical records in the caller's transaction, by
//! multi-row INSERTs. SSNs and notes are sealed and SSNs indexed exactly as the API stores them; no
//! events, timeline entries or audit entries are written: this is not a path for real
//! patients.

use super::WriteError;
use super::rows::notes_context;
use super::sql::SqlPatientStore;
use super::statements::{ADDRESS_PARAMS, INSERT_ADDRESS, INSERT_INSURANCE, INSURANCE_PARAMS};
use crate::domain::Patient;
use crate::domain::medical_record::MedicalRecord;
use crate::domain::name::search_key;
use kernel::TenantId;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;
use store::bulk::{placeholders as values, rows_per_statement};
use store::{DbError, Tx, on_tx};

/// The tables [`SqlPatientStore::bulk_load`] fills: a load into them while they are empty
/// sets their indexes aside (`store::DeferredIndexes`).
pub const BULK_TABLES: [&str; 4] = [
    "patients",
    "patient_addresses",
    "patient_insurance",
    "medical_records",
];

impl SqlPatientStore {
    /// Writes `patients` and `records` in `tx`, a transaction of `tenant`'s (the caller
    /// commits it, after as many loads as it likes).
    pub async fn bulk_load(
        &self,
        tx: &mut Tx,
        tenant: &TenantId,
        patients: &[Patient],
        records: &[MedicalRecord],
    ) -> Result<(), WriteError> {
        let rows = rows_per_statement(tx.backend());
        for chunk in patients.chunks(rows) {
            self.patients(tx, chunk).await?;
            addresses(tx, chunk).await?;
            insurance(tx, chunk).await?;
        }
        for chunk in records.chunks(rows) {
            self.records(tx, tenant, chunk).await?;
        }
        Ok(())
    }

    async fn patients(&self, tx: &mut Tx, chunk: &[Patient]) -> Result<(), WriteError> {
        let sql = format!(
            "INSERT INTO patients (patient_id, tenant_id, mrn, ssn_sealed, ssn_index, first_name, middle_name, last_name,
                first_name_norm, last_name_norm, date_of_birth, gender, phone, email, email_norm, created_at, updated_at,
                created_by, updated_by, version) VALUES {}",
            values(tx.backend(), chunk.len(), 20)
        );
        let sealed: Vec<_> = chunk.iter().map(|p| self.stored_ssn(p)).collect();
        on_tx!(tx, |c| {
            let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
            for (p, ssn) in chunk.iter().zip(&sealed) {
                q = q
                    .bind(p.id.as_uuid())
                    .bind(p.tenant.as_str())
                    .bind(p.mrn.as_str())
                    .bind(ssn.sealed.as_deref())
                    .bind(ssn.index.as_deref())
                    .bind(p.name.first())
                    .bind(p.name.middle())
                    .bind(p.name.last())
                    .bind(search_key(p.name.first()))
                    .bind(search_key(p.name.last()))
                    .bind(p.date_of_birth.date())
                    .bind(p.gender.map(|g| g.as_str()))
                    .bind(p.phone.as_ref().map(|x| x.expose()))
                    .bind(p.email.as_ref().map(|x| x.expose()))
                    .bind(p.email.as_ref().map(|x| x.search_key()))
                    .bind(p.created_at)
                    .bind(p.updated_at)
                    .bind(&p.created_by)
                    .bind(&p.updated_by)
                    .bind(p.version);
            }
            q.execute(c).await.map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        Ok(())
    }

    async fn records(
        &self,
        tx: &mut Tx,
        tenant: &TenantId,
        chunk: &[MedicalRecord],
    ) -> Result<(), WriteError> {
        let sql = format!(
            "INSERT INTO medical_records (record_id, tenant_id, patient_id, record_type, record_date, provider_id,
                diagnosis_codes, procedure_codes, notes_sealed, created_at, created_by) VALUES {}",
            values(tx.backend(), chunk.len(), 11)
        );
        let notes: Vec<Option<String>> = chunk
            .iter()
            .map(|r| {
                r.notes.as_ref().map(|n| {
                    self.cipher
                        .seal(tenant.as_str(), &notes_context(r.id.as_uuid()), n.expose())
                })
            })
            .collect();
        on_tx!(tx, |c| {
            let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
            for (r, sealed) in chunk.iter().zip(&notes) {
                q = q
                    .bind(r.id.as_uuid())
                    .bind(tenant.as_str())
                    .bind(r.patient_id.as_uuid())
                    .bind(r.record_type)
                    .bind(r.record_date)
                    .bind(&r.provider_id)
                    .bind(Json(&r.diagnosis_codes))
                    .bind(Json(&r.procedure_codes))
                    .bind(sealed.as_deref())
                    .bind(r.created_at)
                    .bind(&r.created_by);
            }
            q.execute(c).await.map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        Ok(())
    }
}

async fn addresses(tx: &mut Tx, chunk: &[Patient]) -> Result<(), WriteError> {
    let rows: Vec<(&Patient, i16, &crate::domain::Address)> = chunk
        .iter()
        .flat_map(|p| (0_i16..).zip(&p.addresses).map(move |(i, a)| (p, i, a)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "{INSERT_ADDRESS} VALUES {}",
        values(tx.backend(), rows.len(), ADDRESS_PARAMS)
    );
    on_tx!(tx, |c| {
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
        for (p, position, a) in &rows {
            q = bind_address!(q, p.id.as_uuid(), *position, a);
        }
        q.execute(c).await.map(|r| r.rows_affected())
    })
    .map_err(DbError::from)?;
    Ok(())
}

async fn insurance(tx: &mut Tx, chunk: &[Patient]) -> Result<(), WriteError> {
    let rows: Vec<(&Patient, i16, &crate::domain::Insurance)> = chunk
        .iter()
        .flat_map(|p| (0_i16..).zip(&p.insurance).map(move |(i, x)| (p, i, x)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "{INSERT_INSURANCE} VALUES {}",
        values(tx.backend(), rows.len(), INSURANCE_PARAMS)
    );
    on_tx!(tx, |c| {
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
        for (p, position, i) in &rows {
            q = bind_insurance!(q, p.id.as_uuid(), *position, i);
        }
        q.execute(c).await.map(|r| r.rows_affected())
    })
    .map_err(DbError::from)?;
    Ok(())
}
