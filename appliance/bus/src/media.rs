//! `org.kioskcall.Media1`: kiosk-media, the only service that opens the camera.
//!
//! - What it uses: [`Media1Proxy::camera`] (the capture device, or the test pattern, said
//!   plainly), [`Media1Proxy::camera_mode`], [`Media1Proxy::encoder`] and
//!   [`Media1Proxy::encoder_reason`] (why that encoder: which candidates were tried and how
//!   each probe went).
//! - Calls: kiosk-media follows kiosk-sync's call signals (`CallAccepted` starts a call and
//!   makes the offer, `PeerSignal` applies the agent's answer and candidates, `CallEnded` tears
//!   it down) and sends its own SDP and candidates with `Sync1.SendSignal`. The same engine can
//!   be driven directly with [`Media1Proxy::start_call`], [`Media1Proxy::add_remote_signal`]
//!   and [`Media1Proxy::end_call`] (tests, tools); its own negotiation messages are then read
//!   from the `LocalSignal` signal. One call at a time.
//! - State: the `CallState` property and signal (`idle`, `connecting`, `in-call`, `ending`,
//!   `failed`), and `Stats`, a JSON `kiosk_protocol::telemetry::CallStats` renewed every
//!   second of a call (empty when idle).
//!
//! Signal payloads are JSON, the same shapes as `kiosk_protocol::call`: kind `sdp` carries
//! `{"sdp_type":"offer"|"answer","sdp":"…"}`, kind `ice` carries
//! `{"candidate":"…","sdp_mline_index":0}` (an empty candidate: no more candidates).

use kiosk_protocol::call::{PeerSignal, SdpType};

/// The well-known bus name kiosk-media owns.
pub const NAME: &str = "org.kioskcall.Media1";
/// The object path of the interface.
pub const PATH: &str = "/org/kioskcall/Media1";
/// The interface name.
pub const INTERFACE: &str = "org.kioskcall.Media1";

/// Call states, as the `CallState` property spells them.
pub mod call_state {
    pub const IDLE: &str = "idle";
    /// The pipeline runs and the offer is out; ICE/DTLS not done yet.
    pub const CONNECTING: &str = "connecting";
    /// Media flows both ways.
    pub const IN_CALL: &str = "in-call";
    /// Tearing down.
    pub const ENDING: &str = "ending";
    /// The call failed (the reason comes with the `CallState` signal); idle follows.
    pub const FAILED: &str = "failed";
}

/// Signal kinds of `LocalSignal`, `AddRemoteSignal`, `Sync1.SendSignal` and `Sync1.PeerSignal`.
pub mod signal_kind {
    pub const SDP: &str = "sdp";
    pub const ICE: &str = "ice";
}

/// The D-Bus form (`kind`, JSON payload) of an SDP or ICE candidate, as `LocalSignal`,
/// `AddRemoteSignal`, `Sync1.SendSignal` and `Sync1.PeerSignal` carry it.
pub fn signal_to_wire(s: &PeerSignal) -> (&'static str, String) {
    match s {
        PeerSignal::Sdp { sdp_type, sdp } => (
            signal_kind::SDP,
            serde_json::json!({ "sdp_type": sdp_type.as_str(), "sdp": sdp }).to_string(),
        ),
        PeerSignal::Ice {
            candidate,
            sdp_mline_index,
        } => (
            signal_kind::ICE,
            serde_json::json!({ "candidate": candidate, "sdp_mline_index": sdp_mline_index })
                .to_string(),
        ),
    }
}

/// Reads the D-Bus form of a signal: `kind` `sdp` or `ice`, the payload with exactly the
/// fields of that kind, within the protocol's size limits.
pub fn signal_from_wire(kind: &str, payload: &str) -> Result<PeerSignal, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sdp {
        sdp_type: SdpType,
        sdp: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ice {
        candidate: String,
        sdp_mline_index: u32,
    }
    let bad = |e: serde_json::Error| format!("payload of a {kind} signal: {e}");
    let s = match kind {
        signal_kind::SDP => {
            let s: Sdp = serde_json::from_str(payload).map_err(bad)?;
            PeerSignal::Sdp {
                sdp_type: s.sdp_type,
                sdp: s.sdp,
            }
        }
        signal_kind::ICE => {
            let i: Ice = serde_json::from_str(payload).map_err(bad)?;
            PeerSignal::Ice {
                candidate: i.candidate,
                sdp_mline_index: i.sdp_mline_index,
            }
        }
        other => return Err(format!("kind {other:?}: \"sdp\" or \"ice\"")),
    };
    s.check().map_err(|e| e.to_string())?;
    Ok(s)
}

