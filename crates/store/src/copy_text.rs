//! Rows in PostgreSQL's `COPY … FROM STDIN` text format, for bulk loads. A multi-row
//! INSERT of 500 rows made the server plan 10,000 parameters and build an expression for
//! each; `COPY` parses rows straight into the table. Under row-level security PostgreSQL
//! refuses `COPY FROM`, so only a schema owner's transaction (the seed's) can use it.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use sqlx::PgConnection;
use std::io::Write;

/// Rows being written, column by column.
#[derive(Debug, Default)]
pub struct CopyRows {
    /// Rows gathered from other loads ahead of `buf`'s ([`CopyLoad::append`]), each in its
    /// own buffer: copying them into one was 6 % of the seed's CPU, and the doubling of that
    /// buffer as it grew was most of the seed's peak memory.
    earlier: Vec<Vec<u8>>,
    /// The rows being written.
    buf: Vec<u8>,
    /// Whether the next value starts a row (no tab before it).
    at_row_start: bool,
    rows: u64,
}

/// A value as COPY's text format spells it.
pub trait CopyValue {
    fn write_to(&self, out: &mut Vec<u8>);
}

impl CopyRows {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            earlier: Vec::new(),
            buf: Vec::with_capacity(bytes),
            at_row_start: true,
            rows: 0,
        }
    }

    /// Appends one column's value to the current row.
    pub fn value(&mut self, v: impl CopyValue) -> &mut Self {
        if !self.at_row_start {
            self.buf.push(b'\t');
        }
        self.at_row_start = false;
        v.write_to(&mut self.buf);
        self
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        self.buf.push(b'\n');
        self.at_row_start = true;
        self.rows += 1;
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The rows of `other` after these (each ends its last row, so they follow on).
    fn append(&mut self, other: CopyRows) {
        let mine = std::mem::replace(&mut self.buf, other.buf);
        self.earlier.push(mine);
        self.earlier.extend(other.earlier);
        self.rows += other.rows;
    }

    /// The encoded rows, in order.
    fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.earlier
            .iter()
            .map(Vec::as_slice)
            .chain([self.buf.as_slice()])
    }

    /// The encoded size of the rows.
    fn bytes(&self) -> usize {
        self.chunks().map(<[u8]>::len).sum()
    }

    /// Sends the rows with `statement` (`COPY table (columns) FROM STDIN`), on `conn`.
    /// Returns the rows the server took; nothing when there are none.
    pub async fn send(&self, conn: &mut PgConnection, statement: &str) -> Result<u64, sqlx::Error> {
        if self.rows == 0 {
            return Ok(0);
        }
        let mut copy = conn.copy_in_raw(statement).await?;
        for chunk in self.chunks() {
            copy.send(chunk).await?;
        }
        copy.finish().await
    }
}

/// Tables' rows, each with its `COPY` statement, encoded and ready to send: a load encodes
/// one batch on a thread of its own while the previous one is being sent, so that neither
/// the server nor the encoder waits for the other.
#[derive(Debug, Default)]
pub struct CopyLoad {
    tables: Vec<(CopyRows, &'static str)>,
    frozen: bool,
}

impl CopyLoad {
    pub fn new(tables: impl IntoIterator<Item = (CopyRows, &'static str)>) -> Self {
        Self {
            tables: tables.into_iter().collect(),
            frozen: false,
        }
    }

    /// Has the rows written frozen (`COPY … (FREEZE)`): already visible to every
    /// transaction, as a `VACUUM` would otherwise leave them after the load by writing
    /// every page again. PostgreSQL allows it only into tables emptied by `TRUNCATE` (or
    /// created) in the sending transaction, which [`crate::DeferredIndexes`] tells.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Adds `other`'s rows to this load's, table by table; `other` back, untouched, when
    /// its tables are not these.
    pub fn append(&mut self, other: CopyLoad) -> Result<(), CopyLoad> {
        let same = self.tables.len() == other.tables.len()
            && self
                .tables
                .iter()
                .zip(&other.tables)
                .all(|(a, b)| a.1 == b.1);
        if !same {
            return Err(other);
        }
        for ((rows, _), (more, _)) in self.tables.iter_mut().zip(other.tables) {
            rows.append(more);
        }
        Ok(())
    }

    /// The encoded size of every table's rows.
    pub fn bytes(&self) -> usize {
        self.tables.iter().map(|(rows, _)| rows.bytes()).sum()
    }

    /// Sends each table's rows, in order, on `conn`.
    pub async fn send(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        for (rows, statement) in &self.tables {
            if self.frozen {
                rows.send(&mut *conn, &format!("{statement} (FREEZE)"))
                    .await?;
            } else {
                rows.send(&mut *conn, statement).await?;
            }
        }
        Ok(())
    }
}

impl CopyValue for &str {
    fn write_to(&self, out: &mut Vec<u8>) {
        // Runs between the bytes that need escaping go as one copy: a push per byte was
        // 7 % of the seed's CPU.
        let bytes = self.as_bytes();
        let mut run = 0;
        for (i, b) in bytes.iter().enumerate() {
            let escaped: &[u8] = match b {
                b'\\' => b"\\\\",
                b'\t' => b"\\t",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                _ => continue,
            };
            out.extend_from_slice(&bytes[run..i]);
            out.extend_from_slice(escaped);
            run = i + 1;
        }
        out.extend_from_slice(&bytes[run..]);
    }
}

impl CopyValue for &String {
    fn write_to(&self, out: &mut Vec<u8>) {
        self.as_str().write_to(out)
    }
}

impl<T: CopyValue> CopyValue for Option<T> {
    fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.write_to(out),
            None => out.extend_from_slice(b"\\N"),
        }
    }
}

