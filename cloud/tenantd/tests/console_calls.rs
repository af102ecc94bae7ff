//! The console's Calls page in a real headless Chromium (through chromedriver) against a real
//! tenantd, with Chromium's fake camera and microphone.
//!
//! - The page: an agent lands on it, sees the availability switch and the connection state,
//!   every control has an accessible name, nothing breaks the strict CSP (a same-origin
//!   WebSocket is allowed by `connect-src 'self'`, a foreign one is not), and leaving the page
//!   closes the socket. Whether the calls WebSocket is served yet or not, the page holds up: it
//!   either connects or says it is reconnecting.
//! - The in-call view against a kiosk stand-in: a second RTCPeerConnection in the same page
//!   plays the kiosk (it offers, trickles its candidates before the offer, renegotiates with an
//!   ICE restart), signalling passed in page. Both sides decode frames; the quality panel,
//!   mute, snapshot (a JPEG POSTed to the snapshot endpoint) and End work; on a phone-sized
//!   screen the call fills the screen with its controls in reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::browser::{
    browser, click, fill, js, js_async, screenshot, start_driver, until, wait_css, wait_page,
    Driver,
};
use common::{TestCloud, STAFF_PASSWORD};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use tenantd::tenancy::Role;

/// Page errors, unhandled rejections and CSP violations from now on land in `__problems`.
const WATCH: &str = r#"
window.__problems = [];
window.addEventListener('error', (e) => window.__problems.push('error: ' + e.message));
window.addEventListener('unhandledrejection', (e) => window.__problems.push('rejection: ' + (e.reason && e.reason.message || e.reason)));
document.addEventListener('securitypolicyviolation', (e) => window.__problems.push('csp: ' + e.violatedDirective + ' ' + e.blockedURI));
"#;

async fn problems(c: &Client) -> Value {
    js(c, "return window.__problems").await
}

