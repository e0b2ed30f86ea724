//! Bulk loading of synthetic data for benchmarks (`meditrack seed`): many patients with
//! their addresses, insurance and medical records in the caller's transaction, by `COPY` on
//! PostgreSQL and multi-row INSERTs on SQLite. SSNs and notes are sealed and SSNs indexed
//! exactly as the API stores them; no events, timeline entries or audit entries are
//! written: this is not a path for real patients.

use super::WriteError;
use super::sql::SqlPatientStore;
use super::statements::{
    ADDRESS_PARAMS, INSERT_ADDRESS, INSERT_INSURANCE, INSERT_RECORD, INSURANCE_PARAMS,
    RECORD_PARAMS,
};
use crate::domain::Patient;
use crate::domain::medical_record::MedicalRecord;
use crate::domain::name::search_key;
use kernel::TenantId;
use sqlx::AssertSqlSafe;
use store::bulk::{Batch, Bound, placeholders as values, rows_per_statement};
use store::copy_text::{CopyLoad, CopyRows, JsonText};
use store::{Backend, DbError, Tx};

/// The tables [`SqlPatientStore::bulk_write`] fills: a load into them while they are empty
/// sets their indexes aside (`store::DeferredIndexes`).
pub const BULK_TABLES: [&str; 4] = [
    "patients",
    "patient_addresses",
    "patient_insurance",
    "medical_records",
];

const COPY_PATIENTS: &str = "COPY patients (patient_id, tenant_id, mrn, ssn_sealed, ssn_index,
    first_name, middle_name, last_name, first_name_norm, last_name_norm, date_of_birth, gender, phone,
    email, email_norm, created_at, updated_at, created_by, updated_by, version) FROM STDIN";
const COPY_ADDRESSES: &str =
    "COPY patient_addresses (address_id, tenant_id, patient_id, position, address_type,
    street_line1, street_line2, city, state, zip_code, country, is_primary) FROM STDIN";
const COPY_INSURANCE: &str =
    "COPY patient_insurance (insurance_id, tenant_id, patient_id, position,
    policy_number, payer_id, payer_name, group_number, policy_holder_name, relationship_to_insured,
    effective_date, termination_date, is_primary) FROM STDIN";
const COPY_RECORDS: &str = "COPY medical_records (record_id, tenant_id, patient_id, record_type,
    record_date, provider_id, diagnosis_codes, procedure_codes, notes_sealed, created_at, created_by)
    FROM STDIN";

/// A batch of [`SqlPatientStore::bulk_write`]: patients and their medical records, as
/// `COPY` rows on PostgreSQL and bound multi-row INSERTs on SQLite.
pub type BulkBatch = Batch<Bound>;

impl SqlPatientStore {
    /// Prepares `patients` and `records` for [`Self::bulk_write`]: seals and encodes every
    /// row (`COPY` rows on PostgreSQL, bound statements on SQLite), work for a thread other
    /// than the one that writes.
    pub fn bulk_batch(
        &self,
        tenant: &TenantId,
        patients: Vec<Patient>,
        records: Vec<MedicalRecord>,
    ) -> Result<BulkBatch, DbError> {
        Ok(match self.db().backend() {
            Backend::Postgres => Batch::Copy(self.encode_copy(tenant, &patients, &records)),
            Backend::Sqlite => Batch::Rows(self.bind_inserts(tenant, &patients, &records)?),
        })
    }

    /// Writes `batch` in `tx`, a transaction of the batch's tenant (the caller commits it,
    /// after as many batches as it likes).
    pub async fn bulk_write(&self, tx: &mut Tx, batch: BulkBatch) -> Result<(), WriteError> {
        if let Some(statements) = batch.copy_or_rows(tx).await? {
            statements.execute(tx).await?;
        }
        Ok(())
    }

    /// The multi-row INSERTs of `patients` (with their addresses and insurance) and
    /// `records`, for SQLite.
    fn bind_inserts(
        &self,
        tenant: &TenantId,
        patients: &[Patient],
        records: &[MedicalRecord],
    ) -> Result<Bound, DbError> {
        let mut bound = Bound::default();
        let rows = rows_per_statement(Backend::Sqlite);
        for chunk in patients.chunks(rows) {
            self.bind_patients(&mut bound, chunk)?;
            bind_addresses(&mut bound, chunk)?;
            bind_insurance(&mut bound, chunk)?;
        }
        for chunk in records.chunks(rows) {
            self.bind_records(&mut bound, tenant, chunk)?;
        }
        Ok(bound)
    }

