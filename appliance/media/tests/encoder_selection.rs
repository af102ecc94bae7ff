//! Encoder choice and encoder fragments against the real GStreamer of this machine.
//!
//! The development machine and CI have x264enc, openh264enc and vp8enc but none of the
//! boards' hardware encoders, so the board profiles must fall back to x264enc and say why.
//! The software fragments are run for real and their output checked: constrained baseline at
//! the announced level, SPS/PPS with every IDR, keyframes on request, the bitrate cap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use kiosk_media::board::{AudioInput, BoardProfile, VideoPrefs};
use kiosk_media::camera::VideoSource;
use kiosk_media::encoder::{
    self, choose, Codec, ElementProbe, EncoderChoice, EncoderError, GstProbe,
};

fn boards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hardware/boards")
}

fn init() {
    gst::init().expect("GStreamer initialises");
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const SOFTWARE: [&str; 3] = ["x264enc", "openh264enc", "vp8enc"];

#[test]
fn every_board_profile_loads_and_ends_with_the_software_encoders() {
    let expected_first: [(&str, &[&str]); 6] = [
        ("qemu", &[]),
        ("rpi4", &["v4l2h264enc"]),
        ("rock5b", &["mpph264enc"]),
        ("imx8mp", &["vpuenc_h264"]),
        ("jetson-orin", &["nvv4l2h264enc"]),
        ("x86-generic", &["vah264enc", "vaapih264enc"]),
    ];
    for (board, first) in expected_first {
        let profile = BoardProfile::load(&boards_dir(), board).expect(board);
        assert_eq!(profile.name, board);
        let mut want = names(first);
        want.extend(names(&SOFTWARE));
        assert_eq!(profile.encoders, want, "{board}");
        assert_eq!(profile.video, VideoPrefs::default(), "{board}");
        assert_eq!(
            profile.camera.allow_test_pattern,
            board == "qemu",
            "{board}"
        );
        for element in &profile.encoders {
            assert!(
                encoder::fragment_for(element, &profile.video).is_some(),
                "{board}: no settings for {element}"
            );
        }
    }
    let qemu = BoardProfile::load(&boards_dir(), "qemu").expect("qemu");
    assert_eq!(qemu.audio, AudioInput::TestTone);
}

#[test]
fn rpi4_profile_chooses_x264_and_names_the_missing_codec() {
    let profile = BoardProfile::load(&boards_dir(), "rpi4").expect("rpi4");
    let choice = choose(&profile.encoders, &profile.video).expect("an encoder");
    eprintln!("rpi4: {}", choice.reason);
    assert_eq!(choice.element, "x264enc");
    assert_eq!(choice.codec, Codec::H264);
    assert!(
        choice
            .reason
            .starts_with("v4l2h264enc: not installed; x264enc: probe ok ("),
        "{}",
        choice.reason
    );
    assert!(
        choice.reason.ends_with("; chosen x264enc"),
        "{}",
        choice.reason
    );
}

#[test]
fn x86_profile_chooses_x264_and_names_both_va_encoders() {
    let profile = BoardProfile::load(&boards_dir(), "x86-generic").expect("x86-generic");
    let choice = choose(&profile.encoders, &profile.video).expect("an encoder");
    eprintln!("x86-generic: {}", choice.reason);
    assert_eq!(choice.element, "x264enc");
    assert!(
        choice.reason.starts_with(
            "vah264enc: not installed; vaapih264enc: not installed; x264enc: probe ok ("
        ),
        "{}",
        choice.reason
    );
    assert!(
        choice.reason.ends_with("; chosen x264enc"),
        "{}",
        choice.reason
    );
}

#[test]
fn a_bogus_candidate_is_skipped() {
    let choice = choose(
        &names(&["no-such-encoder", "x264enc"]),
        &VideoPrefs::default(),
    )
    .expect("an encoder");
    assert_eq!(choice.element, "x264enc");
    assert!(
        choice
            .reason
            .starts_with("no-such-encoder: not installed; x264enc: probe ok ("),
        "{}",
        choice.reason
    );
}

#[test]
fn empty_and_unusable_lists_are_errors() {
    assert_eq!(
        choose(&[], &VideoPrefs::default()),
        Err(EncoderError::NoCandidates)
    );
    match choose(
        &names(&["no-such-encoder", "v4l2h264enc"]),
        &VideoPrefs::default(),
    ) {
        Err(EncoderError::NoneUsable { tried }) => assert_eq!(
            tried,
            [
                ("no-such-encoder".to_owned(), "not installed".to_owned()),
                ("v4l2h264enc".to_owned(), "not installed".to_owned()),
            ]
        ),
        other => panic!("expected NoneUsable, got {other:?}"),
    }
}

#[test]
fn a_fragment_gstreamer_refuses_fails_its_probe_with_the_reason() {
    init();
    let probe = GstProbe::new().expect("probe");
    let err = probe
        .probe(
            "x264enc",
            "x264enc name=venc no-such-property=1 ! h264parse",
            Codec::H264,
            &VideoPrefs::default(),
        )
        .expect_err("bad property");
    assert!(err.contains("no-such-property"), "{err}");
    // Raw video out of a "probe" that encodes nothing is not an encoder.
    let err = probe
        .probe(
            "identity",
            "identity name=venc",
            Codec::H264,
            &VideoPrefs::default(),
        )
        .expect_err("raw output");
    assert!(err.contains("not video/x-h264"), "{err}");
}

/// Each installed software encoder's own fragment, probed for real, with its timing.
#[test]
fn software_fragments_probe_ok_with_their_timings() {
    init();
    let mut probe = GstProbe::new().expect("probe");
    probe.timeout = Duration::from_secs(60);
    let prefs = VideoPrefs::default();
    for element in SOFTWARE {
        let kind = encoder::EncoderKind::from_element(element).expect(element);
        let fragment = encoder::fragment_for(element, &prefs).expect(element);
        let report = probe
            .probe(element, &fragment, kind.codec(), &prefs)
            .unwrap_or_else(|e| panic!("{element}: {e}\n{fragment}"));
        eprintln!(
            "{element}: {:.1} ms/frame at {} ({} frames in, {} out, {} keyframes)",
            report.ms_per_frame(),
            prefs.size_and_rate(),
            report.frames_in,
            report.frames_out,
            report.keyframes
        );
        assert!(report.frames_out > 0);
        if kind.codec() == Codec::H264 {
            for part in [
                "stream-format=(string)byte-stream",
                "alignment=(string)au",
                "profile=(string)constrained-baseline",
                "level=(string)3.1",
            ] {
                assert!(
                    report.caps.contains(part),
                    "{element}: {part} not in {}",
                    report.caps
                );
            }
        }
    }
}

/// What came out of an encoder run.
#[derive(Debug, Default)]
struct Encoded {
    /// (keyframe, bytes) per buffer.
    buffers: Vec<(bool, Vec<u8>)>,
}

/// Runs `frames` test frames through the chosen encoder's fragment; after buffer
/// `request_key_at` an upstream force-key-unit event asks for a keyframe, as webrtcbin does
/// on a PLI.
fn encode(
    choice: &EncoderChoice,
    prefs: &VideoPrefs,
    pattern: &str,
    frames: u32,
    request_key_at: Option<usize>,
) -> Encoded {
    init();
    let description = format!(
        "videotestsrc num-buffers={frames} pattern={pattern} ! \
         video/x-raw,format=I420,width={},height={},framerate={}/1 ! {} ! \
         fakesink name=out sync=false",
        prefs.width,
        prefs.height,
        prefs.fps,
        choice.fragment(prefs)
    );
    let pipeline = gst::parse::launch(&description).expect("pipeline parses");
    let bin = pipeline.downcast_ref::<gst::Bin>().expect("a bin");
    let pad = bin
        .by_name("out")
        .and_then(|s| s.static_pad("sink"))
        .expect("sink pad");
    let encoded = Arc::new(Mutex::new(Encoded::default()));
    let sink = Arc::clone(&encoded);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let bytes = buffer
            .map_readable()
            .map(|m| m.to_vec())
            .unwrap_or_default();
        let count = {
            let mut e = sink.lock().expect("lock");
            e.buffers.push((key, bytes));
            e.buffers.len()
        };
        if Some(count) == request_key_at {
            let event = gst::event::CustomUpstream::new(
                gst::Structure::builder("GstForceKeyUnit")
                    .field("all-headers", true)
                    .field("count", 0u32)
                    .build(),
            );
            assert!(pad.push_event(event), "force-key-unit not handled");
        }
        gst::PadProbeReturn::Ok
    });
    let bus = pipeline.bus().expect("bus");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("end of stream in time");
    if let gst::MessageView::Error(err) = msg.view() {
        panic!("{}: {} {:?}", choice.element, err.error(), err.debug());
    }
    pipeline.set_state(gst::State::Null).expect("null");
    let mut e = encoded.lock().expect("lock");
    std::mem::take(&mut *e)
}

