//! Enrollment end to end against a real mosquitto and a real SQLite store: a simulated kiosk
//! (raw MQTT 5 client, its own key, a real CSR) enrolls with a token and with an activation
//! code, reconnects with its own certificate, and its duplicated events are kept once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kiosk_protocol::event::{Event, EventBody};
use kiosk_protocol::provision::ProvisionResult;
use kiosk_protocol::{MessageId, UpHeader, Version};
use rcgen::KeyPair;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use tenantd::auth::tokens;
use tenantd::fleet::broker::{self, BrokerSettings, ManagedBroker};
use tenantd::fleet::pki::FleetPki;
use tenantd::fleet::service::{self, FleetLink, LinkSettings};
use tenantd::store::{By, SqliteStore};
use tenantd::tenancy::OrgScope;
use tokio::sync::{mpsc, watch};

mod common;
use common::mqtt::{self, answer, client, free_ports, Claim, WAIT};

struct Setup {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    pki: Arc<FleetPki>,
    settings: BrokerSettings,
    server_ca: String,
    broker: ManagedBroker,
    link: FleetLink,
    _stop: watch::Sender<bool>,
    scope: OrgScope,
    site: i64,
    claim_cert: String,
    claim_key: String,
}

async fn setup() -> Setup {
    let common::StoreFixture {
        dir,
        data,
        store,
        scope,
        site,
    } = common::store_fixture();
    let by = By::new("test");
    let pki = Arc::new(FleetPki::open(&data).unwrap());
    let (claim, claim_key) = pki.claim.issue_with_key("claim-batch1", 30).unwrap();
    store
        .blocking(|db| {
            db.create_claim_batch(
                &by,
                "claim-batch1",
                "test batch",
                &claim.serial,
                claim.not_after_unix,
            )
        })
        .unwrap();
    let [device_port, provision_port, service_port] = free_ports::<3>();
    let settings = BrokerSettings {
        device_listen: SocketAddr::from(([127, 0, 0, 1], device_port)),
        provision_listen: SocketAddr::from(([127, 0, 0, 1], provision_port)),
        service_listen: SocketAddr::from(([127, 0, 0, 1], service_port)),
        ..BrokerSettings::default()
    };
    let files = broker::write_files(&data, &settings, &pki, &[], &[], 1).unwrap();
    let broker = ManagedBroker::start(settings.clone(), files.clone())
        .await
        .unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let link = FleetLink::start(
        LinkSettings::managed(&files, settings.service_listen).unwrap(),
        store.clone(),
        pki.clone(),
        tenantd::calls::CallHub::new(store.clone(), Default::default()),
        tenantd::otp::Journeys::open(
            &data,
            store.clone(),
            Default::default(),
            tenantd::otp::default_gateways(),
        )
        .unwrap(),
        stop_rx,
    )
    .unwrap();
    let mut connected = link.connected.clone();
    tokio::time::timeout(WAIT, connected.wait_for(|c| *c))
        .await
        .unwrap()
        .unwrap();
    // Let the link's subscriptions land before anything is published.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Setup {
        server_ca: std::fs::read_to_string(files.server_ca()).unwrap(),
        _dir: dir,
        store,
        pki,
        settings,
        broker,
        link,
        _stop: stop,
        scope,
        site,
        claim_cert: claim.certificate_pem,
        claim_key,
    }
}

