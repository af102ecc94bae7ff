//! Camera discovery: which V4L2 node to capture from, in which mode, or the test pattern.
//!
//! Why: a kiosk's USB camera may be any UVC model, and `/dev/video*` also holds nodes that are
//! not cameras (a UVC camera's metadata node, the Raspberry Pi's bcm2835-codec encoder and ISP,
//! output devices). kiosk-media must pick the real capture node, choose a mode the camera can
//! deliver at the wanted size and rate over USB, and say plainly when it falls back to the test
//! pattern and why (the `Camera` and `CameraMode` properties of `org.kioskcall.Media1`).
//!
//! Main types: [`VideoSource`] (a [`CameraDevice`] or the test pattern with its reason),
//! [`CaptureMode`] (size, rate, pixel format) and the pure [`choose_mode`], which ranks a
//! camera's modes against the [`VideoPrefs`] and is unit-tested with made-up mode lists.
//!
//! I/O: [`VideoSource::discover`] opens each node with the `v4l` crate, reads its capabilities,
//! formats, frame sizes and intervals, and closes it again; nothing streams here (GStreamer's
//! `v4l2src` does that later). It never panics and never fails: every node skipped is logged
//! with its reason, and with no usable camera the result is the test pattern.
//!
//! Limits: single-planar capture only (UVC cameras; multi-planar MIPI/ISP pipelines such as
//! libcamera's are skipped with a reason); frame intervals are rounded to whole frames per
//! second; formats other than common raw YUV/RGB and MJPG (H.264 cameras) are not used.

use std::path::{Path, PathBuf};

use crate::board::{gst_quote, VideoPrefs};

/// Where the outgoing video comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSource {
    Camera(CameraDevice),
    /// `videotestsrc`, and why there is no camera.
    TestPattern {
        reason: String,
    },
}

/// A capture node and the mode chosen for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraDevice {
    pub path: PathBuf,
    /// The card name and driver: `HD Pro Webcam C920, uvcvideo`.
    pub card: String,
    pub mode: CaptureMode,
}

/// One way a camera can deliver frames.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaptureMode {
    pub width: u32,
    pub height: u32,
    /// Whole frames per second (intervals such as 1001/30000 are rounded).
    pub fps: u32,
    /// The V4L2 pixel format: `YUYV`, `MJPG`, `NV12`, …
    pub fourcc: String,
}

impl CaptureMode {
    /// Shorthand for tests and fakes.
    pub fn new(width: u32, height: u32, fps: u32, fourcc: &str) -> CaptureMode {
        CaptureMode {
            width,
            height,
            fps,
            fourcc: fourcc.to_owned(),
        }
    }

    /// `1280x720@30 YUYV`.
    pub fn describe(&self) -> String {
        format!(
            "{}x{}@{} {}",
            self.width, self.height, self.fps, self.fourcc
        )
    }

    /// The caps `v4l2src` must produce for this mode, or `None` for a format kiosk-media does
    /// not decode.
    pub fn v4l2_caps(&self) -> Option<String> {
        let size = format!(
            "width={},height={},framerate={}/1",
            self.width, self.height, self.fps
        );
        match fourcc_kind(&self.fourcc) {
            FormatKind::Raw(format) => Some(format!("video/x-raw,format={format},{size}")),
            FormatKind::Jpeg => Some(format!("image/jpeg,{size}")),
            FormatKind::Unsupported => None,
        }
    }

    fn is_raw(&self) -> bool {
        matches!(fourcc_kind(&self.fourcc), FormatKind::Raw(_))
    }
}

