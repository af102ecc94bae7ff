//! The cloud's side of the MQTT link: one client on the broker's service listener.
//!
//! Threads and tasks: the rumqttc event loop runs in one task and forwards every publish to a
//! worker task over a channel; the worker does the store work on the blocking pool, publishes
//! any answer, and only then acknowledges the message (manual acks). So a message is in the
//! store before the broker forgets it, and a crash in between means a redelivery that the
//! message log keeps once: at least once on the wire, exactly once in the store. One worker
//! keeps each device's messages in order.
//!
//! What it handles: provisioning requests (token or activation code), device events, reported
//! config and command results (into the message log), telemetry (newest kept), presence,
//! call signalling (`up/signal`, handed to the call registry; a kiosk going offline ends its
//! call), and the customer journey (`up/journey`, handed to [`crate::otp::Journeys`]).

use std::sync::Arc;
use std::time::Duration;

use kiosk_protocol::command::CommandResult;
use kiosk_protocol::command::Outcome as CmdOutcome;
use kiosk_protocol::config::{ConfigOutcome, Reported};
use kiosk_protocol::event::{Event as DeviceEvent, EventBody};
use kiosk_protocol::provision::{ProvisionRequest, ProvisionResponse, ProvisionResult};
use kiosk_protocol::renew::{RenewRequest, RenewResponse, RenewResult};
use kiosk_protocol::telemetry::{Presence, Status, Telemetry};
use kiosk_protocol::topic::{self, Down, Topic, Up};
use kiosk_protocol::{DeviceId, Version};
use rand::Rng;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::{mpsc, watch};

use super::broker::{BrokerFiles, SERVICE_IDENTITY};
use super::pki::{FleetPki, DEVICE_CERT_DAYS};
use crate::auth::tokens;
use crate::calls::CallHub;
use crate::otp::Journeys;
use crate::store::{ConsentEvent, ConsentWrite, NewDevice, SqliteStore, StoreError, SurveyWrite};

/// How long an activation code shown on a kiosk's screen stays valid.
pub const ACTIVATION_CODE_TTL_S: i64 = 30 * 60;

/// Letters of activation codes: no 0/O, 1/I/L, so they read aloud and type without doubt.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Outgoing {
    /// A device's desired config, retained so the device gets it whenever it connects.
    pub fn desired(device: &str, body: String) -> Outgoing {
        Outgoing {
            topic: format!("kiosk/v1/{device}/down/desired"),
            payload: body.into_bytes(),
            retain: true,
        }
    }
}

/// A new device id: `kiosk-` and 12 base32 letters (60 random bits).
pub fn new_device_id() -> DeviceId {
    const B32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let tail: String = (0..12)
        .map(|_| B32[rng.random_range(0..B32.len())] as char)
        .collect();
    // The alphabet and length always make a valid id.
    DeviceId::parse(&format!("kiosk-{tail}")).unwrap_or_else(|_| unreachable!())
}

/// A new activation code, `XXXX-XXXX`.
pub fn new_activation_code() -> String {
    let mut rng = rand::rng();
    let mut code: String = (0..8)
        .map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char)
        .collect();
    code.insert(4, '-');
    code
}

/// The digest an activation code is stored under (case and dashes do not matter).
pub fn activation_code_digest(code: &str) -> [u8; 32] {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    tokens::digest(&normalized)
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn response(
    claim_cn: &str,
    request_id: &str,
    key_fingerprint: Option<&str>,
    result: ProvisionResult,
) -> Outgoing {
    Outgoing {
        topic: Topic::ProvisionResponse(claim_cn.to_string()).name(),
        payload: json(&ProvisionResponse {
            v: Version::CURRENT,
            request_id: request_id.to_string(),
            key_fingerprint: key_fingerprint.map(str::to_string),
            result,
        }),
        retain: false,
    }
}

/// What a provisioning request brings to an enrollment.
#[derive(Debug, Clone, Copy)]
pub struct Enrollment<'a> {
    pub claim_cn: &'a str,
    pub request_id: &'a str,
    /// Fingerprint of the CSR's public key ([`FleetPki`]'s `check_csr`).
    pub key_fingerprint: &'a str,
    pub csr_pem: &'a str,
    pub hardware: &'a kiosk_protocol::provision::Hardware,
    pub via: &'static str,
}

