//! Multi-row statements: how many rows one statement takes, and its parameter lists.
//!
//! On SQLite the lists are anonymous `?`: its driver binds a `$N` parameter by looking its
//! name up among all of the statement's (a linear search each, so the cost grew with the
//! square of the count: 75 % of a 500-row insert, profiled), while `?` it binds in order.
//! A statement that uses these lists on SQLite must therefore use `?` for every parameter.

use crate::copy_text::CopyLoad;
use crate::{Backend, DbError, Tx};
use sqlx::sqlite::{Sqlite, SqliteArguments};
use sqlx::{AssertSqlSafe, Execute};

/// A batch of a bulk load, prepared (on a thread other than the writer's, since that is
/// CPU work) for the backend it goes to: on PostgreSQL its `COPY` rows, encoded already;
/// on SQLite the rows `R` themselves, for multi-row INSERTs.
#[derive(Debug)]
pub enum Batch<R> {
    Copy(CopyLoad),
    Rows(R),
}

/// How many encoded bytes of `COPY` rows a writer gathers from consecutive batches before
/// it sends them ([`Batch::gather`]). Each `COPY` statement costs a load a fixed wait, about
/// 40 ms over TCP whatever its size: sqlx leaves Nagle's algorithm on for its sockets (no
/// `TCP_NODELAY`), so the `CopyDone` written right after the rows waits for the server to
/// acknowledge them, which it delays by up to 40 ms on Linux. In the server's log of a
/// 10,000-patient seed, a batch of 2,000 patients' `COPY`s of a few rows each took 44 ms,
/// and over a Unix socket none did.
pub const COPY_BYTES: usize = 16 << 20;

impl<R> Batch<R> {
    /// `rows` for `backend`, encoded by `encode` on PostgreSQL.
    pub fn prepare(backend: Backend, rows: R, encode: impl FnOnce(&R) -> CopyLoad) -> Self {
        match backend {
            Backend::Postgres => Batch::Copy(encode(&rows)),
            Backend::Sqlite => Batch::Rows(rows),
        }
    }

    /// Adds `next` to this batch where they can be sent as one (on PostgreSQL, `COPY` rows
    /// of the same tables, while under [`COPY_BYTES`]) and returns `None`; otherwise returns
    /// `next`, for the caller to send this batch first.
    pub fn gather(&mut self, next: Batch<R>) -> Option<Batch<R>> {
        match (self, next) {
            (Batch::Copy(load), Batch::Copy(more)) if load.bytes() < COPY_BYTES => {
                load.append(more).err().map(Batch::Copy)
            }
            (_, next) => Some(next),
        }
    }

    /// Has a `COPY` batch's rows written frozen ([`CopyLoad::freeze`]); nothing for others.
    pub fn freeze(&mut self) {
        if let Batch::Copy(load) = self {
            load.freeze();
        }
    }

    /// Sends a `COPY` batch in `tx` (which only a schema owner's transaction may do:
    /// PostgreSQL refuses `COPY FROM` under row-level security) and returns `None`; returns
    /// the rows of any other batch, for the caller to insert.
    pub async fn copy_or_rows(self, tx: &mut Tx) -> Result<Option<R>, DbError> {
        match (self, tx) {
            (Batch::Copy(load), Tx::Postgres(t)) => {
                load.send(t).await?;
                Ok(None)
            }
            (Batch::Rows(rows), Tx::Sqlite(_)) => Ok(Some(rows)),
            _ => Err(DbError::Invariant(
                "a bulk batch prepared for another backend",
            )),
        }
    }
}

/// A bulk load's statements on SQLite with their parameters bound already. Binding a
/// 500-row statement's 10,000 parameters is CPU work: done by the thread that prepares a
/// batch, it overlaps the previous batch's statements, where done by the writer it came
/// between them (profiled: the connection's thread was busy half of a 100,000-patient seed,
/// waiting for its next statement the other half).
#[derive(Debug, Default)]
pub struct Bound(Vec<(String, SqliteArguments)>);

impl Bound {
    /// Adds `query`, whose text is `sql`, with the parameters bound to it.
    pub fn push<'q>(
        &mut self,
        sql: String,
        mut query: sqlx::query::Query<'q, Sqlite, SqliteArguments>,
    ) -> Result<(), DbError> {
        let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
        self.0.push((sql, arguments.unwrap_or_default()));
        Ok(())
    }

    /// Runs the statements, in order, in `tx`.
    pub async fn execute(self, tx: &mut Tx) -> Result<(), DbError> {
        let Tx::Sqlite(t) = tx else {
            return Err(DbError::Invariant("SQLite statements on another backend"));
        };
        for (sql, arguments) in self.0 {
            sqlx::query_with(AssertSqlSafe(sql), arguments)
                .execute(t.conn())
                .await?;
        }
        Ok(())
    }
}

/// Rows per statement: 20 columns of these stay under PostgreSQL's 65,535 bind parameters
/// and SQLite's 32,766.
pub fn rows_per_statement(_backend: Backend) -> usize {
    500
}

/// `count` parameters from the `first`th, comma-separated: `$first, …` on PostgreSQL,
/// `?, …` on SQLite.
pub fn params(backend: Backend, first: usize, count: usize) -> String {
    let mut out = String::with_capacity(count * 7);
    push_params(&mut out, backend, first, count);
    out
}

/// [`params`], written onto `out`. One string for a whole statement: a 500-row insert has
/// 10,000 parameters, and a string apiece (then joined) was 12 % of the seed's CPU.
fn push_params(out: &mut String, backend: Backend, first: usize, count: usize) {
    use std::fmt::Write;
    for n in first..first + count {
        if n > first {
            out.push_str(", ");
        }
        match backend {
            // Writing to a String cannot fail.
            Backend::Postgres => {
                let _ = write!(out, "${n}");
            }
            Backend::Sqlite => out.push('?'),
        }
    }
}

/// `($1, …, $cols), ($cols+1, …)` for `rows` rows (on SQLite `(?, …), …`).
pub fn placeholders(backend: Backend, rows: usize, cols: usize) -> String {
    placeholders_from(backend, 1, rows, cols)
}

/// [`placeholders`] numbered from `$first`: for a statement with more than one list.
pub fn placeholders_from(backend: Backend, first: usize, rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * (cols * 7 + 4));
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        push_params(&mut out, backend, first + r * cols, cols);
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_every_column_of_every_row() {
        assert_eq!(
            placeholders(Backend::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(params(Backend::Postgres, 2, 3), "$2, $3, $4");
        assert_eq!(
            placeholders_from(Backend::Postgres, 7, 2, 2),
            "($7, $8), ($9, $10)"
        );
        assert_eq!(params(Backend::Sqlite, 1, 1), "?");
        assert_eq!(placeholders(Backend::Sqlite, 0, 3), "");
    }
}
