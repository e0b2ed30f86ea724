//! Multi-row INSERTs for bulk loading (`meditrack seed`): how many rows one statement
//! takes on each backend, and its `VALUES` placeholders.

use crate::Backend;

/// Rows per statement: under PostgreSQL's 65,535 bind parameters. SQLite takes fewer: its
/// driver looks each parameter's name up among all of the statement's (profiled: 75 % of
/// the time went there at 500 rows), so the cost grows with the square of the count.
pub fn rows_per_statement(backend: Backend) -> usize {
    match backend {
        Backend::Postgres => 500,
        Backend::Sqlite => 10,
    }
}

/// `($1, …, $cols), ($cols+1, …)` for `rows` rows.
pub fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_every_column_of_every_row() {
        assert_eq!(super::placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}
