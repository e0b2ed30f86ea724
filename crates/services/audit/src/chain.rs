//! The hash chain: each tenant's entries are numbered from 1 and each holds the hash of the
//! one before, so changing, removing or reordering any entry shows where it happened.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use kernel::audit::AuditRecord;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The `prev_hash` of a chain's first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub tenant: String,
    pub seq: i64,
    pub entry_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    /// Comma-separated.
    pub roles: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub patient_id: Option<Uuid>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl Entry {
    /// `record` as entry `seq` of its tenant's chain, after the entry whose hash is `prev`.
    pub fn chained(record: &AuditRecord, seq: i64, prev: &str) -> Self {
        let mut entry = Self {
            tenant: record.tenant.as_str().to_owned(),
            seq,
            entry_id: Uuid::now_v7(),
            // Stored timestamps keep microseconds; the hash must survive the round trip.
            recorded_at: record
                .at
                .duration_trunc(TimeDelta::microseconds(1))
                .unwrap_or(record.at),
            actor: record.actor.clone(),
            roles: record.roles.join(","),
            action: record.action.as_str().to_owned(),
            resource_type: record.resource_type.clone(),
            resource_id: record.resource_id.clone(),
            patient_id: record.patient_id,
            outcome: record.outcome.as_str().to_owned(),
            request_id: record.origin.request_id.clone(),
            source_ip: record.origin.source_ip.clone(),
            prev_hash: prev.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.content_hash();
        entry
    }

    /// The roles, as listed in `roles`.
    pub fn role_names(&self) -> Vec<String> {
        self.roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// SHA-256 of every field but `hash`, as an unambiguous JSON array. The array is
    /// serialized straight into the hasher: this runs for every entry appended, published
    /// and verified, and building it as a JSON value first cost more than the hashing.
    pub fn content_hash(&self) -> String {
        let canonical = (
            &self.tenant,
            self.seq,
            self.entry_id,
            Micros(self.recorded_at),
            &self.actor,
            &self.roles,
            &self.action,
            &self.resource_type,
            &self.resource_id,
            self.patient_id,
            &self.outcome,
            &self.request_id,
            &self.source_ip,
            &self.prev_hash,
        );
        let mut hasher = Hashing(Sha256::new());
        serde_json::to_writer(&mut hasher, &canonical)
            .expect("strings, numbers and ids always serialize, and hashing cannot fail");
        hex(&hasher.0.finalize())
    }
}

/// A time as hashed: UTC with exactly six fractional digits.
struct Micros(DateTime<Utc>);

impl serde::Serialize for Micros {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    }
}

/// Feeds what is written into the digest.
struct Hashing(Sha256);

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Where a chain is broken, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    #[error("entry {seq} was altered: its content does not match its hash")]
    Altered { seq: i64 },
    #[error("entries {from} to {to} are missing")]
    Missing { from: i64, to: i64 },
    #[error("entry {seq} does not follow entry {previous}: entries were reordered, or replaced")]
    Relinked { seq: i64, previous: i64 },
    #[error(
        "the chain should end at entry {head} but ends at entry {last}: its newest entries were removed"
    )]
    TailMissing { head: i64, last: i64 },
    #[error("the chain starts at entry {first} with no record of earlier entries being purged")]
    StartMissing { first: i64 },
}

/// Checks one tenant's entries fed in order of `seq`.
#[derive(Debug)]
pub struct ChainCheck {
    last: Option<(i64, String)>,
    anchor: Option<(i64, String)>,
    pub checked: u64,
}

impl ChainCheck {
    /// `anchor`: the last purged entry's `(seq, hash)`, if retention purged any.
    pub fn new(anchor: Option<(i64, String)>) -> Self {
        Self {
            last: None,
            anchor,
            checked: 0,
        }
    }

    pub fn feed(&mut self, e: &Entry) -> Result<(), Break> {
        if e.content_hash() != e.hash {
            return Err(Break::Altered { seq: e.seq });
        }
        let (expected_seq, expected_prev) = match (&self.last, &self.anchor) {
            (Some((seq, hash)), _) => (seq + 1, hash.clone()),
            (None, Some((seq, hash))) => (seq + 1, hash.clone()),
            (None, None) => (1, GENESIS.to_owned()),
        };
        if e.seq > expected_seq {
            if self.last.is_none() && self.anchor.is_none() {
                return Err(Break::StartMissing { first: e.seq });
            }
            return Err(Break::Missing {
                from: expected_seq,
                to: e.seq - 1,
            });
        }
        if e.seq < expected_seq || e.prev_hash != expected_prev {
            return Err(Break::Relinked {
                seq: e.seq,
                previous: expected_seq - 1,
            });
        }
        self.last = Some((e.seq, e.hash.clone()));
        self.checked += 1;
        Ok(())
    }

