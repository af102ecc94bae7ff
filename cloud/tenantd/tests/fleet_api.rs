//! The fleet through tenantd's API with the managed broker running: a claim batch made by the
//! super admin, an enrollment token made by an org admin, a simulated kiosk enrolled with them
//! over MQTT, then revoked while connected: cut off within 60 s, and still out after mosquitto
//! is killed and brought back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::mqtt::{self, client, free_ports, next_on, try_client};
use common::TestCloud;
use reqwest::Method;
use serde_json::json;
use tenantd::fleet::broker::BrokerSettings;
use tenantd::fleet::FleetBroker;

/// A cloud with the managed broker, an org "shop" with an admin and a site, and one kiosk
/// enrolled over MQTT with a claim batch and an enrollment token made through the API.
struct Enrolled {
    cloud: TestCloud,
    ports: BrokerSettings,
    admin: common::Cred,
    site: i64,
    device_id: kiosk_protocol::DeviceId,
    certificate_pem: String,
    key_pem: String,
    server_ca: String,
}

async fn enrolled() -> Enrolled {
    let [device_port, provision_port, service_port] = free_ports::<3>();
    let settings = BrokerSettings {
        device_listen: SocketAddr::from(([127, 0, 0, 1], device_port)),
        provision_listen: SocketAddr::from(([127, 0, 0, 1], provision_port)),
        service_listen: SocketAddr::from(([127, 0, 0, 1], service_port)),
        ..BrokerSettings::default()
    };
    let ports = settings.clone();
    let cloud =
        TestCloud::start_with(move |c| c.fleet = Some(FleetBroker::Managed(settings))).await;
    let kiosk = cloud.enroll_kiosk(ports.provision_listen.port()).await;
    Enrolled {
        cloud,
        ports,
        admin: kiosk.admin,
        site: kiosk.site,
        device_id: kiosk.device_id,
        certificate_pem: kiosk.certificate_pem,
        key_pem: kiosk.key_pem,
        server_ca: kiosk.server_ca,
    }
}

