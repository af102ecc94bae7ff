//! Telemetry (device → cloud, `up/telemetry`) and the status topic's payload.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{UpHeader, Version};

/// What the kiosk is doing about calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Idle,
    Verifying,
    Queued,
    InCall,
    Unavailable,
}

/// A temperature sensor reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    pub zone: String,
    pub celsius: f32,
}

/// A heartbeat with health figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    pub v: Version,
    #[serde(flatten)]
    pub header: UpHeader,
    pub uptime_s: u64,
    pub firmware: String,
    /// Service name → version.
    #[serde(default)]
    pub services: BTreeMap<String, String>,
    pub config_version: Option<u64>,
    pub camera: Option<String>,
    pub encoder: Option<String>,
    pub call_state: CallState,
    pub outbox_depth: u64,
    #[serde(default)]
    pub temperatures: Vec<Temperature>,
}

/// Online or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Online,
    Offline,
}

/// The retained `status` payload; the broker publishes the offline one as the last will.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub v: Version,
    pub state: Presence,
}