/// Client side of `org.kioskcall.Media1`.
#[zbus::proxy(
    interface = "org.kioskcall.Media1",
    default_service = "org.kioskcall.Media1",
    default_path = "/org/kioskcall/Media1"
)]
pub trait Media1 {
    /// Starts call `call` and makes the offer. `ice_servers` is a JSON array of
    /// `kiosk_protocol::call::IceServer`. Refused while another call runs.
    fn start_call(&self, call: &str, ice_servers: &str) -> zbus::Result<()>;

    /// Applies the peer's SDP or ICE candidate (`kind` is `sdp` or `ice`, see the module doc).
    fn add_remote_signal(&self, call: &str, kind: &str, payload: &str) -> zbus::Result<()>;

    /// Ends call `call` and frees camera and encoder. Ending a call that is not running is not
    /// an error (it may have ended already).
    fn end_call(&self, call: &str, reason: &str) -> zbus::Result<()>;

    /// kiosk-media's own SDP or ICE candidate for the peer.
    /// Mutes or unmutes the kiosk's microphone in the running call (the agent hears silence;
    /// the audio track stays). Every call starts unmuted. Refused when no call runs or the
    /// call sends no microphone audio.
    fn set_microphone_muted(&self, muted: bool) -> zbus::Result<()>;

    /// Whether the microphone is muted.
    #[zbus(property)]
    fn microphone_muted(&self) -> zbus::Result<bool>;

    #[zbus(signal)]
    fn local_signal(&self, call: &str, kind: &str, payload: &str) -> zbus::Result<()>;

    /// The call's state changed; `reason` says why for `failed` and `idle` after a call.
    #[zbus(signal, name = "CallState")]
    fn call_state_signal(&self, call: &str, state: &str, reason: &str) -> zbus::Result<()>;

    /// The capture device in use (`/dev/video0 (UVC Camera 046d:0825)`), or
    /// `test-pattern (no camera: REASON)` when there is none.
    #[zbus(property)]
    fn camera(&self) -> zbus::Result<String>;

    /// The chosen capture mode, as `1280x720@30 YUYV`.
    #[zbus(property)]
    fn camera_mode(&self) -> zbus::Result<String>;

    /// The encoder element in use (`x264enc`, `v4l2h264enc`, ...).
    #[zbus(property)]
    fn encoder(&self) -> zbus::Result<String>;

    /// Why: the candidates tried in order and what each probe said.
    #[zbus(property)]
    fn encoder_reason(&self) -> zbus::Result<String>;

    /// One of [`call_state`].
    #[zbus(property)]
    fn call_state(&self) -> zbus::Result<String>;

    /// The running call's id, or empty.
    #[zbus(property)]
    fn call_id(&self) -> zbus::Result<String>;

    /// The latest second of statistics as JSON, or empty when idle.
    #[zbus(property)]
    fn stats(&self) -> zbus::Result<String>;

    /// The running (or last) call's timeline as a JSON object of milestone → Unix ms:
    /// `call-started`, `offer-created`, `ice-connected`, `dtls-connected`,
    /// `first-keyframe-sent`, `first-remote-frame`. Empty before the first call.
    #[zbus(property)]
    fn timeline(&self) -> zbus::Result<String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unwrap_used)]
    #[test]
    fn signals_round_trip_on_the_wire() {
        for s in [
            PeerSignal::Sdp {
                sdp_type: SdpType::Offer,
                sdp: "v=0\r\n".into(),
            },
            PeerSignal::Ice {
                candidate: "candidate:1 1 UDP 1 10.0.0.1 5000 typ host".into(),
                sdp_mline_index: 1,
            },
        ] {
            let (kind, payload) = signal_to_wire(&s);
            assert_eq!(signal_from_wire(kind, &payload).unwrap(), s);
        }
        assert!(signal_from_wire("sdp", r#"{"sdp_type":"pranswer","sdp":""}"#).is_err());
        assert!(signal_from_wire("dtmf", "{}").is_err());
        // Only the fields of the kind.
        assert!(signal_from_wire("ice", r#"{"candidate":"","sdp_mline_index":0,"x":1}"#).is_err());
        let big = serde_json::json!({"candidate": "a".repeat(2000), "sdp_mline_index": 0});
        assert!(signal_from_wire("ice", &big.to_string()).is_err());
    }
}
