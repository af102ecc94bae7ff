//! Encoder choice: which GStreamer encoder this kiosk uses, with which settings, and why.
//!
//! Why: every board has a different hardware encoder (or none that works: an Orin Nano has no
//! NVENC, a Pi's codec node can be missing from a kernel), and an element that is installed
//! may still fail on this hardware. So the board profile lists candidates in order and each is
//! checked for real before a call needs it: is the element installed, and does a short probe
//! pipeline turn raw I420 into encoded buffers? The answer, with every candidate tried and how
//! it went, is the `Encoder`/`EncoderReason` pair of `org.kioskcall.Media1`.
//!
//! Main types: [`choose`] (GStreamer) and [`choose_with`] (any [`ElementProbe`]: the real
//! [`GstProbe`], or `FakeProbe` in tests) return an [`EncoderChoice`], whose
//! [`EncoderChoice::fragment`] is the low-latency encoder chain the call pipeline uses and
//! whose [`EncoderChoice::set_bitrate`] sets the bitrate in each element's own property and
//! unit (nothing adapts it during a call yet: the board's cap holds).
//!
//! The fragments aim at what Chromium's WebRTC stack takes without fuss: H.264
//! constrained-baseline (`profile-level-id=42e01f` at 720p30, see [`profile_level_id`]), no
//! B-frames, no look-ahead, an IDR every two seconds and whenever the peer asks (upstream
//! `GstForceKeyUnit` events, which webrtcbin sends on PLI/FIR and every GStreamer video
//! encoder honours), SPS/PPS before every IDR (`h264parse config-interval=-1`), byte-stream
//! access units, and rate control capped at the profile's `max_kbps`. VP8 is the last resort.
//!
//! Threads: a probe runs a private pipeline on GStreamer's threads and waits on its bus from
//! the caller's thread for at most [`GstProbe::timeout`]; call [`choose`] at start-up or from
//! a blocking task, never on an async executor thread.
//!
//! Limits: x264enc, openh264enc and vp8enc are verified here by the tests; the hardware
//! encoders (v4l2h264enc, mpph264enc, vpuenc_h264, nvv4l2h264enc, vah264enc, vaapih264enc)
//! cannot be probed on a development machine, and their settings are written from their
//! documentation. Should one be wrong on a board, its probe fails, the next candidate is
//! used, and `EncoderReason` shows the GStreamer error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::board::{gst_quote, is_element_name, VideoPrefs};

/// Encoder threads: kiosk boards have 2 to 4 cores, shared with capture, the browser and
/// the network stack; two threads keep a software encoder within one frame time at 720p30
/// without starving the rest.
pub const ENCODER_THREADS: u32 = 2;

/// The video codec an encoder produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    Vp8,
}

impl Codec {
    /// The RTP/SDP encoding name: `H264`, `VP8`.
    pub fn encoding_name(&self) -> &'static str {
        match self {
            Codec::H264 => "H264",
            Codec::Vp8 => "VP8",
        }
    }

    /// The GStreamer caps name of the encoded stream.
    pub fn caps_name(&self) -> &'static str {
        match self {
            Codec::H264 => "video/x-h264",
            Codec::Vp8 => "video/x-vp8",
        }
    }
}

/// The encoder in use and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderChoice {
    /// The GStreamer element name (`x264enc`).
    pub element: String,
    pub codec: Codec,
    /// Every candidate tried and what happened, then the choice:
    /// `v4l2h264enc: not installed; x264enc: probe ok (12.3 ms/frame); chosen x264enc`.
    pub reason: String,
}

/// No encoder could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncoderError {
    #[error("initialise GStreamer: {reason}")]
    InitGstreamer { reason: String },
    #[error("choose an encoder: the board profile lists no candidates")]
    NoCandidates,
    /// Each candidate with what happened to it.
    #[error("choose an encoder: none usable ({})", describe_tried(.tried))]
    NoneUsable { tried: Vec<(String, String)> },
}

