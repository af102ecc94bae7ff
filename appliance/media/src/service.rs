//! The `org.kioskcall.Media1` D-Bus service (the contract is in `kiosk-bus`) and the follower
//! of kiosk-sync's `org.kioskcall.Sync1` call signals.
//!
//! [`Engine`] holds the one running call. D-Bus methods and Sync1 signals both drive it; a
//! task per call relays the session's events: its SDP and candidates go out as `LocalSignal`
//! and with `Sync1.SendSignal`, state changes as the `CallState` property and signal, stats as
//! the `Stats` property. Locks are std mutexes held only for quick, non-async work; pipeline
//! start and teardown run on the blocking pool.

use std::sync::{Arc, Mutex, OnceLock};

use futures_lite::StreamExt as _;
use kiosk_bus::media::{call_state, PATH};
use kiosk_bus::{KioskError, Sync1Proxy};
use kiosk_protocol::call::{CallId, IceServer};
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::watch;
use zbus::object_server::SignalEmitter;

use crate::peer::MediaEvent;
use crate::session::{CallPlan, CallSession};

/// What the properties say.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub camera: String,
    pub camera_mode: String,
    pub encoder: String,
    pub encoder_reason: String,
    pub call_state: String,
    pub call_id: String,
    pub stats: String,
    /// The running (or last) call's milestones, Unix ms, by name.
    pub timeline: std::collections::BTreeMap<String, i64>,
    /// The running call's microphone is muted.
    pub microphone_muted: bool,
}

struct Running {
    call: String,
    /// `None` while the pipeline starts.
    session: Option<CallSession>,
    /// Started by kiosk-sync's `CallAccepted` (its signals must reach kiosk-sync).
    from_sync: bool,
}

/// The media engine behind the D-Bus object: one call at a time.
pub struct Engine {
    plan: CallPlan,
    published: Mutex<Published>,
    running: Mutex<Option<Running>>,
    conn: OnceLock<zbus::Connection>,
    sync: OnceLock<Sync1Proxy<'static>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("plan", &self.plan)
            .field("published", &self.published())
            .finish()
    }
}

/// The D-Bus form of signals lives with the contract; re-exported for tests and tools.
pub use kiosk_bus::media::{signal_from_wire, signal_to_wire};

impl Engine {
    pub fn new(plan: CallPlan, published: Published) -> Arc<Engine> {
        Arc::new(Engine {
            plan,
            published: Mutex::new(Published {
                call_state: call_state::IDLE.into(),
                ..published
            }),
            running: Mutex::new(None),
            conn: OnceLock::new(),
            sync: OnceLock::new(),
        })
    }

