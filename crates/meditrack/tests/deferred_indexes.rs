//! `DeferredIndexes`, with which a bulk load into empty tables builds their indexes once at
//! the end, on SQLite and PostgreSQL: what it drops comes back exactly as it was and
//! enforced, a load its rebuild refuses leaves the indexes as they were, tables that
//! already hold rows keep their indexes, and on PostgreSQL a load into emptied tables is
//! written frozen, but never at the cost of a row in a table that leads to them.

#![allow(clippy::unwrap_used)]

use store::{Backend, Db, DeferredIndexes, StoreConfig, Tx, on_pool, on_tx};
use testkit::TestDatabase;

testkit::on_both_databases!(
    indexes_set_aside_for_a_load_come_back_as_they_were,
    a_load_that_breaks_a_unique_index_fails_and_leaves_the_indexes,
    tables_with_rows_keep_their_indexes,
    a_load_into_emptied_tables_is_written_frozen,
    rows_of_a_table_that_leads_to_the_loaded_ones_are_never_truncated
);

const TABLES: [&str; 2] = ["parents", "children"];

async fn setup(db: &TestDatabase) -> Db {
    let config = StoreConfig {
        data_dir: db.data_dir(),
        database_url: db.url(),
        max_connections: 2,
    };
    let db = Db::connect("deferred", &config).await.unwrap();
    on_pool!(&db, |c| sqlx::raw_sql(
        "CREATE TABLE parents (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE);
         CREATE TABLE children (id BIGINT PRIMARY KEY, parent_id BIGINT NOT NULL REFERENCES parents(id),
             code TEXT NOT NULL, note TEXT);
         CREATE UNIQUE INDEX idx_children_code ON children (code);
         CREATE INDEX idx_children_parent ON children (parent_id, id) WHERE note IS NULL;
         CREATE TABLE notes (id BIGINT PRIMARY KEY, child_id BIGINT REFERENCES children(id));
         CREATE TABLE remarks (id BIGINT PRIMARY KEY, note_id BIGINT NOT NULL REFERENCES notes(id));"
    )
    .execute(c)
    .await
    .map(|_| ()))
    .unwrap();
    db
}

/// Every index and foreign key of the schema, by name, with its definition.
async fn catalog(db: &Db) -> Vec<(String, String)> {
    let sql = match db.backend() {
        Backend::Sqlite => {
            "SELECT name, COALESCE(sql, '') FROM sqlite_master WHERE type = 'index' ORDER BY name"
        }
        Backend::Postgres => {
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = current_schema()
             UNION ALL
             SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
             WHERE contype = 'f' AND connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
             ORDER BY 1"
        }
    };
    on_pool!(db, |c| sqlx::query_as(sql).fetch_all(c).await).unwrap()
}

async fn run(tx: &mut Tx, sql: &str) -> Result<(), sqlx::Error> {
    on_tx!(&mut *tx, |c| sqlx::raw_sql(sqlx::AssertSqlSafe(
        sql.to_owned()
    ))
    .execute(c)
    .await
    .map(|_| ()))
}

/// A transaction that has set aside the indexes of the freshly made, empty tables.
async fn set_aside_in_empty_tables(db: &Db) -> (Tx, DeferredIndexes) {
    let mut tx = db.begin().await.unwrap();
    let deferred = DeferredIndexes::set_aside(&mut tx, &TABLES)
        .await
        .unwrap()
        .expect("empty tables");
    (tx, deferred)
}

async fn indexes_set_aside_for_a_load_come_back_as_they_were(t: TestDatabase) {
    let db = setup(&t).await;
    let before = catalog(&db).await;
    let (mut tx, deferred) = set_aside_in_empty_tables(&db).await;
    // The two secondary indexes, and on PostgreSQL the foreign key; never a primary key or
    // a unique constraint.
    let expected = match db.backend() {
        Backend::Sqlite => 2,
        Backend::Postgres => 3,
    };
    assert_eq!(deferred.len(), expected);
    run(
        &mut tx,
        "INSERT INTO parents (id, name) VALUES (1, 'a'), (2, 'b');
         INSERT INTO children (id, parent_id, code) VALUES (10, 1, 'x'), (11, 2, 'y');",
    )
    .await
    .unwrap();
    deferred.rebuild(&mut tx).await.unwrap();
    if let Tx::Postgres(t) = &mut tx {
        let memory: String = sqlx::query_scalar("SELECT current_setting('maintenance_work_mem')")
            .fetch_one(&mut **t)
            .await
            .unwrap();
        assert_eq!(memory, "256MB", "index builds sort in memory");
    }
    tx.commit().await.unwrap();
    assert_eq!(
        catalog(&db).await,
        before,
        "the same indexes, defined the same"
    );

    let mut tx = db.begin().await.unwrap();
    let duplicate = run(
        &mut tx,
        "INSERT INTO children (id, parent_id, code) VALUES (12, 1, 'x')",
    )
    .await;
    assert!(duplicate.is_err(), "the rebuilt unique index is enforced");
    drop(tx);
    if db.backend() == Backend::Postgres {
        let mut tx = db.begin().await.unwrap();
        let orphan = run(
            &mut tx,
            "INSERT INTO children (id, parent_id, code) VALUES (13, 99, 'z')",
        )
        .await;
        assert!(orphan.is_err(), "the rebuilt foreign key is enforced");
    }
}

