//! What an HL7 results message did, written on SQLite as one direct write
//! ([`store::direct`]): the changed orders with their new children, the message, its
//! unmatched results and its events, in one savepoint of a group commit.
//!
//! Through sqlx this was a writer's turn of about a dozen statements, each a round trip to
//! the connection's thread while every other writer waited, and an ACK waits for it: one
//! connection carried one message per turn and commit, and several connections took turns.
//! The statements and the values' encodings are the sqlx path's (`sql.rs`, `hl7.rs`).

use super::hl7::{INSERT_MESSAGE, INSERT_UNMATCHED, MessageRecord, Unmatched};
use super::sql::{
    INSERT_RESULT, INSERT_SPECIMEN, INSERT_TEST, UPDATE_ORDER, UPDATE_ORDER_SAME_FILLER,
    child_writes,
};
use crate::domain::LabOrder;
use events::EventEnvelope;
use rusqlite::{ToSql, Transaction, params, params_from_iter};
use store::direct::time;
use store::outbox;

/// What one message writes: each order as read and as changed, the message, the results
/// no order took, and the events.
#[derive(Debug)]
pub(crate) struct MessageWrite {
    pub changed: Vec<(LabOrder, LabOrder)>,
    pub record: MessageRecord,
    pub unmatched: Vec<Unmatched>,
    pub events: Vec<EventEnvelope>,
}