    pub fn published(&self) -> Published {
        match self.published.lock() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn publish(&self, f: impl FnOnce(&mut Published)) {
        if let Ok(mut p) = self.published.lock() {
            f(&mut p);
        }
    }

    /// Sets the connection (once, after the name is served) and the Sync1 proxy.
    pub fn attach(&self, conn: zbus::Connection, sync: Sync1Proxy<'static>) {
        let _ = self.conn.set(conn);
        let _ = self.sync.set(sync);
    }

    async fn emit_state(&self, call: &str, state: &str, reason: &str) {
        self.publish(|p| p.call_state = state.to_string());
        let Some(conn) = self.conn.get() else { return };
        let Ok(iface) = conn
            .object_server()
            .interface::<_, MediaService>(PATH)
            .await
        else {
            return;
        };
        let emitter = iface.signal_emitter();
        let _ = MediaService::call_state_signal(emitter, call, state, reason).await;
        let svc = iface.get().await;
        let _ = svc.call_state_changed(emitter).await;
        let _ = svc.call_id_changed(emitter).await;
        let _ = svc.stats_changed(emitter).await;
        let _ = svc.camera_changed(emitter).await;
        let _ = svc.microphone_muted_changed(emitter).await;
    }

    async fn emit_stats(&self) {
        let Some(conn) = self.conn.get() else { return };
        if let Ok(iface) = conn
            .object_server()
            .interface::<_, MediaService>(PATH)
            .await
        {
            let _ = iface
                .get()
                .await
                .stats_changed(iface.signal_emitter())
                .await;
        }
    }

    /// Starts call `call` and makes the offer.
    pub async fn start_call(
        self: &Arc<Self>,
        call: &str,
        ice_servers: &str,
        from_sync: bool,
    ) -> Result<(), KioskError> {
        let id = CallId::parse(call).map_err(|e| KioskError::InvalidArgument(e.to_string()))?;
        let ice: Vec<IceServer> = if ice_servers.trim().is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(ice_servers)
                .map_err(|e| KioskError::InvalidArgument(format!("ice_servers: {e}")))?
        };
        {
            let mut r = self
                .running
                .lock()
                .map_err(|_| KioskError::Failed("engine unavailable".into()))?;
            if let Some(r) = r.as_ref() {
                return Err(KioskError::WrongState(format!(
                    "call {} is running; one call at a time",
                    r.call
                )));
            }
            *r = Some(Running {
                call: call.to_string(),
                session: None,
                from_sync,
            });
        }
        self.publish(|p| {
            p.call_id = call.to_string();
            p.stats.clear();
            p.timeline.clear();
            p.timeline
                .insert("call-started".into(), crate::stamp::unix_ms());
        });
        self.emit_state(call, call_state::CONNECTING, "").await;
        let (tx, rx) = unbounded_channel();
        let plan = self.plan.clone();
        let id2 = id.clone();
        let started =
            tokio::task::spawn_blocking(move || CallSession::start(&plan, id2.as_str(), &ice, tx))
                .await
                .map_err(|e| KioskError::Failed(e.to_string()))?;
        match started {
            Ok(session) => {
                let mut stale = None;
                if let Ok(mut r) = self.running.lock() {
                    match r.as_mut() {
                        Some(run) if run.call == call => run.session = Some(session),
                        // Ended while starting.
                        _ => stale = Some(session),
                    }
                }
                if let Some(s) = stale {
                    let _ =
                        tokio::task::spawn_blocking(move || s.end("ended while starting")).await;
                    return Ok(());
                }
                tokio::spawn(relay(self.clone(), call.to_string(), from_sync, rx));
                tracing::info!(call, from_sync, "call started; offer on its way");
                Ok(())
            }
            Err(e) => {
                if let Ok(mut r) = self.running.lock() {
                    *r = None;
                }
                let reason = e.to_string();
                tracing::error!(call, %reason, "call could not start");
                self.emit_state(call, call_state::FAILED, &reason).await;
                self.publish(|p| p.call_id.clear());
                self.emit_state(call, call_state::IDLE, &reason).await;
                if from_sync {
                    self.tell_sync_end(call).await;
                }
                Err(KioskError::Failed(reason))
            }
        }
    }

    /// Applies the peer's signal to the running call.
    pub fn add_remote_signal(
        &self,
        call: &str,
        kind: &str,
        payload: &str,
    ) -> Result<(), KioskError> {
        let signal = signal_from_wire(kind, payload).map_err(KioskError::InvalidArgument)?;
        let r = self
            .running
            .lock()
            .map_err(|_| KioskError::Failed("engine unavailable".into()))?;
        match r.as_ref() {
            Some(run) if run.call == call => match run.session.as_ref() {
                Some(s) => s
                    .add_remote(signal)
                    .map_err(|e| KioskError::Failed(e.to_string())),
                None => Err(KioskError::WrongState(
                    "the call is still starting; its offer comes first".into(),
                )),
            },
            _ => Err(KioskError::WrongState(format!(
                "call {call} is not running"
            ))),
        }
    }

    /// Mutes or unmutes the running call's microphone.
    pub fn set_microphone_muted(&self, muted: bool) -> Result<(), KioskError> {
        let r = self
            .running
            .lock()
            .map_err(|_| KioskError::Failed("engine unavailable".into()))?;
        let Some(session) = r.as_ref().and_then(|run| run.session.as_ref()) else {
            return Err(KioskError::WrongState("no call is running".into()));
        };
        if !session.set_muted(muted) {
            return Err(KioskError::WrongState(
                "this call sends no microphone audio".into(),
            ));
        }
        drop(r);
        self.publish(|p| p.microphone_muted = muted);
        tracing::info!(muted, "microphone");
        Ok(())
    }

