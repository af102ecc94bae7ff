//! Two real peers wired together in-process: the kiosk's CallSession and the agent simulator,
//! their signalling relayed by channels.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kiosk_media::board::BoardProfile;
use kiosk_media::camera::VideoSource;
use kiosk_media::encoder;
use kiosk_media::{
    AgentPlan, AgentSim, CallPlan, CallSession, MediaEvent, Milestone, RemoteVideoSink,
};
use kiosk_protocol::call::{PeerSignal, SdpType};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

pub const CALL: &str = "call-testtesttest";

/// Calls are heavy (two encoders, two decoders); one at a time per test binary.
pub async fn one_call_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static CALLS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    CALLS.lock().await
}

pub fn init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kiosk_media=info".into()),
        )
        .with_test_writer()
        .try_init();
    gstreamer::init().unwrap();
}

pub fn kiosk_plan(source: VideoSource) -> CallPlan {
    let board = BoardProfile::development();
    let choice = encoder::choose(&["x264enc".to_string()], &board.video).unwrap();
    CallPlan {
        prefs: Arc::new(board.video),
        source: Arc::new(source),
        encoder: Arc::new(choice),
        audio_input: kiosk_media::board::AudioInput::TestTone.source_fragment(),
        remote_video: RemoteVideoSink::Count,
        audio_output: "fakesink sync=false".into(),
        preview: None,
        latency_ms: 50,
        stamp: true,
        camera_retry: Duration::from_secs(2),
    }
}

pub fn agent_plan() -> AgentPlan {
    let board = BoardProfile::development();
    let choice = encoder::choose(&["x264enc".to_string()], &board.video).unwrap();
    AgentPlan::new(board.video, choice)
}

/// What each side said, in order.
#[derive(Debug, Default)]
pub struct Side {
    pub milestones: HashMap<Milestone, i64>,
    pub latency: Vec<u32>,
    pub offers: Vec<String>,
    pub answers: Vec<String>,
    pub candidates: usize,
    pub connected: bool,
    pub failed: Option<String>,
    pub requests: u64,
    pub sources: Vec<(String, String)>,
    pub stats: Vec<kiosk_protocol::telemetry::CallStats>,
}

impl Side {
    fn record(&mut self, e: &MediaEvent) {
        match e {
            MediaEvent::Signal(PeerSignal::Sdp { sdp_type, sdp }) => match sdp_type {
                SdpType::Offer => self.offers.push(sdp.clone()),
                SdpType::Answer => self.answers.push(sdp.clone()),
            },
            MediaEvent::Signal(PeerSignal::Ice { .. }) => self.candidates += 1,
            MediaEvent::Connected => self.connected = true,
            MediaEvent::Milestone { milestone, at_ms } => {
                self.milestones.insert(*milestone, *at_ms);
            }
            MediaEvent::LatencySample { ms } => self.latency.push(*ms),
            MediaEvent::KeyframeRequested { total } => self.requests = *total,
            MediaEvent::SourceChanged {
                description,
                reason,
            } => self.sources.push((description.clone(), reason.clone())),
            MediaEvent::Stats(s) => self.stats.push((**s).clone()),
            MediaEvent::Failed { reason } => self.failed = Some(reason.clone()),
        }
    }
}

pub struct Pair {
    pub kiosk: Option<CallSession>,
    pub agent: Option<AgentSim>,
    krx: UnboundedReceiver<MediaEvent>,
    arx: UnboundedReceiver<MediaEvent>,
    pub k: Side,
    pub a: Side,
}

impl Pair {
    pub fn start(plan: &CallPlan) -> Pair {
        let (ktx, krx) = unbounded_channel();
        let (atx, arx) = unbounded_channel();
        let agent = AgentSim::start(&agent_plan(), CALL, &[], atx).expect("agent starts");
        let kiosk = CallSession::start(plan, CALL, &[], ktx).expect("kiosk starts");
        Pair {
            kiosk: Some(kiosk),
            agent: Some(agent),
            krx,
            arx,
            k: Side::default(),
            a: Side::default(),
        }
    }

    pub fn kiosk(&self) -> &CallSession {
        self.kiosk.as_ref().unwrap()
    }

    pub fn agent(&self) -> &AgentSim {
        self.agent.as_ref().unwrap()
    }

    /// Relays signals and records events until `done` holds (checked after every event and
    /// every 100 ms); false on timeout.
    pub async fn run_until(&mut self, timeout: Duration, done: impl Fn(&Pair) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            if done(self) {
                return true;
            }
            tokio::select! {
                Some(e) = self.krx.recv() => {
                    self.k.record(&e);
                    if let (MediaEvent::Signal(s), Some(agent)) = (e, self.agent.as_ref()) {
                        if std::env::var_os("KIOSK_MEDIA_DUMP_SDP").is_some() {
                            if let PeerSignal::Sdp { sdp, .. } = &s { eprintln!("kiosk SDP:\n{sdp}"); }
                        }
                        agent.add_remote(s).unwrap();
                    }
                }
                Some(e) = self.arx.recv() => {
                    self.a.record(&e);
                    if let (MediaEvent::Signal(s), Some(kiosk)) = (e, self.kiosk.as_ref()) {
                        if std::env::var_os("KIOSK_MEDIA_DUMP_SDP").is_some() {
                            if let PeerSignal::Sdp { sdp, .. } = &s { eprintln!("agent SDP:\n{sdp}"); }
                        }
                        kiosk.add_remote(s).unwrap();
                    }
                }
                _ = tick.tick() => {}
                _ = tokio::time::sleep_until(deadline) => return done(self),
            }
        }
    }

    /// Both sides connected and each has decoded `frames` frames of the other.
    pub fn flowing(&self, frames: u64) -> bool {
        self.k.connected
            && self.a.connected
            && self.kiosk().counters().frames_decoded >= frames
            && self.agent().counters().frames_decoded >= frames
    }
}
