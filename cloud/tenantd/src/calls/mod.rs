//! Live calls: the registry of calls and agents, and its two edges.
//!
//! - [`registry`]: the pure core. Every rule of docs/calls.md (the organization's queue, who
//!   rings, first accept wins, who may signal, what ends a call) as a state machine over plain
//!   values, answering with [`registry::Effect`]s.
//! - [`routing`]: the rules that need no registry state: language matching, the wait estimate,
//!   and the outcome of a finished call.
//! - [`ice`]: an organization's STUN/TURN settings and the TURN credentials of each call.
//! - [`ws`]: the agents' WebSocket (`/api/v1/orgs/{org}/calls/ws`), one task per socket.
//! - [`CallHub`]: the registry behind a mutex, shared by the MQTT worker (`up/signal`, device
//!   status) and the HTTP side (WebSockets), and the carrier of effects: frames to agents'
//!   sockets, `down/call` and `down/signal` to kiosks through the fleet link, call rows to the
//!   store. Before a `place` reaches the registry, the hub looks up what the rules need in the
//!   store: the organization's queue time-out, recording policy and recent waits, the site's
//!   business hours (a `customer` call is refused `closed` outside them), and the customer
//!   token of a `customer` call (claimed for the new call; refused `not_verified` without one).
//!
//! Threads and tasks: the registry's mutex is a `std` mutex taken for the decision only and
//! never held across `.await`; effects are carried out after it is released. A ticker task
//! ([`CallHub::spawn_ticker`]) ends calls whose agent stayed away past the grace, calls nobody
//! answered within the queue time-out and calls that ran too long.
//!
//! Limits today: the registry lives in one process's memory, so several tenantd replicas would
//! each have their own calls and agents; calls live at a restart are ended (`other`) in the
//! store when tenantd starts again, their kiosks are sent `ended` (queued for a kiosk that is
//! away, by its persistent session), and agents learn it when their console reconnects. The
//! wait estimate starts from the store's recent answered waits after a restart.

pub mod ice;
pub mod registry;
pub mod routing;
pub mod ws;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kiosk_protocol::call::{
    CallEvent, CallKind, Consent, EndReason, Party, UpSignal, UpSignalBody,
};
use kiosk_protocol::topic::{Down, Topic};
use kiosk_protocol::DeviceId;
use tokio::sync::{mpsc, watch};

use crate::fleet::service::{FleetLink, Outgoing};
use crate::store::{CustomerRef, RecordingPolicy, SqliteStore, StoreError};
use registry::{
    Customer, Effect, KioskInfo, KioskMessage, Placement, Refuse, Registry, ServerFrame, SocketId,
};

/// How calls behave; tests shorten the times.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// How long an agent whose sockets all closed keeps its call (10 s).
    pub agent_grace: Duration,
    /// How often the ticker looks for calls to end (250 ms).
    pub tick: Duration,
    /// How often an open socket checks that its session is still signed in (5 s).
    pub session_recheck: Duration,
    /// When set, replaces every organization's queue time-out (`queue_timeout_s`): tests and
    /// demonstrations that cannot wait 30 s or more. `None` by default.
    pub queue_timeout: Option<Duration>,
}

impl Default for CallSettings {
    fn default() -> Self {
        CallSettings {
            agent_grace: Duration::from_secs(10),
            tick: Duration::from_millis(250),
            session_recheck: Duration::from_secs(5),
            queue_timeout: None,
        }
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

type SocketSenders = HashMap<i64, Vec<(SocketId, mpsc::UnboundedSender<ServerFrame>)>>;

#[derive(Debug)]
struct Inner {
    registry: Mutex<Registry>,
    sockets: Mutex<SocketSenders>,
    next_socket: AtomicU64,
    store: SqliteStore,
    link: OnceLock<FleetLink>,
    settings: CallSettings,
}

/// The shared call registry and what carries its effects out.
#[derive(Debug, Clone)]
pub struct CallHub {
    inner: Arc<Inner>,
}

impl CallHub {
    pub fn new(store: SqliteStore, settings: CallSettings) -> CallHub {
        CallHub {
            inner: Arc::new(Inner {
                registry: Mutex::new(Registry::new()),
                sockets: Mutex::new(HashMap::new()),
                next_socket: AtomicU64::new(1),
                store,
                link: OnceLock::new(),
                settings,
            }),
        }
    }

    pub fn settings(&self) -> &CallSettings {
        &self.inner.settings
    }

    pub fn store(&self) -> &SqliteStore {
        &self.inner.store
    }

    /// The fleet link that carries messages to kiosks (none when no broker runs).
    pub fn set_link(&self, link: FleetLink) {
        let _ = self.inner.link.set(link);
    }

    /// Runs one decision of the registry; the lock is released before anything else happens.
    pub fn decide<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut registry)
    }

