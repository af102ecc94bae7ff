//! The kiosk-sync daemon end to end: the real binary on a private D-Bus daemon, against a real
//! tenantd with its managed mosquitto; `kioskctl` as a person would use it.

use std::time::Duration;

use futures_lite::StreamExt as _;
use kiosk_bus::Sync1Proxy;
use kioskcall_e2e::kiosk::{wait_status, Bus, KioskSync, SystemCalls};
use kioskcall_e2e::{Cloud, Shop};
use reqwest::Method;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, MqttOptions};
use serde_json::json;
use tenantd::fleet::broker::BrokerFiles;

const LONG: Duration = Duration::from_secs(60);

/// The `[ota]` section of a kiosk that takes no updates.
const NO_UPDATES: &str = "backend = \"none\"";

/// Polls an API path as the shop's admin until `pred` holds.
async fn eventually(
    cloud: &Cloud,
    shop: &Shop,
    path: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let (status, body) = shop.api(cloud, Method::GET, path, None).await;
        if status == 200 && pred(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never: {what}; last: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Publishes as the cloud's own service identity (to send what the API would refuse).
async fn publish_as_cloud(cloud: &Cloud, topic: &str, payload: &[u8], retain: bool) {
    let files = BrokerFiles::new(&cloud.data_dir());
    let tls = kiosk_sync::link::client_tls(
        &std::fs::read_to_string(files.server_ca()).unwrap(),
        &std::fs::read_to_string(files.service_client_cert()).unwrap(),
        &std::fs::read_to_string(files.service_client_key()).unwrap(),
    )
    .unwrap();
    let mut opts = MqttOptions::new(
        "svc-test-publisher",
        "localhost",
        cloud.broker.service_listen.port(),
    );
    opts.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
        tls,
    )));
    opts.set_outgoing_inflight_upper_limit(4);
    let (client, mut events) = AsyncClient::new(opts, 8);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(_)) =
                events.poll().await.unwrap()
            {
                return;
            }
        }
    })
    .await
    .expect("published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_code_enrollment_then_config_live_and_a_bad_config_refused() {
    let cloud = Cloud::start().await;
    let shop = Shop::create(&cloud).await;
    let bus = Bus::start().unwrap();
    let mut kiosk = KioskSync::new(&shop.kiosk_files(&cloud), &bus, NO_UPDATES);
    kiosk.start();
    let conn = bus.connect().await.unwrap();
    let sync = Sync1Proxy::new(&conn).await.unwrap();

    // No token: the kiosk shows an activation code, and says so on D-Bus.
    let s = wait_status(&kiosk, &sync, LONG, "an activation code", |s| {
        s.state == "awaiting-activation"
    })
    .await;
    assert_eq!(s.activation_code.len(), 9, "{s:?}");
    assert_eq!(sync.activation_code().await.unwrap(), s.activation_code);
    let out = kiosk.kioskctl(&["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&s.activation_code),
        "{out:?}"
    );

    // The admin claims it; the kiosk reconnects with its own certificate.
    let (status, claimed) = shop
        .api(
            &cloud,
            Method::POST,
            "/api/v1/orgs/shop/devices/claim",
            Some(json!({ "code": s.activation_code, "site_id": shop.site_id })),
        )
        .await;
    assert_eq!(status, 201, "{claimed}");
    let device = claimed["id"].as_str().unwrap().to_string();
    let s = wait_status(&kiosk, &sync, LONG, "enrolled and connected", |s| {
        s.state == "enrolled" && s.connected
    })
    .await;
    assert_eq!(s.device_id, device);
    assert!(s.activation_code.is_empty());
    let key = kiosk.state_dir().join("device.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the device key is private");

    // The claim gave it its first config: default settings on the board it reported.
    let s = wait_status(&kiosk, &sync, LONG, "the first config applied", |s| {
        s.config_version == 1
    })
    .await;
    assert!(s.last_error.is_empty(), "{s:?}");

    // A desired config is applied live: ConfigChanged on D-Bus, version reported to the cloud.
    let mut changes = sync.receive_config_changed().await.unwrap();
    let config_path = format!("/api/v1/orgs/shop/devices/{device}/config");
    let settings = json!({ "default_language": "fr", "languages": ["fr", "en", "ar"], "idle_s": 90,
                           "warning_s": 25, "telemetry_interval_s": 5, "board_profile": "qemu" });
    let (status, set) = shop
        .api(&cloud, Method::PUT, &config_path, Some(settings))
        .await;
    assert_eq!(status, 200, "{set}");
    let signal = tokio::time::timeout(LONG, changes.next())
        .await
        .expect("ConfigChanged")
        .unwrap();
    let args = signal.args().unwrap();
    assert_eq!(args.version, 2);
    let applied: serde_json::Value = serde_json::from_str(args.config).unwrap();
    assert_eq!(applied["locale"]["default"], "fr", "{applied}");
    let device_path = format!("/api/v1/orgs/shop/devices/{device}");
    eventually(&cloud, &shop, &device_path, "version 2 reported", |d| {
        d["reported_version"] == 2
    })
    .await;
    let out = kiosk.kioskctl(&["config"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"version\":2"));

    // Telemetry arrives at the configured interval (5 s).
    eventually(&cloud, &shop, &device_path, "telemetry", |d| {
        d["telemetry"]["config_version"] == 2
    })
    .await;

    // A bad document (the API would refuse it; here it comes straight to the broker) is
    // rejected with its reasons, reported, and version 2 stays in force.
    let mut bad = applied.clone();
    bad["version"] = json!(3);
    bad["telemetry_interval_s"] = json!(1);
    bad["idle"]["warning_s"] = json!(3);
    publish_as_cloud(
        &cloud,
        &format!("kiosk/v1/{device}/down/desired"),
        bad.to_string().as_bytes(),
        true,
    )
    .await;
    let d = eventually(&cloud, &shop, &device_path, "the rejection reported", |d| {
        d["reported_errors"]["version"] == 3
    })
    .await;
    let errors = d["reported_errors"].to_string();
    assert!(
        errors.contains("telemetry_interval_s") && errors.contains("idle.warning_s"),
        "{errors}"
    );
    assert_eq!(d["reported_version"], 2);
    let s = sync.status().await.unwrap();
    assert_eq!(s.config_version, 2);
    assert!(s.last_error.contains("rejected"), "{s:?}");

    // A restart comes back with the config in force before the cloud is reached.
    assert!(kiosk.stop().unwrap().success(), "{}", kiosk.log_text());
    kiosk.start();
    let s = wait_status(&kiosk, &sync, LONG, "back with version 2", |s| {
        s.state == "enrolled" && s.config_version == 2
    })
    .await;
    assert_eq!(s.device_id, device);
}

/// How many events the cloud kept for `device`, and whether they are in sequence order.
fn stored_events(cloud: &Cloud, device: &str) -> Vec<(String, u64)> {
    let store = tenantd::store::SqliteStore::open(&cloud.data_dir()).unwrap();
    let d = device.to_string();
    store
        .blocking(|db| db.device_messages(&d, "events"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_enrollment_commands_and_a_rotation_under_traffic() {
    let cloud = Cloud::start().await;
    let shop = Shop::create(&cloud).await;
    let bus = Bus::start().unwrap();
    let system = SystemCalls::default();
    let _system_conns = system.serve(&bus).await;
    let mut kiosk = KioskSync::new(&shop.kiosk_files(&cloud), &bus, NO_UPDATES);
    kiosk.start();
    let conn = bus.connect().await.unwrap();
    let sync = Sync1Proxy::new(&conn).await.unwrap();
    wait_status(&kiosk, &sync, LONG, "asking for a code", |s| {
        s.state == "awaiting-activation"
    })
    .await;

    // `kioskctl enroll` with a token from the admin: the kiosk enrolls at once.
    let bad = kiosk.kioskctl(&["enroll", "not a token"]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let token = shop.enrollment_token(&cloud).await;
    let out = kiosk.kioskctl(&["enroll", &token]);
    assert!(out.status.success(), "{out:?}");
    let out = kiosk.kioskctl(&["wait", "connected", "--timeout", "60"]);
    assert!(out.status.success(), "{out:?}\n{}", kiosk.log_text());
    let device = sync.device_id().await.unwrap();
    let again = kiosk.kioskctl(&["enroll", &token]);
    assert_eq!(again.status.code(), Some(1), "enrolling twice is refused");
    assert!(!kiosk.state_dir().join("enrollment-token").exists());

    let commands = format!("/api/v1/orgs/shop/devices/{device}/commands");
    let command = |body: serde_json::Value| {
        let (cloud, shop, commands) = (&cloud, &shop, commands.clone());
        async move {
            let (status, c) = shop.api(cloud, Method::POST, &commands, Some(body)).await;
            assert_eq!(status, 201, "{c}");
            c["id"].as_str().unwrap().to_string()
        }
    };
    let state_of = |id: String, want: &'static str| {
        let (cloud, shop, commands) = (&cloud, &shop, commands.clone());
        async move {
            eventually(
                cloud,
                shop,
                &commands,
                &format!("command {id} {want}"),
                |b| {
                    b["commands"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|c| c["id"] == id.as_str() && c["state"] == want)
                },
            )
            .await
        }
    };

    // Certificate rotation while events stream in over D-Bus: none lost, none doubled.
    let cert_before = std::fs::read_to_string(kiosk.state_dir().join("device.pem")).unwrap();
    let sender = {
        let sync = sync.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..400u32 {
                let id = sync
                    .report_event("numbered", &json!({ "n": n }).to_string())
                    .await
                    .unwrap();
                ids.push(id);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rotate = command(json!({ "action": "rotate_certificate" })).await;
    state_of(rotate, "succeeded").await;
    let ids = sender.await.unwrap();
    let cert_after = std::fs::read_to_string(kiosk.state_dir().join("device.pem")).unwrap();
    assert_ne!(cert_before, cert_after, "a new certificate is in use");
    wait_status(&kiosk, &sync, LONG, "reconnected, outbox empty", |s| {
        s.connected && s.outbox_records == 0
    })
    .await;
    let stored = stored_events(&cloud, &device);
    let stored_ids: Vec<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(stored_ids, ids, "every event once, in order");

    // Restart a service through systemd; reboot through logind (the result after the reboot).
    let restart = command(json!({ "action": "restart_service", "service": "kiosk-media" })).await;
    state_of(restart, "succeeded").await;
    let reboot = command(json!({ "action": "reboot" })).await;
    state_of(reboot.clone(), "accepted").await;
    assert_eq!(
        system.seen(),
        ["RestartUnit kiosk-media.service replace", "Reboot false"]
    );
    assert!(kiosk.stop().unwrap().success());
    kiosk.start();
    state_of(reboot, "succeeded").await;

    // Factory reset: the kiosk forgets who it was and asks to be enrolled again.
    let reset = command(json!({ "action": "factory_reset" })).await;
    state_of(reset, "succeeded").await;
    let s = wait_status(&kiosk, &sync, LONG, "enrolling again", |s| {
        s.state == "awaiting-activation"
    })
    .await;
    assert!(s.device_id.is_empty() && s.config_version == 0, "{s:?}");
    assert!(!kiosk.state_dir().join("device.pem").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_accepted_before_a_sigkill_of_kiosk_sync_are_not_lost() {
    let cloud = Cloud::start().await;
    let shop = Shop::create(&cloud).await;
    let bus = Bus::start().unwrap();
    let token = shop.enrollment_token(&cloud).await;
    let mut kiosk = KioskSync::new(&shop.kiosk_files(&cloud), &bus, NO_UPDATES);
    kiosk.start();
    let conn = bus.connect().await.unwrap();
    let sync = Sync1Proxy::new(&conn).await.unwrap();
    wait_status(&kiosk, &sync, LONG, "enrolling", |s| {
        s.state != "unenrolled"
    })
    .await;
    let out = kiosk.kioskctl(&["enroll", &token]);
    assert!(out.status.success(), "{out:?}");
    let s = wait_status(&kiosk, &sync, LONG, "connected", |s| s.connected).await;

    // Events go in as fast as D-Bus takes them; SIGKILL lands in the middle.
    let sender = {
        let sync = sync.clone();
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            for n in 0..100_000u32 {
                match sync
                    .report_event("numbered", &json!({ "n": n }).to_string())
                    .await
                {
                    Ok(id) => accepted.push(id),
                    Err(_) => break,
                }
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kiosk.kill();
    let accepted = sender.await.unwrap();
    assert!(
        accepted.len() > 50,
        "only {} events before the kill",
        accepted.len()
    );

    kiosk.start();
    wait_status(&kiosk, &sync, LONG, "outbox drained", |s| {
        s.connected && s.outbox_records == 0
    })
    .await;
    // The outbox empties on the broker's acknowledgement; tenantd stores what the broker hands
    // it a moment later, so wait for the cloud to hold at least every accepted event.
    let deadline = tokio::time::Instant::now() + LONG;
    let stored = loop {
        let stored = stored_events(&cloud, &s.device_id);
        if stored.len() >= accepted.len() || tokio::time::Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stored_ids: Vec<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    // The one call in flight when SIGKILL landed may have reached the outbox without its answer
    // reaching the sender: it is delivered, once, after every accepted event.
    assert!(
        stored_ids.len() <= accepted.len() + 1
            && stored_ids[..accepted.len().min(stored_ids.len())] == accepted[..],
        "{} accepted, {} stored; first accepted missing or out of order: {:?}",
        accepted.len(),
        stored_ids.len(),
        accepted.iter().zip(&stored_ids).find(|(a, s)| a != s)
    );
    assert!(
        stored_ids.len() >= accepted.len(),
        "{} accepted, {} stored",
        accepted.len(),
        stored_ids.len()
    );
    println!(
        "{} events accepted before SIGKILL, {} in the cloud, 0 lost",
        accepted.len(),
        stored.len()
    );
}

/// An HTTPS server on loopback serving `bundle` at `/bundle`, with a CA of its own; returns
/// the port and the CA's PEM.
async fn update_server(bundle: Vec<u8>) -> (u16, String) {
    use std::sync::Arc;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "update server test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let chain = vec![cert.der().clone()];
    let private = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .unwrap();
    let app = axum::Router::new().route(
        "/bundle",
        axum::routing::get(move || {
            let b = bundle.clone();
            async move { b }
        }),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    tokio::spawn(async move {
        let _ = axum_server::from_tcp_rustls(listener, config)
            .serve(app.into_make_service())
            .await;
    });
    (port, ca.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_is_installed_into_the_other_slot_booted_and_confirmed() {
    use kiosk_sync::ota::DirSlots;
    use sha2::Digest as _;

    let cloud = Cloud::start().await;
    let shop = Shop::create(&cloud).await;
    let bus = Bus::start().unwrap();
    let system = SystemCalls::default();
    let _system_conns = system.serve(&bus).await;
    let slots = tempfile::tempdir().unwrap();
    let bundle: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha256 = hex::encode(sha2::Sha256::digest(&bundle));
    let (port, ca) = update_server(bundle.clone()).await;
    let ca_file = slots.path().join("update-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let ota = format!(
        "backend = \"dir\"\nslots_dir = \"{}\"\nca = \"{}\"\nhealth_deadline_s = 60",
        slots.path().join("root").display(),
        ca_file.display()
    );
    assert_eq!(DirSlots::boot(&slots.path().join("root")).unwrap(), 'a');
    let mut kiosk = KioskSync::new(&shop.kiosk_files(&cloud), &bus, &ota);
    kiosk.start();
    let conn = bus.connect().await.unwrap();
    let sync = Sync1Proxy::new(&conn).await.unwrap();
    wait_status(&kiosk, &sync, LONG, "asking", |s| s.state != "unenrolled").await;
    let out = kiosk.kioskctl(&["enroll", &shop.enrollment_token(&cloud).await]);
    assert!(out.status.success(), "{out:?}");
    let s = wait_status(&kiosk, &sync, LONG, "connected", |s| s.connected).await;
    assert_eq!((s.slot.as_str(), s.firmware.as_str()), ("a", "2026.11.0"));
    let commands = format!("/api/v1/orgs/shop/devices/{}/commands", s.device_id);
    let send = |body: serde_json::Value| {
        let (cloud, shop, commands) = (&cloud, &shop, commands.clone());
        async move {
            let (status, c) = shop.api(cloud, Method::POST, &commands, Some(body)).await;
            assert_eq!(status, 201, "{c}");
            c["id"].as_str().unwrap().to_string()
        }
    };
    let outcome = |id: String, want: &'static str| {
        let (cloud, shop, commands) = (&cloud, &shop, commands.clone());
        async move {
            let list = eventually(cloud, shop, &commands, &format!("{id} {want}"), |b| {
                b["commands"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["id"] == id.as_str() && c["state"] == want)
            })
            .await;
            list["commands"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == id.as_str())
                .unwrap()["detail"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };
    let url = format!("https://localhost:{port}/bundle");

    // A bundle that does not match its SHA-256 is refused whole; the slots stay as they were.
    let corrupt = send(
        json!({ "action": "update", "url": url, "version": "2026.12.0",
        "size": bundle.len(), "sha256": "00".repeat(32) }),
    )
    .await;
    let detail = outcome(corrupt, "failed").await;
    assert!(detail.to_lowercase().contains("sha-256"), "{detail}");
    assert!(system.seen().is_empty(), "no reboot after a failed update");

    // The real one: written into slot b, then a reboot through logind.
    let update = send(
        json!({ "action": "update", "url": url, "version": "2026.12.0",
        "size": bundle.len(), "sha256": sha256 }),
    )
    .await;
    outcome(update.clone(), "accepted").await;
    let deadline = tokio::time::Instant::now() + LONG;
    while system.seen().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            kiosk.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(system.seen(), ["Reboot false"]);

    // The "reboot": the boot stage tries slot b once; kiosk-sync confirms it once connected.
    assert!(kiosk.stop().unwrap().success());
    assert_eq!(DirSlots::boot(&slots.path().join("root")).unwrap(), 'b');
    kiosk.start();
    let detail = outcome(update, "succeeded").await;
    assert!(
        detail.contains("2026.12.0") && detail.contains('b'),
        "{detail}"
    );
    let s = wait_status(&kiosk, &sync, LONG, "on slot b", |s| s.slot == "b").await;
    assert_eq!(s.firmware, "2026.12.0");
    // Confirmed: later boots stay on b.
    assert!(kiosk.stop().unwrap().success());
    assert_eq!(DirSlots::boot(&slots.path().join("root")).unwrap(), 'b');
}
