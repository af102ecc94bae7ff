//! Live calls for tests: a tenantd with its managed mosquitto and an enrolled kiosk, kiosks as
//! real MQTT clients with their certificates, agents as real WebSocket clients with their
//! session cookies.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kiosk_protocol::call::{CallId, CallKind, Consent, UpSignal, UpSignalBody};
use kiosk_protocol::event::{Event, EventBody};
use kiosk_protocol::journey::{JourneyAnswer, JourneyRequest, JourneyResult, JourneyUp};
use kiosk_protocol::{MessageId, UpHeader, Version};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use serde_json::{json, Value};
use tenantd::fleet::broker::BrokerSettings;
use tenantd::fleet::FleetBroker;
use tenantd::ServeConfig;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::mqtt::{self, free_ports, next_on, WAIT};
use super::{Cred, EnrolledKiosk, TestCloud};

/// A cloud with a managed broker, and the first kiosk enrolled (organization "shop", site
/// "Lyon").
pub struct Setup {
    pub cloud: TestCloud,
    pub first: EnrolledKiosk,
    pub device_port: u16,
    pub provision_port: u16,
}

impl Setup {
    /// Starts the cloud with its broker on free ports; `tune` shortens the call settings.
    pub async fn start(tune: impl FnOnce(&mut ServeConfig) + Send + 'static) -> Setup {
        let [device_port, provision_port, service_port] = free_ports::<3>();
        let settings = BrokerSettings {
            device_listen: SocketAddr::from(([127, 0, 0, 1], device_port)),
            provision_listen: SocketAddr::from(([127, 0, 0, 1], provision_port)),
            service_listen: SocketAddr::from(([127, 0, 0, 1], service_port)),
            ..BrokerSettings::default()
        };
        let cloud = TestCloud::start_with(move |c| {
            c.fleet = Some(FleetBroker::Managed(settings));
            tune(c);
        })
        .await;
        let first = cloud.enroll_kiosk(provision_port).await;
        Setup {
            cloud,
            first,
            device_port,
            provision_port,
        }
    }

    /// Names the first site `name` and replaces its hours: open around the clock, or never.
    pub async fn set_hours(&self, name: &str, open: bool) {
        let day = if open {
            json!([{ "open": "00:00", "close": "24:00" }])
        } else {
            json!([])
        };
        let (status, body) = self
            .cloud
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/orgs/shop/sites/{}", self.first.site),
                &self.first.admin,
                Some(json!({ "name": name, "timezone": "Europe/Paris",
                    "business_hours": { "mon": day, "tue": day, "wed": day, "thu": day,
                                        "fri": day, "sat": day, "sun": day } })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// The first kiosk, connected.
    pub async fn first_kiosk(&self) -> Kiosk {
        let f = &self.first;
        Kiosk::connect(self, f.device_id.as_str(), &f.certificate_pem, &f.key_pem).await
    }

    /// One more kiosk in the first one's site, enrolled and connected.
    pub async fn another_kiosk(&self, request_id: &str) -> Kiosk {
        let (id, cert, key) = self
            .cloud
            .enroll_another(&self.first, self.provision_port, request_id)
            .await;
        Kiosk::connect(self, id.as_str(), &cert, &key).await
    }
}

/// A kiosk on the device listener, listening on its `down/#`.
pub struct Kiosk {
    pub id: String,
    pub client: AsyncClient,
    pub incoming: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    pub seq: u64,
}

impl Kiosk {
    pub async fn connect(s: &Setup, id: &str, cert: &str, key: &str) -> Kiosk {
        let (client, incoming) =
            mqtt::client(s.device_port, id, &s.first.server_ca, cert, key).await;
        client
            .subscribe(format!("kiosk/v1/{id}/down/#"), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        Kiosk {
            id: id.to_string(),
            client,
            incoming,
            seq: 0,
        }
    }

    fn header(&mut self, prefix: &str) -> UpHeader {
        self.seq += 1;
        UpHeader {
            id: MessageId::parse(&format!("{prefix}-{:06}-{}", self.seq, &self.id[6..])).unwrap(),
            seq: self.seq,
            at_ms: 0,
        }
    }

    pub async fn signal(&mut self, body: UpSignalBody) {
        let signal = UpSignal {
            v: Version::CURRENT,
            header: self.header("sig"),
            body,
        };
        self.client
            .publish(
                format!("kiosk/v1/{}/up/signal", self.id),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&signal).unwrap(),
            )
            .await
            .unwrap();
    }

    /// Places a test call.
    pub async fn place(&mut self, request: &str) {
        self.signal(UpSignalBody::Place {
            request: request.into(),
            kind: CallKind::Test,
            language: None,
            customer: None,
            consent: None,
        })
        .await;
    }

    /// Places a customer call with a customer token (or none) and a consent answer.
    pub async fn place_customer(
        &mut self,
        request: &str,
        token: Option<&str>,
        language: Option<&str>,
        consent: Option<Consent>,
    ) {
        self.signal(UpSignalBody::Place {
            request: request.into(),
            kind: CallKind::Customer,
            language: language.map(str::to_string),
            customer: token.map(str::to_string),
            consent,
        })
        .await;
    }

    /// Ends (or cancels) a call.
    pub async fn end(&mut self, call: &str, reason: kiosk_protocol::call::EndReason) {
        self.signal(UpSignalBody::End {
            call: CallId::parse(call).unwrap(),
            reason,
        })
        .await;
    }

    /// Sends an event on `up/events` with message id `id` (the outbox sends again with the
    /// same id), or a new one.
    pub async fn event(&mut self, id: Option<&str>, body: EventBody) -> String {
        let mut header = self.header("evt");
        if let Some(id) = id {
            header.id = MessageId::parse(id).unwrap();
        }
        let message = header.id.as_str().to_string();
        let event = Event {
            v: Version::CURRENT,
            header,
            body,
        };
        self.client
            .publish(
                format!("kiosk/v1/{}/up/events", self.id),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&event).unwrap(),
            )
            .await
            .unwrap();
        message
    }

    pub async fn next_call(&mut self) -> Value {
        let topic = format!("kiosk/v1/{}/down/call", self.id);
        serde_json::from_slice(&next_on(&mut self.incoming, &topic).await).unwrap()
    }

    pub async fn next_signal(&mut self) -> Value {
        let topic = format!("kiosk/v1/{}/down/signal", self.id);
        serde_json::from_slice(&next_on(&mut self.incoming, &topic).await).unwrap()
    }

    /// Nothing arrives on `down/call` within `wait`.
    pub async fn quiet(&mut self, wait: Duration) {
        let got = tokio::time::timeout(wait, self.next_call()).await;
        assert!(got.is_err(), "unexpected call message: {:?}", got.ok());
    }

    /// Publishes a journey message with the message id `message` (a repeat keeps its id).
    pub async fn publish_journey(&mut self, message: &str, request: &str, body: JourneyRequest) {
        let up = JourneyUp {
            v: Version::CURRENT,
            header: UpHeader {
                id: MessageId::parse(message).unwrap(),
                seq: self.seq,
                at_ms: 0,
            },
            request: request.into(),
            body,
        };
        self.client
            .publish(
                format!("kiosk/v1/{}/up/journey", self.id),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&up).unwrap(),
            )
            .await
            .unwrap();
    }

