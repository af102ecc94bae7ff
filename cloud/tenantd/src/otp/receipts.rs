//! Providers' delivery receipts (DLR) for organizations' `http` gateways: the pure part.
//!
//! A gateway with `receipts` set gets a receipt key (`kcr_` and 32 random bytes, base64url)
//! made by tenantd when the gateway is saved; the provider posts each status change of a
//! message to `POST /api/v1/sms/receipts/{key}`. [`ReceiptConfig`] says how a receipt is read:
//! its body format (JSON or a form), where the provider's message id and its status are (a
//! JSON pointer, or a form field name), which status values mean delivered and which
//! undelivered (any other value is accepted and ignored), and where an optional reason is.
//!
//! - [`ReceiptInput`] is what an admin sends (inside the gateway of `PUT /orgs/{org}/sms`);
//!   the key is kept for a gateway of the same name unless `new_key` asks for a fresh one.
//!   [`ReceiptView`] is what the API shows back, with the receipt URL's path for the admin to
//!   paste into the provider's console.
//! - [`parse_receipt`] reads a receipt body into a [`Receipt`]; [`next_status`] decides
//!   whether it moves a delivery record forward (`sent` → `undelivered` → `delivered`, never
//!   back, never from `failed`); [`ReceiptThrottle`] is the per-key token bucket in front of the
//!   route. All of them take plain values (and an injected clock), so they are tested without
//!   sockets; `api::sms` and `store::otp` are the edge.
//!
//! A receipt never brings a number into the store: the only values kept from it are the
//! status and the reason, bounded to [`MAX_DETAIL_CHARS`] characters and with anything that
//! looks like a phone number (7 digits or more) replaced by `•••`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::sms::BodyFormat;

/// The receipt route's path before the key.
pub const RECEIPT_PATH: &str = "/api/v1/sms/receipts/";
/// What every receipt key starts with.
pub const RECEIPT_KEY_PREFIX: &str = "kcr_";
/// The largest receipt body read.
pub const MAX_RECEIPT_BYTES: usize = 16 * 1024;
/// The longest error detail kept for an undelivered message.
pub const MAX_DETAIL_CHARS: usize = 200;
/// Provider ids are kept to this many characters (when sent, and when a receipt names one).
pub const MAX_PROVIDER_ID_CHARS: usize = 128;
/// The longest pointer or field name.
const MAX_FIELD: usize = 256;
/// At most this many status values in a list.
const MAX_VALUES: usize = 16;
/// The longest status value.
const MAX_VALUE: usize = 64;
/// Base64url characters of a key's 32 random bytes.
const KEY_CHARS: usize = 43;

/// How a gateway's receipts are read, as stored (the key included).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptConfig {
    /// `json` (JSON pointers) or `form` (field names of an `x-www-form-urlencoded` body).
    #[serde(default)]
    pub format: BodyFormat,
    /// Where the provider's message id is (`/id`, or `MessageSid`).
    pub provider_id: String,
    /// Where the status is.
    pub status: String,
    /// Where a reason is, kept with an undelivered status (an error code or text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Status values that mean delivered (compared ignoring ASCII case).
    pub delivered: Vec<String>,
    /// Status values that mean undelivered.
    #[serde(default)]
    pub undelivered: Vec<String>,
    /// The receipt key: the last segment of the receipt URL.
    pub key: String,
}

impl std::fmt::Debug for ReceiptConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptConfig")
            .field("format", &self.format)
            .field("provider_id", &self.provider_id)
            .field("status", &self.status)
            .field("delivered", &self.delivered)
            .field("undelivered", &self.undelivered)
            .finish_non_exhaustive()
    }
}

/// Receipts as an admin sends them: the key is tenantd's, kept unless `new_key` is true.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptInput {
    #[serde(default)]
    pub format: BodyFormat,
    pub provider_id: String,
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    pub delivered: Vec<String>,
    #[serde(default)]
    pub undelivered: Vec<String>,
    /// Makes a new key (the old receipt URL stops working at once).
    #[serde(default)]
    pub new_key: bool,
}

/// What the API shows of a gateway's receipts.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptView {
    pub format: BodyFormat,
    pub provider_id: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub delivered: Vec<String>,
    pub undelivered: Vec<String>,
    /// `/api/v1/sms/receipts/kcr_…`: the provider's status callback, after the service's
    /// public address.
    pub url_path: String,
}

