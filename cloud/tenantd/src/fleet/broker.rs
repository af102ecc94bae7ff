//! The managed MQTT broker: tenantd writes a mosquitto 2 configuration under
//! `<data>/broker/`, starts mosquitto, and restarts it when it dies or when the CRL changes.
//!
//! One listener per kind of identity, each mTLS-only (TLS 1.2 minimum, client certificate
//! required, the certificate's CN as the MQTT identity) with its own CA file, CRL and ACL
//! (`per_listener_settings true`). Pattern ACLs cannot tell a device from a claim identity, so
//! the CA a listener trusts decides what kind of identity can be there at all:
//!
//! - the **device listener** (default `0.0.0.0:8883`): trusts only the device CA; a device may
//!   write its own `kiosk/v1/%u/up/#` and `status` and read its own `down/#`, nothing else;
//! - the **provisioning listener** (default `0.0.0.0:8885`): trusts only the claim CA; a claim
//!   identity may write `provision/v1/%u/request` and read `provision/v1/%u/response`, nothing
//!   else (devices of one batch share the pair and tell answers apart by request id);
//! - the **service listener** (default `127.0.0.1:8884`), for the cloud itself: trusts only the
//!   service CA, so no device or claim certificate can ever act as the cloud.
//!
//! Persistence is on (sessions and queued QoS 1 messages survive restarts); queue and packet
//! limits are set explicitly (see [`BrokerSettings`]). Mosquitto does not reload CRLs on a
//! signal, so a revocation restarts the broker ([`ManagedBroker::restart`]); devices reconnect
//! with their back-off and the revoked one fails its TLS handshake.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kiosk_protocol::topic::acl;
use tokio::process::{Child, Command};
use tokio::sync::{watch, Notify};

use super::pki::FleetPki;
use crate::tls::{self, write_private, LocalCa, TlsError};

/// The cloud's own MQTT identity (CN of its service certificate).
pub const SERVICE_IDENTITY: &str = "svc-tenantd";

/// Broker settings, validated by their types.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The mosquitto executable.
    pub mosquitto: PathBuf,
    /// Where enrolled kiosks connect.
    pub device_listen: SocketAddr,
    /// Where kiosks with a claim certificate ask to be enrolled.
    pub provision_listen: SocketAddr,
    /// Where the cloud connects (keep it on loopback or an internal network).
    pub service_listen: SocketAddr,
    /// Extra names for the broker's server certificate (what kiosks dial).
    pub public_names: Vec<String>,
    /// QoS 1 messages queued per client before new ones are dropped. The cloud's own session
    /// queues everything devices send while tenantd is down, so this is large; bytes bound it too.
    pub max_queued_messages: u32,
    /// Bytes queued per client before new messages are dropped.
    pub max_queued_bytes: u64,
    /// QoS 1 messages in flight per client.
    pub max_inflight_messages: u32,
    /// Largest MQTT packet (bytes).
    pub max_packet_size: u32,
    /// How long a disconnected persistent session is kept.
    pub persistent_client_expiration_days: u32,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            mosquitto: PathBuf::from("/usr/sbin/mosquitto"),
            device_listen: SocketAddr::from(([0, 0, 0, 0], 8883)),
            provision_listen: SocketAddr::from(([0, 0, 0, 0], 8885)),
            service_listen: SocketAddr::from(([127, 0, 0, 1], 8884)),
            public_names: Vec::new(),
            max_queued_messages: 100_000,
            max_queued_bytes: 256 * 1024 * 1024,
            max_inflight_messages: 20,
            max_packet_size: 256 * 1024,
            persistent_client_expiration_days: 14,
        }
    }
}

/// A broker step failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("start {program}: {source} (install the mosquitto package, or serve without the fleet: --broker none)")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("mosquitto did not listen on {addr} within {seconds} s; see {log}; it said:\n{tail}")]
    NotListening {
        addr: SocketAddr,
        seconds: u64,
        log: PathBuf,
        tail: String,
    },
}

/// The files of the managed broker.
#[derive(Debug, Clone)]
pub struct BrokerFiles {
    pub dir: PathBuf,
}

