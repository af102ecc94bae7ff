//! The outbox: every device→cloud message, durable before it is sent, sent in order, deleted
//! only when the broker acknowledged it.
//!
//! One SQLite file (WAL, `synchronous=FULL`: a message this API accepted survives a power cut
//! or SIGKILL). Each message gets the next per-device sequence number (AUTOINCREMENT, so never
//! reused, even after deletes) and a unique id (`<seq>-<64 random bits>`, unique across factory
//! resets too); the cloud keeps each id once.
//!
//! Bounded, with a clear policy when full: droppable messages (telemetry, diagnostics) make room
//! by dropping the oldest droppable one; when nothing droppable is left, a new droppable
//! message is refused, and a record (events such as call records and consent) is kept anyway,
//! past the bound, and counted as over the limit.

use std::path::Path;

use kiosk_protocol::topic::Up;
use kiosk_protocol::{MessageId, UpHeader};
use rusqlite::{params, Connection, OptionalExtension};

/// An outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("open outbox {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("outbox: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("encode message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the outbox is full of records; this {channel} message was not kept")]
    Full { channel: &'static str },
    #[error("outbox corrupt: {0}")]
    Corrupt(String),
}

/// Whether a message may be dropped when the outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Telemetry and diagnostics: the oldest go first.
    Droppable,
    /// Records (call records, consent, command results, reported config): never dropped.
    Keep,
}

/// The bound.
#[derive(Debug, Clone, Copy)]
pub struct OutboxPolicy {
    /// Entries kept before droppable ones make room.
    pub max_entries: u64,
}

impl Default for OutboxPolicy {
    fn default() -> Self {
        OutboxPolicy {
            max_entries: 100_000,
        }
    }
}

/// A message waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: u64,
    pub id: MessageId,
    pub channel: Up,
    pub payload: Vec<u8>,
}

/// How full the outbox is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    pub total: u64,
    pub droppable: u64,
    /// Droppable messages dropped to make room, since the file was made.
    pub dropped: u64,
}

/// The SQLite outbox.
#[derive(Debug)]
pub struct SqliteOutbox {
    conn: Connection,
    policy: OutboxPolicy,
}

fn channel_name(c: Up) -> &'static str {
    c.name()
}

fn channel_of(name: &str) -> Option<Up> {
    Up::ALL.into_iter().find(|c| c.name() == name)
}

impl SqliteOutbox {
    /// Opens (creating) the outbox file.
    pub fn open(path: &Path, policy: OutboxPolicy) -> Result<Self, OutboxError> {
        let open_err = |source| OutboxError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS outbox (
                 seq        INTEGER PRIMARY KEY AUTOINCREMENT,
                 id         TEXT NOT NULL UNIQUE,
                 channel    TEXT NOT NULL,
                 droppable  INTEGER NOT NULL,
                 payload    BLOB NOT NULL,
                 created_ms INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS outbox_droppable ON outbox(droppable, seq);
             CREATE TABLE IF NOT EXISTS outbox_stats (
                 key   TEXT PRIMARY KEY,
                 value INTEGER NOT NULL
             );
             INSERT OR IGNORE INTO outbox_stats (key, value) VALUES ('dropped', 0);",
        )
        .map_err(open_err)?;
        Ok(SqliteOutbox { conn, policy })
    }

