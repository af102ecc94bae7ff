//! `org.kioskcall.Sync1`: kiosk-sync, the kiosk's one link to the cloud.
//!
//! - Enrollment: [`Sync1Proxy::state`] says where the kiosk is (`unenrolled`, `enrolling`,
//!   `awaiting-activation`, `enrolled`); while it waits for an admin, the activation code to show
//!   on screen is [`Sync1Proxy::activation_code`]. `kioskctl enroll TOKEN` calls
//!   [`Sync1Proxy::enroll`].
//! - Config: [`Sync1Proxy::desired_config`] returns the config in force (JSON, the
//!   `kiosk-protocol` `DesiredConfig`); `ConfigChanged` is emitted when a new one is applied.
//! - Events: [`Sync1Proxy::report_event`] puts a device→cloud event in the durable outbox and
//!   returns its message id once it is on disk.
//!
//! - Calls: [`Sync1Proxy::place_call`] asks the cloud for a call and returns the request id;
//!   the answer is the `CallQueued` signal (with the cloud's call id) or `CallEnded`. When an
//!   agent accepts, `CallAccepted` carries the ICE servers; the agent's SDP and candidates come
//!   as `PeerSignal`; kiosk-media sends its own with [`Sync1Proxy::send_signal`]. Either side
//!   ends with [`Sync1Proxy::end_call`] / `CallEnded`. If kiosk-media leaves the bus during a
//!   call, kiosk-sync ends the call with reason `media_failed`, so the agent is never left
//!   looking at a frozen picture.
//!
//! OTP methods arrive with the journey work.

use serde::{Deserialize, Serialize};
use zvariant::Type;

/// The well-known bus name kiosk-sync owns.
pub const NAME: &str = "org.kioskcall.Sync1";
/// The object path of the interface.
pub const PATH: &str = "/org/kioskcall/Sync1";
/// The interface name.
pub const INTERFACE: &str = "org.kioskcall.Sync1";

/// Enrollment states, as the `State` property spells them.
pub mod state {
    /// No device certificate and no enrollment running (no claim certificate configured).
    pub const UNENROLLED: &str = "unenrolled";
    /// A provisioning request is out; waiting for the cloud's answer.
    pub const ENROLLING: &str = "enrolling";
    /// The cloud answered with an activation code for an admin to claim.
    pub const AWAITING_ACTIVATION: &str = "awaiting-activation";
    /// The kiosk has its own certificate.
    pub const ENROLLED: &str = "enrolled";
}

/// Call phases, as the `CallPhase` property spells them.
pub mod call_phase {
    pub const IDLE: &str = "idle";
    /// `PlaceCall` was sent; the cloud has not answered yet.
    pub const PLACING: &str = "placing";
    /// Agents are ringing.
    pub const QUEUED: &str = "queued";
    /// An agent accepted; media negotiates and flows.
    pub const ACCEPTED: &str = "accepted";
}

/// Everything `kioskctl status` shows, in one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SyncStatus {
    /// One of [`state`].
    pub state: String,
    /// Empty until enrolled.
    pub device_id: String,
    /// Empty unless `awaiting-activation`.
    pub activation_code: String,
    /// Connected to the broker with the device certificate.
    pub connected: bool,
    /// Version of the desired config in force; 0 when none.
    pub config_version: u64,
    /// Messages waiting in the outbox, and how many of them are records (never dropped).
    pub outbox_depth: u64,
    pub outbox_records: u64,
    /// Unix seconds when the device certificate expires; 0 when none.
    pub certificate_not_after: i64,
    /// The running firmware version and slot.
    pub firmware: String,
    pub slot: String,
    /// The last error worth showing (enrollment refused, config rejected), or empty.
    pub last_error: String,
}

/// Client side of `org.kioskcall.Sync1`.
#[zbus::proxy(
    interface = "org.kioskcall.Sync1",
    default_service = "org.kioskcall.Sync1",
    default_path = "/org/kioskcall/Sync1"
)]
pub trait Sync1 {
    /// The whole status.
    fn status(&self) -> zbus::Result<SyncStatus>;

    /// Enrolls with an enrollment token (from the fleet admin). Refused once enrolled.
    fn enroll(&self, token: &str) -> zbus::Result<()>;

    /// The config in force as JSON, or an empty string when the kiosk has none yet.
    fn desired_config(&self) -> zbus::Result<String>;

    /// Queues an event for the cloud. `kind` is the event kind, `body` a JSON object with its
    /// fields. Returns the message id once the event is on disk.
    fn report_event(&self, kind: &str, body: &str) -> zbus::Result<String>;

    /// Asks the cloud for a call of `kind` (`test` or `customer`), `language` a BCP 47 tag or
    /// empty. Returns the request id that `CallQueued`/`CallEnded` will echo. Refused when not
    /// connected or while another call is placed or running.
    fn place_call(&self, kind: &str, language: &str) -> zbus::Result<String>;

    /// Sends kiosk-media's SDP or ICE candidate for `call` to the agent (`kind` `sdp` or `ice`,
    /// payload as in `kiosk_bus::media`). Refused when `call` is not the running call or the
    /// link is down.
    fn send_signal(&self, call: &str, kind: &str, payload: &str) -> zbus::Result<()>;

    /// Ends (or cancels) `call`; `reason` is a `kiosk_protocol::call::EndReason` name.
    fn end_call(&self, call: &str, reason: &str) -> zbus::Result<()>;

    /// The cloud queued the call placed as `request`; agents are ringing.
    #[zbus(signal)]
    fn call_queued(&self, request: &str, call: &str) -> zbus::Result<()>;

    /// Agent `agent` accepted `call`; `ice_servers` is a JSON array of ICE servers with this
    /// call's TURN credentials; `expires_at_ms` is when they (and the call) run out.
    #[zbus(signal)]
    fn call_accepted(
        &self,
        call: &str,
        agent: &str,
        ice_servers: &str,
        expires_at_ms: i64,
    ) -> zbus::Result<()>;

    /// The agent's SDP or ICE candidate.
    #[zbus(signal)]
    fn peer_signal(&self, call: &str, kind: &str, payload: &str) -> zbus::Result<()>;

    /// `call` (placed as `request`) is over, or was refused: `reason` an `EndReason` name or
    /// `refused: …`, `by` is `kiosk`, `agent` or `cloud`.
    #[zbus(signal)]
    fn call_ended(&self, call: &str, request: &str, reason: &str, by: &str) -> zbus::Result<()>;

    /// Emitted when a new desired config is in force.
    #[zbus(signal)]
    fn config_changed(&self, version: u64, config: &str) -> zbus::Result<()>;

    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn activation_code(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn device_id(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn connected(&self) -> zbus::Result<bool>;

    #[zbus(property)]
    fn config_version(&self) -> zbus::Result<u64>;

    /// One of [`call_phase`].
    #[zbus(property)]
    fn call_phase(&self) -> zbus::Result<String>;

    /// The current call's id (empty when idle or still placing).
    #[zbus(property)]
    fn call_id(&self) -> zbus::Result<String>;
}
