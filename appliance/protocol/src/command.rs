//! Commands (cloud → device, `down/cmd`) and their results (`up/cmd-result`).

use serde::{Deserialize, Serialize};

use crate::{MessageId, UpHeader, Version};

/// A kiosk service that can be restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    KioskSync,
    KioskMedia,
    KioskUi,
    KioskBrowser,
}

impl Service {
    /// The systemd unit.
    pub fn unit(self) -> &'static str {
        match self {
            Service::KioskSync => "kiosk-sync.service",
            Service::KioskMedia => "kiosk-media.service",
            Service::KioskUi => "kiosk-ui.service",
            Service::KioskBrowser => "kiosk-browser.service",
        }
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Reboot,
    RestartService {
        service: Service,
    },
    /// Make a new key, have it certified, switch to it without losing a message.
    RotateCertificate,
    /// Forget enrollment and local data, then reboot into first-boot state.
    FactoryReset,
    /// Install a firmware bundle into the other slot and boot it.
    Update {
        url: String,
        /// Hex SHA-256 of the bundle.
        sha256: String,
        version: String,
        size: u64,
    },
}

/// A command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub v: Version,
    /// Unique per command; results refer to it, and a repeated delivery is run once.
    pub id: MessageId,
    pub issued_at_ms: i64,
    /// The device refuses a command it receives after this time (e.g. a reboot queued while
    /// it was offline for a week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    #[serde(flatten)]
    pub action: Action,
}

/// How a command went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Received and started; a final outcome follows.
    Accepted,
    Succeeded {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    Failed {
        error: String,
    },
    /// Not run: expired, unsupported, or not valid now.
    Rejected {
        reason: String,
    },
}

/// A command result (device → cloud).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub v: Version,
    #[serde(flatten)]
    pub header: UpHeader,
    pub command_id: MessageId,
    #[serde(flatten)]
    pub outcome: Outcome,
}
