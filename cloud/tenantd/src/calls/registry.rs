//! The call registry: every live call and every connected agent, as plain data.
//!
//! [`Registry`] takes what happened (a kiosk placed a call, an agent accepted, a socket closed,
//! time passed) as plain values and answers with [`Effect`]s: messages for a kiosk, frames for
//! an agent's sockets, and call records to write. It does no I/O and reads no clock, so the
//! rules are tested here without sockets; `calls::CallHub` carries the effects out.
//!
//! The rules (docs/calls.md):
//!
//! - A kiosk has at most one call at a time; a new `place` while one runs is refused. A repeated
//!   `place` with the same request id gets the same answer (the call's current state). The edge
//!   may refuse a placement before it queues (the site is closed, the customer is not
//!   verified); the registry records it with its outcome.
//! - Each organization has one queue: its waiting calls, oldest first. The oldest waiting call
//!   rings every free agent of the organization (available, connected, without a call) who has
//!   not declined it; an agent rings for one call at a time, so a call further back rings the
//!   agents the calls before it leave free (those who declined them, or who do not speak
//!   their language). With a language, a call rings the free agents who speak it or list no
//!   language; when no free agent does, it rings any free agent. A decline, an agent who goes
//!   away or takes another call, and an agent who becomes free all re-route the queue at once.
//! - Kiosks hear `queued` with their place (`position` 1 is next) and an estimate (the
//!   organization's recent answered waits, averaged, times the position) when the call is
//!   placed and again whenever the place changes.
//! - The first accept wins; the others get `ring_cancelled` `taken`. An agent has one call at
//!   a time (`busy`).
//! - Only the accepting agent may signal or end a call on the WebSocket; only the placing kiosk
//!   on MQTT.
//! - A call nobody accepts within the organization's queue time-out ends `not_answered`; a
//!   customer's call then offers a callback (`callback_offered`).
//! - A kiosk going offline ends its call (`kiosk_offline`). An agent whose sockets are all
//!   closed stops ringing at once and, if it does not come back within the grace, loses its
//!   call (`agent_disconnected`). An accepted call ends `too_long` at the expiry of its TURN
//!   credentials (accept time plus the organization's longest call).
//! - Every ended or refused call gets its [`Outcome`].

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use kiosk_protocol::call::{
    CallControl, CallEvent, CallId, CallKind, DownSignal, EndReason, IceServer, Party, PeerSignal,
    SdpType, UpSignalBody,
};
use kiosk_protocol::Version;
use serde::{Deserialize, Serialize};

pub use super::routing::Outcome;
use super::routing::{self, WaitHistory};

/// A socket of an agent, numbered by the WebSocket edge.
pub type SocketId = u64;

/// How many answers to `place` are remembered per kiosk, for repeated requests.
const RECENT_PER_KIOSK: usize = 8;
/// How many kiosk message ids are remembered per call, to drop redeliveries.
const SEEN_PER_CALL: usize = 512;

/// A new call id: `call-` and 16 base32 letters (80 random bits).
pub fn new_call_id() -> CallId {
    use rand::Rng;
    const B32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let tail: String = (0..16)
        .map(|_| B32[rng.random_range(0..B32.len())] as char)
        .collect();
    // The alphabet and length always make a valid id.
    CallId::parse(&format!("call-{tail}")).unwrap_or_else(|_| unreachable!())
}

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Ringing,
    Accepted,
    Ended,
    Refused,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Ringing => "ringing",
            CallState::Accepted => "accepted",
            CallState::Ended => "ended",
            CallState::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<CallState> {
        match s {
            "ringing" => Some(CallState::Ringing),
            "accepted" => Some(CallState::Accepted),
            "ended" => Some(CallState::Ended),
            "refused" => Some(CallState::Refused),
            _ => None,
        }
    }
}

/// A call as it is written to the store (and listed to the console). Times are Unix ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    pub id: CallId,
    pub org_id: i64,
    pub site_id: Option<i64>,
    pub device_id: String,
    pub kind: CallKind,
    pub request: String,
    pub state: CallState,
    /// The agent (user id) who accepted it.
    pub agent_id: Option<i64>,
    pub placed_at_ms: i64,
    pub accepted_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub end_reason: Option<EndReason>,
    pub ended_by: Option<Party>,
    pub refused_reason: Option<String>,
    /// The verified customer of a `customer` call (`customers` row).
    pub customer_id: Option<i64>,
    /// The customer's number, masked (`+33•••••••78`).
    pub phone_masked: Option<String>,
    /// The keyed hash of the customer's number (never shown).
    #[serde(skip)]
    pub phone_hash: Option<Vec<u8>>,
    /// The call's language (BCP 47), from the kiosk or the customer's session.
    pub language: Option<String>,
    /// When the customer's number was verified.
    pub verified_at_ms: Option<i64>,
    /// How the call went; `None` while it is live.
    pub outcome: Option<Outcome>,
    /// The customer consented and the organization records.
    pub recorded: bool,
    /// The kiosk's id of the consent record (`consents`).
    pub consent_id: Option<String>,
    /// Nobody answered in time and the kiosk offered the customer a callback.
    pub callback_offered: bool,
    /// Grows with every change: a store write never replaces a newer one.
    #[serde(skip)]
    pub rev: u64,
}

impl CallRecord {
    /// A call just placed (ringing), with no customer.
    pub fn new(
        id: CallId,
        org_id: i64,
        site_id: Option<i64>,
        device_id: String,
        kind: CallKind,
        request: String,
        placed_at_ms: i64,
    ) -> CallRecord {
        CallRecord {
            id,
            org_id,
            site_id,
            device_id,
            kind,
            request,
            state: CallState::Ringing,
            agent_id: None,
            placed_at_ms,
            accepted_at_ms: None,
            ended_at_ms: None,
            end_reason: None,
            ended_by: None,
            refused_reason: None,
            customer_id: None,
            phone_masked: None,
            phone_hash: None,
            language: None,
            verified_at_ms: None,
            outcome: None,
            recorded: false,
            consent_id: None,
            callback_offered: false,
            rev: 1,
        }
    }
}

/// An id and a name, as frames show kiosks, sites and agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Named<I> {
    pub id: I,
    pub name: String,
}

/// What the cloud knows of a kiosk that places a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KioskInfo {
    pub device_id: String,
    pub name: String,
    pub org_id: i64,
    pub site: Option<Named<i64>>,
}

/// The verified customer a `customer` call was placed for (the edge claimed the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: i64,
    pub phone_masked: String,
    pub phone_hash: Vec<u8>,
    pub verified_at_ms: i64,
}

/// Why the edge refuses a placement before it reaches the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refuse {
    /// The kiosk's site is outside its business hours.
    Closed,
    /// A `customer` call without a valid customer token.
    NotVerified,
}

impl Refuse {
    /// The `refused` reason the kiosk gets.
    pub fn reason(self) -> &'static str {
        match self {
            Refuse::Closed => "closed",
            Refuse::NotVerified => "not_verified",
        }
    }
}

/// A `place` from a kiosk, with what the edge looked up for it.
#[derive(Debug, Clone)]
pub struct Placement {
    pub kiosk: KioskInfo,
    pub request: String,
    pub kind: CallKind,
    /// The id the call gets if it is placed.
    pub new_id: CallId,
    /// The organization's longest call, in ms.
    pub max_call_ms: i64,
    /// How long the call may wait for an agent, in ms (the organization's queue time-out).
    pub queue_timeout_ms: i64,
    /// The call's language (BCP 47), if any.
    pub language: Option<String>,
    /// The verified customer of a `customer` call.
    pub customer: Option<Customer>,
    /// Whether the call may be recorded (consent granted, organization records).
    pub recorded: bool,
    /// The kiosk's consent record for this call.
    pub consent_id: Option<String>,
    /// Refused by the edge before it queues.
    pub refuse: Option<Refuse>,
    /// The organization's recent answered waits (ms, newest first), to start its estimate
    /// when the registry has none yet (after a restart).
    pub recent_waits_ms: Vec<i64>,
}

impl Placement {
    /// A placement with no customer, language or consent.
    pub fn new(
        kiosk: KioskInfo,
        request: String,
        kind: CallKind,
        new_id: CallId,
        max_call_ms: i64,
        queue_timeout_ms: i64,
    ) -> Placement {
        Placement {
            kiosk,
            request,
            kind,
            new_id,
            max_call_ms,
            queue_timeout_ms,
            language: None,
            customer: None,
            recorded: false,
            consent_id: None,
            refuse: None,
            recent_waits_ms: Vec::new(),
        }
    }
}

