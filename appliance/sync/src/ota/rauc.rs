//! RAUC slots: the [`Ota`] trait over RAUC's D-Bus API, for shop hardware.
//!
//! RAUC (`de.pengutronix.rauc` on the system bus, object `/`, interface
//! `de.pengutronix.rauc.Installer`) owns the slots and talks to the bootloader; this backend
//! only asks it. RAUC installs from a bundle file, so [`Ota::initiate_update`] returns a writer
//! that streams into `update.raucb.part` under [`RaucSettings::data_dir`]; `complete` moves it to
//! `update.raucb`, calls `InstallBundle`, waits for the `Completed` signal (an error with
//! `LastError` when its code is not 0), activates the installed slot with `Mark("active", …)`
//! and removes the bundle file.
//!
//! Slots are RAUC's slots of one class (`rootfs` by default), named as RAUC names them
//! (`rootfs.0`, `rootfs.1`). RAUC has no "installed, not confirmed yet" state, so the backend
//! keeps one: `pending.json` in the data dir names the slot last installed until the kiosk
//! confirms it (`Mark("good", "booted")`) or rolls it back (`Mark("active", "other")`, then
//! `Mark("bad", "booted")`, then the reboot hook). A slot's state is `Invalid` when RAUC says
//! its boot status is bad, `Unverified` while pending, `Factory` for a booted slot RAUC never
//! installed (flashed at the factory), `Unknown` for another such slot, else `Valid`.
//!
//! Calls use zbus's blocking API, as the `embedded-svc` traits are blocking: call them from a
//! blocking thread (`spawn_blocking`), never from async code. The connection may come from
//! the daemon's async one (`zbus::blocking::Connection::from`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use embedded_svc::io::{ErrorKind, ErrorType};
use embedded_svc::ota::{FirmwareInfo, Ota, OtaUpdate, OtaUpdateFinished, Slot, SlotState};
use futures_lite::StreamExt as _;
use serde::{Deserialize, Serialize};
use zbus::zvariant::OwnedValue;

use super::durable::{self, FileError, PartFile};
use super::{bounded, BoxError, OtaSlots, RebootHook};

/// RAUC's well-known name on the bus.
pub const RAUC_NAME: &str = "de.pengutronix.rauc";

#[zbus::proxy(
    interface = "de.pengutronix.rauc.Installer",
    default_service = "de.pengutronix.rauc",
    default_path = "/",
    gen_async = false,
    blocking_name = "InstallerProxy"
)]
trait Installer {
    fn install_bundle(
        &self,
        source: &str,
        args: HashMap<&str, zvariant::Value<'_>>,
    ) -> zbus::Result<()>;

    fn mark(&self, state: &str, slot_identifier: &str) -> zbus::Result<(String, String)>;

    fn get_slot_status(&self) -> zbus::Result<Vec<(String, HashMap<String, OwnedValue>)>>;

    fn get_primary(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn operation(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn progress(&self) -> zbus::Result<(i32, String, i32)>;

    #[zbus(property)]
    fn boot_slot(&self) -> zbus::Result<String>;

    #[zbus(signal)]
    fn completed(&self, result: i32) -> zbus::Result<()>;
}

/// A RAUC operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RaucError {
    #[error("RAUC {call}: {source}")]
    Call {
        call: &'static str,
        source: Box<zbus::Error>,
    },
    #[error(
        "RAUC reports no booted slot of class {class} (is rauc.slot= on the kernel command line?)"
    )]
    NoBootedSlot { class: String },
    #[error("RAUC reports no slot of class {class} besides the booted one")]
    NoUpdateSlot { class: String },
    #[error("RAUC's primary slot {name} is not a slot of class {class}")]
    UnknownPrimary { name: String, class: String },
    #[error("RAUC is busy ({operation}); try again when it is idle")]
    Busy { operation: String },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("could not start a timer to wait for RAUC: {0}")]
    Timer(std::io::Error),
    #[error("bundle path {path} is not UTF-8, which D-Bus needs")]
    BundlePath { path: PathBuf },
    #[error("RAUC could not install {path} (code {code}): {last_error}")]
    Install {
        path: PathBuf,
        code: i32,
        last_error: String,
    },
    #[error("RAUC did not finish installing {path} within {timeout:?}")]
    InstallTimeout { path: PathBuf, timeout: Duration },
    #[error("the update record {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("factory reset is not done through RAUC")]
    Unsupported,
    #[error("reboot: {0}")]
    Reboot(BoxError),
    #[error("slot {slot} marked bad; rebooting into slot {next}")]
    Rebooting { slot: String, next: String },
}