enum FormatKind {
    /// Raw video, with the GStreamer format name.
    Raw(&'static str),
    Jpeg,
    Unsupported,
}

/// V4L2 fourcc to what GStreamer calls it. Raw formats first in the order a tie between raw
/// modes is broken: planar 4:2:0 needs no conversion before the encoder, packed 4:2:2 is what
/// nearly every UVC camera offers, RGB costs the most to convert.
const RAW_FORMATS: [(&str, &str); 9] = [
    ("YU12", "I420"),
    ("NV12", "NV12"),
    ("YV12", "YV12"),
    ("NV21", "NV21"),
    ("YUYV", "YUY2"),
    ("UYVY", "UYVY"),
    ("YVYU", "YVYU"),
    ("RGB3", "RGB"),
    ("BGR3", "BGR"),
];

fn fourcc_kind(fourcc: &str) -> FormatKind {
    if let Some((_, gst)) = RAW_FORMATS.iter().find(|(v4l2, _)| *v4l2 == fourcc) {
        return FormatKind::Raw(gst);
    }
    match fourcc {
        "MJPG" | "JPEG" => FormatKind::Jpeg,
        _ => FormatKind::Unsupported,
    }
}

/// Whether kiosk-media can turn this V4L2 format into raw I420.
pub fn is_supported_fourcc(fourcc: &str) -> bool {
    !matches!(fourcc_kind(fourcc), FormatKind::Unsupported)
}

fn raw_rank(fourcc: &str) -> usize {
    RAW_FORMATS
        .iter()
        .position(|(v4l2, _)| *v4l2 == fourcc)
        .unwrap_or(RAW_FORMATS.len())
}

/// Chooses the camera mode to capture for `prefs`, or `None` when `modes` holds nothing
/// usable. Pure: the discovery code and the tests feed it mode lists.
///
/// The order, and why:
/// 1. Modes that reach `prefs.fps` come first; among them, sizes are tried in this order:
///    the exact size; then sizes at least as large in both dimensions, the nearest first
///    (downscaling keeps the picture sharp); then smaller ones, the largest first. Within
///    each group a size with the wanted aspect ratio wins over one that would need borders.
///    A call needs motion more than pixels, so a smaller size at full rate beats a larger
///    size that stutters.
/// 2. At the chosen size, raw formats win over MJPG (no decode on the kiosk's CPU, no JPEG
///    artefacts); MJPG is taken only when no raw format reaches the rate at that size, which
///    is the usual USB 2.0 case (a C920 sends 720p YUYV at 10 fps but MJPG at 30).
/// 3. Among equal candidates, the lowest rate at or above `prefs.fps` (less USB and CPU
///    load; `videorate` drops the rest), then the cheaper raw format.
/// 4. When no mode reaches `prefs.fps` at any size, the fastest mode wins, ties broken by
///    the same size order.
pub fn choose_mode(modes: &[CaptureMode], prefs: &VideoPrefs) -> Option<CaptureMode> {
    let usable = modes
        .iter()
        .filter(|m| is_supported_fourcc(&m.fourcc) && m.width > 0 && m.height > 0 && m.fps > 0);
    let fast_enough = usable.clone().filter(|m| m.fps >= prefs.fps);
    let best = if fast_enough.clone().next().is_some() {
        fast_enough.min_by_key(|m| (size_rank(m, prefs), !m.is_raw(), m.fps, raw_rank(&m.fourcc)))
    } else {
        usable.min_by_key(|m| {
            (
                std::cmp::Reverse(m.fps),
                size_rank(m, prefs),
                !m.is_raw(),
                raw_rank(&m.fourcc),
            )
        })
    };
    best.cloned()
}

/// Smaller is better: (group, aspect mismatch, distance within the group).
fn size_rank(m: &CaptureMode, prefs: &VideoPrefs) -> (u8, bool, u64) {
    let area = u64::from(m.width) * u64::from(m.height);
    let wanted = u64::from(prefs.width) * u64::from(prefs.height);
    // Same aspect ratio when w/h == W/H, compared without division.
    let aspect_differs = u64::from(m.width) * u64::from(prefs.height)
        != u64::from(prefs.width) * u64::from(m.height);
    if m.width == prefs.width && m.height == prefs.height {
        (0, false, 0)
    } else if m.width >= prefs.width && m.height >= prefs.height {
        (1, aspect_differs, area - wanted)
    } else {
        (2, aspect_differs, wanted.saturating_sub(area))
    }
}

/// Why a `/dev/video*` node is not a camera to capture from, from its device capability
/// flags (`V4L2_CAP_*` of `VIDIOC_QUERYCAP`'s `device_caps`). Pure.
pub fn capture_node_problem(device_caps: u32) -> Option<&'static str> {
    use v4l::capability::Flags;
    let caps = Flags::from(device_caps);
    if caps.intersects(Flags::VIDEO_M2M | Flags::VIDEO_M2M_MPLANE) {
        return Some("memory-to-memory device (codec or ISP), not a camera");
    }
    if caps.contains(Flags::VIDEO_CAPTURE) {
        if caps.contains(Flags::VIDEO_OUTPUT) {
            // Old-style M2M drivers announce both directions instead of the M2M flag.
            return Some(
                "capture and output on one node (a memory-to-memory device), not a camera",
            );
        }
        return None;
    }
    if caps.contains(Flags::VIDEO_CAPTURE_MPLANE) {
        return Some("multi-planar capture (a MIPI/ISP pipeline), not supported yet");
    }
    if caps.contains(Flags::META_CAPTURE) {
        return Some("metadata node, not a capture device");
    }
    if caps.intersects(Flags::VIDEO_OUTPUT | Flags::VIDEO_OUTPUT_MPLANE | Flags::META_OUTPUT) {
        return Some("output device, not a capture device");
    }
    Some("no video capture capability")
}

