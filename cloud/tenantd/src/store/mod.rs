//! The tenant store: SQLite through rusqlite, one file under the data dir.
//!
//! [`SqliteStore`] owns one connection (WAL, `synchronous=FULL`, foreign keys on) behind a
//! mutex; async callers hand it a closure with [`SqliteStore::run`], which runs on tokio's
//! blocking pool so request tasks never block on disk. All SQL lives in this module, in methods
//! of [`Db`]: `platform.rs` for organizations, accounts and sessions, `org.rs` for the rows an
//! organization owns. Those take an [`OrgScope`](crate::tenancy::OrgScope), so every query is
//! filtered by the organization of the authenticated principal. Every change that an admin
//! makes appends to the audit chain inside the same transaction. [`otp`] holds one-time codes,
//! customers, callbacks and SMS records: kiosks' journeys reach them by device, admins through
//! an `OrgScope`.
//!
//! Limits: one connection serializes all store work, reads included (not yet measured under
//! load). The methods of `Db` are the seam for another engine (PostgreSQL) when several
//! replicas share a store.

mod calls;
mod fleet;
mod journey;
mod migrations;
mod org;
pub mod otp;
mod platform;
mod records;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use crate::audit::{self, GENESIS};
use crate::tenancy::Role;

pub use calls::{InterruptedCall, RoutingLimits, SnapshotInfo};
pub use fleet::{
    ClaimBatch, CommandRecord, ConfigSources, CrlCa, DesiredRecord, Device, EnrollmentTokenInfo,
    NewDevice, PendingActivation,
};
pub use journey::{customer_token_hash, CustomerRef};
pub use org::{NewUser, SettingsInput, UserPatch};
pub use platform::{LoginRecord, PlatformHealth};
pub use records::{
    CallRecordView, CallbackView, ConsentEvent, ConsentWrite, RecordFilter, RecordTotals,
    SurveyWrite,
};

/// The store's file name under the data dir.
pub const DB_FILE: &str = "tenantd.sqlite3";

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("open store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("migrate store to version {version}: {source}")]
    Migrate {
        version: usize,
        source: rusqlite::Error,
    },
    #[error(
        "store schema version {found} is newer than this tenantd knows ({known}); upgrade tenantd"
    )]
    TooNew { found: i64, known: usize },
    #[error("store corrupt: {0}")]
    Corrupt(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store task failed: {0}")]
    Task(String),
}

/// Maps a unique-constraint failure to [`StoreError::Conflict`] with `what`.
pub(crate) fn conflict_on_unique(e: rusqlite::Error, what: &str) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict(what.to_string())
        }
        _ => StoreError::Sqlite(e),
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A stored time as a timestamp (RFC 3339 in JSON).
pub(crate) fn ts(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Who makes a change, and when: written to the audit log with it.
#[derive(Debug, Clone)]
pub struct By {
    pub actor: String,
    pub now: i64,
}

impl By {
    pub fn new(actor: impl Into<String>) -> Self {
        By {
            actor: actor.into(),
            now: now_unix(),
        }
    }
}

/// An organization.
#[derive(Debug, Clone, Serialize)]
pub struct Org {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub disabled: bool,
    pub created_at: jiff::Timestamp,
    /// Number of users, for the platform overview.
    pub users: i64,
}

/// A user of an organization (or a super admin).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub must_change_password: bool,
    pub created_at: jiff::Timestamp,
    pub last_sign_in_at: Option<jiff::Timestamp>,
    /// The languages the user takes calls in (BCP 47); empty: any call.
    pub languages: Vec<String>,
}

/// Whether calls are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingPolicy {
    /// Never recorded.
    Off,
    /// Recorded when the customer consents on the kiosk screen.
    OnWithConsent,
}

impl RecordingPolicy {
    fn as_str(self) -> &'static str {
        match self {
            RecordingPolicy::Off => "off",
            RecordingPolicy::OnWithConsent => "on_with_consent",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "off" => Ok(RecordingPolicy::Off),
            "on_with_consent" => Ok(RecordingPolicy::OnWithConsent),
            other => Err(StoreError::Corrupt(format!("recording policy {other:?}"))),
        }
    }
}