/// The key a request is remembered under: claim identity, request id and the requesting key,
/// so a batch-mate that copies another kiosk's request id gets an enrollment of its own, never
/// the other kiosk's.
pub fn provision_key(claim_cn: &str, request_id: &str, key_fingerprint: &str) -> String {
    format!("{claim_cn}/{request_id}/{key_fingerprint}")
}

/// Builds the device a request enrolls into `org_id`/`site_id`, signing its CSR.
pub fn make_device(
    pki: &FleetPki,
    org_id: i64,
    site_id: i64,
    e: Enrollment<'_>,
) -> Result<NewDevice, StoreError> {
    let id = new_device_id();
    let issued = pki
        .device
        .sign_csr(e.csr_pem, id.as_str(), DEVICE_CERT_DAYS)
        .map_err(|e| StoreError::Corrupt(format!("bad CSR: {e}")))?;
    Ok(NewDevice {
        id: id.as_str().to_string(),
        org_id,
        site_id,
        hardware_serial: e.hardware.serial.clone(),
        board: e.hardware.board.clone(),
        firmware: e.hardware.firmware.clone(),
        enrolled_via: e.via,
        cert_serial: issued.serial,
        cert_not_after: issued.not_after_unix,
        certificate_pem: issued.certificate_pem,
        provision_key: provision_key(e.claim_cn, e.request_id, e.key_fingerprint),
    })
}

