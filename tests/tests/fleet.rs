//! The fleet link end to end: a real tenantd with its managed mosquitto and SQLite store, and
//! the real kiosk-sync (enrollment, outbox, link) as a kiosk uses it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiosk_protocol::event::{Event, EventBody};
use kiosk_protocol::provision::Hardware;
use kiosk_protocol::topic::Up;
use kiosk_protocol::Version;
use kiosk_sync::enroll::{self, ClaimSettings, EnrollRequest, Enrolled};
use kiosk_sync::link::{Link, LinkSettings};
use kiosk_sync::outbox::{OutboxPolicy, Retention, SqliteOutbox};
use kioskcall_e2e::{Cloud, Shop};
use serde_json::json;
use tokio::sync::{mpsc, watch};

#[path = "fleet/daemon.rs"]
mod daemon;

/// An enrolled kiosk: its device id, certificate and key.
struct Kiosk {
    device_id: kiosk_protocol::DeviceId,
    cert_pem: String,
    key_pem: String,
    server_ca: String,
    dir: tempfile::TempDir,
}

/// Enrolls a kiosk with the kiosk-sync library and a token of a new shop.
async fn enroll_kiosk(cloud: &Cloud) -> Kiosk {
    let shop = Shop::create(cloud).await;
    let token = json!({ "secret": shop.enrollment_token(cloud).await });
    let batch = &shop.batch;
    let dir = tempfile::tempdir().unwrap();
    let key = enroll::load_or_create_key(&dir.path().join("device.key")).unwrap();
    let server_ca = batch["server_ca_pem"].as_str().unwrap().to_string();
    let claim = ClaimSettings {
        claim_cn: "claim-e2e".into(),
        host: "localhost".into(),
        port: cloud.broker.provision_listen.port(),
        server_ca_pem: server_ca.clone(),
        cert_pem: batch["certificate_pem"].as_str().unwrap().into(),
        key_pem: batch["key_pem"].as_str().unwrap().into(),
    };
    let request = EnrollRequest {
        request_id: "first-boot-1".into(),
        csr_pem: enroll::csr(&key).unwrap(),
        key_fingerprint: enroll::key_fingerprint(&key),
        hardware: Hardware {
            board: "qemu".into(),
            serial: "QEMU-1".into(),
            firmware: "0.1.0".into(),
        },
        token: Some(token["secret"].as_str().unwrap().into()),
        retry: Duration::from_secs(2),
    };
    let (codes, _) = watch::channel(None);
    let (_stop_tx, stop) = watch::channel(false);
    let Enrolled::Certificate {
        device_id,
        certificate_pem,
    } = tokio::time::timeout(
        Duration::from_secs(20),
        enroll::enroll(&claim, &request, codes, stop),
    )
    .await
    .expect("enrolled in time")
    .unwrap();
    Kiosk {
        device_id,
        cert_pem: certificate_pem,
        key_pem: key.serialize_pem(),
        server_ca,
        dir,
    }
}

