//! Password policy and hashing.
//!
//! Hashes are argon2id PHC strings with at least m=19456 KiB, t=2, p=1 (the OWASP minimum);
//! [`PasswordHasher::verify`] reads the parameters from the stored string, so raising them later
//! keeps old hashes valid. The policy follows NIST SP 800-63B: length 8 to 128, no composition
//! rules, and a blocklist of common passwords. Plain passwords live only in memory, are never
//! logged, and [`Password`] redacts itself in `Debug`.

use std::collections::HashSet;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;

/// Shortest accepted password.
pub const MIN_LEN: usize = 8;
/// Longest accepted password (characters).
pub const MAX_LEN: usize = 128;

/// A plain password held only as long as needed; `Debug` never shows it.
#[derive(Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A random password of 4 groups of 5 characters (about 100 bits), easy to read aloud.
    pub fn generate() -> Self {
        const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
        let mut rng = rand::rng();
        let groups: Vec<String> = (0..4)
            .map(|_| {
                (0..5)
                    .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                    .collect()
            })
            .collect();
        Password(groups.join("-"))
    }
}

/// Why a new password is refused; the message is shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    #[error("the password must have at least {MIN_LEN} characters")]
    TooShort,
    #[error("the password must have at most {MAX_LEN} characters")]
    TooLong,
    #[error("this password is one of the most common passwords; choose another")]
    Common,
    #[error("the password must not contain your email address")]
    ContainsEmail,
}

fn blocklist() -> &'static HashSet<&'static str> {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("common-passwords.txt")
            .lines()
            .filter(|l| !l.starts_with("# ") && !l.is_empty())
            .collect()
    })
}

/// Checks a new password against the policy. `email` is the account's, if known.
pub fn check_policy(password: &Password, email: Option<&str>) -> Result<(), PolicyViolation> {
    let p = password.expose();
    let len = p.chars().count();
    if len < MIN_LEN {
        return Err(PolicyViolation::TooShort);
    }
    if len > MAX_LEN {
        return Err(PolicyViolation::TooLong);
    }
    let lower = p.to_lowercase();
    if blocklist().contains(lower.as_str()) {
        return Err(PolicyViolation::Common);
    }
    // A password made of one character repeated is as weak as a listed one.
    let mut chars = lower.chars();
    if let Some(first) = chars.next() {
        if chars.all(|c| c == first) {
            return Err(PolicyViolation::Common);
        }
    }
    if let Some(email) = email {
        let local = email.split('@').next().unwrap_or_default().to_lowercase();
        if local.chars().count() >= 4 && lower.contains(&local) {
            return Err(PolicyViolation::ContainsEmail);
        }
    }
    Ok(())
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashCost {
    /// The minimum this product accepts (OWASP's argon2id recommendation).
    pub const MINIMUM: HashCost = HashCost {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost::MINIMUM
    }
}

/// Hashing failed (only on invalid parameters or a corrupt stored hash).
#[derive(Debug, thiserror::Error)]
#[error("password hashing: {0}")]
pub struct HashError(String);

/// Hashes and verifies passwords, and burns the same time for unknown accounts.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    argon: Argon2<'static>,
    /// A hash of a random password, verified against when the account does not exist so that
    /// an unknown email costs the same time as a wrong password.
    decoy: String,
}

impl PasswordHasher {
    pub fn new(cost: HashCost) -> Result<Self, HashError> {
        if cost.memory_kib < HashCost::MINIMUM.memory_kib
            || cost.iterations < HashCost::MINIMUM.iterations
            || cost.parallelism < 1
        {
            return Err(HashError(format!("cost below the minimum: {cost:?}")));
        }
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| HashError(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut hasher = PasswordHasher {
            argon,
            decoy: String::new(),
        };
        hasher.decoy = hasher.hash(&Password::generate())?;
        Ok(hasher)
    }

    /// A PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    pub fn hash(&self, password: &Password) -> Result<String, HashError> {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| HashError(e.to_string()))?;
        self.argon
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    }

    /// Whether `password` matches `stored`; `None` verifies against the decoy and says no.
    pub fn verify(&self, password: &Password, stored: Option<&str>) -> bool {
        let target = stored.unwrap_or(&self.decoy);
        let ok = match PasswordHash::new(target) {
            Ok(parsed) => self
                .argon
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        };
        ok && stored.is_some()
    }
}

/// The cost parameters recorded in a stored PHC string.
pub fn stored_cost(stored: &str) -> Option<(String, HashCost)> {
    let parsed = PasswordHash::new(stored).ok()?;
    let params = Params::try_from(&parsed).ok()?;
    Some((
        parsed.algorithm.to_string(),
        HashCost {
            memory_kib: params.m_cost(),
            iterations: params.t_cost(),
            parallelism: params.p_cost(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rules() {
        let check = |p: &str| check_policy(&Password::new(p), Some("maria.lopez@shop.test"));
        assert_eq!(check("short"), Err(PolicyViolation::TooShort));
        assert_eq!(check(&"x".repeat(129)), Err(PolicyViolation::TooLong));
        assert_eq!(check("password"), Err(PolicyViolation::Common));
        assert_eq!(check("Password123"), Err(PolicyViolation::Common));
        assert_eq!(check("zzzzzzzzzz"), Err(PolicyViolation::Common));
        assert_eq!(
            check("maria.lopez-2026"),
            Err(PolicyViolation::ContainsEmail)
        );
        assert_eq!(check("correct horse battery staple"), Ok(()));
        // Length counts characters, not bytes.
        assert_eq!(check("ünïcødé✓"), Ok(()));
        assert_eq!(check(&"ab".repeat(64)), Ok(()));
    }

    #[test]
    fn generated_passwords_pass_the_policy() {
        for _ in 0..50 {
            assert_eq!(check_policy(&Password::generate(), None), Ok(()));
        }
    }

    #[test]
    fn hash_round_trip_and_parameters() {
        let hasher = PasswordHasher::new(HashCost::default()).unwrap();
        let pw = Password::new("a long enough secret");
        let stored = hasher.hash(&pw).unwrap();
        assert!(hasher.verify(&pw, Some(&stored)));
        assert!(!hasher.verify(&Password::new("another secret"), Some(&stored)));
        assert!(!hasher.verify(&pw, None));
        let (alg, cost) = stored_cost(&stored).unwrap();
        assert_eq!(alg, "argon2id");
        assert_eq!(cost, HashCost::MINIMUM);
        assert!(!stored.contains("a long enough secret"));
    }

    #[test]
    fn weak_cost_is_refused() {
        let weak = HashCost {
            memory_kib: 4096,
            ..HashCost::MINIMUM
        };
        assert!(PasswordHasher::new(weak).is_err());
    }

    #[test]
    fn debug_redacts() {
        assert_eq!(
            format!("{:?}", Password::new("hunter22hunter")),
            "Password(<redacted>)"
        );
    }
}
