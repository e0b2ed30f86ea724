//! The HL7 message log and the unmatched-results queue, and the lookups that match a
//! result to an order. Every function works inside the caller's transaction.

use super::rows::{ORDER_COLUMNS, OrderRow};
use super::sql::hydrate;
use crate::domain::LabOrder;
use chrono::{DateTime, Utc};
use kernel::TenantId;
use kernel::paging::{Page, PageRequest};
use sqlx::AssertSqlSafe;
use sqlx::types::Json;
use store::{Db, DbError, Scope, Tx, execute, on_tx};
use uuid::Uuid;

/// What became of a message, and how it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: Uuid,
    pub tenant: TenantId,
    /// MSH-3 and MSH-4, as `application^facility`.
    pub sender: Option<String>,
    pub control_id: Option<String>,
    /// `ORU^R01`.
    pub message_type: Option<String>,
    pub received_at: DateTime<Utc>,
    /// `APPLIED`, `UNMATCHED`, `PARTLY_UNMATCHED` or `REJECTED`.
    pub status: &'static str,
    pub ack_code: &'static str,
    pub error_code: Option<String>,
    pub error_location: Option<String>,
    pub error_text: Option<String>,
    pub raw: String,
    pub ack: String,
}

/// A message as the API shows it: what became of it, not its content.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MessageSummary {
    pub message_id: Uuid,
    pub sender: Option<String>,
    pub control_id: Option<String>,
    pub message_type: Option<String>,
    pub received_at: DateTime<Utc>,
    pub status: String,
    pub ack_code: String,
    pub error_code: Option<String>,
    pub error_location: Option<String>,
    pub error_text: Option<String>,
}

const SUMMARY_COLUMNS: &str = "message_id, sender, control_id, message_type, received_at, status, ack_code, error_code, error_location, error_text";

/// Results of a message that no order could take.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnmatchedObservation {
    pub code: String,
    pub text: Option<String>,
    pub system: Option<String>,
    pub value: Option<String>,
    pub unit: Option<String>,
    pub reference_range: Option<String>,
    pub abnormal_flags: Vec<String>,
    pub status: Option<String>,
    pub observed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unmatched {
    pub id: Uuid,
    pub message_id: Uuid,
    pub position: i16,
    pub reason: String,
    pub patient_identifier: Option<String>,
    pub placer_order: Option<String>,
    pub filler_order: Option<String>,
    pub service_code: Option<String>,
    pub observations: Vec<UnmatchedObservation>,
    pub received_at: DateTime<Utc>,
    pub status: String,
}

#[derive(Debug, sqlx::FromRow)]
struct UnmatchedRow {
    unmatched_id: Uuid,
    message_id: Uuid,
    position: i16,
    reason: String,
    patient_identifier: Option<String>,
    placer_order: Option<String>,
    filler_order: Option<String>,
    service_code: Option<String>,
    observations: Json<Vec<UnmatchedObservation>>,
    received_at: DateTime<Utc>,
    status: String,
}

impl From<UnmatchedRow> for Unmatched {
    fn from(r: UnmatchedRow) -> Self {
        Unmatched {
            id: r.unmatched_id,
            message_id: r.message_id,
            position: r.position,
            reason: r.reason,
            patient_identifier: r.patient_identifier,
            placer_order: r.placer_order,
            filler_order: r.filler_order,
            service_code: r.service_code,
            observations: r.observations.0,
            received_at: r.received_at,
            status: r.status,
        }
    }
}

pub(super) const EARLIER_ACK: &str =
    "SELECT ack FROM hl7_messages WHERE tenant_id = $1 AND sender = $2 AND control_id = $3";

/// The ACK a message from `sender` with `control_id` was answered with, if it came before.
pub async fn earlier_ack(
    tx: &mut Tx,
    tenant: &TenantId,
    sender: &str,
    control_id: &str,
) -> Result<Option<String>, DbError> {
    // Planned anew each time, not cached on the connection. Into a new, empty table two
    // indexes cost the same for it (this one's and the listing's, both led by the
    // tenant), and PostgreSQL, which settles on a generic plan after five executions,
    // kept the listing's on every pooled connection: each lookup then read every message
    // of the tenant, 38 ms at 50,000 messages, until autovacuum analyzed the table (a
    // minute or more) — HL7 at a few hundred messages a second on a fresh database.
    Ok(on_tx!(tx, |c| sqlx::query_scalar(EARLIER_ACK)
        .persistent(false)
        .bind(tenant.as_str())
        .bind(sender)
        .bind(control_id)
        .fetch_optional(c)
        .await)?)
}