/// A kiosk of this setup's claim batch asking to be enrolled.
async fn provision(
    s: &Setup,
    request_id: &str,
    token: Option<String>,
) -> (
    KeyPair,
    mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    AsyncClient,
) {
    let claim = Claim {
        port: s.settings.provision_listen.port(),
        ca_pem: &s.server_ca,
        cert_pem: &s.claim_cert,
        key_pem: &s.claim_key,
        cn: "claim-batch1",
    };
    mqtt::provision(&claim, request_id, token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_enrolls_with_a_token_and_its_events_are_kept_exactly_once() {
    let s = setup().await;
    let by = By::new("boss@shop.example");
    let token = tokens::new_api_token();
    let (scope, site) = (s.scope.clone(), s.site);
    s.store
        .blocking(|db| {
            db.create_enrollment_token(&scope, &by, site, "kct_x", &token.digest, 1, by.now + 3600)
        })
        .unwrap();

    let (key, mut rx, _claim) = provision(&s, "req-token-1", Some(token.secret.clone())).await;
    let ProvisionResult::Certificate {
        device_id,
        certificate_pem,
        ..
    } = answer(&mut rx, "req-token-1").await
    else {
        panic!("expected a certificate")
    };
    // The same request again with the same key (the answer was lost, say): the same device.
    let claim = Claim {
        port: s.settings.provision_listen.port(),
        ca_pem: &s.server_ca,
        cert_pem: &s.claim_cert,
        key_pem: &s.claim_key,
        cn: "claim-batch1",
    };
    let (mut rx2, _c2) =
        mqtt::provision_with_key(&claim, &key, "req-token-1", Some(token.secret.clone())).await;
    let ProvisionResult::Certificate {
        device_id: again, ..
    } = answer(&mut rx2, "req-token-1").await
    else {
        panic!("expected the same certificate")
    };
    assert_eq!(again, device_id);
    // A batch-mate copying that request id with its own key gets nothing of the first kiosk's
    // (here: the one-use token is spent, so a refusal).
    let (_, mut rx_copy, _c_copy) = provision(&s, "req-token-1", Some(token.secret.clone())).await;
    assert!(matches!(
        answer(&mut rx_copy, "req-token-1").await,
        ProvisionResult::Rejected { .. }
    ));
    // The token had one use: a new request with it is refused.
    let (_, mut rx3, _c3) = provision(&s, "req-token-2", Some(token.secret.clone())).await;
    assert!(matches!(
        answer(&mut rx3, "req-token-2").await,
        ProvisionResult::Rejected { .. }
    ));

    // The kiosk connects with its own certificate and sends events, each twice.
    let (dev, _) = client(
        s.settings.device_listen.port(),
        device_id.as_str(),
        &s.server_ca,
        &certificate_pem,
        &key.serialize_pem(),
    )
    .await;
    for seq in 1..=20u64 {
        let event = Event {
            v: Version::CURRENT,
            header: UpHeader {
                id: MessageId::parse(&format!("evt-{seq:06}-abc")).unwrap(),
                seq,
                at_ms: 0,
            },
            body: EventBody::Diagnostic {
                code: "test".into(),
                detail: format!("event {seq}"),
            },
        };
        let bytes = serde_json::to_vec(&event).unwrap();
        for _ in 0..2 {
            dev.publish(
                format!("kiosk/v1/{device_id}/up/events"),
                QoS::AtLeastOnce,
                false,
                bytes.clone(),
            )
            .await
            .unwrap();
        }
    }
    let id = device_id.as_str().to_string();
    let kept = tokio::time::timeout(WAIT, async {
        loop {
            let kept = s
                .store
                .blocking(|db| db.device_messages(&id, "events"))
                .unwrap();
            if kept.len() >= 20 {
                return kept;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("all events stored");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kept_now = s
        .store
        .blocking(|db| db.device_messages(&id, "events"))
        .unwrap();
    assert_eq!(kept_now.len(), 20, "40 deliveries, 20 events kept");
    assert_eq!(
        kept.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    let devices = s.store.blocking(|db| db.list_devices(&scope)).unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].site_id, Some(site));
    s.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_without_a_token_is_enrolled_when_an_admin_claims_its_code() {
    let s = setup().await;
    let (key, mut rx, _claim) = provision(&s, "req-code-1", None).await;
    let ProvisionResult::ActivationCode {
        code,
        expires_at_ms,
    } = answer(&mut rx, "req-code-1").await
    else {
        panic!("expected an activation code")
    };
    assert!(expires_at_ms > 0 && code.len() == 9);
    // The admin types the code (lower case, no dash) in the console.
    let typed = code.replace('-', "").to_lowercase();
    let device = service::claim_activation(
        Some(&s.link),
        &s.store,
        s.pki.clone(),
        s.scope.clone(),
        By::new("boss@shop.example"),
        &typed,
        s.site,
    )
    .await
    .unwrap();
    let ProvisionResult::Certificate {
        device_id,
        certificate_pem,
        ..
    } = answer(&mut rx, "req-code-1").await
    else {
        panic!("expected the certificate after the claim")
    };
    assert_eq!(device_id.as_str(), device.id);
    let (_dev, _) = client(
        s.settings.device_listen.port(),
        device_id.as_str(),
        &s.server_ca,
        &certificate_pem,
        &key.serialize_pem(),
    )
    .await;
    // A code works once.
    assert!(service::claim_activation(
        Some(&s.link),
        &s.store,
        s.pki.clone(),
        s.scope.clone(),
        By::new("boss@shop.example"),
        &code,
        s.site
    )
    .await
    .is_err());
    s.broker.stop().await;
}
