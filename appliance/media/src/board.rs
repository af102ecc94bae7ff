//! Board media profiles: what a kind of kiosk hardware wants from kiosk-media.
//!
//! Why: the same firmware runs on a Raspberry Pi, a Rockchip board, an i.MX 8M Plus, a Jetson,
//! a PC and the QEMU development image. What differs (which encoders to try first, where audio
//! comes from, which sink renders the remote video, the preferred capture size) is data, kept in
//! `hardware/boards/<board>/media.toml` and read here before any device is opened.
//!
//! Main types: [`BoardProfile`] (the validated profile), [`VideoPrefs`] (size, rate and bitrate
//! ceiling of the outgoing video), [`AudioInput`] (the microphone source) and [`CameraSettings`]
//! (an explicit capture device, whether the test pattern is acceptable). Errors are
//! [`BoardError`], each naming the file and, for a bad value, the key.
//!
//! Layers: [`BoardProfile::development`] holds the built-in defaults; a board file overrides
//! any of its keys ([`BoardProfile::load`]). Unknown keys are errors, so a typo cannot silently
//! turn a setting off. What the cloud sets is a later layer, applied by the service.
//!
//! ```toml
//! version = 1                                   # required; the only version so far
//! encoders = ["v4l2h264enc", "x264enc", "openh264enc", "vp8enc"]   # tried in order
//! video_sink = "waylandsink sync=false"         # gst-launch fragment rendering remote video
//!
//! [video]
//! width = 1280                                  # even, 160..=1920
//! height = 720                                  # even, 120..=1080
//! fps = 30                                      # 1..=60
//! max_kbps = 3000                               # outgoing video ceiling, 100..=20000
//!
//! [audio]
//! source = "alsa"                               # alsa | pulse | pipewire | test-tone | none
//! device = "default"                            # alsa only
//!
//! [camera]
//! # device = "/dev/video0"                      # default: first capture node found
//! allow_test_pattern = false                    # true on development boards only
//! ```
//!
//! Limits: only the media keys of the board profile live here; LEDs, display and udev data are
//! read by the services that need them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The only profile format version this firmware reads.
pub const PROFILE_VERSION: u32 = 1;

/// The file name of a board's media profile inside `hardware/boards/<board>/`.
pub const PROFILE_FILE: &str = "media.toml";

/// Size, frame rate and bitrate ceiling of the outgoing video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoPrefs {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Ceiling of the encoder's rate control, in kbit/s.
    pub max_kbps: u32,
}

impl Default for VideoPrefs {
    /// 1280x720 at 30 frames per second, at most 3000 kbit/s: H.264 level 3.1, what every
    /// browser decodes in hardware or software.
    fn default() -> Self {
        VideoPrefs {
            width: 1280,
            height: 720,
            fps: 30,
            max_kbps: 3000,
        }
    }
}

impl VideoPrefs {
    /// `1280x720@30`.
    pub fn size_and_rate(&self) -> String {
        format!("{}x{}@{}", self.width, self.height, self.fps)
    }
}

/// Where the customer's voice comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AudioInput {
    /// An ALSA PCM (`default`, `hw:1,0`, `plughw:CARD=C920,DEV=0`).
    Alsa { device: String },
    /// The PulseAudio server's default source.
    Pulse,
    /// The PipeWire graph's default source.
    PipeWire,
    /// A quiet 440 Hz tone (development, QEMU, tests).
    TestTone,
    /// No microphone: calls carry no audio from the kiosk.
    None,
}

impl AudioInput {
    /// A gst-launch fragment producing live raw audio, or `None` for [`AudioInput::None`].
    pub fn source_fragment(&self) -> Option<String> {
        match self {
            AudioInput::Alsa { device } => Some(format!("alsasrc device={}", gst_quote(device))),
            AudioInput::Pulse => Some("pulsesrc".to_owned()),
            AudioInput::PipeWire => Some("pipewiresrc".to_owned()),
            AudioInput::TestTone => {
                Some("audiotestsrc is-live=true wave=sine freq=440 volume=0.05".to_owned())
            }
            AudioInput::None => None,
        }
    }

    /// The profile's spelling of the source (`alsa`, `pulse`, `pipewire`, `test-tone`, `none`).
    pub fn kind(&self) -> &'static str {
        match self {
            AudioInput::Alsa { .. } => "alsa",
            AudioInput::Pulse => "pulse",
            AudioInput::PipeWire => "pipewire",
            AudioInput::TestTone => "test-tone",
            AudioInput::None => "none",
        }
    }
}

