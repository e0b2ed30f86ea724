//! Field-level encryption at rest: identifiers and clinical notes are sealed with
//! AES-256-GCM under a per-tenant data key, and looked up through a keyed hash (a blind
//! index), so the database never holds them in the clear.
//!
//! Keys come from a keyring (a file, or its text in an environment variable) holding
//! numbered master keys, the active one, and a separate blind-index secret. Per-tenant keys
//! are derived with HKDF-SHA256, so adding a tenant needs no key management. Each sealed
//! value names the master key it was sealed under (`mt1.<key id>.<nonce‖ciphertext‖tag>`),
//! which is what lets `meditrack keys rotate` re-encrypt rows one by one while the hub
//! keeps serving: old rows still open, new rows use the new key.
//!
//! The blind-index secret is not rotated with the master keys: a unique index over its
//! hashes is what keeps SSNs unique, and two index keys alive at once would let the same
//! SSN in twice. Each sealed value is bound (as AEAD associated data) to its tenant and to
//! the column and row it was written for, so a ciphertext copied elsewhere does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

const PREFIX: &str = "mt1";
/// How often a running process looks at the keyring file for a rotation.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keyring: {0}")]
    Malformed(String),
}

/// The master keys, which one seals new values, and the blind-index secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    index: [u8; 32],
    keys: BTreeMap<u32, [u8; 32]>,
    active: u32,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    pub fn generate() -> Self {
        Self {
            index: crate::random::bytes(),
            keys: BTreeMap::from([(1, crate::random::bytes())]),
            active: 1,
        }
    }

    /// `index=…`, `key.N=…` (base64 of 32 bytes) and `active=N`, one per line or separated by
    /// `;` (for an environment variable); `#` starts a comment.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let bad = |m: &str| KeyringError::Malformed(m.to_owned());
        let secret = |v: &str, what: &str| -> Result<[u8; 32], KeyringError> {
            STANDARD
                .decode(v.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| bad(&format!("{what} must be the base64 of 32 bytes")))
        };
        let (mut index, mut keys, mut active) = (None, BTreeMap::new(), None);
        for line in text.split(['\n', ';']) {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| bad("each entry has the form name=value"))?;
            match name.trim() {
                "index" => index = Some(secret(value, "index")?),
                "active" => {
                    active = Some(
                        value
                            .trim()
                            .parse::<u32>()
                            .map_err(|_| bad("active must be a key number"))?,
                    )
                }
                other => {
                    let id = other
                        .strip_prefix("key.")
                        .and_then(|n| n.parse::<u32>().ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad(&format!("unknown entry {other:?}")))?;
                    if keys.insert(id, secret(value, "a key")?).is_some() {
                        return Err(bad(&format!("key.{id} appears twice")));
                    }
                }
            }
        }
        let index = index.ok_or_else(|| bad("no index secret"))?;
        let active = active.ok_or_else(|| bad("no active key"))?;
        if !keys.contains_key(&active) {
            return Err(bad(&format!("active key {active} is not in the keyring")));
        }
        Ok(Self {
            index,
            keys,
            active,
        })
    }

    pub fn render(&self) -> String {
        let mut out = String::from(
            "# MediTrack field-encryption keyring. Secret: whoever holds it can read SSNs and notes.\n\
             # Back it up with the database's backups (kept apart): without it that data is lost.\n",
        );
        out.push_str(&format!("index={}\n", STANDARD.encode(self.index)));
        for (id, key) in &self.keys {
            out.push_str(&format!("key.{id}={}\n", STANDARD.encode(key)));
        }
        out.push_str(&format!("active={}\n", self.active));
        out
    }

    /// The keyring at `path`, made there (mode 0600) if there is none; two processes
    /// starting at once agree on one.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyringError> {
        crate::secret_file::create_once(path, || Self::generate().render().into_bytes()).map_err(
            |source| KeyringError::Io {
                path: path.to_owned(),
                source,
            },
        )?;
        Self::load(path)
    }

    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyringError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Replaces the file at `path` in one step (a reader sees the old keyring or the new).
    pub fn save(&self, path: &Path) -> Result<(), KeyringError> {
        crate::secret_file::replace(path, self.render().as_bytes()).map_err(|source| {
            KeyringError::Io {
                path: path.to_owned(),
                source,
            }
        })
    }

    /// This keyring with a new master key, which becomes the active one. Old keys stay, so
    /// what they sealed still opens until it is re-encrypted.
    pub fn rotated(&self) -> Self {
        let mut next = self.clone();
        let id = self.keys.keys().max().copied().unwrap_or(0) + 1;
        next.keys.insert(id, crate::random::bytes());
        next.active = id;
        next
    }

    /// This keyring without key `id`, which must not be the active one.
    pub fn without(&self, id: u32) -> Option<Self> {
        if id == self.active || !self.keys.contains_key(&id) {
            return None;
        }
        let mut next = self.clone();
        next.keys.remove(&id);
        Some(next)
    }

    pub fn active(&self) -> u32 {
        self.active
    }

    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// A public fingerprint of each secret (`index`, `key.N`), for a database to remember
    /// which keys its data needs without holding them.
    pub fn fingerprints(&self) -> Vec<(String, String)> {
        let fp = |k: &[u8; 32]| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(k)
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
            mac.update(b"meditrack keyring fingerprint");
            URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
        };
        std::iter::once(("index".to_owned(), fp(&self.index)))
            .chain(self.keys.iter().map(|(id, k)| (format!("key.{id}"), fp(k))))
            .collect()
    }
}

