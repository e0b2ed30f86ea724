//! The audit trail over SQLite or PostgreSQL: appends chain entries per tenant inside one
//! transaction per batch, reads, verifies and purges them, and keeps how far each chain has
//! been published on `audit-events` ([`crate::relay`]).

use crate::chain::{Break, ChainCheck, Entry, GENESIS};
use chrono::{DateTime, Utc};
use events::audit::AuditEntryRecordedV1;
use events::{EventEnvelope, EventMeta};
use kernel::TenantId;
use kernel::audit::{AuditAction, AuditRecord};
use kernel::ids::{CorrelationId, EventId};
use kernel::paging::{Page, PageRequest};
use sqlx::AssertSqlSafe;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use store::{Db, DbError, Scope, Tx, execute, on_tx};
use uuid::Uuid;

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

const COLUMNS: &str = "tenant_id, seq, entry_id, recorded_at, actor, roles, action, resource_type, resource_id, patient_id, outcome, request_id, source_ip, prev_hash, hash";

#[derive(Debug, sqlx::FromRow)]
struct Row {
    tenant_id: String,
    seq: i64,
    entry_id: Uuid,
    recorded_at: DateTime<Utc>,
    actor: String,
    roles: String,
    action: String,
    resource_type: String,
    resource_id: Option<String>,
    patient_id: Option<Uuid>,
    outcome: String,
    request_id: Option<String>,
    source_ip: Option<String>,
    prev_hash: String,
    hash: String,
}

impl From<Row> for Entry {
    fn from(r: Row) -> Self {
        Entry {
            tenant: r.tenant_id,
            seq: r.seq,
            entry_id: r.entry_id,
            recorded_at: r.recorded_at,
            actor: r.actor,
            roles: r.roles,
            action: r.action,
            resource_type: r.resource_type,
            resource_id: r.resource_id,
            patient_id: r.patient_id,
            outcome: r.outcome,
            request_id: r.request_id,
            source_ip: r.source_ip,
            // CHAR(64) pads nothing here (hashes are 64 characters), but be exact anyway.
            prev_hash: r.prev_hash.trim_end().to_owned(),
            hash: r.hash.trim_end().to_owned(),
        }
    }
}

/// Filters of `GET /api/v1/audit`, all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub patient: Option<Uuid>,
    pub actor: Option<String>,
    pub action: Option<AuditAction>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("bad cursor")]
    BadCursor,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What `verify` found for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub tenant: String,
    pub checked: u64,
    pub broken: Option<Break>,
}

enum Bind {
    Text(String),
    Uuid(Uuid),
    Time(DateTime<Utc>),
    Int(i64),
}

#[derive(Debug, Clone)]
pub struct AuditStore {
    db: Db,
    /// On PostgreSQL, each tenant's head as this store last moved it: an append that
    /// starts from it is one statement ([`append_from_known_head`]).
    heads: Arc<Mutex<HashMap<String, (i64, String)>>>,
}