fn describe_tried(tried: &[(String, String)]) -> String {
    tried
        .iter()
        .map(|(element, outcome)| format!("{element}: {outcome}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The encoders kiosk-media has low-latency settings for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncoderKind {
    /// Software H.264 (libx264), GStreamer ugly.
    X264,
    /// Software H.264 (Cisco OpenH264), GStreamer bad.
    OpenH264,
    /// Stateful V4L2 memory-to-memory encoder: Raspberry Pi 4 (bcm2835-codec).
    V4l2H264,
    /// Rockchip MPP (RK3588 on the ROCK 5B), gstreamer-rockchip.
    Mpp,
    /// NXP i.MX VPU (Hantro VC8000E on the i.MX 8M Plus), imx-gst1.0-plugin.
    Vpu,
    /// NVIDIA Jetson NVENC (Orin NX/AGX), L4T gst-v4l2.
    NvV4l2,
    /// VA-API, GStreamer bad's `va` plugin (Intel/AMD PCs).
    Va,
    /// VA-API, the older gstreamer-vaapi plugin.
    Vaapi,
    /// Software VP8 (libvpx), GStreamer good.
    Vp8,
}

impl EncoderKind {
    pub fn from_element(element: &str) -> Option<EncoderKind> {
        Some(match element {
            "x264enc" => EncoderKind::X264,
            "openh264enc" => EncoderKind::OpenH264,
            "v4l2h264enc" => EncoderKind::V4l2H264,
            "mpph264enc" => EncoderKind::Mpp,
            "vpuenc_h264" => EncoderKind::Vpu,
            "nvv4l2h264enc" => EncoderKind::NvV4l2,
            "vah264enc" | "vah264lpenc" => EncoderKind::Va,
            "vaapih264enc" => EncoderKind::Vaapi,
            "vp8enc" => EncoderKind::Vp8,
            _ => return None,
        })
    }

    pub fn codec(self) -> Codec {
        match self {
            EncoderKind::Vp8 => Codec::Vp8,
            _ => Codec::H264,
        }
    }
}

/// An H.264 level: its caps spelling (`3.1`) and `level_idc` (31).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264Level {
    pub name: &'static str,
    pub idc: u8,
}

/// The lowest H.264 level that holds the prefs' size, rate and bitrate, and never below 3.1:
/// 3.1 (`42e01f`) is what browsers offer by default, and announcing a higher level than the
/// stream needs is harmless while a lower one is not.
pub fn h264_level(prefs: &VideoPrefs) -> H264Level {
    // (name, level_idc, MaxMBPS, MaxFS, MaxBR in 1000 bit/s for Baseline), H.264 table A-1.
    const LEVELS: [(&str, u8, u64, u64, u64); 7] = [
        ("3.1", 31, 108_000, 3_600, 14_000),
        ("3.2", 32, 216_000, 5_120, 20_000),
        ("4", 40, 245_760, 8_192, 20_000),
        ("4.1", 41, 245_760, 8_192, 50_000),
        ("4.2", 42, 522_240, 8_704, 50_000),
        ("5", 50, 589_824, 22_080, 135_000),
        ("5.1", 51, 983_040, 36_864, 240_000),
    ];
    let mbs = u64::from(prefs.width.div_ceil(16)) * u64::from(prefs.height.div_ceil(16));
    let mbps = mbs * u64::from(prefs.fps);
    let (name, idc, ..) = LEVELS
        .iter()
        .copied()
        .find(|&(_, _, max_mbps, max_fs, max_br)| {
            mbs <= max_fs && mbps <= max_mbps && u64::from(prefs.max_kbps) <= max_br
        })
        .unwrap_or(LEVELS[LEVELS.len() - 1]);
    H264Level { name, idc }
}

/// The SDP `profile-level-id` of the H.264 stream: constrained baseline (`42e0`) and the
/// level, `42e01f` at 720p30.
pub fn profile_level_id(prefs: &VideoPrefs) -> String {
    format!("42e0{:02x}", h264_level(prefs).idc)
}

/// Frames between IDRs: about two seconds, so a receiver that lost a keyframe and could not
/// ask for one waits at most that long.
pub fn keyframe_interval(prefs: &VideoPrefs) -> u32 {
    (prefs.fps * 2).max(1)
}

/// After every H.264 encoder: SPS/PPS before each IDR, byte-stream access units.
const H264_PARSE: &str =
    "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au";

/// The low-latency chain for `element`, from raw I420 to encoded (and, for H.264, parsed)
/// video, the encoder named `venc`; `None` for an element kiosk-media has no settings for.
pub fn fragment_for(element: &str, prefs: &VideoPrefs) -> Option<String> {
    let kind = EncoderKind::from_element(element)?;
    let kbps = prefs.max_kbps;
    let bps = u64::from(kbps) * 1000;
    let gop = keyframe_interval(prefs);
    let level = h264_level(prefs).name;
    let cb_caps = format!("video/x-h264,profile=constrained-baseline,level=(string){level}");
    let threads = ENCODER_THREADS;
    let encoder = match kind {
        // Verified here. zerolatency: no look-ahead, no frame threading (sliced threads
        // instead). The caps make x264 write constrained baseline (no CABAC, no 8x8, no B)
        // at exactly the level announced in SDP. pass=cbr with a VBV of a few frames caps
        // the rate at `bitrate`.
        EncoderKind::X264 => format!(
            "x264enc name=venc tune=zerolatency speed-preset=ultrafast pass=cbr \
             bitrate={kbps} vbv-buf-capacity={vbv} bframes=0 b-adapt=false \
             key-int-max={gop} threads={threads} sliced-threads=true ! {cb_caps}",
            vbv = (2000 / prefs.fps.max(1)).max(120),
        ),
        // Verified here. OpenH264 writes only constrained baseline and picks the level
        // itself (3.1 at 720p30); frame skipping helps it toward max-bitrate, but on
        // incompressible content (videotestsrc snow) it still overshoots by about 1.5x,
        // where x264enc and vp8enc hold the cap. Its "cmInitParaError" log line at end of
        // stream is the library answering the drain call, not a failure.
        EncoderKind::OpenH264 => format!(
            "openh264enc name=venc usage-type=camera complexity=low rate-control=bitrate \
             bitrate={bps} max-bitrate={bps} enable-frame-skip=true gop-size={gop} \
             multi-thread={threads} slice-mode=auto scene-change-detection=false ! \
             video/x-h264,profile=constrained-baseline"
        ),
        // Not verifiable here (Raspberry Pi 4, bcm2835-codec). V4L2 control values:
        // h264_profile 1 = CONSTRAINED_BASELINE, h264_level 9 = 3.1 (11 = 4.0),
        // video_bitrate_mode 1 = CBR, video_bitrate in bit/s. GStreamer also sets profile
        // and level from the caps that follow, which Pi kernels need to negotiate at all.
        EncoderKind::V4l2H264 => format!(
            "v4l2h264enc name=venc extra-controls=\"controls,h264_profile=1,h264_level={v4l2_level},\
             repeat_sequence_header=1,video_bitrate_mode=1,video_bitrate={bps},\
             h264_i_frame_period={gop}\" ! {cb_caps}",
            v4l2_level = v4l2_h264_level(level),
        ),
        // Not verifiable here (Rockchip MPP). header-mode=each-idr repeats SPS/PPS, rc-mode
        // cbr with bps and bps-max in bit/s, gop in frames; MPP never writes B-frames for
        // baseline. Profile enum: baseline = 66.
        EncoderKind::Mpp => format!(
            "mpph264enc name=venc rc-mode=cbr bps={bps} bps-max={bps} gop={gop} \
             header-mode=each-idr profile=baseline"
        ),
        // Not verifiable here (NXP VPU). bitrate in kbit/s, gop-size in frames; the VPU
        // writes baseline without B-frames; h264parse repeats SPS/PPS.
        EncoderKind::Vpu => format!("vpuenc_h264 name=venc bitrate={kbps} gop-size={gop}"),
        // Not verifiable here (Jetson). NVENC wants NVMM memory, so nvvidconv uploads
        // first. control-rate 1 = constant, bitrate in bit/s, profile 0 = baseline,
        // insert-sps-pps with every IDR, no B-frames.
        EncoderKind::NvV4l2 => format!(
            "nvvidconv ! video/x-raw(memory:NVMM),format=I420 ! nvv4l2h264enc name=venc \
             control-rate=1 bitrate={bps} peak-bitrate={bps} profile=0 iframeinterval={gop} \
             idrinterval={gop} insert-sps-pps=true num-B-Frames=0 maxperf-enable=true"
        ),
        // Not verifiable here (VA-API, GStreamer bad). The profile comes from the caps;
        // CABAC and 8x8 transforms are off for baseline; target-usage 7 is the fastest;
        // bitrate and cpb-size in kbit.
        EncoderKind::Va => format!(
            "videoconvert ! video/x-raw,format=NV12 ! {element} name=venc rate-control=cbr \
             bitrate={kbps} cpb-size={kbps} key-int-max={gop} b-frames=0 ref-frames=1 \
             cabac=false dct8x8=false target-usage=7 ! {cb_caps}"
        ),
        // Not verifiable here (gstreamer-vaapi). Same settings, its property names.
        EncoderKind::Vaapi => format!(
            "videoconvert ! video/x-raw,format=NV12 ! vaapih264enc name=venc rate-control=cbr \
             bitrate={kbps} keyframe-period={gop} max-bframes=0 cabac=false dct8x8=false \
             quality-level=7 ! {cb_caps}"
        ),
        // Verified here. deadline=1 is libvpx's real-time mode, lag-in-frames=0 turns off
        // look-ahead, CBR with short client buffers (ms) like WebRTC's own VP8 settings,
        // error resilience so a lost packet damages less. Without dropframe-threshold VP8's
        // CBR is not a cap: on incompressible content it sent 13x the target here; with
        // 30 (WebRTC's value) it drops frames and stays within about 1.2x. One thread: libvpx's VP8 threads
        // spin while they wait, and on two busy cores that made it ten times slower
        // (about 9 ms/frame at 720p with one thread, over 100 with two).
        EncoderKind::Vp8 => {
            return Some(format!(
                "vp8enc name=venc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={bps} \
                 lag-in-frames=0 error-resilient=default keyframe-max-dist={gop} \
                 threads=1 buffer-size=1000 buffer-initial-size=500 \
                 buffer-optimal-size=600 undershoot=100 overshoot=15 max-quantizer=56 \
                 dropframe-threshold=30 ! video/x-vp8"
            ))
        }
    };
    Some(format!("{encoder} ! {H264_PARSE}"))
}

/// V4L2_MPEG_VIDEO_H264_LEVEL_* for a level name.
fn v4l2_h264_level(name: &str) -> u32 {
    match name {
        "3.1" => 9,
        "3.2" => 10,
        "4" => 11,
        "4.1" => 12,
        "4.2" => 13,
        "5" => 14,
        _ => 15,
    }
}

/// One property write that sets an encoder's bitrate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitrateSetting {
    pub property: &'static str,
    /// For `extra-controls`: the field inside the structure.
    pub field: Option<&'static str>,
    /// In the property's own unit.
    pub value: u64,
}

