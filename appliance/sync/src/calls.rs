//! The kiosk's side of call control: one call at a time, from "place" to "ended".
//!
//! [`CallTracker`] is the pure core: it takes what the local services ask for (`PlaceCall`,
//! `SendSignal`, `EndCall` on D-Bus), what the cloud says (`down/call`, `down/signal`) and what
//! happens around it (the link drops, kiosk-media leaves the bus, the cloud does not answer),
//! and returns [`Effect`]s: messages for the cloud and D-Bus signals for the kiosk's services.
//! The D-Bus service and the daemon carry the effects out.

use std::time::Duration;

use kiosk_bus::media::{signal_from_wire, signal_to_wire};
use kiosk_bus::sync::call_phase;
use kiosk_protocol::call::{
    CallControl, CallEvent, CallId, CallKind, Consent, DownSignal, EndReason, Party, PeerSignal,
    UpSignalBody,
};

/// How long a placed call waits for the cloud's first answer before it is given up.
pub const PLACE_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the kiosk is with its call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Idle,
    /// Sent `place`; waiting for `queued` or `refused`.
    Placing {
        request: String,
        since_ms: i64,
    },
    Queued {
        request: String,
        call: CallId,
    },
    Accepted {
        request: String,
        call: CallId,
    },
}

/// Something to do because of a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send this to the cloud on `up/signal`.
    Send(UpSignalBody),
    /// Emit `CallQueued(request, call)`.
    Queued { request: String, call: String },
    /// Emit `QueueUpdate(call, position, estimated_wait_s)`.
    QueueUpdate {
        call: String,
        position: u32,
        estimated_wait_s: u32,
    },
    /// Emit `CallAccepted(call, agent, ice_servers, expires_at_ms)`.
    Accepted {
        call: String,
        agent: String,
        ice_servers: String,
        expires_at_ms: i64,
    },
    /// Emit `PeerSignal(call, kind, payload)`.
    Peer {
        call: String,
        kind: &'static str,
        payload: String,
    },
    /// Emit `CallEnded(call, request, reason, by)`, then `CallbackOffered(call)` when
    /// `callback_offered`.
    Ended {
        call: String,
        request: String,
        reason: String,
        by: &'static str,
        callback_offered: bool,
    },
}

/// Who a call is for: a verified customer's token and consent answer, or nobody (test calls).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub customer: Option<String>,
    pub consent: Option<Consent>,
}

/// A request that does not fit the call's state or is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    WrongState(String),
}

fn party(p: Party) -> &'static str {
    match p {
        Party::Kiosk => "kiosk",
        Party::Agent => "agent",
        Party::Cloud => "cloud",
    }
}

/// Turns a D-Bus `kind` and JSON `payload` (`kiosk_bus::media::signal_from_wire`) into a
/// signalling message for `call`.
pub fn local_signal(call: &CallId, kind: &str, payload: &str) -> Result<UpSignalBody, CallError> {
    let body = match signal_from_wire(kind, payload).map_err(CallError::Invalid)? {
        PeerSignal::Sdp { sdp_type, sdp } => UpSignalBody::Sdp {
            call: call.clone(),
            sdp_type,
            sdp,
        },
        PeerSignal::Ice {
            candidate,
            sdp_mline_index,
        } => UpSignalBody::Ice {
            call: call.clone(),
            candidate,
            sdp_mline_index,
        },
    };
    Ok(body)
}

/// The call state machine.
#[derive(Debug, Default)]
pub struct CallTracker {
    phase: Phase,
}

impl CallTracker {
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// `CallPhase` and `CallId` as D-Bus shows them.
    pub fn view(&self) -> (&'static str, String) {
        match &self.phase {
            Phase::Idle => (call_phase::IDLE, String::new()),
            Phase::Placing { .. } => (call_phase::PLACING, String::new()),
            Phase::Queued { call, .. } => (call_phase::QUEUED, call.to_string()),
            Phase::Accepted { call, .. } => (call_phase::ACCEPTED, call.to_string()),
        }
    }

    /// The running call (queued or accepted), if any.
    pub fn call(&self) -> Option<&CallId> {
        match &self.phase {
            Phase::Queued { call, .. } | Phase::Accepted { call, .. } => Some(call),
            _ => None,
        }
    }

    /// `PlaceCall`: only when idle and connected.
    pub fn place(
        &mut self,
        kind: &str,
        language: &str,
        request: String,
        connected: bool,
        now_ms: i64,
    ) -> Result<Vec<Effect>, CallError> {
        self.place_for(
            kind,
            language,
            request,
            connected,
            now_ms,
            Caller::default(),
        )
    }