/// NAL unit types in an Annex B byte stream.
fn nal_types(data: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut i = 0;
    while i + 3 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            types.push(data[i + 3] & 0x1f);
            i += 3;
        } else {
            i += 1;
        }
    }
    types
}

fn choice(element: &str) -> EncoderChoice {
    let kind = encoder::EncoderKind::from_element(element).expect(element);
    EncoderChoice {
        element: element.to_owned(),
        codec: kind.codec(),
        reason: String::new(),
    }
}

#[test]
fn h264_fragments_repeat_sps_pps_and_honour_keyframe_requests() {
    let prefs = VideoPrefs {
        width: 640,
        height: 360,
        fps: 30,
        max_kbps: 1000,
    };
    for element in ["x264enc", "openh264enc"] {
        let out = encode(&choice(element), &prefs, "ball", 90, Some(20));
        assert_eq!(out.buffers.len(), 90, "{element}");
        let keys: Vec<usize> = out
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, (key, _))| *key)
            .map(|(i, _)| i)
            .collect();
        eprintln!("{element}: keyframes at {keys:?}");
        assert_eq!(keys.first(), Some(&0), "{element}: starts with an IDR");
        // Requested after buffer 20: an IDR follows within a few frames, long before the
        // 60-frame interval would bring one.
        assert!(
            keys.iter().any(|&k| (20..=25).contains(&k)),
            "{element}: no keyframe on request: {keys:?}"
        );
        assert!(
            keys.contains(&60) || keys.iter().any(|&k| k > 25),
            "{element}: {keys:?}"
        );
        for (i, (key, data)) in out.buffers.iter().enumerate() {
            let types = nal_types(data);
            if *key {
                assert!(
                    types.contains(&7) && types.contains(&8) && types.contains(&5),
                    "{element}: IDR {i} without SPS/PPS: {types:?}"
                );
            } else {
                assert!(
                    !types.contains(&5),
                    "{element}: buffer {i} has an IDR but no key flag"
                );
            }
        }
    }
}

