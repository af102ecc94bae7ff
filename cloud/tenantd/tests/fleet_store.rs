//! Fleet rows in a real SQLite file: enrollment-token rules, activation codes, exactly-once
//! device messages, revocation inputs for the CRL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use tenantd::auth::tokens;
use tenantd::store::{By, CrlCa, NewDevice, SqliteStore, StoreError};
use tenantd::tenancy::OrgScope;

fn setup() -> (tempfile::TempDir, SqliteStore, OrgScope, i64) {
    let f = common::store_fixture();
    (f.dir, f.store, f.scope, f.site)
}

fn device(id: &str, org_id: i64, site_id: i64, serial: &str) -> NewDevice {
    NewDevice {
        id: id.into(),
        org_id,
        site_id,
        hardware_serial: format!("HW-{id}"),
        board: "qemu".into(),
        firmware: "0.1.0".into(),
        enrolled_via: "token",
        cert_serial: serial.into(),
        cert_not_after: 2_000_000_000,
        certificate_pem: format!("CERT {id}"),
        provision_key: format!("claim-batch1/req-{id}"),
    }
}

#[test]
fn enrollment_tokens_are_counted_expire_and_revoke() {
    let (_dir, store, scope, site) = setup();
    let by = By::new("boss@shop.example");
    let secret = tokens::new_api_token();
    let info = store
        .blocking(|db| {
            db.create_enrollment_token(
                &scope,
                &by,
                site,
                "ket_abc",
                &secret.digest,
                2,
                by.now + 3600,
            )
        })
        .unwrap();
    assert_eq!(info.uses_left, 2);
    let org_id = scope.org_id();
    for (i, expect) in [(1, true), (2, true), (3, false)] {
        let got = store
            .blocking(|db| {
                db.enroll_with_token(
                    &secret.digest,
                    |o, s| Ok(device(&format!("kiosk-t{i}"), o, s, &format!("0{i}"))),
                    by.now,
                )
            })
            .unwrap();
        assert_eq!(got.is_some(), expect, "use {i}");
        if let Some(d) = got {
            assert_eq!((d.org_id, d.site_id), (org_id, site));
        }
    }
    // Expired and revoked tokens enroll nothing.
    let short = tokens::new_api_token();
    store
        .blocking(|db| {
            db.create_enrollment_token(&scope, &by, site, "ket_def", &short.digest, 5, by.now + 10)
        })
        .unwrap();
    let later = by.now + 11;
    assert!(store
        .blocking(|db| db.enroll_with_token(
            &short.digest,
            |o, s| Ok(device("kiosk-late", o, s, "0a")),
            later
        ))
        .unwrap()
        .is_none());
    let third = tokens::new_api_token();
    let t = store
        .blocking(|db| {
            db.create_enrollment_token(
                &scope,
                &by,
                site,
                "ket_ghi",
                &third.digest,
                5,
                by.now + 3600,
            )
        })
        .unwrap();
    store
        .blocking(|db| db.revoke_enrollment_token(&scope, &by, t.id))
        .unwrap();
    assert!(store
        .blocking(|db| db.enroll_with_token(
            &third.digest,
            |o, s| Ok(device("kiosk-rev", o, s, "0b")),
            by.now
        ))
        .unwrap()
        .is_none());
    // A site of another organization cannot be named.
    let other = OrgScope::trusted_internal(tenantd::tenancy::OrgRef {
        id: 999,
        slug: "x".into(),
        name: "x".into(),
    });
    assert!(matches!(
        store.blocking(|db| db.create_enrollment_token(
            &other,
            &by,
            site,
            "ket_x",
            &tokens::new_api_token().digest,
            1,
            by.now + 60
        )),
        Err(StoreError::NotFound)
    ));
}