    /// `PlaceCall` / `PlaceCustomerCall`: only when idle and connected; `caller` goes into
    /// the `place` message.
    pub fn place_for(
        &mut self,
        kind: &str,
        language: &str,
        request: String,
        connected: bool,
        now_ms: i64,
        caller: Caller,
    ) -> Result<Vec<Effect>, CallError> {
        let kind = CallKind::parse(kind).ok_or_else(|| {
            CallError::Invalid(format!("kind {kind:?}: \"test\" or \"customer\""))
        })?;
        let language = language.trim();
        if language.len() > 35
            || !language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(CallError::Invalid(format!(
                "language {language:?}: a BCP 47 tag such as \"fr\" or \"ar-MA\", or empty"
            )));
        }
        if !connected {
            return Err(CallError::WrongState(
                "not connected to the cloud; calls cannot start offline".into(),
            ));
        }
        if self.phase != Phase::Idle {
            return Err(CallError::WrongState(format!(
                "a call is already {}",
                self.view().0
            )));
        }
        self.phase = Phase::Placing {
            request: request.clone(),
            since_ms: now_ms,
        };
        Ok(vec![Effect::Send(UpSignalBody::Place {
            request,
            kind,
            language: (!language.is_empty()).then(|| language.to_string()),
            customer: caller.customer,
            consent: caller.consent,
        })])
    }

    /// `SendSignal` from kiosk-media: only for the accepted call.
    pub fn send_signal(
        &self,
        call: &str,
        kind: &str,
        payload: &str,
    ) -> Result<Vec<Effect>, CallError> {
        match &self.phase {
            Phase::Accepted { call: c, .. } if c.as_str() == call => {
                Ok(vec![Effect::Send(local_signal(c, kind, payload)?)])
            }
            _ => Err(CallError::WrongState(format!(
                "call {call:?} is not the accepted call"
            ))),
        }
    }

    /// `EndCall` from a local service, or the kiosk ending the call for a reason of its own.
    /// Ending a call that is not running is not an error (it may have ended already).
    pub fn end(&mut self, call: &str, reason: EndReason) -> Vec<Effect> {
        let (request, c) = match &self.phase {
            Phase::Queued { request, call: c } | Phase::Accepted { request, call: c }
                if call.is_empty() || c.as_str() == call =>
            {
                (request.clone(), c.clone())
            }
            Phase::Placing { request, .. } if call.is_empty() || call == request => {
                // Not queued yet: the cloud's answer is handled (ended) when it comes.
                let request = request.clone();
                self.phase = Phase::Idle;
                return vec![Effect::Ended {
                    call: String::new(),
                    request,
                    reason: reason.as_str().to_string(),
                    by: "kiosk",
                    callback_offered: false,
                }];
            }
            _ => return Vec::new(),
        };
        self.phase = Phase::Idle;
        vec![
            Effect::Send(UpSignalBody::End {
                call: c.clone(),
                reason,
            }),
            Effect::Ended {
                call: c.to_string(),
                request,
                reason: reason.as_str().to_string(),
                by: "kiosk",
                callback_offered: false,
            },
        ]
    }

    /// The link went down: the call cannot go on (the cloud ends it too, from the last will).
    pub fn link_lost(&mut self) -> Vec<Effect> {
        let (call, request) = match &self.phase {
            Phase::Idle => return Vec::new(),
            Phase::Placing { request, .. } => (String::new(), request.clone()),
            Phase::Queued { request, call } | Phase::Accepted { request, call } => {
                (call.to_string(), request.clone())
            }
        };
        self.phase = Phase::Idle;
        vec![Effect::Ended {
            call,
            request,
            reason: EndReason::KioskOffline.as_str().to_string(),
            by: "kiosk",
            callback_offered: false,
        }]
    }

    /// Time passes: a placed call the cloud never answered is given up.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        match &self.phase {
            Phase::Placing { request, since_ms }
                if now_ms - since_ms >= PLACE_TIMEOUT.as_millis() as i64 =>
            {
                let request = request.clone();
                self.phase = Phase::Idle;
                vec![Effect::Ended {
                    call: String::new(),
                    request,
                    reason: "refused: the cloud did not answer".into(),
                    by: "kiosk",
                    callback_offered: false,
                }]
            }
            _ => Vec::new(),
        }
    }

    /// A `down/call` message.
    pub fn control(&mut self, msg: CallControl) -> Vec<Effect> {
        let mine = match &self.phase {
            Phase::Placing { request, .. } => request == &msg.request,
            Phase::Queued { call, .. } | Phase::Accepted { call, .. } => call == &msg.call,
            Phase::Idle => false,
        };
        if !mine {
            // A late answer for a call this kiosk no longer has: make sure the cloud ends it.
            return match msg.event {
                CallEvent::Queued { .. } | CallEvent::Accepted { .. } => {
                    vec![Effect::Send(UpSignalBody::End {
                        call: msg.call,
                        reason: EndReason::Cancelled,
                    })]
                }
                CallEvent::Refused { .. } | CallEvent::Ended { .. } => Vec::new(),
            };
        }
        let request = msg.request.clone();
        match msg.event {
            CallEvent::Queued {
                position,
                estimated_wait_s,
            } => {
                let mut effects = Vec::new();
                match self.phase {
                    Phase::Placing { .. } => {
                        self.phase = Phase::Queued {
                            request: request.clone(),
                            call: msg.call.clone(),
                        };
                        effects.push(Effect::Queued {
                            request,
                            call: msg.call.to_string(),
                        });
                    }
                    Phase::Queued { .. } => {}
                    _ => return effects,
                }
                if let Some(position) = position {
                    effects.push(Effect::QueueUpdate {
                        call: msg.call.to_string(),
                        position,
                        estimated_wait_s: estimated_wait_s.unwrap_or(0),
                    });
                }
                effects
            }
            CallEvent::Refused { reason } => {
                self.phase = Phase::Idle;
                vec![Effect::Ended {
                    call: msg.call.to_string(),
                    request,
                    reason: format!("refused: {reason}"),
                    by: "cloud",
                    callback_offered: false,
                }]
            }
            CallEvent::Accepted {
                agent,
                ice_servers,
                expires_at_ms,
            } => {
                if matches!(self.phase, Phase::Accepted { .. }) {
                    return Vec::new();
                }
                self.phase = Phase::Accepted {
                    request,
                    call: msg.call.clone(),
                };
                vec![Effect::Accepted {
                    call: msg.call.to_string(),
                    agent,
                    ice_servers: serde_json::to_string(&ice_servers).unwrap_or_default(),
                    expires_at_ms,
                }]
            }
            CallEvent::Ended {
                reason,
                by,
                callback_offered,
            } => {
                self.phase = Phase::Idle;
                vec![Effect::Ended {
                    call: msg.call.to_string(),
                    request,
                    reason: reason.as_str().to_string(),
                    by: party(by),
                    callback_offered,
                }]
            }
        }
    }

    /// A `down/signal` message: passed on only for the accepted call.
    pub fn peer(&self, msg: DownSignal) -> Vec<Effect> {
        match &self.phase {
            Phase::Accepted { call, .. } if call == &msg.call => {
                if let Err(e) = msg.body.check() {
                    tracing::warn!(call = %call, error = %e, "agent signal dropped");
                    return Vec::new();
                }
                let (kind, payload) = signal_to_wire(&msg.body);
                vec![Effect::Peer {
                    call: call.to_string(),
                    kind,
                    payload,
                }]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use kiosk_protocol::call::SdpType;
    use kiosk_protocol::Version;

    use super::*;

    fn id(s: &str) -> CallId {
        CallId::parse(s).unwrap()
    }

    fn control(call: &str, request: &str, event: CallEvent) -> CallControl {
        CallControl {
            v: Version::CURRENT,
            call: id(call),
            request: request.into(),
            event,
        }
    }

    #[test]
    fn customer_calls_carry_the_caller_and_follow_the_queue() {
        let mut t = CallTracker::default();
        let caller = Caller {
            customer: Some("kcu_x".into()),
            consent: Some(Consent {
                id: "con-1".into(),
                notice_version: 2,
                granted: true,
            }),
        };
        let e = t
            .place_for("customer", "fr", "r1".into(), true, 0, caller.clone())
            .unwrap();
        assert!(matches!(
            &e[0],
            Effect::Send(UpSignalBody::Place { customer: Some(c), consent: Some(k), .. })
                if c == "kcu_x" && k.granted
        ));
        let queued = |position| CallEvent::Queued {
            position: Some(position),
            estimated_wait_s: Some(60 * position),
        };
        let e = t.control(control("call-aaaaaaaa", "r1", queued(3)));
        assert!(matches!(&e[0], Effect::Queued { .. }));
        assert!(matches!(
            &e[1],
            Effect::QueueUpdate {
                position: 3,
                estimated_wait_s: 180,
                ..
            }
        ));
        let e = t.control(control("call-aaaaaaaa", "r1", queued(1)));
        assert_eq!(e.len(), 1);
        assert!(matches!(&e[0], Effect::QueueUpdate { position: 1, .. }));
        let e = t.control(control(
            "call-aaaaaaaa",
            "r1",
            CallEvent::Ended {
                reason: EndReason::NotAnswered,
                by: Party::Cloud,
                callback_offered: true,
            },
        ));
        assert!(matches!(
            &e[0],
            Effect::Ended { callback_offered: true, reason, .. } if reason == "not_answered"
        ));
        assert_eq!(t.view().0, call_phase::IDLE);
    }

    #[test]
    fn a_call_goes_from_place_to_end() {
        let mut t = CallTracker::default();
        assert!(t.place("test", "", "r1".into(), false, 0).is_err());
        let e = t.place("test", "fr", "r1".into(), true, 0).unwrap();
        assert!(
            matches!(&e[0], Effect::Send(UpSignalBody::Place { request, .. }) if request == "r1")
        );
        assert!(t.place("test", "", "r2".into(), true, 0).is_err());
        // Another request's answer is not ours: the cloud is told to end that call.
        let e = t.control(control(
            "call-other0001",
            "r9",
            CallEvent::Queued {
                position: None,
                estimated_wait_s: None,
            },
        ));
        assert!(matches!(&e[0], Effect::Send(UpSignalBody::End { .. })));
        let e = t.control(control(
            "call-aaaabbbb",
            "r1",
            CallEvent::Queued {
                position: None,
                estimated_wait_s: None,
            },
        ));
        assert_eq!(
            e,
            vec![Effect::Queued {
                request: "r1".into(),
                call: "call-aaaabbbb".into()
            }]
        );
        assert!(t.send_signal("call-aaaabbbb", "ice", "{}").is_err());
        let e = t.control(control(
            "call-aaaabbbb",
            "r1",
            CallEvent::Accepted {
                agent: "Ana".into(),
                ice_servers: vec![],
                expires_at_ms: 5,
            },
        ));
        assert!(matches!(&e[0], Effect::Accepted { agent, .. } if agent == "Ana"));
        assert_eq!(t.view(), ("accepted", "call-aaaabbbb".to_string()));
        let e = t
            .send_signal(
                "call-aaaabbbb",
                "ice",
                r#"{"candidate":"candidate:1 1 UDP 1 10.0.0.1 5000 typ host","sdp_mline_index":0}"#,
            )
            .unwrap();
        assert!(matches!(&e[0], Effect::Send(UpSignalBody::Ice { .. })));
        assert!(t
            .send_signal("call-aaaabbbb", "ice", r#"{"candidate":1}"#)
            .is_err());
        assert!(t.send_signal("call-aaaabbbb", "video", "{}").is_err());
        assert!(t.send_signal("call-zzzzzzzz", "sdp", "{}").is_err());
        // The agent's signals pass only for this call.
        let sig = |call: &str| DownSignal {
            v: Version::CURRENT,
            call: id(call),
            body: PeerSignal::Sdp {
                sdp_type: SdpType::Answer,
                sdp: "v=0".into(),
            },
        };
        assert!(t.peer(sig("call-zzzzzzzz")).is_empty());
        let e = t.peer(sig("call-aaaabbbb"));
        assert!(
            matches!(&e[0], Effect::Peer { kind: "sdp", payload, .. } if payload.contains("answer"))
        );
        let e = t.end("call-aaaabbbb", EndReason::Hangup);
        assert_eq!(e.len(), 2);
        assert_eq!(t.phase(), &Phase::Idle);
        assert!(t.end("call-aaaabbbb", EndReason::Hangup).is_empty());
    }

    #[test]
    fn refusals_timeouts_and_lost_links_end_the_call() {
        let mut t = CallTracker::default();
        t.place("customer", "", "r1".into(), true, 1_000).unwrap();
        let e = t.control(control(
            "call-aaaabbbb",
            "r1",
            CallEvent::Refused {
                reason: "closed".into(),
            },
        ));
        assert!(
            matches!(&e[0], Effect::Ended { reason, by: "cloud", .. } if reason == "refused: closed")
        );
        t.place("customer", "", "r2".into(), true, 1_000).unwrap();
        assert!(t.tick(1_000 + 1_000).is_empty());
        assert!(matches!(&t.tick(1_000 + 15_000)[0], Effect::Ended { .. }));
        assert_eq!(t.phase(), &Phase::Idle);
        t.place("test", "", "r3".into(), true, 0).unwrap();
        t.control(control(
            "call-cccccccc",
            "r3",
            CallEvent::Queued {
                position: None,
                estimated_wait_s: None,
            },
        ));
        let e = t.link_lost();
        assert!(matches!(&e[0], Effect::Ended { reason, .. } if reason == "kiosk_offline"));
        t.place("test", "", "r4".into(), true, 0).unwrap();
        t.control(control(
            "call-dddddddd",
            "r4",
            CallEvent::Queued {
                position: None,
                estimated_wait_s: None,
            },
        ));
        let e = t.control(control(
            "call-dddddddd",
            "r4",
            CallEvent::Ended {
                reason: EndReason::Hangup,
                by: Party::Agent,
                callback_offered: false,
            },
        ));
        assert!(matches!(&e[0], Effect::Ended { by: "agent", .. }));
        assert!(t.place("phone", "", "r5".into(), true, 0).is_err());
        assert!(t.place("test", "fr; drop", "r5".into(), true, 0).is_err());
    }
}
