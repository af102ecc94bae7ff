//! The webrtcbin engine under both [`crate::session::CallSession`] (the kiosk, which offers)
//! and [`crate::agent::AgentSim`] (the agent simulator, which answers).
//!
//! One pipeline per call:
//!
//! ```text
//! source bin ─ identity(stamp) ─[tee ─ preview]─ queue ─ encoder(venc) ─ pay ─ caps ─┐
//! audio source ─ opusenc ─ rtpopuspay ─ caps ─────────────────────────────────────────┤ webrtcbin
//!   webrtcbin src pads ─ depay ─ decoder ─ I420 ─ identity(rxframes) ─ sink  ◀──────────┘
//! ```
//!
//! Threads: GStreamer's own streaming threads and webrtcbin's operation thread run the media
//! and the negotiation callbacks; they only send messages (non-blocking channel sends). One
//! control thread per peer receives the bus messages (through a sync handler), asks for stats
//! every second, forces a keyframe when DTLS connects and swaps the video source when the
//! camera fails. Nothing here is async.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_sdp as gst_sdp;
use gstreamer_video as gst_video;
use gstreamer_webrtc as gst_webrtc;
use kiosk_protocol::call::{IceServer, PeerSignal, SdpType};
use kiosk_protocol::telemetry::CallStats;
use tokio::sync::mpsc::UnboundedSender;

use crate::board::VideoPrefs;
use crate::camera::VideoSource;
use crate::encoder::{Codec, EncoderChoice};
use crate::frames::{stamp_frames, CountingSink, FrameTally};
use crate::stamp::unix_ms;
use crate::stats::{Figures, StatsTracker};

/// RTP payload type of the video (H.264 or VP8).
pub const VIDEO_PT: u32 = 96;
/// RTP payload type of the audio (Opus).
pub const AUDIO_PT: u32 = 97;
/// The transport-wide congestion control header extension, offered on both m-lines.
pub const TWCC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// Field we put in our own force-key-unit events so they are not counted as the peer's.
const OWN_REQUEST: &str = "kiosk-own-request";

/// What a peer tells its owner. Sent from GStreamer threads on an unbounded channel.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A negotiation message for the other peer (SDP, or a candidate; an empty candidate
    /// says there are no more).
    Signal(PeerSignal),
    /// ICE and DTLS are connected: media flows.
    Connected,
    /// A point on the call's timeline (for the benchmark), Unix milliseconds.
    Milestone { milestone: Milestone, at_ms: i64 },
    /// Latency of one stamped remote frame, milliseconds.
    LatencySample { ms: u32 },
    /// The peer asked for a keyframe (PLI or FIR); `total` so far.
    KeyframeRequested { total: u64 },
    /// The video source changed (the camera failed, or came back); said plainly.
    SourceChanged { description: String, reason: String },
    /// One second of statistics.
    Stats(Box<CallStats>),
    /// The call cannot go on; the owner ends it.
    Failed { reason: String },
}

/// Timeline points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Milestone {
    OfferCreated,
    AnswerCreated,
    IceConnected,
    DtlsConnected,
    /// The first keyframe the encoder produced once DTLS was up (the one the peer starts on).
    FirstKeyframeSent,
    /// The first remote video frame decoded.
    FirstRemoteFrame,
}

impl Milestone {
    pub fn as_str(self) -> &'static str {
        match self {
            Milestone::OfferCreated => "offer-created",
            Milestone::AnswerCreated => "answer-created",
            Milestone::IceConnected => "ice-connected",
            Milestone::DtlsConnected => "dtls-connected",
            Milestone::FirstKeyframeSent => "first-keyframe-sent",
            Milestone::FirstRemoteFrame => "first-remote-frame",
        }
    }
}

/// A peer could not be started or could not apply a signal.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("build the pipeline ({what}): {message}")]
    Build { what: String, message: String },
    #[error("start the pipeline: {0}")]
    Start(String),
    #[error("the peer's SDP does not parse")]
    BadSdp,
    #[error("the call has ended")]
    Ended,
    #[error("the peer's signal is too large: {0}")]
    TooLarge(String),
}

fn build_err(what: &str, e: impl std::fmt::Display) -> SessionError {
    SessionError::Build {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// Who makes the first offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Offerer,
    Answerer,
}

/// Where the video comes from.
pub(crate) enum SourceSpec {
    /// The kiosk's source; a camera that fails is replaced by the test pattern and retried.
    Kiosk {
        source: Arc<VideoSource>,
        retry: Duration,
    },
    /// A fixed fragment (the agent's test pattern).
    Fragment(String),
}

/// Where remote video goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteVideoSink {
    Element(String),
    Count,
    Fakesink,
}

pub(crate) struct PeerConfig {
    pub label: &'static str,
    pub role: Role,
    pub call: String,
    pub source: SourceSpec,
    pub prefs: Arc<VideoPrefs>,
    pub encoder: Arc<EncoderChoice>,
    pub audio_input: Option<String>,
    pub video_out: RemoteVideoSink,
    pub audio_out: String,
    pub preview: Option<String>,
    pub latency_ms: u32,
    pub stamp: bool,
    pub ice_servers: Vec<IceServer>,
}

enum Ctl {
    Bus(gst::Message),
    Caps,
    DtlsConnected,
    Stats(gst::Structure),
    Stop,
}

#[derive(Default)]
struct Negotiation {
    remote_set: bool,
    pending: Vec<(u32, String)>,
    offered: bool,
    gathered: bool,
    ice_connected: bool,
}

