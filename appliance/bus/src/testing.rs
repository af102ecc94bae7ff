//! A private `dbus-daemon` for tests and development (feature `testing`).
//!
//! Production uses the system bus with a policy file per service; tests start a bus of their
//! own, with a permissive policy, on a socket in a temporary directory, and stop it on drop.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};

/// A running private bus.
#[derive(Debug)]
pub struct PrivateBus {
    daemon: Child,
    /// The D-Bus address to connect to (`unix:path=...,guid=...`).
    pub address: String,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    /// Starts `dbus-daemon` (from the `dbus` package) and waits for its address.
    pub fn start() -> std::io::Result<PrivateBus> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.path().join("bus").display()
            ),
        )?;
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            // It complains that it may not raise its fd limit; nothing else goes there.
            .stderr(Stdio::null())
            .spawn()?;
        let mut address = String::new();
        if let Some(out) = daemon.stdout.take() {
            std::io::BufReader::new(out).read_line(&mut address)?;
        }
        let address = address.trim().to_string();
        if address.is_empty() {
            let _ = daemon.kill();
            return Err(std::io::Error::other("dbus-daemon printed no address"));
        }
        Ok(PrivateBus {
            daemon,
            address,
            _dir: dir,
        })
    }

    /// A new connection to this bus.
    pub async fn connect(&self) -> zbus::Result<zbus::Connection> {
        zbus::connection::Builder::address(self.address.as_str())?
            .build()
            .await
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