impl Enrolled {
    async fn connect(&self) -> mqtt::Connected {
        client(
            self.ports.device_listen.port(),
            self.device_id.as_str(),
            &self.server_ca,
            &self.certificate_pem,
            &self.key_pem,
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_device_is_revoked_within_a_minute_and_stays_out() {
    let e = enrolled().await;
    let (cloud, ports, admin, site, device_id) =
        (&e.cloud, &e.ports, &e.admin, e.site, &e.device_id);
    let (server_ca, certificate_pem, key_pem) = (&e.server_ca, &e.certificate_pem, &e.key_pem);
    let (_device, mut incoming) = e.connect().await;
    let (status, devices) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/devices", admin, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(devices["devices"][0]["id"], device_id.as_str());
    assert_eq!(devices["devices"][0]["site_id"], site);

    // Revoked while connected.
    let started = Instant::now();
    let (status, body) = cloud
        .call(
            Method::POST,
            &format!("/api/v1/orgs/shop/devices/{device_id}/revoke"),
            admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked_serials"].as_array().unwrap().len(), 1);
    tokio::time::timeout(Duration::from_secs(60), async {
        while incoming.recv().await.is_some() {}
    })
    .await
    .expect("the revoked device's connection ends within 60 s");
    let cut_off = started.elapsed();
    // It cannot come back, even once the broker is up again.
    let refused = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if std::net::TcpStream::connect(ports.device_listen).is_ok() {
                let attempt = try_client(
                    ports.device_listen.port(),
                    device_id.as_str(),
                    server_ca,
                    certificate_pem,
                    key_pem,
                )
                .await;
                return attempt.is_err();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap();
    assert!(refused, "a revoked device must not reconnect");
    println!(
        "revocation: connection ended {:.2} s after the API call",
        cut_off.as_secs_f64()
    );

    // Mosquitto killed and brought back by the supervisor: the CRL still holds.
    let config = cloud.data_dir().join("broker/mosquitto.conf");
    assert!(std::process::Command::new("pkill")
        .args(["-KILL", "-f"])
        .arg(config.display().to_string())
        .status()
        .unwrap()
        .success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let back = tokio::time::timeout(Duration::from_secs(30), async {
        while std::net::TcpStream::connect(ports.device_listen).is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(back.is_ok(), "the supervisor restarts mosquitto");
    let again = try_client(
        ports.device_listen.port(),
        device_id.as_str(),
        server_ca,
        certificate_pem,
        key_pem,
    )
    .await;
    assert!(again.is_err(), "still refused after the broker restart");
    e.cloud.server.unwrap().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_config_and_commands_reach_the_device_and_results_come_back() {
    use kiosk_protocol::command::{Command, CommandResult, Outcome};
    use kiosk_protocol::config::DesiredConfig;
    use kiosk_protocol::{MessageId, UpHeader, Version};
    use rumqttc::v5::mqttbytes::QoS;

    let e = enrolled().await;
    let (cloud, admin, d) = (&e.cloud, &e.admin, e.device_id.as_str().to_string());
    let config_path = format!("/api/v1/orgs/shop/devices/{d}/config");

    // Enrollment made the first config: default settings on the board the kiosk reported.
    let (status, first) = cloud.call(Method::GET, &config_path, admin, None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["history"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first["history"][0]["version"], 1);
    assert_eq!(first["settings"]["board_profile"], "qemu");
    assert_eq!(first["settings"]["default_language"], "en");

    // Set before the device is even connected: it arrives retained.
    let settings = json!({ "default_language": "fr", "languages": ["fr", "en", "ar"], "idle_s": 90,
                           "warning_s": 25, "telemetry_interval_s": 15, "board_profile": "qemu" });
    let (status, set) = cloud
        .call(Method::PUT, &config_path, admin, Some(settings.clone()))
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["version"], 2);
    // A bad document is refused whole, with every reason, and nothing changes.
    let mut bad = settings.clone();
    bad["warning_s"] = json!(3);
    bad["telemetry_interval_s"] = json!(1);
    let (status, refused) = cloud
        .call(Method::PUT, &config_path, admin, Some(bad))
        .await;
    assert_eq!(status, 422, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("idle.warning_s") && message.contains("telemetry_interval_s"),
        "{message}"
    );

    let (device, mut incoming) = e.connect().await;
    device
        .subscribe(format!("kiosk/v1/{d}/down/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let desired: DesiredConfig = serde_json::from_slice(
        &next_on(&mut incoming, &format!("kiosk/v1/{d}/down/desired")).await,
    )
    .unwrap();
    assert_eq!(
        (
            desired.version,
            desired.locale.default.as_str(),
            desired.idle.idle_s
        ),
        (2, "fr", 90)
    );
    assert_eq!(desired.site.name, "Lyon");
    assert_eq!(desired.validate(), Ok(()));

    // The device reports what it applied.
    device
        .publish(
            format!("kiosk/v1/{d}/up/reported"),
            QoS::AtLeastOnce,
            false,
            mqtt::applied_report(2, 1),
        )
        .await
        .unwrap();
    let shown = cloud
        .eventually(admin, &config_path, |b| b["reported_version"] == 2)
        .await;
    assert_eq!(shown["settings"]["default_language"], "fr");
    assert_eq!(shown["history"].as_array().unwrap().len(), 2);

    // The site's hours change: the kiosk gets them at once, its own settings kept.
    let site_path = format!("/api/v1/orgs/shop/sites/{}", e.site);
    let mut site = common::site_body("Lyon");
    site["business_hours"]["sat"] = json!([{ "open": "10:00", "close": "13:00" }]);
    let (status, body) = cloud
        .call(Method::PUT, &site_path, admin, Some(site.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    let desired: DesiredConfig = serde_json::from_slice(
        &next_on(&mut incoming, &format!("kiosk/v1/{d}/down/desired")).await,
    )
    .unwrap();
    assert_eq!(desired.version, 3);
    assert_eq!(desired.site.business_hours.sat.len(), 1, "{desired:?}");
    assert_eq!(
        (desired.locale.default.as_str(), desired.idle.idle_s),
        ("fr", 90)
    );
    // The same site saved again changes no config.
    let (status, _) = cloud.call(Method::PUT, &site_path, admin, Some(site)).await;
    assert_eq!(status, 200);
    // The organization starts recording: the kiosk must ask for consent.
    let (status, body) = cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/settings",
            admin,
            Some(
                json!({ "recording": "on_with_consent", "retention_days": 30,
                         "technicians_may_review_recordings": false }),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let desired: DesiredConfig = serde_json::from_slice(
        &next_on(&mut incoming, &format!("kiosk/v1/{d}/down/desired")).await,
    )
    .unwrap();
    assert_eq!(desired.version, 4, "the unchanged site made no version");
    assert_eq!(
        desired.recording.mode,
        kiosk_protocol::config::Recording::OnWithConsent
    );
    // A site with a kiosk stays until the kiosk is revoked.
    let (status, body) = cloud.call(Method::DELETE, &site_path, admin, None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 kiosk not revoked"),
        "{body}"
    );

    // A command goes down; its result comes back.
    let commands_path = format!("/api/v1/orgs/shop/devices/{d}/commands");
    let (status, sent) = cloud
        .call(
            Method::POST,
            &commands_path,
            admin,
            Some(json!({ "action": "restart_service", "service": "kiosk-media" })),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    let command: Command =
        serde_json::from_slice(&next_on(&mut incoming, &format!("kiosk/v1/{d}/down/cmd")).await)
            .unwrap();
    assert_eq!(command.id.as_str(), sent["id"].as_str().unwrap());
    assert!(command.expires_at_ms.unwrap() > command.issued_at_ms);
    let result = CommandResult {
        v: Version::CURRENT,
        header: UpHeader {
            id: MessageId::parse("res-00000001").unwrap(),
            seq: 2,
            at_ms: 0,
        },
        command_id: command.id.clone(),
        outcome: Outcome::Succeeded {
            detail: "kiosk-media.service restarted".into(),
        },
    };
    device
        .publish(
            format!("kiosk/v1/{d}/up/cmd-result"),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&result).unwrap(),
        )
        .await
        .unwrap();
    let listed = cloud
        .eventually(admin, &commands_path, |b| {
            b["commands"][0]["state"] == "succeeded"
        })
        .await;
    assert_eq!(
        listed["commands"][0]["detail"],
        "kiosk-media.service restarted"
    );

    // An update must name an https URL and a SHA-256.
    let (status, body) = cloud
        .call(Method::POST, &commands_path, admin, Some(json!({ "action": "update", "url": "http://x/b", "sha256": "00", "version": "1", "size": 1 })))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("url"))
    );
    e.cloud.server.unwrap().shutdown().await.unwrap();
}
