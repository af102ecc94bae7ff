//! A 32-bit timestamp drawn into the pixels of a video frame, to measure glass-to-glass latency
//! between two peers whose clocks agree (the same machine, or NTP-synchronised machines).
//!
//! # Format
//!
//! The stamp lives in the **luma (Y) plane** of an I420 frame (8-bit luma, studio range), in
//! the top rows `y = 0..16`:
//!
//! - 34 square blocks of 16×16 pixels side by side, starting at `x = 0`: block `i` covers
//!   `x = 16*i .. 16*i + 16`, `y = 0 .. 16` (so the frame must be at least 544×16).
//! - Block 0 is a guard, all white: luma 235.
//! - Block 1 is a guard, all black: luma 16.
//! - Blocks 2 to 33 carry the 32 bits of the stamp, **most significant bit first** (block 2 is
//!   bit 31, block 33 is bit 0). A white block (235) is a 1, a black block (16) is a 0.
//! - The stamp is the sender's wall clock in Unix milliseconds, modulo 2^32.
//!
//! Reading: for each block, average the luma of its central 8×8 pixels (`x = 16*i + 4 ..
//! 16*i + 12`, `y = 4 .. 12`) and threshold at 128 (at or above is white). If block 0 is not
//! white or block 1 is not black, the frame carries no stamp. Otherwise the 32 data blocks give
//! the stamp, MSB first.
//!
//! Latency in milliseconds = (receiver's Unix ms modulo 2^32) − stamp, with wrapping 32-bit
//! subtraction ([`latency_ms`]).
//!
//! Only the luma plane is touched; chroma under the blocks is left as it was, so the blocks
//! may look tinted, which does not matter to a reader of luma.

/// Side of one block, in pixels.
pub const BLOCK: usize = 16;
/// Number of blocks: two guards and 32 data bits.
pub const BLOCKS: usize = 34;
/// Luma of a white block (a guard, or a 1).
pub const WHITE: u8 = 235;
/// Luma of a black block (a guard, or a 0).
pub const BLACK: u8 = 16;
/// Averages at or above this read as white.
pub const THRESHOLD: u32 = 128;
/// The smallest frame that can carry a stamp.
pub const MIN_WIDTH: usize = BLOCK * BLOCKS;
pub const MIN_HEIGHT: usize = BLOCK;

/// A luma plane: `stride` bytes per row, `width`×`height` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plane {
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl Plane {
    fn fits(&self, len: usize) -> bool {
        self.width >= MIN_WIDTH
            && self.height >= MIN_HEIGHT
            && self.stride >= self.width
            && len >= self.stride * (MIN_HEIGHT - 1) + MIN_WIDTH
    }
}

/// Writes `stamp` into `luma`. Returns false (and writes nothing) when the plane is too small.
pub fn write(luma: &mut [u8], plane: Plane, stamp: u32) -> bool {
    if !plane.fits(luma.len()) {
        return false;
    }
    for block in 0..BLOCKS {
        let value = match block {
            0 => WHITE,
            1 => BLACK,
            b => {
                if stamp >> (31 - (b - 2)) & 1 == 1 {
                    WHITE
                } else {
                    BLACK
                }
            }
        };
        for y in 0..BLOCK {
            let start = y * plane.stride + block * BLOCK;
            luma[start..start + BLOCK].fill(value);
        }
    }
    true
}

/// Reads a stamp from `luma`; `None` when the plane is too small or the guards are not there.
pub fn read(luma: &[u8], plane: Plane) -> Option<u32> {
    if !plane.fits(luma.len()) {
        return None;
    }
    let white = |block: usize| -> bool {
        let mut sum = 0u32;
        for y in 4..12 {
            let start = y * plane.stride + block * BLOCK + 4;
            sum += luma[start..start + 8]
                .iter()
                .map(|&v| u32::from(v))
                .sum::<u32>();
        }
        sum / 64 >= THRESHOLD
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
        let (mut luma, plane) = frame(640, 32, 704, 90);
        assert!(write(&mut luma, plane, 0x8000_0001));
        // Guards, then bit 31 (white) at block 2, bit 0 (white) at block 33, zeros between.
        assert_eq!(luma[0], WHITE);
        assert_eq!(luma[16], BLACK);
        assert_eq!(luma[2 * 16 + 15 * 704], WHITE);
        assert_eq!(luma[3 * 16], BLACK);
        assert_eq!(luma[33 * 16 + 5], WHITE);
        // Nothing outside the stamp area.
        assert_eq!(luma[34 * 16], 90);
        assert_eq!(luma[16 * 704], 90);
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
    fn small_frames_carry_no_stamp() {
        let (mut luma, plane) = frame(320, 240, 320, 0);
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
