//! The URLs the fleet takes on the command line, parsed strictly into types that can only hold
//! valid values: the external broker (`mqtts://HOST[:PORT]`), the base URL brokers fetch the
//! CRLs from (`http[s]://HOST[:PORT][/PATH]`), and an external broker's admin API.
//!
//! Strict means: one scheme each, a host (a DNS name, an IPv4 address or a bracketed IPv6
//! address), an optional port from 1 to 65535, and nothing else that the value would silently
//! ignore: no user info, query or fragment, and a path only where one means something.

use std::fmt;
use std::str::FromStr;

/// Port of MQTT over TLS when a URL names none.
pub const MQTTS_PORT: u16 = 8883;

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(String);

fn err(message: impl Into<String>) -> UrlError {
    UrlError(message.into())
}

/// A host and port split from the authority part of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    /// Lower-case DNS name or IPv4 address, or an IPv6 address without its brackets.
    host: String,
    port: Option<u16>,
}

impl Authority {
    /// The host as it goes back into a URL (IPv6 in brackets).
    fn host_for_url(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Parses `HOST[:PORT]`, where HOST may be `[IPv6]`.
fn authority(raw: &str) -> Result<Authority, UrlError> {
    if raw.is_empty() {
        return Err(err("the URL names no host"));
    }
    if raw.contains('@') {
        return Err(err("user names and passwords do not belong in the URL"));
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| err("an IPv6 address needs its closing `]`"))?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| err(format!("`{v6}` is not an IPv6 address")))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| err(format!("unexpected `{p}` after the host")))?,
            ),
        };
        (v6.to_string(), port)
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (raw.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(err("the URL names no host"));
    }
    let host = if host.contains(':') {
        host
    } else {
        let lower = host.to_ascii_lowercase();
        if !is_dns_name(&lower) {
            return Err(err(format!("`{host}` is not a host name or address")));
        }
        lower
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(format!("`{p}` is not a port number")));
            }
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(err(format!("port {p} is not between 1 and 65535"))),
            }
        }
    };
    Ok(Authority { host, port })
}

/// Splits `scheme://rest` for one of `schemes` (compared without case).
fn scheme<'a>(raw: &'a str, schemes: &[&'static str]) -> Result<(&'static str, &'a str), UrlError> {
    let trimmed = raw.trim();
    for s in schemes {
        let prefix = format!("{s}://");
        if trimmed.len() >= prefix.len() && trimmed[..prefix.len()].eq_ignore_ascii_case(&prefix) {
            return Ok((s, &trimmed[prefix.len()..]));
        }
    }
    let wanted = schemes
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" or ");
    Err(err(format!("`{trimmed}` does not start with {wanted}")))
}

/// Refuses queries and fragments, which no value here uses.
fn no_query(rest: &str) -> Result<(), UrlError> {
    if rest.contains(['?', '#']) {
        Err(err("a query or fragment does not belong in the URL"))
    } else {
        Ok(())
    }
}

/// Splits `authority[/path]` and checks the path: `/`-separated segments of unreserved
/// characters, returned without a trailing `/` (empty for none).
fn authority_and_path(rest: &str) -> Result<(Authority, String), UrlError> {
    no_query(rest)?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = authority(auth)?;
    let path = path.trim_end_matches('/');
    let segments_ok = path
        .split('/')
        .skip(1)
        .all(|s| !s.is_empty() && s != "." && s != "..")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
    if !segments_ok {
        return Err(err(format!(
            "the path `{path}` may hold only letters, digits, `-`, `.`, `_`, `~` and `/`"
        )));
    }
    Ok((authority, path.to_string()))
}

/// `scheme://host[:port]path`, the normal form of a base URL.
fn base_url(scheme: &str, authority: &Authority, path: &str) -> String {
    let port = authority.port.map(|p| format!(":{p}")).unwrap_or_default();
    format!("{scheme}://{}{port}{path}", authority.host_for_url())
}

/// Where an external MQTT broker listens: `mqtts://HOST[:PORT]`, port 8883 by default. Only MQTT
/// over TLS is accepted; the fleet link never speaks plain MQTT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    authority: Authority,
}

impl BrokerUrl {
    /// The host to dial and to check the broker's certificate against.
    pub fn host(&self) -> &str {
        &self.authority.host
    }

    pub fn port(&self) -> u16 {
        self.authority.port.unwrap_or(MQTTS_PORT)
    }
}

impl FromStr for BrokerUrl {
    type Err = UrlError;

    fn from_str(raw: &str) -> Result<Self, UrlError> {
        let (_, rest) = scheme(raw, &["mqtts"])?;
        no_query(rest)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(err("a broker URL has no path: mqtts://HOST[:PORT]"));
        }
        Ok(BrokerUrl {
            authority: authority(rest)?,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mqtts://{}:{}",
            self.authority.host_for_url(),
            self.port()
        )
    }
}

/// The base URL under which brokers fetch the CRLs: `BASE/device.crl` and `BASE/claim.crl`.
/// tenantd serves them at `https://…/pki/v1/`; the base may name that, or any address in front
/// of it (a plain-HTTP frontend, since EMQX caches CRLs only from `http://` URLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlBaseUrl {
    base: String,
}

impl CrlBaseUrl {
    /// Where the device CA's CRL is fetched from.
    pub fn device(&self) -> String {
        format!("{}/device.crl", self.base)
    }

