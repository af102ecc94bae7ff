//! Live calls end to end, nothing faked but the cameras and microphones: tenantd with its
//! managed mosquitto and SQLite file, the real kiosk-sync and kiosk-media binaries on a private
//! D-Bus (kiosk-media on its test pattern and test tone, remote video into a counting sink),
//! and the agent in a real headless Chromium (fake camera) using the console's Calls page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fantoccini::Client;
use futures_lite::StreamExt as _;
use kioskcall_e2e::browser::{agent_available, click, run_async, Driver};
use kioskcall_e2e::stage::CallStage;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);
const AGENT_EMAIL: &str = "ana@shop.example";
const AGENT_PASSWORD: &str = "a private shop secret";

/// kiosk-media as the tests run it: test pattern, test tone, the agent's video counted.
const MEDIA_SETTINGS: &str = r#"version = 1
board = "development"
camera = "test-pattern"
remote_video = "count"
preview = "none"
audio_input = "test-tone"
audio_output = "fakesink"
"#;

/// Frames of the kiosk's video Chromium has decoded in the running call.
async fn chromium_frames(c: &Client) -> u64 {
    run_async(
        c,
        r#"const done = arguments[arguments.length - 1];
        const call = window.kioskcallCall;
        if (!call || !call.pc) { done(0); return; }
        call.pc.getStats().then((report) => {
          let n = 0;
          report.forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded || 0;
          });
          done(n);
        }, () => done(0));"#,
    )
    .await
    .as_u64()
    .unwrap_or(0)
}

/// What `window.kioskcallCall` says.
async fn agent_call(c: &Client) -> Value {
    c.execute(
        "const k = window.kioskcallCall; return k ? { call: k.call, state: k.state, \
         lastEnded: k.lastEnded, ringing: k.ringing } : null;",
        vec![],
    )
    .await
    .unwrap()
}

/// Accepts the ringing call `call` in the console and waits until both sides decode at least
/// `frames` frames; returns (Chromium's, the kiosk's) counts.
async fn accept_and_flow(stage: &CallStage, c: &Client, call: &str, frames: u64) -> (u64, u64) {
    click(
        c,
        &format!("[data-testid=ringing-call][data-call='{call}'] [data-testid=call-accept]"),
        LONG,
    )
    .await;
    let agent = stage
        .eventually("Chromium decodes the kiosk's video", || async {
            let n = chromium_frames(c).await;
            (n >= frames).then_some(n)
        })
        .await;
    let kiosk = stage
        .eventually("the kiosk decodes the agent's video", || async {
            let s = stage.kiosk_stats().await?;
            let n = s["frames_decoded"].as_u64()?;
            (s["call"] == call && n >= frames).then_some(n)
        })
        .await;
    (agent, kiosk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_calls_an_agent_in_chromium_and_either_side_ends_it() {
    let stage = CallStage::start((AGENT_EMAIL, "Ana", AGENT_PASSWORD), MEDIA_SETTINGS).await;
    let driver = Driver::start().await;
    let c = driver.browser(1280, 800, &[]).await;
    agent_available(&c, &stage.cloud.base, AGENT_EMAIL, AGENT_PASSWORD).await;
    let sync = stage.sync().await;
    let mut ended = sync.receive_call_ended().await.unwrap();

    // 1. The kiosk calls, the agent accepts, both directions decode; the agent hangs up.
    let call = stage.place();
    let (agent_frames, kiosk_frames) = accept_and_flow(&stage, &c, &call, 60).await;
    println!("call 1: Chromium decoded {agent_frames} frames, the kiosk {kiosk_frames}");
    let stats = stage.kiosk_stats().await.unwrap();
    assert!(
        stats["send_kbps"].as_f64().unwrap_or(0.0) > 50.0,
        "the kiosk sends video: {stats}"
    );
    click(&c, "[data-testid=call-end]", LONG).await;
    let e = tokio::time::timeout(LONG, ended.next())
        .await
        .expect("the kiosk hears the end")
        .unwrap();
    let args = e.args().unwrap();
    assert_eq!((args.call(), args.by()), (&call.as_str(), &"agent"));
    stage
        .eventually("kiosk-media idle again", || async {
            let state = stage.media_proxy().await.call_state().await.ok()?;
            (state == "idle").then_some(())
        })
        .await;

    // 2. Another call; this time the kiosk ends it and the console sees it end.
    let call = stage.place();
    accept_and_flow(&stage, &c, &call, 30).await;
    let out = stage.kiosk.kioskctl(&["call", "end"]);
    assert!(out.status.success(), "{out:?}");
    let last = stage
        .eventually("the console sees the kiosk end the call", || async {
            let k = agent_call(&c).await;
            (k["lastEnded"]["call"] == call.as_str()).then(|| k["lastEnded"].clone())
        })
        .await;
    assert_eq!(last["by"], "kiosk", "{last}");

    // 3. kiosk-media dies mid-call: kiosk-sync ends the call, and the console is told.
    let call = stage.place();
    accept_and_flow(&stage, &c, &call, 10).await;
    let mut stage = stage;
    stage.media.kill();
    let last = stage
        .eventually(
            "the console sees the call end after kiosk-media died",
            || async {
                let k = agent_call(&c).await;
                (k["lastEnded"]["call"] == call.as_str()).then(|| k["lastEnded"].clone())
            },
        )
        .await;
    assert_eq!(last["reason"], "media_failed", "{last}");
    let phase = sync.call_phase().await.unwrap();
    assert_eq!(phase, "idle");
    c.close().await.unwrap();
}
