//! What a telemetry message reports, gathered from the system.
//!
//! Uptime from `/proc/uptime`, temperatures from the kernel's thermal zones (boards without
//! any report none), and the camera, encoder and call state from kiosk-media's D-Bus
//! properties when kiosk-media runs (absent otherwise: nothing is guessed).

use std::path::Path;
use std::time::Duration;

use kiosk_protocol::telemetry::{CallState, Temperature};

/// Seconds since boot.
pub fn uptime_s() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .map(|s| s as u64)
        .unwrap_or(0)
}

/// Every thermal zone under `dir` (`thermal_zone*/type` and `temp` in millidegrees).
pub fn temperatures(dir: &Path) -> Vec<Temperature> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut zones: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
        .filter_map(|e| {
            let zone = std::fs::read_to_string(e.path().join("type")).ok()?;
            let milli: i64 = std::fs::read_to_string(e.path().join("temp"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some(Temperature {
                zone: zone.trim().to_string(),
                celsius: milli as f32 / 1000.0,
            })
        })
        .collect();
    zones.sort_by(|a, b| a.zone.cmp(&b.zone));
    zones
}

/// What kiosk-media says it uses.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaView {
    pub camera: Option<String>,
    pub encoder: Option<String>,
    pub encoder_reason: Option<String>,
    pub call_state: CallState,
    pub call_stats: Option<kiosk_protocol::telemetry::CallStats>,
}

/// Reads kiosk-media's properties (`Camera`, `Encoder`, `CallState`) if it is on the bus.
pub async fn media(conn: &zbus::Connection) -> MediaView {
    let none = MediaView {
        camera: None,
        encoder: None,
        encoder_reason: None,
        call_state: CallState::Idle,
        call_stats: None,
    };
    let read = async {
        // No property cache: it would watch for changes (and warn while kiosk-media is away).
        let proxy: zbus::Proxy<'_> = zbus::proxy::Builder::new(conn)
            .destination("org.kioskcall.Media1")
            .ok()?
            .path("/org/kioskcall/Media1")
            .ok()?
            .interface("org.kioskcall.Media1")
            .ok()?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .ok()?;
        let text = |s: String| (!s.is_empty()).then_some(s);
        let camera = proxy
            .get_property::<String>("Camera")
            .await
            .ok()
            .and_then(text);
        let encoder = proxy
            .get_property::<String>("Encoder")
            .await
            .ok()
            .and_then(text);
        let encoder_reason = proxy
            .get_property::<String>("EncoderReason")
            .await
            .ok()
            .and_then(text);
        let call_stats = proxy
            .get_property::<String>("Stats")
            .await
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        let call_state = match proxy
            .get_property::<String>("CallState")
            .await
            .ok()?
            .as_str()
        {
            "in-call" | "connecting" => CallState::InCall,
            _ => CallState::Idle,
        };
        Some(MediaView {
            camera,
            encoder,
            encoder_reason,
            call_state,
            call_stats,
        })
    };
    tokio::time::timeout(Duration::from_secs(1), read)
        .await
        .ok()
        .flatten()
        .unwrap_or(none)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thermal_zones_are_read_in_degrees() {
        let dir = tempfile::tempdir().unwrap();
        for (i, (name, milli)) in [("cpu-thermal", "48312"), ("gpu", "51000")]
            .iter()
            .enumerate()
        {
            let z = dir.path().join(format!("thermal_zone{i}"));
            std::fs::create_dir(&z).unwrap();
            std::fs::write(z.join("type"), format!("{name}\n")).unwrap();
            std::fs::write(z.join("temp"), format!("{milli}\n")).unwrap();
        }
        std::fs::create_dir(dir.path().join("cooling_device0")).unwrap();
        let t = temperatures(dir.path());
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].zone, "cpu-thermal");
        assert!((t[0].celsius - 48.312).abs() < 0.001);
        assert!(temperatures(Path::new("/nonexistent")).is_empty());
    }
}
