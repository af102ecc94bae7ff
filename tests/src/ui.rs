//! The real `kiosk-ui` binary on a test kiosk's private bus, serving the touch screen on a free
//! loopback port.

use std::path::PathBuf;

use crate::kiosk::{Bus, ServiceProcess};

/// A kiosk-ui process.
#[derive(Debug)]
pub struct KioskUi {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub bus: String,
    /// The page's address, `http://127.0.0.1:<port>`.
    pub url: String,
    pub process: ServiceProcess,
}

impl KioskUi {
    /// Writes the configuration of a kiosk-ui for `board` (display data from the repository's
    /// `hardware/boards`) on `bus`; `start` runs it.
    pub fn new(bus: &Bus, board: &str) -> KioskUi {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ui.toml");
        let port = crate::free_ports::<1>()[0];
        let boards = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hardware/boards");
        std::fs::write(
            &config,
            format!(
                "version = 1\nlisten = \"127.0.0.1:{port}\"\nboard = \"{board}\"\nboards_dir = \"{}\"\ndefault_language = \"en\"\ndefault_country = \"FR\"\n",
                boards.display()
            ),
        )
        .unwrap();
        KioskUi {
            dir,
            config,
            bus: bus.address.clone(),
            url: format!("http://127.0.0.1:{port}"),
            process: ServiceProcess::default(),
        }
    }

    pub fn start(&mut self) {
        self.process
            .start("kiosk-ui", &self.config, &self.bus, "info");
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.process.stop()
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }
}
