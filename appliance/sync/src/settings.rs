//! kiosk-sync's configuration file (`/etc/kioskcall/sync.toml`).
//!
//! Every field is checked when the file is read, and a bad file is refused with the field and
//! the reason, before anything starts. Unknown keys are errors (a typo must not silently turn a
//! setting off).
//!
//! ```toml
//! state_dir = "/var/lib/kioskcall/sync"   # key, certificates, outbox, config in force
//! board = "rpi5"                          # board profile name (hardware/boards/<board>)
//! # serial = "..."                        # default: /etc/machine-id
//! # firmware = "2026.11.0"                # default: VERSION_ID of /etc/os-release
//!
//! [cloud]
//! host = "fleet.example.com"
//! port = 8883                             # device listener
//! provision_port = 8885                   # claim-certificate listener
//! ca = "/etc/kioskcall/cloud-ca.pem"      # CA of the broker's server certificate
//!
//! [claim]                                 # the batch claim identity baked into the image
//! cert = "/etc/kioskcall/claim.pem"
//! key = "/etc/kioskcall/claim.key"
//! # enrollment_token_file = "/etc/kioskcall/enrollment-token"
//!
//! [telemetry]
//! # thermal_dir = "/sys/class/thermal"
//! # default_interval_s = 60              # until a desired config sets telemetry_interval_s
//!
//! [ota]
//! # backend = "auto"                      # auto | rauc | dir | none
//! # slots_dir = "/var/lib/kioskcall/slots"
//! # health_deadline_s = 600
//! # max_bytes = 2147483648                # largest update accepted
//! # ca = "/etc/kioskcall/update-ca.pem"  # a private update server's CA, besides public roots
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub board: String,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub firmware: Option<String>,
    pub cloud: Cloud,
    #[serde(default)]
    pub claim: Option<Claim>,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub ota: OtaSettings,
}

/// Where the cloud's broker is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cloud {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_provision_port")]
    pub provision_port: u16,
    pub ca: PathBuf,
}

fn default_port() -> u16 {
    8883
}

fn default_provision_port() -> u16 {
    8885
}

/// The claim identity (batch certificate) used to enroll.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub enrollment_token_file: Option<PathBuf>,
}

/// Telemetry sources.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    #[serde(default = "default_thermal")]
    pub thermal_dir: PathBuf,
    /// Seconds between telemetry messages until a desired config says otherwise.
    #[serde(default = "default_interval")]
    pub default_interval_s: u32,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            thermal_dir: default_thermal(),
            default_interval_s: default_interval(),
        }
    }
}

fn default_thermal() -> PathBuf {
    PathBuf::from("/sys/class/thermal")
}

fn default_interval() -> u32 {
    60
}

/// Which update backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtaBackend {
    /// RAUC when its D-Bus service is present, else the directory slots.
    Auto,
    Rauc,
    Dir,
    /// Updates are refused (development machines).
    None,
}

/// Updates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtaSettings {
    #[serde(default = "default_backend")]
    pub backend: OtaBackend,
    #[serde(default = "default_slots")]
    pub slots_dir: PathBuf,
    /// After booting a new slot: how long it has to reach the cloud before it is rolled back.
    #[serde(default = "default_health")]
    pub health_deadline_s: u64,
    /// Largest update accepted, in bytes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// A CA trusted for update downloads besides the public roots (a private update server).
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

impl Default for OtaSettings {
    fn default() -> Self {
        OtaSettings {
            backend: default_backend(),
            slots_dir: default_slots(),
            health_deadline_s: default_health(),
            max_bytes: default_max_bytes(),
            ca: None,
        }
    }
}

fn default_backend() -> OtaBackend {
    OtaBackend::Auto
}

fn default_slots() -> PathBuf {
    PathBuf::from("/var/lib/kioskcall/slots")
}

fn default_health() -> u64 {
    600
}

fn default_max_bytes() -> u64 {
    2 << 30
}

impl Settings {
    /// Reads and checks the file.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Settings::parse(&text, &path.display().to_string())
    }

    /// Parses and checks `text` (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Settings, SettingsError> {
        let invalid = |message: String| SettingsError::Invalid {
            path: origin.to_string(),
            message,
        };
        let s: Settings = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if s.board.trim().is_empty() {
            return Err(invalid("board: name the board profile".into()));
        }
        if s.cloud.host.trim().is_empty() {
            return Err(invalid("cloud.host: name the cloud's broker".into()));
        }
        if s.cloud.port == 0 || s.cloud.provision_port == 0 {
            return Err(invalid(
                "cloud.port and cloud.provision_port: 1 to 65535".into(),
            ));
        }
        if !s.state_dir.is_absolute() {
            return Err(invalid("state_dir: must be an absolute path".into()));
        }
        let range = kiosk_protocol::config::TELEMETRY_INTERVAL;
        if !range.contains(&s.telemetry.default_interval_s) {
            return Err(invalid(format!(
                "telemetry.default_interval_s: {} to {} seconds",
                range.start(),
                range.end()
            )));
        }
        if s.ota.health_deadline_s < 30 {
            return Err(invalid("ota.health_deadline_s: at least 30 seconds".into()));
        }
        Ok(s)
    }

    /// The hardware serial: the configured one, else one derived from `/etc/machine-id`
    /// (hashed: the machine id itself is meant to stay on the machine).
    pub fn serial(&self) -> String {
        self.serial.clone().unwrap_or_else(|| {
            use sha2::Digest as _;
            match std::fs::read_to_string("/etc/machine-id") {
                Ok(id) => {
                    let digest = sha2::Sha256::digest(format!("kioskcall:{}", id.trim()));
                    format!("mid-{}", hex::encode(&digest[..8]))
                }
                Err(_) => "unknown".into(),
            }
        })
    }

    /// The firmware version: the configured one, else `VERSION_ID` of `/etc/os-release`.
    pub fn firmware(&self) -> String {
        if let Some(f) = &self.firmware {
            return f.clone();
        }
        std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("VERSION_ID="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "unknown".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
state_dir = "/var/lib/kioskcall/sync"
board = "qemu"
[cloud]
host = "localhost"
ca = "/etc/kioskcall/cloud-ca.pem"
[claim]
cert = "/etc/kioskcall/claim.pem"
key = "/etc/kioskcall/claim.key"
"#;

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let s = Settings::parse(GOOD, "sync.toml").unwrap();
        assert_eq!((s.cloud.port, s.cloud.provision_port), (8883, 8885));
        assert_eq!(s.ota.backend, OtaBackend::Auto);
        assert_eq!(s.telemetry.default_interval_s, 60);
        assert!(s.claim.is_some());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let typo = GOOD.replace("[claim]", "[claim]\nenrolment_token_file = \"/x\"");
        let e = Settings::parse(&typo, "sync.toml").unwrap_err().to_string();
        assert!(e.contains("enrolment_token_file"), "{e}");
        let relative = GOOD.replace("/var/lib/kioskcall/sync", "state");
        let e = Settings::parse(&relative, "sync.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("state_dir"), "{e}");
        let e = Settings::parse(&GOOD.replace("qemu", " "), "s").unwrap_err();
        assert!(e.to_string().contains("board"));
        let e = Settings::parse(&format!("{GOOD}\n[ota]\nbackend = \"usb\""), "s").unwrap_err();
        assert!(e.to_string().contains("backend"), "{e}");
    }
}
