//! The kiosk's side of a call: [`CallSession`], one webrtcbin pipeline that makes the offer.
//!
//! Pure of D-Bus: it takes a [`CallPlan`] (what to send, where to play), the call's id and ICE
//! servers, and a channel for [`MediaEvent`]s; the owner relays the `Signal` events to the
//! peer, feeds the peer's messages to [`CallSession::add_remote`], and ends it.

use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use kiosk_protocol::call::{IceServer, PeerSignal};
use kiosk_protocol::telemetry::CallStats;
use tokio::sync::mpsc::UnboundedSender;

use crate::board::VideoPrefs;
use crate::camera::VideoSource;
use crate::encoder::EncoderChoice;
use crate::peer::{
    Counters, MediaEvent, Peer, PeerConfig, RemoteVideoSink, Role, SessionError, SourceSpec,
};

/// What a call sends and where it plays what it receives.
#[derive(Clone)]
pub struct CallPlan {
    pub prefs: Arc<VideoPrefs>,
    pub source: Arc<VideoSource>,
    pub encoder: Arc<EncoderChoice>,
    /// A gst-launch fragment producing raw audio, or `None` (receive-only audio).
    pub audio_input: Option<String>,
    pub remote_video: RemoteVideoSink,
    /// A sink element description for the agent's audio (`autoaudiosink`, `fakesink`).
    pub audio_output: String,
    /// A sink element for the local preview, or `None`.
    pub preview: Option<String>,
    /// webrtcbin's jitter-buffer latency.
    pub latency_ms: u32,
    /// Write a timestamp into each sent frame ([`crate::stamp`]).
    pub stamp: bool,
    /// After a camera failure, try the camera again this often.
    pub camera_retry: Duration,
}

impl std::fmt::Debug for CallPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallPlan")
            .field("source", &self.source.describe())
            .field("encoder", &self.encoder.element)
            .field("audio_input", &self.audio_input)
            .field("remote_video", &self.remote_video)
            .field("audio_output", &self.audio_output)
            .field("preview", &self.preview)
            .field("latency_ms", &self.latency_ms)
            .field("stamp", &self.stamp)
            .finish()
    }
}

/// How a session or simulator ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndReport {
    /// The pipeline reached NULL (everything released).
    pub reached_null: bool,
    /// The counters at the end.
    pub counters: Counters,
}

/// A running call on the kiosk. One at a time (the camera and encoder are not shared).
pub struct CallSession {
    call: String,
    peer: Peer,
}

impl std::fmt::Debug for CallSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallSession")
            .field("call", &self.call)
            .finish()
    }
}

impl CallSession {
    /// Builds and starts the pipeline; the offer follows (a `Signal` event) as soon as the
    /// encoder's first output has fixed the caps. Candidates trickle as `Signal` events.
    pub fn start(
        plan: &CallPlan,
        call_id: &str,
        ice_servers: &[IceServer],
        events: UnboundedSender<MediaEvent>,
    ) -> Result<CallSession, SessionError> {
        let peer = Peer::start(
            PeerConfig {
                label: "kiosk",
                role: Role::Offerer,
                call: call_id.to_string(),
                source: SourceSpec::Kiosk {
                    source: plan.source.clone(),
                    retry: plan.camera_retry,
                },
                prefs: plan.prefs.clone(),
                encoder: plan.encoder.clone(),
                audio_input: plan.audio_input.clone(),
                video_out: plan.remote_video.clone(),
                audio_out: plan.audio_output.clone(),
                preview: plan.preview.clone(),
                latency_ms: plan.latency_ms,
                stamp: plan.stamp,
                ice_servers: ice_servers.to_vec(),
            },
            events,
        )?;
        Ok(CallSession {
            call: call_id.to_string(),
            peer,
        })
    }

    pub fn call_id(&self) -> &str {
        &self.call
    }

    /// Applies the agent's answer, candidate, or new offer (renegotiation: answered with a
    /// `Signal` event).
    pub fn add_remote(&self, signal: PeerSignal) -> Result<(), SessionError> {
        signal
            .check()
            .map_err(|e| SessionError::TooLarge(e.to_string()))?;
        self.peer.add_remote(signal)
    }

    /// The latest second of statistics.
    pub fn stats(&self) -> Option<CallStats> {
        self.peer.latest_stats()
    }

    pub fn counters(&self) -> Counters {
        self.peer.counters()
    }

    /// Mutes or unmutes the microphone; `false` when the call sends no audio.
    pub fn set_muted(&self, muted: bool) -> bool {
        self.peer.set_muted(muted)
    }

    /// ICE and DTLS are up.
    pub fn is_connected(&self) -> bool {
        self.peer.is_connected()
    }

    /// For leak checks: dead once the session is ended and dropped.
    pub fn pipeline_weak(&self) -> glib::WeakRef<gst::Pipeline> {
        self.peer.pipeline_weak()
    }

    /// Tears the pipeline down to NULL and stops the control thread. Blocking (up to a few
    /// seconds): call it from a thread that may block, never from a streaming thread.
    pub fn end(mut self, reason: &str) -> EndReport {
        tracing::info!(call = %self.call, reason, "ending the call");
        let counters = self.peer.counters();
        let reached_null = self.peer.stop();
        EndReport {
            reached_null,
            counters,
        }
    }
}