/// Answers a provisioning request published under `claim_cn`.
pub fn handle_provision(
    store: &SqliteStore,
    pki: &FleetPki,
    claim_cn: &str,
    payload: &[u8],
    now: i64,
) -> Result<Vec<Outgoing>, StoreError> {
    if !store.blocking(|db| db.claim_batch_active(claim_cn))? {
        tracing::warn!(
            claim_cn,
            "provisioning request from an unknown or revoked claim identity"
        );
        return Ok(Vec::new());
    }
    let request: ProvisionRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(claim_cn, error = %e, "unreadable provisioning request");
            return Ok(Vec::new());
        }
    };
    let rid = request.request_id.clone();
    if rid.is_empty() || rid.len() > 64 {
        return Ok(vec![response(
            claim_cn,
            &rid,
            None,
            ProvisionResult::Rejected {
                reason: "request_id must have 1 to 64 characters".into(),
            },
        )]);
    }
    let Ok(fingerprint) = pki.device.check_csr(&request.csr_pem) else {
        return Ok(vec![response(
            claim_cn,
            &rid,
            None,
            ProvisionResult::Rejected {
                reason: "the CSR is not a valid signed PKCS#10 request".into(),
            },
        )]);
    };
    let key = provision_key(claim_cn, &rid, &fingerprint);
    let ca_pem = pki.device.pem().to_string();
    // A retried request gets the answer it had.
    match store.blocking(|db| db.enrolled_by_request(&key)) {
        Ok(Some((device_id, certificate_pem))) => {
            let device_id =
                DeviceId::parse(&device_id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            return Ok(vec![response(
                claim_cn,
                &rid,
                Some(&fingerprint),
                ProvisionResult::Certificate {
                    device_id,
                    certificate_pem,
                    ca_pem,
                },
            )]);
        }
        Err(StoreError::NotFound) => {
            return Ok(vec![response(
                claim_cn,
                &rid,
                Some(&fingerprint),
                ProvisionResult::Rejected {
                    reason: "this device was revoked".into(),
                },
            )]);
        }
        Err(e) => return Err(e),
        Ok(None) => {}
    }
    if let Some(token) = &request.enrollment_token {
        let digest = tokens::digest(token);
        let enrolled = store.blocking(|db| {
            db.enroll_with_token(
                &digest,
                |org_id, site_id| {
                    make_device(
                        pki,
                        org_id,
                        site_id,
                        Enrollment {
                            claim_cn,
                            request_id: &rid,
                            key_fingerprint: &fingerprint,
                            csr_pem: &request.csr_pem,
                            hardware: &request.hardware,
                            via: "token",
                        },
                    )
                },
                now,
            )
        })?;
        return Ok(match enrolled {
            Some(device) => {
                tracing::info!(device = %device.id, org = device.org_id, "enrolled with a token");
                let first = store.blocking(|db| first_config(db, &device))?;
                let answer = ProvisionResult::Certificate {
                    device_id: DeviceId::parse(&device.id)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    certificate_pem: device.certificate_pem,
                    ca_pem,
                };
                // The config first: it is retained when the kiosk connects with its certificate.
                first
                    .into_iter()
                    .chain([response(claim_cn, &rid, Some(&fingerprint), answer)])
                    .collect()
            }
            None => vec![response(
                claim_cn,
                &rid,
                Some(&fingerprint),
                ProvisionResult::Rejected {
                    reason:
                        "the enrollment token is not valid (unknown, expired, used up or revoked)"
                            .into(),
                },
            )],
        });
    }
    // No token: an activation code for an admin to claim. A retry while one is open gets a
    // fresh code for the same request (the old one is never shown again, so it cannot leak).
    let code = new_activation_code();
    let digest = activation_code_digest(&code);
    let expires_at = now + ACTIVATION_CODE_TTL_S;
    let hardware = serde_json::to_value(&request.hardware).unwrap_or_default();
    store.blocking(|db| {
        db.create_activation_code(
            &digest,
            claim_cn,
            &rid,
            &request.csr_pem,
            &hardware,
            expires_at,
            now,
        )
    })?;
    Ok(vec![response(
        claim_cn,
        &rid,
        Some(&fingerprint),
        ProvisionResult::ActivationCode {
            code,
            expires_at_ms: expires_at * 1000,
        },
    )])
}

/// The first desired config of a kiosk just enrolled (see [`super::desired`]), made on behalf of
/// the enrollment.
fn first_config(
    db: &mut crate::store::Db<'_>,
    device: &NewDevice,
) -> Result<Vec<Outgoing>, StoreError> {
    let scope = crate::tenancy::OrgScope::trusted_internal(db.org_ref_by_id(device.org_id)?);
    let by = crate::store::By::new(format!("enrollment of {}", device.id));
    let touched = super::desired::Touched::Device(device.id.clone());
    super::desired::refresh(db, &scope, &by, &touched)
}

/// A device may renew its certificate at most this many times an hour (more is refused, so a
/// faulty or stolen device cannot mint certificates without end; a repeated request gets its
/// certificate again and does not count).
pub const RENEW_MAX_PER_HOUR: u32 = 3;

