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
//!   `place` with the same request id gets the same answer (the call's current state).
//! - A placed call rings every available agent of the kiosk's organization who has no call and
//!   has not declined it. With nobody to ring it waits (queued) and rings agents who become
//!   available later.
//! - The first accept wins; the others get `ring_cancelled` `taken`. An agent has one call at
//!   a time (`busy`).
//! - Only the accepting agent may signal or end a call on the WebSocket; only the placing kiosk
//!   on MQTT.
//! - A kiosk going offline ends its call (`kiosk_offline`). An agent whose sockets are all
//!   closed stops ringing at once and, if it does not come back within the grace, loses its
//!   call (`agent_disconnected`). A call past its deadline ends (`too_long`): an accepted call
//!   at the expiry of its TURN credentials (accept time plus the organization's longest call),
//!   a waiting call at placement plus the same length.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use kiosk_protocol::call::{
    CallControl, CallEvent, CallId, CallKind, DownSignal, EndReason, IceServer, Party, PeerSignal,
    SdpType, UpSignalBody,
};
use kiosk_protocol::Version;
use serde::{Deserialize, Serialize};

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
    /// Grows with every change: a store write never replaces a newer one.
    #[serde(skip)]
    pub rev: u64,
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
}

/// An agent's connection to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRef {
    pub user_id: i64,
    pub org_id: i64,
    pub name: String,
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
    /// This agent declined it, went away or took another call.
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
    /// Ringing: placement + longest call; accepted: the credentials' expiry.
    deadline_ms: i64,
    grant: Option<IceGrant>,
    seen: VecDeque<String>,
}

