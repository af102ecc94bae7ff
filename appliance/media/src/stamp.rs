//! A 32-bit timestamp drawn into the pixels of a video frame, to measure glass-to-glass latency
//! between two peers whose clocks agree (the same machine, or NTP-synchronised machines).
//!
//! # Format
//!
//! The stamp lives in the **luma (Y) plane** of an I420 frame (8-bit luma, studio range), in a
//! strip along the top-left of the frame. Its size follows the frame's width, so a frame the
//! sender or the network scaled down (a browser adapting its resolution) still reads:
//!
//! - The block side is `b = width / 80` pixels (16 on a 1280-wide frame, 8 on 640), not
//!   rounded: block `i` covers `x = round(b*i) .. round(b*(i+1))`, `y = 0 .. round(b)`.
//! - 34 blocks side by side from `x = 0`. Block 0 is a guard, all white (luma 235); block 1 a
//!   guard, all black (luma 16).
//! - Blocks 2 to 33 carry the 32 bits of the stamp, **most significant bit first** (block 2 is
//!   bit 31, block 33 is bit 0). A white block (235) is a 1, a black block (16) is a 0.
//! - The stamp is the sender's wall clock in Unix milliseconds, modulo 2^32.
//! - Frames narrower than 320 pixels (blocks under 4 pixels) carry no stamp.
//!
//! Reading: for each block, average the luma of its central half (`x = round(b*i + b/4) ..
//! round(b*i + 3b/4)`, `y = round(b/4) .. round(3b/4)`) and threshold at 128 (at or above is
//! white). If block 0 is not white or block 1 is not black, the frame carries no stamp.
//! Otherwise the 32 data blocks give the stamp, MSB first. A reader of RGB (a browser's
//! canvas) uses the luminance 0.299 R + 0.587 G + 0.114 B with the same threshold.
//!
//! Latency in milliseconds = (receiver's Unix ms modulo 2^32) − stamp, with wrapping 32-bit
//! subtraction ([`latency_ms`]).
//!
//! Only the luma plane is touched; chroma under the blocks is left as it was, so the blocks
//! may look tinted, which does not matter to a reader of luma.

/// Blocks across the frame's width that one block's side is (`b = width / 80`).
pub const BLOCKS_PER_WIDTH: f64 = 80.0;
/// Number of blocks: two guards and 32 data bits.
pub const BLOCKS: usize = 34;
/// Luma of a white block (a guard, or a 1).
pub const WHITE: u8 = 235;
/// Luma of a black block (a guard, or a 0).
pub const BLACK: u8 = 16;
/// Averages at or above this read as white.
pub const THRESHOLD: u32 = 128;
/// The narrowest frame that can carry a stamp (blocks of 4 pixels).
pub const MIN_WIDTH: usize = 320;

/// A luma plane: `stride` bytes per row, `width`×`height` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plane {
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl Plane {
    /// The block side, in pixels.
    fn block(&self) -> f64 {
        self.width as f64 / BLOCKS_PER_WIDTH
    }

    fn fits(&self, len: usize) -> bool {
        let rows = self.block().round() as usize;
        self.width >= MIN_WIDTH
            && self.height >= rows
            && self.stride >= self.width
            && len >= self.stride * rows.saturating_sub(1) + self.width
    }
}

fn at(v: f64) -> usize {
    v.round() as usize
}

/// Writes `stamp` into `luma`. Returns false (and writes nothing) when the plane is too small.
pub fn write(luma: &mut [u8], plane: Plane, stamp: u32) -> bool {
    if !plane.fits(luma.len()) {
        return false;
    }
    let b = plane.block();
    for block in 0..BLOCKS {
        let value = match block {
            0 => WHITE,
            1 => BLACK,
            n => {
                if stamp >> (31 - (n - 2)) & 1 == 1 {
                    WHITE
                } else {
                    BLACK
                }
            }
        };
        let (x0, x1) = (at(b * block as f64), at(b * (block + 1) as f64));
        for y in 0..at(b) {
            let row = y * plane.stride;
            luma[row + x0..row + x1].fill(value);
        }
    }
    true
}

