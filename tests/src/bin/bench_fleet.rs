//! `bench-fleet`: N simulated kiosks (real TLS, real MQTT 5, the real protocol crate, each with
//! its own key and CSR) against a tenantd process and its managed mosquitto on this machine.
//!
//! Phases, each measured:
//! 1. enrollment: CSR (over a few claim connections) → certificate → connected with it;
//! 2. hold: every device connected, sending telemetry;
//! 3. heartbeats: telemetry throughput for a window, checked against what tenantd stored;
//! 4. config delivery: desired configs set through the API for a sample of devices, latency
//!    until each device receives it;
//! 5. reconnect storm: mosquitto restarted, time until every device is connected again
//!    (devices back off with full jitter from 1 s to a 60 s cap, as kiosk-sync does).
//!
//! tenantd's and mosquitto's CPU time and peak memory come from /proc. Figures are printed and
//! written as JSON. Usage: `bench-fleet [--devices N] [--out FILE]` with `tenantd` on PATH or in
//! `TENANTD_BIN`; `scripts/bench-fleet` builds and runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiosk_protocol::provision::{Hardware, ProvisionRequest, ProvisionResponse, ProvisionResult};
use kiosk_protocol::telemetry::{CallState, Telemetry};
use kiosk_protocol::{DeviceId, MessageId, UpHeader, Version};
use kiosk_sync::backoff::Backoff;
use kiosk_sync::link::client_tls;
use kioskcall_e2e::free_ports;
use reqwest::Method;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};

struct Args {
    devices: usize,
    out: PathBuf,
}

fn args() -> Args {
    let mut devices = 10_000;
    let mut out = PathBuf::from("docs/bench/fleet.json");
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--devices" => devices = it.next().and_then(|v| v.parse().ok()).expect("--devices N"),
            "--out" => out = PathBuf::from(it.next().expect("--out FILE")),
            other => {
                panic!("unknown argument {other}; usage: bench-fleet [--devices N] [--out FILE]")
            }
        }
    }
    Args { devices, out }
}

/// CPU seconds (user + system) and peak resident memory (MiB) of a process.
fn proc_usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm / 1024.0)
}

fn mosquitto_pid(config: &Path) -> Option<u32> {
    let out = Command::new("pgrep")
        .args(["-f"])
        .arg(config)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }
}