/// Where the keyring comes from, and so whether a rotation can be noticed.
#[derive(Debug, Clone)]
pub enum KeyringSource {
    File(PathBuf),
    /// Given whole (an environment variable): a rotation means a restart.
    Fixed,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("not a sealed value")]
    Malformed,
    #[error("sealed under master key {0}, which the keyring does not hold")]
    UnknownKey(u32),
    #[error("the sealed value does not open: wrong key, or altered or moved")]
    Rejected,
}

struct Loaded {
    keyring: Arc<Keyring>,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// Seals and opens field values, and computes blind indexes, for any tenant.
pub struct FieldCipher {
    source: KeyringSource,
    loaded: RwLock<Loaded>,
    data_keys: Mutex<HashMap<(u32, String), Aes256Gcm>>,
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldCipher")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl FieldCipher {
    pub fn new(keyring: Keyring) -> Self {
        Self::with_source(keyring, KeyringSource::Fixed, None)
    }

    /// Over the keyring file at `path`, made if missing, and re-read when it changes.
    pub fn from_file(path: &Path) -> Result<Self, KeyringError> {
        let keyring = Keyring::load_or_create(path)?;
        let modified = modified(path);
        Ok(Self::with_source(
            keyring,
            KeyringSource::File(path.to_owned()),
            modified,
        ))
    }

