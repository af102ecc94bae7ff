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
    let _one = one_call_at_a_time();
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
    // Stats fill once connected.
    pair.run_until(LONG, |p| p.k.stats.iter().any(|s| s.send_kbps.is_some()))
        .await;
    let s = pair.kiosk().stats().expect("stats");
    eprintln!("kiosk stats: {}", serde_json::to_string(&s).unwrap());
    assert!(s.send_kbps.unwrap_or(0.0) > 0.0 && s.recv_kbps.unwrap_or(0.0) > 0.0, "{s:?}");
    let weak = pair.kiosk().pipeline_weak();
    let end = pair.kiosk.take().unwrap().end("hangup");
    assert!(end.reached_null);
    assert!(weak.upgrade().is_none(), "the kiosk pipeline is freed");
    let aweak = pair.agent().pipeline_weak();
    assert!(pair.agent.take().unwrap().end().reached_null);
    assert!(aweak.upgrade().is_none(), "the agent pipeline is freed");
}