impl MessageWrite {
    /// A message that changed nothing: refused, say.
    pub fn alone(record: MessageRecord) -> Self {
        MessageWrite {
            changed: Vec::new(),
            record,
            unmatched: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// Writes `m`; `false`, with nothing written, when an order is no longer at the version it
/// was read at.
pub(crate) fn write_message(tx: &Transaction<'_>, m: &MessageWrite) -> rusqlite::Result<bool> {
    // Only a message that changes several orders can find one changed after it wrote
    // another, and needs a savepoint to undo that: an order that fails its version check
    // has written nothing. A savepoint copies each page the message first touches into
    // SQLite's sub-journal (the outbox's and the messages' last pages, again for each
    // message of a batch), which a profile of HL7 batches put at 8 % of the writer's CPU.
    let savepoint = m.changed.len() > 1;
    if savepoint {
        tx.prepare_cached("SAVEPOINT message")?.execute([])?;
    }
    for (before, after) in &m.changed {
        if !update_order(tx, before, after)? {
            if savepoint {
                tx.execute_batch("ROLLBACK TO message; RELEASE message")?;
            }
            return Ok(false);
        }
    }
    insert_message(tx, &m.record)?;
    for u in &m.unmatched {
        insert_unmatched(tx, &m.record, u)?;
    }
    outbox::append_direct(tx, &m.events)?;
    if savepoint {
        tx.prepare_cached("RELEASE message")?.execute([])?;
    }
    Ok(true)
}

fn update_order(tx: &Transaction<'_>, before: &LabOrder, o: &LabOrder) -> rusqlite::Result<bool> {
    let (status, tenant, priority) = (o.status.as_str(), o.tenant.as_str(), o.priority.as_str());
    let (collected, received) = (o.collected_at.map(time), o.received_at.map(time));
    let (reported, cancelled) = (o.reported_at.map(time), o.cancelled_at.map(time));
    let (updated, id) = (time(o.updated_at), o.id.as_uuid());
    let state: [&dyn ToSql; 15] = [
        &status,
        &collected,
        &received,
        &reported,
        &cancelled,
        &o.cancel_reason,
        &o.awaiting_preauthorization,
        &o.preauthorization,
        &o.filler_order,
        &o.version,
        &updated,
        &tenant,
        &id.as_bytes().as_slice(),
        &priority,
        &before.version,
    ];
    let n = if o.filler_order == before.filler_order {
        // SQLite numbers `$N` parameters by where they first appear, not by N: the
        // statement without the filler number takes the others, renumbered.
        let others = state.iter().enumerate().filter(|(i, _)| *i != 8);
        tx.prepare_cached(UPDATE_ORDER_SAME_FILLER)?
            .execute(params_from_iter(others.map(|(_, v)| v)))?
    } else {
        tx.prepare_cached(UPDATE_ORDER)?.execute(&state[..])?
    };
    if n == 0 {
        return Ok(false);
    }
    let order = id.as_bytes().as_slice();
    let writes = child_writes(o, Some(before));
    let mut test = tx.prepare_cached(INSERT_TEST)?;
    for (position, t) in writes.tests {
        test.execute(params![
            t.id.as_bytes().as_slice(),
            tenant,
            order,
            position,
            t.test_code,
            t.test_name,
            t.loinc_code,
            t.status.as_str(),
        ])?;
    }
    let mut result = tx.prepare_cached(INSERT_RESULT)?;
    for (t, revision, r) in writes.results {
        result.execute(params![
            r.id.as_bytes().as_slice(),
            tenant,
            t.id.as_bytes().as_slice(),
            order,
            revision,
            r.value,
            r.unit,
            r.reference_range,
            r.abnormal_flag.map(|f| f.as_str()),
            r.performed_by,
            time(r.performed_at),
            time(r.recorded_at),
            r.verified_by,
            r.verified_at.map(time),
            r.correction,
            r.critical.map(|f| f.as_str()),
        ])?;
    }
    let mut specimen = tx.prepare_cached(INSERT_SPECIMEN)?;
    for s in writes.specimens {
        specimen.execute(params![
            s.id.as_bytes().as_slice(),
            tenant,
            order,
            s.specimen_type.as_str(),
            time(s.collected_at),
            s.collected_by,
            s.received_at.map(time),
            s.condition,
        ])?;
    }
    Ok(true)
}

fn insert_message(tx: &Transaction<'_>, m: &MessageRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(INSERT_MESSAGE)?.execute(params![
        m.id.as_bytes().as_slice(),
        m.tenant.as_str(),
        m.sender,
        m.control_id,
        m.message_type,
        time(m.received_at),
        m.status,
        m.ack_code,
        m.error_code,
        m.error_location,
        m.error_text,
        m.raw,
        m.ack,
    ])?;
    Ok(())
}

fn insert_unmatched(
    tx: &Transaction<'_>,
    m: &MessageRecord,
    u: &Unmatched,
) -> rusqlite::Result<()> {
    let observations = serde_json::to_string(&u.observations)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.prepare_cached(INSERT_UNMATCHED)?.execute(params![
        u.id.as_bytes().as_slice(),
        m.tenant.as_str(),
        m.id.as_bytes().as_slice(),
        u.position,
        u.reason,
        u.patient_identifier,
        u.placer_order,
        u.filler_order,
        u.service_code,
        observations,
        time(u.received_at),
        u.status,
    ])?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{NewLabOrder, Specimen, SpecimenType};
    use crate::store::lookup::{Direct, Lookups};
    use crate::store::{LabStore, SqlLabStore};
    use chrono::Utc;
    use kernel::TenantId;
    use kernel::ids::{LabOrderId, PatientId};
    use kernel::lab_request::{LabOrderRequest, OrderedTest};
    use store::{Db, Scope};

    /// The lab's store on `database` (SQLite or PostgreSQL), migrated, its pool this wide.
    pub(crate) async fn lab_db(database: &testkit::TestDatabase, max_connections: u32) -> Db {
        let db = lab_db_unmigrated(database, max_connections).await;
        store::migrate(&db, &crate::migrations()).await.unwrap();
        db
    }

    /// [`lab_db`] before any migration of its own.
    pub(crate) async fn lab_db_unmigrated(
        database: &testkit::TestDatabase,
        max_connections: u32,
    ) -> Db {
        let config = store::StoreConfig {
            data_dir: database.data_dir(),
            database_url: database.url(),
            max_connections,
        };
        Db::connect("lab", &config).await.unwrap()
    }
    use uuid::Uuid;

    pub(crate) fn placed() -> LabOrder {
        LabOrder::place(
            LabOrderId::new(),
            TenantId::parse("t").unwrap(),
            NewLabOrder {
                patient_id: PatientId::new(),
                mrn: None,
                request: LabOrderRequest {
                    tests: vec![OrderedTest {
                        test_code: "GLU".into(),
                        test_name: "Glucose".into(),
                        loinc_code: Some("2345-7".into()),
                    }],
                    priority: "STAT",
                    ordering_provider_id: "NPI1".into(),
                    ordering_provider_name: "Synthetic".into(),
                    diagnosis_codes: vec![],
                },
                requires_preauthorization: false,
            },
            Utc::now(),
        )
    }

    pub(crate) fn collected(before: &LabOrder, by: &str) -> LabOrder {
        let mut after = before.clone();
        let specimen = Specimen {
            id: Uuid::now_v7(),
            specimen_type: SpecimenType::Blood,
            collected_at: Utc::now(),
            collected_by: by.into(),
            received_at: None,
            condition: None,
        };
        after.collect(specimen, Utc::now()).unwrap();
        after
    }

    /// An ORU from `LIS^LAB` with `control` as its MSH-10, applied and answered AA.
    pub(crate) fn applied(tenant: &TenantId, control: &str) -> MessageRecord {
        MessageRecord {
            id: Uuid::now_v7(),
            tenant: tenant.clone(),
            sender: Some("LIS^LAB".into()),
            control_id: Some(control.into()),
            message_type: Some("ORU^R01".into()),
            received_at: Utc::now(),
            status: "APPLIED",
            ack_code: "AA",
            error_code: None,
            error_location: None,
            error_text: None,
            raw: "MSH|...".into(),
            ack: format!("MSA|AA|{control}"),
        }
    }

    fn message(o: &LabOrder, control: &str, before: &LabOrder, after: LabOrder) -> MessageWrite {
        MessageWrite {
            changed: vec![(before.clone(), after)],
            record: applied(&o.tenant, control),
            unmatched: vec![],
            events: vec![],
        }
    }

    /// Two messages read the order at one version; the second to write finds it changed
    /// and writes nothing, not even its change to another order (its message starts over
    /// and reads the first's change); nor does a third that changes only the stale order.
    #[tokio::test]
    async fn a_message_written_over_an_order_another_changed_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("lab-direct-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::connect_sqlite(dir.join("t.db"), 2).await.unwrap();
        store::migrate(&db, &crate::migrations()).await.unwrap();
        let lab = SqlLabStore::new(db.clone());
        let before = placed();
        lab.insert(&before, &[]).await.unwrap();
        let other = placed();
        lab.insert(&other, &[]).await.unwrap();
        let Db::Sqlite(sqlite) = &db else {
            unreachable!()
        };
        let first = message(&before, "ONE", &before, collected(&before, "first"));
        let mut second = message(&before, "TWO", &before, collected(&before, "second"));
        second
            .changed
            .insert(0, (other.clone(), collected(&other, "second")));
        let written = |m: MessageWrite| sqlite.write_direct(move |tx| write_message(tx, &m));
        assert!(written(first).await.unwrap());
        assert!(!written(second).await.unwrap());
        // One stale order alone (written without a savepoint): nothing either.
        let third = message(&before, "THREE", &before, collected(&before, "third"));
        assert!(!written(third).await.unwrap());

        let stored = lab.order(&before.tenant, before.id).await.unwrap().unwrap();
        let by: Vec<_> = stored
            .specimens
            .iter()
            .map(|s| s.collected_by.as_str())
            .collect();
        assert_eq!((stored.version, by), (before.version + 1, vec!["first"]));
        let untouched = lab.order(&other.tenant, other.id).await.unwrap().unwrap();
        assert_eq!(
            (untouched.version, untouched.specimens.len()),
            (other.version, 0)
        );
        let mut tx = db.read_in(Scope::Tenant(&before.tenant)).await.unwrap();
        let controls: Vec<String> = store::on_tx!(&mut tx, |c| sqlx::query_scalar(
            "SELECT control_id FROM hl7_messages"
        )
        .fetch_all(c)
        .await)
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(controls, ["ONE"]);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The first message numbers the order; a later one leaves the number out of its update
    /// (another statement, its parameters renumbered) and still writes everything else,
    /// and the order is still found by its number.
    #[tokio::test]
    async fn a_message_to_an_order_already_numbered_writes_its_change_and_keeps_the_number() {
        let database = testkit::TestDatabase::sqlite();
        let db = lab_db(&database, 2).await;
        let Db::Sqlite(sqlite) = &db else {
            unreachable!()
        };
        let lab = SqlLabStore::new(db.clone());
        let placed = placed();
        lab.insert(&placed, &[]).await.unwrap();
        let written = |m: MessageWrite| sqlite.write_direct(move |tx| write_message(tx, &m));

        let mut numbered = collected(&placed, "first");
        numbered.filler_order = Some("F-1".into());
        let m = message(&placed, "ONE", &placed, numbered.clone());
        assert!(written(m).await.unwrap());
        let mut again = collected(&numbered, "second");
        again
            .cancel(Some("specimen lost".into()), Utc::now())
            .unwrap();
        let m = message(&placed, "TWO", &numbered, again.clone());
        assert!(written(m).await.unwrap());
        // At the version it was read at, not again.
        let stale = message(&placed, "THREE", &numbered, collected(&numbered, "third"));
        assert!(!written(stale).await.unwrap());

        let stored = lab.order(&placed.tenant, placed.id).await.unwrap().unwrap();
        assert_eq!(stored, again);
        let snapshot = sqlite.snapshot().unwrap();
        let mut reads = Direct(snapshot);
        let found = reads
            .order_by_number(&placed.tenant, "filler_order", "F-1")
            .await
            .unwrap();
        assert_eq!(found.map(|o| o.id), Some(placed.id));
        drop(reads);
        db.close().await;
    }
}
