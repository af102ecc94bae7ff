//! The kiosk-sync daemon: enrollment, the link, desired config, commands, certificate
//! rotation and telemetry, with `org.kioskcall.Sync1` on D-Bus throughout.
//!
//! Order of a start: open the state (outbox, config in force) → own the D-Bus name → finish a
//! certificate swap cut short → enroll if there is no certificate (token or activation code) →
//! run the link with the device certificate until told to stop. A rotation swaps the link to the
//! new certificate in place; a factory reset wipes the state and starts over.
//!
//! Threads and tasks: everything runs on one tokio runtime. SQLite calls are short and made
//! under a std mutex never held across an await; the outbox's fsyncs run on the blocking pool
//! when called from D-Bus methods.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiosk_bus::sync::{state, NAME, PATH};
use kiosk_bus::BusAddress;
use kiosk_protocol::call::{CallControl, DownSignal, EndReason};
use kiosk_protocol::command::{Action, Command, CommandResult, Outcome, Service};
use kiosk_protocol::journey::JourneyAnswer;
use kiosk_protocol::provision::Hardware;
use kiosk_protocol::renew::{RenewRequest, RenewResponse, RenewResult};
use kiosk_protocol::telemetry::Telemetry;
use kiosk_protocol::topic::{Down, Up};
use kiosk_protocol::{MessageId, Version};
use tokio::sync::{mpsc, watch};

use crate::desired::{decide, report, system_timezone, ConfigStore, Decision};
use crate::enroll::{self, ClaimSettings, EnrollError, EnrollRequest, Enrolled};
use crate::identity::{write_atomic, Files, Identity};
use crate::link::{Inbound, Link, LinkSettings};
use crate::ota::{UpdateRequest, Verification};
use crate::outbox::{OutboxPolicy, Retention, SqliteOutbox};
use crate::service::{self, now_ms, Shared, SyncService};
use crate::settings::Settings;
use crate::updates::{self, PendingUpdate, Slots};
use crate::{system, telemetry};

/// Renew the device certificate once it is past this part of its life, if the cloud has not
/// asked first.
pub const RENEW_AT_FRACTION: f64 = 2.0 / 3.0;

