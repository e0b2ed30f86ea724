//! The patient search statement. Each filter narrows an index range:
//! names are prefix ranges on the lower-cased `*_norm` columns (`>= p AND < p||U+10FFFF`,
//! which a B-tree serves in the "C" collation, unlike `ILIKE` or `lower(x) LIKE $1`),
//! the rest are equalities. Results are ordered by (last, first, id), or by (first, last,
//! id) when only the first name is searched, so that the index narrowing the search also
//! delivers the order; pages continue after the last patient shown.

use super::SearchCriteria;
use super::rows::PATIENT_COLUMNS;
use crate::domain::name::search_key;
use chrono::NaiveDate;
use kernel::TenantId;
use uuid::Uuid;

/// Above every character a name can hold, so `prefix || TOP` bounds all names with that prefix.
const TOP: char = '\u{10FFFF}';

#[derive(Debug, Clone)]
pub enum Bind {
    Text(String),
    Date(NaiveDate),
    Uuid(Uuid),
    Int(i64),
}

/// Where the previous page ended.
#[derive(Debug, Clone)]
pub struct After {
    pub last_name_norm: String,
    pub first_name_norm: String,
    pub id: Uuid,
}

#[derive(Debug)]
pub struct SearchStatement {
    pub sql: String,
    pub binds: Vec<Bind>,
}

impl SearchStatement {
    pub fn build(tenant: &TenantId, c: &SearchCriteria, after: Option<After>, fetch: i64) -> Self {
        let mut s = Self {
            sql: format!(
                "SELECT {PATIENT_COLUMNS} FROM patients WHERE tenant_id = $1 AND deleted_at IS NULL"
            ),
            binds: vec![Bind::Text(tenant.as_str().to_owned())],
        };
        if let Some(last) = &c.last_name {
            s.prefix("last_name_norm", last);
        }
        if let Some(first) = &c.first_name {
            s.prefix("first_name_norm", first);
        }
        if let Some(dob) = c.date_of_birth {
            s.equals("date_of_birth", Bind::Date(dob));
        }
        if let Some(mrn) = &c.mrn {
            s.equals("mrn", Bind::Text(mrn.as_str().to_owned()));
        }
        if let Some(phone) = &c.phone {
            s.equals("phone", Bind::Text(phone.expose().to_owned()));
        }
        if let Some(email) = &c.email {
            s.equals("email_norm", Bind::Text(email.search_key()));
        }
        if let Some(only) = c.only {
            s.equals("patient_id", Bind::Uuid(only.as_uuid()));
        }
        let by_first_name = c.first_name.is_some() && c.last_name.is_none();
        let order = if by_first_name {
            "first_name_norm, last_name_norm, patient_id"
        } else {
            "last_name_norm, first_name_norm, patient_id"
        };
        if let Some(a) = after {
            let (k1, k2) = if by_first_name {
                (a.first_name_norm, a.last_name_norm)
            } else {
                (a.last_name_norm, a.first_name_norm)
            };
            let n = s.binds.len();
            s.sql.push_str(&format!(
                " AND ({order}) > (${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3
            ));
            s.binds
                .extend([Bind::Text(k1), Bind::Text(k2), Bind::Uuid(a.id)]);
        }
        s.binds.push(Bind::Int(fetch));
        s.sql
            .push_str(&format!(" ORDER BY {order} LIMIT ${}", s.binds.len()));
        s
    }

    fn prefix(&mut self, column: &str, value: &str) {
        let key = search_key(value);
        let n = self.binds.len();
        self.sql.push_str(&format!(
            " AND {column} >= ${} AND {column} < ${}",
            n + 1,
            n + 2
        ));
        self.binds.push(Bind::Text(format!("{key}{TOP}")));
        self.binds.insert(n, Bind::Text(key));
    }

    fn equals(&mut self, column: &str, value: Bind) {
        self.binds.push(value);
        self.sql
            .push_str(&format!(" AND {column} = ${}", self.binds.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_binds() {
        let c = SearchCriteria {
            last_name: Some("Smi".into()),
            date_of_birth: NaiveDate::from_ymd_opt(1980, 1, 2),
            ..Default::default()
        };
        let after = After {
            last_name_norm: "smith".into(),
            first_name_norm: "ann".into(),
            id: Uuid::nil(),
        };
        let s = SearchStatement::build(&TenantId::parse("t").unwrap(), &c, Some(after), 21);
        assert!(
            s.sql
                .contains("last_name_norm >= $2 AND last_name_norm < $3"),
            "{}",
            s.sql
        );
        assert!(s.sql.contains("date_of_birth = $4"), "{}", s.sql);
        assert!(s.sql.contains("> ($5, $6, $7)"), "{}", s.sql);
        assert!(s.sql.ends_with("LIMIT $8"), "{}", s.sql);
        assert_eq!(s.binds.len(), 8);
        assert!(matches!(&s.binds[1], Bind::Text(k) if k == "smi"));
    }

    #[test]
    fn a_first_name_search_is_ordered_by_first_name() {
        let c = SearchCriteria {
            first_name: Some("An".into()),
            ..Default::default()
        };
        let after = After {
            last_name_norm: "smith".into(),
            first_name_norm: "ann".into(),
            id: Uuid::nil(),
        };
        let s = SearchStatement::build(&TenantId::parse("t").unwrap(), &c, Some(after), 21);
        assert!(
            s.sql
                .contains("(first_name_norm, last_name_norm, patient_id) > ($4, $5, $6)"),
            "{}",
            s.sql
        );
        assert!(
            s.sql
                .contains("ORDER BY first_name_norm, last_name_norm, patient_id"),
            "{}",
            s.sql
        );
        assert!(matches!(&s.binds[3], Bind::Text(k) if k == "ann"));
    }
}
