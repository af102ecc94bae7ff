//! Call routing end to end: a real tenantd with its managed mosquitto and SQLite store, kiosks
//! as real MQTT clients, agents as real WebSocket clients. The organization's queue (order,
//! positions and estimates), first accept wins among three agents, declines and disconnects,
//! the queue time-out and the callback it offers, business hours and the customer token, the
//! kiosks' survey and consent events, and the call records with their CSV export.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::journey;
use common::live::{Agent, Kiosk, Setup};
use common::{Cred, TestCloud};
use kiosk_protocol::call::{CallId, Consent, EndReason};
use kiosk_protocol::event::EventBody;
use reqwest::Method;
use serde_json::{json, Value};
use tenantd::tenancy::{OrgRef, Role};

/// Long enough that no call of the ordinary tests times out.
const LONG: Duration = Duration::from_secs(120);
/// The time-out of the callback test.
const SHORT: Duration = Duration::from_secs(3);
const PHONE: &str = "+33612345678";

async fn setup(queue_timeout: Duration) -> Setup {
    Setup::start(move |c| {
        c.calls.tick = Duration::from_millis(100);
        c.calls.agent_grace = Duration::from_millis(1500);
        c.calls.session_recheck = Duration::from_millis(500);
        c.calls.queue_timeout = Some(queue_timeout);
    })
    .await
}

fn shop(cloud: &TestCloud) -> OrgRef {
    cloud
        .store
        .blocking(|db| db.org_ref("shop"))
        .unwrap()
        .unwrap()
}

/// A signed-in agent of the shop with its user id.
async fn agent(cloud: &TestCloud, email: &str) -> (Cred, i64) {
    let org = shop(cloud);
    let id = cloud.add_user(&org, email, Role::Agent);
    (cloud.login(email, common::STAFF_PASSWORD).await, id)
}

fn call_of(v: &Value) -> String {
    v["call"].as_str().unwrap().to_string()
}

/// The kiosk's next `down/call` must be `queued` at `position`; returns it.
async fn queued_at(k: &mut Kiosk, position: u64) -> Value {
    let q = k.next_call().await;
    assert_eq!(q["event"], "queued", "{q}");
    assert_eq!(q["position"], position, "{q}");
    assert!(q["estimated_wait_s"].as_u64().unwrap() >= 1, "{q}");
    q
}

/// Waits for the records (as `cred`, with `query`) until `check` holds.
async fn records(
    cloud: &TestCloud,
    cred: &Cred,
    query: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    cloud
        .eventually(
            cred,
            &format!("/api/v1/orgs/shop/calls/records{query}"),
            check,
        )
        .await
}

