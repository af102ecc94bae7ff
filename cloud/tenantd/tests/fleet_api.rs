//! The fleet through tenantd's API with the managed broker running: a claim batch made by the
//! super admin, an enrollment token made by an org admin, a simulated kiosk enrolled with them
//! over MQTT, then revoked while connected: cut off within 60 s, and still out after mosquitto
//! is killed and brought back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::mqtt::{self, answer, client, free_port, try_client, Claim};
use common::TestCloud;
use kiosk_protocol::provision::ProvisionResult;
use reqwest::Method;
use serde_json::json;
use tenantd::fleet::broker::BrokerSettings;
use tenantd::tenancy::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_device_is_revoked_within_a_minute_and_stays_out() {
    let settings = BrokerSettings {
        device_listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
        provision_listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
        service_listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
        ..BrokerSettings::default()
    };
    let ports = settings.clone();
    let cloud = TestCloud::start_with(move |c| c.fleet = Some(settings)).await;
    let root = cloud.login_root().await;

    // The platform makes a claim certificate for a batch of images.
    let (status, batch) = cloud
        .call(
            Method::POST,
            "/api/v1/claim-batches",
            &root,
            Some(json!({ "name": "lyon-2026", "note": "first run" })),
        )
        .await;
    assert_eq!(status, 201, "{batch}");
    let (claim_cert, claim_key, server_ca) = (
        batch["certificate_pem"].as_str().unwrap().to_string(),
        batch["key_pem"].as_str().unwrap().to_string(),
        batch["server_ca_pem"].as_str().unwrap().to_string(),
    );
    assert!(server_ca.contains("BEGIN CERTIFICATE"));

    // An org admin makes an enrollment token for a site.
    let org = cloud.create_org(&root, "shop").await;
    let admin = cloud.staff(&org, "boss@shop.example", Role::OrgAdmin).await;
    let site = cloud.add_site(&org, "Lyon");
    let (status, token) = cloud
        .call(
            Method::POST,
            "/api/v1/orgs/shop/enrollment-tokens",
            &admin,
            Some(json!({ "site_id": site, "uses": 1 })),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let secret = token["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("ket_"));

    // The kiosk enrolls over MQTT and connects with its own certificate.
    let claim = Claim {
        port: ports.provision_listen.port(),
        ca_pem: &server_ca,
        cert_pem: &claim_cert,
        key_pem: &claim_key,
        cn: "claim-lyon-2026",
    };
    let (key, mut answers, _c) = mqtt::provision(&claim, "req-1", Some(secret)).await;
    let ProvisionResult::Certificate {
        device_id,
        certificate_pem,
        ..
    } = answer(&mut answers, "req-1").await
    else {
        panic!("expected a certificate")
    };
    let key_pem = key.serialize_pem();
    let (_device, mut incoming) = client(
        ports.device_listen.port(),
        device_id.as_str(),
        &server_ca,
        &certificate_pem,
        &key_pem,
    )
    .await;
    let (status, devices) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/devices", &admin, None)
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
            &admin,
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
                    &server_ca,
                    &certificate_pem,
                    &key_pem,
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
        &server_ca,
        &certificate_pem,
        &key_pem,
    )
    .await;
    assert!(again.is_err(), "still refused after the broker restart");
    cloud.server.unwrap().shutdown().await.unwrap();
}