/// The daemon could not go on.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("state directory {path}: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    #[error(transparent)]
    Config(#[from] crate::desired::ConfigStoreError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("D-Bus ({bus}): {source}")]
    Bus {
        bus: String,
        source: Box<zbus::Error>,
    },
    #[error("read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("link: {0}")]
    Link(#[from] crate::link::LinkError),
    #[error("enrollment: {0}")]
    Enroll(#[from] EnrollError),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop (SIGTERM/SIGINT).
    Stopped,
    /// The state was wiped (factory reset): start again from enrollment.
    Restart,
}

fn read(path: &Path) -> Result<String, DaemonError> {
    std::fs::read_to_string(path).map_err(|source| DaemonError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// A command whose result is sent after a restart (reboot, restart of kiosk-sync itself).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AfterRestart {
    command_id: MessageId,
    detail: String,
}

/// Commands already run, so a repeated delivery runs nothing twice.
#[derive(Debug)]
struct CommandLog {
    conn: rusqlite::Connection,
}

impl CommandLog {
    fn open(path: &Path) -> Result<CommandLog, rusqlite::Error> {
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS commands_seen (
                 id      TEXT PRIMARY KEY,
                 seen_ms INTEGER NOT NULL
             );",
        )?;
        Ok(CommandLog { conn })
    }

    /// Records `id`; `false` when it was seen before.
    fn first_time(&self, id: &str, now: i64) -> Result<bool, rusqlite::Error> {
        // Keep a bounded history: commands expire long before 30 days.
        self.conn.execute(
            "DELETE FROM commands_seen WHERE seen_ms < ?1",
            [now - 30 * 24 * 3600 * 1000],
        )?;
        Ok(self.conn.execute(
            "INSERT OR IGNORE INTO commands_seen (id, seen_ms) VALUES (?1, ?2)",
            rusqlite::params![id, now],
        )? > 0)
    }
}

/// The running daemon's pieces.
struct Daemon {
    settings: Settings,
    files: Files,
    shared: Arc<Shared>,
    conn: zbus::Connection,
    commands: CommandLog,
    /// The update backend; `None` when updates are off.
    slots: Option<Slots>,
    /// An update is being installed.
    updating: Arc<AtomicBool>,
}

/// Runs the daemon until it is stopped; restarts from the top after a factory reset.
pub async fn run(
    settings: Settings,
    bus: BusAddress,
    mut stop: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    loop {
        match run_once(&settings, &bus, &mut stop).await? {
            Exit::Stopped => return Ok(()),
            Exit::Restart => tracing::info!("state wiped; starting again"),
        }
    }
}

async fn run_once(
    settings: &Settings,
    bus: &BusAddress,
    stop: &mut watch::Receiver<bool>,
) -> Result<Exit, DaemonError> {
    let dir = &settings.state_dir;
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        })
        .map_err(|source| DaemonError::StateDir {
            path: dir.display().to_string(),
            source,
        })?;
    let outbox = Arc::new(Mutex::new(SqliteOutbox::open(
        &dir.join("outbox.sqlite3"),
        OutboxPolicy::default(),
    )?));
    let config = ConfigStore::open(&dir.join("state.sqlite3"))?;
    let commands =
        CommandLog::open(&dir.join("state.sqlite3")).map_err(|e| DaemonError::Config(e.into()))?;
    let in_force = config.in_force()?;
    let shared = Arc::new(Shared::new(
        outbox,
        config,
        settings.firmware(),
        String::new(),
    ));
    if let Some(c) = &in_force {
        shared.update(|s| s.config_version = c.version);
    }
    let conn = bus
        .builder()
        .and_then(|b| b.name(NAME))
        .and_then(|b| {
            b.serve_at(
                PATH,
                SyncService {
                    shared: shared.clone(),
                },
            )
        })
        .map_err(|source| DaemonError::Bus {
            bus: bus.to_string(),
            source: Box::new(source),
        })?
        .build();
    // A bus that accepts the connection but never answers (a policy that drops replies)
    // must not hang the kiosk silently.
    let conn = tokio::time::timeout(Duration::from_secs(30), conn)
        .await
        .unwrap_or_else(|_| {
            Err(zbus::Error::Failure(
                "the bus did not answer within 30 s (check its policy)".into(),
            ))
        })
        .map_err(|source| DaemonError::Bus {
            bus: bus.to_string(),
            source: Box::new(source),
        })?;
    tracing::info!(bus = %bus, name = NAME, "serving on D-Bus");
    let files = Files::new(dir);
    files.recover()?;
    let slots = match Slots::open(&settings.ota, &conn).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "update slots unavailable; updates are refused");
            shared.update(|s| s.last_error = format!("update slots unavailable: {e}"));
            None
        }
    };
    if let Some(slots) = &slots {
        match slots.running().await {
            Ok(r) => {
                tracing::info!(slot = %r.label, version = ?r.version, pending = r.pending, "running slot");
                shared.update(|s| {
                    s.slot = r.label.clone();
                    if let Some(v) = &r.version {
                        s.firmware = v.clone();
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "could not read the running slot"),
        }
    }
    let mut d = Daemon {
        settings: settings.clone(),
        files,
        shared,
        conn,
        commands,
        slots,
        updating: Arc::new(AtomicBool::new(false)),
    };
    let identity = match d.files.load()? {
        Some(id) => id,
        None => match d.enroll(stop).await? {
            Some(id) => id,
            None => return Ok(Exit::Stopped),
        },
    };
    d.online(identity, stop).await
}

impl Daemon {
    async fn notify(&self) {
        service::notify(&self.conn).await;
    }

    async fn set(&self, f: impl FnOnce(&mut kiosk_bus::SyncStatus)) {
        if self.shared.update(f) {
            self.notify().await;
        }
    }

    /// Enrolls: with a token (configured, or from `kioskctl enroll`) or by activation code.
    /// `None` when stopped first.
    async fn enroll(
        &mut self,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<Identity>, DaemonError> {
        let Some(claim) = self.settings.claim.clone() else {
            self.set(|s| {
                s.state = state::UNENROLLED.into();
                s.last_error =
                    "no claim certificate is configured: this kiosk cannot enroll".into();
            })
            .await;
            tracing::error!("not enrolled and no [claim] in the configuration");
            let _ = stop.changed().await;
            return Ok(None);
        };
        let claim_cert = read(&claim.cert)?;
        let claim_settings = ClaimSettings {
            claim_cn: crate::identity::cert_info(&claim_cert)
                .map_err(|e| DaemonError::Read {
                    path: claim.cert.display().to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                })?
                .common_name,
            host: self.settings.cloud.host.clone(),
            port: self.settings.cloud.provision_port,
            server_ca_pem: read(&self.settings.cloud.ca)?,
            cert_pem: claim_cert,
            key_pem: read(&claim.key)?,
        };
        let key = enroll::load_or_create_key(&self.files.key())?;
        let request_id = match std::fs::read_to_string(self.files.request_id()) {
            Ok(r) if !r.trim().is_empty() => r.trim().to_string(),
            _ => {
                let bytes: [u8; 8] = rand::random();
                let r = format!("req-{}", hex::encode(bytes));
                write_atomic(&self.files.request_id(), r.as_bytes(), 0o600)?;
                r
            }
        };
        // A token from the image, or one kept from an earlier `kioskctl enroll`.
        let mut token = std::fs::read_to_string(self.files.token())
            .ok()
            .or_else(|| {
                claim
                    .enrollment_token_file
                    .as_ref()
                    .and_then(|p| std::fs::read_to_string(p).ok())
            })
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let mut tokens = self.shared.token.subscribe();
        loop {
            let request = EnrollRequest {
                request_id: request_id.clone(),
                csr_pem: enroll::csr(&key)?,
                key_fingerprint: enroll::key_fingerprint(&key),
                hardware: Hardware {
                    board: self.settings.board.clone(),
                    serial: self.settings.serial(),
                    firmware: self.settings.firmware(),
                },
                token: token.clone(),
                retry: Duration::from_secs(10),
            };
            self.set(|s| {
                s.state = state::ENROLLING.into();
                s.activation_code.clear();
            })
            .await;
            tracing::info!(request = %request_id, with_token = token.is_some(), "enrolling");
            let (codes_tx, mut codes) = watch::channel(None::<String>);
            let (halt_tx, halt) = watch::channel(false);
            let attempt = enroll::enroll(&claim_settings, &request, codes_tx, halt);
            tokio::pin!(attempt);
            let outcome = loop {
                tokio::select! {
                    r = &mut attempt => break Some(r),
                    Ok(()) = codes.changed() => {
                        let code = codes.borrow_and_update().clone();
                        self.set(|s| match code {
                            Some(c) => {
                                s.state = state::AWAITING_ACTIVATION.into();
                                s.activation_code = c;
                            }
                            None => {
                                s.state = state::ENROLLING.into();
                                s.activation_code.clear();
                            }
                        }).await;
                    }
                    Ok(()) = tokens.changed() => {
                        let t = tokens.borrow_and_update().clone();
                        if let Some(t) = t {
                            write_atomic(&self.files.token(), t.as_bytes(), 0o600)?;
                            token = Some(t);
                            let _ = halt_tx.send(true);
                            break None;
                        }
                    }
                    _ = stop.changed() => {
                        let _ = halt_tx.send(true);
                        return Ok(None);
                    }
                }
            };
            match outcome {
                // A new token: ask again with it.
                None | Some(Err(EnrollError::Stopped)) => continue,
                Some(Ok(Enrolled::Certificate {
                    device_id,
                    certificate_pem,
                })) => {
                    let identity = self.files.save_enrolled(&certificate_pem)?;
                    tracing::info!(device = %device_id, "enrolled");
                    self.set(|s| {
                        s.last_error.clear();
                        s.activation_code.clear();
                    })
                    .await;
                    return Ok(Some(identity));
                }
                Some(Err(EnrollError::Refused(reason))) => {
                    tracing::warn!(%reason, "enrollment refused");
                    self.set(|s| s.last_error = format!("enrollment refused: {reason}"))
                        .await;
                    // A refused token is not used again; the kiosk asks for an activation code.
                    let _ = std::fs::remove_file(self.files.token());
                    token = None;
                    tokio::select! {
                        _ = stop.changed() => return Ok(None),
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        Ok(()) = tokens.changed() => {
                            token = tokens.borrow_and_update().clone();
                        }
                    }
                }
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Runs the link with `identity` until stopped or wiped; swaps certificates in place.
    async fn online(
        mut self,
        mut identity: Identity,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Exit, DaemonError> {
        let server_ca = read(&self.settings.cloud.ca)?;
        self.after_restart_results();
        self.verdict_after_boot().await;
        loop {
            let device = identity.device_id.clone();
            self.set(|s| {
                s.state = state::ENROLLED.into();
                s.device_id = device.as_str().to_string();
                s.certificate_not_after = identity.not_after;
            })
            .await;
            let (link_stop, link_stop_rx) = watch::channel(false);
            let (in_tx, mut inbound) = mpsc::channel::<Inbound>(64);
            let link = Link::start(
                LinkSettings::new(
                    device.clone(),
                    &self.settings.cloud.host,
                    self.settings.cloud.port,
                    &server_ca,
                    &identity.cert_pem,
                    &identity.key_pem,
                ),
                self.shared.outbox.clone(),
                in_tx,
                link_stop_rx,
            )?;
            if let Ok(mut w) = self.shared.wake.lock() {
                *w = Some(link.wake.clone());
            }
            if let Ok(mut l) = self.shared.live.lock() {
                *l = Some(link.live_sender());
            }
            let mut connected = link.connected.clone();
            let mut call_tick = tokio::time::interval(Duration::from_secs(1));
            call_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // kiosk-media leaving the bus ends a running call (it crashed or was stopped).
            let mut media_gone = media_departures(&self.conn).await;
            let mut telemetry = tokio::time::interval(self.telemetry_interval());
            telemetry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut renewal = tokio::time::interval(Duration::from_secs(3600));
            let next = loop {
                tokio::select! {
                    _ = stop.changed() => break Step::Stop,
                    Ok(()) = connected.changed() => {
                        let up = *connected.borrow_and_update();
                        self.set(|s| s.connected = up).await;
                        if !up {
                            let effects = self.shared.calls(|t| t.link_lost());
                            service::carry_out(&self.conn, &self.shared, effects).await;
                        }
                    }
                    _ = call_tick.tick() => {
                        let effects = self.shared.calls(|t| t.tick(now_ms()));
                        service::carry_out(&self.conn, &self.shared, effects).await;
                    }
                    Some(()) = next_departure(&mut media_gone) => {
                        if self.shared.calls(|t| matches!(t.phase(), crate::calls::Phase::Accepted { .. })) {
                            tracing::warn!("kiosk-media left the bus during a call; ending it");
                            let effects = self.shared.calls(|t| t.end("", EndReason::MediaFailed));
                            service::carry_out(&self.conn, &self.shared, effects).await;
                        }
                    }
                    Some(msg) = inbound.recv() => {
                        match self.inbound(&device, msg).await {
                            Step::Continue => {}
                            Step::Interval => {
                                telemetry = tokio::time::interval(self.telemetry_interval());
                                telemetry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            }
                            other => break other,
                        }
                    }
                    _ = telemetry.tick() => self.telemetry().await,
                    _ = renewal.tick() => {
                        // Past two thirds of its life: renew (again, hourly, if an answer was lost;
                        // a rotation in progress keeps its key).
                        if identity.past(RENEW_AT_FRACTION, now_ms() / 1000) {
                            tracing::info!("certificate past two thirds of its life; renewing");
                            self.start_rotation(None);
                        }
                    }
                }
            };
            // Leave the broker cleanly; what is not acknowledged stays in the outbox and goes
            // out on the next connection.
            let _ = link_stop.send(true);
            link.closed().await;
            if let Ok(mut w) = self.shared.wake.lock() {
                *w = None;
            }
            if let Ok(mut l) = self.shared.live.lock() {
                *l = None;
            }
            let effects = self.shared.calls(|t| t.link_lost());
            service::carry_out(&self.conn, &self.shared, effects).await;
            self.set(|s| s.connected = false).await;
            match next {
                Step::Stop => return Ok(Exit::Stopped),
                Step::Wiped => return Ok(Exit::Restart),
                Step::Swap(new) => {
                    tracing::info!(
                        not_after = new.not_after,
                        "reconnecting with the new certificate"
                    );
                    identity = *new;
                }
                Step::Continue | Step::Interval => {}
            }
        }
    }

    fn telemetry_interval(&self) -> Duration {
        let configured = self
            .shared
            .config
            .lock()
            .ok()
            .and_then(|c| c.in_force().ok().flatten())
            .map(|c| c.telemetry_interval_s)
            .unwrap_or(self.settings.telemetry.default_interval_s);
        Duration::from_secs(u64::from(configured.max(1)))
    }

    fn push(
        &self,
        channel: Up,
        retention: Retention,
        make: impl FnOnce(kiosk_protocol::UpHeader) -> Result<Vec<u8>, serde_json::Error>,
    ) {
        push(&self.shared, channel, retention, make);
    }

    fn result(&self, command_id: &MessageId, outcome: Outcome) {
        command_result(&self.shared, command_id, outcome);
    }

    /// After a boot into a new slot: confirm it once connected, or roll back at the deadline;
    /// after a boot that followed an update, report how the update went.
    async fn verdict_after_boot(&self) {
        let Some(slots) = self.slots.clone() else {
            return;
        };
        let marker = updates::pending_path(&self.files.dir);
        let pending: Option<PendingUpdate> = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let running = match slots.running().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the running slot");
                return;
            }
        };
        if !running.pending {
            if let Some(p) = pending {
                let outcome = if running.version.as_deref() == Some(p.version.as_str()) {
                    Outcome::Succeeded {
                        detail: format!("running {} from slot {}", p.version, running.label),
                    }
                } else {
                    Outcome::Failed {
                        error: format!(
                            "{} in slot {} did not pass its health check; rolled back to slot {}",
                            p.version, p.slot, running.label
                        ),
                    }
                };
                self.result(&p.command_id, outcome);
                let _ = std::fs::remove_file(&marker);
            }
            return;
        }
        let shared = self.shared.clone();
        let deadline = Duration::from_secs(self.settings.ota.health_deadline_s);
        tracing::info!(slot = %running.label, deadline_s = deadline.as_secs(), "new slot booted; confirming once connected");
        tokio::spawn(async move {
            let healthy = || {
                let connected = shared.snapshot().connected;
                async move { connected }
            };
            match slots
                .confirm(healthy, Duration::from_secs(2), deadline)
                .await
            {
                Ok(Verification::Confirmed { slot, version }) => {
                    tracing::info!(%slot, %version, "update confirmed");
                    if let Some(p) = pending {
                        command_result(
                            &shared,
                            &p.command_id,
                            Outcome::Succeeded {
                                detail: format!("running {version} from slot {slot}"),
                            },
                        );
                        let _ = std::fs::remove_file(&marker);
                    }
                }
                Ok(Verification::RolledBack {
                    slot,
                    version,
                    reboot,
                }) => {
                    tracing::error!(%slot, %version, %reboot, "update not healthy; rolled back");
                }
                Ok(Verification::NotPending { .. }) => {}
                Err(e) => tracing::error!(error = %e, "could not give the new slot its verdict"),
            }
        });
    }

    /// Installs an update in the background, then reboots into it.
    fn start_update(&self, command_id: &MessageId, action: &Action) {
        let Some(slots) = self.slots.clone() else {
            self.result(
                command_id,
                Outcome::Rejected {
                    reason: "updates are not enabled on this kiosk".into(),
                },
            );
            return;
        };
        let settings = crate::ota::UpdateSettings {
            max_size: self.settings.ota.max_bytes,
            ..Default::default()
        };
        let Some(request) = UpdateRequest::from_action(action, settings) else {
            return;
        };
        if self.updating.swap(true, Ordering::SeqCst) {
            self.result(
                command_id,
                Outcome::Rejected {
                    reason: "another update is being installed".into(),
                },
            );
            return;
        }
        self.result(command_id, Outcome::Accepted);
        let (shared, conn, dir, updating) = (
            self.shared.clone(),
            self.conn.clone(),
            self.files.dir.clone(),
            self.updating.clone(),
        );
        let command_id = command_id.clone();
        let ca = self.settings.ota.ca.clone();
        tokio::spawn(async move {
            let outcome = install_and_reboot(
                &slots,
                &request,
                &shared,
                &conn,
                &dir,
                &command_id,
                ca.as_deref(),
            )
            .await;
            if let Err(error) = outcome {
                command_result(&shared, &command_id, Outcome::Failed { error });
            }
            updating.store(false, Ordering::SeqCst);
        });
    }

    /// Results of a reboot or self-restart asked for before this start.
    fn after_restart_results(&self) {
        let path = self.files.dir.join("after-restart.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        if let Ok(a) = serde_json::from_str::<AfterRestart>(&text) {
            self.result(&a.command_id, Outcome::Succeeded { detail: a.detail });
        }
        let _ = std::fs::remove_file(&path);
    }

    async fn telemetry(&self) {
        let media = telemetry::media(&self.conn).await;
        let status = self.shared.snapshot();
        let firmware = status.firmware.clone();
        let temperatures = telemetry::temperatures(&self.settings.telemetry.thermal_dir);
        self.push(Up::Telemetry, Retention::Droppable, move |header| {
            serde_json::to_vec(&Telemetry {
                v: Version::CURRENT,
                header,
                uptime_s: telemetry::uptime_s(),
                firmware,
                services: [(
                    "kiosk-sync".to_string(),
                    env!("CARGO_PKG_VERSION").to_string(),
                )]
                .into_iter()
                .collect(),
                config_version: (status.config_version > 0).then_some(status.config_version),
                camera: media.camera,
                encoder: media.encoder,
                call_state: media.call_state,
                outbox_depth: status.outbox_depth,
                temperatures,
                encoder_reason: media.encoder_reason,
                call_stats: media.call_stats,
            })
        });
    }

    async fn inbound(&mut self, device: &kiosk_protocol::DeviceId, msg: Inbound) -> Step {
        match msg.channel {
            Down::Desired => self.desired(&msg.payload).await,
            Down::Cmd => self.command(&msg.payload).await,
            Down::Cert => self.certificate(device, &msg.payload),
            Down::Call => {
                match serde_json::from_slice::<CallControl>(&msg.payload) {
                    Ok(c) => {
                        let effects = self.shared.calls(|t| t.control(c));
                        service::carry_out(&self.conn, &self.shared, effects).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable call control message dropped"),
                }
                Step::Continue
            }
            Down::Journey => {
                match serde_json::from_slice::<JourneyAnswer>(&msg.payload) {
                    Ok(a) => {
                        if !self.shared.journey(|d| d.answer(a)) {
                            tracing::debug!("journey answer for no waiting request dropped");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable journey answer dropped"),
                }
                Step::Continue
            }
            Down::Signal => {
                match serde_json::from_slice::<DownSignal>(&msg.payload) {
                    Ok(sig) => {
                        let effects = self.shared.calls(|t| t.peer(sig));
                        service::carry_out(&self.conn, &self.shared, effects).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable agent signal dropped"),
                }
                Step::Continue
            }
        }
    }

    async fn desired(&mut self, payload: &[u8]) -> Step {
        let in_force = self.shared.snapshot().config_version;
        let decision = decide(payload, (in_force > 0).then_some(in_force), system_timezone);
        let mut applied = None;
        let mut after = (in_force > 0).then_some(in_force);
        if let Decision::Apply(c) = &decision {
            let stored = self
                .shared
                .config
                .lock()
                .map_err(|_| "config store lock poisoned".to_string())
                .and_then(|mut s| s.apply(c).map_err(|e| e.to_string()));
            match stored {
                Ok(()) => {
                    applied = Some(c.clone());
                    after = Some(c.version);
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not keep the new config; the old one stays");
                    return Step::Continue;
                }
            }
        }
        let reported = self
            .shared
            .outbox
            .lock()
            .map_err(|_| "outbox lock poisoned".to_string())
            .and_then(|mut o| {
                report(&mut o, &decision, after, now_ms()).map_err(|e| e.to_string())
            });
        if let Err(e) = reported {
            tracing::error!(error = %e, "could not queue the config report");
        }
        self.shared.wake_link();
        match decision {
            Decision::Reject { version, errors } => {
                let what: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect();
                tracing::warn!(?version, errors = %what.join("; "), "desired config rejected; the config in force stays");
                self.set(|s| {
                    s.last_error = format!(
                        "config {} rejected: {}",
                        version.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
                        what.join("; ")
                    )
                })
                .await;
                Step::Continue
            }
            _ => match applied {
                Some(c) => {
                    tracing::info!(version = c.version, "desired config applied");
                    self.set(|s| {
                        s.config_version = c.version;
                        s.last_error.clear();
                    })
                    .await;
                    let json = serde_json::to_string(&c).unwrap_or_default();
                    service::config_changed(&self.conn, c.version, &json).await;
                    Step::Interval
                }
                None => Step::Continue,
            },
        }
    }

    async fn command(&mut self, payload: &[u8]) -> Step {
        let command: Command = match serde_json::from_slice(payload) {
            Ok(c) => c,
            Err(e) => {
                // Without an id there is no one to answer.
                let id = serde_json::from_slice::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| MessageId::parse(v["id"].as_str()?).ok());
                tracing::warn!(error = %e, "unreadable command");
                if let Some(id) = id {
                    self.result(
                        &id,
                        Outcome::Rejected {
                            reason: format!("not a command this kiosk understands: {e}"),
                        },
                    );
                }
                return Step::Continue;
            }
        };
        let now = now_ms();
        match self.commands.first_time(command.id.as_str(), now) {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(command = %command.id, "command already handled; not run again");
                return Step::Continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "command log unavailable; command not run");
                return Step::Continue;
            }
        }
        if command.expires_at_ms.is_some_and(|t| t < now) {
            self.result(
                &command.id,
                Outcome::Rejected {
                    reason: "the command expired before it reached the kiosk".into(),
                },
            );
            return Step::Continue;
        }
        tracing::info!(command = %command.id, action = ?command.action, "running command");
        match command.action {
            Action::Reboot => {
                self.result(&command.id, Outcome::Accepted);
                self.restart_later(&command.id, "rebooted");
                self.flush(Duration::from_secs(10)).await;
                if let Err(e) = system::reboot(&self.conn).await {
                    let _ = std::fs::remove_file(self.files.dir.join("after-restart.json"));
                    self.result(
                        &command.id,
                        Outcome::Failed {
                            error: format!("logind refused the reboot: {e}"),
                        },
                    );
                }
                Step::Continue
            }
            Action::RestartService { service } => {
                let unit = service.unit();
                if service == Service::KioskSync {
                    self.result(&command.id, Outcome::Accepted);
                    self.restart_later(&command.id, "kiosk-sync.service restarted");
                    self.flush(Duration::from_secs(10)).await;
                }
                match system::restart_unit(&self.conn, unit).await {
                    Ok(job) if service != Service::KioskSync => self.result(
                        &command.id,
                        Outcome::Succeeded {
                            detail: format!("{unit} restarted ({job})"),
                        },
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        let _ = std::fs::remove_file(self.files.dir.join("after-restart.json"));
                        self.result(
                            &command.id,
                            Outcome::Failed {
                                error: format!("systemd could not restart {unit}: {e}"),
                            },
                        );
                    }
                }
                Step::Continue
            }
            Action::RotateCertificate => {
                self.result(&command.id, Outcome::Accepted);
                self.start_rotation(Some(&command.id));
                Step::Continue
            }
            Action::FactoryReset => {
                self.result(
                    &command.id,
                    Outcome::Succeeded {
                        detail: "wiping the kiosk's identity, config and queue; it enrolls again"
                            .into(),
                    },
                );
                self.flush(Duration::from_secs(30)).await;
                match self.wipe() {
                    Ok(()) => Step::Wiped,
                    Err(e) => {
                        tracing::error!(error = %e, "factory reset failed");
                        Step::Continue
                    }
                }
            }
            action @ Action::Update { .. } => {
                self.start_update(&command.id, &action);
                Step::Continue
            }
        }
    }

    /// Notes a result to send once the kiosk (or kiosk-sync) is back.
    fn restart_later(&self, command_id: &MessageId, detail: &str) {
        let a = AfterRestart {
            command_id: command_id.clone(),
            detail: detail.to_string(),
        };
        if let Ok(bytes) = serde_json::to_vec(&a) {
            if let Err(e) = write_atomic(&self.files.dir.join("after-restart.json"), &bytes, 0o600)
            {
                tracing::warn!(error = %e, "the result after the restart will not be sent");
            }
        }
    }

    async fn flush(&self, limit: Duration) {
        flush(&self.shared, limit).await;
    }

    /// Deletes everything in the state directory (factory reset).
    fn wipe(&self) -> Result<(), std::io::Error> {
        for entry in std::fs::read_dir(&self.files.dir)? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        tracing::warn!(dir = %self.files.dir.display(), "factory reset: state wiped");
        Ok(())
    }

    /// Starts (or resumes) a rotation: the new key's CSR goes out through the outbox.
    fn start_rotation(&self, command: Option<&MessageId>) {
        let key = match self.files.next_key_pair() {
            Ok(k) => k,
            Err(e) => {
                if let Some(c) = command {
                    self.result(
                        c,
                        Outcome::Failed {
                            error: e.to_string(),
                        },
                    );
                }
                return;
            }
        };
        if let Some(c) = command {
            if let Err(e) = write_atomic(
                &self.files.dir.join("rotate-command"),
                c.as_str().as_bytes(),
                0o600,
            ) {
                tracing::warn!(error = %e, "rotation command id not kept");
            }
        }
        let csr = match enroll::csr(&key) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "could not make the CSR");
                return;
            }
        };
        let key_fingerprint = enroll::key_fingerprint(&key);
        self.push(Up::Csr, Retention::Keep, |header| {
            serde_json::to_vec(&RenewRequest {
                v: Version::CURRENT,
                header,
                csr_pem: csr,
                key_fingerprint,
            })
        });
        tracing::info!("certificate rotation started");
    }

    fn certificate(&self, device: &kiosk_protocol::DeviceId, payload: &[u8]) -> Step {
        let answer: RenewResponse = match serde_json::from_slice(payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable certificate answer");
                return Step::Continue;
            }
        };
        let key = match std::fs::read_to_string(self.files.next_key())
            .ok()
            .and_then(|p| rcgen::KeyPair::from_pem(&p).ok())
        {
            Some(k) => k,
            None => {
                tracing::info!("a certificate answer with no rotation in progress; ignored");
                return Step::Continue;
            }
        };
        if answer.key_fingerprint != enroll::key_fingerprint(&key) {
            tracing::info!("a certificate answer for another key; ignored");
            return Step::Continue;
        }
        let command = std::fs::read_to_string(self.files.dir.join("rotate-command"))
            .ok()
            .and_then(|c| MessageId::parse(c.trim()).ok());
        let _ = std::fs::remove_file(self.files.dir.join("rotate-command"));
        match answer.result {
            RenewResult::Certificate {
                certificate_pem, ..
            } => match self.files.install_next(device, &certificate_pem) {
                Ok(identity) => {
                    if let Some(c) = &command {
                        self.result(
                            c,
                            Outcome::Succeeded {
                                detail: format!(
                                    "new key and certificate, valid until {}",
                                    identity.not_after
                                ),
                            },
                        );
                    }
                    Step::Swap(Box::new(identity))
                }
                Err(e) => {
                    tracing::error!(error = %e, "the new certificate does not fit; keeping the old one");
                    let _ = self.files.abandon_next();
                    if let Some(c) = &command {
                        self.result(
                            c,
                            Outcome::Failed {
                                error: e.to_string(),
                            },
                        );
                    }
                    Step::Continue
                }
            },
            RenewResult::Rejected { reason } => {
                tracing::warn!(%reason, "certificate renewal refused; keeping the old certificate");
                let _ = self.files.abandon_next();
                if let Some(c) = &command {
                    self.result(
                        c,
                        Outcome::Failed {
                            error: format!("the cloud refused the renewal: {reason}"),
                        },
                    );
                }
                Step::Continue
            }
        }
    }
}

/// Downloads and installs an update, keeps the command for the verdict after the reboot, and
/// reboots into the new slot. An error is the command's failure.
async fn install_and_reboot(
    slots: &Slots,
    request: &UpdateRequest,
    shared: &Shared,
    conn: &zbus::Connection,
    dir: &Path,
    command_id: &MessageId,
    ca: Option<&Path>,
) -> Result<(), String> {
    let mut http = reqwest::Client::builder();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| format!("update CA {}: {e}", ca.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("update CA {}: {e}", ca.display()))?;
        http = http.add_root_certificate(cert);
    }
    let http = http.build().map_err(|e| format!("HTTP client: {e}"))?;
    let installed = slots.install(request, &http).await.map_err(|e| {
        tracing::warn!(error = %e, "update failed; the running slot is unchanged");
        e.to_string()
    })?;
    tracing::info!(slot = %installed.slot, version = %installed.version, bytes = installed.bytes, "update installed; rebooting into it");
    let marker = PendingUpdate {
        command_id: command_id.clone(),
        version: installed.version.clone(),
        slot: installed.slot.clone(),
    };
    let written = serde_json::to_vec(&marker)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            write_atomic(&updates::pending_path(dir), &b, 0o600).map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        tracing::warn!(error = %e, "the update's result after the reboot will not be sent");
    }
    flush(shared, Duration::from_secs(10)).await;
    system::reboot(conn).await.map_err(|e| {
        let _ = std::fs::remove_file(updates::pending_path(dir));
        format!(
            "installed {} into slot {}, but logind refused the reboot: {e}",
            installed.version, installed.slot
        )
    })
}