    /// A new socket of an agent, and the channel its frames arrive on.
    pub fn open_socket(&self, user_id: i64) -> (SocketId, mpsc::UnboundedReceiver<ServerFrame>) {
        let id = self.inner.next_socket.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.senders().entry(user_id).or_default().push((id, tx));
        (id, rx)
    }

    pub fn close_socket(&self, user_id: i64, socket: SocketId) {
        let mut senders = self.senders();
        if let Some(list) = senders.get_mut(&user_id) {
            list.retain(|(id, _)| *id != socket);
            if list.is_empty() {
                senders.remove(&user_id);
            }
        }
    }

    fn senders(&self) -> std::sync::MutexGuard<'_, SocketSenders> {
        self.inner
            .sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends frames to sockets and splits the rest: records to write, messages for kiosks.
    fn route(&self, effects: Vec<Effect>) -> (Vec<registry::CallRecord>, Vec<Outgoing>) {
        let mut records = Vec::new();
        let mut outgoing = Vec::new();
        let senders = self.senders();
        for effect in effects {
            match effect {
                Effect::Agent { agent, frame } => {
                    for (_, tx) in senders.get(&agent).into_iter().flatten() {
                        let _ = tx.send(frame.clone());
                    }
                }
                Effect::Socket { socket, frame } => {
                    if let Some((_, tx)) = senders.values().flatten().find(|(id, _)| *id == socket)
                    {
                        let _ = tx.send(frame);
                    }
                }
                Effect::Record(r) => records.push(r),
                Effect::Kiosk { device, message } => match kiosk_outgoing(&device, &message) {
                    Some(out) => outgoing.push(out),
                    None => tracing::error!(device, "a call message for an invalid device id"),
                },
            }
        }
        (records, outgoing)
    }

    /// Carries effects out from blocking code (the MQTT worker): frames go to sockets, records
    /// to the store, and the kiosks' messages are returned for the caller to publish.
    pub fn deliver_blocking(&self, effects: Vec<Effect>) -> Result<Vec<Outgoing>, StoreError> {
        let (records, outgoing) = self.route(effects);
        if !records.is_empty() {
            self.inner
                .store
                .blocking(|db| records.iter().try_for_each(|r| db.save_call(r)))?;
        }
        Ok(outgoing)
    }

    /// Carries effects out from async code: frames to sockets, records to the store, kiosks'
    /// messages through the fleet link.
    pub async fn deliver(&self, effects: Vec<Effect>) {
        let (records, outgoing) = self.route(effects);
        if !records.is_empty() {
            let saved = self
                .inner
                .store
                .run(move |db| records.iter().try_for_each(|r| db.save_call(r)))
                .await;
            if let Err(e) = saved {
                tracing::error!(error = %e, "could not write a call");
            }
        }
        for out in outgoing {
            match self.inner.link.get() {
                Some(link) => {
                    if let Err(e) = link.publish(out).await {
                        tracing::warn!(error = %e, "could not send a call message to a kiosk");
                    }
                }
                None => tracing::warn!(topic = %out.topic, "no fleet link: call message not sent"),
            }
        }
    }

