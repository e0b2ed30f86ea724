//! A read of one tenant's rows as one statement on PostgreSQL: one round trip where a
//! transaction took three.
//!
//! Row-level security finds the tenant in `app.current_tenant`, which a transaction sets
//! for itself; a read was `BEGIN` with that setting, the statement, and `COMMIT`. Here the
//! statement sets it first, in its own (implicit) transaction: [`in_tenant`] puts the
//! read on the inner side of a lateral join whose outer row is the setting, so the executor
//! has it in place before it scans a table. A pgbench of the patient read (16 connections,
//! 100,000 patients, row-level security on, alternating runs) did 12,700–15,500 such reads
//! a second against 6,000–6,600 in a transaction. Sending the setting and the statement as
//! one query string is one round trip too, but is planned every time: 7,200–7,300/s.
//!
//! Should the order ever differ, the read would see no rows rather than another tenant's:
//! the setting is local to the statement's transaction, and until it is made the policies
//! match nothing.
//!
//! Writes can do the same ([`insert_in_tenant`]): several INSERTs as one statement that
//! sets its tenant first, committed on its own, where a transaction took a `BEGIN` with the
//! setting, a statement each and a `COMMIT`.

/// `select` made to set its own tenant on PostgreSQL, from its parameter `$tenant_param`.
/// Its rows come back as `select` gives them, columns by the same names; for statements
/// that return at most one row (an `ORDER BY` inside would not be kept by the outer query).
pub fn in_tenant(select: &str, tenant_param: usize) -> String {
    format!(
        "SELECT r.* FROM ({}) s \
         CROSS JOIN LATERAL (SELECT * FROM ({select}) q \
         WHERE s.t IS NOT NULL AND s.a IS NOT NULL OFFSET 0) r",
        setting(tenant_param)
    )
}

/// The one row that makes the setting from parameter `$tenant_param`: the tenant as `t`,
/// and `a`, every tenant switched off (the statement's connection may not have set it).
fn setting(tenant_param: usize) -> String {
    format!(
        "SELECT set_config('app.current_tenant', ${tenant_param}, true) AS t, \
         set_config('app.all_tenants', 'off', true) AS a"
    )
}

/// The condition on [`setting`] (a `WITH` part named `tenant_setting`) that each INSERT
/// of [`insert_in_tenant`] waits for: an uncorrelated subquery, which PostgreSQL evaluates
/// once, before the first row (a one-time filter).
const AFTER_SETTING: &str = "WHERE (SELECT t FROM tenant_setting WHERE a IS NOT NULL) IS NOT NULL";

/// One statement of PostgreSQL that makes `inserts`, each an `INSERT INTO t (columns)` and
/// its `VALUES` rows, in the tenant named by its parameter `$tenant_param`, all or none.
/// Each INSERT reads its rows from behind the setting, so none of them is checked against
/// the policies before the setting is made; if one were, the policies' `WITH CHECK` would
/// refuse it (no tenant is set), and the whole statement with it, rather than write it.
/// The setting ends with the statement. Rows of several tables can be written beside each
/// other only when each table's policy is on its own tenant column: a row the statement
/// writes is not visible to the statement itself.
pub fn insert_in_tenant(inserts: &[(&str, String)], tenant_param: usize) -> String {
    let parts = std::iter::once(format!("tenant_setting AS ({})", setting(tenant_param))).chain(
        inserts.iter().enumerate().map(|(n, (insert, values))| {
            format!("w{n} AS ({insert} SELECT * FROM (VALUES {values}) v {AFTER_SETTING})")
        }),
    );
    // Each INSERT is a part of the `WITH`, and the statement itself only reads the
    // setting: PostgreSQL runs every data-modifying part of a `WITH` to its end, whether
    // or not the statement reads it.
    format!(
        "WITH {} SELECT 1 FROM tenant_setting",
        parts.collect::<Vec<_>>().join(", ")
    )
}

/// Runs `$body`, a read of at most one row whose statement is `$sql` with the tenant as
/// parameter `$tenant_param`: on SQLite as it is, on PostgreSQL as [`in_tenant`] makes it,
/// on the pool, outside any transaction. `$c` is the pool, `$s` the statement to run.
#[macro_export]
macro_rules! on_tenant_read {
    ($db:expr, $sql:expr, $tenant_param:expr, |$c:ident, $s:ident| $body:expr) => {
        async {
            match $db {
                $crate::Db::Sqlite(db) => {
                    let $c = &**db;
                    let $s: &str = $sql;
                    $body.map_err($crate::DbError::from)
                }
                $crate::Db::Postgres(pool) => {
                    let wrapped = $crate::tenant_read::in_tenant($sql, $tenant_param);
                    let $c = pool;
                    let $s: &str = &wrapped;
                    $body.map_err($crate::DbError::from)
                }
            }
        }
    };
}
