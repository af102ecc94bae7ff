//! Live calls end to end: a real tenantd with its managed mosquitto and SQLite store, kiosks as
//! real MQTT clients with their enrolled certificates, agents as real WebSocket clients with
//! their session cookies. A kiosk places test calls; agents ring, accept, signal and end; and
//! everyone who is not party to a call is refused without harming it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine;
use common::live::{open_ws, Agent, Kiosk, Setup};
use common::mqtt::WAIT;
use common::Cred;
use futures_util::StreamExt;
use hmac::Mac;
use kiosk_protocol::call::{EndReason, SdpType, UpSignalBody};
use reqwest::Method;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{json, Value};
use tenantd::tenancy::Role;
use tokio_tungstenite::tungstenite::Message;

const TURN_SECRET: &str = "north-wind-turn-secret-2026";
const GRACE: Duration = Duration::from_millis(1500);

async fn setup() -> Setup {
    Setup::start(|c| {
        c.calls.agent_grace = GRACE;
        c.calls.tick = Duration::from_millis(100);
        c.calls.session_recheck = Duration::from_millis(500);
    })
    .await
}

fn hmac_sha1_b64(secret: &str, message: &str) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_ring_the_organization_and_only_the_parties_signal() {
    let s = setup().await;
    let cloud = &s.cloud;
    let admin = s.first.admin.clone();

    // The organization's ICE settings; the secret is never shown back.
    let (status, ice) = cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/ice",
            &admin,
            Some(json!({ "stun_urls": ["stun:stun.example.test:3478"],
                         "turn_urls": ["turn:turn.example.test:3478?transport=udp"],
                         "turn_secret": TURN_SECRET, "max_call_s": 3600 })),
        )
        .await;
    assert_eq!(status, 200, "{ice}");
    let (status, ice) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/ice", &admin, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(ice["turn_secret_set"], true);
    assert!(!ice.to_string().contains(TURN_SECRET));
    let (status, _) = cloud
        .call(
            Method::PUT,
            "/api/v1/orgs/shop/ice",
            &admin,
            Some(json!({ "stun_urls": ["http://stun.example.test"] })),
        )
        .await;
    assert_eq!(status, 422);

    // Two agents of the shop, one of another organization.
    let shop = cloud
        .store
        .blocking(|db| db.org_ref("shop"))
        .unwrap()
        .unwrap();
    let cred_a = cloud.staff(&shop, "anna@shop.example", Role::Agent).await;
    let cred_b = cloud.staff(&shop, "bert@shop.example", Role::Agent).await;
    let other = cloud.create_org(&s.first.root, "other").await;
    let cred_c = cloud.staff(&other, "carl@other.example", Role::Agent).await;

    // The other organization's agent cannot open the shop's socket; nor can an API token or
    // another site's page.
    assert_eq!(open_ws(cloud, "shop", &cred_c, None).await.err(), Some(404));
    let (_, token) = cloud.token(&admin, &shop, "agent").await;
    assert_eq!(open_ws(cloud, "shop", &token, None).await.err(), Some(403));
    assert_eq!(
        open_ws(cloud, "shop", &cred_a, Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        open_ws(cloud, "shop", &Cred::None, None).await.err(),
        Some(401)
    );

    let mut a = Agent::open(cloud, "shop", &cred_a).await;
    let mut b = Agent::open(cloud, "shop", &cred_b).await;
    let mut c = Agent::open(cloud, "other", &cred_c).await;
    a.available().await;
    b.available().await;
    c.available().await;

    let first = &s.first;
    let mut k1 = Kiosk::connect(
        &s,
        first.device_id.as_str(),
        &first.certificate_pem,
        &first.key_pem,
    )
    .await;
    let (k2_id, k2_cert, k2_key) = cloud.enroll_another(first, s.provision_port, "req-2").await;
    let mut k2 = Kiosk::connect(&s, k2_id.as_str(), &k2_cert, &k2_key).await;

    // The kiosk places a test call: queued, and the shop's agents ring.
    k1.place("r-1").await;
    let queued = k1.next_call().await;
    assert_eq!(queued["event"], "queued", "{queued}");
    assert_eq!(queued["request"], "r-1");
    let call = queued["call"].as_str().unwrap().to_string();
    assert!(call.starts_with("call-") && call.len() == 21, "{call}");
    for agent in [&mut a, &mut b] {
        let ring = agent.next().await;
        assert_eq!(ring["type"], "ringing", "{ring}");
        assert_eq!(ring["call"], call.as_str());
        assert_eq!(ring["kiosk"]["id"], first.device_id.as_str());
        assert_eq!(ring["site"]["name"], "Lyon");
        assert_eq!(ring["kind"], "test");
    }
    c.quiet(Duration::from_millis(300)).await;
    // The same request again: the same answer. Another call while this one runs: refused.
    k1.place("r-1").await;
    assert_eq!(k1.next_call().await, queued);
    k1.place("r-other").await;
    let refused = k1.next_call().await;
    assert_eq!(refused["event"], "refused", "{refused}");

    // The other organization's agent can neither accept nor signal.
    c.send(json!({ "type": "accept", "call": call })).await;
    c.expect_error("not_your_call").await;
    c.send(json!({ "type": "sdp", "call": call, "sdp_type": "answer", "sdp": "v=0" }))
        .await;
    c.expect_error("not_your_call").await;

    // Anna accepts: Bert stops ringing, the kiosk gets the ICE servers with a TURN
    // credential made from the organization's secret.
    a.send(json!({ "type": "accept", "call": call })).await;
    let accepted = a.next().await;
    assert_eq!(accepted["type"], "accepted", "{accepted}");
    assert_eq!(
        b.next().await,
        json!({ "type": "ring_cancelled", "call": call, "reason": "taken" })
    );
    let to_kiosk = k1.next_call().await;
    assert_eq!(to_kiosk["event"], "accepted", "{to_kiosk}");
    assert_eq!(to_kiosk["call"], call.as_str());
    assert_eq!(to_kiosk["ice_servers"], accepted["ice_servers"]);
    let servers = to_kiosk["ice_servers"].as_array().unwrap();
    assert_eq!(servers[0]["urls"], json!(["stun:stun.example.test:3478"]));
    let turn = &servers[1];
    assert_eq!(
        turn["urls"],
        json!(["turn:turn.example.test:3478?transport=udp"])
    );
    let expires_at_ms = to_kiosk["expires_at_ms"].as_i64().unwrap();
    let username = turn["username"].as_str().unwrap();
    assert_eq!(username, format!("{}:{call}", expires_at_ms / 1000));
    assert_eq!(
        turn["credential"].as_str().unwrap(),
        hmac_sha1_b64(TURN_SECRET, username)
    );
    let now_ms = jiff::Timestamp::now().as_millisecond();
    assert!((expires_at_ms - now_ms - 3_600_000).abs() < 60_000);

    // SDP and candidates pass both ways unchanged.
    let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
    k1.signal(UpSignalBody::Sdp {
        call: kiosk_protocol::call::CallId::parse(&call).unwrap(),
        sdp_type: SdpType::Offer,
        sdp: offer.into(),
    })
    .await;
    assert_eq!(
        a.next().await,
        json!({ "type": "sdp", "call": call, "sdp_type": "offer", "sdp": offer })
    );
    let kiosk_ice = |candidate: &str| UpSignalBody::Ice {
        call: kiosk_protocol::call::CallId::parse(&call).unwrap(),
        candidate: candidate.into(),
        sdp_mline_index: 0,
    };
    k1.signal(kiosk_ice(
        "candidate:1 1 UDP 2122 192.0.2.10 50000 typ host",
    ))
    .await;
    assert_eq!(
        a.next().await,
        json!({ "type": "ice", "call": call, "candidate": "candidate:1 1 UDP 2122 192.0.2.10 50000 typ host", "sdp_mline_index": 0 })
    );
    let answer = "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\n";
    a.send(json!({ "type": "sdp", "call": call, "sdp_type": "answer", "sdp": answer }))
        .await;
    assert_eq!(
        k1.next_signal().await,
        json!({ "v": 1, "call": call, "type": "sdp", "sdp_type": "answer", "sdp": answer })
    );
    a.send(json!({ "type": "ice", "call": call, "candidate": "candidate:2 1 UDP 1 198.51.100.7 40000 typ srflx", "sdp_mline_index": 1 }))
        .await;
    assert_eq!(
        k1.next_signal().await,
        json!({ "v": 1, "call": call, "type": "ice", "candidate": "candidate:2 1 UDP 1 198.51.100.7 40000 typ srflx", "sdp_mline_index": 1 })
    );

    // Bert is not party to the call: refused, and the call goes on.
    b.send(json!({ "type": "sdp", "call": call, "sdp_type": "answer", "sdp": "v=0" }))
        .await;
    b.expect_error("not_your_call").await;
    b.send(json!({ "type": "end", "call": call })).await;
    let err = b.expect_error("not_your_call").await;
    assert_eq!(err["call"], call.as_str());
    // Nor is the second kiosk: its signals and its end are dropped.
    k2.signal(kiosk_ice("candidate:9 1 UDP 1 203.0.113.9 9 typ host"))
        .await;
    k2.signal(UpSignalBody::End {
        call: kiosk_protocol::call::CallId::parse(&call).unwrap(),
        reason: EndReason::Hangup,
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    k1.signal(kiosk_ice("candidate:3 1 UDP 2 192.0.2.10 50001 typ host"))
        .await;
    let next = a.next().await;
    assert_eq!(
        next["candidate"], "candidate:3 1 UDP 2 192.0.2.10 50001 typ host",
        "only the placing kiosk's signals reach the agent: {next}"
    );

    // Bad frames are refused; the call is not harmed.
    a.send_text(format!(
        r#"{{"type":"sdp","call":"{call}","sdp_type":"answer","sdp":"{}"}}"#,
        "a".repeat(70 * 1024)
    ))
    .await;
    a.expect_error("bad_message").await;
    a.send_text("this is not json".into()).await;
    a.expect_error("bad_message").await;
    a.send(json!({ "type": "dance", "call": call })).await;
    a.expect_error("bad_message").await;
    a.send(json!({ "type": "accept" })).await;
    a.expect_error("bad_message").await;
    // A flood: past 50 frames a second, one `rate` error and the rest dropped.
    for _ in 0..80 {
        a.send(json!({ "type": "ping" })).await;
    }
    a.expect_error("rate").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.send(json!({ "type": "ice", "call": call, "candidate": "", "sdp_mline_index": 0 }))
        .await;
    let last = k1.next_signal().await;
    assert_eq!(last["candidate"], "", "{last}");

    // The kiosk hangs up: Anna hears it.
    k1.signal(UpSignalBody::End {
        call: kiosk_protocol::call::CallId::parse(&call).unwrap(),
        reason: EndReason::Hangup,
    })
    .await;
    assert_eq!(
        a.next().await,
        json!({ "type": "ended", "call": call, "reason": "hangup", "by": "kiosk" })
    );

    // The console lists it: the admin sees it, Anna sees hers, Bert none.
    let listed = cloud
        .eventually(&admin, "/api/v1/orgs/shop/calls", |v| {
            v["calls"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["id"] == call.as_str() && c["state"] == "ended")
            })
        })
        .await;
    let row = listed["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == call.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["end_reason"], "hangup");
    assert_eq!(row["ended_by"], "kiosk");
    assert_eq!(row["device_id"], first.device_id.as_str());
    let (_, mine) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/calls", &cred_a, None)
        .await;
    assert_eq!(mine["calls"].as_array().unwrap().len(), 1);
    let (_, none) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/calls", &cred_b, None)
        .await;
    assert_eq!(none["calls"], json!([]));

    // Snapshots: Anna, who took the call, may store one just after it; Bert may not.
    let snap_path = format!("/api/v1/orgs/shop/calls/{call}/snapshots");
    let post = |cred: &Cred, media: &str, body: &[u8]| {
        let mut req = cloud
            .client
            .post(format!("{}{snap_path}", cloud.base))
            .header("content-type", media)
            .body(body.to_vec());
        if let Cred::Cookie(c) = cred {
            req = req.header("cookie", format!("__Host-kc_session={c}"));
        }
        req.send()
    };
    let r = post(&cred_a, "image/png", PNG).await.unwrap();
    assert_eq!(r.status(), 201);
    let snap: Value = r.json().await.unwrap();
    assert_eq!(post(&cred_b, "image/png", PNG).await.unwrap().status(), 403);
    assert_eq!(
        post(&cred_a, "image/jpeg", PNG).await.unwrap().status(),
        422,
        "the type must match the bytes"
    );
    assert_eq!(
        post(&cred_a, "image/png", b"GIF89a....")
            .await
            .unwrap()
            .status(),
        422
    );
    let mut big = PNG.to_vec();
    big.resize(2 * 1024 * 1024 + 1, 0);
    assert_eq!(
        post(&cred_a, "image/png", &big).await.unwrap().status(),
        413
    );
    let (_, list) = cloud.call(Method::GET, &snap_path, &admin, None).await;
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 1);
    let one = format!("{snap_path}/{}", snap["id"]);
    let r = cloud.request(Method::GET, &one, &cred_a, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().as_ref(), PNG);
    let (status, _) = cloud.call(Method::GET, &one, &cred_b, None).await;
    assert_eq!(status, 404);
    let (_, audit) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/audit", &admin, None)
        .await;
    assert!(audit.to_string().contains("call.snapshot"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_end_by_the_agent_by_a_lost_agent_and_by_an_offline_kiosk() {
    let s = setup().await;
    let cloud = &s.cloud;
    let shop = cloud
        .store
        .blocking(|db| db.org_ref("shop"))
        .unwrap()
        .unwrap();
    let cred_a = cloud.staff(&shop, "anna@shop.example", Role::Agent).await;
    let cred_b = cloud.staff(&shop, "bert@shop.example", Role::Agent).await;
    let mut a = Agent::open(cloud, "shop", &cred_a).await;
    let mut b = Agent::open(cloud, "shop", &cred_b).await;
    let first = &s.first;
    let mut k1 = Kiosk::connect(
        &s,
        first.device_id.as_str(),
        &first.certificate_pem,
        &first.key_pem,
    )
    .await;

    // Nobody available: the call still queues, and rings whoever becomes available.
    k1.place("r-1").await;
    let queued = k1.next_call().await;
    assert_eq!(queued["event"], "queued");
    let call = queued["call"].as_str().unwrap().to_string();
    a.available().await;
    assert_eq!(a.next().await["type"], "ringing");
    b.available().await;
    assert_eq!(b.next().await["type"], "ringing");

    // Anna accepts, then hangs up: the kiosk hears it was the agent. Without ICE settings
    // the call has no ICE servers.
    a.send(json!({ "type": "accept", "call": call })).await;
    let accepted = a.next().await;
    assert_eq!(accepted["ice_servers"], json!([]));
    assert_eq!(b.next().await["reason"], "taken");
    assert_eq!(k1.next_call().await["event"], "accepted");
    a.send(json!({ "type": "end", "call": call })).await;
    assert_eq!(
        a.next().await,
        json!({ "type": "ended", "call": call, "reason": "hangup", "by": "agent" })
    );
    let ended = k1.next_call().await;
    assert_eq!(ended["event"], "ended");
    assert_eq!(ended["reason"], "hangup");
    assert_eq!(ended["by"], "agent");

    // Another call; Bert accepts and his socket goes away: after the grace, the kiosk learns
    // the agent is gone.
    k1.place("r-2").await;
    let call = k1.next_call().await["call"].as_str().unwrap().to_string();
    assert_eq!(a.next().await["call"], call.as_str());
    assert_eq!(b.next().await["call"], call.as_str());
    b.send(json!({ "type": "accept", "call": call })).await;
    assert_eq!(b.next().await["type"], "accepted");
    assert_eq!(a.next().await["reason"], "taken");
    assert_eq!(k1.next_call().await["event"], "accepted");
    let gone_at = std::time::Instant::now();
    b.ws.close(None).await.unwrap();
    drop(b);
    let ended = k1.next_call().await;
    assert_eq!(ended["event"], "ended", "{ended}");
    assert_eq!(ended["reason"], "agent_disconnected");
    assert_eq!(ended["by"], "cloud");
    assert!(gone_at.elapsed() >= GRACE - Duration::from_millis(100));

    // A third call; the kiosk goes offline: Anna hears it.
    k1.place("r-3").await;
    let call = k1.next_call().await["call"].as_str().unwrap().to_string();
    assert_eq!(a.next().await["call"], call.as_str());
    a.send(json!({ "type": "accept", "call": call })).await;
    assert_eq!(a.next().await["type"], "accepted");
    k1.client
        .publish(
            format!("kiosk/v1/{}/status", k1.id),
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&json!({ "v": 1, "state": "offline" })).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        a.next().await,
        json!({ "type": "ended", "call": call, "reason": "kiosk_offline", "by": "cloud" })
    );

    // Signing out elsewhere closes the socket.
    let (status, _) = cloud
        .call(Method::POST, "/api/v1/auth/logout", &cred_a, None)
        .await;
    assert_eq!(status, 204);
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match a.ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the socket closes");
    assert_eq!(closed, Some(4401));
}
