//! The MQTT driver: one persistent session to the broker's device listener.
//!
//! - Connects with the device certificate (CN = device id) over TLS, MQTT 5, no clean start and
//!   a session expiry, so the broker keeps the device's subscriptions and queued `down/`
//!   messages while it is away; a last will marks it offline (retained), and each connection
//!   marks it online.
//! - Sends the outbox in order, QoS 1, at most [`LinkSettings::max_in_flight`] at a time, and
//!   deletes an entry only when its PUBACK arrives. After a disconnect everything not yet
//!   acknowledged is sent again: delivery is at least once, and the cloud keeps each message id
//!   once.
//! - Re-subscribes to `kiosk/v1/{d}/down/#` on every connection and hands what arrives to the
//!   caller.
//! - Reconnects with full-jitter back-off (1 s to 60 s).
//! - Live messages (call signalling, [`Link::send_live`]) go out at once, QoS 1, beside the
//!   outbox and never stored: they are refused while the link is down and forgotten at a
//!   disconnect, because a call cannot go on without the cloud anyway.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiosk_protocol::telemetry::{Presence, Status};
use kiosk_protocol::topic::{Down, Topic, Up};
use kiosk_protocol::{DeviceId, Version};
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use tokio::sync::{mpsc, watch, Notify};

use crate::backoff::Backoff;
use crate::outbox::SqliteOutbox;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub device_id: DeviceId,
    pub host: String,
    pub port: u16,
    /// The CA that signed the broker's certificate.
    pub server_ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// Publishes awaiting their PUBACK at most.
    pub max_in_flight: usize,
    pub keep_alive: Duration,
    /// How long the broker keeps the session while the device is away.
    pub session_expiry: Duration,
}

impl LinkSettings {
    pub fn new(
        device_id: DeviceId,
        host: &str,
        port: u16,
        ca: &str,
        cert: &str,
        key: &str,
    ) -> Self {
        LinkSettings {
            device_id,
            host: host.to_string(),
            port,
            server_ca_pem: ca.to_string(),
            cert_pem: cert.to_string(),
            key_pem: key.to_string(),
            max_in_flight: 32,
            keep_alive: Duration::from_secs(30),
            session_expiry: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// The rustls client configuration of this link.
    pub fn client_tls(&self) -> Result<Arc<rustls::ClientConfig>, LinkError> {
        client_tls(&self.server_ca_pem, &self.cert_pem, &self.key_pem)
    }
}

/// A rustls client configuration: the broker's CA as the only root, a client certificate as
/// the identity, TLS 1.3 and 1.2, ring as the provider.
pub fn client_tls(
    server_ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, LinkError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| LinkError::Tls(format!("{what}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut server_ca_pem.as_bytes()) {
        let c = c.map_err(|e| bad("server CA", &e))?;
        roots.add(c).map_err(|e| bad("server CA", &e))?;
    }
    let chain: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad("client certificate", &e))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| bad("client key", &e))?
        .ok_or_else(|| LinkError::Tls("no client key".into()))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| bad("TLS versions", &e))?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| bad("client certificate", &e))?;
    Ok(Arc::new(config))
}

/// The link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("TLS: {0}")]
    Tls(String),
}

/// A message from the cloud.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub channel: Down,
    pub payload: Vec<u8>,
}

/// The running link.
#[derive(Debug, Clone)]
pub struct Link {
    /// Wake the sender: something was pushed to the outbox.
    pub wake: Arc<Notify>,
    /// `true` while connected.
    pub connected: watch::Receiver<bool>,
    live: mpsc::Sender<(Up, Vec<u8>)>,
}

/// A live message could not be handed to the link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    #[error("not connected to the cloud")]
    NotConnected,
    #[error("too many messages waiting to be sent")]
    Full,
}

/// Where live messages (outside the outbox) are handed to a running link; shared between the
/// daemon, which swaps links, and the D-Bus service.
#[derive(Debug, Clone)]
pub struct LiveSender {
    live: mpsc::Sender<(Up, Vec<u8>)>,
    connected: watch::Receiver<bool>,
}

impl LiveSender {
    /// Sends `payload` on `channel` now, QoS 1, if connected.
    pub fn send(&self, channel: Up, payload: Vec<u8>) -> Result<(), LiveError> {
        if !*self.connected.borrow() {
            return Err(LiveError::NotConnected);
        }
        self.live.try_send((channel, payload)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LiveError::Full,
            mpsc::error::TrySendError::Closed(_) => LiveError::NotConnected,
        })
    }
}

fn status(state: Presence) -> Vec<u8> {
    serde_json::to_vec(&Status {
        v: Version::CURRENT,
        state,
    })
    .unwrap_or_default()
}

impl Link {
    /// A handle that sends live messages through this link.
    pub fn live_sender(&self) -> LiveSender {
        LiveSender {
            live: self.live.clone(),
            connected: self.connected.clone(),
        }
    }

    /// Waits until the link task has ended (after `shutdown` flipped).
    pub async fn closed(&self) {
        let mut c = self.connected.clone();
        while c.changed().await.is_ok() {}
    }

