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
    /// A kind this build does not know (from newer firmware): kept, not interpreted.
    #[serde(other)]
    Unknown,
}

impl EventBody {
    pub fn retention(&self) -> Retention {
        match self {
            EventBody::Diagnostic { .. } => Retention::Droppable,
            EventBody::Boot { .. } | EventBody::Unknown => Retention::Keep,
        }
    }
}