    /// The `COPY` rows of `patients` and `records`, one statement per table.
    fn encode_copy(
        &self,
        tenant: &TenantId,
        patients: &[Patient],
        records: &[MedicalRecord],
    ) -> CopyLoad {
        let mut people = CopyRows::with_capacity(patients.len() * 400);
        let mut places = CopyRows::with_capacity(patients.len() * 150);
        let mut cover = CopyRows::with_capacity(patients.len() * 150);
        for p in patients {
            let ssn = self.stored_ssn(p);
            people
                .value(p.id.as_uuid())
                .value(p.tenant.as_str())
                .value(p.mrn.as_str())
                .value(ssn.sealed.as_ref())
                .value(ssn.index.as_ref())
                .value(p.name.first())
                .value(p.name.middle())
                .value(p.name.last())
                .value(search_key(p.name.first()).as_str())
                .value(search_key(p.name.last()).as_str())
                .value(p.date_of_birth.date())
                .value(p.gender.map(|g| g.as_str()))
                .value(p.phone.as_ref().map(|x| x.expose()))
                .value(p.email.as_ref().map(|x| x.expose()))
                .value(p.email.as_ref().map(|x| x.search_key()).as_ref())
                .value(p.created_at)
                .value(p.updated_at)
                .value(&p.created_by)
                .value(&p.updated_by)
                .value(p.version)
                .end_row();
            for (position, a) in (0_i16..).zip(&p.addresses) {
                places
                    .value(uuid::Uuid::now_v7())
                    .value(p.tenant.as_str())
                    .value(p.id.as_uuid())
                    .value(position)
                    .value(a.address_type())
                    .value(a.street_line1())
                    .value(a.street_line2())
                    .value(a.city())
                    .value(a.state())
                    .value(a.zip_code())
                    .value(a.country())
                    .value(a.is_primary())
                    .end_row();
            }
            for (position, i) in (0_i16..).zip(&p.insurance) {
                cover
                    .value(uuid::Uuid::now_v7())
                    .value(p.tenant.as_str())
                    .value(p.id.as_uuid())
                    .value(position)
                    .value(i.policy_number())
                    .value(i.payer_id())
                    .value(i.payer_name())
                    .value(i.group_number())
                    .value(i.policy_holder_name())
                    .value(i.relationship_to_insured())
                    .value(i.effective_date())
                    .value(i.termination_date())
                    .value(i.is_primary())
                    .end_row();
            }
        }
        let mut visits = CopyRows::with_capacity(records.len() * 300);
        for r in records {
            let notes = self.stored_notes(tenant, r);
            visits
                .value(r.id.as_uuid())
                .value(tenant.as_str())
                .value(r.patient_id.as_uuid())
                .value(r.record_type)
                .value(r.record_date)
                .value(&r.provider_id)
                .value(JsonText(&r.diagnosis_codes))
                .value(JsonText(&r.procedure_codes))
                .value(notes.as_ref())
                .value(r.created_at)
                .value(&r.created_by)
                .end_row();
        }
        CopyLoad::new([
            (people, COPY_PATIENTS),
            (places, COPY_ADDRESSES),
            (cover, COPY_INSURANCE),
            (visits, COPY_RECORDS),
        ])
    }

    fn bind_patients(&self, bound: &mut Bound, chunk: &[Patient]) -> Result<(), DbError> {
        let sql = format!(
            "INSERT INTO patients (patient_id, tenant_id, mrn, ssn_sealed, ssn_index, first_name, middle_name, last_name,
                first_name_norm, last_name_norm, date_of_birth, gender, phone, email, email_norm, created_at, updated_at,
                created_by, updated_by, version) VALUES {}",
            values(Backend::Sqlite, chunk.len(), 20)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
        for p in chunk {
            let ssn = self.stored_ssn(p);
            q = q
                .bind(p.id.as_uuid())
                .bind(p.tenant.as_str())
                .bind(p.mrn.as_str())
                .bind(ssn.sealed)
                .bind(ssn.index)
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
        bound.push(sql.clone(), q)
    }

    fn bind_records(
        &self,
        bound: &mut Bound,
        tenant: &TenantId,
        chunk: &[MedicalRecord],
    ) -> Result<(), DbError> {
        let sql = format!(
            "{INSERT_RECORD} VALUES {}",
            values(Backend::Sqlite, chunk.len(), RECORD_PARAMS)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
        for r in chunk {
            q = bind_record!(q, tenant.as_str(), r, self.stored_notes(tenant, r));
        }
        bound.push(sql.clone(), q)
    }
}

fn bind_addresses(bound: &mut Bound, chunk: &[Patient]) -> Result<(), DbError> {
    let rows: Vec<(&Patient, i16, &crate::domain::Address)> = chunk
        .iter()
        .flat_map(|p| (0_i16..).zip(&p.addresses).map(move |(i, a)| (p, i, a)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "{INSERT_ADDRESS} VALUES {}",
        values(Backend::Sqlite, rows.len(), ADDRESS_PARAMS)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
    for (p, position, a) in &rows {
        q = bind_address!(q, p.tenant.as_str(), p.id.as_uuid(), *position, a);
    }
    bound.push(sql.clone(), q)
}

fn bind_insurance(bound: &mut Bound, chunk: &[Patient]) -> Result<(), DbError> {
    let rows: Vec<(&Patient, i16, &crate::domain::Insurance)> = chunk
        .iter()
        .flat_map(|p| (0_i16..).zip(&p.insurance).map(move |(i, x)| (p, i, x)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "{INSERT_INSURANCE} VALUES {}",
        values(Backend::Sqlite, rows.len(), INSURANCE_PARAMS)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
    for (p, position, i) in &rows {
        q = bind_insurance!(q, p.tenant.as_str(), p.id.as_uuid(), *position, i);
    }
    bound.push(sql.clone(), q)
}
