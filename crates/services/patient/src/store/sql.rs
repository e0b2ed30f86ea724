//! The patient store over SQLite or PostgreSQL. Each statement is written once and runs on
//! both (see the `store` crate); the migrations carry the dialect differences.

use super::mrn_blocks::{self, MrnBlocks};
use super::rows::*;
use super::search::{After, Bind, SearchStatement};
use super::statements::{
    ADDRESS_PARAMS, IDEMPOTENCY_PARAMS, INSERT_ADDRESS, INSERT_IDEMPOTENCY, INSERT_INSURANCE,
    INSERT_PATIENT, INSERT_RECORD, INSERT_TIMELINE, INSURANCE_PARAMS, PATIENT_PARAMS,
    RECORD_PARAMS, TIMELINE_PARAMS,
};
use super::{
    Change, IdempotencyRecord, MRN_ATTEMPTS, OwnedIdempotencyRecord, PatientStore, PatientSummary,
    ReadError, Registration, SearchCriteria, UsedIdempotencyKey, Write, WriteError, registration,
};
use crate::domain::lab_order::LabOrder;
use crate::domain::medical_record::MedicalRecord;
use crate::domain::name::search_key;
use crate::domain::timeline::TimelineEntry;
use crate::domain::{Mrn, Patient, Ssn};
use auth::sealing::FieldCipher;
use chrono::{DateTime, Utc};
use kernel::TenantId;
use kernel::ids::{LabOrderId, MedicalRecordId, PatientId, TimelineEntryId};
use kernel::paging::{Page, PageRequest};
use rusqlite::OptionalExtension;
use sqlx::AssertSqlSafe;
use sqlx::types::Json;
use std::sync::Arc;
use store::{
    Backend, Db, DbError, Scope, Tx, bulk, execute, on_read, on_tenant_read, on_tx, outbox,
};
use uuid::Uuid;

