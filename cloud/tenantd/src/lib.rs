//! tenantd: the Kioskcall tenant service.
//!
//! Why it exists: every organization (a retailer with shops) gets its users, roles, sites,
//! settings and audit log here, and its agents and admins work in the web console it serves.
//! The device fleet (MQTT), live calls (the call registry with each organization's queue
//! and routing rules, the agents' WebSocket, the kiosks' signalling, call records and
//! callbacks) and the customer journey's one-time codes, SMS and customer tokens
//! (`up/journey`, [`otp`]) run in the same process.
//!
//! Main types: [`store::SqliteStore`] (all persistence), [`tenancy::authorize`] (the one access
//! decision), [`api::route_table`] (every route with its rule), [`console`] (embedded web UI),
//! [`tls`] (HTTPS and the local CA), [`calls::CallHub`] (live calls and signalling),
//! [`otp::Journeys`] (codes, SMS gateways, customers, callbacks), and [`Server`], which ties
//! them together.
//!
//! Threads and tasks: a multi-threaded tokio runtime serves HTTPS (axum over rustls); SQLite
//! and argon2 work run on tokio's blocking pool, argon2 bounded by a semaphore, so request
//! tasks never block. SMS go out from tasks of their own, never from the fleet link's worker.
//! [`Server::shutdown`] stops accepting and lets requests in flight finish.
//!
//! The fleet's broker is configuration ([`fleet::FleetBroker`]): tenantd runs a managed
//! mosquitto, or connects to an operator's MQTT 5 broker (EMQX or another) at a `mqtts://` URL,
//! or runs without one.
//!
//! Limits today: one SQLite writer (see [`store`]); throttling and the hash semaphore are per
//! process, so several replicas each throttle on their own.

pub mod api;
pub mod audit;
pub mod auth;
pub mod calls;
pub mod console;
pub mod error;
pub mod fleet;
pub mod kit;
pub mod otp;
pub mod sites;
pub mod store;
pub mod tenancy;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::Router;

use auth::password::{check_policy, HashCost, Password, PasswordHasher};
use auth::throttle::{LoginThrottle, ThrottlePolicy};
use auth::tokens::SessionPolicy;
use store::{By, NewUser, SqliteStore, StoreError, User};
use tenancy::{OrgScope, Role};
use tls::TlsSource;

/// Largest request body accepted (bytes).
pub const MAX_BODY: usize = 256 * 1024;

/// What can stop tenantd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Hash(#[from] auth::password::HashError),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the store already has a super admin; use `tenantd reset-password` to regain access")]
    AlreadyBootstrapped,
    #[error("no tenantd store in {0}: check --data, or run `tenantd bootstrap` first")]
    NoStore(PathBuf),
    #[error("no user with the email {0}")]
    NoSuchUser(String),
    #[error("start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("stop the server: {0}")]
    Shutdown(std::io::Error),
    #[error("fleet: {0}")]
    Fleet(#[from] fleet::FleetError),
    #[error(transparent)]
    External(#[from] fleet::external::ExternalError),
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },
    #[error("one-time codes: {0}")]
    Otp(#[from] otp::OtpError),
}

/// Everything `tenantd serve` needs, validated before any socket opens.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: TlsSource,
    pub hash_cost: HashCost,
    pub sessions: SessionPolicy,
    pub throttle: ThrottlePolicy,
    /// The fleet's broker (managed or external) and link; `None` serves the API and console
    /// only.
    pub fleet: Option<fleet::FleetBroker>,
    /// Where brokers fetch the CRLs, named in the device and claim certificates issued from now
    /// on; `None` names no distribution point.
    pub crl_base_url: Option<fleet::urls::CrlBaseUrl>,
    /// Live calls: the agents' grace after a disconnection, the registry's clock, the
    /// sessions' re-check on open sockets, and a queue time-out replacing the organizations'
    /// (tests).
    pub calls: calls::CallSettings,
    /// One-time codes: lifetime, tries, resend delay, the per-number, per-kiosk and
    /// per-organization caps, the customer token's and callback's windows (see
    /// [`otp::rules::Limits`]), the prune's period.
    pub otp: otp::OtpSettings,
    /// The platform's SMS gateways in fail-over order, for organizations that set none
    /// (default: `[log]`, which writes `DATA/sms/outbox.jsonl`).
    pub sms_gateways: Vec<otp::sms::GatewayConfig>,
}