/// Answers a certificate renewal request from an enrolled device: signs the CSR for the
/// identity the device connected with (the topic's device id, which the broker's ACL ties to
/// the certificate's CN), never a name from the request.
pub fn handle_renew(
    store: &SqliteStore,
    pki: &FleetPki,
    device: &DeviceId,
    payload: &[u8],
    now: i64,
) -> Result<Vec<Outgoing>, StoreError> {
    let id = device.as_str();
    let request: RenewRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(device = id, error = %e, "unreadable renewal request dropped");
            return Ok(Vec::new());
        }
    };
    let answer = |result: RenewResult| Outgoing {
        topic: Topic::Down(device.clone(), Down::Cert).name(),
        payload: json(&RenewResponse {
            v: Version::CURRENT,
            request: request.header.id.clone(),
            key_fingerprint: request.key_fingerprint.clone(),
            result,
        }),
        retain: false,
    };
    let rid = request.header.id.as_str().to_string();
    if let Some((certificate_pem, not_after)) = store.blocking(|db| db.renewed_cert(id, &rid))? {
        return Ok(vec![answer(RenewResult::Certificate {
            certificate_pem,
            not_after,
        })]);
    }
    let refuse = |reason: String| {
        tracing::warn!(device = id, %reason, "certificate renewal refused");
        Ok(vec![answer(RenewResult::Rejected { reason })])
    };
    match pki.device.check_csr(&request.csr_pem) {
        Ok(fp) if fp == request.key_fingerprint => {}
        Ok(_) => return refuse("the key fingerprint does not match the CSR".into()),
        Err(e) => return refuse(format!("the request is not a valid CSR: {e}")),
    }
    if store.blocking(|db| db.renewals_since(id, now - 3600))? >= RENEW_MAX_PER_HOUR {
        return refuse(format!(
            "{RENEW_MAX_PER_HOUR} certificates were issued to this device in the last hour; try later"
        ));
    }
    let issued = match pki.device.sign_csr(&request.csr_pem, id, DEVICE_CERT_DAYS) {
        Ok(i) => i,
        Err(e) => return refuse(format!("the CSR could not be signed: {e}")),
    };
    let stored = store.blocking(|db| {
        db.add_renewed_cert(
            id,
            &rid,
            &issued.serial,
            &issued.certificate_pem,
            issued.not_after_unix,
            now,
        )
    })?;
    if !stored {
        return Ok(Vec::new());
    }
    tracing::info!(device = id, serial = %issued.serial, "device certificate renewed");
    Ok(vec![answer(RenewResult::Certificate {
        certificate_pem: issued.certificate_pem,
        not_after: issued.not_after_unix,
    })])
}

/// Stores one device→cloud message and returns any answer. Messages of unknown or revoked
/// devices are dropped.
#[allow(clippy::too_many_arguments)]
pub fn handle_up(
    store: &SqliteStore,
    pki: &FleetPki,
    calls: &CallHub,
    journeys: &Journeys,
    device: &DeviceId,
    channel: Up,
    payload: &[u8],
    now: i64,
) -> Result<Vec<Outgoing>, StoreError> {
    let id = device.as_str();
    if store.blocking(|db| db.device_org(id))?.is_none() {
        tracing::warn!(
            device = id,
            "message from an unknown or revoked device dropped"
        );
        return Ok(Vec::new());
    }
    let text = String::from_utf8_lossy(payload);
    let header = match channel {
        Up::Events => serde_json::from_slice::<DeviceEvent>(payload).map(|e| e.header),
        Up::Reported => serde_json::from_slice::<Reported>(payload).map(|r| r.header),
        Up::CmdResult => serde_json::from_slice::<CommandResult>(payload).map(|r| r.header),
        Up::Telemetry => {
            match serde_json::from_slice::<Telemetry>(payload) {
                Ok(_) => store.blocking(|db| db.record_telemetry(id, &text, now))?,
                Err(e) => tracing::warn!(device = id, error = %e, "unreadable telemetry dropped"),
            }
            return Ok(Vec::new());
        }
        Up::Csr => return handle_renew(store, pki, device, payload, now),
        Up::Signal => return calls.handle_up_signal(device, payload, crate::calls::now_ms()),
        Up::Journey => {
            return journeys.handle_up_journey(device, payload, crate::otp::journey::now_ms())
        }
    };
    match header {
        Ok(h) => {
            let fresh = store.blocking(|db| {
                db.record_device_message(id, h.id.as_str(), h.seq, channel.name(), &text, now)
            })?;
            if !fresh {
                tracing::debug!(device = id, message = %h.id, "duplicate delivery kept once");
                return Ok(Vec::new());
            }
            match channel {
                Up::Reported => {
                    if let Ok(r) = serde_json::from_slice::<Reported>(payload) {
                        let errors = match &r.outcome {
                            ConfigOutcome::Rejected { version, errors } => Some(
                                serde_json::json!({ "version": version, "errors": errors })
                                    .to_string(),
                            ),
                            ConfigOutcome::Applied { .. } => None,
                        };
                        store
                            .blocking(|db| db.record_reported(id, r.in_force, errors.as_deref()))?;
                    }
                }
                Up::CmdResult => {
                    if let Ok(r) = serde_json::from_slice::<CommandResult>(payload) {
                        let (state, detail) = match &r.outcome {
                            CmdOutcome::Accepted => ("accepted", None),
                            CmdOutcome::Succeeded { detail } => ("succeeded", Some(detail.clone())),
                            CmdOutcome::Failed { error } => ("failed", Some(error.clone())),
                            CmdOutcome::Rejected { reason } => ("rejected", Some(reason.clone())),
                        };
                        store.blocking(|db| {
                            db.record_command_result(
                                id,
                                r.command_id.as_str(),
                                state,
                                detail.as_deref(),
                                now,
                            )
                        })?;
                    }
                }
                Up::Events => {
                    if let Ok(e) = serde_json::from_slice::<DeviceEvent>(payload) {
                        record_journey_event(store, id, e)?;
                    }
                }
                _ => {}
            }
            Ok(Vec::new())
        }
        Err(e) => {
            tracing::warn!(device = id, channel = channel.name(), error = %e, "unreadable message dropped");
            Ok(Vec::new())
        }
    }
}