impl CopyValue for uuid::Uuid {
    fn write_to(&self, out: &mut Vec<u8>) {
        let mut text = uuid::Uuid::encode_buffer();
        out.extend_from_slice(self.hyphenated().encode_lower(&mut text).as_bytes());
    }
}

impl CopyValue for bool {
    fn write_to(&self, out: &mut Vec<u8>) {
        out.push(if *self { b't' } else { b'f' });
    }
}

macro_rules! copy_integer {
    ($($t:ty),+) => {$(
        impl CopyValue for $t {
            fn write_to(&self, out: &mut Vec<u8>) {
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{self}");
            }
        }
    )+};
}
copy_integer!(i16, i32, i64);

impl CopyValue for NaiveDate {
    fn write_to(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "{}", self.format("%Y-%m-%d"));
    }
}

/// To the microsecond, as PostgreSQL keeps it (and as sqlx's binary encoding truncates).
impl CopyValue for DateTime<Utc> {
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
    }
}

/// A value for a `JSONB` column.
#[derive(Debug)]
pub struct JsonText<'a, T: serde::Serialize>(pub &'a T);

impl<T: serde::Serialize> CopyValue for JsonText<'_, T> {
    fn write_to(&self, out: &mut Vec<u8>) {
        let text = serde_json::to_string(self.0).unwrap_or_else(|_| "null".to_owned());
        text.as_str().write_to(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(rows: &CopyRows) -> String {
        String::from_utf8(rows.chunks().flatten().copied().collect()).unwrap()
    }

    #[test]
    fn values_are_spelled_and_escaped_as_copy_text_wants() {
        let mut rows = CopyRows::with_capacity(64);
        rows.value("a\tb\\c\nd\re")
            .value(None::<&str>)
            .value(true)
            .value(-7_i16)
            .value(NaiveDate::from_ymd_opt(1990, 2, 3).unwrap())
            .value(uuid::Uuid::nil())
            .value(JsonText(&vec!["x\ty"]));
        rows.end_row();
        rows.value(false)
            .value("\\\tx\n\n")
            .value("")
            .value("plain");
        rows.end_row();
        assert_eq!(
            text(&rows),
            "a\\tb\\\\c\\nd\\re\t\\N\tt\t-7\t1990-02-03\t00000000-0000-0000-0000-000000000000\t[\"x\\\\ty\"]\n\
             f\t\\\\\\tx\\n\\n\t\tplain\n"
        );
        assert_eq!(rows.rows(), 2);
    }

    #[test]
    fn loads_of_the_same_tables_append_row_for_row_and_others_are_handed_back() {
        let load = |first: &str, second: i16| {
            let mut a = CopyRows::with_capacity(16);
            a.value(first);
            a.end_row();
            let mut b = CopyRows::with_capacity(16);
            b.value(second);
            b.end_row();
            CopyLoad::new([(a, "COPY a FROM STDIN"), (b, "COPY b FROM STDIN")])
        };
        let mut gathered = load("x", 1);
        gathered.append(load("y", 2)).unwrap();
        let mut more = load("z", 3);
        more.append(load("w", 4)).unwrap();
        gathered.append(more).unwrap();
        let table = |i: usize| text(&gathered.tables[i].0);
        assert_eq!(
            (table(0).as_str(), table(1).as_str()),
            ("x\ny\nz\nw\n", "1\n2\n3\n4\n")
        );
        assert_eq!(
            (gathered.tables[0].0.rows(), gathered.tables[1].0.rows()),
            (4, 4)
        );
        assert_eq!(gathered.bytes(), 16);
        let mut other = CopyRows::with_capacity(4);
        other.value(true);
        other.end_row();
        let refused = gathered.append(CopyLoad::new([(other, "COPY c FROM STDIN")]));
        assert!(refused.is_err());
        assert_eq!(gathered.bytes(), 16);
    }

    #[test]
    fn timestamps_keep_microseconds_in_utc() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T11:22:36.123456789+01:00")
            .unwrap()
            .with_timezone(&Utc);
        let mut out = Vec::new();
        at.write_to(&mut out);
        assert_eq!(out, b"2026-12-03T10:22:36.123456Z");
    }
}