/// A new receipt key: `kcr_` and 32 random bytes, base64url.
pub fn new_receipt_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{RECEIPT_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `key` has a receipt key's shape (anything else is not looked up).
pub fn is_key_shaped(key: &str) -> bool {
    key.strip_prefix(RECEIPT_KEY_PREFIX).is_some_and(|rest| {
        rest.len() == KEY_CHARS
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// What a key is looked up by (`sms_receipt_keys.key_hash`).
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Two digests compared in constant time.
pub fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ReceiptConfig {
    /// What the API shows.
    pub fn view(&self) -> ReceiptView {
        ReceiptView {
            format: self.format,
            provider_id: self.provider_id.clone(),
            status: self.status.clone(),
            error: self.error.clone(),
            delivered: self.delivered.clone(),
            undelivered: self.undelivered.clone(),
            url_path: format!("{RECEIPT_PATH}{}", self.key),
        }
    }
}

impl ReceiptInput {
    /// The stored settings: `kept` is the stored receipts of the gateway of the same name.
    pub fn merge(self, kept: Option<&ReceiptConfig>) -> ReceiptConfig {
        let key = match kept {
            Some(k) if !self.new_key => k.key.clone(),
            _ => new_receipt_key(),
        };
        let trimmed = |list: Vec<String>| -> Vec<String> {
            list.into_iter().map(|v| v.trim().to_string()).collect()
        };
        ReceiptConfig {
            format: self.format,
            provider_id: self.provider_id.trim().to_string(),
            status: self.status.trim().to_string(),
            error: self
                .error
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty()),
            delivered: trimmed(self.delivered),
            undelivered: trimmed(self.undelivered),
            key,
        }
    }
}

/// Checks stored receipt settings; the error names the field (`receipts`) and what is wrong.
pub fn check(r: &ReceiptConfig) -> Result<(), (&'static str, String)> {
    let bad = |m: String| Err(("receipts", m));
    let places = [
        ("provider_id", Some(&r.provider_id)),
        ("status", Some(&r.status)),
        ("error", r.error.as_ref()),
    ];
    for (name, place) in places {
        let Some(place) = place else { continue };
        match r.format {
            BodyFormat::Json => {
                if !place.starts_with('/') || place.len() > MAX_FIELD {
                    return bad(format!(
                        "{name}: a JSON pointer such as /status (starting with /, at most \
                         {MAX_FIELD} bytes)"
                    ));
                }
            }
            BodyFormat::Form => {
                if place.is_empty()
                    || place.len() > MAX_FIELD
                    || place
                        .chars()
                        .any(|c| c.is_control() || c == '&' || c == '=')
                {
                    return bad(format!(
                        "{name}: a form field name such as MessageStatus (1 to {MAX_FIELD} \
                         bytes, no &, = or control characters)"
                    ));
                }
            }
        }
    }
    if r.delivered.is_empty() {
        return bad("delivered: at least one status value".into());
    }
    for (name, list) in [("delivered", &r.delivered), ("undelivered", &r.undelivered)] {
        if list.len() > MAX_VALUES {
            return bad(format!("{name}: at most {MAX_VALUES} status values"));
        }
        if list.iter().any(|v| {
            v.is_empty() || v.chars().count() > MAX_VALUE || v.chars().any(char::is_control)
        }) {
            return bad(format!(
                "{name}: status values of 1 to {MAX_VALUE} characters, no control characters"
            ));
        }
    }
    if let Some(both) = r
        .delivered
        .iter()
        .find(|d| r.undelivered.iter().any(|u| u.eq_ignore_ascii_case(d)))
    {
        return bad(format!(
            "the status value {both:?} is both delivered and undelivered"
        ));
    }
    if !is_key_shaped(&r.key) {
        return bad("the receipt key is not one tenantd made".into());
    }
    Ok(())
}

/// What a receipt says about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptOutcome {
    Delivered,
    /// With the status and reason, bounded and without numbers.
    Undelivered {
        detail: String,
    },
    /// Any other status (queued, sent, …): accepted, changes nothing.
    Ignored,
}

/// One receipt, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's message id (at most [`MAX_PROVIDER_ID_CHARS`] characters, as recorded).
    pub provider_id: String,
    pub outcome: ReceiptOutcome,
}

/// A receipt that cannot be read (answered `400` with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("send the receipt as {media} (this gateway's receipts are {format})")]
    MediaType {
        media: &'static str,
        format: &'static str,
    },
    #[error("the receipt is not JSON: {0}")]
    Json(String),
    #[error("the receipt is not a form body: {0}")]
    Form(String),
    #[error("the receipt has no {what} at {place}")]
    Missing { what: &'static str, place: String },
    #[error("the receipt's {what} at {place} is not a string or a number")]
    NotText { what: &'static str, place: String },
}

/// A parsed body: where values are looked up.
enum Fields {
    Json(Value),
    Form(Vec<(String, String)>),
}

impl Fields {
    /// The text at `place`: `None` when absent, `Err` when there but not a string or number.
    fn text(&self, place: &str) -> Result<Option<String>, ()> {
        match self {
            Fields::Json(v) => match v.pointer(place) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(()),
            },
            Fields::Form(pairs) => Ok(pairs
                .iter()
                .find(|(k, _)| k == place)
                .map(|(_, v)| v.clone())),
        }
    }

    /// The non-empty text at `place` (trimmed), or why not.
    fn required(&self, place: &str, what: &'static str) -> Result<String, ReceiptError> {
        match self.text(place) {
            Ok(Some(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Ok(_) => Err(ReceiptError::Missing {
                what,
                place: place.to_string(),
            }),
            Err(()) => Err(ReceiptError::NotText {
                what,
                place: place.to_string(),
            }),
        }
    }
}

/// The media type of a `Content-Type` value, lower-cased, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Reads a receipt body posted with `content_type` (when the provider sent one) as `config`
/// says.
pub fn parse_receipt(
    config: &ReceiptConfig,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Receipt, ReceiptError> {
    let media = content_type.map(media_type);
    let fields = match config.format {
        BodyFormat::Json => {
            if media
                .as_deref()
                .is_some_and(|m| m != "application/json" && !m.ends_with("+json"))
            {
                return Err(ReceiptError::MediaType {
                    media: "application/json",
                    format: "json",
                });
            }
            Fields::Json(
                serde_json::from_slice(body).map_err(|e| ReceiptError::Json(e.to_string()))?,
            )
        }
        BodyFormat::Form => {
            if media
                .as_deref()
                .is_some_and(|m| m != "application/x-www-form-urlencoded")
            {
                return Err(ReceiptError::MediaType {
                    media: "application/x-www-form-urlencoded",
                    format: "form",
                });
            }
            Fields::Form(parse_form(body)?)
        }
    };
    let provider_id: String = fields
        .required(&config.provider_id, "message id")?
        .chars()
        .take(MAX_PROVIDER_ID_CHARS)
        .collect();
    let status = fields.required(&config.status, "status")?;
    let is = |list: &[String]| list.iter().any(|v| v.eq_ignore_ascii_case(&status));
    let outcome = if is(&config.delivered) {
        ReceiptOutcome::Delivered
    } else if is(&config.undelivered) {
        // A reason that is missing or not text is left out: the status still counts.
        let reason = config
            .error
            .as_deref()
            .and_then(|place| fields.text(place).ok().flatten())
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        let detail = match reason {
            Some(r) => format!("{status}: {r}"),
            None => status.clone(),
        };
        ReceiptOutcome::Undelivered {
            detail: bounded_detail(&detail),
        }
    } else {
        ReceiptOutcome::Ignored
    };
    Ok(Receipt {
        provider_id,
        outcome,
    })
}

/// An `application/x-www-form-urlencoded` body: its pairs, decoded (`+` is a space).
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, ReceiptError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ReceiptError::Form("not UTF-8".to_string()))?;
    let decode = |s: &str| -> Result<String, ReceiptError> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| {
                            ReceiptError::Form(format!("a bad percent escape in {s:?}"))
                        })?;
                    out.push(hex);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out)
            .map_err(|_| ReceiptError::Form("a value that is not UTF-8 once decoded".into()))
    };
    text.trim_end_matches(['\r', '\n'])
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// `detail` without control characters or numbers, at most [`MAX_DETAIL_CHARS`] characters.
pub fn bounded_detail(detail: &str) -> String {
    let clean: String = detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    redact_numbers(&clean)
        .chars()
        .take(MAX_DETAIL_CHARS)
        .collect()
}

