//! A run of a batch's HL7 results in a few statements, whatever its length. The patients
//! and orders its messages name are read before the run, a statement per kind of row
//! ([`Prefetched`]: in the run's transaction on PostgreSQL, in its snapshot on SQLite,
//! where each message read five). On PostgreSQL what the messages did is then written in
//! one statement per table once every message of the run has been applied
//! ([`write_run`]; SQLite writes a run in one direct write, `store::direct`). Taken one
//! message at a time, each result was about seven statements there (the patient, the
//! order with its children, the order's update, its test, its result, the message, its
//! events), each a round trip to a server that shares the machine's cores with the hub:
//! a run of 100 was some 700 of them, where it is now about ten.
//!
//! The writes are the same rows as [`super::sql`] and [`super::hl7`] write one at a time,
//! and the orders are updated only at the versions read, so an order changed by another
//! connection since the run read it fails the whole run (see `hl7::batch`).

use super::direct::MessageWrite;
use super::hl7::PATIENT_BY_MRN_ANY;
use super::lookup::Lookups;
use super::rows::{OrderRow, ResultRow, SpecimenRow, TestRow};
use super::sql::{CHILDREN_OF_ANY, ORDERS_OF_ANY, assemble_all, child_writes};
use crate::domain::LabOrder;
use kernel::TenantId;
use kernel::ids::LabOrderId;
use sqlx::AssertSqlSafe;
use std::collections::HashMap;
use store::{DbError, Tx};
use uuid::Uuid;

/// The patients (by MRN) and orders (by our id) a run's messages name, read before the
/// run (in its transaction on PostgreSQL, in its snapshot on SQLite): each key asked for,
/// with what was found.
#[derive(Debug, Default)]
pub(crate) struct Prefetched {
    patients: HashMap<String, Option<Uuid>>,
    orders: HashMap<Uuid, Option<LabOrder>>,
}

impl Prefetched {
    /// Reads the patients with `mrns` and the orders with `orders` (with their children),
    /// in `tx` on PostgreSQL.
    pub async fn read(
        tx: &mut Tx,
        tenant: &TenantId,
        mrns: Vec<String>,
        orders: Vec<Uuid>,
    ) -> Result<Self, DbError> {
        let Tx::Postgres(pg) = tx else {
            return Err(DbError::Invariant(
                "a run on SQLite reads ahead in a snapshot",
            ));
        };
        let patients: Vec<(String, Uuid)> = match mrns.is_empty() {
            true => Vec::new(),
            false => {
                sqlx::query_as(PATIENT_BY_MRN_ANY)
                    .bind(tenant.as_str())
                    .bind(&mrns)
                    .fetch_all(&mut **pg)
                    .await?
            }
        };
        // Four plain statements, not one with the children as JSON arrays (as a single
        // order is read, `sql::ORDER_WITH_CHILDREN`): for a run's hundred orders that one
        // took 8 ms, the dearest statement of the HL7 batches, the server building a JSON
        // object per child row.
        let found = match orders.is_empty() {
            true => Vec::new(),
            false => {
                let rows: Vec<OrderRow> = sqlx::query_as(AssertSqlSafe(ORDERS_OF_ANY.as_str()))
                    .bind(tenant.as_str())
                    .bind(&orders)
                    .fetch_all(&mut **pg)
                    .await?;
                let ids: Vec<Uuid> = rows.iter().map(|r| r.order_id).collect();
                let [tests, results, specimens] = &*CHILDREN_OF_ANY;
                let tests: Vec<TestRow> = sqlx::query_as(AssertSqlSafe(tests.as_str()))
                    .bind(&ids)
                    .fetch_all(&mut **pg)
                    .await?;
                let results: Vec<ResultRow> = sqlx::query_as(AssertSqlSafe(results.as_str()))
                    .bind(&ids)
                    .fetch_all(&mut **pg)
                    .await?;
                let specimens: Vec<SpecimenRow> = sqlx::query_as(AssertSqlSafe(specimens.as_str()))
                    .bind(&ids)
                    .fetch_all(&mut **pg)
                    .await?;
                assemble_all(rows, tests, results, specimens)?
            }
        };
        Ok(Self::of(mrns, patients, orders, found))
    }

