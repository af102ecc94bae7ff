//! kiosk-media: the kiosk's media engine, the only service that opens the camera.
//!
//! Why it exists: a call joins the kiosk and an agent's browser with two-way video and audio,
//! peer to peer (DTLS-SRTP). This crate captures the camera (or a clearly reported test
//! pattern), encodes with the board's best encoder, runs a `webrtcbin` session that makes the
//! offer, and plays the agent's video and audio. It serves `org.kioskcall.Media1` and follows
//! kiosk-sync's `org.kioskcall.Sync1` call signals.
//!
//! Main types:
//! - [`session::CallSession`]: one call, pure of D-Bus: a [`session::CallPlan`] in, the peer's
//!   [`kiosk_protocol::call::PeerSignal`]s in, [`MediaEvent`]s out (SDP and candidates,
//!   connected, timeline milestones, latency samples, keyframe requests, stats, failures).
//! - [`agent::AgentSim`]: the agent's side as a webrtcbin peer (answers, sends a stamped test
//!   pattern and a tone, counts and reads stamps, sends PLI, renegotiates) for tests and the
//!   benchmark.
//! - [`stamp`]: the pixel timestamp format (also read by a browser-side reader).
//! - [`stats`]: `get-stats` into [`kiosk_protocol::telemetry::CallStats`].
//! - [`service`]: the D-Bus object and the Sync1 follower; [`settings`]: the config file.
//! - [`board`], [`camera`], [`encoder`]: board profile, camera discovery, encoder choice.
//!
//! Threads: GStreamer's streaming threads and webrtcbin's own threads run media and
//! negotiation callbacks, which only send on channels. Each call has one control thread (bus
//! messages, stats every second, the keyframe when DTLS connects, camera fallback and retry).
//! D-Bus runs on a small tokio runtime (two workers); pipeline start and teardown go to its
//! blocking pool. No lock is held across `.await`.
//!
//! What GStreamer 1.22.0 does, as measured here (SDP dumps and `get-stats` dumps, see
//! `KIOSK_MEDIA_DUMP_STATS` and the tests):
//! - RTX: with `do-nack=true` on the transceiver the offer carries `a=rtcp-fb:96 nack` and an
//!   `rtx/90000` payload (98, `apt=96`) with an `ssrc-group:FID`; without NACK there is no RTX.
//! - PLI/FIR: `nack pli` and `ccm fir` are offered because the payloader caps carry
//!   `rtcp-fb-nack-pli`/`rtcp-fb-ccm-fir`; an upstream force-key-unit event from the
//!   receiver's depayloader goes out as PLI and arrives at the sender's encoder as an upstream
//!   force-key-unit event.
//! - TWCC: offered and negotiated (`a=rtcp-fb:* transport-cc`, `a=extmap:1 …transport-wide-cc…`)
//!   when the payloader caps carry the `extmap-1` field; the payloader then adds the header
//!   extension itself, and the candidate pair stats carry a `gst-twcc-stats` structure. No
//!   congestion controller acts on it here (the bitrate is the board's).
//! - Stats: `outbound-rtp`/`inbound-rtp` have bytes, packets, PLI/FIR/NACK counts and jitter;
//!   `remote-inbound-rtp` has round-trip time and fraction lost. With max-bundle every RTP
//!   stream is labelled `kind=video` with the first codec, so video streams are matched by
//!   SSRC. Frames and keyframes are not in the stats; pad probes count them. The transport's
//!   `selected-candidate-pair-id` leads to a `candidate-pair` with local and remote candidate
//!   ids whose entries carry `candidate-type`; 1.22.0 labels those entries' `type` the wrong
//!   way round (the `…local…` id is typed `remote-candidate`), so we follow the ids. Checked
//!   with host candidates only.
//!
//! Limits: one call at a time; video is H.264 or VP8 as the encoder choice says, audio Opus;
//! no bandwidth adaptation yet; the kiosk offers and answers renegotiations but never starts
//! one.

use std::sync::Arc;

use kiosk_bus::media::{NAME, PATH};
use kiosk_bus::BusAddress;
use tokio::sync::watch;

pub mod agent;
pub mod board;
pub mod camera;
pub mod encoder;
pub mod frames;
pub mod peer;
pub mod service;
pub mod session;
pub mod settings;
pub mod stamp;
pub mod stats;

pub use agent::{AgentPlan, AgentSim};
pub use peer::{Counters, MediaEvent, Milestone, RemoteVideoSink, SessionError};
pub use session::{CallPlan, CallSession, EndReport};

use board::{AudioInput, BoardProfile};
use camera::VideoSource;
use service::{Engine, MediaService, Published};
use settings::{AudioInputSetting, AudioOutput, CameraSetting, RemoteVideo, Settings};

