//! The board's display: its size in millimetres and pixels, read from
//! `hardware/boards/<board>/display.toml`, so touch targets can be sized in millimetres.
//!
//! The page gets the pixels per millimetre as the CSS variable `--mm` (one millimetre of the
//! panel in CSS pixels, assuming the kiosk browser runs at a device pixel ratio of 1, as the
//! kiosk images do) and sizes every button at least [`MIN_TARGET_MM`] in both directions.
//!
//! ```toml
//! version = 1
//! width_mm = 476      # active area, 1..=2000
//! height_mm = 268
//! width_px = 1920     # native resolution, 320..=7680
//! height_px = 1080
//! ```

use std::path::Path;

use serde::Deserialize;

/// The file name of a board's display data inside `hardware/boards/<board>/`.
pub const DISPLAY_FILE: &str = "display.toml";
/// The smallest touch target, in millimetres, on every screen.
pub const MIN_TARGET_MM: f64 = 20.0;

/// A board's display, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Display {
    /// The board name it came from, or `development`.
    pub board: String,
    pub width_mm: u32,
    pub height_mm: u32,
    pub width_px: u32,
    pub height_px: u32,
}

/// The display data could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    #[error("read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    width_mm: u32,
    height_mm: u32,
    width_px: u32,
    height_px: u32,
}

impl Display {
    /// The built-in development display: a typical 21.5-inch 1920x1080 panel.
    pub fn development() -> Display {
        Display {
            board: "development".into(),
            width_mm: 476,
            height_mm: 268,
            width_px: 1920,
            height_px: 1080,
        }
    }

    /// CSS pixels per millimetre: the mean of both directions (panels have square pixels
    /// within a few percent).
    pub fn px_per_mm(&self) -> f64 {
        let h = f64::from(self.width_px) / f64::from(self.width_mm);
        let v = f64::from(self.height_px) / f64::from(self.height_mm);
        (h + v) / 2.0
    }

    /// The smallest touch target in CSS pixels, rounded up.
    pub fn min_target_px(&self) -> f64 {
        (self.px_per_mm() * MIN_TARGET_MM).ceil()
    }

    /// Reads `<boards_dir>/<board>/display.toml`; `development` is built in.
    pub fn load(boards_dir: &Path, board: &str) -> Result<Display, DisplayError> {
        if board == "development" {
            return Ok(Display::development());
        }
        let path = boards_dir.join(board).join(DISPLAY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| DisplayError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Display::parse(board, &text).map_err(|message| DisplayError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Checks a file's text; the error names the key and says why.
    pub fn parse(board: &str, text: &str) -> Result<Display, String> {
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        if f.version != 1 {
            return Err(format!("version: {} is not known; 1 is", f.version));
        }
        for (key, v) in [("width_mm", f.width_mm), ("height_mm", f.height_mm)] {
            if !(1..=2000).contains(&v) {
                return Err(format!("{key}: {v}: between 1 and 2000 mm"));
            }
        }
        for (key, v) in [("width_px", f.width_px), ("height_px", f.height_px)] {
            if !(320..=7680).contains(&v) {
                return Err(format!("{key}: {v}: between 320 and 7680 pixels"));
            }
        }
        let d = Display {
            board: board.to_string(),
            width_mm: f.width_mm,
            height_mm: f.height_mm,
            width_px: f.width_px,
            height_px: f.height_px,
        };
        let h = f64::from(d.width_px) / f64::from(d.width_mm);
        let v = f64::from(d.height_px) / f64::from(d.height_mm);
        if (h / v - 1.0).abs() > 0.15 {
            return Err(format!(
                "the pixels are not square: {h:.2} px/mm across and {v:.2} px/mm down; \
                 check the sizes"
            ));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_board_in_the_repository_reads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hardware/boards");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_type().unwrap().is_dir() {
                continue;
            }
            let board = entry.file_name().to_string_lossy().to_string();
            let d = Display::load(&dir, &board).unwrap_or_else(|e| panic!("{board}: {e}"));
            assert!(d.px_per_mm() > 2.0 && d.px_per_mm() < 12.0, "{board}");
            seen += 1;
        }
        assert!(seen >= 6);
        let rpi = Display::load(&dir, "rpi4").unwrap();
        assert!((rpi.px_per_mm() - 6.81).abs() < 0.1, "{}", rpi.px_per_mm());
        assert_eq!(rpi.min_target_px(), 137.0);
        let qemu = Display::load(&dir, "qemu").unwrap();
        assert!((qemu.px_per_mm() - 4.03).abs() < 0.05);
    }

    #[test]
    fn bad_values_name_their_key() {
        let good =
            "version = 1\nwidth_mm = 476\nheight_mm = 268\nwidth_px = 1920\nheight_px = 1080\n";
        assert!(Display::parse("b", good).is_ok());
        for (text, key) in [
            (good.replace("version = 1", "version = 2"), "version"),
            (good.replace("width_mm = 476", "width_mm = 0"), "width_mm"),
            (
                good.replace("height_px = 1080", "height_px = 10"),
                "height_px",
            ),
            (good.replace("width_mm = 476", "width_mm = 300"), "square"),
            (format!("{good}dpi = 96\n"), "dpi"),
        ] {
            let e = Display::parse("b", &text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