/// An agent's connection to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRef {
    pub user_id: i64,
    pub org_id: i64,
    pub name: String,
    /// The languages the agent speaks (BCP 47); empty: any call.
    pub languages: Vec<String>,
}

/// The ICE servers of one accepted call and when its credentials expire (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceGrant {
    pub ice_servers: Vec<IceServer>,
    pub expires_at_ms: i64,
}

/// Why a ringing call stopped ringing for an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RingEnd {
    /// Another agent accepted it.
    Taken,
    /// This agent declined it, went away or took another call, or the queue gave this agent
    /// to another call.
    Cancelled,
    /// The call ended before anyone accepted it.
    Ended,
}

/// A ringing call as an agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RingingCall {
    pub call: CallId,
    pub kiosk: Named<String>,
    pub site: Option<Named<i64>>,
    pub kind: CallKind,
    pub since_ms: i64,
    /// The call's language, when the kiosk gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Server → agent frames (docs/calls.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Hello {
        agent: Named<i64>,
        available: bool,
        calls: Vec<RingingCall>,
    },
    Availability {
        available: bool,
    },
    Ringing(RingingCall),
    RingCancelled {
        call: CallId,
        reason: RingEnd,
    },
    Accepted {
        call: CallId,
        ice_servers: Vec<IceServer>,
        expires_at_ms: i64,
        kiosk: Named<String>,
        site: Option<Named<i64>>,
    },
    Sdp {
        call: CallId,
        sdp_type: SdpType,
        sdp: String,
    },
    Ice {
        call: CallId,
        candidate: String,
        sdp_mline_index: u32,
    },
    Ended {
        call: CallId,
        reason: EndReason,
        by: Party,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        call: Option<CallId>,
    },
    Pong,
}

/// Agent → server frames (docs/calls.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Available {
        available: bool,
    },
    Accept {
        call: CallId,
    },
    Decline {
        call: CallId,
    },
    Sdp {
        call: CallId,
        sdp_type: SdpType,
        sdp: String,
    },
    Ice {
        call: CallId,
        candidate: String,
        sdp_mline_index: u32,
    },
    End {
        call: CallId,
    },
    Ping,
}

/// Why an agent's frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadMessage,
    NotYourCall,
    Busy,
    Rate,
    NoSuchCall,
}

/// A refused agent frame: answered on that socket only; no call is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    pub call: Option<CallId>,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>, call: Option<&CallId>) -> Self {
        Refusal {
            code,
            message: message.into(),
            call: call.cloned(),
        }
    }

    pub fn frame(self) -> ServerFrame {
        ServerFrame::Error {
            code: self.code,
            message: self.message,
            call: self.call,
        }
    }
}

/// A message for a kiosk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KioskMessage {
    /// `down/call`.
    Control(CallControl),
    /// `down/signal`.
    Signal(DownSignal),
}

/// What the registry asks its edges to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Kiosk {
        device: String,
        message: KioskMessage,
    },
    /// To every socket of an agent.
    Agent { agent: i64, frame: ServerFrame },
    /// To one socket.
    Socket {
        socket: SocketId,
        frame: ServerFrame,
    },
    /// Write this call to the store.
    Record(CallRecord),
}

/// Why a kiosk's message was dropped (logged, never answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    NoSuchCall,
    NotYourCall,
    NotAccepted,
    Duplicate,
    Place,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dropped::NoSuchCall => "no such call",
            Dropped::NotYourCall => "the call is not this kiosk's",
            Dropped::NotAccepted => "the call is not accepted yet",
            Dropped::Duplicate => "a redelivered message",
            Dropped::Place => "place is not a signal",
        })
    }
}

#[derive(Debug)]
struct Call {
    record: CallRecord,
    kiosk: KioskInfo,
    /// Agents who declined it.
    declined: HashSet<i64>,
    /// Agents it rang.
    rung: HashSet<i64>,
    /// Waiting: placement + queue time-out; accepted: the credentials' expiry.
    deadline_ms: i64,
    grant: Option<IceGrant>,
    seen: VecDeque<String>,
    /// Placement order, to break ties between calls placed in the same millisecond.
    seq: u64,
    /// The place in the queue the kiosk was last told.
    position: Option<u32>,
}

impl Effect {
    /// `down/call` to a kiosk: `event` for its call `call`, placed with request id `request`.
    pub fn control(device: String, call: CallId, request: String, event: CallEvent) -> Effect {
        Effect::Kiosk {
            device,
            message: KioskMessage::Control(CallControl {
                v: Version::CURRENT,
                call,
                request,
                event,
            }),
        }
    }
}

impl Call {
    fn control(&self, event: CallEvent) -> Effect {
        Effect::control(
            self.record.device_id.clone(),
            self.record.id.clone(),
            self.record.request.clone(),
            event,
        )
    }

    fn waiting(&self) -> bool {
        self.record.state == CallState::Ringing
    }

    fn queue_key(&self) -> (i64, u64) {
        (self.record.placed_at_ms, self.seq)
    }

    fn ringing(&self) -> RingingCall {
        RingingCall {
            call: self.record.id.clone(),
            kiosk: Named {
                id: self.kiosk.device_id.clone(),
                name: self.kiosk.name.clone(),
            },
            site: self.kiosk.site.clone(),
            kind: self.record.kind,
            since_ms: self.record.placed_at_ms,
            language: self.record.language.clone(),
        }
    }

    fn accepted_frame(&self) -> Option<ServerFrame> {
        let grant = self.grant.as_ref()?;
        Some(ServerFrame::Accepted {
            call: self.record.id.clone(),
            ice_servers: grant.ice_servers.clone(),
            expires_at_ms: grant.expires_at_ms,
            kiosk: Named {
                id: self.kiosk.device_id.clone(),
                name: self.kiosk.name.clone(),
            },
            site: self.kiosk.site.clone(),
        })
    }

    fn touch(&mut self) -> Effect {
        self.record.rev += 1;
        Effect::Record(self.record.clone())
    }
}

#[derive(Debug)]
struct Agent {
    org_id: i64,
    name: String,
    languages: Vec<String>,
    sockets: BTreeSet<SocketId>,
    available: bool,
    call: Option<CallId>,
    /// The call ringing for this agent (what its sockets were last told).
    ringing: Option<CallId>,
    /// When the last socket closed, while the agent still has a call.
    gone_since_ms: Option<i64>,
}

impl Agent {
    /// Available, connected and without a call: it may ring.
    fn free(&self) -> bool {
        self.available && self.call.is_none() && !self.sockets.is_empty()
    }
}

/// A finished `place`, remembered for repeated requests.
#[derive(Debug, Clone)]
struct Answered {
    request: String,
    call: CallId,
    /// The final answer (refused or ended); `None` while the call is live.
    last: Option<CallControl>,
}

/// Every live call and connected agent.
#[derive(Debug, Default)]
pub struct Registry {
    calls: HashMap<CallId, Call>,
    /// The live call of each kiosk.
    by_kiosk: HashMap<String, CallId>,
    recent: HashMap<String, VecDeque<Answered>>,
    agents: HashMap<i64, Agent>,
    /// Each organization's recent answered waits.
    waits: HashMap<i64, WaitHistory>,
    next_seq: u64,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// The organization of a live call.
    pub fn call_org(&self, call: &CallId) -> Option<i64> {
        self.calls.get(call).map(|c| c.record.org_id)
    }

    /// The live call of a kiosk.
    pub fn kiosk_call(&self, device: &str) -> Option<&CallRecord> {
        self.by_kiosk
            .get(device)
            .and_then(|id| self.calls.get(id))
            .map(|c| &c.record)
    }

    /// Whether a `place` from this kiosk with this request id was answered already (a repeat
    /// gets that answer again).
    pub fn knows_request(&self, device: &str, request: &str) -> bool {
        self.recent
            .get(device)
            .is_some_and(|r| r.iter().any(|a| a.request == request))
    }

    /// The number of live calls.
    pub fn live_calls(&self) -> usize {
        self.calls.len()
    }

    /// The waiting calls of an organization, in queue order (position 1 first).
    pub fn queue(&self, org_id: i64) -> Vec<CallId> {
        self.waiting(org_id)
            .into_iter()
            .map(|c| c.record.id.clone())
            .collect()
    }

    fn waiting(&self, org_id: i64) -> Vec<&Call> {
        let mut v: Vec<&Call> = self
            .calls
            .values()
            .filter(|c| c.record.org_id == org_id && c.waiting())
            .collect();
        v.sort_by_key(|c| c.queue_key());
        v
    }

