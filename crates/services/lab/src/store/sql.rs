//! The lab store over SQLite or PostgreSQL: each statement written once for both (see the
//! `store` crate), every transaction in its tenant's scope.

use super::rows::*;
use super::{LabStore, ReadError, WriteError};
use crate::domain::{LabOrder, LabTest, ResultRevision, Specimen};
use chrono::{DateTime, Utc};
use events::EventEnvelope;
use kernel::TenantId;
use kernel::ids::LabOrderId;
use kernel::paging::{Page, PageRequest};
use sqlx::AssertSqlSafe;
use sqlx::types::Json;
use std::collections::HashMap;
use store::{Db, DbError, Scope, Tx, execute, on_tenant_read, on_tx, outbox};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct SqlLabStore {
    db: Db,
}

impl SqlLabStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn db<E: Into<DbError>>(e: E) -> WriteError {
    WriteError::Db(e.into())
}

/// The columns an order's changes touch, bound as `$1` to `$14`.
macro_rules! bind_order_state {
    ($query:expr, $o:expr) => {
        $query
            .bind($o.status.as_str())
            .bind($o.collected_at)
            .bind($o.received_at)
            .bind($o.reported_at)
            .bind($o.cancelled_at)
            .bind(&$o.cancel_reason)
            .bind($o.awaiting_preauthorization)
            .bind(&$o.preauthorization)
            .bind(&$o.filler_order)
            .bind($o.version)
            .bind($o.updated_at)
            .bind($o.tenant.as_str())
            .bind($o.id.as_uuid())
            .bind($o.priority.as_str())
    };
}

