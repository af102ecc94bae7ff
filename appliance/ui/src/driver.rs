//! The thin edge around the [`Journey`]: one task owns it and feeds it inputs (page actions,
//! kiosk-sync's state and signals, kiosk-media's mute, `Ui1.Reset`, deadlines); one task
//! carries out its commands on D-Bus, in order, and feeds the answers back; followers turn
//! D-Bus state and signals into inputs.
//!
//! Tasks:
//! - the journey loop ([`Driver::run`]): the only owner of the journey; publishes the view on
//!   a `watch` channel for the HTTP side and the `Screen`/`Language` properties of `Ui1`.
//! - the executor ([`execute`]): one D-Bus call at a time, in the order the journey decided
//!   (a cancel always reaches kiosk-sync after the call it cancels). A number or a code lives
//!   in a command only until its call returns, and is overwritten then.
//! - the Sync1 follower ([`follow_sync`]): polls `Status` every second and at once when
//!   kiosk-sync's properties change or its owner does; fetches the config when its version
//!   changes; forwards the call and journey signals.
//! - the Media1 follower ([`follow_media`]): `MicrophoneMuted` changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use kiosk_bus::sync::JourneyOutcome;
use kiosk_bus::{Media1Proxy, Sync1Proxy};
use kiosk_protocol::config::DesiredConfig;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::journey::{
    Action, Answer, Command, Input, Issued, Journey, Link, Now, Refusal, SyncSignal, View,
};

/// How often kiosk-sync's status is read when nothing says it changed.
pub const POLL: Duration = Duration::from_secs(1);
/// How long the last commands may take when the service stops.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Something for the journey loop.
#[derive(Debug)]
pub enum Event {
    Input(Input),
    /// A page action; the answer says whether it was taken.
    Action(Action, oneshot::Sender<Result<(), Refusal>>),
    /// The view as of now.
    View(oneshot::Sender<View>),
}

/// What `Ui1` publishes, kept where its D-Bus object can read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub screen: String,
    pub language: String,
}

/// Shared with the D-Bus object.
pub type SharedPublished = Arc<Mutex<Published>>;

/// The journey loop's handles.
#[derive(Debug)]
pub struct Driver {
    pub journey: Journey,
    pub events: mpsc::Receiver<Event>,
    pub commands: mpsc::UnboundedSender<Issued>,
    pub views: watch::Sender<Arc<View>>,
    pub published: SharedPublished,
    /// Where `Ui1`'s property changes are emitted, once served.
    pub conn: Option<zbus::Connection>,
    pub start: Instant,
}

/// The time now, on the journey's clocks.
pub fn now(start: Instant) -> Now {
    Now {
        mono: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        wall: jiff::Timestamp::now(),
    }
}

impl Driver {
    /// Runs until `stop`; then ends any session (a privacy reset) and returns the journey's
    /// last commands for the caller to carry out.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Vec<Issued> {
        self.publish().await;
        loop {
            let deadline = self
                .journey
                .next_deadline(now(self.start))
                .map(|ms| self.start + Duration::from_millis(ms));
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => break,
                _ = sleep => self.input(Input::Tick),
                e = self.events.recv() => match e {
                    None => break,
                    Some(Event::Input(i)) => self.input(i),
                    Some(Event::Action(a, reply)) => {
                        let kind = a.kind();
                        let r = self.journey.handle(Input::Action(a), now(self.start));
                        match r {
                            Ok(cmds) => {
                                self.send(cmds);
                                let _ = reply.send(Ok(()));
                            }
                            Err(e) => {
                                tracing::debug!(action = kind, refusal = %e, "action refused");
                                let _ = reply.send(Err(e));
                            }
                        }
                    }
                    Some(Event::View(reply)) => {
                        let _ = reply.send(self.journey.view(now(self.start)));
                        continue;
                    }
                },
            }
            self.publish().await;
        }
        if self.journey.has_session() {
            tracing::info!("stopping: ending the customer's session");
            self.journey
                .handle(Input::Reset, now(self.start))
                .unwrap_or_default()
        } else {
            Vec::new()
        }
    }

    fn input(&mut self, input: Input) {
        match self.journey.handle(input, now(self.start)) {
            Ok(cmds) => self.send(cmds),
            Err(e) => tracing::warn!(error = %e, "input refused"),
        }
    }

    fn send(&self, cmds: Vec<Issued>) {
        for c in cmds {
            if self.commands.send(c).is_err() {
                tracing::error!("the D-Bus executor is gone; command dropped");
            }
        }
    }

    async fn publish(&mut self) {
        let view = self.journey.view(now(self.start));
        let screen = view.screen;
        let language = view.language;
        let session = view.session.clone();
        self.views.send_if_modified(|v| {
            if **v == view {
                false
            } else {
                if v.screen != screen || v.session != session {
                    tracing::info!(screen, session, "screen");
                }
                *v = Arc::new(view);
                true
            }
        });
        let changed = {
            let Ok(mut p) = self.published.lock() else {
                return;
            };
            let (s, l) = (p.screen != screen, p.language != language);
            p.screen = screen.to_string();
            p.language = language.to_string();
            (s, l)
        };
        if changed != (false, false) {
            if let Some(conn) = &self.conn {
                crate::service::emit_changes(conn, changed.0, changed.1).await;
            }
        }
    }
}

