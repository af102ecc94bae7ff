//! Support shared by the workspace's tests.
//!
//! [`free_ports`] chooses loopback ports for servers a test starts as separate processes
//! (mosquitto, chromedriver), which must be told a port before they bind it. A port the
//! system hands out with `bind(…:0)` is an ephemeral port: between the moment it is released
//! and the moment the server binds it, any outgoing connection or `bind(…:0)` of any test
//! running beside this one may be given it ("Address already in use"). So the ports chosen
//! here lie below the system's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`),
//! where the system never hands a port out by itself: only another test choosing at random in
//! the same range at the same moment could take it, and each choice is checked by binding it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};

/// The lowest port chosen: above the well-known and most registered services' ports.
const FLOOR: u16 = 10_000;
/// Fewer candidates than this between [`FLOOR`] and the ephemeral range: use `bind(…:0)`.
const MIN_SPAN: u16 = 2_000;

/// `N` distinct free TCP ports on 127.0.0.1, each checked by binding it; all are held until
/// all are found.
///
/// # Panics
/// When no port can be bound at all (the loopback interface is down).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let span = ephemeral_low().saturating_sub(FLOOR);
    let mut held: Vec<TcpListener> = Vec::with_capacity(N);
    let mut tries = 0u32;
    while held.len() < N {
        tries += 1;
        let port = if span >= MIN_SPAN && tries <= 1_000 {
            FLOOR + (random() % u64::from(span)) as u16
        } else {
            0
        };
        // A port held already cannot be bound again, so the ports are distinct.
        if let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            held.push(l);
        } else if port == 0 {
            panic!("no TCP port can be bound on 127.0.0.1");
        }
    }
    let mut ports = [0u16; N];
    for (p, l) in ports.iter_mut().zip(&held) {
        *p = l.local_addr().map(|a| a.port()).unwrap_or(0);
    }
    ports
}

/// One free TCP port on 127.0.0.1, as [`free_ports`].
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// The first port of the system's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A random number: the standard library's per-process random hash keys over a counter, the
/// process id and the time, which is all a port choice needs.
fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let low = ephemeral_low();
        for _ in 0..50 {
            let ports = free_ports::<4>();
            for (i, p) in ports.iter().enumerate() {
                assert!(*p != 0);
                assert!(!ports[..i].contains(p), "{ports:?}");
                if low.saturating_sub(FLOOR) >= MIN_SPAN {
                    assert!((FLOOR..low).contains(p), "{p} not in {FLOOR}..{low}");
                }
                // Released on return: a server can bind it.
                TcpListener::bind((Ipv4Addr::LOCALHOST, *p)).unwrap();
            }
        }
    }
}