    /// Checks the end of the chain against its recorded head.
    pub fn finish(&self, head: Option<(i64, String)>) -> Result<(), Break> {
        let last = self.last.clone().or_else(|| self.anchor.clone());
        match (head, last) {
            (None, None) => Ok(()),
            (Some((head, hash)), Some((last, last_hash))) if head == last => {
                if hash == last_hash {
                    Ok(())
                } else {
                    Err(Break::Altered { seq: last })
                }
            }
            (Some((head, _)), Some((last, _))) if head > last => {
                Err(Break::TailMissing { head, last })
            }
            (Some((head, _)), None) => Err(Break::TailMissing { head, last: 0 }),
            (_, Some((last, _))) => Err(Break::Relinked {
                seq: last,
                previous: last - 1,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::audit::{AuditAction, AuditRecord, Origin};
    use kernel::{Principal, TenantId};

    fn chain(n: i64) -> Vec<Entry> {
        let principal = Principal::system(TenantId::parse("t1").unwrap());
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let record = AuditRecord::by(
                    &principal,
                    &Origin::default(),
                    AuditAction::Read,
                    "Patient",
                    Utc::now(),
                )
                .resource(seq);
                let e = Entry::chained(&record, seq, &prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn check(entries: &[Entry], head: Option<(i64, String)>) -> Result<u64, Break> {
        let mut c = ChainCheck::new(None);
        for e in entries {
            c.feed(e)?;
        }
        c.finish(head)?;
        Ok(c.checked)
    }

    fn head(entries: &[Entry]) -> Option<(i64, String)> {
        entries.last().map(|e| (e.seq, e.hash.clone()))
    }

    /// Entries stored by earlier versions must still verify: the hashed form is fixed.
    #[test]
    fn the_content_hash_of_an_entry_is_stable_across_versions() {
        let fixed = |resource_id: Option<&str>, patient_id, request_id: Option<&str>| Entry {
            tenant: "clinic-\"north\"".into(),
            seq: 42,
            entry_id: Uuid::parse_str("0190f3a2-7c4e-7b1a-9d2e-5f6a7b8c9d0e").unwrap(),
            recorded_at: "2026-11-30T08:15:30.123456Z".parse().unwrap(),
            actor: "user-7".into(),
            roles: "DOCTOR,NURSE".into(),
            action: "READ".into(),
            resource_type: "Patient".into(),
            resource_id: resource_id.map(str::to_owned),
            patient_id,
            outcome: "SUCCESS".into(),
            request_id: request_id.map(str::to_owned),
            source_ip: None,
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        let full = fixed(
            Some("p/\u{e9}\n1"),
            Some(Uuid::parse_str("7d444840-9dc0-11d1-b245-5ffdce74fad2").unwrap()),
            Some("req-1"),
        );
        assert_eq!(
            full.content_hash(),
            "b0fa3512a64ba9e94823faceeed206bbc721c8ee97e787a1ae384905dc3b1bbd"
        );
        assert_eq!(
            fixed(None, None, None).content_hash(),
            "05722730db3d3bebacd7b4f41f3778f6fee9ebcd874134412b49f83e9ed919d0"
        );
    }

    #[test]
    fn an_intact_chain_verifies() {
        let entries = chain(5);
        assert_eq!(check(&entries, head(&entries)), Ok(5));
        assert_eq!(check(&[], None), Ok(0));
    }

    #[test]
    fn edits_deletions_and_reorderings_are_found_where_they_are() {
        let entries = chain(6);
        let h = head(&entries);

        let mut edited = entries.clone();
        edited[2].actor = "someone-else".to_owned();
        assert_eq!(check(&edited, h.clone()), Err(Break::Altered { seq: 3 }));

        let mut deleted = entries.clone();
        deleted.remove(3);
        assert_eq!(
            check(&deleted, h.clone()),
            Err(Break::Missing { from: 4, to: 4 })
        );

        // Reordered with their numbers swapped back and rehashed: the links give it away.
        let mut reordered = entries.clone();
        reordered.swap(1, 2);
        reordered[1].seq = 2;
        reordered[2].seq = 3;
        for e in &mut reordered[1..3] {
            e.hash = e.content_hash();
        }
        assert!(matches!(
            check(&reordered, h.clone()),
            Err(Break::Relinked { seq: 2, .. })
        ));

        let tail = &entries[..4];
        assert_eq!(
            check(tail, h.clone()),
            Err(Break::TailMissing { head: 6, last: 4 })
        );
        assert_eq!(
            check(&entries[2..], h),
            Err(Break::StartMissing { first: 3 })
        );
    }

    #[test]
    fn a_chain_purged_by_retention_starts_at_its_anchor() {
        let entries = chain(5);
        let anchor = Some((2, entries[1].hash.clone()));
        let mut c = ChainCheck::new(anchor);
        for e in &entries[2..] {
            c.feed(e).unwrap();
        }
        c.finish(head(&entries)).unwrap();
    }
}
