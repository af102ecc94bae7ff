//! The `org.kioskcall.Sync1` D-Bus service (the contract is in `kiosk-bus`).
//!
//! Methods answer from [`Shared`], the daemon's state; the daemon calls [`notify`] when that
//! state changes so property watchers (the UI showing the activation code, `kioskctl`) hear it.
//! Call control goes through [`crate::calls::CallTracker`]; [`carry_out`] sends what it
//! decides to the cloud (live, beside the outbox) and emits the call signals.

use std::sync::{Arc, Mutex};

use kiosk_bus::sync::{consent, state, JourneyOutcome, PATH};
use kiosk_bus::{KioskError, SyncStatus};
use kiosk_protocol::call::{CallId, Consent, EndReason, UpSignal, UpSignalBody};
use kiosk_protocol::config::Recording;
use kiosk_protocol::journey::{JourneyRequest, JourneyUp, CODE_DIGITS};
use kiosk_protocol::topic::Up;
use kiosk_protocol::{MessageId, UpHeader, Version};
use tokio::sync::{watch, Notify};
use zbus::object_server::SignalEmitter;

use crate::calls::{CallError, CallTracker, Caller, Effect};
use crate::desired::ConfigStore;
use crate::journey::{JourneyDesk, ANSWER_TIMEOUT};
use crate::link::{LiveError, LiveSender};
use crate::outbox::{Retention, SqliteOutbox};

/// Largest event body accepted over D-Bus.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;

/// Fields the daemon sets in every event; a body may not carry them.
const RESERVED: [&str; 5] = ["v", "id", "seq", "at_ms", "kind"];

/// The daemon's state, shared with the D-Bus service.
#[derive(Debug)]
pub struct Shared {
    pub status: Mutex<SyncStatus>,
    pub outbox: Arc<Mutex<SqliteOutbox>>,
    pub config: Mutex<ConfigStore>,
    /// Wakes the running link's sender (none before enrollment).
    pub wake: Mutex<Option<Arc<Notify>>>,
    /// Tokens given with `kioskctl enroll`.
    pub token: watch::Sender<Option<String>>,
    /// The call, if any.
    pub calls: Mutex<CallTracker>,
    /// Sends live messages through the running link (none before enrollment).
    pub live: Mutex<Option<LiveSender>>,
    /// The customer's session.
    pub journey: Mutex<JourneyDesk>,
    /// One journey request at a time.
    pub journey_turn: tokio::sync::Mutex<()>,
}