/// What discovery learned about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeReport {
    Usable(CameraDevice),
    Skipped { path: PathBuf, reason: String },
}

/// The `/dev/video*` nodes in `dir`, in numeric order (`video2` before `video10`).
pub fn video_nodes(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut nodes: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let index = name.to_str()?.strip_prefix("video")?.parse::<u64>().ok()?;
            Some((index, e.path()))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| p).collect()
}

/// Opens one node and decides whether and how to capture from it. Never panics: the `v4l`
/// crate unwraps on malformed driver strings, so that is caught and reported as a skip.
pub fn inspect_node(path: &Path, prefs: &VideoPrefs) -> NodeReport {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        inspect_node_inner(path, prefs)
    }));
    let outcome = result.unwrap_or_else(|_| Err("the driver returned malformed data".to_owned()));
    match outcome {
        Ok(device) => NodeReport::Usable(device),
        Err(reason) => NodeReport::Skipped {
            path: path.to_owned(),
            reason,
        },
    }
}

fn inspect_node_inner(path: &Path, prefs: &VideoPrefs) -> Result<CameraDevice, String> {
    use v4l::video::Capture;

    let device = v4l::Device::with_path(path).map_err(|e| format!("cannot open: {e}"))?;
    let caps = device
        .query_caps()
        .map_err(|e| format!("not a V4L2 device: {e}"))?;
    if let Some(problem) = capture_node_problem(caps.capabilities.bits()) {
        return Err(problem.to_owned());
    }
    let formats = device
        .enum_formats()
        .map_err(|e| format!("cannot list formats: {e}"))?;
    let mut modes = Vec::new();
    let mut unsupported = Vec::new();
    for format in formats {
        let fourcc = format.fourcc.str().unwrap_or("????").to_owned();
        if !is_supported_fourcc(&fourcc) {
            unsupported.push(fourcc);
            continue;
        }
        let sizes = match device.enum_framesizes(format.fourcc) {
            Ok(sizes) => sizes,
            Err(e) => {
                tracing::debug!(device = %path.display(), %fourcc, "cannot list frame sizes: {e}");
                continue;
            }
        };
        for size in sizes {
            for (width, height) in candidate_sizes(&size.size, prefs) {
                let intervals = match device.enum_frameintervals(format.fourcc, width, height) {
                    Ok(intervals) => intervals,
                    Err(e) => {
                        tracing::debug!(device = %path.display(), %fourcc, width, height,
                            "cannot list frame intervals: {e}");
                        continue;
                    }
                };
                for interval in intervals {
                    for fps in candidate_rates(&interval.interval, prefs) {
                        modes.push(CaptureMode {
                            width,
                            height,
                            fps,
                            fourcc: fourcc.clone(),
                        });
                    }
                }
            }
        }
    }
    let Some(mode) = choose_mode(&modes, prefs) else {
        return Err(if modes.is_empty() && !unsupported.is_empty() {
            format!(
                "no format kiosk-media can use (offers {})",
                unsupported.join(", ")
            )
        } else {
            "no usable capture mode".to_owned()
        });
    };
    tracing::debug!(device = %path.display(), modes = modes.len(), chosen = %mode.describe(), "capture modes");
    Ok(CameraDevice {
        path: path.to_owned(),
        card: format!("{}, {}", caps.card, caps.driver),
        mode,
    })
}

