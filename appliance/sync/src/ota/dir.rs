//! Directory slots: A/B updates for the QEMU development image and for tests, with the
//! semantics of a real A/B bootloader.
//!
//! Layout under the root directory:
//!
//! ```text
//! boot.json            primary slot, the slot to try once, the slot on trial, each slot's state
//! running              the slot booted this time: one letter, written by the boot stage
//! slots/a/image        the slot's image
//! slots/a/firmware.json   version, released, description (and sha256) of that image
//! slots/a/image.part   an image being received (gone unless the update completes)
//! slots/b/...
//! ```
//!
//! `boot.json` and `firmware.json` are replaced atomically (temporary file, fsync, rename,
//! fsync of the directory). A fresh root starts with `a` primary and `Factory`, `b` `Unknown`.
//!
//! The boot stage chooses the slot with [`DirSlots::boot`] and records it in `running`: the
//! QEMU image's boot script runs it before the services start, the way a real bootloader picks
//! a slot and tells Linux with `rauc.slot=` on the kernel command line. Tests call it to
//! simulate a reboot. It boots the try-once slot once (putting it on trial), else the primary;
//! a slot still on trial at the next boot (never confirmed) is marked `Invalid` then, so the
//! kiosk is back on the primary.
//!
//! The update cycle: [`Ota::initiate_update`] writes into the slot not running, through a
//! partial file; `abort` removes it; `complete` syncs it, moves it in, records the firmware,
//! marks the slot `Unverified` and tries it once at the next boot. Booted into it,
//! [`Ota::mark_running_slot_valid`] makes it primary, and
//! [`Ota::mark_running_slot_invalid_and_reboot`] marks it `Invalid`, keeps the previous slot
//! primary and calls the reboot hook.

use std::path::{Path, PathBuf};

use embedded_svc::io::{ErrorKind, ErrorType};
use embedded_svc::ota::{FirmwareInfo, Ota, OtaUpdate, OtaUpdateFinished, Slot, SlotState};
use serde::{Deserialize, Serialize};

use super::durable::{self, FileError, PartFile};
use super::{bounded, BoxError, OtaSlots, RebootHook};

/// A directory-slot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DirSlotsError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "slot {slot} is running unconfirmed: confirm it (or roll it back) before the next update"
    )]
    RunningUnverified { slot: char },
    #[error("slot {slot} cannot be rolled back: the other slot {fallback} is {state:?}")]
    NoFallback {
        slot: char,
        fallback: char,
        state: SlotState,
    },
    #[error("the directory slots have no factory slot to reset to")]
    Unsupported,
    #[error("reboot: {0}")]
    Reboot(BoxError),
    #[error("slot {slot} marked invalid; rebooting into slot {next}")]
    Rebooting { slot: char, next: char },
}

impl embedded_svc::io::Error for DirSlotsError {
    fn kind(&self) -> ErrorKind {
        match self {
            DirSlotsError::File(e) => e.source.kind().into(),
            DirSlotsError::Corrupt { .. } => ErrorKind::InvalidData,
            DirSlotsError::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Other,
        }
    }
}

/// One of the two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SlotId {
    A,
    B,
}

impl SlotId {
    fn letter(self) -> char {
        match self {
            SlotId::A => 'a',
            SlotId::B => 'b',
        }
    }

    fn other(self) -> SlotId {
        match self {
            SlotId::A => SlotId::B,
            SlotId::B => SlotId::A,
        }
    }

    fn parse(s: &str) -> Option<SlotId> {
        match s.trim() {
            "a" => Some(SlotId::A),
            "b" => Some(SlotId::B),
            _ => None,
        }
    }
}

/// `boot.json`: what the boot stage and the updater agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BootState {
    /// Booted when there is nothing to try.
    primary: SlotId,
    /// Booted once at the next boot, then put on trial.
    try_once: Option<SlotId>,
    /// Booted on trial and not confirmed yet; invalid if still so at the next boot.
    on_trial: Option<SlotId>,
    a: SlotState,
    b: SlotState,
}

