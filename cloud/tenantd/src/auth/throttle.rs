//! Sign-in throttling: growing delays per account and per client address.
//!
//! Pure logic over an injected clock, so it is tested without sleeping. Each key (the
//! lower-cased email as typed, whether or not such an account exists, and the client address)
//! gets a number of free failures; every failure after that locks the key for twice as long as
//! the one before, up to a cap. A success clears the account key. Keys idle for longer than
//! `forget_after` are dropped, and the table has a size bound so a flood of made-up emails
//! cannot grow it without limit.
//!
//! Attempts are reserved before the password is checked ([`LoginThrottle::begin`]) and settled
//! after ([`LoginThrottle::finish`]): attempts still being checked count against the free
//! failures, so a burst of parallel requests cannot slip past the limit while the first ones
//! are hashing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Throttle tuning.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// Failures allowed per account before delays start.
    pub account_free_failures: u32,
    /// Failures allowed per address before delays start (higher: shops share addresses).
    pub address_free_failures: u32,
    /// The first delay; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// A key with no failure for this long is forgotten.
    pub forget_after: Duration,
    /// At most this many keys are tracked; the oldest are dropped first.
    pub max_keys: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            account_free_failures: 5,
            address_free_failures: 20,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
            max_keys: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    /// Attempts begun and not yet finished.
    in_flight: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// The throttle table.
#[derive(Debug)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    records: HashMap<Key, Record>,
}

