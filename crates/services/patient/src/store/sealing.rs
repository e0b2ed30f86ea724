//! The sealed columns' upkeep: checking that the keyring is the one the data was sealed
//! with, sealing plaintext left by versions before field encryption, and re-sealing under
//! a new master key (`meditrack keys rotate`) while the service keeps serving.

use super::SqlPatientStore;
use super::rows::{notes_context, ssn_context};
use auth::sealing::FieldCipher;
use sqlx::AssertSqlSafe;
use std::collections::BTreeMap;
use store::{DbError, Scope, execute, on_pool, on_tx};
use uuid::Uuid;

/// A sealed column, the plaintext column it replaced, and its blind index if it has one.
struct SealedColumn {
    table: &'static str,
    id: &'static str,
    legacy: &'static str,
    sealed: &'static str,
    /// The blind-index column kept beside it, and the purpose its hash is keyed for.
    index: Option<(&'static str, &'static str)>,
    context: fn(Uuid) -> String,
}

const COLUMNS: [SealedColumn; 2] = [
    SealedColumn {
        table: "patients",
        id: "patient_id",
        legacy: "ssn",
        sealed: "ssn_sealed",
        index: Some(("ssn_index", "ssn")),
        context: ssn_context,
    },
    SealedColumn {
        table: "medical_records",
        id: "record_id",
        legacy: "notes",
        sealed: "notes_sealed",
        index: None,
        context: notes_context,
    },
];

/// Which values a pass takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Only plaintext written before field encryption existed: cheap, run at every start.
    Plaintext,
    /// That, and every value sealed under a key other than the active one.
    All,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringCheckError {
    #[error(
        "the keyring's {0} is not the one this database's data was sealed with; start with the keyring it was made with"
    )]
    Mismatch(String),
    #[error(
        "{values} value(s) in this database are sealed under key {key}, which the keyring does not hold"
    )]
    Missing { key: u32, values: i64 },
    #[error(transparent)]
    Db(#[from] DbError),
}

fn unopenable(_: auth::sealing::SealError) -> DbError {
    DbError::Invariant("a sealed value does not open with the keyring")
}

impl SqlPatientStore {
    /// Refuses a keyring that cannot open this database's data (a different index secret or
    /// master key under a known number, or a missing key that values still need), and
    /// records the fingerprints of keys seen for the first time.
    pub async fn check_keyring(&self) -> Result<(), KeyringCheckError> {
        let keyring = self.cipher.keyring();
        let registered: Vec<(String, String)> = on_pool!(self.db(), |c| {
            sqlx::query_as("SELECT key_name, fingerprint FROM sealing_keys")
                .fetch_all(c)
                .await
        })
        .map_err(DbError::from)?;
        let registered: BTreeMap<String, String> = registered.into_iter().collect();
        let ours = keyring.fingerprints();
        if let Some((name, _)) = ours
            .iter()
            .find(|(name, fp)| registered.get(name).is_some_and(|known| known != fp))
        {
            return Err(KeyringCheckError::Mismatch(name.clone()));
        }
        let counts = self.sealed_values().await?;
        if let Some((key, values)) = counts
            .iter()
            .find(|(id, n)| **n > 0 && !keyring.key_ids().contains(id))
        {
            return Err(KeyringCheckError::Missing {
                key: *key,
                values: *values,
            });
        }
        // Only a keyring that passed is remembered.
        for (name, fingerprint) in ours.iter().filter(|(n, _)| !registered.contains_key(n)) {
            let mut tx = self.db().begin().await?;
            execute!(
                &mut tx,
                sqlx::query(
                    "INSERT INTO sealing_keys (key_name, fingerprint, registered_at) VALUES ($1, $2, $3)
                     ON CONFLICT (key_name) DO NOTHING",
                )
                .bind(name)
                .bind(fingerprint)
                .bind(chrono::Utc::now())
            )
            .map_err(DbError::from)?;
            tx.commit().await?;
        }
        // Two first starts racing with different keyrings: the one that lost finds out here.
        let now: Vec<(String, String)> = on_pool!(self.db(), |c| {
            sqlx::query_as("SELECT key_name, fingerprint FROM sealing_keys")
                .fetch_all(c)
                .await
        })
        .map_err(DbError::from)?;
        if let Some((name, _)) = now
            .iter()
            .find(|(name, fp)| ours.iter().any(|(n, f)| n == name && f != fp))
        {
            return Err(KeyringCheckError::Mismatch(name.clone()));
        }
        Ok(())
    }

