//! tenantd with an external broker: a real mosquitto that this test configures itself, as an
//! operator would, from nothing but the files `tenantd fleet export-broker-files` writes and
//! a server certificate of the operator's own CA. tenantd is served with
//! `--broker mqtts://localhost:PORT` (its library equivalent) and the exported service
//! identity; it writes no broker configuration and starts no mosquitto. A kiosk enrolls with
//! a token through the external broker, gets its desired config and reports it; a test call
//! waiting in the queue while tenantd restarts is ended on the kiosk; a revocation
//! goes on the served CRL and the CRL file (the certificates name a CRL distribution point,
//! which the file-reading broker takes as well), and tenantd bans and kicks the device through the
//! broker's admin API (a stand-in for EMQX's REST API, recording what it is sent). Restarted
//! with tenantd's current CRL file, the broker refuses the revoked device.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, post};
use axum::Router;
use base64::Engine as _;
use common::crl::{read_crl, trim_serial};
use common::mqtt::{self, free_ports, next_on, try_client, WAIT};
use common::{Cred, TestCloud};
use kiosk_protocol::call::{CallKind, UpSignal, UpSignalBody};
use kiosk_protocol::config::DesiredConfig;
use kiosk_protocol::{MessageId, UpHeader, Version};
use reqwest::Method;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{json, Value};
use tenantd::fleet::export::names;
use tenantd::fleet::external::{BrokerAdmin, ExternalBroker, ExternalFiles};
use tenantd::fleet::urls::CrlBaseUrl;
use tenantd::fleet::FleetBroker;
use tokio::sync::mpsc;

/// The operator's broker: mosquitto with three listeners (kiosks, provisioning, tenantd),
/// configured from the exported files.
struct OperatorBroker {
    dir: PathBuf,
    device_port: u16,
    provision_port: u16,
    service_port: u16,
    /// The operator's CA, which signed the broker's server certificate (`--broker-ca`).
    server_ca_file: PathBuf,
    child: Option<Child>,
}