    /// Ends `call` if it runs (not an error otherwise). `failed` carries the failure reason.
    pub async fn end_call(&self, call: &str, reason: &str, failed: Option<&str>) {
        let taken = match self.running.lock() {
            Ok(mut r) if r.as_ref().is_some_and(|run| run.call == call) => r.take(),
            _ => None,
        };
        let Some(run) = taken else { return };
        self.emit_state(call, call_state::ENDING, reason).await;
        if let Some(session) = run.session {
            let why = reason.to_string();
            let report = tokio::task::spawn_blocking(move || session.end(&why)).await;
            if let Ok(r) = report {
                tracing::info!(call, reason, null = r.reached_null, counters = ?r.counters, "call ended");
            }
        }
        if let Some(f) = failed {
            self.emit_state(call, call_state::FAILED, f).await;
            if run.from_sync {
                self.tell_sync_end(call).await;
            }
        }
        self.publish(|p| {
            p.call_id.clear();
            p.stats.clear();
            p.microphone_muted = false;
        });
        self.emit_state(call, call_state::IDLE, failed.unwrap_or(reason))
            .await;
    }

    /// Ends whatever runs (shutdown).
    pub async fn end_any(&self, reason: &str) {
        let call = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| (r.call.clone(), r.from_sync)));
        if let Some((call, from_sync)) = call {
            self.end_call(&call, reason, None).await;
            if from_sync {
                self.tell_sync_end(&call).await;
            }
        }
    }

    async fn tell_sync_end(&self, call: &str) {
        if let Some(sync) = self.sync.get() {
            if let Err(e) = sync.end_call(call, "media_failed").await {
                tracing::warn!(call, error = %e, "could not tell kiosk-sync the call failed");
            }
        }
    }
}

/// Relays one call's events until its session ends.
async fn relay(
    engine: Arc<Engine>,
    call: String,
    from_sync: bool,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<MediaEvent>,
) {
    // Latencies of the stamped frames since the last second's statistics.
    let mut latencies: Vec<u32> = Vec::new();
    while let Some(event) = rx.recv().await {
        match event {
            MediaEvent::Signal(s) => {
                let (kind, payload) = signal_to_wire(&s);
                if let Some(conn) = engine.conn.get() {
                    if let Ok(iface) = conn
                        .object_server()
                        .interface::<_, MediaService>(PATH)
                        .await
                    {
                        let _ = MediaService::local_signal(
                            iface.signal_emitter(),
                            &call,
                            kind,
                            &payload,
                        )
                        .await;
                    }
                }
                if let Some(sync) = engine.sync.get() {
                    if let Err(e) = sync.send_signal(&call, kind, &payload).await {
                        if from_sync {
                            tracing::warn!(%call, error = %e, "kiosk-sync refused our signal");
                        } else {
                            tracing::debug!(%call, error = %e, "no kiosk-sync for our signal");
                        }
                    }
                }
            }
            MediaEvent::Connected => {
                engine.emit_state(&call, call_state::IN_CALL, "").await;
            }
            MediaEvent::Stats(mut s) => {
                s.stamp_latencies_ms = std::mem::take(&mut latencies);
                if let Ok(json) = serde_json::to_string(&s) {
                    engine.publish(|p| p.stats = json);
                    engine.emit_stats().await;
                }
            }
            MediaEvent::SourceChanged {
                description,
                reason,
            } => {
                tracing::warn!(%call, camera = %description, %reason, "video source changed");
                engine.publish(|p| p.camera = description);
                let state = engine.published().call_state;
                engine.emit_state(&call, &state, &reason).await;
            }
            MediaEvent::Milestone { milestone, at_ms } => {
                tracing::info!(%call, milestone = milestone.as_str(), at_ms, "call milestone");
                engine.publish(|p| {
                    p.timeline.insert(milestone.as_str().to_string(), at_ms);
                });
            }
            MediaEvent::KeyframeRequested { total } => {
                tracing::debug!(%call, total, "keyframe requested by the peer");
            }
            MediaEvent::LatencySample { ms } => {
                // Bounded: a second holds at most a few dozen frames.
                if latencies.len() < 1024 {
                    latencies.push(ms);
                }
            }
            MediaEvent::Failed { reason } => {
                engine.end_call(&call, "media_failed", Some(&reason)).await;
                return;
            }
        }
    }
}

