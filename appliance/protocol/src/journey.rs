//! The customer's journey (`up/journey`, `down/journey`): one-time codes and callbacks.
//!
//! Live request/answer messages, like call signalling never kept in the outbox: a code that
//! cannot be asked for now is useless later. The kiosk names each customer session with a
//! `request` id of its own (1 to 64 bytes, fresh for every customer); every answer echoes it.
//!
//! 1. [`JourneyRequest::OtpRequest`]: the customer typed a phone number. The cloud normalizes it
//!    to E.164, makes a 6-digit code, stores only its keyed hash and sends it by SMS. The answer
//!    is [`JourneyResult::CodeSent`] (also when the number is refused by a limit the customer
//!    cannot tell apart from a sent code) or [`JourneyResult::InvalidPhone`] /
//!    [`JourneyResult::Limited`] / [`JourneyResult::Unavailable`].
//! 2. [`JourneyRequest::OtpResend`]: a new code to the same number, after the cooldown.
//! 3. [`JourneyRequest::OtpVerify`]: the code typed. [`JourneyResult::Verified`] carries the
//!    customer token, a secret for one call: kiosk-sync keeps it, puts it in the `place` of a
//!    customer call ([`crate::call::UpSignalBody::Place`]) and never hands it to kiosk-ui.
//! 4. [`JourneyRequest::Callback`]: the customer, verified, asks to be called back (closed, or
//!    nobody answered in time). The request lands in the organization's callback list.
//! 5. [`JourneyRequest::Forget`]: the session is over (privacy reset): the cloud drops what it
//!    kept for the journey that is not a record (the unverified code, the number kept to resend).
//!
//! The kiosk never sees a code, and answers do not tell whether a number is known.

use serde::{Deserialize, Serialize};

use crate::call::CallId;
use crate::{UpHeader, Version};

/// Longest journey request id, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64;
/// Longest phone number as typed, in bytes.
pub const MAX_PHONE_BYTES: usize = 32;
/// Longest customer token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 128;
/// Digits in a one-time code.
pub const CODE_DIGITS: usize = 6;

/// Device → cloud, `kiosk/v1/{d}/up/journey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyUp {
    pub v: Version,
    #[serde(flatten)]
    pub header: UpHeader,
    /// The kiosk's id for this customer session.
    pub request: String,
    #[serde(flatten)]
    pub body: JourneyRequest,
}

/// What the kiosk asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JourneyRequest {
    /// Send a code to `phone` (E.164, `+` and 8 to 15 digits; the cloud also accepts spaces,
    /// dashes and a `(0)`). `language` is the screen's BCP 47 tag, for the SMS text.
    OtpRequest {
        phone: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
    /// Send a new code to the number of this session's last `otp_request`.
    OtpResend,
    /// Check the typed code.
    OtpVerify { code: String },
    /// Call the verified customer back. `call` is the call nobody answered, if any.
    Callback {
        customer: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<CallId>,
    },
    /// The customer's session is over: forget what is not a record.
    Forget,
}

/// Cloud → device, `kiosk/v1/{d}/down/journey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyAnswer {
    pub v: Version,
    /// The `request` of the [`JourneyUp`] answered.
    pub request: String,
    #[serde(flatten)]
    pub result: JourneyResult,
}

/// Why a code can no longer be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadCode {
    /// Older than its 5 minutes.
    Expired,
    /// Already verified once.
    Used,
    /// Five wrong tries.
    TooManyTries,
    /// This session has no code (never asked, forgotten, or another kiosk's).
    NoCode,
    #[serde(other)]
    Other,
}

/// The cloud's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum JourneyResult {
    /// A code is on its way to `masked_phone`; it can be resent after `resend_after_s` and is
    /// valid for `expires_in_s`.
    CodeSent {
        masked_phone: String,
        resend_after_s: u32,
        expires_in_s: u32,
    },
    /// Too many codes for this number, kiosk or organization; try again after `retry_after_s`.
    Limited { retry_after_s: u32 },
    /// The number cannot be a phone number; `message` says why (for the screen's log, the
    /// screen shows its own words).
    InvalidPhone { message: String },
    /// The code is right. `customer` is the token for one call, valid `expires_in_s`.
    Verified {
        customer: String,
        masked_phone: String,
        expires_in_s: u32,
    },
    /// The code is wrong; `tries_left` more tries before it is dead.
    WrongCode { tries_left: u32 },
    /// The code cannot be used any more.
    CodeDead { why: DeadCode },
    /// The callback is in the organization's list; a confirmation SMS went to `masked_phone`.
    CallbackBooked { masked_phone: String },
    /// Done (answers `forget`).
    Forgotten,
    /// Nothing can be done now (no SMS gateway answered, the organization is disabled, the
    /// customer token is not valid for a callback); `reason` is for the log.
    Unavailable { reason: String },
    /// A result this build does not know (from a newer cloud).
    #[serde(other)]
    Unknown,
}