impl BrokerFiles {
    pub fn new(data_dir: &Path) -> Self {
        BrokerFiles {
            dir: data_dir.join("broker"),
        }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("mosquitto.conf")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("mosquitto.log")
    }
    pub fn device_crl(&self) -> PathBuf {
        self.dir.join("device-crl.pem")
    }
    pub fn claim_crl(&self) -> PathBuf {
        self.dir.join("claim-crl.pem")
    }
    pub fn device_ca(&self) -> PathBuf {
        self.dir.join("device-ca.pem")
    }
    pub fn claim_ca(&self) -> PathBuf {
        self.dir.join("claim-ca.pem")
    }
    pub fn service_ca(&self) -> PathBuf {
        self.dir.join("service-ca.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    pub fn device_acl(&self) -> PathBuf {
        self.dir.join("device-listener.acl")
    }
    pub fn provision_acl(&self) -> PathBuf {
        self.dir.join("provision-listener.acl")
    }
    pub fn service_acl(&self) -> PathBuf {
        self.dir.join("service-listener.acl")
    }
    pub fn persistence(&self) -> PathBuf {
        self.dir.join("data")
    }
    /// The cloud's own client certificate and key for the service listener.
    pub fn service_client_cert(&self) -> PathBuf {
        self.dir.join("svc-tenantd.pem")
    }
    pub fn service_client_key(&self) -> PathBuf {
        self.dir.join("svc-tenantd.key")
    }
    /// The CA that signed the broker's server certificate (what clients trust).
    pub fn server_ca(&self) -> PathBuf {
        self.dir.join("server-ca.pem")
    }
}

/// First line of the ACL files tenantd writes for its managed broker.
const MANAGED_HEADER: &str = "# Written by tenantd at every start; edits are lost.\n";

/// The ACL of the device listener: patterns only, so it never needs a per-device entry.
pub fn device_acl() -> String {
    format!("{MANAGED_HEADER}{}", device_acl_rules())
}

/// The device listener's rules, without a header.
pub fn device_acl_rules() -> String {
    format!(
        "# Devices (CN = device id): their own up/status topics, their own down topics.\n\
         pattern write {up}\n\
         pattern write {status}\n\
         pattern read {down}\n",
        up = acl::DEVICE_WRITE_UP,
        status = acl::DEVICE_WRITE_STATUS,
        down = acl::DEVICE_READ_DOWN,
    )
}

/// The ACL of the provisioning listener: a claim identity's own request/response pair.
pub fn provision_acl() -> String {
    format!("{MANAGED_HEADER}{}", provision_acl_rules())
}

/// The provisioning listener's rules, without a header.
pub fn provision_acl_rules() -> String {
    format!(
        "# Claim identities (CN = claim-<batch>): their own provisioning pair, nothing else.\n\
         pattern write {request}\n\
         pattern read {response}\n",
        request = acl::CLAIM_WRITE_REQUEST,
        response = acl::CLAIM_READ_RESPONSE,
    )
}

/// The ACL of the service listener: the cloud reads and writes every device and provisioning
/// topic; nobody else is accepted there.
pub fn service_acl() -> String {
    format!("{MANAGED_HEADER}{}", service_acl_rules())
}

/// The service listener's rules, without a header.
pub fn service_acl_rules() -> String {
    format!(
        "user {SERVICE_IDENTITY}\n\
         topic readwrite kiosk/v1/#\n\
         topic readwrite provision/v1/#\n"
    )
}

/// The user mosquitto runs as: tenantd's own, so it can read the keys tenantd wrote (0600) and
/// never switches to another account. Running tenantd as root is for development only.
fn run_as_user() -> String {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        tracing::warn!(
            "tenantd runs as root, and so does its broker: use an unprivileged user in production"
        );
    }
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// The mosquitto configuration.
pub fn config(settings: &BrokerSettings, files: &BrokerFiles) -> String {
    let p = |path: PathBuf| path.display().to_string();
    let listener = |addr: SocketAddr| format!("listener {} {}", addr.port(), addr.ip());
    format!(
        "# Written by tenantd at every start; edits are lost. See docs/operations.md.\n\
         user {user}\n\
         per_listener_settings true\n\
         persistence true\n\
         persistence_location {persistence}/\n\
         autosave_interval 30\n\
         max_queued_messages {queued}\n\
         max_queued_bytes {queued_bytes}\n\
         max_inflight_messages {inflight}\n\
         max_packet_size {packet}\n\
         persistent_client_expiration {expiry}d\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         connection_messages true\n\
         log_timestamp_format %Y-%m-%dT%H:%M:%S\n\
         \n\
         # Enrolled kiosks: device certificates only.\n\
         {device_listener}\n\
         protocol mqtt\n\
         allow_anonymous false\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         tls_version tlsv1.2\n\
         cafile {device_ca}\n\
         crlfile {device_crl}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         acl_file {device_acl}\n\
         \n\
         # Kiosks asking to be enrolled: claim certificates only.\n\
         {provision_listener}\n\
         protocol mqtt\n\
         allow_anonymous false\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         tls_version tlsv1.2\n\
         cafile {claim_ca}\n\
         crlfile {claim_crl}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         acl_file {provision_acl}\n\
         \n\
         # The cloud: service certificates only.\n\
         {service_listener}\n\
         protocol mqtt\n\
         allow_anonymous false\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         tls_version tlsv1.2\n\
         cafile {service_ca}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         acl_file {service_acl}\n",
        user = run_as_user(),
        persistence = p(files.persistence()),
        queued = settings.max_queued_messages,
        queued_bytes = settings.max_queued_bytes,
        inflight = settings.max_inflight_messages,
        packet = settings.max_packet_size,
        expiry = settings.persistent_client_expiration_days,
        device_listener = listener(settings.device_listen),
        device_ca = p(files.device_ca()),
        device_crl = p(files.device_crl()),
        provision_listener = listener(settings.provision_listen),
        claim_ca = p(files.claim_ca()),
        claim_crl = p(files.claim_crl()),
        provision_acl = p(files.provision_acl()),
        cert = p(files.server_cert()),
        key = p(files.server_key()),
        device_acl = p(files.device_acl()),
        service_listener = listener(settings.service_listen),
        service_ca = p(files.service_ca()),
        service_acl = p(files.service_acl()),
    )
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), BrokerError> {
    write_private(path, contents, mode).map_err(|e| match e {
        TlsError::Write { path, source } => BrokerError::Write { path, source },
        other => BrokerError::Tls(other),
    })
}

/// Writes every broker file: configuration, ACLs, CA bundles, the broker's server certificate
/// (from the local CA), the cloud's service client certificate, and the CRLs (`revoked` is
/// (serial hex, revoked at) per CA: device, then claim).
pub fn write_files(
    data_dir: &Path,
    settings: &BrokerSettings,
    pki: &FleetPki,
    revoked_device: &[(String, i64)],
    revoked_claim: &[(String, i64)],
    crl_number: u64,
) -> Result<BrokerFiles, BrokerError> {
    let files = BrokerFiles::new(data_dir);
    std::fs::create_dir_all(files.persistence()).map_err(|source| BrokerError::Write {
        path: files.persistence(),
        source,
    })?;
    let local = LocalCa::open(&data_dir.join("tls"))?;
    local.ensure_server_cert(
        &tls::server_names(&settings.public_names),
        &files.server_cert(),
        &files.server_key(),
        &files.dir.join("server.names"),
    )?;
    let server_ca =
        std::fs::read_to_string(local.pem_path()).map_err(|source| BrokerError::Write {
            path: local.pem_path().to_path_buf(),
            source,
        })?;
    write(&files.server_ca(), &server_ca, 0o644)?;
    write(&files.device_ca(), pki.device.pem(), 0o644)?;
    write(&files.claim_ca(), pki.claim.pem(), 0o644)?;
    write(&files.service_ca(), pki.service.pem(), 0o644)?;
    write_crl(&files, pki, revoked_device, revoked_claim, crl_number)?;
    let service_expires_soon = std::fs::read_to_string(files.service_client_cert())
        .ok()
        .and_then(|pem| rcgen::CertificateParams::from_ca_cert_pem(&pem).ok())
        .is_none_or(|p| p.not_after < time::OffsetDateTime::now_utc() + time::Duration::days(30));
    if service_expires_soon || !files.service_client_key().exists() {
        let (issued, key) = pki
            .service
            .issue_with_key(SERVICE_IDENTITY, super::pki::SERVICE_CERT_DAYS)?;
        write(&files.service_client_key(), &key, 0o600)?;
        write(&files.service_client_cert(), &issued.certificate_pem, 0o644)?;
    }
    write(&files.device_acl(), &device_acl(), 0o644)?;
    write(&files.provision_acl(), &provision_acl(), 0o644)?;
    write(&files.service_acl(), &service_acl(), 0o644)?;
    write(&files.config(), &config(settings, &files), 0o644)?;
    Ok(files)
}

/// Re-signs both CRLs (device and claim CA) into the broker's CRL files.
pub fn write_crl(
    files: &BrokerFiles,
    pki: &FleetPki,
    revoked_device: &[(String, i64)],
    revoked_claim: &[(String, i64)],
    crl_number: u64,
) -> Result<(), BrokerError> {
    write(
        &files.device_crl(),
        &pki.device.crl(revoked_device, crl_number)?,
        0o644,
    )?;
    write(
        &files.claim_crl(),
        &pki.claim.crl(revoked_claim, crl_number)?,
        0o644,
    )
}

/// A supervised mosquitto.
#[derive(Debug)]
pub struct ManagedBroker {
    restart: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Incremented each time mosquitto is (re)started and listening.
    pub starts: watch::Receiver<u64>,
}

async fn spawn(settings: &BrokerSettings, files: &BrokerFiles) -> Result<Child, BrokerError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.log())
        .map_err(|source| BrokerError::Write {
            path: files.log(),
            source,
        })?;
    let log_err = log.try_clone().map_err(|source| BrokerError::Write {
        path: files.log(),
        source,
    })?;
    let mut child = Command::new(&settings.mosquitto)
        .arg("-c")
        .arg(files.config())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| BrokerError::Spawn {
            program: settings.mosquitto.clone(),
            source,
        })?;
    // Ready when every listener accepts TCP connections.
    const READY_WITHIN: Duration = Duration::from_secs(10);
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    for addr in [
        settings.device_listen,
        settings.provision_listen,
        settings.service_listen,
    ] {
        let dial = if addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        loop {
            if tokio::net::TcpStream::connect(dial).await.is_ok() {
                break;
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || tokio::time::Instant::now() > deadline {
                let _ = child.start_kill();
                return Err(BrokerError::NotListening {
                    addr,
                    seconds: if exited { 0 } else { READY_WITHIN.as_secs() },
                    log: files.log(),
                    tail: log_tail(&files.log(), 12),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(child)
}

/// The last `n` lines of a log file.
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Asks mosquitto to save its state and exit (SIGTERM), then waits; kills it after 10 s.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

impl ManagedBroker {
    /// Starts mosquitto and a task that keeps it running. Returns once it listens.
    pub async fn start(
        settings: BrokerSettings,
        files: BrokerFiles,
    ) -> Result<ManagedBroker, BrokerError> {
        let first = spawn(&settings, &files).await?;
        tracing::info!(device = %settings.device_listen, service = %settings.service_listen, "broker started");
        let restart = Arc::new(Notify::new());
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let (starts_tx, starts_rx) = watch::channel(1u64);
        let restart_rx = restart.clone();
        let task = tokio::spawn(async move {
            let mut child = Some(first);
            let mut backoff = Duration::from_millis(500);
            loop {
                let Some(running) = child.as_mut() else {
                    // Not running: try again after the back-off, unless told to stop.
                    tokio::select! {
                        _ = stop_rx.changed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    match spawn(&settings, &files).await {
                        Ok(c) => {
                            child = Some(c);
                            backoff = Duration::from_millis(500);
                            starts_tx.send_modify(|n| *n += 1);
                            tracing::info!("broker restarted");
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "broker did not start; retrying");
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                        }
                    }
                    continue;
                };
                tokio::select! {
                    status = running.wait() => {
                        tracing::warn!(?status, "broker exited; restarting");
                        child = None;
                    }
                    _ = restart_rx.notified() => {
                        terminate(running).await;
                        child = None;
                        backoff = Duration::ZERO;
                    }
                    _ = stop_rx.changed() => {
                        terminate(running).await;
                        return;
                    }
                }
            }
        });
        Ok(ManagedBroker {
            restart,
            stop: stop_tx,
            task: std::sync::Mutex::new(Some(task)),
            starts: starts_rx,
        })
    }

    /// Restarts mosquitto (to load a new CRL); sessions and queued messages persist.
    pub fn restart(&self) {
        self.restart.notify_one();
    }

    /// A handle that asks for a restart, for tasks that outlive a borrow of the broker.
    pub fn restart_handle(&self) -> Arc<Notify> {
        self.restart.clone()
    }

    /// Stops mosquitto (saving its state) and the supervisor; later calls do nothing.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_patterns_confine_identities_to_their_own_topics() {
        let acl = device_acl();
        assert!(acl.contains("pattern write kiosk/v1/%u/up/#"));
        assert!(!acl.contains("provision/"), "devices cannot provision");
        let claims = provision_acl();
        assert!(!claims.contains("kiosk/"), "claims can only provision");
        assert!(acl.contains("pattern read kiosk/v1/%u/down/#"));
        let rules: Vec<&str> = acl.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(
            rules.iter().all(|l| l.starts_with("pattern ")),
            "no fixed topics or users on the device listener: {rules:?}"
        );
        assert!(
            rules.iter().all(|l| l.contains("%u") && !l.contains('+')),
            "every rule is bound to the identity: {rules:?}"
        );
        let svc = service_acl();
        assert!(svc.starts_with("# Written"));
        assert!(svc.contains("user svc-tenantd"));
    }

    #[test]
    fn config_names_both_listeners_with_their_own_cas() {
        let files = BrokerFiles::new(Path::new("/data"));
        let c = config(&BrokerSettings::default(), &files);
        assert!(c.contains("listener 8883 0.0.0.0"));
        assert!(c.contains("listener 8884 127.0.0.1"));
        assert!(c.contains("listener 8885 0.0.0.0"));
        assert!(c.contains("per_listener_settings true"));
        assert_eq!(c.matches("require_certificate true").count(), 3);
        assert_eq!(c.matches("tls_version tlsv1.2").count(), 3);
        assert_eq!(c.matches("allow_anonymous false").count(), 3);
        for ca in ["device-ca", "claim-ca", "service-ca"] {
            assert_eq!(
                c.matches(&format!("cafile /data/broker/{ca}.pem")).count(),
                1,
                "{ca}"
            );
        }
        assert!(c.contains("crlfile /data/broker/device-crl.pem"));
        assert!(c.contains("crlfile /data/broker/claim-crl.pem"));
    }
}
