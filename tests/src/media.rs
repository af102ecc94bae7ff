//! The real `kiosk-media` binary on a test kiosk's private bus, with a configuration the test
//! writes (test pattern, counting sink, test tone: only the camera and microphone are fake).

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::kiosk::{workspace_bin, Bus};

/// A kiosk-media process.
#[derive(Debug)]
pub struct KioskMedia {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub bus: String,
    child: Option<Child>,
    /// Everything it logged, for failure messages.
    pub log: Arc<Mutex<Vec<String>>>,
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
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn start(&mut self) {
        let mut child = Command::new(workspace_bin("kiosk-media"))
            .arg("--config")
            .arg(&self.config)
            .arg("--bus")
            .arg(&self.bus)
            .env("RUST_LOG", "info")
            .env("GST_DEBUG", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                log.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the process vanishes mid-call, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for KioskMedia {
    fn drop(&mut self) {
        self.kill();
    }
}