#[test]
fn vp8_fragment_honours_keyframe_requests() {
    let prefs = VideoPrefs {
        width: 320,
        height: 240,
        fps: 30,
        max_kbps: 500,
    };
    let out = encode(&choice("vp8enc"), &prefs, "ball", 60, Some(10));
    let keys: Vec<usize> = out
        .buffers
        .iter()
        .enumerate()
        .filter(|(_, (key, _))| *key)
        .map(|(i, _)| i)
        .collect();
    eprintln!("vp8enc: keyframes at {keys:?}");
    assert_eq!(keys.first(), Some(&0));
    assert!(keys.iter().any(|&k| (10..=15).contains(&k)), "{keys:?}");
}

#[test]
fn rate_control_stays_near_the_cap_on_hard_content() {
    let prefs = VideoPrefs {
        width: 640,
        height: 360,
        fps: 30,
        max_kbps: 800,
    };
    // Snow cannot be compressed: an uncapped encoder would send many times the cap.
    for element in SOFTWARE {
        let frames = 90;
        let out = encode(&choice(element), &prefs, "snow", frames, None);
        let bytes: usize = out.buffers.iter().map(|(_, d)| d.len()).sum();
        let seconds = f64::from(frames) / f64::from(prefs.fps);
        let kbps = bytes as f64 * 8.0 / 1000.0 / seconds;
        eprintln!(
            "{element}: {kbps:.0} kbit/s on snow, cap {}",
            prefs.max_kbps
        );
        // OpenH264's rate control overshoots on snow (see encoder.rs); it must still be
        // far from the uncapped rate (over 15000 kbit/s here).
        let tolerance = if element == "openh264enc" { 1.8 } else { 1.3 };
        assert!(
            kbps <= f64::from(prefs.max_kbps) * tolerance,
            "{element}: {kbps:.0} kbit/s over the {} cap",
            prefs.max_kbps
        );
    }
}

#[test]
fn set_bitrate_writes_each_elements_unit() {
    init();
    for (element, property, want) in [
        ("x264enc", "bitrate", 1500u64),
        ("openh264enc", "bitrate", 1_500_000),
        ("openh264enc", "max-bitrate", 1_500_000),
        ("vp8enc", "target-bitrate", 1_500_000),
    ] {
        let venc = gst::ElementFactory::make(element)
            .name("venc")
            .build()
            .expect(element);
        choice(element).set_bitrate(&venc, 1500);
        let value = venc.property_value(property);
        let got = value
            .get::<u32>()
            .map(u64::from)
            .or_else(|_| value.get::<i32>().map(|v| v as u64))
            .expect("an integer");
        assert_eq!(got, want, "{element}.{property}");
    }
    // An element without the property is left alone, without a panic.
    let identity = gst::ElementFactory::make("identity")
        .build()
        .expect("identity");
    choice("x264enc").set_bitrate(&identity, 1500);
}