/// Overwrites a secret's bytes before they are freed (best effort: copies made by the D-Bus
/// library's buffers are its own).
fn wipe(secret: String) {
    let mut bytes = secret.into_bytes();
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

fn outcome(r: zbus::Result<String>) -> Result<JourneyOutcome, String> {
    let json = r.map_err(|e| e.to_string())?;
    serde_json::from_str(&json).map_err(|e| format!("an answer this build cannot read: {e}"))
}

fn outcome_kind(r: &Result<JourneyOutcome, String>) -> &'static str {
    match r {
        Ok(JourneyOutcome::CodeSent { .. }) => "code_sent",
        Ok(JourneyOutcome::Limited { .. }) => "limited",
        Ok(JourneyOutcome::InvalidPhone { .. }) => "invalid_phone",
        Ok(JourneyOutcome::Verified { .. }) => "verified",
        Ok(JourneyOutcome::WrongCode { .. }) => "wrong_code",
        Ok(JourneyOutcome::CodeDead { .. }) => "code_dead",
        Ok(JourneyOutcome::CallbackBooked { .. }) => "callback_booked",
        Ok(JourneyOutcome::Unavailable { .. }) => "unavailable",
        Ok(JourneyOutcome::Offline) => "offline",
        Err(_) => "failed",
    }
}