/// The property writes that set `element`'s bitrate to `kbps`, each in that element's unit.
/// Empty for an element kiosk-media does not know.
pub fn bitrate_settings(element: &str, kbps: u32) -> Vec<BitrateSetting> {
    let kbit = u64::from(kbps.max(1));
    let bit = kbit * 1000;
    let set = |property, value| BitrateSetting {
        property,
        field: None,
        value,
    };
    match EncoderKind::from_element(element) {
        Some(EncoderKind::X264) => vec![set("bitrate", kbit)],
        Some(EncoderKind::OpenH264) => vec![set("bitrate", bit), set("max-bitrate", bit)],
        Some(EncoderKind::Vp8) => vec![set("target-bitrate", bit)],
        Some(EncoderKind::V4l2H264) => vec![BitrateSetting {
            property: "extra-controls",
            field: Some("video_bitrate"),
            value: bit,
        }],
        Some(EncoderKind::Mpp) => vec![set("bps", bit), set("bps-max", bit)],
        Some(EncoderKind::Vpu) => vec![set("bitrate", kbit)],
        Some(EncoderKind::NvV4l2) => vec![set("bitrate", bit), set("peak-bitrate", bit)],
        Some(EncoderKind::Va) | Some(EncoderKind::Vaapi) => vec![set("bitrate", kbit)],
        None => Vec::new(),
    }
}