/// Reads a stamp from `luma`; `None` when the plane is too small or the guards are not there.
pub fn read(luma: &[u8], plane: Plane) -> Option<u32> {
    if !plane.fits(luma.len()) {
        return None;
    }
    let b = plane.block();
    let (y0, y1) = (at(b / 4.0), at(b * 3.0 / 4.0));
    let white = |block: usize| -> bool {
        let (x0, x1) = (
            at(b * block as f64 + b / 4.0),
            at(b * block as f64 + b * 3.0 / 4.0),
        );
        let mut sum = 0u32;
        let mut n = 0u32;
        for y in y0..y1 {
            let row = y * plane.stride;
            sum += luma[row + x0..row + x1]
                .iter()
                .map(|&v| u32::from(v))
                .sum::<u32>();
            n += (x1 - x0) as u32;
        }
        n > 0 && sum / n >= THRESHOLD
    };
    if !white(0) || white(1) {
        return None;
    }
    Some((2..BLOCKS).fold(0u32, |acc, b| (acc << 1) | u32::from(white(b))))
}

/// The stamp for a Unix time in milliseconds (modulo 2^32).
pub fn stamp_of(unix_ms: i64) -> u32 {
    unix_ms as u64 as u32
}

/// The stamp for now.
pub fn now() -> u32 {
    stamp_of(unix_ms())
}

/// Milliseconds between a stamp and a later reading of the clock (both modulo 2^32).
pub fn latency_ms(now: u32, stamp: u32) -> u32 {
    now.wrapping_sub(stamp)
}

/// Unix milliseconds now (0 if the clock is before 1970).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: usize, height: usize, stride: usize, fill: u8) -> (Vec<u8>, Plane) {
        (
            vec![fill; stride * height],
            Plane {
                stride,
                width,
                height,
            },
        )
    }

    #[test]
    fn round_trips_values_and_layout() {
        for stamp in [0u32, 1, 0x8000_0000, 0xdead_beef, u32::MAX, 1_700_000_123] {
            let (mut luma, plane) = frame(1280, 720, 1280, 90);
            assert!(write(&mut luma, plane, stamp));
            assert_eq!(read(&luma, plane), Some(stamp), "{stamp:#x}");
        }
        let (mut luma, plane) = frame(1280, 32, 1344, 90);
        assert!(write(&mut luma, plane, 0x8000_0001));
        // On 1280 pixels, 16-pixel blocks: guards, then bit 31 (white) at block 2, bit 0
        // (white) at block 33, zeros between.
        assert_eq!(luma[0], WHITE);
        assert_eq!(luma[16], BLACK);
        assert_eq!(luma[2 * 16 + 15 * 1344], WHITE);
        assert_eq!(luma[3 * 16], BLACK);
        assert_eq!(luma[33 * 16 + 5], WHITE);
        // Nothing outside the stamp area.
        assert_eq!(luma[34 * 16], 90);
        assert_eq!(luma[16 * 1344], 90);
    }

    #[test]
    fn survives_noise_and_refuses_unstamped_frames() {
        let (mut luma, plane) = frame(1280, 720, 1280, 128);
        assert_eq!(read(&luma, plane), None);
        write(&mut luma, plane, 0x1234_5678);
        for (i, v) in luma.iter_mut().enumerate() {
            let noise = (i * 7919 % 61) as i32 - 30;
            *v = (i32::from(*v) + noise).clamp(0, 255) as u8;
        }
        assert_eq!(read(&luma, plane), Some(0x1234_5678));
        let (mut black, plane) = frame(1280, 720, 1280, 16);
        assert_eq!(read(&black, plane), None);
        black[..].fill(235);
        assert_eq!(read(&black, plane), None);
    }

    #[test]
    fn a_scaled_down_frame_still_reads() {
        // Written at 1280x720, scaled to 640x360 and 480x270 by nearest neighbour.
        let (mut big, plane) = frame(1280, 720, 1280, 60);
        write(&mut big, plane, 0xcafe_f00d);
        for (w, h) in [(640usize, 360usize), (480, 270), (960, 540)] {
            let mut small = vec![0u8; w * h];
            for y in 0..h {
                for x in 0..w {
                    small[y * w + x] = big[(y * 720 / h) * 1280 + x * 1280 / w];
                }
            }
            let p = Plane {
                stride: w,
                width: w,
                height: h,
            };
            assert_eq!(read(&small, p), Some(0xcafe_f00d), "{w}x{h}");
        }
    }

    #[test]
    fn small_frames_carry_no_stamp() {
        let (mut luma, plane) = frame(319, 240, 320, 0);
        assert!(!write(&mut luma, plane, 5));
        assert_eq!(read(&luma, plane), None);
    }

    #[test]
    fn latency_wraps() {
        assert_eq!(latency_ms(1050, 1000), 50);
        assert_eq!(latency_ms(20, u32::MAX - 29), 50);
        assert_eq!(stamp_of(1 << 32 | 7), 7);
    }
}
