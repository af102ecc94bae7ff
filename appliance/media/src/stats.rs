//! One second of call statistics: webrtcbin's `get-stats` reply, plus the counters kept by pad
//! probes, turned into [`CallStats`].
//!
//! [`Figures::from_reply`] reads the reply (GStreamer structures); [`StatsTracker`] is pure: it
//! turns two consecutive [`Figures`] into rates.

use gstreamer as gst;
use gstreamer_webrtc as gst_webrtc;
use kiosk_protocol::telemetry::CallStats;

/// Totals at one instant. `None` is unknown, never zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub at_ms: i64,
    /// Outbound video RTP bytes so far.
    pub sent_bytes: Option<u64>,
    /// Inbound video RTP bytes so far.
    pub recv_bytes: Option<u64>,
    /// PLI and FIR received from the peer for our video, as RTCP counts them.
    pub pli: Option<u64>,
    pub fir: Option<u64>,
    /// Remote-inbound: round-trip time in seconds and fraction lost (0..1).
    pub rtt_s: Option<f64>,
    pub fraction_lost: Option<f64>,
    /// Inbound video jitter, seconds.
    pub jitter_s: Option<f64>,
    pub packets_lost: Option<i64>,
    pub local_candidate: Option<String>,
    pub remote_candidate: Option<String>,
    /// From pad probes.
    pub frames_sent: u64,
    pub keyframes_sent: u64,
    pub keyframe_requests: u64,
    pub frames_decoded: u64,
}

fn u64_of(s: &gst::StructureRef, f: &str) -> Option<u64> {
    s.get::<u64>(f)
        .ok()
        .or_else(|| s.get::<u32>(f).ok().map(u64::from))
        .or_else(|| s.get::<i64>(f).ok().and_then(|v| u64::try_from(v).ok()))
        .or_else(|| s.get::<i32>(f).ok().and_then(|v| u64::try_from(v).ok()))
}

fn f64_of(s: &gst::StructureRef, f: &str) -> Option<f64> {
    s.get::<f64>(f).ok()
}

fn str_of(s: &gst::StructureRef, f: &str) -> Option<String> {
    s.get::<String>(f).ok()
}

fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

impl Figures {
    /// Reads a `get-stats` reply. Only video RTP streams count. With `max-bundle`,
    /// GStreamer 1.22.0 labels every RTP stream `kind=video` with the first transceiver's
    /// codec, so streams are matched by SSRC when the SSRCs are known (`send_ssrc` from the
    /// payloader, `recv_ssrc` from the remote video pad's caps); otherwise a stream is video
    /// when its `kind` says so, or its codec's `mime-type` starts with `video/`.
    pub fn from_reply(
        reply: &gst::StructureRef,
        send_ssrc: Option<u32>,
        recv_ssrc: Option<u32>,
    ) -> Figures {
        let mut all = Vec::new();
        for (_, value) in reply.iter() {
            if let Ok(s) = value.get::<gst::Structure>() {
                all.push(s);
            }
        }
        let by_id = |id: &str| all.iter().find(|s| str_of(s, "id").as_deref() == Some(id));
        let by_kind = |s: &gst::StructureRef| -> bool {
            if let Some(kind) = str_of(s, "kind") {
                return kind == "video";
            }
            str_of(s, "codec-id")
                .and_then(|c| by_id(&c))
                .and_then(|c| str_of(c, "mime-type"))
                .is_some_and(|m| m.starts_with("video/"))
        };
        let ssrc_is = |s: &gst::StructureRef, want: Option<u32>| match want {
            Some(w) => s.get::<u32>("ssrc").ok() == Some(w),
            None => by_kind(s),
        };
        let mut f = Figures::default();
        let mut selected_pair: Option<&gst::Structure> = None;
        let mut selected_by_transport = false;
        for s in &all {
            let Ok(kind) = s.get::<gst_webrtc::WebRTCStatsType>("type") else {
                continue;
            };
            match kind {
                gst_webrtc::WebRTCStatsType::OutboundRtp if ssrc_is(s, send_ssrc) => {
                    f.sent_bytes = add(f.sent_bytes, u64_of(s, "bytes-sent"));
                    f.pli = add(f.pli, u64_of(s, "pli-count"));
                    f.fir = add(f.fir, u64_of(s, "fir-count"));
                }
                gst_webrtc::WebRTCStatsType::InboundRtp if ssrc_is(s, recv_ssrc) => {
                    f.recv_bytes = add(f.recv_bytes, u64_of(s, "bytes-received"));
                    f.jitter_s = f.jitter_s.or(f64_of(s, "jitter"));
                    f.packets_lost = f.packets_lost.or(s.get::<i64>("packets-lost").ok());
                }
                gst_webrtc::WebRTCStatsType::RemoteInboundRtp if ssrc_is(s, send_ssrc) => {
                    f.rtt_s = f.rtt_s.or(f64_of(s, "round-trip-time"));
                    f.fraction_lost = f.fraction_lost.or(f64_of(s, "fraction-lost"));
                }
                gst_webrtc::WebRTCStatsType::CandidatePair if !selected_by_transport => {
                    selected_pair = Some(s);
                }
                gst_webrtc::WebRTCStatsType::Transport => {
                    // The transport names the selected pair; prefer it to the first pair seen.
                    if let Some(pair) =
                        str_of(s, "selected-candidate-pair-id").and_then(|id| by_id(&id))
                    {
                        selected_pair = Some(pair);
                        selected_by_transport = true;
                    }
                }
                _ => {}
            }
        }
        if let Some(pair) = selected_pair {
            let cand = |field: &str| {
                str_of(pair, field)
                    .and_then(|id| by_id(&id))
                    .and_then(|c| str_of(c, "candidate-type"))
            };
            f.local_candidate = cand("local-candidate-id");
            f.remote_candidate = cand("remote-candidate-id");
        }
        f
    }
}

