//! Session and API token secrets.
//!
//! Both are 256 random bits, base64url-encoded, handed to the client once and stored only as
//! their SHA-256 digest, so a copy of the database cannot be replayed. API tokens carry a
//! `kct_` prefix so secret scanners and people can tell them apart.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::tenancy::Role;

/// The session cookie's name: `__Host-` makes the browser insist on Secure, Path=/ and no Domain.
pub const SESSION_COOKIE: &str = "__Host-kc_session";
/// API token prefix.
pub const API_TOKEN_PREFIX: &str = "kct_";

/// A freshly made secret and the digest to store.
#[derive(Debug)]
pub struct NewSecret {
    pub secret: String,
    pub digest: [u8; 32],
}

/// A new secret with a prefix that names its kind.
pub fn new_secret(prefix: &str) -> NewSecret {
    random_secret(prefix)
}

fn random_secret(prefix: &str) -> NewSecret {
    let bytes: [u8; 32] = rand::random();
    let secret = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    let digest = digest(&secret);
    NewSecret { secret, digest }
}

/// A new session token.
pub fn new_session_token() -> NewSecret {
    random_secret("")
}

/// A new API token.
pub fn new_api_token() -> NewSecret {
    random_secret(API_TOKEN_PREFIX)
}

/// The stored digest of a presented secret.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The first characters of an API token, shown in lists so people can tell tokens apart.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(API_TOKEN_PREFIX.len() + 6).collect()
}

/// Session lifetimes per role.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    pub super_admin: Lifetime,
    pub org_admin: Lifetime,
    pub agent: Lifetime,
}

/// An idle time-out and an absolute one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub idle: Duration,
    pub absolute: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 3600;
        SessionPolicy {
            super_admin: Lifetime {
                idle: Duration::from_secs(15 * MIN),
                absolute: Duration::from_secs(8 * HOUR),
            },
            org_admin: Lifetime {
                idle: Duration::from_secs(30 * MIN),
                absolute: Duration::from_secs(12 * HOUR),
            },
            // Agents wait for calls through a shift: a longer idle time-out.
            agent: Lifetime {
                idle: Duration::from_secs(4 * HOUR),
                absolute: Duration::from_secs(12 * HOUR),
            },
        }
    }
}

impl SessionPolicy {
    pub fn for_role(&self, role: Role) -> Lifetime {
        match role {
            Role::SuperAdmin => self.super_admin,
            Role::OrgAdmin => self.org_admin,
            Role::Agent => self.agent,
            // Customers never hold console sessions; should one appear, it lives briefly.
            Role::Customer => Lifetime {
                idle: Duration::from_secs(10 * 60),
                absolute: Duration::from_secs(60 * 60),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_stored_hashed() {
        let a = new_session_token();
        let b = new_session_token();
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), 43); // 256 bits in base64url
        assert_eq!(digest(&a.secret), a.digest);
        let t = new_api_token();
        assert!(t.secret.starts_with("kct_"));
        assert_eq!(display_prefix(&t.secret).len(), 10);
    }
}
