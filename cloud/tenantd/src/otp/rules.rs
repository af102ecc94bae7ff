//! The one-time code rules as a pure core: plain values in, decisions out. No clock (every
//! function takes `now_ms`), no store, no randomness, no network; the edge (`super::journey`)
//! reads the facts, asks here, and carries the decision out.
//!
//! - [`decide_issue`]: may a code be sent now? The session's resend cooldown, then the kiosk's
//!   and the organization's caps, and only then the number's own limits, so a number's history
//!   is looked at only when nothing else refuses.
//! - [`decide_verify`]: is a typed code right, wrong (one try counted) or dead?
//! - [`decide_callback`]: may a verified customer book a callback, and why?
//!
//! The defaults ([`Limits::default`]) are the documented ones (docs/security.md): a code lives
//! 5 minutes, takes 5 wrong tries, may be resent after 30 s; a number gets at most 3 codes in
//! 15 minutes and 10 in 24 hours; a kiosk 30 an hour; an organization 500 an hour.

use kiosk_protocol::journey::DeadCode;

/// How many codes a window admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Codes allowed within the window.
    pub max: u32,
    /// The window's length (ms), sliding.
    pub span_ms: i64,
}

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

/// Every limit of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How long a code may be verified (5 minutes).
    pub code_ttl_ms: i64,
    /// Wrong tries that kill a code (5): the next try fails even with the right code.
    pub max_tries: u32,
    /// How long after a session's code another may be sent in that session (30 s).
    pub resend_after_ms: i64,
    /// Codes to one number, in any organization, in a short window (3 in 15 minutes).
    pub phone_short: Window,
    /// Codes to one number in a day (10 in 24 hours).
    pub phone_day: Window,
    /// Codes asked from one kiosk (30 an hour).
    pub kiosk: Window,
    /// Codes sent by one organization (500 an hour).
    pub org: Window,
    /// How long a customer token may place its call after the code was verified (10 minutes).
    pub customer_ttl_ms: i64,
    /// How long after verification a callback may be booked with the token; the number is kept
    /// on the customer row until then, and no longer (90 minutes: the 10 minutes to place the
    /// call, the longest queue time an organization may set, an hour, and a margin).
    pub callback_window_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            code_ttl_ms: 5 * MINUTE_MS,
            max_tries: 5,
            resend_after_ms: 30_000,
            phone_short: Window {
                max: 3,
                span_ms: 15 * MINUTE_MS,
            },
            phone_day: Window {
                max: 10,
                span_ms: 24 * HOUR_MS,
            },
            kiosk: Window {
                max: 30,
                span_ms: HOUR_MS,
            },
            org: Window {
                max: 500,
                span_ms: HOUR_MS,
            },
            customer_ttl_ms: 10 * MINUTE_MS,
            callback_window_ms: 90 * MINUTE_MS,
        }
    }
}

impl Limits {
    /// The longest window over a number's codes (what the edge must read).
    pub fn phone_span_ms(&self) -> i64 {
        self.phone_short.span_ms.max(self.phone_day.span_ms)
    }

    /// Whole seconds, at least 1, of a positive duration in ms.
    fn secs_up(ms: i64) -> u32 {
        u32::try_from((ms.max(1) + 999) / 1000).unwrap_or(u32::MAX)
    }

    /// A code's lifetime in whole seconds, as the kiosk is told.
    pub fn code_ttl_s(&self) -> u32 {
        Self::secs_up(self.code_ttl_ms)
    }

    /// A customer token's lifetime in whole seconds, as the kiosk is told.
    pub fn customer_ttl_s(&self) -> u32 {
        Self::secs_up(self.customer_ttl_ms)
    }

    /// The resend cooldown in whole seconds, as the kiosk is told.
    pub fn resend_after_s(&self) -> u32 {
        Self::secs_up(self.resend_after_ms)
    }
}

/// Which limit refused a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The session's last code is younger than the resend cooldown.
    Resend,
    /// The kiosk's cap.
    Kiosk,
    /// The organization's cap.
    Org,
    /// The number's short window (3 in 15 minutes).
    PhoneShort,
    /// The number's day (10 in 24 hours).
    PhoneDay,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Resend => "resend",
            Limit::Kiosk => "kiosk",
            Limit::Org => "organization",
            Limit::PhoneShort => "number-15min",
            Limit::PhoneDay => "number-day",
        }
    }
}

