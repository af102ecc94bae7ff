//! The managed broker against a real mosquitto: identities from the three CAs, tried with a raw
//! MQTT 5 client holding each certificate. `scripts/test` installs mosquitto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tenantd::fleet::broker::{self, BrokerSettings, ManagedBroker};
use tenantd::fleet::pki::{FleetPki, DEVICE_CERT_DAYS};
use tokio::sync::mpsc;

mod common;
use common::mqtt::free_ports;

const WAIT: Duration = Duration::from_secs(10);

/// A certificate and key in PEM.
#[derive(Clone)]
struct Identity {
    cert: String,
    key: String,
}

fn device_identity(pki: &FleetPki, id: &str) -> (Identity, String) {
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let issued = pki.device.sign_csr(&csr, id, DEVICE_CERT_DAYS).unwrap();
    (
        Identity {
            cert: issued.certificate_pem,
            key: key.serialize_pem(),
        },
        issued.serial,
    )
}

fn tls_config(ca_file: &Path, who: &Identity) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::fs::read(ca_file).unwrap().as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = rustls_pemfile::certs(&mut who.cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut who.key.as_bytes())
        .unwrap()
        .unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap(),
    )
}

/// A raw MQTT 5 client: the event loop runs in a task and reports packets on a channel.
struct Raw {
    client: AsyncClient,
    packets: mpsc::UnboundedReceiver<Result<Packet, String>>,
}

impl Raw {
    /// Connects and waits for the CONNACK; `Err` with the reason when refused.
    async fn connect(cloud: &Cloud, port: u16, id: &str, who: &Identity) -> Result<Raw, String> {
        let mut opts = MqttOptions::new(id, "localhost", port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls_config(
            &cloud.server_ca,
            who,
        ))));
        let (client, eventloop) = AsyncClient::new(opts, 64);
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(pump(eventloop, tx));
        let first = tokio::time::timeout(WAIT, async {
            loop {
                match rx.recv().await {
                    Some(Ok(Packet::ConnAck(_))) => return Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e),
                    None => return Err("event loop ended".to_string()),
                }
            }
        })
        .await
        .map_err(|_| "no CONNACK in time".to_string())?;
        first.map(|()| Raw {
            client,
            packets: rx,
        })
    }

    /// The next packet matching `want`, within the wait.
    async fn expect<T>(&mut self, mut want: impl FnMut(&Packet) -> Option<T>) -> Option<T> {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.packets.recv().await {
                    Some(Ok(p)) => {
                        if let Some(t) = want(&p) {
                            return Some(t);
                        }
                    }
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    async fn publish_ack(&mut self, topic: &str) -> PubAckReason {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, b"{}".to_vec())
            .await
            .unwrap();
        self.expect(|p| match p {
            Packet::PubAck(ack) => Some(ack.reason),
            _ => None,
        })
        .await
        .expect("a PUBACK")
    }

    async fn subscribe_ack(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        self.expect(|p| match p {
            Packet::SubAck(ack) => ack.return_codes.first().copied(),
            _ => None,
        })
        .await
        .expect("a SUBACK")
    }
}

async fn pump(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Result<Packet, String>>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(p)) => {
                if tx.send(Ok(p)).is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(_)) => {}
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        }
    }
}

struct Cloud {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    pki: FleetPki,
    settings: BrokerSettings,
    server_ca: std::path::PathBuf,
    service: Identity,
    broker: Option<ManagedBroker>,
}

impl Cloud {
    async fn start() -> Cloud {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let pki = FleetPki::open(&data).unwrap();
        let [device_port, provision_port, service_port] = free_ports::<3>();
        let settings = BrokerSettings {
            device_listen: SocketAddr::from(([127, 0, 0, 1], device_port)),
            provision_listen: SocketAddr::from(([127, 0, 0, 1], provision_port)),
            service_listen: SocketAddr::from(([127, 0, 0, 1], service_port)),
            ..BrokerSettings::default()
        };
        let files = broker::write_files(&data, &settings, &pki, &[], &[], 1).unwrap();
        let service = Identity {
            cert: std::fs::read_to_string(files.service_client_cert()).unwrap(),
            key: std::fs::read_to_string(files.service_client_key()).unwrap(),
        };
        let server_ca = files.server_ca();
        let broker = ManagedBroker::start(settings.clone(), files).await.unwrap();
        Cloud {
            _dir: dir,
            data,
            pki,
            settings,
            server_ca,
            service,
            broker: Some(broker),
        }
    }