    /// How many values each master key seals, for every key the database has known.
    pub async fn sealed_values(&self) -> Result<BTreeMap<u32, i64>, DbError> {
        let names: Vec<String> = on_pool!(self.db(), |c| {
            sqlx::query_scalar("SELECT key_name FROM sealing_keys")
                .fetch_all(c)
                .await
        })?;
        let mut ids: Vec<u32> = names
            .iter()
            .filter_map(|n| n.strip_prefix("key.")?.parse().ok())
            .collect();
        ids.extend(self.cipher.keyring().key_ids());
        ids.sort_unstable();
        ids.dedup();
        // Every tenant's values: the keyring serves them all.
        let mut tx = self.db().read_in(Scope::AllTenants).await?;
        let mut counts = BTreeMap::new();
        for id in ids {
            let pattern = format!("mt1.{id}.%");
            let mut total = 0;
            for col in &COLUMNS {
                let sql = format!(
                    "SELECT COUNT(*) FROM {} WHERE {} LIKE $1",
                    col.table, col.sealed
                );
                let n: i64 = on_tx!(&mut tx, |c| {
                    sqlx::query_scalar(AssertSqlSafe(sql.as_str()))
                        .bind(&pattern)
                        .fetch_one(c)
                        .await
                })?;
                total += n;
            }
            counts.insert(id, total);
        }
        tx.commit().await?;
        Ok(counts)
    }

    /// Forgets a retired key's fingerprint (`meditrack keys retire`).
    pub async fn forget_key(&self, id: u32) -> Result<(), DbError> {
        let mut tx = self.db().begin().await?;
        execute!(
            &mut tx,
            sqlx::query("DELETE FROM sealing_keys WHERE key_name = $1").bind(format!("key.{id}"))
        )?;
        tx.commit().await
    }

    /// Seals, in batches of `batch` rows (one short transaction each, so the service keeps
    /// serving), the values `which` selects. A row changed meanwhile is left to the next
    /// pass. Returns how many values were written.
    pub async fn reseal(&self, which: Reseal, batch: i64) -> Result<u64, DbError> {
        let mut written = 0;
        for col in &COLUMNS {
            written += self.reseal_column(col, which, batch).await?;
        }
        Ok(written)
    }

    async fn reseal_column(
        &self,
        col: &SealedColumn,
        which: Reseal,
        batch: i64,
    ) -> Result<u64, DbError> {
        let SealedColumn {
            table,
            id,
            legacy,
            sealed,
            ..
        } = col;
        let wanted = match which {
            Reseal::Plaintext => format!("{legacy} IS NOT NULL"),
            Reseal::All => format!("({legacy} IS NOT NULL OR {sealed} IS NOT NULL)"),
        };
        let select = format!(
            "SELECT {id}, tenant_id, {legacy}, {sealed} FROM {table} WHERE {id} > $1 AND {wanted} ORDER BY {id} LIMIT $2"
        );
        let index_set = col
            .index
            .map(|(column, _)| format!(", {column} = $4"))
            .unwrap_or_default();
        let mut written = 0;
        let mut after = Uuid::nil();
        loop {
            // Each row is sealed under its own tenant's key; the pass walks every tenant.
            let mut tx = self.db().begin_in(Scope::AllTenants).await?;
            let rows: Vec<(Uuid, String, Option<String>, Option<String>)> = on_tx!(&mut tx, |c| {
                sqlx::query_as(AssertSqlSafe(select.as_str()))
                    .bind(after)
                    .bind(batch)
                    .fetch_all(c)
                    .await
            })?;
            let Some(last) = rows.last() else { break };
            after = last.0;
            for (row, tenant, plain, current) in rows {
                let context = (col.context)(row);
                // The guard makes the update a no-op if the row changed since it was read.
                let (value, guard, guard_value) = match (plain, current) {
                    (Some(plain), _) => (plain.clone(), *legacy, plain),
                    (None, Some(s)) if !self.cipher.is_current(&s) => (
                        self.cipher
                            .open(&tenant, &context, &s)
                            .map_err(unopenable)?,
                        *sealed,
                        s,
                    ),
                    _ => continue,
                };
                let update = format!(
                    "UPDATE {table} SET {sealed} = $1, {legacy} = NULL{index_set} WHERE {id} = $2 AND {guard} = $3"
                );
                let resealed = self.cipher.seal(&tenant, &context, &value);
                let index = col
                    .index
                    .map(|(_, purpose)| self.cipher.blind_index(&tenant, purpose, &value));
                written += execute!(&mut tx, {
                    let q = sqlx::query(AssertSqlSafe(update.as_str()))
                        .bind(&resealed)
                        .bind(row)
                        .bind(&guard_value);
                    match &index {
                        Some(index) => q.bind(index),
                        None => q,
                    }
                })?;
            }
            tx.commit().await?;
        }
        Ok(written)
    }

    pub fn cipher(&self) -> &FieldCipher {
        &self.cipher
    }
}