/// What is known when a code is asked for: the creation times (ms) of earlier codes, in any
/// order. Each list may hold older times than its window; they are not counted.
#[derive(Debug, Clone, Copy)]
pub struct IssueFacts<'a> {
    /// The newest code of this session (same kiosk, same journey request), if any.
    pub session_last_ms: Option<i64>,
    /// This kiosk's codes.
    pub kiosk: &'a [i64],
    /// The organization's codes.
    pub org: &'a [i64],
    /// Codes to this number, in every organization.
    pub phone: &'a [i64],
}

/// The decision on a code asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// Make and send a code that expires at `expires_at_ms`.
    Send { expires_at_ms: i64 },
    /// No code now; the next may be asked for after `retry_after_s`.
    Limited { limit: Limit, retry_after_s: u32 },
}

/// When `window` admits one more code after `times` (ms since the epoch): `None` now, or how
/// long to wait (ms).
fn window_wait(window: Window, times: &[i64], now_ms: i64) -> Option<i64> {
    let since = now_ms - window.span_ms;
    let mut inside: Vec<i64> = times.iter().copied().filter(|t| *t > since).collect();
    if (inside.len() as u64) < u64::from(window.max) {
        return None;
    }
    inside.sort_unstable();
    // Once `leave` of the oldest have left, one more fits.
    let leave = inside.len() + 1 - window.max as usize;
    let frees_at = inside.get(leave - 1).copied().unwrap_or(now_ms) + window.span_ms;
    Some((frees_at - now_ms).max(1))
}

/// May a code be sent now?
pub fn decide_issue(limits: &Limits, facts: &IssueFacts<'_>, now_ms: i64) -> Issue {
    let limited = |limit, wait_ms| Issue::Limited {
        limit,
        retry_after_s: Limits::secs_up(wait_ms),
    };
    if let Some(last) = facts.session_last_ms {
        let ready_at = last + limits.resend_after_ms;
        if now_ms < ready_at {
            return limited(Limit::Resend, ready_at - now_ms);
        }
    }
    let checks = [
        (Limit::Kiosk, limits.kiosk, facts.kiosk),
        (Limit::Org, limits.org, facts.org),
        (Limit::PhoneShort, limits.phone_short, facts.phone),
        (Limit::PhoneDay, limits.phone_day, facts.phone),
    ];
    for (limit, window, times) in checks {
        if let Some(wait) = window_wait(window, times, now_ms) {
            return limited(limit, wait);
        }
    }
    Issue::Send {
        expires_at_ms: now_ms + limits.code_ttl_ms,
    }
}

/// Where a code stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeState {
    /// May be verified until it expires.
    Live,
    /// Verified once; never again.
    Verified,
    /// Killed: too many tries, expired, superseded by a newer code, or forgotten.
    Dead,
}

impl CodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeState::Live => "live",
            CodeState::Verified => "verified",
            CodeState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<CodeState> {
        match s {
            "live" => Some(CodeState::Live),
            "verified" => Some(CodeState::Verified),
            "dead" => Some(CodeState::Dead),
            _ => None,
        }
    }
}

/// A code as the rules see it (never the code or its hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCode {
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// Wrong tries so far.
    pub tries: u32,
    pub state: CodeState,
}

/// The decision on a typed code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The code is right: it becomes used, and a customer is made.
    Verified,
    /// The code is wrong: store `tries`; with `dead` the code is killed (that was the last try).
    Wrong {
        tries: u32,
        tries_left: u32,
        dead: bool,
    },
    /// The code cannot be used; nothing is counted. With `retire`, a live row is to be marked
    /// dead (it expired).
    Dead { why: DeadCode, retire: bool },
}