/// A signed-in agent of "shop" on the Calls page (their landing page).
async fn agent_on_calls_page(width: u32, height: u32) -> (TestCloud, Driver, Client) {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    cloud.add_user(&org, "tech@shop.example", Role::Agent);
    let driver = start_driver().await;
    let c = browser(&driver, width, height).await;
    c.goto(&format!("{}/console/", cloud.base)).await.unwrap();
    wait_page(&c, "login").await;
    fill(&c, "#login-email", "tech@shop.example").await;
    fill(&c, "#login-password", STAFF_PASSWORD).await;
    click(&c, "#login-submit").await;
    wait_page(&c, "calls").await;
    js(&c, WATCH).await;
    (cloud, driver, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_lands_on_the_calls_page_which_connects_or_says_it_is_reconnecting() {
    let (cloud, _driver, c) = agent_on_calls_page(1280, 900).await;
    assert!(c.current_url().await.unwrap().as_str().ends_with("#/calls"));
    assert_eq!(
        js(
            &c,
            "return document.querySelector('nav a[aria-current=page]').textContent"
        )
        .await,
        "Calls"
    );

    // The switch: a named switch, off or on as the server (or the agent) says.
    let toggle = wait_css(&c, "[data-testid=calls-availability]").await;
    assert_eq!(
        toggle.attr("role").await.unwrap().as_deref(),
        Some("switch")
    );
    assert!(toggle.text().await.unwrap().contains("Available for calls"));

    // The socket: connected once the server side serves it; until then "reconnecting", with
    // its countdown and a button to try at once.
    let state = until(
        &c,
        "the calls socket state",
        "document.querySelector('[data-testid=calls-connection]').dataset.state",
        |v| v == "connected" || v == "reconnecting",
    )
    .await;
    let connection = js(
        &c,
        "return document.querySelector('[data-testid=calls-connection]').textContent",
    )
    .await;
    println!("calls socket: {state} ({connection})");
    assert_eq!(js(&c, "return window.kioskcallCall.socket").await, state);
    if state == "reconnecting" {
        assert!(
            connection.as_str().unwrap().contains("Reconnecting"),
            "{connection}"
        );
        // Retrying at once is one more same-origin WebSocket: no CSP violation.
        until(
            &c,
            "the retry button",
            "!document.querySelector('[data-testid=calls-retry]').hidden",
            |v| v == true,
        )
        .await;
        js(
            &c,
            "document.querySelector('[data-testid=calls-retry]').click()",
        )
        .await;
        until(
            &c,
            "the retry",
            "document.querySelector('[data-testid=calls-connection]').dataset.state",
            |v| v == "reconnecting" || v == "connected",
        )
        .await;
    }

    // Switching on: checked at once (confirmed by the server when it is connected).
    toggle.click().await.unwrap();
    until(
        &c,
        "the switch",
        "document.querySelector('[data-testid=calls-availability]').getAttribute('aria-checked')",
        |v| v == "true",
    )
    .await;
    if state == "connected" {
        until(&c, "availability", "window.kioskcallCall.available", |v| {
            v == true
        })
        .await;
    } else {
        let says = js(
            &c,
            "return document.getElementById('calls-availability-state').textContent",
        )
        .await;
        assert_eq!(says, "Available once connected");
    }

    // The hook is read-only.
    let hook = js(
        &c,
        "'use strict'; try { window.kioskcallCall = null; } catch (e) {} \
         try { window.kioskcallCall.pc = 1; } catch (e) {} \
         return [typeof window.kioskcallCall, window.kioskcallCall.pc, window.kioskcallCall.state, window.kioskcallCall.ringing]",
    )
    .await;
    assert_eq!(hook, json!(["object", null, "idle", []]));

    // Every control on the page has an accessible name.
    let unnamed = js(
        &c,
        "return [...document.querySelectorAll('button, a[href], [role=switch], video')] \
           .filter((el) => !(el.getAttribute('aria-label') || el.textContent.trim())) \
           .map((el) => el.outerHTML)",
    )
    .await;
    assert_eq!(unnamed, json!([]), "controls without a name");

    // connect-src 'self' admits a same-origin WebSocket (wss:) and refuses a foreign one.
    let same = js_async(
        &c,
        "const done = arguments[arguments.length - 1]; \
         const ws = new WebSocket(`wss://${location.host}/api/v1/nothing-here`); \
         ws.onclose = () => done(window.__problems.slice()); ws.onerror = () => {};",
    )
    .await;
    assert_eq!(same, json!([]), "same-origin WebSocket blocked by CSP");
    let foreign = js_async(
        &c,
        "const done = arguments[arguments.length - 1]; \
         try { const ws = new WebSocket('wss://example.invalid/'); ws.onerror = () => {}; } catch (e) {} \
         setTimeout(() => done(window.__problems.splice(0)), 500);",
    )
    .await;
    assert!(
        foreign.to_string().contains("csp: connect-src"),
        "a foreign WebSocket must be refused by the CSP: {foreign}"
    );

    // Snapshot thumbnails are blob: images: img-src admits them.
    let thumb = js_async(
        &c,
        "const done = arguments[arguments.length - 1]; \
         const canvas = document.createElement('canvas'); canvas.width = 8; canvas.height = 8; \
         canvas.toBlob((b) => { const img = new Image(); \
           img.onload = () => done(img.naturalWidth); img.onerror = () => done('refused'); \
           img.src = URL.createObjectURL(b); }, 'image/jpeg');",
    )
    .await;
    assert_eq!(thumb, json!(8), "blob: thumbnail");
    screenshot(&c, "calls-page").await;

    // Leaving the page closes the socket.
    c.goto(&format!("{}/console/#/password", cloud.base))
        .await
        .unwrap();
    wait_page(&c, "password").await;
    until(&c, "socket closed", "window.kioskcallCall.socket", |v| {
        v == "offline"
    })
    .await;
    assert_eq!(problems(&c).await, json!([]));
    c.close().await.unwrap();
}

/// Sets up the kiosk stand-in and a call session in the page (see the module comment).
/// Signalling frames the console sends are kept in `window.__sent` (types) and applied to
/// the stand-in in order.
const LOOPBACK: &str = r#"
const done = arguments[arguments.length - 1];
(async () => {
  const m = await import('/console/call-view.js');
  const kiosk = new RTCPeerConnection();
  const camera = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  for (const t of camera.getTracks()) kiosk.addTrack(t, camera);
  const fromKiosk = [];
  kiosk.onicecandidate = (e) => fromKiosk.push({ type: 'ice', call: 'c1',
    candidate: e.candidate ? e.candidate.candidate : '', sdp_mline_index: e.candidate ? e.candidate.sdpMLineIndex : 0 });
  const offer = await kiosk.createOffer();
  await kiosk.setLocalDescription(offer);
  await new Promise((ok) => {
    const check = () => kiosk.iceGatheringState === 'complete' && ok();
    kiosk.addEventListener('icegatheringstatechange', check);
    check();
  });
  window.__sent = [];
  window.__snap = null;
  const realFetch = window.fetch;
  window.fetch = (url, init) => {
    if (String(url).includes('/snapshots')) {
      window.__snap = { url: String(url), type: init.headers['Content-Type'], size: init.body.size };
    }
    return realFetch(url, init);
  };
  let chain = Promise.resolve();
  const toKiosk = async (f) => {
    if (f.type === 'sdp') await kiosk.setRemoteDescription({ type: f.sdp_type, sdp: f.sdp });
    else if (f.type === 'ice' && f.candidate) await kiosk.addIceCandidate({ candidate: f.candidate, sdpMLineIndex: f.sdp_mline_index });
  };
  const session = new m.CallSession({
    call: 'c1', kiosk: { id: 'k1', name: 'Front desk kiosk' }, site: { id: 1, name: 'Lyon' }, kind: 'test',
    iceServers: [], org: 'shop',
    send: (f) => { window.__sent.push(f.type + (f.sdp_type ? ':' + f.sdp_type : '')); chain = chain.then(() => toKiosk(f)); },
    onClosed: (s) => { window.__closed = s; },
  });
  document.querySelector('.call-slot').append(session.el);
  session.start();
  // The kiosk's candidates first, then its offer (without candidates in it).
  for (const c of fromKiosk) session.signal(c);
  session.signal({ type: 'sdp', call: 'c1', sdp_type: 'offer', sdp: offer.sdp });
  window.__kiosk = kiosk;
  window.__camera = camera;
  done('ok');
})().catch((e) => done('failed: ' + e));
"#;

/// Frames decoded by `pc`'s inbound video (a JS expression for the peer connection).
async fn frames_decoded(c: &Client, pc: &str) -> i64 {
    js_async(
        c,
        &format!(
            "const done = arguments[arguments.length - 1]; \
             const pc = {pc}; if (!pc) {{ done(-1); return; }} \
             pc.getStats().then((r) => {{ let n = 0; \
               r.forEach((s) => {{ if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded || 0; }}); \
               done(n); }}, () => done(-1));"
        ),
    )
    .await
    .as_i64()
    .unwrap()
}

async fn until_frames(c: &Client, pc: &str, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = frames_decoded(c, pc).await;
        if n >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pc} decoded only {n} video frames"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn start_loopback_call(c: &Client) {
    assert_eq!(js_async(c, LOOPBACK).await, "ok");
    wait_css(c, "[data-testid=call-view][data-call=c1]").await;
    assert_eq!(js(c, "return window.kioskcallCall.call").await, "c1");
    // Both directions carry video: the kiosk sees the agent's fake camera, and the console
    // the kiosk's.
    until_frames(c, "window.kioskcallCall.pc", 60).await;
    until_frames(c, "window.__kiosk", 60).await;
    until(
        c,
        "call state",
        "document.querySelector('[data-testid=call-state]').dataset.state",
        |v| v == "connected",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_view_answers_the_kiosk_and_carries_video_both_ways() {
    let (_cloud, _driver, c) = agent_on_calls_page(1280, 900).await;
    start_loopback_call(&c).await;
    assert_eq!(
        js(&c, "return window.kioskcallCall.state").await,
        "connected"
    );
    let sent = js(&c, "return window.__sent").await;
    let sent: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(sent[0], "sdp:answer", "{sent:?}");
    assert!(
        sent.iter().filter(|s| **s == "ice").count() >= 2,
        "{sent:?}"
    );

    // The quality panel, once a second.
    until(
        &c,
        "quality",
        "window.kioskcallCall.quality && window.kioskcallCall.quality.bitrateKbps",
        |v| v.as_i64().is_some_and(|n| n > 0),
    )
    .await;
    let panel = js(
        &c,
        "const q = (t) => document.querySelector(`[data-testid=${t}]`).textContent; \
         return [q('quality-bitrate'), q('quality-fps'), q('quality-path'), q('quality-loss'), \
                 document.querySelector('[data-testid=call-quality]').dataset.path]",
    )
    .await;
    println!("quality: {panel}");
    assert!(panel[0].as_str().unwrap().ends_with("kbit/s"), "{panel}");
    assert!(panel[1].as_str().unwrap().ends_with("fps"), "{panel}");
    assert!(panel[2].as_str().unwrap().starts_with("host"), "{panel}");
    assert_eq!(panel[4], "host");

    // Mute: the button says so and the microphone track stops.
    click(&c, "[data-testid=call-mute]").await;
    let muted = js(
        &c,
        "return [document.querySelector('[data-testid=call-mute]').getAttribute('aria-pressed'), \
          window.kioskcallCall.pc.getSenders().find((s) => s.track && s.track.kind === 'audio').track.enabled]",
    )
    .await;
    assert_eq!(muted, json!(["true", false]));
    click(&c, "[data-testid=call-mute]").await;

    // The kiosk renegotiates (an ICE restart): the console answers again, video goes on.
    let again = js_async(
        &c,
        "const done = arguments[arguments.length - 1]; (async () => { \
           const k = window.__kiosk; const o = await k.createOffer({ iceRestart: true }); \
           await k.setLocalDescription(o); \
           const { activeSession } = await import('/console/call-view.js'); \
           activeSession().signal({ type: 'sdp', call: 'c1', sdp_type: 'offer', sdp: o.sdp }); \
           for (let i = 0; i < 50 && k.signalingState !== 'stable'; i++) await new Promise((r) => setTimeout(r, 100)); \
           done(k.signalingState); })().catch((e) => done('failed: ' + e));",
    )
    .await;
    assert_eq!(again, "stable");
    let before = frames_decoded(&c, "window.kioskcallCall.pc").await;
    until_frames(&c, "window.kioskcallCall.pc", before + 30).await;

    // A snapshot: a JPEG within 2 MiB, POSTed to the call's snapshot endpoint; the outcome
    // is shown (saved, or the server's refusal while this test's call id is unknown to it).
    click(&c, "[data-testid=call-snapshot]").await;
    let outcome = until(
        &c,
        "snapshot outcome",
        "document.querySelector('[data-testid=snapshot-status]').textContent || \
         document.querySelector('[data-testid=snapshot-error]').textContent",
        |v| v.as_str().is_some_and(|s| !s.is_empty()),
    )
    .await;
    println!("snapshot: {outcome}");
    let snap = js(&c, "return window.__snap").await;
    assert_eq!(snap["url"], "/api/v1/orgs/shop/calls/c1/snapshots");
    assert_eq!(snap["type"], "image/jpeg");
    let size = snap["size"].as_i64().unwrap();
    assert!(size > 1000 && size <= 2 * 1024 * 1024, "{snap}");
    screenshot(&c, "call-desktop").await;

    // End: the console says so, and everything is released.
    js_async(
        &c,
        "const done = arguments[arguments.length - 1]; \
         import('/console/call-view.js').then((m) => { const s = m.activeSession(); \
           window.__agentTracks = s.local.getTracks(); window.__pc = s.pc; done(); });",
    )
    .await;
    click(&c, "[data-testid=call-end]").await;
    let after = js(
        &c,
        "return [window.__sent[window.__sent.length - 1], window.__closed.by, \
          window.kioskcallCall.pc, window.kioskcallCall.call, window.kioskcallCall.state, \
          window.__agentTracks.map((t) => t.readyState), window.__pc.connectionState, \
          !!document.querySelector('[data-testid=call-view]')]",
    )
    .await;
    assert_eq!(
        after,
        json!([
            "end",
            "agent",
            null,
            null,
            "idle",
            ["ended", "ended"],
            "closed",
            false
        ])
    );
    assert_eq!(problems(&c).await, json!([]));
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_phone_the_call_fills_the_screen_with_its_controls_in_reach() {
    let (_cloud, _driver, c) = agent_on_calls_page(390, 844).await;
    let overflow = js(
        &c,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow {overflow}"
    );
    screenshot(&c, "calls-phone").await;

    start_loopback_call(&c).await;
    let layout = js(
        &c,
        "const r = document.querySelector('[data-testid=call-view]').getBoundingClientRect(); \
         const controls = ['call-mute', 'call-camera', 'call-snapshot', 'call-end'].map((t) => \
           document.querySelector(`[data-testid=${t}]`).getBoundingClientRect()); \
         return { view: [r.left, r.top, r.width, r.height], vw: innerWidth, vh: innerHeight, \
           inReach: controls.every((b) => b.top >= 0 && b.bottom <= innerHeight && b.height >= 44 && b.width >= 44) }",
    )
    .await;
    println!("phone layout: {layout}");
    assert_eq!(layout["view"][0], 0);
    assert_eq!(layout["view"][1], 0);
    assert_eq!(layout["view"][2], layout["vw"]);
    assert_eq!(layout["view"][3], layout["vh"]);
    assert_eq!(layout["inReach"], true, "{layout}");
    screenshot(&c, "call-phone").await;
    click(&c, "[data-testid=call-end]").await;
    assert_eq!(problems(&c).await, json!([]));
    c.close().await.unwrap();
}

/// Controls without an accessible name on the current page (buttons, links, form fields).
async fn unnamed_controls(c: &Client) -> Value {
    js(
        c,
        "return [...document.querySelectorAll('main button, main a[href], main input:not([type=hidden]), main select, main summary')] \
           .filter((el) => !(el.getAttribute('aria-label') || (el.labels && el.labels.length) || el.textContent.trim())) \
           .map((el) => el.outerHTML)",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_callbacks_pages_work_on_a_phone() {
    use kiosk_protocol::call::{CallKind, EndReason, Party};
    use tenantd::calls::registry::{new_call_id, CallRecord, CallState, Outcome};

    let (cloud, _driver, c) = agent_on_calls_page(390, 844).await;
    let org = cloud
        .store
        .blocking(|db| db.org_ref("shop"))
        .unwrap()
        .unwrap();
    let site = cloud.add_site(&org, "Lyon");
    let device = cloud.add_device(&org, site);
    let me = cloud
        .store
        .blocking(|db| db.login_record("tech@shop.example"))
        .unwrap()
        .unwrap()
        .user_id;
    let now = jiff::Timestamp::now().as_millisecond();
    let record = CallRecord {
        state: CallState::Ended,
        agent_id: Some(me),
        accepted_at_ms: Some(now - 60_000),
        ended_at_ms: Some(now),
        end_reason: Some(EndReason::Hangup),
        ended_by: Some(Party::Agent),
        outcome: Some(Outcome::Answered),
        phone_masked: Some("+33•••••••78".into()),
        ..CallRecord::new(
            new_call_id(),
            org.id,
            Some(site),
            device.clone(),
            CallKind::Customer,
            "r-1".into(),
            now - 90_000,
        )
    };
    cloud.store.blocking(|db| db.save_call(&record)).unwrap();
    let callback =
        common::journey::add_callback(&cloud, org.id, Some(site), &device, None, "+33612345678");

    // Records: the agent's call with its totals and the CSV link; a filter empties it.
    c.goto(&format!("{}/console/#/records", cloud.base))
        .await
        .unwrap();
    wait_page(&c, "records").await;
    wait_css(
        &c,
        &format!("#records-table tr[data-call=\"{}\"]", record.id.as_str()),
    )
    .await;
    let totals = js(
        &c,
        "return document.getElementById('records-totals').textContent",
    )
    .await;
    assert!(totals.as_str().unwrap().contains("100 %"), "{totals}");
    let href = js(
        &c,
        "return document.getElementById('records-csv').getAttribute('href')",
    )
    .await;
    assert_eq!(href, "/api/v1/orgs/shop/calls/records.csv");
    assert_eq!(unnamed_controls(&c).await, json!([]), "records page");
    let overflow = js(
        &c,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow {overflow}"
    );
    screenshot(&c, "records-phone").await;
    c.find(Locator::Css("#records-outcome option[value=\"missed\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&c, "#records-apply").await;
    until(
        &c,
        "filtered records",
        "document.querySelectorAll('#records-table tbody tr').length",
        |v| v == 0,
    )
    .await;
    let href = js(
        &c,
        "return document.getElementById('records-csv').getAttribute('href')",
    )
    .await;
    assert_eq!(href, "/api/v1/orgs/shop/calls/records.csv?outcome=missed");

    // Callbacks: the full number as a tel: link; "Done" takes it off the open list.
    c.goto(&format!("{}/console/#/callbacks", cloud.base))
        .await
        .unwrap();
    wait_page(&c, "callbacks").await;
    wait_css(
        &c,
        &format!("tr[data-callback=\"{callback}\"] a[href=\"tel:+33612345678\"]"),
    )
    .await;
    assert_eq!(unnamed_controls(&c).await, json!([]), "callbacks page");
    screenshot(&c, "callbacks-phone").await;
    click(&c, ".callback-done").await;
    until(
        &c,
        "callback done",
        "document.querySelectorAll('#callbacks-table tbody tr').length",
        |v| v == 0,
    )
    .await;
    let status = js(
        &c,
        "return document.getElementById('callbacks-status').textContent",
    )
    .await;
    assert!(status.as_str().unwrap().contains("marked done"), "{status}");
    assert_eq!(problems(&c).await, json!([]));
    c.close().await.unwrap();
}
