//! Reconnect delays: exponential with full jitter, from 1 s up to a 60 s cap.
//!
//! Full jitter (a uniform random delay between zero and the exponential bound) spreads a whole
//! fleet's reconnects after a broker restart instead of synchronizing them.

use std::time::Duration;

/// The back-off state of one connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The upper bound of the next delay.
    pub fn bound(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(16)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay: uniform in `[0, bound]`, given a random fraction in `[0, 1)`.
    pub fn next_with(&mut self, fraction: f64) -> Duration {
        let delay = self.bound().mul_f64(fraction.clamp(0.0, 1.0));
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// The next delay, with the thread's random generator.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(rand::random::<f64>())
    }

    /// A connection succeeded: start again from the base.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::default();
        let bounds: Vec<u64> = (0..9)
            .map(|_| {
                let bound = b.bound().as_secs();
                b.next_with(0.5);
                bound
            })
            .collect();
        assert_eq!(bounds, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.bound(), Duration::from_secs(1));
    }

    #[test]
    fn delays_are_within_the_bound() {
        let mut b = Backoff::default();
        for _ in 0..100 {
            let bound = b.bound();
            let d = b.next_delay();
            assert!(d <= bound);
        }
        assert_eq!(Backoff::default().next_with(0.0), Duration::ZERO);
    }
}