/// How the board finds its camera.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CameraSettings {
    /// An explicit capture node (`/dev/v4l/by-id/…`); `None`: the first capture node found.
    pub device: Option<PathBuf>,
    /// Whether a call may go on with the test pattern when no camera works. True on
    /// development boards; on shop hardware the service reports the fault instead.
    pub allow_test_pattern: bool,
}

/// A board's validated media profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardProfile {
    /// The board (`rpi4`, `qemu`, …), or `development` for the built-in defaults.
    pub name: String,
    pub video: VideoPrefs,
    /// GStreamer encoder element names, best first; [`crate::encoder::choose`] tries them.
    pub encoders: Vec<String>,
    pub audio: AudioInput,
    /// A gst-launch fragment that renders the remote video (`autovideosink sync=false`).
    pub video_sink: String,
    pub camera: CameraSettings,
}

impl Default for BoardProfile {
    fn default() -> Self {
        BoardProfile::development()
    }
}

/// A board profile could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoardError {
    /// The board name is not a plain name (it would leave the boards folder).
    #[error("board name {board:?}: {reason}")]
    CheckBoardName { board: String, reason: String },
    #[error("read board profile {path}: {reason}")]
    ReadProfile { path: PathBuf, reason: String },
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("parse board profile {path}: {reason}")]
    ParseProfile { path: PathBuf, reason: String },
    #[error("board profile {path}: `version = {found}` is not supported (this firmware reads version {PROFILE_VERSION})")]
    CheckVersion { path: PathBuf, found: u32 },
    /// A value is out of range; `key` is its dotted TOML path.
    #[error("board profile {path}: key `{key}`: {reason}")]
    ValidateProfile {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

impl BoardProfile {
    /// The built-in defaults: 720p30 at 3000 kbit/s, software encoders (x264enc, then
    /// openh264enc, then vp8enc), the test tone, `autovideosink`, and the test pattern allowed.
    pub fn development() -> BoardProfile {
        BoardProfile {
            name: "development".to_owned(),
            video: VideoPrefs::default(),
            encoders: ["x264enc", "openh264enc", "vp8enc"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
            audio: AudioInput::TestTone,
            video_sink: "autovideosink sync=false".to_owned(),
            camera: CameraSettings {
                device: None,
                allow_test_pattern: true,
            },
        }
    }

    /// Reads `<dir>/<board>/media.toml` over the built-in defaults and validates the result.
    /// `dir` is the boards folder (`hardware/boards` in the tree, `/etc/kioskcall/boards` on
    /// the device).
    pub fn load(dir: &Path, board: &str) -> Result<BoardProfile, BoardError> {
        check_board_name(board)?;
        let path = dir.join(board).join(PROFILE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| BoardError::ReadProfile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        BoardProfile::from_toml(board, &text, &path)
    }

    /// Applies the profile text `text` (read from `path`, named in errors) over the built-in
    /// defaults, names the result `board`, and validates it.
    pub fn from_toml(board: &str, text: &str, path: &Path) -> Result<BoardProfile, BoardError> {
        let file: ProfileFile = toml::from_str(text).map_err(|e| BoardError::ParseProfile {
            path: path.to_owned(),
            reason: e.to_string().trim_end().to_owned(),
        })?;
        if file.version != PROFILE_VERSION {
            return Err(BoardError::CheckVersion {
                path: path.to_owned(),
                found: file.version,
            });
        }
        let mut profile = BoardProfile::development();
        profile.name = board.to_owned();
        file.apply_to(&mut profile, path)?;
        profile
            .validate()
            .map_err(|(key, reason)| BoardError::ValidateProfile {
                path: path.to_owned(),
                key: key.to_owned(),
                reason,
            })?;
        Ok(profile)
    }

    /// Checks every value; the error is the dotted key and what is wrong with it.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let v = &self.video;
        check_range("video.width", v.width, 160, 1920)?;
        check_even("video.width", v.width)?;
        check_range("video.height", v.height, 120, 1080)?;
        check_even("video.height", v.height)?;
        check_range("video.fps", v.fps, 1, 60)?;
        check_range("video.max_kbps", v.max_kbps, 100, 20_000)?;
        if self.encoders.is_empty() {
            return Err(("encoders", "at least one encoder is needed".to_owned()));
        }
        for (i, name) in self.encoders.iter().enumerate() {
            if name.trim().is_empty() {
                return Err(("encoders", format!("entry {} is empty", i + 1)));
            }
            if !is_element_name(name) {
                return Err((
                    "encoders",
                    format!("{name:?} is not a GStreamer element name (letters, digits, - and _)"),
                ));
            }
            if self.encoders[..i].contains(name) {
                return Err(("encoders", format!("{name:?} is listed twice")));
            }
        }
        if self.video_sink.trim().is_empty() {
            return Err(("video_sink", "must not be empty".to_owned()));
        }
        if let AudioInput::Alsa { device } = &self.audio {
            if device.trim().is_empty() {
                return Err(("audio.device", "must not be empty for alsa".to_owned()));
            }
            if device.contains('"') || device.contains('\\') {
                return Err(("audio.device", format!("{device:?} contains \" or \\")));
            }
        }
        if let Some(device) = &self.camera.device {
            if !device.is_absolute() {
                return Err((
                    "camera.device",
                    format!("{} is not an absolute path", device.display()),
                ));
            }
        }
        Ok(())
    }
}

fn check_board_name(board: &str) -> Result<(), BoardError> {
    if kiosk_protocol::config::is_board_name(board) {
        Ok(())
    } else {
        Err(BoardError::CheckBoardName {
            board: board.to_owned(),
            reason: "use lowercase letters, digits, - and _, at most 64".to_owned(),
        })
    }
}

fn check_range(
    key: &'static str,
    value: u32,
    min: u32,
    max: u32,
) -> Result<(), (&'static str, String)> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err((key, format!("{value} is outside {min}..={max}")))
    }
}

fn check_even(key: &'static str, value: u32) -> Result<(), (&'static str, String)> {
    if value.is_multiple_of(2) {
        Ok(())
    } else {
        Err((
            key,
            format!("{value} is odd (4:2:0 video needs even sizes)"),
        ))
    }
}

/// A GStreamer element factory name: what `gst-inspect-1.0` lists.
pub(crate) fn is_element_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A value as gst-launch reads it: bare when it is plain, double-quoted otherwise.
pub(crate) fn gst_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.,:=+-".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The file as written: every key but `version` optional, so a board states only what differs
/// from the built-in defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    version: u32,
    #[serde(default)]
    encoders: Option<Vec<String>>,
    #[serde(default)]
    video_sink: Option<String>,
    #[serde(default)]
    video: Option<VideoFile>,
    #[serde(default)]
    audio: Option<AudioFile>,
    #[serde(default)]
    camera: Option<CameraFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VideoFile {
    width: Option<u32>,
    height: Option<u32>,
    fps: Option<u32>,
    max_kbps: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AudioFile {
    source: String,
    device: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CameraFile {
    device: Option<PathBuf>,
    allow_test_pattern: Option<bool>,
}

impl ProfileFile {
    fn apply_to(self, profile: &mut BoardProfile, path: &Path) -> Result<(), BoardError> {
        if let Some(encoders) = self.encoders {
            profile.encoders = encoders;
        }
        if let Some(sink) = self.video_sink {
            profile.video_sink = sink;
        }
        if let Some(video) = self.video {
            let v = &mut profile.video;
            v.width = video.width.unwrap_or(v.width);
            v.height = video.height.unwrap_or(v.height);
            v.fps = video.fps.unwrap_or(v.fps);
            v.max_kbps = video.max_kbps.unwrap_or(v.max_kbps);
        }
        if let Some(audio) = self.audio {
            profile.audio =
                audio
                    .into_input()
                    .map_err(|(key, reason)| BoardError::ValidateProfile {
                        path: path.to_owned(),
                        key: key.to_owned(),
                        reason,
                    })?;
        }
        if let Some(camera) = self.camera {
            if camera.device.is_some() {
                profile.camera.device = camera.device;
            }
            if let Some(allow) = camera.allow_test_pattern {
                profile.camera.allow_test_pattern = allow;
            }
        }
        Ok(())
    }
}

impl AudioFile {
    fn into_input(self) -> Result<AudioInput, (&'static str, String)> {
        let input = match self.source.as_str() {
            "alsa" => {
                return Ok(AudioInput::Alsa {
                    device: self.device.unwrap_or_else(|| "default".to_owned()),
                })
            }
            "pulse" => AudioInput::Pulse,
            "pipewire" => AudioInput::PipeWire,
            "test-tone" => AudioInput::TestTone,
            "none" => AudioInput::None,
            other => {
                return Err((
                    "audio.source",
                    format!("{other:?} is not one of alsa, pulse, pipewire, test-tone, none"),
                ))
            }
        };
        if self.device.is_some() {
            return Err((
                "audio.device",
                format!("only alsa takes a device, not {}", self.source),
            ));
        }
        Ok(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BoardProfile, BoardError> {
        BoardProfile::from_toml("test", text, Path::new("/boards/test/media.toml"))
    }

    #[test]
    fn video_prefs_default_to_720p30_at_3000_kbps() {
        let v = VideoPrefs::default();
        assert_eq!(
            (v.width, v.height, v.fps, v.max_kbps),
            (1280, 720, 30, 3000)
        );
        assert_eq!(v.size_and_rate(), "1280x720@30");
    }

    #[test]
    fn development_profile_is_valid_and_uses_software_encoders() {
        let p = BoardProfile::development();
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(p.encoders, ["x264enc", "openh264enc", "vp8enc"]);
        assert!(p.camera.allow_test_pattern);
        assert_eq!(BoardProfile::default(), p);
    }

    #[test]
    fn audio_fragments() {
        let alsa = AudioInput::Alsa {
            device: "hw:1,0".to_owned(),
        };
        assert_eq!(
            alsa.source_fragment().as_deref(),
            Some("alsasrc device=hw:1,0")
        );
        let spaced = AudioInput::Alsa {
            device: "plughw:CARD=C920 Mic".to_owned(),
        };
        assert_eq!(
            spaced.source_fragment().as_deref(),
            Some("alsasrc device=\"plughw:CARD=C920 Mic\"")
        );
        assert_eq!(
            AudioInput::Pulse.source_fragment().as_deref(),
            Some("pulsesrc")
        );
        assert_eq!(
            AudioInput::PipeWire.source_fragment().as_deref(),
            Some("pipewiresrc")
        );
        assert_eq!(
            AudioInput::TestTone.source_fragment().as_deref(),
            Some("audiotestsrc is-live=true wave=sine freq=440 volume=0.05")
        );
        assert_eq!(AudioInput::None.source_fragment(), None);
    }

    #[test]
    fn a_minimal_file_keeps_the_defaults() {
        let p = parse("version = 1\n").expect("minimal profile");
        assert_eq!(p.name, "test");
        assert_eq!(p.video, VideoPrefs::default());
        assert_eq!(p.encoders, BoardProfile::development().encoders);
    }

    #[test]
    fn a_full_file_overrides_every_key() {
        let p = parse(
            r#"
            version = 1
            encoders = ["v4l2h264enc", "x264enc"]
            video_sink = "kmssink"
            [video]
            width = 640
            height = 480
            fps = 15
            max_kbps = 800
            [audio]
            source = "alsa"
            device = "hw:2,0"
            [camera]
            device = "/dev/video2"
            allow_test_pattern = false
            "#,
        )
        .expect("full profile");
        assert_eq!(
            p.video,
            VideoPrefs {
                width: 640,
                height: 480,
                fps: 15,
                max_kbps: 800
            }
        );
        assert_eq!(p.encoders, ["v4l2h264enc", "x264enc"]);
        assert_eq!(p.video_sink, "kmssink");
        assert_eq!(
            p.audio,
            AudioInput::Alsa {
                device: "hw:2,0".to_owned()
            }
        );
        assert_eq!(p.camera.device.as_deref(), Some(Path::new("/dev/video2")));
        assert!(!p.camera.allow_test_pattern);
    }

    #[test]
    fn a_partial_video_table_keeps_the_other_defaults() {
        let p = parse("version = 1\n[video]\nfps = 25\n").expect("partial");
        assert_eq!(p.video.fps, 25);
        assert_eq!(p.video.width, 1280);
    }

    #[test]
    fn audio_sources_parse() {
        for (src, want) in [
            ("pulse", AudioInput::Pulse),
            ("pipewire", AudioInput::PipeWire),
            ("test-tone", AudioInput::TestTone),
            ("none", AudioInput::None),
        ] {
            let p = parse(&format!("version = 1\n[audio]\nsource = \"{src}\"\n")).expect(src);
            assert_eq!(p.audio, want);
            assert_eq!(p.audio.kind(), src);
        }
        let p = parse("version = 1\n[audio]\nsource = \"alsa\"\n").expect("alsa");
        assert_eq!(
            p.audio,
            AudioInput::Alsa {
                device: "default".to_owned()
            }
        );
    }

    #[test]
    fn missing_version_is_a_parse_error_naming_the_file() {
        let err = parse("encoders = [\"x264enc\"]\n").expect_err("no version");
        assert!(matches!(err, BoardError::ParseProfile { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("/boards/test/media.toml"), "{text}");
        assert!(text.contains("version"), "{text}");
    }

    #[test]
    fn other_versions_are_refused() {
        let err = parse("version = 2\n").expect_err("version 2");
        assert_eq!(
            err,
            BoardError::CheckVersion {
                path: PathBuf::from("/boards/test/media.toml"),
                found: 2
            }
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = parse("version = 1\n[video]\nframerate = 30\n").expect_err("typo");
        let text = err.to_string();
        assert!(matches!(err, BoardError::ParseProfile { .. }), "{err:?}");
        assert!(text.contains("framerate"), "{text}");
        let err = parse("version = 1\nencoder = [\"x264enc\"]\n").expect_err("typo");
        assert!(err.to_string().contains("encoder"), "{err}");
    }

    fn invalid_key(text: &str) -> (String, String) {
        match parse(text) {
            Err(BoardError::ValidateProfile { key, reason, path }) => {
                assert_eq!(path, Path::new("/boards/test/media.toml"));
                (key, reason)
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let cases = [
            ("[video]\nfps = 0", "video.fps"),
            ("[video]\nfps = 61", "video.fps"),
            ("[video]\nmax_kbps = 99", "video.max_kbps"),
            ("[video]\nmax_kbps = 20001", "video.max_kbps"),
            ("[video]\nwidth = 100", "video.width"),
            ("[video]\nwidth = 1281", "video.width"),
            ("[video]\nheight = 2160", "video.height"),
            ("encoders = []", "encoders"),
            ("encoders = [\"x264enc\", \"\"]", "encoders"),
            ("encoders = [\"x264enc ! fakesink\"]", "encoders"),
            ("encoders = [\"x264enc\", \"x264enc\"]", "encoders"),
            ("video_sink = \" \"", "video_sink"),
            ("[audio]\nsource = \"alsa\"\ndevice = \"\"", "audio.device"),
            (
                "[audio]\nsource = \"pulse\"\ndevice = \"x\"",
                "audio.device",
            ),
            ("[audio]\nsource = \"jack\"", "audio.source"),
            ("[camera]\ndevice = \"video0\"", "camera.device"),
        ];
        for (body, want) in cases {
            let (key, reason) = invalid_key(&format!("version = 1\n{body}\n"));
            assert_eq!(key, want, "{body}: {reason}");
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn validation_error_text_names_file_key_and_reason() {
        let err = parse("version = 1\n[video]\nfps = 90\n").expect_err("fps");
        assert_eq!(
            err.to_string(),
            "board profile /boards/test/media.toml: key `video.fps`: 90 is outside 1..=60"
        );
    }

    #[test]
    fn load_reads_the_board_folder_and_names_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("myboard")).expect("mkdir");
        std::fs::write(
            dir.path().join("myboard/media.toml"),
            "version = 1\nencoders = [\"openh264enc\"]\n",
        )
        .expect("write");
        let p = BoardProfile::load(dir.path(), "myboard").expect("load");
        assert_eq!(p.name, "myboard");
        assert_eq!(p.encoders, ["openh264enc"]);

        let err = BoardProfile::load(dir.path(), "other").expect_err("missing");
        assert!(matches!(err, BoardError::ReadProfile { .. }), "{err:?}");
        assert!(err.to_string().contains("other/media.toml"), "{err}");
    }

    #[test]
    fn board_names_cannot_leave_the_folder() {
        for bad in ["", "../etc", "a/b", "RPI4"] {
            let err = BoardProfile::load(Path::new("/nonexistent"), bad).expect_err(bad);
            assert!(
                matches!(err, BoardError::CheckBoardName { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn gst_quote_leaves_plain_values_bare() {
        assert_eq!(gst_quote("/dev/video0"), "/dev/video0");
        assert_eq!(gst_quote("hw:1,0"), "hw:1,0");
        assert_eq!(gst_quote("a b"), "\"a b\"");
        assert_eq!(gst_quote(""), "\"\"");
    }
}
