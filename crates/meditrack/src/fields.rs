//! Field encryption as the composition root and `meditrack keys` need it: the keyring from
//! the configuration, the patient store over it (checked, and with older plaintext sealed),
//! and key rotation.

use crate::{Config, StartError};
use auth::sealing::{FieldCipher, Keyring, RELOAD_INTERVAL};
use patient::store::{Reseal, SqlPatientStore};
use std::sync::Arc;
use store::Db;

/// Rows per transaction when re-sealing: short enough not to hold writers up.
const BATCH: i64 = 500;

/// The keyring the configuration names: given inline, or the file (made on first start).
pub fn cipher(config: &Config) -> Result<FieldCipher, StartError> {
    let keyring_error = |e: auth::sealing::KeyringError| StartError::Config(e.to_string());
    match &config.keyring {
        Some(text) => Ok(FieldCipher::new(
            Keyring::parse(text.expose()).map_err(keyring_error)?,
        )),
        None => FieldCipher::from_file(&config.keyring_path()).map_err(keyring_error),
    }
}

/// The patient store over `db`, once the keyring is known to open its data and any
/// plaintext left by a version before field encryption is sealed.
pub async fn patient_store(config: &Config, db: Db) -> Result<SqlPatientStore, StartError> {
    let store = SqlPatientStore::new(db, Arc::new(cipher(config)?));
    prepare(&store).await?;
    Ok(store)
}

async fn prepare(store: &SqlPatientStore) -> Result<(), StartError> {
    store.check_keyring().await.map_err(|e| match e {
        patient::store::KeyringCheckError::Db(source) => StartError::Database {
            service: patient::SERVICE,
            source,
        },
        other => StartError::Config(format!("field-encryption keyring: {other}")),
    })?;
    let sealed = store
        .reseal(Reseal::Plaintext, BATCH)
        .await
        .map_err(|source| StartError::Database {
            service: patient::SERVICE,
            source,
        })?;
    if sealed > 0 {
        tracing::info!(values = sealed, "plaintext from an older version sealed");
    }
    Ok(())
}

async fn open_store(config: &Config) -> Result<SqlPatientStore, String> {
    let opened = crate::open(config, &[patient::SERVICE])
        .await
        .map_err(|e| e.to_string())?;
    let db = crate::database(&opened, patient::SERVICE).map_err(|e| e.to_string())?;
    patient_store(config, db).await.map_err(|e| e.to_string())
}

/// What `meditrack keys status` prints: the active key and what each key seals.
pub async fn status(config: &Config) -> Result<String, String> {
    let store = open_store(config).await?;
    let keyring = store.cipher().keyring();
    let counts = store.sealed_values().await.map_err(|e| e.to_string())?;
    let mut out = format!("active key: {}\n", keyring.active());
    for (id, values) in counts {
        let held = if keyring.key_ids().contains(&id) {
            ""
        } else {
            " (not in the keyring)"
        };
        out.push_str(&format!("key {id}: {values} sealed value(s){held}\n"));
    }
    Ok(out)
}

/// `meditrack keys rotate`: a new master key becomes active, and every value sealed under
/// an older one is re-sealed, in short batches, while the hub keeps serving. Running hubs
/// pick the new keyring up from the file within [`RELOAD_INTERVAL`]; a second pass after
/// that catches what they sealed under the old key meanwhile.
pub async fn rotate(config: &Config) -> Result<String, String> {
    if config.keyring.is_some() {
        return Err(
            "the keyring is given through MEDITRACK_KEYRING: rotate it in a file \
                    (MEDITRACK_KEYRING_FILE), or put the new keyring in the variable and restart"
                .to_owned(),
        );
    }
    let path = config.keyring_path();
    let current = Keyring::load(&path).map_err(|e| e.to_string())?;
    let next = current.rotated();
    next.save(&path).map_err(|e| e.to_string())?;
    tracing::info!(active = next.active(), "new master key made active");
    let store = open_store(config).await?;
    let mut resealed = store
        .reseal(Reseal::All, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(RELOAD_INTERVAL + std::time::Duration::from_secs(1)).await;
    loop {
        let more = store
            .reseal(Reseal::All, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        resealed += more;
        if more == 0 {
            break;
        }
    }
    let counts = store.sealed_values().await.map_err(|e| e.to_string())?;
    let retired: Vec<String> = counts
        .iter()
        .filter(|(id, n)| **id != next.active() && **n == 0 && current.key_ids().contains(id))
        .map(|(id, _)| id.to_string())
        .collect();
    let mut out = format!(
        "key {} is active; {resealed} value(s) re-sealed\n",
        next.active()
    );
    if !retired.is_empty() {
        out.push_str(&format!(
            "no value needs key(s) {} any more: once every backup made before now has expired, \
             remove them with `meditrack keys retire <id>`\n",
            retired.join(", ")
        ));
    }
    Ok(out)
}

/// `meditrack keys retire ID`: removes a master key no value needs.
pub async fn retire(config: &Config, id: u32) -> Result<String, String> {
    if config.keyring.is_some() {
        return Err("the keyring is given through MEDITRACK_KEYRING: edit it there".to_owned());
    }
    let path = config.keyring_path();
    let keyring = Keyring::load(&path).map_err(|e| e.to_string())?;
    let next = keyring
        .without(id)
        .ok_or_else(|| format!("key {id} is not in the keyring, or is the active key"))?;
    let store = open_store(config).await?;
    let still = store
        .sealed_values()
        .await
        .map_err(|e| e.to_string())?
        .get(&id)
        .copied()
        .unwrap_or(0);
    if still > 0 {
        return Err(format!(
            "{still} value(s) are still sealed under key {id}: run `meditrack keys rotate` first"
        ));
    }
    next.save(&path).map_err(|e| e.to_string())?;
    store.forget_key(id).await.map_err(|e| e.to_string())?;
    Ok(format!("key {id} removed from the keyring\n"))
}