    fn queued_event(&self, call: &Call) -> CallEvent {
        let estimated_wait_s = call.position.map(|p| {
            self.waits
                .get(&call.record.org_id)
                .map_or_else(|| WaitHistory::default().estimate_s(p), |w| w.estimate_s(p))
        });
        CallEvent::Queued {
            position: call.position,
            estimated_wait_s,
        }
    }

    /// A kiosk asks for a call.
    pub fn place(&mut self, p: Placement, now_ms: i64) -> Vec<Effect> {
        let device = p.kiosk.device_id.clone();
        // A repeated request gets the answer it had.
        if let Some(answered) = self
            .recent
            .get(&device)
            .and_then(|r| r.iter().find(|a| a.request == p.request))
            .cloned()
        {
            if let Some(last) = answered.last {
                return vec![Effect::Kiosk {
                    device,
                    message: KioskMessage::Control(last),
                }];
            }
            if let Some(call) = self.calls.get(&answered.call) {
                let event = match (&call.record.state, &call.grant) {
                    (CallState::Accepted, Some(g)) => CallEvent::Accepted {
                        agent: self
                            .agents
                            .get(&call.record.agent_id.unwrap_or_default())
                            .map(|a| a.name.clone())
                            .unwrap_or_default(),
                        ice_servers: g.ice_servers.clone(),
                        expires_at_ms: g.expires_at_ms,
                    },
                    _ => self.queued_event(call),
                };
                return vec![call.control(event)];
            }
            return Vec::new();
        }
        let org_id = p.kiosk.org_id;
        let mut record = CallRecord::new(
            p.new_id.clone(),
            org_id,
            p.kiosk.site.as_ref().map(|s| s.id),
            device.clone(),
            p.kind,
            p.request.clone(),
            now_ms,
        );
        record.language = p.language.clone().filter(|l| !l.is_empty());
        if let Some(c) = &p.customer {
            record.customer_id = Some(c.id);
            record.phone_masked = Some(c.phone_masked.clone());
            record.phone_hash = Some(c.phone_hash.clone());
            record.verified_at_ms = Some(c.verified_at_ms);
        }
        record.recorded = p.recorded;
        record.consent_id = p.consent_id.clone();
        let refused = if self.by_kiosk.contains_key(&device) {
            Some((
                "the kiosk already has a call in progress".to_string(),
                Outcome::Failed,
            ))
        } else {
            p.refuse.map(|r| {
                let outcome = match r {
                    Refuse::Closed => Outcome::Closed,
                    Refuse::NotVerified => Outcome::Failed,
                };
                (r.reason().to_string(), outcome)
            })
        };
        if let Some((reason, outcome)) = refused {
            record.state = CallState::Refused;
            record.ended_at_ms = Some(now_ms);
            record.refused_reason = Some(reason.clone());
            record.outcome = Some(outcome);
            let answer = CallControl {
                v: Version::CURRENT,
                call: record.id.clone(),
                request: p.request.clone(),
                event: CallEvent::Refused { reason },
            };
            self.remember(&device, &p.request, &record.id, Some(answer.clone()));
            return vec![
                Effect::Record(record),
                Effect::Kiosk {
                    device,
                    message: KioskMessage::Control(answer),
                },
            ];
        }
        self.waits
            .entry(org_id)
            .or_insert_with(|| WaitHistory::from_recent(&p.recent_waits_ms));
        self.next_seq += 1;
        let call = Call {
            record,
            kiosk: p.kiosk,
            declined: HashSet::new(),
            rung: HashSet::new(),
            deadline_ms: now_ms.saturating_add(p.queue_timeout_ms),
            grant: None,
            seen: VecDeque::new(),
            seq: self.next_seq,
            position: None,
        };
        let mut effects = vec![Effect::Record(call.record.clone())];
        self.remember(&device, &p.request, &call.record.id, None);
        self.by_kiosk.insert(device, call.record.id.clone());
        self.calls.insert(call.record.id.clone(), call);
        effects.extend(self.reroute(org_id));
        effects
    }

    fn remember(&mut self, device: &str, request: &str, call: &CallId, last: Option<CallControl>) {
        let recent = self.recent.entry(device.to_string()).or_default();
        recent.push_back(Answered {
            request: request.to_string(),
            call: call.clone(),
            last,
        });
        while recent.len() > RECENT_PER_KIOSK {
            recent.pop_front();
        }
    }

    /// Which call rings for which free agent of an organization now (see the module doc):
    /// first every waiting call, oldest first, takes the free agents who speak its language
    /// and are not taken yet; then every call that no free agent speaks takes any free agent
    /// not taken yet.
    fn plan(&self, org_id: i64) -> HashMap<i64, CallId> {
        let mut free: Vec<(i64, &Agent)> = self
            .agents
            .iter()
            .filter(|(_, a)| a.org_id == org_id && a.free())
            .map(|(id, a)| (*id, a))
            .collect();
        free.sort_by_key(|(id, _)| *id);
        let mut plan: HashMap<i64, CallId> = HashMap::new();
        let mut unspoken = Vec::new();
        for call in self.waiting(org_id) {
            let eligible: Vec<&(i64, &Agent)> = free
                .iter()
                .filter(|(id, _)| !call.declined.contains(id))
                .collect();
            let speakers: Vec<i64> = eligible
                .iter()
                .filter(|(_, a)| routing::speaks(&a.languages, call.record.language.as_deref()))
                .map(|(id, _)| *id)
                .collect();
            if speakers.is_empty() {
                unspoken.push((call, eligible));
                continue;
            }
            for id in speakers {
                plan.entry(id).or_insert_with(|| call.record.id.clone());
            }
        }
        for (call, eligible) in unspoken {
            for (id, _) in eligible {
                plan.entry(*id).or_insert_with(|| call.record.id.clone());
            }
        }
        plan
    }