impl Default for BootState {
    fn default() -> Self {
        BootState {
            primary: SlotId::A,
            try_once: None,
            on_trial: None,
            a: SlotState::Factory,
            b: SlotState::Unknown,
        }
    }
}

impl BootState {
    fn state(&self, slot: SlotId) -> SlotState {
        match slot {
            SlotId::A => self.a,
            SlotId::B => self.b,
        }
    }

    fn set(&mut self, slot: SlotId, state: SlotState) {
        match slot {
            SlotId::A => self.a = state,
            SlotId::B => self.b = state,
        }
    }
}

/// `firmware.json`: what a slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FirmwareFile {
    version: String,
    #[serde(default)]
    released: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// Hex SHA-256 of the image, when the update announced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

impl FirmwareFile {
    fn of(info: &FirmwareInfo) -> FirmwareFile {
        FirmwareFile {
            version: info.version.to_string(),
            released: info.released.to_string(),
            description: info.description.as_ref().map(|d| d.to_string()),
            sha256: info.signature.as_ref().map(hex::encode),
        }
    }

    fn info(&self) -> FirmwareInfo {
        FirmwareInfo {
            version: bounded(&self.version),
            released: bounded(&self.released),
            description: self.description.as_deref().map(bounded),
            signature: self
                .sha256
                .as_deref()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|d| heapless::Vec::from_slice(&d).ok()),
            download_id: None,
        }
    }
}

/// Where the files are.
#[derive(Debug, Clone)]
struct Layout {
    root: PathBuf,
}

impl Layout {
    fn boot_state(&self) -> PathBuf {
        self.root.join("boot.json")
    }

    fn running(&self) -> PathBuf {
        self.root.join("running")
    }

    fn slots(&self) -> PathBuf {
        self.root.join("slots")
    }

    fn slot_dir(&self, slot: SlotId) -> PathBuf {
        self.slots().join(slot.letter().to_string())
    }

    fn image(&self, slot: SlotId) -> PathBuf {
        self.slot_dir(slot).join("image")
    }

    fn part(&self, slot: SlotId) -> PathBuf {
        durable::sibling(&self.image(slot), ".part")
    }

    fn firmware(&self, slot: SlotId) -> PathBuf {
        self.slot_dir(slot).join("firmware.json")
    }

    /// Makes the slot directories and a first `boot.json` when missing.
    fn ensure(&self) -> Result<(), DirSlotsError> {
        for slot in [SlotId::A, SlotId::B] {
            durable::create_dir(&self.slot_dir(slot))?;
        }
        let path = self.boot_state();
        if !path.exists() {
            self.store(&BootState::default())?;
        }
        Ok(())
    }

    fn load(&self) -> Result<BootState, DirSlotsError> {
        let path = self.boot_state();
        let bytes = durable::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| DirSlotsError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    fn store(&self, state: &BootState) -> Result<(), DirSlotsError> {
        let path = self.boot_state();
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| DirSlotsError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(durable::write_atomic(&path, &bytes)?)
    }

    fn running_slot(&self) -> Result<SlotId, DirSlotsError> {
        let path = self.running();
        let text = String::from_utf8_lossy(&durable::read(&path)?).into_owned();
        SlotId::parse(&text).ok_or_else(|| DirSlotsError::Corrupt {
            path,
            reason: format!("{:?} is not a slot (a or b)", text.trim()),
        })
    }

    fn firmware_of(&self, slot: SlotId) -> Result<Option<FirmwareInfo>, DirSlotsError> {
        let path = self.firmware(slot);
        let Some(bytes) = durable::read_if_present(&path)? else {
            return Ok(None);
        };
        let file: FirmwareFile =
            serde_json::from_slice(&bytes).map_err(|e| DirSlotsError::Corrupt {
                path,
                reason: e.to_string(),
            })?;
        Ok(Some(file.info()))
    }

    fn slot(&self, slot: SlotId, state: &BootState) -> Result<Slot, DirSlotsError> {
        let mut label = heapless::String::new();
        // A single letter always fits.
        let _ = label.push(slot.letter());
        Ok(Slot {
            label,
            state: state.state(slot),
            firmware: self.firmware_of(slot)?,
        })
    }
}

/// A/B slots in a directory, behind the [`Ota`] trait.
pub struct DirSlots {
    layout: Layout,
    reboot: RebootHook,
}

impl std::fmt::Debug for DirSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirSlots")
            .field("root", &self.layout.root)
            .finish_non_exhaustive()
    }
}