type Departures = Option<zbus::fdo::NameOwnerChangedStream>;

/// A stream of kiosk-media's name owner changes (none if the bus refuses the match rule).
async fn media_departures(conn: &zbus::Connection) -> Departures {
    let proxy = zbus::fdo::DBusProxy::new(conn).await.ok()?;
    proxy
        .receive_name_owner_changed_with_args(&[(0, kiosk_bus::media::NAME)])
        .await
        .ok()
}

/// The next time kiosk-media's name loses its owner; pending forever without a stream.
async fn next_departure(stream: &mut Departures) -> Option<()> {
    use futures_lite::StreamExt;
    let Some(s) = stream.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        let change = s.next().await?;
        if let Ok(args) = change.args() {
            if args.new_owner().is_none() {
                return Some(());
            }
        }
    }
}

/// Puts a message in the outbox and wakes the link.
fn push(
    shared: &Shared,
    channel: Up,
    retention: Retention,
    make: impl FnOnce(kiosk_protocol::UpHeader) -> Result<Vec<u8>, serde_json::Error>,
) {
    let result = shared
        .outbox
        .lock()
        .map_err(|_| "outbox lock poisoned".to_string())
        .and_then(|mut o| {
            o.push(channel, retention, now_ms(), make)
                .map_err(|e| e.to_string())
        });
    match result {
        Ok(_) => shared.wake_link(),
        Err(e) => {
            tracing::error!(error = %e, channel = channel.name(), "could not queue a message")
        }
    }
}

/// Queues a command's result (a record: never dropped).
fn command_result(shared: &Shared, command_id: &MessageId, outcome: Outcome) {
    let command_id = command_id.clone();
    push(shared, Up::CmdResult, Retention::Keep, |header| {
        serde_json::to_vec(&CommandResult {
            v: Version::CURRENT,
            header,
            command_id,
            outcome,
        })
    });
}

/// Waits (at most `limit`) until every record in the outbox is acknowledged.
async fn flush(shared: &Shared, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        loop {
            if shared.snapshot().outbox_records == 0 {
                return;
            }
            shared.wake_link();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// What the main loop does next.
enum Step {
    Continue,
    /// The telemetry interval changed.
    Interval,
    Stop,
    Wiped,
    Swap(Box<Identity>),
}
