//! ICE configuration of an organization and the TURN credentials minted for each call.
//!
//! TURN uses coturn's `use-auth-secret` scheme (`static-auth-secret` on the TURN server): the
//! username is `<expiry unix seconds>:<call id>` and the password is
//! base64(HMAC-SHA1(secret, username)). The TURN server checks the HMAC and the expiry itself,
//! so tenantd never talks to it; the secret never leaves tenantd (the API only says whether it
//! is set).

use base64::Engine;
use hmac::{Hmac, Mac};
use kiosk_protocol::call::{CallId, IceServer};
use serde::{Deserialize, Serialize};

use super::registry::IceGrant;

/// At most this many STUN URLs, and as many TURN URLs.
pub const MAX_URLS: usize = 8;
/// The longest call by default: two hours.
pub const DEFAULT_MAX_CALL_S: i64 = 2 * 3600;
/// Bounds of the longest call an organization may set (1 minute to 12 hours).
pub const MAX_CALL_S_RANGE: std::ops::RangeInclusive<i64> = 60..=12 * 3600;
/// Bounds of a TURN shared secret's length.
pub const SECRET_LEN: std::ops::RangeInclusive<usize> = 16..=256;

/// An organization's ICE settings, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct IceSettings {
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    pub turn_secret: Option<String>,
    pub max_call_s: i64,
}

impl std::fmt::Debug for IceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceSettings")
            .field("stun_urls", &self.stun_urls)
            .field("turn_urls", &self.turn_urls)
            .field("turn_secret", &self.turn_secret.as_ref().map(|_| "(set)"))
            .field("max_call_s", &self.max_call_s)
            .finish()
    }
}

impl Default for IceSettings {
    fn default() -> Self {
        IceSettings {
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            max_call_s: DEFAULT_MAX_CALL_S,
        }
    }
}

/// What the API shows of the settings: never the secret.
#[derive(Debug, Clone, Serialize)]
pub struct IceView {
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    pub turn_secret_set: bool,
    pub max_call_s: i64,
}

impl IceSettings {
    pub fn view(&self) -> IceView {
        IceView {
            stun_urls: self.stun_urls.clone(),
            turn_urls: self.turn_urls.clone(),
            turn_secret_set: self.turn_secret.is_some(),
            max_call_s: self.max_call_s,
        }
    }

    /// The longest call in ms.
    pub fn max_call_ms(&self) -> i64 {
        self.max_call_s.saturating_mul(1000)
    }

