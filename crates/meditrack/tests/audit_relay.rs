//! The trail's appends, and the trail published on `audit-events` from the trail itself, on
//! SQLite and PostgreSQL: a batch of several chains stored as it was hashed; each chain in
//! order and once, again with the same event ids after a failed publish,
//! without holding up appends, and without losing what an older version left in the outbox.

#![allow(clippy::unwrap_used)]

use audit::relay::TrailRelay;
use audit::store::AuditStore;
use eventbus::{BoxFuture, BusError, EventSink, Record};
use kernel::TenantId;
use kernel::audit::{AuditAction, AuditOutcome, AuditRecord, Origin};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{Db, StoreConfig, on_pool};
use testkit::TestDatabase;

testkit::on_both_databases!(
    each_chain_goes_out_in_order_once_and_again_with_the_same_ids_after_a_failure,
    appends_do_not_wait_while_the_trail_is_published,
    entries_an_older_version_left_unpublished_in_the_outbox_are_published_from_the_trail,
    a_chain_whose_unpublished_entries_were_purged_is_no_longer_behind,
    a_large_batch_of_several_chains_is_stored_as_it_was_hashed,
);

async fn trail_db(db: &TestDatabase) -> Db {
    let config = StoreConfig {
        data_dir: db.data_dir(),
        database_url: db.url(),
        max_connections: 4,
    };
    let db = Db::connect(audit::SERVICE, &config).await.unwrap();
    store::migrate(&db, &audit::migrations()).await.unwrap();
    db
}

/// Every other record with every optional field set, so that each column is read back.
fn records(tenant: &str, count: usize) -> Vec<AuditRecord> {
    (0..count)
        .map(|n| {
            let full = n % 2 == 0;
            AuditRecord {
                tenant: TenantId::parse(tenant).unwrap(),
                actor: "relay-test".to_owned(),
                roles: vec!["DOCTOR".to_owned(), "NURSE".to_owned()],
                action: AuditAction::Read,
                resource_type: "Patient".to_owned(),
                resource_id: full.then(|| n.to_string()),
                patient_id: full.then(uuid::Uuid::now_v7),
                outcome: AuditOutcome::Success,
                at: chrono::Utc::now(),
                origin: Origin {
                    request_id: full.then(|| uuid::Uuid::now_v7().to_string()),
                    source_ip: full.then(|| "203.0.113.7".to_owned()),
                },
            }
        })
        .collect()
}

/// Verification hashes every stored column again, so a value stored in the wrong column,
/// or lost, breaks the chain where it happened.
async fn a_large_batch_of_several_chains_is_stored_as_it_was_hashed(db: TestDatabase) {
    let db = trail_db(&db).await;
    let store = AuditStore::new(db.clone());
    let mut batch = Vec::new();
    for n in 0..1200 {
        let mut r = records(if n % 3 == 0 { "clinic-b" } else { "clinic-a" }, 1).remove(0);
        if n % 2 == 0 {
            r.patient_id = Some(uuid::Uuid::now_v7());
            r.origin = Origin {
                request_id: Some(format!("req-{n}")),
                source_ip: Some("10.0.0.7".to_owned()),
            };
        } else {
            r.resource_id = None;
        }
        batch.push(r);
    }
    let stored = store.append(&batch).await.unwrap();
    assert_eq!(stored.len(), 1200);
    for (tenant, count) in [("clinic-a", 800), ("clinic-b", 400)] {
        let verdict = store
            .verify(&TenantId::parse(tenant).unwrap())
            .await
            .unwrap();
        assert_eq!(verdict.broken, None, "{tenant}");
        assert_eq!(verdict.checked, count, "{tenant}");
    }
    store.append(&records("clinic-a", 2)).await.unwrap();
    let verdict = store
        .verify(&TenantId::parse("clinic-a").unwrap())
        .await
        .unwrap();
    assert_eq!((verdict.broken, verdict.checked), (None, 802));
}

/// A sink that keeps what it was given, or refuses while `failing`.
#[derive(Default)]
struct Kept {
    records: Mutex<Vec<Record>>,
    failing: Mutex<bool>,
}

impl EventSink for Kept {
    fn publish<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            if *self.failing.lock().unwrap() {
                return Err(BusError::Broker("unreachable".to_owned()));
            }
            self.records.lock().unwrap().extend_from_slice(records);
            Ok(())
        })
    }
}

impl Kept {
    /// (tenant, seq, event id) of each record kept, checking what every record must be.
    fn published(&self) -> Vec<(String, i64, uuid::Uuid)> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                let e: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
                assert_eq!(r.topic, "audit-events");
                assert_eq!(e["eventType"], "audit.entry.recorded.v1");
                assert_eq!(e["eventId"], r.event_id.to_string());
                assert_eq!(e["key"], r.key);
                (
                    r.key.clone(),
                    e["payload"]["seq"].as_i64().unwrap(),
                    r.event_id,
                )
            })
            .collect()
    }
}

