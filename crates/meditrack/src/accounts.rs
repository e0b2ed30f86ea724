//! The built-in issuer as the composition root and the CLI need it: its signing key in
//! the data directory and its service over the identity database.

use crate::{Config, StartError};
use auth::keys::{KeyError, SigningKey};
use identity::app::{IdentityService, Issuer};
use identity::store::IdentityStore;
use kernel::SystemClock;
use std::sync::Arc;
use store::Db;

/// `<data_dir>/keys/token-signing-key.pem`, made on first start.
pub fn signing_key(config: &Config) -> Result<SigningKey, KeyError> {
    SigningKey::load_or_create(&config.data_dir.join("keys"))
}

pub fn identity_service(config: &Config, db: Db) -> Result<IdentityService, StartError> {
    let issuer = Issuer {
        url: config.public_url(),
        audience: config.oidc_audience.clone(),
        key: signing_key(config)?,
    };
    Ok(IdentityService::new(
        IdentityStore::new(db),
        issuer,
        Arc::new(SystemClock),
    ))
}

/// The identity service over its (migrated) database, for `meditrack users`.
pub async fn open_identity(config: &Config) -> Result<(IdentityService, Db), StartError> {
    let opened = crate::open(config, &[identity::SERVICE]).await?;
    let db = crate::database(&opened, identity::SERVICE)?;
    Ok((identity_service(config, db.clone())?, db))
}
