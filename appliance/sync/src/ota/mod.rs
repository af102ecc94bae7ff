//! Over-the-air updates into the other slot of an A/B system, through the `embedded-svc` OTA
//! traits ([`Ota`], [`OtaUpdate`]).
//!
//! Why it exists: an `update` command from the cloud names a bundle (URL, SHA-256, version,
//! size). The kiosk must write it into the slot it is not running from, boot it once, and keep
//! it only if the kiosk is healthy on it; anything else must leave the running system as it
//! was. The `embedded-svc` traits are the seam between that procedure and the thing that owns
//! the slots:
//!
//! - [`RaucSlots`] (`rauc`): RAUC over its D-Bus API, on shop hardware. RAUC and the bootloader
//!   own the slots; the bundle is downloaded to a file and handed to RAUC.
//! - [`DirSlots`] (`dir`): two directories and a `boot.json`, for the QEMU development image
//!   and for tests, with the semantics of an A/B bootloader (try once, fall back unless
//!   confirmed).
//!
//! [`RaucSlots::available`] says which one to use: RAUC where its name is on the system bus,
//! the directory slots otherwise.
//!
//! The procedure: [`install`] checks the request (https only, size within
//! [`UpdateSettings::max_size`] and the free space), streams the download into the update slot
//! while counting and hashing it, and completes the update only when both the size and the
//! SHA-256 match; otherwise it aborts and the slots stay as they were. After the reboot,
//! [`pending_verification`] tells whether the running slot still awaits its verdict, and
//! [`confirm_after_boot`] gives it one: valid once a health check passes, or invalid (and a
//! reboot into the previous slot) when the deadline passes first.
//!
//! Threads: the traits are blocking. The backend sits in an `Arc<std::sync::Mutex<_>>`, and
//! every call into it runs on tokio's blocking pool (`spawn_blocking`); the download runs on
//! the runtime and hands chunks to one blocking task that writes and hashes them, so the
//! runtime never waits on the disk and the mutex is never held across an await.
//!
//! Limits: one update at a time (the backend's mutex); no resume of an interrupted download
//! (it starts again from the first byte); no signature check of our own (RAUC checks bundle
//! signatures; the directory slots trust the SHA-256 from the authenticated command).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use embedded_svc::ota::{FirmwareInfo, Ota, OtaUpdate, OtaUpdateFinished, Slot, SlotState};
use kiosk_protocol::command::Action;

pub mod dir;
pub(crate) mod durable;
mod fetch;
pub mod rauc;

pub use dir::{DirSlots, DirSlotsError};
pub use durable::FileError;
pub use fetch::install;
pub use rauc::{RaucError, RaucSettings, RaucSlots};

/// An error from a reboot hook or a slot backend, boxed to cross threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reboots the kiosk (logind over D-Bus in the daemon; a counter in tests). Given to a backend
/// at construction and called by
/// [`Ota::mark_running_slot_invalid_and_reboot`].
pub type RebootHook = Box<dyn FnMut() -> Result<(), BoxError> + Send>;

/// A slot backend that [`install`] can write into: an [`Ota`] that is told which firmware is
/// coming and how much room it has.
pub trait OtaSlots: Ota {
    /// Like [`Ota::initiate_update`], for an image announced as `firmware`, which the backend
    /// records with the slot (RAUC reads the version from the bundle itself).
    fn initiate_update_of(
        &mut self,
        firmware: &FirmwareInfo,
    ) -> Result<Self::Update<'_>, Self::Error>;

    /// Bytes free where the update is written.
    fn free_space(&self) -> Result<u64, Self::Error>;
}

/// How updates are fetched: chosen by the daemon's config, not by the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSettings {
    /// The largest bundle accepted, in bytes.
    pub max_size: u64,
    /// The download is abandoned when no byte arrives for this long.
    pub idle_timeout: Duration,
    /// The download is abandoned when it takes longer than this in all.
    pub total_timeout: Duration,
    /// Accept `http://` URLs whose host is `127.0.0.1`, `localhost` or `[::1]` (tests and the
    /// development image only; never set on shop hardware).
    pub allow_insecure_loopback: bool,
}

