//! Routing rules that need no registry state: who speaks a call's language, how long a caller
//! is likely to wait, and how a finished call is classified.
//!
//! The registry ([`super::registry`]) asks these while it decides; the store and the API use
//! [`Outcome`] for call records. Everything here is plain values, tested without sockets.

use std::collections::{HashSet, VecDeque};

use kiosk_protocol::call::{CallKind, EndReason, Party};
use serde::{Deserialize, Serialize};

/// How many answered waits the estimate averages, per organization.
pub const WAIT_HISTORY: usize = 20;
/// The wait per place in the queue assumed before an organization has answered a call.
pub const DEFAULT_WAIT_MS: i64 = 60_000;
/// At most this many languages per agent.
pub const MAX_AGENT_LANGUAGES: usize = 16;

/// How a finished call went, as call records show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An agent accepted it and it ended normally.
    Answered,
    /// The kiosk ended it while it waited (the customer gave up).
    Abandoned,
    /// Nobody answered within the organization's queue time-out.
    Missed,
    /// Every agent it rang declined it; then it timed out or the kiosk gave up.
    Declined,
    /// Refused: the site was closed.
    Closed,
    /// A failure ended or refused it: media, the kiosk's link, the protocol, the agent's
    /// console, a restart of the cloud, or a refused placement.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Answered,
        Outcome::Abandoned,
        Outcome::Missed,
        Outcome::Declined,
        Outcome::Closed,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Abandoned => "abandoned",
            Outcome::Missed => "missed",
            Outcome::Declined => "declined",
            Outcome::Closed => "closed",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// End reasons that mean something broke, whenever they happen.
fn is_failure(reason: EndReason) -> bool {
    matches!(
        reason,
        EndReason::MediaFailed
            | EndReason::KioskOffline
            | EndReason::ProtocolError
            | EndReason::AgentDisconnected
    )
}

/// The outcome of a call that ends: `answered` tells whether an agent had accepted it, `rung`
/// the agents it rang, `declined` those who declined it.
pub fn outcome(
    answered: bool,
    reason: EndReason,
    by: Party,
    rung: &HashSet<i64>,
    declined: &HashSet<i64>,
) -> Outcome {
    if is_failure(reason) {
        return Outcome::Failed;
    }
    if answered {
        return Outcome::Answered;
    }
    if !rung.is_empty() && rung.is_subset(declined) {
        return Outcome::Declined;
    }
    match (by, reason) {
        (Party::Kiosk, _) => Outcome::Abandoned,
        (_, EndReason::NotAnswered | EndReason::TooLong) => Outcome::Missed,
        _ => Outcome::Failed,
    }
}

/// Whether a call that ends this way offers the customer a callback: a customer's call nobody
/// answered in time.
pub fn offers_callback(kind: CallKind, answered: bool, reason: EndReason) -> bool {
    kind == CallKind::Customer && !answered && reason == EndReason::NotAnswered
}