/// Replaces every run of digits and number punctuation (`+ - . ( ) /` and spaces) that holds
/// 7 digits or more, which could be a phone number, by `•••`. Shorter codes (`30003`) stay.
fn redact_numbers(s: &str) -> String {
    let numeric =
        |c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | '(' | ')' | '/' | ' ');
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if !numeric(chars[i]) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && numeric(chars[i]) {
            i += 1;
        }
        let run = &chars[start..i];
        if run.iter().filter(|c| c.is_ascii_digit()).count() >= 7 {
            // Keep the spaces around the number, so words stay apart.
            let lead = run.iter().take_while(|c| **c == ' ').count();
            let trail = run.iter().rev().take_while(|c| **c == ' ').count();
            out.extend(std::iter::repeat_n(' ', lead));
            out.push_str("•••");
            out.extend(std::iter::repeat_n(' ', trail.min(run.len() - lead)));
        } else {
            out.extend(run);
        }
    }
    out
}

/// The status a delivery record in `current` takes after `outcome`, when it moves forward:
/// `sent` → `undelivered` → `delivered`. A record never goes back (a late `undelivered`
/// leaves `delivered` alone; an ignored status changes nothing), a repeated receipt changes
/// nothing, and a `failed` attempt (no gateway took it) stays failed.
pub fn next_status(current: &str, outcome: &ReceiptOutcome) -> Option<&'static str> {
    let rank = |s: &str| match s {
        "sent" => Some(0),
        "undelivered" => Some(1),
        "delivered" => Some(2),
        _ => None,
    };
    let (to, to_rank) = match outcome {
        ReceiptOutcome::Delivered => ("delivered", 2),
        ReceiptOutcome::Undelivered { .. } => ("undelivered", 1),
        ReceiptOutcome::Ignored => return None,
    };
    match rank(current) {
        Some(from) if from < to_rank => Some(to),
        _ => None,
    }
}