/// The sizes worth asking intervals for. Discrete sizes as they are; for stepwise or
/// continuous ranges (which may span millions of sizes) the wanted size when the range holds
/// it, and the range's largest and smallest.
fn candidate_sizes(size: &v4l::framesize::FrameSizeEnum, prefs: &VideoPrefs) -> Vec<(u32, u32)> {
    use v4l::framesize::FrameSizeEnum;
    match size {
        FrameSizeEnum::Discrete(d) => vec![(d.width, d.height)],
        FrameSizeEnum::Stepwise(s) => {
            let fits = |v: u32, min: u32, max: u32, step: u32| {
                (min..=max).contains(&v) && (step <= 1 || (v - min).is_multiple_of(step))
            };
            let mut sizes = vec![(s.max_width, s.max_height), (s.min_width, s.min_height)];
            if fits(prefs.width, s.min_width, s.max_width, s.step_width)
                && fits(prefs.height, s.min_height, s.max_height, s.step_height)
            {
                sizes.insert(0, (prefs.width, prefs.height));
            }
            sizes.dedup();
            sizes
        }
    }
}

/// Whole frame rates from one interval answer. A discrete interval gives its rate; a range
/// gives the wanted rate when it lies inside, and the range's fastest rate.
fn candidate_rates(
    interval: &v4l::frameinterval::FrameIntervalEnum,
    prefs: &VideoPrefs,
) -> Vec<u32> {
    use v4l::frameinterval::FrameIntervalEnum;
    let fps = |f: &v4l::fraction::Fraction| -> Option<u32> {
        // An interval is seconds per frame: numerator/denominator.
        if f.numerator == 0 {
            return None;
        }
        let rate = (f64::from(f.denominator) / f64::from(f.numerator)).round();
        (1.0..=1000.0).contains(&rate).then_some(rate as u32)
    };
    match interval {
        FrameIntervalEnum::Discrete(f) => fps(f).into_iter().collect(),
        FrameIntervalEnum::Stepwise(s) => {
            let (Some(fastest), slowest) = (fps(&s.min), fps(&s.max)) else {
                return Vec::new();
            };
            let slowest = slowest.unwrap_or(1);
            let mut rates = vec![fastest];
            if (slowest..fastest).contains(&prefs.fps) {
                rates.push(prefs.fps);
            }
            rates
        }
    }
}

/// The test pattern's reason when there are no nodes at all.
const NO_NODES: &str = "no V4L2 capture device (/dev/video* absent)";

impl VideoSource {
    /// The first usable capture node under `/dev`, or the test pattern with the reason.
    pub fn discover(prefs: &VideoPrefs) -> VideoSource {
        VideoSource::discover_in(Path::new("/dev"), prefs)
    }

    /// Like [`VideoSource::discover`], with `device` (from the board profile) tried alone
    /// when it is set.
    pub fn discover_with(device: Option<&Path>, prefs: &VideoPrefs) -> VideoSource {
        match device {
            Some(path) => VideoSource::open(path, prefs),
            None => VideoSource::discover(prefs),
        }
    }

    /// The first usable `video*` node in `dir` (a folder standing in for `/dev` in tests).
    pub fn discover_in(dir: &Path, prefs: &VideoPrefs) -> VideoSource {
        let nodes = video_nodes(dir);
        if nodes.is_empty() {
            tracing::info!("{NO_NODES}; using the test pattern");
            return VideoSource::test_pattern(NO_NODES);
        }
        let mut skipped = Vec::new();
        for node in nodes {
            match inspect_node(&node, prefs) {
                NodeReport::Usable(camera) => {
                    tracing::info!(camera = %camera.describe(), mode = %camera.mode.describe(), "camera found");
                    return VideoSource::Camera(camera);
                }
                NodeReport::Skipped { path, reason } => {
                    tracing::info!(device = %path.display(), %reason, "skipping video node");
                    skipped.push(format!("{}: {reason}", path.display()));
                }
            }
        }
        let reason = skipped.join("; ");
        tracing::warn!(%reason, "no usable camera; using the test pattern");
        VideoSource::test_pattern(&reason)
    }