    fn with_source(keyring: Keyring, source: KeyringSource, modified: Option<SystemTime>) -> Self {
        Self {
            source,
            loaded: RwLock::new(Loaded {
                keyring: Arc::new(keyring),
                modified,
                checked: Instant::now(),
            }),
            data_keys: Mutex::new(HashMap::new()),
        }
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.refresh(false);
        self.read().keyring.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the keyring file if it changed; at most every [`RELOAD_INTERVAL`] unless
    /// `now` (a value names a key we do not hold: it may have just been added). Either way
    /// it costs a `stat` unless the file changed.
    fn refresh(&self, now: bool) {
        let KeyringSource::File(path) = &self.source else {
            return;
        };
        {
            let loaded = self.read();
            if !now && loaded.checked.elapsed() < RELOAD_INTERVAL {
                return;
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        loaded.checked = Instant::now();
        let modified = modified(path);
        if modified == loaded.modified {
            return;
        }
        match Keyring::load(path) {
            Ok(keyring) => {
                if keyring.active != loaded.keyring.active {
                    tracing::info!(active = keyring.active, "field-encryption keyring reloaded");
                }
                loaded.keyring = Arc::new(keyring);
                loaded.modified = modified;
            }
            // A half-written or broken file: keep the keys we have, and say so.
            Err(e) => {
                tracing::error!(error = %e, "keyring file unreadable; keeping the loaded keys")
            }
        }
    }

    fn data_key(&self, keyring: &Keyring, id: u32, tenant: &str) -> Option<Aes256Gcm> {
        let mut cache = self.data_keys.lock().unwrap_or_else(|p| p.into_inner());
        let slot = (id, tenant.to_owned());
        if let Some(cipher) = cache.get(&slot) {
            return Some(cipher.clone());
        }
        let master = keyring.keys.get(&id)?;
        let key = derive(master, "meditrack/field-encryption/v1", tenant);
        let cipher = Aes256Gcm::new_from_slice(&key).ok()?;
        cache.insert(slot, cipher.clone());
        Some(cipher)
    }

    /// `plaintext` sealed under the active key for `tenant`, bound to `context` (the
    /// column and row it is written to).
    pub fn seal(&self, tenant: &str, context: &str, plaintext: &str) -> String {
        let keyring = self.keyring();
        let id = keyring.active;
        let Some(cipher) = self.data_key(&keyring, id, tenant) else {
            unreachable!("the active key is in the keyring (checked when parsed)")
        };
        let nonce = crate::random::nonce::<12>();
        let aad = associated_data(tenant, context);
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("AES-GCM seals any message under 64 GiB"));
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}.{id}.{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn open(&self, tenant: &str, context: &str, sealed: &str) -> Result<String, SealError> {
        let (id, bytes) = split(sealed)?;
        let mut keyring = self.keyring();
        if !keyring.keys.contains_key(&id) {
            self.refresh(true);
            keyring = self.read().keyring.clone();
        }
        let cipher = self
            .data_key(&keyring, id, tenant)
            .ok_or(SealError::UnknownKey(id))?;
        if bytes.len() < 12 + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, body) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        let aad = associated_data(tenant, context);
        let plain = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Rejected)?;
        String::from_utf8(plain).map_err(|_| SealError::Rejected)
    }

    /// The master key a sealed value names, if it is well formed.
    pub fn key_of(sealed: &str) -> Option<u32> {
        split(sealed).ok().map(|(id, _)| id)
    }

    /// Whether `sealed` is under the active key (else `keys rotate` re-encrypts it).
    pub fn is_current(&self, sealed: &str) -> bool {
        Self::key_of(sealed) == Some(self.keyring().active)
    }

    /// The keyed hash of `value` for `tenant` and `purpose` (e.g. `"ssn"`): equal values
    /// give equal hashes, and without the index secret a hash says nothing.
    pub fn blind_index(&self, tenant: &str, purpose: &str, value: &str) -> String {
        let keyring = self.keyring();
        let key = derive(
            &keyring.index,
            &format!("meditrack/blind-index/v1/{purpose}"),
            tenant,
        );
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(value.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn derive(secret: &[u8; 32], purpose: &str, tenant: &str) -> [u8; 32] {
    let mut info = purpose.as_bytes().to_vec();
    info.push(0);
    info.extend_from_slice(tenant.as_bytes());
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(None, secret)
        .expand(&info, &mut out)
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 length"));
    out
}

fn associated_data(tenant: &str, context: &str) -> Vec<u8> {
    let mut aad = tenant.as_bytes().to_vec();
    aad.push(0);
    aad.extend_from_slice(context.as_bytes());
    aad
}

fn split(sealed: &str) -> Result<(u32, Vec<u8>), SealError> {
    let mut parts = sealed.splitn(3, '.');
    let (Some(PREFIX), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SealError::Malformed);
    };
    let id = id.parse().map_err(|_| SealError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| SealError::Malformed)?;
    Ok((id, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_for_its_tenant_and_place() {
        let cipher = FieldCipher::new(Keyring::generate());
        let sealed = cipher.seal("t1", "patients.ssn/1", "123-45-6789");
        assert!(!sealed.contains("6789"));
        assert_ne!(
            sealed,
            cipher.seal("t1", "patients.ssn/1", "123-45-6789"),
            "fresh nonce"
        );
        assert_eq!(
            cipher.open("t1", "patients.ssn/1", &sealed).unwrap(),
            "123-45-6789"
        );
        assert_eq!(
            cipher.open("t2", "patients.ssn/1", &sealed),
            Err(SealError::Rejected)
        );
        assert_eq!(
            cipher.open("t1", "patients.ssn/2", &sealed),
            Err(SealError::Rejected)
        );
        let mut altered = sealed.clone();
        altered.pop();
        altered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(cipher.open("t1", "patients.ssn/1", &altered).is_err());
        assert_eq!(
            cipher.open("t1", "x", "123-45-6789"),
            Err(SealError::Malformed)
        );
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_seals_new_ones_under_the_new_key() {
        let first = Keyring::generate();
        let old = FieldCipher::new(first.clone()).seal("t", "c", "note");
        let second = first.rotated();
        assert_eq!(second.active(), 2);
        let cipher = FieldCipher::new(second.clone());
        assert_eq!(cipher.open("t", "c", &old).unwrap(), "note");
        assert!(!cipher.is_current(&old));
        let new = cipher.seal("t", "c", "note");
        assert_eq!(FieldCipher::key_of(&new), Some(2));
        let retired = FieldCipher::new(second.without(1).unwrap());
        assert_eq!(retired.open("t", "c", &old), Err(SealError::UnknownKey(1)));
        assert!(second.without(2).is_none(), "the active key stays");
        assert_eq!(
            FieldCipher::new(first.clone()).blind_index("t", "ssn", "123-45-6789"),
            cipher.blind_index("t", "ssn", "123-45-6789"),
            "rotation leaves the blind index alone"
        );
    }

    #[test]
    fn blind_indexes_are_per_tenant_and_per_keyring() {
        let cipher = FieldCipher::new(Keyring::generate());
        let a = cipher.blind_index("t1", "ssn", "123-45-6789");
        assert_eq!(a, cipher.blind_index("t1", "ssn", "123-45-6789"));
        assert_ne!(a, cipher.blind_index("t2", "ssn", "123-45-6789"));
        assert_ne!(a, cipher.blind_index("t1", "ssn", "123-45-6780"));
        assert_ne!(
            a,
            FieldCipher::new(Keyring::generate()).blind_index("t1", "ssn", "123-45-6789")
        );
    }

    #[test]
    fn the_keyring_text_round_trips_and_bad_text_is_refused() {
        let ring = Keyring::generate().rotated();
        assert_eq!(Keyring::parse(&ring.render()).unwrap(), ring);
        let inline = ring.render().replace('\n', ";");
        assert_eq!(Keyring::parse(&inline).unwrap(), ring);
        assert!(!format!("{ring:?}").contains(&STANDARD.encode(ring.index)));
        for bad in [
            "",
            "index=AAAA;key.1=AAAA;active=1",
            &ring.render().replace("active=2", "active=3"),
            &format!("{}\nfoo=1", ring.render()),
        ] {
            assert!(Keyring::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_running_cipher_picks_up_a_rotated_keyring_file() {
        let dir = std::env::temp_dir().join(format!("meditrack-ring-{}", uuid::Uuid::now_v7()));
        let path = dir.join("keyring");
        let cipher = FieldCipher::from_file(&path).unwrap();
        let again = Keyring::load_or_create(&path).unwrap();
        assert_eq!(*cipher.keyring(), again, "made once");
        let rotated = again.rotated();
        rotated.save(&path).unwrap();
        let sealed = FieldCipher::new(rotated).seal("t", "c", "v");
        assert_eq!(
            cipher.open("t", "c", &sealed).unwrap(),
            "v",
            "unknown key: reload"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