    /// What was asked for (`mrns`, `orders`) and what of it was found.
    pub fn of(
        mrns: Vec<String>,
        patients: Vec<(String, Uuid)>,
        orders: Vec<Uuid>,
        found: Vec<LabOrder>,
    ) -> Self {
        let mut ahead = Self {
            patients: mrns.into_iter().map(|m| (m, None)).collect(),
            orders: orders.into_iter().map(|o| (o, None)).collect(),
        };
        for (mrn, id) in patients {
            ahead.patients.insert(mrn, Some(id));
        }
        for order in found {
            ahead.orders.insert(order.id.as_uuid(), Some(order));
        }
        ahead
    }
}

/// Lookups that answer from what a run read ahead, and read the rest from `reads`: the
/// run's transaction on PostgreSQL, its snapshot on SQLite.
pub(crate) struct Ahead<'a, L> {
    pub reads: &'a mut L,
    pub ahead: &'a mut Prefetched,
}

impl<L: Lookups> Lookups for Ahead<'_, L> {
    async fn earlier_ack(
        &mut self,
        tenant: &TenantId,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<String>, DbError> {
        self.reads.earlier_ack(tenant, sender, control_id).await
    }

    async fn patient_by_mrn(
        &mut self,
        tenant: &TenantId,
        mrn: &str,
    ) -> Result<Option<Uuid>, DbError> {
        match self.ahead.patients.get(mrn) {
            Some(found) => Ok(*found),
            None => self.reads.patient_by_mrn(tenant, mrn).await,
        }
    }

    async fn order(
        &mut self,
        tenant: &TenantId,
        id: LabOrderId,
    ) -> Result<Option<LabOrder>, DbError> {
        // Taken, not copied: a run that reads an order twice depends on its own writes
        // and is taken again message by message; a second read goes to `reads`.
        match self.ahead.orders.remove(&id.as_uuid()) {
            Some(found) => Ok(found),
            None => self.reads.order(tenant, id).await,
        }
    }

    async fn order_by_number(
        &mut self,
        tenant: &TenantId,
        column: &'static str,
        number: &str,
    ) -> Result<Option<LabOrder>, DbError> {
        self.reads.order_by_number(tenant, column, number).await
    }

    async fn open_orders_of(
        &mut self,
        tenant: &TenantId,
        patient: Uuid,
    ) -> Result<Vec<LabOrder>, DbError> {
        self.reads.open_orders_of(tenant, patient).await
    }
}

/// The orders of a run, each updated from `$15` (the version read) only: as
/// `sql::UPDATE_ORDER`, for many orders at once.
const UPDATE_ORDERS: &str =
    "UPDATE lab_orders o SET status = v.status, collected_at = v.collected_at,
        received_at = v.received_at, reported_at = v.reported_at, cancelled_at = v.cancelled_at,
        cancel_reason = v.cancel_reason, awaiting_preauthorization = v.awaiting,
        preauthorization = v.preauthorization, filler_order = v.filler_order, version = v.version,
        updated_at = v.updated_at
     FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
                 $7::timestamptz[], $8::timestamptz[], $9::text[], $10::bool[], $11::text[],
                 $12::text[], $13::bigint[], $14::timestamptz[], $15::bigint[])
       AS v(order_id, priority, status, collected_at, received_at, reported_at, cancelled_at,
            cancel_reason, awaiting, preauthorization, filler_order, version, updated_at, read_at)
     WHERE o.tenant_id = $1 AND o.order_id = v.order_id AND o.priority = v.priority
       AND o.version = v.read_at";

const INSERT_TESTS: &str = "INSERT INTO lab_tests (test_id, tenant_id, order_id, position, test_code, test_name, loinc_code, status)
     SELECT t.test_id, $1, t.order_id, t.position, t.test_code, t.test_name, t.loinc_code, t.status
     FROM UNNEST($2::uuid[], $3::uuid[], $4::int2[], $5::text[], $6::text[], $7::text[], $8::text[])
       AS t(test_id, order_id, position, test_code, test_name, loinc_code, status)
     ON CONFLICT (test_id) DO UPDATE SET status = excluded.status";