    /// Exactly `path` (an explicit device), or the test pattern saying why it cannot be used.
    pub fn open(path: &Path, prefs: &VideoPrefs) -> VideoSource {
        match inspect_node(path, prefs) {
            NodeReport::Usable(camera) => VideoSource::Camera(camera),
            NodeReport::Skipped { path, reason } => {
                let reason = format!("{}: {reason}", path.display());
                tracing::warn!(%reason, "configured camera unusable; using the test pattern");
                VideoSource::test_pattern(&reason)
            }
        }
    }

    pub fn test_pattern(reason: &str) -> VideoSource {
        VideoSource::TestPattern {
            reason: reason.to_owned(),
        }
    }

    pub fn is_camera(&self) -> bool {
        matches!(self, VideoSource::Camera(_))
    }

    /// For the `Camera` property: `/dev/video0 (HD Pro Webcam C920, uvcvideo)` or
    /// `test-pattern (no camera: …)`.
    pub fn describe(&self) -> String {
        match self {
            VideoSource::Camera(camera) => camera.describe(),
            VideoSource::TestPattern { reason } => format!("test-pattern (no camera: {reason})"),
        }
    }

    /// For the `CameraMode` property: the camera's mode (`1280x720@30 YUYV`), or what the test
    /// pattern produces (`1280x720@30 I420`).
    pub fn mode(&self, prefs: &VideoPrefs) -> String {
        match self {
            VideoSource::Camera(camera) => camera.mode.describe(),
            VideoSource::TestPattern { .. } => format!("{} I420", prefs.size_and_rate()),
        }
    }

    /// A live gst-launch fragment ending in raw I420 at the prefs' size and rate.
    pub fn source_fragment(&self, prefs: &VideoPrefs) -> String {
        let out = format!(
            "video/x-raw,format=I420,width={},height={},framerate={}/1",
            prefs.width, prefs.height, prefs.fps
        );
        match self {
            VideoSource::Camera(camera) => {
                let mode = &camera.mode;
                // choose_mode only returns supported formats; for a hand-made CameraDevice
                // with another, v4l2src and videoconvert negotiate on their own.
                let caps = mode
                    .v4l2_caps()
                    .map(|c| format!("{c} ! "))
                    .unwrap_or_default();
                let decode = match fourcc_kind(&mode.fourcc) {
                    FormatKind::Jpeg => "jpegdec ! ",
                    FormatKind::Raw(_) | FormatKind::Unsupported => "",
                };
                format!(
                    "v4l2src device={} do-timestamp=true ! {caps}{decode}videoconvert ! videoscale ! videorate ! {out}",
                    gst_quote(&camera.path.to_string_lossy())
                )
            }
            VideoSource::TestPattern { .. } => {
                format!("videotestsrc is-live=true pattern=smpte ! {out}")
            }
        }
    }
}

