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
//! Signalling, OTP and call control methods arrive with the call and journey work.

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
}
