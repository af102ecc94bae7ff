//! Events (device → cloud, `up/events`): records that must arrive exactly once in the cloud's
//! store. The device keeps them in its outbox until the broker acknowledges them.

use serde::{Deserialize, Serialize};

use crate::{UpHeader, Version};

/// An event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub v: Version,
    #[serde(flatten)]
    pub header: UpHeader,
    #[serde(flatten)]
    pub body: EventBody,
}

/// How important an event is when the outbox is full: telemetry-like diagnostics may be
/// dropped; records never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Retention {
    Droppable,
    Keep,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// The device started.
    Boot { firmware: String, slot: String },
    /// Something an operator should know (camera lost, encoder fell back, disk low).
    Diagnostic { code: String, detail: String },
    /// The customer's answer to the recording notice (a record: kept until acknowledged).
    /// `consent_id` is the one in the call's `place`.
    Consent {
        consent_id: String,
        notice_version: u32,
        granted: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<crate::call::CallId>,
    },
    /// The customer's satisfaction after `call`: 1 (unhappy) to 3 (happy).
    Survey {
        call: crate::call::CallId,
        score: u8,
    },
    /// A kind this build does not know (from newer firmware): kept, not interpreted.
    #[serde(other)]
    Unknown,
}

impl EventBody {
    pub fn retention(&self) -> Retention {
        match self {
            EventBody::Diagnostic { .. } => Retention::Droppable,
            EventBody::Boot { .. }
            | EventBody::Consent { .. }
            | EventBody::Survey { .. }
            | EventBody::Unknown => Retention::Keep,
        }
    }
}