impl Default for UpdateSettings {
    fn default() -> Self {
        UpdateSettings {
            max_size: 2 << 30,
            idle_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(2 * 60 * 60),
            allow_insecure_loopback: false,
        }
    }
}

/// One update to install: the `update` command's fields and the settings to fetch it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRequest {
    pub url: String,
    /// Hex SHA-256 of the bundle (64 characters).
    pub sha256: String,
    /// The firmware version the bundle holds (at most 24 characters: the slot records it).
    pub version: String,
    /// The bundle's size in bytes.
    pub size: u64,
    pub settings: UpdateSettings,
}

impl UpdateRequest {
    /// The request for an `update` command; `None` for any other action.
    pub fn from_action(action: &Action, settings: UpdateSettings) -> Option<UpdateRequest> {
        match action {
            Action::Update {
                url,
                sha256,
                version,
                size,
            } => Some(UpdateRequest {
                url: url.clone(),
                sha256: sha256.clone(),
                version: version.clone(),
                size: *size,
                settings,
            }),
            _ => None,
        }
    }
}

/// An installed update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The slot that now holds it (`a`/`b`, or RAUC's slot name such as `rootfs.1`).
    pub slot: String,
    pub version: String,
    /// Bytes written.
    pub bytes: u64,
    /// Whether a reboot is needed to run it: always, with A/B slots (the new slot is tried
    /// once at the next boot).
    pub reboot_required: bool,
}

/// What [`confirm_after_boot`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The running slot was not awaiting a verdict (no update was just booted).
    NotPending { slot: String },
    /// The health check passed: the running slot is now the primary one.
    Confirmed { slot: String, version: String },
    /// The deadline passed first: the running slot was marked invalid and the previous one
    /// primary, and a reboot was asked for. `reboot` is what the backend answered (the reboot
    /// normally ends the process before this is seen).
    RolledBack {
        slot: String,
        version: String,
        reboot: String,
    },
}

/// An OTA step failed. Messages name the URL (without its query) or the slot.
#[derive(Debug, thiserror::Error)]
pub enum OtaError {
    #[error("update URL {url} refused: {reason}")]
    UrlRefused { url: String, reason: String },
    #[error("update request refused: {0}")]
    InvalidRequest(String),
    #[error("update of {size} bytes refused: larger than the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("update of {size} bytes refused: slot {slot} has {available} bytes free")]
    NoSpace {
        slot: String,
        size: u64,
        available: u64,
    },
    #[error("update refused: the running slot {slot} is itself not confirmed yet")]
    RunningUnconfirmed { slot: String },
    #[error("download {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("download {url}: HTTP status {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("download {url}: no data for {idle:?}")]
    Stalled { url: String, idle: Duration },
    #[error("download {url}: not finished within {total:?}")]
    TooSlow { url: String, total: Duration },
    #[error("download {url}: {received} bytes received, {expected} expected")]
    SizeMismatch {
        url: String,
        expected: u64,
        received: u64,
    },
    #[error("download {url}: the server announces {announced} bytes, {expected} expected")]
    LengthMismatch {
        url: String,
        expected: u64,
        announced: u64,
    },
    #[error("download {url}: SHA-256 is {actual}, {expected} expected")]
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{operation} (slot {slot}): {source}")]
    Slot {
        operation: &'static str,
        slot: String,
        source: BoxError,
    },
    #[error("the update was abandoned before it completed")]
    Cancelled,
    #[error("OTA worker: {0}")]
    Worker(String),
}

impl OtaError {
    /// A failed backend call, naming what was being done and to which slot.
    pub fn slot<E>(operation: &'static str, slot: impl Into<String>, source: E) -> OtaError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        OtaError::Slot {
            operation,
            slot: slot.into(),
            source: Box::new(source),
        }
    }
}

/// Whether the running slot awaits its verdict: it was just booted after an update and
/// neither confirmed nor rolled back yet.
pub fn pending_verification<O>(ota: &O) -> Result<bool, OtaError>
where
    O: Ota,
    O::Error: Send + Sync + 'static,
{
    let running = ota
        .get_running_slot()
        .map_err(|e| OtaError::slot("read the running slot", "running", e))?;
    Ok(running.state == SlotState::Unverified)
}

