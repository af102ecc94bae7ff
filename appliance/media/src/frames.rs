//! Counting decoded frames, and reading the stamps they carry ([`crate::stamp`]).
//!
//! [`FrameTally`] is fed every decoded I420 frame of the remote video (a pad probe placed just
//! before the sink, whatever the sink is); [`CountingSink`] is the appsink the `count` remote
//! video setting uses in tests and benchmarks, with the same tally.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use crate::stamp;

/// Called with each latency sample (milliseconds) read from a stamped frame.
pub type LatencyHook = Box<dyn Fn(u32) + Send + Sync>;
/// Called once, with the Unix ms time, when the first frame is decoded.
pub type FirstFrameHook = Box<dyn Fn(i64) + Send + Sync>;

/// Frames seen and stamps read; cheap to clone (shared counters).
#[derive(Clone, Default)]
pub struct FrameTally {
    inner: Arc<TallyInner>,
}

#[derive(Default)]
struct TallyInner {
    frames: AtomicU64,
    stamped: AtomicU64,
    last_latency: AtomicU64,
    hooks: Mutex<Hooks>,
}

#[derive(Default)]
struct Hooks {
    latency: Option<LatencyHook>,
    first: Option<FirstFrameHook>,
}

impl std::fmt::Debug for FrameTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameTally")
            .field("frames", &self.frames())
            .field("stamped", &self.stamped())
            .finish()
    }
}

impl FrameTally {
    pub fn new() -> FrameTally {
        FrameTally::default()
    }

    /// Sets what to call for each latency sample and for the first frame.
    pub fn set_hooks(&self, latency: Option<LatencyHook>, first: Option<FirstFrameHook>) {
        if let Ok(mut h) = self.inner.hooks.lock() {
            h.latency = latency;
            h.first = first;
        }
    }

    /// Frames decoded so far.
    pub fn frames(&self) -> u64 {
        self.inner.frames.load(Ordering::Relaxed)
    }

    /// Frames whose stamp could be read.
    pub fn stamped(&self) -> u64 {
        self.inner.stamped.load(Ordering::Relaxed)
    }

    /// The latest latency sample, ms (0 before the first).
    pub fn last_latency_ms(&self) -> u64 {
        self.inner.last_latency.load(Ordering::Relaxed)
    }

    /// Counts one decoded frame and reads its stamp (I420 caps expected).
    pub fn frame(&self, buffer: &gst::BufferRef, info: Option<&gst_video::VideoInfo>) {
        let n = self.inner.frames.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            if let Ok(h) = self.inner.hooks.lock() {
                if let Some(first) = &h.first {
                    first(stamp::unix_ms());
                }
            }
        }
        let Some(info) = info else { return };
        let Ok(frame) = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info) else {
            return;
        };
        let (Ok(luma), Some(&stride)) = (frame.plane_data(0), frame.info().stride().first()) else {
            return;
        };
        let plane = stamp::Plane {
            stride: stride.max(0) as usize,
            width: info.width() as usize,
            height: info.height() as usize,
        };
        if let Some(s) = stamp::read(luma, plane) {
            let ms = stamp::latency_ms(stamp::now(), s);
            self.inner.stamped.fetch_add(1, Ordering::Relaxed);
            self.inner
                .last_latency
                .store(u64::from(ms), Ordering::Relaxed);
            if let Ok(h) = self.inner.hooks.lock() {
                if let Some(hook) = &h.latency {
                    hook(ms);
                }
            }
        }
    }

    /// A buffer probe for a pad carrying raw I420 video.
    pub fn attach(&self, pad: &gst::Pad) {
        let tally = self.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let Some(buffer) = info.buffer() {
                let vinfo = pad
                    .current_caps()
                    .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok());
                tally.frame(buffer, vinfo.as_ref());
            }
            gst::PadProbeReturn::Ok
        });
    }
}

/// An appsink that counts the frames it receives and reads their stamps.
#[derive(Debug, Clone)]
pub struct CountingSink {
    pub tally: FrameTally,
    pub sink: gst_app::AppSink,
}

impl CountingSink {
    /// A new sink (not in any bin yet), not synchronised to the clock so every decoded frame
    /// is counted as soon as it is decoded.
    pub fn new(name: &str) -> CountingSink {
        CountingSink::with_tally(name, FrameTally::new())
    }

    /// A new sink feeding an existing tally.
    pub fn with_tally(name: &str, tally: FrameTally) -> CountingSink {
        let sink = gst_app::AppSink::builder()
            .name(name)
            .sync(false)
            .max_buffers(2)
            .drop(true)
            .caps(
                &gst::Caps::builder("video/x-raw")
                    .field("format", "I420")
                    .build(),
            )
            .build();
        let t = tally.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let info = sample
                        .caps()
                        .and_then(|c| gst_video::VideoInfo::from_caps(c).ok());
                    if let Some(b) = sample.buffer() {
                        t.frame(b, info.as_ref());
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        CountingSink { tally, sink }
    }
}

/// Writes the current stamp into every buffer passing `pad` (raw I420 video).
pub fn stamp_frames(pad: &gst::Pad) {
    pad.add_probe(gst::PadProbeType::BUFFER, |pad, info| {
        let Some(vinfo) = pad
            .current_caps()
            .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
        else {
            return gst::PadProbeReturn::Ok;
        };
        if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
            let buffer = buffer.make_mut();
            if let Ok(mut frame) =
                gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &vinfo)
            {
                let stride = frame.info().stride().first().copied().unwrap_or(0).max(0) as usize;
                let plane = stamp::Plane {
                    stride,
                    width: vinfo.width() as usize,
                    height: vinfo.height() as usize,
                };
                if let Ok(luma) = frame.plane_data_mut(0) {
                    stamp::write(luma, plane, stamp::now());
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}