/// Of the messages `keys` names (sender, control id), those `tenant` had before: a run's
/// worth in one statement, where [`earlier_ack`] is a statement per message (on PostgreSQL
/// the dearest of a result's statements, since it is planned anew each time). PostgreSQL
/// only; on SQLite a run reads ahead in a snapshot instead, and this answers `None`.
pub async fn earlier_of(
    tx: &mut Tx,
    tenant: &TenantId,
    keys: &[(String, String)],
) -> Result<Option<Vec<(String, String)>>, DbError> {
    let Tx::Postgres(c) = tx else {
        return Ok(None);
    };
    let (senders, controls): (Vec<&str>, Vec<&str>) =
        keys.iter().map(|(s, c)| (s.as_str(), c.as_str())).unzip();
    // One lookup of the control index per key, whatever the table's statistics say: as a
    // join, a table last analyzed near empty was read whole for every run, its tenant's
    // rows filtered against the keys (0.4 s a run in the bench). A LATERAL subquery with a
    // LIMIT cannot be flattened into a join. Not prepared, for the reason `earlier_ack`
    // gives.
    let found = sqlx::query_as(
        "SELECT k.sender, k.control_id FROM unnest($2::text[], $3::text[]) AS k (sender, control_id)
         CROSS JOIN LATERAL (SELECT 1 FROM hl7_messages m
             WHERE m.tenant_id = $1 AND m.sender = k.sender AND m.control_id = k.control_id
             LIMIT 1) AS found",
    )
    .persistent(false)
    .bind(tenant.as_str())
    .bind(senders)
    .bind(controls)
    .fetch_all(&mut **c)
    .await
    .map_err(DbError::from)?;
    Ok(Some(found))
}

pub(super) const INSERT_MESSAGE: &str = "INSERT INTO hl7_messages (message_id, tenant_id, sender, control_id, message_type, received_at, status,
        ack_code, error_code, error_location, error_text, raw, ack)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

pub(super) const INSERT_UNMATCHED: &str = "INSERT INTO hl7_unmatched_results (unmatched_id, tenant_id, message_id, position, reason, patient_identifier,
        placer_order, filler_order, service_code, observations, received_at, status)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

pub async fn record_message(tx: &mut Tx, m: &MessageRecord) -> Result<(), DbError> {
    execute!(
        tx,
        sqlx::query(INSERT_MESSAGE)
            .bind(m.id)
            .bind(m.tenant.as_str())
            .bind(&m.sender)
            .bind(&m.control_id)
            .bind(&m.message_type)
            .bind(m.received_at)
            .bind(m.status)
            .bind(m.ack_code)
            .bind(&m.error_code)
            .bind(&m.error_location)
            .bind(&m.error_text)
            .bind(&m.raw)
            .bind(&m.ack)
    )?;
    Ok(())
}

pub async fn insert_unmatched(
    tx: &mut Tx,
    tenant: &TenantId,
    u: &Unmatched,
) -> Result<(), DbError> {
    execute!(
        tx,
        sqlx::query(INSERT_UNMATCHED)
            .bind(u.id)
            .bind(tenant.as_str())
            .bind(u.message_id)
            .bind(u.position)
            .bind(&u.reason)
            .bind(&u.patient_identifier)
            .bind(&u.placer_order)
            .bind(&u.filler_order)
            .bind(&u.service_code)
            .bind(Json(&u.observations))
            .bind(u.received_at)
            .bind(&u.status)
    )?;
    Ok(())
}

/// The rows of orders with the number bound as `$2` in `column` (the tenant `$1`).
pub(super) fn order_by_number_sql(column: &'static str) -> String {
    format!("SELECT {ORDER_COLUMNS} FROM lab_orders WHERE tenant_id = $1 AND {column} = $2")
}

/// The order with this external number in `column` (`placer_order`, `filler_order`).
pub async fn order_by_number(
    tx: &mut Tx,
    tenant: &TenantId,
    column: &'static str,
    number: &str,
) -> Result<Option<LabOrder>, DbError> {
    let sql = order_by_number_sql(column);
    let rows: Vec<OrderRow> = on_tx!(&mut *tx, |c| sqlx::query_as(AssertSqlSafe(sql.as_str()))
        .bind(tenant.as_str())
        .bind(number)
        .fetch_all(c)
        .await)?;
    // A filler number is unique per laboratory; two orders holding one cannot be told apart.
    if rows.len() != 1 {
        return Ok(None);
    }
    Ok(hydrate(tx, rows).await?.into_iter().next())
}

pub(super) const PATIENT_BY_MRN: &str =
    "SELECT patient_id FROM lab_patients WHERE tenant_id = $1 AND mrn = $2";