    /// `up/signal` from an enrolled device (the broker's ACL ties the topic's device id to
    /// its certificate). Unreadable, oversized or unauthorized messages are dropped with a
    /// warning and touch no call.
    pub fn handle_up_signal(
        &self,
        device: &DeviceId,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<Vec<Outgoing>, StoreError> {
        let id = device.as_str();
        let signal: UpSignal = match serde_json::from_slice(payload) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(device = id, error = %e, "unreadable call signal dropped");
                return Ok(Vec::new());
            }
        };
        if let Err(e) = signal.body.check() {
            tracing::warn!(device = id, error = %e, "oversized call signal dropped");
            return Ok(Vec::new());
        }
        let effects = match signal.body {
            UpSignalBody::Place {
                request,
                kind,
                language,
                customer,
                consent,
            } => {
                let Some(kiosk) = self.inner.store.blocking(|db| db.kiosk_for_call(id))? else {
                    tracing::warn!(
                        device = id,
                        "a call from an unknown or revoked device dropped"
                    );
                    return Ok(Vec::new());
                };
                let placement = self.placement(
                    kiosk,
                    request,
                    kind,
                    language,
                    customer.as_deref(),
                    consent.as_ref(),
                    now_ms,
                )?;
                self.decide(|r| r.place(placement, now_ms))
            }
            body => {
                let message_id = signal.header.id.as_str().to_string();
                match self.decide(|r| r.kiosk_signal(id, &message_id, body, now_ms)) {
                    Ok(effects) => effects,
                    Err(why) => {
                        tracing::warn!(device = id, %why, "call signal dropped");
                        return Ok(Vec::new());
                    }
                }
            }
        };
        self.deliver_blocking(effects)
    }

    /// What the registry needs to decide about a `place`: the organization's limits, and for a
    /// `customer` call the site's hours and the customer. A repeated request, or a `place`
    /// while the kiosk has a call, goes to the registry as it is (it answers those without
    /// them), so a token is never claimed for a call that is not placed.
    #[allow(clippy::too_many_arguments)]
    fn placement(
        &self,
        kiosk: KioskInfo,
        request: String,
        kind: CallKind,
        language: Option<String>,
        token: Option<&str>,
        consent: Option<&Consent>,
        now_ms: i64,
    ) -> Result<Placement, StoreError> {
        let device = kiosk.device_id.clone();
        let org_id = kiosk.org_id;
        let site_id = kiosk.site.as_ref().map(|s| s.id);
        let limits = self
            .inner
            .store
            .blocking(|db| db.routing_limits(org_id, site_id))?;
        let queue_timeout_ms = match self.inner.settings.queue_timeout {
            Some(t) => i64::try_from(t.as_millis()).unwrap_or(i64::MAX),
            None => limits.queue_timeout_s.saturating_mul(1000),
        };
        let mut p = Placement::new(
            kiosk,
            request,
            kind,
            registry::new_call_id(),
            limits.max_call_ms,
            queue_timeout_ms,
        );
        p.language = language.filter(|l| !l.is_empty());
        p.recent_waits_ms = limits.recent_waits_ms;
        if let Some(c) = consent {
            p.consent_id = Some(c.id.clone());
            p.recorded = c.granted && limits.recording == RecordingPolicy::OnWithConsent;
        }
        let repeat_or_busy = self
            .decide(|r| r.knows_request(&device, &p.request) || r.kiosk_call(&device).is_some());
        if kind != CallKind::Customer || repeat_or_busy {
            return Ok(p);
        }
        let open = limits.site.as_ref().is_none_or(|s| s.open_at(now_ms));
        let found = match token {
            Some(t) => self
                .inner
                .store
                .blocking(|db| db.customer_for_token(&device, t, now_ms))?,
            None => None,
        };
        let customer = match (found, token) {
            (Some(c), Some(t)) if c.org_id == org_id => {
                if !open {
                    // Refused before it queues: the token stays unused, for a callback.
                    p.refuse = Some(Refuse::Closed);
                    Some(c)
                } else {
                    let call = p.new_id.as_str().to_string();
                    self.inner
                        .store
                        .blocking(|db| db.claim_customer(&device, t, &call, now_ms))?
                }
            }
            _ => None,
        };
        match customer {
            Some(c) => {
                if p.language.is_none() {
                    p.language = c.language.clone().filter(|l| !l.is_empty());
                }
                p.customer = Some(customer_of(c));
            }
            None => p.refuse = Some(Refuse::NotVerified),
        }
        Ok(p)
    }

    /// A device's status went offline: its call ends.
    pub fn kiosk_offline(&self, device: &str, now_ms: i64) -> Result<Vec<Outgoing>, StoreError> {
        let effects = self.decide(|r| r.kiosk_offline(device, now_ms));
        self.deliver_blocking(effects)
    }

    /// Ends in the store the calls that were live when tenantd last stopped, and returns the
    /// `ended` (`other`, by the cloud) that tells each kiosk, to deliver once the fleet link is
    /// set: a kiosk whose broker stayed up would otherwise wait in the queue, or on a call
    /// nobody is on, until its customer gave up.
    pub fn end_interrupted(&self) -> Result<Vec<Effect>, StoreError> {
        let now = now_ms();
        let calls = self
            .inner
            .store
            .blocking(|db| db.end_interrupted_calls(now))?;
        Ok(calls
            .into_iter()
            .map(|c| {
                let ended = CallEvent::Ended {
                    reason: EndReason::Other,
                    by: Party::Cloud,
                    callback_offered: false,
                };
                Effect::control(c.device_id, c.id, c.request, ended)
            })
            .collect())
    }

    /// Runs the registry's clock until `stop` flips.
    pub fn spawn_ticker(&self, mut stop: watch::Receiver<bool>) {
        let hub = self.clone();
        tokio::spawn(async move {
            let grace = i64::try_from(hub.settings().agent_grace.as_millis()).unwrap_or(i64::MAX);
            let mut every = tokio::time::interval(hub.settings().tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = every.tick() => {}
                }
                let now = now_ms();
                let effects = hub.decide(|r| r.tick(now, grace));
                if !effects.is_empty() {
                    hub.deliver(effects).await;
                }
            }
        });
    }
}

