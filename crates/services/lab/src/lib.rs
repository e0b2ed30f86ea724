//! The laboratory service (000 §2.1.2): lab orders with their tests and diagnoses,
//! specimens, results and their verification, critical results.

pub mod app;
pub mod consumers;
pub mod domain;
pub mod errors;
pub mod hl7;
pub mod http;
pub mod lis;
pub mod mllp;
pub mod store;

use ::store::{Migration, MigrationSet};

pub const SERVICE: &str = "lab";

/// The lab service's own tables; the composition root applies them with the outbox's and
/// the inbox's.
pub const MIGRATIONS: MigrationSet = MigrationSet {
    component: SERVICE,
    sqlite: &[
        Migration {
            version: 1,
            name: "lab tables",
            sql: include_str!("../migrations/sqlite/0001_lab_tables.sql"),
        },
        Migration {
            version: 2,
            name: "patient projection",
            sql: include_str!("../migrations/sqlite/0002_patient_projection.sql"),
        },
        Migration {
            version: 3,
            name: "hl7 messages",
            sql: include_str!("../migrations/sqlite/0003_hl7_messages.sql"),
        },
        Migration {
            version: 4,
            name: "one result key",
            sql: include_str!("../migrations/sqlite/0004_one_result_key.sql"),
        },
    ],
    postgres: &[
        Migration {
            version: 1,
            name: "lab tables",
            sql: include_str!("../migrations/postgres/0001_lab_tables.sql"),
        },
        Migration {
            version: 2,
            name: "patient projection",
            sql: include_str!("../migrations/postgres/0002_patient_projection.sql"),
        },
        Migration {
            version: 3,
            name: "hl7 messages",
            sql: include_str!("../migrations/postgres/0003_hl7_messages.sql"),
        },
        Migration {
            version: 4,
            name: "one result key",
            sql: include_str!("../migrations/postgres/0004_one_result_key.sql"),
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
