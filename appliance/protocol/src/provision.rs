//! Provisioning (claim certificate ↔ cloud): a CSR goes up, a certificate or an activation
//! code comes back.

use serde::{Deserialize, Serialize};

use crate::{DeviceId, Version};

/// What the device says about its hardware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    /// Board profile name.
    pub board: String,
    pub serial: String,
    pub firmware: String,
}

/// A request for a device certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionRequest {
    pub v: Version,
    /// Echoed in the response; a device retrying sends the same id.
    pub request_id: String,
    /// PKCS#10 CSR, PEM. The key never leaves the device.
    pub csr_pem: String,
    pub hardware: Hardware,
    /// An enrollment token (from the image or `kioskctl enroll`): enrolls at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_token: Option<String>,
}

/// The cloud's answer.
///
/// Kiosks of one claim batch share the response topic, and any of them can send a request
/// under another's request id; so an answer also names the key it is for: `key_fingerprint`
/// is the lower-case hex of the first 8 bytes of SHA-256 over the request's public key (the
/// raw subject public key bits of the CSR). A kiosk ignores answers for any other key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionResponse {
    pub v: Version,
    pub request_id: String,
    /// The fingerprint of the requesting key (absent when the request's CSR was unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    #[serde(flatten)]
    pub result: ProvisionResult,
}

/// What came of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ProvisionResult {
    /// Enrolled: connect again with this certificate.
    Certificate {
        device_id: DeviceId,
        certificate_pem: String,
        /// The CA that signed it, for the device's trust store of its own chain.
        ca_pem: String,
    },
    /// Waiting for an admin to claim this code (shown on the kiosk's screen).
    ActivationCode { code: String, expires_at_ms: i64 },
    /// Refused (bad token, bad CSR, revoked serial).
    Rejected { reason: String },
}