fn customer_of(c: CustomerRef) -> Customer {
    Customer {
        id: c.id,
        phone_masked: c.phone_masked,
        phone_hash: c.phone_hash,
        verified_at_ms: c.verified_at_ms,
    }
}

/// The MQTT message for a kiosk.
fn kiosk_outgoing(device: &str, message: &KioskMessage) -> Option<Outgoing> {
    let device = DeviceId::parse(device).ok()?;
    let (channel, payload) = match message {
        KioskMessage::Control(c) => (Down::Call, serde_json::to_vec(c).ok()?),
        KioskMessage::Signal(s) => (Down::Signal, serde_json::to_vec(s).ok()?),
    };
    Some(Outgoing {
        topic: Topic::Down(device, channel).name(),
        payload,
        retain: false,
    })
}

/// Bounds the frames a socket may send: at most `max` in each window of `window_ms`.
#[derive(Debug, Clone)]
pub struct FrameRate {
    max: u32,
    window_ms: i64,
    start_ms: i64,
    count: u32,
    warned: bool,
}

/// What to do with a frame under [`FrameRate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    Take,
    /// Over the limit: refuse it and say so (once per window).
    RefuseAndWarn,
    /// Over the limit, already said: drop it silently.
    Drop,
}

impl FrameRate {
    /// Fifty frames a second.
    pub fn per_second(max: u32) -> FrameRate {
        FrameRate {
            max,
            window_ms: 1000,
            start_ms: i64::MIN,
            count: 0,
            warned: false,
        }
    }

    pub fn check(&mut self, now_ms: i64) -> RateVerdict {
        if now_ms.saturating_sub(self.start_ms) >= self.window_ms {
            self.start_ms = now_ms;
            self.count = 0;
            self.warned = false;
        }
        self.count = self.count.saturating_add(1);
        if self.count <= self.max {
            RateVerdict::Take
        } else if !self.warned {
            self.warned = true;
            RateVerdict::RefuseAndWarn
        } else {
            RateVerdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rate_allows_fifty_a_second_and_warns_once() {
        let mut rate = FrameRate::per_second(50);
        for i in 0..50 {
            assert_eq!(rate.check(1000 + i), RateVerdict::Take);
        }
        assert_eq!(rate.check(1100), RateVerdict::RefuseAndWarn);
        assert_eq!(rate.check(1200), RateVerdict::Drop);
        assert_eq!(rate.check(2000), RateVerdict::Take);
    }
}
