//! The audit service (000 §2.2.2): who did what to which record, kept append-only and
//! hash-chained per tenant ([`chain`]), written in group commits ([`writer`]), published on
//! `audit-events` from the trail itself ([`relay`]), verified by `meditrack audit verify`,
//! and purged after its retention.

pub mod chain;
pub mod http;
pub mod relay;
pub mod store;
pub mod writer;

use ::store::{Migration, MigrationSet};

pub const SERVICE: &str = "audit";

pub const MIGRATIONS: MigrationSet = MigrationSet {
    component: SERVICE,
    sqlite: &[
        Migration {
            version: 1,
            name: "audit log",
            sql: include_str!("../migrations/sqlite/0001_audit_log.sql"),
        },
        Migration {
            version: 2,
            name: "published from the trail",
            sql: include_str!("../migrations/sqlite/0002_published.sql"),
        },
    ],
    postgres: &[
        Migration {
            version: 1,
            name: "audit log",
            sql: include_str!("../migrations/postgres/0001_audit_log.sql"),
        },
        Migration {
            version: 2,
            name: "row-level security",
            sql: include_str!("../migrations/postgres/0002_row_level_security.sql"),
        },
        Migration {
            version: 3,
            name: "published from the trail",
            sql: include_str!("../migrations/postgres/0003_published.sql"),
        },
    ],
};

/// Everything the service's database needs, in order.
pub fn migrations() -> [MigrationSet; 2] {
    [::store::outbox::MIGRATIONS, MIGRATIONS]
}
