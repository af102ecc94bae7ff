//! Encoder choice (development stand-in: the encoder work replaces this file).

use crate::board::VideoPrefs;

/// What the encoder produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    Vp8,
}

/// The encoder in use, and why.
#[derive(Debug, Clone)]
pub struct EncoderChoice {
    pub element: String,
    pub codec: Codec,
    pub reason: String,
}

/// No encoder could be used.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("no usable encoder among {tried:?}")]
    NoneUsable { tried: Vec<String> },
}

/// Picks the first candidate whose element exists (development stand-in: no probe pipeline).
use gstreamer::prelude::*;

pub fn choose(candidates: &[String], _prefs: &VideoPrefs) -> Result<EncoderChoice, EncoderError> {
    for c in candidates {
        if c == "x264enc" && gstreamer::ElementFactory::find(c).is_some() {
            return Ok(EncoderChoice {
                element: c.clone(),
                codec: Codec::H264,
                reason: format!("{c}: first candidate present"),
            });
        }
    }
    Err(EncoderError::NoneUsable {
        tried: candidates.to_vec(),
    })
}

impl EncoderChoice {
    /// From raw I420 to encoded and parsed H.264 (byte-stream, au); the encoder is "venc".
    pub fn fragment(&self, prefs: &VideoPrefs) -> String {
        format!(
            "x264enc name=venc tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max={} bitrate={} \
             ! video/x-h264,profile=constrained-baseline \
             ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au",
            prefs.fps * 2,
            prefs.max_kbps
        )
    }

    pub fn set_bitrate(&self, venc: &gstreamer::Element, kbps: u32) {
        venc.set_property("bitrate", kbps);
    }
}
