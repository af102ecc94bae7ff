//! The real `kiosk-media` binary on a test kiosk's private bus, with a configuration the test
//! writes (test pattern, counting sink, test tone: only the camera and microphone are fake).

use std::path::PathBuf;

use crate::kiosk::{Bus, ServiceProcess};

/// A kiosk-media process.
#[derive(Debug)]
pub struct KioskMedia {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub bus: String,
    pub process: ServiceProcess,
}

impl KioskMedia {
    /// Writes `settings` (the TOML configuration) for a kiosk-media on `bus`; `start` runs it.
    pub fn new(bus: &Bus, settings: &str) -> KioskMedia {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("media.toml");
        std::fs::write(&config, settings).unwrap();
        KioskMedia {
            dir,
            config,
            bus: bus.address.clone(),
            process: ServiceProcess::default(),
        }
    }

    pub fn start(&mut self) {
        self.process
            .start("kiosk-media", &self.config, &self.bus, "info");
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// SIGKILL: the process vanishes mid-call, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.process.stop()
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }
}
