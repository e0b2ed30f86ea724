//! The reads that take an HL7 message in: the answer it got if it came before, the patient
//! by MRN, and the order its results are for (by our id, by a placer or filler number, or
//! among the patient's open orders), with its children. They run in a sqlx transaction
//! ([`Tx`]) or, on SQLite, as direct reads in one snapshot ([`Direct`]): through sqlx
//! each of the half-dozen statements a results message reads is two trips to a
//! connection's thread and back, which profiling put at a third of the hub's CPU under
//! HL7 on one connection. Either way every read of a message sees one snapshot, and what
//! it changes is written back at the versions read (`store::direct`).

use super::hl7::{
    EARLIER_ACK, OPEN_ORDERS_OF, PATIENT_BY_MRN, earlier_ack, open_orders_of, order_by_number,
    order_by_number_sql, patient_by_mrn,
};
use super::rows::{ORDER_COLUMNS, OrderRow, ResultRow, SpecimenRow, TestRow};
use super::run::Prefetched;
use super::sql::{ORDER_BY_ID, assemble_all, children_sql, load_order};
use crate::domain::LabOrder;
use kernel::TenantId;
use kernel::ids::LabOrderId;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use std::ops::Deref;
use store::{DbError, Tx};
use uuid::Uuid;

/// The reads of an HL7 message, in one snapshot.
pub(crate) trait Lookups {
    /// The ACK a message from `sender` with `control_id` was answered with, if it came
    /// before.
    async fn earlier_ack(
        &mut self,
        tenant: &TenantId,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<String>, DbError>;

    /// The patient the lab knows by this MRN.
    async fn patient_by_mrn(
        &mut self,
        tenant: &TenantId,
        mrn: &str,
    ) -> Result<Option<Uuid>, DbError>;

    async fn order(
        &mut self,
        tenant: &TenantId,
        id: LabOrderId,
    ) -> Result<Option<LabOrder>, DbError>;

    /// The order with this number in `column` (`placer_order`, `filler_order`), if exactly
    /// one has it.
    async fn order_by_number(
        &mut self,
        tenant: &TenantId,
        column: &'static str,
        number: &str,
    ) -> Result<Option<LabOrder>, DbError>;

    /// A patient's orders still being worked on, oldest first.
    async fn open_orders_of(
        &mut self,
        tenant: &TenantId,
        patient: Uuid,
    ) -> Result<Vec<LabOrder>, DbError>;
}

impl Lookups for Tx {
    async fn earlier_ack(
        &mut self,
        tenant: &TenantId,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<String>, DbError> {
        earlier_ack(self, tenant, sender, control_id).await
    }

    async fn patient_by_mrn(
        &mut self,
        tenant: &TenantId,
        mrn: &str,
    ) -> Result<Option<Uuid>, DbError> {
        patient_by_mrn(self, tenant, mrn).await
    }

    async fn order(
        &mut self,
        tenant: &TenantId,
        id: LabOrderId,
    ) -> Result<Option<LabOrder>, DbError> {
        load_order(self, tenant, id).await
    }

    async fn order_by_number(
        &mut self,
        tenant: &TenantId,
        column: &'static str,
        number: &str,
    ) -> Result<Option<LabOrder>, DbError> {
        order_by_number(self, tenant, column, number).await
    }

    async fn open_orders_of(
        &mut self,
        tenant: &TenantId,
        patient: Uuid,
    ) -> Result<Vec<LabOrder>, DbError> {
        open_orders_of(self, tenant, patient).await
    }
}

/// The same statements as the sqlx path's, on the calling thread, on a rusqlite
/// connection: a snapshot's (`Direct(db.snapshot()?)`), or a direct write's transaction
/// (`Direct(&*tx)`, which then sees what that write wrote, as a batch's later messages
/// must see its earlier ones). Each read runs at once, so a future holds no borrow of
/// the connection across an await, and is `Send` when `C` is.
pub(crate) struct Direct<C>(pub C);

impl<C: Deref<Target = Connection>> Lookups for Direct<C> {
    async fn earlier_ack(
        &mut self,
        tenant: &TenantId,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<String>, DbError> {
        Ok(self
            .0
            .prepare_cached(EARLIER_ACK)?
            .query_row(params![tenant.as_str(), sender, control_id], |r| r.get(0))
            .optional()?)
    }

    async fn patient_by_mrn(
        &mut self,
        tenant: &TenantId,
        mrn: &str,
    ) -> Result<Option<Uuid>, DbError> {
        Ok(self
            .0
            .prepare_cached(PATIENT_BY_MRN)?
            .query_row(params![tenant.as_str(), mrn], |r| r.get(0))
            .optional()?)
    }

    async fn order(
        &mut self,
        tenant: &TenantId,
        id: LabOrderId,
    ) -> Result<Option<LabOrder>, DbError> {
        let rows = orders(&self.0, &ORDER_BY_ID, tenant, id.as_uuid())?;
        Ok(hydrate(&self.0, rows)?.pop())
    }

    async fn order_by_number(
        &mut self,
        tenant: &TenantId,
        column: &'static str,
        number: &str,
    ) -> Result<Option<LabOrder>, DbError> {
        let rows = orders(&self.0, &order_by_number_sql(column), tenant, number)?;
        // A filler number is unique per laboratory; two orders holding one cannot be told
        // apart.
        if rows.len() != 1 {
            return Ok(None);
        }
        Ok(hydrate(&self.0, rows)?.pop())
    }

    async fn open_orders_of(
        &mut self,
        tenant: &TenantId,
        patient: Uuid,
    ) -> Result<Vec<LabOrder>, DbError> {
        let rows = orders(&self.0, &OPEN_ORDERS_OF, tenant, patient)?;
        hydrate(&self.0, rows)
    }
}

impl<C: Deref<Target = Connection>> Direct<C> {
    /// The patients with `mrns` and the orders with `orders` (with their children), read
    /// for a run of messages at once: a statement per kind of row for the whole run, where
    /// each message's own lookups were five (the patient, the order, its tests, results
    /// and specimens).
    pub fn prefetch(
        &self,
        tenant: &TenantId,
        mrns: Vec<String>,
        orders: Vec<Uuid>,
    ) -> Result<Prefetched, DbError> {
        let c = &*self.0;
        let (mut patients, mut rows) = (Vec::new(), Vec::new());
        // Within SQLite's limit on a statement's parameters, and a few statement texts
        // for its cache of prepared statements to hold.
        for chunk in mrns.chunks(PREFETCH_CHUNK) {
            let mut statement = c.prepare_cached(&patients_by_mrn_sql(chunk.len()))?;
            let values = std::iter::once(tenant.as_str()).chain(chunk.iter().map(String::as_str));
            let found = statement.query_map(params_from_iter(values), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Uuid>(1)?))
            })?;
            patients.extend(found.collect::<rusqlite::Result<Vec<_>>>()?);
        }
        for chunk in orders.chunks(PREFETCH_CHUNK) {
            let mut statement = c.prepare_cached(&orders_by_id_sql(chunk.len()))?;
            statement.raw_bind_parameter(1, tenant.as_str())?;
            for (i, id) in chunk.iter().enumerate() {
                statement.raw_bind_parameter(i + 2, id)?;
            }
            let mut found = statement.raw_query();
            while let Some(row) = found.next()? {
                rows.push(OrderRow::from_sqlite(row)?);
            }
        }
        let found = hydrate(c, rows)?;
        Ok(Prefetched::of(mrns, patients, orders, found))
    }
}

