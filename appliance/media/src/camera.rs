//! Camera discovery (development stand-in: the camera work replaces this file).

use crate::board::VideoPrefs;

/// Where the video comes from.
#[derive(Debug)]
pub enum VideoSource {
    Camera(CameraDevice),
    TestPattern { reason: String },
}

/// A V4L2 capture device.
#[derive(Debug)]
pub struct CameraDevice {
    pub path: std::path::PathBuf,
    pub card: String,
    pub mode: CaptureMode,
}

/// A capture mode.
#[derive(Debug)]
pub struct CaptureMode {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub fourcc: String,
}

impl VideoSource {
    /// The test pattern, with a reason, when no camera is found.
    pub fn discover(_prefs: &VideoPrefs) -> VideoSource {
        VideoSource::test_pattern("no camera found")
    }

    pub fn test_pattern(reason: &str) -> VideoSource {
        VideoSource::TestPattern {
            reason: reason.to_string(),
        }
    }

    /// For the `Camera` property.
    pub fn describe(&self) -> String {
        match self {
            VideoSource::Camera(c) => format!("{} ({})", c.path.display(), c.card),
            VideoSource::TestPattern { reason } => format!("test-pattern ({reason})"),
        }
    }

    /// For the `CameraMode` property.
    pub fn mode(&self, prefs: &VideoPrefs) -> String {
        match self {
            VideoSource::Camera(c) => format!(
                "{}x{}@{} {}",
                c.mode.width, c.mode.height, c.mode.fps, c.mode.fourcc
            ),
            VideoSource::TestPattern { .. } => {
                format!("{}x{}@{} I420", prefs.width, prefs.height, prefs.fps)
            }
        }
    }

    /// A live gst-launch fragment ending in raw I420 at the preferred size and rate.
    pub fn source_fragment(&self, prefs: &VideoPrefs) -> String {
        let caps = format!(
            "video/x-raw,format=I420,width={},height={},framerate={}/1",
            prefs.width, prefs.height, prefs.fps
        );
        match self {
            VideoSource::Camera(c) => format!(
                "v4l2src device={} ! videoconvert ! videoscale ! videorate ! {caps}",
                c.path.display()
            ),
            VideoSource::TestPattern { .. } => {
                format!("videotestsrc is-live=true pattern=smpte ! {caps}")
            }
        }
    }
}