struct Shared {
    label: &'static str,
    role: Role,
    call: String,
    events: UnboundedSender<MediaEvent>,
    ctl: mpsc::Sender<Ctl>,
    neg: Mutex<Negotiation>,
    frames_sent: AtomicU64,
    keyframes: AtomicU64,
    requests: AtomicU64,
    connected: AtomicBool,
    await_first_keyframe: AtomicBool,
    failed: AtomicBool,
    rx: FrameTally,
    latest: Mutex<Option<CallStats>>,
    depay: Mutex<Option<glib::WeakRef<gst::Element>>>,
    /// The remote video's SSRC + 1 (0: unknown).
    rx_ssrc: AtomicU64,
    video_out: RemoteVideoSink,
    audio_out: String,
}

impl Shared {
    fn emit(&self, e: MediaEvent) {
        let _ = self.events.send(e);
    }

    fn milestone(&self, milestone: Milestone) {
        tracing::debug!(
            peer = self.label,
            milestone = milestone.as_str(),
            "milestone"
        );
        self.emit(MediaEvent::Milestone {
            milestone,
            at_ms: unix_ms(),
        });
    }

    fn fail(&self, reason: String) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            tracing::warn!(peer = self.label, call = %self.call, %reason, "call failed");
            self.emit(MediaEvent::Failed { reason });
        }
    }
}

/// A running webrtcbin peer.
pub(crate) struct Peer {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    shared: Arc<Shared>,
    control: Option<JoinHandle<()>>,
    stopped: bool,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("label", &self.shared.label)
            .field("call", &self.shared.call)
            .finish()
    }
}

/// Counters a peer keeps; cheap to read from any thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames_sent: u64,
    pub keyframes_sent: u64,
    pub keyframe_requests: u64,
    pub frames_decoded: u64,
    pub stamps_read: u64,
}

/// Percent-encodes a TURN user name or password for a `turn://user:pass@host` URI.
pub fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// webrtcbin's spelling of a call's ICE servers: the first STUN server as `stun://host:port`,
/// and every TURN URL as `turn(s)://user:pass@host:port[?transport=…]`.
pub fn webrtcbin_ice_servers(servers: &[IceServer]) -> (Option<String>, Vec<String>) {
    let mut stun = None;
    let mut turn = Vec::new();
    for server in servers {
        for url in &server.urls {
            if let Some(rest) = url.strip_prefix("stun:") {
                if stun.is_none() {
                    stun = Some(format!("stun://{}", rest.trim_start_matches("//")));
                }
            } else if let Some((scheme, rest)) = url
                .strip_prefix("turns:")
                .map(|r| ("turns", r))
                .or_else(|| url.strip_prefix("turn:").map(|r| ("turn", r)))
            {
                let rest = rest.trim_start_matches("//");
                let user = server.username.as_deref().unwrap_or("");
                let pass = server.credential.as_deref().unwrap_or("");
                turn.push(format!(
                    "{scheme}://{}:{}@{rest}",
                    uri_escape(user),
                    uri_escape(pass)
                ));
            }
        }
    }
    (stun, turn)
}

fn video_send_description(cfg: &PeerConfig) -> String {
    let pay = match cfg.encoder.codec {
        Codec::H264 => format!(
            "rtph264pay name=vpay config-interval=-1 aggregate-mode=zero-latency mtu=1200 pt={VIDEO_PT}"
        ),
        Codec::Vp8 => {
            format!("rtpvp8pay name=vpay picture-id-mode=15-bit mtu=1200 pt={VIDEO_PT}")
        }
    };
    let encode = format!(
        "queue name=vqueue max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream ! {} ! {pay} ! capsfilter name=vcaps",
        cfg.encoder.fragment(&cfg.prefs)
    );
    match &cfg.preview {
        Some(sink) => format!(
            "identity name=stamp silent=true ! tee name=vtee ! {encode} \
             vtee. ! queue max-size-buffers=2 leaky=downstream ! videoconvert ! {sink} sync=false"
        ),
        None => format!("identity name=stamp silent=true ! {encode}"),
    }
}

/// The caps after the video payloader. They hold every field the offer must carry: webrtcbin
/// builds an offer from the caps it has received on its sink pad, or from a caps query when
/// the caps event is still on its way, and the query answers with these fields only. H.264's
/// `packetization-mode=1` is what rtph264pay sends and what browsers require to match.
fn video_rtp_caps(codec: &Codec) -> gst::Caps {
    let name = match codec {
        Codec::H264 => "H264",
        Codec::Vp8 => "VP8",
    };
    let caps = gst::Caps::builder("application/x-rtp")
        .field("media", "video")
        .field("encoding-name", name)
        .field("payload", VIDEO_PT as i32)
        .field("clock-rate", 90_000i32)
        .field("rtcp-fb-nack-pli", true)
        .field("rtcp-fb-ccm-fir", true)
        .field("rtcp-fb-transport-cc", true)
        .field("extmap-1", TWCC_URI);
    match codec {
        Codec::H264 => caps.field("packetization-mode", "1").build(),
        Codec::Vp8 => caps.build(),
    }
}

fn audio_rtp_caps() -> gst::Caps {
    gst::Caps::builder("application/x-rtp")
        .field("media", "audio")
        .field("encoding-name", "OPUS")
        .field("payload", AUDIO_PT as i32)
        .field("clock-rate", 48_000i32)
        .field("rtcp-fb-transport-cc", true)
        .field("extmap-1", TWCC_URI)
        .build()
}

/// Builds a source bin and checks that it opens (READY) on its own, so a missing camera is
/// found before the pipeline runs.
fn open_source(fragment: &str) -> Result<gst::Bin, String> {
    // The fragment may end in caps, which a launch line cannot end with: a leaky queue
    // follows, which also keeps a live source running while the encoder is busy.
    let desc = format!(
        "{fragment} ! queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream"
    );
    let bin = gst::parse::bin_from_description(&desc, true).map_err(|e| e.to_string())?;
    if bin.set_state(gst::State::Ready).is_err() {
        let _ = bin.set_state(gst::State::Null);
        return Err("the device did not open".into());
    }
    Ok(bin)
}