#[test]
fn test_pattern_and_chosen_encoder_run_live_together() {
    let prefs = VideoPrefs {
        width: 640,
        height: 360,
        fps: 30,
        max_kbps: 1000,
    };
    let chosen = choose(&names(&["x264enc"]), &prefs).expect("x264enc");
    let source = VideoSource::test_pattern("no V4L2 capture device (/dev/video* absent)");
    let audio = AudioInput::TestTone.source_fragment().expect("tone");
    let description = format!(
        "{} ! {} ! fakesink name=out sync=false  {audio} ! audioconvert ! fakesink name=aout",
        source.source_fragment(&prefs),
        chosen.fragment(&prefs)
    );
    let pipeline = gst::parse::launch(&description).expect("pipeline parses");
    let bin = pipeline.downcast_ref::<gst::Bin>().expect("bin");
    let count = |name: &str| {
        let n = Arc::new(Mutex::new(0u32));
        let m = Arc::clone(&n);
        bin.by_name(name)
            .and_then(|s| s.static_pad("sink"))
            .expect("pad")
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                *m.lock().expect("lock") += 1;
                gst::PadProbeReturn::Ok
            });
        n
    };
    let video = count("out");
    let sound = count("aout");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20)
        && (*video.lock().expect("lock") < 10 || *sound.lock().expect("lock") < 10)
    {
        if let Some(msg) = pipeline.bus().expect("bus").timed_pop_filtered(
            gst::ClockTime::from_mseconds(50),
            &[gst::MessageType::Error],
        ) {
            panic!("{msg:?}");
        }
    }
    pipeline.set_state(gst::State::Null).expect("null");
    assert!(*video.lock().expect("lock") >= 10, "too few encoded frames");
    assert!(*sound.lock().expect("lock") >= 10, "too few audio buffers");
}

/// The hardware fragments cannot run here, but their caps and the v4l2 control structure
/// must at least be what GStreamer can read.
#[test]
fn hardware_fragments_have_well_formed_caps_and_controls() {
    init();
    let prefs = VideoPrefs::default();
    for element in [
        "v4l2h264enc",
        "mpph264enc",
        "vpuenc_h264",
        "nvv4l2h264enc",
        "vah264enc",
        "vaapih264enc",
    ] {
        let fragment = encoder::fragment_for(element, &prefs).expect(element);
        for segment in fragment.split(" ! ").map(str::trim) {
            if segment.starts_with("video/") {
                segment
                    .parse::<gst::Caps>()
                    .unwrap_or_else(|e| panic!("{element}: caps {segment:?}: {e}"));
            }
        }
        if let Some(start) = fragment.find("extra-controls=\"") {
            let rest = &fragment[start + "extra-controls=\"".len()..];
            let controls = &rest[..rest.find('"').expect("closing quote")];
            let s: gst::Structure = controls.parse().expect("a structure");
            assert_eq!(s.name(), "controls");
            for field in [
                "h264_profile",
                "h264_level",
                "repeat_sequence_header",
                "video_bitrate",
                "video_bitrate_mode",
                "h264_i_frame_period",
            ] {
                s.get::<i32>(field)
                    .unwrap_or_else(|e| panic!("{field}: {e}"));
            }
            assert_eq!(s.get::<i32>("video_bitrate").expect("bitrate"), 3_000_000);
        }
    }
}

/// Camera fragments for raw and MJPG modes are valid pipelines (they are not run: there is
/// no camera here).
#[test]
fn camera_fragments_parse() {
    use kiosk_media::camera::{CameraDevice, CaptureMode};
    init();
    let prefs = VideoPrefs::default();
    for fourcc in ["YUYV", "MJPG", "NV12", "YU12", "UYVY"] {
        let source = VideoSource::Camera(CameraDevice {
            path: PathBuf::from("/dev/video0"),
            card: "HD Pro Webcam C920, uvcvideo".to_owned(),
            mode: CaptureMode::new(1280, 720, 30, fourcc),
        });
        let description = format!("{} ! fakesink", source.source_fragment(&prefs));
        gst::parse::launch(&description).unwrap_or_else(|e| panic!("{fourcc}: {e}\n{description}"));
    }
}

#[test]
fn discovery_on_this_machine_never_fails() {
    let source = VideoSource::discover(&VideoPrefs::default());
    eprintln!("camera: {}", source.describe());
    let has_nodes = std::fs::read_dir("/dev")
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("video"))
        })
        .unwrap_or(false);
    if !has_nodes {
        assert_eq!(
            source.describe(),
            "test-pattern (no camera: no V4L2 capture device (/dev/video* absent))"
        );
    }
}