/// One simulated kiosk's live connection.
struct Device {
    id: DeviceId,
    client: AsyncClient,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let n = args.devices;
    let tenantd = std::env::var("TENANTD_BIN").unwrap_or_else(|_| "tenantd".into());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let [https, device_port, provision_port, service_port] = free_ports::<4>();
    let st = Command::new(&tenantd)
        .args(["bootstrap", "--email", "ops@bench.example", "--data"])
        .arg(&data)
        .env("TENANTD_BOOTSTRAP_PASSWORD", "benchmark operations secret")
        .output()
        .expect("run tenantd bootstrap (set TENANTD_BIN)");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut server: Child = Command::new(&tenantd)
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{https}")])
        .args(["--mqtt-listen", &format!("127.0.0.1:{device_port}")])
        .args([
            "--mqtt-provision-listen",
            &format!("127.0.0.1:{provision_port}"),
        ])
        .args([
            "--mqtt-service-listen",
            &format!("127.0.0.1:{service_port}"),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("tenantd.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let server_pid = server.id();
    let ca_file = data.join("tls/ca.pem");
    let started = Instant::now();
    while !(ca_file.exists()
        && std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
        && std::net::TcpStream::connect(("127.0.0.1", device_port)).is_ok())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tenantd did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ca = std::fs::read(&ca_file).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .cookie_store(true)
        .build()
        .unwrap();
    let api = Api {
        base: format!("https://localhost:{https}"),
        http,
    };
    api.call(
        Method::POST,
        "/api/v1/auth/login",
        Some(json!({ "email": "ops@bench.example", "password": "benchmark operations secret" })),
    )
    .await;
    let batch = api
        .call(
            Method::POST,
            "/api/v1/claim-batches",
            Some(json!({ "name": "bench" })),
        )
        .await;
    let org = api.call(Method::POST, "/api/v1/orgs", Some(json!({ "slug": "bench", "name": "Bench", "admin_email": "boss@bench.example", "admin_name": "Boss" }))).await;
    api.call(Method::POST, "/api/v1/auth/logout", None).await;
    let initial = org["admin_password"].as_str().unwrap().to_string();
    api.call(
        Method::POST,
        "/api/v1/auth/login",
        Some(json!({ "email": "boss@bench.example", "password": initial })),
    )
    .await;
    api.call(
        Method::POST,
        "/api/v1/auth/password",
        Some(json!({ "current_password": initial, "new_password": "a benchmark shop secret" })),
    )
    .await;
    let site = api.call(Method::POST, "/api/v1/orgs/bench/sites", Some(json!({ "name": "Lab", "timezone": "Europe/Paris",
        "business_hours": { "mon": [], "tue": [], "wed": [], "thu": [], "fri": [], "sat": [], "sun": [] } }))).await;
    let token = api.call(Method::POST, "/api/v1/orgs/bench/enrollment-tokens", Some(json!({ "site_id": site["id"], "uses": 10_000.min(n.max(1)), "expires_in_hours": 24 }))).await;
    let secret = token["secret"].as_str().unwrap().to_string();
    let server_ca = batch["server_ca_pem"].as_str().unwrap().to_string();
    let claim_tls = client_tls(
        &server_ca,
        batch["certificate_pem"].as_str().unwrap(),
        batch["key_pem"].as_str().unwrap(),
    )
    .unwrap();

    // 1. Enrollment.
    println!("enrolling {n} devices…");
    let claim_lanes = 8;
    let answers: Arc<Mutex<HashMap<String, tokio::sync::oneshot::Sender<ProvisionResult>>>> =
        Arc::default();
    let mut lanes = Vec::new();
    for lane in 0..claim_lanes {
        let mut opts = MqttOptions::new(
            format!("claim-bench-lane{lane}"),
            "localhost",
            provision_port,
        );
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(claim_tls.clone())));
        opts.set_keep_alive(Duration::from_secs(60));
        opts.set_outgoing_inflight_upper_limit(200);
        let (c, mut el) = AsyncClient::new(opts, 1000);
        let answers = answers.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let sub = c.clone();
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        sub.subscribe("provision/v1/claim-bench/response", QoS::AtLeastOnce)
                            .await
                            .unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Ok(r) = serde_json::from_slice::<ProvisionResponse>(&p.payload) {
                            if let Some(tx) = answers.lock().await.remove(&r.request_id) {
                                let _ = tx.send(r.result);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        // The lanes are only needed while enrolling; they reconnect quietly
                        // during the broker restart later.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        ready_rx.await.unwrap();
        lanes.push(c);
    }
    let connected_now = Arc::new(AtomicUsize::new(0));
    let telemetry_acked = Arc::new(AtomicU64::new(0));
    let desired_seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (dev_tx, mut dev_rx) = mpsc::unbounded_channel::<Device>();
    let enroll_started = Instant::now();
    let concurrency = Arc::new(tokio::sync::Semaphore::new(200));
    for i in 0..n {
        let permit = concurrency.clone().acquire_owned().await.unwrap();
        let lane = lanes[i % claim_lanes].clone();
        let (answers, secret, server_ca) = (answers.clone(), secret.clone(), server_ca.clone());
        let (connected_now, telemetry_acked, desired_seen, dev_tx) = (
            connected_now.clone(),
            telemetry_acked.clone(),
            desired_seen.clone(),
            dev_tx.clone(),
        );
        tokio::spawn(async move {
            let key = rcgen::KeyPair::generate().unwrap();
            let csr = rcgen::CertificateParams::default()
                .serialize_request(&key)
                .unwrap()
                .pem()
                .unwrap();
            let request_id = format!("bench-{i:06}");
            let (tx, rx) = tokio::sync::oneshot::channel();
            answers.lock().await.insert(request_id.clone(), tx);
            let req = ProvisionRequest {
                v: Version::CURRENT,
                request_id: request_id.clone(),
                csr_pem: csr,
                hardware: Hardware {
                    board: "qemu".into(),
                    serial: format!("BENCH-{i}"),
                    firmware: "0.1.0".into(),
                },
                enrollment_token: Some(secret),
            };
            lane.publish(
                "provision/v1/claim-bench/request",
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&req).unwrap(),
            )
            .await
            .unwrap();
            let ProvisionResult::Certificate {
                device_id,
                certificate_pem,
                ..
            } = tokio::time::timeout(Duration::from_secs(120), rx)
                .await
                .expect("an answer")
                .unwrap()
            else {
                panic!("enrollment refused")
            };
            let tls = client_tls(&server_ca, &certificate_pem, &key.serialize_pem()).unwrap();
            let mut opts = MqttOptions::new(device_id.as_str(), "localhost", device_port);
            opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
            opts.set_keep_alive(Duration::from_secs(60));
            opts.set_clean_start(false);
            opts.set_session_expiry_interval(Some(3600));
            // rumqttc sizes its in-flight table by this bound (65535 unless set): a few MiB
            // per client otherwise.
            opts.set_outgoing_inflight_upper_limit(16);
            let (client, mut el) = AsyncClient::new(opts, 16);
            let (up_tx, up_rx) = tokio::sync::oneshot::channel();
            let mut up_tx = Some(up_tx);
            let sub = client.clone();
            let id = device_id.as_str().to_string();
            tokio::spawn(async move {
                let mut backoff = Backoff::default();
                let mut online = false;
                loop {
                    match el.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            online = true;
                            backoff.reset();
                            connected_now.fetch_add(1, Ordering::SeqCst);
                            let _ = sub
                                .try_subscribe(format!("kiosk/v1/{id}/down/#"), QoS::AtLeastOnce);
                            if let Some(tx) = up_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            telemetry_acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            if p.topic.ends_with(b"/down/desired") {
                                desired_seen
                                    .lock()
                                    .await
                                    .entry(id.clone())
                                    .or_insert_with(Instant::now);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => {
                            if online {
                                online = false;
                                connected_now.fetch_sub(1, Ordering::SeqCst);
                            }
                            el.pending.clear();
                            tokio::time::sleep(backoff.next_delay()).await;
                        }
                    }
                }
            });
            up_rx.await.unwrap();
            let _ = dev_tx.send(Device {
                id: device_id,
                client,
            });
            drop(permit);
        });
    }
    drop(dev_tx);
    let mut devices = Vec::with_capacity(n);
    while let Some(d) = dev_rx.recv().await {
        devices.push(d);
        if devices.len() % 1000 == 0 {
            println!(
                "  {} enrolled and connected ({:.1} s)",
                devices.len(),
                enroll_started.elapsed().as_secs_f64()
            );
        }
    }
    let enroll_s = enroll_started.elapsed().as_secs_f64();
    let enroll_per_s = n as f64 / enroll_s;
    println!("enrollment: {n} devices in {enroll_s:.1} s = {enroll_per_s:.1} devices/s (CSR to connected with own certificate)");

    // 2–3. Heartbeats: every device sends telemetry every 10 s for 30 s.
    let window = Duration::from_secs(30);
    let interval = Duration::from_secs(10);
    let before = telemetry_acked.load(Ordering::SeqCst);
    let hb_started = Instant::now();
    let mut seq = 0u64;
    while hb_started.elapsed() < window {
        let round = Instant::now();
        seq += 1;
        for (i, d) in devices.iter().enumerate() {
            let t = Telemetry {
                v: Version::CURRENT,
                header: UpHeader {
                    id: MessageId::parse(&format!("hb-{seq:04}-{i:06}")).unwrap(),
                    seq,
                    at_ms: 0,
                },
                uptime_s: seq * 10,
                firmware: "0.1.0".into(),
                services: Default::default(),
                config_version: None,
                camera: None,
                encoder: Some("x264enc".into()),
                call_state: CallState::Idle,
                outbox_depth: 0,
                temperatures: vec![],
                encoder_reason: None,
                call_stats: None,
            };
            let _ = d
                .client
                .publish(
                    format!("kiosk/v1/{}/up/telemetry", d.id),
                    QoS::AtLeastOnce,
                    false,
                    serde_json::to_vec(&t).unwrap(),
                )
                .await;
            // Spread a round over the interval.
            if i % 100 == 99 {
                tokio::time::sleep(interval / (n as u32 / 100 + 1)).await;
            }
        }
        if let Some(rest) = interval.checked_sub(round.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hb_s = hb_started.elapsed().as_secs_f64();
    let heartbeats = telemetry_acked.load(Ordering::SeqCst) - before;
    let heartbeat_per_s = heartbeats as f64 / hb_s;
    let store_check = api
        .call(Method::GET, "/api/v1/orgs/bench/devices", None)
        .await;
    let with_telemetry = store_check["devices"].as_array().map_or(0, |d| {
        d.iter().filter(|x| !x["telemetry"].is_null()).count()
    });
    println!("heartbeats: {heartbeats} acknowledged in {hb_s:.1} s = {heartbeat_per_s:.0}/s; {with_telemetry} of {n} devices have telemetry stored");

    // 4. Config delivery latency for a sample.
    let sample: Vec<&Device> = devices.iter().step_by((n / 200).max(1)).take(200).collect();
    let mut sent_at = HashMap::new();
    for d in &sample {
        let t0 = Instant::now();
        api.call(
            Method::PUT,
            &format!("/api/v1/orgs/bench/devices/{}/config", d.id),
            Some(json!({
            "default_language": "en", "languages": ["en", "fr"], "idle_s": 60, "warning_s": 20,
            "telemetry_interval_s": 30, "board_profile": "qemu" })),
        )
        .await;
        sent_at.insert(d.id.as_str().to_string(), t0);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while desired_seen.lock().await.len() < sample.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = desired_seen.lock().await.clone();
    let mut lat: Vec<f64> = sent_at
        .iter()
        .filter_map(|(id, t0)| {
            seen.get(id)
                .map(|t| t.duration_since(*t0).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!(
        "config delivery: {} of {} received; p50 {p50:.1} ms, p99 {p99:.1} ms (API call to device)",
        lat.len(),
        sample.len()
    );

    // 5. Reconnect storm.
    let config = data.join("broker/mosquitto.conf");
    let (tenantd_cpu_before_storm, _) = proc_usage(server_pid);
    let mosq = mosquitto_pid(&config).expect("mosquitto runs");
    let (mosq_cpu, mosq_rss) = proc_usage(mosq);
    let storm_started = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &mosq.to_string()])
        .status();
    let down_deadline = Instant::now() + Duration::from_secs(20);
    while connected_now.load(Ordering::SeqCst) > n / 2 && Instant::now() < down_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back_deadline = Instant::now() + Duration::from_secs(180);
    while connected_now.load(Ordering::SeqCst) < n && Instant::now() < back_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reconnected = connected_now.load(Ordering::SeqCst);
    let reconnect_all_s = storm_started.elapsed().as_secs_f64();
    println!("reconnect storm: {reconnected} of {n} back {reconnect_all_s:.1} s after the broker restart");
    let mosq2 = mosquitto_pid(&config);
    let (mosq2_cpu, mosq2_rss) = mosq2.map(proc_usage).unwrap_or((0.0, 0.0));
    let (tenantd_cpu, tenantd_rss) = proc_usage(server_pid);
    println!(
        "tenantd: {tenantd_cpu:.1} s CPU, peak RSS {tenantd_rss:.1} MiB; mosquitto: {:.1} s CPU, peak RSS {:.1} MiB (before the restart), {mosq2_cpu:.1} s CPU and {mosq2_rss:.1} MiB after",
        mosq_cpu, mosq_rss
    );
    let _ = tenantd_cpu_before_storm;

    let report = json!({
        "devices": n,
        "devices_connected": reconnected.min(devices.len()),
        "devices_enrolled": devices.len(),
        "enroll_seconds": enroll_s,
        "enroll_per_s": enroll_per_s,
        "heartbeats_acknowledged": heartbeats,
        "heartbeat_per_s": heartbeat_per_s,
        "devices_with_stored_telemetry": with_telemetry,
        "config_samples": sample.len(),
        "config_received": lat.len(),
        "config_p50_ms": p50,
        "config_p99_ms": p99,
        "reconnected": reconnected,
        "reconnect_all_s": reconnect_all_s,
        "tenantd_cpu_s": tenantd_cpu,
        "tenantd_peak_rss_mb": tenantd_rss,
        "mosquitto_cpu_s": mosq_cpu + mosq2_cpu,
        "mosquitto_peak_rss_mb": mosq_rss.max(mosq2_rss),
        "machine": { "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()) },
    });
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&report).unwrap() + "\n",
    )
    .unwrap();
    println!("wrote {}", args.out.display());
    let _ = server.kill();
    let _ = server.wait();
    let _ = Command::new("pkill")
        .args(["-TERM", "-f"])
        .arg(&config)
        .status();
}