async fn a_load_that_breaks_a_unique_index_fails_and_leaves_the_indexes(t: TestDatabase) {
    let db = setup(&t).await;
    let before = catalog(&db).await;
    let (mut tx, deferred) = set_aside_in_empty_tables(&db).await;
    run(
        &mut tx,
        "INSERT INTO parents (id, name) VALUES (1, 'a');
         INSERT INTO children (id, parent_id, code) VALUES (10, 1, 'x'), (11, 1, 'x');",
    )
    .await
    .expect("without its unique index the table takes the duplicate");
    assert!(deferred.rebuild(&mut tx).await.is_err());
    drop(tx);
    assert_eq!(catalog(&db).await, before, "rolled back with the load");
    let count: i64 = on_pool!(&db, |c| sqlx::query_scalar("SELECT COUNT(*) FROM children")
        .fetch_one(c)
        .await)
    .unwrap();
    assert_eq!(count, 0);
}

async fn tables_with_rows_keep_their_indexes(t: TestDatabase) {
    let db = setup(&t).await;
    let mut tx = db.begin().await.unwrap();
    run(&mut tx, "INSERT INTO parents (id, name) VALUES (1, 'a')")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let before = catalog(&db).await;
    let mut tx = db.begin().await.unwrap();
    let deferred = DeferredIndexes::set_aside(&mut tx, &TABLES).await.unwrap();
    assert!(deferred.is_none(), "one table holds a row");
    tx.commit().await.unwrap();
    assert_eq!(catalog(&db).await, before);
}

/// Pages whose rows every transaction sees without a lookup, and all pages, of `table`, as
/// an `ANALYZE` finds them in PostgreSQL's visibility map.
async fn visible_pages(db: &Db, table: &str) -> (i32, i32) {
    let analyze = format!("ANALYZE {table}");
    on_pool!(db, |c| sqlx::raw_sql(sqlx::AssertSqlSafe(analyze.clone()))
        .execute(c)
        .await
        .map(|_| ()))
    .unwrap();
    on_pool!(db, |c| sqlx::query_as(
        "SELECT relallvisible, relpages FROM pg_class
         WHERE oid = (current_schema() || '.' || $1)::regclass"
    )
    .bind(table)
    .fetch_one(c)
    .await)
    .unwrap()
}

/// One `COPY` of two parents and two children, frozen or not.
async fn copy_family(tx: &mut Tx, frozen: bool) -> Result<(), sqlx::Error> {
    use store::copy_text::{CopyLoad, CopyRows};
    let mut parents = CopyRows::with_capacity(64);
    let mut children = CopyRows::with_capacity(64);
    for id in [1_i64, 2] {
        parents.value(id).value(format!("p{id}").as_str());
        parents.end_row();
        children
            .value(id * 10)
            .value(id)
            .value(format!("c{id}").as_str())
            .value(None::<&str>);
        children.end_row();
    }
    let mut load = CopyLoad::new([
        (parents, "COPY parents (id, name) FROM STDIN"),
        (
            children,
            "COPY children (id, parent_id, code, note) FROM STDIN",
        ),
    ]);
    if frozen {
        load.freeze();
    }
    let Tx::Postgres(t) = tx else {
        panic!("COPY is PostgreSQL's");
    };
    load.send(&mut *t).await
}

async fn a_load_into_emptied_tables_is_written_frozen(t: TestDatabase) {
    let db = setup(&t).await;
    let (mut tx, deferred) = set_aside_in_empty_tables(&db).await;
    if db.backend() == Backend::Sqlite {
        assert!(!deferred.rows_may_be_frozen(), "PostgreSQL's alone");
        return;
    }
    assert!(deferred.rows_may_be_frozen());
    copy_family(&mut tx, true).await.expect("a frozen COPY");
    deferred.rebuild(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let (visible, pages) = visible_pages(&db, "children").await;
    assert!(pages > 0);
    assert_eq!(
        visible, pages,
        "no VACUUM needed to make them visible to all"
    );
    let count: i64 = on_pool!(&db, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM children JOIN parents ON parents.id = children.parent_id"
    )
    .fetch_one(c)
    .await)
    .unwrap();
    assert_eq!(count, 2);

    // Tables that already hold rows: nothing set aside, and a frozen COPY is refused, so a
    // load never freezes rows into tables it did not empty.
    let mut tx = db.begin().await.unwrap();
    assert!(
        DeferredIndexes::set_aside(&mut tx, &TABLES)
            .await
            .unwrap()
            .is_none()
    );
    assert!(copy_family(&mut tx, true).await.is_err());
}

async fn rows_of_a_table_that_leads_to_the_loaded_ones_are_never_truncated(t: TestDatabase) {
    let db = setup(&t).await;
    // A note on no child (its key may be NULL): `notes` holds a row while `children` is
    // empty, and `remarks` leads to the children through it.
    let mut tx = db.begin().await.unwrap();
    run(
        &mut tx,
        "INSERT INTO notes (id, child_id) VALUES (1, NULL);
         INSERT INTO remarks (id, note_id) VALUES (7, 1);",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (mut tx, deferred) = set_aside_in_empty_tables(&db).await;
    assert!(
        !deferred.rows_may_be_frozen(),
        "emptying them would lose the note"
    );
    if db.backend() == Backend::Postgres {
        copy_family(&mut tx, false).await.unwrap();
    }
    deferred.rebuild(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let kept: (i64, i64) = on_pool!(&db, |c| sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM notes), (SELECT COUNT(*) FROM remarks)"
    )
    .fetch_one(c)
    .await)
    .unwrap();
    assert_eq!(kept, (1, 1));
}
