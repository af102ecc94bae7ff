//! Desired config on the kiosk: decide, keep, report.
//!
//! [`decide`] is pure: a received document is applied whole, or rejected with every reason
//! (the config in force stays), or ignored when it is not newer than the one in force.
//! [`ConfigStore`] keeps the config in force in the kiosk's SQLite file, so a restart comes
//! back with it before the cloud is reachable. [`report`] puts the outcome in the outbox as a
//! record (never dropped).

use std::path::Path;

use kiosk_protocol::config::{ConfigError, ConfigOutcome, DesiredConfig, Reported};
use kiosk_protocol::topic::Up;
use kiosk_protocol::Version;
use rusqlite::{params, Connection, OptionalExtension};

use crate::outbox::{OutboxEntry, OutboxError, Retention, SqliteOutbox};

/// What to do with a received desired config.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Valid and newer: apply it and report it applied.
    Apply(Box<DesiredConfig>),
    /// Refused: report why; the config in force stays.
    Reject {
        version: Option<u64>,
        errors: Vec<ConfigError>,
    },
    /// The same version as in force (a retained message seen again): report, change nothing.
    AlreadyInForce(u64),
    /// Older than the one in force (a late retained copy): ignore.
    Older { received: u64, in_force: u64 },
}

fn error(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Decides about `payload` given the version in force; `known_timezone` says whether the
/// device can use a time zone name (its tz database).
pub fn decide(
    payload: &[u8],
    in_force: Option<u64>,
    known_timezone: impl Fn(&str) -> bool,
) -> Decision {
    let config: DesiredConfig = match serde_json::from_slice(payload) {
        Ok(c) => c,
        Err(e) => {
            // Say which version was refused when the document names one.
            let version = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v["version"].as_u64());
            return Decision::Reject {
                version,
                errors: vec![error("document", format!("not a desired config: {e}"))],
            };
        }
    };
    if let Some(current) = in_force {
        if config.version == current {
            return Decision::AlreadyInForce(current);
        }
        if config.version < current {
            return Decision::Older {
                received: config.version,
                in_force: current,
            };
        }
    }
    let mut errors = config.validate().err().unwrap_or_default();
    if !known_timezone(&config.site.timezone) {
        errors.push(error(
            "site.timezone",
            format!(
                "{:?} is not in this device's time zone database",
                config.site.timezone
            ),
        ));
    }
    if errors.is_empty() {
        Decision::Apply(Box::new(config))
    } else {
        Decision::Reject {
            version: Some(config.version),
            errors,
        }
    }
}

/// Whether the system's tz database has `name` (`/usr/share/zoneinfo/<name>`).
pub fn system_timezone(name: &str) -> bool {
    !name.is_empty()
        && !name.contains("..")
        && !name.starts_with('/')
        && Path::new("/usr/share/zoneinfo").join(name).is_file()
}

/// A config-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigStoreError {
    #[error("config store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored config unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// The config in force, kept in SQLite (WAL, synchronous=FULL).
#[derive(Debug)]
pub struct ConfigStore {
    conn: Connection,
}

impl ConfigStore {
    pub fn open(path: &Path) -> Result<Self, ConfigStoreError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS config_in_force (
                 one      INTEGER PRIMARY KEY CHECK (one = 1),
                 version  INTEGER NOT NULL,
                 body     TEXT NOT NULL
             );",
        )?;
        Ok(ConfigStore { conn })
    }

    /// The config in force, if any.
    pub fn in_force(&self) -> Result<Option<DesiredConfig>, ConfigStoreError> {
        let body: Option<String> = self
            .conn
            .query_row("SELECT body FROM config_in_force WHERE one = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(match body {
            Some(b) => Some(serde_json::from_str(&b)?),
            None => None,
        })
    }

    /// Makes `config` the one in force (replacing the previous one in one step).
    pub fn apply(&mut self, config: &DesiredConfig) -> Result<(), ConfigStoreError> {
        let body = serde_json::to_string(config)?;
        self.conn.execute(
            "INSERT INTO config_in_force (one, version, body) VALUES (1, ?1, ?2)
             ON CONFLICT (one) DO UPDATE SET version = excluded.version, body = excluded.body",
            params![config.version as i64, body],
        )?;
        Ok(())
    }
}