impl EncoderChoice {
    /// From raw I420 to encoded and parsed video; the encoder element is named `venc`.
    pub fn fragment(&self, prefs: &VideoPrefs) -> String {
        fragment_for(&self.element, prefs).unwrap_or_else(|| match self.codec {
            Codec::H264 => format!("{} name=venc ! {H264_PARSE}", self.element),
            Codec::Vp8 => format!("{} name=venc ! video/x-vp8", self.element),
        })
    }

    /// The SDP `profile-level-id` for H.264, `None` for VP8.
    pub fn profile_level_id(&self, prefs: &VideoPrefs) -> Option<String> {
        (self.codec == Codec::H264).then(|| profile_level_id(prefs))
    }

    /// Sets the running encoder `venc` to `kbps`, in each element's property and unit
    /// ([`bitrate_settings`]). A property the element lacks, or of an unexpected type, is
    /// logged and skipped; this never panics.
    pub fn set_bitrate(&self, venc: &gst::Element, kbps: u32) {
        for setting in bitrate_settings(&self.element, kbps) {
            match setting.field {
                Some(field) => set_structure_field(venc, setting.property, field, setting.value),
                None => set_integer_property(venc, setting.property, setting.value),
            }
        }
    }
}

fn set_integer_property(element: &gst::Element, property: &str, value: u64) {
    let Some(pspec) = element.find_property(property) else {
        tracing::warn!(element = %element.name(), property, "no such bitrate property");
        return;
    };
    let ty = pspec.value_type();
    let v: gst::glib::Value = if ty == u32::static_type() {
        u32::try_from(value).unwrap_or(u32::MAX).to_value()
    } else if ty == i32::static_type() {
        i32::try_from(value).unwrap_or(i32::MAX).to_value()
    } else if ty == u64::static_type() {
        value.to_value()
    } else if ty == i64::static_type() {
        i64::try_from(value).unwrap_or(i64::MAX).to_value()
    } else {
        tracing::warn!(element = %element.name(), property, type_ = %ty, "bitrate property of an unexpected type");
        return;
    };
    element.set_property_from_value(property, &v);
}

/// Sets one field of a `GstStructure` property (v4l2's `extra-controls`), keeping the others.
/// GStreamer's v4l2 elements apply the controls at once when the device is open.
fn set_structure_field(element: &gst::Element, property: &str, field: &str, value: u64) {
    let Some(pspec) = element.find_property(property) else {
        tracing::warn!(element = %element.name(), property, "no such bitrate property");
        return;
    };
    if pspec.value_type() != gst::Structure::static_type() {
        tracing::warn!(element = %element.name(), property, "not a structure property");
        return;
    }
    let mut controls = element
        .property::<Option<gst::Structure>>(property)
        .unwrap_or_else(|| gst::Structure::new_empty("controls"));
    controls.set(field, i32::try_from(value).unwrap_or(i32::MAX));
    element.set_property(property, Some(controls));
}

/// What a successful probe measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// Raw frames fed in.
    pub frames_in: u32,
    /// Encoded buffers out.
    pub frames_out: u32,
    /// Encoded keyframes out.
    pub keyframes: u32,
    /// Wall time from PLAYING to end of stream.
    pub elapsed: Duration,
    /// The caps of the encoded stream.
    pub caps: String,
}

impl ProbeReport {
    /// Wall-clock encoding time per input frame, start-up included.
    pub fn ms_per_frame(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1000.0 / f64::from(self.frames_in.max(1))
    }
}