impl ServeConfig {
    /// Defaults for a data dir and address.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        ServeConfig {
            data_dir: data_dir.into(),
            listen,
            tls: TlsSource::LocalCa {
                extra_names: Vec::new(),
            },
            hash_cost: HashCost::default(),
            sessions: SessionPolicy::default(),
            throttle: ThrottlePolicy::default(),
            fleet: None,
            crl_base_url: None,
            calls: calls::CallSettings::default(),
            otp: otp::OtpSettings::default(),
            sms_gateways: otp::default_gateways(),
        }
    }
}

/// Opens the store of an existing data dir; a mistyped path is an error, not a new store.
pub fn open_existing(dir: &Path) -> Result<SqliteStore, Error> {
    if !dir.join(store::DB_FILE).is_file() {
        return Err(Error::NoStore(dir.to_path_buf()));
    }
    Ok(SqliteStore::open(dir)?)
}

/// Creates the data dir (mode 0700) and opens the store in it.
pub fn open_data_dir(dir: &Path) -> Result<SqliteStore, Error> {
    let err = |source| Error::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(SqliteStore::open(dir)?)
}

/// A running HTTPS server.
#[derive(Debug)]
pub struct Server {
    /// The address it listens on (the real port when configured with port 0).
    pub addr: SocketAddr,
    /// The local CA clients should trust, when tenantd made its own certificate.
    pub ca_file: Option<PathBuf>,
    /// The fleet, when configured.
    pub fleet: Option<Arc<fleet::Fleet>>,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_calls: tokio::sync::watch::Sender<bool>,
}

impl Server {
    /// Opens the store, loads or makes the certificate, and starts serving HTTPS.
    pub async fn start(config: ServeConfig) -> Result<Server, Error> {
        let store = open_existing(&config.data_dir)?;
        let pki = Arc::new(
            fleet::pki::FleetPki::open(&config.data_dir)?
                .with_crl_base(config.crl_base_url.as_ref()),
        );
        let crls = Arc::new(fleet::crl::CrlPublisher::open(
            &config.data_dir,
            store.clone(),
            pki.clone(),
        )?);
        let calls = calls::CallHub::new(store.clone(), config.calls.clone());
        let journeys = otp::Journeys::open(
            &config.data_dir,
            store.clone(),
            config.otp.clone(),
            config.sms_gateways.clone(),
        )?;
        let interrupted = calls.end_interrupted()?;
        if !interrupted.is_empty() {
            tracing::warn!(
                interrupted = interrupted.len(),
                "calls live at the last stop were ended"
            );
        }
        let fleet = match &config.fleet {
            Some(broker) => Some(Arc::new(
                fleet::Fleet::start(
                    &config.data_dir,
                    store.clone(),
                    pki.clone(),
                    crls.clone(),
                    broker.clone(),
                    calls.clone(),
                    journeys.clone(),
                )
                .await?,
            )),
            None => None,
        };
        if let Some(f) = &fleet {
            calls.set_link(f.link.clone());
            journeys.set_link(f.link.clone());
            calls.deliver(interrupted).await;
        }
        let (stop_calls, stop_calls_rx) = tokio::sync::watch::channel(false);
        journeys.spawn_pruner(stop_calls_rx.clone());
        calls.spawn_ticker(stop_calls_rx);
        let tls = tls::load(&config.data_dir, &config.tls)?;
        let hasher = PasswordHasher::new(config.hash_cost)?;
        let hashing_slots = std::thread::available_parallelism().map_or(2, |n| n.get() * 2);
        let state = api::AppState {
            store,
            hasher: Arc::new(hasher),
            hashing: Arc::new(tokio::sync::Semaphore::new(hashing_slots)),
            throttle: Arc::new(Mutex::new(LoginThrottle::new(config.throttle.clone()))),
            sessions: config.sessions.clone(),
            started: Instant::now(),
            fleet: fleet.clone(),
            pki,
            crls,
            data_dir: config.data_dir.clone(),
            calls,
            journeys,
        };
        let app = app(state);
        let handle = axum_server::Handle::new();
        let rustls = axum_server::tls_rustls::RustlsConfig::from_config(tls.config);
        let listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| Error::Listen {
                addr: config.listen,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| Error::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
        let server = axum_server::from_tcp_rustls(listener, rustls).handle(handle.clone());
        let task = tokio::spawn(async move {
            server
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
        });
        tracing::info!(%addr, "serving HTTPS");
        Ok(Server {
            addr,
            ca_file: tls.ca_file,
            fleet,
            handle,
            task,
            stop_calls,
        })
    }

    /// Stops accepting, gives requests in flight up to 10 s, and waits for the server to end.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop_calls.send(true);
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        let served = self
            .task
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Some(fleet) = &self.fleet {
            fleet.stop().await;
        }
        served
    }
}