/// The patients the lab knows by the MRNs in the array `$2`, each as (MRN, id).
pub(super) const PATIENT_BY_MRN_ANY: &str =
    "SELECT mrn, patient_id FROM lab_patients WHERE tenant_id = $1 AND mrn = ANY($2)";

/// The patient the lab knows by this MRN.
pub async fn patient_by_mrn(
    tx: &mut Tx,
    tenant: &TenantId,
    mrn: &str,
) -> Result<Option<Uuid>, DbError> {
    Ok(on_tx!(tx, |c| sqlx::query_scalar(PATIENT_BY_MRN)
        .bind(tenant.as_str())
        .bind(mrn)
        .fetch_optional(c)
        .await)?)
}

/// The rows of a patient's open orders (`$2`, the tenant `$1`), oldest first.
pub(super) static OPEN_ORDERS_OF: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {ORDER_COLUMNS} FROM lab_orders WHERE tenant_id = $1 AND patient_id = $2
           AND status IN ('PENDING', 'COLLECTED', 'IN_PROGRESS') ORDER BY ordered_at LIMIT 50"
    )
});

/// A patient's orders still being worked on, oldest first.
pub async fn open_orders_of(
    tx: &mut Tx,
    tenant: &TenantId,
    patient: Uuid,
) -> Result<Vec<LabOrder>, DbError> {
    let rows: Vec<OrderRow> = on_tx!(&mut *tx, |c| sqlx::query_as(AssertSqlSafe(
        OPEN_ORDERS_OF.as_str()
    ))
    .bind(tenant.as_str())
    .bind(patient)
    .fetch_all(c)
    .await)?;
    hydrate(tx, rows).await
}

/// One page of `select` (whose `$1` is the tenant), newest first by `(time, id)`; the
/// cursor holds the last row's `(time, id)`.
async fn newest_first<R>(
    db: &Db,
    tenant: &TenantId,
    select: &str,
    (time, id): (&str, &str),
    page: &PageRequest,
) -> Result<Vec<R>, super::ReadError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let after = page
        .position::<(DateTime<Utc>, Uuid)>()
        .map_err(|_| super::ReadError::BadCursor)?;
    let order = format!("ORDER BY {time} DESC, {id} DESC LIMIT $2");
    let sql = match after {
        None => format!("{select} {order}"),
        Some(_) => format!("{select} AND ({time}, {id}) < ($3, $4) {order}"),
    };
    let mut tx = db.read_in(Scope::Tenant(tenant)).await?;
    let rows: Vec<R> = on_tx!(&mut tx, |c| {
        let mut q = sqlx::query_as::<_, R>(AssertSqlSafe(sql.as_str()))
            .bind(tenant.as_str())
            .bind(page.fetch_limit());
        if let Some((at, last)) = after {
            q = q.bind(at).bind(last);
        }
        q.fetch_all(c).await
    })
    .map_err(DbError::from)?;
    tx.commit().await?;
    Ok(rows)
}

/// One page of the messages received, newest first.
pub async fn messages(
    db: &Db,
    tenant: &TenantId,
    page: &PageRequest,
) -> Result<Page<MessageSummary>, super::ReadError> {
    let select = format!("SELECT {SUMMARY_COLUMNS} FROM hl7_messages WHERE tenant_id = $1");
    let rows: Vec<MessageSummary> =
        newest_first(db, tenant, &select, ("received_at", "message_id"), page).await?;
    Ok(Page::from_rows(rows, page, |m| {
        (m.received_at, m.message_id)
    }))
}

pub async fn message(
    db: &Db,
    tenant: &TenantId,
    id: Uuid,
) -> Result<Option<MessageSummary>, DbError> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM hl7_messages WHERE tenant_id = $1 AND message_id = $2"
    );
    let mut tx = db.read_in(Scope::Tenant(tenant)).await?;
    let row = on_tx!(&mut tx, |c| sqlx::query_as(AssertSqlSafe(sql.as_str()))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(c)
        .await)?;
    tx.commit().await?;
    Ok(row)
}

/// One page of the results still waiting to be reconciled, newest first.
pub async fn unmatched(
    db: &Db,
    tenant: &TenantId,
    page: &PageRequest,
) -> Result<Page<Unmatched>, super::ReadError> {
    let select = "SELECT unmatched_id, message_id, position, reason, patient_identifier, placer_order, filler_order,
            service_code, observations, received_at, status
         FROM hl7_unmatched_results WHERE tenant_id = $1 AND status = 'OPEN'";
    let rows: Vec<UnmatchedRow> =
        newest_first(db, tenant, select, ("received_at", "unmatched_id"), page).await?;
    let items: Vec<Unmatched> = rows.into_iter().map(Into::into).collect();
    Ok(Page::from_rows(items, page, |u| (u.received_at, u.id)))
}

