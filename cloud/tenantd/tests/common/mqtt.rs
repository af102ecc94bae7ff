//! A simulated kiosk's MQTT side for tests: TLS with a client certificate, a raw MQTT 5
//! client whose incoming publishes arrive on a channel.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use kiosk_protocol::provision::{Hardware, ProvisionRequest, ProvisionResponse, ProvisionResult};
use kiosk_protocol::Version;
use rcgen::{CertificateParams, KeyPair};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event as MqttEvent, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::{mpsc, watch};

pub const WAIT: Duration = Duration::from_secs(15);

/// Ports for the servers tests start: below the ephemeral range (see kioskcall-testkit).
pub use kioskcall_testkit::free_ports;

pub fn tls(ca_pem: &str, cert: &str, key: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = rustls_pemfile::certs(&mut cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut key.as_bytes())
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

/// A connected client and the channel its incoming publishes (topic, payload) arrive on; the
/// channel closes when the connection ends.
pub type Connected = (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>);

/// Connects, or says why not (refused at TLS, no CONNACK in time).
pub async fn try_client(
    port: u16,
    id: &str,
    ca: &str,
    cert: &str,
    key: &str,
) -> Result<Connected, String> {
    let mut opts = MqttOptions::new(id, "localhost", port);
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls(ca, cert, key))));
    let (c, mut el) = AsyncClient::new(opts, 256);
    let (tx, rx) = mpsc::unbounded_channel();
    let (state_tx, mut state_rx) = watch::channel(None::<Result<(), String>>);
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    let _ = state_tx.send(Some(Ok(())));
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((
                        String::from_utf8_lossy(&p.topic).to_string(),
                        p.payload.to_vec(),
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = state_tx.send(Some(Err(e.to_string())));
                    return;
                }
            }
        }
    });
    let outcome = tokio::time::timeout(WAIT, state_rx.wait_for(|s| s.is_some()))
        .await
        .map_err(|_| "no CONNACK in time".to_string())?
        .map_err(|_| "connection task ended".to_string())?
        .clone();
    match outcome {
        Some(Ok(())) => Ok((c, rx)),
        Some(Err(e)) => Err(e),
        None => Err("no outcome".into()),
    }
}

/// Connects, or fails the test.
pub async fn client(port: u16, id: &str, ca: &str, cert: &str, key: &str) -> Connected {
    match try_client(port, id, ca, cert, key).await {
        Ok(c) => c,
        Err(e) => panic!("{id} could not connect on port {port}: {e}"),
    }
}

/// A claim identity, as baked into a kiosk image.
pub struct Claim<'a> {
    /// The broker's provisioning port.
    pub port: u16,
    /// The CA that signed the broker's certificate.
    pub ca_pem: &'a str,
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
    /// `claim-<batch>`.
    pub cn: &'a str,
}

/// A kiosk asking to be enrolled: its own key, a real CSR, the claim identity. Returns the key,
/// the answers channel and the client (keep it alive to keep listening).
pub async fn provision(
    claim: &Claim<'_>,
    request_id: &str,
    token: Option<String>,
) -> (
    KeyPair,
    mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    AsyncClient,
) {
    let key = KeyPair::generate().unwrap();
    let (rx, c) = provision_with_key(claim, &key, request_id, token).await;
    (key, rx, c)
}

/// The same with a given key (a kiosk retrying after a restart keeps its key).
pub async fn provision_with_key(
    claim: &Claim<'_>,
    key: &KeyPair,
    request_id: &str,
    token: Option<String>,
) -> (mpsc::UnboundedReceiver<(String, Vec<u8>)>, AsyncClient) {
    let csr = CertificateParams::default()
        .serialize_request(key)
        .unwrap()
        .pem()
        .unwrap();
    let (c, rx) = client(
        claim.port,
        &format!("{}-{request_id}", claim.cn),
        claim.ca_pem,
        claim.cert_pem,
        claim.key_pem,
    )
    .await;
    c.subscribe(
        format!("provision/v1/{}/response", claim.cn),
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let request = ProvisionRequest {
        v: Version::CURRENT,
        request_id: request_id.into(),
        csr_pem: csr,
        hardware: Hardware {
            board: "qemu".into(),
            serial: format!("HW-{request_id}"),
            firmware: "0.1.0".into(),
        },
        enrollment_token: token,
    };
    c.publish(
        format!("provision/v1/{}/request", claim.cn),
        QoS::AtLeastOnce,
        false,
        serde_json::to_vec(&request).unwrap(),
    )
    .await
    .unwrap();
    (rx, c)
}

/// The answer to `request_id` among the provisioning responses.
pub async fn answer(
    rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    request_id: &str,
) -> ProvisionResult {
    tokio::time::timeout(WAIT, async {
        loop {
            let (_, payload) = rx.recv().await.expect("answer channel open");
            let r: ProvisionResponse = serde_json::from_slice(&payload).unwrap();
            if r.request_id == request_id {
                return r.result;
            }
        }
    })
    .await
    .expect("an answer in time")
}

/// The next message on `topic` among a client's incoming publishes, within the wait.
pub async fn next_on(
    incoming: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    topic: &str,
) -> Vec<u8> {
    tokio::time::timeout(WAIT, async {
        loop {
            let (t, payload) = incoming.recv().await.expect("connection open");
            if t == topic {
                return payload;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("nothing on {topic}"))
}

/// A device's report that it applied config `version` (message `rep-…`, sequence `seq`).
pub fn applied_report(version: u64, seq: u64) -> Vec<u8> {
    use kiosk_protocol::config::{ConfigOutcome, Reported};
    use kiosk_protocol::{MessageId, UpHeader};
    let reported = Reported {
        v: Version::CURRENT,
        header: UpHeader {
            id: MessageId::parse(&format!("rep-{seq:08}")).unwrap(),
            seq,
            at_ms: 0,
        },
        in_force: Some(version),
        outcome: ConfigOutcome::Applied { version },
    };
    serde_json::to_vec(&reported).unwrap()
}