/// "Is this element installed, and does it work here?": the seam between the choice logic
/// and GStreamer.
pub trait ElementProbe {
    fn is_installed(&self, element: &str) -> bool;
    /// Runs `fragment` (raw I420 in, encoded out) on a short synthetic clip at the prefs'
    /// size and rate; `Err` says what went wrong.
    fn probe(
        &self,
        element: &str,
        fragment: &str,
        codec: Codec,
        prefs: &VideoPrefs,
    ) -> Result<ProbeReport, String>;
}

/// The real probe: GStreamer's registry and a short pipeline.
#[derive(Debug, Clone)]
pub struct GstProbe {
    /// Frames in the probe clip.
    pub frames: u32,
    /// How long a probe may run before it counts as failed.
    pub timeout: Duration,
}

impl GstProbe {
    /// Initialises GStreamer (idempotent) and gives a probe of 20 frames, 5 s at most.
    pub fn new() -> Result<GstProbe, EncoderError> {
        gst::init().map_err(|e| EncoderError::InitGstreamer {
            reason: e.to_string(),
        })?;
        Ok(GstProbe {
            frames: 20,
            timeout: Duration::from_secs(5),
        })
    }
}

#[derive(Debug, Default)]
struct ProbeCounts {
    buffers: u32,
    keyframes: u32,
    first_is_keyframe: Option<bool>,
}

impl ElementProbe for GstProbe {
    fn is_installed(&self, element: &str) -> bool {
        gst::ElementFactory::find(element).is_some()
    }

    fn probe(
        &self,
        _element: &str,
        fragment: &str,
        codec: Codec,
        prefs: &VideoPrefs,
    ) -> Result<ProbeReport, String> {
        let description = format!(
            "videotestsrc num-buffers={frames} pattern=ball ! \
             video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 ! {fragment} ! \
             fakesink name=probe_sink sync=false",
            frames = self.frames,
            w = prefs.width,
            h = prefs.height,
            fps = prefs.fps,
        );
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| format!("cannot build the probe pipeline: {e}"))?;
        let result = run_probe(&pipeline, self, codec);
        // Always back to NULL so the device (a hardware encoder node) is released.
        let _ = pipeline.set_state(gst::State::Null);
        result
    }
}

fn run_probe(
    pipeline: &gst::Element,
    probe: &GstProbe,
    codec: Codec,
) -> Result<ProbeReport, String> {
    let bin = pipeline
        .downcast_ref::<gst::Bin>()
        .ok_or("the probe is not a pipeline")?;
    let sink_pad = bin
        .by_name("probe_sink")
        .and_then(|sink| sink.static_pad("sink"))
        .ok_or("the probe has no sink pad")?;
    let counts = Arc::new(Mutex::new(ProbeCounts::default()));
    let counter = Arc::clone(&counts);
    sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
        if let Some(buffer) = info.buffer() {
            let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            if let Ok(mut c) = counter.lock() {
                c.buffers += 1;
                c.keyframes += u32::from(key);
                c.first_is_keyframe.get_or_insert(key);
            }
        }
        gst::PadProbeReturn::Ok
    });
    let bus = pipeline.bus().ok_or("the probe has no bus")?;
    let start = Instant::now();
    pipeline.set_state(gst::State::Playing).map_err(|_| {
        first_error(&bus).unwrap_or_else(|| "the pipeline would not start".to_owned())
    })?;
    let deadline = start + probe.timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no end of stream within {} s",
                probe.timeout.as_secs()
            ));
        }
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => break,
            Some(gst::MessageView::Error(err)) => return Err(error_text(err)),
            _ => {}
        }
    }
    let elapsed = start.elapsed();
    let caps = sink_pad
        .current_caps()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let c = counts.lock().map_err(|_| "probe counters poisoned")?;
    if c.buffers == 0 {
        return Err("no encoded buffers came out".to_owned());
    }
    if !caps.starts_with(codec.caps_name()) {
        return Err(format!("produced {caps}, not {}", codec.caps_name()));
    }
    if c.first_is_keyframe != Some(true) {
        return Err("the first encoded buffer is not a keyframe".to_owned());
    }
    Ok(ProbeReport {
        frames_in: probe.frames,
        frames_out: c.buffers,
        keyframes: c.keyframes,
        elapsed,
        caps,
    })
}

fn error_text(err: &gst::message::Error) -> String {
    let source = err
        .src()
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| "pipeline".to_owned());
    match err.debug() {
        Some(debug) => {
            let debug = debug.to_string();
            let first_line = debug.lines().last().unwrap_or_default();
            format!("{source}: {} ({first_line})", err.error())
        }
        None => format!("{source}: {}", err.error()),
    }
}

fn first_error(bus: &gst::Bus) -> Option<String> {
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_mseconds(100),
        &[gst::MessageType::Error],
    )?;
    match msg.view() {
        gst::MessageView::Error(err) => Some(error_text(err)),
        _ => None,
    }
}

