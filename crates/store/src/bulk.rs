//! Multi-row statements: how many rows one statement takes, and its parameter lists.
//!
//! On SQLite the lists are anonymous `?`: its driver binds a `$N` parameter by looking its
//! name up among all of the statement's (a linear search each, so the cost grew with the
//! square of the count: 75 % of a 500-row insert, profiled), while `?` it binds in order.
//! A statement that uses these lists on SQLite must therefore use `?` for every parameter.

use crate::Backend;

/// Rows per statement: 20 columns of these stay under PostgreSQL's 65,535 bind parameters
/// and SQLite's 32,766.
pub fn rows_per_statement(_backend: Backend) -> usize {
    500
}

/// `count` parameters from the `first`th, comma-separated: `$first, …` on PostgreSQL,
/// `?, …` on SQLite.
pub fn params(backend: Backend, first: usize, count: usize) -> String {
    let list: Vec<String> = (first..first + count)
        .map(|n| match backend {
            Backend::Postgres => format!("${n}"),
            Backend::Sqlite => "?".to_owned(),
        })
        .collect();
    list.join(", ")
}

/// `($1, …, $cols), ($cols+1, …)` for `rows` rows (on SQLite `(?, …), …`).
pub fn placeholders(backend: Backend, rows: usize, cols: usize) -> String {
    placeholders_from(backend, 1, rows, cols)
}

/// [`placeholders`] numbered from `$first`: for a statement with more than one list.
pub fn placeholders_from(backend: Backend, first: usize, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", params(backend, first + r * cols, cols)))
        .collect::<Vec<_>>()
        .join(", ")
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
    }
}