fn link_source(pipeline: &gst::Pipeline, bin: &gst::Bin, sink: &gst::Pad) -> Result<(), String> {
    pipeline.add(bin).map_err(|e| e.to_string())?;
    let src = bin
        .static_pad("src")
        .ok_or_else(|| "the source has no output".to_string())?;
    src.link(sink).map_err(|e| e.to_string())?;
    Ok(())
}

fn remove_source(pipeline: &gst::Pipeline, bin: &gst::Bin, sink: &gst::Pad) {
    let _ = bin.set_state(gst::State::Null);
    if let Some(src) = bin.static_pad("src") {
        let _ = src.unlink(sink);
    }
    let _ = pipeline.remove(bin);
}

/// The kiosk's video source: which bin runs and whether it is the fallback.
struct SourceState {
    source: Arc<VideoSource>,
    prefs: Arc<VideoPrefs>,
    retry: Duration,
    bin: gst::Bin,
    fallback_since: Option<Instant>,
    sink: gst::Pad,
}

impl SourceState {
    fn is_from(&self, msg: &gst::Message) -> bool {
        let mut obj = msg.src().cloned();
        while let Some(o) = obj {
            if o == *self.bin.upcast_ref::<gst::Object>() {
                return true;
            }
            obj = o.parent();
        }
        false
    }

    fn fall_back(&mut self, pipeline: &gst::Pipeline, shared: &Shared, why: &str) {
        let reason = format!("{} failed: {why}", self.source.describe());
        let pattern = VideoSource::test_pattern(&reason);
        remove_source(pipeline, &self.bin, &self.sink);
        match open_source(&pattern.source_fragment(&self.prefs)).and_then(|bin| {
            link_source(pipeline, &bin, &self.sink)?;
            bin.sync_state_with_parent().map_err(|e| e.to_string())?;
            Ok(bin)
        }) {
            Ok(bin) => {
                self.bin = bin;
                self.fallback_since = Some(Instant::now());
                tracing::warn!(%reason, "camera failed; sending the test pattern and retrying");
                shared.emit(MediaEvent::SourceChanged {
                    description: pattern.describe(),
                    reason,
                });
            }
            Err(e) => shared.fail(format!("{reason}; the test pattern failed too: {e}")),
        }
    }

    fn retry(&mut self, pipeline: &gst::Pipeline, shared: &Shared) {
        let Some(since) = self.fallback_since else {
            return;
        };
        if since.elapsed() < self.retry || !matches!(*self.source, VideoSource::Camera(_)) {
            return;
        }
        self.fallback_since = Some(Instant::now());
        let Ok(camera) = open_source(&self.source.source_fragment(&self.prefs)) else {
            tracing::debug!(camera = %self.source.describe(), "camera still unavailable");
            return;
        };
        let old = self.bin.clone();
        remove_source(pipeline, &old, &self.sink);
        let started = link_source(pipeline, &camera, &self.sink)
            .and_then(|()| camera.sync_state_with_parent().map_err(|e| e.to_string()));
        match started {
            Ok(()) => {
                self.bin = camera;
                self.fallback_since = None;
                tracing::info!(camera = %self.source.describe(), "camera is back");
                shared.emit(MediaEvent::SourceChanged {
                    description: self.source.describe(),
                    reason: "the camera is back".into(),
                });
            }
            Err(e) => {
                remove_source(pipeline, &camera, &self.sink);
                self.bin = old;
                let _ = link_source(pipeline, &self.bin, &self.sink);
                let _ = self.bin.sync_state_with_parent();
                tracing::debug!(error = %e, "camera did not start again");
            }
        }
    }
}

impl Peer {
    pub(crate) fn start(
        cfg: PeerConfig,
        events: UnboundedSender<MediaEvent>,
    ) -> Result<Peer, SessionError> {
        gst::init().map_err(|e| build_err("gstreamer", e))?;
        let (ctl_tx, ctl_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            label: cfg.label,
            role: cfg.role,
            call: cfg.call.clone(),
            events,
            ctl: ctl_tx.clone(),
            neg: Mutex::new(Negotiation::default()),
            frames_sent: AtomicU64::new(0),
            keyframes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            await_first_keyframe: AtomicBool::new(true),
            failed: AtomicBool::new(false),
            rx: FrameTally::new(),
            latest: Mutex::new(None),
            depay: Mutex::new(None),
            rx_ssrc: AtomicU64::new(0),
            video_out: cfg.video_out.clone(),
            audio_out: cfg.audio_out.clone(),
        });
        {
            let a = Arc::downgrade(&shared);
            let b = Arc::downgrade(&shared);
            shared.rx.set_hooks(
                Some(Box::new(move |ms| {
                    if let Some(s) = a.upgrade() {
                        s.emit(MediaEvent::LatencySample { ms });
                    }
                })),
                Some(Box::new(move |_| {
                    if let Some(s) = b.upgrade() {
                        s.milestone(Milestone::FirstRemoteFrame);
                    }
                })),
            );
        }

        let pipeline = gst::Pipeline::with_name(&format!("{}-call", cfg.label));
        let webrtc = gst::ElementFactory::make("webrtcbin")
            .name("webrtc")
            .property_from_str("bundle-policy", "max-bundle")
            .property("latency", cfg.latency_ms)
            .build()
            .map_err(|e| build_err("webrtcbin", e))?;
        let (stun, turn) = webrtcbin_ice_servers(&cfg.ice_servers);
        if let Some(stun) = stun {
            webrtc.set_property("stun-server", stun);
        }
        for t in turn {
            if !webrtc.emit_by_name::<bool>("add-turn-server", &[&t]) {
                tracing::warn!(peer = cfg.label, "webrtcbin refused a TURN server");
            }
        }
        pipeline
            .add(&webrtc)
            .map_err(|e| build_err("webrtcbin", e))?;