    /// Publishes a journey message with a new message id, and returns it.
    pub async fn send_journey(&mut self, request: &str, body: JourneyRequest) -> String {
        let message = self.header("jrn").id.as_str().to_string();
        self.publish_journey(&message, request, body).await;
        message
    }

    /// The next answer on `down/journey`, with its raw payload.
    pub async fn journey_answer_raw(&mut self) -> (JourneyAnswer, String) {
        let topic = format!("kiosk/v1/{}/down/journey", self.id);
        let payload = next_on(&mut self.incoming, &topic).await;
        let text = String::from_utf8(payload).unwrap();
        (serde_json::from_str(&text).unwrap(), text)
    }

    pub async fn journey_answer(&mut self) -> JourneyAnswer {
        self.journey_answer_raw().await.0
    }

    /// Sends a journey message and waits for the answer to the same request.
    pub async fn ask(&mut self, request: &str, body: JourneyRequest) -> JourneyResult {
        self.send_journey(request, body).await;
        let a = self.journey_answer().await;
        assert_eq!(a.request, request);
        a.result
    }

    /// Nothing arrives on `down/journey` within `wait`.
    pub async fn journey_quiet(&mut self, wait: Duration) {
        let topic = format!("kiosk/v1/{}/down/journey", self.id);
        let got = tokio::time::timeout(wait, next_on(&mut self.incoming, &topic)).await;
        assert!(got.is_err(), "unexpected answer: {:?}", got.ok());
    }
}

pub type Socket = WebSocketStream<TlsStream<TcpStream>>;

fn tls_connector(ca_file: &std::path::Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_file).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Opens the call WebSocket of `org` with `cred`; the HTTP status when it is refused.
pub async fn open_ws(
    cloud: &TestCloud,
    org: &str,
    cred: &Cred,
    origin: Option<&str>,
) -> Result<Socket, u16> {
    let port = cloud.server.as_ref().unwrap().addr.port();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tls_connector(cloud.ca_file())
        .connect(name, tcp)
        .await
        .unwrap();
    let mut request = format!("wss://localhost:{port}/api/v1/orgs/{org}/calls/ws")
        .into_client_request()
        .unwrap();
    match cred {
        Cred::Cookie(c) => {
            request.headers_mut().insert(
                "cookie",
                HeaderValue::from_str(&format!("__Host-kc_session={c}")).unwrap(),
            );
        }
        Cred::Bearer(t) => {
            request.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
            );
        }
        Cred::None => {}
    }
    if let Some(o) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    match tokio_tungstenite::client_async(request, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// An agent's socket.
pub struct Agent {
    pub ws: Socket,
}

impl Agent {
    pub async fn open(cloud: &TestCloud, org: &str, cred: &Cred) -> Agent {
        let ws = open_ws(cloud, org, cred, None).await.expect("socket opens");
        let mut agent = Agent { ws };
        let hello = agent.next().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        agent
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, t: String) {
        self.ws.send(Message::text(t)).await.unwrap();
    }

    /// The next JSON frame (pongs skipped).
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.ws.next().await.expect("socket open").unwrap() {
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap();
                        if v["type"] != "pong" {
                            return v;
                        }
                    }
                    Message::Close(c) => panic!("socket closed: {c:?}"),
                    _ => {}
                }
            }
        })
        .await
        .expect("a frame in time")
    }

    /// Nothing but pongs arrives within `wait`.
    pub async fn quiet(&mut self, wait: Duration) {
        let got = tokio::time::timeout(wait, self.next()).await;
        assert!(got.is_err(), "unexpected frame: {:?}", got.ok());
    }

    pub async fn available(&mut self) {
        self.send(json!({ "type": "available", "available": true }))
            .await;
        let v = self.next().await;
        assert_eq!(v, json!({ "type": "availability", "available": true }));
    }

    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.next().await;
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["code"], code, "{v}");
        v
    }

    /// The next frame must be `ringing` for `call`.
    pub async fn rings(&mut self, call: &str) -> Value {
        let v = self.next().await;
        assert_eq!(v["type"], "ringing", "{v}");
        assert_eq!(v["call"], call, "{v}");
        v
    }
}