    fn device_port(&self) -> u16 {
        self.settings.device_listen.port()
    }

    fn provision_port(&self) -> u16 {
        self.settings.provision_listen.port()
    }

    fn service_port(&self) -> u16 {
        self.settings.service_listen.port()
    }

    /// The cloud's own client, subscribed to everything devices and claims send.
    async fn service_client(&self) -> Raw {
        let mut svc = Raw::connect(self, self.service_port(), "svc-tenantd-test", &self.service)
            .await
            .expect("the service identity connects on the service listener");
        for filter in ["kiosk/v1/+/up/#", "provision/v1/+/request"] {
            assert_eq!(
                svc.subscribe_ack(filter).await,
                SubscribeReasonCode::Success(QoS::AtLeastOnce)
            );
        }
        svc
    }
}

async fn next_topic(svc: &mut Raw) -> Option<String> {
    svc.expect(|p| match p {
        Packet::Publish(p) => Some(String::from_utf8_lossy(&p.topic).to_string()),
        _ => None,
    })
    .await
}

/// Whether the broker took a publish (no subscriber is still a success).
fn accepted(r: PubAckReason) -> bool {
    matches!(
        r,
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
    )
}

/// The distinct topics delivered to `raw` within `ms` (overlapping subscriptions may deliver
/// one message more than once).
async fn delivered(raw: &mut Raw, ms: u64) -> Vec<String> {
    let mut topics = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    while let Ok(Some(Ok(p))) = tokio::time::timeout_at(deadline, raw.packets.recv()).await {
        if let Packet::Publish(p) = p {
            topics.push(String::from_utf8_lossy(&p.topic).to_string());
        }
    }
    topics.sort();
    topics.dedup();
    topics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_and_claims_reach_only_their_own_topics() {
    let cloud = Cloud::start().await;
    let mut svc = cloud.service_client().await;
    let (alpha, _) = device_identity(&cloud.pki, "kiosk-alpha");
    let (bravo, _) = device_identity(&cloud.pki, "kiosk-bravo");
    let mut a = Raw::connect(&cloud, cloud.device_port(), "kiosk-alpha", &alpha)
        .await
        .unwrap();

    // Its own topics work.
    assert!(accepted(
        a.publish_ack("kiosk/v1/kiosk-alpha/up/telemetry").await
    ));
    assert_eq!(
        next_topic(&mut svc).await.as_deref(),
        Some("kiosk/v1/kiosk-alpha/up/telemetry")
    );
    assert!(accepted(a.publish_ack("kiosk/v1/kiosk-alpha/status").await));
    assert_eq!(
        a.subscribe_ack("kiosk/v1/kiosk-alpha/down/#").await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    // Writing another device's, the cloud's or provisioning topics is refused.
    for topic in [
        "kiosk/v1/kiosk-bravo/up/telemetry",
        "kiosk/v1/kiosk-bravo/status",
        "kiosk/v1/kiosk-alpha/down/cmd",
        "provision/v1/claim-batch1/request",
        "provision/v1/claim-batch1/response",
    ] {
        assert_eq!(
            a.publish_ack(topic).await,
            PubAckReason::NotAuthorized,
            "publish {topic}"
        );
    }

    // A claim identity may provision under its own name, and do nothing else.
    let (claim_cert, claim_key) = cloud.pki.claim.issue_with_key("claim-batch1", 30).unwrap();
    let claim = Identity {
        cert: claim_cert.certificate_pem,
        key: claim_key,
    };
    let mut c = Raw::connect(&cloud, cloud.provision_port(), "claim-batch1-unit7", &claim)
        .await
        .unwrap();
    assert!(accepted(
        c.publish_ack("provision/v1/claim-batch1/request").await
    ));
    assert_eq!(
        next_topic(&mut svc).await.as_deref(),
        Some("provision/v1/claim-batch1/request")
    );
    assert_eq!(
        c.subscribe_ack("provision/v1/claim-batch1/response").await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    for topic in [
        "provision/v1/claim-batch2/request",
        "kiosk/v1/kiosk-alpha/up/telemetry",
        "kiosk/v1/claim-batch1/up/telemetry",
    ] {
        assert_eq!(
            c.publish_ack(topic).await,
            PubAckReason::NotAuthorized,
            "claim publish {topic}"
        );
    }

    // Reading: mosquitto may grant a subscription to a wider filter, but delivers only what the
    // ACL lets the identity read. Both subscribe to everything they should not see...
    for filter in [
        "kiosk/v1/kiosk-bravo/down/#",
        "kiosk/v1/+/down/#",
        "kiosk/v1/+/up/#",
        "provision/v1/+/response",
        "#",
    ] {
        let _ = a.subscribe_ack(filter).await;
        let _ = c.subscribe_ack(filter).await;
    }
    // ...the cloud sends on every kind of topic...
    for topic in [
        "kiosk/v1/kiosk-bravo/down/cmd",
        "kiosk/v1/kiosk-bravo/up/telemetry",
        "provision/v1/claim-batch2/response",
        "kiosk/v1/kiosk-alpha/down/cmd",
        "provision/v1/claim-batch1/response",
    ] {
        assert!(
            accepted(svc.publish_ack(topic).await),
            "cloud publish {topic}"
        );
    }
    // ...and each gets only its own.
    assert_eq!(
        delivered(&mut a, 800).await,
        vec!["kiosk/v1/kiosk-alpha/down/cmd"]
    );
    assert_eq!(
        delivered(&mut c, 800).await,
        vec!["provision/v1/claim-batch1/response"]
    );

    // Nothing refused reached the cloud.
    assert_eq!(delivered(&mut svc, 300).await, Vec::<String>::new());

    // Each listener accepts one kind of identity: a device or claim certificate is not
    // accepted on the cloud's listener, a claim certificate not where devices work, a device
    // certificate not where claims provision, the cloud's certificate on neither.
    let refused = [
        (cloud.service_port(), &bravo),
        (cloud.service_port(), &claim),
        (cloud.device_port(), &claim),
        (cloud.provision_port(), &bravo),
        (cloud.device_port(), &cloud.service),
        (cloud.provision_port(), &cloud.service),
    ];
    for (port, who) in refused {
        assert!(
            Raw::connect(&cloud, port, "intruder-1", who).await.is_err(),
            "port {port}"
        );
    }
    cloud.broker.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_cut_off_and_stays_out_after_restarts() {
    let mut cloud = Cloud::start().await;
    let (alpha, alpha_serial) = device_identity(&cloud.pki, "kiosk-alpha");
    let (bravo, _) = device_identity(&cloud.pki, "kiosk-bravo");
    let mut a = Raw::connect(&cloud, cloud.device_port(), "kiosk-alpha", &alpha)
        .await
        .unwrap();
    assert!(accepted(
        a.publish_ack("kiosk/v1/kiosk-alpha/up/telemetry").await
    ));

    // Revoke: a new CRL, then a broker restart to load it.
    let files = broker::BrokerFiles::new(&cloud.data);
    broker::write_crl(&files, &cloud.pki, &[(alpha_serial, 1_800_000_000)], &[], 2).unwrap();
    let broker = cloud.broker.take().unwrap();
    let mut starts = broker.starts.clone();
    broker.restart();
    tokio::time::timeout(WAIT, starts.changed())
        .await
        .unwrap()
        .unwrap();

    // The connected session was dropped by the restart; reconnecting fails; others are fine.
    assert!(
        a.expect(|_| None::<()>).await.is_none(),
        "the old connection ended"
    );
    assert!(
        Raw::connect(&cloud, cloud.device_port(), "kiosk-alpha", &alpha)
            .await
            .is_err()
    );
    let mut b = Raw::connect(&cloud, cloud.device_port(), "kiosk-bravo", &bravo)
        .await
        .unwrap();
    assert!(accepted(
        b.publish_ack("kiosk/v1/kiosk-bravo/up/telemetry").await
    ));

    // Mosquitto killed outright: the supervisor brings it back, and the CRL still holds.
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f"])
        .arg(files.config().display().to_string())
        .status()
        .unwrap();
    assert!(killed.success(), "mosquitto was running");
    tokio::time::timeout(Duration::from_secs(20), starts.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(
        Raw::connect(&cloud, cloud.device_port(), "kiosk-alpha", &alpha)
            .await
            .is_err()
    );
    assert!(
        Raw::connect(&cloud, cloud.device_port(), "kiosk-bravo2", &bravo)
            .await
            .is_ok()
    );
    broker.stop().await;
    cloud.broker = None;
}
