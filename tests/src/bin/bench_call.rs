//! `bench-call`: live calls on this machine, measured. Every sent frame carries its send time
//! in its pixels (`kiosk_media::stamp`), so each receiver measures glass-to-glass latency.
//!
//! Three parts:
//! 1. **GStreamer peers**: N calls between kiosk-media's call session and the agent simulator
//!    in this process, signalled through channels: latency both ways, and the kiosk's timeline
//!    from the start of the call (offer, ICE connected, DTLS connected, first keyframe, first
//!    frame decoded on each side).
//! 2. **Chromium as the agent**, the whole product: tenantd with its mosquitto (in this
//!    process), the kiosk-sync and kiosk-media binaries on a private D-Bus, and the console in
//!    headless Chromium. The page's camera is a canvas that stamps each frame; the page reads
//!    the stamps of the kiosk's video on every decoded frame. From "accept" (the click) to the
//!    first frame on each side, split into signalling (accept → the kiosk's offer), ICE, DTLS
//!    and first keyframe; kiosk-media's CPU (cores) and memory during the calls; bitrate.
//! 3. **Encoder cost**: the chosen software encoder alone on 1280x720@30 for 10 s, in cores.
//!
//! Usage: `bench-call [--calls N] [--seconds S] [--out FILE]`; `scripts/bench-call` builds the
//! binaries in release mode and runs it. Figures are printed and written as JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use futures_lite::StreamExt as _;
use gstreamer as gst;
use gstreamer::prelude::*;
use kiosk_media::agent::{AgentPlan, AgentSim};
use kiosk_media::board::{BoardProfile, VideoPrefs};
use kiosk_media::camera::VideoSource;
use kiosk_media::encoder::{self, EncoderChoice};
use kiosk_media::peer::{MediaEvent, Milestone, RemoteVideoSink};
use kiosk_media::session::{CallPlan, CallSession};
use kiosk_media::stamp;
use kioskcall_e2e::browser::{agent_available, click, Driver};
use kioskcall_e2e::stage::CallStage;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const AGENT_EMAIL: &str = "bench@shop.example";
const AGENT_PASSWORD: &str = "a private shop secret";
const LONG: Duration = Duration::from_secs(60);

struct Args {
    calls: usize,
    seconds: u64,
    out: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        calls: 20,
        seconds: 8,
        out: PathBuf::from("docs/bench/call.json"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--calls" => a.calls = it.next().and_then(|v| v.parse().ok()).expect("--calls N"),
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            "--out" => a.out = PathBuf::from(it.next().expect("--out FILE")),
            other => panic!(
                "unknown argument {other}; usage: bench-call [--calls N] [--seconds S] [--out FILE]"
            ),
        }
    }
    a
}

fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    Some(v[idx.min(v.len() - 1)])
}

fn p50_p95(values: &[f64]) -> Value {
    json!({
        "p50": percentile(values, 50.0).map(round1),
        "p95": percentile(values, 95.0).map(round1),
        "n": values.len(),
    })
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// CPU seconds (user + system) of a process from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the name.
    let hz = 100.0;
    (ticks(11) + ticks(12)) / hz
}

/// Resident memory of a process in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------- part 1: GStreamer peers

#[derive(Default)]
struct GstFigures {
    kiosk_to_agent: Vec<f64>,
    agent_to_kiosk: Vec<f64>,
    /// From the start of the call (the cloud's accept reaching the kiosk) to each milestone.
    offer: Vec<f64>,
    ice: Vec<f64>,
    dtls: Vec<f64>,
    first_keyframe: Vec<f64>,
    first_frame_agent: Vec<f64>,
    first_frame_kiosk: Vec<f64>,
    send_kbps: Vec<f64>,
}