const INSERT_RESULTS: &str = "INSERT INTO lab_results (result_id, tenant_id, test_id, order_id, revision, result_value, result_unit,
        reference_range, abnormal_flag, performed_by, performed_at, recorded_at, verified_by, verified_at,
        correction, critical_flag)
     SELECT r.result_id, $1, r.test_id, r.order_id, r.revision, r.result_value, r.result_unit,
        r.reference_range, r.abnormal_flag, r.performed_by, r.performed_at, r.recorded_at,
        r.verified_by, r.verified_at, r.correction, r.critical_flag
     FROM UNNEST($2::uuid[], $3::uuid[], $4::uuid[], $5::int2[], $6::text[], $7::text[], $8::text[],
                 $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::text[],
                 $14::timestamptz[], $15::bool[], $16::text[])
       AS r(result_id, test_id, order_id, revision, result_value, result_unit, reference_range,
            abnormal_flag, performed_by, performed_at, recorded_at, verified_by, verified_at,
            correction, critical_flag)
     ON CONFLICT (result_id) DO UPDATE SET verified_by = excluded.verified_by, verified_at = excluded.verified_at";

const INSERT_SPECIMENS: &str = "INSERT INTO specimens (specimen_id, tenant_id, order_id, specimen_type, collected_at, collected_by,
        received_at, condition)
     SELECT s.specimen_id, $1, s.order_id, s.specimen_type, s.collected_at, s.collected_by,
        s.received_at, s.condition
     FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[],
                 $7::timestamptz[], $8::text[])
       AS s(specimen_id, order_id, specimen_type, collected_at, collected_by, received_at, condition)
     ON CONFLICT (specimen_id) DO UPDATE SET received_at = excluded.received_at, condition = excluded.condition";

const INSERT_MESSAGES: &str = "INSERT INTO hl7_messages (message_id, tenant_id, sender, control_id, message_type, received_at, status,
        ack_code, error_code, error_location, error_text, raw, ack)
     SELECT m.message_id, $1, m.sender, m.control_id, m.message_type, m.received_at, m.status,
        m.ack_code, m.error_code, m.error_location, m.error_text, m.raw, m.ack
     FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[],
                 $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
       AS m(message_id, sender, control_id, message_type, received_at, status, ack_code,
            error_code, error_location, error_text, raw, ack)
     ON CONFLICT (tenant_id, sender, control_id) DO NOTHING";

const INSERT_UNMATCHED: &str = "INSERT INTO hl7_unmatched_results (unmatched_id, tenant_id, message_id, position, reason, patient_identifier,
        placer_order, filler_order, service_code, observations, received_at, status)
     SELECT u.unmatched_id, $1, u.message_id, u.position, u.reason, u.patient_identifier,
        u.placer_order, u.filler_order, u.service_code, u.observations::jsonb, u.received_at, u.status
     FROM UNNEST($2::uuid[], $3::uuid[], $4::int2[], $5::text[], $6::text[], $7::text[],
                 $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::text[])
       AS u(unmatched_id, message_id, position, reason, patient_identifier, placer_order,
            filler_order, service_code, observations, received_at, status)";

