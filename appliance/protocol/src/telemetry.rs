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
    /// Why kiosk-media chose its encoder (absent from older firmware).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_reason: Option<String>,
    /// The running call's latest statistics, while a call runs (absent from older firmware).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_stats: Option<CallStats>,
}

/// One second of a call's media statistics, as kiosk-media measures them (`Media1.Stats`).
/// Absent figures are unknown (not yet measured), never zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    /// The call these belong to.
    pub call: String,
    /// When they were taken, Unix milliseconds.
    pub at_ms: i64,
    /// Video sent: bitrate (kbit/s over the last second), frames per second, keyframes so far.
    pub send_kbps: Option<f64>,
    pub send_fps: Option<f64>,
    pub keyframes_sent: Option<u64>,
    /// Keyframe requests (PLI and FIR) received from the peer so far.
    pub keyframe_requests: Option<u64>,
    /// Video received: bitrate, frames per second, frames decoded so far.
    pub recv_kbps: Option<f64>,
    pub recv_fps: Option<f64>,
    pub frames_decoded: Option<u64>,
    /// Round-trip time in milliseconds (RTCP).
    pub rtt_ms: Option<f64>,
    /// Packets lost, in percent, of what the peer reports it received from us.
    pub loss_pct: Option<f64>,
    /// Inbound jitter, milliseconds.
    pub jitter_ms: Option<f64>,
    /// The selected candidate pair's local and remote types (`host`, `srflx`, `prflx`, `relay`).
    pub local_candidate: Option<String>,
    pub remote_candidate: Option<String>,
    /// Glass-to-glass latencies (ms) of the stamped frames received in this second: only when
    /// the peer writes a timestamp into its frames (benchmarks; see kiosk-media's `stamp`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stamp_latencies_ms: Vec<u32>,
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