        // Video out.
        let vsend = gst::parse::bin_from_description(&video_send_description(&cfg), true)
            .map_err(|e| build_err("video encoder", e))?;
        pipeline.add(&vsend).map_err(|e| build_err("video", e))?;
        if let Some(caps) = vsend.by_name("vcaps") {
            caps.set_property("caps", video_rtp_caps(&cfg.encoder.codec));
        }
        let vsend_sink = vsend
            .static_pad("sink")
            .ok_or_else(|| build_err("video", "no input"))?;
        let mut source_state = None;
        match &cfg.source {
            SourceSpec::Fragment(f) => {
                let bin = open_source(f).map_err(|e| build_err("video source", e))?;
                link_source(&pipeline, &bin, &vsend_sink)
                    .map_err(|e| build_err("video source", e))?;
            }
            SourceSpec::Kiosk { source, retry } => {
                let (bin, fallback) = match open_source(&source.source_fragment(&cfg.prefs)) {
                    Ok(bin) => (bin, None),
                    Err(e) => {
                        let reason = format!("{} failed: {e}", source.describe());
                        let pattern = VideoSource::test_pattern(&reason);
                        let bin = open_source(&pattern.source_fragment(&cfg.prefs))
                            .map_err(|e| build_err("test pattern", e))?;
                        tracing::warn!(%reason, "camera unavailable; sending the test pattern");
                        shared.emit(MediaEvent::SourceChanged {
                            description: pattern.describe(),
                            reason,
                        });
                        (bin, Some(Instant::now()))
                    }
                };
                link_source(&pipeline, &bin, &vsend_sink)
                    .map_err(|e| build_err("video source", e))?;
                source_state = Some(SourceState {
                    source: source.clone(),
                    prefs: cfg.prefs.clone(),
                    retry: *retry,
                    bin,
                    fallback_since: fallback,
                    sink: vsend_sink.clone(),
                });
            }
        }
        let vpad = webrtc
            .request_pad_simple("sink_%u")
            .ok_or_else(|| build_err("webrtcbin", "no video input pad"))?;
        vsend
            .static_pad("src")
            .ok_or_else(|| build_err("video", "no output"))?
            .link(&vpad)
            .map_err(|e| build_err("video link", e))?;
        let mut sink_pads = vec![vpad.clone()];
        // Retransmissions (RTX) appear in webrtcbin 1.22's offer only with NACK on.
        vpad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver")
            .set_property("do-nack", true);

