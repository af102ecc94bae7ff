//! A kiosk call session against the agent simulator, both real webrtcbin pipelines on this
//! machine (host candidates only, no display).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{init, kiosk_plan, one_call_at_a_time, Pair};
use kiosk_media::camera::VideoSource;
use kiosk_media::Milestone;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_connects_and_both_directions_decode_with_stamps() {
    init();
    let _one = one_call_at_a_time().await;
    let mut pair = Pair::start(&kiosk_plan(VideoSource::test_pattern("test")));
    let ok = pair
        .run_until(LONG, |p| {
            p.flowing(60) && p.k.latency.len() >= 10 && p.a.latency.len() >= 10
        })
        .await;
    let kc = pair.kiosk().counters();
    let ac = pair.agent().counters();
    assert!(ok, "kiosk {kc:?} {:?}; agent {ac:?} {:?}", pair.k, pair.a);
    assert!(pair.k.failed.is_none() && pair.a.failed.is_none());
    for m in [
        Milestone::OfferCreated,
        Milestone::IceConnected,
        Milestone::DtlsConnected,
        Milestone::FirstRemoteFrame,
    ] {
        assert!(pair.k.milestones.contains_key(&m), "kiosk {m:?}");
    }
    assert!(pair.a.milestones.contains_key(&Milestone::AnswerCreated));
    let median = |v: &mut Vec<u32>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let k_lat = median(&mut pair.k.latency.clone());
    let a_lat = median(&mut pair.a.latency.clone());
    eprintln!(
        "kiosk decoded {} frames ({} stamps, median {} ms agent→kiosk); agent decoded {} frames ({} stamps, median {} ms kiosk→agent); keyframes sent {}",
        kc.frames_decoded, pair.k.latency.len(), k_lat, ac.frames_decoded, pair.a.latency.len(), a_lat, kc.keyframes_sent
    );
    assert!(k_lat < 2000 && a_lat < 2000, "latencies {k_lat} {a_lat}");
    let offer = &pair.k.offers[0];
    assert!(offer.contains("H264") && offer.contains("OPUS"), "{offer}");
    assert!(offer.contains("a=rtcp-fb:96 nack pli"), "{offer}");
    assert!(offer.contains("packetization-mode=1"), "{offer}");
    // Stats fill once connected (the receive rate needs two samples of the inbound stream,
    // so it may come a second after the send rate).
    pair.run_until(LONG, |p| {
        p.k.stats
            .iter()
            .any(|s| s.send_kbps.is_some() && s.recv_kbps.is_some())
    })
    .await;
    let s = pair
        .k
        .stats
        .iter()
        .rev()
        .find(|s| s.send_kbps.is_some() && s.recv_kbps.is_some())
        .cloned()
        .expect("stats");
    eprintln!("kiosk stats: {}", serde_json::to_string(&s).unwrap());
    assert!(
        s.send_kbps.unwrap_or(0.0) > 0.0 && s.recv_kbps.unwrap_or(0.0) > 0.0,
        "{s:?}"
    );
    let weak = pair.kiosk().pipeline_weak();
    let end = pair.kiosk.take().unwrap().end("hangup");
    assert!(end.reached_null);
    assert!(weak.upgrade().is_none(), "the kiosk pipeline is freed");
    let aweak = pair.agent().pipeline_weak();
    assert!(pair.agent.take().unwrap().end().reached_null);
    assert!(aweak.upgrade().is_none(), "the agent pipeline is freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pli_from_the_agent_brings_a_new_keyframe() {
    init();
    let _one = one_call_at_a_time().await;
    let mut pair = Pair::start(&kiosk_plan(VideoSource::test_pattern("test")));
    assert!(pair.run_until(LONG, |p| p.flowing(15)).await, "call flows");
    let before = pair.kiosk().counters();
    assert!(
        pair.agent().request_keyframe(),
        "the agent has remote video"
    );
    let ok = pair
        .run_until(LONG, |p| {
            let c = p.kiosk().counters();
            c.keyframe_requests > before.keyframe_requests
                && c.keyframes_sent > before.keyframes_sent
        })
        .await;
    let after = pair.kiosk().counters();
    eprintln!("keyframes before PLI {before:?}, after {after:?}");
    assert!(ok, "before {before:?} after {after:?}");
    assert!(pair.k.requests >= 1, "KeyframeRequested event");
    assert!(pair.kiosk.take().unwrap().end("hangup").reached_null);
    assert!(pair.agent.take().unwrap().end().reached_null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_renegotiates_mid_call_and_media_keeps_flowing() {
    init();
    let _one = one_call_at_a_time().await;
    let mut pair = Pair::start(&kiosk_plan(VideoSource::test_pattern("test")));
    assert!(pair.run_until(LONG, |p| p.flowing(15)).await, "call flows");
    pair.agent().renegotiate();
    assert!(
        pair.run_until(LONG, |p| !p.k.answers.is_empty()).await,
        "the kiosk answers the agent's offer"
    );
    let k0 = pair.kiosk().counters().frames_decoded;
    let a0 = pair.agent().counters().frames_decoded;
    let ok = pair
        .run_until(LONG, |p| {
            p.kiosk().counters().frames_decoded >= k0 + 30
                && p.agent().counters().frames_decoded >= a0 + 30
        })
        .await;
    eprintln!(
        "after renegotiation: kiosk {} → {}, agent {} → {}",
        k0,
        pair.kiosk().counters().frames_decoded,
        a0,
        pair.agent().counters().frames_decoded
    );
    assert!(ok);
    assert!(pair.k.failed.is_none() && pair.a.failed.is_none());
    assert!(pair.agent.take().unwrap().end().reached_null);
    assert!(pair.kiosk.take().unwrap().end("hangup").reached_null);
}

/// Ending from either side releases that side at once, and the other side still ends cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_from_either_side_tears_down_to_null() {
    init();
    let _one = one_call_at_a_time().await;
    for agent_first in [false, true] {
        let mut pair = Pair::start(&kiosk_plan(VideoSource::test_pattern("test")));
        assert!(pair.run_until(LONG, |p| p.flowing(10)).await, "call flows");
        let kw = pair.kiosk().pipeline_weak();
        let aw = pair.agent().pipeline_weak();
        let threads_before = threads();
        let (first, second) = if agent_first {
            let a = pair.agent.take().unwrap().end();
            // The kiosk keeps running on its own until told.
            let k = pair.kiosk.take().unwrap().end("agent_disconnected");
            (a, k)
        } else {
            let k = pair.kiosk.take().unwrap().end("hangup");
            let a = pair.agent.take().unwrap().end();
            (k, a)
        };
        assert!(first.reached_null && second.reached_null);
        assert!(
            kw.upgrade().is_none() && aw.upgrade().is_none(),
            "pipelines freed"
        );
        let settled =
            eventually(|| threads().is_some_and(|n| n + 4 <= threads_before.unwrap_or(0))).await;
        eprintln!(
            "threads: {threads_before:?} during the call, {:?} after (settled: {settled})",
            threads()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_fails_is_reported_and_the_test_pattern_is_sent() {
    init();
    let _one = one_call_at_a_time().await;
    let missing = VideoSource::Camera(kiosk_media::camera::CameraDevice {
        path: "/dev/video-kiosk-test-missing".into(),
        card: "missing camera".into(),
        mode: kiosk_media::camera::CaptureMode {
            width: 1280,
            height: 720,
            fps: 30,
            fourcc: "YUYV".into(),
        },
    });
    let mut pair = Pair::start(&kiosk_plan(missing));
    assert!(
        pair.run_until(LONG, |p| p.flowing(30)).await,
        "the call goes on"
    );
    let (description, reason) = pair.k.sources.first().cloned().expect("reported");
    eprintln!("source changed: {description} ({reason})");
    assert!(description.starts_with("test-pattern"), "{description}");
    assert!(reason.contains("/dev/video-kiosk-test-missing"), "{reason}");
    assert!(pair.kiosk.take().unwrap().end("hangup").reached_null);
    assert!(pair.agent.take().unwrap().end().reached_null);
}

/// Threads of this process (Linux).
fn threads() -> Option<usize> {
    std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
}

async fn eventually(f: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
