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
//! - The customer journey: [`Sync1Proxy::request_otp`] starts a customer session and asks the
//!   cloud to text a code to the number; [`Sync1Proxy::resend_otp`] and
//!   [`Sync1Proxy::verify_otp`] follow. Each answers a [`JourneyOutcome`] as JSON. A verified
//!   code gives kiosk-sync a customer token it keeps to itself;
//!   [`Sync1Proxy::place_customer_call`] uses it (with the customer's consent answer), and
//!   [`Sync1Proxy::request_callback`] books a callback with it. [`Sync1Proxy::end_journey`]
//!   forgets the session (privacy reset). While queued, `QueueUpdate` says the place in the
//!   queue; `CallbackOffered` follows a `CallEnded` when nobody answered in time.

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

/// What the journey methods answer (as JSON): the cloud's answer without its secrets, or
/// `offline` when the kiosk cannot reach the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum JourneyOutcome {
    CodeSent {
        masked_phone: String,
        resend_after_s: u32,
        expires_in_s: u32,
    },
    Limited {
        retry_after_s: u32,
    },
    InvalidPhone {
        message: String,
    },
    Verified {
        masked_phone: String,
        expires_in_s: u32,
    },
    WrongCode {
        tries_left: u32,
    },
    /// `why`: `expired`, `used`, `too_many_tries`, `no_code`.
    CodeDead {
        why: String,
    },
    CallbackBooked {
        masked_phone: String,
    },
    /// The cloud could not do it now (no SMS gateway answered, no answer in time, ...).
    Unavailable {
        reason: String,
    },
    /// The kiosk has no link to the cloud.
    Offline,
}

/// `consent` values of [`Sync1Proxy::place_customer_call`].
pub mod consent {
    /// The organization does not record: no question was asked.
    pub const NOT_ASKED: &str = "";
    pub const GRANTED: &str = "granted";
    pub const DECLINED: &str = "declined";
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

    /// Starts a customer session (forgetting any previous one) and asks the cloud to text a
    /// one-time code to `phone` (E.164, `+` and country code). `language` is the screen's
    /// BCP 47 tag or empty. Answers a [`JourneyOutcome`] as JSON.
    fn request_otp(&self, phone: &str, language: &str) -> zbus::Result<String>;

    /// A new code to the same number, after the cooldown. Answers a [`JourneyOutcome`].
    fn resend_otp(&self) -> zbus::Result<String>;

    /// Checks the code the customer typed (6 digits). Answers a [`JourneyOutcome`]; on
    /// `verified` kiosk-sync keeps the customer token for the call.
    fn verify_otp(&self, code: &str) -> zbus::Result<String>;

    /// Places the verified customer's call. `language` a BCP 47 tag or empty; `consent` is
    /// `""` when the organization does not record, else `granted` or `declined` (the notice
    /// version shown is the config's). Returns the request id, like [`Sync1Proxy::place_call`].
    /// Refused when the code was not verified in this session.
    fn place_customer_call(&self, language: &str, consent: &str) -> zbus::Result<String>;

    /// Books a callback for the verified customer; `call` is the call nobody answered, or
    /// empty (the site is closed). Answers a [`JourneyOutcome`].
    fn request_callback(&self, call: &str) -> zbus::Result<String>;

    /// The customer's session is over: forget the token and the number here, and ask the
    /// cloud to forget what is not a record.
    fn end_journey(&self) -> zbus::Result<()>;

    /// The queued `call`'s place: `position` 1 is next, `estimated_wait_s` an estimate (0 when
    /// unknown).
    #[zbus(signal)]
    fn queue_update(&self, call: &str, position: u32, estimated_wait_s: u32) -> zbus::Result<()>;

    /// Nobody answered `call` in time; the customer may ask for a callback.
    #[zbus(signal)]
    fn callback_offered(&self, call: &str) -> zbus::Result<()>;

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
