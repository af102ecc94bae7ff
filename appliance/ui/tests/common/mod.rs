//! The kiosk-ui program on a private D-Bus with a scripted kiosk-sync and kiosk-media served by
//! the test itself (the `org.kioskcall.Sync1` and `org.kioskcall.Media1` contracts of
//! kiosk-bus), and a headless Chromium driven through chromedriver with touch actions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiosk_bus::sync::{JourneyOutcome, SyncStatus};
use kiosk_bus::testing::PrivateBus;
use kiosk_bus::KioskError;
use serde_json::{json, Value};
use zbus::object_server::SignalEmitter;

/// Waits until `f` holds, or panics with `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return;
        }
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------- the scripted services ----------

/// What the scripted kiosk-sync was asked, for the test to check.
#[derive(Debug, Default, Clone)]
pub struct SyncLog {
    pub phones: Vec<String>,
    pub languages: Vec<String>,
    pub codes: Vec<String>,
    pub resends: u32,
    pub places: Vec<(String, String)>,
    pub callbacks: Vec<String>,
    pub end_calls: Vec<(String, String)>,
    pub end_journeys: u32,
    pub events: Vec<(String, String)>,
}

/// The scripted kiosk-sync's state.
#[derive(Debug)]
pub struct SyncState {
    pub state: String,
    pub activation_code: String,
    pub connected: bool,
    pub config: String,
    pub config_version: u64,
    /// The right code.
    pub code: String,
    pub tries_left: u32,
    /// Answers to the next RequestOtp/ResendOtp before the default `code_sent`.
    pub otp_answers: VecDeque<JourneyOutcome>,
    pub requests: u32,
    pub log: SyncLog,
}

#[derive(Debug, Clone)]
pub struct FakeSync(pub Arc<Mutex<SyncState>>);

fn code_sent() -> JourneyOutcome {
    JourneyOutcome::CodeSent {
        masked_phone: "+33•••••••78".into(),
        resend_after_s: 30,
        expires_in_s: 300,
    }
}

#[zbus::interface(name = "org.kioskcall.Sync1")]
impl FakeSync {
    async fn status(&self) -> SyncStatus {
        let s = self.0.lock().unwrap();
        SyncStatus {
            state: s.state.clone(),
            device_id: "kiosk-test".into(),
            activation_code: s.activation_code.clone(),
            connected: s.connected,
            config_version: s.config_version,
            outbox_depth: 0,
            outbox_records: 0,
            certificate_not_after: 0,
            firmware: "test".into(),
            slot: "a".into(),
            last_error: String::new(),
        }
    }

    async fn desired_config(&self) -> String {
        self.0.lock().unwrap().config.clone()
    }

    async fn report_event(&self, kind: String, body: String) -> String {
        self.0.lock().unwrap().log.events.push((kind, body));
        "m-000000000001".into()
    }

    async fn request_otp(&self, phone: String, language: String) -> String {
        let mut s = self.0.lock().unwrap();
        s.log.phones.push(phone);
        s.log.languages.push(language);
        s.tries_left = 5;
        let a = s.otp_answers.pop_front().unwrap_or_else(code_sent);
        serde_json::to_string(&a).unwrap()
    }

    async fn resend_otp(&self) -> String {
        let mut s = self.0.lock().unwrap();
        s.log.resends += 1;
        let a = s.otp_answers.pop_front().unwrap_or_else(code_sent);
        serde_json::to_string(&a).unwrap()
    }

    async fn verify_otp(&self, code: String) -> String {
        let mut s = self.0.lock().unwrap();
        s.log.codes.push(code.clone());
        let a = if code == s.code {
            JourneyOutcome::Verified {
                masked_phone: "+33•••••••78".into(),
                expires_in_s: 600,
            }
        } else {
            s.tries_left = s.tries_left.saturating_sub(1);
            JourneyOutcome::WrongCode {
                tries_left: s.tries_left,
            }
        };
        serde_json::to_string(&a).unwrap()
    }

    async fn place_customer_call(
        &self,
        language: String,
        consent: String,
    ) -> Result<String, KioskError> {
        let mut s = self.0.lock().unwrap();
        s.log.places.push((language, consent));
        s.requests += 1;
        Ok(format!("req-{}", s.requests))
    }

    async fn request_callback(&self, call: String) -> String {
        self.0.lock().unwrap().log.callbacks.push(call);
        serde_json::to_string(&JourneyOutcome::CallbackBooked {
            masked_phone: "+33•••••••78".into(),
        })
        .unwrap()
    }

    async fn end_call(&self, call: String, reason: String) {
        self.0.lock().unwrap().log.end_calls.push((call, reason));
    }

    async fn end_journey(&self) {
        self.0.lock().unwrap().log.end_journeys += 1;
    }

