//! One-time codes, SMS and the customer journey end to end: a real tenantd with its managed
//! mosquitto and SQLite store, kiosks as real MQTT clients with their enrolled certificates
//! publishing `up/journey` and reading `down/journey`, the `log` gateway's outbox file read as
//! a customer's phone would, and `http` gateways against real local HTTP servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::live::{Kiosk, Setup};
use common::mqtt::WAIT;
use common::TestCloud;
use kiosk_protocol::call::{CallKind, EndReason, Party};
use kiosk_protocol::journey::{DeadCode, JourneyRequest, JourneyResult};
use reqwest::Method;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{json, Value};
use tenantd::tenancy::Role;
use tokio::sync::mpsc;

const PHONE: &str = "+33 6 12 34 56 78";
const E164: &str = "+33612345678";
const MASKED: &str = "+33•••••••78";

fn otp_request(phone: &str, language: Option<&str>) -> JourneyRequest {
    JourneyRequest::OtpRequest {
        phone: phone.into(),
        language: language.map(str::to_string),
    }
}

fn verify(code: &str) -> JourneyRequest {
    JourneyRequest::OtpVerify { code: code.into() }
}

/// The `log` gateway's messages.
fn outbox(data: &Path) -> Vec<Value> {
    match std::fs::read_to_string(data.join("sms/outbox.jsonl")) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The messages of `purpose` to `to` in the outbox.
fn messages_to(data: &Path, to: &str, purpose: &str) -> Vec<Value> {
    outbox(data)
        .into_iter()
        .filter(|m| m["to"] == to && m["purpose"] == purpose)
        .collect()
}

/// The code in the newest message to `to`, as the customer's phone shows it.
fn newest_code(data: &Path, to: &str) -> String {
    let messages = messages_to(data, to, "code");
    let text = messages.last().expect("a code message")["text"]
        .as_str()
        .unwrap()
        .to_string();
    let code: String = text.chars().take(6).collect();
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{text}");
    code
}

/// A code other than `code`.
fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

/// A read-only look at the store's rows.
fn db(cloud: &TestCloud) -> rusqlite::Connection {
    rusqlite::Connection::open(cloud.data_dir().join(tenantd::store::DB_FILE)).unwrap()
}

fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Asks for a code to `phone` in session `request`, reads it from the outbox and verifies it;
/// returns the customer token.
async fn verify_new(kiosk: &mut Kiosk, data: &Path, request: &str, phone: &str) -> String {
    let r = kiosk.ask(request, otp_request(phone, Some("en"))).await;
    assert!(matches!(r, JourneyResult::CodeSent { .. }), "{r:?}");
    let e164 = kiosk_protocol::journey::normalize_phone(phone).unwrap();
    let code = newest_code(data, &e164);
    match kiosk.ask(request, verify(&code)).await {
        JourneyResult::Verified { customer, .. } => customer,
        other => panic!("not verified: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_goes_by_sms_and_verifies_once() {
    let s = Setup::start(|_| {}).await;
    let data = s.cloud.data_dir();
    let mut kiosk = s.first_kiosk().await;

    // A code is asked for; the answer masks the number and never holds the code.
    let request_message = kiosk
        .send_journey("j-1", otp_request(PHONE, Some("fr-FR")))
        .await;
    let (answer, raw) = kiosk.journey_answer_raw().await;
    assert_eq!(answer.request, "j-1");
    assert_eq!(
        answer.result,
        JourneyResult::CodeSent {
            masked_phone: MASKED.into(),
            resend_after_s: 30,
            expires_in_s: 300
        }
    );
    let sent = messages_to(&data, E164, "code");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["org"], "shop");
    let code = newest_code(&data, E164);
    let text = sent[0]["text"].as_str().unwrap();
    assert_eq!(
        text,
        format!("{code} est votre code Org shop. Il expire dans 5 minutes.")
    );
    assert!(!raw.contains(&code), "{raw}");
    assert!(!raw.contains(E164), "{raw}");

    // The store keeps keyed hashes only, and the number while the code lives.
    let conn = db(&s.cloud);
    let (phone_e164, code_hash): (Option<String>, Vec<u8>) = conn
        .query_row(
            "SELECT phone_e164, code_hash FROM otp_codes WHERE request_id = 'j-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(phone_e164.as_deref(), Some(E164));
    assert_eq!(code_hash.len(), 32);
    let key = std::fs::metadata(data.join("otp.key")).unwrap();
    assert_eq!(key.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
    }

    // A repeated message gets the same answer, and no second SMS.
    kiosk
        .publish_journey(&request_message, "j-1", otp_request(PHONE, Some("fr-FR")))
        .await;
    assert_eq!(kiosk.journey_answer().await, answer);
    assert_eq!(messages_to(&data, E164, "code").len(), 1);

    // A wrong code, then the right one.
    assert_eq!(
        kiosk.ask("j-1", verify(&wrong(&code))).await,
        JourneyResult::WrongCode { tries_left: 4 }
    );
    let verify_message = kiosk.send_journey("j-1", verify(&code)).await;
    let verified = kiosk.journey_answer().await;
    let JourneyResult::Verified {
        customer,
        masked_phone,
        expires_in_s,
    } = &verified.result
    else {
        panic!("not verified: {verified:?}")
    };
    assert!(
        customer.starts_with("kcu_") && customer.len() == 47,
        "{customer}"
    );
    assert_eq!(masked_phone, MASKED);
    assert_eq!(*expires_in_s, 600);

    // Repeated, the verification answers the same token and counts no try.
    kiosk
        .publish_journey(&verify_message, "j-1", verify(&code))
        .await;
    assert_eq!(kiosk.journey_answer().await, verified);
    // Used once, the code is dead.
    assert_eq!(
        kiosk.ask("j-1", verify(&code)).await,
        JourneyResult::CodeDead {
            why: DeadCode::Used
        }
    );

    // The code's number is gone; the customer is stored by its token's SHA-256 and keeps the
    // number for a callback.
    let (state, phone_e164, tries): (String, Option<String>, i64) = conn
        .query_row(
            "SELECT state, phone_e164, tries FROM otp_codes WHERE request_id = 'j-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), phone_e164, tries), ("verified", None, 1));
    let hash = tenantd::store::customer_token_hash(customer);
    let (device, kept): (String, Option<String>) = conn
        .query_row(
            "SELECT device_id, phone_e164 FROM customers WHERE token_hash = ?1",
            [hash.as_slice()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(device, kiosk.id);
    assert_eq!(kept.as_deref(), Some(E164));

    // The token places one call from this kiosk (the routing's claim).
    let now = jiff::Timestamp::now().as_millisecond();
    let claimed = s
        .cloud
        .store
        .blocking(|db| db.claim_customer(&kiosk.id, customer, "call-claimedfirst", now))
        .unwrap()
        .unwrap();
    assert_eq!(claimed.phone_masked, MASKED);
    assert_eq!(claimed.language.as_deref(), Some("fr-FR"));
    assert!(s
        .cloud
        .store
        .blocking(|db| db.claim_customer(&kiosk.id, customer, "call-claimedsecond", now))
        .unwrap()
        .is_none());

    // The delivery record, masked, for the organization's admin.
    let (status, body) = s
        .cloud
        .call(
            Method::GET,
            "/api/v1/orgs/shop/sms/messages",
            &s.first.admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{body}");
    assert_eq!(messages[0]["phone_masked"], MASKED);
    assert_eq!(messages[0]["status"], "sent");
    assert_eq!(messages[0]["gateway"], "log");
    assert_eq!(messages[0]["purpose"], "code");
    assert!(!body.to_string().contains(E164));

    // Forget: a new session's unused customer loses its number; the used one keeps it.
    let unused = verify_new(&mut kiosk, &data, "j-2", "+33 7 00 00 00 01").await;
    assert_eq!(
        kiosk.ask("j-2", JourneyRequest::Forget).await,
        JourneyResult::Forgotten
    );
    let kept: Option<String> = conn
        .query_row(
            "SELECT phone_e164 FROM customers WHERE token_hash = ?1",
            [tenantd::store::customer_token_hash(&unused).as_slice()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, None);
    // A session with a live code: forgotten, the code is dead and its number gone.
    assert!(matches!(
        kiosk.ask("j-3", otp_request("+33700000002", None)).await,
        JourneyResult::CodeSent { .. }
    ));
    let live_code = newest_code(&data, "+33700000002");
    assert_eq!(
        kiosk.ask("j-3", JourneyRequest::Forget).await,
        JourneyResult::Forgotten
    );
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM otp_codes WHERE request_id = 'j-3' AND phone_e164 IS NULL AND state = 'dead'"
        ),
        1
    );
    assert_eq!(
        kiosk.ask("j-3", verify(&live_code)).await,
        JourneyResult::CodeDead {
            why: DeadCode::NoCode
        }
    );

    // Bad messages are answered, never acted on.
    assert!(matches!(
        kiosk.ask("j-4", otp_request("0612345678", None)).await,
        JourneyResult::InvalidPhone { .. }
    ));
    assert!(matches!(
        kiosk.ask("j-4", verify("12ab56")).await,
        JourneyResult::Unavailable { .. }
    ));
    assert_eq!(
        kiosk.ask("j-4", verify("123456")).await,
        JourneyResult::CodeDead {
            why: DeadCode::NoCode
        }
    );

    // The prune clears a customer's number once its callback window is over.
    let later = jiff::Timestamp::now().as_millisecond() + 2 * 3600 * 1000;
    let pruned = s
        .cloud
        .store
        .blocking(|db| db.prune_journeys(later, 0, later - 90 * 60 * 1000, 0))
        .unwrap();
    assert!(pruned.customer_numbers >= 1, "{pruned:?}");
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM customers WHERE phone_e164 IS NOT NULL"
        ),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_tries_kill_the_code_and_codes_are_bound_to_their_kiosk() {
    let s = Setup::start(|_| {}).await;
    let data = s.cloud.data_dir();
    let mut a = s.first_kiosk().await;
    let (b_id, b_cert, b_key) = s
        .cloud
        .enroll_another(&s.first, s.provision_port, "req-2")
        .await;
    let mut b = Kiosk::connect(&s, b_id.as_str(), &b_cert, &b_key).await;

    // Five wrong tries; the sixth fails even with the right code.
    assert!(matches!(
        a.ask("j-tries", otp_request(PHONE, None)).await,
        JourneyResult::CodeSent { .. }
    ));
    let code = newest_code(&data, E164);
    for left in (0..5).rev() {
        assert_eq!(
            a.ask("j-tries", verify(&wrong(&code))).await,
            JourneyResult::WrongCode { tries_left: left }
        );
    }
    assert_eq!(
        a.ask("j-tries", verify(&code)).await,
        JourneyResult::CodeDead {
            why: DeadCode::TooManyTries
        }
    );
    assert_eq!(
        a.ask("j-tries", JourneyRequest::OtpResend).await,
        JourneyResult::CodeDead {
            why: DeadCode::TooManyTries
        }
    );
    let conn = db(&s.cloud);
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM otp_codes WHERE request_id = 'j-tries' AND state = 'dead' AND phone_e164 IS NULL AND tries = 5"
        ),
        1
    );

    // A code asked on kiosk A fails on kiosk B, with the same session id and the right code,
    // and B's try does not count against A's code.
    let other = "+44 20 7946 0018";
    assert!(matches!(
        a.ask("j-shared", otp_request(other, Some("en"))).await,
        JourneyResult::CodeSent { .. }
    ));
    let code = newest_code(&data, "+442079460018");
    assert_eq!(
        b.ask("j-shared", verify(&code)).await,
        JourneyResult::CodeDead {
            why: DeadCode::NoCode
        }
    );
    assert_eq!(
        b.ask("j-shared", JourneyRequest::OtpResend).await,
        JourneyResult::CodeDead {
            why: DeadCode::NoCode
        }
    );
    assert!(matches!(
        a.ask("j-shared", verify(&code)).await,
        JourneyResult::Verified { .. }
    ));
    // B cannot book a callback with A's customer.
    let token = verify_new(&mut a, &data, "j-a2", "+442079460019").await;
    assert!(matches!(
        b.ask(
            "j-a2",
            JourneyRequest::Callback {
                customer: token.clone(),
                call: None
            }
        )
        .await,
        JourneyResult::Unavailable { .. }
    ));
    // A message for another kiosk's topic is refused by the broker; nothing answers.
    b.client
        .publish(
            format!("kiosk/v1/{}/up/journey", a.id),
            QoS::AtLeastOnce,
            false,
            b"{}".to_vec(),
        )
        .await
        .unwrap();
    a.journey_quiet(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_expire() {
    let s = Setup::start(|c| c.otp.limits.code_ttl_ms = 1_500).await;
    let data = s.cloud.data_dir();
    let mut kiosk = s.first_kiosk().await;
    assert_eq!(
        kiosk.ask("j-exp", otp_request(PHONE, None)).await,
        JourneyResult::CodeSent {
            masked_phone: MASKED.into(),
            resend_after_s: 30,
            expires_in_s: 2
        }
    );
    let code = newest_code(&data, E164);
    assert!(messages_to(&data, E164, "code")[0]["text"]
        .as_str()
        .unwrap()
        .ends_with("It expires in 1 minute."));
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert_eq!(
        kiosk.ask("j-exp", verify(&code)).await,
        JourneyResult::CodeDead {
            why: DeadCode::Expired
        }
    );
    assert_eq!(
        kiosk.ask("j-exp", JourneyRequest::OtpResend).await,
        JourneyResult::CodeDead {
            why: DeadCode::Expired
        }
    );
    let conn = db(&s.cloud);
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM otp_codes WHERE request_id = 'j-exp' AND state = 'dead' AND phone_e164 IS NULL"
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_waits_and_a_number_gets_three_codes_in_fifteen_minutes() {
    let s = Setup::start(|_| {}).await;
    let data = s.cloud.data_dir();
    let mut kiosk = s.first_kiosk().await;

    assert!(matches!(
        kiosk.ask("j-r1", otp_request(PHONE, None)).await,
        JourneyResult::CodeSent { .. }
    ));
    let first_code = newest_code(&data, E164);
    // Resend before 30 s: refused, with the wait.
    match kiosk.ask("j-r1", JourneyRequest::OtpResend).await {
        JourneyResult::Limited { retry_after_s } => {
            assert!((25..=30).contains(&retry_after_s), "{retry_after_s}")
        }
        other => panic!("resend not limited: {other:?}"),
    }
    // So is a second request in the same session.
    assert!(matches!(
        kiosk.ask("j-r1", otp_request(PHONE, None)).await,
        JourneyResult::Limited { .. }
    ));
    assert_eq!(messages_to(&data, E164, "code").len(), 1);

    // Two more sessions for the number get codes; a fourth within 15 minutes does not.
    for session in ["j-r2", "j-r3"] {
        assert!(matches!(
            kiosk.ask(session, otp_request(PHONE, None)).await,
            JourneyResult::CodeSent { .. }
        ));
    }
    match kiosk.ask("j-r4", otp_request(PHONE, None)).await {
        JourneyResult::Limited { retry_after_s } => {
            assert!((800..=900).contains(&retry_after_s), "{retry_after_s}")
        }
        other => panic!("fourth code not limited: {other:?}"),
    }
    assert_eq!(messages_to(&data, E164, "code").len(), 3);
    // Another number is not affected.
    assert!(matches!(
        kiosk.ask("j-r5", otp_request("+33612345600", None)).await,
        JourneyResult::CodeSent { .. }
    ));
    // The first session's code is still good until it expires.
    assert!(matches!(
        kiosk.ask("j-r1", verify(&first_code)).await,
        JourneyResult::Verified { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_sends_a_new_code_that_replaces_the_old() {
    let s = Setup::start(|c| c.otp.limits.resend_after_ms = 500).await;
    let data = s.cloud.data_dir();
    let mut kiosk = s.first_kiosk().await;
    assert!(matches!(
        kiosk.ask("j-re", otp_request(PHONE, Some("ar"))).await,
        JourneyResult::CodeSent { .. }
    ));
    let old = newest_code(&data, E164);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        kiosk.ask("j-re", JourneyRequest::OtpResend).await,
        JourneyResult::CodeSent {
            masked_phone: MASKED.into(),
            resend_after_s: 1,
            expires_in_s: 300
        }
    );
    let sent = messages_to(&data, E164, "code");
    assert_eq!(sent.len(), 2);
    // The resent text keeps the session's language.
    assert!(sent[1]["text"].as_str().unwrap().contains("Org shop"));
    assert!(sent[1]["text"].as_str().unwrap().contains("دقائق"));
    let new = newest_code(&data, E164);
    if new != old {
        assert_eq!(
            kiosk.ask("j-re", verify(&old)).await,
            JourneyResult::WrongCode { tries_left: 4 }
        );
    }
    assert!(matches!(
        kiosk.ask("j-re", verify(&new)).await,
        JourneyResult::Verified { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_and_unknown_numbers_get_the_same_answers() {
    let s = Setup::start(|_| {}).await;
    // Closed, so callbacks without a call can be booked.
    s.set_hours("Lyon", false).await;
    let data = s.cloud.data_dir();
    let mut kiosk = s.first_kiosk().await;
    let known = "+33611111111";
    let unknown = "+33622222222";
    // The known number has a history: a verified customer, a callback, a forgotten session.
    let token = verify_new(&mut kiosk, &data, "j-k0", known).await;
    assert!(matches!(
        kiosk
            .ask(
                "j-k0",
                JourneyRequest::Callback {
                    customer: token,
                    call: None
                }
            )
            .await,
        JourneyResult::CallbackBooked { .. }
    ));
    assert_eq!(
        kiosk.ask("j-k0", JourneyRequest::Forget).await,
        JourneyResult::Forgotten
    );

    // Each answer for the known number, with its digits masked out, is the unknown number's.
    let shape = |r: &JourneyResult| -> Value {
        let mut v = serde_json::to_value(r).unwrap();
        if let Some(m) = v.get_mut("masked_phone") {
            let m_str = m.as_str().unwrap();
            assert_eq!(m_str.chars().count(), 12, "{m_str}");
            *m = json!("(masked)");
        }
        if let Some(c) = v.get_mut("customer") {
            assert!(c.as_str().unwrap().starts_with("kcu_"));
            *c = json!("(token)");
        }
        v
    };
    let mut answers: Vec<Vec<Value>> = Vec::new();
    for (i, phone) in [known, unknown].into_iter().enumerate() {
        let session = format!("j-same-{i}");
        let mut seen = Vec::new();
        seen.push(shape(&kiosk.ask(&session, otp_request(phone, None)).await));
        let code = newest_code(&data, phone);
        seen.push(shape(&kiosk.ask(&session, verify(&wrong(&code))).await));
        seen.push(shape(&kiosk.ask(&session, verify(&code)).await));
        seen.push(shape(&kiosk.ask(&session, verify(&code)).await));
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(
        answers[0][0],
        json!({ "result": "code_sent", "masked_phone": "(masked)", "resend_after_s": 30,
                "expires_in_s": 300 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_booked_once_for_an_unanswered_call_or_a_closed_site() {
    use tenantd::calls::registry::{new_call_id, CallRecord, CallState};
    let s = Setup::start(|_| {}).await;
    let data = s.cloud.data_dir();
    let mut kiosk = s.first_kiosk().await;
    let conn = db(&s.cloud);

    // The site is open: a callback without a call is refused, whatever the kiosk shows; the
    // token stays usable.
    s.set_hours("Lyon", true).await;
    let token = verify_new(&mut kiosk, &data, "j-closed", PHONE).await;
    let book = |customer: &str, call: Option<&str>| JourneyRequest::Callback {
        customer: customer.into(),
        call: call.map(|c| kiosk_protocol::call::CallId::parse(c).unwrap()),
    };
    assert_eq!(
        kiosk.ask("j-closed", book(&token, None)).await,
        JourneyResult::Unavailable {
            reason: "the site is open: a callback without a call is for a closed site".into()
        }
    );

    // The site is closed: an unused token books a `closed` callback, and an SMS confirms it.
    s.set_hours("Lyon", false).await;
    assert_eq!(
        kiosk.ask("j-closed", book(&token, None)).await,
        JourneyResult::CallbackBooked {
            masked_phone: MASKED.into()
        }
    );
    // Once: asked again, it is booked already and no second SMS goes.
    assert_eq!(
        kiosk.ask("j-closed", book(&token, None)).await,
        JourneyResult::CallbackBooked {
            masked_phone: MASKED.into()
        }
    );
    let confirmations = tokio::time::timeout(WAIT, async {
        loop {
            let m = messages_to(&data, E164, "callback");
            if !m.is_empty() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(messages_to(&data, E164, "callback").len(), 1);
    assert_eq!(confirmations[0]["text"], "Org shop will call you back.");
    let (reason, phone, site): (String, String, Option<i64>) = conn
        .query_row(
            "SELECT reason, phone_e164, site_id FROM callbacks",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((reason.as_str(), phone.as_str()), ("closed", E164));
    assert_eq!(site, Some(s.first.site));

    // A call nobody answered: its token books a `not_answered` callback for that call only.
    let token = verify_new(&mut kiosk, &data, "j-missed", "+33 6 99 88 77 66").await;
    let org = s
        .cloud
        .store
        .blocking(|db| db.org_ref("shop"))
        .unwrap()
        .unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    let kiosk_id = kiosk.id.clone();
    let call = |answered: bool| {
        let id = new_call_id();
        let record = CallRecord {
            id: id.clone(),
            org_id: org.id,
            site_id: Some(s.first.site),
            device_id: kiosk_id.clone(),
            kind: CallKind::Customer,
            request: "place-1".into(),
            state: CallState::Ended,
            agent_id: None,
            placed_at_ms: now,
            accepted_at_ms: answered.then_some(now),
            ended_at_ms: Some(now),
            end_reason: Some(if answered {
                EndReason::Hangup
            } else {
                EndReason::NotAnswered
            }),
            ended_by: Some(Party::Cloud),
            refused_reason: None,
            customer_id: None,
            phone_masked: None,
            phone_hash: None,
            language: None,
            verified_at_ms: None,
            outcome: None,
            recorded: false,
            consent_id: None,
            callback_offered: !answered,
            rev: 1,
        };
        s.cloud.store.blocking(|db| db.save_call(&record)).unwrap();
        id.as_str().to_string()
    };
    let missed = call(false);
    let other = call(false);
    s.cloud
        .store
        .blocking(|db| db.claim_customer(&kiosk.id, &token, &missed, now))
        .unwrap()
        .unwrap();
    // Without the call, or with another call, a used token books nothing.
    assert!(matches!(
        kiosk.ask("j-missed", book(&token, None)).await,
        JourneyResult::Unavailable { .. }
    ));
    assert!(matches!(
        kiosk.ask("j-missed", book(&token, Some(&other))).await,
        JourneyResult::Unavailable { .. }
    ));
    assert_eq!(
        kiosk.ask("j-missed", book(&token, Some(&missed))).await,
        JourneyResult::CallbackBooked {
            masked_phone: "+33•••••••66".into()
        }
    );
    // An answered call offers no callback.
    let token2 = verify_new(&mut kiosk, &data, "j-answered", "+33 6 99 88 77 55").await;
    let answered = call(true);
    s.cloud
        .store
        .blocking(|db| db.claim_customer(&kiosk.id, &token2, &answered, now))
        .unwrap()
        .unwrap();
    assert!(matches!(
        kiosk
            .ask("j-answered", book(&token2, Some(&answered)))
            .await,
        JourneyResult::Unavailable { .. }
    ));
    // A made-up token books nothing.
    assert!(matches!(
        kiosk
            .ask(
                "j-x",
                book("kcu_notarealtokenatallnotarealtokenatall123", None)
            )
            .await,
        JourneyResult::Unavailable { .. }
    ));
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM callbacks WHERE reason = 'not_answered'"
        ),
        1
    );
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM callbacks"), 2);
}

/// A provider's HTTP API on 127.0.0.1:0 that answers `status` with `answer` and hands over
/// every request's headers and body.
async fn provider(
    status: u16,
    answer: Value,
) -> (String, mpsc::UnboundedReceiver<(HeaderMap, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/v1/messages",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let tx = tx.clone();
            let answer = answer.clone();
            async move {
                let _ = tx.send((headers, body));
                (StatusCode::from_u16(status).unwrap(), axum::Json(answer))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://127.0.0.1:{port}/v1/messages"), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gateways_fail_over_and_record_every_attempt() {
    let (down_url, mut down_rx) = provider(500, json!({ "error": "down" })).await;
    let (up_url, mut up_rx) = provider(200, json!({ "messages": [{ "id": "prov-123" }] })).await;
    let platform: Vec<tenantd::otp::sms::GatewayConfig> = serde_json::from_value(json!([
        { "kind": "http", "name": "down", "url": down_url,
          "body": { "to": "{to}", "text": "{text}" }, "auth": { "type": "bearer", "token": "tok-down" } },
        { "kind": "http", "name": "up", "url": format!("{up_url}?key={{secret}}"),
          "body": { "messages": [{ "to": "{to}", "body": "{text}", "from": "{sender}" }] },
          "sender": "ShopSMS", "secret": "k&1", "headers": { "X-Api-Key": "{secret}" },
          "provider_id_pointer": "/messages/0/id" }
    ]))
    .unwrap();
    let s = Setup::start(move |c| {
        c.sms_gateways = platform;
        c.otp.org_dev_gateways = true;
    })
    .await;
    let admin = &s.first.admin;
    let mut kiosk = s.first_kiosk().await;

    // The platform's gateways: the first answers 500, the second takes the message.
    assert!(matches!(
        kiosk.ask("j-http", otp_request(PHONE, None)).await,
        JourneyResult::CodeSent { .. }
    ));
    let (headers, _) = down_rx.recv().await.unwrap();
    assert_eq!(headers["authorization"], "Bearer tok-down");
    let (headers, body) = up_rx.recv().await.unwrap();
    assert_eq!(headers["x-api-key"], "k&1");
    assert_eq!(headers["content-type"], "application/json");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["messages"][0]["to"], E164);
    assert_eq!(body["messages"][0]["from"], "ShopSMS");
    let text = body["messages"][0]["body"].as_str().unwrap().to_string();
    assert!(
        text.ends_with("is your Org shop code. It expires in 5 minutes."),
        "{text}"
    );
    let code: String = text.chars().take(6).collect();
    assert!(matches!(
        kiosk.ask("j-http", verify(&code)).await,
        JourneyResult::Verified { .. }
    ));
    let (status, records) = s
        .cloud
        .call(Method::GET, "/api/v1/orgs/shop/sms/messages", admin, None)
        .await;
    assert_eq!(status, 200, "{records}");
    let records = records["messages"].as_array().unwrap().clone();
    assert_eq!(records.len(), 2, "{records:?}");
    // Newest first.
    assert_eq!(records[0]["gateway"], "http:up");
    assert_eq!(records[0]["status"], "sent");
    assert_eq!(records[0]["provider_id"], "prov-123");
    assert_eq!(records[1]["gateway"], "http:down");
    assert_eq!(records[1]["status"], "failed");
    assert!(records[1]["error"].as_str().unwrap().contains("500"));
    assert_eq!(records[1]["phone_masked"], MASKED);

    // The organization's own gateway, set through the API: a form body with basic auth.
    let (status, body) = s
        .cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/sms",
            admin,
            Some(json!({ "gateways": [
                { "kind": "http", "name": "own", "url": up_url, "format": "form",
                  "body": { "To": "{to}", "Body": "{text}" },
                  "auth": { "type": "basic", "username": "AC1", "password": "pw-secret-1" } } ] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["uses"], "organization");
    assert_eq!(
        body["gateways"][0]["auth"],
        json!({ "type": "basic", "username": "AC1", "password_set": true })
    );
    let (status, body) = s
        .cloud
        .call(Method::GET, "/api/v1/orgs/shop/sms", admin, None)
        .await;
    assert_eq!(status, 200);
    assert!(!body.to_string().contains("pw-secret-1"), "{body}");
    assert_eq!(body["gateways"][0]["auth"]["password_set"], true);
    // Put again without the password: it is kept.
    let (status, body) = s
        .cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/sms",
            admin,
            Some(json!({ "gateways": [
                { "kind": "http", "name": "own", "url": up_url, "format": "form",
                  "body": { "To": "{to}", "Body": "{text}" },
                  "auth": { "type": "basic", "username": "AC1" } } ] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Field errors name the field.
    let (status, body) = s
        .cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/sms",
            admin,
            Some(json!({ "gateways": [
                { "kind": "http", "name": "own", "url": "http://sms.example.test/send",
                  "body": { "to": "{to}", "text": "{text}" } } ] })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "url");
    let (status, body) = s
        .cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/sms",
            admin,
            Some(json!({ "gateways": [
                { "kind": "http", "name": "own", "url": "https://sms.example.test/send",
                  "body": { "to": "{to}" } } ] })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "body");
    // An agent may not read or change them.
    let shop = s
        .cloud
        .store
        .blocking(|db| db.org_ref("shop"))
        .unwrap()
        .unwrap();
    let agent = s.cloud.staff(&shop, "ann@shop.example", Role::Agent).await;
    let (status, _) = s
        .cloud
        .call(Method::GET, "/api/v1/orgs/shop/sms", &agent, None)
        .await;
    assert_eq!(status, 403);

    // A code now goes through the organization's gateway only.
    assert!(matches!(
        kiosk
            .ask("j-own", otp_request("+33 6 12 34 56 99", Some("en")))
            .await,
        JourneyResult::CodeSent { .. }
    ));
    let (headers, body) = up_rx.recv().await.unwrap();
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("AC1:pw-secret-1");
    assert_eq!(headers["authorization"], format!("Basic {basic}").as_str());
    assert!(
        body.contains("To=%2B33612345699") && body.contains("Body="),
        "{body}"
    );
    assert!(down_rx.try_recv().is_err());

    // The change is audited without its secret.
    let (_, audit) = s
        .cloud
        .call(Method::GET, "/api/v1/orgs/shop/audit", admin, None)
        .await;
    let text = audit.to_string();
    assert!(
        text.contains("sms.update") && !text.contains("pw-secret-1"),
        "{text}"
    );

    // When no gateway takes the message, the kiosk hears it and no code counts.
    let (status, _) = s
        .cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/sms",
            admin,
            Some(json!({ "gateways": [
                { "kind": "http", "name": "down", "url": down_url,
                  "body": { "to": "{to}", "text": "{text}" } } ] })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        kiosk
            .ask("j-down", otp_request("+33 6 12 34 56 98", None))
            .await,
        JourneyResult::Unavailable {
            reason: "no SMS gateway took the message".into()
        }
    );
    let conn = db(&s.cloud);
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM otp_codes WHERE request_id = 'j-down'"
        ),
        0
    );
    // Back to the platform's gateways.
    let (status, body) = s
        .cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/sms",
            admin,
            Some(json!({ "gateways": [] })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["uses"], "platform");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_removes_a_number_from_the_organization() {
    let s = Setup::start(|_| {}).await;
    // Closed, so callbacks without a call can be booked.
    s.set_hours("Lyon", false).await;
    let data = s.cloud.data_dir();
    let admin = &s.first.admin;
    let mut kiosk = s.first_kiosk().await;
    let conn = db(&s.cloud);

    // The number's codes, a customer with a callback, and a call that names it.
    let token = verify_new(&mut kiosk, &data, "j-e1", PHONE).await;
    assert!(matches!(
        kiosk
            .ask(
                "j-e1",
                JourneyRequest::Callback {
                    customer: token.clone(),
                    call: None
                }
            )
            .await,
        JourneyResult::CallbackBooked { .. }
    ));
    assert!(matches!(
        kiosk.ask("j-e2", otp_request(PHONE, None)).await,
        JourneyResult::CodeSent { .. }
    ));
    let other = verify_new(&mut kiosk, &data, "j-e3", "+33 6 00 00 00 07").await;
    let (customer_id, phone_hash): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT id, phone_hash FROM customers WHERE token_hash = ?1",
            [tenantd::store::customer_token_hash(&token).as_slice()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let org_id: i64 = conn
        .query_row("SELECT id FROM orgs WHERE slug = 'shop'", [], |r| r.get(0))
        .unwrap();
    conn.execute(
        "INSERT INTO calls (id, org_id, site_id, device_id, kind, request_id, state, placed_at_ms,
            rev, customer_id, phone_masked, phone_hash, survey_score)
         VALUES ('call-erasureone', ?1, NULL, ?2, 'customer', 'p1', 'ended', 1, 1, ?3, ?4, ?5, 3)",
        rusqlite::params![org_id, kiosk.id, customer_id, MASKED, phone_hash],
    )
    .unwrap();

    // Erase: only an admin of the organization, with a valid number.
    let shop = s
        .cloud
        .store
        .blocking(|db| db.org_ref("shop"))
        .unwrap()
        .unwrap();
    let agent = s.cloud.staff(&shop, "eve@shop.example", Role::Agent).await;
    let (status, _) = s
        .cloud
        .call(
            Method::POST,
            "/api/v1/orgs/shop/customers/erase",
            &agent,
            Some(json!({ "phone": PHONE })),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = s
        .cloud
        .call(
            Method::POST,
            "/api/v1/orgs/shop/customers/erase",
            admin,
            Some(json!({ "phone": "06 12 34 56 78" })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "phone");
    let (status, body) = s
        .cloud
        .call(
            Method::POST,
            "/api/v1/orgs/shop/customers/erase",
            admin,
            Some(json!({ "phone": "0033 612 345 678" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["erased"],
        json!({ "otp_codes": 2, "customers": 1, "callbacks": 1, "calls": 1 })
    );
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM otp_codes WHERE request_id IN ('j-e1', 'j-e2')"
        ),
        0
    );
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM callbacks"), 0);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM customers"), 1);
    let (masked, hash, customer, score): (Option<String>, Option<Vec<u8>>, Option<i64>, i64) = conn
        .query_row(
            "SELECT phone_masked, phone_hash, customer_id, survey_score FROM calls
             WHERE id = 'call-erasureone'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((masked, hash, customer, score), (None, None, None, 3));
    // The other number is untouched, and the erased token is gone.
    assert!(s
        .cloud
        .store
        .blocking(|db| db.claim_customer(&kiosk.id, &other, "call-othernumber", 1))
        .unwrap()
        .is_some());
    assert!(matches!(
        kiosk
            .ask(
                "j-e1",
                JourneyRequest::Callback {
                    customer: token,
                    call: None
                }
            )
            .await,
        JourneyResult::Unavailable { .. }
    ));
    // Audited with the counts, never the number (not even masked).
    let (_, audit) = s
        .cloud
        .call(Method::GET, "/api/v1/orgs/shop/audit", admin, None)
        .await;
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "customer.erase")
        .cloned()
        .expect("an erase entry");
    let text = entry.to_string();
    assert!(
        !text.contains("612345678") && !text.contains("•••"),
        "{text}"
    );
}

/// A provider's HTTP API on 127.0.0.1:0 that takes every message and answers a new id for
/// each (`{"sid": "SM1"}`, `SM2`, …).
async fn counting_provider() -> String {
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/v1/messages",
        axum::routing::post(move || {
            let n = sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            async move { axum::Json(json!({ "sid": format!("SM{n}") })) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://127.0.0.1:{port}/v1/messages")
}

/// Posts a receipt as a provider does (no credentials); returns the status, the JSON answer
/// (Null when empty) and the `Retry-After` header.
async fn post_receipt(
    cloud: &TestCloud,
    path: &str,
    media: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value, Option<String>) {
    let r = cloud
        .client
        .post(format!("{}{path}", cloud.base))
        .header("content-type", media)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, json, retry)
}

const FORM: &str = "application/x-www-form-urlencoded";

/// The delivery record with the provider's id `id`.
async fn record(s: &Setup, id: &str) -> Value {
    let (status, body) = s
        .cloud
        .call(
            Method::GET,
            "/api/v1/orgs/shop/sms/messages",
            &s.first.admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["provider_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no record of {id}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_receipts_move_records_forward_only() {
    let url = counting_provider().await;
    let s = Setup::start(|c| {
        c.otp.org_dev_gateways = true;
        c.otp.receipts = tenantd::otp::receipts::ReceiptPolicy {
            burst: 30,
            refill_every: Duration::from_secs(3600),
            max_keys: 100,
        };
    })
    .await;
    let admin = &s.first.admin;
    let mut kiosk = s.first_kiosk().await;

    // The organization's gateway reads the provider's form receipts.
    let gateway = |receipts: Value| {
        json!({ "gateways": [{ "kind": "http", "name": "prov", "url": url, "format": "form",
            "body": { "To": "{to}", "Body": "{text}" }, "provider_id_pointer": "/sid",
            "auth": { "type": "basic", "username": "AC1", "password": "pw-1" },
            "receipts": receipts }] })
    };
    let receipts = json!({ "format": "form", "provider_id": "MessageSid",
        "status": "MessageStatus", "error": "ErrorCode", "delivered": ["delivered"],
        "undelivered": ["undelivered", "failed"] });
    let (status, body) = s
        .cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/sms",
            admin,
            Some(gateway(receipts.clone())),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let path = body["gateways"][0]["receipts"]["url_path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(path.starts_with("/api/v1/sms/receipts/kcr_"), "{path}");
    assert_eq!(path.len(), "/api/v1/sms/receipts/".len() + 47, "{path}");
    // Shown again by GET, and kept by a PUT that does not ask for a new key.
    let (_, shown) = s
        .cloud
        .call(Method::GET, "/api/v1/orgs/shop/sms", admin, None)
        .await;
    assert_eq!(shown["gateways"][0]["receipts"]["url_path"], path.as_str());
    let (status, body) = s
        .cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/sms",
            admin,
            Some(gateway(receipts.clone())),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["gateways"][0]["receipts"]["url_path"], path.as_str());
    // A bad setting names the field.
    let mut bad = receipts.clone();
    bad["provider_id"] = json!("Message=Sid");
    let (status, body) = s
        .cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/sms",
            admin,
            Some(gateway(bad)),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "receipts");

    // A code goes out; its record has the provider's id.
    assert!(matches!(
        kiosk.ask("j-dlr1", otp_request(PHONE, None)).await,
        JourneyResult::CodeSent { .. }
    ));
    let sent = record(&s, "SM1").await;
    assert_eq!(sent["status"], "sent");
    assert_eq!(sent["gateway"], "http:prov");

    // An intermediate status is taken and changes nothing.
    let (status, body, _) = post_receipt(
        &s.cloud,
        &path,
        FORM,
        "MessageSid=SM1&MessageStatus=sent&To=%2B33612345678",
    )
    .await;
    assert_eq!((status, &body), (204, &Value::Null));
    assert_eq!(record(&s, "SM1").await, sent);
    // Delivered.
    let (status, _, _) = post_receipt(
        &s.cloud,
        &path,
        FORM,
        "MessageSid=SM1&MessageStatus=delivered&To=%2B33612345678",
    )
    .await;
    assert_eq!(status, 204);
    let delivered = record(&s, "SM1").await;
    assert_eq!(delivered["status"], "delivered");
    assert_eq!(delivered["error"], Value::Null);
    let at = |v: &Value, k: &str| v[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert!(at(&delivered, "updated_at") >= at(&delivered, "created_at"));
    // Repeated, late or out of order: the status stays, and so does its time.
    for late in ["delivered", "undelivered", "sent", "queued"] {
        let (status, _, _) = post_receipt(
            &s.cloud,
            &path,
            FORM,
            format!("MessageSid=SM1&MessageStatus={late}&ErrorCode=30005"),
        )
        .await;
        assert_eq!(status, 204, "{late}");
    }
    assert_eq!(record(&s, "SM1").await, delivered);

    // Undelivered, with the provider's reason.
    assert!(matches!(
        kiosk
            .ask("j-dlr2", otp_request("+33 6 12 34 56 77", None))
            .await,
        JourneyResult::CodeSent { .. }
    ));
    let (status, _, _) = post_receipt(
        &s.cloud,
        &path,
        FORM,
        "MessageSid=SM2&MessageStatus=undelivered&ErrorCode=30003&To=%2B33612345677",
    )
    .await;
    assert_eq!(status, 204);
    let undelivered = record(&s, "SM2").await;
    assert_eq!(undelivered["status"], "undelivered");
    assert_eq!(undelivered["error"], "undelivered: 30003");
    let (status, _, _) =
        post_receipt(&s.cloud, &path, FORM, "MessageSid=SM2&MessageStatus=sent").await;
    assert_eq!(status, 204);
    assert_eq!(record(&s, "SM2").await, undelivered);
    // A reason that holds a number keeps no number.
    assert!(matches!(
        kiosk
            .ask("j-dlr3", otp_request("+33 6 12 34 56 76", None))
            .await,
        JourneyResult::CodeSent { .. }
    ));
    let (status, _, _) = post_receipt(
        &s.cloud,
        &path,
        FORM,
        "MessageSid=SM3&MessageStatus=failed&ErrorCode=unreachable+%2B33+6+12+34+56+76",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(record(&s, "SM3").await["error"], "failed: unreachable •••");
    let conn = db(&s.cloud);
    assert_eq!(
        count(
            &conn,
            "SELECT COUNT(*) FROM sms_messages WHERE error LIKE '%345677%' OR error LIKE '%345676%'"
        ),
        0
    );
    // A receipt for a message with no record is taken, and changes nothing.
    let (status, _, _) = post_receipt(
        &s.cloud,
        &path,
        FORM,
        "MessageSid=SM999&MessageStatus=delivered",
    )
    .await;
    assert_eq!(status, 204);

    // Bad bodies are 400 saying why.
    let (status, body, _) = post_receipt(&s.cloud, &path, FORM, "MessageStatus=delivered").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    assert_eq!(
        body["error"]["message"],
        "the receipt has no message id at MessageSid"
    );
    let (status, body, _) = post_receipt(&s.cloud, &path, "application/json", "{}").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/x-www-form-urlencoded"),
        "{body}"
    );
    let (status, body, _) = post_receipt(&s.cloud, &path, FORM, "x".repeat(17 * 1024)).await;
    assert_eq!(status, 413, "{body}");

    // A wrong key, a key of another shape and an unknown path answer alike.
    let key = path.rsplit('/').next().unwrap();
    let last = if key.ends_with('A') { "B" } else { "A" };
    let wrong = format!("/api/v1/sms/receipts/{}{last}", &key[..key.len() - 1]);
    let (status, not_found, _) = post_receipt(
        &s.cloud,
        &wrong,
        FORM,
        "MessageSid=SM1&MessageStatus=delivered",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(not_found["error"]["code"], "not_found");
    for other in ["/api/v1/sms/receipts/kcr_short", "/api/v1/sms/nothing-here"] {
        let (status, body, _) = post_receipt(
            &s.cloud,
            other,
            FORM,
            "MessageSid=SM1&MessageStatus=delivered",
        )
        .await;
        assert_eq!((status, &body), (404, &not_found), "{other}");
    }

    // A new key: the old URL stops working at once, the new one works.
    let mut renewed = receipts.clone();
    renewed["new_key"] = json!(true);
    let (status, body) = s
        .cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/sms",
            admin,
            Some(gateway(renewed)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let new_path = body["gateways"][0]["receipts"]["url_path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_path, path);
    let (status, _, _) = post_receipt(
        &s.cloud,
        &path,
        FORM,
        "MessageSid=SM2&MessageStatus=delivered",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = post_receipt(
        &s.cloud,
        &new_path,
        FORM,
        "MessageSid=SM2&MessageStatus=delivered",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(record(&s, "SM2").await["status"], "delivered");
    // The change is audited without the key.
    let (_, audit) = s
        .cloud
        .call(Method::GET, "/api/v1/orgs/shop/audit", admin, None)
        .await;
    let text = audit.to_string();
    assert!(text.contains("\"receipts\":true"), "{text}");
    assert!(
        !text.contains(&new_path[21..]) && !text.contains(key),
        "{text}"
    );

    // A key has its rate: past it, 429 with Retry-After, before the store is read.
    let mut limited = None;
    for i in 0..40 {
        let (status, body, retry) = post_receipt(
            &s.cloud,
            &new_path,
            FORM,
            "MessageSid=SM2&MessageStatus=delivered",
        )
        .await;
        if status == 429 {
            limited = Some((i, body, retry));
            break;
        }
        assert_eq!(status, 204);
    }
    let (i, body, retry) = limited.expect("the key's rate is enforced");
    assert_eq!(i, 29, "a burst of 30 per key, one used above");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);

    // Without receipts, the gateway has no key and the URL is gone.
    let mut plain = gateway(Value::Null);
    plain["gateways"][0]
        .as_object_mut()
        .unwrap()
        .remove("receipts");
    let (status, body) = s
        .cloud
        .call(Method::PUT, "/api/v1/orgs/shop/sms", admin, Some(plain))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["gateways"][0]["receipts"].is_null(), "{body}");
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM sms_receipt_keys"), 0);
}