impl AuditStore {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            heads: Arc::default(),
        }
    }

    /// Chains and stores `records` in one transaction. Appends from several processes to one
    /// tenant take turns on the tenant's head row. On SQLite the transaction is one direct
    /// write ([`store::direct`]): every audited request waits for it. Each entry's
    /// `audit.entry.recorded.v1` is published from the trail afterwards ([`crate::relay`]).
    /// On PostgreSQL a batch of one tenant whose head this store moved last is one
    /// statement ([`append_from_known_head`]).
    pub async fn append(&self, records: &[AuditRecord]) -> Result<Vec<Entry>, DbError> {
        if let Db::Sqlite(db) = &self.db {
            let records = records.to_vec();
            return db.write_direct(move |tx| append_direct(tx, &records)).await;
        }
        let tenants = tenants_of(records);
        if let ([tenant], Db::Postgres(pool)) = (tenants.as_slice(), &self.db) {
            let known = self.known_head(tenant);
            if let Some((seq, prev)) = known {
                let mut entries = Vec::with_capacity(records.len());
                let head = chain(records, tenant, seq, prev, &mut entries);
                match append_from_known_head(pool, tenant.as_str(), seq, &entries).await {
                    Ok(true) => {
                        self.remember_head(tenant.as_str(), head);
                        return Ok(entries);
                    }
                    // Another process moved the head: take turns on it, below.
                    Ok(false) => {}
                    Err(e) => {
                        self.forget_heads();
                        return Err(e);
                    }
                }
            }
        }
        let appended = append_postgres(&self.db, &tenants, records).await;
        match &appended {
            Ok(entries) => {
                for tenant in tenants {
                    let last = entries.iter().rev().find(|e| e.tenant == tenant.as_str());
                    if let Some(last) = last {
                        self.remember_head(tenant.as_str(), (last.seq, last.hash.clone()));
                    }
                }
            }
            Err(_) => self.forget_heads(),
        }
        appended
    }

    fn known_head(&self, tenant: &TenantId) -> Option<(i64, String)> {
        let heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        heads.get(tenant.as_str()).cloned()
    }

    fn remember_head(&self, tenant: &str, head: (i64, String)) {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        heads.insert(tenant.to_owned(), head);
    }

    /// After a failed append, whose outcome may be unknown (a commit cut off), every head
    /// is read again before it is built on.
    fn forget_heads(&self) {
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// One page of a tenant's entries, newest first.
    pub async fn page(
        &self,
        tenant: &TenantId,
        filter: &Filter,
        page: &PageRequest,
    ) -> Result<Page<Entry>, ReadError> {
        let mut sql = format!("SELECT {COLUMNS} FROM audit_log WHERE tenant_id = $1");
        let mut binds = vec![Bind::Text(tenant.as_str().to_owned())];
        let mut cond = |column: &str, op: &str, value: Bind| {
            binds.push(value);
            sql.push_str(&format!(" AND {column} {op} ${}", binds.len()));
        };
        if let Some(p) = filter.patient {
            cond("patient_id", "=", Bind::Uuid(p));
        }
        if let Some(a) = &filter.actor {
            cond("actor", "=", Bind::Text(a.clone()));
        }
        if let Some(a) = filter.action {
            cond("action", "=", Bind::Text(a.as_str().to_owned()));
        }
        if let Some(t) = filter.from {
            cond("recorded_at", ">=", Bind::Time(t));
        }
        if let Some(t) = filter.to {
            cond("recorded_at", "<", Bind::Time(t));
        }
        if let Some(after) = page.position::<i64>().map_err(|_| ReadError::BadCursor)? {
            cond("seq", "<", Bind::Int(after));
        }
        binds.push(Bind::Int(page.fetch_limit()));
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", binds.len()));
        let mut tx = self.db.read_in(Scope::Tenant(tenant)).await?;
        let rows: Vec<Row> = on_tx!(&mut tx, |c| {
            let mut q = sqlx::query_as(AssertSqlSafe(sql.as_str()));
            for b in &binds {
                q = match b {
                    Bind::Text(s) => q.bind(s.as_str()),
                    Bind::Uuid(u) => q.bind(*u),
                    Bind::Time(t) => q.bind(*t),
                    Bind::Int(i) => q.bind(*i),
                };
            }
            q.fetch_all(c).await
        })
        .map_err(DbError::from)?;
        tx.commit().await?;
        let entries: Vec<Entry> = rows.into_iter().map(Into::into).collect();
        Ok(Page::from_rows(entries, page, |e| e.seq))
    }

    /// Every tenant with a chain.
    pub async fn tenants(&self) -> Result<Vec<TenantId>, DbError> {
        let mut tx = self.db.read_in(Scope::AllTenants).await?;
        let names: Vec<String> = on_tx!(&mut tx, |c| sqlx::query_scalar(
            "SELECT tenant_id FROM audit_heads ORDER BY tenant_id"
        )
        .fetch_all(c)
        .await)?;
        tx.commit().await?;
        names
            .iter()
            .map(|n| {
                TenantId::parse(n)
                    .map_err(|_| DbError::Invariant("an audit chain's tenant id is not valid"))
            })
            .collect()
    }

    /// Walks a tenant's chain from its start (or retention anchor) to its head.
    pub async fn verify(&self, tenant: &TenantId) -> Result<Verdict, DbError> {
        // One snapshot for the walk: entries appended meanwhile are not half-seen.
        let mut tx = self.db.read_in(Scope::Tenant(tenant)).await?;
        let tenant = tenant.as_str();
        let anchor: Option<(i64, String)> = on_tx!(&mut tx, |c| sqlx::query_as(
            "SELECT seq, hash FROM audit_anchors WHERE tenant_id = $1"
        )
        .bind(tenant)
        .fetch_optional(c)
        .await)?;
        let head: Option<(i64, String)> = on_tx!(&mut tx, |c| sqlx::query_as(
            "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1"
        )
        .bind(tenant)
        .fetch_optional(c)
        .await)?;
        let trim = |(s, h): (i64, String)| (s, h.trim_end().to_owned());
        let mut check = ChainCheck::new(anchor.map(trim));
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_log WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT 1000"
        );
        let mut after = i64::MIN;
        let verdict = |checked, broken| Verdict {
            tenant: tenant.to_owned(),
            checked,
            broken,
        };
        loop {
            let rows: Vec<Row> = on_tx!(&mut tx, |c| sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(tenant)
                .bind(after)
                .fetch_all(c)
                .await)?;
            let Some(last) = rows.last() else { break };
            after = last.seq;
            for row in rows {
                if let Err(b) = check.feed(&row.into()) {
                    return Ok(verdict(check.checked, Some(b)));
                }
            }
        }
        tx.commit().await?;
        let head = head.filter(|(seq, _)| *seq > 0).map(trim);
        Ok(verdict(check.checked, check.finish(head).err()))
    }

    /// Deletes entries recorded before `before` (retention), keeping each chain verifiable
    /// from an anchor: the last removed entry's number and hash.
    pub async fn purge(&self, before: DateTime<Utc>) -> Result<u64, DbError> {
        let mut removed = 0;
        for tenant in self.tenants().await? {
            let mut tx = self.db.begin_in(Scope::Tenant(&tenant)).await?;
            let tenant = tenant.as_str();
            execute!(
                &mut tx,
                sqlx::query("UPDATE audit_policy SET purge_before = $1 WHERE id = 1").bind(before)
            )?;
            // Up to the first entry still in retention: entries of one batch may be a few
            // milliseconds out of time order, and the chain is cut by number.
            let keep_from: Option<i64> = on_tx!(&mut tx, |c| sqlx::query_scalar(
                "SELECT MIN(seq) FROM audit_log WHERE tenant_id = $1 AND recorded_at >= $2"
            )
            .bind(tenant)
            .bind(before)
            .fetch_one(c)
            .await)?;
            let last_old: Option<(i64, String)> = on_tx!(&mut tx, |c| {
                sqlx::query_as(
                "SELECT seq, hash FROM audit_log WHERE tenant_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT 1"
            )
            .bind(tenant)
            .bind(keep_from.unwrap_or(i64::MAX))
            .fetch_optional(c)
            .await
            })?;
            let Some((seq, hash)) = last_old else {
                tx.commit().await?;
                continue;
            };
            execute!(
                &mut tx,
                sqlx::query(
                    "INSERT INTO audit_anchors (tenant_id, seq, hash, purged_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, purged_at = excluded.purged_at",
                )
                .bind(tenant)
                .bind(seq)
                .bind(hash.trim_end())
                .bind(Utc::now())
            )?;
            removed += execute!(
                &mut tx,
                sqlx::query("DELETE FROM audit_log WHERE tenant_id = $1 AND seq <= $2")
                    .bind(tenant)
                    .bind(seq)
            )?;
            tx.commit().await?;
        }
        Ok(removed)
    }
}