    #[zbus(signal)]
    pub async fn queue_update(
        e: &SignalEmitter<'_>,
        call: &str,
        position: u32,
        estimated_wait_s: u32,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn callback_offered(e: &SignalEmitter<'_>, call: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn call_queued(e: &SignalEmitter<'_>, request: &str, call: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn call_accepted(
        e: &SignalEmitter<'_>,
        call: &str,
        agent: &str,
        ice_servers: &str,
        expires_at_ms: i64,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn call_ended(
        e: &SignalEmitter<'_>,
        call: &str,
        request: &str,
        reason: &str,
        by: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn config_changed(
        e: &SignalEmitter<'_>,
        version: u64,
        config: &str,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    async fn state(&self) -> String {
        self.0.lock().unwrap().state.clone()
    }

    #[zbus(property)]
    async fn activation_code(&self) -> String {
        self.0.lock().unwrap().activation_code.clone()
    }

    #[zbus(property)]
    async fn connected(&self) -> bool {
        self.0.lock().unwrap().connected
    }

    #[zbus(property)]
    async fn config_version(&self) -> u64 {
        self.0.lock().unwrap().config_version
    }

    #[zbus(property)]
    async fn call_phase(&self) -> String {
        "idle".into()
    }

    #[zbus(property)]
    async fn call_id(&self) -> String {
        String::new()
    }
}

/// The scripted kiosk-media.
#[derive(Debug, Clone, Default)]
pub struct FakeMedia(pub Arc<Mutex<Vec<bool>>>);

#[zbus::interface(name = "org.kioskcall.Media1")]
impl FakeMedia {
    async fn set_microphone_muted(
        &self,
        muted: bool,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) {
        self.0.lock().unwrap().push(muted);
        let _ = self.microphone_muted_changed(&emitter).await;
    }

    #[zbus(property)]
    async fn microphone_muted(&self) -> bool {
        self.0.lock().unwrap().last().copied().unwrap_or(false)
    }
}

// ---------- configs ----------

/// What kind of day the site's hours make now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hours {
    /// Open every day, all day.
    Always,
    /// Closed today and tomorrow (holidays), open 09:00–17:00 on other days.
    ClosedTwoDays,
}

/// A desired config the way kiosk-sync hands it over.
pub fn config(version: u64, hours: Hours, recording: bool, idle_s: u32) -> String {
    let day = match hours {
        Hours::Always => json!([{"open": "00:00", "close": "24:00"}]),
        Hours::ClosedTwoDays => json!([{"open": "09:00", "close": "17:00"}]),
    };
    let tz = "Europe/Paris";
    let holidays = match hours {
        Hours::Always => json!([]),
        Hours::ClosedTwoDays => {
            let today = jiff::Timestamp::now()
                .to_zoned(jiff::tz::TimeZone::get(tz).unwrap())
                .date();
            let tomorrow = today.tomorrow().unwrap();
            json!([
                {"date": today.to_string(), "name": "Inventory"},
                {"date": tomorrow.to_string(), "name": "Inventory"}
            ])
        }
    };
    json!({
        "v": 1, "version": version, "org": "demo",
        "site": {"id": 1, "name": "Main Street", "timezone": tz,
            "business_hours": {"mon": day, "tue": day, "wed": day, "thu": day, "fri": day,
                "sat": day, "sun": day},
            "holidays": holidays},
        "locale": {"default": "en", "available": ["en", "fr", "ar"]},
        "otp": {"code_length": 6, "resend_after_s": 30},
        "recording": {"mode": if recording { "on_with_consent" } else { "off" },
            "consent_notice_version": 1},
        "idle": {"idle_s": idle_s, "warning_s": 20},
        "telemetry_interval_s": 30, "board_profile": "qemu"
    })
    .to_string()
}

// ---------- the kiosk ----------

pub fn boards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hardware/boards")
}

/// A private bus, the scripted services and the kiosk-ui program.
pub struct Kiosk {
    pub bus: PrivateBus,
    pub services: zbus::Connection,
    pub sync: Arc<Mutex<SyncState>>,
    pub media: Arc<Mutex<Vec<bool>>>,
    pub child: Option<Child>,
    pub url: String,
    pub port: u16,
    pub log: PathBuf,
    pub board: String,
    _dir: tempfile::TempDir,
}

impl Kiosk {
    /// Starts everything with `config` in force; waits until the page answers.
    pub async fn start(board: &str, config: String) -> Kiosk {
        let bus = PrivateBus::start().expect("dbus-daemon (the dbus-daemon package)");
        let sync = Arc::new(Mutex::new(SyncState {
            state: "enrolled".into(),
            activation_code: String::new(),
            connected: true,
            config,
            config_version: 1,
            code: "123456".into(),
            tries_left: 5,
            otp_answers: VecDeque::new(),
            requests: 0,
            log: SyncLog::default(),
        }));
        let media = Arc::new(Mutex::new(Vec::new()));
        let services = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .name(kiosk_bus::sync::NAME)
            .unwrap()
            .name(kiosk_bus::media::NAME)
            .unwrap()
            .serve_at(kiosk_bus::sync::PATH, FakeSync(sync.clone()))
            .unwrap()
            .serve_at(kiosk_bus::media::PATH, FakeMedia(media.clone()))
            .unwrap()
            .build()
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("ui.toml");
        std::fs::write(
            &conf,
            format!(
                "version = 1\nlisten = \"127.0.0.1:{port}\"\nboard = \"{board}\"\nboards_dir = \"{}\"\ndefault_language = \"en\"\n",
                boards_dir().display()
            ),
        )
        .unwrap();
        let log = dir.path().join("kiosk-ui.log");
        let mut kiosk = Kiosk {
            bus,
            services,
            sync,
            media,
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            port,
            log,
            board: board.to_string(),
            _dir: dir,
        };
        kiosk.spawn(&conf);
        kiosk.wait_ready().await;
        kiosk
    }

    fn spawn(&mut self, conf: &Path) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kiosk-ui"))
            .arg("--config")
            .arg(conf)
            .arg("--bus")
            .arg(&self.bus.address)
            .env("RUST_LOG", "kiosk_ui=debug,info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub async fn wait_ready(&self) {
        let url = format!("{}/api/view", self.url);
        eventually(LONG, "kiosk-ui to answer", || {
            let url = url.clone();
            async move {
                match reqwest::get(&url).await {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or_default();
                        v["screen"] != "unavailable"
                    }
                    _ => false,
                }
            }
        })
        .await;
    }

    pub async fn view(&self) -> Value {
        reqwest::get(format!("{}/api/view", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn screen(&self) -> String {
        self.view().await["screen"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn wait_screen(&self, screen: &str) {
        let start = Instant::now();
        loop {
            let last = self.screen().await;
            if last == screen {
                return;
            }
            assert!(
                start.elapsed() < LONG,
                "kiosk-ui shows {last:?}, not {screen:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_of_sync(&self) -> SyncLog {
        self.sync.lock().unwrap().log.clone()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn sync_iface(&self) -> zbus::object_server::InterfaceRef<FakeSync> {
        self.services
            .object_server()
            .interface::<_, FakeSync>(kiosk_bus::sync::PATH)
            .await
            .unwrap()
    }

    /// Changes what kiosk-sync says about the kiosk, and says it on the bus.
    pub async fn set_link(&self, state: &str, code: &str, connected: bool) {
        {
            let mut s = self.sync.lock().unwrap();
            s.state = state.into();
            s.activation_code = code.into();
            s.connected = connected;
        }
        let i = self.sync_iface().await;
        let e = i.signal_emitter();
        let svc = i.get().await;
        svc.state_changed(e).await.unwrap();
        svc.connected_changed(e).await.unwrap();
    }

    /// A new config in force.
    pub async fn set_config(&self, config: String) {
        let version = {
            let mut s = self.sync.lock().unwrap();
            s.config_version += 1;
            s.config = config.clone();
            s.config_version
        };
        let i = self.sync_iface().await;
        FakeSync::config_changed(i.signal_emitter(), version, &config)
            .await
            .unwrap();
    }

    pub async fn call_queued(&self, request: &str, call: &str) {
        let i = self.sync_iface().await;
        FakeSync::call_queued(i.signal_emitter(), request, call)
            .await
            .unwrap();
    }

    pub async fn queue_update(&self, call: &str, position: u32, wait_s: u32) {
        let i = self.sync_iface().await;
        FakeSync::queue_update(i.signal_emitter(), call, position, wait_s)
            .await
            .unwrap();
    }

    pub async fn call_accepted(&self, call: &str) {
        let i = self.sync_iface().await;
        FakeSync::call_accepted(i.signal_emitter(), call, "agent-1", "[]", 0)
            .await
            .unwrap();
    }

    pub async fn call_ended(&self, call: &str, request: &str, reason: &str) {
        let i = self.sync_iface().await;
        FakeSync::call_ended(i.signal_emitter(), call, request, reason, "cloud")
            .await
            .unwrap();
    }

    pub async fn callback_offered(&self, call: &str) {
        let i = self.sync_iface().await;
        FakeSync::callback_offered(i.signal_emitter(), call)
            .await
            .unwrap();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let start = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            assert!(start.elapsed() < LONG, "kiosk-ui did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Kiosk {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

mod browser;
#[allow(unused_imports)]
pub use browser::*;