        // Audio out, or receive-only audio.
        match &cfg.audio_input {
            Some(src) => {
                let desc = format!(
                    "{src} ! audioconvert ! audioresample ! volume name=amute ! queue max-size-time=100000000 leaky=downstream \
                     ! opusenc bitrate=32000 frame-size=20 ! rtpopuspay name=apay pt={AUDIO_PT} mtu=1200 \
                     ! capsfilter name=acaps"
                );
                let asend = gst::parse::bin_from_description(&desc, true)
                    .map_err(|e| build_err("audio", e))?;
                if let Some(caps) = asend.by_name("acaps") {
                    caps.set_property("caps", audio_rtp_caps());
                }
                pipeline.add(&asend).map_err(|e| build_err("audio", e))?;
                let apad = webrtc
                    .request_pad_simple("sink_%u")
                    .ok_or_else(|| build_err("webrtcbin", "no audio input pad"))?;
                asend
                    .static_pad("src")
                    .ok_or_else(|| build_err("audio", "no output"))?
                    .link(&apad)
                    .map_err(|e| build_err("audio link", e))?;
                sink_pads.push(apad);
            }
            None => {
                let _ = webrtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                    "add-transceiver",
                    &[
                        &gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly,
                        &audio_rtp_caps(),
                    ],
                );
            }
        }

        // Probes: keyframes out, keyframe requests in, stamps, caps.
        if let Some(venc) = vsend.by_name("venc") {
            if let Some(src) = venc.static_pad("src") {
                let sh = Arc::downgrade(&shared);
                src.add_probe(
                    gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_UPSTREAM,
                    move |_, info| {
                        let Some(sh) = sh.upgrade() else {
                            return gst::PadProbeReturn::Ok;
                        };
                        match &info.data {
                            Some(gst::PadProbeData::Buffer(b)) => {
                                sh.frames_sent.fetch_add(1, Ordering::Relaxed);
                                if !b.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                                    sh.keyframes.fetch_add(1, Ordering::Relaxed);
                                    if sh.connected.load(Ordering::SeqCst)
                                        && sh.await_first_keyframe.swap(false, Ordering::SeqCst)
                                    {
                                        sh.milestone(Milestone::FirstKeyframeSent);
                                    }
                                }
                            }
                            Some(gst::PadProbeData::Event(e)) => {
                                if let Some(s) = e.structure() {
                                    if s.name() == "GstForceKeyUnit" && !s.has_field(OWN_REQUEST) {
                                        let total = sh.requests.fetch_add(1, Ordering::Relaxed) + 1;
                                        tracing::debug!(
                                            peer = sh.label,
                                            total,
                                            "keyframe requested by the peer"
                                        );
                                        sh.emit(MediaEvent::KeyframeRequested { total });
                                    }
                                }
                            }
                            _ => {}
                        }
                        gst::PadProbeReturn::Ok
                    },
                );
            }
        }
        if cfg.stamp {
            if let Some(pad) = vsend.by_name("stamp").and_then(|s| s.static_pad("src")) {
                stamp_frames(&pad);
            }
        }
        for pad in &sink_pads {
            let ctl = ctl_tx.clone();
            pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(e)) = &info.data {
                    if e.type_() == gst::EventType::Caps {
                        let _ = ctl.send(Ctl::Caps);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }

        connect_signals(&webrtc, &pipeline, &shared);

        let bus = pipeline
            .bus()
            .ok_or_else(|| build_err("pipeline", "no bus"))?;
        {
            let ctl = ctl_tx.clone();
            bus.set_sync_handler(move |_, msg| {
                let _ = ctl.send(Ctl::Bus(msg.clone()));
                gst::BusSyncReply::Drop
            });
        }

        let control = {
            let pipeline = pipeline.clone();
            let webrtc = webrtc.clone();
            let shared = shared.clone();
            let sink_pads = sink_pads.clone();
            let venc = vsend.by_name("venc");
            let vpay = vsend.by_name("vpay");
            std::thread::Builder::new()
                .name(format!("{}-control", cfg.label))
                .spawn(move || {
                    control_loop(ControlCtx {
                        pipeline,
                        webrtc,
                        shared,
                        sink_pads,
                        venc,
                        vpay,
                        source: source_state,
                        rx: ctl_rx,
                    })
                })
                .map_err(|e| build_err("control thread", e))?
        };
        let mut peer = Peer {
            pipeline,
            webrtc,
            shared,
            control: Some(control),
            stopped: false,
        };
        if let Err(e) = peer.pipeline.set_state(gst::State::Playing) {
            peer.stop();
            return Err(SessionError::Start(e.to_string()));
        }
        tracing::info!(peer = cfg.label, call = %cfg.call, encoder = %cfg.encoder.element, "call pipeline running");
        Ok(peer)
    }

    /// Applies the other peer's SDP or candidate.
    pub(crate) fn add_remote(&self, signal: PeerSignal) -> Result<(), SessionError> {
        if self.stopped {
            return Err(SessionError::Ended);
        }
        match signal {
            PeerSignal::Sdp { sdp_type, sdp } => {
                let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
                    .map_err(|_| SessionError::BadSdp)?;
                let kind = match sdp_type {
                    SdpType::Offer => gst_webrtc::WebRTCSDPType::Offer,
                    SdpType::Answer => gst_webrtc::WebRTCSDPType::Answer,
                };
                let desc = gst_webrtc::WebRTCSessionDescription::new(kind, msg);
                let sh = self.shared.clone();
                let w = self.webrtc.downgrade();
                let promise = gst::Promise::with_change_func(move |reply| {
                    let Some(webrtc) = w.upgrade() else { return };
                    if let Err(e) = reply_ok(&reply) {
                        sh.fail(format!("the peer's {} was refused: {e}", sdp_type.as_str()));
                        return;
                    }
                    let pending = match sh.neg.lock() {
                        Ok(mut n) => {
                            n.remote_set = true;
                            std::mem::take(&mut n.pending)
                        }
                        Err(_) => Vec::new(),
                    };
                    for (mline, c) in pending {
                        webrtc.emit_by_name::<()>("add-ice-candidate", &[&mline, &c]);
                    }
                    if sdp_type == SdpType::Offer {
                        create_answer(&sh, &webrtc);
                    }
                });
                self.webrtc
                    .emit_by_name::<()>("set-remote-description", &[&desc, &promise]);
            }
            PeerSignal::Ice {
                candidate,
                sdp_mline_index,
            } => {
                if candidate.is_empty() {
                    return Ok(());
                }
                let mut n = self.shared.neg.lock().map_err(|_| SessionError::Ended)?;
                if n.remote_set {
                    drop(n);
                    self.webrtc
                        .emit_by_name::<()>("add-ice-candidate", &[&sdp_mline_index, &candidate]);
                } else {
                    n.pending.push((sdp_mline_index, candidate));
                }
            }
        }
        Ok(())
    }

    /// Makes a new offer (renegotiation, or the agent simulator's own offer).
    pub(crate) fn offer(&self) {
        create_offer(&self.shared, &self.webrtc);
    }

    /// Sends a keyframe request upstream from the remote video's depayloader: webrtcbin turns it
    /// into an RTCP PLI to the other peer. Returns false before remote video arrived.
    pub(crate) fn request_keyframe(&self) -> bool {
        let depay = self
            .shared
            .depay
            .lock()
            .ok()
            .and_then(|d| d.as_ref().and_then(|w| w.upgrade()));
        let Some(pad) = depay.and_then(|d| d.static_pad("src")) else {
            return false;
        };
        pad.send_event(
            gst_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build(),
        )
    }

    pub(crate) fn counters(&self) -> Counters {
        let s = &self.shared;
        Counters {
            frames_sent: s.frames_sent.load(Ordering::Relaxed),
            keyframes_sent: s.keyframes.load(Ordering::Relaxed),
            keyframe_requests: s.requests.load(Ordering::Relaxed),
            frames_decoded: s.rx.frames(),
            stamps_read: s.rx.stamped(),
        }
    }

    pub(crate) fn latest_stats(&self) -> Option<CallStats> {
        self.shared.latest.lock().ok().and_then(|s| s.clone())
    }

    /// Mutes or unmutes the microphone (the `amute` volume before the encoder: the agent
    /// hears silence, the track and its timing stay). `false` when there is no microphone.
    pub(crate) fn set_muted(&self, muted: bool) -> bool {
        let Some(pipeline) = self.pipeline_weak().upgrade() else {
            return false;
        };
        match pipeline.by_name("amute") {
            Some(volume) => {
                volume.set_property("mute", muted);
                true
            }
            None => false,
        }
    }

    pub(crate) fn pipeline_weak(&self) -> glib::WeakRef<gst::Pipeline> {
        self.pipeline.downgrade()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Stops the control thread and takes the pipeline to NULL. Returns whether NULL was
    /// reached.
    pub(crate) fn stop(&mut self) -> bool {
        if self.stopped {
            return true;
        }
        self.stopped = true;
        let _ = self.shared.ctl.send(Ctl::Stop);
        if let Some(h) = self.control.take() {
            let _ = h.join();
        }
        if let Some(bus) = self.pipeline.bus() {
            bus.unset_sync_handler();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        let (res, state, _) = self.pipeline.state(gst::ClockTime::from_seconds(5));
        if let Ok(mut d) = self.shared.depay.lock() {
            *d = None;
        }
        let ok = res.is_ok() && state == gst::State::Null;
        tracing::info!(peer = self.shared.label, call = %self.shared.call, null = ok, "call pipeline stopped");
        ok
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn reply_ok(reply: &Result<Option<&gst::StructureRef>, gst::PromiseError>) -> Result<(), String> {
    match reply {
        Ok(Some(s)) => match s.get::<glib::Error>("error") {
            Ok(e) => Err(e.to_string()),
            Err(_) => Ok(()),
        },
        Ok(None) => Ok(()),
        Err(e) => Err(format!("{e:?}")),
    }
}

fn create_offer(shared: &Arc<Shared>, webrtc: &gst::Element) {
    let sh = shared.clone();
    let w = webrtc.downgrade();
    let promise = gst::Promise::with_change_func(move |reply| {
        let Some(webrtc) = w.upgrade() else { return };
        let offer = match reply {
            Ok(Some(r)) => r.get::<gst_webrtc::WebRTCSessionDescription>("offer").ok(),
            _ => None,
        };
        let Some(offer) = offer else {
            sh.fail(format!(
                "webrtcbin made no offer: {:?}",
                reply_ok(&reply).err()
            ));
            return;
        };
        webrtc.emit_by_name::<()>("set-local-description", &[&offer, &None::<gst::Promise>]);
        sh.milestone(Milestone::OfferCreated);
        match offer.sdp().as_text() {
            Ok(sdp) => sh.emit(MediaEvent::Signal(PeerSignal::Sdp {
                sdp_type: SdpType::Offer,
                sdp,
            })),
            Err(e) => sh.fail(format!("the offer does not print: {e}")),
        }
    });
    webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
}

fn create_answer(shared: &Arc<Shared>, webrtc: &gst::Element) {
    let sh = shared.clone();
    let w = webrtc.downgrade();
    let promise = gst::Promise::with_change_func(move |reply| {
        let Some(webrtc) = w.upgrade() else { return };
        let answer = match reply {
            Ok(Some(r)) => r.get::<gst_webrtc::WebRTCSessionDescription>("answer").ok(),
            _ => None,
        };
        let Some(answer) = answer else {
            sh.fail(format!(
                "webrtcbin made no answer: {:?}",
                reply_ok(&reply).err()
            ));
            return;
        };
        webrtc.emit_by_name::<()>("set-local-description", &[&answer, &None::<gst::Promise>]);
        sh.milestone(Milestone::AnswerCreated);
        match answer.sdp().as_text() {
            Ok(sdp) => sh.emit(MediaEvent::Signal(PeerSignal::Sdp {
                sdp_type: SdpType::Answer,
                sdp,
            })),
            Err(e) => sh.fail(format!("the answer does not print: {e}")),
        }
    });
    webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &promise]);
}

fn connect_signals(webrtc: &gst::Element, pipeline: &gst::Pipeline, shared: &Arc<Shared>) {
    let sh = Arc::downgrade(shared);
    webrtc.connect("on-ice-candidate", false, move |values| {
        let sh = sh.upgrade()?;
        let mline = values.get(1).and_then(|v| v.get::<u32>().ok()).unwrap_or(0);
        let candidate = values.get(2).and_then(|v| v.get::<String>().ok())?;
        sh.emit(MediaEvent::Signal(PeerSignal::Ice {
            candidate,
            sdp_mline_index: mline,
        }));
        None
    });
    let sh = Arc::downgrade(shared);
    webrtc.connect_notify(Some("ice-gathering-state"), move |w, _| {
        let Some(sh) = sh.upgrade() else { return };
        let state = w.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
        if state == gst_webrtc::WebRTCICEGatheringState::Complete {
            let first = sh
                .neg
                .lock()
                .map(|mut n| !std::mem::replace(&mut n.gathered, true));
            if first.unwrap_or(false) {
                sh.emit(MediaEvent::Signal(PeerSignal::Ice {
                    candidate: String::new(),
                    sdp_mline_index: 0,
                }));
            }
        }
    });
    let sh = Arc::downgrade(shared);
    webrtc.connect_notify(Some("ice-connection-state"), move |w, _| {
        let Some(sh) = sh.upgrade() else { return };
        let state = w.property::<gst_webrtc::WebRTCICEConnectionState>("ice-connection-state");
        tracing::debug!(peer = sh.label, ?state, "ICE connection state");
        match state {
            gst_webrtc::WebRTCICEConnectionState::Connected
            | gst_webrtc::WebRTCICEConnectionState::Completed => {
                let first = sh
                    .neg
                    .lock()
                    .map(|mut n| !std::mem::replace(&mut n.ice_connected, true))
                    .unwrap_or(false);
                if first {
                    sh.milestone(Milestone::IceConnected);
                    watch_dtls(w, &sh);
                }
            }
            gst_webrtc::WebRTCICEConnectionState::Failed => {
                sh.fail("ICE failed: no network path to the peer".into());
            }
            _ => {}
        }
    });
    let sh = Arc::downgrade(shared);
    let pl = pipeline.downgrade();
    webrtc.connect_pad_added(move |_, pad| {
        let (Some(sh), Some(pipeline)) = (sh.upgrade(), pl.upgrade()) else {
            return;
        };
        if pad.direction() != gst::PadDirection::Src {
            return;
        }
        if let Err(e) = receive_branch(&pipeline, pad, &sh) {
            sh.fail(format!("remote media: {e}"));
        }
    });
    let label = shared.label;
    webrtc.connect("on-negotiation-needed", false, move |_| {
        tracing::debug!(
            peer = label,
            "webrtcbin: negotiation needed (the offer is made once inputs have caps)"
        );
        None
    });
}

fn watch_dtls(webrtc: &gst::Element, sh: &Arc<Shared>) {
    let Some(transceiver) = webrtc
        .emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&0i32])
    else {
        return;
    };
    let Some(transport) = transceiver.sender().and_then(|s| s.transport()) else {
        sh.fail("webrtcbin has no DTLS transport".into());
        return;
    };
    let on_state = {
        let sh = Arc::downgrade(sh);
        move |t: &gst_webrtc::WebRTCDTLSTransport| {
            let Some(sh) = sh.upgrade() else { return };
            match t.state() {
                gst_webrtc::WebRTCDTLSTransportState::Connected
                    if !sh.connected.swap(true, Ordering::SeqCst) =>
                {
                    sh.milestone(Milestone::DtlsConnected);
                    sh.emit(MediaEvent::Connected);
                    let _ = sh.ctl.send(Ctl::DtlsConnected);
                }
                gst_webrtc::WebRTCDTLSTransportState::Failed => {
                    sh.fail("DTLS failed".into());
                }
                _ => {}
            }
        }
    };
    let f = on_state.clone();
    transport.connect_state_notify(move |t| f(t));
    on_state(&transport);
}