impl LabStore for SqlLabStore {
    async fn insert(&self, o: &LabOrder, events: &[EventEnvelope]) -> Result<(), WriteError> {
        let mut tx = self.db.begin_in(Scope::Tenant(&o.tenant)).await?;
        insert_order(&mut tx, o).await?;
        outbox::append(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update(
        &self,
        before: &LabOrder,
        after: &LabOrder,
        events: &[EventEnvelope],
    ) -> Result<(), WriteError> {
        let mut tx = self.db.begin_in(Scope::Tenant(&after.tenant)).await?;
        update_order(&mut tx, before, after).await?;
        outbox::append(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn order(&self, tenant: &TenantId, id: LabOrderId) -> Result<Option<LabOrder>, DbError> {
        if let Db::Sqlite(db) = &self.db {
            // Four point reads in one snapshot, on this thread (see `lookup`).
            let mut reads = super::lookup::Direct(db.snapshot()?);
            return super::lookup::Lookups::order(&mut reads, tenant, id).await;
        }
        // One statement, one round trip (`store::tenant_read`).
        let row: Option<OrderWithChildrenRow> =
            on_tenant_read!(&self.db, &ORDER_WITH_CHILDREN, 1, |c, sql| {
                sqlx::query_as(AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(id.as_uuid())
                    .fetch_optional(c)
                    .await
            })
            .await?;
        row.map(OrderWithChildrenRow::into_order).transpose()
    }

    async fn pending(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<LabOrder>, ReadError> {
        let after = page
            .position::<(i16, DateTime<Utc>, Uuid)>()
            .map_err(|_| ReadError::BadCursor)?;
        let base = format!(
            "SELECT {ORDER_COLUMNS} FROM lab_orders WHERE tenant_id = $1
               AND status IN ('PENDING', 'COLLECTED', 'IN_PROGRESS') AND NOT awaiting_preauthorization"
        );
        let order = "ORDER BY priority_rank, ordered_at, order_id LIMIT $2";
        let sql = match after {
            None => format!("{base} {order}"),
            Some(_) => {
                format!("{base} AND (priority_rank, ordered_at, order_id) > ($3, $4, $5) {order}")
            }
        };
        let mut tx = self.db.read_in(Scope::Tenant(tenant)).await?;
        let rows: Vec<OrderRow> = on_tx!(&mut tx, |c| {
            let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(tenant.as_str())
                .bind(page.fetch_limit());
            if let Some((rank, at, id)) = after {
                q = q.bind(rank).bind(at).bind(id);
            }
            q.fetch_all(c).await
        })
        .map_err(DbError::from)?;
        let orders = hydrate(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(Page::from_rows(orders, page, |o| {
            (o.priority.rank(), o.ordered_at, o.id.as_uuid())
        }))
    }

    async fn unmatched(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<super::hl7::Unmatched>, ReadError> {
        super::hl7::unmatched(&self.db, tenant, page).await
    }

    async fn messages(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<super::hl7::MessageSummary>, ReadError> {
        super::hl7::messages(&self.db, tenant, page).await
    }

    async fn message(
        &self,
        tenant: &TenantId,
        id: Uuid,
    ) -> Result<Option<super::hl7::MessageSummary>, DbError> {
        super::hl7::message(&self.db, tenant, id).await
    }

    async fn reconcile(
        &self,
        tenant: &TenantId,
        unmatched: Uuid,
        order: LabOrderId,
        by: &str,
        change: super::Reconciliation<'_>,
    ) -> Result<LabOrder, super::ReconcileFailure> {
        use super::ReconcileFailure as F;
        let mut tx = self.db.begin_in(Scope::Tenant(tenant)).await?;
        let entry = super::hl7::open_unmatched(&mut tx, tenant, unmatched)
            .await?
            .ok_or(F::UnmatchedNotFound)?;
        if entry.status != "OPEN" {
            return Err(F::AlreadyReconciled);
        }
        let mut o = load_order(&mut tx, tenant, order)
            .await?
            .ok_or(F::OrderNotFound)?;
        let before = o.clone();
        let events = change(&mut o, &entry).map_err(F::Refused)?;
        update_order(&mut tx, &before, &o).await?;
        let now = o.updated_at;
        if !super::hl7::mark_reconciled(&mut tx, tenant, unmatched, o.id.as_uuid(), by, now).await?
        {
            return Err(F::AlreadyReconciled);
        }
        outbox::append(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(o)
    }
}

/// Inserts a new order in `tx`; `Exists` when its id is taken (a request seen before).
pub(crate) async fn insert_order(tx: &mut Tx, o: &LabOrder) -> Result<(), WriteError> {
    let n = execute!(
        &mut *tx,
        bind_order_state!(
            sqlx::query(
                "INSERT INTO lab_orders (status, collected_at, received_at, reported_at, cancelled_at, cancel_reason,
                    awaiting_preauthorization, preauthorization, filler_order, version, updated_at, tenant_id, order_id,
                    priority, priority_rank, patient_id, mrn, ordering_provider_id, ordering_provider_name,
                    diagnosis_codes, ordered_at, placer_order)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
                 ON CONFLICT (order_id) DO NOTHING",
            ),
            o
        )
        .bind(o.priority.rank())
        .bind(o.patient_id.as_uuid())
        .bind(&o.mrn)
        .bind(&o.ordering_provider_id)
        .bind(&o.ordering_provider_name)
        .bind(Json(&o.diagnosis_codes))
        .bind(o.ordered_at)
        .bind(&o.placer_order)
    )
    .map_err(db)?;
    if n == 0 {
        return Err(WriteError::Exists);
    }
    save_children(tx, o, None).await
}

/// An order's changeable columns, if it is still at the version it was read at (`$15`).
pub(super) const UPDATE_ORDER: &str = "UPDATE lab_orders SET status = $1, collected_at = $2, received_at = $3, reported_at = $4,
        cancelled_at = $5, cancel_reason = $6, awaiting_preauthorization = $7, preauthorization = $8,
        filler_order = $9, version = $10, updated_at = $11
     WHERE tenant_id = $12 AND order_id = $13 AND priority = $14 AND version = $15";

/// [`UPDATE_ORDER`] for an order whose filler number is the one it was read with, and its
/// parameters without the filler number (`$9`). SQLite rewrites the entry of every index on
/// a column the `SET` names, changed or not: naming `filler_order` dirtied a random page of
/// `idx_lab_orders_filler` for every result to an order already numbered, a page the WAL
/// and then the checkpoint wrote out again.
pub(super) const UPDATE_ORDER_SAME_FILLER: &str = "UPDATE lab_orders SET status = $1, collected_at = $2, received_at = $3, reported_at = $4,
        cancelled_at = $5, cancel_reason = $6, awaiting_preauthorization = $7, preauthorization = $8,
        version = $9, updated_at = $10
     WHERE tenant_id = $11 AND order_id = $12 AND priority = $13 AND version = $14";

/// Writes the order as changed from `before` (as it was read, at its version), in `tx`.
pub(crate) async fn update_order(
    tx: &mut Tx,
    before: &LabOrder,
    o: &LabOrder,
) -> Result<(), WriteError> {
    let n = execute!(
        &mut *tx,
        bind_order_state!(sqlx::query(UPDATE_ORDER), o).bind(before.version)
    )
    .map_err(db)?;
    if n == 0 {
        let found: Option<i64> = on_tx!(&mut *tx, |c| sqlx::query_scalar(
            "SELECT version FROM lab_orders WHERE tenant_id = $1 AND order_id = $2"
        )
        .bind(o.tenant.as_str())
        .bind(o.id.as_uuid())
        .fetch_optional(c)
        .await)
        .map_err(db)?;
        return Err(match found {
            Some(_) => WriteError::VersionConflict,
            None => WriteError::NotFound,
        });
    }
    save_children(tx, o, Some(before)).await
}

/// An order's row by its id, bound as `$2` (the tenant `$1`).
pub(super) static ORDER_BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {ORDER_COLUMNS} FROM lab_orders WHERE tenant_id = $1 AND order_id = $2")
});

/// On PostgreSQL, an order's row by its id (`$2`, the tenant `$1`) with its tests, results
/// and specimens as JSON arrays, each in the order its rows belong in: one round trip
/// where [`hydrate`] takes four, and an HL7 result waits for each (about a dozen in all).
/// On SQLite the four are direct reads (`lookup`), and an aggregate's `ORDER BY` builds a
/// temporary b-tree per list.
pub(super) static ORDER_WITH_CHILDREN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| with_children("o.order_id = $2"));

fn with_children(key: &str) -> String {
    let list = |columns: &str, table: &str, order_by: &str| {
        let pairs: Vec<String> = columns
            .split(", ")
            .map(|c| format!("'{c}', c.{c}"))
            .collect();
        format!(
            "(SELECT COALESCE(json_agg(json_build_object({}) ORDER BY {order_by}), '[]')::text
              FROM {table} c WHERE c.order_id = o.order_id)",
            pairs.join(", ")
        )
    };
    let columns: Vec<String> = ORDER_COLUMNS
        .split(", ")
        .map(|c| format!("o.{c}"))
        .collect();
    format!(
        "SELECT {}, {} AS tests, {} AS results, {} AS specimens
         FROM lab_orders o WHERE o.tenant_id = $1 AND {key}",
        columns.join(", "),
        list(TEST_COLUMNS, "lab_tests", "c.position"),
        list(RESULT_COLUMNS, "lab_results", "c.test_id, c.revision"),
        list(
            SPECIMEN_COLUMNS,
            "specimens",
            "c.collected_at, c.specimen_id"
        ),
    )
}

/// The order with its children, read in `tx`.
pub(crate) async fn load_order(
    tx: &mut Tx,
    tenant: &TenantId,
    id: LabOrderId,
) -> Result<Option<LabOrder>, DbError> {
    if let Tx::Postgres(pg) = tx {
        let row: Option<OrderWithChildrenRow> =
            sqlx::query_as(AssertSqlSafe(ORDER_WITH_CHILDREN.as_str()))
                .bind(tenant.as_str())
                .bind(id.as_uuid())
                .fetch_optional(&mut **pg)
                .await?;
        return row.map(OrderWithChildrenRow::into_order).transpose();
    }
    let row: Option<OrderRow> = on_tx!(&mut *tx, |c| sqlx::query_as(AssertSqlSafe(
        ORDER_BY_ID.as_str()
    ))
    .bind(tenant.as_str())
    .bind(id.as_uuid())
    .fetch_optional(c)
    .await)?;
    Ok(hydrate(tx, row.into_iter().collect())
        .await?
        .into_iter()
        .next())
}

/// Records a patient the lab has heard of; a repeat changes nothing. `false` when the
/// patient or the MRN was known already.
pub(crate) async fn remember_patient(
    tx: &mut Tx,
    tenant: &TenantId,
    patient: Uuid,
    mrn: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbError> {
    let heard = HeardOf {
        id: patient,
        mrn,
        at,
    };
    Ok(!remember_patients(tx, tenant, &[heard]).await?.is_empty())
}

/// A patient the lab hears of: id, MRN, and when they were registered.
pub(crate) struct HeardOf<'a> {
    pub id: Uuid,
    pub mrn: &'a str,
    pub at: DateTime<Utc>,
}

/// [`remember_patient`] for many patients of `tenant`, a few statements for all (a
/// consumer's batch: one statement per patient was most of what the lab's consumer cost a
/// PostgreSQL server under registrations). The ids that joined the projection; the others
/// were known already, by their id or by their MRN.
pub(crate) async fn remember_patients(
    tx: &mut Tx,
    tenant: &TenantId,
    patients: &[HeardOf<'_>],
) -> Result<Vec<Uuid>, DbError> {
    let backend = tx.backend();
    let mut joined = Vec::with_capacity(patients.len());
    for chunk in patients.chunks(store::bulk::rows_per_statement(backend)) {
        let sql = format!(
            "INSERT INTO lab_patients (tenant_id, patient_id, mrn, registered_at) VALUES {}
             ON CONFLICT DO NOTHING RETURNING patient_id",
            store::bulk::placeholders(backend, chunk.len(), 4)
        );
        let ids: Vec<Uuid> = on_tx!(&mut *tx, |c| {
            let mut q = sqlx::query_scalar(AssertSqlSafe(sql.as_str()));
            for p in chunk {
                q = q.bind(tenant.as_str()).bind(p.id).bind(p.mrn).bind(p.at);
            }
            q.fetch_all(c).await
        })?;
        joined.extend(ids);
    }
    Ok(joined)
}

/// Gives the patient the lab knew as `minted` their own id `id`, in the projection and on
/// each of their orders (a new version of each); the number of orders moved.
pub(crate) async fn adopt_patient_id(
    tx: &mut Tx,
    tenant: &TenantId,
    minted: Uuid,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<u64, DbError> {
    execute!(
        &mut *tx,
        sqlx::query(
            "UPDATE lab_patients SET patient_id = $3 WHERE tenant_id = $1 AND patient_id = $2"
        )
        .bind(tenant.as_str())
        .bind(minted)
        .bind(id)
    )?;
    let moved = execute!(
        &mut *tx,
        sqlx::query(
            "UPDATE lab_orders SET patient_id = $3, version = version + 1, updated_at = $4
             WHERE tenant_id = $1 AND patient_id = $2"
        )
        .bind(tenant.as_str())
        .bind(minted)
        .bind(id)
        .bind(at)
    )?;
    Ok(moved)
}

/// The children of `o` to write: each that is new or changed since `before`.
pub(super) struct ChildWrites<'a> {
    /// With their positions.
    pub tests: Vec<(i16, &'a LabTest)>,
    /// With their tests and revision numbers.
    pub results: Vec<(&'a LabTest, i16, &'a ResultRevision)>,
    pub specimens: Vec<&'a Specimen>,
}

/// Tests, results and specimens as the order now has them. Children are never removed,
/// so writing each that is new or changed since `before` (with its changeable columns
/// updated) is the whole change. Only those: an order collects results (revisions,
/// corrections) and writing them all again made each update cost more than the last
/// (profiled: an HL7 result for an order with a dozen results was 13 result writes).
pub(super) fn child_writes<'a>(o: &'a LabOrder, before: Option<&LabOrder>) -> ChildWrites<'a> {
    let mut writes = ChildWrites {
        tests: Vec::new(),
        results: Vec::new(),
        specimens: Vec::new(),
    };
    for (position, t) in (0_i16..).zip(&o.tests) {
        let was = before.and_then(|b| b.tests.iter().find(|old| old.id == t.id));
        if was.is_none_or(|old| old.status != t.status) {
            writes.tests.push((position, t));
        }
        for (revision, r) in (1_i16..).zip(&t.results) {
            if !was.is_some_and(|old| old.results.contains(r)) {
                writes.results.push((t, revision, r));
            }
        }
    }
    writes.specimens = o
        .specimens
        .iter()
        .filter(|s| !before.is_some_and(|b| b.specimens.contains(s)))
        .collect();
    writes
}

pub(super) const INSERT_TEST: &str = "INSERT INTO lab_tests (test_id, tenant_id, order_id, position, test_code, test_name, loinc_code, status)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (test_id) DO UPDATE SET status = excluded.status";

pub(super) const INSERT_RESULT: &str = "INSERT INTO lab_results (result_id, tenant_id, test_id, order_id, revision, result_value, result_unit,
        reference_range, abnormal_flag, performed_by, performed_at, recorded_at, verified_by, verified_at,
        correction, critical_flag)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
     ON CONFLICT (result_id) DO UPDATE SET verified_by = excluded.verified_by, verified_at = excluded.verified_at";

pub(super) const INSERT_SPECIMEN: &str = "INSERT INTO specimens (specimen_id, tenant_id, order_id, specimen_type, collected_at, collected_by,
        received_at, condition)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (specimen_id) DO UPDATE SET received_at = excluded.received_at, condition = excluded.condition";

/// Writes the children [`child_writes`] finds.
async fn save_children(
    tx: &mut Tx,
    o: &LabOrder,
    before: Option<&LabOrder>,
) -> Result<(), WriteError> {
    let tenant = o.tenant.as_str();
    let order = o.id.as_uuid();
    let writes = child_writes(o, before);
    for (position, t) in writes.tests {
        execute!(
            &mut *tx,
            sqlx::query(INSERT_TEST)
                .bind(t.id)
                .bind(tenant)
                .bind(order)
                .bind(position)
                .bind(&t.test_code)
                .bind(&t.test_name)
                .bind(&t.loinc_code)
                .bind(t.status.as_str())
        )
        .map_err(db)?;
    }
    for (t, revision, r) in writes.results {
        execute!(
            &mut *tx,
            sqlx::query(INSERT_RESULT)
                .bind(r.id)
                .bind(tenant)
                .bind(t.id)
                .bind(order)
                .bind(revision)
                .bind(&r.value)
                .bind(&r.unit)
                .bind(&r.reference_range)
                .bind(r.abnormal_flag.map(|f| f.as_str()))
                .bind(&r.performed_by)
                .bind(r.performed_at)
                .bind(r.recorded_at)
                .bind(&r.verified_by)
                .bind(r.verified_at)
                .bind(r.correction)
                .bind(r.critical.map(|f| f.as_str()))
        )
        .map_err(db)?;
    }
    for s in writes.specimens {
        execute!(
            &mut *tx,
            sqlx::query(INSERT_SPECIMEN)
                .bind(s.id)
                .bind(tenant)
                .bind(order)
                .bind(s.specimen_type.as_str())
                .bind(s.collected_at)
                .bind(&s.collected_by)
                .bind(s.received_at)
                .bind(&s.condition)
        )
        .map_err(db)?;
    }
    Ok(())
}

/// The orders of `rows` with their children: one query per kind of child for all of them.
pub(super) async fn hydrate(tx: &mut Tx, rows: Vec<OrderRow>) -> Result<Vec<LabOrder>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.order_id).collect();
    let [tests, results, specimens] = children_sql(ids.len());
    let tests: Vec<TestRow> = children(tx, &tests, &ids).await?;
    let results: Vec<ResultRow> = children(tx, &results, &ids).await?;
    let specimens: Vec<SpecimenRow> = children(tx, &specimens, &ids).await?;
    assemble_all(rows, tests, results, specimens)
}

/// The `SELECT`s of the tests, results and specimens of `n` orders, whose ids are bound
/// as `$1` to `$n`: each in the order its rows belong in an order.
pub(super) fn children_sql(n: usize) -> [String; 3] {
    let placeholders: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    children_where(&format!("order_id IN ({})", placeholders.join(", ")))
}

/// On PostgreSQL, [`children_sql`] for the orders whose ids are in the array `$1`: one
/// statement text however many there are.
pub(super) static CHILDREN_OF_ANY: std::sync::LazyLock<[String; 3]> =
    std::sync::LazyLock::new(|| children_where("order_id = ANY($1)"));

/// On PostgreSQL, the rows of the tenant's (`$1`) orders whose ids are in the array `$2`.
pub(super) static ORDERS_OF_ANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {ORDER_COLUMNS} FROM lab_orders WHERE tenant_id = $1 AND order_id = ANY($2)")
});