impl LoginThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        LoginThrottle {
            policy,
            records: HashMap::new(),
        }
    }

    fn account_key(email: &str) -> Key {
        Key::Account(email.trim().to_lowercase())
    }

    fn keys(email: &str, addr: IpAddr) -> [Key; 2] {
        [Self::account_key(email), Key::Address(addr)]
    }

    fn free_failures(&self, key: &Key) -> u32 {
        match key {
            Key::Account(_) => self.policy.account_free_failures,
            Key::Address(_) => self.policy.address_free_failures,
        }
    }

    /// `Err(wait)` when the account or the address is locked at `now`.
    pub fn check(&self, email: &str, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let wait = Self::keys(email, addr)
            .iter()
            .filter_map(|k| self.records.get(k))
            .filter_map(|r| r.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match wait {
            Some(w) => Err(w),
            None => Ok(()),
        }
    }

    /// Reserves an attempt: refused while locked, and while the attempts already being checked
    /// could use up the remaining free failures. Every `Ok` must be settled with
    /// [`LoginThrottle::finish`].
    pub fn begin(&mut self, email: &str, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        self.check(email, addr, now)?;
        let keys = Self::keys(email, addr);
        for key in &keys {
            if let Some(r) = self.records.get(key) {
                // Below the free failures, as many at once as could still fail freely; past
                // them, one at a time (each failure then sets a lock).
                let allowance = self.free_failures(key).saturating_sub(r.failures).max(1);
                if r.in_flight >= allowance {
                    return Err(self.policy.base_delay);
                }
            }
        }
        self.evict(now);
        for key in keys {
            let r = self.records.entry(key).or_insert(Record {
                failures: 0,
                in_flight: 0,
                last_failure: now,
                locked_until: None,
            });
            r.in_flight = r.in_flight.saturating_add(1);
        }
        Ok(())
    }

    /// Settles an attempt reserved with [`LoginThrottle::begin`].
    pub fn finish(&mut self, email: &str, addr: IpAddr, now: Instant, success: bool) {
        for key in Self::keys(email, addr) {
            if let Some(r) = self.records.get_mut(&key) {
                r.in_flight = r.in_flight.saturating_sub(1);
            }
        }
        if success {
            self.record_success(email);
            let addr_key = Key::Address(addr);
            if self
                .records
                .get(&addr_key)
                .is_some_and(|r| r.failures == 0 && r.in_flight == 0)
            {
                self.records.remove(&addr_key);
            }
        } else {
            self.record_failure(email, addr, now);
        }
    }

    /// Records a failed sign-in.
    pub fn record_failure(&mut self, email: &str, addr: IpAddr, now: Instant) {
        self.evict(now);
        for key in Self::keys(email, addr) {
            let free_failures = self.free_failures(&key);
            let record = self.records.entry(key).or_insert(Record {
                failures: 0,
                in_flight: 0,
                last_failure: now,
                locked_until: None,
            });
            record.failures = record.failures.saturating_add(1);
            record.last_failure = now;
            if record.failures > free_failures {
                let doublings = (record.failures - free_failures - 1).min(30);
                let delay = self
                    .policy
                    .base_delay
                    .saturating_mul(1u32 << doublings)
                    .min(self.policy.max_delay);
                record.locked_until = Some(now + delay);
            }
        }
    }

    /// Records a successful sign-in: the account starts afresh (attempts still in flight
    /// stay counted).
    pub fn record_success(&mut self, email: &str) {
        let key = Self::account_key(email);
        match self.records.get_mut(&key) {
            Some(r) if r.in_flight > 0 => {
                r.failures = 0;
                r.locked_until = None;
            }
            Some(_) => {
                self.records.remove(&key);
            }
            None => {}
        }
    }

    /// How many keys are tracked (for tests and health figures).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn evict(&mut self, now: Instant) {
        let forget = self.policy.forget_after;
        self.records.retain(|_, r| {
            r.in_flight > 0
                || now.saturating_duration_since(r.last_failure) < forget
                || r.locked_until.is_some_and(|u| u > now)
        });
        if self.records.len() >= self.policy.max_keys {
            let mut by_age: Vec<(Key, Instant)> = self
                .records
                .iter()
                .map(|(k, r)| (k.clone(), r.last_failure))
                .collect();
            by_age.sort_by_key(|(_, at)| *at);
            let excess = self.records.len() + 1 - self.policy.max_keys;
            for (key, _) in by_age
                .into_iter()
                .take(excess.max(self.policy.max_keys / 10))
            {
                self.records.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn delays_grow_after_free_failures_and_cap() {
        let mut t = LoginThrottle::new(ThrottlePolicy::default());
        let start = Instant::now();
        for i in 0..5 {
            assert!(t.check("a@x.test", addr(1), start).is_ok(), "attempt {i}");
            t.record_failure("a@x.test", addr(1), start);
        }
        assert!(t.check("a@x.test", addr(1), start).is_ok());
        t.record_failure("a@x.test", addr(1), start);
        assert_eq!(
            t.check("A@X.test ", addr(2), start),
            Err(Duration::from_secs(1))
        );
        let later = start + Duration::from_secs(2);
        assert!(t.check("a@x.test", addr(2), later).is_ok());
        t.record_failure("a@x.test", addr(2), later);
        assert_eq!(
            t.check("a@x.test", addr(3), later),
            Err(Duration::from_secs(2))
        );
        let mut now = later;
        for _ in 0..40 {
            now += Duration::from_secs(1000);
            t.record_failure("a@x.test", addr(3), now);
        }
        assert_eq!(
            t.check("a@x.test", addr(4), now),
            Err(Duration::from_secs(900))
        );
    }

    #[test]
    fn unknown_and_known_accounts_are_throttled_alike_and_success_resets() {
        let mut t = LoginThrottle::new(ThrottlePolicy::default());
        let now = Instant::now();
        for _ in 0..6 {
            t.record_failure("nobody@x.test", addr(1), now);
            t.record_failure("someone@x.test", addr(2), now);
        }
        assert_eq!(
            t.check("nobody@x.test", addr(9), now),
            t.check("someone@x.test", addr(9), now)
        );
        t.record_success("someone@x.test");
        assert!(t.check("someone@x.test", addr(9), now).is_ok());
    }

    #[test]
    fn an_address_trying_many_accounts_is_throttled() {
        let mut t = LoginThrottle::new(ThrottlePolicy::default());
        let now = Instant::now();
        for i in 0..21 {
            t.record_failure(&format!("user{i}@x.test"), addr(7), now);
        }
        assert!(t.check("fresh@x.test", addr(7), now).is_err());
        assert!(t.check("fresh@x.test", addr(8), now).is_ok());
    }

    #[test]
    fn a_burst_of_parallel_attempts_cannot_pass_the_free_failures() {
        let mut t = LoginThrottle::new(ThrottlePolicy::default());
        let now = Instant::now();
        let begun = (0..50)
            .filter(|_| t.begin("a@x.test", addr(1), now).is_ok())
            .count();
        assert_eq!(begun, 5, "only the free failures may be in flight at once");
        for _ in 0..begun {
            t.finish("a@x.test", addr(1), now, false);
        }
        // Past the free failures: one attempt at a time.
        assert!(t.begin("a@x.test", addr(1), now).is_ok());
        assert!(t.begin("a@x.test", addr(1), now).is_err());
        t.finish("a@x.test", addr(1), now, false);
        assert!(t.begin("a@x.test", addr(1), now).is_err(), "now locked");
    }

    #[test]
    fn success_settles_and_clears() {
        let mut t = LoginThrottle::new(ThrottlePolicy::default());
        let now = Instant::now();
        t.begin("a@x.test", addr(1), now).unwrap();
        t.finish("a@x.test", addr(1), now, true);
        assert!(t.is_empty(), "a clean success leaves nothing behind");
    }

    #[test]
    fn table_is_bounded_and_forgets() {
        let policy = ThrottlePolicy {
            max_keys: 100,
            ..ThrottlePolicy::default()
        };
        let mut t = LoginThrottle::new(policy);
        let now = Instant::now();
        for i in 0..1000 {
            t.record_failure(&format!("u{i}@x.test"), addr(1), now);
        }
        assert!(t.len() <= 100);
        let much_later = now + Duration::from_secs(2 * 3600);
        t.record_failure("last@x.test", addr(2), much_later);
        assert_eq!(t.len(), 2);
    }
}
