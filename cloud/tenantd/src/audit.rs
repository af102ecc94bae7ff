//! The audit log's hash chain.
//!
//! Each organization has its own chain (and the platform one more, for super admin actions).
//! An entry's hash is SHA-256 over an unambiguous encoding (a JSON array) of its chain, sequence
//! number, time, actor, action, target, detail text and the previous entry's hash, so changing,
//! removing or reordering any entry breaks every link after it. [`verify_chain`] walks a chain
//! in order and reports the first entry that does not match. (Dropping the newest entries
//! cannot be seen from the chain alone; the verify command prints the head hash so it can be
//! compared with a copy kept elsewhere.)

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The previous hash of the first entry of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain of the platform (super admin actions).
pub const PLATFORM_CHAIN: &str = "platform";

/// The chain of an organization.
pub fn org_chain(org_id: i64) -> String {
    format!("org/{org_id}")
}

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    #[serde(skip)]
    pub chain: String,
    pub seq: i64,
    /// Unix seconds.
    #[serde(skip)]
    pub at_unix: i64,
    pub at: String,
    pub actor: Option<String>,
    pub action: String,
    pub target: Option<String>,
    /// JSON text, hashed as stored.
    #[serde(skip)]
    pub detail_text: String,
    pub detail: serde_json::Value,
    #[serde(skip)]
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an entry with these fields.
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    chain: &str,
    seq: i64,
    at_unix: i64,
    actor: Option<&str>,
    action: &str,
    target: Option<&str>,
    detail_text: &str,
    prev_hash: &str,
) -> String {
    let encoded = serde_json::json!([
        chain,
        seq,
        at_unix,
        actor,
        action,
        target,
        detail_text,
        prev_hash
    ])
    .to_string();
    hex::encode(Sha256::digest(encoded.as_bytes()))
}

/// The result of checking one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub chain: String,
    pub ok: bool,
    pub entries: u64,
    pub first_bad_seq: Option<i64>,
    pub head: String,
}

/// Checks entries given in ascending `seq` order.
pub fn verify_chain(chain: &str, entries: impl IntoIterator<Item = AuditEntry>) -> ChainReport {
    let mut prev = GENESIS.to_string();
    let mut count = 0;
    for (expected_seq, e) in (1..).zip(entries) {
        count += 1;
        let recomputed = entry_hash(
            &e.chain,
            e.seq,
            e.at_unix,
            e.actor.as_deref(),
            &e.action,
            e.target.as_deref(),
            &e.detail_text,
            &e.prev_hash,
        );
        if e.chain != chain || e.seq != expected_seq || e.prev_hash != prev || e.hash != recomputed
        {
            return ChainReport {
                chain: chain.to_string(),
                ok: false,
                entries: count,
                first_bad_seq: Some(e.seq),
                head: prev,
            };
        }
        prev = e.hash;
    }
    ChainReport {
        chain: chain.to_string(),
        ok: true,
        entries: count,
        first_bad_seq: None,
        head: prev,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let detail_text = format!("{{\"n\":{seq}}}");
                let hash = entry_hash(
                    "org/1",
                    seq,
                    1000 + seq,
                    Some("a@x.test"),
                    "user.create",
                    Some("user:1"),
                    &detail_text,
                    &prev,
                );
                let e = AuditEntry {
                    chain: "org/1".into(),
                    seq,
                    at_unix: 1000 + seq,
                    at: String::new(),
                    actor: Some("a@x.test".into()),
                    action: "user.create".into(),
                    target: Some("user:1".into()),
                    detail: serde_json::Value::Null,
                    detail_text,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let r = verify_chain("org/1", chain(5));
        assert!(r.ok);
        assert_eq!(r.entries, 5);
    }

    #[test]
    fn edits_removals_and_reorders_are_caught() {
        let mut edited = chain(5);
        edited[2].detail_text = "{\"n\":99}".into();
        assert_eq!(verify_chain("org/1", edited).first_bad_seq, Some(3));

        let mut removed = chain(5);
        removed.remove(1);
        assert_eq!(verify_chain("org/1", removed).first_bad_seq, Some(3));

        let mut swapped = chain(5);
        swapped.swap(3, 4);
        assert!(!verify_chain("org/1", swapped).ok);

        let mut moved = chain(2);
        moved[0].actor = None;
        assert_eq!(verify_chain("org/1", moved).first_bad_seq, Some(1));
    }
}