/// How many keys one statement of [`Direct::prefetch`] takes: a batch's run is at most 100
/// messages.
const PREFETCH_CHUNK: usize = 100;

/// The rows of the tenant's (`?1`) orders with the `n` ids `?2, ?3, …`. The tenant's
/// column is written `+tenant_id`, which keeps it off the indexes: a hub's SQLite files
/// carry no statistics, and without them SQLite took a hundred ids for more rows than
/// "the tenant's" and read every order of the tenant through an index by tenant, for
/// every run (HL7 batches fell from 9,350 to 2,260 messages/s).
fn orders_by_id_sql(n: usize) -> String {
    format!(
        "SELECT {ORDER_COLUMNS} FROM lab_orders WHERE +tenant_id = ?1 AND order_id IN ({})",
        numbered(n)
    )
}

/// The tenant's (`?1`) patients with the `n` MRNs `?2, ?3, …`, as (MRN, id).
fn patients_by_mrn_sql(n: usize) -> String {
    format!(
        "SELECT mrn, patient_id FROM lab_patients WHERE tenant_id = ?1 AND mrn IN ({})",
        numbered(n)
    )
}

/// `?2, ?3, …`: `n` parameters after the tenant's.
fn numbered(n: usize) -> String {
    (2..n + 2)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The order rows `sql` selects for the tenant (`$1`) and `key` (`$2`).
fn orders(
    c: &Connection,
    sql: &str,
    tenant: &TenantId,
    key: impl rusqlite::ToSql,
) -> rusqlite::Result<Vec<OrderRow>> {
    c.prepare_cached(sql)?
        .query_map(params![tenant.as_str(), key], OrderRow::from_sqlite)?
        .collect()
}

/// The orders of `rows` with their children, as `sql::hydrate` reads them.
fn hydrate(c: &Connection, rows: Vec<OrderRow>) -> Result<Vec<LabOrder>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.order_id).collect();
    let [tests, results, specimens] = children_sql(ids.len());
    let children = |sql: &str| c.prepare_cached(sql);
    let tests = children(&tests)?
        .query_map(params_from_iter(&ids), TestRow::from_sqlite)?
        .collect::<rusqlite::Result<_>>()?;
    let results = children(&results)?
        .query_map(params_from_iter(&ids), ResultRow::from_sqlite)?
        .collect::<rusqlite::Result<_>>()?;
    let specimens = children(&specimens)?
        .query_map(params_from_iter(&ids), SpecimenRow::from_sqlite)?
        .collect::<rusqlite::Result<_>>()?;
    assemble_all(rows, tests, results, specimens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AbnormalFlag, CriticalLimits, LabTest, SubmittedResult, TestStatus};
    use crate::store::direct::tests::{applied, collected, placed};
    use crate::store::hl7::record_message;
    use crate::store::{LabStore, SqlLabStore, remember_patient};
    use chrono::Utc;
    use store::{Db, Scope};

    fn glucose(value: &str) -> SubmittedResult {
        SubmittedResult {
            test_code: "GLU".into(),
            value: value.into(),
            unit: Some("mg/dL".into()),
            reference_range: Some("70-99".into()),
            abnormal_flag: Some(AbnormalFlag::High),
            performed_by: "tech".into(),
            performed_at: Utc::now(),
        }
    }

    /// An order still open with every kind of child: a specimen, a verified result and
    /// its correction, and a test still waiting.
    async fn worked_on(lab: &SqlLabStore) -> LabOrder {
        let mut before = placed();
        before.diagnosis_codes = vec!["E11.9".into(), "R73.09".into()];
        before.tests.push(LabTest {
            id: Uuid::now_v7(),
            test_code: "A1C".into(),
            test_name: "Hemoglobin A1c".into(),
            loinc_code: None,
            status: TestStatus::Pending,
            results: vec![],
        });
        lab.insert(&before, &[]).await.unwrap();
        let mut after = collected(&before, "nurse");
        let limits = CriticalLimits::default();
        after
            .record_results(vec![glucose("180")], &limits, Utc::now())
            .unwrap();
        after.verify("supervisor", Utc::now()).unwrap();
        after
            .record_results(vec![glucose("181")], &limits, Utc::now())
            .unwrap();
        after.filler_order = Some("F-1".into());
        lab.update(&before, &after, &[]).await.unwrap();
        after
    }

    /// Migration 4 (one unique key for a result instead of two): results written before it
    /// read back the same after it, and a revision of a test written twice is still
    /// refused. On SQLite the migration builds the table again; PostgreSQL's test databases
    /// are clones of one migrated before the test, so there it is the refusal alone.
    #[tokio::test]
    async fn results_written_before_migration_4_read_back_the_same_after_it() {
        let mut databases = vec![testkit::TestDatabase::sqlite()];
        databases.extend(testkit::TestDatabase::postgres().await);
        for database in databases {
            let db = crate::store::direct::tests::lab_db_unmigrated(&database, 2).await;
            let mut before = crate::migrations();
            let lab = before.iter_mut().find(|s| s.component == crate::SERVICE);
            lab.unwrap().sqlite = &crate::MIGRATIONS.sqlite[..3];
            if database.url().is_none() {
                assert_eq!(store::migrate(&db, &before).await.unwrap(), 5);
            }
            let lab = SqlLabStore::new(db.clone());
            let order = worked_on(&lab).await;
            let written = lab.order(&order.tenant, order.id).await.unwrap().unwrap();
            assert_eq!(written.tests[0].results.len(), 2);

            let applied = store::migrate(&db, &crate::migrations()).await.unwrap();
            assert_eq!(applied, usize::from(database.url().is_none()));
            let migrated = lab.order(&order.tenant, order.id).await.unwrap();
            assert_eq!(migrated, Some(written));
            let mut tx = db.begin_in(Scope::Tenant(&order.tenant)).await.unwrap();
            let twice = store::on_tx!(&mut tx, |c| sqlx::query(
                "INSERT INTO lab_results (result_id, tenant_id, test_id, order_id, revision,
                     result_value, performed_by, performed_at, recorded_at, correction)
                 SELECT $1, tenant_id, test_id, order_id, revision, result_value, performed_by,
                     performed_at, recorded_at, correction
                 FROM lab_results WHERE revision = 2"
            )
            .bind(Uuid::now_v7())
            .execute(c)
            .await
            .map(|_| ()));
            let backend = if database.url().is_some() {
                "PostgreSQL"
            } else {
                "SQLite"
            };
            assert!(twice.is_err(), "a revision stored twice on {backend}");
            drop(tx);
            db.close().await;
        }
    }

    /// A run's orders are read by their ids through the primary key, however many: not
    /// through an index by tenant, which reads every order of the tenant.
    #[tokio::test]
    async fn a_runs_orders_are_read_by_their_ids() {
        let database = testkit::TestDatabase::sqlite();
        let db = crate::store::direct::tests::lab_db(&database, 2).await;
        let Db::Sqlite(sqlite) = &db else {
            unreachable!()
        };
        let snapshot = sqlite.snapshot().unwrap();
        let plan = |sql: &str| -> String {
            let mut statement = snapshot
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            // Unbound parameters are NULL: the plan does not depend on them.
            let mut rows = statement.raw_query();
            let mut details = Vec::new();
            while let Some(row) = rows.next().unwrap() {
                details.push(row.get::<_, String>(3).unwrap());
            }
            details.join("; ")
        };
        for n in [1, 2, 100] {
            let detail = plan(&orders_by_id_sql(n));
            assert!(
                detail.contains("sqlite_autoindex_lab_orders_1 (order_id=?)")
                    && !detail.contains("idx_lab_orders"),
                "{n} ids: {detail}"
            );
            let detail = plan(&patients_by_mrn_sql(n));
            assert!(
                detail.contains("idx_lab_patients_mrn (tenant_id=? AND mrn=?)"),
                "{n} MRNs: {detail}"
            );
            let [tests, results, specimens] = children_sql(n);
            for (sql, index) in [
                (tests, "idx_lab_tests_order (order_id=?)"),
                (results, "idx_lab_results_order (order_id=?)"),
                (specimens, "idx_specimens_order (order_id=?)"),
            ] {
                let detail = plan(&sql);
                assert!(detail.contains(index), "{n} orders' children: {detail}");
            }
        }
        drop(snapshot);
        db.close().await;
    }

    /// What a results message reads comes back the same through sqlx and through the
    /// direct reads of a snapshot: the order whole (children in their order, times to
    /// the nanosecond), found each way, and nothing where the number is ambiguous.
    #[tokio::test]
    async fn a_snapshot_reads_what_a_transaction_reads() {
        let dir = std::env::temp_dir().join(format!("lab-lookup-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::connect_sqlite(dir.join("t.db"), 2).await.unwrap();
        store::migrate(&db, &crate::migrations()).await.unwrap();
        let lab = SqlLabStore::new(db.clone());
        let order = worked_on(&lab).await;
        assert_eq!(order.tests[0].results.len(), 2);
        assert!(order.tests[0].results[0].verified_at.is_some());
        assert_eq!(order.status, crate::domain::OrderStatus::InProgress);
        let tenant = order.tenant.clone();
        for _ in 0..2 {
            let mut twin = placed();
            twin.filler_order = Some("TWICE".into());
            lab.insert(&twin, &[]).await.unwrap();
        }
        let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
        remember_patient(
            &mut tx,
            &tenant,
            order.patient_id.as_uuid(),
            "MRN-1",
            Utc::now(),
        )
        .await
        .unwrap();
        record_message(&mut tx, &applied(&tenant, "C1"))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        async fn everything(
            l: &mut impl Lookups,
            t: &TenantId,
            o: &LabOrder,
        ) -> (
            Option<String>,
            Option<Uuid>,
            Option<LabOrder>,
            Option<LabOrder>,
            Option<LabOrder>,
            Vec<LabOrder>,
        ) {
            (
                l.earlier_ack(t, "LIS^LAB", "C1").await.unwrap(),
                l.patient_by_mrn(t, "MRN-1").await.unwrap(),
                l.order(t, o.id).await.unwrap(),
                l.order_by_number(t, "filler_order", "F-1").await.unwrap(),
                l.order_by_number(t, "filler_order", "TWICE").await.unwrap(),
                l.open_orders_of(t, o.patient_id.as_uuid()).await.unwrap(),
            )
        }
        let expected = (
            Some("MSA|AA|C1".to_string()),
            Some(order.patient_id.as_uuid()),
            Some(order.clone()),
            Some(order.clone()),
            None,
            vec![order.clone()],
        );
        let mut tx = db.read_in(Scope::Tenant(&tenant)).await.unwrap();
        assert_eq!(everything(&mut tx, &tenant, &order).await, expected);
        tx.commit().await.unwrap();
        let Db::Sqlite(sqlite) = &db else {
            unreachable!()
        };
        let mut snapshot = Direct(sqlite.snapshot().unwrap());
        assert_eq!(everything(&mut snapshot, &tenant, &order).await, expected);
        drop(snapshot);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