fn receive_branch(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    sh: &Arc<Shared>,
) -> Result<(), String> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let s = caps.structure(0).ok_or("no caps")?;
    let media = s.get::<&str>("media").unwrap_or("");
    let encoding = s
        .get::<&str>("encoding-name")
        .unwrap_or("")
        .to_ascii_uppercase();
    tracing::info!(peer = sh.label, media, encoding = %encoding, "remote stream");
    let video_tail = "videoconvert ! video/x-raw,format=I420 ! identity name=rxframes silent=true";
    let desc = match (media, encoding.as_str()) {
        ("video", "H264") => format!(
            "queue ! rtph264depay name=rxdepay request-keyframe=true wait-for-keyframe=true ! h264parse ! avdec_h264 ! {video_tail}"
        ),
        ("video", "VP8") => format!(
            "queue ! rtpvp8depay name=rxdepay request-keyframe=true wait-for-keyframe=true ! vp8dec ! {video_tail}"
        ),
        ("audio", "OPUS") => format!(
            "queue ! rtpopusdepay ! opusdec ! audioconvert ! audioresample ! {}",
            sh.audio_out
        ),
        _ => "fakesink sync=false".to_string(),
    };
    let bin = gst::parse::bin_from_description(&desc, true).map_err(|e| e.to_string())?;
    pipeline.add(&bin).map_err(|e| e.to_string())?;
    if media == "video" {
        if let Ok(ssrc) = s.get::<u32>("ssrc") {
            sh.rx_ssrc.store(u64::from(ssrc) + 1, Ordering::Relaxed);
        }
        if let Some(depay) = bin.by_name("rxdepay") {
            if let Ok(mut d) = sh.depay.lock() {
                *d = Some(depay.downgrade());
            }
        }
        let src = bin.static_pad("src").ok_or("no video output")?;
        let sink: gst::Element = match &sh.video_out {
            RemoteVideoSink::Count => CountingSink::with_tally("rxsink", sh.rx.clone())
                .sink
                .upcast(),
            RemoteVideoSink::Fakesink => gst::ElementFactory::make("fakesink")
                .name("rxsink")
                .property("sync", false)
                .build()
                .map_err(|e| e.to_string())?,
            RemoteVideoSink::Element(d) => gst::parse::bin_from_description(d, true)
                .map_err(|e| e.to_string())?
                .upcast(),
        };
        if !matches!(sh.video_out, RemoteVideoSink::Count) {
            sh.rx.attach(&src);
        }
        pipeline.add(&sink).map_err(|e| e.to_string())?;
        let sink_pad = sink
            .static_pad("sink")
            .ok_or("the video sink has no input")?;
        src.link(&sink_pad).map_err(|e| e.to_string())?;
        sink.sync_state_with_parent().map_err(|e| e.to_string())?;
    }
    bin.sync_state_with_parent().map_err(|e| e.to_string())?;
    let sink = bin.static_pad("sink").ok_or("no input")?;
    pad.link(&sink).map_err(|e| e.to_string())?;
    Ok(())
}

