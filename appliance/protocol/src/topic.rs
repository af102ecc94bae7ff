//! Topic names. `{d}` is the device id (its certificate's CN), `{client}` a provisioning
//! client's id (the claim certificate's CN plus a per-request suffix).
//!
//! | topic | direction |
//! |---|---|
//! | `provision/v1/{client}/request` · `provision/v1/{client}/response` | claim cert ↔ cloud |
//! | `kiosk/v1/{d}/up/telemetry`, `up/reported`, `up/events`, `up/signal`, `up/cmd-result`, `up/csr`, `up/journey` | device → cloud |
//! | `kiosk/v1/{d}/down/desired` (retained), `down/cmd`, `down/signal`, `down/call`, `down/cert`, `down/journey` | cloud → device |
//! | `kiosk/v1/{d}/status` (retained; the broker's last will says offline) | device → everyone |

use crate::DeviceId;

/// The root of every device topic.
pub const KIOSK_ROOT: &str = "kiosk/v1";
/// The root of every provisioning topic.
pub const PROVISION_ROOT: &str = "provision/v1";

/// A device→cloud channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Up {
    Telemetry,
    Reported,
    Events,
    Signal,
    CmdResult,
    /// A certificate signing request for a new device key (rotation).
    Csr,
    /// The customer journey's requests: one-time codes and callbacks (live, never stored).
    Journey,
}

/// A cloud→device channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Down {
    Desired,
    Cmd,
    Signal,
    Call,
    /// The certificate answering an `up/csr`.
    Cert,
    /// Answers to `up/journey`.
    Journey,
}

impl Up {
    pub const ALL: [Up; 7] = [
        Up::Telemetry,
        Up::Reported,
        Up::Events,
        Up::Signal,
        Up::CmdResult,
        Up::Csr,
        Up::Journey,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Up::Telemetry => "telemetry",
            Up::Reported => "reported",
            Up::Events => "events",
            Up::Signal => "signal",
            Up::CmdResult => "cmd-result",
            Up::Csr => "csr",
            Up::Journey => "journey",
        }
    }
}

impl Down {
    pub const ALL: [Down; 6] = [
        Down::Desired,
        Down::Cmd,
        Down::Signal,
        Down::Call,
        Down::Cert,
        Down::Journey,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Down::Desired => "desired",
            Down::Cmd => "cmd",
            Down::Signal => "signal",
            Down::Call => "call",
            Down::Cert => "cert",
            Down::Journey => "journey",
        }
    }
}

/// A parsed topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    ProvisionRequest(String),
    ProvisionResponse(String),
    Up(DeviceId, Up),
    Down(DeviceId, Down),
    Status(DeviceId),
}

impl Topic {
    /// The topic's name on the wire.
    pub fn name(&self) -> String {
        match self {
            Topic::ProvisionRequest(c) => format!("{PROVISION_ROOT}/{c}/request"),
            Topic::ProvisionResponse(c) => format!("{PROVISION_ROOT}/{c}/response"),
            Topic::Up(d, up) => format!("{KIOSK_ROOT}/{d}/up/{}", up.name()),
            Topic::Down(d, down) => format!("{KIOSK_ROOT}/{d}/down/{}", down.name()),
            Topic::Status(d) => format!("{KIOSK_ROOT}/{d}/status"),
        }
    }

    /// Parses a topic name; `None` for anything that is not one of ours.
    pub fn parse(name: &str) -> Option<Topic> {
        let parts: Vec<&str> = name.split('/').collect();
        match parts.as_slice() {
            ["provision", "v1", client, "request"] if valid_client(client) => {
                Some(Topic::ProvisionRequest(client.to_string()))
            }
            ["provision", "v1", client, "response"] if valid_client(client) => {
                Some(Topic::ProvisionResponse(client.to_string()))
            }
            ["kiosk", "v1", d, "status"] => DeviceId::parse(d).ok().map(Topic::Status),
            ["kiosk", "v1", d, dir, channel] => {
                let d = DeviceId::parse(d).ok()?;
                match *dir {
                    "up" => Up::ALL
                        .into_iter()
                        .find(|u| u.name() == *channel)
                        .map(|u| Topic::Up(d, u)),
                    "down" => Down::ALL
                        .into_iter()
                        .find(|c| c.name() == *channel)
                        .map(|c| Topic::Down(d, c)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The device a topic belongs to.
    pub fn device(&self) -> Option<&DeviceId> {
        match self {
            Topic::Up(d, _) | Topic::Down(d, _) | Topic::Status(d) => Some(d),
            _ => None,
        }
    }
}

/// A provisioning client id: 3 to 96 characters of lower-case letters, digits and `-`.
pub fn valid_client(s: &str) -> bool {
    crate::is_id(s, 3, 96)
}

/// Subscriptions of the cloud service (all devices).
pub mod cloud {
    /// Everything devices send.
    pub const UP: &str = "kiosk/v1/+/up/#";
    /// Online/offline of every device.
    pub const STATUS: &str = "kiosk/v1/+/status";
    /// Provisioning requests.
    pub const PROVISION: &str = "provision/v1/+/request";
}

/// Broker ACL patterns, in mosquitto's syntax: `%u` is the client certificate's CN.
/// A device may write only its own `up/#` and `status`, and read only its own `down/#`; a claim
/// certificate (CN `claim-<batch>`, so `{client}` is the batch's claim identity) only its own
/// provisioning pair. Devices and claims connect on different listeners.
pub mod acl {
    pub const DEVICE_WRITE_UP: &str = "kiosk/v1/%u/up/#";
    pub const DEVICE_WRITE_STATUS: &str = "kiosk/v1/%u/status";
    pub const DEVICE_READ_DOWN: &str = "kiosk/v1/%u/down/#";
    pub const CLAIM_WRITE_REQUEST: &str = "provision/v1/%u/request";
    pub const CLAIM_READ_RESPONSE: &str = "provision/v1/%u/response";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let d = DeviceId::parse("kiosk-0042").unwrap();
        let all = Up::ALL
            .into_iter()
            .map(|u| Topic::Up(d.clone(), u))
            .chain(Down::ALL.into_iter().map(|c| Topic::Down(d.clone(), c)))
            .chain([
                Topic::Status(d.clone()),
                Topic::ProvisionRequest("claim-batch-7-abc123".into()),
                Topic::ProvisionResponse("claim-batch-7-abc123".into()),
            ]);
        for t in all {
            assert_eq!(Topic::parse(&t.name()), Some(t.clone()), "{}", t.name());
        }
        assert_eq!(
            Topic::Up(d.clone(), Up::CmdResult).name(),
            "kiosk/v1/kiosk-0042/up/cmd-result"
        );
    }

    #[test]
    fn foreign_or_malformed_topics_are_not_ours() {
        for t in [
            "kiosk/v1/+/up/telemetry",
            "kiosk/v1/kiosk-1/up/nope",
            "kiosk/v2/kiosk-1/status",
            "kiosk/v1/kiosk-1/side/cmd",
            "provision/v1/#/request",
            "other",
        ] {
            assert_eq!(Topic::parse(t), None, "{t}");
        }
    }
}
