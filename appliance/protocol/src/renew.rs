//! Certificate renewal: an enrolled device asks for a certificate for a new key of its own.
//!
//! The device makes a new key pair (which never leaves it), publishes a CSR on `up/csr` through
//! its outbox (so it survives a restart), and keeps using its current certificate until the
//! answer on `down/cert` arrives; then it swaps key and certificate and reconnects. The cloud
//! signs for the identity the device connected with, never a name from the request. A repeated
//! request (same message id) gets the same certificate.

use serde::{Deserialize, Serialize};

use crate::{MessageId, UpHeader, Version};

/// Device → cloud, `kiosk/v1/{d}/up/csr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    pub v: Version,
    #[serde(flatten)]
    pub header: UpHeader,
    pub csr_pem: String,
    /// Fingerprint of the new key (see `ProvisionResponse::key_fingerprint`).
    pub key_fingerprint: String,
}

/// Cloud → device, `kiosk/v1/{d}/down/cert`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    pub v: Version,
    /// The message id of the request this answers.
    pub request: MessageId,
    pub key_fingerprint: String,
    #[serde(flatten)]
    pub result: RenewResult,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RenewResult {
    Certificate {
        certificate_pem: String,
        /// Unix seconds.
        not_after: i64,
    },
    Rejected {
        reason: String,
    },
}