    /// Appends a message. `make` gets the header this message carries (id, sequence number,
    /// time) and returns the JSON payload. Returns the entry as stored; once this returns `Ok`
    /// the message is on disk.
    pub fn push(
        &mut self,
        channel: Up,
        retention: Retention,
        at_ms: i64,
        make: impl FnOnce(UpHeader) -> Result<Vec<u8>, serde_json::Error>,
    ) -> Result<OutboxEntry, OutboxError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let total: u64 = tx.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
        if total >= self.policy.max_entries {
            let oldest_droppable: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM outbox WHERE droppable = 1 ORDER BY seq LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            match (oldest_droppable, retention) {
                (Some(seq), _) => {
                    tx.execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
                    tx.execute(
                        "UPDATE outbox_stats SET value = value + 1 WHERE key = 'dropped'",
                        [],
                    )?;
                }
                (None, Retention::Droppable) => {
                    return Err(OutboxError::Full {
                        channel: channel_name(channel),
                    })
                }
                (None, Retention::Keep) => {
                    tracing::warn!(
                        total,
                        "outbox past its bound with records only; keeping the record"
                    );
                }
            }
        }
        // Reserve the sequence number first: AUTOINCREMENT never hands it out again.
        let placeholder = format!("pending-{}", hex16(rand::random()));
        tx.execute(
            "INSERT INTO outbox (id, channel, droppable, payload, created_ms) VALUES (?1, ?2, ?3, x'', ?4)",
            params![placeholder, channel_name(channel), retention == Retention::Droppable, at_ms],
        )?;
        let seq = tx.last_insert_rowid() as u64;
        let id = MessageId::parse(&format!("{seq:012}-{}", hex16(rand::random())))
            .map_err(|e| OutboxError::Corrupt(e.to_string()))?;
        let payload = make(UpHeader {
            id: id.clone(),
            seq,
            at_ms,
        })?;
        tx.execute(
            "UPDATE outbox SET id = ?1, payload = ?2 WHERE seq = ?3",
            params![id.as_str(), payload, seq as i64],
        )?;
        tx.commit()?;
        Ok(OutboxEntry {
            seq,
            id,
            channel,
            payload,
        })
    }

    /// The oldest `limit` messages, in sequence order.
    pub fn pending(&self, limit: u32) -> Result<Vec<OutboxEntry>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, id, channel, payload FROM outbox ORDER BY seq LIMIT ?1")?;
        let rows = stmt.query_map([limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, id, channel, payload) = row?;
            let id = MessageId::parse(&id).map_err(|e| OutboxError::Corrupt(e.to_string()))?;
            let channel = channel_of(&channel)
                .ok_or_else(|| OutboxError::Corrupt(format!("channel {channel:?}")))?;
            out.push(OutboxEntry {
                seq: seq as u64,
                id,
                channel,
                payload,
            });
        }
        Ok(out)
    }

    /// The broker acknowledged this message: it leaves the outbox.
    pub fn ack(&mut self, seq: u64) -> Result<(), OutboxError> {
        self.conn
            .execute("DELETE FROM outbox WHERE seq = ?1", [seq as i64])?;
        Ok(())
    }

    /// How full it is.
    pub fn depth(&self) -> Result<Depth, OutboxError> {
        let (total, droppable): (u64, u64) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(droppable), 0) FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let dropped: u64 = self.conn.query_row(
            "SELECT value FROM outbox_stats WHERE key = 'dropped'",
            [],
            |r| r.get(0),
        )?;
        Ok(Depth {
            total,
            droppable,
            dropped,
        })
    }
}

fn hex16(bytes: [u8; 8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiosk_protocol::event::{Event, EventBody};
    use kiosk_protocol::Version;

    fn event(outbox: &mut SqliteOutbox, n: u32, retention: Retention) -> OutboxEntry {
        let channel = if retention == Retention::Droppable {
            Up::Telemetry
        } else {
            Up::Events
        };
        outbox
            .push(channel, retention, 1_000 + i64::from(n), |header| {
                serde_json::to_vec(&Event {
                    v: Version::CURRENT,
                    header,
                    body: EventBody::Diagnostic {
                        code: "n".into(),
                        detail: n.to_string(),
                    },
                })
            })
            .unwrap()
    }

    #[test]
    fn messages_leave_in_order_only_when_acknowledged_and_sequence_numbers_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let mut o = SqliteOutbox::open(&path, OutboxPolicy::default()).unwrap();
        let first: Vec<OutboxEntry> = (0..5).map(|n| event(&mut o, n, Retention::Keep)).collect();
        assert_eq!(
            first.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        let payload: serde_json::Value = serde_json::from_slice(&first[2].payload).unwrap();
        assert_eq!(payload["seq"], 3);
        assert_eq!(payload["id"], first[2].id.as_str());
        o.ack(1).unwrap();
        o.ack(2).unwrap();
        assert_eq!(
            o.pending(10)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        // Reopened (a restart): the same pending messages, and numbers go on from 6.
        drop(o);
        let mut o = SqliteOutbox::open(&path, OutboxPolicy::default()).unwrap();
        assert_eq!(o.pending(10).unwrap().len(), 3);
        for seq in 3..=5 {
            o.ack(seq).unwrap();
        }
        assert_eq!(event(&mut o, 9, Retention::Keep).seq, 6);
        let ids: std::collections::HashSet<String> =
            first.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(ids.len(), 5);
    }

    #[test]
    fn when_full_telemetry_goes_first_and_records_are_never_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = SqliteOutbox::open(
            &dir.path().join("o.sqlite3"),
            OutboxPolicy { max_entries: 4 },
        )
        .unwrap();
        event(&mut o, 1, Retention::Droppable);
        event(&mut o, 2, Retention::Keep);
        event(&mut o, 3, Retention::Droppable);
        event(&mut o, 4, Retention::Keep);
        // Full: a record pushes out the oldest telemetry.
        event(&mut o, 5, Retention::Keep);
        let seqs: Vec<u64> = o.pending(10).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![2, 3, 4, 5]);
        event(&mut o, 6, Retention::Keep);
        assert_eq!(
            o.depth().unwrap(),
            Depth {
                total: 4,
                droppable: 0,
                dropped: 2
            }
        );
        // Nothing droppable left: new telemetry is refused; a record is still kept.
        let refused = o.push(Up::Telemetry, Retention::Droppable, 0, |_| {
            Ok(b"{}".to_vec())
        });
        assert!(matches!(
            refused,
            Err(OutboxError::Full {
                channel: "telemetry"
            })
        ));
        event(&mut o, 7, Retention::Keep);
        assert_eq!(o.depth().unwrap().total, 5);
    }
}