    /// Starts the link task. Messages from the cloud go to `inbound`; the task ends when
    /// `shutdown` flips (after a clean disconnect, so the last will is not sent).
    pub fn start(
        settings: LinkSettings,
        outbox: Arc<Mutex<SqliteOutbox>>,
        inbound: mpsc::Sender<Inbound>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Link, LinkError> {
        let d = settings.device_id.clone();
        let status_topic = Topic::Status(d.clone()).name();
        let mut opts = MqttOptions::new(d.as_str(), settings.host.clone(), settings.port);
        opts.set_keep_alive(settings.keep_alive);
        opts.set_clean_start(false);
        opts.set_session_expiry_interval(Some(settings.session_expiry.as_secs() as u32));
        opts.set_last_will(LastWill::new(
            status_topic.clone(),
            status(Presence::Offline),
            QoS::AtLeastOnce,
            true,
            None,
        ));
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(
            settings.client_tls()?,
        )));
        opts.set_outgoing_inflight_upper_limit(settings.max_in_flight as u16);
        let (client, mut eventloop) = AsyncClient::new(opts, settings.max_in_flight * 2 + 8);
        let wake = Arc::new(Notify::new());
        let (connected_tx, connected_rx) = watch::channel(false);
        let (live_tx, mut live_rx) = mpsc::channel::<(Up, Vec<u8>)>(256);
        let task_wake = wake.clone();
        let max_in_flight = settings.max_in_flight;
        tokio::spawn(async move {
            let mut backoff = Backoff::default();
            // Publishes handed to rumqttc, waiting for their packet id, in order: an outbox
            // entry's sequence number, or `None` for a live message.
            let mut queued: VecDeque<Option<u64>> = VecDeque::new();
            // Packet id → what it carries, waiting for the PUBACK.
            let mut in_flight: HashMap<u16, Option<u64>> = HashMap::new();
            // The highest sequence number handed over on this connection.
            let mut sent_up_to: u64 = 0;
            let mut online = false;
            loop {
                // Hand over more of the outbox while connected and below the in-flight bound.
                if online && queued.len() + in_flight.len() < max_in_flight {
                    let room = (max_in_flight - queued.len() - in_flight.len()) as u32;
                    let batch = outbox
                        .lock()
                        .map(|o| o.pending(room + (queued.len() + in_flight.len()) as u32))
                        .unwrap_or_else(|_| Ok(Vec::new()))
                        .unwrap_or_default();
                    let floor = sent_up_to;
                    for entry in batch.into_iter().filter(|e| e.seq > floor) {
                        let topic = Topic::Up(d.clone(), entry.channel).name();
                        if client
                            .try_publish(topic, QoS::AtLeastOnce, false, entry.payload)
                            .is_err()
                        {
                            break;
                        }
                        sent_up_to = entry.seq;
                        queued.push_back(Some(entry.seq));
                    }
                }
                tokio::select! {
                    _ = shutdown.changed() => {
                        let _ = client.publish(status_topic.clone(), QoS::AtMostOnce, true, status(Presence::Offline)).await;
                        let _ = client.disconnect().await;
                        // Let the disconnect go out.
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            while eventloop.poll().await.is_ok() {}
                        }).await;
                        return;
                    }
                    _ = task_wake.notified(), if online => {}
                    Some((channel, payload)) = live_rx.recv() => {
                        if online {
                            let topic = Topic::Up(d.clone(), channel).name();
                            if client.try_publish(topic, QoS::AtLeastOnce, false, payload).is_ok() {
                                queued.push_back(None);
                            } else {
                                tracing::warn!(device = %d, "live message dropped: the client queue is full");
                            }
                        } else {
                            tracing::debug!(device = %d, "live message dropped: not connected");
                        }
                    }
                    event = eventloop.poll() => match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            online = true;
                            backoff.reset();
                            let _ = connected_tx.send(true);
                            let _ = client.try_subscribe(format!("kiosk/v1/{d}/down/#"), QoS::AtLeastOnce);
                            // QoS 0, so only outbox entries get packet ids (see below).
                            let _ = client.try_publish(status_topic.clone(), QoS::AtMostOnce, true, status(Presence::Online));
                            tracing::info!(device = %d, "connected");
                        }
                        // Outbox entries and live messages are the only QoS 1 publishes, handed
                        // over in order: the n-th packet id belongs to the n-th queued one. (QoS 0
                        // has id 0.)
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                            if let Some(what) = queued.pop_front() {
                                in_flight.insert(pkid, what);
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            if let Some(Some(seq)) = in_flight.remove(&ack.pkid) {
                                if let Ok(mut o) = outbox.lock() {
                                    if let Err(e) = o.ack(seq) {
                                        tracing::error!(error = %e, seq, "could not delete an acknowledged message");
                                    }
                                }
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let topic = String::from_utf8_lossy(&p.topic).to_string();
                            if let Some(Topic::Down(_, channel)) = Topic::parse(&topic) {
                                let _ = inbound.send(Inbound { channel, payload: p.payload.to_vec() }).await;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if online {
                                tracing::warn!(device = %d, error = %e, "disconnected");
                            }
                            online = false;
                            let _ = connected_tx.send(false);
                            // Everything not acknowledged is sent again from the outbox on the next
                            // connection. rumqttc would replay its own copies first, which would
                            // break the packet id → sequence mapping: the outbox is the one source.
                            eventloop.pending.clear();
                            queued.clear();
                            in_flight.clear();
                            sent_up_to = 0;
                            tokio::select! {
                                _ = shutdown.changed() => return,
                                _ = tokio::time::sleep(backoff.next_delay()) => {}
                            }
                        }
                    }
                }
            }
        });
        Ok(Link {
            wake,
            connected: connected_rx,
            live: live_tx,
        })
    }
}