impl Shared {
    pub fn new(
        outbox: Arc<Mutex<SqliteOutbox>>,
        config: ConfigStore,
        firmware: String,
        slot: String,
    ) -> Shared {
        Shared {
            status: Mutex::new(SyncStatus {
                state: state::UNENROLLED.to_string(),
                device_id: String::new(),
                activation_code: String::new(),
                connected: false,
                config_version: 0,
                outbox_depth: 0,
                outbox_records: 0,
                certificate_not_after: 0,
                firmware,
                slot,
                last_error: String::new(),
            }),
            outbox,
            config: Mutex::new(config),
            wake: Mutex::new(None),
            token: watch::channel(None).0,
            calls: Mutex::new(CallTracker::default()),
            live: Mutex::new(None),
            journey: Mutex::new(JourneyDesk::default()),
            journey_turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs `f` on the journey desk.
    pub fn journey<T>(&self, f: impl FnOnce(&mut JourneyDesk) -> T) -> T {
        match self.journey.lock() {
            Ok(mut d) => f(&mut d),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    fn live_sender(&self) -> Result<LiveSender, LiveError> {
        self.live
            .lock()
            .ok()
            .and_then(|l| l.clone())
            .ok_or(LiveError::NotConnected)
    }

    /// Sends a journey message to the cloud now (not through the outbox).
    pub fn send_journey(&self, request: &str, body: JourneyRequest) -> Result<(), LiveError> {
        let live = self.live_sender()?;
        let id = MessageId::parse(&format!("jny-{:016x}", rand::random::<u64>()))
            .map_err(|_| LiveError::Full)?;
        let payload = serde_json::to_vec(&JourneyUp {
            v: Version::CURRENT,
            header: UpHeader {
                id,
                seq: 0,
                at_ms: now_ms(),
            },
            request: request.to_string(),
            body,
        })
        .map_err(|_| LiveError::Full)?;
        live.send(Up::Journey, payload)
    }

    /// Sends `body` for the current session and waits for the cloud's answer.
    async fn ask(&self, body: JourneyRequest) -> JourneyOutcome {
        let _turn = self.journey_turn.lock().await;
        let Some(request) = self.journey(|d| d.request().map(str::to_string)) else {
            return JourneyOutcome::Unavailable {
                reason: "no customer session: ask for a code first".into(),
            };
        };
        if !self.snapshot().connected {
            return JourneyOutcome::Offline;
        }
        let rx = self.journey(|d| d.expect(&request));
        if let Err(e) = self.send_journey(&request, body) {
            tracing::warn!(error = %e, "journey request not sent");
            return JourneyOutcome::Offline;
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(result)) => self.journey(|d| d.outcome(&request, result, now_ms())),
            Ok(Err(_)) => JourneyOutcome::Unavailable {
                reason: "the customer session ended".into(),
            },
            Err(_) => JourneyOutcome::Unavailable {
                reason: "the cloud did not answer in time".into(),
            },
        }
    }

    /// Forgets the current session, here and (best effort) in the cloud.
    pub fn end_journey(&self) {
        if let Some(request) = self.journey(|d| d.end()) {
            if let Err(e) = self.send_journey(&request, JourneyRequest::Forget) {
                tracing::debug!(error = %e, "forget not sent; the cloud's own expiry will do it");
            }
        }
    }

    /// Changes the status; returns whether anything changed.
    pub fn update(&self, f: impl FnOnce(&mut SyncStatus)) -> bool {
        let Ok(mut s) = self.status.lock() else {
            return false;
        };
        let before = s.clone();
        f(&mut s);
        *s != before
    }

    pub fn snapshot(&self) -> SyncStatus {
        let mut s = match self.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        };
        if let Ok(Ok(d)) = self.outbox.lock().map(|o| o.depth()) {
            s.outbox_depth = d.total;
            s.outbox_records = d.total - d.droppable;
        }
        s
    }

    /// Runs `f` on the call tracker.
    pub fn calls<T>(&self, f: impl FnOnce(&mut CallTracker) -> T) -> T {
        match self.calls.lock() {
            Ok(mut t) => f(&mut t),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Sends a signalling message to the cloud now (not through the outbox).
    pub fn send_signal(&self, body: UpSignalBody) -> Result<(), LiveError> {
        let live = self.live_sender()?;
        let at_ms = now_ms();
        let id = MessageId::parse(&format!("sig-{:016x}", rand::random::<u64>()))
            .map_err(|_| LiveError::Full)?;
        let payload = serde_json::to_vec(&UpSignal {
            v: Version::CURRENT,
            // Live messages are outside the outbox's ordered stream: sequence 0.
            header: UpHeader { id, seq: 0, at_ms },
            body,
        })
        .map_err(|_| LiveError::Full)?;
        live.send(Up::Signal, payload)
    }

    /// Wakes the link to send what was just queued.
    pub fn wake_link(&self) {
        if let Ok(w) = self.wake.lock() {
            if let Some(w) = w.as_ref() {
                w.notify_one();
            }
        }
    }
}

/// Checks an event from another service and builds its payload fields.
pub fn event_fields(
    kind: &str,
    body: &str,
) -> Result<(serde_json::Map<String, serde_json::Value>, Retention), KioskError> {
    let bad = |m: String| KioskError::InvalidArgument(m);
    if kind.is_empty()
        || kind.len() > 32
        || !kind.starts_with(|c: char| c.is_ascii_lowercase())
        || !kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(bad(format!(
            "kind {kind:?}: 1 to 32 lower-case letters, digits and _, starting with a letter"
        )));
    }
    if body.len() > MAX_EVENT_BYTES {
        return Err(bad(format!(
            "body: {} bytes; at most {MAX_EVENT_BYTES}",
            body.len()
        )));
    }
    let fields: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(body) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(_) => return Err(bad("body: a JSON object is needed".into())),
        Err(e) => return Err(bad(format!("body: not JSON: {e}"))),
    };
    if let Some(k) = RESERVED.iter().find(|k| fields.contains_key(**k)) {
        return Err(bad(format!(
            "body: {k:?} is set by kiosk-sync, not the caller"
        )));
    }
    let retention = if kind == "diagnostic" {
        Retention::Droppable
    } else {
        Retention::Keep
    };
    Ok((fields, retention))
}

/// The D-Bus object.
#[derive(Debug, Clone)]
pub struct SyncService {
    pub shared: Arc<Shared>,
}

#[zbus::interface(name = "org.kioskcall.Sync1")]
impl SyncService {
    async fn status(&self) -> SyncStatus {
        self.shared.snapshot()
    }

    async fn enroll(&self, token: String) -> Result<(), KioskError> {
        let token = token.trim().to_string();
        if token.is_empty() || token.len() > 256 || token.chars().any(char::is_whitespace) {
            return Err(KioskError::InvalidArgument(
                "token: the enrollment token as the fleet admin gave it".into(),
            ));
        }
        if self.shared.snapshot().state == state::ENROLLED {
            return Err(KioskError::WrongState(
                "this kiosk is already enrolled; a factory reset comes first".into(),
            ));
        }
        self.shared.token.send_replace(Some(token));
        Ok(())
    }

    async fn desired_config(&self) -> Result<String, KioskError> {
        let config = self
            .shared
            .config
            .lock()
            .map_err(|_| KioskError::Failed("config store unavailable".into()))?
            .in_force()
            .map_err(|e| KioskError::Failed(e.to_string()))?;
        match config {
            Some(c) => serde_json::to_string(&c).map_err(|e| KioskError::Failed(e.to_string())),
            None => Ok(String::new()),
        }
    }

    async fn report_event(&self, kind: String, body: String) -> Result<String, KioskError> {
        let (fields, retention) = event_fields(&kind, &body)?;
        let outbox = self.shared.outbox.clone();
        let entry = tokio::task::spawn_blocking(move || {
            let mut o = outbox
                .lock()
                .map_err(|_| KioskError::Failed("outbox unavailable".into()))?;
            o.push(Up::Events, retention, now_ms(), |h| {
                let mut m = fields;
                m.insert("v".into(), serde_json::json!(kiosk_protocol::V1));
                m.insert("id".into(), serde_json::json!(h.id));
                m.insert("seq".into(), serde_json::json!(h.seq));
                m.insert("at_ms".into(), serde_json::json!(h.at_ms));
                m.insert("kind".into(), serde_json::json!(kind));
                serde_json::to_vec(&m)
            })
            .map_err(|e| KioskError::Failed(e.to_string()))
        })
        .await
        .map_err(|e| KioskError::Failed(e.to_string()))??;
        self.shared.wake_link();
        Ok(entry.id.as_str().to_string())
    }

    async fn place_call(
        &self,
        kind: String,
        language: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, KioskError> {
        let request = format!("req-{:016x}", rand::random::<u64>());
        let connected = self.shared.snapshot().connected;
        let effects = self
            .shared
            .calls(|t| t.place(&kind, &language, request.clone(), connected, now_ms()))
            .map_err(call_error)?;
        for effect in effects {
            if let Effect::Send(body) = effect {
                if let Err(e) = self.shared.send_signal(body) {
                    self.shared.calls(|t| t.end(&request, EndReason::Cancelled));
                    return Err(KioskError::Failed(format!("could not place the call: {e}")));
                }
            }
        }
        let _ = self.call_phase_changed(&emitter).await;
        tracing::info!(%request, %kind, "call placed");
        Ok(request)
    }

    async fn send_signal(
        &self,
        call: String,
        kind: String,
        payload: String,
    ) -> Result<(), KioskError> {
        let effects = self
            .shared
            .calls(|t| t.send_signal(&call, &kind, &payload))
            .map_err(call_error)?;
        for effect in effects {
            if let Effect::Send(body) = effect {
                self.shared
                    .send_signal(body)
                    .map_err(|e| KioskError::Failed(format!("signal not sent: {e}")))?;
            }
        }
        Ok(())
    }

    async fn end_call(
        &self,
        call: String,
        reason: String,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), KioskError> {
        let reason = EndReason::parse(&reason);
        let effects = self.shared.calls(|t| t.end(&call, reason));
        carry_out(conn, &self.shared, effects).await;
        Ok(())
    }

    async fn request_otp(&self, phone: String, language: String) -> String {
        let phone = phone.trim().to_string();
        let outcome = if let Err(e) = kiosk_protocol::journey::normalize_phone(&phone) {
            JourneyOutcome::InvalidPhone {
                message: e.to_string(),
            }
        } else if language.len() > 35 {
            JourneyOutcome::InvalidPhone {
                message: "language: a BCP 47 tag".into(),
            }
        } else {
            let (_, old) = self.shared.journey(|d| d.begin());
            if let Some(old) = old {
                let _ = self.shared.send_journey(&old, JourneyRequest::Forget);
            }
            self.shared
                .ask(JourneyRequest::OtpRequest {
                    phone,
                    language: (!language.is_empty()).then_some(language),
                })
                .await
        };
        tracing::info!(result = outcome_name(&outcome), "code requested");
        outcome_json(&outcome)
    }

    async fn resend_otp(&self) -> String {
        let outcome = self.shared.ask(JourneyRequest::OtpResend).await;
        tracing::info!(result = outcome_name(&outcome), "code resent");
        outcome_json(&outcome)
    }

    async fn verify_otp(&self, code: String) -> Result<String, KioskError> {
        if code.len() != CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(KioskError::InvalidArgument(format!(
                "code: exactly {CODE_DIGITS} digits"
            )));
        }
        let outcome = self.shared.ask(JourneyRequest::OtpVerify { code }).await;
        tracing::info!(result = outcome_name(&outcome), "code checked");
        Ok(outcome_json(&outcome))
    }

    async fn place_customer_call(
        &self,
        language: String,
        consent: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, KioskError> {
        let Some(token) = self.shared.journey(|d| d.customer_token(now_ms())) else {
            return Err(KioskError::WrongState(
                "no verified customer in this session".into(),
            ));
        };
        let granted = match consent.as_str() {
            consent::NOT_ASKED => None,
            consent::GRANTED => Some(true),
            consent::DECLINED => Some(false),
            other => {
                return Err(KioskError::InvalidArgument(format!(
                    "consent {other:?}: \"\", \"granted\" or \"declined\""
                )))
            }
        };
        let recording = self
            .shared
            .config
            .lock()
            .ok()
            .and_then(|c| c.in_force().ok().flatten())
            .map(|c| c.recording)
            .filter(|r| r.mode == Recording::OnWithConsent);
        let consent = match (recording, granted) {
            (Some(_), None) => {
                return Err(KioskError::InvalidArgument(
                    "this organization records: the customer's consent answer is needed".into(),
                ))
            }
            (Some(policy), Some(granted)) => {
                let consent = Consent {
                    id: format!("con-{:016x}", rand::random::<u64>()),
                    notice_version: policy.consent_notice_version,
                    granted,
                };
                let body = serde_json::json!({
                    "consent_id": consent.id,
                    "notice_version": consent.notice_version,
                    "granted": granted,
                    "language": (!language.is_empty()).then_some(&language),
                });
                self.report_event("consent".into(), body.to_string())
                    .await?;
                Some(consent)
            }
            // Not recording: nothing to consent to, the call is never recorded.
            (None, _) => None,
        };
        let request = format!("req-{:016x}", rand::random::<u64>());
        let connected = self.shared.snapshot().connected;
        let caller = Caller {
            customer: Some(token),
            consent,
        };
        let effects = self
            .shared
            .calls(|t| {
                t.place_for(
                    "customer",
                    &language,
                    request.clone(),
                    connected,
                    now_ms(),
                    caller,
                )
            })
            .map_err(call_error)?;
        for effect in effects {
            if let Effect::Send(body) = effect {
                if let Err(e) = self.shared.send_signal(body) {
                    self.shared.calls(|t| t.end(&request, EndReason::Cancelled));
                    return Err(KioskError::Failed(format!("could not place the call: {e}")));
                }
            }
        }
        let _ = self.call_phase_changed(&emitter).await;
        tracing::info!(%request, "customer call placed");
        Ok(request)
    }

    async fn request_callback(&self, call: String) -> Result<String, KioskError> {
        let call = if call.is_empty() {
            None
        } else {
            Some(CallId::parse(&call).map_err(|e| KioskError::InvalidArgument(e.to_string()))?)
        };
        let outcome = match self.shared.journey(|d| d.callback_token()) {
            None => JourneyOutcome::Unavailable {
                reason: "no verified customer in this session".into(),
            },
            Some(customer) => {
                self.shared
                    .ask(JourneyRequest::Callback { customer, call })
                    .await
            }
        };
        tracing::info!(result = outcome_name(&outcome), "callback requested");
        Ok(outcome_json(&outcome))
    }

    async fn end_journey(&self) {
        let _turn = self.shared.journey_turn.lock().await;
        self.shared.end_journey();
        tracing::info!("customer session ended");
    }

    #[zbus(signal)]
    pub async fn queue_update(
        emitter: &SignalEmitter<'_>,
        call: &str,
        position: u32,
        estimated_wait_s: u32,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn callback_offered(emitter: &SignalEmitter<'_>, call: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn call_queued(
        emitter: &SignalEmitter<'_>,
        request: &str,
        call: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn call_accepted(
        emitter: &SignalEmitter<'_>,
        call: &str,
        agent: &str,
        ice_servers: &str,
        expires_at_ms: i64,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn peer_signal(
        emitter: &SignalEmitter<'_>,
        call: &str,
        kind: &str,
        payload: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn call_ended(
        emitter: &SignalEmitter<'_>,
        call: &str,
        request: &str,
        reason: &str,
        by: &str,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    async fn call_phase(&self) -> String {
        self.shared.calls(|t| t.view().0.to_string())
    }

    #[zbus(property)]
    async fn call_id(&self) -> String {
        self.shared.calls(|t| t.view().1)
    }

    #[zbus(signal)]
    pub async fn config_changed(
        emitter: &SignalEmitter<'_>,
        version: u64,
        config: &str,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    async fn state(&self) -> String {
        self.shared.snapshot().state
    }

    #[zbus(property)]
    async fn activation_code(&self) -> String {
        self.shared.snapshot().activation_code
    }

    #[zbus(property)]
    async fn device_id(&self) -> String {
        self.shared.snapshot().device_id
    }

    #[zbus(property)]
    async fn connected(&self) -> bool {
        self.shared.snapshot().connected
    }

    #[zbus(property)]
    async fn config_version(&self) -> u64 {
        self.shared.snapshot().config_version
    }
}

fn outcome_json(o: &JourneyOutcome) -> String {
    serde_json::to_string(o).unwrap_or_else(|_| r#"{"result":"unavailable","reason":"?"}"#.into())
}

/// The outcome's name, for logs (never the number or the code).
fn outcome_name(o: &JourneyOutcome) -> &'static str {
    match o {
        JourneyOutcome::CodeSent { .. } => "code_sent",
        JourneyOutcome::Limited { .. } => "limited",
        JourneyOutcome::InvalidPhone { .. } => "invalid_phone",
        JourneyOutcome::Verified { .. } => "verified",
        JourneyOutcome::WrongCode { .. } => "wrong_code",
        JourneyOutcome::CodeDead { .. } => "code_dead",
        JourneyOutcome::CallbackBooked { .. } => "callback_booked",
        JourneyOutcome::Unavailable { .. } => "unavailable",
        JourneyOutcome::Offline => "offline",
    }
}

fn call_error(e: CallError) -> KioskError {
    match e {
        CallError::Invalid(m) => KioskError::InvalidArgument(m),
        CallError::WrongState(m) => KioskError::WrongState(m),
    }
}

/// Carries out what the call tracker decided: messages to the cloud, signals to the kiosk's
/// services, and the `CallPhase`/`CallId` property changes.
pub async fn carry_out(conn: &zbus::Connection, shared: &Shared, effects: Vec<Effect>) {
    if effects.is_empty() {
        return;
    }
    let iface = conn.object_server().interface::<_, SyncService>(PATH).await;
    for effect in effects {
        let emitted = match (&effect, &iface) {
            (Effect::Send(body), _) => {
                if let Err(e) = shared.send_signal(body.clone()) {
                    tracing::warn!(error = %e, "call signalling message not sent");
                }
                Ok(())
            }
            (_, Err(e)) => Err(e.clone()),
            (Effect::Queued { request, call }, Ok(i)) => {
                tracing::info!(%request, %call, "call queued");
                SyncService::call_queued(i.signal_emitter(), request, call).await
            }
            (
                Effect::QueueUpdate {
                    call,
                    position,
                    estimated_wait_s,
                },
                Ok(i),
            ) => {
                SyncService::queue_update(i.signal_emitter(), call, *position, *estimated_wait_s)
                    .await
            }
            (
                Effect::Accepted {
                    call,
                    agent,
                    ice_servers,
                    expires_at_ms,
                },
                Ok(i),
            ) => {
                tracing::info!(%call, %agent, "call accepted");
                SyncService::call_accepted(
                    i.signal_emitter(),
                    call,
                    agent,
                    ice_servers,
                    *expires_at_ms,
                )
                .await
            }
            (
                Effect::Peer {
                    call,
                    kind,
                    payload,
                },
                Ok(i),
            ) => SyncService::peer_signal(i.signal_emitter(), call, kind, payload).await,
            (
                Effect::Ended {
                    call,
                    request,
                    reason,
                    by,
                    callback_offered,
                },
                Ok(i),
            ) => {
                tracing::info!(%call, %request, %reason, %by, callback_offered, "call ended");
                let ended =
                    SyncService::call_ended(i.signal_emitter(), call, request, reason, by).await;
                if *callback_offered {
                    SyncService::callback_offered(i.signal_emitter(), call).await
                } else {
                    ended
                }
            }
        };
        if let Err(e) = emitted {
            tracing::warn!(error = %e, "could not emit a call signal");
        }
    }
    if let Ok(i) = iface {
        let service = i.get().await;
        let _ = service.call_phase_changed(i.signal_emitter()).await;
        let _ = service.call_id_changed(i.signal_emitter()).await;
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Tells property watchers that the status may have changed.
pub async fn notify(conn: &zbus::Connection) {
    let Ok(iface) = conn.object_server().interface::<_, SyncService>(PATH).await else {
        return;
    };
    let emitter = iface.signal_emitter();
    let service = iface.get().await;
    let _ = service.state_changed(emitter).await;
    let _ = service.activation_code_changed(emitter).await;
    let _ = service.device_id_changed(emitter).await;
    let _ = service.connected_changed(emitter).await;
    let _ = service.config_version_changed(emitter).await;
}

/// Emits `ConfigChanged`.
pub async fn config_changed(conn: &zbus::Connection, version: u64, config: &str) {
    if let Ok(iface) = conn.object_server().interface::<_, SyncService>(PATH).await {
        if let Err(e) = SyncService::config_changed(iface.signal_emitter(), version, config).await {
            tracing::warn!(error = %e, "could not emit ConfigChanged");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_from_other_services_are_checked() {
        let (f, r) = event_fields("call_record", r#"{"outcome":"answered"}"#).unwrap();
        assert_eq!((f.len(), r), (1, Retention::Keep));
        assert_eq!(
            event_fields("diagnostic", "{}").unwrap().1,
            Retention::Droppable
        );
        for (kind, body) in [
            ("Call", "{}"),
            ("", "{}"),
            ("a-b", "{}"),
            ("ok", "[1]"),
            ("ok", "{"),
            ("ok", r#"{"seq": 4}"#),
        ] {
            assert!(event_fields(kind, body).is_err(), "{kind} {body}");
        }
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_EVENT_BYTES));
        assert!(event_fields("ok", &big).is_err());
    }
}