impl embedded_svc::io::Error for RaucError {
    fn kind(&self) -> ErrorKind {
        match self {
            RaucError::File(e) => e.source.kind().into(),
            RaucError::InstallTimeout { .. } => ErrorKind::TimedOut,
            RaucError::Corrupt { .. } => ErrorKind::InvalidData,
            RaucError::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Other,
        }
    }
}

fn call(call: &'static str) -> impl FnOnce(zbus::Error) -> RaucError {
    move |source| RaucError::Call {
        call,
        source: Box::new(source),
    }
}

/// Where and how the RAUC backend works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaucSettings {
    /// Where bundles are downloaded and the pending-update record is kept; must persist
    /// across reboots and have room for a bundle.
    pub data_dir: PathBuf,
    /// The class of the slots updated (RAUC's `[slot.<class>.<n>]`).
    pub slot_class: String,
    /// How long RAUC may take to install a bundle.
    pub install_timeout: Duration,
}

impl Default for RaucSettings {
    fn default() -> Self {
        RaucSettings {
            data_dir: PathBuf::from("/var/lib/kioskcall/ota"),
            slot_class: "rootfs".into(),
            install_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// `pending.json`: the slot installed last and not confirmed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    slot: String,
    version: String,
}

/// One slot as RAUC reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RaucSlot {
    name: String,
    booted: bool,
    bad: bool,
    /// RAUC installed it (it has an `installed.timestamp`).
    installed: bool,
    version: Option<String>,
    build: Option<String>,
    description: Option<String>,
}

impl RaucSlot {
    fn from_status(name: String, status: &HashMap<String, OwnedValue>) -> RaucSlot {
        let text = |key: &str| {
            status
                .get(key)
                .and_then(|v| v.downcast_ref::<&str>().ok())
                .map(str::to_string)
        };
        RaucSlot {
            booted: text("state").as_deref() == Some("booted"),
            bad: text("boot-status").as_deref() == Some("bad"),
            installed: status.contains_key("installed.timestamp"),
            version: text("bundle.version"),
            build: text("bundle.build"),
            description: text("bundle.description"),
            name,
        }
    }

    fn state(&self, pending: Option<&Pending>) -> SlotState {
        if self.bad {
            SlotState::Invalid
        } else if pending.is_some_and(|p| p.slot == self.name) {
            SlotState::Unverified
        } else if !self.installed && self.booted {
            SlotState::Factory
        } else if !self.installed {
            SlotState::Unknown
        } else {
            SlotState::Valid
        }
    }

    fn slot(&self, pending: Option<&Pending>) -> Slot {
        let firmware = self.version.as_deref().map(|version| FirmwareInfo {
            version: bounded(version),
            released: bounded(self.build.as_deref().unwrap_or_default()),
            description: self.description.as_deref().map(bounded),
            signature: None,
            download_id: None,
        });
        Slot {
            label: bounded(&self.name),
            state: self.state(pending),
            firmware,
        }
    }
}

/// RAUC's slots behind the [`Ota`] trait.
pub struct RaucSlots {
    proxy: InstallerProxy<'static>,
    settings: RaucSettings,
    reboot: RebootHook,
}

impl std::fmt::Debug for RaucSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaucSlots")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RaucSlots {
    /// Whether RAUC is on `conn`'s bus (running, or startable by D-Bus activation).
    pub fn available(conn: &zbus::blocking::Connection) -> Result<bool, RaucError> {
        let bus =
            zbus::blocking::fdo::DBusProxy::new(conn).map_err(call("connect to the bus daemon"))?;
        let name =
            zbus::names::BusName::try_from(RAUC_NAME).map_err(|e| call("name RAUC")(e.into()))?;
        if bus
            .name_has_owner(name)
            .map_err(|e| call("NameHasOwner")(e.into()))?
        {
            return Ok(true);
        }
        let activatable = bus
            .list_activatable_names()
            .map_err(|e| call("ListActivatableNames")(e.into()))?;
        Ok(activatable.iter().any(|n| n.as_str() == RAUC_NAME))
    }