/// Gives the running slot its verdict after a boot. When it awaits one, `healthy` is asked
/// every `check_every` until it answers `true` (the slot is marked valid and becomes primary)
/// or until `deadline` from now passes (the slot is marked invalid, the previous one primary,
/// and the backend's reboot hook is called). `healthy` is cut off at the deadline too.
pub async fn confirm_after_boot<O, F, Fut>(
    ota: Arc<Mutex<O>>,
    mut healthy: F,
    check_every: Duration,
    deadline: Duration,
) -> Result<Verification, OtaError>
where
    O: Ota + Send + 'static,
    O::Error: Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    let running = with_slots(ota.clone(), |o| {
        o.get_running_slot()
            .map_err(|e| OtaError::slot("read the running slot", "running", e))
    })
    .await?;
    let slot = running.label.to_string();
    let version = running
        .firmware
        .as_ref()
        .map(|f| f.version.to_string())
        .unwrap_or_default();
    if running.state != SlotState::Unverified {
        tracing::debug!(slot, version, state = ?running.state, "running slot needs no verdict");
        return Ok(Verification::NotPending { slot });
    }
    tracing::info!(
        slot,
        version,
        ?deadline,
        "running an unconfirmed update: checking health"
    );
    loop {
        if let Ok(true) = tokio::time::timeout_at(until, healthy()).await {
            let label = slot.clone();
            with_slots(ota, move |o| {
                o.mark_running_slot_valid()
                    .map_err(|e| OtaError::slot("mark the running slot valid", label, e))
            })
            .await?;
            tracing::info!(
                slot,
                version,
                "update confirmed: the running slot is now primary"
            );
            return Ok(Verification::Confirmed { slot, version });
        }
        let now = tokio::time::Instant::now();
        if now >= until {
            break;
        }
        tokio::time::sleep_until((now + check_every).min(until)).await;
    }
    tracing::warn!(
        slot,
        version,
        "update not healthy before the deadline: rolling back"
    );
    let reboot = with_slots(ota, |o| {
        Ok(o.mark_running_slot_invalid_and_reboot().to_string())
    })
    .await?;
    tracing::warn!(slot, version, reboot, "running slot marked invalid");
    Ok(Verification::RolledBack {
        slot,
        version,
        reboot,
    })
}

/// Runs `f` on the backend on the blocking pool.
pub(crate) async fn with_slots<O, T, F>(ota: Arc<Mutex<O>>, f: F) -> Result<T, OtaError>
where
    O: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut O) -> Result<T, OtaError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&mut *lock(&ota)?))
        .await
        .map_err(|e| OtaError::Worker(e.to_string()))?
}

/// Locks the backend; a poisoned lock (a panic while it was held) is an error, not a panic.
pub(crate) fn lock<O>(ota: &Mutex<O>) -> Result<MutexGuard<'_, O>, OtaError> {
    ota.lock().map_err(|_| {
        OtaError::Worker("the slot backend's lock is poisoned by an earlier panic".into())
    })
}

/// `s` cut to at most `N` bytes on a character boundary (the OTA types are fixed-size).
pub(crate) fn bounded<const N: usize>(s: &str) -> heapless::String<N> {
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = heapless::String::new();
    // Cannot fail: at most N bytes.
    let _ = out.push_str(&s[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_strings_are_cut_on_character_boundaries() {
        assert_eq!(bounded::<4>("1.2.3").as_str(), "1.2.");
        assert_eq!(bounded::<4>("1.2").as_str(), "1.2");
        // "é" is two bytes: cutting inside it would not be UTF-8.
        assert_eq!(bounded::<4>("1.éé").as_str(), "1.é");
    }

    #[test]
    fn an_update_command_becomes_a_request_and_other_actions_do_not() {
        let action = Action::Update {
            url: "https://updates.example/kiosk-2.0.raucb".into(),
            sha256: "ab".repeat(32),
            version: "2.0".into(),
            size: 42,
        };
        let request = UpdateRequest::from_action(&action, UpdateSettings::default()).unwrap();
        assert_eq!(request.version, "2.0");
        assert_eq!(request.size, 42);
        assert!(UpdateRequest::from_action(&Action::Reboot, UpdateSettings::default()).is_none());
    }
}
