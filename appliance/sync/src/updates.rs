//! The daemon's side of updates: which slot backend runs here, installing an `update` command,
//! and the verdict on a freshly booted slot.
//!
//! The backend is chosen by `[ota] backend`: RAUC where its D-Bus name is present (`auto`), or
//! the directory slots, or none (updates refused). An update is installed into the other slot,
//! the kiosk reboots into it through logind, and after that boot the new slot is confirmed
//! once kiosk-sync is connected to the cloud again, or rolled back (and the kiosk rebooted into
//! the previous slot) when `health_deadline_s` passes first. The command's result follows the
//! verdict: `update-pending.json` in the state directory carries the command across the reboot.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiosk_protocol::MessageId;

use crate::ota::{
    self, DirSlots, Installed, Ota, OtaError, RaucSettings, RaucSlots, RebootHook, UpdateRequest,
    Verification,
};
use crate::settings::{OtaBackend, OtaSettings};

/// The slot backend in use.
#[derive(Clone)]
pub enum Slots {
    Dir(Arc<Mutex<DirSlots>>),
    Rauc(Arc<Mutex<RaucSlots>>),
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Slots::Dir(_) => "Slots::Dir",
            Slots::Rauc(_) => "Slots::Rauc",
        })
    }
}

/// What the running slot is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub label: String,
    pub version: Option<String>,
    /// Booted from a new update that awaits its verdict.
    pub pending: bool,
}

/// An update waiting for its verdict across a reboot.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingUpdate {
    pub command_id: MessageId,
    pub version: String,
    pub slot: String,
}

/// Reboots through logind, from the blocking thread the OTA backend calls it on.
fn reboot_hook(conn: &zbus::Connection) -> RebootHook {
    let conn = zbus::blocking::Connection::from(conn.clone());
    Box::new(move || {
        crate::system::LoginProxyBlocking::new(&conn)?.reboot(false)?;
        Ok(())
    })
}

fn blocking_err(e: tokio::task::JoinError) -> String {
    format!("slot backend task: {e}")
}

impl Slots {
    /// The backend the settings ask for; `None` when updates are off.
    pub async fn open(
        settings: &OtaSettings,
        conn: &zbus::Connection,
    ) -> Result<Option<Slots>, String> {
        let hook = reboot_hook(conn);
        let blocking = zbus::blocking::Connection::from(conn.clone());
        let backend = settings.backend;
        let slots_dir = settings.slots_dir.clone();
        let data_dir = slots_dir.join("rauc");
        tokio::task::spawn_blocking(move || {
            let rauc = match backend {
                OtaBackend::None => return Ok(None),
                OtaBackend::Rauc => true,
                OtaBackend::Dir => false,
                OtaBackend::Auto => RaucSlots::available(&blocking).map_err(|e| e.to_string())?,
            };
            if rauc {
                let settings = RaucSettings {
                    data_dir,
                    ..RaucSettings::default()
                };
                RaucSlots::new(&blocking, settings, hook)
                    .map(|s| Some(Slots::Rauc(Arc::new(Mutex::new(s)))))
                    .map_err(|e| e.to_string())
            } else {
                DirSlots::open(slots_dir, hook)
                    .map(|s| Some(Slots::Dir(Arc::new(Mutex::new(s)))))
                    .map_err(|e| e.to_string())
            }
        })
        .await
        .map_err(blocking_err)?
    }

    /// The running slot.
    pub async fn running(&self) -> Result<Running, String> {
        fn read<O: Ota>(o: &Mutex<O>) -> Result<Running, String>
        where
            O::Error: std::fmt::Debug,
        {
            let o = o
                .lock()
                .map_err(|_| "slot backend lock poisoned".to_string())?;
            let slot = o.get_running_slot().map_err(|e| format!("{e:?}"))?;
            Ok(Running {
                label: slot.label.to_string(),
                version: slot.firmware.map(|f| f.version.to_string()),
                pending: slot.state == ota::SlotState::Unverified,
            })
        }
        match self.clone() {
            Slots::Dir(o) => tokio::task::spawn_blocking(move || read(&o)).await,
            Slots::Rauc(o) => tokio::task::spawn_blocking(move || read(&o)).await,
        }
        .map_err(blocking_err)?
    }

    /// Installs an update into the other slot.
    pub async fn install(
        &self,
        request: &UpdateRequest,
        http: &reqwest::Client,
    ) -> Result<Installed, OtaError> {
        let progress = |got: u64, size: u64| {
            if size > 0 && got == size {
                tracing::info!(bytes = got, "update downloaded");
            }
        };
        match self {
            Slots::Dir(o) => ota::install(o.clone(), request, http, progress).await,
            Slots::Rauc(o) => ota::install(o.clone(), request, http, progress).await,
        }
    }

    /// Gives a freshly booted slot its verdict.
    pub async fn confirm<F, Fut>(
        &self,
        healthy: F,
        every: Duration,
        deadline: Duration,
    ) -> Result<Verification, OtaError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        match self {
            Slots::Dir(o) => ota::confirm_after_boot(o.clone(), healthy, every, deadline).await,
            Slots::Rauc(o) => ota::confirm_after_boot(o.clone(), healthy, every, deadline).await,
        }
    }
}

/// `update-pending.json` in `dir`.
pub fn pending_path(dir: &Path) -> std::path::PathBuf {
    dir.join("update-pending.json")
}