/// One column of `rows`, as an array to bind.
fn column<T, U>(rows: &[T], f: impl Fn(&T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// What [`write_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    Done,
    /// An order is no longer at the version the run read it at.
    Stale,
    /// A message of the run came before, under its sender and control id (or another
    /// connection's transaction has it): the run cannot be taken as if all were new.
    SentBefore,
}

/// Writes what the messages of a run did, in `tx` on PostgreSQL, taking every message as
/// new: unless [`Written::Done`], `tx` is to be rolled back. Each order and each control id
/// must be in at most one message of the run (the run's caller checks): one statement
/// cannot update a row twice.
pub(crate) async fn write_run(
    tx: &mut Tx,
    tenant: &TenantId,
    writes: Vec<MessageWrite>,
) -> Result<Written, DbError> {
    let Tx::Postgres(pg) = tx else {
        return Err(DbError::Invariant(
            "a run's writes are gathered on PostgreSQL only",
        ));
    };
    let c = &mut **pg;
    let tenant = tenant.as_str();
    // The messages first: one sent before (a batch sent again, its ACKs lost) is not
    // written again, and the run then stops here.
    let records: Vec<_> = writes.iter().map(|m| &m.record).collect();
    let inserted = sqlx::query(INSERT_MESSAGES)
        .bind(tenant)
        .bind(column(&records, |m| m.id))
        .bind(column(&records, |m| m.sender.as_deref()))
        .bind(column(&records, |m| m.control_id.as_deref()))
        .bind(column(&records, |m| m.message_type.as_deref()))
        .bind(column(&records, |m| m.received_at))
        .bind(column(&records, |m| m.status))
        .bind(column(&records, |m| m.ack_code))
        .bind(column(&records, |m| m.error_code.as_deref()))
        .bind(column(&records, |m| m.error_location.as_deref()))
        .bind(column(&records, |m| m.error_text.as_deref()))
        .bind(column(&records, |m| m.raw.as_str()))
        .bind(column(&records, |m| m.ack.as_str()))
        .execute(&mut *c)
        .await?
        .rows_affected();
    if inserted != records.len() as u64 {
        return Ok(Written::SentBefore);
    }
    let orders: Vec<&(LabOrder, LabOrder)> = writes.iter().flat_map(|m| &m.changed).collect();
    if !orders.is_empty() {
        let updated = sqlx::query(UPDATE_ORDERS)
            .bind(tenant)
            .bind(column(&orders, |(_, o)| o.id.as_uuid()))
            .bind(column(&orders, |(_, o)| o.priority.as_str()))
            .bind(column(&orders, |(_, o)| o.status.as_str()))
            .bind(column(&orders, |(_, o)| o.collected_at))
            .bind(column(&orders, |(_, o)| o.received_at))
            .bind(column(&orders, |(_, o)| o.reported_at))
            .bind(column(&orders, |(_, o)| o.cancelled_at))
            .bind(column(&orders, |(_, o)| o.cancel_reason.as_deref()))
            .bind(column(&orders, |(_, o)| o.awaiting_preauthorization))
            .bind(column(&orders, |(_, o)| o.preauthorization.as_deref()))
            .bind(column(&orders, |(_, o)| o.filler_order.as_deref()))
            .bind(column(&orders, |(_, o)| o.version))
            .bind(column(&orders, |(_, o)| o.updated_at))
            .bind(column(&orders, |(before, _)| before.version))
            .execute(&mut *c)
            .await?
            .rows_affected();
        if updated != orders.len() as u64 {
            return Ok(Written::Stale);
        }
    }
    let (mut tests, mut results, mut specimens) = (Vec::new(), Vec::new(), Vec::new());
    for (before, after) in &orders {
        let order = after.id.as_uuid();
        let w = child_writes(after, Some(before));
        tests.extend(w.tests.into_iter().map(|(p, t)| (order, p, t)));
        results.extend(w.results.into_iter().map(|(t, n, r)| (order, t, n, r)));
        specimens.extend(w.specimens.into_iter().map(|s| (order, s)));
    }
    if !tests.is_empty() {
        sqlx::query(INSERT_TESTS)
            .bind(tenant)
            .bind(column(&tests, |(_, _, t)| t.id))
            .bind(column(&tests, |(o, _, _)| *o))
            .bind(column(&tests, |(_, p, _)| *p))
            .bind(column(&tests, |(_, _, t)| t.test_code.as_str()))
            .bind(column(&tests, |(_, _, t)| t.test_name.as_str()))
            .bind(column(&tests, |(_, _, t)| t.loinc_code.as_deref()))
            .bind(column(&tests, |(_, _, t)| t.status.as_str()))
            .execute(&mut *c)
            .await?;
    }
    if !results.is_empty() {
        sqlx::query(INSERT_RESULTS)
            .bind(tenant)
            .bind(column(&results, |(_, _, _, r)| r.id))
            .bind(column(&results, |(_, t, _, _)| t.id))
            .bind(column(&results, |(o, _, _, _)| *o))
            .bind(column(&results, |(_, _, n, _)| *n))
            .bind(column(&results, |(_, _, _, r)| r.value.as_str()))
            .bind(column(&results, |(_, _, _, r)| r.unit.as_deref()))
            .bind(column(&results, |(_, _, _, r)| {
                r.reference_range.as_deref()
            }))
            .bind(column(&results, |(_, _, _, r)| {
                r.abnormal_flag.map(|f| f.as_str())
            }))
            .bind(column(&results, |(_, _, _, r)| r.performed_by.as_str()))
            .bind(column(&results, |(_, _, _, r)| r.performed_at))
            .bind(column(&results, |(_, _, _, r)| r.recorded_at))
            .bind(column(&results, |(_, _, _, r)| r.verified_by.as_deref()))
            .bind(column(&results, |(_, _, _, r)| r.verified_at))
            .bind(column(&results, |(_, _, _, r)| r.correction))
            .bind(column(&results, |(_, _, _, r)| {
                r.critical.map(|f| f.as_str())
            }))
            .execute(&mut *c)
            .await?;
    }
    if !specimens.is_empty() {
        sqlx::query(INSERT_SPECIMENS)
            .bind(tenant)
            .bind(column(&specimens, |(_, s)| s.id))
            .bind(column(&specimens, |(o, _)| *o))
            .bind(column(&specimens, |(_, s)| s.specimen_type.as_str()))
            .bind(column(&specimens, |(_, s)| s.collected_at))
            .bind(column(&specimens, |(_, s)| s.collected_by.as_str()))
            .bind(column(&specimens, |(_, s)| s.received_at))
            .bind(column(&specimens, |(_, s)| s.condition.as_deref()))
            .execute(&mut *c)
            .await?;
    }
    let unmatched: Vec<_> = writes
        .iter()
        .flat_map(|m| m.unmatched.iter().map(|u| (m.record.id, u)))
        .collect();
    if !unmatched.is_empty() {
        let observations = unmatched
            .iter()
            .map(|(_, u)| serde_json::to_string(&u.observations))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| DbError::Invariant("unmatched observations that are not JSON"))?;
        sqlx::query(INSERT_UNMATCHED)
            .bind(tenant)
            .bind(column(&unmatched, |(_, u)| u.id))
            .bind(column(&unmatched, |(m, _)| *m))
            .bind(column(&unmatched, |(_, u)| u.position))
            .bind(column(&unmatched, |(_, u)| u.reason.as_str()))
            .bind(column(&unmatched, |(_, u)| u.patient_identifier.as_deref()))
            .bind(column(&unmatched, |(_, u)| u.placer_order.as_deref()))
            .bind(column(&unmatched, |(_, u)| u.filler_order.as_deref()))
            .bind(column(&unmatched, |(_, u)| u.service_code.as_deref()))
            .bind(observations)
            .bind(column(&unmatched, |(_, u)| u.received_at))
            .bind(column(&unmatched, |(_, u)| u.status.as_str()))
            .execute(&mut *c)
            .await?;
    }
    let events: Vec<_> = writes.into_iter().flat_map(|m| m.events).collect();
    store::outbox::append(tx, &events).await?;
    Ok(Written::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AbnormalFlag, CriticalLimits, SubmittedResult};
    use crate::store::direct::tests::{applied, collected, lab_db, placed};
    use crate::store::hl7::{MessageRecord, Unmatched, UnmatchedObservation, open_unmatched};
    use crate::store::lookup::Direct;
    use crate::store::{LabStore, SqlLabStore, remember_patient};
    use chrono::Utc;
    use store::{Db, Scope, on_tx};
    use testkit::TestDatabase;

    testkit::on_both_databases!(a_run_reads_the_patients_and_orders_it_names_at_once);

    /// Lookups that are never to be needed.
    struct Nowhere;

    impl Lookups for Nowhere {
        async fn earlier_ack(
            &mut self,
            _: &TenantId,
            _: &str,
            _: &str,
        ) -> Result<Option<String>, DbError> {
            Err(DbError::Invariant("read past what was read ahead"))
        }

        async fn patient_by_mrn(&mut self, _: &TenantId, _: &str) -> Result<Option<Uuid>, DbError> {
            Err(DbError::Invariant("read past what was read ahead"))
        }

        async fn order(
            &mut self,
            _: &TenantId,
            _: LabOrderId,
        ) -> Result<Option<LabOrder>, DbError> {
            Err(DbError::Invariant("read past what was read ahead"))
        }

        async fn order_by_number(
            &mut self,
            _: &TenantId,
            _: &'static str,
            _: &str,
        ) -> Result<Option<LabOrder>, DbError> {
            Err(DbError::Invariant("read past what was read ahead"))
        }

        async fn open_orders_of(
            &mut self,
            _: &TenantId,
            _: Uuid,
        ) -> Result<Vec<LabOrder>, DbError> {
            Err(DbError::Invariant("read past what was read ahead"))
        }
    }

    /// Read ahead, in a transaction on PostgreSQL and a snapshot on SQLite: the patients
    /// and orders (whole, children in their order) a run names are answered without
    /// another read, those not found too; only what it did not name is read.
    async fn a_run_reads_the_patients_and_orders_it_names_at_once(database: TestDatabase) {
        let db = lab_db(&database, 2).await;
        let lab = SqlLabStore::new(db.clone());
        let (a, b) = (placed(), placed());
        lab.insert(&a, &[]).await.unwrap();
        lab.insert(&b, &[]).await.unwrap();
        lab.update(&a, &resulted(&a), &[]).await.unwrap();
        lab.update(&b, &resulted(&b), &[]).await.unwrap();
        let tenant = a.tenant.clone();
        let patient = a.patient_id.as_uuid();
        let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
        remember_patient(&mut tx, &tenant, patient, "MRN-1", Utc::now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let stored = lab.order(&tenant, a.id).await.unwrap().unwrap();
        let stored_b = lab.order(&tenant, b.id).await.unwrap().unwrap();
        let absent = LabOrderId::new();
        let mrns = vec!["MRN-1".to_owned(), "MRN-NONE".to_owned()];
        let orders = vec![a.id.as_uuid(), absent.as_uuid(), b.id.as_uuid()];
        let mut ahead = match &db {
            Db::Sqlite(sqlite) => Direct(sqlite.snapshot().unwrap())
                .prefetch(&tenant, mrns, orders)
                .unwrap(),
            Db::Postgres(_) => {
                let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
                let ahead = Prefetched::read(&mut tx, &tenant, mrns, orders)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                ahead
            }
        };
        let mut reads = Ahead {
            reads: &mut Nowhere,
            ahead: &mut ahead,
        };
        assert_eq!(
            reads.patient_by_mrn(&tenant, "MRN-1").await.unwrap(),
            Some(patient)
        );
        assert_eq!(
            reads.patient_by_mrn(&tenant, "MRN-NONE").await.unwrap(),
            None
        );
        assert_eq!(reads.order(&tenant, a.id).await.unwrap(), Some(stored));
        assert_eq!(reads.order(&tenant, absent).await.unwrap(), None);
        // Read together, each order has its own tests, results and specimens.
        assert_eq!(reads.order(&tenant, b.id).await.unwrap(), Some(stored_b));
        assert!(reads.patient_by_mrn(&tenant, "MRN-2").await.is_err());
        // Each order once: a second read of one is the run's own.
        assert!(reads.order(&tenant, a.id).await.is_err());
        db.close().await;
    }

    fn resulted(before: &LabOrder) -> LabOrder {
        let mut after = collected(before, "nurse");
        let glucose = SubmittedResult {
            test_code: "GLU".into(),
            value: "612".into(),
            unit: Some("mg/dL".into()),
            reference_range: Some("70-99".into()),
            abnormal_flag: Some(AbnormalFlag::CriticalHigh),
            performed_by: "tech".into(),
            performed_at: Utc::now(),
        };
        let limits = CriticalLimits::default();
        after
            .record_results(vec![glucose], &limits, Utc::now())
            .unwrap();
        after.verify("supervisor", Utc::now()).unwrap();
        after
    }

    /// A message that changed `before` into `after` and parked nothing.
    fn changing(before: &LabOrder, after: LabOrder, record: MessageRecord) -> MessageWrite {
        MessageWrite {
            changed: vec![(before.clone(), after)],
            ..MessageWrite::alone(record)
        }
    }

    fn parked(message: Uuid) -> Unmatched {
        Unmatched {
            id: Uuid::now_v7(),
            message_id: message,
            position: 1,
            reason: "no order found".into(),
            patient_identifier: Some("MRN-9".into()),
            placer_order: Some("NOT-OURS".into()),
            filler_order: None,
            service_code: Some("2345-7".into()),
            observations: vec![UnmatchedObservation {
                code: "2345-7".into(),
                text: None,
                system: Some("LN".into()),
                value: Some("100".into()),
                unit: Some("mg/dL".into()),
                reference_range: None,
                abnormal_flags: vec!["H".into()],
                status: Some("F".into()),
                observed_at: None,
            }],
            received_at: Utc::now(),
            status: "OPEN".into(),
        }
    }

    /// What a run gathered lands as each message would have written it (orders at their
    /// new versions with their new children, the messages, the unmatched results), and a
    /// run with an order changed since it was read, or with a message sent before, writes
    /// nothing.
    #[tokio::test]
    async fn a_runs_writes_store_every_message_and_nothing_over_a_changed_order() {
        let Some(database) = TestDatabase::postgres().await else {
            return;
        };
        let db = lab_db(&database, 2).await;
        let lab = SqlLabStore::new(db.clone());
        let (a, b) = (placed(), placed());
        lab.insert(&a, &[]).await.unwrap();
        lab.insert(&b, &[]).await.unwrap();
        let tenant = a.tenant.clone();
        let first = applied(&tenant, "R1");
        let unmatched = parked(first.id);
        let run = vec![
            MessageWrite {
                changed: vec![(a.clone(), resulted(&a))],
                unmatched: vec![unmatched.clone()],
                record: first,
                events: vec![],
            },
            changing(&b, collected(&b, "porter"), applied(&tenant, "R2")),
        ];
        let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
        assert_eq!(
            write_run(&mut tx, &tenant, run).await.unwrap(),
            Written::Done
        );
        tx.commit().await.unwrap();

        let stored_a = lab.order(&tenant, a.id).await.unwrap().unwrap();
        let glucose = &stored_a.tests[0];
        let result = glucose.results.last().unwrap();
        assert_eq!(
            (
                stored_a.version,
                stored_a.status,
                stored_a.specimens[0].collected_by.as_str(),
                glucose.status,
                result.value.as_str(),
                result.verified_by.as_deref(),
                result.critical,
            ),
            (
                resulted(&a).version,
                resulted(&a).status,
                "nurse",
                resulted(&a).tests[0].status,
                "612",
                Some("supervisor"),
                Some(AbnormalFlag::CriticalHigh),
            )
        );
        let stored_b = lab.order(&tenant, b.id).await.unwrap().unwrap();
        assert_eq!(
            (
                stored_b.version,
                stored_b.specimens[0].collected_by.as_str()
            ),
            (b.version + 1, "porter")
        );
        let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
        let kept = open_unmatched(&mut tx, &tenant, unmatched.id)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let kept = kept.expect("the unmatched result is kept");
        // Times are kept to the microsecond.
        let received_at = kept.received_at;
        assert_eq!(
            kept,
            Unmatched {
                received_at,
                ..unmatched
            }
        );

        // `b` read again at its new version, `a` at the one the run above changed.
        let stale = vec![
            changing(
                &stored_b,
                collected(&stored_b, "second"),
                applied(&tenant, "R3"),
            ),
            changing(&a, collected(&a, "late"), applied(&tenant, "R4")),
        ];
        let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
        assert_eq!(
            write_run(&mut tx, &tenant, stale).await.unwrap(),
            Written::Stale
        );
        tx.rollback().await.unwrap();
        // A message sent before (R1 again), beside a new one for `b`: nothing of it either.
        let again = vec![
            changing(
                &stored_b,
                collected(&stored_b, "third"),
                applied(&tenant, "R5"),
            ),
            MessageWrite::alone(applied(&tenant, "R1")),
        ];
        let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
        assert_eq!(
            write_run(&mut tx, &tenant, again).await.unwrap(),
            Written::SentBefore
        );
        tx.rollback().await.unwrap();
        let b_now = lab.order(&tenant, b.id).await.unwrap().unwrap();
        assert_eq!(b_now.version, stored_b.version, "nothing of the run stays");
        let mut tx = db.read_in(Scope::Tenant(&tenant)).await.unwrap();
        let controls: Vec<String> = on_tx!(&mut tx, |c| sqlx::query_scalar(
            "SELECT control_id FROM hl7_messages ORDER BY control_id"
        )
        .fetch_all(c)
        .await)
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(controls, ["R1", "R2"]);
        db.close().await;
    }
}