/// The customer journey's events, once each (the caller dropped redeliveries): a survey score
/// for a call of this device, a consent record. Other events are kept in the message log only.
fn record_journey_event(
    store: &SqliteStore,
    device: &str,
    event: DeviceEvent,
) -> Result<(), StoreError> {
    match event.body {
        EventBody::Survey { call, score } => {
            let written = store.blocking(|db| db.record_survey(device, &call, score))?;
            if written != SurveyWrite::Written {
                tracing::warn!(device, %call, score, outcome = ?written, "survey not recorded");
            }
        }
        EventBody::Consent {
            consent_id,
            notice_version,
            granted,
            language,
            call,
        } => {
            let Some(org_id) = store.blocking(|db| db.device_org(device))? else {
                return Ok(());
            };
            let at_ms = if event.header.at_ms > 0 {
                event.header.at_ms
            } else {
                crate::calls::now_ms()
            };
            let consent = ConsentEvent {
                consent_id,
                notice_version,
                granted,
                language,
                call: call.map(|c| c.as_str().to_string()),
                at_ms,
            };
            let written = store.blocking(|db| db.record_consent(device, org_id, &consent))?;
            if written != ConsentWrite::Written {
                tracing::warn!(device, consent = %consent.consent_id, outcome = ?written, "consent not recorded");
            }
        }
        _ => {}
    }
    Ok(())
}

/// Handles one incoming publish.
pub fn handle(
    store: &SqliteStore,
    pki: &FleetPki,
    calls: &CallHub,
    journeys: &Journeys,
    topic_name: &str,
    payload: &[u8],
    now: i64,
) -> Result<Vec<Outgoing>, StoreError> {
    match Topic::parse(topic_name) {
        Some(Topic::ProvisionRequest(claim_cn)) => {
            handle_provision(store, pki, &claim_cn, payload, now)
        }
        Some(Topic::Up(device, channel)) => {
            handle_up(store, pki, calls, journeys, &device, channel, payload, now)
        }
        Some(Topic::Status(device)) => {
            if let Ok(status) = serde_json::from_slice::<Status>(payload) {
                let online = status.state == Presence::Online;
                store.blocking(|db| db.set_presence(device.as_str(), online, now))?;
                if !online {
                    return calls.kiosk_offline(device.as_str(), crate::calls::now_ms());
                }
            }
            Ok(Vec::new())
        }
        _ => Ok(Vec::new()),
    }
}

