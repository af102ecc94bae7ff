//! kiosk-protocol: the wire contract between a kiosk and the cloud over MQTT.
//!
//! Why it exists: the kiosk (`kiosk-sync`) and the cloud (`tenantd`) are released separately,
//! so what crosses the broker is a small crate of its own with explicit versions. Serde types
//! only, no I/O: [`topic`] names the topics, and each payload module has its message types.
//!
//! Every payload is JSON with a `v` field, the payload version ([`V1`] today). Readers accept
//! every version up to the one they know, so a new cloud reads old firmware; recorded fixtures
//! of every message of every released version live in `tests/fixtures/` and are read back by the
//! tests forever. Every device→cloud message carries a unique [`MessageId`] and a per-device
//! sequence number: delivery is at least once on the wire, and the cloud keeps each id once.
//!
//! Call control and signalling (`up/signal`, `down/call`, `down/signal`) are in [`call`]; the
//! customer journey's one-time codes and callbacks (`up/journey`, `down/journey`) in
//! [`journey`]; weekly business hours, holidays and "open now / next opening" in [`hours`].

pub mod call;
pub mod command;
pub mod config;
pub mod event;
pub mod hours;
pub mod journey;
pub mod provision;
pub mod renew;
pub mod telemetry;
pub mod topic;

use serde::{Deserialize, Deserializer, Serialize};

/// Payload version 1.
pub const V1: u32 = 1;
/// The newest payload version this crate writes and reads.
pub const CURRENT: u32 = V1;

/// A payload's version; deserializing refuses versions newer than [`CURRENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Version(u32);

impl Version {
    pub const CURRENT: Version = Version(CURRENT);

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Version {
    fn default() -> Self {
        Version::CURRENT
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v == 0 || v > CURRENT {
            return Err(serde::de::Error::custom(format!(
                "payload version {v} is not supported (this build reads 1 to {CURRENT})"
            )));
        }
        Ok(Version(v))
    }
}

/// A device's id: the CN of its certificate, and a topic level. 3 to 64 characters of
/// lower-case ASCII letters, digits and `-`, starting with a letter or digit, so it can never
/// hold an MQTT wildcard or a level separator.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(s: &str) -> Result<DeviceId, InvalidId> {
        if is_id(s, 3, 64) {
            Ok(DeviceId(s.to_string()))
        } else {
            Err(InvalidId {
                what: "device id",
                value: s.to_string(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DeviceId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A message's unique id: 8 to 64 characters of ASCII letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct MessageId(String);

impl MessageId {
    pub fn parse(s: &str) -> Result<MessageId, InvalidId> {
        let ok = (8..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(MessageId(s.to_string()))
        } else {
            Err(InvalidId {
                what: "message id",
                value: s.to_string(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MessageId::parse(&s).map_err(serde::de::Error::custom)
    }
}

pub(crate) fn is_id(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

/// An id that does not have the required form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId {
    pub what: &'static str,
    pub value: String,
}

impl std::fmt::Display for InvalidId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a valid {}", self.value, self.what)
    }
}

impl std::error::Error for InvalidId {}

/// What every device→cloud message starts with: its unique id, the device's sequence number
/// (strictly increasing per device, for order) and when it was made (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpHeader {
    pub id: MessageId,
    pub seq: u64,
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_hold_topic_syntax() {
        assert!(DeviceId::parse("kiosk-0001").is_ok());
        for bad in [
            "k",
            "+",
            "#",
            "a/b",
            "Kiosk1",
            "-abc",
            "kiosk 1",
            &"a".repeat(65),
        ] {
            assert!(DeviceId::parse(bad).is_err(), "{bad}");
        }
        assert!(MessageId::parse("01J9Z7Q4-aaaa_1").is_ok());
        assert!(MessageId::parse("short").is_err());
        assert!(MessageId::parse("has/slash-000").is_err());
    }

    #[test]
    fn newer_versions_are_refused_with_a_clear_error() {
        #[derive(Debug, Deserialize)]
        struct P {
            #[allow(dead_code)]
            v: Version,
        }
        assert!(serde_json::from_str::<P>(r#"{"v":1}"#).is_ok());
        let e = serde_json::from_str::<P>(r#"{"v":2}"#).unwrap_err();
        assert!(e.to_string().contains("payload version 2 is not supported"));
        assert!(serde_json::from_str::<P>(r#"{"v":0}"#).is_err());
    }
}
