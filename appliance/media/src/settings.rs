//! kiosk-media's configuration file (`/etc/kioskcall/media.toml`).
//!
//! Every field is checked when the file is read, before any device or socket is opened; a bad
//! file is refused with the field and the reason. Unknown keys are errors.
//!
//! ```toml
//! version = 1
//! board = "rpi5"                       # board profile name; "development" for the built-in one
//! boards_dir = "/etc/kioskcall/boards" # where board profiles live
//! camera = "auto"                      # auto | test-pattern | /dev/videoN
//! remote_video = "board"               # board (the profile's sink) | count | fakesink
//! preview = "none"                     # none | a sink element, e.g. "waylandsink"
//! audio_input = "board"                # board | test-tone | none
//! audio_output = "auto"                # auto | fakesink
//! latency_ms = 50                      # jitter buffer latency
//! stamp = false                        # write a timestamp into each sent frame (benchmarks)
//! camera_retry_s = 5                   # after a camera failure, try it again this often
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Which camera to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSetting {
    /// The first usable V4L2 device, or the test pattern (said plainly) when there is none.
    Auto,
    /// Always the test pattern.
    TestPattern,
    /// This device.
    Device(PathBuf),
}

/// Where the agent's video goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteVideo {
    /// The board profile's video sink.
    Board,
    /// A counting appsink (tests, benchmarks).
    Count,
    Fakesink,
}

/// Where the kiosk's microphone audio comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioInputSetting {
    Board,
    TestTone,
    None,
}

/// Where the agent's audio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioOutput {
    Auto,
    Fakesink,
}

/// The whole file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub board: String,
    pub boards_dir: PathBuf,
    pub camera: CameraSetting,
    pub remote_video: RemoteVideo,
    /// A sink element description for the local preview, or `None`.
    pub preview: Option<String>,
    pub audio_input: AudioInputSetting,
    pub audio_output: AudioOutput,
    pub latency_ms: u32,
    pub stamp: bool,
    pub camera_retry: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "one")]
    version: u32,
    #[serde(default = "development")]
    board: String,
    #[serde(default = "boards_dir")]
    boards_dir: PathBuf,
    #[serde(default = "auto")]
    camera: String,
    #[serde(default = "board_word")]
    remote_video: String,
    #[serde(default = "none")]
    preview: String,
    #[serde(default = "board_word")]
    audio_input: String,
    #[serde(default = "auto")]
    audio_output: String,
    #[serde(default = "latency")]
    latency_ms: u32,
    #[serde(default)]
    stamp: bool,
    #[serde(default = "retry")]
    camera_retry_s: u32,
}

fn one() -> u32 {
    1
}
fn development() -> String {
    "development".into()
}
fn boards_dir() -> PathBuf {
    PathBuf::from(DEFAULT_BOARDS_DIR)
}
fn auto() -> String {
    "auto".into()
}
fn board_word() -> String {
    "board".into()
}
fn none() -> String {
    "none".into()
}
fn latency() -> u32 {
    DEFAULT_LATENCY_MS
}
fn retry() -> u32 {
    5
}