/// kiosk-media could not run.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer: {0}")]
    Gstreamer(String),
    #[error(transparent)]
    Board(#[from] board::BoardError),
    #[error("no usable video encoder: {0}")]
    Encoder(#[from] encoder::EncoderError),
    #[error("D-Bus ({bus}): {source}")]
    Bus {
        bus: String,
        source: Box<zbus::Error>,
    },
}

/// The board profile the settings name. A board without a profile file runs on the
/// development profile (said in the log); a profile that exists but cannot be used is an
/// error, never silently replaced.
pub fn load_board(settings: &Settings) -> Result<BoardProfile, MediaError> {
    if settings.board == "development" {
        return Ok(BoardProfile::development());
    }
    let file = settings
        .boards_dir
        .join(&settings.board)
        .join(board::PROFILE_FILE);
    if !file.exists() {
        tracing::warn!(
            board = %settings.board,
            file = %file.display(),
            "no board profile; using the development profile"
        );
        return Ok(BoardProfile::development());
    }
    Ok(BoardProfile::load(&settings.boards_dir, &settings.board)?)
}

/// The video source the settings ask for (`auto` honours the board profile's camera device).
/// A board whose profile forbids the test pattern still sends it when there is no camera, so
/// the agent sees why, but the fault is logged as an error and said on D-Bus.
pub fn choose_source(settings: &Settings, board: &BoardProfile) -> VideoSource {
    let source = match &settings.camera {
        CameraSetting::Auto => {
            VideoSource::discover_with(board.camera.device.as_deref(), &board.video)
        }
        CameraSetting::TestPattern => {
            return VideoSource::test_pattern("camera = test-pattern in the settings")
        }
        CameraSetting::Device(path) => VideoSource::open(path, &board.video),
    };
    if !source.is_camera() && !board.camera.allow_test_pattern {
        tracing::error!(
            board = %board.name,
            camera = %source.describe(),
            "this board must have a camera and none is usable; sending the test pattern"
        );
    }
    source
}

/// Runs the service until `stop` turns true; ends any call on the way out.
pub async fn run(
    settings: Settings,
    bus: BusAddress,
    mut stop: watch::Receiver<bool>,
) -> Result<(), MediaError> {
    gstreamer::init().map_err(|e| MediaError::Gstreamer(e.to_string()))?;
    let board = load_board(&settings)?;
    let source = choose_source(&settings, &board);
    let choice = encoder::choose(&board.encoders, &board.video)?;
    tracing::info!(
        board = %board.name,
        camera = %source.describe(),
        mode = %source.mode(&board.video),
        encoder = %choice.element,
        reason = %choice.reason,
        "media ready"
    );
    let published = Published {
        camera: source.describe(),
        camera_mode: source.mode(&board.video),
        encoder: choice.element.clone(),
        encoder_reason: choice.reason.clone(),
        ..Published::default()
    };
    let audio_input = match settings.audio_input {
        AudioInputSetting::Board => board.audio.source_fragment(),
        AudioInputSetting::TestTone => AudioInput::TestTone.source_fragment(),
        AudioInputSetting::None => None,
    };
    let plan = CallPlan {
        source: Arc::new(source),
        encoder: Arc::new(choice),
        audio_input,
        remote_video: match settings.remote_video {
            RemoteVideo::Board => RemoteVideoSink::Element(board.video_sink.clone()),
            RemoteVideo::Count => RemoteVideoSink::Count,
            RemoteVideo::Fakesink => RemoteVideoSink::Fakesink,
        },
        audio_output: match settings.audio_output {
            AudioOutput::Auto => "autoaudiosink".into(),
            AudioOutput::Fakesink => "fakesink sync=false".into(),
        },
        preview: settings.preview.clone(),
        latency_ms: settings.latency_ms,
        stamp: settings.stamp,
        camera_retry: settings.camera_retry,
        prefs: Arc::new(board.video),
    };
    let engine = Engine::new(plan, published);
    let bus_err = |source: zbus::Error| MediaError::Bus {
        bus: bus.to_string(),
        source: Box::new(source),
    };
    let conn = bus
        .builder()
        .and_then(|b| b.name(NAME))
        .and_then(|b| {
            b.serve_at(
                PATH,
                MediaService {
                    engine: engine.clone(),
                },
            )
        })
        .map_err(bus_err)?
        .build()
        .await
        .map_err(bus_err)?;
    let sync = sync_proxy(&conn).await.map_err(bus_err)?;
    engine.attach(conn.clone(), sync.clone());
    tracing::info!(bus = %bus, name = NAME, "serving on D-Bus");
    let follower = tokio::spawn(service::follow_sync(engine.clone(), sync, stop.clone()));
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    engine.end_any("kiosk-media stopping").await;
    follower.abort();
    tracing::info!("stopped");
    Ok(())
}

/// A Sync1 proxy without a property cache (kiosk-sync may be absent; a cached proxy would
/// complain).
async fn sync_proxy(conn: &zbus::Connection) -> zbus::Result<kiosk_bus::Sync1Proxy<'static>> {
    kiosk_bus::Sync1Proxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
}