/// The tenants of `records`, in one order, so that appends from several processes lock
/// their heads in that order and cannot deadlock.
fn tenants_of(records: &[AuditRecord]) -> Vec<&TenantId> {
    let mut tenants: Vec<&TenantId> = Vec::new();
    for r in records {
        if !tenants.contains(&&r.tenant) {
            tenants.push(&r.tenant);
        }
    }
    tenants.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    tenants
}

/// Chains `tenant`'s records after its head (`seq`, `prev`) onto `entries`; returns the
/// new head.
fn chain(
    records: &[AuditRecord],
    tenant: &TenantId,
    mut seq: i64,
    mut prev: String,
    entries: &mut Vec<Entry>,
) -> (i64, String) {
    for record in records.iter().filter(|r| &r.tenant == tenant) {
        seq += 1;
        let entry = Entry::chained(record, seq, &prev);
        prev = entry.hash.clone();
        entries.push(entry);
    }
    (seq, prev)
}

/// [`AuditStore::append`] on SQLite, in one direct write.
fn append_direct(
    tx: &rusqlite::Transaction<'_>,
    records: &[AuditRecord],
) -> rusqlite::Result<Vec<Entry>> {
    let mut entries = Vec::with_capacity(records.len());
    for tenant in tenants_of(records) {
        tx.prepare_cached(
            "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (?1, 0, ?2) ON CONFLICT (tenant_id) DO NOTHING",
        )?
        .execute(rusqlite::params![tenant.as_str(), GENESIS])?;
        let (seq, prev): (i64, String) = tx
            .prepare_cached("SELECT seq, hash FROM audit_heads WHERE tenant_id = ?1")?
            .query_row([tenant.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let first = entries.len();
        let (seq, prev) = chain(
            records,
            tenant,
            seq,
            prev.trim_end().to_owned(),
            &mut entries,
        );
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit_log (tenant_id, seq, entry_id, recorded_at, actor, roles, action, resource_type,
                resource_id, patient_id, outcome, request_id, source_ip, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        for e in &entries[first..] {
            insert.execute(rusqlite::params![
                e.tenant,
                e.seq,
                e.entry_id.as_bytes().as_slice(),
                store::direct::time(e.recorded_at),
                e.actor,
                e.roles,
                e.action,
                e.resource_type,
                e.resource_id,
                e.patient_id.as_ref().map(|p| p.as_bytes().as_slice()),
                e.outcome,
                e.request_id,
                e.source_ip,
                e.prev_hash,
                e.hash,
            ])?;
        }
        tx.prepare_cached("UPDATE audit_heads SET seq = ?1, hash = ?2 WHERE tenant_id = ?3")?
            .execute(rusqlite::params![seq, prev, tenant.as_str()])?;
    }
    Ok(entries)
}

/// [`AuditStore::append`] on PostgreSQL, in few round trips, since every audited request
/// waits for it: a batch of one tenant begins in its scope; each tenant's head is created,
/// locked and read in one statement; its entries and its new head are stored in one
/// statement per chunk.
async fn append_postgres(
    db: &Db,
    tenants: &[&TenantId],
    records: &[AuditRecord],
) -> Result<Vec<Entry>, DbError> {
    let mut tx = match tenants {
        [one] => db.begin_in(Scope::Tenant(one)).await?,
        _ => db.begin().await?,
    };
    let mut entries = Vec::with_capacity(records.len());
    for tenant in tenants {
        if tenants.len() > 1 {
            // One tenant at a time: row-level security holds each chain's rows to its
            // own tenant even inside a batch of several.
            tx.enter(Scope::Tenant(tenant)).await?;
        }
        let Tx::Postgres(t) = &mut tx else {
            return Err(DbError::Invariant("a PostgreSQL append on another backend"));
        };
        let (seq, prev) = lock_head(t, tenant.as_str()).await?;
        let first = entries.len();
        chain(records, tenant, seq, prev, &mut entries);
        store_chain(t, tenant.as_str(), &entries[first..]).await?;
    }
    tx.commit().await?;
    Ok(entries)
}

/// `entries` of one chain, which follow its head at `from`, stored and the head moved to
/// the last of them by one statement in a transaction of its own: one round trip, where
/// [`append_postgres`] takes four (`BEGIN` in the tenant's scope, the head locked and
/// read, the entries, `COMMIT`), and every audited request waits for its batch. The head
/// moves only if it is still at `from`: `false`, and nothing stored, when another process
/// appended since this one last did. The statement enters the tenant itself: its first
/// step, a condition without columns that PostgreSQL checks once before it reads a row,
/// sets the tenant for row-level security, local to the statement's transaction (should it
/// ever run later, the policies would match no head, and the append would take the other
/// way).
async fn append_from_known_head(
    pool: &sqlx::PgPool,
    tenant: &str,
    from: i64,
    entries: &[Entry],
) -> Result<bool, DbError> {
    const STORE_AT_HEAD: &str = "WITH head AS (
            UPDATE audit_heads SET seq = $16, hash = $17
            WHERE tenant_id = $1 AND seq = $18
              AND (SELECT set_config('app.current_tenant', $1, true) IS NOT NULL
                   AND set_config('app.all_tenants', 'off', true) IS NOT NULL)
            RETURNING seq),
        entries AS (
            INSERT INTO audit_log (tenant_id, seq, entry_id, recorded_at, actor, roles, action,
                resource_type, resource_id, patient_id, outcome, request_id, source_ip, prev_hash, hash)
            SELECT $1, u.* FROM head, unnest($2::int8[], $3::uuid[], $4::timestamptz[], $5::text[],
                $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[], $11::text[],
                $12::text[], $13::text[], $14::text[], $15::text[]) AS u)
        SELECT COUNT(*) FROM head";
    let Some(last) = entries.last() else {
        return Ok(true);
    };
    let row = bind_entries(sqlx::query(STORE_AT_HEAD), tenant, entries)
        .bind(last.seq)
        .bind(&last.hash)
        .bind(from)
        .fetch_one(pool)
        .await?;
    Ok(sqlx::Row::try_get::<i64, _>(&row, 0)? == 1)
}

/// The tenant's head, created at the chain's start if missing, and locked until the
/// transaction ends (the no-op update of an upsert takes the row's lock), so appends from
/// several processes to one tenant take turns.
async fn lock_head(t: &mut sqlx::PgConnection, tenant: &str) -> Result<(i64, String), DbError> {
    let (seq, hash): (i64, String) = sqlx::query_as(
        "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET seq = audit_heads.seq
         RETURNING seq, hash",
    )
    .bind(tenant)
    .bind(GENESIS)
    .fetch_one(t)
    .await?;
    Ok((seq, hash.trim_end().to_owned()))
}

/// The entries of one chain and its head moved to the last of them, in one statement.
/// The entries travel as one array per column, so the statement's text is the same for any
/// number of entries: prepared once per connection, where a `VALUES` list was a statement of
/// its own, parsed and planned, for every batch size.
const STORE_ENTRIES: &str = "WITH entries AS (
        INSERT INTO audit_log (tenant_id, seq, entry_id, recorded_at, actor, roles, action,
            resource_type, resource_id, patient_id, outcome, request_id, source_ip, prev_hash, hash)
        SELECT $1, * FROM unnest($2::int8[], $3::uuid[], $4::timestamptz[], $5::text[],
            $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[], $11::text[], $12::text[],
            $13::text[], $14::text[], $15::text[]))
    UPDATE audit_heads SET seq = $16, hash = $17 WHERE tenant_id = $1";

async fn store_chain(
    t: &mut sqlx::PgConnection,
    tenant: &str,
    entries: &[Entry],
) -> Result<(), DbError> {
    let Some(last) = entries.last() else {
        return Ok(());
    };
    bind_entries(sqlx::query(STORE_ENTRIES), tenant, entries)
        .bind(last.seq)
        .bind(&last.hash)
        .execute(t)
        .await?;
    Ok(())
}

/// Binds `$1` to `$15` of the statements that store a chain's entries: the tenant, then
/// one array per column.
fn bind_entries<'q>(q: PgQuery<'q>, tenant: &'q str, entries: &'q [Entry]) -> PgQuery<'q> {
    let column = |f: fn(&Entry) -> &str| entries.iter().map(f).collect::<Vec<&str>>();
    let optional =
        |f: fn(&Entry) -> Option<&str>| entries.iter().map(f).collect::<Vec<Option<&str>>>();
    q.bind(tenant)
        .bind(entries.iter().map(|e| e.seq).collect::<Vec<i64>>())
        .bind(entries.iter().map(|e| e.entry_id).collect::<Vec<Uuid>>())
        .bind(entries.iter().map(|e| e.recorded_at).collect::<Vec<_>>())
        .bind(column(|e| &e.actor))
        .bind(column(|e| &e.roles))
        .bind(column(|e| &e.action))
        .bind(column(|e| &e.resource_type))
        .bind(optional(|e| e.resource_id.as_deref()))
        .bind(entries.iter().map(|e| e.patient_id).collect::<Vec<_>>())
        .bind(column(|e| &e.outcome))
        .bind(optional(|e| e.request_id.as_deref()))
        .bind(optional(|e| e.source_ip.as_deref()))
        .bind(column(|e| &e.prev_hash))
        .bind(column(|e| &e.hash))
}