impl CameraDevice {
    /// `/dev/video0 (HD Pro Webcam C920, uvcvideo)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.path.display(), self.card)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(w: u32, h: u32, fps: u32, fourcc: &str) -> CaptureMode {
        CaptureMode::new(w, h, fps, fourcc)
    }

    fn prefs(width: u32, height: u32, fps: u32) -> VideoPrefs {
        VideoPrefs {
            width,
            height,
            fps,
            max_kbps: 3000,
        }
    }

    /// What a Logitech C920 reports over USB 2.0: YUYV is bandwidth-limited above 640x480,
    /// MJPG reaches 30 fps at every size.
    fn c920() -> Vec<CaptureMode> {
        let mut modes = Vec::new();
        for (w, h, yuyv_max) in [
            (640, 480, 30),
            (800, 600, 24),
            (960, 720, 15),
            (1280, 720, 10),
            (1600, 896, 7),
            (1920, 1080, 5),
        ] {
            for fps in [30, 24, 20, 15, 10, 7, 5] {
                if fps <= yuyv_max {
                    modes.push(m(w, h, fps, "YUYV"));
                }
                modes.push(m(w, h, fps, "MJPG"));
            }
        }
        modes.push(m(1920, 1080, 30, "H264"));
        modes
    }

    #[test]
    fn c920_720p30_takes_mjpg_because_yuyv_only_reaches_10_fps() {
        let chosen = choose_mode(&c920(), &prefs(1280, 720, 30)).expect("mode");
        assert_eq!(chosen, m(1280, 720, 30, "MJPG"));
    }

    #[test]
    fn c920_vga30_takes_raw_yuyv() {
        let chosen = choose_mode(&c920(), &prefs(640, 480, 30)).expect("mode");
        assert_eq!(chosen, m(640, 480, 30, "YUYV"));
    }

    #[test]
    fn c920_720p10_takes_raw_at_the_lowest_sufficient_rate() {
        let chosen = choose_mode(&c920(), &prefs(1280, 720, 10)).expect("mode");
        assert_eq!(chosen, m(1280, 720, 10, "YUYV"));
    }

    #[test]
    fn raw_only_vga_camera_gives_its_largest_size_for_720p() {
        let modes = [
            m(320, 240, 30, "YUYV"),
            m(640, 480, 30, "YUYV"),
            m(160, 120, 30, "YUYV"),
        ];
        let chosen = choose_mode(&modes, &prefs(1280, 720, 30)).expect("mode");
        assert_eq!(chosen, m(640, 480, 30, "YUYV"));
    }

    #[test]
    fn mjpg_only_camera_uses_mjpg() {
        let modes = [m(1280, 720, 30, "MJPG"), m(1920, 1080, 30, "MJPG")];
        let chosen = choose_mode(&modes, &prefs(1280, 720, 30)).expect("mode");
        assert_eq!(chosen, m(1280, 720, 30, "MJPG"));
    }

    #[test]
    fn nearest_larger_size_beats_a_smaller_one() {
        let modes = [
            m(640, 480, 30, "YUYV"),
            m(3840, 2160, 30, "MJPG"),
            m(1920, 1080, 30, "MJPG"),
        ];
        let chosen = choose_mode(&modes, &prefs(1280, 720, 30)).expect("mode");
        assert_eq!(chosen, m(1920, 1080, 30, "MJPG"));
    }

    #[test]
    fn same_aspect_ratio_wins_among_larger_sizes() {
        // 1280x960 is nearer by area, but 4:3 would need borders for 16:9 output.
        let modes = [m(1280, 960, 30, "YUYV"), m(1920, 1080, 30, "YUYV")];
        let chosen = choose_mode(&modes, &prefs(1280, 720, 30)).expect("mode");
        assert_eq!(chosen, m(1920, 1080, 30, "YUYV"));
    }

    #[test]
    fn full_rate_at_a_smaller_size_beats_a_slow_exact_size() {
        let modes = [m(1280, 720, 10, "YUYV"), m(640, 360, 30, "YUYV")];
        let chosen = choose_mode(&modes, &prefs(1280, 720, 30)).expect("mode");
        assert_eq!(chosen, m(640, 360, 30, "YUYV"));
    }

    #[test]
    fn higher_rate_at_exact_size_is_used_when_the_wanted_rate_is_missing() {
        let modes = [m(1280, 720, 60, "YUYV"), m(1280, 720, 15, "YUYV")];
        let chosen = choose_mode(&modes, &prefs(1280, 720, 30)).expect("mode");
        assert_eq!(chosen, m(1280, 720, 60, "YUYV"));
    }

    #[test]
    fn planar_raw_wins_a_tie_with_packed_raw() {
        let modes = [m(1280, 720, 30, "YUYV"), m(1280, 720, 30, "NV12")];
        let chosen = choose_mode(&modes, &prefs(1280, 720, 30)).expect("mode");
        assert_eq!(chosen.fourcc, "NV12");
    }

    #[test]
    fn when_nothing_reaches_the_rate_the_fastest_mode_wins() {
        let modes = [
            m(1280, 720, 10, "YUYV"),
            m(640, 480, 15, "YUYV"),
            m(1920, 1080, 5, "MJPG"),
        ];
        let chosen = choose_mode(&modes, &prefs(1280, 720, 30)).expect("mode");
        assert_eq!(chosen, m(640, 480, 15, "YUYV"));
    }

    #[test]
    fn unsupported_formats_and_empty_lists_give_none() {
        assert_eq!(choose_mode(&[], &prefs(1280, 720, 30)), None);
        let h264_only = [m(1920, 1080, 30, "H264"), m(1280, 720, 30, "H264")];
        assert_eq!(choose_mode(&h264_only, &prefs(1280, 720, 30)), None);
        let broken = [m(0, 0, 30, "YUYV"), m(640, 480, 0, "YUYV")];
        assert_eq!(choose_mode(&broken, &prefs(1280, 720, 30)), None);
    }

    // V4L2_CAP_* values, as the kernel headers define them.
    const VIDEO_CAPTURE: u32 = 0x1;
    const VIDEO_OUTPUT: u32 = 0x2;
    const VIDEO_CAPTURE_MPLANE: u32 = 0x1000;
    const VIDEO_M2M_MPLANE: u32 = 0x4000;
    const VIDEO_M2M: u32 = 0x8000;
    const META_CAPTURE: u32 = 0x0080_0000;
    const STREAMING: u32 = 0x0400_0000;
    const EXT_PIX_FORMAT: u32 = 0x0020_0000;

    #[test]
    fn capture_node_classification() {
        // A UVC camera's video node and its metadata node.
        assert_eq!(
            capture_node_problem(VIDEO_CAPTURE | STREAMING | EXT_PIX_FORMAT),
            None
        );
        assert_eq!(
            capture_node_problem(META_CAPTURE | STREAMING | EXT_PIX_FORMAT),
            Some("metadata node, not a capture device")
        );
        // The Raspberry Pi's bcm2835-codec encoder and ISP nodes.
        let problem = capture_node_problem(VIDEO_M2M_MPLANE | STREAMING).expect("m2m");
        assert!(problem.contains("memory-to-memory"), "{problem}");
        let problem = capture_node_problem(VIDEO_M2M | STREAMING).expect("m2m");
        assert!(problem.contains("memory-to-memory"), "{problem}");
        let problem =
            capture_node_problem(VIDEO_CAPTURE | VIDEO_OUTPUT | STREAMING).expect("old m2m");
        assert!(problem.contains("memory-to-memory"), "{problem}");
        // Output-only, multi-planar capture, nothing.
        assert!(capture_node_problem(VIDEO_OUTPUT | STREAMING)
            .expect("output")
            .contains("output device"));
        assert!(capture_node_problem(VIDEO_CAPTURE_MPLANE | STREAMING)
            .expect("mplane")
            .contains("multi-planar"));
        assert!(capture_node_problem(0).is_some());
    }

    #[test]
    fn empty_dev_gives_the_test_pattern_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = VideoSource::discover_in(dir.path(), &VideoPrefs::default());
        assert_eq!(source, VideoSource::test_pattern(NO_NODES));
        assert_eq!(
            source.describe(),
            "test-pattern (no camera: no V4L2 capture device (/dev/video* absent))"
        );
    }

    #[test]
    fn nodes_that_are_not_devices_are_skipped_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["video10", "video2", "videox", "media0"] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        assert_eq!(
            video_nodes(dir.path()),
            [dir.path().join("video2"), dir.path().join("video10")]
        );
        let source = VideoSource::discover_in(dir.path(), &VideoPrefs::default());
        let VideoSource::TestPattern { reason } = &source else {
            panic!("expected the test pattern, got {source:?}");
        };
        let video2 = format!("{}: ", dir.path().join("video2").display());
        let video10 = format!("{}: ", dir.path().join("video10").display());
        assert!(reason.contains(&video2), "{reason}");
        assert!(reason.contains(&video10), "{reason}");
        assert!(reason.find(&video2) < reason.find(&video10), "{reason}");
        assert!(reason.contains("not a V4L2 device"), "{reason}");
    }

    #[test]
    fn explicit_missing_device_says_it_cannot_open() {
        let source = VideoSource::open(Path::new("/nonexistent/video7"), &VideoPrefs::default());
        let VideoSource::TestPattern { reason } = source else {
            panic!("expected the test pattern");
        };
        assert!(
            reason.starts_with("/nonexistent/video7: cannot open"),
            "{reason}"
        );
        let same = VideoSource::discover_with(
            Some(Path::new("/nonexistent/video7")),
            &VideoPrefs::default(),
        );
        assert!(!same.is_camera());
    }

    fn camera(fourcc: &str) -> VideoSource {
        VideoSource::Camera(CameraDevice {
            path: PathBuf::from("/dev/video0"),
            card: "HD Pro Webcam C920, uvcvideo".to_owned(),
            mode: m(1280, 720, 30, fourcc),
        })
    }

    #[test]
    fn describe_and_mode_strings() {
        let p = VideoPrefs::default();
        assert_eq!(
            camera("YUYV").describe(),
            "/dev/video0 (HD Pro Webcam C920, uvcvideo)"
        );
        assert_eq!(camera("YUYV").mode(&p), "1280x720@30 YUYV");
        let pattern = VideoSource::test_pattern("/dev/video0: metadata node, not a capture device");
        assert_eq!(
            pattern.describe(),
            "test-pattern (no camera: /dev/video0: metadata node, not a capture device)"
        );
        assert_eq!(pattern.mode(&p), "1280x720@30 I420");
    }

    #[test]
    fn source_fragments() {
        let p = VideoPrefs::default();
        assert_eq!(
            camera("YUYV").source_fragment(&p),
            "v4l2src device=/dev/video0 do-timestamp=true ! \
             video/x-raw,format=YUY2,width=1280,height=720,framerate=30/1 ! \
             videoconvert ! videoscale ! videorate ! \
             video/x-raw,format=I420,width=1280,height=720,framerate=30/1"
        );
        assert_eq!(
            camera("MJPG").source_fragment(&p),
            "v4l2src device=/dev/video0 do-timestamp=true ! \
             image/jpeg,width=1280,height=720,framerate=30/1 ! jpegdec ! \
             videoconvert ! videoscale ! videorate ! \
             video/x-raw,format=I420,width=1280,height=720,framerate=30/1"
        );
        assert_eq!(
            VideoSource::test_pattern("x").source_fragment(&p),
            "videotestsrc is-live=true pattern=smpte ! \
             video/x-raw,format=I420,width=1280,height=720,framerate=30/1"
        );
    }

    #[test]
    fn stepwise_sizes_and_rates_are_sampled_not_expanded() {
        use v4l::framesize::{FrameSizeEnum, Stepwise};
        let range = FrameSizeEnum::Stepwise(Stepwise {
            min_width: 16,
            max_width: 4096,
            step_width: 16,
            min_height: 16,
            max_height: 2160,
            step_height: 8,
        });
        let p = VideoPrefs::default();
        assert_eq!(
            candidate_sizes(&range, &p),
            [(1280, 720), (4096, 2160), (16, 16)]
        );

        use v4l::fraction::Fraction;
        use v4l::frameinterval::{FrameIntervalEnum, Stepwise as Ivals};
        let ivals = FrameIntervalEnum::Stepwise(Ivals {
            min: Fraction::new(1, 60),
            max: Fraction::new(1, 1),
            step: Fraction::new(1, 60),
        });
        assert_eq!(candidate_rates(&ivals, &p), [60, 30]);
        let ntsc = FrameIntervalEnum::Discrete(Fraction::new(1001, 30000));
        assert_eq!(candidate_rates(&ntsc, &p), [30]);
        let bogus = FrameIntervalEnum::Discrete(Fraction::new(0, 30));
        assert!(candidate_rates(&bogus, &p).is_empty());
    }
}
