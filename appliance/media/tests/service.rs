//! The `kiosk-media` binary on a private bus, driven through `org.kioskcall.Media1`, with the
//! agent simulator on the other side of the call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_lite::StreamExt as _;
use kiosk_bus::media::{call_state, Media1Proxy};
use kiosk_bus::testing::PrivateBus;
use kiosk_media::service::{signal_from_wire, signal_to_wire};
use kiosk_media::{AgentSim, MediaEvent};
use tokio::sync::mpsc::unbounded_channel;

const LONG: Duration = Duration::from_secs(60);

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn proxy(conn: &zbus::Connection) -> Media1Proxy<'static> {
    Media1Proxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap()
}

#[test]
fn check_refuses_a_bad_file_and_accepts_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "camera = \"test-pattern\"\n").unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "latency_ms = 0\n").unwrap();
    let run = |p: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_kiosk-media"))
            .args(["--check", "--config"])
            .arg(p)
            .output()
            .unwrap()
    };
    assert!(run(&good).status.success());
    let out = run(&bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("latency_ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_media1_reaches_in_call_and_back_to_idle() {
    common::init();
    let _one = common::one_call_at_a_time().await;
    let bus = PrivateBus::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("media.toml");
    std::fs::write(
        &config,
        "camera = \"test-pattern\"\nremote_video = \"count\"\naudio_input = \"test-tone\"\naudio_output = \"fakesink\"\nstamp = true\n",
    )
    .unwrap();
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_kiosk-media"))
            .arg("--config")
            .arg(&config)
            .arg("--bus")
            .arg(&bus.address)
            .env("RUST_LOG", "warn,kiosk_media=info")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let conn = bus.connect().await.unwrap();
    let media = proxy(&conn).await;
    let mut camera = None;
    for _ in 0..200 {
        if let Ok(c) = media.camera().await {
            camera = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let camera = camera.expect("kiosk-media on the bus");
    assert!(camera.starts_with("test-pattern"), "{camera}");
    assert_eq!(media.encoder().await.unwrap(), "x264enc");
    assert!(!media.encoder_reason().await.unwrap().is_empty());
    assert!(media
        .camera_mode()
        .await
        .unwrap()
        .starts_with("1280x720@30"));
    assert_eq!(media.call_state().await.unwrap(), call_state::IDLE);
    assert!(media.stats().await.unwrap().is_empty());

    let call = "call-servicetest1";
    let mut local = media.receive_local_signal().await.unwrap();
    let mut states = media.receive_call_state_signal().await.unwrap();
    let (atx, mut arx) = unbounded_channel();
    let agent = AgentSim::start(&common::agent_plan(), call, &[], atx).unwrap();
    media.start_call(call, "[]").await.unwrap();
    assert_eq!(media.call_id().await.unwrap(), call);
    assert!(
        media.start_call("call-secondcall", "[]").await.is_err(),
        "one call at a time"
    );

    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + LONG;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let stats = loop {
        tokio::select! {
            Some(s) = local.next() => {
                let a = s.args().unwrap();
                assert_eq!(a.call(), &call);
                agent.add_remote(signal_from_wire(a.kind(), a.payload()).unwrap()).unwrap();
            }
            Some(e) = arx.recv() => {
                if let MediaEvent::Signal(s) = e {
                    let (kind, payload) = signal_to_wire(&s);
                    media.add_remote_signal(call, kind, &payload).await.unwrap();
                }
            }
            Some(s) = states.next() => {
                seen.push(s.args().unwrap().state().to_string());
            }
            _ = tick.tick() => {
                let stats = media.stats().await.unwrap();
                if seen.iter().any(|s| s == call_state::IN_CALL) && !stats.is_empty()
                    && agent.counters().frames_decoded >= 30 {
                    break stats;
                }
            }
            _ = tokio::time::sleep_until(deadline) => panic!("no call: states {seen:?}, agent {:?}", agent.counters()),
        }
    };
    assert_eq!(media.call_state().await.unwrap(), call_state::IN_CALL);
    let s: kiosk_protocol::telemetry::CallStats = serde_json::from_str(&stats).unwrap();
    assert_eq!(s.call, call);
    eprintln!("Media1 stats: {stats}; agent {:?}", agent.counters());

    // The customer's mute button: the microphone goes silent, the call goes on.
    assert!(!media.microphone_muted().await.unwrap());
    media.set_microphone_muted(true).await.unwrap();
    assert!(media.microphone_muted().await.unwrap());
    media.set_microphone_muted(false).await.unwrap();
    media.set_microphone_muted(true).await.unwrap();

    media.end_call(call, "hangup").await.unwrap();
    assert_eq!(media.call_state().await.unwrap(), call_state::IDLE);
    assert!(
        !media.microphone_muted().await.unwrap(),
        "every call starts unmuted"
    );
    assert!(
        media.set_microphone_muted(true).await.is_err(),
        "no call, nothing to mute"
    );
    assert_eq!(media.call_id().await.unwrap(), "");
    assert!(media.stats().await.unwrap().is_empty());
    media
        .end_call(call, "hangup")
        .await
        .expect("ending twice is fine");
    assert!(agent.end().reached_null);

    // SIGTERM stops it cleanly.
    let pid = daemon.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut status = None;
    for _ in 0..200 {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(status.expect("stopped on SIGTERM").success());
}