struct ControlCtx {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    shared: Arc<Shared>,
    sink_pads: Vec<gst::Pad>,
    venc: Option<gst::Element>,
    vpay: Option<gst::Element>,
    source: Option<SourceState>,
    rx: mpsc::Receiver<Ctl>,
}

fn control_loop(mut c: ControlCtx) {
    let mut tracker = StatsTracker::new();
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    loop {
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + Duration::from_secs(1);
            tick(&mut c);
        }
        let wait = next_tick.saturating_duration_since(Instant::now());
        match c.rx.recv_timeout(wait) {
            Ok(Ctl::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(Ctl::Bus(msg)) => on_bus(&mut c, &msg),
            Ok(Ctl::Caps) => {
                let all = c.sink_pads.iter().all(|p| p.current_caps().is_some());
                let caps_pending = !all;
                if caps_pending {
                    // The caps event is still on its way into webrtcbin; look again shortly.
                    let ctl = c.shared.ctl.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(20));
                        let _ = ctl.send(Ctl::Caps);
                    });
                    continue;
                }
                if c.shared.role == Role::Offerer {
                    let first = c
                        .shared
                        .neg
                        .lock()
                        .map(|mut n| !std::mem::replace(&mut n.offered, true))
                        .unwrap_or(false);
                    if first {
                        create_offer(&c.shared, &c.webrtc);
                    }
                }
            }
            Ok(Ctl::DtlsConnected) => {
                if let Some(src) = c.venc.as_ref().and_then(|v| v.static_pad("src")) {
                    src.send_event(
                        gst_video::UpstreamForceKeyUnitEvent::builder()
                            .all_headers(true)
                            .other_field(OWN_REQUEST, true)
                            .build(),
                    );
                }
            }
            Ok(Ctl::Stats(reply)) => {
                let send_ssrc = c
                    .vpay
                    .as_ref()
                    .map(|p| p.property::<gst::Structure>("stats"))
                    .and_then(|s| s.get::<u32>("ssrc").ok());
                let recv_ssrc = match c.shared.rx_ssrc.load(Ordering::Relaxed) {
                    0 => None,
                    n => u32::try_from(n - 1).ok(),
                };
                let mut f = Figures::from_reply(&reply, send_ssrc, recv_ssrc);
                f.at_ms = unix_ms();
                f.frames_sent = c.shared.frames_sent.load(Ordering::Relaxed);
                f.keyframes_sent = c.shared.keyframes.load(Ordering::Relaxed);
                f.keyframe_requests = c.shared.requests.load(Ordering::Relaxed);
                f.frames_decoded = c.shared.rx.frames();
                if std::env::var_os("KIOSK_MEDIA_DUMP_STATS").is_some() {
                    tracing::info!(peer = c.shared.label, stats = %reply, "webrtcbin stats");
                }
                let stats = tracker.update(&c.shared.call, f);
                if let Ok(mut l) = c.shared.latest.lock() {
                    *l = Some(stats.clone());
                }
                c.shared.emit(MediaEvent::Stats(Box::new(stats)));
            }
        }
    }
}