/// An admin claims an activation code for a site: the device is enrolled, its CSR signed, and
/// the certificate published to the kiosk that is waiting on its claim identity's topic. Without
/// a link (no broker running) nothing is published: the kiosk's retried request finds its device
/// and certificate.
pub async fn claim_activation(
    link: Option<&FleetLink>,
    store: &SqliteStore,
    pki: Arc<FleetPki>,
    scope: crate::tenancy::OrgScope,
    by: crate::store::By,
    code: &str,
    site_id: i64,
) -> Result<NewDevice, StoreError> {
    let digest = activation_code_digest(code);
    let pki2 = pki.clone();
    let org_id = scope.org_id();
    let (pending, device) = store
        .run(move |db| {
            db.claim_activation_code(&scope, &by, &digest, site_id, |p| {
                let hardware: kiosk_protocol::provision::Hardware =
                    serde_json::from_value(p.hardware.clone())
                        .map_err(|e| StoreError::Corrupt(format!("stored hardware: {e}")))?;
                let fingerprint = pki2
                    .device
                    .check_csr(&p.csr_pem)
                    .map_err(|e| StoreError::Corrupt(format!("stored CSR: {e}")))?;
                make_device(
                    &pki2,
                    org_id,
                    site_id,
                    Enrollment {
                        claim_cn: &p.claim_cn,
                        request_id: &p.request_id,
                        key_fingerprint: &fingerprint,
                        csr_pem: &p.csr_pem,
                        hardware: &hardware,
                        via: "activation_code",
                    },
                )
            })
        })
        .await?;
    let device_id = DeviceId::parse(&device.id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let fingerprint = pki
        .device
        .check_csr(&pending.csr_pem)
        .map_err(|e| StoreError::Corrupt(format!("stored CSR: {e}")))?;
    let answer = response(
        &pending.claim_cn,
        &pending.request_id,
        Some(&fingerprint),
        ProvisionResult::Certificate {
            device_id,
            certificate_pem: device.certificate_pem.clone(),
            ca_pem: pki.device.pem().to_string(),
        },
    );
    let first = {
        let device = device.clone();
        store.run(move |db| first_config(db, &device)).await?
    };
    // If a publish is lost, the kiosk's retried request finds the device and gets the same
    // certificate, and the config goes out again when the link is next up.
    if let Some(link) = link {
        for message in first.into_iter().chain([answer]) {
            if let Err(e) = link.publish(message).await {
                tracing::warn!(error = %e, "could not publish to the kiosk now; it is sent again");
            }
        }
    }
    Ok(device)
}

/// Where and how the cloud connects to the broker.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub host: String,
    pub port: u16,
    /// PEM of the CA that signed the broker's server certificate.
    pub server_ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub client_id: String,
}

impl LinkSettings {
    /// The managed broker's service listener, with the files `broker::write_files` made.
    pub fn managed(
        files: &BrokerFiles,
        listen: std::net::SocketAddr,
    ) -> std::io::Result<LinkSettings> {
        // The broker's certificate names localhost and the loopback addresses, plus any public
        // names: dial localhost for loopback, else the address itself.
        let host = if listen.ip().is_loopback() || listen.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            listen.ip().to_string()
        };
        Ok(LinkSettings {
            host,
            port: listen.port(),
            server_ca_pem: std::fs::read_to_string(files.server_ca())?,
            client_cert_pem: std::fs::read_to_string(files.service_client_cert())?,
            client_key_pem: std::fs::read_to_string(files.service_client_key())?,
            client_id: SERVICE_IDENTITY.to_string(),
        })
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut self.server_ca_pem.as_bytes()) {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let chain: Vec<_> = rustls_pemfile::certs(&mut self.client_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let key = rustls_pemfile::private_key(&mut self.client_key_pem.as_bytes())
            .map_err(|e| e.to_string())?
            .ok_or("no private key")?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
        Ok(Arc::new(config))
    }
}