/// The whole HTTP application: API, console, security headers, body limit.
pub fn app(state: api::AppState) -> Router {
    Router::new()
        .merge(api::router(state.clone()))
        .merge(console::router())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(api::security_headers))
        .route_layer(axum::middleware::from_fn(api::access_log))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops gracefully.
pub async fn run(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let server = Server::start(config).await?;
    if let Some(ca) = &server.ca_file {
        println!(
            "tenantd: HTTPS on https://{} with a local CA; clients trust {}",
            server.addr,
            ca.display()
        );
    }
    if let Some(f) = &server.fleet {
        if let Some(s) = f.managed_settings() {
            println!(
                "tenantd: MQTT for kiosks on {} (enrolled) and {} (provisioning); cloud link on {}",
                s.device_listen, s.provision_listen, s.service_listen
            );
        }
        if let Some(e) = f.external() {
            println!(
                "tenantd: external broker {}; cloud link as {}",
                e.url, e.client_id
            );
        }
    }
    shutdown.await;
    tracing::info!("shutting down");
    server.shutdown().await.map_err(Error::Shutdown)
}

/// Writes what an external broker's operator needs into `out`: the CA certificates, the
/// current CRLs, a new service certificate and key for tenantd, and the ACLs. Never a CA key.
pub fn export_broker_files(data_dir: &Path, out: &Path) -> Result<fleet::export::Exported, Error> {
    let store = open_existing(data_dir)?;
    let pki = fleet::pki::FleetPki::open(data_dir)?;
    Ok(fleet::export::export_broker_files(out, &store, &pki)?)
}

/// Creates the first super admin. With no password given, one is generated and returned.
pub fn bootstrap(
    data_dir: &Path,
    email: &str,
    name: &str,
    password: Option<Password>,
    cost: HashCost,
) -> Result<(User, Option<Password>), Error> {
    let email = api::validate_email(email).map_err(|m| Error::Invalid {
        what: "email",
        message: m,
    })?;
    let name = api::validate_name(name).map_err(|m| Error::Invalid {
        what: "name",
        message: m,
    })?;
    let (password, generated) = match password {
        Some(p) => {
            check_policy(&p, Some(&email)).map_err(|v| Error::Invalid {
                what: "password",
                message: v.to_string(),
            })?;
            (p, false)
        }
        None => (Password::generate(), true),
    };
    // Only valid input creates the data dir and the store.
    let store = open_data_dir(data_dir)?;
    if store.blocking(|db| db.super_admin_exists())? {
        return Err(Error::AlreadyBootstrapped);
    }
    let hash = PasswordHasher::new(cost)?.hash(&password)?;
    let by = By::new("tenantd bootstrap");
    let user = store.blocking(|db| db.create_super_admin(&by, &email, &name, &hash))?;
    Ok((user, generated.then_some(password)))
}