/// Checks a typed code against the session's newest code. `guess_matches` says whether the
/// typed code's keyed hash is the stored one; it counts only for a live, unexpired code that
/// has tries left.
pub fn decide_verify(
    limits: &Limits,
    code: Option<&StoredCode>,
    guess_matches: bool,
    now_ms: i64,
) -> Verify {
    let Some(code) = code else {
        return Verify::Dead {
            why: DeadCode::NoCode,
            retire: false,
        };
    };
    let dead = |why| Verify::Dead { why, retire: false };
    match code.state {
        CodeState::Verified => return dead(DeadCode::Used),
        CodeState::Dead if code.tries >= limits.max_tries => return dead(DeadCode::TooManyTries),
        CodeState::Dead if now_ms >= code.expires_at_ms => return dead(DeadCode::Expired),
        // Superseded by a newer code of the session, or forgotten.
        CodeState::Dead => return dead(DeadCode::NoCode),
        CodeState::Live => {}
    }
    if code.tries >= limits.max_tries {
        return Verify::Dead {
            why: DeadCode::TooManyTries,
            retire: true,
        };
    }
    if now_ms >= code.expires_at_ms {
        return Verify::Dead {
            why: DeadCode::Expired,
            retire: true,
        };
    }
    if guess_matches {
        return Verify::Verified;
    }
    let tries = code.tries + 1;
    let tries_left = limits.max_tries.saturating_sub(tries);
    Verify::Wrong {
        tries,
        tries_left,
        dead: tries_left == 0,
    }
}

/// A verified customer, as a callback sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerFacts {
    pub verified_at_ms: i64,
    /// The number is still on the row (not forgotten, erased or pruned).
    pub has_phone: bool,
    /// The call the token was used for.
    pub used_for: Option<String>,
}

/// The call a callback names, as the store has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallFacts {
    /// The call is over.
    pub ended: bool,
    /// Nobody answered it: the cloud offered a callback, or it ended `not_answered`.
    pub unanswered: bool,
}

/// Why a callback is booked (the `callbacks.reason` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackReason {
    /// The call the token was used for ended with nobody answering.
    NotAnswered,
    /// No call was placed with the token: the site is closed.
    Closed,
}

impl CallbackReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackReason::NotAnswered => "not_answered",
            CallbackReason::Closed => "closed",
        }
    }
}

/// Why a callback is refused (for the kiosk's log, never the customer's screen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackRefusal {
    /// Not a token of this kiosk.
    UnknownToken,
    /// The callback window is over, or the number was forgotten or erased.
    Expired,
    /// The token was not used for that call, or there is no such call.
    NotThatCall,
    /// That call was answered, or is not over.
    CallAnswered,
    /// No call named, but the token was used for one.
    TokenUsed,
    /// No call named, and the kiosk's site is open: the customer can call now.
    SiteOpen,
}

impl CallbackRefusal {
    pub fn message(self) -> &'static str {
        match self {
            CallbackRefusal::UnknownToken => "the customer token is not valid for this kiosk",
            CallbackRefusal::Expired => "the customer token's callback window is over",
            CallbackRefusal::NotThatCall => "the customer token was not used for that call",
            CallbackRefusal::CallAnswered => "that call was answered or is not over",
            CallbackRefusal::TokenUsed => {
                "the customer token was used for a call: name the call to book its callback"
            }
            CallbackRefusal::SiteOpen => {
                "the site is open: a callback without a call is for a closed site"
            }
        }
    }
}

