//! One-time codes, SMS, the customer principal and the journey topic (`up/journey`,
//! `down/journey`).
//!
//! A customer at a kiosk types a phone number; the cloud sends a 6-digit code by SMS and checks
//! what the customer types back; the kiosk never sees a code. A right code makes a customer
//! token (`kcu_…`, a secret for one call from that kiosk, stored as its SHA-256 only) that the
//! kiosk puts in its customer call's `place`, and with which it may book a callback.
//!
//! - [`rules`]: the pure core. Every limit and decision over plain values: when a code may be
//!   sent, whether a typed code is right, wrong or dead, whether a callback may be booked.
//! - [`key`]: `DATA/otp.key` and the keyed hashes (HMAC-SHA256) codes and numbers are stored
//!   as.
//! - [`sms`]: the gateway seam ([`sms::SmsGateway`]) with its `log` and `http` drivers, their
//!   configuration (platform default, per organization), and fail-over.
//! - [`receipts`]: providers' delivery receipts for organizations' `http` gateways: their
//!   settings and key, reading a receipt, the status's forward-only move, the per-key throttle
//!   (the route is `api::sms`'s, the rows `store::otp`'s).
//! - [`texts`]: the SMS texts in English, French and Arabic.
//! - [`journey`]: the edge. [`Journeys`] reads `up/journey` messages, asks [`rules`], writes
//!   through the store (`store::otp`), sends SMS and answers on `down/journey`; it also runs
//!   the periodic prune.
//!
//! Threads and tasks: the fleet link's worker hands each `up/journey` message to
//! [`Journeys::handle_up_journey`] on the blocking pool. Decisions and store writes happen
//! there, in message order; an answer that needs no SMS is returned for the worker to publish.
//! Sending an SMS (up to 10 s per gateway) never holds the worker: it runs in a task of its
//! own, which records each attempt and publishes the answer through the link when done. A
//! pruner task ([`Journeys::spawn_pruner`]) clears expired codes' and customers' numbers.
//!
//! Limits today: the recent-answers map (a repeated message id gets the same answer, without a
//! second SMS or a second try counted) is in memory, so a message repeated across a restart is
//! handled again (a repeated code request then sends another code, within the limits); and
//! several replicas would each keep their own, as they would each keep their own receipt
//! throttle. Delivery receipts are read for organizations' own `http` gateways only: a record
//! of the platform's gateways stays `sent` once a gateway took the message.

pub mod journey;
pub mod key;
pub mod receipts;
pub mod rules;
pub mod sms;
pub mod texts;

use std::time::Duration;

pub use journey::Journeys;

/// What every customer token starts with.
pub const CUSTOMER_TOKEN_PREFIX: &str = "kcu_";

/// How one-time codes and SMS behave; tests shorten the times.
#[derive(Debug, Clone)]
pub struct OtpSettings {
    /// Every limit of the rules (a code's 5 minutes, 5 tries, the 30 s resend, the caps).
    pub limits: rules::Limits,
    /// How often the prune runs (60 s).
    pub prune_every: Duration,
    /// How long SMS delivery records are kept (30 days).
    pub sms_records_keep: Duration,
    /// Lets organizations choose the development gateways: `log` and `http://` to a loopback
    /// address (off; for development and tests). The platform default may always use them.
    pub org_dev_gateways: bool,
    /// How fast each receipt key may be used (a burst of 100, then 10 a second).
    pub receipts: receipts::ReceiptPolicy,
}

impl Default for OtpSettings {
    fn default() -> Self {
        OtpSettings {
            limits: rules::Limits::default(),
            prune_every: Duration::from_secs(60),
            sms_records_keep: Duration::from_secs(30 * 24 * 3600),
            org_dev_gateways: false,
            receipts: receipts::ReceiptPolicy::default(),
        }
    }
}

/// Starting the journey's service failed.
#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    #[error(transparent)]
    Key(#[from] key::KeyError),
    #[error("SMS gateways: {field}: {message}")]
    Gateways {
        field: &'static str,
        message: String,
    },
    #[error("SMS HTTP client: {0}")]
    HttpClient(String),
}

/// The platform's default gateways when none are configured: the `log` gateway.
pub fn default_gateways() -> Vec<sms::GatewayConfig> {
    vec![sms::GatewayConfig::Log]
}