#[test]
fn device_messages_are_kept_once_and_revocation_feeds_the_crl() {
    let (_dir, store, scope, site) = setup();
    let by = By::new("boss@shop.example");
    let secret = tokens::new_api_token();
    store
        .blocking(|db| {
            db.create_enrollment_token(
                &scope,
                &by,
                site,
                "ket_abc",
                &secret.digest,
                1,
                by.now + 3600,
            )
        })
        .unwrap();
    store
        .blocking(|db| {
            db.enroll_with_token(
                &secret.digest,
                |o, s| Ok(device("kiosk-one", o, s, "7f01")),
                by.now,
            )
        })
        .unwrap()
        .unwrap();
    for seq in 1..=3u64 {
        for _ in 0..2 {
            store
                .blocking(|db| {
                    db.record_device_message(
                        "kiosk-one",
                        &format!("msg-000{seq}-abcdef"),
                        seq,
                        "events",
                        "{}",
                        by.now,
                    )
                })
                .unwrap();
        }
    }
    let kept = store
        .blocking(|db| db.device_messages("kiosk-one", "events"))
        .unwrap();
    assert_eq!(
        kept.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        store.blocking(|db| db.device_org("kiosk-one")).unwrap(),
        Some(scope.org_id())
    );

    let (_, before) = store.blocking(|db| db.crl_inputs(CrlCa::Device)).unwrap();
    let serials = store
        .blocking(|db| db.revoke_device(&scope, &by, "kiosk-one"))
        .unwrap();
    assert_eq!(serials, vec!["7f01".to_string()]);
    let (revoked, after) = store.blocking(|db| db.crl_inputs(CrlCa::Device)).unwrap();
    assert_eq!(
        revoked.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        vec!["7f01"]
    );
    assert!(after > before, "a new CRL number");
    assert_eq!(
        store.blocking(|db| db.device_org("kiosk-one")).unwrap(),
        None,
        "revoked devices send nothing"
    );
}

#[test]
fn an_activation_code_is_claimed_once_for_a_site_of_the_claiming_org() {
    let (_dir, store, scope, site) = setup();
    let by = By::new("boss@shop.example");
    let code = tokens::digest("K7QM-X2PD");
    let hw = serde_json::json!({ "board": "qemu", "serial": "Q1", "firmware": "0.1.0" });
    store
        .blocking(|db| {
            db.create_activation_code(
                &code,
                "claim-batch1",
                "req-1",
                "CSR",
                &hw,
                by.now + 600,
                by.now,
            )
        })
        .unwrap();
    let org_id = scope.org_id();
    let (pending, dev) = store
        .blocking(|db| {
            db.claim_activation_code(&scope, &by, &code, site, |p| {
                assert_eq!(p.request_id, "req-1");
                Ok(NewDevice {
                    enrolled_via: "activation_code",
                    ..device("kiosk-act", org_id, site, "7f02")
                })
            })
        })
        .unwrap();
    assert_eq!(
        (pending.claim_cn.as_str(), dev.id.as_str()),
        ("claim-batch1", "kiosk-act")
    );
    assert!(
        matches!(
            store.blocking(
                |db| db.claim_activation_code(&scope, &by, &code, site, |_| Ok(device(
                    "kiosk-b", org_id, site, "7f03"
                )))
            ),
            Err(StoreError::NotFound)
        ),
        "a code works once"
    );
    let devices = store.blocking(|db| db.list_devices(&scope)).unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].enrolled_via, "activation_code");
}

/// Enrolls `kiosk-one` with a token.
fn enrolled_one(store: &SqliteStore, scope: &OrgScope, site: i64) {
    let by = By::new("boss@shop.example");
    let secret = tokens::new_api_token();
    store
        .blocking(|db| {
            db.create_enrollment_token(scope, &by, site, "ket_r", &secret.digest, 1, by.now + 3600)
        })
        .unwrap();
    store
        .blocking(|db| {
            db.enroll_with_token(
                &secret.digest,
                |o, s| Ok(device("kiosk-one", o, s, "7f09")),
                by.now,
            )
        })
        .unwrap()
        .unwrap();
}

fn renew_request(n: u64, key: &rcgen::KeyPair, fingerprint: &str) -> Vec<u8> {
    let csr = rcgen::CertificateParams::default()
        .serialize_request(key)
        .unwrap()
        .pem()
        .unwrap();
    serde_json::to_vec(&kiosk_protocol::renew::RenewRequest {
        v: kiosk_protocol::Version::CURRENT,
        header: kiosk_protocol::UpHeader {
            id: kiosk_protocol::MessageId::parse(&format!("renew-{n:04}")).unwrap(),
            seq: n,
            at_ms: 0,
        },
        csr_pem: csr,
        key_fingerprint: fingerprint.to_string(),
    })
    .unwrap()
}