/// A chain with entries not yet published: its tenant, the last entry published and the
/// chain's last entry.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Behind {
    pub tenant_id: String,
    pub published: i64,
    pub head: i64,
}

/// The chains with entries not yet published on `audit-events`.
pub async fn behind(tx: &mut Tx) -> Result<Vec<Behind>, DbError> {
    Ok(on_tx!(tx, |c| sqlx::query_as(BEHIND).fetch_all(c).await)?)
}

const BEHIND: &str = "SELECT h.tenant_id, COALESCE(p.seq, 0) AS published, h.seq AS head
     FROM audit_heads h LEFT JOIN audit_published p ON p.tenant_id = h.tenant_id
     WHERE h.seq > COALESCE(p.seq, 0) ORDER BY h.tenant_id";

/// [`behind`] on a direct read's snapshot ([`store::SqliteDb::snapshot`]).
pub fn behind_direct(c: &rusqlite::Connection) -> Result<Vec<Behind>, DbError> {
    let mut statement = c.prepare_cached(BEHIND)?;
    let rows = statement.query_map([], |r| {
        Ok(Behind {
            tenant_id: r.get(0)?,
            published: r.get(1)?,
            head: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The statement of [`entries_after`] and [`entries_after_direct`] (SQLite reads `$n` as
/// the n-th parameter too).
static ENTRIES_AFTER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM audit_log WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    )
});

/// Up to `limit` of `tenant`'s entries after `seq`, in chain order.
pub async fn entries_after(
    tx: &mut Tx,
    tenant: &str,
    seq: i64,
    limit: usize,
) -> Result<Vec<Entry>, DbError> {
    let rows: Vec<Row> = on_tx!(tx, |c| sqlx::query_as(AssertSqlSafe(
        ENTRIES_AFTER.as_str()
    ))
    .bind(tenant)
    .bind(seq)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(c)
    .await)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// [`entries_after`] on a direct read's snapshot. The relay reads every entry the trail
/// holds once; through sqlx each value of each row was copied out of SQLite first, and a
/// profile of the hub under GET patient put that read and its thread at a tenth of the
/// hub's CPU.
pub fn entries_after_direct(
    c: &rusqlite::Connection,
    tenant: &str,
    seq: i64,
    limit: usize,
) -> Result<Vec<Entry>, DbError> {
    let mut statement = c.prepare_cached(&ENTRIES_AFTER)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map(rusqlite::params![tenant, seq, limit], |r| {
        Ok(Entry {
            tenant: r.get(0)?,
            seq: r.get(1)?,
            entry_id: r.get(2)?,
            recorded_at: store::direct_read::at(r, 3)?,
            actor: r.get(4)?,
            roles: r.get(5)?,
            action: r.get(6)?,
            resource_type: r.get(7)?,
            resource_id: r.get(8)?,
            patient_id: r.get(9)?,
            outcome: r.get(10)?,
            request_id: r.get(11)?,
            source_ip: r.get(12)?,
            prev_hash: r.get(13)?,
            hash: r.get(14)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const MARK_PUBLISHED: &str = "INSERT INTO audit_published (tenant_id, seq) VALUES ($1, $2)
     ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq";

/// Records each chain of `marks` as published up to its entry: (tenant, seq).
pub async fn mark_published(tx: &mut Tx, marks: &[(String, i64)]) -> Result<(), DbError> {
    for (tenant, seq) in marks {
        execute!(tx, sqlx::query(MARK_PUBLISHED).bind(tenant).bind(*seq))?;
    }
    Ok(())
}

/// [`mark_published`] in a direct SQLite write ([`store::direct`]), beside the appends.
pub async fn mark_published_direct(
    db: &store::SqliteDb,
    marks: Vec<(String, i64)>,
) -> Result<(), DbError> {
    db.write_direct(move |tx| {
        let mut mark = tx.prepare_cached(MARK_PUBLISHED)?;
        for (tenant, seq) in &marks {
            mark.execute(rusqlite::params![tenant, seq])?;
        }
        Ok(())
    })
    .await
}

/// The `audit.entry.recorded.v1` of entry `e`, as JSON written in one pass (the relay
/// publishes every entry). Its event id is the entry's id, so an entry published again is
/// the same event to consumers; it is keyed by tenant, so a chain's entries stay in order on
/// one partition.
pub fn event_json(e: &Entry) -> Result<String, DbError> {
    let (meta, payload) = recorded(e).ok_or(DbError::Invariant(
        "an audit chain's tenant id is not valid",
    ))?;
    EventEnvelope::json_of(&meta, EventId::from_uuid(e.entry_id), &e.tenant, &payload)
        .map_err(|_| DbError::Invariant("an audit event does not serialize"))
}

fn recorded(e: &Entry) -> Option<(EventMeta, AuditEntryRecordedV1)> {
    let meta = EventMeta {
        source: crate::SERVICE,
        tenant: TenantId::parse(&e.tenant).ok()?,
        correlation_id: e
            .request_id
            .as_deref()
            .and_then(|r| r.parse().ok())
            // Not a fresh id: an entry published again must be the same event.
            .unwrap_or(CorrelationId::from_uuid(e.entry_id)),
        causation_id: None,
        occurred_at: e.recorded_at,
    };
    let payload = AuditEntryRecordedV1 {
        entry_id: e.entry_id,
        seq: e.seq,
        recorded_at: e.recorded_at,
        actor: e.actor.clone(),
        roles: e.role_names(),
        action: e.action.clone(),
        resource_type: e.resource_type.clone(),
        resource_id: e.resource_id.clone(),
        patient_id: e.patient_id,
        outcome: e.outcome.clone(),
        request_id: e.request_id.clone(),
        source_ip: e.source_ip.clone(),
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
    };
    Some((meta, payload))
}
