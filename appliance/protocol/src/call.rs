//! Call control and signalling between a kiosk and the cloud (`up/signal`, `down/call`,
//! `down/signal`).
//!
//! A call, as the wire sees it:
//!
//! 1. The kiosk asks for a call: [`UpSignalBody::Place`] with a request id of its own choosing.
//! 2. The cloud gives every placed call an id and answers on `down/call`: [`CallEvent::Queued`]
//!    (agents are ringing) or [`CallEvent::Refused`] (no call: closed, nobody can answer, the
//!    kiosk is not allowed to call).
//! 3. An agent accepts: [`CallEvent::Accepted`] carries the ICE servers for this call, with TURN
//!    credentials minted for it alone.
//! 4. The kiosk makes the SDP offer and trickles its ICE candidates ([`UpSignalBody::Sdp`],
//!    [`UpSignalBody::Ice`]); the agent's answer and candidates come back on `down/signal`
//!    ([`DownSignal`]). Media then flows peer to peer; it never passes through the cloud.
//! 5. Either side ends it: [`UpSignalBody::End`] from the kiosk, [`CallEvent::Ended`] from the
//!    cloud (the agent hung up, the agent's browser went away, the call ran too long).
//!
//! Signalling is not kept in the outbox: a call cannot start or go on without the cloud, so a
//! signal that cannot be sent now is an error for the caller, not a message for later.

use serde::{Deserialize, Deserializer, Serialize};

use crate::{InvalidId, UpHeader, Version};

/// Largest SDP accepted, in bytes (a two-track offer with many candidates is about 6 KiB).
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Largest ICE candidate line accepted, in bytes.
pub const MAX_CANDIDATE_BYTES: usize = 1024;
/// Largest request id, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64;

/// A call's id, given by the cloud: 8 to 64 characters of lower-case ASCII letters, digits and
/// `-` (`call-` and 16 base32 letters today).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CallId(String);

impl CallId {
    pub fn parse(s: &str) -> Result<CallId, InvalidId> {
        if crate::is_id(s, 8, 64) {
            Ok(CallId(s.to_string()))
        } else {
            Err(InvalidId {
                what: "call id",
                value: s.to_string(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CallId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CallId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What kind of call a kiosk places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// A technician's test call (`kioskctl call test`): no customer, no call record for one.
    Test,
    /// A verified customer's call (the journey).
    Customer,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Test => "test",
            CallKind::Customer => "customer",
        }
    }

    pub fn parse(s: &str) -> Option<CallKind> {
        match s {
            "test" => Some(CallKind::Test),
            "customer" => Some(CallKind::Customer),
            _ => None,
        }
    }
}

/// The type of an SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SdpType {
    Offer,
    Answer,
}

impl SdpType {
    pub fn as_str(self) -> &'static str {
        match self {
            SdpType::Offer => "offer",
            SdpType::Answer => "answer",
        }
    }
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Kiosk,
    Agent,
    Cloud,
}

/// Why a call ended. Unknown reasons from a newer peer read as [`EndReason::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Someone pressed "end".
    Hangup,
    /// The caller gave up before an agent answered.
    Cancelled,
    /// Every ringing agent declined, or nobody answered in time.
    NotAnswered,
    /// The media engine failed or went away and could not recover.
    MediaFailed,
    /// The kiosk lost its link to the cloud.
    KioskOffline,
    /// The agent's console went away and did not come back in time.
    AgentDisconnected,
    /// The call reached the organization's longest call.
    TooLong,
    /// The peer broke the signalling rules (bad SDP, too many messages).
    ProtocolError,
    #[serde(other)]
    Other,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Hangup => "hangup",
            EndReason::Cancelled => "cancelled",
            EndReason::NotAnswered => "not_answered",
            EndReason::MediaFailed => "media_failed",
            EndReason::KioskOffline => "kiosk_offline",
            EndReason::AgentDisconnected => "agent_disconnected",
            EndReason::TooLong => "too_long",
            EndReason::ProtocolError => "protocol_error",
            EndReason::Other => "other",
        }
    }

    /// Reads a reason as [`EndReason::as_str`] spells it; anything else is `Other`.
    pub fn parse(s: &str) -> EndReason {
        serde_json::from_value(serde_json::Value::String(s.to_string())).unwrap_or(EndReason::Other)
    }
}