/// Where board profiles live unless the file says otherwise.
pub const DEFAULT_BOARDS_DIR: &str = "/etc/kioskcall/boards";
/// Jitter-buffer latency for interactive calls (webrtcbin's own default is 200 ms).
pub const DEFAULT_LATENCY_MS: u32 = 50;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            board: development(),
            boards_dir: boards_dir(),
            camera: CameraSetting::Auto,
            remote_video: RemoteVideo::Board,
            preview: None,
            audio_input: AudioInputSetting::Board,
            audio_output: AudioOutput::Auto,
            latency_ms: DEFAULT_LATENCY_MS,
            stamp: false,
            camera_retry: Duration::from_secs(5),
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
        if !kiosk_protocol::config::is_board_name(&f.board) {
            return Err(format!(
                "board: {:?}: lower-case letters, digits, - and _ only, at most 64 \
                 (a directory of the boards dir, named as the cloud names board profiles)",
                f.board
            ));
        }
        let camera = match f.camera.as_str() {
            "auto" => CameraSetting::Auto,
            "test-pattern" => CameraSetting::TestPattern,
            p if p.starts_with("/dev/") && !p.contains(char::is_whitespace) => {
                CameraSetting::Device(PathBuf::from(p))
            }
            other => {
                return Err(format!(
                    "camera: {other:?}: auto, test-pattern or a /dev/ device path"
                ))
            }
        };
        let remote_video = match f.remote_video.as_str() {
            "board" => RemoteVideo::Board,
            "count" => RemoteVideo::Count,
            "fakesink" => RemoteVideo::Fakesink,
            other => return Err(format!("remote_video: {other:?}: board, count or fakesink")),
        };
        let preview = match f.preview.trim() {
            "none" => None,
            "" => return Err("preview: none or a sink element".into()),
            p if p.contains('!') => {
                return Err(format!("preview: {p:?}: one sink element, not a pipeline"))
            }
            p => Some(p.to_string()),
        };
        let audio_input = match f.audio_input.as_str() {
            "board" => AudioInputSetting::Board,
            "test-tone" => AudioInputSetting::TestTone,
            "none" => AudioInputSetting::None,
            other => return Err(format!("audio_input: {other:?}: board, test-tone or none")),
        };
        let audio_output = match f.audio_output.as_str() {
            "auto" => AudioOutput::Auto,
            "fakesink" => AudioOutput::Fakesink,
            other => return Err(format!("audio_output: {other:?}: auto or fakesink")),
        };
        if !(10..=2000).contains(&f.latency_ms) {
            return Err(format!("latency_ms: {}: between 10 and 2000", f.latency_ms));
        }
        if !(1..=600).contains(&f.camera_retry_s) {
            return Err(format!(
                "camera_retry_s: {}: between 1 and 600",
                f.camera_retry_s
            ));
        }
        Ok(Settings {
            board: f.board,
            boards_dir: f.boards_dir,
            camera,
            remote_video,
            preview,
            audio_input,
            audio_output,
            latency_ms: f.latency_ms,
            stamp: f.stamp,
            camera_retry: Duration::from_secs(u64::from(f.camera_retry_s)),
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
            board = "rpi5"
            boards_dir = "/opt/boards"
            camera = "/dev/video2"
            remote_video = "count"
            preview = "fakesink"
            audio_input = "test-tone"
            audio_output = "fakesink"
            latency_ms = 80
            stamp = true
            camera_retry_s = 2
            "#,
        )
        .unwrap();
        assert_eq!(s.camera, CameraSetting::Device("/dev/video2".into()));
        assert_eq!(s.remote_video, RemoteVideo::Count);
        assert_eq!(s.preview.as_deref(), Some("fakesink"));
        assert_eq!(s.audio_input, AudioInputSetting::TestTone);
        assert_eq!(s.audio_output, AudioOutput::Fakesink);
        assert_eq!((s.latency_ms, s.stamp), (80, true));
        assert_eq!(s.camera_retry, Duration::from_secs(2));
    }

    #[test]
    fn bad_values_name_their_field() {
        for (text, field) in [
            ("version = 2", "version"),
            ("board = \"../x\"", "board"),
            ("board = \"RPi4\"", "lower-case"),
            ("board = \"\"", "board"),
            ("camera = \"webcam\"", "camera"),
            ("remote_video = \"screen\"", "remote_video"),
            ("preview = \"\"", "preview"),
            ("preview = \"videoconvert ! xvimagesink\"", "preview"),
            ("audio_input = \"mic\"", "audio_input"),
            ("audio_output = \"hdmi\"", "audio_output"),
            ("latency_ms = 0", "latency_ms"),
            ("latency_ms = 5000", "latency_ms"),
            ("camera_retry_s = 0", "camera_retry_s"),
            ("colour = \"red\"", "colour"),
        ] {
            let e = Settings::parse(text).unwrap_err();
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