/// Initialises GStreamer, then tries `candidates` in order with the real [`GstProbe`].
pub fn choose(candidates: &[String], prefs: &VideoPrefs) -> Result<EncoderChoice, EncoderError> {
    let probe = GstProbe::new()?;
    choose_with(&probe, candidates, prefs)
}

/// Tries `candidates` in order: installed? settings known? probe ok? The first that passes
/// is chosen; the reason lists every candidate tried. Pure apart from `probe`.
pub fn choose_with(
    probe: &dyn ElementProbe,
    candidates: &[String],
    prefs: &VideoPrefs,
) -> Result<EncoderChoice, EncoderError> {
    if candidates.is_empty() {
        return Err(EncoderError::NoCandidates);
    }
    let mut tried: Vec<(String, String)> = Vec::new();
    for element in candidates {
        let outcome = if !is_element_name(element) {
            Err(format!("not an element name ({})", gst_quote(element)))
        } else if !probe.is_installed(element) {
            Err("not installed".to_owned())
        } else if let (Some(kind), Some(fragment)) = (
            EncoderKind::from_element(element),
            fragment_for(element, prefs),
        ) {
            probe
                .probe(element, &fragment, kind.codec(), prefs)
                .map(|report| (kind, probe_ok_text(&report, prefs)))
                .map_err(|e| format!("probe failed ({e})"))
        } else {
            Err("installed, but kiosk-media has no low-latency settings for it".to_owned())
        };
        match outcome {
            Ok((kind, text)) => {
                tried.push((element.clone(), text));
                let reason = format!("{}; chosen {element}", describe_tried(&tried));
                tracing::info!(encoder = %element, %reason, "encoder chosen");
                return Ok(EncoderChoice {
                    element: element.clone(),
                    codec: kind.codec(),
                    reason,
                });
            }
            Err(text) => {
                tracing::info!(encoder = %element, outcome = %text, "encoder candidate skipped");
                tried.push((element.clone(), text));
            }
        }
    }
    Err(EncoderError::NoneUsable { tried })
}

fn probe_ok_text(report: &ProbeReport, prefs: &VideoPrefs) -> String {
    let ms = report.ms_per_frame();
    let budget = 1000.0 / f64::from(prefs.fps.max(1));
    if ms > budget {
        format!(
            "probe ok ({ms:.1} ms/frame, slower than real time at {} fps)",
            prefs.fps
        )
    } else {
        format!("probe ok ({ms:.1} ms/frame)")
    }
}

/// A scripted [`ElementProbe`] for tests of code that chooses encoders.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct FakeProbe {
    /// Installed elements and what their probe answers (`Ok(ms per frame)` or the error).
    pub installed: Vec<(String, Result<f64, String>)>,
    /// The fragments probed, in order.
    pub probed: Mutex<Vec<String>>,
}

#[cfg(any(test, feature = "test-util"))]
impl FakeProbe {
    /// `works` are installed and pass; `fails` are installed and fail their probe.
    pub fn new(works: &[&str], fails: &[&str]) -> FakeProbe {
        let mut installed: Vec<(String, Result<f64, String>)> =
            works.iter().map(|e| (e.to_string(), Ok(12.0))).collect();
        installed.extend(
            fails
                .iter()
                .map(|e| (e.to_string(), Err("no such device".to_owned()))),
        );
        FakeProbe {
            installed,
            probed: Mutex::new(Vec::new()),
        }
    }
}

#[cfg(any(test, feature = "test-util"))]
impl ElementProbe for FakeProbe {
    fn is_installed(&self, element: &str) -> bool {
        self.installed.iter().any(|(e, _)| e == element)
    }