impl Call {
    fn control(&self, event: CallEvent) -> Effect {
        Effect::Kiosk {
            device: self.record.device_id.clone(),
            message: KioskMessage::Control(CallControl {
                v: Version::CURRENT,
                call: self.record.id.clone(),
                request: self.record.request.clone(),
                event,
            }),
        }
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
    sockets: BTreeSet<SocketId>,
    available: bool,
    call: Option<CallId>,
    /// When the last socket closed, while the agent still has a call.
    gone_since_ms: Option<i64>,
}

impl Agent {
    fn rings_for(&self, user_id: i64, call: &Call) -> bool {
        call.record.state == CallState::Ringing
            && call.record.org_id == self.org_id
            && self.available
            && self.call.is_none()
            && !self.sockets.is_empty()
            && !call.declined.contains(&user_id)
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

    /// The number of live calls.
    pub fn live_calls(&self) -> usize {
        self.calls.len()
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
                return vec![call.control(match (&call.record.state, &call.grant) {
                    (CallState::Accepted, Some(g)) => CallEvent::Accepted {
                        agent: self
                            .agents
                            .get(&call.record.agent_id.unwrap_or_default())
                            .map(|a| a.name.clone())
                            .unwrap_or_default(),
                        ice_servers: g.ice_servers.clone(),
                        expires_at_ms: g.expires_at_ms,
                    },
                    _ => CallEvent::Queued {
                        position: None,
                        estimated_wait_s: None,
                    },
                })];
            }
            return Vec::new();
        }
        let mut record = CallRecord {
            id: p.new_id.clone(),
            org_id: p.kiosk.org_id,
            site_id: p.kiosk.site.as_ref().map(|s| s.id),
            device_id: device.clone(),
            kind: p.kind,
            request: p.request.clone(),
            state: CallState::Ringing,
            agent_id: None,
            placed_at_ms: now_ms,
            accepted_at_ms: None,
            ended_at_ms: None,
            end_reason: None,
            ended_by: None,
            refused_reason: None,
            rev: 1,
        };
        if self.by_kiosk.contains_key(&device) {
            let reason = "the kiosk already has a call in progress".to_string();
            record.state = CallState::Refused;
            record.ended_at_ms = Some(now_ms);
            record.refused_reason = Some(reason.clone());
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
        let call = Call {
            record,
            kiosk: p.kiosk,
            declined: HashSet::new(),
            deadline_ms: now_ms.saturating_add(p.max_call_ms),
            grant: None,
            seen: VecDeque::new(),
        };
        let mut effects = vec![
            Effect::Record(call.record.clone()),
            call.control(CallEvent::Queued {
                position: None,
                estimated_wait_s: None,
            }),
        ];
        for (id, agent) in &self.agents {
            if agent.rings_for(*id, &call) {
                effects.push(Effect::Agent {
                    agent: *id,
                    frame: ServerFrame::Ringing(call.ringing()),
                });
            }
        }
        self.remember(&device, &p.request, &call.record.id, None);
        self.by_kiosk.insert(device, call.record.id.clone());
        self.calls.insert(call.record.id.clone(), call);
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
            sockets: BTreeSet::new(),
            available: false,
            call: None,
            gone_since_ms: None,
        });
        entry.name = agent.name.clone();
        entry.sockets.insert(socket);
        entry.gone_since_ms = None;
        let (available, own_call) = (entry.available, entry.call.clone());
        let ringing: Vec<RingingCall> = {
            let a = &self.agents[&agent.user_id];
            let mut r: Vec<RingingCall> = self
                .calls
                .values()
                .filter(|c| a.rings_for(agent.user_id, c))
                .map(Call::ringing)
                .collect();
            r.sort_by_key(|c| c.since_ms);
            r
        };
        let mut effects = vec![Effect::Socket {
            socket,
            frame: ServerFrame::Hello {
                agent: Named {
                    id: agent.user_id,
                    name: agent.name,
                },
                available,
                calls: ringing.clone(),
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
        // No socket left: it rings nowhere now (`rings_for` needs a socket). A call it holds
        // waits for the grace.
        if agent.call.is_some() {
            agent.gone_since_ms = Some(now_ms);
        } else {
            self.agents.remove(&user_id);
        }
        Vec::new()
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
                let was_ringing = agent.rings_for(user_id, c);
                if let Some(c) = self.calls.get_mut(&call) {
                    c.declined.insert(user_id);
                }
                Ok(if was_ringing {
                    vec![Effect::Agent {
                        agent: user_id,
                        frame: ServerFrame::RingCancelled {
                            call,
                            reason: RingEnd::Cancelled,
                        },
                    }]
                } else {
                    Vec::new()
                })
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
        let Some(agent) = self.agents.get(&user_id) else {
            return Vec::new();
        };
        let before: HashSet<CallId> = self
            .calls
            .values()
            .filter(|c| agent.rings_for(user_id, c))
            .map(|c| c.record.id.clone())
            .collect();
        if let Some(a) = self.agents.get_mut(&user_id) {
            a.available = available;
        }
        let mut effects = vec![Effect::Agent {
            agent: user_id,
            frame: ServerFrame::Availability { available },
        }];
        effects.extend(self.ring_changes(user_id, &before, RingEnd::Cancelled));
        effects
    }

    /// Frames for the difference between what rang for an agent (`before`) and what rings now.
    fn ring_changes(
        &self,
        user_id: i64,
        before: &HashSet<CallId>,
        stopped: RingEnd,
    ) -> Vec<Effect> {
        let Some(agent) = self.agents.get(&user_id) else {
            return Vec::new();
        };
        let mut now: Vec<&Call> = self
            .calls
            .values()
            .filter(|c| agent.rings_for(user_id, c))
            .collect();
        now.sort_by_key(|c| c.record.placed_at_ms);
        let mut effects = Vec::new();
        let mut gone: Vec<&CallId> = before
            .iter()
            .filter(|id| !now.iter().any(|c| &c.record.id == *id))
            .collect();
        gone.sort();
        for id in gone {
            effects.push(Effect::Agent {
                agent: user_id,
                frame: ServerFrame::RingCancelled {
                    call: id.clone(),
                    reason: stopped,
                },
            });
        }
        for c in now {
            if !before.contains(&c.record.id) {
                effects.push(Effect::Agent {
                    agent: user_id,
                    frame: ServerFrame::Ringing(c.ringing()),
                });
            }
        }
        effects
    }

    /// The agents a call rings for now.
    fn ringing_agents(&self, call: &Call) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .agents
            .iter()
            .filter(|(id, a)| a.rings_for(**id, call))
            .map(|(id, _)| *id)
            .collect();
        v.sort_unstable();
        v
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
        let others: Vec<i64> = self
            .ringing_agents(c)
            .into_iter()
            .filter(|a| *a != user_id)
            .collect();
        // What rang for the accepting agent besides this call stops: it is busy now.
        let own_before: HashSet<CallId> = self
            .calls
            .values()
            .filter(|c| agent.rings_for(user_id, c) && &c.record.id != id)
            .map(|c| c.record.id.clone())
            .collect();
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
        for other in others {
            effects.push(Effect::Agent {
                agent: other,
                frame: ServerFrame::RingCancelled {
                    call: id.clone(),
                    reason: RingEnd::Taken,
                },
            });
        }
        if let Some(a) = self.agents.get_mut(&user_id) {
            a.call = Some(id.clone());
        }
        effects.extend(self.ring_changes(user_id, &own_before, RingEnd::Cancelled));
        Ok(effects)
    }

    /// Ends a live call and tells whoever must know.
    fn end(&mut self, id: &CallId, reason: EndReason, by: Party, now_ms: i64) -> Vec<Effect> {
        let Some(call) = self.calls.get(id) else {
            return Vec::new();
        };
        let ringing = self.ringing_agents(call);
        let Some(mut call) = self.calls.remove(id) else {
            return Vec::new();
        };
        let was = call.record.state;
        call.record.state = CallState::Ended;
        call.record.ended_at_ms = Some(now_ms);
        call.record.end_reason = Some(reason);
        call.record.ended_by = Some(by);
        let mut effects = vec![call.touch()];
        let ended = CallEvent::Ended {
            reason,
            by,
            callback_offered: false,
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
        match (was, call.record.agent_id) {
            (CallState::Accepted, Some(agent_id)) => {
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
                } else {
                    // Free again: what waits rings for it.
                    effects.extend(self.ring_changes(agent_id, &HashSet::new(), RingEnd::Ended));
                }
            }
            _ => {
                for agent in ringing {
                    effects.push(Effect::Agent {
                        agent,
                        frame: ServerFrame::RingCancelled {
                            call: id.clone(),
                            reason: RingEnd::Ended,
                        },
                    });
                }
            }
        }
        effects
    }

    /// Time passed: agents gone longer than `grace_ms` lose their call; calls past their
    /// deadline end.
    pub fn tick(&mut self, now_ms: i64, grace_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut gone: Vec<CallId> = self
            .agents
            .values()
            .filter(|a| a.gone_since_ms.is_some_and(|t| now_ms - t >= grace_ms))
            .filter_map(|a| a.call.clone())
            .collect();
        gone.sort();
        for id in gone {
            effects.extend(self.end(&id, EndReason::AgentDisconnected, Party::Cloud, now_ms));
        }
        let mut late: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| now_ms >= c.deadline_ms)
            .map(|c| c.record.id.clone())
            .collect();
        late.sort();
        for id in late {
            effects.extend(self.end(&id, EndReason::TooLong, Party::Cloud, now_ms));
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

    fn place(device: &str, org_id: i64, request: &str) -> Placement {
        Placement {
            kiosk: kiosk(device, org_id),
            request: request.into(),
            kind: CallKind::Test,
            new_id: new_call_id(),
            max_call_ms: 2 * HOUR,
        }
    }

    fn agent(user_id: i64, org_id: i64) -> AgentRef {
        AgentRef {
            user_id,
            org_id,
            name: format!("agent {user_id}"),
        }
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
                position: None,
                estimated_wait_s: None
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
                position: None,
                estimated_wait_s: None
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
                position: None,
                estimated_wait_s: None
            }]
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
}
