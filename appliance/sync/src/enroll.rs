//! Enrollment: the device's key pair is made here and never leaves the device; a CSR goes to
//! the cloud from the claim identity baked into the image, with an enrollment token when the
//! image or `kioskctl enroll` has one. The answer is a certificate, or an activation code that
//! the UI shows until an admin claims it.
//!
//! Requests are retried with the same request id, so a lost answer costs nothing: the cloud
//! answers a repeated request with the certificate it already issued.

use std::path::Path;
use std::time::Duration;

use kiosk_protocol::provision::{Hardware, ProvisionRequest, ProvisionResponse, ProvisionResult};
use kiosk_protocol::topic::Topic;
use kiosk_protocol::Version;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::link::client_tls;

/// Enrollment failed for a reason retrying does not fix.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("key: {0}")]
    Key(String),
    #[error("write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the cloud refused enrollment: {0}")]
    Refused(String),
    #[error("stopped")]
    Stopped,
}

/// The device's key: made once, kept in a file of mode 0600 (a TPM-backed key replaces this
/// on boards that have one).
pub fn load_or_create_key(path: &Path) -> Result<rcgen::KeyPair, EnrollError> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        return rcgen::KeyPair::from_pem(&pem).map_err(|e| EnrollError::Key(e.to_string()));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| EnrollError::Key(e.to_string()))?;
    // Written whole or not at all: a power cut mid-write must not leave a key that never parses.
    crate::identity::write_atomic(path, key.serialize_pem().as_bytes(), 0o600)
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    Ok(key)
}

/// The fingerprint the cloud puts in answers meant for `key`: hex of the first 8 bytes of
/// SHA-256 over the raw public key (see `kiosk_protocol::provision::ProvisionResponse`).
pub fn key_fingerprint(key: &rcgen::KeyPair) -> String {
    use rcgen::PublicKeyData as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.der_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A PKCS#10 request for `key` (the cloud chooses the name).
pub fn csr(key: &rcgen::KeyPair) -> Result<String, EnrollError> {
    rcgen::CertificateParams::default()
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(|e| EnrollError::Key(e.to_string()))
}

/// The claim identity and where to use it.
#[derive(Debug, Clone)]
pub struct ClaimSettings {
    /// `claim-<batch>`, the CN of the claim certificate.
    pub claim_cn: String,
    pub host: String,
    /// The broker's provisioning port.
    pub port: u16,
    pub server_ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// What enrollment ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    Certificate {
        device_id: kiosk_protocol::DeviceId,
        certificate_pem: String,
    },
}

/// One enrollment request.
#[derive(Debug, Clone)]
pub struct EnrollRequest {
    /// Stays the same across restarts of enrollment (keep it with the key).
    pub request_id: String,
    pub csr_pem: String,
    /// [`key_fingerprint`] of the key the CSR is for: answers for other keys are ignored.
    pub key_fingerprint: String,
    pub hardware: Hardware,
    pub token: Option<String>,
    /// Send the request again this often until answered.
    pub retry: Duration,
}

/// Sends the request until a certificate comes back. Activation codes go to `codes` for the
/// screen.
pub async fn enroll(
    claim: &ClaimSettings,
    req: &EnrollRequest,
    codes: watch::Sender<Option<String>>,
    mut stop: watch::Receiver<bool>,
) -> Result<Enrolled, EnrollError> {
    let request_id = req.request_id.as_str();
    let tls = client_tls(&claim.server_ca_pem, &claim.cert_pem, &claim.key_pem)
        .map_err(|e| EnrollError::Tls(e.to_string()))?;
    let client_id = format!("{}-{}", claim.claim_cn, request_id);
    let mut opts = MqttOptions::new(client_id, claim.host.clone(), claim.port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
    // One request in flight at a time; rumqttc sizes its in-flight table by this bound.
    opts.set_outgoing_inflight_upper_limit(4);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let request = ProvisionRequest {
        v: Version::CURRENT,
        request_id: request_id.to_string(),
        csr_pem: req.csr_pem.clone(),
        hardware: req.hardware.clone(),
        enrollment_token: req.token.clone(),
    };
    let payload = serde_json::to_vec(&request).map_err(|e| EnrollError::Key(e.to_string()))?;
    let request_topic = Topic::ProvisionRequest(claim.claim_cn.clone()).name();
    let response_topic = Topic::ProvisionResponse(claim.claim_cn.clone()).name();
    let mut backoff = Backoff::default();
    // When to send the request (again). Unanswered, every `retry`; once an activation code is
    // on screen, not until shortly before it expires, so the code people read stays the same
    // (the certificate comes as soon as an admin claims it).
    let mut next_send = tokio::time::Instant::now();
    let mut subscribed = false;
    loop {
        tokio::select! {
            _ = stop.changed() => return Err(EnrollError::Stopped),
            _ = tokio::time::sleep_until(next_send), if subscribed => {
                let _ = client.try_publish(request_topic.clone(), QoS::AtLeastOnce, false, payload.clone());
                next_send = tokio::time::Instant::now() + req.retry;
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff.reset();
                    let _ = client.try_subscribe(response_topic.clone(), QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    subscribed = true;
                    next_send = tokio::time::Instant::now();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Ok(answer) = serde_json::from_slice::<ProvisionResponse>(&p.payload) else { continue };
                    // Another kiosk of the same batch, or one that copied our request id with its
                    // own key: not ours.
                    if answer.request_id != request_id
                        || answer.key_fingerprint.as_deref() != Some(req.key_fingerprint.as_str())
                    {
                        continue;
                    }
                    match answer.result {
                        ProvisionResult::Certificate { device_id, certificate_pem, .. } => {
                            let _ = codes.send(None);
                            let _ = client.disconnect().await;
                            return Ok(Enrolled::Certificate { device_id, certificate_pem });
                        }
                        ProvisionResult::ActivationCode { code, expires_at_ms } => {
                            let _ = codes.send(Some(code));
                            let now_ms = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map(|d| d.as_millis() as i64)
                                .unwrap_or(0);
                            let left = Duration::from_millis((expires_at_ms - now_ms - 120_000).max(0) as u64);
                            next_send = tokio::time::Instant::now() + left.max(req.retry);
                        }
                        ProvisionResult::Rejected { reason } => return Err(EnrollError::Refused(reason)),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    subscribed = false;
                    tracing::warn!(error = %e, "provisioning link down");
                    eventloop.pending.clear();
                    tokio::select! {
                        _ = stop.changed() => return Err(EnrollError::Stopped),
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }
}