fn answer(out: &[tenantd::fleet::service::Outgoing]) -> kiosk_protocol::renew::RenewResponse {
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].topic, "kiosk/v1/kiosk-one/down/cert");
    serde_json::from_slice(&out[0].payload).unwrap()
}

#[test]
fn certificate_renewal_signs_once_per_request_for_the_connected_identity_and_is_bounded() {
    use kiosk_protocol::renew::RenewResult;
    use tenantd::fleet::service::{handle_renew, RENEW_MAX_PER_HOUR};

    let (dir, store, scope, site) = setup();
    enrolled_one(&store, &scope, site);
    let pki = tenantd::fleet::pki::FleetPki::open(&dir.path().join("data")).unwrap();
    let device = kiosk_protocol::DeviceId::parse("kiosk-one").unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    // The cloud and the kiosk agree on the key's fingerprint.
    let fp = kiosk_sync_fingerprint(&key);
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    assert_eq!(pki.device.check_csr(&csr).unwrap(), fp);
    let now = 1_800_000_000;

    // Signed for the topic's device, whatever the CSR asks.
    let first =
        answer(&handle_renew(&store, &pki, &device, &renew_request(1, &key, &fp), now).unwrap());
    let RenewResult::Certificate {
        certificate_pem, ..
    } = first.result.clone()
    else {
        panic!("{first:?}")
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let cn = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), "kiosk-one");
    // The same request again: the same certificate, no new one.
    let again =
        answer(&handle_renew(&store, &pki, &device, &renew_request(1, &key, &fp), now).unwrap());
    assert_eq!(again.result, first.result);
    // A fingerprint that is not the CSR's key is refused.
    let wrong =
        answer(&handle_renew(&store, &pki, &device, &renew_request(2, &key, "00"), now).unwrap());
    assert!(
        matches!(wrong.result, RenewResult::Rejected { .. }),
        "{wrong:?}"
    );
    // At most RENEW_MAX_PER_HOUR an hour.
    for n in 3..(2 + RENEW_MAX_PER_HOUR as u64) {
        let a = answer(
            &handle_renew(&store, &pki, &device, &renew_request(n, &key, &fp), now).unwrap(),
        );
        assert!(matches!(a.result, RenewResult::Certificate { .. }), "{a:?}");
    }
    let over =
        answer(&handle_renew(&store, &pki, &device, &renew_request(99, &key, &fp), now).unwrap());
    let RenewResult::Rejected { reason } = over.result else {
        panic!("{over:?}")
    };
    assert!(reason.contains("last hour"), "{reason}");
    // A revoked device gets nothing.
    store
        .blocking(|db| db.revoke_device(&scope, &By::new("boss@shop.example"), "kiosk-one"))
        .unwrap();
    let out = handle_renew(
        &store,
        &pki,
        &device,
        &renew_request(100, &key, &fp),
        now + 7200,
    )
    .unwrap();
    assert!(out.is_empty());
}

/// The fingerprint kiosk-sync puts in a renewal request (SHA-256 of the raw public key, first
/// 8 bytes in hex).
fn kiosk_sync_fingerprint(key: &rcgen::KeyPair) -> String {
    use rcgen::PublicKeyData as _;
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(key.der_bytes())[..8])
}

#[test]
fn rotate_commands_are_queued_once_at_two_thirds_of_a_certificates_life() {
    use tenantd::fleet::renewal::{queue_due, RENEW_AT_FRACTION};

    let (_dir, store, scope, site) = setup();
    enrolled_one(&store, &scope, site);
    let issued = store
        .blocking(|db| db.devices_due_renewal(0.0, i64::MAX))
        .unwrap()[0]
        .1;
    let due_at = issued + ((2_000_000_000 - issued) as f64 * RENEW_AT_FRACTION) as i64;
    assert!(queue_due(&store, due_at - 10).unwrap().is_empty());
    let queued = queue_due(&store, due_at).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0, "kiosk-one");
    assert!(queued[0].1.contains("\"action\":\"rotate_certificate\""));
    // Once queued, not again until a new certificate is issued.
    assert!(queue_due(&store, due_at + 3600).unwrap().is_empty());
    let commands = store
        .blocking(|db| db.list_commands(&scope, "kiosk-one"))
        .unwrap();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].created_by, "system:certificate-renewal");
}