    /// RAUC on `conn`. A bundle left by an interrupted update is removed. `reboot` is called by
    /// [`Ota::mark_running_slot_invalid_and_reboot`].
    pub fn new(
        conn: &zbus::blocking::Connection,
        settings: RaucSettings,
        reboot: RebootHook,
    ) -> Result<Self, RaucError> {
        let proxy = InstallerProxy::builder(conn)
            // LastError must be read fresh after Completed, not from a cache updated later.
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .map_err(call("connect to RAUC"))?;
        let slots = RaucSlots {
            proxy,
            settings,
            reboot,
        };
        for stale in [slots.part_path(), slots.bundle_path()] {
            if stale.exists() {
                tracing::warn!(path = %stale.display(), "removing a bundle left by an interrupted update");
                durable::remove_if_present(&stale)?;
            }
        }
        Ok(slots)
    }

    fn part_path(&self) -> PathBuf {
        self.settings.data_dir.join("update.raucb.part")
    }

    fn bundle_path(&self) -> PathBuf {
        self.settings.data_dir.join("update.raucb")
    }

    fn pending_path(&self) -> PathBuf {
        self.settings.data_dir.join("pending.json")
    }

    fn pending(&self) -> Result<Option<Pending>, RaucError> {
        let path = self.pending_path();
        let Some(bytes) = durable::read_if_present(&path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RaucError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    fn set_pending(&self, pending: Option<&Pending>) -> Result<(), RaucError> {
        let path = self.pending_path();
        match pending {
            Some(p) => {
                let bytes = serde_json::to_vec(p).map_err(|e| RaucError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Ok(durable::write_atomic(&path, &bytes)?)
            }
            None => Ok(durable::remove_if_present(&path)?),
        }
    }

    /// The slots of our class, by name.
    fn slots(&self) -> Result<Vec<RaucSlot>, RaucError> {
        let class = self.settings.slot_class.as_str();
        let mut slots: Vec<RaucSlot> = self
            .proxy
            .get_slot_status()
            .map_err(call("GetSlotStatus"))?
            .into_iter()
            .filter(|(_, status)| {
                let of_class = status
                    .get("class")
                    .and_then(|v| v.downcast_ref::<&str>().ok())
                    == Some(class);
                of_class && !status.contains_key("parent")
            })
            .map(|(name, status)| RaucSlot::from_status(name, &status))
            .collect();
        slots.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(slots)
    }

    fn booted(&self, slots: &[RaucSlot]) -> Result<RaucSlot, RaucError> {
        slots
            .iter()
            .find(|s| s.booted)
            .cloned()
            .ok_or_else(|| RaucError::NoBootedSlot {
                class: self.settings.slot_class.clone(),
            })
    }

    fn other(&self, slots: &[RaucSlot]) -> Result<RaucSlot, RaucError> {
        slots
            .iter()
            .find(|s| !s.booted)
            .cloned()
            .ok_or_else(|| RaucError::NoUpdateSlot {
                class: self.settings.slot_class.clone(),
            })
    }

    fn initiate(&mut self, version: Option<String>) -> Result<RaucUpdate<'_>, RaucError> {
        let operation = self.proxy.operation().map_err(call("read Operation"))?;
        if operation != "idle" {
            return Err(RaucError::Busy { operation });
        }
        let target = self.other(&self.slots()?)?.name;
        durable::create_dir(&self.settings.data_dir)?;
        let part = PartFile::create(self.part_path())?;
        tracing::info!(
            slot = target,
            version = version.as_deref(),
            "downloading RAUC bundle"
        );
        Ok(RaucUpdate {
            slots: self,
            target,
            version,
            part,
        })
    }

    /// Has RAUC install `bundle` and waits for its `Completed` signal.
    fn install_bundle(&self, bundle: &Path) -> Result<(), RaucError> {
        let source = bundle.to_str().ok_or_else(|| RaucError::BundlePath {
            path: bundle.to_path_buf(),
        })?;
        // The blocking signal iterator cannot time out: wait on the signal stream on a small
        // runtime of this thread instead.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(RaucError::Timer)?;
        // Subscribed before the call, so that a quick Completed is not missed.
        let mut completed = runtime
            .block_on(self.proxy.inner().inner().receive_signal("Completed"))
            .map_err(call("subscribe to Completed"))?;
        self.proxy
            .install_bundle(source, HashMap::new())
            .map_err(call("InstallBundle"))?;
        let timeout = self.settings.install_timeout;
        let signal = runtime
            .block_on(tokio::time::timeout(timeout, completed.next()))
            .map_err(|_| RaucError::InstallTimeout {
                path: bundle.to_path_buf(),
                timeout,
            })?
            .ok_or_else(|| {
                call("wait for Completed")(zbus::Error::Failure("the signal stream ended".into()))
            })?;
        let code: i32 = signal
            .body()
            .deserialize()
            .map_err(call("read Completed"))?;
        if code != 0 {
            let last_error = self
                .proxy
                .last_error()
                .unwrap_or_else(|e| format!("(LastError unreadable: {e})"));
            return Err(RaucError::Install {
                path: bundle.to_path_buf(),
                code,
                last_error,
            });
        }
        Ok(())
    }
}

impl ErrorType for RaucSlots {
    type Error = RaucError;
}

impl Ota for RaucSlots {
    type Update<'a>
        = RaucUpdate<'a>
    where
        Self: 'a;

    /// RAUC's primary slot: the one the bootloader starts next.
    fn get_boot_slot(&self) -> Result<Slot, Self::Error> {
        let name = self.proxy.get_primary().map_err(call("GetPrimary"))?;
        let slots = self.slots()?;
        let primary =
            slots
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| RaucError::UnknownPrimary {
                    name,
                    class: self.settings.slot_class.clone(),
                })?;
        Ok(primary.slot(self.pending()?.as_ref()))
    }

    fn get_running_slot(&self) -> Result<Slot, Self::Error> {
        let booted = self.booted(&self.slots()?)?;
        Ok(booted.slot(self.pending()?.as_ref()))
    }

    fn get_update_slot(&self) -> Result<Slot, Self::Error> {
        let other = self.other(&self.slots()?)?;
        Ok(other.slot(self.pending()?.as_ref()))
    }

    fn is_factory_reset_supported(&self) -> Result<bool, Self::Error> {
        Ok(false)
    }

    fn factory_reset(&mut self) -> Result<(), Self::Error> {
        Err(RaucError::Unsupported)
    }

    fn initiate_update(&mut self) -> Result<Self::Update<'_>, Self::Error> {
        self.initiate(None)
    }

