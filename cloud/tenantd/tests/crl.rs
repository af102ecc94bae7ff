//! The CRLs tenantd serves at `/pki/v1/` (public, PEM): a revocation through the API puts the
//! device's serial on the served CRL and on the file under `DATA/broker/`, at once, also
//! without a broker. With a CRL base URL, issued certificates name it and the served CRL names
//! it as its Issuing Distribution Point; the file does not. `openssl crl` checks the
//! signatures against the CA certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::crl::{read_crl, trim_serial, uri};
use common::{Cred, TestCloud};
use reqwest::Method;
use serde_json::json;
use tenantd::fleet::urls::CrlBaseUrl;
use tenantd::tenancy::Role;
use x509_parser::extensions::{DistributionPointName, ParsedExtension};

fn distribution_point(cert_pem: &str) -> Option<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => {
                points.iter().find_map(|p| match &p.distribution_point {
                    Some(DistributionPointName::FullName(names)) => uri(names),
                    _ => None,
                })
            }
            _ => None,
        })
}

/// `openssl crl` verifies the CRL's signature with the CA certificate.
fn openssl_verifies(crl_pem: &str, ca_pem_file: &std::path::Path, dir: &std::path::Path) {
    let crl_file = dir.join("fetched.crl.pem");
    std::fs::write(&crl_file, crl_pem).unwrap();
    let out = std::process::Command::new("openssl")
        .arg("crl")
        .arg("-in")
        .arg(&crl_file)
        .arg("-CAfile")
        .arg(ca_pem_file)
        .arg("-noout")
        .output()
        .expect("openssl runs");
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("verify OK"),
        "openssl: {said}"
    );
}

async fn fetch(cloud: &TestCloud, path: &str) -> String {
    let r = cloud.request(Method::GET, path, &Cred::None, None).await;
    assert_eq!(r.status(), 200, "{path}");
    assert_eq!(r.headers()["content-type"], "application/x-pem-file");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_is_on_the_served_crl_at_once_even_without_a_broker() {
    let base: CrlBaseUrl = "http://crl.shop.example/pki/v1".parse().unwrap();
    let with_base = base.clone();
    let cloud = TestCloud::start_with(move |c| c.crl_base_url = Some(with_base)).await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    let admin = cloud.staff(&org, "boss@shop.example", Role::OrgAdmin).await;
    let site = cloud.add_site(&org, "Lyon");
    let device = cloud.add_device(&org, site);
    let data = cloud.data_dir();

    // Before: empty lists, served anonymously, signed by their CAs.
    let before = read_crl(&fetch(&cloud, "/pki/v1/device.crl").await);
    assert!(before.serials.is_empty(), "{before:?}");
    assert_eq!(before.idp.as_deref(), Some(base.device().as_str()));
    let claim_before = fetch(&cloud, "/pki/v1/claim.crl").await;
    assert_eq!(read_crl(&claim_before).idp, Some(base.claim()));
    openssl_verifies(
        &claim_before,
        &data.join("pki/claim-ca.pem"),
        cloud.dir.path(),
    );

    // Revoked through the API, by an org admin.
    let (status, body) = cloud
        .call(
            Method::POST,
            &format!("/api/v1/orgs/shop/devices/{device}/revoke"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let serial = trim_serial(body["revoked_serials"][0].as_str().unwrap());

    // The served CRL lists it, with a higher number, still naming its distribution point.
    let served = fetch(&cloud, "/pki/v1/device.crl").await;
    let after = read_crl(&served);
    assert_eq!(after.serials, vec![serial.clone()]);
    assert!(after.number > before.number, "{before:?} then {after:?}");
    assert_eq!(after.idp, Some(base.device()));
    openssl_verifies(&served, &data.join("pki/device-ca.pem"), cloud.dir.path());

    // The file lists it too, without a distribution point, so it covers every certificate.
    let file = read_crl(&std::fs::read_to_string(data.join("broker/device-crl.pem")).unwrap());
    assert_eq!(file.serials, vec![serial]);
    assert_eq!(file.idp, None);
    // No broker ran: nothing else is under broker/.
    assert!(!data.join("broker/mosquitto.conf").exists());

    // The claim CA's CRL is not touched by a device's revocation.
    assert!(read_crl(&fetch(&cloud, "/pki/v1/claim.crl").await)
        .serials
        .is_empty());

    // Claim certificates made from now on name where their CRL is.
    let (status, batch) = cloud
        .call(
            Method::POST,
            "/api/v1/claim-batches",
            &root,
            Some(json!({ "name": "lyon-2026" })),
        )
        .await;
    assert_eq!(status, 201, "{batch}");
    assert_eq!(
        distribution_point(batch["certificate_pem"].as_str().unwrap()),
        Some(base.claim())
    );

    // The routes are in the OpenAPI document, public, with their media type.
    let (_, doc) = cloud
        .call(Method::GET, "/api/v1/openapi.json", &Cred::None, None)
        .await;
    let op = &doc["paths"]["/pki/v1/device.crl"]["get"];
    assert_eq!(op["security"], json!([]));
    assert!(op["responses"]["200"]["content"]["application/x-pem-file"].is_object());
    cloud.server.unwrap().shutdown().await.unwrap();
}
