use std::fmt;

/// A failure of the database itself (unreachable, timed out, a bug in our SQL).
///
/// `Display` says only what kind of failure it was: database messages can quote row values
/// (PostgreSQL's `DETAIL: Key (ssn)=(…)`), and those must not reach logs or clients.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {}", summary(.0))]
    Sqlx(#[from] sqlx::Error),
    /// A direct SQLite write ([`crate::direct`]) failed.
    #[error("database error: {}", direct_summary(.0))]
    Direct(#[from] rusqlite::Error),
    #[error("cannot create the data directory: {0}")]
    DataDir(std::io::Error),
    #[error(
        "migration {component}/{version} was changed after it was applied; migrations are never edited once landed"
    )]
    MigrationEdited { component: String, version: i64 },
    #[error(
        "the database has migration {component}/{version}, which this build does not know; is it older than the database?"
    )]
    MigrationUnknown { component: String, version: i64 },
    /// Something the schema guarantees did not hold; a bug, not bad input.
    #[error("invariant broken: {0}")]
    Invariant(&'static str),
}

/// The kind of a sqlx error plus, for database errors, the SQLSTATE/primary message only.
fn summary(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            format!(
                "{} ({})",
                db.message(),
                db.code().as_deref().unwrap_or("no code")
            )
        }
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_owned(),
        sqlx::Error::Io(io) => format!("I/O: {io}"),
        sqlx::Error::RowNotFound => "row not found".to_owned(),
        other => other_kind(other).to_owned(),
    }
}

/// As [`summary`]: SQLite's message (which names constraints and columns, never values)
/// and its code; of anything else, only the kind.
fn direct_summary(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => format!(
            "{} ({:?})",
            message.as_deref().unwrap_or("no message"),
            code.code
        ),
        rusqlite::Error::QueryReturnedNoRows => "row not found".to_owned(),
        rusqlite::Error::ToSqlConversionFailure(_) => "encoding a value".to_owned(),
        _ => "other".to_owned(),
    }
}

fn other_kind(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Configuration(_) => "configuration",
        sqlx::Error::Tls(_) => "TLS",
        sqlx::Error::Protocol(_) => "protocol",
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => "decoding a column",
        sqlx::Error::ColumnNotFound(_) | sqlx::Error::ColumnIndexOutOfBounds { .. } => {
            "unknown column"
        }
        sqlx::Error::PoolClosed => "pool closed",
        sqlx::Error::WorkerCrashed => "driver worker crashed",
        _ => "other",
    }
}

/// A unique-constraint violation, told apart by constraint name (PostgreSQL) or by the
/// columns SQLite names in its message.
#[derive(Debug)]
pub struct UniqueViolation<'a> {
    constraint: Option<String>,
    message: &'a str,
}

impl UniqueViolation<'_> {
    /// `true` when the violated constraint is `pg_constraint` on PostgreSQL, or, on SQLite,
    /// the unique index over `sqlite_columns` (as SQLite spells them: `patients.tenant_id, patients.mrn`).
    pub fn is(&self, pg_constraint: &str, sqlite_columns: &str) -> bool {
        match &self.constraint {
            Some(c) => c == pg_constraint,
            None => self.message.ends_with(sqlite_columns),
        }
    }
}

impl fmt::Display for UniqueViolation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.constraint.as_deref().unwrap_or(self.message))
    }
}

fn unique_violation(e: &sqlx::Error) -> Option<UniqueViolation<'_>> {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Some(UniqueViolation {
            constraint: db.constraint().map(str::to_owned),
            message: db.message(),
        }),
        _ => None,
    }
}

/// As sqlx tells a SQLite unique violation: by the extended result code, which a primary
/// key has its own of.
pub fn direct_unique_violation(e: &rusqlite::Error) -> Option<UniqueViolation<'_>> {
    match e {
        rusqlite::Error::SqliteFailure(code, Some(message))
            if matches!(
                code.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ) =>
        {
            Some(UniqueViolation {
                constraint: None,
                message,
            })
        }
        _ => None,
    }
}

impl DbError {
    pub fn unique_violation(&self) -> Option<UniqueViolation<'_>> {
        match self {
            DbError::Sqlx(e) => unique_violation(e),
            DbError::Direct(e) => direct_unique_violation(e),
            _ => None,
        }
    }

    /// Whether PostgreSQL gave up on the transaction because it lost a race with another:
    /// a deadlock (`40P01`: two transactions changing the same rows in different orders)
    /// or a serialization failure (`40001`). Nothing of it was kept, and taking the same
    /// work again, in smaller pieces, can succeed.
    pub fn lost_race(&self) -> bool {
        match self {
            DbError::Sqlx(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }
}