    fn probe(
        &self,
        element: &str,
        fragment: &str,
        _codec: Codec,
        _prefs: &VideoPrefs,
    ) -> Result<ProbeReport, String> {
        if let Ok(mut probed) = self.probed.lock() {
            probed.push(fragment.to_owned());
        }
        let outcome = self
            .installed
            .iter()
            .find(|(e, _)| e == element)
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| Err("not installed".to_owned()))?;
        Ok(ProbeReport {
            frames_in: 20,
            frames_out: 20,
            keyframes: 1,
            elapsed: Duration::from_secs_f64(outcome * 20.0 / 1000.0),
            caps: "video/x-h264".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn board(name: &str) -> Vec<String> {
        let first: &[&str] = match name {
            "qemu" => &[],
            "rpi4" => &["v4l2h264enc"],
            "rock5b" => &["mpph264enc"],
            "imx8mp" => &["vpuenc_h264"],
            "jetson-orin" => &["nvv4l2h264enc"],
            "x86-generic" => &["vah264enc", "vaapih264enc"],
            other => panic!("unknown board {other}"),
        };
        let mut list = names(first);
        list.extend(names(&["x264enc", "openh264enc", "vp8enc"]));
        list
    }

    #[test]
    fn rpi4_without_its_codec_falls_back_to_x264() {
        let probe = FakeProbe::new(&["x264enc", "openh264enc", "vp8enc"], &[]);
        let choice = choose_with(&probe, &board("rpi4"), &VideoPrefs::default()).expect("choice");
        assert_eq!(choice.element, "x264enc");
        assert_eq!(choice.codec, Codec::H264);
        assert_eq!(
            choice.reason,
            "v4l2h264enc: not installed; x264enc: probe ok (12.0 ms/frame); chosen x264enc"
        );
    }

    #[test]
    fn rpi4_with_a_working_codec_uses_it() {
        let probe = FakeProbe::new(&["v4l2h264enc", "x264enc"], &[]);
        let choice = choose_with(&probe, &board("rpi4"), &VideoPrefs::default()).expect("choice");
        assert_eq!(choice.element, "v4l2h264enc");
        assert_eq!(
            choice.reason,
            "v4l2h264enc: probe ok (12.0 ms/frame); chosen v4l2h264enc"
        );
        let probed = probe.probed.lock().expect("lock");
        assert_eq!(probed.len(), 1);
        assert!(
            probed[0].contains("repeat_sequence_header=1"),
            "{}",
            probed[0]
        );
    }

    #[test]
    fn an_installed_encoder_that_fails_its_probe_is_skipped() {
        // An Orin Nano: the L4T element is installed but there is no NVENC.
        let probe = FakeProbe::new(&["x264enc"], &["nvv4l2h264enc"]);
        let choice =
            choose_with(&probe, &board("jetson-orin"), &VideoPrefs::default()).expect("choice");
        assert_eq!(choice.element, "x264enc");
        assert_eq!(
            choice.reason,
            "nvv4l2h264enc: probe failed (no such device); \
             x264enc: probe ok (12.0 ms/frame); chosen x264enc"
        );
    }

    #[test]
    fn every_board_prefers_its_hardware_encoder_when_it_works() {
        for (board_name, hw) in [
            ("rock5b", "mpph264enc"),
            ("imx8mp", "vpuenc_h264"),
            ("jetson-orin", "nvv4l2h264enc"),
            ("x86-generic", "vah264enc"),
        ] {
            let probe = FakeProbe::new(&[hw, "x264enc", "openh264enc", "vp8enc"], &[]);
            let choice =
                choose_with(&probe, &board(board_name), &VideoPrefs::default()).expect(board_name);
            assert_eq!(choice.element, hw, "{board_name}");
            assert_eq!(choice.codec, Codec::H264);
        }
    }

    #[test]
    fn x86_tries_both_va_plugins_before_software() {
        let probe = FakeProbe::new(&["openh264enc", "vp8enc"], &["vaapih264enc"]);
        let choice =
            choose_with(&probe, &board("x86-generic"), &VideoPrefs::default()).expect("choice");
        assert_eq!(choice.element, "openh264enc");
        assert_eq!(
            choice.reason,
            "vah264enc: not installed; vaapih264enc: probe failed (no such device); \
             x264enc: not installed; openh264enc: probe ok (12.0 ms/frame); chosen openh264enc"
        );
    }

    #[test]
    fn vp8_is_the_last_resort() {
        let probe = FakeProbe::new(&["vp8enc"], &["x264enc"]);
        let choice = choose_with(&probe, &board("qemu"), &VideoPrefs::default()).expect("choice");
        assert_eq!(choice.element, "vp8enc");
        assert_eq!(choice.codec, Codec::Vp8);
        assert_eq!(choice.profile_level_id(&VideoPrefs::default()), None);
    }

    #[test]
    fn slow_encoders_are_used_but_flagged() {
        let mut probe = FakeProbe::new(&[], &[]);
        probe.installed.push(("x264enc".to_owned(), Ok(45.0)));
        let choice =
            choose_with(&probe, &names(&["x264enc"]), &VideoPrefs::default()).expect("choice");
        assert_eq!(
            choice.reason,
            "x264enc: probe ok (45.0 ms/frame, slower than real time at 30 fps); chosen x264enc"
        );
    }

    #[test]
    fn unknown_and_malformed_candidates_are_skipped_with_a_reason() {
        let probe = FakeProbe::new(&["avenc_h264_omx", "x264enc"], &[]);
        let list = names(&["avenc_h264_omx", "x264enc ! fakesink", "x264enc"]);
        let choice = choose_with(&probe, &list, &VideoPrefs::default()).expect("choice");
        assert_eq!(choice.element, "x264enc");
        assert!(
            choice.reason.starts_with(
                "avenc_h264_omx: installed, but kiosk-media has no low-latency settings for it; \
                 x264enc ! fakesink: not an element name (\"x264enc ! fakesink\"); "
            ),
            "{}",
            choice.reason
        );
    }

    #[test]
    fn no_candidates_and_none_usable_are_errors() {
        let probe = FakeProbe::new(&[], &["x264enc"]);
        assert_eq!(
            choose_with(&probe, &[], &VideoPrefs::default()),
            Err(EncoderError::NoCandidates)
        );
        let err = choose_with(&probe, &names(&["nope", "x264enc"]), &VideoPrefs::default())
            .expect_err("none usable");
        assert_eq!(
            err,
            EncoderError::NoneUsable {
                tried: vec![
                    ("nope".to_owned(), "not installed".to_owned()),
                    (
                        "x264enc".to_owned(),
                        "probe failed (no such device)".to_owned()
                    ),
                ]
            }
        );
        assert_eq!(
            err.to_string(),
            "choose an encoder: none usable (nope: not installed; \
             x264enc: probe failed (no such device))"
        );
    }

    #[test]
    fn levels_and_profile_level_ids() {
        let p = |width, height, fps, max_kbps| VideoPrefs {
            width,
            height,
            fps,
            max_kbps,
        };
        assert_eq!(profile_level_id(&VideoPrefs::default()), "42e01f");
        assert_eq!(h264_level(&VideoPrefs::default()).name, "3.1");
        assert_eq!(profile_level_id(&p(640, 480, 30, 1000)), "42e01f");
        assert_eq!(profile_level_id(&p(1280, 720, 60, 3000)), "42e020");
        assert_eq!(profile_level_id(&p(1920, 1080, 30, 6000)), "42e028");
        assert_eq!(profile_level_id(&p(1920, 1080, 30, 20000)), "42e028");
        assert_eq!(profile_level_id(&p(1920, 1080, 60, 8000)), "42e02a");
        assert_eq!(profile_level_id(&p(1280, 720, 30, 16000)), "42e020");
        assert_eq!(keyframe_interval(&VideoPrefs::default()), 60);
    }

    #[test]
    fn x264_fragment_is_low_latency_constrained_baseline() {
        let f = fragment_for("x264enc", &VideoPrefs::default()).expect("x264");
        for part in [
            "x264enc name=venc ",
            "tune=zerolatency",
            "speed-preset=ultrafast",
            "bframes=0",
            "key-int-max=60",
            "bitrate=3000 ",
            "vbv-buf-capacity=120",
            "threads=2",
            "video/x-h264,profile=constrained-baseline,level=(string)3.1",
            "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au",
        ] {
            assert!(f.contains(part), "{part} missing from {f}");
        }
    }

    #[test]
    fn every_known_encoder_has_a_fragment_naming_venc() {
        let p = VideoPrefs::default();
        for element in [
            "x264enc",
            "openh264enc",
            "v4l2h264enc",
            "mpph264enc",
            "vpuenc_h264",
            "nvv4l2h264enc",
            "vah264enc",
            "vaapih264enc",
            "vp8enc",
        ] {
            let f = fragment_for(element, &p).expect(element);
            assert!(f.contains(&format!("{element} name=venc ")), "{f}");
            let kind = EncoderKind::from_element(element).expect(element);
            match kind.codec() {
                Codec::H264 => assert!(f.ends_with(H264_PARSE), "{f}"),
                Codec::Vp8 => assert!(f.ends_with("video/x-vp8"), "{f}"),
            }
        }
        assert_eq!(fragment_for("nosuchenc", &p), None);
    }

    #[test]
    fn v4l2_fragment_sets_the_controls() {
        let f = fragment_for("v4l2h264enc", &VideoPrefs::default()).expect("v4l2");
        assert!(
            f.contains(
                "extra-controls=\"controls,h264_profile=1,h264_level=9,repeat_sequence_header=1,\
                 video_bitrate_mode=1,video_bitrate=3000000,h264_i_frame_period=60\""
            ),
            "{f}"
        );
    }

    #[test]
    fn bitrate_units_per_element() {
        let one = |e: &str| bitrate_settings(e, 2500);
        let plain = |property, value| BitrateSetting {
            property,
            field: None,
            value,
        };
        assert_eq!(one("x264enc"), [plain("bitrate", 2500)]);
        assert_eq!(
            one("openh264enc"),
            [plain("bitrate", 2_500_000), plain("max-bitrate", 2_500_000)]
        );
        assert_eq!(one("vp8enc"), [plain("target-bitrate", 2_500_000)]);
        assert_eq!(
            one("v4l2h264enc"),
            [BitrateSetting {
                property: "extra-controls",
                field: Some("video_bitrate"),
                value: 2_500_000
            }]
        );
        assert_eq!(one("vah264enc"), [plain("bitrate", 2500)]);
        assert_eq!(one("vpuenc_h264"), [plain("bitrate", 2500)]);
        assert_eq!(
            one("mpph264enc"),
            [plain("bps", 2_500_000), plain("bps-max", 2_500_000)]
        );
        assert!(one("nosuchenc").is_empty());
    }

    #[test]
    fn fallback_fragment_for_hand_made_choices() {
        let choice = EncoderChoice {
            element: "someh264enc".to_owned(),
            codec: Codec::H264,
            reason: String::new(),
        };
        assert_eq!(
            choice.fragment(&VideoPrefs::default()),
            format!("someh264enc name=venc ! {H264_PARSE}")
        );
        assert_eq!(
            choice.profile_level_id(&VideoPrefs::default()).as_deref(),
            Some("42e01f")
        );
    }
}