/// May this customer book a callback? `call` is the call the kiosk names, with what the store
/// knows of it (`None` when there is no such call of the token's organization and kiosk).
/// Without a call, the booking is for a closed site, and the cloud checks that with the site's
/// own hours (`site_closed_at`, Unix ms): closed now, or when the customer verified the number
/// (a customer who saw the closed screen a minute before opening time keeps the booking).
pub fn decide_callback(
    limits: &Limits,
    customer: Option<&CustomerFacts>,
    call: Option<(&str, Option<CallFacts>)>,
    site_closed_at: impl Fn(i64) -> bool,
    now_ms: i64,
) -> Result<CallbackReason, CallbackRefusal> {
    let customer = customer.ok_or(CallbackRefusal::UnknownToken)?;
    if !customer.has_phone || now_ms >= customer.verified_at_ms + limits.callback_window_ms {
        return Err(CallbackRefusal::Expired);
    }
    match call {
        Some((id, facts)) => {
            if customer.used_for.as_deref() != Some(id) {
                return Err(CallbackRefusal::NotThatCall);
            }
            match facts {
                None => Err(CallbackRefusal::NotThatCall),
                Some(f) if f.ended && f.unanswered => Ok(CallbackReason::NotAnswered),
                Some(_) => Err(CallbackRefusal::CallAnswered),
            }
        }
        None if customer.used_for.is_some() => Err(CallbackRefusal::TokenUsed),
        None if site_closed_at(now_ms) || site_closed_at(customer.verified_at_ms) => {
            Ok(CallbackReason::Closed)
        }
        None => Err(CallbackRefusal::SiteOpen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn no_history() -> IssueFacts<'static> {
        IssueFacts {
            session_last_ms: None,
            kiosk: &[],
            org: &[],
            phone: &[],
        }
    }

    fn live(created_at_ms: i64) -> StoredCode {
        StoredCode {
            created_at_ms,
            expires_at_ms: created_at_ms + Limits::default().code_ttl_ms,
            tries: 0,
            state: CodeState::Live,
        }
    }

    /// What the edge does with a decision, on an in-memory row.
    fn apply(code: &mut StoredCode, decision: Verify) {
        match decision {
            Verify::Verified => code.state = CodeState::Verified,
            Verify::Wrong { tries, dead, .. } => {
                code.tries = tries;
                if dead {
                    code.state = CodeState::Dead;
                }
            }
            Verify::Dead { retire: true, .. } => code.state = CodeState::Dead,
            Verify::Dead { .. } => {}
        }
    }

    #[test]
    fn a_first_code_is_sent_and_lives_five_minutes() {
        let l = Limits::default();
        assert_eq!(
            decide_issue(&l, &no_history(), T0),
            Issue::Send {
                expires_at_ms: T0 + 300_000
            }
        );
        assert_eq!(l.code_ttl_s(), 300);
        assert_eq!(l.resend_after_s(), 30);
        assert_eq!(l.customer_ttl_s(), 600);
    }

    #[test]
    fn resend_waits_thirty_seconds() {
        let l = Limits::default();
        let facts = IssueFacts {
            session_last_ms: Some(T0),
            ..no_history()
        };
        assert_eq!(
            decide_issue(&l, &facts, T0 + 1_000),
            Issue::Limited {
                limit: Limit::Resend,
                retry_after_s: 29
            }
        );
        assert_eq!(
            decide_issue(&l, &facts, T0 + 29_999),
            Issue::Limited {
                limit: Limit::Resend,
                retry_after_s: 1
            }
        );
        assert!(matches!(
            decide_issue(&l, &facts, T0 + 30_000),
            Issue::Send { .. }
        ));
    }

    #[test]
    fn a_number_gets_three_codes_in_fifteen_minutes() {
        let l = Limits::default();
        let phone = [T0, T0 + 60_000, T0 + 120_000];
        let facts = IssueFacts {
            phone: &phone[..2],
            ..no_history()
        };
        assert!(matches!(
            decide_issue(&l, &facts, T0 + 180_000),
            Issue::Send { .. }
        ));
        let facts = IssueFacts {
            phone: &phone,
            ..no_history()
        };
        // The first leaves the window 15 minutes after it was sent.
        assert_eq!(
            decide_issue(&l, &facts, T0 + 180_000),
            Issue::Limited {
                limit: Limit::PhoneShort,
                retry_after_s: 720
            }
        );
        assert!(matches!(
            decide_issue(&l, &facts, T0 + 15 * 60_000),
            Issue::Send { .. }
        ));
    }

    #[test]
    fn a_number_gets_ten_codes_a_day() {
        let l = Limits::default();
        // Ten codes, an hour apart.
        let phone: Vec<i64> = (0..10).map(|i| T0 + i * HOUR_MS).collect();
        let facts = IssueFacts {
            phone: &phone,
            ..no_history()
        };
        let now = T0 + 10 * HOUR_MS;
        assert_eq!(
            decide_issue(&l, &facts, now),
            Issue::Limited {
                limit: Limit::PhoneDay,
                retry_after_s: 14 * 3600
            }
        );
        assert!(matches!(
            decide_issue(&l, &facts, T0 + 24 * HOUR_MS),
            Issue::Send { .. }
        ));
    }

    #[test]
    fn kiosk_and_organization_caps_come_before_the_number() {
        let l = Limits::default();
        let kiosk: Vec<i64> = (0..30).map(|i| T0 + i * 1000).collect();
        let org: Vec<i64> = (0..500).map(|i| T0 + i * 100).collect();
        let phone = [T0, T0 + 1, T0 + 2];
        let now = T0 + 60_000;
        let facts = IssueFacts {
            session_last_ms: None,
            kiosk: &kiosk,
            org: &org,
            phone: &phone,
        };
        assert!(matches!(
            decide_issue(&l, &facts, now),
            Issue::Limited {
                limit: Limit::Kiosk,
                ..
            }
        ));
        let facts = IssueFacts {
            kiosk: &[],
            ..facts
        };
        assert!(matches!(
            decide_issue(&l, &facts, now),
            Issue::Limited {
                limit: Limit::Org,
                ..
            }
        ));
        // Old codes do not count.
        let facts = IssueFacts {
            kiosk: &kiosk,
            org: &org,
            phone: &[],
            session_last_ms: None,
        };
        assert!(matches!(
            decide_issue(&l, &facts, T0 + 2 * HOUR_MS),
            Issue::Send { .. }
        ));
    }

    #[test]
    fn the_right_code_verifies_once() {
        let l = Limits::default();
        let mut code = live(T0);
        let first = decide_verify(&l, Some(&code), true, T0 + 10_000);
        assert_eq!(first, Verify::Verified);
        apply(&mut code, first);
        assert_eq!(
            decide_verify(&l, Some(&code), true, T0 + 20_000),
            Verify::Dead {
                why: DeadCode::Used,
                retire: false
            }
        );
    }

    #[test]
    fn five_wrong_tries_kill_the_code_and_the_sixth_fails_even_when_right() {
        let l = Limits::default();
        let mut code = live(T0);
        for left in (0..5).rev() {
            let d = decide_verify(&l, Some(&code), false, T0 + 1_000);
            assert_eq!(
                d,
                Verify::Wrong {
                    tries: 5 - left,
                    tries_left: left,
                    dead: left == 0
                }
            );
            apply(&mut code, d);
        }
        assert_eq!(code.state, CodeState::Dead);
        assert_eq!(
            decide_verify(&l, Some(&code), true, T0 + 2_000),
            Verify::Dead {
                why: DeadCode::TooManyTries,
                retire: false
            }
        );
    }

    #[test]
    fn an_expired_code_is_dead_even_when_right() {
        let l = Limits::default();
        let code = live(T0);
        assert_eq!(
            decide_verify(&l, Some(&code), true, T0 + 300_000),
            Verify::Dead {
                why: DeadCode::Expired,
                retire: true
            }
        );
        let retired = StoredCode {
            state: CodeState::Dead,
            ..code
        };
        assert_eq!(
            decide_verify(&l, Some(&retired), true, T0 + 400_000),
            Verify::Dead {
                why: DeadCode::Expired,
                retire: false
            }
        );
    }

    #[test]
    fn another_kiosk_has_no_code() {
        // A code is looked up by the verifying kiosk and its session; another kiosk's code is
        // never found, and its keyed hash names the kiosk it was sent for.
        let l = Limits::default();
        assert_eq!(
            decide_verify(&l, None, true, T0),
            Verify::Dead {
                why: DeadCode::NoCode,
                retire: false
            }
        );
        // A forgotten or superseded code.
        let forgotten = StoredCode {
            state: CodeState::Dead,
            ..live(T0)
        };
        assert_eq!(
            decide_verify(&l, Some(&forgotten), true, T0 + 1_000),
            Verify::Dead {
                why: DeadCode::NoCode,
                retire: false
            }
        );
    }

    #[test]
    fn ten_thousand_guesses_against_one_code_never_succeed() {
        let l = Limits::default();
        let secret = 424_242u32;
        let mut code = live(T0);
        let mut successes = 0;
        let mut counted = 0;
        // Every guess from 0 upwards: the right code is the 424,243rd, far past the five tries,
        // so also put it in at guess 5,000.
        for (i, guess) in (0u32..10_000).enumerate() {
            let guess = if i == 5_000 { secret } else { guess };
            let d = decide_verify(&l, Some(&code), guess == secret, T0 + 1_000 + i as i64);
            match d {
                Verify::Verified => successes += 1,
                Verify::Wrong { .. } => counted += 1,
                Verify::Dead { .. } => {}
            }
            apply(&mut code, d);
        }
        assert_eq!(successes, 0);
        assert_eq!(counted, 5);
        assert_eq!(code.state, CodeState::Dead);
        // The same with the right code at each of the first five places: found only while the
        // code has tries left.
        for place in 0..7u32 {
            let mut code = live(T0);
            let mut found = false;
            for i in 0..10_000u32 {
                let guess = if i == place { secret } else { 900_000 + i };
                let d = decide_verify(&l, Some(&code), guess == secret, T0 + 1_000);
                found |= d == Verify::Verified;
                apply(&mut code, d);
            }
            assert_eq!(found, place < 5, "right code at try {}", place + 1);
        }
    }

    #[test]
    fn callbacks_need_the_tokens_own_unanswered_call_or_an_unused_token() {
        let l = Limits::default();
        let unused = CustomerFacts {
            verified_at_ms: T0,
            has_phone: true,
            used_for: None,
        };
        let used = CustomerFacts {
            used_for: Some("call-aaaaaaaaaaaa".into()),
            ..unused.clone()
        };
        let unanswered = CallFacts {
            ended: true,
            unanswered: true,
        };
        let now = T0 + 60_000;
        let closed = |_: i64| true;
        assert_eq!(
            decide_callback(&l, None, None, closed, now),
            Err(CallbackRefusal::UnknownToken)
        );
        assert_eq!(
            decide_callback(&l, Some(&unused), None, closed, now),
            Ok(CallbackReason::Closed)
        );
        assert_eq!(
            decide_callback(&l, Some(&used), None, closed, now),
            Err(CallbackRefusal::TokenUsed)
        );
        assert_eq!(
            decide_callback(
                &l,
                Some(&used),
                Some(("call-aaaaaaaaaaaa", Some(unanswered))),
                closed,
                now
            ),
            Ok(CallbackReason::NotAnswered)
        );
        assert_eq!(
            decide_callback(
                &l,
                Some(&used),
                Some(("call-bbbbbbbbbbbb", Some(unanswered))),
                closed,
                now
            ),
            Err(CallbackRefusal::NotThatCall)
        );
        assert_eq!(
            decide_callback(
                &l,
                Some(&unused),
                Some(("call-aaaaaaaaaaaa", Some(unanswered))),
                closed,
                now
            ),
            Err(CallbackRefusal::NotThatCall)
        );
        let answered = CallFacts {
            ended: true,
            unanswered: false,
        };
        assert_eq!(
            decide_callback(
                &l,
                Some(&used),
                Some(("call-aaaaaaaaaaaa", Some(answered))),
                closed,
                now
            ),
            Err(CallbackRefusal::CallAnswered)
        );
        let running = CallFacts {
            ended: false,
            unanswered: true,
        };
        assert_eq!(
            decide_callback(
                &l,
                Some(&used),
                Some(("call-aaaaaaaaaaaa", Some(running))),
                closed,
                now
            ),
            Err(CallbackRefusal::CallAnswered)
        );
        // Without a call, the site's own hours decide: open all along, no booking; closed when
        // the number was verified or closed now, booked.
        assert_eq!(
            decide_callback(&l, Some(&unused), None, |_| false, now),
            Err(CallbackRefusal::SiteOpen)
        );
        let opens_at = T0 + 30_000;
        assert_eq!(
            decide_callback(&l, Some(&unused), None, |at| at < opens_at, now),
            Ok(CallbackReason::Closed)
        );
        assert_eq!(
            decide_callback(&l, Some(&unused), None, |at| at >= now, now),
            Ok(CallbackReason::Closed)
        );
        // An unanswered call's callback does not depend on the hours.
        assert_eq!(
            decide_callback(
                &l,
                Some(&used),
                Some(("call-aaaaaaaaaaaa", Some(unanswered))),
                |_| false,
                now
            ),
            Ok(CallbackReason::NotAnswered)
        );
        // The window closes, and a forgotten number cannot be called back.
        assert_eq!(
            decide_callback(&l, Some(&unused), None, closed, T0 + l.callback_window_ms),
            Err(CallbackRefusal::Expired)
        );
        let forgotten = CustomerFacts {
            has_phone: false,
            ..unused
        };
        assert_eq!(
            decide_callback(&l, Some(&forgotten), None, closed, now),
            Err(CallbackRefusal::Expired)
        );
    }
}