/// An unmatched entry, still open, locked for reconciliation in `tx`.
pub async fn open_unmatched(
    tx: &mut Tx,
    tenant: &TenantId,
    id: Uuid,
) -> Result<Option<Unmatched>, DbError> {
    let row: Option<UnmatchedRow> = on_tx!(tx, |c| {
        sqlx::query_as(
        "SELECT unmatched_id, message_id, position, reason, patient_identifier, placer_order, filler_order,
            service_code, observations, received_at, status
         FROM hl7_unmatched_results WHERE tenant_id = $1 AND unmatched_id = $2"
    )
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(c)
    .await
    })?;
    Ok(row.map(Into::into))
}

/// Marks an entry reconciled with `order`, if it was still open; `false` if it was not.
pub async fn mark_reconciled(
    tx: &mut Tx,
    tenant: &TenantId,
    id: Uuid,
    order: Uuid,
    by: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbError> {
    let n = execute!(
        tx,
        sqlx::query(
            "UPDATE hl7_unmatched_results SET status = 'RECONCILED', reconciled_order = $1, reconciled_at = $2,
                reconciled_by = $3
             WHERE tenant_id = $4 AND unmatched_id = $5 AND status = 'OPEN'",
        )
        .bind(order)
        .bind(at)
        .bind(by)
        .bind(tenant.as_str())
        .bind(id)
    )?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::direct::tests::{applied, lab_db};
    use testkit::TestDatabase;

    testkit::on_both_databases!(a_runs_earlier_messages_are_found_in_one_look);

    /// Only messages of the tenant, from the sender, with the control id, count as earlier;
    /// SQLite, whose runs read ahead instead, is told it has no such look.
    async fn a_runs_earlier_messages_are_found_in_one_look(database: TestDatabase) {
        let db = lab_db(&database, 2).await;
        let (tenant, other) = (TenantId::parse("t").unwrap(), TenantId::parse("u").unwrap());
        for (t, control) in [(&tenant, "C1"), (&tenant, "C2"), (&other, "C3")] {
            let mut tx = db.begin_in(Scope::Tenant(t)).await.unwrap();
            record_message(&mut tx, &applied(t, control)).await.unwrap();
            tx.commit().await.unwrap();
        }
        let key = |sender: &str, control: &str| (sender.to_owned(), control.to_owned());
        let keys = [
            key("LIS^LAB", "C1"),
            key("LIS^LAB", "C3"),
            key("LIS^LAB", "C9"),
            key("EHR^CLINIC", "C2"),
        ];
        let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
        let found = earlier_of(&mut tx, &tenant, &keys).await.unwrap();
        tx.commit().await.unwrap();
        match database.url() {
            Some(_) => assert_eq!(found, Some(vec![key("LIS^LAB", "C1")])),
            None => assert_eq!(found, None),
        }
        db.close().await;
    }

    /// On PostgreSQL a prepared statement sqlx caches on its connection settles on a generic
    /// plan, and the one for this lookup, made while `hl7_messages` was empty, read every
    /// message of the tenant once it was not (see `earlier_ack`).
    #[tokio::test]
    async fn the_earlier_ack_lookup_is_never_a_statement_cached_on_the_connection() {
        let Some(database) = TestDatabase::postgres().await else {
            return;
        };
        let db = lab_db(&database, 1).await;
        let tenant = TenantId::parse("t").unwrap();
        let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
        for n in 0..8 {
            let control = format!("C-{n}");
            let ack = earlier_ack(&mut tx, &tenant, "LIS^LAB", &control).await;
            assert_eq!(ack.unwrap(), None);
        }
        // A lookup that is cached, to show the check sees sqlx's statements.
        assert_eq!(
            patient_by_mrn(&mut tx, &tenant, "MRN-1").await.unwrap(),
            None
        );
        assert_eq!(cached(&mut tx, "lab_patients").await, 1);
        assert_eq!(cached(&mut tx, "hl7_messages").await, 0);
    }

    /// Statements prepared on the connection that read `table` by tenant.
    async fn cached(tx: &mut Tx, table: &str) -> i64 {
        let pattern = format!("%FROM {table} WHERE tenant_id%");
        on_tx!(tx, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_prepared_statements WHERE statement LIKE $1"
        )
        .bind(&pattern)
        .fetch_one(c)
        .await)
        .unwrap()
    }
}