/// Puts the report of a decision in the outbox (as a record); `None` when there is nothing to
/// report (an older copy).
pub fn report(
    outbox: &mut SqliteOutbox,
    decision: &Decision,
    in_force_after: Option<u64>,
    at_ms: i64,
) -> Result<Option<OutboxEntry>, OutboxError> {
    let outcome = match decision {
        Decision::Apply(c) => ConfigOutcome::Applied { version: c.version },
        Decision::AlreadyInForce(v) => ConfigOutcome::Applied { version: *v },
        Decision::Reject { version, errors } => ConfigOutcome::Rejected {
            version: *version,
            errors: errors.clone(),
        },
        Decision::Older { .. } => return Ok(None),
    };
    outbox
        .push(Up::Reported, Retention::Keep, at_ms, |header| {
            serde_json::to_vec(&Reported {
                v: Version::CURRENT,
                header,
                in_force: in_force_after,
                outcome,
            })
        })
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxPolicy;

    const GOOD: &str = include_str!("../../protocol/tests/fixtures/v1/desired_config.json");
    const BAD: &str = include_str!("../../protocol/tests/fixtures/v1/desired_config_invalid.json");

    fn any_tz(_: &str) -> bool {
        true
    }

    #[test]
    fn a_valid_newer_config_is_applied_and_kept_across_a_restart() {
        let Decision::Apply(config) = decide(GOOD.as_bytes(), Some(6), any_tz) else {
            panic!("expected apply")
        };
        assert_eq!(config.version, 7);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite3");
        let mut store = ConfigStore::open(&path).unwrap();
        store.apply(&config).unwrap();
        drop(store);
        let store = ConfigStore::open(&path).unwrap();
        assert_eq!(store.in_force().unwrap().unwrap().version, 7);
    }

    #[test]
    fn same_older_and_invalid_documents() {
        assert_eq!(
            decide(GOOD.as_bytes(), Some(7), any_tz),
            Decision::AlreadyInForce(7)
        );
        assert_eq!(
            decide(GOOD.as_bytes(), Some(9), any_tz),
            Decision::Older {
                received: 7,
                in_force: 9
            }
        );
        let Decision::Reject { version, errors } = decide(BAD.as_bytes(), Some(7), any_tz) else {
            panic!("expected reject")
        };
        assert_eq!(version, Some(8));
        assert!(errors.len() >= 4, "{errors:?}");
        let Decision::Reject { errors, .. } = decide(GOOD.as_bytes(), None, |_| false) else {
            panic!("unknown time zone")
        };
        assert_eq!(errors[0].field, "site.timezone");
        let Decision::Reject { version, errors } =
            decide(br#"{"version": 12, "oops": true}"#, None, any_tz)
        else {
            panic!("garbage")
        };
        assert_eq!((version, errors[0].field.as_str()), (Some(12), "document"));
    }

    #[test]
    fn outcomes_are_reported_as_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox =
            SqliteOutbox::open(&dir.path().join("o.sqlite3"), OutboxPolicy::default()).unwrap();
        let d = decide(BAD.as_bytes(), Some(7), any_tz);
        let entry = report(&mut outbox, &d, Some(7), 5).unwrap().unwrap();
        let r: Reported = serde_json::from_slice(&entry.payload).unwrap();
        assert_eq!(r.in_force, Some(7));
        assert!(matches!(
            r.outcome,
            ConfigOutcome::Rejected {
                version: Some(8),
                ..
            }
        ));
        assert!(report(
            &mut outbox,
            &Decision::Older {
                received: 1,
                in_force: 7
            },
            Some(7),
            6
        )
        .unwrap()
        .is_none());
        assert!(system_timezone("Europe/Paris") || !Path::new("/usr/share/zoneinfo").exists());
        assert!(!system_timezone("../etc/passwd"));
    }
}
