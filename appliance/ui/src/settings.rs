//! kiosk-ui's configuration file (`/etc/kioskcall/ui.toml`).
//!
//! Every field is checked when the file is read, before any socket is opened; a bad file is
//! refused with the field and the reason. Unknown keys are errors.
//!
//! ```toml
//! version = 1
//! listen = "127.0.0.1:8090"            # loopback only: the kiosk browser is on this machine
//! board = "rpi4"                       # board name; "development" for the built-in display
//! boards_dir = "/etc/kioskcall/boards" # where board data lives (<board>/display.toml)
//! default_language = "en"              # before the cloud's config names one: en, fr or ar
//! default_country = "US"               # the phone keypad's country when the site's time
//!                                      # zone does not say (ISO 3166 alpha-2)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::phone;
use crate::text::Language;

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

/// The whole file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A loopback address (checked).
    pub listen: SocketAddr,
    pub board: String,
    pub boards_dir: PathBuf,
    pub default_language: Language,
    /// ISO 3166 alpha-2, one of [`phone::COUNTRIES`].
    pub default_country: &'static str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "one")]
    version: u32,
    #[serde(default = "listen")]
    listen: String,
    #[serde(default = "development")]
    board: String,
    #[serde(default = "boards_dir")]
    boards_dir: PathBuf,
    #[serde(default = "english")]
    default_language: String,
    #[serde(default = "us")]
    default_country: String,
}

fn one() -> u32 {
    1
}
fn listen() -> String {
    DEFAULT_LISTEN.into()
}
fn development() -> String {
    "development".into()
}
fn boards_dir() -> PathBuf {
    PathBuf::from(DEFAULT_BOARDS_DIR)
}
fn english() -> String {
    "en".into()
}
fn us() -> String {
    "US".into()
}

/// Where the UI listens unless the file says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";
/// Where board data lives unless the file says otherwise.
pub const DEFAULT_BOARDS_DIR: &str = "/etc/kioskcall/boards";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            board: development(),
            boards_dir: boards_dir(),
            default_language: Language::En,
            default_country: "US",
        }
    }
}

impl Settings {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Settings::parse(&text).map_err(|message| SettingsError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Checks a file's text; the error names the field and says why.
    pub fn parse(text: &str) -> Result<Settings, String> {
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        if f.version != 1 {
            return Err(format!("version: {} is not known; 1 is", f.version));
        }
        let listen: SocketAddr = f.listen.parse().map_err(|_| {
            format!(
                "listen: {:?} is not an address and port such as {DEFAULT_LISTEN}",
                f.listen
            )
        })?;
        if !listen.ip().is_loopback() {
            return Err(format!(
                "listen: {listen} is not a loopback address; the UI serves the kiosk's own \
                 browser only (127.0.0.1 or ::1)"
            ));
        }
        if !kiosk_protocol::config::is_board_name(&f.board) {
            return Err(format!(
                "board: {:?}: lower-case letters, digits, - and _ only, at most 64 \
                 (a directory of the boards dir, named as the cloud names board profiles)",
                f.board
            ));
        }
        let default_language = Language::parse(&f.default_language).ok_or_else(|| {
            format!(
                "default_language: {:?}: one of {}",
                f.default_language,
                Language::ALL.map(|l| l.tag()).join(", ")
            )
        })?;
        let default_country = phone::country(&f.default_country)
            .map(|c| c.iso)
            .ok_or_else(|| {
                format!(
                    "default_country: {:?}: an ISO 3166 alpha-2 code of a known country",
                    f.default_country
                )
            })?;
        Ok(Settings {
            listen,
            board: f.board,
            boards_dir: f.boards_dir,
            default_language,
            default_country,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_full_file() {
        assert_eq!(Settings::parse("").unwrap(), Settings::default());
        let s = Settings::parse(
            r#"
            version = 1
            listen = "[::1]:9000"
            board = "rpi4"
            boards_dir = "/opt/boards"
            default_language = "ar"
            default_country = "FR"
            "#,
        )
        .unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.board, "rpi4");
        assert_eq!(s.boards_dir, PathBuf::from("/opt/boards"));
        assert_eq!(s.default_language, Language::Ar);
        assert_eq!(s.default_country, "FR");
    }

    #[test]
    fn bad_values_name_their_field() {
        for (text, field) in [
            ("version = 2", "version"),
            ("listen = \"0.0.0.0:8090\"", "loopback"),
            ("listen = \"192.168.1.2:80\"", "loopback"),
            ("listen = \"localhost\"", "listen"),
            ("board = \"../x\"", "board"),
            ("board = \"RPi4\"", "lower-case"),
            ("board = \"\"", "board"),
            ("default_language = \"xx\"", "default_language"),
            ("default_country = \"ZZ\"", "default_country"),
            ("colour = \"red\"", "colour"),
        ] {
            let e = Settings::parse(text).unwrap_err();
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
