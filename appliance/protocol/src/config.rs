//! Desired configuration (cloud → device, retained, versioned) and what the device reports.
//!
//! The device validates a [`DesiredConfig`] whole with [`DesiredConfig::validate`] before using
//! any of it: a bad document is reported with every error found and the config in force stays.

use serde::{Deserialize, Serialize};

use crate::hours::{minutes, Holiday, WeeklyHours};
use crate::{UpHeader, Version};

/// Whether calls may be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recording {
    Off,
    OnWithConsent,
}

/// The site a kiosk stands in, as far as the kiosk needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteView {
    pub id: i64,
    pub name: String,
    /// IANA time zone name.
    pub timezone: String,
    pub business_hours: WeeklyHours,
    #[serde(default)]
    pub holidays: Vec<Holiday>,
}

/// Languages offered on screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locale {
    /// BCP 47 tag of the attract screen's language, e.g. `en`.
    pub default: String,
    /// Every language offered, including the default.
    pub available: Vec<String>,
}

/// A STUN or TURN server. TURN credentials here are long-lived fallbacks; calls bring
/// short-lived ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// One-time code rules the kiosk shows (the cloud enforces them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpPolicy {
    pub code_length: u8,
    pub resend_after_s: u32,
}

/// Recording policy and the consent notice version shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingPolicy {
    pub mode: Recording,
    /// Version of the consent notice text the kiosk must show when `mode` records.
    pub consent_notice_version: u32,
}

/// Screen time-outs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdleTimeouts {
    /// Seconds without a touch before the privacy-reset warning.
    pub idle_s: u32,
    /// Seconds the warning counts down (at least 20) before the reset.
    pub warning_s: u32,
}

/// Whether `name` can name a board profile (`hardware/boards/{name}`): lower-case letters,
/// digits, `-` and `_`.
pub fn is_board_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The configuration the cloud wants a kiosk to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredConfig {
    pub v: Version,
    /// Increases with every change; the device reports the version it runs.
    pub version: u64,
    /// Organization slug.
    pub org: String,
    pub site: SiteView,
    pub locale: Locale,
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
    pub otp: OtpPolicy,
    pub recording: RecordingPolicy,
    pub idle: IdleTimeouts,
    pub telemetry_interval_s: u32,
    /// Name of the board profile under `hardware/boards/`.
    pub board_profile: String,
}

/// One reason a desired config cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `site.business_hours.mon`.
    pub field: String,
    pub message: String,
}

/// Telemetry interval bounds (seconds).
pub const TELEMETRY_INTERVAL: std::ops::RangeInclusive<u32> = 5..=3600;
/// The shortest privacy-reset warning (seconds).
pub const MIN_WARNING_S: u32 = 20;

fn lang_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let first = parts.next().unwrap_or_default();
    (2..=3).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl DesiredConfig {
    /// Every problem with the document; empty means it can be applied as a whole.
    /// Time zone names are checked by the device against its own database.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| {
            errors.push(ConfigError {
                field: field.to_string(),
                message,
            })
        };
        if self.version == 0 {
            err("version", "must be at least 1".into());
        }
        if self.org.is_empty() {
            err("org", "must not be empty".into());
        }
        if self.site.name.trim().is_empty() {
            err("site.name", "must not be empty".into());
        }
        if self.site.timezone.is_empty() || self.site.timezone.contains(' ') {
            err(
                "site.timezone",
                format!("{:?} is not a time zone name", self.site.timezone),
            );
        }
        for (day, intervals) in self.site.business_hours.days() {
            let mut spans: Vec<(u32, u32)> = Vec::new();
            for i in intervals {
                match (minutes(&i.open), minutes(&i.close)) {
                    (Some(o), Some(c)) if o < c && o < 1440 => spans.push((o, c)),
                    _ => err(
                        &format!("site.business_hours.{day}"),
                        format!("{}–{} is not an opening interval", i.open, i.close),
                    ),
                }
            }
            spans.sort_unstable();
            if spans.windows(2).any(|w| w[1].0 < w[0].1) {
                err(
                    &format!("site.business_hours.{day}"),
                    "intervals overlap".into(),
                );
            }
        }
        for h in &self.site.holidays {
            let d: Vec<&str> = h.date.split('-').collect();
            let ok = d.len() == 3
                && d[0].len() == 4
                && d[1].len() == 2
                && d[2].len() == 2
                && d.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                err(
                    "site.holidays",
                    format!("{:?} is not a date YYYY-MM-DD", h.date),
                );
            }
        }
        if !lang_tag(&self.locale.default) {
            err(
                "locale.default",
                format!("{:?} is not a language tag", self.locale.default),
            );
        }
        if !self.locale.available.contains(&self.locale.default) {
            err(
                "locale.available",
                "must include the default language".into(),
            );
        }
        for tag in &self.locale.available {
            if !lang_tag(tag) {
                err("locale.available", format!("{tag:?} is not a language tag"));
            }
        }
        for s in &self.ice_servers {
            if s.urls.is_empty() {
                err("ice_servers", "a server needs at least one URL".into());
            }
            for u in &s.urls {
                let scheme_ok = ["stun:", "stuns:", "turn:", "turns:"]
                    .iter()
                    .any(|p| u.starts_with(p));
                if !scheme_ok {
                    err("ice_servers", format!("{u:?} is not a stun: or turn: URL"));
                }
                if u.starts_with("turn") && (s.username.is_none() || s.credential.is_none()) {
                    err(
                        "ice_servers",
                        format!("{u:?} needs a username and credential"),
                    );
                }
            }
        }
        if !(4..=8).contains(&self.otp.code_length) {
            err("otp.code_length", "must be 4 to 8 digits".into());
        }
        if !(10..=600).contains(&self.otp.resend_after_s) {
            err("otp.resend_after_s", "must be 10 to 600 seconds".into());
        }
        if self.recording.mode == Recording::OnWithConsent
            && self.recording.consent_notice_version == 0
        {
            err(
                "recording.consent_notice_version",
                "recording needs a consent notice version".into(),
            );
        }
        if !(10..=3600).contains(&self.idle.idle_s) {
            err("idle.idle_s", "must be 10 to 3600 seconds".into());
        }
        if !(MIN_WARNING_S..=300).contains(&self.idle.warning_s) {
            err(
                "idle.warning_s",
                format!("must be {MIN_WARNING_S} to 300 seconds"),
            );
        }
        if !TELEMETRY_INTERVAL.contains(&self.telemetry_interval_s) {
            err(
                "telemetry_interval_s",
                format!(
                    "must be {} to {} seconds",
                    TELEMETRY_INTERVAL.start(),
                    TELEMETRY_INTERVAL.end()
                ),
            );
        }
        if !is_board_name(&self.board_profile) {
            err(
                "board_profile",
                format!("{:?} is not a board name", self.board_profile),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// What the device says about its configuration (device → cloud, `up/reported`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    pub v: Version,
    #[serde(flatten)]
    pub header: UpHeader,
    /// The version in force after this report (None before any config was applied).
    pub in_force: Option<u64>,
    #[serde(flatten)]
    pub outcome: ConfigOutcome,
}

/// The result of receiving one desired config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ConfigOutcome {
    /// `version` is now in force.
    Applied { version: u64 },
    /// `version` (if it could be read) was refused; the one in force is unchanged.
    Rejected {
        version: Option<u64>,
        errors: Vec<ConfigError>,
    },
}