impl DirSlots {
    /// Opens the slots under `root` (making the layout on first use) for the system that
    /// [`DirSlots::boot`] recorded as booted. Partial images left by an interrupted update are
    /// removed. `reboot` is called by [`Ota::mark_running_slot_invalid_and_reboot`].
    pub fn open(root: impl Into<PathBuf>, reboot: RebootHook) -> Result<Self, DirSlotsError> {
        let layout = Layout { root: root.into() };
        layout.ensure()?;
        let running = layout.running_slot()?;
        for slot in [SlotId::A, SlotId::B] {
            let part = layout.part(slot);
            if part.exists() {
                tracing::warn!(path = %part.display(), "removing a partial image left by an interrupted update");
                durable::remove_if_present(&part)?;
            }
        }
        tracing::debug!(root = %layout.root.display(), running = %running.letter(), "directory slots open");
        Ok(DirSlots { layout, reboot })
    }

    /// The boot stage: chooses the slot to boot under `root` and records it in `running`.
    /// The try-once slot is booted once and put on trial; otherwise the primary slot. A slot
    /// still on trial and unconfirmed from the previous boot is marked `Invalid`.
    pub fn boot(root: &Path) -> Result<char, DirSlotsError> {
        let layout = Layout {
            root: root.to_path_buf(),
        };
        layout.ensure()?;
        let mut state = layout.load()?;
        if let Some(tried) = state.on_trial.take() {
            if state.state(tried) == SlotState::Unverified {
                state.set(tried, SlotState::Invalid);
                tracing::warn!(slot = %tried.letter(), "slot was tried and not confirmed: marked invalid, falling back");
            }
        }
        let chosen = match state.try_once.take() {
            Some(slot) if state.state(slot) != SlotState::Invalid => {
                state.on_trial = Some(slot);
                slot
            }
            _ => state.primary,
        };
        // The try is used up before the slot runs, so a hang or crash in it falls back.
        layout.store(&state)?;
        let running = layout.running();
        durable::write_atomic(&running, &[chosen.letter() as u8, b'\n'])?;
        tracing::info!(slot = %chosen.letter(), trial = state.on_trial == Some(chosen), "boot slot chosen");
        Ok(chosen.letter())
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    fn initiate(&mut self, firmware: Option<FirmwareInfo>) -> Result<DirUpdate<'_>, DirSlotsError> {
        let running = self.layout.running_slot()?;
        let state = self.layout.load()?;
        if state.state(running) == SlotState::Unverified {
            return Err(DirSlotsError::RunningUnverified {
                slot: running.letter(),
            });
        }
        let target = running.other();
        let part = PartFile::create(self.layout.part(target))?;
        tracing::info!(slot = %target.letter(), version = firmware.as_ref().map(|f| f.version.as_str()), "writing update into slot");
        Ok(DirUpdate {
            slots: self,
            target,
            firmware,
            part,
        })
    }

    /// Marks the running slot invalid and the other one primary, if the other one can boot.
    fn mark_running_invalid(&mut self) -> Result<(SlotId, SlotId), DirSlotsError> {
        let running = self.layout.running_slot()?;
        let mut state = self.layout.load()?;
        let fallback = running.other();
        let fallback_state = state.state(fallback);
        if !matches!(fallback_state, SlotState::Valid | SlotState::Factory) {
            return Err(DirSlotsError::NoFallback {
                slot: running.letter(),
                fallback: fallback.letter(),
                state: fallback_state,
            });
        }
        state.set(running, SlotState::Invalid);
        state.primary = fallback;
        state.try_once = None;
        state.on_trial = None;
        self.layout.store(&state)?;
        tracing::warn!(slot = %running.letter(), primary = %fallback.letter(), "running slot marked invalid");
        Ok((running, fallback))
    }
}

