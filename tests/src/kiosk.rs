//! The kiosk side of the end-to-end tests: a private D-Bus daemon, the real `kiosk-sync`
//! binary configured against a test cloud, and `kioskctl`.
//!
//! The binaries are the ones `cargo test --workspace`/`cargo nextest run --workspace` builds
//! next to the test executables (`target/debug/`); a run of this package alone needs
//! `cargo build -p kiosk-sync -p kioskctl` first, and says so.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use kiosk_bus::testing::PrivateBus as Bus;
use kiosk_bus::{Sync1Proxy, SyncStatus};

/// A workspace binary built next to the running test.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap()
    } else {
        dir
    };
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run the workspace's tests, or `cargo build -p {name}` first",
        bin.display()
    );
    bin
}

/// What a kiosk-sync needs from the cloud to start.
#[derive(Debug, Clone)]
pub struct KioskFiles {
    pub claim_cert_pem: String,
    pub claim_key_pem: String,
    pub server_ca_pem: String,
    pub device_port: u16,
    pub provision_port: u16,
}

/// A kiosk service's process (`kiosk-sync`, `kiosk-media`) run with `--config FILE --bus ADDR`,
/// its standard error kept for failure messages; killed on drop.
#[derive(Debug, Default)]
pub struct ServiceProcess {
    child: Option<Child>,
    /// Everything it logged.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts workspace binary `name` with `--config config --bus bus` and `RUST_LOG=rust_log`.
    pub fn start(&mut self, name: &str, config: &Path, bus: &str, rust_log: &str) {
        let mut child = Command::new(workspace_bin(name))
            .arg("--config")
            .arg(config)
            .arg("--bus")
            .arg(bus)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
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

    /// SIGKILL: no chance to clean up (as a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit (SIGKILL after 10 s).
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

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A kiosk-sync process with its own state directory.
#[derive(Debug)]
pub struct KioskSync {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub bus: String,
    pub process: ServiceProcess,
}

impl KioskSync {
    /// Writes the configuration; `start` runs it. `ota` is the body of the `[ota]` section.
    pub fn new(files: &KioskFiles, bus: &Bus, ota: &str) -> KioskSync {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        let write = |name: &str, text: &str| {
            let p = etc.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ca = write("cloud-ca.pem", &files.server_ca_pem);
        let cert = write("claim.pem", &files.claim_cert_pem);
        let key = write("claim.key", &files.claim_key_pem);
        let config = write(
            "sync.toml",
            &format!(
                r#"state_dir = "{state}"
board = "qemu"
serial = "QEMU-E2E"
firmware = "2026.11.0"

[cloud]
host = "localhost"
port = {port}
provision_port = {pport}
ca = "{ca}"

[claim]
cert = "{cert}"
key = "{key}"

[ota]
{ota}
"#,
                state = dir.path().join("state").display(),
                port = files.device_port,
                pport = files.provision_port,
                ca = ca.display(),
                cert = cert.display(),
                key = key.display(),
            ),
        );
        KioskSync {
            dir,
            config,
            bus: bus.address.clone(),
            process: ServiceProcess::default(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn start(&mut self) {
        self.process
            .start("kiosk-sync", &self.config, &self.bus, "info,rumqttc=warn");
    }

    /// SIGKILL: no chance to clean up.
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

    /// Runs `kioskctl` against this kiosk's bus.
    pub fn kioskctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(workspace_bin("kioskctl"))
            .arg("--bus")
            .arg(&self.bus)
            .args(args)
            .output()
            .unwrap()
    }
}

/// Polls kiosk-sync's status until `pred` holds (or panics after `limit`, with its log).
pub async fn wait_status(
    kiosk: &KioskSync,
    sync: &Sync1Proxy<'_>,
    limit: Duration,
    what: &str,
    pred: impl Fn(&SyncStatus) -> bool,
) -> SyncStatus {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Ok(s) = sync.status().await {
            if pred(&s) {
                return s;
            }
            last = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "kiosk-sync never reached: {what}\nlast status: {last:?}\nlog:\n{}",
        kiosk.log_text()
    );
}

/// Stand-ins for systemd's and logind's D-Bus methods on the private bus (a container has
/// neither), recording what kiosk-sync asks of them.
#[derive(Debug, Clone, Default)]
pub struct SystemCalls {
    pub calls: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug)]
struct Systemd(SystemCalls);

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Systemd {
    fn restart_unit(&self, name: String, mode: String) -> zvariant::OwnedObjectPath {
        self.0
            .calls
            .lock()
            .unwrap()
            .push(format!("RestartUnit {name} {mode}"));
        zvariant::OwnedObjectPath::try_from("/org/freedesktop/systemd1/job/7").unwrap()
    }
}

#[derive(Debug)]
struct Login(SystemCalls);

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl Login {
    fn reboot(&self, interactive: bool) {
        self.0
            .calls
            .lock()
            .unwrap()
            .push(format!("Reboot {interactive}"));
    }
}

impl SystemCalls {
    /// Serves both on `bus`; keep the connections alive as long as needed.
    pub async fn serve(&self, bus: &Bus) -> Vec<zbus::Connection> {
        let systemd = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .name("org.freedesktop.systemd1")
            .unwrap()
            .serve_at("/org/freedesktop/systemd1", Systemd(self.clone()))
            .unwrap()
            .build()
            .await
            .unwrap();
        let login = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .name("org.freedesktop.login1")
            .unwrap()
            .serve_at("/org/freedesktop/login1", Login(self.clone()))
            .unwrap()
            .build()
            .await
            .unwrap();
        vec![systemd, login]
    }

    pub fn seen(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

/// Reads a file, for assertions.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