impl OperatorBroker {
    /// Makes the operator's CA and the broker's certificate, copies the exported CRLs where
    /// the broker reads them, writes mosquitto's configuration and starts it.
    fn start(dir: &Path, export: &Path) -> OperatorBroker {
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Operator broker CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let server_ca_file = dir.join("operator-ca.pem");
        std::fs::write(&server_ca_file, ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        for crl in [names::DEVICE_CRL, names::CLAIM_CRL] {
            std::fs::copy(export.join(crl), dir.join(crl)).unwrap();
        }
        let [device_port, provision_port, service_port] = free_ports::<3>();
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap()
            .name;
        let e = |name: &str| export.join(name).display().to_string();
        let d = |name: &str| dir.join(name).display().to_string();
        let listener = |port: u16, ca: &str, crl: Option<&str>, acl: &str| {
            format!(
                "listener {port} 127.0.0.1\nprotocol mqtt\nallow_anonymous false\n\
                 require_certificate true\nuse_identity_as_username true\ntls_version tlsv1.2\n\
                 cafile {}\n{}certfile {}\nkeyfile {}\nacl_file {}\n\n",
                e(ca),
                crl.map(|c| format!("crlfile {}\n", d(c)))
                    .unwrap_or_default(),
                d("server.pem"),
                d("server.key"),
                e(acl),
            )
        };
        let config = format!(
            "user {user}\nper_listener_settings true\npersistence false\nlog_dest stderr\n\
             log_type all\nconnection_messages true\n\n{}{}{}",
            listener(
                device_port,
                names::DEVICE_CA,
                Some(names::DEVICE_CRL),
                names::MOSQUITTO_DEVICE_ACL
            ),
            listener(
                provision_port,
                names::CLAIM_CA,
                Some(names::CLAIM_CRL),
                names::MOSQUITTO_PROVISION_ACL
            ),
            listener(
                service_port,
                names::SERVICE_CA,
                None,
                names::MOSQUITTO_SERVICE_ACL
            ),
        );
        std::fs::write(dir.join("mosquitto.conf"), config).unwrap();
        let mut broker = OperatorBroker {
            dir: dir.to_path_buf(),
            device_port,
            provision_port,
            service_port,
            server_ca_file,
            child: None,
        };
        broker.run();
        broker
    }

    /// Starts mosquitto and waits until its three listeners accept connections.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .unwrap();
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("mosquitto is installed (scripts/test installs it)");
        self.child = Some(child);
        for port in [self.device_port, self.provision_port, self.service_port] {
            let deadline = std::time::Instant::now() + WAIT;
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the operator's mosquitto did not listen on {port}: {}",
                    std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Stops mosquitto (SIGTERM) and waits for it.
    fn halt(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }
}

impl Drop for OperatorBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A stand-in for EMQX's REST API: records each request (method, path, Authorization
/// header, JSON body) and answers as EMQX does.
struct AdminApi {
    url: String,
    key_file: PathBuf,
    requests: mpsc::UnboundedReceiver<(String, String, String, Value)>,
}

impl AdminApi {
    async fn start(dir: &Path) -> AdminApi {
        let (tx, requests) = mpsc::unbounded_channel();
        let ban_tx = tx.clone();
        let app = Router::new()
            .route(
                "/api/v5/banned",
                post(
                    move |headers: HeaderMap, body: axum::Json<Value>| async move {
                        let _ = ban_tx.send((
                            "POST".into(),
                            "/api/v5/banned".into(),
                            auth(&headers),
                            body.0.clone(),
                        ));
                        (StatusCode::OK, axum::Json(body.0))
                    },
                ),
            )
            .route(
                "/api/v5/clients/{id}",
                delete(
                    move |headers: HeaderMap, UrlPath(id): UrlPath<String>| async move {
                        let _ = tx.send((
                            "DELETE".into(),
                            format!("/api/v5/clients/{id}"),
                            auth(&headers),
                            Value::Null,
                        ));
                        StatusCode::NO_CONTENT
                    },
                ),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let key_file = dir.join("emqx-api.key");
        std::fs::write(&key_file, "ops-key:s3cret\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        AdminApi {
            url: format!("http://127.0.0.1:{}", addr.port()),
            key_file,
            requests,
        }
    }

    async fn next(&mut self) -> (String, String, String, Value) {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("the admin API is called in time")
            .unwrap()
    }
}

fn auth(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Waits until the fleet link is (or is no longer) connected.
async fn link_becomes(connected: &mut tokio::sync::watch::Receiver<bool>, up: bool, what: &str) {
    tokio::time::timeout(Duration::from_secs(30), connected.wait_for(|c| *c == up))
        .await
        .unwrap_or_else(|_| panic!("{what}"))
        .unwrap();
}

/// Whether a certificate (PEM) holds `url` (as its CRL distribution point).
fn certificate_pem_names(cert_pem: &str, url: &str) -> bool {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    pem.contents.windows(url.len()).any(|w| w == url.as_bytes())
}

/// The mosquitto processes running with a configuration under `dir`.
fn mosquittos_under(dir: &Path) -> usize {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("mosquitto") && c.contains(&needle))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_configured_from_the_export_serves_the_fleet() {
    let prepared = TestCloud::bootstrap();
    let data = prepared.data.clone();
    let root_dir = prepared.dir.path().to_path_buf();

    // The operator's export, with the real command.
    let export = root_dir.join("export");
    let out = Command::new(env!("CARGO_BIN_EXE_tenantd"))
        .args(["fleet", "export-broker-files", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&export)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.starts_with("wrote 13 files to "), "{printed}");
    println!("{printed}");
    // Never a CA key: the only key is the service identity's, and it is none of the CAs'.
    let service_key = std::fs::read_to_string(export.join(names::SERVICE_KEY)).unwrap();
    for entry in std::fs::read_dir(&export).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() != names::SERVICE_KEY {
            assert!(!text.contains("PRIVATE KEY"), "{}", path.display());
        }
    }
    for ca in ["device", "claim", "service"] {
        let ca_key = std::fs::read_to_string(data.join(format!("pki/{ca}-ca.key"))).unwrap();
        assert_ne!(service_key, ca_key);
    }

    // The operator's broker, and its admin API.
    let mut broker = OperatorBroker::start(&root_dir.join("operator-broker"), &export);
    let mut admin_api = AdminApi::start(&root_dir).await;
    let external = ExternalBroker::load(
        format!("mqtts://localhost:{}", broker.service_port)
            .parse()
            .unwrap(),
        &ExternalFiles {
            server_ca: broker.server_ca_file.clone(),
            service_cert: export.join(names::SERVICE_CERT),
            service_key: export.join(names::SERVICE_KEY),
        },
        None,
    )
    .unwrap();
    let admin = BrokerAdmin::load(
        admin_api.url.parse().unwrap(),
        &admin_api.key_file,
        &external.server_ca_pem,
    )
    .unwrap();
    let external = external.with_admin(admin);
    // Certificates name where brokers that fetch CRLs find them; this broker reads files, and
    // takes both the certificates and the files.
    let crl_base: CrlBaseUrl = "http://crl.shop.example/pki/v1".parse().unwrap();
    let tune = {
        let (external, crl_base) = (external.clone(), crl_base.clone());
        move |c: &mut tenantd::ServeConfig| {
            c.fleet = Some(FleetBroker::External(external));
            c.crl_base_url = Some(crl_base);
        }
    };
    let mut cloud = TestCloud::serve(prepared, tune.clone()).await;

    // The fleet link connects to the operator's broker; tenantd runs no broker of its own.
    let fleet = cloud.server.as_ref().unwrap().fleet.clone().unwrap();
    let mut connected = fleet.link.connected.clone();
    link_becomes(
        &mut connected,
        true,
        "the fleet link connects to the external broker",
    )
    .await;
    assert!(fleet.managed_settings().is_none());
    assert!(!data.join("broker/mosquitto.conf").exists());
    assert!(!data.join("broker/data").exists());
    assert_eq!(mosquittos_under(&data), 0, "tenantd started no mosquitto");
    assert_eq!(mosquittos_under(&broker.dir), 1, "the operator's runs");

    // A kiosk enrolls with a token through the operator's provisioning listener; its claim
    // batch handed it the operator's CA, the one that signed the broker's certificate.
    let kiosk = cloud.enroll_kiosk(broker.provision_port).await;
    let (admin, server_ca) = (&kiosk.admin, &kiosk.server_ca);
    assert_eq!(
        *server_ca,
        std::fs::read_to_string(&broker.server_ca_file).unwrap()
    );
    let (d, certificate_pem, key_pem) = (
        kiosk.device_id.as_str().to_string(),
        &kiosk.certificate_pem,
        &kiosk.key_pem,
    );
    assert!(certificate_pem_names(certificate_pem, &crl_base.device()));

    // Its desired config goes out retained; the kiosk connects with its own certificate and
    // gets it, then reports it.
    let config_path = format!("/api/v1/orgs/shop/devices/{d}/config");
    let (status, set) = cloud
        .call(
            Method::PUT,
            &config_path,
            admin,
            Some(
                json!({ "default_language": "fr", "languages": ["fr", "en"], "idle_s": 90,
                         "warning_s": 25, "telemetry_interval_s": 30, "board_profile": "qemu" }),
            ),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    let (kiosk, mut incoming) =
        mqtt::client(broker.device_port, &d, server_ca, certificate_pem, key_pem).await;
    kiosk
        .subscribe(format!("kiosk/v1/{d}/down/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let desired: DesiredConfig = serde_json::from_slice(
        &next_on(&mut incoming, &format!("kiosk/v1/{d}/down/desired")).await,
    )
    .unwrap();
    // Version 1 came with the enrollment; the admin's settings are version 2.
    assert_eq!((desired.version, desired.site.name.as_str()), (2, "Lyon"));
    kiosk
        .publish(
            format!("kiosk/v1/{d}/up/reported"),
            QoS::AtLeastOnce,
            false,
            mqtt::applied_report(2, 1),
        )
        .await
        .unwrap();
    cloud
        .eventually(admin, &config_path, |b| b["reported_version"] == 2)
        .await;

    // A test call waits in the queue when tenantd stops. Started again, tenantd ends it in
    // its store and tells the kiosk, whose broker stayed up all along: without that, the
    // kiosk would wait for an agent that can never come.
    let place = UpSignal {
        v: Version::CURRENT,
        header: UpHeader {
            id: MessageId::parse("sig-000001-restart").unwrap(),
            seq: 1,
            at_ms: 0,
        },
        body: UpSignalBody::Place {
            request: "req-restart-0001".into(),
            kind: CallKind::Test,
            language: None,
            customer: None,
            consent: None,
        },
    };
    let call_topic = format!("kiosk/v1/{d}/down/call");
    kiosk
        .publish(
            format!("kiosk/v1/{d}/up/signal"),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&place).unwrap(),
        )
        .await
        .unwrap();
    let queued: Value = serde_json::from_slice(&next_on(&mut incoming, &call_topic).await).unwrap();
    assert_eq!(
        (queued["event"].as_str(), queued["request"].as_str()),
        (Some("queued"), Some("req-restart-0001")),
        "{queued}"
    );
    let call = queued["call"].as_str().unwrap().to_string();
    cloud.restart(tune).await;
    let ended: Value = serde_json::from_slice(&next_on(&mut incoming, &call_topic).await).unwrap();
    assert_eq!(
        ended,
        json!({ "v": 1, "call": call, "request": "req-restart-0001", "event": "ended",
                "reason": "other", "by": "cloud" })
    );
    let (status, listed) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/calls", admin, None)
        .await;
    assert_eq!(status, 200, "{listed}");
    let row = &listed["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == call.as_str())
        .unwrap();
    assert_eq!(
        (
            row["state"].as_str(),
            row["end_reason"].as_str(),
            row["ended_by"].as_str()
        ),
        (Some("ended"), Some("other"), Some("cloud")),
        "{row}"
    );
    let fleet = cloud.server.as_ref().unwrap().fleet.clone().unwrap();
    let mut connected = fleet.link.connected.clone();
    link_becomes(&mut connected, true, "the new fleet link connects").await;

    // Revoked: on the served CRL and the file at once, and banned and kicked through the
    // broker's admin API.
    let (status, revoked) = cloud
        .call(
            Method::POST,
            &format!("/api/v1/orgs/shop/devices/{d}/revoke"),
            admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    let serial = trim_serial(revoked["revoked_serials"][0].as_str().unwrap());
    let r = cloud
        .request(Method::GET, "/pki/v1/device.crl", &Cred::None, None)
        .await;
    assert_eq!(
        read_crl(&r.text().await.unwrap()).serials,
        vec![serial.clone()]
    );
    let crl_file = data.join("broker/device-crl.pem");
    assert_eq!(
        read_crl(&std::fs::read_to_string(&crl_file).unwrap()).serials,
        vec![serial]
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops-key:s3cret")
    );
    let (method, path, authorization, body) = admin_api.next().await;
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/api/v5/banned"));
    assert_eq!(authorization, basic);
    assert_eq!(
        (body["as"].as_str(), body["who"].as_str()),
        (Some("clientid"), Some(d.as_str()))
    );
    assert!(body["until"].as_str().unwrap().ends_with('Z'), "{body}");
    let (method, path, authorization, _) = admin_api.next().await;
    assert_eq!(
        (method.as_str(), path),
        ("DELETE", format!("/api/v5/clients/{d}"))
    );
    assert_eq!(authorization, basic);

    // The operator's broker loads tenantd's current CRL file and restarts: the revoked
    // kiosk is refused, and the fleet link comes back.
    std::fs::copy(&crl_file, broker.dir.join(names::DEVICE_CRL)).unwrap();
    broker.halt();
    link_becomes(&mut connected, false, "the fleet link sees the broker go").await;
    broker.run();
    let again = try_client(broker.device_port, &d, server_ca, certificate_pem, key_pem).await;
    assert!(again.is_err(), "a revoked kiosk must not reconnect");
    link_becomes(&mut connected, true, "the fleet link reconnects").await;
    cloud.server.unwrap().shutdown().await.unwrap();
    broker.halt();
}
