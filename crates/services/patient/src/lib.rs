//! The patient service (000 §2.1.1): demographics, medical records, the patient timeline,
//! lab order requests and discharges.

mod adt;
pub mod app;
mod audited;
pub mod consumers;
pub mod domain;
pub mod errors;
pub mod http;
pub mod store;

use ::store::{Migration, MigrationSet};

pub const SERVICE: &str = "patient";

/// The patient service's own tables; the composition root applies them with the outbox's.
/// PostgreSQL has one more (row-level security), which SQLite has no counterpart for.
pub const MIGRATIONS: MigrationSet = MigrationSet {
    component: SERVICE,
    sqlite: &[
        Migration {
            version: 1,
            name: "patient tables",
            sql: include_str!("../migrations/sqlite/0001_patient_tables.sql"),
        },
        Migration {
            version: 2,
            name: "idempotency keys",
            sql: include_str!("../migrations/sqlite/0002_idempotency_keys.sql"),
        },
        Migration {
            version: 3,
            name: "sealed fields",
            sql: include_str!("../migrations/sqlite/0003_sealed_fields.sql"),
        },
        Migration {
            version: 4,
            name: "tenant of addresses and insurance",
            sql: include_str!("../migrations/sqlite/0004_child_tenant.sql"),
        },
    ],
    postgres: &[
        Migration {
            version: 1,
            name: "patient tables",
            sql: include_str!("../migrations/postgres/0001_patient_tables.sql"),
        },
        Migration {
            version: 2,
            name: "idempotency keys",
            sql: include_str!("../migrations/postgres/0002_idempotency_keys.sql"),
        },
        Migration {
            version: 3,
            name: "sealed fields",
            sql: include_str!("../migrations/postgres/0003_sealed_fields.sql"),
        },
        Migration {
            version: 4,
            name: "row-level security",
            sql: include_str!("../migrations/postgres/0004_row_level_security.sql"),
        },
        Migration {
            version: 5,
            name: "tenant of addresses and insurance",
            sql: include_str!("../migrations/postgres/0005_child_tenant.sql"),
        },
    ],
};

/// Everything the service's database needs, in order.
pub fn migrations() -> [MigrationSet; 3] {
    [
        ::store::outbox::MIGRATIONS,
        ::store::inbox::MIGRATIONS,
        MIGRATIONS,
    ]
}