/// Carries out one command and says what came of it. Logs name the command and the kind of
/// answer, never a number or a code.
pub async fn carry_out(sync: &Sync1Proxy<'_>, media: &Media1Proxy<'_>, cmd: Command) -> Answer {
    let name = match &cmd {
        Command::RequestOtp { .. } => "RequestOtp",
        Command::ResendOtp => "ResendOtp",
        Command::VerifyOtp { .. } => "VerifyOtp",
        Command::PlaceCustomerCall { .. } => "PlaceCustomerCall",
        Command::RequestCallback { .. } => "RequestCallback",
        Command::EndCall { .. } => "EndCall",
        Command::EndJourney => "EndJourney",
        Command::ReportSurvey { .. } => "ReportEvent",
        Command::SetMicrophoneMuted(_) => "SetMicrophoneMuted",
    };
    let done = |r: zbus::Result<()>| {
        match &r {
            Ok(()) => tracing::info!(call = name, "done"),
            Err(e) => tracing::warn!(call = name, error = %e, "failed"),
        }
        Answer::Done
    };
    let logged = |r: Result<JourneyOutcome, String>| {
        match &r {
            Err(e) => tracing::warn!(call = name, error = %e, "failed"),
            Ok(_) => tracing::info!(call = name, answer = outcome_kind(&r), "answered"),
        }
        r
    };
    match cmd {
        Command::RequestOtp { phone, language } => {
            let r = sync.request_otp(&phone, &language).await;
            wipe(phone);
            Answer::Otp(logged(outcome(r)))
        }
        Command::ResendOtp => Answer::Otp(logged(outcome(sync.resend_otp().await))),
        Command::VerifyOtp { code } => {
            let r = sync.verify_otp(&code).await;
            wipe(code);
            Answer::Verify(logged(outcome(r)))
        }
        Command::PlaceCustomerCall { language, consent } => {
            let r = sync.place_customer_call(&language, &consent).await;
            match &r {
                Ok(request) => tracing::info!(call = name, %request, %consent, "placed"),
                Err(e) => tracing::warn!(call = name, error = %e, "failed"),
            }
            Answer::Placed(r.map_err(|e| e.to_string()))
        }
        Command::RequestCallback { call } => {
            Answer::Callback(logged(outcome(sync.request_callback(&call).await)))
        }
        Command::EndCall { call, reason } => done(sync.end_call(&call, &reason).await),
        Command::EndJourney => done(sync.end_journey().await),
        Command::ReportSurvey { call, score } => {
            let body = serde_json::json!({ "call": call, "score": score }).to_string();
            done(sync.report_event("survey", &body).await.map(|_| ()))
        }
        Command::SetMicrophoneMuted(muted) => {
            let r = media.set_microphone_muted(muted).await;
            if let Err(e) = &r {
                tracing::warn!(call = name, error = %e, "failed");
            }
            Answer::Muted {
                muted,
                result: r.map_err(|e| e.to_string()),
            }
        }
    }
}

/// The executor: one command at a time, answers back to the journey loop.
pub async fn execute(
    sync: Sync1Proxy<'static>,
    media: Media1Proxy<'static>,
    mut commands: mpsc::UnboundedReceiver<Issued>,
    events: mpsc::Sender<Event>,
) {
    while let Some(Issued { epoch, command }) = commands.recv().await {
        let answer = carry_out(&sync, &media, command).await;
        // Once the journey loop has stopped, the last commands still go out; their answers
        // have no one to go to.
        let _ = events
            .send(Event::Input(Input::Answer { epoch, answer }))
            .await;
    }
}

/// Reads kiosk-sync's state; `None` when it does not answer.
async fn read_link(sync: &Sync1Proxy<'_>) -> Option<(Link, u64)> {
    let s = sync.status().await.ok()?;
    Some((
        Link {
            present: true,
            state: s.state,
            activation_code: s.activation_code,
            connected: s.connected,
        },
        s.config_version,
    ))
}

/// The config in force, checked; `None` when there is none or it cannot be used.
fn read_config(json: &str) -> Option<Box<DesiredConfig>> {
    if json.is_empty() {
        return None;
    }
    let config: DesiredConfig = match serde_json::from_str(json) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "the config in force cannot be read by this build");
            return None;
        }
    };
    if let Err(errors) = config.validate() {
        tracing::warn!(?errors, "the config in force is not valid");
        return None;
    }
    if jiff::tz::TimeZone::get(&config.site.timezone).is_err() {
        tracing::warn!(
            timezone = %config.site.timezone,
            "unknown site time zone; the closed screen cannot be computed"
        );
    }
    Some(Box::new(config))
}