/// Once a second: ask for stats, and try the camera again if it failed.
fn tick(c: &mut ControlCtx) {
    if c.shared.connected.load(Ordering::SeqCst) {
        let ctl = c.shared.ctl.clone();
        let promise = gst::Promise::with_change_func(move |reply| {
            if let Ok(Some(r)) = reply {
                let _ = ctl.send(Ctl::Stats(r.to_owned()));
            }
        });
        c.webrtc
            .emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
    }
    if let Some(s) = c.source.as_mut() {
        s.retry(&c.pipeline, &c.shared);
    }
}

fn on_bus(c: &mut ControlCtx, msg: &gst::Message) {
    use gst::MessageView;
    match msg.view() {
        MessageView::Error(e) => {
            let from = msg
                .src()
                .map(|s| s.path_string().to_string())
                .unwrap_or_default();
            let why = format!("{} ({from})", e.error());
            if let Some(source) = c.source.as_mut() {
                if source.is_from(msg) {
                    source.fall_back(&c.pipeline, &c.shared, &why);
                    return;
                }
            }
            tracing::debug!(peer = c.shared.label, debug = ?e.debug(), "pipeline error");
            c.shared.fail(why);
        }
        MessageView::Warning(w) => {
            tracing::debug!(peer = c.shared.label, warning = %w.error(), debug = ?w.debug(), "pipeline warning");
        }
        MessageView::Eos(_) => {
            if let Some(source) = c.source.as_mut() {
                source.fall_back(&c.pipeline, &c.shared, "end of stream");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_servers_in_webrtcbin_spelling() {
        let servers = vec![
            IceServer {
                urls: vec![
                    "stun:stun.example.net:3478".into(),
                    "stun:second:3478".into(),
                ],
                username: None,
                credential: None,
            },
            IceServer {
                urls: vec![
                    "turn:turn.example.net:3478?transport=udp".into(),
                    "turns:turn.example.net:5349?transport=tcp".into(),
                ],
                username: Some("1700000000:call-abcdefgh".into()),
                credential: Some("a+b/c=".into()),
            },
        ];
        let (stun, turn) = webrtcbin_ice_servers(&servers);
        assert_eq!(stun.as_deref(), Some("stun://stun.example.net:3478"));
        assert_eq!(
            turn,
            vec![
                "turn://1700000000%3Acall-abcdefgh:a%2Bb%2Fc%3D@turn.example.net:3478?transport=udp",
                "turns://1700000000%3Acall-abcdefgh:a%2Bb%2Fc%3D@turn.example.net:5349?transport=tcp",
            ]
        );
    }

    /// What webrtcbin learns from a caps query before the caps event arrives: the offer made
    /// from it must still say `packetization-mode=1`, or a browser finds no matching H.264.
    #[test]
    fn a_caps_query_after_the_h264_payloader_names_the_packetization_mode() {
        gst::init().unwrap();
        let bin = gst::parse::bin_from_description(
            "rtph264pay config-interval=-1 ! capsfilter name=vcaps",
            true,
        )
        .unwrap();
        let filter = bin.by_name("vcaps").unwrap();
        filter.set_property("caps", video_rtp_caps(&Codec::H264));
        let caps = bin.static_pad("src").unwrap().query_caps(None);
        assert!(!caps.is_empty(), "{caps}");
        for s in caps.iter() {
            assert_eq!(
                s.get::<&str>("packetization-mode").ok(),
                Some("1"),
                "{caps}"
            );
            assert_eq!(s.get::<&str>("encoding-name").ok(), Some("H264"), "{caps}");
        }
        let vp8 = video_rtp_caps(&Codec::Vp8);
        assert!(!vp8.structure(0).unwrap().has_field("packetization-mode"));
    }
}
