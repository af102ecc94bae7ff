//! Board profiles (development stand-in: the board work replaces this file).

/// What the board wants to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoPrefs {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub max_kbps: u32,
}

impl Default for VideoPrefs {
    fn default() -> Self {
        VideoPrefs {
            width: 1280,
            height: 720,
            fps: 30,
            max_kbps: 3000,
        }
    }
}

/// Where the microphone is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioInput {
    Alsa { device: String },
    Pulse,
    PipeWire,
    TestTone,
    None,
}

impl AudioInput {
    /// A gst-launch fragment producing raw audio; `None` for [`AudioInput::None`].
    pub fn source_fragment(&self) -> Option<String> {
        match self {
            AudioInput::Alsa { device } => Some(format!("alsasrc device={device}")),
            AudioInput::Pulse => Some("pulsesrc".into()),
            AudioInput::PipeWire => Some("pipewiresrc".into()),
            AudioInput::TestTone => {
                Some("audiotestsrc is-live=true wave=sine freq=440 volume=0.05".into())
            }
            AudioInput::None => None,
        }
    }
}

/// One board's media profile.
#[derive(Debug, Clone)]
pub struct BoardProfile {
    pub name: String,
    pub video: VideoPrefs,
    pub encoders: Vec<String>,
    pub audio: AudioInput,
    pub video_sink: String,
}

/// A profile could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("no profile for board {board} in {dir}")]
    NotFound { board: String, dir: String },
}

impl BoardProfile {
    /// Loads `dir/<board>/media.toml` (development stand-in: always not found).
    pub fn load(dir: &std::path::Path, board: &str) -> Result<BoardProfile, BoardError> {
        Err(BoardError::NotFound {
            board: board.to_string(),
            dir: dir.display().to_string(),
        })
    }

    /// Development defaults: 1280x720@30, x264enc, test tone, autovideosink.
    pub fn development() -> BoardProfile {
        BoardProfile {
            name: "development".into(),
            video: VideoPrefs::default(),
            encoders: vec!["x264enc".into()],
            audio: AudioInput::TestTone,
            video_sink: "autovideosink".into(),
        }
    }
}