    fn mark_running_slot_valid(&mut self) -> Result<(), Self::Error> {
        let (slot, message) = self
            .proxy
            .mark("good", "booted")
            .map_err(call("Mark good booted"))?;
        let pending = self.pending()?;
        if pending.as_ref().is_some_and(|p| p.slot == slot) {
            self.set_pending(None)?;
        }
        let version = pending.map(|p| p.version);
        tracing::info!(slot, version, message, "running slot marked good");
        Ok(())
    }

    fn mark_running_slot_invalid_and_reboot(&mut self) -> Self::Error {
        // The other slot first: if it cannot be activated, this one stays bootable.
        let next = match self.proxy.mark("active", "other") {
            Ok((next, _)) => next,
            Err(e) => return call("Mark active other")(e),
        };
        let slot = match self.proxy.mark("bad", "booted") {
            Ok((slot, _)) => slot,
            Err(e) => return call("Mark bad booted")(e),
        };
        if let Err(e) = self.set_pending(None) {
            tracing::warn!(error = %e, "could not clear the pending-update record");
        }
        tracing::warn!(slot, next, "running slot marked bad; rebooting");
        match (self.reboot)() {
            Ok(()) => RaucError::Rebooting { slot, next },
            Err(e) => RaucError::Reboot(e),
        }
    }
}

impl OtaSlots for RaucSlots {
    fn initiate_update_of(
        &mut self,
        firmware: &FirmwareInfo,
    ) -> Result<Self::Update<'_>, Self::Error> {
        self.initiate(Some(firmware.version.to_string()))
    }

    fn free_space(&self) -> Result<u64, Self::Error> {
        durable::create_dir(&self.settings.data_dir)?;
        Ok(durable::free_space(&self.settings.data_dir)?)
    }
}