fn children_where(key: &str) -> [String; 3] {
    let select = |columns: &str, table: &str, order_by: &str| {
        format!("SELECT {columns} FROM {table} WHERE {key} ORDER BY order_id, {order_by}")
    };
    [
        select(TEST_COLUMNS, "lab_tests", "position"),
        select(RESULT_COLUMNS, "lab_results", "test_id, revision"),
        select(SPECIMEN_COLUMNS, "specimens", "collected_at, specimen_id"),
    ]
}

/// Orders from their rows and all their children's rows, read in one transaction.
pub(super) fn assemble_all(
    rows: Vec<OrderRow>,
    tests: Vec<TestRow>,
    results: Vec<ResultRow>,
    specimens: Vec<SpecimenRow>,
) -> Result<Vec<LabOrder>, DbError> {
    // Grouped once by key: a run reads a hundred orders at a time, and splitting the rest
    // off for each order moved every remaining row once per order.
    let mut tests = grouped(tests, |t| t.order_id);
    let mut results = grouped(results, |r| r.test_id);
    let mut specimens = grouped(specimens, |s| s.order_id);
    rows.into_iter()
        .map(|row| {
            let t = tests.remove(&row.order_id).unwrap_or_default();
            let r = t
                .iter()
                .flat_map(|t| results.remove(&t.id()).unwrap_or_default())
                .collect();
            let s = specimens.remove(&row.order_id).unwrap_or_default();
            assemble(row, t, r, s)
        })
        .collect()
}

/// `rows` by `key`, each group in the rows' order.
fn grouped<R>(rows: Vec<R>, key: impl Fn(&R) -> Uuid) -> HashMap<Uuid, Vec<R>> {
    let mut groups: HashMap<Uuid, Vec<R>> = HashMap::new();
    for row in rows {
        groups.entry(key(&row)).or_default().push(row);
    }
    groups
}

async fn children<R>(tx: &mut Tx, sql: &str, ids: &[Uuid]) -> Result<Vec<R>, DbError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let rows = on_tx!(tx, |c| {
        let mut q = sqlx::query_as::<_, R>(AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(c).await
    })?;
    Ok(rows)
}