/// Follows kiosk-sync's call signals until `stop`. kiosk-sync may be absent or restart: the
/// match rules name its well-known name, so the bus delivers whatever its current owner says.
pub async fn follow_sync(
    engine: Arc<Engine>,
    sync: Sync1Proxy<'static>,
    mut stop: watch::Receiver<bool>,
) -> zbus::Result<()> {
    let mut accepted = sync.receive_call_accepted().await?;
    let mut peer = sync.receive_peer_signal().await?;
    let mut ended = sync.receive_call_ended().await?;
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            Some(s) = accepted.next() => {
                let Ok(a) = s.args() else { continue };
                let (call, ice) = (a.call().to_string(), a.ice_servers().to_string());
                tracing::info!(%call, agent = %a.agent(), "kiosk-sync: call accepted");
                let engine = engine.clone();
                tokio::spawn(async move {
                    if let Err(e) = engine.start_call(&call, &ice, true).await {
                        tracing::warn!(%call, error = %e, "call from kiosk-sync not started");
                    }
                });
            }
            Some(s) = peer.next() => {
                let Ok(a) = s.args() else { continue };
                if let Err(e) = engine.add_remote_signal(a.call(), a.kind(), a.payload()) {
                    tracing::warn!(call = %a.call(), error = %e, "peer signal not applied");
                }
            }
            Some(s) = ended.next() => {
                let Ok(a) = s.args() else { continue };
                let (call, reason) = (a.call().to_string(), a.reason().to_string());
                tracing::info!(%call, %reason, by = %a.by(), "kiosk-sync: call ended");
                let engine = engine.clone();
                tokio::spawn(async move { engine.end_call(&call, &reason, None).await });
            }
            else => return Ok(()),
        }
    }
}

/// The D-Bus object.
#[derive(Debug, Clone)]
pub struct MediaService {
    pub engine: Arc<Engine>,
}

#[zbus::interface(name = "org.kioskcall.Media1")]
impl MediaService {
    async fn start_call(&self, call: String, ice_servers: String) -> Result<(), KioskError> {
        self.engine.start_call(&call, &ice_servers, false).await
    }

    async fn add_remote_signal(
        &self,
        call: String,
        kind: String,
        payload: String,
    ) -> Result<(), KioskError> {
        self.engine.add_remote_signal(&call, &kind, &payload)
    }

    async fn end_call(&self, call: String, reason: String) -> Result<(), KioskError> {
        self.engine.end_call(&call, &reason, None).await;
        Ok(())
    }

    async fn set_microphone_muted(
        &self,
        muted: bool,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), KioskError> {
        self.engine.set_microphone_muted(muted)?;
        let _ = self.microphone_muted_changed(&emitter).await;
        Ok(())
    }

    #[zbus(property)]
    async fn microphone_muted(&self) -> bool {
        self.engine.published().microphone_muted
    }

    #[zbus(signal)]
    pub async fn local_signal(
        emitter: &SignalEmitter<'_>,
        call: &str,
        kind: &str,
        payload: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal, name = "CallState")]
    pub async fn call_state_signal(
        emitter: &SignalEmitter<'_>,
        call: &str,
        state: &str,
        reason: &str,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    async fn camera(&self) -> String {
        self.engine.published().camera
    }

    #[zbus(property)]
    async fn camera_mode(&self) -> String {
        self.engine.published().camera_mode
    }

    #[zbus(property)]
    async fn encoder(&self) -> String {
        self.engine.published().encoder
    }

    #[zbus(property)]
    async fn encoder_reason(&self) -> String {
        self.engine.published().encoder_reason
    }

    #[zbus(property)]
    async fn call_state(&self) -> String {
        self.engine.published().call_state
    }

    #[zbus(property)]
    async fn call_id(&self) -> String {
        self.engine.published().call_id
    }

    #[zbus(property)]
    async fn stats(&self) -> String {
        self.engine.published().stats
    }

    #[zbus(property)]
    async fn timeline(&self) -> String {
        let t = self.engine.published().timeline;
        if t.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&t).unwrap_or_default()
        }
    }
}