/// The demo organization's sign-ins, printed by `tenantd demo`.
#[derive(Debug)]
pub struct DemoLogins {
    pub org_slug: String,
    pub admin_email: String,
    pub admin_password: Password,
    pub agent_email: String,
    pub agent_password: Password,
}

/// Creates (or refreshes) the demo organization "demo" with an admin, an agent and a site,
/// giving both users new generated passwords on every call.
pub fn ensure_demo(data_dir: &Path, cost: HashCost) -> Result<DemoLogins, Error> {
    const SLUG: &str = "demo";
    const ADMIN: &str = "admin@demo.example";
    const AGENT: &str = "agent@demo.example";
    let store = open_existing(data_dir)?;
    let hasher = PasswordHasher::new(cost)?;
    let admin_password = Password::generate();
    let agent_password = Password::generate();
    let admin_hash = hasher.hash(&admin_password)?;
    let agent_hash = hasher.hash(&agent_password)?;
    let by = By::new("tenantd demo");
    store.blocking(|db| {
        let org = match db.org_ref(SLUG)? {
            Some(org) => org,
            None => {
                let admin = NewUser {
                    email: ADMIN.into(),
                    name: "Demo Admin".into(),
                    role: Role::OrgAdmin,
                    password_hash: admin_hash.clone(),
                    must_change_password: false,
                };
                db.create_org(&by, SLUG, "Demo Shop", &admin)?;
                db.org_ref(SLUG)?.ok_or(StoreError::NotFound)?
            }
        };
        let org_id = org.id;
        let scope = OrgScope::trusted_internal(org);
        // The demo's emails must belong to the demo organization: never reset anyone else.
        for email in [ADMIN, AGENT] {
            if let Some(other) = db.login_record(email)? {
                if other.org_id != Some(org_id) {
                    return Err(StoreError::Conflict(format!(
                        "{email} belongs to another organization; the demo will not touch it"
                    )));
                }
            }
        }
        if db.login_record(AGENT)?.is_none() {
            let agent = NewUser {
                email: AGENT.into(),
                name: "Demo Agent".into(),
                role: Role::Agent,
                password_hash: agent_hash.clone(),
                must_change_password: false,
            };
            db.create_user(&scope, &by, &agent)?;
        }
        if db.list_sites(&scope)?.is_empty() {
            let spec = demo_site()
                .validate()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            db.save_site(&scope, &by, None, &spec)?;
        }
        db.reset_password(&by, ADMIN, &admin_hash, false)?;
        db.reset_password(&by, AGENT, &agent_hash, false)?;
        Ok(())
    })?;
    Ok(DemoLogins {
        org_slug: SLUG.into(),
        admin_email: ADMIN.into(),
        admin_password,
        agent_email: AGENT.into(),
        agent_password,
    })
}

/// The demo shop is open around the clock (so the journey can be tried at any hour) except on
/// its one holiday; change its hours in the console to see the kiosk's closed screen.
fn demo_site() -> sites::SiteInput {
    let day = || {
        vec![sites::Interval {
            open: "00:00".into(),
            close: "24:00".into(),
        }]
    };
    sites::SiteInput {
        name: "Main Street".into(),
        timezone: "Europe/Paris".into(),
        business_hours: sites::WeeklyHours {
            mon: day(),
            tue: day(),
            wed: day(),
            thu: day(),
            fri: day(),
            sat: day(),
            sun: day(),
        },
        holidays: vec![sites::Holiday {
            date: "2026-12-25".into(),
            name: "Christmas Day".into(),
        }],
    }
}

/// Sets a user's password from the operator's command line; every session of the user ends.
pub fn reset_password(data_dir: &Path, email: &str, cost: HashCost) -> Result<Password, Error> {
    let store = open_existing(data_dir)?;
    let password = Password::generate();
    let hash = PasswordHasher::new(cost)?.hash(&password)?;
    let by = By::new("tenantd reset-password");
    store
        .blocking(|db| db.reset_password(&by, email, &hash, true))
        .map_err(|e| match e {
            StoreError::NotFound => Error::NoSuchUser(email.to_string()),
            other => Error::Store(other),
        })?;
    Ok(password)
}