fn record<'a>(list: &'a Value, call: &str) -> &'a Value {
    list["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == call)
        .unwrap_or_else(|| panic!("{call} not in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_calls_are_offered_oldest_first_with_their_place() {
    let s = setup(LONG).await;
    let cloud = &s.cloud;
    let (cred_a, _) = agent(cloud, "anna@shop.example").await;
    let (cred_b, _) = agent(cloud, "bert@shop.example").await;
    let mut a = Agent::open(cloud, "shop", &cred_a).await;
    let mut b = Agent::open(cloud, "shop", &cred_b).await;
    let mut k1 = s.first_kiosk().await;
    let mut k2 = s.another_kiosk("req-2").await;
    let mut k3 = s.another_kiosk("req-3").await;

    // Nobody is available: three calls wait, each told its place and the default estimate
    // (60 s a place: the organization has answered nothing yet).
    k1.place("r-1").await;
    let q1 = queued_at(&mut k1, 1).await;
    assert_eq!(q1["estimated_wait_s"], 60);
    k2.place("r-1").await;
    let q2 = queued_at(&mut k2, 2).await;
    assert_eq!(q2["estimated_wait_s"], 120);
    k3.place("r-1").await;
    let q3 = queued_at(&mut k3, 3).await;
    assert_eq!(q3["estimated_wait_s"], 180);
    let (c1, c2, c3) = (call_of(&q1), call_of(&q2), call_of(&q3));
    // A repeated place hears its place again; the others hear nothing.
    k3.place("r-1").await;
    assert_eq!(k3.next_call().await, q3);
    k1.quiet(Duration::from_millis(200)).await;

    // Anna becomes available: only the oldest call rings for her.
    a.available().await;
    a.rings(&c1).await;
    a.quiet(Duration::from_millis(300)).await;
    a.send(json!({ "type": "accept", "call": c1 })).await;
    assert_eq!(a.next().await["type"], "accepted");
    assert_eq!(k1.next_call().await["event"], "accepted");
    // The others move up, with an estimate from Anna's answered wait.
    let up2 = queued_at(&mut k2, 1).await;
    let up3 = queued_at(&mut k3, 2).await;
    assert!(up2["estimated_wait_s"].as_u64() <= up3["estimated_wait_s"].as_u64());
    assert!(up3["estimated_wait_s"].as_u64().unwrap() < 120, "{up3}");

    // Bert becomes free: offered the oldest waiting call, not the newest.
    b.available().await;
    b.rings(&c2).await;
    b.quiet(Duration::from_millis(300)).await;
    b.send(json!({ "type": "accept", "call": c2 })).await;
    assert_eq!(b.next().await["type"], "accepted");
    assert_eq!(k2.next_call().await["event"], "accepted");
    queued_at(&mut k3, 1).await;

    // Anna hangs up: free again, the last call rings for her.
    a.send(json!({ "type": "end", "call": c1 })).await;
    assert_eq!(a.next().await["type"], "ended");
    a.rings(&c3).await;
    assert_eq!(k1.next_call().await["event"], "ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_first_accept_wins_and_declines_and_disconnects_ring_the_rest() {
    let s = setup(LONG).await;
    let cloud = &s.cloud;
    let (cred_a, _) = agent(cloud, "anna@shop.example").await;
    let (cred_b, _) = agent(cloud, "bert@shop.example").await;
    let (cred_c, id_c) = agent(cloud, "cleo@shop.example").await;
    let mut a = Agent::open(cloud, "shop", &cred_a).await;
    let mut b = Agent::open(cloud, "shop", &cred_b).await;
    let mut c = Agent::open(cloud, "shop", &cred_c).await;
    for agent in [&mut a, &mut b, &mut c] {
        agent.available().await;
    }
    let mut k1 = s.first_kiosk().await;
    let mut k2 = s.another_kiosk("req-2").await;

    // The first call rings all three; the second waits behind it and rings nobody.
    k1.place("r-1").await;
    let c1 = call_of(&queued_at(&mut k1, 1).await);
    for agent in [&mut a, &mut b, &mut c] {
        agent.rings(&c1).await;
    }
    k2.place("r-1").await;
    let c2 = call_of(&queued_at(&mut k2, 2).await);
    a.quiet(Duration::from_millis(300)).await;

    // Anna declines: the first call goes on ringing Bert and Cleo, and Anna, free, is
    // offered the next call.
    a.send(json!({ "type": "decline", "call": c1 })).await;
    assert_eq!(
        a.next().await,
        json!({ "type": "ring_cancelled", "call": c1, "reason": "cancelled" })
    );
    a.rings(&c2).await;
    b.quiet(Duration::from_millis(200)).await;
    c.quiet(Duration::from_millis(200)).await;

    // Bert's console goes away: the call rings Cleo still, and Cleo takes it.
    b.ws.close(None).await.unwrap();
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send(json!({ "type": "accept", "call": c1 })).await;
    assert_eq!(c.next().await["type"], "accepted");
    let accepted = k1.next_call().await;
    assert_eq!(accepted["event"], "accepted", "{accepted}");
    // The second call is next now.
    queued_at(&mut k2, 1).await;
    a.send(json!({ "type": "accept", "call": c2 })).await;
    assert_eq!(a.next().await["type"], "accepted");
    assert_eq!(k2.next_call().await["event"], "accepted");
    a.send(json!({ "type": "end", "call": c2 })).await;
    assert_eq!(a.next().await["type"], "ended");
    c.send(json!({ "type": "end", "call": c1 })).await;
    assert_eq!(c.next().await["type"], "ended");
    assert_eq!(k1.next_call().await["event"], "ended");

    // Three agents ring and all accept at once: exactly one wins; the others hear it was
    // taken and that the call is not theirs.
    let mut b = Agent::open(cloud, "shop", &cred_b).await;
    b.available().await;
    k1.place("r-2").await;
    let c3 = call_of(&queued_at(&mut k1, 1).await);
    for agent in [&mut a, &mut b, &mut c] {
        agent.rings(&c3).await;
    }
    for agent in [&mut a, &mut b, &mut c] {
        agent.send(json!({ "type": "accept", "call": c3 })).await;
    }
    let mut winners = 0;
    for agent in [&mut a, &mut b, &mut c] {
        let first = agent.next().await;
        if first["type"] == "accepted" {
            winners += 1;
            continue;
        }
        let second = agent.next().await;
        let kinds: BTreeSet<String> = [&first, &second]
            .iter()
            .map(|f| f["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            kinds,
            BTreeSet::from(["error".to_string(), "ring_cancelled".to_string()]),
            "{first} {second}"
        );
        for f in [&first, &second] {
            if f["type"] == "ring_cancelled" {
                assert_eq!(f["reason"], "taken");
            } else {
                assert_eq!(f["code"], "not_your_call");
            }
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(k1.next_call().await["event"], "accepted");
    k1.quiet(Duration::from_millis(300)).await;

    // The records: the first call answered by Cleo after a decline.
    let admin = &s.first.admin;
    let list = records(cloud, admin, "", |v| {
        v["records"].as_array().is_some_and(|r| r.len() >= 2)
    })
    .await;
    let r1 = record(&list, &c1);
    assert_eq!(r1["outcome"], "answered");
    assert_eq!(r1["agent"]["id"], id_c);
    assert!(r1["talk_s"].is_number() && r1["wait_s"].is_number(), "{r1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_calls_time_out_and_customers_are_offered_a_callback() {
    let s = setup(SHORT).await;
    let cloud = &s.cloud;
    let org = shop(cloud);
    s.set_hours("Lyon", true).await;
    let mut k1 = s.first_kiosk().await;
    let mut k2 = s.another_kiosk("req-2").await;
    let (token, _) = journey::add_customer(cloud, org.id, &k1.id, PHONE, Some("fr"), 600_000);

    // A verified customer's call and a test call; nobody answers.
    k1.place_customer("r-1", Some(&token), None, None).await;
    let placed_at = std::time::Instant::now();
    let c1 = call_of(&queued_at(&mut k1, 1).await);
    // A second later, so that the two time out a second apart.
    tokio::time::sleep(Duration::from_secs(1)).await;
    k2.place("r-1").await;
    let c2 = call_of(&queued_at(&mut k2, 2).await);
    let ended = k1.next_call().await;
    assert_eq!(ended["call"], c1.as_str(), "{ended}");
    assert_eq!(ended["event"], "ended", "{ended}");
    assert_eq!(ended["reason"], "not_answered", "{ended}");
    assert_eq!(ended["by"], "cloud", "{ended}");
    assert_eq!(ended["callback_offered"], true, "{ended}");
    assert!(placed_at.elapsed() >= SHORT - Duration::from_millis(200));
    // The test call moved up, then timed out too, without a callback.
    queued_at(&mut k2, 1).await;
    let ended = k2.next_call().await;
    assert_eq!(ended["reason"], "not_answered", "{ended}");
    assert!(ended.get("callback_offered").is_none(), "{ended}");

    // The records say so, with the customer's masked number.
    let admin = &s.first.admin;
    let list = records(cloud, admin, "?outcome=missed", |v| {
        v["records"].as_array().is_some_and(|r| r.len() == 2)
    })
    .await;
    let r1 = record(&list, &c1);
    assert_eq!(r1["callback_offered"], true);
    assert_eq!(r1["phone_masked"], journey::masked(PHONE));
    assert_eq!(r1["language"], "fr");
    assert!(r1["verified_at"].is_string());
    assert_eq!(r1["end_reason"], "not_answered");
    assert_eq!(record(&list, &c2)["callback_offered"], false);
    assert_eq!(list["totals"]["calls"], 2);
    assert_eq!(list["totals"]["answered"], 0);
    assert_eq!(list["totals"]["answer_rate"], 0.0);

    // The token was used for that call: it cannot place another.
    k1.place_customer("r-2", Some(&token), None, None).await;
    let again = k1.next_call().await;
    assert_eq!(again["event"], "refused", "{again}");
    assert_eq!(again["reason"], "not_verified");

    // The journey books the callback; the organization's staff see the full number while it
    // is open, and mark it done (audited).
    let id = journey::add_callback(cloud, org.id, Some(s.first.site), &k1.id, Some(&c1), PHONE);
    let (cred_a, _) = agent(cloud, "anna@shop.example").await;
    let (status, open) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/callbacks", &cred_a, None)
        .await;
    assert_eq!(status, 200, "{open}");
    let cb = &open["callbacks"][0];
    assert_eq!(cb["id"], id);
    assert_eq!(cb["phone"], PHONE);
    assert_eq!(cb["phone_masked"], journey::masked(PHONE));
    assert_eq!(cb["reason"], "not_answered");
    assert_eq!(cb["call"], c1.as_str());
    assert_eq!(cb["site"]["name"], "Lyon");
    assert_eq!(cb["kiosk"]["id"], k1.id.as_str());
    assert_eq!(cb["state"], "open");
    let (status, done) = cloud
        .call(
            Method::POST,
            &format!("/api/v1/orgs/shop/callbacks/{id}/done"),
            &cred_a,
            None,
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "done");
    assert!(
        done["phone"].is_null(),
        "the full number only while open: {done}"
    );
    assert_eq!(done["done_by"]["name"], "Test User");
    let (_, open) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/callbacks", &cred_a, None)
        .await;
    assert_eq!(open["callbacks"], json!([]));
    let (_, all) = cloud
        .call(
            Method::GET,
            "/api/v1/orgs/shop/callbacks?state=all",
            admin,
            None,
        )
        .await;
    assert_eq!(all["total"], 1);
    let (_, audit) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/audit", admin, None)
        .await;
    let text = audit.to_string();
    assert!(text.contains("callback.done"), "{audit}");
    assert!(
        !text.contains(PHONE),
        "the audit log never holds the number"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_site_refuses_customer_calls_and_test_calls_go_through() {
    let s = setup(LONG).await;
    let cloud = &s.cloud;
    let org = shop(cloud);
    s.set_hours("Lyon", false).await;
    let mut k1 = s.first_kiosk().await;
    let (token, _) = journey::add_customer(cloud, org.id, &k1.id, PHONE, Some("de"), 600_000);

    // Without a token, or with another kiosk's, the customer is not verified.
    k1.place_customer("r-0", None, None, None).await;
    let refused = k1.next_call().await;
    assert_eq!(refused["reason"], "not_verified", "{refused}");
    k1.place_customer("r-00", Some("kct_not-a-real-token"), None, None)
        .await;
    assert_eq!(k1.next_call().await["reason"], "not_verified");

    // Closed: refused, recorded with its outcome and the customer's masked number.
    k1.place_customer("r-1", Some(&token), None, None).await;
    let refused = k1.next_call().await;
    assert_eq!(refused["event"], "refused", "{refused}");
    assert_eq!(refused["reason"], "closed");
    let closed_call = call_of(&refused);
    let admin = &s.first.admin;
    let list = records(cloud, admin, "?outcome=closed", |v| {
        v["records"].as_array().is_some_and(|r| r.len() == 1)
    })
    .await;
    let r = record(&list, &closed_call);
    assert_eq!(r["phone_masked"], journey::masked(PHONE));
    assert!(r["wait_s"].is_null(), "{r}");

    // A test call ignores the hours.
    k1.place("r-2").await;
    let q = queued_at(&mut k1, 1).await;
    k1.end(&call_of(&q), EndReason::Hangup).await;

    // Open again: the same token still works (a closed refusal does not use it up), and the
    // call rings the agent who speaks its language (the customer's), then anyone.
    s.set_hours("Lyon", true).await;
    let (cred_fr, id_fr) = agent(cloud, "fred@shop.example").await;
    let (cred_de, id_de) = agent(cloud, "dora@shop.example").await;
    for (id, langs) in [(id_fr, json!(["fr"])), (id_de, json!(["de-AT", "en"]))] {
        let (status, user) = cloud
            .call(
                Method::PATCH,
                &format!("/api/v1/orgs/shop/users/{id}"),
                admin,
                Some(json!({ "languages": langs })),
            )
            .await;
        assert_eq!(status, 200, "{user}");
        assert_eq!(user["languages"], langs);
    }
    let (status, _) = cloud
        .call(
            Method::PATCH,
            &format!("/api/v1/orgs/shop/users/{id_fr}"),
            admin,
            Some(json!({ "languages": ["français"] })),
        )
        .await;
    assert_eq!(status, 422);
    let mut fr = Agent::open(cloud, "shop", &cred_fr).await;
    let mut de = Agent::open(cloud, "shop", &cred_de).await;
    fr.available().await;
    de.available().await;
    k1.place_customer("r-3", Some(&token), None, None).await;
    let c = call_of(&queued_at(&mut k1, 1).await);
    let ring = de.rings(&c).await;
    assert_eq!(ring["kind"], "customer");
    assert_eq!(ring["language"], "de");
    fr.quiet(Duration::from_millis(400)).await;
    // The German speaker goes away: nobody free speaks German, so anyone rings.
    de.send(json!({ "type": "available", "available": false }))
        .await;
    assert_eq!(de.next().await["type"], "availability");
    assert_eq!(de.next().await["reason"], "cancelled");
    fr.rings(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survey_and_consent_events_are_kept_once_for_the_kiosks_own_calls() {
    let s = setup(LONG).await;
    let cloud = &s.cloud;
    let admin = &s.first.admin;
    let (status, settings) = cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/settings",
            admin,
            Some(
                json!({ "recording": "on_with_consent", "retention_days": 30,
                         "technicians_may_review_recordings": false, "queue_timeout_s": 240 }),
            ),
        )
        .await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["queue_timeout_s"], 240);
    let (status, _) = cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/settings",
            admin,
            Some(
                json!({ "recording": "on_with_consent", "retention_days": 30,
                         "technicians_may_review_recordings": false, "queue_timeout_s": 5 }),
            ),
        )
        .await;
    assert_eq!(status, 422);
    s.set_hours("Lyon", true).await;
    let org = shop(cloud);
    let (cred_a, _) = agent(cloud, "anna@shop.example").await;
    let mut a = Agent::open(cloud, "shop", &cred_a).await;
    a.available().await;
    let mut k1 = s.first_kiosk().await;
    let mut k2 = s.another_kiosk("req-2").await;
    let (token, _) = journey::add_customer(cloud, org.id, &k1.id, PHONE, None, 600_000);

    // The consent record arrives first (the outbox sends it when the customer answers),
    // then the call that carries its id.
    let consent_event = EventBody::Consent {
        consent_id: "con-0000000001".into(),
        notice_version: 2,
        granted: true,
        language: Some("fr".into()),
        call: None,
    };
    let consent_msg = k1.event(None, consent_event.clone()).await;
    k1.event(Some(&consent_msg), consent_event).await;
    let consent = Consent {
        id: "con-0000000001".into(),
        notice_version: 2,
        granted: true,
    };
    k1.place_customer("r-1", Some(&token), Some("fr"), Some(consent))
        .await;
    let call = call_of(&queued_at(&mut k1, 1).await);
    a.rings(&call).await;
    a.send(json!({ "type": "accept", "call": call })).await;
    assert_eq!(a.next().await["type"], "accepted");
    assert_eq!(k1.next_call().await["event"], "accepted");

    // The survey arrives twice (redelivered) while the call still runs, then a second one.
    let id = CallId::parse(&call).unwrap();
    let survey = |score| EventBody::Survey {
        call: id.clone(),
        score,
    };
    let msg = k1.event(None, survey(3)).await;
    k1.event(Some(&msg), survey(3)).await;
    k1.event(None, survey(1)).await;
    // Another kiosk cannot score this call.
    k2.event(None, survey(2)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The agent hangs up: the registry's last writes keep the score.
    a.send(json!({ "type": "end", "call": call })).await;
    assert_eq!(a.next().await["type"], "ended");
    assert_eq!(k1.next_call().await["event"], "ended");
    let list = records(cloud, admin, "", |v| {
        v["records"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["id"] == call.as_str()))
    })
    .await;
    let r = record(&list, &call);
    assert_eq!(r["survey_score"], 3, "{r}");
    assert_eq!(r["recorded"], true);
    assert_eq!(r["consent_id"], "con-0000000001");
    assert_eq!(r["outcome"], "answered");
    assert_eq!(list["totals"]["avg_survey"], 3.0);

    // One consent row, tied to its call.
    let conn = journey::open(cloud);
    let rows: Vec<(String, Option<String>, bool)> = conn
        .prepare("SELECT id, call_id, granted FROM consents WHERE device_id = ?1")
        .unwrap()
        .query_map([&k1.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        vec![("con-0000000001".into(), Some(call.clone()), true)]
    );
    // A consent naming another kiosk's call is not kept.
    k2.event(
        None,
        EventBody::Consent {
            consent_id: "con-0000000002".into(),
            notice_version: 2,
            granted: false,
            language: None,
            call: Some(id.clone()),
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let foreign: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM consents WHERE id = 'con-0000000002'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(foreign, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_export_as_csv_and_agents_see_their_own() {
    let s = setup(LONG).await;
    let cloud = &s.cloud;
    let admin = &s.first.admin;
    let org = shop(cloud);
    // A site name a spreadsheet would take for a formula.
    s.set_hours("=HYPERLINK(\"http://x\")", true).await;
    let (cred_a, id_a) = agent(cloud, "anna@shop.example").await;
    let (cred_b, id_b) = agent(cloud, "bert@shop.example").await;
    let mut a = Agent::open(cloud, "shop", &cred_a).await;
    let mut b = Agent::open(cloud, "shop", &cred_b).await;
    let mut k1 = s.first_kiosk().await;
    let (token, _) = journey::add_customer(cloud, org.id, &k1.id, PHONE, Some("fr"), 600_000);

    // Anna answers a customer's call; Bert a test call.
    a.available().await;
    k1.place_customer("r-1", Some(&token), None, None).await;
    let c1 = call_of(&queued_at(&mut k1, 1).await);
    a.rings(&c1).await;
    a.send(json!({ "type": "accept", "call": c1 })).await;
    assert_eq!(a.next().await["type"], "accepted");
    assert_eq!(k1.next_call().await["event"], "accepted");
    a.send(json!({ "type": "end", "call": c1 })).await;
    assert_eq!(a.next().await["type"], "ended");
    assert_eq!(k1.next_call().await["event"], "ended");
    a.send(json!({ "type": "available", "available": false }))
        .await;
    assert_eq!(a.next().await["type"], "availability");
    b.available().await;
    k1.place("r-2").await;
    let c2 = call_of(&queued_at(&mut k1, 1).await);
    b.rings(&c2).await;
    b.send(json!({ "type": "accept", "call": c2 })).await;
    assert_eq!(b.next().await["type"], "accepted");
    assert_eq!(k1.next_call().await["event"], "accepted");
    k1.end(&c2, EndReason::Hangup).await;
    assert_eq!(b.next().await["type"], "ended");

    // The admin sees both, with totals; a filter narrows them.
    let all = records(cloud, admin, "", |v| v["totals"]["calls"] == 2).await;
    assert_eq!(all["totals"]["answered"], 2);
    assert_eq!(all["totals"]["answer_rate"], 1.0);
    assert!(all["totals"]["avg_wait_s"].is_number());
    assert!(all["totals"]["avg_talk_s"].is_number());
    let r1 = record(&all, &c1);
    assert_eq!(r1["agent"]["id"], id_a);
    assert_eq!(r1["kind"], "customer");
    assert_eq!(r1["org"], "shop");
    assert_eq!(r1["site"]["id"], s.first.site);
    assert_eq!(r1["kiosk"]["id"], k1.id.as_str());
    let (_, bert_only) = cloud
        .call(
            Method::GET,
            &format!("/api/v1/orgs/shop/calls/records?agent={id_b}"),
            admin,
            None,
        )
        .await;
    assert_eq!(bert_only["records"].as_array().unwrap().len(), 1);
    let (_, none) = cloud
        .call(
            Method::GET,
            "/api/v1/orgs/shop/calls/records?outcome=missed&from=2020-01-01&to=2020-01-02",
            admin,
            None,
        )
        .await;
    assert_eq!(none["records"], json!([]));
    assert_eq!(none["totals"]["calls"], 0);
    assert!(none["totals"]["answer_rate"].is_null());
    let (status, _) = cloud
        .call(
            Method::GET,
            "/api/v1/orgs/shop/calls/records?outcome=lost",
            admin,
            None,
        )
        .await;
    assert_eq!(status, 422);

    // Agents see their own calls only, whatever they ask for.
    let (_, mine) = cloud
        .call(
            Method::GET,
            &format!("/api/v1/orgs/shop/calls/records?agent={id_b}"),
            &cred_a,
            None,
        )
        .await;
    let mine = mine["records"].as_array().unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], c1.as_str());

    // The CSV export: an attachment, one header row, masked numbers, ISO-8601 times, and
    // cells that would be formulas defused.
    let r = cloud
        .request(
            Method::GET,
            "/api/v1/orgs/shop/calls/records.csv",
            admin,
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"calls-shop-"),
        "{disposition}"
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[0].starts_with("call,organization,site,kiosk,"),
        "{csv}"
    );
    assert_eq!(csv.matches("call,organization").count(), 1);
    assert!(!csv.contains(PHONE), "{csv}");
    let customer_row = lines.iter().find(|l| l.starts_with(&c1)).unwrap();
    let masked = journey::masked(PHONE);
    assert!(
        customer_row.contains(&format!(",'{masked},")),
        "{customer_row}"
    );
    assert!(
        customer_row.contains(",\"'=HYPERLINK(\"\"http://x\"\")\","),
        "{customer_row}"
    );
    let iso = regex_like_iso(customer_row);
    assert!(iso >= 3, "ISO-8601 times in {customer_row}");
    let r = cloud
        .request(
            Method::GET,
            "/api/v1/orgs/shop/calls/records.csv",
            &cred_b,
            None,
        )
        .await;
    let csv = r.text().await.unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains(&c2) && !csv.contains(&c1));
    // An agent's API token has no calls of its own.
    let (_, token) = cloud.token(admin, &org, "agent").await;
    let (status, _) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/calls/records", &token, None)
        .await;
    assert_eq!(status, 403);
    // The existing call list still answers.
    let (status, list) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/calls", admin, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["calls"].as_array().unwrap().len(), 2);
}

/// How many `YYYY-MM-DDTHH:MM:SSZ` times a CSV line holds.
fn regex_like_iso(line: &str) -> usize {
    line.split(',')
        .filter(|cell| {
            let b = cell.as_bytes();
            b.len() == 20
                && b[4] == b'-'
                && b[7] == b'-'
                && b[10] == b'T'
                && b[13] == b':'
                && b[16] == b':'
                && b[19] == b'Z'
                && cell.parse::<jiff::Timestamp>().is_ok()
        })
        .count()
}