impl ErrorType for DirSlots {
    type Error = DirSlotsError;
}

impl Ota for DirSlots {
    type Update<'a>
        = DirUpdate<'a>
    where
        Self: 'a;

    /// The slot the next boot starts: the try-once slot, else the primary.
    fn get_boot_slot(&self) -> Result<Slot, Self::Error> {
        let state = self.layout.load()?;
        let slot = state.try_once.unwrap_or(state.primary);
        self.layout.slot(slot, &state)
    }

    fn get_running_slot(&self) -> Result<Slot, Self::Error> {
        let state = self.layout.load()?;
        self.layout.slot(self.layout.running_slot()?, &state)
    }

    fn get_update_slot(&self) -> Result<Slot, Self::Error> {
        let state = self.layout.load()?;
        self.layout
            .slot(self.layout.running_slot()?.other(), &state)
    }

    fn is_factory_reset_supported(&self) -> Result<bool, Self::Error> {
        Ok(false)
    }

    fn factory_reset(&mut self) -> Result<(), Self::Error> {
        Err(DirSlotsError::Unsupported)
    }

    fn initiate_update(&mut self) -> Result<Self::Update<'_>, Self::Error> {
        self.initiate(None)
    }

    fn mark_running_slot_valid(&mut self) -> Result<(), Self::Error> {
        let running = self.layout.running_slot()?;
        let mut state = self.layout.load()?;
        state.set(running, SlotState::Valid);
        state.primary = running;
        if state.on_trial == Some(running) {
            state.on_trial = None;
        }
        if state.try_once == Some(running) {
            state.try_once = None;
        }
        self.layout.store(&state)?;
        let version = self.layout.firmware_of(running)?.map(|f| f.version);
        tracing::info!(slot = %running.letter(), version = version.as_deref(), "running slot marked valid and primary");
        Ok(())
    }

    fn mark_running_slot_invalid_and_reboot(&mut self) -> Self::Error {
        let (slot, next) = match self.mark_running_invalid() {
            Ok(marked) => marked,
            Err(e) => return e,
        };
        match (self.reboot)() {
            Ok(()) => DirSlotsError::Rebooting {
                slot: slot.letter(),
                next: next.letter(),
            },
            Err(e) => DirSlotsError::Reboot(e),
        }
    }
}

impl OtaSlots for DirSlots {
    fn initiate_update_of(
        &mut self,
        firmware: &FirmwareInfo,
    ) -> Result<Self::Update<'_>, Self::Error> {
        self.initiate(Some(firmware.clone()))
    }

    fn free_space(&self) -> Result<u64, Self::Error> {
        Ok(durable::free_space(&self.layout.slots())?)
    }
}

/// An update being written into a directory slot.
#[derive(Debug)]
pub struct DirUpdate<'a> {
    slots: &'a mut DirSlots,
    target: SlotId,
    firmware: Option<FirmwareInfo>,
    part: PartFile,
}

impl ErrorType for DirUpdate<'_> {
    type Error = DirSlotsError;
}

impl embedded_svc::io::Write for DirUpdate<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(self.part.write(buf)?)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(self.part.flush()?)
    }
}

impl<'a> OtaUpdate for DirUpdate<'a> {
    type OtaUpdateFinished = DirUpdateFinished<'a>;

    /// Moves the image into its slot and records its firmware; the slot is `Unverified` and
    /// not booted until [`OtaUpdateFinished::activate`].
    fn finish(self) -> Result<Self::OtaUpdateFinished, Self::Error> {
        let layout = self.slots.layout.clone();
        let target = self.target;
        // The slot's old content is going: nothing may boot it while it changes.
        let mut state = layout.load()?;
        state.set(target, SlotState::Unknown);
        if state.try_once == Some(target) {
            state.try_once = None;
        }
        layout.store(&state)?;

        self.part.commit(&layout.image(target))?;
        let firmware_path = layout.firmware(target);
        match &self.firmware {
            Some(info) => {
                let bytes = serde_json::to_vec_pretty(&FirmwareFile::of(info)).map_err(|e| {
                    DirSlotsError::Corrupt {
                        path: firmware_path.clone(),
                        reason: e.to_string(),
                    }
                })?;
                durable::write_atomic(&firmware_path, &bytes)?;
            }
            None => durable::remove_if_present(&firmware_path)?,
        }
        state.set(target, SlotState::Unverified);
        layout.store(&state)?;
        tracing::info!(slot = %target.letter(), version = self.firmware.as_ref().map(|f| f.version.as_str()), "update written");
        Ok(DirUpdateFinished {
            slots: self.slots,
            target,
        })
    }