/// Follows kiosk-sync: its state (polled, and at once on a change), its config, its signals.
pub async fn follow_sync(
    conn: zbus::Connection,
    sync: Sync1Proxy<'static>,
    events: mpsc::Sender<Event>,
) -> zbus::Result<()> {
    let (wake_tx, mut wake) = mpsc::channel::<()>(8);
    spawn_signals(&conn, &sync, events.clone(), wake_tx).await?;
    let mut last_link: Option<Link> = None;
    let mut config_version: Option<u64> = None;
    loop {
        let (link, version) = match read_link(&sync).await {
            Some((l, v)) => (l, Some(v)),
            None => (Link::default(), None),
        };
        if version.is_some() && version != config_version {
            let config = match sync.desired_config().await {
                Ok(json) => read_config(&json),
                Err(e) => {
                    tracing::warn!(error = %e, "DesiredConfig failed");
                    None
                }
            };
            tracing::info!(version = ?version, usable = config.is_some(), "config");
            config_version = version;
            if events
                .send(Event::Input(Input::Config(config)))
                .await
                .is_err()
            {
                return Ok(());
            }
        } else if version.is_none() && config_version.is_some() {
            // kiosk-sync went away: read its config afresh when it is back.
            config_version = None;
        }
        if last_link.as_ref() != Some(&link) {
            tracing::info!(
                present = link.present,
                state = %link.state,
                connected = link.connected,
                "kiosk-sync"
            );
            last_link = Some(link.clone());
            if events.send(Event::Input(Input::Link(link))).await.is_err() {
                return Ok(());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            w = wake.recv() => if w.is_none() { return Ok(()) },
        }
    }
}

async fn spawn_signals(
    conn: &zbus::Connection,
    sync: &Sync1Proxy<'static>,
    events: mpsc::Sender<Event>,
    wake: mpsc::Sender<()>,
) -> zbus::Result<()> {
    let props = zbus::fdo::PropertiesProxy::builder(conn)
        .destination(kiosk_bus::sync::NAME)?
        .path(kiosk_bus::sync::PATH)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let mut changed = props.receive_properties_changed().await?;
    let mut owner = sync.inner().receive_owner_changed().await?;
    let mut config = sync.receive_config_changed().await?;
    let w = wake.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                c = changed.next() => if c.is_none() { break },
                o = owner.next() => if o.is_none() { break },
                c = config.next() => if c.is_none() { break },
            }
            let _ = w.try_send(());
        }
    });
    let mut queued = sync.receive_call_queued().await?;
    let mut update = sync.receive_queue_update().await?;
    let mut accepted = sync.receive_call_accepted().await?;
    let mut ended = sync.receive_call_ended().await?;
    let mut offered = sync.receive_callback_offered().await?;
    tokio::spawn(async move {
        loop {
            let signal = tokio::select! {
                Some(s) = queued.next() => s.args().ok().map(|a| SyncSignal::CallQueued {
                    request: a.request.to_string(),
                    call: a.call.to_string(),
                }),
                Some(s) = update.next() => s.args().ok().map(|a| SyncSignal::QueueUpdate {
                    call: a.call.to_string(),
                    position: a.position,
                    estimated_wait_s: a.estimated_wait_s,
                }),
                Some(s) = accepted.next() => s.args().ok().map(|a| SyncSignal::CallAccepted {
                    call: a.call.to_string(),
                }),
                Some(s) = ended.next() => s.args().ok().map(|a| SyncSignal::CallEnded {
                    call: a.call.to_string(),
                    request: a.request.to_string(),
                    reason: a.reason.to_string(),
                }),
                Some(s) = offered.next() => s.args().ok().map(|a| SyncSignal::CallbackOffered {
                    call: a.call.to_string(),
                }),
                else => break,
            };
            let Some(signal) = signal else {
                tracing::warn!("a Sync1 signal with unreadable arguments was dropped");
                continue;
            };
            tracing::debug!(?signal, "Sync1 signal");
            if events
                .send(Event::Input(Input::Signal(signal)))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    Ok(())
}

/// Follows kiosk-media's `MicrophoneMuted`.
pub async fn follow_media(conn: zbus::Connection, events: mpsc::Sender<Event>) -> zbus::Result<()> {
    let props = zbus::fdo::PropertiesProxy::builder(&conn)
        .destination(kiosk_bus::media::NAME)?
        .path(kiosk_bus::media::PATH)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let mut changed = props.receive_properties_changed().await?;
    while let Some(c) = changed.next().await {
        let Ok(args) = c.args() else { continue };
        if args.interface_name.as_str() != kiosk_bus::media::INTERFACE {
            continue;
        }
        if let Some(v) = args.changed_properties.get("MicrophoneMuted") {
            if let Ok(muted) = bool::try_from(v) {
                if events
                    .send(Event::Input(Input::MediaMuted(muted)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    Ok(())
}