    /// The ICE servers of a call accepted at `now_ms`: the STUN URLs, and the TURN URLs with
    /// a credential for this call that expires when the call must end.
    pub fn grant(&self, call: &CallId, now_ms: i64) -> IceGrant {
        let expires_at_ms = now_ms.saturating_add(self.max_call_ms());
        let mut ice_servers = Vec::new();
        if !self.stun_urls.is_empty() {
            ice_servers.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if let (false, Some(secret)) = (self.turn_urls.is_empty(), &self.turn_secret) {
            let (username, credential) = turn_credential(secret, expires_at_ms / 1000, call);
            ice_servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        IceGrant {
            ice_servers,
            expires_at_ms,
        }
    }
}

/// The coturn `use-auth-secret` credential: username `<expiry>:<call id>`, password
/// base64(HMAC-SHA1(secret, username)).
pub fn turn_credential(secret: &str, expiry_unix_s: i64, call: &CallId) -> (String, String) {
    let username = format!("{expiry_unix_s}:{call}");
    // HMAC takes keys of any length.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}

/// The body of `PUT /orgs/{org}/ice`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceInput {
    #[serde(default)]
    pub stun_urls: Vec<String>,
    #[serde(default)]
    pub turn_urls: Vec<String>,
    /// Absent: keep the secret; empty: remove it; otherwise the new secret.
    #[serde(default)]
    pub turn_secret: Option<String>,
    #[serde(default)]
    pub max_call_s: Option<i64>,
}

/// A field of [`IceInput`] that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceInvalid {
    pub field: &'static str,
    pub message: String,
}

impl IceInput {
    /// Checks the input and merges it with the current settings (for the kept secret).
    pub fn apply(self, current: &IceSettings) -> Result<IceSettings, IceInvalid> {
        let bad = |field, message: String| IceInvalid { field, message };
        for (field, urls, schemes) in [
            ("stun_urls", &self.stun_urls, &["stun", "stuns"][..]),
            ("turn_urls", &self.turn_urls, &["turn", "turns"][..]),
        ] {
            if urls.len() > MAX_URLS {
                return Err(bad(field, format!("at most {MAX_URLS} URLs")));
            }
            for url in urls {
                check_url(url, schemes).map_err(|m| bad(field, format!("{url:?}: {m}")))?;
            }
        }
        let turn_secret = match self.turn_secret {
            None => current.turn_secret.clone(),
            Some(s) if s.is_empty() => None,
            Some(s) => {
                if !SECRET_LEN.contains(&s.len()) || s.chars().any(char::is_control) {
                    return Err(bad(
                        "turn_secret",
                        format!(
                            "{} to {} characters, no control characters",
                            SECRET_LEN.start(),
                            SECRET_LEN.end()
                        ),
                    ));
                }
                Some(s)
            }
        };
        if !self.turn_urls.is_empty() && turn_secret.is_none() {
            return Err(bad(
                "turn_secret",
                "TURN URLs need the TURN server's shared secret".into(),
            ));
        }
        let max_call_s = self.max_call_s.unwrap_or(current.max_call_s);
        if !MAX_CALL_S_RANGE.contains(&max_call_s) {
            return Err(bad(
                "max_call_s",
                format!(
                    "between {} and {} seconds",
                    MAX_CALL_S_RANGE.start(),
                    MAX_CALL_S_RANGE.end()
                ),
            ));
        }
        Ok(IceSettings {
            stun_urls: self.stun_urls,
            turn_urls: self.turn_urls,
            turn_secret,
            max_call_s,
        })
    }
}

/// Checks `scheme:host[:port][?transport=udp|tcp]` (RFC 7064, RFC 7065); the transport only
/// for TURN.
pub fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    if url.len() > 256 {
        return Err("too long".into());
    }
    let (scheme, rest) = url.split_once(':').ok_or("no scheme")?;
    if !schemes.contains(&scheme) {
        return Err(format!("the scheme must be one of {}", schemes.join(", ")));
    }
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    if let Some(q) = query {
        if !scheme.starts_with("turn") {
            return Err("only TURN URLs take a transport".into());
        }
        match q {
            "transport=udp" | "transport=tcp" => {}
            _ => return Err("the only parameter is transport=udp or transport=tcp".into()),
        }
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("unclosed [")?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| "not an IPv6 address")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after the address")?),
        };
        (addr, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if !hostport.starts_with('[') {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
            return Err("not a host name or address".into());
        }
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => {}
            _ => return Err("the port must be 1 to 65535".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently:
    /// `printf '1700000000:call-abcdefghijklmnop' | openssl dgst -sha1 -hmac 'north-wind-turn-secret' -binary | base64`
    #[test]
    fn turn_credentials_match_coturns_scheme() {
        let call = CallId::parse("call-abcdefghijklmnop").unwrap();
        let (user, credential) = turn_credential("north-wind-turn-secret", 1_700_000_000, &call);
        assert_eq!(user, "1700000000:call-abcdefghijklmnop");
        assert_eq!(credential, "hggSAn+pkbs9s6NNxq4hgphPpK8=");
    }

    #[test]
    fn a_grant_expires_with_the_call() {
        let settings = IceSettings {
            stun_urls: vec!["stun:stun.example.test:3478".into()],
            turn_urls: vec!["turn:turn.example.test:3478?transport=udp".into()],
            turn_secret: Some("north-wind-turn-secret".into()),
            max_call_s: 7200,
        };
        let call = CallId::parse("call-abcdefghijklmnop").unwrap();
        let g = settings.grant(&call, 1_700_000_000_000 - 7_200_000);
        assert_eq!(g.expires_at_ms, 1_700_000_000_000);
        assert_eq!(g.ice_servers.len(), 2);
        assert_eq!(
            g.ice_servers[1].credential.as_deref(),
            Some("hggSAn+pkbs9s6NNxq4hgphPpK8=")
        );
        let stun_only = IceSettings {
            turn_secret: None,
            ..settings
        };
        assert_eq!(stun_only.grant(&call, 0).ice_servers.len(), 1);
        assert!(IceSettings::default()
            .grant(&call, 0)
            .ice_servers
            .is_empty());
    }

    #[test]
    fn urls_are_checked() {
        for ok in [
            "stun:stun.example.test",
            "stun:stun.example.test:3478",
            "stun:192.0.2.1:3478",
            "stun:[2001:db8::1]:3478",
        ] {
            assert_eq!(check_url(ok, &["stun", "stuns"]), Ok(()), "{ok}");
        }
        for ok in [
            "turn:turn.example.test:3478?transport=udp",
            "turns:turn.example.test:5349?transport=tcp",
            "turn:turn.example.test",
        ] {
            assert_eq!(check_url(ok, &["turn", "turns"]), Ok(()), "{ok}");
        }
        for bad in [
            "http://x.example",
            "stun:",
            "stun:host:0",
            "stun:host:99999",
            "stun:ho st",
            "stun:host?transport=udp",
            "stun:-host",
            "stun:[::1",
        ] {
            assert!(check_url(bad, &["stun", "stuns"]).is_err(), "{bad}");
        }
        for bad in [
            "turn:host?transport=sctp",
            "turn:host?x=1",
            "stun:host",
            "turn:user@host",
        ] {
            assert!(check_url(bad, &["turn", "turns"]).is_err(), "{bad}");
        }
    }

    #[test]
    fn input_keeps_or_clears_the_secret_and_bounds_things() {
        let current = IceSettings {
            turn_secret: Some("an old secret of 24 chars".into()),
            ..IceSettings::default()
        };
        let input = |secret: Option<&str>, turn: &[&str]| IceInput {
            stun_urls: vec![],
            turn_urls: turn.iter().map(|s| s.to_string()).collect(),
            turn_secret: secret.map(str::to_string),
            max_call_s: None,
        };
        let kept = input(None, &["turn:t.example.test"])
            .apply(&current)
            .unwrap();
        assert_eq!(kept.turn_secret, current.turn_secret);
        let cleared = input(Some(""), &[]).apply(&current).unwrap();
        assert_eq!(cleared.turn_secret, None);
        assert_eq!(
            input(Some(""), &["turn:t.example.test"])
                .apply(&current)
                .unwrap_err()
                .field,
            "turn_secret"
        );
        assert!(input(Some("short"), &[]).apply(&current).is_err());
        let nine: Vec<String> = (0..9).map(|i| format!("stun:s{i}.example.test")).collect();
        let too_many = IceInput {
            stun_urls: nine,
            ..input(None, &[])
        };
        assert_eq!(too_many.apply(&current).unwrap_err().field, "stun_urls");
        let too_long = IceInput {
            max_call_s: Some(10),
            ..input(None, &[])
        };
        assert_eq!(too_long.apply(&current).unwrap_err().field, "max_call_s");
    }
}