/// A bundle being downloaded for RAUC.
#[derive(Debug)]
pub struct RaucUpdate<'a> {
    slots: &'a mut RaucSlots,
    /// The slot RAUC will install into.
    target: String,
    /// The version announced for it.
    version: Option<String>,
    part: PartFile,
}

impl ErrorType for RaucUpdate<'_> {
    type Error = RaucError;
}

impl embedded_svc::io::Write for RaucUpdate<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(self.part.write(buf)?)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(self.part.flush()?)
    }
}

impl<'a> OtaUpdate for RaucUpdate<'a> {
    type OtaUpdateFinished = RaucUpdateFinished<'a>;

    /// Syncs the bundle and moves it in place; RAUC installs it on
    /// [`OtaUpdateFinished::activate`].
    fn finish(self) -> Result<Self::OtaUpdateFinished, Self::Error> {
        let bundle = self.slots.bundle_path();
        self.part.commit(&bundle)?;
        Ok(RaucUpdateFinished {
            slots: self.slots,
            target: self.target,
            version: self.version,
            bundle,
        })
    }

    fn complete(self) -> Result<(), Self::Error> {
        self.finish()?.activate()
    }

    fn abort(self) -> Result<(), Self::Error> {
        self.part.discard()?;
        tracing::info!(slot = self.target, "update aborted; nothing handed to RAUC");
        Ok(())
    }
}

/// A downloaded bundle, installed by RAUC when activated.
#[derive(Debug)]
pub struct RaucUpdateFinished<'a> {
    slots: &'a mut RaucSlots,
    target: String,
    version: Option<String>,
    bundle: PathBuf,
}

impl ErrorType for RaucUpdateFinished<'_> {
    type Error = RaucError;
}

impl OtaUpdateFinished for RaucUpdateFinished<'_> {
    /// Installs the bundle with RAUC, activates the slot it went to and records it as pending
    /// confirmation. The bundle file is removed whatever happens.
    fn activate(self) -> Result<(), Self::Error> {
        let slots = self.slots;
        let installed = slots.install_bundle(&self.bundle);
        if let Err(e) = durable::remove_if_present(&self.bundle) {
            tracing::warn!(error = %e, "could not remove the installed bundle");
        }
        installed?;
        // Where RAUC is configured not to activate what it installs, this does.
        let (slot, _) = slots
            .proxy
            .mark("active", &self.target)
            .map_err(call("Mark active"))?;
        let installed_version = slots
            .slots()?
            .into_iter()
            .find(|s| s.name == slot)
            .and_then(|s| s.version);
        if let (Some(announced), Some(found)) = (&self.version, &installed_version) {
            if announced != found {
                tracing::warn!(
                    slot,
                    announced,
                    found,
                    "the bundle's version differs from the one announced"
                );
            }
        }
        let version = installed_version.or(self.version).unwrap_or_default();
        slots.set_pending(Some(&Pending {
            slot: slot.clone(),
            version: version.clone(),
        }))?;
        tracing::info!(
            slot,
            version,
            "RAUC installed the bundle; the slot boots next"
        );
        Ok(())
    }
}