/// A journey message that breaks the size rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadJourney(pub String);

impl std::fmt::Display for BadJourney {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadJourney {}

impl JourneyUp {
    /// Checks sizes and shapes (not the phone number's validity: that is [`normalize_phone`]).
    pub fn check(&self) -> Result<(), BadJourney> {
        if self.request.is_empty() || self.request.len() > MAX_REQUEST_BYTES {
            return Err(BadJourney(format!(
                "request id must have 1 to {MAX_REQUEST_BYTES} bytes"
            )));
        }
        match &self.body {
            JourneyRequest::OtpRequest { phone, language } => {
                if phone.len() > MAX_PHONE_BYTES {
                    return Err(BadJourney(format!(
                        "phone: at most {MAX_PHONE_BYTES} bytes"
                    )));
                }
                if language.as_deref().is_some_and(|l| l.len() > 35) {
                    return Err(BadJourney("language: at most 35 bytes".into()));
                }
            }
            JourneyRequest::OtpVerify { code } => {
                if code.len() != CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(BadJourney(format!("code: exactly {CODE_DIGITS} digits")));
                }
            }
            JourneyRequest::Callback { customer, .. } => {
                if customer.is_empty() || customer.len() > MAX_TOKEN_BYTES {
                    return Err(BadJourney(format!(
                        "customer token: 1 to {MAX_TOKEN_BYTES} bytes"
                    )));
                }
            }
            JourneyRequest::OtpResend | JourneyRequest::Forget => {}
        }
        Ok(())
    }
}

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPhone(pub &'static str);

impl std::fmt::Display for InvalidPhone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidPhone {}

/// Normalizes a number typed with its country code to E.164 (`+` and 8 to 15 digits, the
/// first not 0). Spaces, dashes, dots and brackets are dropped; a national trunk `(0)` after
/// the country code is dropped (`+44 (0)20 …`); a leading `00` reads as `+`.
pub fn normalize_phone(input: &str) -> Result<String, InvalidPhone> {
    let s = input.trim();
    let s = s.replace("(0)", "");
    let rest = if let Some(r) = s.strip_prefix('+') {
        r.to_string()
    } else if let Some(r) = s.strip_prefix("00") {
        r.to_string()
    } else {
        return Err(InvalidPhone(
            "the number must start with + and the country code",
        ));
    };
    let mut digits = String::with_capacity(15);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
            _ => return Err(InvalidPhone("the number may hold only digits")),
        }
    }
    if digits.starts_with('0') {
        return Err(InvalidPhone("a country code never starts with 0"));
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(InvalidPhone(
            "a number has 8 to 15 digits with its country code",
        ));
    }
    Ok(format!("+{digits}"))
}

/// Masks an E.164 number for screens and lists: the first 3 characters (`+` and up to 2
/// digits of country code) and the last 2 digits stay, the rest become `•`.
/// `+33612345678` → `+33•••••••78`.
pub fn mask_phone(e164: &str) -> String {
    let chars: Vec<char> = e164.chars().collect();
    if chars.len() <= 5 {
        return "•".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < 3 || i >= chars.len() - 2 {
                *c
            } else {
                '•'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_normalize_to_e164() {
        assert_eq!(
            normalize_phone("+33 6 12 34 56 78").unwrap(),
            "+33612345678"
        );
        assert_eq!(normalize_phone("0033612345678").unwrap(), "+33612345678");
        assert_eq!(
            normalize_phone("+44 (0)20 7946-0018").unwrap(),
            "+442079460018"
        );
        assert_eq!(
            normalize_phone(" +1 (415) 555.0100 ").unwrap(),
            "+14155550100"
        );
        for bad in [
            "0612345678",
            "+0612345678",
            "+33",
            "+1234567890123456",
            "+33 6x",
            "",
        ] {
            assert!(normalize_phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_keep_country_code_and_last_two() {
        assert_eq!(mask_phone("+33612345678"), "+33•••••••78");
        assert_eq!(mask_phone("+14155550100"), "+14•••••••00");
        assert_eq!(mask_phone("+123"), "••••");
    }

    #[test]
    fn checks_sizes() {
        let up = |request: &str, body| JourneyUp {
            v: Version::CURRENT,
            header: UpHeader {
                id: crate::MessageId::parse("m-0000000001").unwrap(),
                seq: 0,
                at_ms: 0,
            },
            request: request.into(),
            body,
        };
        assert!(up(
            "j1",
            JourneyRequest::OtpVerify {
                code: "123456".into()
            }
        )
        .check()
        .is_ok());
        assert!(up(
            "j1",
            JourneyRequest::OtpVerify {
                code: "12345".into()
            }
        )
        .check()
        .is_err());
        assert!(up("", JourneyRequest::Forget).check().is_err());
    }
}