/// Binds the search parameters in order, on whichever backend's query `$query` is.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut q = $query;
        for b in $binds {
            q = match b {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::Date(d) => q.bind(*d),
                Bind::Uuid(u) => q.bind(*u),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}

/// Binds, as `$1` to `$12`, the columns a patient's demographics fill: the same for a
/// registration and an update.
macro_rules! bind_demographics {
    ($query:expr, $p:expr, $ssn:expr) => {
        $query
            .bind($ssn.sealed)
            .bind($ssn.index)
            .bind($p.name.first())
            .bind($p.name.middle())
            .bind($p.name.last())
            .bind(search_key($p.name.first()))
            .bind(search_key($p.name.last()))
            .bind($p.date_of_birth.date())
            .bind($p.gender.map(|g| g.as_str()))
            .bind($p.phone.as_ref().map(|x| x.expose()))
            .bind($p.email.as_ref().map(|x| x.expose()))
            .bind($p.email.as_ref().map(|x| x.search_key()))
    };
}

/// Binds the parameters of `p`'s address rows, in [`INSERT_ADDRESS`]'s order.
macro_rules! bind_addresses {
    ($query:expr, $p:expr) => {{
        let mut q = $query;
        for (position, a) in (0_i16..).zip(&$p.addresses) {
            q = bind_address!(q, $p.tenant.as_str(), $p.id.as_uuid(), position, a);
        }
        q
    }};
}

/// Binds the parameters of `p`'s insurance rows, in [`INSERT_INSURANCE`]'s order.
macro_rules! bind_insurances {
    ($query:expr, $p:expr) => {{
        let mut q = $query;
        for (position, i) in (0_i16..).zip(&$p.insurance) {
            q = bind_insurance!(q, $p.tenant.as_str(), $p.id.as_uuid(), position, i);
        }
        q
    }};
}

/// Binds the parameters of timeline entry `e` of `tenant`, in [`INSERT_TIMELINE`]'s order.
macro_rules! bind_timeline {
    ($query:expr, $tenant:expr, $e:expr) => {
        $query
            .bind($e.id.as_uuid())
            .bind($tenant)
            .bind($e.patient_id.as_uuid())
            .bind($e.occurred_at)
            .bind($e.event.kind())
            .bind(Json(&$e.event))
    };
}

/// Binds the parameters of idempotency record `k` of `tenant`, in [`INSERT_IDEMPOTENCY`]'s
/// order.
macro_rules! bind_idempotency {
    ($query:expr, $tenant:expr, $k:expr) => {
        $query
            .bind($tenant)
            .bind($k.key)
            .bind($k.operation)
            .bind($k.request_digest)
            .bind($k.resource_id)
            .bind(Utc::now())
    };
}

#[derive(Debug, Clone)]
pub struct SqlPatientStore {
    db: Db,
    pub(super) cipher: Arc<FieldCipher>,
    mrns: MrnBlocks,
}

/// A patient's SSN as stored: sealed, and its blind index.
#[derive(Debug, Default)]
pub(super) struct StoredSsn {
    pub(super) sealed: Option<String>,
    pub(super) index: Option<String>,
}

impl SqlPatientStore {
    pub fn new(db: Db, cipher: Arc<FieldCipher>) -> Self {
        Self {
            db,
            cipher,
            mrns: MrnBlocks::default(),
        }
    }

    /// A registration's rows on PostgreSQL, as one statement ([`insert_registration`]).
    async fn write_registration(
        &self,
        r: &Registration,
        idempotency: Option<IdempotencyRecord<'_>>,
    ) -> Result<(), WriteError> {
        let Db::Postgres(pool) = &self.db else {
            return Err(WriteError::Db(DbError::Invariant(
                "a registration statement for PostgreSQL on another backend",
            )));
        };
        insert_registration(pool, r, self.stored_ssn(&r.patient), idempotency).await
    }

    /// Gives back the generated MRNs this store reserved and did not hand out, for a
    /// process that stops (`mrn_blocks.rs`); how many tenants' counters were moved back.
    pub async fn give_back_mrns(&self) -> Result<usize, DbError> {
        self.mrns.give_back(&self.db).await
    }

    pub(super) fn stored_ssn(&self, p: &Patient) -> StoredSsn {
        seal_ssn(&self.cipher, p)
    }

    /// A record's notes as stored: sealed to its row.
    pub(super) fn stored_notes(&self, tenant: &TenantId, r: &MedicalRecord) -> Option<String> {
        r.notes.as_ref().map(|n| {
            self.cipher
                .seal(tenant.as_str(), &notes_context(r.id.as_uuid()), n.expose())
        })
    }

    fn ssn_index(&self, tenant: &TenantId, ssn: &Ssn) -> String {
        ssn_index(&self.cipher, tenant, ssn)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// A patient's SSN as stored: sealed to its row, and its blind index.
pub(super) fn seal_ssn(cipher: &FieldCipher, p: &Patient) -> StoredSsn {
    let Some(ssn) = &p.ssn else {
        return StoredSsn::default();
    };
    StoredSsn {
        sealed: Some(cipher.seal(
            p.tenant.as_str(),
            &ssn_context(p.id.as_uuid()),
            ssn.expose(),
        )),
        index: Some(ssn_index(cipher, &p.tenant, ssn)),
    }
}

fn ssn_index(cipher: &FieldCipher, tenant: &TenantId, ssn: &Ssn) -> String {
    cipher.blind_index(tenant.as_str(), "ssn", ssn.expose())
}

/// Unique indexes, by PostgreSQL name and by the columns SQLite reports.
fn translate(e: DbError) -> WriteError {
    match e.unique_violation() {
        Some(v) if v.is("idx_patients_mrn", "patients.tenant_id, patients.mrn") => {
            WriteError::DuplicateMrn
        }
        Some(v)
            if v.is(
                "idx_patients_ssn_index",
                "patients.tenant_id, patients.ssn_index",
            ) =>
        {
            WriteError::DuplicateSsn
        }
        Some(v)
            if v.is(
                "idempotency_keys_pkey",
                "idempotency_keys.tenant_id, idempotency_keys.idempotency_key",
            ) =>
        {
            WriteError::IdempotencyKeyTaken
        }
        _ => WriteError::Db(e),
    }
}

fn db<E: Into<DbError>>(e: E) -> WriteError {
    translate(e.into())
}

impl PatientStore for SqlPatientStore {
    async fn write(&self, w: Write<'_>) -> Result<(), WriteError> {
        let mut tx = self.db.begin_in(Scope::Tenant(w.tenant)).await?;
        match w.change {
            Change::Update {
                patient: p,
                expected_version,
            } => {
                let ssn = self.stored_ssn(p);
                let n = execute!(
                    &mut tx,
                    bind_demographics!(
                        sqlx::query(
                        "UPDATE patients SET ssn_sealed = $1, ssn_index = $2, first_name = $3, middle_name = $4,
                            last_name = $5, first_name_norm = $6, last_name_norm = $7, date_of_birth = $8, gender = $9,
                            phone = $10, email = $11, email_norm = $12, version = $13, updated_at = $14, updated_by = $15
                         WHERE tenant_id = $16 AND patient_id = $17 AND version = $18 AND deleted_at IS NULL",
                        ),
                        p,
                        ssn
                    )
                    .bind(p.version)
                    .bind(p.updated_at)
                    .bind(&p.updated_by)
                    .bind(w.tenant.as_str())
                    .bind(p.id.as_uuid())
                    .bind(expected_version)
                )
                .map_err(db)?;
                if n == 0 {
                    return Err(missing_or_conflict(&mut tx, w.tenant, p.id).await);
                }
                for table in ["patient_addresses", "patient_insurance"] {
                    let sql = format!("DELETE FROM {table} WHERE patient_id = $1");
                    execute!(
                        &mut tx,
                        sqlx::query(AssertSqlSafe(sql.as_str())).bind(p.id.as_uuid())
                    )
                    .map_err(db)?;
                }
                insert_children(&mut tx, p).await?;
            }
            Change::Delete {
                id,
                expected_version,
                at,
            } => {
                let n = execute!(
                    &mut tx,
                    sqlx::query(
                        "UPDATE patients SET deleted_at = $1, version = version + 1, updated_at = $1, updated_by = $2
                         WHERE tenant_id = $3 AND patient_id = $4 AND version = $5 AND deleted_at IS NULL",
                    )
                    .bind(at)
                    .bind(w.actor)
                    .bind(w.tenant.as_str())
                    .bind(id.as_uuid())
                    .bind(expected_version)
                )
                .map_err(db)?;
                if n == 0 {
                    return Err(missing_or_conflict(&mut tx, w.tenant, id).await);
                }
            }
            Change::AddMedicalRecord(r) => {
                require_live(&mut tx, w.tenant, r.patient_id).await?;
                let notes = self.stored_notes(w.tenant, r);
                insert_medical_record(&mut tx, w.tenant, r, notes).await?;
            }
            Change::OrderLabs(o) => {
                require_live(&mut tx, w.tenant, o.patient_id).await?;
                insert_lab_order(&mut tx, w.tenant, w.actor, o).await?;
            }
            Change::Touch(id) => require_live(&mut tx, w.tenant, id).await?,
        }
        insert_timeline(&mut tx, w.tenant, w.timeline).await?;
        outbox::append(&mut tx, w.events).await?;
        if let Some(k) = &w.idempotency {
            let sql = format!(
                "{INSERT_IDEMPOTENCY} VALUES {}",
                bulk::placeholders(tx.backend(), 1, IDEMPOTENCY_PARAMS)
            );
            execute!(
                &mut tx,
                bind_idempotency!(
                    sqlx::query(AssertSqlSafe(sql.as_str())),
                    w.tenant.as_str(),
                    k
                )
            )
            .map_err(db)?;
        }
        tx.commit().await.map_err(translate)
    }

    async fn register<B>(
        &self,
        tenant: &TenantId,
        mrn: Option<Mrn>,
        build: B,
        idempotency: Option<OwnedIdempotencyRecord>,
    ) -> Result<Patient, WriteError>
    where
        B: Fn(Mrn) -> Registration + Send + Sync + 'static,
    {
        if let Db::Sqlite(db) = &self.db {
            let (cipher, tenant) = (self.cipher.clone(), tenant.clone());
            return db
                .write_direct(move |tx| {
                    registration::register(
                        tx,
                        &cipher,
                        &tenant,
                        mrn.as_ref(),
                        &build,
                        idempotency.as_ref(),
                    )
                })
                .await
                .map_err(translate)?
                .ok_or(WriteError::DuplicateMrn);
        }
        let attempts = if mrn.is_some() { 1 } else { MRN_ATTEMPTS };
        for _ in 0..attempts {
            let r = build(match &mrn {
                Some(m) => m.clone(),
                None => self.next_mrn(tenant).await?,
            });
            let written = self
                .write_registration(
                    &r,
                    idempotency.as_ref().map(OwnedIdempotencyRecord::borrowed),
                )
                .await;
            match written {
                Ok(()) => return Ok(r.patient),
                Err(WriteError::DuplicateMrn) if mrn.is_none() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(WriteError::DuplicateMrn)
    }

    async fn next_mrn(&self, tenant: &TenantId) -> Result<Mrn, DbError> {
        if let Db::Postgres(_) = &self.db {
            return Ok(Mrn::generated(self.mrns.next(&self.db, tenant).await?));
        }
        // On SQLite a registration takes its MRN inside its own write (`registration.rs`);
        // this serves the store's callers that ask for one alone.
        Ok(Mrn::generated(
            mrn_blocks::advance(&self.db, tenant, 1).await?,
        ))
    }

    async fn patient(&self, tenant: &TenantId, id: PatientId) -> Result<Option<Patient>, DbError> {
        const BY_ID: &str = "tenant_id = $1 AND patient_id = $2 AND deleted_at IS NULL";
        if let Db::Sqlite(db) = &self.db {
            // The read every GET of a patient makes, by key: see `store::direct_read`.
            static SQL: std::sync::LazyLock<String> =
                std::sync::LazyLock::new(|| patient_with_lists(Backend::Sqlite, BY_ID));
            let row = db.read_direct(|c| {
                c.prepare_cached(&SQL)?
                    .query_row(
                        rusqlite::params![tenant.as_str(), id.as_uuid()],
                        PatientWithListsRow::from_sqlite,
                    )
                    .optional()
            })?;
            return row.map(|r| r.into_patient(&self.cipher)).transpose();
        }
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| patient_with_lists(Backend::Postgres, BY_ID));
        let row: Option<PatientWithListsRow> = self.by_id(tenant, &SQL, id.as_uuid()).await?;
        row.map(|r| r.into_patient(&self.cipher)).transpose()
    }

    async fn patient_by_ssn(
        &self,
        tenant: &TenantId,
        ssn: &Ssn,
    ) -> Result<Option<Patient>, DbError> {
        let sql = patient_with_lists(
            self.db.backend(),
            "tenant_id = $1 AND ssn_index = $2 AND deleted_at IS NULL",
        );
        let index = self.ssn_index(tenant, ssn);
        let row: Option<PatientWithListsRow> = on_tenant_read!(&self.db, &sql, 1, |c, sql| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(tenant.as_str())
                .bind(index.as_str())
                .fetch_optional(c)
                .await
        })
        .await?;
        row.map(|r| r.into_patient(&self.cipher)).transpose()
    }

    async fn patient_exists(&self, tenant: &TenantId, id: PatientId) -> Result<bool, DbError> {
        let mut tx = self.read(tenant).await?;
        let found: Option<i32> = on_tx!(&mut tx, |c| {
            sqlx::query_scalar("SELECT 1 FROM patients WHERE tenant_id = $1 AND patient_id = $2 AND deleted_at IS NULL")
                .bind(tenant.as_str())
                .bind(id.as_uuid())
                .fetch_optional(c)
                .await
        })?;
        tx.commit().await?;
        Ok(found.is_some())
    }

    async fn search(
        &self,
        tenant: &TenantId,
        criteria: &SearchCriteria,
        page: &PageRequest,
    ) -> Result<Page<PatientSummary>, ReadError> {
        let after = page.position::<Uuid>().map_err(|_| ReadError::BadCursor)?;
        let mut tx = self.read(tenant).await?;
        let after = match after {
            None => None,
            Some(id) => {
                // The cursor names the last patient shown, not its name: cursors travel in URLs.
                let keys: Option<(String, String)> = on_tx!(&mut tx, |c| {
                    sqlx::query_as("SELECT last_name_norm, first_name_norm FROM patients WHERE tenant_id = $1 AND patient_id = $2")
                        .bind(tenant.as_str())
                        .bind(id)
                        .fetch_optional(c)
                        .await
                })
                .map_err(DbError::from)?;
                let (last_name_norm, first_name_norm) = keys.ok_or(ReadError::BadCursor)?;
                Some(After {
                    last_name_norm,
                    first_name_norm,
                    id,
                })
            }
        };
        let statement = SearchStatement::build(tenant, criteria, after, page.fetch_limit());
        let rows: Vec<PatientRow> = on_tx!(&mut tx, |c| {
            bind_all!(
                sqlx::query_as(AssertSqlSafe(statement.sql.as_str())),
                &statement.binds
            )
            .fetch_all(c)
            .await
        })
        .map_err(DbError::from)?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, PatientRow::id).map(PatientRow::into_summary))
    }

    async fn medical_records(
        &self,
        tenant: &TenantId,
        patient: PatientId,
        page: &PageRequest,
    ) -> Result<Page<MedicalRecord>, ReadError> {
        let rows: Vec<MedicalRecordRow> = self
            .newest_first(
                &format!("SELECT {MEDICAL_RECORD_COLUMNS} FROM medical_records WHERE tenant_id = $1 AND patient_id = $2"),
                ("record_date", "record_id"),
                tenant,
                patient,
                page,
            )
            .await?;
        let records = rows
            .into_iter()
            .map(|r| r.into_record(tenant, &self.cipher))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(records, page, |r| {
            (r.record_date, r.id.as_uuid())
        }))
    }

    async fn timeline(
        &self,
        tenant: &TenantId,
        patient: PatientId,
        page: &PageRequest,
    ) -> Result<Page<TimelineEntry>, ReadError> {
        let rows: Vec<TimelineRow> = self
            .newest_first(
                &format!("SELECT {TIMELINE_COLUMNS} FROM patient_timeline WHERE tenant_id = $1 AND patient_id = $2"),
                ("occurred_at", "entry_id"),
                tenant,
                patient,
                page,
            )
            .await?;
        let entries: Vec<TimelineEntry> = rows.into_iter().map(Into::into).collect();
        Ok(Page::from_rows(entries, page, |e| {
            (e.occurred_at, e.id.as_uuid())
        }))
    }

    async fn used_idempotency_key(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<UsedIdempotencyKey>, DbError> {
        let mut tx = self.read(tenant).await?;
        let row: Option<IdempotencyRow> = on_tx!(&mut tx, |c| {
            sqlx::query_as(
                "SELECT operation, request_digest, resource_id FROM idempotency_keys WHERE tenant_id = $1 AND idempotency_key = $2",
            )
            .bind(tenant.as_str())
            .bind(key)
            .fetch_optional(c)
            .await
        })?;
        tx.commit().await?;
        Ok(row.map(|r| UsedIdempotencyKey {
            operation: r.operation,
            request_digest: r.request_digest,
            resource_id: r.resource_id,
        }))
    }

    async fn medical_record(
        &self,
        tenant: &TenantId,
        id: MedicalRecordId,
    ) -> Result<Option<MedicalRecord>, DbError> {
        let sql = format!(
            "SELECT {MEDICAL_RECORD_COLUMNS} FROM medical_records WHERE tenant_id = $1 AND record_id = $2"
        );
        let row: Option<MedicalRecordRow> = self.by_id(tenant, &sql, id.as_uuid()).await?;
        row.map(|r| r.into_record(tenant, &self.cipher)).transpose()
    }

    async fn lab_order(
        &self,
        tenant: &TenantId,
        id: LabOrderId,
    ) -> Result<Option<LabOrder>, DbError> {
        let sql = format!(
            "SELECT {LAB_ORDER_COLUMNS} FROM lab_order_requests WHERE tenant_id = $1 AND order_id = $2"
        );
        let row: Option<LabOrderRow> = self.by_id(tenant, &sql, id.as_uuid()).await?;
        row.map(LabOrder::try_from).transpose()
    }

    async fn timeline_entry(
        &self,
        tenant: &TenantId,
        id: TimelineEntryId,
    ) -> Result<Option<TimelineEntry>, DbError> {
        let sql = format!(
            "SELECT {TIMELINE_COLUMNS} FROM patient_timeline WHERE tenant_id = $1 AND entry_id = $2"
        );
        let row: Option<TimelineRow> = self.by_id(tenant, &sql, id.as_uuid()).await?;
        Ok(row.map(Into::into))
    }
}

/// Rows of both backends, for the generic readers below.
trait AnyRow:
    for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
    + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
    + Send
    + Unpin
{
}

impl<R> AnyRow for R where
    R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin
{
}

impl SqlPatientStore {
    /// A read-only transaction over `tenant`'s rows: on PostgreSQL, row-level security
    /// shows it nothing else.
    async fn read(&self, tenant: &TenantId) -> Result<Tx, DbError> {
        self.db.read_in(Scope::Tenant(tenant)).await
    }

    /// The row `select` finds, given the tenant as `$1` and an id as `$2`.
    async fn by_id<R: AnyRow>(
        &self,
        tenant: &TenantId,
        select: &str,
        id: Uuid,
    ) -> Result<Option<R>, DbError> {
        on_tenant_read!(&self.db, select, 1, |c, sql| {
            sqlx::query_as::<_, R>(AssertSqlSafe(sql))
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(c)
                .await
        })
        .await
    }

    /// One page of a patient's rows ordered by `(time, id)` descending; the cursor holds the
    /// `(time, id)` of the last row shown.
    async fn newest_first<R: AnyRow>(
        &self,
        select: &str,
        (time, id): (&str, &str),
        tenant: &TenantId,
        patient: PatientId,
        page: &PageRequest,
    ) -> Result<Vec<R>, ReadError> {
        let after = page
            .position::<(DateTime<Utc>, Uuid)>()
            .map_err(|_| ReadError::BadCursor)?;
        let order = format!("ORDER BY {time} DESC, {id} DESC");
        let sql = match after {
            None => format!("{select} {order} LIMIT $3"),
            Some(_) => format!("{select} AND ({time}, {id}) < ($4, $5) {order} LIMIT $3"),
        };
        let (at, last) = after.map_or((None, None), |(t, i)| (Some(t), Some(i)));
        let rows = on_read!(&self.db, Scope::Tenant(tenant), |c| {
            let mut q = sqlx::query_as::<_, R>(AssertSqlSafe(sql.as_str()))
                .bind(tenant.as_str())
                .bind(patient.as_uuid())
                .bind(page.fetch_limit());
            if let (Some(at), Some(last)) = (at, last) {
                q = q.bind(at).bind(last);
            }
            q.fetch_all(c).await
        })
        .await?;
        Ok(rows)
    }
}

impl SqlPatientStore {
    /// The query plan of a search (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL), to
    /// check that searches stay index-backed.
    pub async fn search_plan(
        &self,
        tenant: &TenantId,
        criteria: &SearchCriteria,
    ) -> Result<String, DbError> {
        let statement = SearchStatement::build(tenant, criteria, None, 21);
        self.plan_of(tenant, &statement.sql, &statement.binds).await
    }

    /// The query plan of the check that a consumer's batch of `patients` entries names only
    /// patients of `tenant` (see [`append_external_entries`]).
    pub async fn known_patients_plan(
        &self,
        tenant: &TenantId,
        patients: usize,
    ) -> Result<String, DbError> {
        let sql = known_patients_sql(self.db.backend(), patients);
        let mut binds = vec![Bind::Text(tenant.as_str().to_owned())];
        binds.extend((0..patients).map(|_| Bind::Uuid(Uuid::now_v7())));
        self.plan_of(tenant, &sql, &binds).await
    }

    async fn plan_of(
        &self,
        tenant: &TenantId,
        sql: &str,
        binds: &[Bind],
    ) -> Result<String, DbError> {
        // In a tenant's transaction, so that the plan includes the row-level security filter.
        let mut tx = self.read(tenant).await?;
        let lines: Vec<String> = match &mut tx {
            Tx::Sqlite(c) => {
                let sql = format!("EXPLAIN QUERY PLAN {sql}");
                let rows: Vec<(i64, i64, i64, String)> =
                    bind_all!(sqlx::query_as(AssertSqlSafe(sql.as_str())), binds)
                        .fetch_all(c.conn())
                        .await?;
                rows.into_iter().map(|r| r.3).collect()
            }
            Tx::Postgres(c) => {
                let sql = format!("EXPLAIN {sql}");
                let rows: Vec<(String,)> =
                    bind_all!(sqlx::query_as(AssertSqlSafe(sql.as_str())), binds)
                        .fetch_all(&mut **c)
                        .await?;
                rows.into_iter().map(|r| r.0).collect()
            }
        };
        tx.commit().await?;
        Ok(lines.join("\n"))
    }
}

async fn missing_or_conflict(tx: &mut Tx, tenant: &TenantId, id: PatientId) -> WriteError {
    let version: Result<Option<i64>, sqlx::Error> = on_tx!(tx, |c| {
        sqlx::query_scalar("SELECT version FROM patients WHERE tenant_id = $1 AND patient_id = $2 AND deleted_at IS NULL")
            .bind(tenant.as_str())
            .bind(id.as_uuid())
            .fetch_optional(c)
            .await
    });
    match version {
        Ok(Some(_)) => WriteError::VersionConflict,
        Ok(None) => WriteError::NotFound,
        Err(e) => db(e),
    }
}

/// The patient is live, and stays so until `tx` ends: on PostgreSQL the row is share-locked,
/// so a deletion or update in flight is waited for and the row checked again after it (a
/// plain read would see the old row, and a lab order could land on a deleted patient).
/// Commands on one patient that only add things do not block each other. SQLite needs no
/// lock: `BEGIN IMMEDIATE` already serializes writers.
async fn require_live(tx: &mut Tx, tenant: &TenantId, id: PatientId) -> Result<(), WriteError> {
    const LIVE: &str =
        "SELECT 1 FROM patients WHERE tenant_id = $1 AND patient_id = $2 AND deleted_at IS NULL";
    let sql = match tx {
        Tx::Postgres(_) => format!("{LIVE} FOR SHARE"),
        Tx::Sqlite(_) => LIVE.to_owned(),
    };
    let found: Option<i32> = on_tx!(tx, |c| {
        sqlx::query_scalar(AssertSqlSafe(sql.as_str()))
            .bind(tenant.as_str())
            .bind(id.as_uuid())
            .fetch_optional(c)
            .await
    })
    .map_err(db)?;
    found.map(|_| ()).ok_or(WriteError::NotFound)
}

/// A registration on PostgreSQL as one statement, committed on its own: the patient, its
/// addresses, insurance, timeline entry, events and idempotency key, each an INSERT of
/// one `WITH`, in the patient's tenant, which the statement sets itself
/// ([`store::tenant_read::insert_in_tenant`]). A transaction of its own took five round
/// trips: `BEGIN` with the tenant, a statement for the patient's rows, one each for
/// addresses and insurance, and `COMMIT`.
async fn insert_registration(
    pool: &sqlx::PgPool,
    r: &Registration,
    ssn: StoredSsn,
    idempotency: Option<IdempotencyRecord<'_>>,
) -> Result<(), WriteError> {
    let p = &r.patient;
    let mut next = 1;
    // The VALUES of `rows` rows of `cols` parameters each, numbered on from the last; in
    // the order the parameters are bound below.
    let mut values = |rows: usize, cols: usize| {
        let v = bulk::placeholders_from(Backend::Postgres, next, rows, cols);
        next += rows * cols;
        v
    };
    let mut inserts = vec![
        (INSERT_PATIENT, values(1, PATIENT_PARAMS)),
        (INSERT_TIMELINE, values(1, TIMELINE_PARAMS)),
    ];
    if !p.addresses.is_empty() {
        inserts.push((INSERT_ADDRESS, values(p.addresses.len(), ADDRESS_PARAMS)));
    }
    if !p.insurance.is_empty() {
        inserts.push((
            INSERT_INSURANCE,
            values(p.insurance.len(), INSURANCE_PARAMS),
        ));
    }
    if idempotency.is_some() {
        inserts.push((INSERT_IDEMPOTENCY, values(1, IDEMPOTENCY_PARAMS)));
    }
    if !r.events.is_empty() {
        inserts.push((outbox::INSERT, values(r.events.len(), outbox::COLUMNS)));
    }
    let sql = store::tenant_read::insert_in_tenant(&inserts, next);

    let q = bind_demographics!(sqlx::query(AssertSqlSafe(sql.as_str())), p, ssn)
        .bind(p.id.as_uuid())
        .bind(p.tenant.as_str())
        .bind(p.mrn.as_str())
        .bind(p.created_at)
        .bind(p.updated_at)
        .bind(&p.created_by)
        .bind(&p.updated_by)
        .bind(p.version);
    let q = bind_timeline!(q, p.tenant.as_str(), r.timeline);
    let q = bind_addresses!(q, p);
    let mut q = bind_insurances!(q, p);
    if let Some(k) = idempotency {
        q = bind_idempotency!(q, p.tenant.as_str(), k);
    }
    let q = outbox::bind(q, &r.events).bind(p.tenant.as_str());
    q.execute(pool).await.map_err(db)?;
    Ok(())
}

async fn insert_children(tx: &mut Tx, p: &Patient) -> Result<(), WriteError> {
    let backend = tx.backend();
    if !p.addresses.is_empty() {
        let sql = format!(
            "{INSERT_ADDRESS} VALUES {}",
            bulk::placeholders(backend, p.addresses.len(), ADDRESS_PARAMS)
        );
        execute!(
            &mut *tx,
            bind_addresses!(sqlx::query(AssertSqlSafe(sql.as_str())), p)
        )
        .map_err(db)?;
    }
    if !p.insurance.is_empty() {
        let sql = format!(
            "{INSERT_INSURANCE} VALUES {}",
            bulk::placeholders(backend, p.insurance.len(), INSURANCE_PARAMS)
        );
        execute!(
            &mut *tx,
            bind_insurances!(sqlx::query(AssertSqlSafe(sql.as_str())), p)
        )
        .map_err(db)?;
    }
    Ok(())
}

async fn insert_medical_record(
    tx: &mut Tx,
    tenant: &TenantId,
    r: &MedicalRecord,
    sealed_notes: Option<String>,
) -> Result<(), WriteError> {
    let sql = format!(
        "{INSERT_RECORD} VALUES {}",
        bulk::placeholders(tx.backend(), 1, RECORD_PARAMS)
    );
    execute!(
        tx,
        bind_record!(
            sqlx::query(AssertSqlSafe(sql.as_str())),
            tenant.as_str(),
            r,
            sealed_notes
        )
    )
    .map_err(db)?;
    Ok(())
}

async fn insert_lab_order(
    tx: &mut Tx,
    tenant: &TenantId,
    actor: &str,
    o: &LabOrder,
) -> Result<(), WriteError> {
    let tests: Vec<_> = o
        .request
        .tests
        .iter()
        .map(|t| StoredTest {
            test_code: t.test_code.clone(),
            test_name: t.test_name.clone(),
            loinc_code: t.loinc_code.clone(),
        })
        .collect();
    execute!(
        tx,
        sqlx::query(
            "INSERT INTO lab_order_requests (order_id, tenant_id, patient_id, priority, ordering_provider_id,
                ordering_provider_name, tests, diagnosis_codes, ordered_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(o.id.as_uuid())
        .bind(tenant.as_str())
        .bind(o.patient_id.as_uuid())
        .bind(o.request.priority)
        .bind(&o.request.ordering_provider_id)
        .bind(&o.request.ordering_provider_name)
        .bind(Json(&tests))
        .bind(Json(&o.request.diagnosis_codes))
        .bind(o.ordered_at)
        .bind(actor)
    )
    .map_err(db)?;
    Ok(())
}

/// Adds entries reported by another service, inside a consumer's transaction, a few
/// statements for all of them (a consumer's batch): one statement per entry, each a trip to
/// SQLite's connection thread, was most of what the consumer cost under HL7 results.
/// `false`, with nothing written, when the tenant has no such patient for one of them
/// (deleted ones included: their history still grows).
pub async fn append_external_entries(
    tx: &mut Tx,
    tenant: &TenantId,
    entries: &[TimelineEntry],
) -> Result<bool, DbError> {
    let mut patients: Vec<Uuid> = entries.iter().map(|e| e.patient_id.as_uuid()).collect();
    patients.sort_unstable();
    patients.dedup();
    let backend = tx.backend();
    let rows = bulk::rows_per_statement(backend);
    for chunk in patients.chunks(rows) {
        let sql = known_patients_sql(backend, chunk.len());
        let known: i64 = on_tx!(&mut *tx, |c| {
            let mut q = sqlx::query_scalar(AssertSqlSafe(sql.as_str())).bind(tenant.as_str());
            for id in chunk {
                q = q.bind(*id);
            }
            q.fetch_one(c).await
        })?;
        if known != chunk.len() as i64 {
            return Ok(false);
        }
    }
    for chunk in entries.chunks(rows) {
        let sql = format!(
            "{INSERT_TIMELINE} VALUES {}",
            bulk::placeholders(backend, chunk.len(), TIMELINE_PARAMS)
        );
        let written = execute!(tx, {
            let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
            for e in chunk {
                q = bind_timeline!(q, tenant.as_str(), e);
            }
            q
        });
        written.map_err(|e| match db(e) {
            WriteError::Db(e) => e,
            _ => DbError::Invariant("a timeline insert hit a patient constraint"),
        })?;
    }
    Ok(true)
}

/// How many of `patients` ids (`$2`…) are patients of tenant `$1`. On SQLite the tenant's
/// column is written `+tenant_id`, which keeps it off the indexes: a hub's SQLite files carry
/// no statistics, and without them SQLite narrowed by the tenant (`idx_patients_mrn`) and
/// read every patient of the tenant per batch of lab results, instead of one primary-key
/// lookup per id (seen in the bench: 4 ms per check at 10k patients, 19 ms at 76k).
fn known_patients_sql(backend: Backend, patients: usize) -> String {
    let tenant = match backend {
        Backend::Sqlite => "+tenant_id",
        Backend::Postgres => "tenant_id",
    };
    format!(
        "SELECT COUNT(*) FROM patients WHERE {tenant} = {} AND patient_id IN ({})",
        bulk::params(backend, 1, 1),
        bulk::params(backend, 2, patients)
    )
}

async fn insert_timeline(
    tx: &mut Tx,
    tenant: &TenantId,
    e: &TimelineEntry,
) -> Result<(), WriteError> {
    let sql = format!(
        "{INSERT_TIMELINE} VALUES {}",
        bulk::placeholders(tx.backend(), 1, TIMELINE_PARAMS)
    );
    execute!(
        tx,
        bind_timeline!(sqlx::query(AssertSqlSafe(sql.as_str())), tenant.as_str(), e)
    )
    .map_err(db)?;
    Ok(())
}
