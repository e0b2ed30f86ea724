//! The built-in token issuer (000 §5.1's Keycloak, for the embedded default): accounts
//! made with `meditrack users add`, tokens from `POST /auth/token`, keys at `/auth/jwks`.
//! Deployments with Keycloak leave it off and point `MEDITRACK_OIDC_ISSUER` at the realm.

pub mod app;
pub mod http;
pub mod store;
pub mod user;

use ::store::{Migration, MigrationSet};

pub const SERVICE: &str = "identity";

pub const MIGRATIONS: MigrationSet = MigrationSet {
    component: SERVICE,
    sqlite: &[Migration {
        version: 1,
        name: "users and refresh tokens",
        sql: include_str!("../migrations/sqlite/0001_identity.sql"),
    }],
    postgres: &[Migration {
        version: 1,
        name: "users and refresh tokens",
        sql: include_str!("../migrations/postgres/0001_identity.sql"),
    }],
};