/// An organization's settings.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub recording: RecordingPolicy,
    pub retention_days: u32,
    pub technicians_may_review_recordings: bool,
    /// How long a call may wait for an agent before it ends `not_answered` (30 to 3600 s).
    pub queue_timeout_s: u32,
    pub updated_at: jiff::Timestamp,
}

/// A site as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub id: i64,
    pub name: String,
    pub timezone: String,
    pub business_hours: crate::sites::WeeklyHours,
    pub holidays: Vec<crate::sites::Holiday>,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
}

impl Site {
    /// Whether the site is open at `at_ms` (Unix ms) by its hours (see [`crate::sites::open_at`]).
    pub fn open_at(&self, at_ms: i64) -> bool {
        crate::sites::open_at(&self.timezone, &self.business_hours, &self.holidays, at_ms)
    }
}

/// An API token's public record (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct ApiTokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub created_by: String,
    pub created_at: jiff::Timestamp,
    pub expires_at: Option<jiff::Timestamp>,
    pub last_used_at: Option<jiff::Timestamp>,
    pub revoked_at: Option<jiff::Timestamp>,
}

/// The store: a SQLite file behind one connection.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir` and brings its schema up to date.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        let mut conn = Connection::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.blocking(f))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` with the connection on this thread (command line, tests).
    pub fn blocking<T>(
        &self,
        f: impl FnOnce(&mut Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| StoreError::Task("store lock poisoned".into()))?;
        let mut db = Db { conn: &mut guard };
        f(&mut db)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > migrations::MIGRATIONS.len() as i64 {
        return Err(StoreError::TooNew {
            found: current,
            known: migrations::MIGRATIONS.len(),
        });
    }
    for (i, sql) in migrations::MIGRATIONS
        .iter()
        .enumerate()
        .skip(current as usize)
    {
        let version = i + 1;
        let tx = conn
            .transaction()
            .map_err(|source| StoreError::Migrate { version, source })?;
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", version as i64))
            .map_err(|source| StoreError::Migrate { version, source })?;
        tx.commit()
            .map_err(|source| StoreError::Migrate { version, source })?;
        tracing::info!(version, "store migrated");
    }
    Ok(())
}

/// A borrowed connection; the store's operations are its methods.
#[derive(Debug)]
pub struct Db<'c> {
    conn: &'c mut Connection,
}

impl Db<'_> {
    fn tx(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
    }
}

/// One audit record to append.
pub(crate) struct AuditRecord<'a> {
    pub chain: &'a str,
    pub org_id: Option<i64>,
    pub by: &'a By,
    pub action: &'a str,
    pub target: Option<String>,
    pub detail: serde_json::Value,
}

/// Appends to a chain inside the caller's transaction.
pub(crate) fn append_audit(tx: &Transaction<'_>, r: AuditRecord<'_>) -> Result<(), StoreError> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit_log WHERE chain = ?1 ORDER BY seq DESC LIMIT 1",
            [r.chain],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let detail_text = r.detail.to_string();
    let hash = audit::entry_hash(
        r.chain,
        seq,
        r.by.now,
        Some(&r.by.actor),
        r.action,
        r.target.as_deref(),
        &detail_text,
        &prev,
    );
    tx.execute(
        "INSERT INTO audit_log (chain, seq, org_id, at, actor, action, target, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        rusqlite::params![
            r.chain,
            seq,
            r.org_id,
            r.by.now,
            r.by.actor,
            r.action,
            r.target,
            detail_text,
            prev,
            hash
        ],
    )?;
    Ok(())
}

/// Reads a role column.
pub(crate) fn role_col(s: String) -> Result<Role, rusqlite::Error> {
    Role::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown role {s:?}").into(),
        )
    })
}

/// Maps "no row" to [`StoreError::NotFound`].
pub(crate) fn found<T>(r: Result<T, rusqlite::Error>) -> Result<T, StoreError> {
    match r {
        Err(rusqlite::Error::QueryReturnedNoRows) => Err(StoreError::NotFound),
        other => Ok(other?),
    }
}