    /// Where the claim CA's CRL is fetched from.
    pub fn claim(&self) -> String {
        format!("{}/claim.crl", self.base)
    }
}

impl FromStr for CrlBaseUrl {
    type Err = UrlError;

    fn from_str(raw: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = scheme(raw, &["http", "https"])?;
        let (authority, path) = authority_and_path(rest)?;
        Ok(CrlBaseUrl {
            base: base_url(scheme, &authority, &path),
        })
    }
}

impl fmt::Display for CrlBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// An external broker's admin API (EMQX's REST API lives under `BASE/api/v5`). `https://`, or
/// `http://` on a loopback address only, since the API key travels with every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUrl {
    base: String,
}

impl AdminUrl {
    /// `BASE` followed by `path`, which starts with `/`.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl FromStr for AdminUrl {
    type Err = UrlError;

    fn from_str(raw: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = scheme(raw, &["https", "http"])?;
        let (authority, path) = authority_and_path(rest)?;
        let loopback = authority.host == "localhost"
            || authority
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if scheme == "http" && !loopback {
            return Err(err(
                "the admin API key would cross the network in the clear: use https://, or http:// on localhost only",
            ));
        }
        Ok(AdminUrl {
            base: base_url(scheme, &authority, &path),
        })
    }
}

impl fmt::Display for AdminUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(raw: &str) -> Result<(String, u16), String> {
        raw.parse::<BrokerUrl>()
            .map(|u| (u.host().to_string(), u.port()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn broker_urls_name_a_tls_host_and_port() {
        assert_eq!(
            broker("mqtts://emqx.example:8883"),
            Ok(("emqx.example".into(), 8883))
        );
        assert_eq!(
            broker("mqtts://Broker.Example"),
            Ok(("broker.example".into(), 8883))
        );
        assert_eq!(
            broker("MQTTS://10.0.0.7:18883/"),
            Ok(("10.0.0.7".into(), 18883))
        );
        assert_eq!(broker("mqtts://[::1]:9000"), Ok(("::1".into(), 9000)));
        assert_eq!(broker("mqtts://[::1]"), Ok(("::1".into(), 8883)));
        assert_eq!(
            "mqtts://[::1]:9000"
                .parse::<BrokerUrl>()
                .unwrap()
                .to_string(),
            "mqtts://[::1]:9000"
        );
        assert_eq!(
            "mqtts://emqx.example"
                .parse::<BrokerUrl>()
                .unwrap()
                .to_string(),
            "mqtts://emqx.example:8883"
        );
    }

    #[test]
    fn broker_urls_refuse_what_they_would_ignore() {
        for (raw, says) in [
            ("mqtt://emqx.example:1883", "does not start with mqtts://"),
            ("https://emqx.example", "does not start with mqtts://"),
            ("emqx.example:8883", "does not start with mqtts://"),
            ("mqtts://", "names no host"),
            ("mqtts://:8883", "names no host"),
            ("mqtts://emqx.example:", "is not a port number"),
            ("mqtts://emqx.example:0", "not between 1 and 65535"),
            ("mqtts://emqx.example:65536", "not between 1 and 65535"),
            ("mqtts://emqx.example:88a3", "is not a port number"),
            ("mqtts://emqx.example/kiosks", "has no path"),
            ("mqtts://user:pw@emqx.example", "user names and passwords"),
            ("mqtts://emqx.example?x=1", "query or fragment"),
            ("mqtts://emqx_example", "is not a host name or address"),
            ("mqtts://-emqx.example", "is not a host name or address"),
            ("mqtts://emqx..example", "is not a host name or address"),
            ("mqtts://[::1", "closing `]`"),
            ("mqtts://[nope]:1", "is not an IPv6 address"),
            ("mqtts://[::1]x", "unexpected `x`"),
        ] {
            let e = broker(raw).expect_err(raw);
            assert!(e.contains(says), "{raw}: {e}");
        }
    }

    #[test]
    fn crl_base_urls_name_both_crls() {
        let base: CrlBaseUrl = "http://crl.shop.example/pki/v1/".parse().unwrap();
        assert_eq!(base.device(), "http://crl.shop.example/pki/v1/device.crl");
        assert_eq!(base.claim(), "http://crl.shop.example/pki/v1/claim.crl");
        let base: CrlBaseUrl = "HTTPS://Cloud.Example:8443".parse().unwrap();
        assert_eq!(base.device(), "https://cloud.example:8443/device.crl");
        for raw in [
            "ftp://crl.example",
            "http://",
            "http://crl.example/a b",
            "http://crl.example/../x",
            "http://crl.example/pki?v=1",
            "http://crl.example//pki",
        ] {
            assert!(raw.parse::<CrlBaseUrl>().is_err(), "{raw}");
        }
    }

    #[test]
    fn admin_urls_keep_the_key_off_the_network_in_the_clear() {
        let url: AdminUrl = "https://emqx.internal:18084/".parse().unwrap();
        assert_eq!(
            url.join("/api/v5/clients/kiosk-a"),
            "https://emqx.internal:18084/api/v5/clients/kiosk-a"
        );
        assert!("http://127.0.0.1:18083".parse::<AdminUrl>().is_ok());
        assert!("http://localhost:18083".parse::<AdminUrl>().is_ok());
        assert!("http://[::1]:18083".parse::<AdminUrl>().is_ok());
        let e = "http://emqx.internal:18083"
            .parse::<AdminUrl>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("in the clear"), "{e}");
    }
}
