//! The agent simulator: a webrtcbin peer that plays the agent's browser, for tests and the
//! benchmark.
//!
//! It answers the kiosk's offer, trickles its candidates, sends a stamped moving test pattern
//! (1280x720@30 by default) and a test tone, decodes the kiosk's video into a counting sink
//! that reads stamps, and can request a keyframe (an upstream force-key-unit event from its
//! receive branch, which webrtcbin sends to the kiosk as an RTCP PLI), start a renegotiation
//! (a new offer from the agent side), and end. Events come on a channel as for
//! [`crate::session::CallSession`]; wiring two peers is relaying each one's
//! [`MediaEvent::Signal`] to the other's `add_remote`.

use std::sync::Arc;

use gstreamer as gst;
use gstreamer::glib;
use kiosk_protocol::call::{IceServer, PeerSignal};
use kiosk_protocol::telemetry::CallStats;
use tokio::sync::mpsc::UnboundedSender;

use crate::board::{AudioInput, VideoPrefs};
use crate::encoder::EncoderChoice;
use crate::peer::{
    Counters, MediaEvent, Peer, PeerConfig, RemoteVideoSink, Role, SessionError, SourceSpec,
};
use crate::session::EndReport;

/// What the simulated agent sends.
#[derive(Clone)]
pub struct AgentPlan {
    pub prefs: Arc<VideoPrefs>,
    pub encoder: Arc<EncoderChoice>,
    pub latency_ms: u32,
    /// Stamp the frames it sends.
    pub stamp: bool,
    /// Send a test tone (else receive-only audio).
    pub tone: bool,
}

impl std::fmt::Debug for AgentPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentPlan")
            .field("encoder", &self.encoder.element)
            .field("latency_ms", &self.latency_ms)
            .field("stamp", &self.stamp)
            .field("tone", &self.tone)
            .finish()
    }
}

impl AgentPlan {
    /// A stamped test pattern at `prefs`, a test tone, 50 ms latency.
    pub fn new(prefs: VideoPrefs, encoder: EncoderChoice) -> AgentPlan {
        AgentPlan {
            prefs: Arc::new(prefs),
            encoder: Arc::new(encoder),
            latency_ms: 50,
            stamp: true,
            tone: true,
        }
    }
}

/// A running simulated agent.
pub struct AgentSim {
    peer: Peer,
}

impl std::fmt::Debug for AgentSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSim")
            .field("peer", &self.peer)
            .finish()
    }
}

impl AgentSim {
    /// Starts the pipeline and waits for the kiosk's offer (feed it with
    /// [`AgentSim::add_remote`]). Remote video goes to a counting sink.
    pub fn start(
        plan: &AgentPlan,
        call_id: &str,
        ice_servers: &[IceServer],
        events: UnboundedSender<MediaEvent>,
    ) -> Result<AgentSim, SessionError> {
        let p = &plan.prefs;
        let source = format!(
            "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width={},height={},framerate={}/1",
            p.width, p.height, p.fps
        );
        let peer = Peer::start(
            PeerConfig {
                label: "agent",
                role: Role::Answerer,
                call: call_id.to_string(),
                source: SourceSpec::Fragment(source),
                prefs: plan.prefs.clone(),
                encoder: plan.encoder.clone(),
                audio_input: if plan.tone {
                    AudioInput::TestTone.source_fragment()
                } else {
                    None
                },
                video_out: RemoteVideoSink::Count,
                audio_out: "fakesink sync=false".into(),
                preview: None,
                latency_ms: plan.latency_ms,
                stamp: plan.stamp,
                ice_servers: ice_servers.to_vec(),
            },
            events,
        )?;
        Ok(AgentSim { peer })
    }

    /// Applies the kiosk's offer (answered with a `Signal` event), answer, or candidate.
    pub fn add_remote(&self, signal: PeerSignal) -> Result<(), SessionError> {
        self.peer.add_remote(signal)
    }

    /// Asks the kiosk for a keyframe (RTCP PLI). False before the kiosk's video arrived.
    pub fn request_keyframe(&self) -> bool {
        self.peer.request_keyframe()
    }

    /// Starts a renegotiation: a new offer from the agent side (a `Signal` event).
    pub fn renegotiate(&self) {
        self.peer.offer()
    }

    pub fn counters(&self) -> Counters {
        self.peer.counters()
    }

    pub fn stats(&self) -> Option<CallStats> {
        self.peer.latest_stats()
    }

    pub fn is_connected(&self) -> bool {
        self.peer.is_connected()
    }

    pub fn pipeline_weak(&self) -> glib::WeakRef<gst::Pipeline> {
        self.peer.pipeline_weak()
    }

    /// Tears down to NULL (blocking, a few seconds at most).
    pub fn end(mut self) -> EndReport {
        let counters = self.peer.counters();
        let reached_null = self.peer.stop();
        EndReport {
            reached_null,
            counters,
        }
    }
}