/// An ICE server as the browser's `RTCIceServer` spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:host:port?transport=tcp`.
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Device → cloud, `kiosk/v1/{d}/up/signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpSignal {
    pub v: Version,
    #[serde(flatten)]
    pub header: UpHeader,
    #[serde(flatten)]
    pub body: UpSignalBody,
}

/// What a kiosk says about a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UpSignalBody {
    /// Asks for a call. `request` is the kiosk's own id for it (1 to 64 bytes), echoed in the
    /// answer; `language` is a BCP 47 tag the customer chose, if any.
    ///
    /// A `customer` call carries the customer token from [`crate::journey`] (a verified phone
    /// number, good for this one call) and, when the organization records, the customer's
    /// answer to the consent notice.
    Place {
        request: String,
        kind: CallKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        consent: Option<Consent>,
    },
    /// The kiosk's SDP (an offer; an answer only if the agent renegotiates).
    Sdp {
        call: CallId,
        sdp_type: SdpType,
        sdp: String,
    },
    /// One trickled ICE candidate; an empty `candidate` says there are no more.
    Ice {
        call: CallId,
        candidate: String,
        sdp_mline_index: u32,
    },
    /// The kiosk ends (or cancels) the call.
    End { call: CallId, reason: EndReason },
}

/// The customer's answer to the recording notice, as the kiosk recorded it (the same id is in
/// the `consent` event of its outbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// The kiosk's id for this consent record (1 to 64 bytes).
    pub id: String,
    /// The version of the notice text shown.
    pub notice_version: u32,
    /// `true`: the call may be recorded; `false`: it must not be.
    pub granted: bool,
}

/// Cloud → device, `kiosk/v1/{d}/down/call`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallControl {
    pub v: Version,
    pub call: CallId,
    /// The kiosk's request id for this call.
    pub request: String,
    #[serde(flatten)]
    pub event: CallEvent,
}

/// What happened to a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CallEvent {
    /// Placed; agents are ringing. Sent again whenever the place in the queue changes:
    /// `position` 1 is next; `estimated_wait_s` comes from the organization's recent waits.
    Queued {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimated_wait_s: Option<u32>,
    },
    /// No call (the reason is for the technician's log, not the customer's screen).
    Refused { reason: String },
    /// An agent accepted: make the offer with these ICE servers. TURN credentials in them
    /// expire at `expires_at_ms` (Unix milliseconds), the latest the call may last.
    Accepted {
        agent: String,
        ice_servers: Vec<IceServer>,
        expires_at_ms: i64,
    },
    /// The call is over. `callback_offered`: nobody answered in time and the customer may ask
    /// to be called back (`up/journey` `callback`).
    Ended {
        reason: EndReason,
        by: Party,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        callback_offered: bool,
    },
}

/// Cloud → device, `kiosk/v1/{d}/down/signal`: the agent's side of the negotiation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownSignal {
    pub v: Version,
    pub call: CallId,
    #[serde(flatten)]
    pub body: PeerSignal,
}

/// An SDP or an ICE candidate from the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerSignal {
    Sdp {
        sdp_type: SdpType,
        sdp: String,
    },
    Ice {
        candidate: String,
        sdp_mline_index: u32,
    },
}

/// A signalling message that breaks the size rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    pub what: &'static str,
    pub bytes: usize,
    pub max: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} bytes; at most {}",
            self.what, self.bytes, self.max
        )
    }
}

impl std::error::Error for TooLarge {}

fn limit(what: &'static str, s: &str, max: usize) -> Result<(), TooLarge> {
    if s.len() > max {
        return Err(TooLarge {
            what,
            bytes: s.len(),
            max,
        });
    }
    Ok(())
}

impl PeerSignal {
    /// Checks the size limits ([`MAX_SDP_BYTES`], [`MAX_CANDIDATE_BYTES`]).
    pub fn check(&self) -> Result<(), TooLarge> {
        match self {
            PeerSignal::Sdp { sdp, .. } => limit("sdp", sdp, MAX_SDP_BYTES),
            PeerSignal::Ice { candidate, .. } => limit("candidate", candidate, MAX_CANDIDATE_BYTES),
        }
    }
}

impl UpSignalBody {
    /// Checks the size limits.
    pub fn check(&self) -> Result<(), TooLarge> {
        match self {
            UpSignalBody::Place {
                request,
                language,
                customer,
                consent,
                ..
            } => {
                limit("request", request, MAX_REQUEST_BYTES)?;
                if request.is_empty() {
                    return Err(TooLarge {
                        what: "request (empty)",
                        bytes: 0,
                        max: MAX_REQUEST_BYTES,
                    });
                }
                limit("language", language.as_deref().unwrap_or(""), 35)?;
                limit(
                    "customer",
                    customer.as_deref().unwrap_or(""),
                    crate::journey::MAX_TOKEN_BYTES,
                )?;
                if let Some(c) = consent {
                    limit("consent id", &c.id, MAX_REQUEST_BYTES)?;
                }
                Ok(())
            }
            UpSignalBody::Sdp { sdp, .. } => limit("sdp", sdp, MAX_SDP_BYTES),
            UpSignalBody::Ice { candidate, .. } => {
                limit("candidate", candidate, MAX_CANDIDATE_BYTES)
            }
            UpSignalBody::End { .. } => Ok(()),
        }
    }

    /// The call this message is about (none for `Place`).
    pub fn call(&self) -> Option<&CallId> {
        match self {
            UpSignalBody::Place { .. } => None,
            UpSignalBody::Sdp { call, .. }
            | UpSignalBody::Ice { call, .. }
            | UpSignalBody::End { call, .. } => Some(call),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_are_checked() {
        assert!(CallId::parse("call-abcdefgh23456789").is_ok());
        for bad in ["call", "Call-ABCDEFGH", "call/abcdefgh", "-callabcdef"] {
            assert!(CallId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_end_reasons_read_as_other() {
        assert_eq!(EndReason::parse("hangup"), EndReason::Hangup);
        assert_eq!(EndReason::parse("solar_flare"), EndReason::Other);
        let c: CallControl = serde_json::from_str(
            r#"{"v":1,"call":"call-abcdefgh","request":"r1","event":"ended","reason":"new_thing","by":"cloud"}"#,
        )
        .unwrap();
        assert_eq!(
            c.event,
            CallEvent::Ended {
                reason: EndReason::Other,
                by: Party::Cloud,
                callback_offered: false,
            }
        );
    }

    #[test]
    fn sizes_are_limited() {
        let big = PeerSignal::Ice {
            candidate: "a".repeat(MAX_CANDIDATE_BYTES + 1),
            sdp_mline_index: 0,
        };
        assert!(big.check().is_err());
        let place = UpSignalBody::Place {
            request: String::new(),
            kind: CallKind::Test,
            language: None,
            customer: None,
            consent: None,
        };
        assert!(place.check().is_err());
    }
}