/// A running link: the client (for publishing from API handlers) and its tasks.
#[derive(Debug, Clone)]
pub struct FleetLink {
    client: AsyncClient,
    /// `true` while connected.
    pub connected: watch::Receiver<bool>,
}

impl FleetLink {
    /// Publishes a message (QoS 1).
    pub async fn publish(&self, out: Outgoing) -> Result<(), String> {
        self.client
            .publish(out.topic, QoS::AtLeastOnce, out.retain, out.payload)
            .await
            .map_err(|e| e.to_string())
    }

    /// Connects and starts the event-loop and worker tasks; they end when `shutdown` flips.
    pub fn start(
        settings: LinkSettings,
        store: SqliteStore,
        pki: Arc<FleetPki>,
        calls: CallHub,
        journeys: Journeys,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<FleetLink, String> {
        let mut opts = MqttOptions::new(
            settings.client_id.clone(),
            settings.host.clone(),
            settings.port,
        );
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_start(false);
        opts.set_session_expiry_interval(Some(24 * 3600));
        opts.set_manual_acks(true);
        opts.set_outgoing_inflight_upper_limit(1024);
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(settings.tls()?)));
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        let (connected_tx, connected_rx) = watch::channel(false);
        let (work_tx, mut work_rx) = mpsc::channel::<Publish>(1024);

        // Worker: store, answer, then acknowledge.
        let worker_client = client.clone();
        tokio::spawn(async move {
            while let Some(publish) = work_rx.recv().await {
                let topic = String::from_utf8_lossy(&publish.topic).to_string();
                let payload = publish.payload.to_vec();
                let (store, pki, calls) = (store.clone(), pki.clone(), calls.clone());
                let journeys = journeys.clone();
                let now = crate::store::now_unix();
                let result = tokio::task::spawn_blocking(move || {
                    handle(&store, &pki, &calls, &journeys, &topic, &payload, now)
                })
                .await;
                match result {
                    Ok(Ok(outgoing)) => {
                        for out in outgoing {
                            if let Err(e) = worker_client
                                .publish(out.topic, QoS::AtLeastOnce, out.retain, out.payload)
                                .await
                            {
                                tracing::error!(error = %e, "could not queue an answer");
                            }
                        }
                        if let Err(e) = worker_client.ack(&publish).await {
                            tracing::error!(error = %e, "could not acknowledge");
                        }
                    }
                    // Not acknowledged: the broker delivers it again after a reconnect.
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "message not stored; it will be redelivered")
                    }
                    Err(e) => tracing::error!(error = %e, "message handler failed"),
                }
            }
        });

        // Event loop: (re)connect with back-off, subscribe on every connection.
        let sub_client = client.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => {
                        let _ = sub_client.disconnect().await;
                        return;
                    }
                    event = eventloop.poll() => match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            backoff = Duration::from_millis(200);
                            let _ = connected_tx.send(true);
                            for filter in [topic::cloud::PROVISION, topic::cloud::UP, topic::cloud::STATUS] {
                                if let Err(e) = sub_client.subscribe(filter, QoS::AtLeastOnce).await {
                                    tracing::error!(error = %e, filter, "subscribe failed");
                                }
                            }
                            tracing::info!("fleet link connected");
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            if work_tx.send(p).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let _ = connected_tx.send(false);
                            tracing::warn!(error = %e, "fleet link down; reconnecting");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
        });
        Ok(FleetLink {
            client,
            connected: connected_rx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_codes_have_their_forms() {
        for _ in 0..100 {
            let id = new_device_id();
            assert!(id.as_str().starts_with("kiosk-") && id.as_str().len() == 18);
            let code = new_activation_code();
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            assert!(!code.contains(['0', 'O', '1', 'I', 'L']));
        }
        assert_eq!(
            activation_code_digest("k7qm-x2pd"),
            activation_code_digest("K7QMX2PD")
        );
    }
}