async fn gst_calls(calls: usize, seconds: u64, plan: &CallPlan, agent: &AgentPlan) -> GstFigures {
    let mut f = GstFigures::default();
    for i in 0..calls {
        let id = format!("call-benchgst{i:04}");
        let (ktx, mut krx) = mpsc::unbounded_channel();
        let (atx, mut arx) = mpsc::unbounded_channel();
        let start = stamp::unix_ms();
        let agent = AgentSim::start(agent, &id, &[], atx).expect("agent simulator");
        let kiosk = CallSession::start(plan, &id, &[], ktx).expect("kiosk session");
        let mut media_until: Option<Instant> = None;
        let deadline = Instant::now() + LONG;
        let (mut k_first, mut a_first) = (false, false);
        let since = |at_ms: i64| (at_ms - start) as f64;
        loop {
            if media_until.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            assert!(Instant::now() < deadline, "call {id} did not get going");
            tokio::select! {
                Some(e) = krx.recv() => match e {
                    MediaEvent::Signal(s) => agent.add_remote(s).expect("agent takes the kiosk's signal"),
                    MediaEvent::Milestone { milestone, at_ms } => match milestone {
                        Milestone::OfferCreated => f.offer.push(since(at_ms)),
                        Milestone::IceConnected => f.ice.push(since(at_ms)),
                        Milestone::DtlsConnected => f.dtls.push(since(at_ms)),
                        Milestone::FirstKeyframeSent => f.first_keyframe.push(since(at_ms)),
                        Milestone::FirstRemoteFrame => { f.first_frame_kiosk.push(since(at_ms)); k_first = true; }
                        Milestone::AnswerCreated => {}
                    },
                    MediaEvent::LatencySample { ms } if media_until.is_some() && ms < 10_000 => f.agent_to_kiosk.push(f64::from(ms)),
                    MediaEvent::Stats(s) if media_until.is_some() => {
                        if let Some(k) = s.send_kbps { f.send_kbps.push(k); }
                    }
                    MediaEvent::Failed { reason } => panic!("kiosk side of {id} failed: {reason}"),
                    _ => {}
                },
                Some(e) = arx.recv() => match e {
                    MediaEvent::Signal(s) => kiosk.add_remote(s).expect("kiosk takes the agent's signal"),
                    MediaEvent::Milestone { milestone: Milestone::FirstRemoteFrame, at_ms } => {
                        f.first_frame_agent.push(since(at_ms));
                        a_first = true;
                    }
                    MediaEvent::LatencySample { ms } if media_until.is_some() && ms < 10_000 => f.kiosk_to_agent.push(f64::from(ms)),
                    MediaEvent::Failed { reason } => panic!("agent side of {id} failed: {reason}"),
                    _ => {}
                },
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if media_until.is_none() && k_first && a_first {
                media_until = Some(Instant::now() + Duration::from_secs(seconds));
            }
        }
        tokio::task::spawn_blocking(move || {
            kiosk.end("hangup");
            agent.end();
        })
        .await
        .unwrap();
        eprintln!(
            "  gst call {}/{calls}: first frame at the agent {:.0} ms, latency samples {} / {}",
            i + 1,
            f.first_frame_agent.last().copied().unwrap_or(f64::NAN),
            f.kiosk_to_agent.len(),
            f.agent_to_kiosk.len()
        );
    }
    f
}

// ---------------------------------------------------------------- part 3: encoder cost

/// The chosen encoder alone on a live 1280x720@30 test pattern: cores used over `seconds`.
fn encode_cores(choice: &EncoderChoice, prefs: &VideoPrefs, seconds: u64) -> f64 {
    let desc = format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width={},height={},framerate={}/1 ! {} ! fakesink sync=false",
        prefs.width,
        prefs.height,
        prefs.fps,
        choice.fragment(prefs)
    );
    let pipeline = gst::parse::launch(&desc).expect("encode pipeline");
    let pid = std::process::id();
    pipeline.set_state(gst::State::Playing).expect("playing");
    // Let it settle, then measure.
    std::thread::sleep(Duration::from_secs(1));
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let cores = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64();
    let _ = pipeline.set_state(gst::State::Null);
    cores
}

// ---------------------------------------------------------------- part 2: Chromium