    /// Brings an organization's agents and kiosks up to date after any change: frames for what
    /// stopped and started ringing for each agent, and `queued` for every waiting call whose
    /// place changed.
    fn reroute(&mut self, org_id: i64) -> Vec<Effect> {
        let plan = self.plan(org_id);
        let mut effects = Vec::new();
        let mut ids: Vec<i64> = self
            .agents
            .iter()
            .filter(|(_, a)| a.org_id == org_id)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            let Some(agent) = self.agents.get(&id) else {
                continue;
            };
            let after = plan.get(&id).cloned();
            if agent.ringing == after {
                continue;
            }
            let told = !agent.sockets.is_empty();
            if let (Some(before), true) = (&agent.ringing, told) {
                let reason = match self.calls.get(before) {
                    None => Some(RingEnd::Ended),
                    Some(c) if c.record.state == CallState::Accepted => {
                        // Its own accepted call: the agent hears `accepted` instead.
                        (c.record.agent_id != Some(id)).then_some(RingEnd::Taken)
                    }
                    Some(c) if c.record.state == CallState::Ringing => Some(RingEnd::Cancelled),
                    Some(_) => Some(RingEnd::Ended),
                };
                if let Some(reason) = reason {
                    effects.push(Effect::Agent {
                        agent: id,
                        frame: ServerFrame::RingCancelled {
                            call: before.clone(),
                            reason,
                        },
                    });
                }
            }
            if let Some(call) = after.as_ref().and_then(|c| self.calls.get_mut(c)) {
                call.rung.insert(id);
                effects.push(Effect::Agent {
                    agent: id,
                    frame: ServerFrame::Ringing(call.ringing()),
                });
            }
            if let Some(agent) = self.agents.get_mut(&id) {
                agent.ringing = after;
            }
        }
        let queue = self.queue(org_id);
        for (i, id) in queue.iter().enumerate() {
            let position = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let Some(call) = self.calls.get_mut(id) else {
                continue;
            };
            if call.position == Some(position) {
                continue;
            }
            call.position = Some(position);
            let Some(call) = self.calls.get(id) else {
                continue;
            };
            effects.push(call.control(self.queued_event(call)));
        }
        effects
    }

    /// A kiosk's `sdp`, `ice` or `end`. `message_id` is the message's unique id.
    pub fn kiosk_signal(
        &mut self,
        device: &str,
        message_id: &str,
        body: UpSignalBody,
        now_ms: i64,
    ) -> Result<Vec<Effect>, Dropped> {
        let Some(id) = body.call().cloned() else {
            return Err(Dropped::Place);
        };
        let call = self.calls.get_mut(&id).ok_or(Dropped::NoSuchCall)?;
        if call.record.device_id != device {
            return Err(Dropped::NotYourCall);
        }
        if call.seen.iter().any(|m| m == message_id) {
            return Err(Dropped::Duplicate);
        }
        call.seen.push_back(message_id.to_string());
        if call.seen.len() > SEEN_PER_CALL {
            call.seen.pop_front();
        }
        let frame = match body {
            UpSignalBody::End { reason, .. } => {
                let reason =
                    if call.record.state == CallState::Ringing && reason == EndReason::Hangup {
                        EndReason::Cancelled
                    } else {
                        reason
                    };
                return Ok(self.end(&id, reason, Party::Kiosk, now_ms));
            }
            UpSignalBody::Sdp { sdp_type, sdp, .. } => ServerFrame::Sdp {
                call: id.clone(),
                sdp_type,
                sdp,
            },
            UpSignalBody::Ice {
                candidate,
                sdp_mline_index,
                ..
            } => ServerFrame::Ice {
                call: id.clone(),
                candidate,
                sdp_mline_index,
            },
            UpSignalBody::Place { .. } => return Err(Dropped::Place),
        };
        match (call.record.state, call.record.agent_id) {
            (CallState::Accepted, Some(agent)) => Ok(vec![Effect::Agent { agent, frame }]),
            _ => Err(Dropped::NotAccepted),
        }
    }

    /// The kiosk went offline (its retained status, or its last will).
    pub fn kiosk_offline(&mut self, device: &str, now_ms: i64) -> Vec<Effect> {
        match self.by_kiosk.get(device).cloned() {
            Some(id) => self.end(&id, EndReason::KioskOffline, Party::Cloud, now_ms),
            None => Vec::new(),
        }
    }

    /// An agent's socket opened: the `hello` for it, then what else it must be told.
    pub fn connect(&mut self, agent: AgentRef, socket: SocketId) -> Vec<Effect> {
        let entry = self.agents.entry(agent.user_id).or_insert_with(|| Agent {
            org_id: agent.org_id,
            name: agent.name.clone(),
            languages: agent.languages.clone(),
            sockets: BTreeSet::new(),
            available: false,
            call: None,
            ringing: None,
            gone_since_ms: None,
        });
        entry.name = agent.name.clone();
        entry.languages = agent.languages.clone();
        entry.sockets.insert(socket);
        entry.gone_since_ms = None;
        let (available, own_call) = (entry.available, entry.call.clone());
        let ringing: Vec<RingingCall> = entry
            .ringing
            .as_ref()
            .and_then(|id| self.calls.get(id))
            .map(Call::ringing)
            .into_iter()
            .collect();
        let mut effects = vec![Effect::Socket {
            socket,
            frame: ServerFrame::Hello {
                agent: Named {
                    id: agent.user_id,
                    name: agent.name,
                },
                available,
                calls: ringing,
            },
        }];
        // Back from a disconnection: the other tabs (none) need nothing; this one learns the
        // call it still has.
        if let Some(frame) = own_call
            .as_ref()
            .and_then(|id| self.calls.get(id))
            .and_then(Call::accepted_frame)
        {
            effects.push(Effect::Socket { socket, frame });
        }
        // Its languages may have changed.
        effects.extend(self.reroute(agent.org_id));
        effects
    }

    /// An agent's socket closed.
    pub fn disconnect(&mut self, user_id: i64, socket: SocketId, now_ms: i64) -> Vec<Effect> {
        let Some(agent) = self.agents.get_mut(&user_id) else {
            return Vec::new();
        };
        agent.sockets.remove(&socket);
        if !agent.sockets.is_empty() {
            return Vec::new();
        }
        // No socket left: it rings nowhere now (a free agent needs a socket). A call it holds
        // waits for the grace.
        let org_id = agent.org_id;
        agent.ringing = None;
        if agent.call.is_some() {
            agent.gone_since_ms = Some(now_ms);
        } else {
            self.agents.remove(&user_id);
        }
        self.reroute(org_id)
    }

    /// A frame from an agent's socket. `mint` makes the ICE servers of a call being accepted.
    pub fn agent_frame(
        &mut self,
        user_id: i64,
        socket: SocketId,
        frame: ClientFrame,
        mint: &dyn Fn(&CallId, i64) -> IceGrant,
        now_ms: i64,
    ) -> Result<Vec<Effect>, Refusal> {
        let Some(agent) = self.agents.get(&user_id) else {
            return Err(Refusal::new(
                ErrorCode::BadMessage,
                "this socket is not connected",
                None,
            ));
        };
        let org_id = agent.org_id;
        match frame {
            ClientFrame::Ping => Ok(vec![Effect::Socket {
                socket,
                frame: ServerFrame::Pong,
            }]),
            ClientFrame::Available { available } => Ok(self.set_available(user_id, available)),
            ClientFrame::Accept { call } => self.accept(user_id, &call, mint, now_ms),
            ClientFrame::Decline { call } => {
                let c = self.live_call(&call)?;
                if c.record.org_id != org_id {
                    return Err(Refusal::new(
                        ErrorCode::NotYourCall,
                        "this call is not yours to decline",
                        Some(&call),
                    ));
                }
                if c.record.state != CallState::Ringing {
                    return Err(Refusal::new(
                        ErrorCode::NotYourCall,
                        "this call is not ringing",
                        Some(&call),
                    ));
                }
                if let Some(c) = self.calls.get_mut(&call) {
                    c.declined.insert(user_id);
                }
                Ok(self.reroute(org_id))
            }
            ClientFrame::Sdp {
                call,
                sdp_type,
                sdp,
            } => {
                let device = self.own_accepted(user_id, &call)?;
                Ok(vec![Effect::Kiosk {
                    device,
                    message: KioskMessage::Signal(DownSignal {
                        v: Version::CURRENT,
                        call,
                        body: PeerSignal::Sdp { sdp_type, sdp },
                    }),
                }])
            }
            ClientFrame::Ice {
                call,
                candidate,
                sdp_mline_index,
            } => {
                let device = self.own_accepted(user_id, &call)?;
                Ok(vec![Effect::Kiosk {
                    device,
                    message: KioskMessage::Signal(DownSignal {
                        v: Version::CURRENT,
                        call,
                        body: PeerSignal::Ice {
                            candidate,
                            sdp_mline_index,
                        },
                    }),
                }])
            }
            ClientFrame::End { call } => {
                self.own_accepted(user_id, &call)?;
                Ok(self.end(&call, EndReason::Hangup, Party::Agent, now_ms))
            }
        }
    }

    fn live_call(&self, id: &CallId) -> Result<&Call, Refusal> {
        self.calls
            .get(id)
            .ok_or_else(|| Refusal::new(ErrorCode::NoSuchCall, "no such call", Some(id)))
    }

    /// The kiosk of a call this agent accepted, or the refusal.
    fn own_accepted(&self, user_id: i64, id: &CallId) -> Result<String, Refusal> {
        let c = self.live_call(id)?;
        if c.record.state == CallState::Accepted && c.record.agent_id == Some(user_id) {
            Ok(c.record.device_id.clone())
        } else {
            Err(Refusal::new(
                ErrorCode::NotYourCall,
                "only the agent who accepted this call may signal or end it",
                Some(id),
            ))
        }
    }

    fn set_available(&mut self, user_id: i64, available: bool) -> Vec<Effect> {
        let Some(agent) = self.agents.get_mut(&user_id) else {
            return Vec::new();
        };
        agent.available = available;
        let org_id = agent.org_id;
        let mut effects = vec![Effect::Agent {
            agent: user_id,
            frame: ServerFrame::Availability { available },
        }];
        effects.extend(self.reroute(org_id));
        effects
    }

    fn accept(
        &mut self,
        user_id: i64,
        id: &CallId,
        mint: &dyn Fn(&CallId, i64) -> IceGrant,
        now_ms: i64,
    ) -> Result<Vec<Effect>, Refusal> {
        let agent = &self.agents[&user_id];
        let c = self.live_call(id)?;
        if c.record.org_id != agent.org_id {
            return Err(Refusal::new(
                ErrorCode::NotYourCall,
                "this call is not yours to accept",
                Some(id),
            ));
        }
        if let Some(own) = &agent.call {
            return Err(Refusal::new(
                ErrorCode::Busy,
                format!("you already have the call {own}"),
                Some(id),
            ));
        }
        if c.record.state != CallState::Ringing {
            return Err(Refusal::new(
                ErrorCode::NotYourCall,
                "another agent has this call",
                Some(id),
            ));
        }
        let org_id = c.record.org_id;
        let grant = mint(id, now_ms);
        let agent_name = agent.name.clone();
        let Some(call) = self.calls.get_mut(id) else {
            return Err(Refusal::new(
                ErrorCode::NoSuchCall,
                "no such call",
                Some(id),
            ));
        };
        call.record.state = CallState::Accepted;
        call.record.agent_id = Some(user_id);
        call.record.accepted_at_ms = Some(now_ms);
        call.deadline_ms = grant.expires_at_ms;
        call.grant = Some(grant.clone());
        call.position = None;
        let waited = now_ms - call.record.placed_at_ms;
        let mut effects = vec![call.touch()];
        effects.push(call.control(CallEvent::Accepted {
            agent: agent_name,
            ice_servers: grant.ice_servers,
            expires_at_ms: grant.expires_at_ms,
        }));
        if let Some(frame) = call.accepted_frame() {
            effects.push(Effect::Agent {
                agent: user_id,
                frame,
            });
        }
        self.waits.entry(org_id).or_default().push(waited);
        if let Some(a) = self.agents.get_mut(&user_id) {
            a.call = Some(id.clone());
        }
        effects.extend(self.reroute(org_id));
        Ok(effects)
    }

    /// Ends a live call and tells whoever must know; the organization's queue is re-routed.
    fn end(&mut self, id: &CallId, reason: EndReason, by: Party, now_ms: i64) -> Vec<Effect> {
        let Some(org_id) = self.call_org(id) else {
            return Vec::new();
        };
        let mut effects = self.end_only(id, reason, by, now_ms);
        // Whoever rang for it, and the agent it freed, ring for what waits; the calls behind
        // it move up.
        effects.extend(self.reroute(org_id));
        effects
    }

    /// Ends a live call without re-routing its organization (the caller does, once).
    fn end_only(&mut self, id: &CallId, reason: EndReason, by: Party, now_ms: i64) -> Vec<Effect> {
        let Some(mut call) = self.calls.remove(id) else {
            return Vec::new();
        };
        let was = call.record.state;
        let answered = was == CallState::Accepted;
        let callback_offered = routing::offers_callback(call.record.kind, answered, reason);
        call.record.state = CallState::Ended;
        call.record.ended_at_ms = Some(now_ms);
        call.record.end_reason = Some(reason);
        call.record.ended_by = Some(by);
        call.record.callback_offered = callback_offered;
        call.record.outcome = Some(routing::outcome(
            answered,
            reason,
            by,
            &call.rung,
            &call.declined,
        ));
        let mut effects = vec![call.touch()];
        let ended = CallEvent::Ended {
            reason,
            by,
            callback_offered,
        };
        if by != Party::Kiosk {
            effects.push(call.control(ended.clone()));
        }
        if self.by_kiosk.get(&call.record.device_id) == Some(id) {
            self.by_kiosk.remove(&call.record.device_id);
        }
        if let Some(r) = self.recent.get_mut(&call.record.device_id) {
            for a in r.iter_mut().filter(|a| &a.call == id) {
                a.last = Some(CallControl {
                    v: Version::CURRENT,
                    call: id.clone(),
                    request: call.record.request.clone(),
                    event: ended.clone(),
                });
            }
        }
        if let (true, Some(agent_id)) = (answered, call.record.agent_id) {
            effects.push(Effect::Agent {
                agent: agent_id,
                frame: ServerFrame::Ended {
                    call: id.clone(),
                    reason,
                    by,
                },
            });
            let gone = match self.agents.get_mut(&agent_id) {
                Some(a) => {
                    a.call = None;
                    a.gone_since_ms = None;
                    a.sockets.is_empty()
                }
                None => false,
            };
            if gone {
                self.agents.remove(&agent_id);
            }
        }
        effects
    }

    /// Time passed: agents gone longer than `grace_ms` lose their call; calls nobody accepted
    /// within the queue time-out end `not_answered`; accepted calls past their credentials'
    /// expiry end `too_long`.
    pub fn tick(&mut self, now_ms: i64, grace_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut orgs = BTreeSet::new();
        let mut gone: Vec<CallId> = self
            .agents
            .values()
            .filter(|a| a.gone_since_ms.is_some_and(|t| now_ms - t >= grace_ms))
            .filter_map(|a| a.call.clone())
            .collect();
        gone.sort();
        for id in gone {
            orgs.extend(self.call_org(&id));
            effects.extend(self.end_only(&id, EndReason::AgentDisconnected, Party::Cloud, now_ms));
        }
        // Oldest first; the queues are re-routed once all are ended, so a call that times out
        // is not told a new place just before its end.
        let mut late: Vec<&Call> = self
            .calls
            .values()
            .filter(|c| now_ms >= c.deadline_ms)
            .collect();
        late.sort_by_key(|c| c.queue_key());
        let late: Vec<(CallId, bool)> = late
            .into_iter()
            .map(|c| (c.record.id.clone(), c.waiting()))
            .collect();
        for (id, waiting) in late {
            let reason = if waiting {
                EndReason::NotAnswered
            } else {
                EndReason::TooLong
            };
            orgs.extend(self.call_org(&id));
            effects.extend(self.end_only(&id, reason, Party::Cloud, now_ms));
        }
        for org_id in orgs {
            effects.extend(self.reroute(org_id));
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: i64 = 1;
    const OTHER_ORG: i64 = 2;
    const HOUR: i64 = 3_600_000;

    fn kiosk(device: &str, org_id: i64) -> KioskInfo {
        KioskInfo {
            device_id: device.into(),
            name: format!("{device} name"),
            org_id,
            site: Some(Named {
                id: 5,
                name: "Lyon".into(),
            }),
        }
    }

    /// The queue time-out of the placements below.
    const QUEUE_MS: i64 = 180_000;

    fn place(device: &str, org_id: i64, request: &str) -> Placement {
        Placement::new(
            kiosk(device, org_id),
            request.into(),
            CallKind::Test,
            new_call_id(),
            2 * HOUR,
            QUEUE_MS,
        )
    }

    fn customer_place(device: &str, request: &str, language: &str) -> Placement {
        let mut p = place(device, ORG, request);
        p.kind = CallKind::Customer;
        p.language = Some(language.into());
        p.customer = Some(Customer {
            id: 7,
            phone_masked: "+33•••••••78".into(),
            phone_hash: vec![1, 2, 3],
            verified_at_ms: 1,
        });
        p
    }

    fn agent(user_id: i64, org_id: i64) -> AgentRef {
        AgentRef {
            user_id,
            org_id,
            name: format!("agent {user_id}"),
            languages: Vec::new(),
        }
    }

    /// The first `queued` in effects: (position, estimated wait).
    fn queued(effects: &[Effect]) -> Vec<(String, Option<u32>, Option<u32>)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Kiosk {
                    device,
                    message:
                        KioskMessage::Control(CallControl {
                            event:
                                CallEvent::Queued {
                                    position,
                                    estimated_wait_s,
                                },
                            ..
                        }),
                } => Some((device.clone(), *position, *estimated_wait_s)),
                _ => None,
            })
            .collect()
    }

    fn mint(_: &CallId, now: i64) -> IceGrant {
        IceGrant {
            ice_servers: vec![IceServer {
                urls: vec!["stun:stun.example.test:3478".into()],
                username: None,
                credential: None,
            }],
            expires_at_ms: now + 2 * HOUR,
        }
    }

    fn frame(
        r: &mut Registry,
        user: i64,
        f: ClientFrame,
        now: i64,
    ) -> Result<Vec<Effect>, Refusal> {
        r.agent_frame(user, (user * 10) as u64, f, &mint, now)
    }

    /// Connects an agent (socket `user * 10`) and makes it available.
    fn online(r: &mut Registry, user: i64, org: i64) -> Vec<Effect> {
        r.connect(agent(user, org), (user * 10) as u64);
        frame(r, user, ClientFrame::Available { available: true }, 0).unwrap()
    }

    fn placed_id(effects: &[Effect]) -> CallId {
        effects
            .iter()
            .find_map(|e| match e {
                Effect::Kiosk {
                    message: KioskMessage::Control(c),
                    ..
                } => Some(c.call.clone()),
                _ => None,
            })
            .unwrap()
    }

    fn rung(effects: &[Effect]) -> Vec<i64> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Agent {
                    agent,
                    frame: ServerFrame::Ringing(_),
                } => Some(*agent),
                _ => None,
            })
            .collect()
    }

    fn kiosk_events(effects: &[Effect]) -> Vec<CallEvent> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Kiosk {
                    message: KioskMessage::Control(c),
                    ..
                } => Some(c.event.clone()),
                _ => None,
            })
            .collect()
    }

    fn agent_frames(effects: &[Effect], user: i64) -> Vec<ServerFrame> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Agent { agent, frame } if *agent == user => Some(frame.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn call_ids_have_their_form() {
        let id = new_call_id();
        assert!(id.as_str().starts_with("call-"));
        assert_eq!(id.as_str().len(), 21);
        assert!(CallId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn a_call_rings_the_available_agents_of_its_organization_only() {
        let mut r = Registry::new();
        online(&mut r, 1, ORG);
        online(&mut r, 2, ORG);
        online(&mut r, 3, OTHER_ORG);
        r.connect(agent(4, ORG), 40); // connected but away
        let effects = r.place(place("kiosk-a", ORG, "r1"), 100);
        let mut agents = rung(&effects);
        agents.sort_unstable();
        assert_eq!(agents, vec![1, 2]);
        assert_eq!(
            kiosk_events(&effects),
            vec![CallEvent::Queued {
                position: Some(1),
                estimated_wait_s: Some(60)
            }]
        );
        assert!(effects.iter().any(|e| matches!(
            e,
            Effect::Record(CallRecord {
                state: CallState::Ringing,
                ..
            })
        )));
        // Going available later rings at once.
        let later = frame(&mut r, 4, ClientFrame::Available { available: true }, 200).unwrap();
        assert_eq!(rung(&later), vec![4]);
    }

    #[test]
    fn first_accept_wins_and_the_others_stop_ringing() {
        let mut r = Registry::new();
        online(&mut r, 1, ORG);
        online(&mut r, 2, ORG);
        let id = placed_id(&r.place(place("kiosk-a", ORG, "r1"), 100));
        let won = frame(&mut r, 1, ClientFrame::Accept { call: id.clone() }, 200).unwrap();
        assert!(matches!(
            kiosk_events(&won)[0],
            CallEvent::Accepted { ref agent, .. } if agent == "agent 1"
        ));
        assert!(matches!(
            agent_frames(&won, 1)[0],
            ServerFrame::Accepted { .. }
        ));
        assert_eq!(
            agent_frames(&won, 2),
            vec![ServerFrame::RingCancelled {
                call: id.clone(),
                reason: RingEnd::Taken
            }]
        );
        let lost = frame(&mut r, 2, ClientFrame::Accept { call: id.clone() }, 210);
        assert_eq!(lost.unwrap_err().code, ErrorCode::NotYourCall);
        // Only the winner signals; the kiosk's SDP reaches the winner only.
        let sdp = ClientFrame::Sdp {
            call: id.clone(),
            sdp_type: SdpType::Answer,
            sdp: "v=0".into(),
        };
        assert_eq!(
            frame(&mut r, 2, sdp.clone(), 220).unwrap_err().code,
            ErrorCode::NotYourCall
        );
        let relayed = frame(&mut r, 1, sdp, 220).unwrap();
        assert!(matches!(
            &relayed[0],
            Effect::Kiosk { message: KioskMessage::Signal(s), device } if device == "kiosk-a" && s.call == id
        ));
        let up = r
            .kiosk_signal(
                "kiosk-a",
                "m1",
                UpSignalBody::Ice {
                    call: id.clone(),
                    candidate: "candidate:1".into(),
                    sdp_mline_index: 0,
                },
                230,
            )
            .unwrap();
        assert_eq!(
            up,
            vec![Effect::Agent {
                agent: 1,
                frame: ServerFrame::Ice {
                    call: id.clone(),
                    candidate: "candidate:1".into(),
                    sdp_mline_index: 0
                }
            }]
        );
    }

    #[test]
    fn one_call_per_kiosk_and_repeats_get_the_same_answer() {
        let mut r = Registry::new();
        let first = r.place(place("kiosk-a", ORG, "r1"), 100);
        let id = placed_id(&first);
        let again = r.place(place("kiosk-a", ORG, "r1"), 110);
        assert_eq!(placed_id(&again), id);
        assert_eq!(
            kiosk_events(&again),
            vec![CallEvent::Queued {
                position: Some(1),
                estimated_wait_s: Some(60)
            }]
        );
        let second = r.place(place("kiosk-a", ORG, "r2"), 120);
        let refused_id = placed_id(&second);
        assert_ne!(refused_id, id);
        assert!(matches!(
            kiosk_events(&second)[0],
            CallEvent::Refused { .. }
        ));
        let second_again = r.place(place("kiosk-a", ORG, "r2"), 130);
        assert_eq!(placed_id(&second_again), refused_id);
        // Nobody available: it still waits.
        assert_eq!(r.live_calls(), 1);
    }

    #[test]
    fn declined_by_all_keeps_waiting_and_an_agent_has_one_call() {
        let mut r = Registry::new();
        online(&mut r, 1, ORG);
        let a = placed_id(&r.place(place("kiosk-a", ORG, "r1"), 100));
        let declined = frame(&mut r, 1, ClientFrame::Decline { call: a.clone() }, 110).unwrap();
        assert_eq!(
            agent_frames(&declined, 1),
            vec![ServerFrame::RingCancelled {
                call: a.clone(),
                reason: RingEnd::Cancelled
            }]
        );
        assert_eq!(r.live_calls(), 1);
        // A new agent is rung for it.
        assert_eq!(rung(&online(&mut r, 2, ORG)), vec![2]);
        let b = placed_id(&r.place(place("kiosk-b", ORG, "r1"), 120));
        frame(&mut r, 1, ClientFrame::Accept { call: b.clone() }, 130).unwrap();
        let busy = frame(&mut r, 1, ClientFrame::Accept { call: a.clone() }, 140);
        assert_eq!(busy.unwrap_err().code, ErrorCode::Busy);
    }

    #[test]
    fn other_kiosks_and_other_organizations_are_refused() {
        let mut r = Registry::new();
        online(&mut r, 1, ORG);
        online(&mut r, 3, OTHER_ORG);
        let id = placed_id(&r.place(place("kiosk-a", ORG, "r1"), 100));
        assert_eq!(
            frame(&mut r, 3, ClientFrame::Accept { call: id.clone() }, 110)
                .unwrap_err()
                .code,
            ErrorCode::NotYourCall
        );
        frame(&mut r, 1, ClientFrame::Accept { call: id.clone() }, 120).unwrap();
        let end = UpSignalBody::End {
            call: id.clone(),
            reason: EndReason::Hangup,
        };
        assert_eq!(
            r.kiosk_signal("kiosk-b", "m1", end.clone(), 130),
            Err(Dropped::NotYourCall)
        );
        assert_eq!(
            frame(&mut r, 3, ClientFrame::End { call: id.clone() }, 130)
                .unwrap_err()
                .code,
            ErrorCode::NotYourCall
        );
        assert_eq!(r.live_calls(), 1);
        let unknown = CallId::parse("call-unknownunknown1").unwrap();
        assert_eq!(
            frame(&mut r, 1, ClientFrame::End { call: unknown }, 130)
                .unwrap_err()
                .code,
            ErrorCode::NoSuchCall
        );
        // The kiosk's own end is heard, once.
        let ended = r.kiosk_signal("kiosk-a", "m2", end.clone(), 140).unwrap();
        assert_eq!(
            agent_frames(&ended, 1),
            vec![ServerFrame::Ended {
                call: id.clone(),
                reason: EndReason::Hangup,
                by: Party::Kiosk
            }]
        );
        assert_eq!(
            r.kiosk_signal("kiosk-a", "m2", end, 150),
            Err(Dropped::NoSuchCall)
        );
    }

    #[test]
    fn the_agent_ends_and_the_kiosk_is_told() {
        let mut r = Registry::new();
        online(&mut r, 1, ORG);
        let id = placed_id(&r.place(place("kiosk-a", ORG, "r1"), 100));
        frame(&mut r, 1, ClientFrame::Accept { call: id.clone() }, 110).unwrap();
        let ended = frame(&mut r, 1, ClientFrame::End { call: id.clone() }, 120).unwrap();
        assert_eq!(
            kiosk_events(&ended),
            vec![CallEvent::Ended {
                reason: EndReason::Hangup,
                by: Party::Agent,
                callback_offered: false,
            }]
        );
        // A repeated place of that request hears that it ended.
        let again = r.place(place("kiosk-a", ORG, "r1"), 130);
        assert!(matches!(kiosk_events(&again)[0], CallEvent::Ended { .. }));
        // And the kiosk may call again.
        let next = r.place(place("kiosk-a", ORG, "r2"), 140);
        assert_eq!(
            kiosk_events(&next),
            vec![CallEvent::Queued {
                position: Some(1),
                estimated_wait_s: Some(1)
            }],
            "one answered wait of 10 ms so far: the estimate rounds up to a second"
        );
    }

    #[test]
    fn a_vanished_agent_stops_ringing_at_once_and_loses_its_call_after_the_grace() {
        let mut r = Registry::new();
        online(&mut r, 1, ORG);
        online(&mut r, 2, ORG);
        let a = placed_id(&r.place(place("kiosk-a", ORG, "r1"), 0));
        frame(&mut r, 1, ClientFrame::Accept { call: a.clone() }, 10).unwrap();
        r.disconnect(2, 20, 20);
        let b = r.place(place("kiosk-b", ORG, "r1"), 30);
        assert!(rung(&b).is_empty(), "agent 2 is gone");
        r.disconnect(1, 10, 100);
        assert!(r.tick(10_000, 10_000).is_empty());
        // Back in time: the call goes on, and the new socket learns it.
        let back = r.connect(agent(1, ORG), 11);
        assert!(matches!(
            back[1],
            Effect::Socket {
                frame: ServerFrame::Accepted { .. },
                ..
            }
        ));
        r.disconnect(1, 11, 20_000);
        assert!(r.tick(29_999, 10_000).is_empty());
        let ended = r.tick(30_000, 10_000);
        assert_eq!(
            kiosk_events(&ended),
            vec![CallEvent::Ended {
                reason: EndReason::AgentDisconnected,
                by: Party::Cloud,
                callback_offered: false,
            }]
        );
        assert!(r.kiosk_call("kiosk-a").is_none());
    }

    #[test]
    fn offline_kiosks_and_long_calls_end() {
        let mut r = Registry::new();
        online(&mut r, 1, ORG);
        let id = placed_id(&r.place(place("kiosk-a", ORG, "r1"), 0));
        frame(&mut r, 1, ClientFrame::Accept { call: id.clone() }, 10).unwrap();
        let ended = r.kiosk_offline("kiosk-a", 20);
        assert_eq!(
            agent_frames(&ended, 1),
            vec![ServerFrame::Ended {
                call: id,
                reason: EndReason::KioskOffline,
                by: Party::Cloud
            }]
        );
        let id = placed_id(&r.place(place("kiosk-a", ORG, "r2"), 100));
        // Agent 1 is free again and was rung for it.
        frame(&mut r, 1, ClientFrame::Accept { call: id.clone() }, 200).unwrap();
        assert!(r.tick(200 + 2 * HOUR - 1, 10_000).is_empty());
        let late = r.tick(200 + 2 * HOUR, 10_000);
        assert_eq!(
            kiosk_events(&late),
            vec![CallEvent::Ended {
                reason: EndReason::TooLong,
                by: Party::Cloud,
                callback_offered: false,
            }]
        );
    }

    #[test]
    fn kiosk_signals_before_accept_and_redeliveries_are_dropped() {
        let mut r = Registry::new();
        let id = placed_id(&r.place(place("kiosk-a", ORG, "r1"), 0));
        let sdp = UpSignalBody::Sdp {
            call: id.clone(),
            sdp_type: SdpType::Offer,
            sdp: "v=0".into(),
        };
        assert_eq!(
            r.kiosk_signal("kiosk-a", "m1", sdp.clone(), 1),
            Err(Dropped::NotAccepted)
        );
        online(&mut r, 1, ORG);
        frame(&mut r, 1, ClientFrame::Accept { call: id.clone() }, 10).unwrap();
        assert!(r.kiosk_signal("kiosk-a", "m2", sdp.clone(), 11).is_ok());
        assert_eq!(
            r.kiosk_signal("kiosk-a", "m2", sdp, 12),
            Err(Dropped::Duplicate)
        );
    }

    #[test]
    fn record_revisions_grow() {
        let mut r = Registry::new();
        online(&mut r, 1, ORG);
        let placed = r.place(place("kiosk-a", ORG, "r1"), 0);
        let id = placed_id(&placed);
        let accepted = frame(&mut r, 1, ClientFrame::Accept { call: id.clone() }, 10).unwrap();
        let ended = frame(&mut r, 1, ClientFrame::End { call: id }, 20).unwrap();
        let rev = |e: &[Effect]| {
            e.iter()
                .find_map(|e| match e {
                    Effect::Record(r) => Some((r.rev, r.state)),
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(rev(&placed), (1, CallState::Ringing));
        assert_eq!(rev(&accepted), (2, CallState::Accepted));
        assert_eq!(rev(&ended), (3, CallState::Ended));
    }

    fn record(effects: &[Effect]) -> CallRecord {
        effects
            .iter()
            .rev()
            .find_map(|e| match e {
                Effect::Record(r) => Some(r.clone()),
                _ => None,
            })
            .unwrap()
    }

    fn ringing_calls(effects: &[Effect], user: i64) -> Vec<CallId> {
        agent_frames(effects, user)
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Ringing(c) => Some(c.call),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_queue_is_served_oldest_first_with_positions_and_estimates() {
        let mut r = Registry::new();
        online(&mut r, 1, ORG);
        // Agent 1 is busy with a first call.
        let first = placed_id(&r.place(place("kiosk-a", ORG, "r1"), 0));
        frame(
            &mut r,
            1,
            ClientFrame::Accept {
                call: first.clone(),
            },
            20_000,
        )
        .unwrap();
        // Two kiosks wait: positions 1 and 2, estimates from the one answered wait (20 s).
        let b = r.place(place("kiosk-b", ORG, "r1"), 30_000);
        let b_id = placed_id(&b);
        assert_eq!(queued(&b), vec![("kiosk-b".into(), Some(1), Some(20))]);
        let c = r.place(place("kiosk-c", ORG, "r1"), 31_000);
        let c_id = placed_id(&c);
        assert_eq!(queued(&c), vec![("kiosk-c".into(), Some(2), Some(40))]);
        assert_eq!(r.queue(ORG), vec![b_id.clone(), c_id.clone()]);
        // A repeated place hears its current place.
        let again = r.place(place("kiosk-c", ORG, "r1"), 32_000);
        assert_eq!(queued(&again), vec![("kiosk-c".into(), Some(2), Some(40))]);
        // Another agent becomes free: only the oldest call rings for it.
        let two = online(&mut r, 2, ORG);
        assert_eq!(ringing_calls(&two, 2), vec![b_id.clone()]);
        assert!(queued(&two).is_empty(), "nobody moved");
        // It takes the oldest: the next one moves up and is told.
        let took = frame(
            &mut r,
            2,
            ClientFrame::Accept { call: b_id.clone() },
            40_000,
        )
        .unwrap();
        assert_eq!(queued(&took), vec![("kiosk-c".into(), Some(1), Some(15))]);
        // Agent 1 hangs up, is free again, and the remaining call rings for it.
        let ended = frame(&mut r, 1, ClientFrame::End { call: first }, 50_000).unwrap();
        assert_eq!(ringing_calls(&ended, 1), vec![c_id.clone()]);
        assert_eq!(record(&ended).outcome, Some(Outcome::Answered));
    }

    #[test]
    fn a_call_further_back_rings_the_agents_the_head_leaves_free() {
        let mut r = Registry::new();
        online(&mut r, 1, ORG);
        online(&mut r, 2, ORG);
        online(&mut r, 3, ORG);
        let a = r.place(place("kiosk-a", ORG, "r1"), 0);
        let a_id = placed_id(&a);
        let mut rung_a = rung(&a);
        rung_a.sort_unstable();
        assert_eq!(rung_a, vec![1, 2, 3], "the head rings every free agent");
        let b = r.place(place("kiosk-b", ORG, "r1"), 10);
        let b_id = placed_id(&b);
        assert!(
            rung(&b).is_empty(),
            "every free agent rings for the older call"
        );
        // A decline hands that agent to the next call; the others go on ringing the head.
        let declined = frame(&mut r, 2, ClientFrame::Decline { call: a_id.clone() }, 20).unwrap();
        assert_eq!(
            agent_frames(&declined, 2),
            vec![
                ServerFrame::RingCancelled {
                    call: a_id.clone(),
                    reason: RingEnd::Cancelled
                },
                ServerFrame::Ringing(r.calls[&b_id].ringing())
            ]
        );
        assert!(agent_frames(&declined, 1).is_empty());
        // First accept wins: 3 stops ringing (taken) and, free, rings for b.
        let won = frame(&mut r, 1, ClientFrame::Accept { call: a_id.clone() }, 30).unwrap();
        assert_eq!(
            agent_frames(&won, 3),
            vec![
                ServerFrame::RingCancelled {
                    call: a_id.clone(),
                    reason: RingEnd::Taken
                },
                ServerFrame::Ringing(r.calls[&b_id].ringing())
            ]
        );
        assert_eq!(
            frame(&mut r, 3, ClientFrame::Accept { call: a_id }, 31)
                .unwrap_err()
                .code,
            ErrorCode::NotYourCall
        );
        // An agent whose socket closes stops ringing; the call rings the rest.
        let gone = r.disconnect(2, 20, 40);
        assert!(gone.is_empty());
        let taken = frame(&mut r, 3, ClientFrame::Accept { call: b_id.clone() }, 50).unwrap();
        assert!(matches!(
            kiosk_events(&taken)[0],
            CallEvent::Accepted { .. }
        ));
    }

    #[test]
    fn unanswered_calls_time_out_and_customers_are_offered_a_callback() {
        let mut r = Registry::new();
        let test = placed_id(&r.place(place("kiosk-a", ORG, "r1"), 0));
        let cust = r.place(customer_place("kiosk-b", "r1", "fr"), 1_000);
        let cust_id = placed_id(&cust);
        let rec = record(&cust);
        assert_eq!(rec.customer_id, Some(7));
        assert_eq!(rec.phone_masked.as_deref(), Some("+33•••••••78"));
        assert_eq!(rec.language.as_deref(), Some("fr"));
        assert!(r.tick(QUEUE_MS - 1, 10_000).is_empty());
        let late = r.tick(QUEUE_MS, 10_000);
        assert_eq!(
            kiosk_events(&late),
            vec![
                CallEvent::Ended {
                    reason: EndReason::NotAnswered,
                    by: Party::Cloud,
                    callback_offered: false,
                },
                CallEvent::Queued {
                    position: Some(1),
                    estimated_wait_s: Some(60)
                }
            ],
            "the test call ends without a callback; the customer's moves up"
        );
        let test_rec = record(&late[..1]);
        assert_eq!(test_rec.id, test);
        assert_eq!(test_rec.outcome, Some(Outcome::Missed));
        let late = r.tick(QUEUE_MS + 1_000, 10_000);
        assert_eq!(
            kiosk_events(&late),
            vec![CallEvent::Ended {
                reason: EndReason::NotAnswered,
                by: Party::Cloud,
                callback_offered: true,
            }]
        );
        let rec = record(&late);
        assert_eq!(rec.id, cust_id);
        assert!(rec.callback_offered);
        assert_eq!(rec.outcome, Some(Outcome::Missed));
        // A repeat of that place hears the same end, callback included.
        let again = r.place(customer_place("kiosk-b", "r1", "fr"), QUEUE_MS + 2_000);
        assert!(matches!(
            kiosk_events(&again)[0],
            CallEvent::Ended {
                callback_offered: true,
                ..
            }
        ));
    }

    #[test]
    fn calls_ring_agents_who_speak_their_language_else_anyone() {
        let mut r = Registry::new();
        let speaker = |user: i64, langs: &[&str]| AgentRef {
            languages: langs.iter().map(|l| l.to_string()).collect(),
            ..agent(user, ORG)
        };
        for (user, langs) in [(1, &["fr"][..]), (2, &["de", "en"][..]), (3, &[][..])] {
            r.connect(speaker(user, langs), (user * 10) as u64);
            frame(&mut r, user, ClientFrame::Available { available: true }, 0).unwrap();
        }
        // French: the French speaker and the agent who lists none.
        let fr = r.place(customer_place("kiosk-a", "r1", "fr-CA"), 10);
        let fr_id = placed_id(&fr);
        let mut who = rung(&fr);
        who.sort_unstable();
        assert_eq!(who, vec![1, 3]);
        // German, behind it: agent 2 is free and speaks it.
        let de = r.place(customer_place("kiosk-b", "r1", "de"), 20);
        assert_eq!(rung(&de), vec![2]);
        frame(
            &mut r,
            2,
            ClientFrame::Accept {
                call: placed_id(&de),
            },
            30,
        )
        .unwrap();
        // Italian: nobody free speaks it, so it rings whoever is free and not taken: nobody
        // (1 and 3 ring for the older French call) until the French call is taken.
        let it = r.place(customer_place("kiosk-c", "r1", "it"), 40);
        let it_id = placed_id(&it);
        assert!(rung(&it).is_empty());
        let took = frame(&mut r, 3, ClientFrame::Accept { call: fr_id }, 50).unwrap();
        assert_eq!(ringing_calls(&took, 1), vec![it_id]);
        assert_eq!(
            r.calls
                .values()
                .find(|c| c.record.language.as_deref() == Some("it"))
                .map(|c| c.rung.clone()),
            Some(HashSet::from([1]))
        );
    }

    #[test]
    fn outcomes_are_recorded_for_declined_abandoned_and_refused_calls() {
        let mut r = Registry::new();
        online(&mut r, 1, ORG);
        online(&mut r, 2, ORG);
        let a = placed_id(&r.place(place("kiosk-a", ORG, "r1"), 0));
        frame(&mut r, 1, ClientFrame::Decline { call: a.clone() }, 10).unwrap();
        frame(&mut r, 2, ClientFrame::Decline { call: a.clone() }, 20).unwrap();
        let end = UpSignalBody::End {
            call: a.clone(),
            reason: EndReason::Hangup,
        };
        let gave_up = r.kiosk_signal("kiosk-a", "m1", end, 30).unwrap();
        let rec = record(&gave_up);
        assert_eq!(rec.end_reason, Some(EndReason::Cancelled));
        assert_eq!(rec.outcome, Some(Outcome::Declined));
        // Rung by one who declined and one who did not: abandoned.
        let b = placed_id(&r.place(place("kiosk-b", ORG, "r1"), 100));
        frame(&mut r, 1, ClientFrame::Decline { call: b.clone() }, 110).unwrap();
        let end = UpSignalBody::End {
            call: b,
            reason: EndReason::Cancelled,
        };
        let gave_up = r.kiosk_signal("kiosk-b", "m1", end, 120).unwrap();
        assert_eq!(record(&gave_up).outcome, Some(Outcome::Abandoned));
        // The edge refused: closed, and not verified.
        let mut closed = customer_place("kiosk-c", "r1", "fr");
        closed.refuse = Some(Refuse::Closed);
        let refused = r.place(closed, 200);
        assert_eq!(
            kiosk_events(&refused),
            vec![CallEvent::Refused {
                reason: "closed".into()
            }]
        );
        let rec = record(&refused);
        assert_eq!(
            (rec.state, rec.outcome, rec.customer_id),
            (CallState::Refused, Some(Outcome::Closed), Some(7))
        );
        assert!(rung(&refused).is_empty());
        let mut unverified = place("kiosk-d", ORG, "r1");
        unverified.kind = CallKind::Customer;
        unverified.refuse = Some(Refuse::NotVerified);
        let refused = r.place(unverified, 210);
        assert_eq!(
            kiosk_events(&refused),
            vec![CallEvent::Refused {
                reason: "not_verified".into()
            }]
        );
        assert_eq!(record(&refused).outcome, Some(Outcome::Failed));
        assert_eq!(r.live_calls(), 0);
        // A kiosk that goes offline while it waits: failed.
        r.place(place("kiosk-e", ORG, "r1"), 300);
        assert_eq!(
            record(&r.kiosk_offline("kiosk-e", 310)).outcome,
            Some(Outcome::Failed)
        );
    }

    #[test]
    fn calls_that_time_out_together_are_not_moved_up_first() {
        let mut r = Registry::new();
        let a = placed_id(&r.place(place("kiosk-a", ORG, "r1"), 0));
        let b = placed_id(&r.place(place("kiosk-b", ORG, "r1"), 10));
        let late = r.tick(QUEUE_MS + 10, 10_000);
        let ended: Vec<CallId> = late
            .iter()
            .filter_map(|e| match e {
                Effect::Record(r) => Some(r.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(ended, vec![a, b], "oldest first");
        assert!(queued(&late).is_empty(), "{late:?}");
    }

    #[test]
    fn the_estimate_starts_from_the_stored_waits() {
        let mut r = Registry::new();
        let mut p = place("kiosk-a", ORG, "r1");
        p.recent_waits_ms = vec![30_000, 50_000];
        let placed = r.place(p, 0);
        assert_eq!(queued(&placed), vec![("kiosk-a".into(), Some(1), Some(40))]);
        // Once the registry knows the organization, stored waits no longer matter.
        let mut p = place("kiosk-b", ORG, "r1");
        p.recent_waits_ms = vec![1_000];
        assert_eq!(
            queued(&r.place(p, 10)),
            vec![("kiosk-b".into(), Some(2), Some(80))]
        );
    }
}