/// Unit tests of our D-Bus calls against a small fake of RAUC's installer interface, served on
/// a private `dbus-daemon`. RAUC itself (and a bootloader for it) cannot be installed where
/// these tests run; the fake answers the calls this module makes the way RAUC's `service.c`
/// does (reply to `InstallBundle` at once, `Completed` afterwards, `LastError` on failure).
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use embedded_svc::io::Write as _;
    use zbus::object_server::SignalEmitter;
    use zbus::zvariant::Value;

    use kiosk_bus::testing::PrivateBus;

    trait HasRauc {
        async fn has_rauc(&self) -> bool;
    }

    impl HasRauc for PrivateBus {
        /// Whether RAUC is on this bus, asked from a blocking thread.
        async fn has_rauc(&self) -> bool {
            let address = self.address.clone();
            tokio::task::spawn_blocking(move || {
                let conn = zbus::blocking::connection::Builder::address(address.as_str())
                    .unwrap()
                    .build()
                    .unwrap();
                RaucSlots::available(&conn).unwrap()
            })
            .await
            .unwrap()
        }
    }

    #[derive(Debug, Clone)]
    struct FakeSlot {
        name: &'static str,
        good: bool,
        /// Set once the fake "installed" a bundle into it.
        version: Option<String>,
    }

    /// What the fake RAUC knows and what it was asked.
    #[derive(Debug)]
    struct FakeState {
        slots: Vec<FakeSlot>,
        booted: &'static str,
        primary: &'static str,
        last_error: String,
        marks: Vec<(String, String)>,
        /// Each bundle handed to InstallBundle, read when it was handed over.
        bundles: Vec<Vec<u8>>,
    }

    impl FakeState {
        fn resolve(&self, identifier: &str) -> Option<&'static str> {
            let name = match identifier {
                "booted" => self.booted,
                "other" => self.slots.iter().find(|s| s.name != self.booted)?.name,
                name => self.slots.iter().find(|s| s.name == name)?.name,
            };
            Some(name)
        }

        fn slot(&mut self, name: &str) -> &mut FakeSlot {
            self.slots
                .iter_mut()
                .find(|s| s.name == name)
                .expect("a known slot")
        }
    }

    #[derive(Clone)]
    struct FakeRauc(Arc<Mutex<FakeState>>);

    impl FakeRauc {
        fn new() -> FakeRauc {
            let slot = |name| FakeSlot {
                name,
                good: true,
                version: None,
            };
            FakeRauc(Arc::new(Mutex::new(FakeState {
                slots: vec![slot("rootfs.0"), slot("rootfs.1")],
                booted: "rootfs.0",
                primary: "rootfs.0",
                last_error: String::new(),
                marks: Vec::new(),
                bundles: Vec::new(),
            })))
        }

        fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.0.lock().unwrap()
        }
    }

    fn text(s: &str) -> OwnedValue {
        Value::from(s).try_to_owned().unwrap()
    }

    #[zbus::interface(name = "de.pengutronix.rauc.Installer")]
    impl FakeRauc {
        /// A bundle whose first line is `version=<v>` installs into the other slot; anything
        /// else fails as a bad signature.
        async fn install_bundle(
            &self,
            source: String,
            _args: HashMap<String, OwnedValue>,
            #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        ) -> zbus::fdo::Result<()> {
            let bundle =
                std::fs::read(&source).map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
            let version = std::str::from_utf8(&bundle)
                .ok()
                .and_then(|b| b.lines().next())
                .and_then(|l| l.strip_prefix("version="))
                .map(str::to_string);
            let code = {
                let mut s = self.state();
                s.bundles.push(bundle);
                match (version, s.resolve("other")) {
                    (Some(version), Some(other)) => {
                        let slot = s.slot(other);
                        slot.version = Some(version);
                        slot.good = true;
                        s.primary = other;
                        0
                    }
                    _ => {
                        s.last_error = "Failed to verify bundle: signature invalid".into();
                        1
                    }
                }
            };
            let emitter = emitter.to_owned();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = FakeRauc::completed(&emitter, code).await;
            });
            Ok(())
        }

        async fn mark(
            &self,
            state: String,
            slot_identifier: String,
        ) -> zbus::fdo::Result<(String, String)> {
            let mut s = self.state();
            s.marks.push((state.clone(), slot_identifier.clone()));
            let name = s
                .resolve(&slot_identifier)
                .ok_or_else(|| zbus::fdo::Error::Failed(format!("no slot {slot_identifier}")))?;
            match state.as_str() {
                "good" => s.slot(name).good = true,
                "bad" => s.slot(name).good = false,
                "active" => {
                    s.slot(name).good = true;
                    s.primary = name;
                }
                other => return Err(zbus::fdo::Error::Failed(format!("state {other}"))),
            }
            Ok((name.to_string(), format!("marked slot {name} as {state}")))
        }

        async fn get_slot_status(&self) -> Vec<(String, HashMap<String, OwnedValue>)> {
            let s = self.state();
            let mut all: Vec<(String, HashMap<String, OwnedValue>)> = s
                .slots
                .iter()
                .map(|slot| {
                    let mut status = HashMap::from([
                        ("class".to_string(), text("rootfs")),
                        (
                            "bootname".to_string(),
                            text(&slot.name.replace("rootfs.", "system")),
                        ),
                        (
                            "state".to_string(),
                            text(if slot.name == s.booted {
                                "booted"
                            } else {
                                "inactive"
                            }),
                        ),
                        (
                            "boot-status".to_string(),
                            text(if slot.good { "good" } else { "bad" }),
                        ),
                    ]);
                    if let Some(version) = &slot.version {
                        status.insert("bundle.version".into(), text(version));
                        status.insert("installed.timestamp".into(), text("2025-01-01T00:00:00Z"));
                    }
                    (slot.name.to_string(), status)
                })
                .collect();
            // A slot of another class, which the backend leaves alone.
            all.push((
                "appfs.0".into(),
                HashMap::from([("class".to_string(), text("appfs"))]),
            ));
            all
        }

        async fn get_primary(&self) -> String {
            self.state().primary.to_string()
        }

        #[zbus(property)]
        async fn operation(&self) -> String {
            "idle".into()
        }

        #[zbus(property)]
        async fn last_error(&self) -> String {
            self.state().last_error.clone()
        }

        #[zbus(property)]
        async fn progress(&self) -> (i32, String, i32) {
            (100, "done".into(), 1)
        }

        #[zbus(property)]
        async fn boot_slot(&self) -> String {
            self.state().booted.replace("rootfs.", "system")
        }

        #[zbus(signal)]
        async fn completed(emitter: &SignalEmitter<'_>, result: i32) -> zbus::Result<()>;
    }

    /// A private bus with the fake RAUC on it, and RaucSlots connected to it.
    struct Setup {
        bus: PrivateBus,
        fake: FakeRauc,
        _server: zbus::Connection,
        data: tempfile::TempDir,
        reboots: Arc<AtomicUsize>,
    }

    impl Setup {
        async fn start() -> Setup {
            let bus = PrivateBus::start().unwrap();
            let fake = FakeRauc::new();
            let server = zbus::connection::Builder::address(bus.address.as_str())
                .unwrap()
                .serve_at("/", fake.clone())
                .unwrap()
                .name(RAUC_NAME)
                .unwrap()
                .build()
                .await
                .unwrap();
            Setup {
                bus,
                fake,
                _server: server,
                data: tempfile::tempdir().unwrap(),
                reboots: Arc::new(AtomicUsize::new(0)),
            }
        }

        /// Runs `f` on RaucSlots on a blocking thread, as the daemon does.
        async fn with_slots<T: Send + 'static>(
            &self,
            f: impl FnOnce(&mut RaucSlots) -> T + Send + 'static,
        ) -> T {
            let address = self.bus.address.clone();
            let data_dir = self.data.path().to_path_buf();
            let reboots = self.reboots.clone();
            tokio::task::spawn_blocking(move || {
                let conn = zbus::blocking::connection::Builder::address(address.as_str())
                    .unwrap()
                    .build()
                    .unwrap();
                let settings = RaucSettings {
                    data_dir,
                    install_timeout: Duration::from_secs(10),
                    ..RaucSettings::default()
                };
                let hook: RebootHook = Box::new(move || {
                    reboots.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                });
                f(&mut RaucSlots::new(&conn, settings, hook).unwrap())
            })
            .await
            .unwrap()
        }

        /// Writes `bundle` through the update writer and completes it.
        async fn install(&self, version: &str, bundle: &'static [u8]) -> Result<(), RaucError> {
            let firmware = FirmwareInfo {
                version: bounded(version),
                released: heapless::String::new(),
                description: None,
                signature: None,
                download_id: None,
            };
            self.with_slots(move |slots| {
                let mut update = slots.initiate_update_of(&firmware)?;
                update.write_all(bundle)?;
                update.complete()
            })
            .await
        }

        fn data_files(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.data.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    /// (label, state, version) of a slot.
    fn summary(slot: Slot) -> (String, SlotState, Option<String>) {
        (
            slot.label.to_string(),
            slot.state,
            slot.firmware.map(|f| f.version.to_string()),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rauc_is_found_only_where_its_name_is_on_the_bus() {
        assert!(!PrivateBus::start().unwrap().has_rauc().await);
        assert!(Setup::start().await.bus.has_rauc().await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bundle_goes_to_rauc_and_its_slot_is_kept_once_confirmed() {
        let setup = Setup::start().await;
        let before = setup
            .with_slots(|s| {
                (
                    summary(s.get_running_slot().unwrap()),
                    summary(s.get_update_slot().unwrap()),
                )
            })
            .await;
        assert_eq!(
            before,
            (
                ("rootfs.0".into(), SlotState::Factory, None),
                ("rootfs.1".into(), SlotState::Unknown, None)
            )
        );

        setup
            .install("2.0", b"version=2.0\nthe rest of the bundle")
            .await
            .unwrap();
        assert_eq!(
            setup.fake.state().bundles,
            vec![b"version=2.0\nthe rest of the bundle".to_vec()]
        );
        // The bundle is gone; only the pending-update record stays.
        assert_eq!(setup.data_files(), vec!["pending.json"]);
        let installed = setup
            .with_slots(|s| summary(s.get_boot_slot().unwrap()))
            .await;
        let unverified = ("rootfs.1".into(), SlotState::Unverified, Some("2.0".into()));
        assert_eq!(installed, unverified);

        // The bootloader starts the new slot.
        setup.fake.state().booted = "rootfs.1";
        let pending = setup
            .with_slots(|s| super::super::pending_verification(s).unwrap())
            .await;
        assert!(pending);
        setup
            .with_slots(|s| s.mark_running_slot_valid())
            .await
            .unwrap();
        let running = setup
            .with_slots(|s| summary(s.get_running_slot().unwrap()))
            .await;
        assert_eq!(
            running,
            ("rootfs.1".into(), SlotState::Valid, Some("2.0".into()))
        );
        let marks = setup.fake.state().marks.clone();
        let expected = [("active", "rootfs.1"), ("good", "booted")];
        assert_eq!(marks, expected.map(|(a, b)| (a.to_string(), b.to_string())));
        assert!(setup.data_files().is_empty());
        assert_eq!(setup.reboots.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bundle_rauc_refuses_fails_with_its_last_error_and_leaves_nothing() {
        let setup = Setup::start().await;
        let e = setup
            .install("2.0", b"not a signed bundle")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RaucError::Install { code: 1, last_error, .. } if last_error.contains("signature invalid")),
            "{e}"
        );
        assert!(setup.data_files().is_empty());
        let update = setup
            .with_slots(|s| summary(s.get_update_slot().unwrap()))
            .await;
        assert_eq!(update, ("rootfs.1".into(), SlotState::Unknown, None));
        assert!(setup.fake.state().marks.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_download_never_reaches_rauc() {
        let setup = Setup::start().await;
        setup
            .with_slots(|s| {
                let mut update = s.initiate_update()?;
                update.write_all(b"version=2.0\nhalf")?;
                update.abort()
            })
            .await
            .unwrap();
        assert!(setup.data_files().is_empty());
        assert!(setup.fake.state().bundles.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rollback_activates_the_other_slot_marks_this_one_bad_and_reboots() {
        let setup = Setup::start().await;
        setup.install("3.0", b"version=3.0\n").await.unwrap();
        setup.fake.state().booted = "rootfs.1";
        let e = setup
            .with_slots(|s| s.mark_running_slot_invalid_and_reboot())
            .await;
        assert!(
            matches!(&e, RaucError::Rebooting { slot, next } if slot == "rootfs.1" && next == "rootfs.0"),
            "{e}"
        );
        assert_eq!(setup.reboots.load(Ordering::SeqCst), 1);
        let marks = setup.fake.state().marks.clone();
        let expected = [
            ("active", "rootfs.1"),
            ("active", "other"),
            ("bad", "booted"),
        ];
        assert_eq!(marks, expected.map(|(a, b)| (a.to_string(), b.to_string())));
        let (boot, running) = setup
            .with_slots(|s| {
                (
                    summary(s.get_boot_slot().unwrap()),
                    summary(s.get_running_slot().unwrap()),
                )
            })
            .await;
        assert_eq!(boot.0, "rootfs.0");
        assert_eq!(running.1, SlotState::Invalid);
        assert!(setup.data_files().is_empty());
    }
}