/// Turns consecutive figures into per-second rates.
#[derive(Debug, Default)]
pub struct StatsTracker {
    previous: Option<Figures>,
}

fn rate(now: Option<u64>, before: Option<u64>, secs: f64) -> Option<f64> {
    match (now, before) {
        (Some(n), Some(b)) if secs > 0.0 && n >= b => Some((n - b) as f64 * 8.0 / 1000.0 / secs),
        _ => None,
    }
}

impl StatsTracker {
    pub fn new() -> StatsTracker {
        StatsTracker::default()
    }

    /// The stats for this second; rates need a previous second.
    pub fn update(&mut self, call: &str, now: Figures) -> CallStats {
        let prev = self.previous.take();
        let secs = prev
            .as_ref()
            .map(|p| (now.at_ms - p.at_ms) as f64 / 1000.0)
            .unwrap_or(0.0);
        let fps = |n: u64, b: u64| {
            (secs > 0.0 && n >= b).then(|| ((n - b) as f64 / secs * 10.0).round() / 10.0)
        };
        let round1 = |v: f64| (v * 10.0).round() / 10.0;
        let stats = CallStats {
            call: call.to_string(),
            at_ms: now.at_ms,
            send_kbps: prev
                .as_ref()
                .and_then(|p| rate(now.sent_bytes, p.sent_bytes, secs))
                .map(round1),
            send_fps: prev
                .as_ref()
                .and_then(|p| fps(now.frames_sent, p.frames_sent)),
            keyframes_sent: Some(now.keyframes_sent),
            keyframe_requests: Some(
                now.keyframe_requests
                    .max(now.pli.unwrap_or(0) + now.fir.unwrap_or(0)),
            ),
            recv_kbps: prev
                .as_ref()
                .and_then(|p| rate(now.recv_bytes, p.recv_bytes, secs))
                .map(round1),
            recv_fps: prev
                .as_ref()
                .and_then(|p| fps(now.frames_decoded, p.frames_decoded)),
            frames_decoded: Some(now.frames_decoded),
            rtt_ms: now.rtt_s.map(|s| round1(s * 1000.0)),
            loss_pct: now.fraction_lost.map(|f| round1(f * 100.0)),
            jitter_ms: now.jitter_s.map(|s| round1(s * 1000.0)),
            local_candidate: now.local_candidate.clone(),
            remote_candidate: now.remote_candidate.clone(),
            stamp_latencies_ms: Vec::new(),
        };
        self.previous = Some(now);
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_deltas() {
        let mut t = StatsTracker::new();
        let first = t.update(
            "call-abcdefgh",
            Figures {
                at_ms: 1_000,
                sent_bytes: Some(1_000),
                recv_bytes: Some(500),
                frames_sent: 10,
                frames_decoded: 8,
                keyframes_sent: 1,
                ..Figures::default()
            },
        );
        assert_eq!(first.send_kbps, None, "no rate without a previous second");
        assert_eq!(first.frames_decoded, Some(8));
        let second = t.update(
            "call-abcdefgh",
            Figures {
                at_ms: 2_000,
                sent_bytes: Some(376_000),
                recv_bytes: Some(250_500),
                frames_sent: 40,
                frames_decoded: 38,
                keyframes_sent: 2,
                keyframe_requests: 1,
                pli: Some(2),
                rtt_s: Some(0.0123),
                fraction_lost: Some(0.015),
                jitter_s: Some(0.004),
                ..Figures::default()
            },
        );
        assert_eq!(second.send_kbps, Some(3000.0));
        assert_eq!(second.recv_kbps, Some(2000.0));
        assert_eq!(second.send_fps, Some(30.0));
        assert_eq!(second.recv_fps, Some(30.0));
        assert_eq!(second.keyframe_requests, Some(2));
        assert_eq!(second.rtt_ms, Some(12.3));
        assert_eq!(second.loss_pct, Some(1.5));
        assert_eq!(second.jitter_ms, Some(4.0));
        // A counter that went backwards (a new stream) gives no rate rather than a wrong one.
        let third = t.update(
            "call-abcdefgh",
            Figures {
                at_ms: 3_000,
                sent_bytes: Some(10),
                ..Figures::default()
            },
        );
        assert_eq!(third.send_kbps, None);
    }

    #[test]
    fn reads_a_reply() {
        gst::init().unwrap();
        let reply = gst::Structure::builder("application/x-webrtc-stats")
            .field(
                "codec-1",
                gst::Structure::builder("application/x-webrtc-stats")
                    .field("type", gst_webrtc::WebRTCStatsType::Codec)
                    .field("id", "codec-1")
                    .field("mime-type", "video/H264")
                    .build(),
            )
            .field(
                "out-1",
                gst::Structure::builder("application/x-webrtc-stats")
                    .field("type", gst_webrtc::WebRTCStatsType::OutboundRtp)
                    .field("id", "out-1")
                    .field("codec-id", "codec-1")
                    .field("bytes-sent", 1234u64)
                    .field("pli-count", 3u32)
                    .build(),
            )
            .field(
                "out-2",
                gst::Structure::builder("application/x-webrtc-stats")
                    .field("type", gst_webrtc::WebRTCStatsType::OutboundRtp)
                    .field("id", "out-2")
                    .field("kind", "audio")
                    .field("bytes-sent", 99u64)
                    .build(),
            )
            .field(
                "pair",
                gst::Structure::builder("application/x-webrtc-stats")
                    .field("type", gst_webrtc::WebRTCStatsType::CandidatePair)
                    .field("id", "pair")
                    .field("local-candidate-id", "lc")
                    .field("remote-candidate-id", "rc")
                    .build(),
            )
            .field(
                "lc",
                gst::Structure::builder("application/x-webrtc-stats")
                    .field("type", gst_webrtc::WebRTCStatsType::LocalCandidate)
                    .field("id", "lc")
                    .field("candidate-type", "host")
                    .build(),
            )
            .field(
                "rc",
                gst::Structure::builder("application/x-webrtc-stats")
                    .field("type", gst_webrtc::WebRTCStatsType::RemoteCandidate)
                    .field("id", "rc")
                    .field("candidate-type", "srflx")
                    .build(),
            )
            .build();
        let f = Figures::from_reply(&reply, None, None);
        assert_eq!(f.sent_bytes, Some(1234));
        assert_eq!(f.pli, Some(3));
        assert_eq!(f.local_candidate.as_deref(), Some("host"));
        assert_eq!(f.remote_candidate.as_deref(), Some("srflx"));
        // Matched by SSRC, the audio stream labelled "video" does not count.
        let mut r = reply.clone();
        r.set(
            "out-3",
            gst::Structure::builder("application/x-webrtc-stats")
                .field("type", gst_webrtc::WebRTCStatsType::OutboundRtp)
                .field("id", "out-3")
                .field("kind", "video")
                .field("ssrc", 7u32)
                .field("bytes-sent", 5000u64)
                .build(),
        );
        assert_eq!(
            Figures::from_reply(&r, Some(7), None).sent_bytes,
            Some(5000)
        );
    }
}