/// Installed in the console page once: a stamped canvas as the agent's camera, and a reader
/// of the stamps of the kiosk's video on every decoded frame (`window.__bench`).
const PAGE_HOOKS: &str = r#"
window.__bench = { lat: [], marks: {}, call: null };
const B = window.__bench;
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const canvas = document.createElement('canvas');
  canvas.width = 1280; canvas.height = 720;
  const g = canvas.getContext('2d');
  let x = 0;
  const draw = () => {
    g.fillStyle = '#404040'; g.fillRect(0, 0, 1280, 720);
    g.fillStyle = '#c08040'; g.fillRect(x, 200, 200, 200); x = (x + 8) % 1080;
    const s = Date.now() % 4294967296;
    const bits = [1, 0];
    for (let i = 31; i >= 0; i--) bits.push(Math.floor(s / 2 ** i) % 2);
    bits.forEach((b, i) => { g.fillStyle = b ? '#ffffff' : '#000000'; g.fillRect(i * 16, 0, 16, 16); });
  };
  draw();
  setInterval(draw, 1000 / 30);
  const stream = canvas.captureStream(30);
  if (constraints && constraints.audio) {
    const ac = new AudioContext();
    const osc = ac.createOscillator();
    const dst = ac.createMediaStreamDestination();
    osc.connect(dst); osc.start();
    dst.stream.getAudioTracks().forEach((t) => stream.addTrack(t));
  }
  return stream;
};
B.arm = () => {
  B.lat = []; B.marks = {}; B.video = null; B.pc = null;
  const canvas = document.createElement('canvas');
  canvas.width = 544; canvas.height = 16;
  const g = canvas.getContext('2d', { willReadFrequently: true });
  const lum = (d, bx) => {
    let sum = 0;
    for (let y = 4; y < 12; y++) for (let x = bx * 16 + 4; x < bx * 16 + 12; x++) {
      const i = (y * 544 + x) * 4;
      sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    }
    return sum / 64;
  };
  const onFrame = (video) => () => {
    const now = Date.now();
    if (!B.marks.first_frame) B.marks.first_frame = now;
    const vw = video.videoWidth;
    if (vw >= 320) {
      // The stamp's blocks are width/80 wide: scale the strip back to 16-pixel blocks.
      g.drawImage(video, 0, 0, vw * 544 / 1280, vw / 80, 0, 0, 544, 16);
      const d = g.getImageData(0, 0, 544, 16).data;
      if (lum(d, 0) > 128 && lum(d, 1) < 128) {
        let s = 0;
        for (let k = 0; k < 32; k++) s = s * 2 + (lum(d, k + 2) > 128 ? 1 : 0);
        const lat = ((now % 4294967296) - s + 4294967296) % 4294967296;
        if (lat < 10000) B.lat.push(lat);
      }
    }
    video.requestVideoFrameCallback(onFrame(video));
  };
  const poll = setInterval(() => {
    const k = window.kioskcallCall;
    if (k && k.pc && !B.pc) {
      B.pc = k.pc;
      const pc = k.pc;
      pc.addEventListener('iceconnectionstatechange', () => {
        if (pc.iceConnectionState === 'connected' && !B.marks.ice) B.marks.ice = Date.now();
      });
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState === 'connected' && !B.marks.dtls) B.marks.dtls = Date.now();
      });
    }
    const v = document.querySelector('[data-testid=call-remote-video]');
    if (v && v !== B.video) {
      B.video = v;
      v.requestVideoFrameCallback(onFrame(v));
    }
    if (B.pc && B.video && B.marks.first_frame) clearInterval(poll);
  }, 5);
};
"#;

#[derive(Default)]
struct ChromiumFigures {
    kiosk_to_agent: Vec<f64>,
    agent_to_kiosk: Vec<f64>,
    signalling: Vec<f64>,
    ice: Vec<f64>,
    dtls: Vec<f64>,
    first_keyframe: Vec<f64>,
    first_frame_agent: Vec<f64>,
    first_frame_kiosk: Vec<f64>,
    kiosk_cores: Vec<f64>,
    kiosk_rss_mib: Vec<f64>,
    send_kbps: Vec<f64>,
    recv_kbps: Vec<f64>,
    recv_fps: Vec<f64>,
}