fn push_event(outbox: &Mutex<SqliteOutbox>, n: u64) -> u64 {
    outbox
        .lock()
        .unwrap()
        .push(Up::Events, Retention::Keep, n as i64, |header| {
            serde_json::to_vec(&Event {
                v: Version::CURRENT,
                header,
                body: EventBody::Diagnostic {
                    code: "numbered".into(),
                    detail: n.to_string(),
                },
            })
        })
        .unwrap()
        .seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_across_a_broker_restart_arrive_once_each_in_order() {
    let cloud = Cloud::start().await;
    let kiosk = enroll_kiosk(&cloud).await;
    let outbox = Arc::new(Mutex::new(
        SqliteOutbox::open(
            &kiosk.dir.path().join("outbox.sqlite3"),
            OutboxPolicy::default(),
        )
        .unwrap(),
    ));
    let settings = LinkSettings::new(
        kiosk.device_id.clone(),
        "localhost",
        cloud.broker.device_listen.port(),
        &kiosk.server_ca,
        &kiosk.cert_pem,
        &kiosk.key_pem,
    );
    let (inbound_tx, _inbound) = mpsc::channel(64);
    let (stop_tx, stop) = watch::channel(false);
    let link = Link::start(settings, outbox.clone(), inbound_tx, stop).unwrap();
    let fleet = cloud.server.as_ref().unwrap().fleet.clone().unwrap();
    let store = tenantd::store::SqliteStore::open(&cloud.data_dir()).unwrap();
    let id = kiosk.device_id.as_str().to_string();
    let stored = |store: &tenantd::store::SqliteStore| {
        store
            .blocking(|db| db.device_messages(&id, "events"))
            .unwrap()
    };

    // Record whether the kiosk's link saw the broker go away.
    let mut connected = link.connected.clone();
    tokio::time::timeout(Duration::from_secs(20), connected.wait_for(|c| *c))
        .await
        .unwrap()
        .unwrap();
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let saw = dropped.clone();
    tokio::spawn(async move {
        if connected.wait_for(|c| !*c).await.is_ok() {
            saw.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let started = Instant::now();
    for n in 1..=1000u64 {
        push_event(&outbox, n);
        link.wake.notify_one();
        if n == 400 {
            // The broker restarts in the middle of the stream.
            fleet.restart_broker();
        }
        if n % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let kept = stored(&store);
            let depth = outbox.lock().unwrap().depth().unwrap().total;
            if kept.len() >= 1000 && depth == 0 {
                return kept;
            }
            link.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("all events delivered");
    let seqs: Vec<u64> = all.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=1000).collect::<Vec<_>>(),
        "0 lost, 0 duplicates, in order"
    );
    println!(
        "fleet e2e: 1000 events with a broker restart at #400 stored once each in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _ = stop_tx.send(true);
    cloud.server.unwrap().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_accepted_before_a_sigkill_of_the_kiosk_are_not_lost() {
    use std::io::BufRead;
    let cloud = Cloud::start().await;
    let kiosk = enroll_kiosk(&cloud).await;
    for (file, text) in [
        ("device.pem", &kiosk.cert_pem),
        ("device.key", &kiosk.key_pem),
        ("server-ca.pem", &kiosk.server_ca),
    ] {
        std::fs::write(kiosk.dir.path().join(file), text).unwrap();
    }
    // The kiosk process accepts events as fast as it can while its link sends them.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_outbox-kiosk"))
        .env("KIOSK_DIR", kiosk.dir.path())
        .env("KIOSK_DEVICE_ID", kiosk.device_id.as_str())
        .env("KIOSK_PORT", cloud.broker.device_listen.port().to_string())
        .env("KIOSK_START", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read every line the kiosk prints, up to its death; say when 2000 are in.
    let (enough_tx, enough_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut accepted: Vec<u64> = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(seq) = line.strip_prefix("accepted ") {
                accepted.push(seq.parse().unwrap());
                if accepted.len() == 2000 {
                    let _ = enough_tx.send(());
                }
            }
        }
        accepted
    });
    tokio::task::spawn_blocking(move || enough_rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the kiosk accepted 2000 events");
    // Killed while publishing: no chance to flush or say goodbye.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let accepted = reader.join().unwrap();
    let id = kiosk.device_id.as_str().to_string();
    let store = tenantd::store::SqliteStore::open(&cloud.data_dir()).unwrap();
    let before_restart = store
        .blocking(|db| db.device_messages(&id, "events"))
        .unwrap()
        .len();

    // The kiosk comes back on the same outbox file and sends what is left.
    let outbox = Arc::new(Mutex::new(
        SqliteOutbox::open(
            &kiosk.dir.path().join("outbox.sqlite3"),
            OutboxPolicy::default(),
        )
        .unwrap(),
    ));
    let pending = outbox.lock().unwrap().depth().unwrap().total;
    let settings = LinkSettings::new(
        kiosk.device_id.clone(),
        "localhost",
        cloud.broker.device_listen.port(),
        &kiosk.server_ca,
        &kiosk.cert_pem,
        &kiosk.key_pem,
    );
    let (inbound_tx, _inbound) = mpsc::channel(16);
    let (stop_tx, stop) = watch::channel(false);
    let link = Link::start(settings, outbox.clone(), inbound_tx, stop).unwrap();
    let last = *accepted.last().unwrap();
    let stored = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let kept = store
                .blocking(|db| db.device_messages(&id, "events"))
                .unwrap();
            if kept.last().is_some_and(|(_, seq)| *seq >= last)
                && outbox.lock().unwrap().depth().unwrap().total == 0
            {
                return kept;
            }
            link.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("everything accepted is delivered after the restart");
    let stored: std::collections::BTreeSet<u64> = stored.iter().map(|(_, seq)| *seq).collect();
    let lost: Vec<u64> = accepted
        .iter()
        .filter(|s| !stored.contains(s))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "lost {} accepted events: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    println!(
        "sigkill: {} events accepted before the kill, {before_restart} in the cloud at the kill, {pending} still in the outbox, 0 lost after the restart",
        accepted.len()
    );
    let _ = stop_tx.send(true);
    cloud.server.unwrap().shutdown().await.unwrap();
}