/// The primary subtag of a BCP 47 tag, lower case (`fr-CA` → `fr`).
fn primary(tag: &str) -> String {
    tag.split(['-', '_'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether an agent with `languages` takes a call in `language`: agents who list none take
/// every call, a call without a language goes to everyone, and tags match on their primary
/// language (`fr` takes `fr-CA`).
pub fn speaks(languages: &[String], language: Option<&str>) -> bool {
    let Some(wanted) = language.map(primary).filter(|l| !l.is_empty()) else {
        return true;
    };
    languages.is_empty() || languages.iter().any(|l| primary(l) == wanted)
}

/// Checks one BCP 47 tag as agents' languages are given: a primary language of 2 to 3
/// letters, then subtags of 1 to 8 letters or digits, 35 characters at most.
pub fn valid_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    tag.len() <= 35
        && first_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// An agent's languages from the API: trimmed, checked, duplicates dropped, at most
/// [`MAX_AGENT_LANGUAGES`]. The error says what is wrong.
pub fn agent_languages(input: &[String]) -> Result<Vec<String>, String> {
    if input.len() > MAX_AGENT_LANGUAGES {
        return Err(format!("at most {MAX_AGENT_LANGUAGES} languages"));
    }
    let mut out: Vec<String> = Vec::with_capacity(input.len());
    for raw in input {
        let tag = raw.trim();
        if !valid_language_tag(tag) {
            return Err(format!(
                "{tag:?} is not a language tag such as fr, en-GB or pt-BR"
            ));
        }
        if !out.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            out.push(tag.to_string());
        }
    }
    Ok(out)
}

/// An agent's languages as the store keeps them (comma-separated).
pub fn split_languages(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// An organization's recent answered waits, newest last, for the estimate sent to kiosks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitHistory {
    waits_ms: VecDeque<i64>,
}

impl WaitHistory {
    /// From stored waits, newest first (as the store lists them).
    pub fn from_recent(newest_first: &[i64]) -> WaitHistory {
        let mut h = WaitHistory::default();
        for w in newest_first.iter().take(WAIT_HISTORY).rev() {
            h.push(*w);
        }
        h
    }

    /// An answered call waited `wait_ms`.
    pub fn push(&mut self, wait_ms: i64) {
        self.waits_ms.push_back(wait_ms.max(0));
        while self.waits_ms.len() > WAIT_HISTORY {
            self.waits_ms.pop_front();
        }
    }

    /// The average answered wait, or [`DEFAULT_WAIT_MS`] without history.
    pub fn average_ms(&self) -> i64 {
        if self.waits_ms.is_empty() {
            return DEFAULT_WAIT_MS;
        }
        self.waits_ms.iter().sum::<i64>() / self.waits_ms.len() as i64
    }

    /// The estimated wait, in whole seconds (rounded up), of the call at `position` (1 is
    /// next): the average answered wait times the position.
    pub fn estimate_s(&self, position: u32) -> u32 {
        let ms = self.average_ms().saturating_mul(i64::from(position));
        u32::try_from((ms + 999) / 1000).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[i64]) -> HashSet<i64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn outcomes_follow_how_the_call_ended() {
        let none = set(&[]);
        let both = set(&[1, 2]);
        let one = set(&[1]);
        use EndReason as R;
        use Party as P;
        assert_eq!(
            outcome(true, R::Hangup, P::Agent, &both, &none),
            Outcome::Answered
        );
        assert_eq!(
            outcome(true, R::MediaFailed, P::Kiosk, &both, &none),
            Outcome::Failed
        );
        assert_eq!(
            outcome(false, R::KioskOffline, P::Cloud, &both, &both),
            Outcome::Failed
        );
        assert_eq!(
            outcome(false, R::Cancelled, P::Kiosk, &both, &one),
            Outcome::Abandoned
        );
        assert_eq!(
            outcome(false, R::Cancelled, P::Kiosk, &both, &both),
            Outcome::Declined
        );
        assert_eq!(
            outcome(false, R::NotAnswered, P::Cloud, &both, &both),
            Outcome::Declined
        );
        assert_eq!(
            outcome(false, R::NotAnswered, P::Cloud, &none, &none),
            Outcome::Missed
        );
        assert_eq!(
            outcome(false, R::Other, P::Cloud, &none, &none),
            Outcome::Failed
        );
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert!(offers_callback(CallKind::Customer, false, R::NotAnswered));
        assert!(!offers_callback(CallKind::Test, false, R::NotAnswered));
        assert!(!offers_callback(CallKind::Customer, false, R::Cancelled));
    }

    #[test]
    fn languages_match_on_the_primary_tag() {
        let fr = vec!["fr".to_string(), "en-GB".to_string()];
        assert!(speaks(&fr, Some("fr-CA")));
        assert!(speaks(&fr, Some("EN")));
        assert!(!speaks(&fr, Some("de")));
        assert!(
            speaks(&[], Some("de")),
            "no languages listed: takes every call"
        );
        assert!(speaks(&fr, None));
        assert!(speaks(&fr, Some("")));
    }

    #[test]
    fn agent_languages_are_checked() {
        assert_eq!(
            agent_languages(&[" fr ".into(), "pt-BR".into(), "FR".into()]).unwrap(),
            vec!["fr", "pt-BR"]
        );
        for bad in ["", "f", "french", "fr_FR", "fr-", "1a", "fr-toolongsubtag"] {
            assert!(agent_languages(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(agent_languages(&vec!["fr".to_string(); MAX_AGENT_LANGUAGES + 1]).is_err());
        assert_eq!(split_languages(" fr, de ,,"), vec!["fr", "de"]);
        assert!(split_languages("").is_empty());
    }

    #[test]
    fn the_estimate_averages_recent_waits_times_the_position() {
        let mut h = WaitHistory::default();
        assert_eq!(h.estimate_s(1), 60);
        assert_eq!(h.estimate_s(3), 180);
        h.push(10_000);
        h.push(20_000);
        assert_eq!(h.average_ms(), 15_000);
        assert_eq!(h.estimate_s(2), 30);
        // Only the newest waits count.
        for _ in 0..WAIT_HISTORY {
            h.push(4_000);
        }
        assert_eq!(h.estimate_s(1), 4);
        let seeded = WaitHistory::from_recent(&[1_000, 3_000]);
        assert_eq!(seeded.average_ms(), 2_000);
        assert_eq!(
            WaitHistory::from_recent(&[1_500]).estimate_s(1),
            2,
            "rounded up"
        );
    }
}