/// How fast one receipt key may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptPolicy {
    /// Receipts a key may send at once.
    pub burst: u32,
    /// One more every this long.
    pub refill_every: Duration,
    /// At most this many keys are tracked (only keys that exist are); the fullest go first.
    pub max_keys: usize,
}

impl Default for ReceiptPolicy {
    fn default() -> Self {
        ReceiptPolicy {
            burst: 100,
            refill_every: Duration::from_millis(100),
            max_keys: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left at `at` (fractions count).
    tokens: f64,
    at: Instant,
}

/// Token buckets per receipt key digest, over an injected clock.
///
/// [`ReceiptThrottle::check`] runs before the key is looked up and refuses only a key whose
/// bucket is empty (so only keys that exist, which alone get buckets, are ever refused);
/// [`ReceiptThrottle::take`] runs once the key is found and spends a token. A bucket that has
/// filled up again is the same as none, so the table holds only keys used lately.
#[derive(Debug)]
pub struct ReceiptThrottle {
    policy: ReceiptPolicy,
    buckets: HashMap<[u8; 32], Bucket>,
}

impl ReceiptThrottle {
    pub fn new(policy: ReceiptPolicy) -> Self {
        ReceiptThrottle {
            policy,
            buckets: HashMap::new(),
        }
    }

    fn refill_secs(&self) -> f64 {
        self.policy.refill_every.as_secs_f64().max(1e-6)
    }

    /// Tokens of `b` at `now`.
    fn tokens(&self, b: &Bucket, now: Instant) -> f64 {
        let gained = now.saturating_duration_since(b.at).as_secs_f64() / self.refill_secs();
        (b.tokens + gained).min(f64::from(self.policy.burst))
    }

    /// How long until `b` holds a whole token.
    fn wait(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64(((1.0 - tokens).max(0.0)) * self.refill_secs())
    }

    /// `Err(wait)` when the key has no token left at `now`.
    pub fn check(&self, key: &[u8; 32], now: Instant) -> Result<(), Duration> {
        match self.buckets.get(key) {
            Some(b) if self.tokens(b, now) < 1.0 => Err(self.wait(self.tokens(b, now))),
            _ => Ok(()),
        }
    }

    /// Spends one of the key's tokens, or says how long to wait.
    pub fn take(&mut self, key: &[u8; 32], now: Instant) -> Result<(), Duration> {
        let full = f64::from(self.policy.burst);
        let tokens = match self.buckets.get(key) {
            Some(b) => self.tokens(b, now),
            None => {
                self.evict(now);
                full
            }
        };
        if tokens < 1.0 {
            return Err(self.wait(tokens));
        }
        self.buckets.insert(
            *key,
            Bucket {
                tokens: tokens - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn evict(&mut self, now: Instant) {
        let full = f64::from(self.policy.burst);
        let refill = self.refill_secs();
        let tokens = |b: &Bucket| {
            (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() / refill).min(full)
        };
        self.buckets.retain(|_, b| tokens(b) < full);
        if self.buckets.len() >= self.policy.max_keys {
            let mut by_tokens: Vec<([u8; 32], f64)> =
                self.buckets.iter().map(|(k, b)| (*k, tokens(b))).collect();
            by_tokens.sort_by(|a, b| b.1.total_cmp(&a.1));
            let excess = self.buckets.len() + 1 - self.policy.max_keys;
            for (key, _) in by_tokens.into_iter().take(excess) {
                self.buckets.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form_config() -> ReceiptConfig {
        ReceiptConfig {
            format: BodyFormat::Form,
            provider_id: "MessageSid".into(),
            status: "MessageStatus".into(),
            error: Some("ErrorCode".into()),
            delivered: vec!["delivered".into()],
            undelivered: vec!["undelivered".into(), "failed".into()],
            key: new_receipt_key(),
        }
    }

    fn json_config() -> ReceiptConfig {
        ReceiptConfig {
            format: BodyFormat::Json,
            provider_id: "/message/id".into(),
            status: "/message/status".into(),
            error: Some("/message/error/reason".into()),
            delivered: vec!["DELIVRD".into()],
            undelivered: vec!["UNDELIV".into(), "EXPIRED".into(), "REJECTD".into()],
            key: new_receipt_key(),
        }
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded; charset=utf-8");
    const JSON: Option<&str> = Some("application/json");

    #[test]
    fn keys_are_long_random_and_shaped() {
        let a = new_receipt_key();
        let b = new_receipt_key();
        assert_ne!(a, b);
        assert!(a.starts_with("kcr_") && a.len() == 4 + 43, "{a}");
        assert!(is_key_shaped(&a));
        assert!(!is_key_shaped("kcr_short"));
        assert!(!is_key_shaped(&a.replace("kcr_", "kct_")));
        assert!(!is_key_shaped(&format!("{}!", &a[..a.len() - 1])));
        assert!(same_digest(&key_digest(&a), &key_digest(&a)));
        assert!(!same_digest(&key_digest(&a), &key_digest(&b)));
    }

    #[test]
    fn form_receipts_are_read_and_mapped() {
        let c = form_config();
        let r = parse_receipt(
            &c,
            FORM,
            b"SmsSid=SM1&MessageSid=SM1&MessageStatus=delivered&To=%2B33612345678",
        )
        .unwrap();
        assert_eq!(r.provider_id, "SM1");
        assert_eq!(r.outcome, ReceiptOutcome::Delivered);
        let r = parse_receipt(
            &c,
            FORM,
            b"MessageSid=SM2&MessageStatus=Undelivered&ErrorCode=30003",
        )
        .unwrap();
        assert_eq!(
            r.outcome,
            ReceiptOutcome::Undelivered {
                detail: "Undelivered: 30003".into()
            }
        );
        // Other statuses are accepted and ignored; no reason is fine.
        let r = parse_receipt(&c, None, b"MessageSid=SM3&MessageStatus=queued").unwrap();
        assert_eq!(r.outcome, ReceiptOutcome::Ignored);
        let r = parse_receipt(&c, FORM, b"MessageSid=SM3&MessageStatus=failed").unwrap();
        assert_eq!(
            r.outcome,
            ReceiptOutcome::Undelivered {
                detail: "failed".into()
            }
        );
        // Decoding: + is a space, escapes are decoded.
        assert_eq!(
            parse_form(b"a=x+y%26z&b=&c&d=%C3%A9\r\n").unwrap(),
            vec![
                ("a".into(), "x y&z".into()),
                ("b".into(), String::new()),
                ("c".into(), String::new()),
                ("d".into(), "é".into())
            ]
        );
    }

    #[test]
    fn json_receipts_are_read_and_mapped() {
        let c = json_config();
        let body = json!({ "message": { "id": 4711, "status": "delivrd", "to": "+33612345678" } });
        let r = parse_receipt(&c, JSON, body.to_string().as_bytes()).unwrap();
        assert_eq!(r.provider_id, "4711");
        assert_eq!(r.outcome, ReceiptOutcome::Delivered);
        let body = json!({ "message": { "id": "m-1", "status": "EXPIRED",
                                        "error": { "reason": "absent subscriber +33 6 12 34 56 78" } } });
        let r = parse_receipt(
            &c,
            Some("application/vnd.provider+json"),
            body.to_string().as_bytes(),
        )
        .unwrap();
        let ReceiptOutcome::Undelivered { detail } = r.outcome else {
            panic!("undelivered")
        };
        assert_eq!(detail, "EXPIRED: absent subscriber •••");
        // A reason that is not text is left out.
        let body =
            json!({ "message": { "id": "m-1", "status": "REJECTD", "error": { "reason": [1] } } });
        let r = parse_receipt(&c, JSON, body.to_string().as_bytes()).unwrap();
        assert_eq!(
            r.outcome,
            ReceiptOutcome::Undelivered {
                detail: "REJECTD".into()
            }
        );
        // A long id is kept as the send path keeps it.
        let long = "x".repeat(300);
        let body = json!({ "message": { "id": long, "status": "ENROUTE" } });
        let r = parse_receipt(&c, JSON, body.to_string().as_bytes()).unwrap();
        assert_eq!(r.provider_id.len(), MAX_PROVIDER_ID_CHARS);
        assert_eq!(r.outcome, ReceiptOutcome::Ignored);
    }

    #[test]
    fn bad_receipts_say_what_is_wrong() {
        let form = form_config();
        let json = json_config();
        let e = parse_receipt(&form, JSON, b"{}").unwrap_err();
        assert!(e.to_string().contains("x-www-form-urlencoded"), "{e}");
        let e = parse_receipt(&json, FORM, b"a=b").unwrap_err();
        assert!(e.to_string().contains("application/json"), "{e}");
        let e = parse_receipt(&json, JSON, b"{not json").unwrap_err();
        assert!(matches!(e, ReceiptError::Json(_)), "{e}");
        let e = parse_receipt(&form, FORM, b"MessageStatus=delivered").unwrap_err();
        assert_eq!(e.to_string(), "the receipt has no message id at MessageSid");
        let e = parse_receipt(&form, FORM, b"MessageSid=SM1&MessageStatus=").unwrap_err();
        assert_eq!(e.to_string(), "the receipt has no status at MessageStatus");
        let e = parse_receipt(&form, FORM, b"MessageSid=%zz").unwrap_err();
        assert!(matches!(e, ReceiptError::Form(_)), "{e}");
        let e = parse_receipt(&form, FORM, b"MessageSid=%FF&MessageStatus=x").unwrap_err();
        assert!(matches!(e, ReceiptError::Form(_)), "{e}");
        let e = parse_receipt(&form, FORM, &[0xff, b'=', b'1']).unwrap_err();
        assert!(matches!(e, ReceiptError::Form(_)), "{e}");
        let body = json!({ "message": { "id": { "x": 1 }, "status": "DELIVRD" } });
        let e = parse_receipt(&json, JSON, body.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the receipt's message id at /message/id is not a string or a number"
        );
    }

    #[test]
    fn details_are_bounded_and_hold_no_number() {
        assert_eq!(bounded_detail("undelivered: 30003"), "undelivered: 30003");
        assert_eq!(
            bounded_detail("failed for +33 (6) 12-34-56-78 today"),
            "failed for ••• today"
        );
        assert_eq!(bounded_detail("to 0033612345678"), "to •••");
        assert_eq!(bounded_detail("a\nb\tc"), "a b c");
        assert_eq!(
            bounded_detail(&"é".repeat(500)).chars().count(),
            MAX_DETAIL_CHARS
        );
    }

    #[test]
    fn a_status_only_moves_forward() {
        let delivered = ReceiptOutcome::Delivered;
        let undelivered = ReceiptOutcome::Undelivered { detail: "x".into() };
        let ignored = ReceiptOutcome::Ignored;
        assert_eq!(next_status("sent", &delivered), Some("delivered"));
        assert_eq!(next_status("sent", &undelivered), Some("undelivered"));
        assert_eq!(next_status("sent", &ignored), None);
        assert_eq!(next_status("undelivered", &delivered), Some("delivered"));
        assert_eq!(next_status("undelivered", &undelivered), None);
        assert_eq!(next_status("delivered", &delivered), None);
        assert_eq!(next_status("delivered", &undelivered), None);
        assert_eq!(next_status("failed", &delivered), None);
        assert_eq!(next_status("failed", &undelivered), None);
    }

    #[test]
    fn settings_are_checked_field_by_field() {
        assert_eq!(check(&form_config()), Ok(()));
        assert_eq!(check(&json_config()), Ok(()));
        let refuse = |c: ReceiptConfig, needle: &str| {
            let (field, message) = check(&c).unwrap_err();
            assert_eq!(field, "receipts");
            assert!(message.contains(needle), "{message}");
        };
        refuse(
            ReceiptConfig {
                provider_id: "id".into(),
                ..json_config()
            },
            "provider_id: a JSON pointer",
        );
        refuse(
            ReceiptConfig {
                status: "a=b".into(),
                ..form_config()
            },
            "status: a form field name",
        );
        refuse(
            ReceiptConfig {
                error: Some(String::new()),
                ..form_config()
            },
            "error:",
        );
        refuse(
            ReceiptConfig {
                delivered: vec![],
                ..form_config()
            },
            "delivered: at least one",
        );
        refuse(
            ReceiptConfig {
                undelivered: vec!["x".repeat(65)],
                ..form_config()
            },
            "undelivered: status values",
        );
        refuse(
            ReceiptConfig {
                undelivered: vec!["DELIVERED".into()],
                ..form_config()
            },
            "both delivered and undelivered",
        );
        refuse(
            ReceiptConfig {
                key: "kcr_mine".into(),
                ..form_config()
            },
            "receipt key",
        );
    }

    #[test]
    fn the_key_is_kept_unless_a_new_one_is_asked_for() {
        let input = |new_key| -> ReceiptInput {
            serde_json::from_value(json!({ "format": "form", "provider_id": " MessageSid ",
                "status": "MessageStatus", "error": "", "delivered": ["delivered "],
                "new_key": new_key }))
            .unwrap()
        };
        let first = input(false).merge(None);
        assert!(is_key_shaped(&first.key));
        assert_eq!(first.provider_id, "MessageSid");
        assert_eq!(first.error, None);
        assert_eq!(first.delivered, vec!["delivered".to_string()]);
        let kept = input(false).merge(Some(&first));
        assert_eq!(kept.key, first.key);
        let fresh = input(true).merge(Some(&first));
        assert_ne!(fresh.key, first.key);
        let view = serde_json::to_value(fresh.view()).unwrap();
        assert_eq!(
            view["url_path"],
            format!("/api/v1/sms/receipts/{}", fresh.key)
        );
        assert!(!format!("{fresh:?}").contains(&fresh.key));
        assert!(
            serde_json::from_value::<ReceiptInput>(json!({ "provider_id": "/id",
            "status": "/s", "delivered": ["d"], "key": "kcr_x" }))
            .is_err()
        );
    }

    #[test]
    fn each_key_has_a_bucket() {
        let policy = ReceiptPolicy {
            burst: 3,
            refill_every: Duration::from_secs(1),
            max_keys: 4,
        };
        let mut t = ReceiptThrottle::new(policy);
        let a = key_digest("a");
        let b = key_digest("b");
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.check(&a, now).is_ok());
            assert!(t.take(&a, now).is_ok());
        }
        assert_eq!(t.check(&a, now), Err(Duration::from_secs(1)));
        assert_eq!(t.take(&a, now), Err(Duration::from_secs(1)));
        // Another key is not held back.
        assert!(t.take(&b, now).is_ok());
        // Half a refill later, half a token.
        let later = now + Duration::from_millis(500);
        assert_eq!(t.check(&a, later), Err(Duration::from_millis(500)));
        let later = now + Duration::from_secs(1);
        assert!(t.take(&a, later).is_ok());
        assert!(t.take(&a, later).is_err());
        // Full buckets are forgotten; the table stays bounded.
        let much_later = now + Duration::from_secs(60);
        for i in 0..10 {
            t.take(&key_digest(&i.to_string()), much_later).unwrap();
        }
        assert!(t.len() <= 4, "{}", t.len());
        assert!(t.check(&a, much_later).is_ok());
    }
}