    fn complete(self) -> Result<(), Self::Error> {
        self.finish()?.activate()
    }

    fn abort(self) -> Result<(), Self::Error> {
        self.part.discard()?;
        tracing::info!(slot = %self.target.letter(), "update aborted; slot unchanged");
        Ok(())
    }
}

/// A written update, booted once from the next boot on when activated.
#[derive(Debug)]
pub struct DirUpdateFinished<'a> {
    slots: &'a mut DirSlots,
    target: SlotId,
}

impl ErrorType for DirUpdateFinished<'_> {
    type Error = DirSlotsError;
}

impl OtaUpdateFinished for DirUpdateFinished<'_> {
    fn activate(self) -> Result<(), Self::Error> {
        let layout = &self.slots.layout;
        let mut state = layout.load()?;
        state.try_once = Some(self.target);
        layout.store(&state)?;
        tracing::info!(slot = %self.target.letter(), "slot will be tried once at the next boot");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_svc::io::Write as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Slots under a fresh root, booted once, with a reboot hook that counts its calls.
    fn booted() -> (tempfile::TempDir, DirSlots, Arc<AtomicUsize>) {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DirSlots::boot(dir.path()).unwrap(), 'a');
        let reboots = Arc::new(AtomicUsize::new(0));
        let counter = reboots.clone();
        let hook: RebootHook = Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let slots = DirSlots::open(dir.path(), hook).unwrap();
        (dir, slots, reboots)
    }

    fn firmware(version: &str) -> FirmwareInfo {
        FirmwareInfo {
            version: bounded(version),
            released: bounded("2025-01-01"),
            description: Some(bounded("test image")),
            signature: None,
            download_id: None,
        }
    }

    fn write_update(slots: &mut DirSlots, version: &str, bytes: &[u8]) {
        let mut update = slots.initiate_update_of(&firmware(version)).unwrap();
        update.write_all(bytes).unwrap();
        update.complete().unwrap();
    }

    #[test]
    fn a_fresh_root_boots_the_factory_slot_and_needs_the_boot_stage() {
        let unbooted = tempfile::tempdir().unwrap();
        assert!(matches!(
            DirSlots::open(unbooted.path(), Box::new(|| Ok(()))),
            Err(DirSlotsError::File(_))
        ));
        let (_dir, slots, _) = booted();
        let running = slots.get_running_slot().unwrap();
        assert_eq!(running.label.as_str(), "a");
        assert_eq!(running.state, SlotState::Factory);
        assert_eq!(slots.get_update_slot().unwrap().label.as_str(), "b");
        assert!(!slots.is_factory_reset_supported().unwrap());
    }

    #[test]
    fn a_completed_update_is_tried_once_and_kept_when_confirmed() {
        let (dir, mut slots, _) = booted();
        write_update(&mut slots, "2.0", b"image two");
        let next = slots.get_boot_slot().unwrap();
        assert_eq!(next.label.as_str(), "b");
        assert_eq!(next.state, SlotState::Unverified);
        assert_eq!(next.firmware.unwrap().version.as_str(), "2.0");
        assert_eq!(
            std::fs::read(dir.path().join("slots/b/image")).unwrap(),
            b"image two"
        );

        assert_eq!(DirSlots::boot(dir.path()).unwrap(), 'b');
        assert_eq!(
            slots.get_running_slot().unwrap().state,
            SlotState::Unverified
        );
        // Not confirmed: no new update over the last good slot.
        assert!(matches!(
            slots.initiate_update(),
            Err(DirSlotsError::RunningUnverified { slot: 'b' })
        ));
        slots.mark_running_slot_valid().unwrap();
        assert_eq!(DirSlots::boot(dir.path()).unwrap(), 'b');
        assert_eq!(slots.get_running_slot().unwrap().state, SlotState::Valid);
    }

    #[test]
    fn an_unconfirmed_try_falls_back_at_the_next_boot() {
        let (dir, mut slots, _) = booted();
        write_update(&mut slots, "2.0", b"image two");
        assert_eq!(DirSlots::boot(dir.path()).unwrap(), 'b');
        assert_eq!(DirSlots::boot(dir.path()).unwrap(), 'a');
        assert_eq!(slots.get_update_slot().unwrap().state, SlotState::Invalid);
        assert_eq!(DirSlots::boot(dir.path()).unwrap(), 'a');
    }

    #[test]
    fn a_rolled_back_slot_is_invalid_and_the_reboot_hook_runs() {
        let (dir, mut slots, reboots) = booted();
        write_update(&mut slots, "2.0", b"image two");
        DirSlots::boot(dir.path()).unwrap();
        let e = slots.mark_running_slot_invalid_and_reboot();
        assert!(matches!(
            e,
            DirSlotsError::Rebooting {
                slot: 'b',
                next: 'a'
            }
        ));
        assert_eq!(reboots.load(Ordering::SeqCst), 1);
        assert_eq!(DirSlots::boot(dir.path()).unwrap(), 'a');
        assert_eq!(slots.get_update_slot().unwrap().state, SlotState::Invalid);

        // A failing reboot hook's error comes back.
        write_update(&mut slots, "2.1", b"image two again");
        DirSlots::boot(dir.path()).unwrap();
        let mut failing = DirSlots::open(
            dir.path(),
            Box::new(|| Err("logind refused the reboot".into())),
        )
        .unwrap();
        let e = failing.mark_running_slot_invalid_and_reboot();
        assert_eq!(e.to_string(), "reboot: logind refused the reboot");
    }

    #[test]
    fn a_slot_without_a_bootable_fallback_is_not_rolled_back() {
        let (_dir, mut slots, reboots) = booted();
        // Running the factory slot; the other one was never written.
        let e = slots.mark_running_slot_invalid_and_reboot();
        assert!(matches!(
            e,
            DirSlotsError::NoFallback {
                slot: 'a',
                fallback: 'b',
                state: SlotState::Unknown
            }
        ));
        assert_eq!(reboots.load(Ordering::SeqCst), 0);
        assert_eq!(slots.get_running_slot().unwrap().state, SlotState::Factory);
    }

    #[test]
    fn an_aborted_or_abandoned_update_leaves_the_slots_as_they_were() {
        let (dir, mut slots, _) = booted();
        let before = std::fs::read(dir.path().join("boot.json")).unwrap();

        let mut update = slots.initiate_update().unwrap();
        update.write_all(b"half an ima").unwrap();
        assert!(dir.path().join("slots/b/image.part").exists());
        update.abort().unwrap();
        assert!(!dir.path().join("slots/b/image.part").exists());

        let mut update = slots.initiate_update().unwrap();
        update.write_all(b"half an ima").unwrap();
        drop(update);
        assert!(!dir.path().join("slots/b/image.part").exists());

        assert_eq!(std::fs::read(dir.path().join("boot.json")).unwrap(), before);
        assert!(!dir.path().join("slots/b/image").exists());
    }

    #[test]
    fn a_finished_update_boots_only_once_activated() {
        let (dir, mut slots, _) = booted();
        let mut update = slots.initiate_update_of(&firmware("3.0")).unwrap();
        update.write_all(b"image three").unwrap();
        // Finished, never activated.
        let _finished = update.finish().unwrap();
        assert_eq!(slots.get_boot_slot().unwrap().label.as_str(), "a");
        assert_eq!(DirSlots::boot(dir.path()).unwrap(), 'a');
        // Written but never tried: not marked invalid by the boot.
        assert_eq!(
            slots.get_update_slot().unwrap().state,
            SlotState::Unverified
        );
    }
}