async fn each_chain_goes_out_in_order_once_and_again_with_the_same_ids_after_a_failure(
    db: TestDatabase,
) {
    let db = trail_db(&db).await;
    let store = AuditStore::new(db.clone());
    let mut appended = store.append(&records("clinic-a", 3)).await.unwrap();
    appended.extend(store.append(&records("clinic-b", 2)).await.unwrap());
    appended.extend(store.append(&records("clinic-a", 1)).await.unwrap());
    let sink = Arc::new(Kept::default());
    let relay = TrailRelay::new(db.clone(), sink.clone());

    assert_eq!(relay.publish_pending().await.unwrap(), 6);
    let expected: Vec<(String, i64, uuid::Uuid)> = {
        let mut by_chain: Vec<_> = appended
            .iter()
            .map(|e| (e.tenant.clone(), e.seq, e.entry_id))
            .collect();
        by_chain.sort();
        by_chain
    };
    assert_eq!(sink.published(), expected, "each chain in order");
    let mut stored = appended.clone();
    stored.sort_by(|a, b| (&a.tenant, a.seq).cmp(&(&b.tenant, b.seq)));
    let payloads: Vec<String> = sink
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.payload.clone())
        .collect();
    let expected: Vec<String> = stored
        .iter()
        .map(|e| audit::store::event_json(e).unwrap())
        .collect();
    assert_eq!(
        payloads, expected,
        "each event is the entry as it was appended, every field read back"
    );
    assert_eq!(
        relay.publish_pending().await.unwrap(),
        0,
        "published entries are not published again"
    );

    // The sink refuses: the chain's mark stays, and the next try sends the same events.
    let later = store.append(&records("clinic-a", 2)).await.unwrap();
    *sink.failing.lock().unwrap() = true;
    assert!(relay.publish_pending().await.is_err());
    *sink.failing.lock().unwrap() = false;
    assert_eq!(relay.publish_pending().await.unwrap(), 2);
    let tail: Vec<_> = sink.published().split_off(6);
    let ids: Vec<_> = later.iter().map(|e| e.entry_id).collect();
    assert_eq!(tail.iter().map(|t| t.2).collect::<Vec<_>>(), ids);
    assert_eq!(tail.iter().map(|t| t.1).collect::<Vec<_>>(), vec![5, 6]);
    db.close().await;
}

async fn appends_do_not_wait_while_the_trail_is_published(db: TestDatabase) {
    let db = trail_db(&db).await;
    let store = AuditStore::new(db.clone());
    store.append(&records("clinic-a", 1)).await.unwrap();
    let sink = Arc::new(testkit::HeldSink::new());
    let relay = TrailRelay::new(db.clone(), sink.clone());
    let publishing = tokio::spawn({
        let relay = relay.clone();
        async move { relay.publish_pending().await.unwrap() }
    });
    sink.arrived.notified().await;
    tokio::time::timeout(
        Duration::from_secs(3),
        store.append(&records("clinic-a", 1)),
    )
    .await
    .expect("an append while the relay waits for its sink")
    .unwrap();
    sink.release.add_permits(1);
    assert_eq!(publishing.await.unwrap(), 1);
    sink.release.add_permits(1);
    assert_eq!(
        relay.publish_pending().await.unwrap(),
        1,
        "the entry appended meanwhile, in the next batch"
    );
    db.close().await;
}

/// Before the trail was its own outbox, each entry's event waited in the outbox. An upgrade
/// must publish those the outbox relay had not, and only those.
async fn entries_an_older_version_left_unpublished_in_the_outbox_are_published_from_the_trail(
    db: TestDatabase,
) {
    let db = trail_db(&db).await;
    let store = AuditStore::new(db.clone());
    let entries = store.append(&records("clinic-a", 5)).await.unwrap();
    // The older version's state: no marks, and the last two entries' events unpublished in
    // the outbox.
    let stale: Vec<_> = entries[3..]
        .iter()
        .map(|e| serde_json::from_str(&audit::store::event_json(e).unwrap()).unwrap())
        .collect();
    let mut tx = db.begin().await.unwrap();
    store::outbox::append(&mut tx, &stale).await.unwrap();
    store::execute!(&mut tx, sqlx::query("DROP TABLE audit_published")).unwrap();
    tx.commit().await.unwrap();
    let migration = if db.backend() == store::Backend::Postgres {
        audit::MIGRATIONS.postgres[2]
    } else {
        audit::MIGRATIONS.sqlite[1]
    };
    assert_eq!(migration.name, "published from the trail");
    let mut tx = db.begin().await.unwrap();
    store::execute!(&mut tx, sqlx::raw_sql(sqlx::AssertSqlSafe(migration.sql))).unwrap();
    tx.commit().await.unwrap();

    let sink = Arc::new(Kept::default());
    TrailRelay::new(db.clone(), sink.clone())
        .publish_pending()
        .await
        .unwrap();
    let seqs: Vec<i64> = sink.published().iter().map(|p| p.1).collect();
    assert_eq!(seqs, vec![4, 5]);
    let waiting: i64 = on_pool!(&db, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL"
    )
    .fetch_one(c)
    .await)
    .unwrap();
    assert_eq!(
        waiting, 0,
        "nothing is left for a relay that no longer runs"
    );
    db.close().await;
}

/// Retention may remove entries a relay far behind never published: the chain must not stay
/// "behind" with nothing to read.
async fn a_chain_whose_unpublished_entries_were_purged_is_no_longer_behind(db: TestDatabase) {
    let db = trail_db(&db).await;
    let store = AuditStore::new(db.clone());
    store.append(&records("clinic-a", 3)).await.unwrap();
    let purged = store
        .purge(chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(purged, 3);
    let sink = Arc::new(Kept::default());
    let relay = TrailRelay::new(db.clone(), sink.clone());
    assert_eq!(relay.publish_pending().await.unwrap(), 0);
    let mut tx = db.read_in(store::Scope::AllTenants).await.unwrap();
    assert_eq!(audit::store::behind(&mut tx).await.unwrap(), vec![]);
    tx.commit().await.unwrap();
    // Entries appended afterwards go out as usual.
    store.append(&records("clinic-a", 1)).await.unwrap();
    assert_eq!(relay.publish_pending().await.unwrap(), 1);
    assert_eq!(
        sink.published().iter().map(|p| p.1).collect::<Vec<_>>(),
        vec![4]
    );
    db.close().await;
}