async fn chromium_calls(calls: usize, seconds: u64) -> ChromiumFigures {
    let stage = CallStage::start(
        (AGENT_EMAIL, "Bench", AGENT_PASSWORD),
        "version = 1\nboard = \"development\"\ncamera = \"test-pattern\"\nremote_video = \"count\"\n\
         preview = \"none\"\naudio_input = \"test-tone\"\naudio_output = \"fakesink\"\nstamp = true\n",
    )
    .await;
    let media_pid = stage.media.pid().expect("kiosk-media runs");
    let m = stage.media_proxy().await;
    let sync = stage.sync().await;
    let driver = Driver::start().await;
    let c = driver.browser(1280, 800, &[]).await;
    agent_available(&c, &stage.cloud.base, AGENT_EMAIL, AGENT_PASSWORD).await;
    c.execute(PAGE_HOOKS, vec![]).await.unwrap();

    let mut f = ChromiumFigures::default();
    let mut queued = sync.receive_call_queued().await.unwrap();
    let mut ended = sync.receive_call_ended().await.unwrap();
    for i in 0..calls {
        c.execute("window.__bench.arm();", vec![]).await.unwrap();
        let request = sync.place_call("test", "").await.unwrap();
        let call = loop {
            let q = tokio::time::timeout(LONG, queued.next())
                .await
                .expect("queued")
                .unwrap();
            let a = q.args().unwrap();
            if a.request() == &request {
                break a.call().to_string();
            }
        };
        let accept =
            format!("[data-testid=ringing-call][data-call='{call}'] [data-testid=call-accept]");
        c.wait()
            .at_most(LONG)
            .for_element(Locator::Css(&accept))
            .await
            .expect("the call rings in the console");
        let accepted_ms = c
            .execute(
                "const t = Date.now(); document.querySelector(arguments[0]).click(); return t;",
                vec![json!(accept)],
            )
            .await
            .unwrap()
            .as_f64()
            .unwrap();
        // Both sides decode, then media runs for the measured window.
        let t = Instant::now();
        loop {
            let stats: Value =
                serde_json::from_str(&m.stats().await.unwrap_or_default()).unwrap_or(Value::Null);
            let marks = c
                .execute("return window.__bench.marks;", vec![])
                .await
                .unwrap();
            if stats["frames_decoded"].as_u64().unwrap_or(0) > 0 && marks["first_frame"].is_number()
            {
                break;
            }
            assert!(
                t.elapsed() < LONG,
                "call {call} never flowed both ways:\n{}",
                stage.media.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (cpu0, w0) = (cpu_seconds(media_pid), Instant::now());
        let mut rss: f64 = 0.0;
        let mut kiosk_lat = Vec::new();
        let window = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < window {
            tokio::time::sleep(Duration::from_secs(1)).await;
            rss = rss.max(rss_mib(media_pid));
            let s: Value =
                serde_json::from_str(&m.stats().await.unwrap_or_default()).unwrap_or(Value::Null);
            if let Some(v) = s["send_kbps"].as_f64() {
                f.send_kbps.push(v);
            }
            if let Some(v) = s["recv_kbps"].as_f64() {
                f.recv_kbps.push(v);
            }
            if let Some(v) = s["recv_fps"].as_f64() {
                f.recv_fps.push(v);
            }
            if let Some(l) = s["stamp_latencies_ms"].as_array() {
                // A mis-read stamp gives a nonsense figure: keep what a frame can take.
                kiosk_lat.extend(l.iter().filter_map(Value::as_f64).filter(|v| *v < 10_000.0));
            }
        }
        f.kiosk_cores
            .push((cpu_seconds(media_pid) - cpu0) / w0.elapsed().as_secs_f64());
        f.kiosk_rss_mib.push(rss);
        f.agent_to_kiosk.extend(kiosk_lat);
        let page = c
            .execute(
                "return { lat: window.__bench.lat, marks: window.__bench.marks };",
                vec![],
            )
            .await
            .unwrap();
        f.kiosk_to_agent.extend(
            page["lat"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_f64),
        );
        let timeline: Value = m
            .timeline()
            .await
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let at = |k: &str| timeline[k].as_f64().map(|v| v - accepted_ms);
        if let Some(v) = at("offer-created") {
            f.signalling.push(v);
        }
        if let Some(v) = at("ice-connected") {
            f.ice.push(v);
        }
        if let Some(v) = at("dtls-connected") {
            f.dtls.push(v);
        }
        if let Some(v) = at("first-keyframe-sent") {
            f.first_keyframe.push(v);
        }
        if let Some(v) = at("first-remote-frame") {
            f.first_frame_kiosk.push(v);
        }
        if let Some(v) = page["marks"]["first_frame"].as_f64() {
            f.first_frame_agent.push(v - accepted_ms);
        }
        click(&c, "[data-testid=call-end]", LONG).await;
        loop {
            let e = tokio::time::timeout(LONG, ended.next())
                .await
                .expect("the call ends")
                .unwrap();
            if e.args().unwrap().call() == &call {
                break;
            }
        }
        let t = Instant::now();
        while m.call_state().await.unwrap_or_default() != "idle" {
            assert!(t.elapsed() < LONG, "kiosk-media did not go idle");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "  chromium call {}/{calls}: first frame at the agent {:.0} ms after accept, latency samples {} / {}",
            i + 1,
            f.first_frame_agent.last().copied().unwrap_or(f64::NAN),
            f.kiosk_to_agent.len(),
            f.agent_to_kiosk.len()
        );
    }
    let _ = c.close().await;
    let mut stage = stage;
    stage.media.stop();
    stage.kiosk.stop();
    f
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    gst::init().expect("GStreamer");
    let board = BoardProfile::development();
    let prefs = board.video;
    let choice = encoder::choose(&board.encoders, &prefs).expect("an encoder");
    eprintln!("encoder: {} ({})", choice.element, choice.reason);

    eprintln!("part 3: encoder alone, 1280x720@30, 10 s");
    let cores = {
        let choice = choice.clone();
        tokio::task::spawn_blocking(move || encode_cores(&choice, &prefs, 10))
            .await
            .unwrap()
    };
    eprintln!("  {cores:.3} cores");

    eprintln!("part 1: {} calls between GStreamer peers", args.calls);
    let plan = CallPlan {
        prefs: Arc::new(prefs),
        source: Arc::new(VideoSource::test_pattern("benchmark")),
        encoder: Arc::new(choice.clone()),
        audio_input: kiosk_media::board::AudioInput::TestTone.source_fragment(),
        remote_video: RemoteVideoSink::Count,
        audio_output: "fakesink sync=false".into(),
        preview: None,
        latency_ms: 50,
        stamp: true,
        camera_retry: Duration::from_secs(5),
    };
    let agent = AgentPlan::new(prefs, choice.clone());
    let g = gst_calls(args.calls, args.seconds, &plan, &agent).await;

    eprintln!("part 2: {} calls with Chromium as the agent", args.calls);
    let ch = chromium_calls(args.calls, args.seconds).await;

    let report = json!({
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "calls": args.calls,
        "seconds_per_call": args.seconds,
        "encoder": choice.element,
        "video": format!("{}x{}@{} {} kbit/s cap", prefs.width, prefs.height, prefs.fps, prefs.max_kbps),
        "g2g_p50_ms_gst": percentile(&g.kiosk_to_agent, 50.0).map(round1),
        "g2g_p50_ms_chromium": percentile(&ch.kiosk_to_agent, 50.0).map(round1),
        "first_frame_p50_ms": percentile(&ch.first_frame_agent, 50.0).map(round1),
        "encode_cores": round1(cores * 100.0) / 100.0,
        "gst": {
            "latency_kiosk_to_agent_ms": p50_p95(&g.kiosk_to_agent),
            "latency_agent_to_kiosk_ms": p50_p95(&g.agent_to_kiosk),
            "from_start_ms": {
                "offer": p50_p95(&g.offer),
                "ice_connected": p50_p95(&g.ice),
                "dtls_connected": p50_p95(&g.dtls),
                "first_keyframe": p50_p95(&g.first_keyframe),
                "first_frame_agent": p50_p95(&g.first_frame_agent),
                "first_frame_kiosk": p50_p95(&g.first_frame_kiosk),
            },
            "send_kbps": p50_p95(&g.send_kbps),
        },
        "chromium": {
            "latency_kiosk_to_agent_ms": p50_p95(&ch.kiosk_to_agent),
            "latency_agent_to_kiosk_ms": p50_p95(&ch.agent_to_kiosk),
            "from_accept_ms": {
                "signalling_offer": p50_p95(&ch.signalling),
                "ice_connected": p50_p95(&ch.ice),
                "dtls_connected": p50_p95(&ch.dtls),
                "first_keyframe": p50_p95(&ch.first_keyframe),
                "first_frame_agent": p50_p95(&ch.first_frame_agent),
                "first_frame_kiosk": p50_p95(&ch.first_frame_kiosk),
            },
            "kiosk_media_cores": p50_p95(&ch.kiosk_cores),
            "kiosk_media_rss_mib": p50_p95(&ch.kiosk_rss_mib),
            "send_kbps": p50_p95(&ch.send_kbps),
            "recv_kbps": p50_p95(&ch.recv_kbps),
            "recv_fps": p50_p95(&ch.recv_fps),
        },
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    if let Some(dir) = args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&args.out, format!("{text}\n")).unwrap();
    eprintln!("written to {}", args.out.display());
}
