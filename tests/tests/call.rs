//! Live calls end to end, nothing faked but the cameras and microphones: tenantd with its
//! managed mosquitto and SQLite file, the real kiosk-sync and kiosk-media binaries on a private
//! D-Bus (kiosk-media on its test pattern and test tone, remote video into a counting sink),
//! and the agent in a real headless Chromium (fake camera) using the console's Calls page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use futures_lite::StreamExt as _;
use kiosk_bus::{Media1Proxy, Sync1Proxy};
use kioskcall_e2e::browser::{click, fill, run_async, Driver};
use kioskcall_e2e::kiosk::{wait_status, Bus, KioskSync};
use kioskcall_e2e::media::KioskMedia;
use kioskcall_e2e::{Cloud, Shop};
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

/// The whole kiosk: cloud, shop, an agent, kiosk-sync enrolled and connected, kiosk-media.
struct Stage {
    cloud: Cloud,
    _bus: Bus,
    kiosk: KioskSync,
    media: KioskMedia,
    conn: zbus::Connection,
}

impl Stage {
    async fn start() -> Stage {
        let cloud = Cloud::start().await;
        let shop = Shop::create(&cloud).await;
        shop.staff(&cloud, AGENT_EMAIL, "Ana", "agent", AGENT_PASSWORD)
            .await;
        let bus = Bus::start().unwrap();
        let mut kiosk = KioskSync::new(&shop.kiosk_files(&cloud), &bus, "backend = \"none\"");
        kiosk.start();
        let conn = bus.connect().await.unwrap();
        let sync = Sync1Proxy::new(&conn).await.unwrap();
        wait_status(&kiosk, &sync, LONG, "asking", |s| s.state != "unenrolled").await;
        let out = kiosk.kioskctl(&["enroll", &shop.enrollment_token(&cloud).await]);
        assert!(out.status.success(), "{out:?}");
        wait_status(&kiosk, &sync, LONG, "connected", |s| s.connected).await;
        let mut media = KioskMedia::new(&bus, MEDIA_SETTINGS);
        media.start();
        let stage = Stage {
            cloud,
            _bus: bus,
            kiosk,
            media,
            conn,
        };
        let camera = stage
            .eventually("kiosk-media on the bus", || async {
                stage.media_proxy().await.camera().await.ok()
            })
            .await;
        assert!(
            camera.starts_with("test-pattern"),
            "the test pattern is said plainly: {camera}"
        );
        stage
    }

    async fn media_proxy(&self) -> Media1Proxy<'static> {
        Media1Proxy::builder(&self.conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap()
    }

    async fn sync(&self) -> Sync1Proxy<'static> {
        Sync1Proxy::new(&self.conn).await.unwrap()
    }

    /// Polls `f` until it gives a value.
    async fn eventually<T, F, Fut>(&self, what: &str, f: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + LONG;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "never: {what}\n--- kiosk-sync ---\n{}\n--- kiosk-media ---\n{}",
                self.kiosk.log_text(),
                self.media.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The kiosk's statistics of the running call.
    async fn kiosk_stats(&self) -> Option<Value> {
        let s = self.media_proxy().await.stats().await.ok()?;
        serde_json::from_str(&s).ok()
    }

    /// Places a test call with kioskctl; returns the call id.
    fn place(&self) -> String {
        let out = self.kiosk.kioskctl(&["call", "test"]);
        assert!(out.status.success(), "{out:?}\n{}", self.kiosk.log_text());
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split_whitespace()
            .find(|w| w.starts_with("call-"))
            .unwrap_or_else(|| panic!("no call id in {text:?}"))
            .to_string()
    }
}

/// Signs the agent in and opens the Calls page, available.
async fn agent_available(c: &Client, cloud: &Cloud) {
    let wait = LONG;
    c.goto(&format!("{}/console/", cloud.base)).await.unwrap();
    fill(c, "#login-email", AGENT_EMAIL, wait).await;
    fill(c, "#login-password", AGENT_PASSWORD, wait).await;
    click(c, "#login-submit", wait).await;
    c.wait()
        .at_most(wait)
        .for_element(Locator::Css(
            "[data-testid=calls-connection][data-state=connected]",
        ))
        .await
        .expect("the Calls page connects its WebSocket");
    let switch = c
        .wait()
        .at_most(wait)
        .for_element(Locator::Css("[data-testid=calls-availability]"))
        .await
        .unwrap();
    if switch.attr("aria-checked").await.unwrap().as_deref() != Some("true") {
        switch.click().await.unwrap();
    }
    c.wait()
        .at_most(wait)
        .for_element(Locator::Css(
            "[data-testid=calls-availability][aria-checked=true]",
        ))
        .await
        .expect("available");
}

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
async fn accept_and_flow(stage: &Stage, c: &Client, call: &str, frames: u64) -> (u64, u64) {
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
    let stage = Stage::start().await;
    let driver = Driver::start().await;
    let c = driver.browser(1280, 800, &[]).await;
    agent_available(&c, &stage.cloud).await;
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
