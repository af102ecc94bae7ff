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
